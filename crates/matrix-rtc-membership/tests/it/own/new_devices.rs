//! New devices: an early refresh of our join and a re-armed delayed leave, rate limited.

use matrix_rtc_membership::{OwnAction, OwnMembershipConfig, OwnRequestKind, OwnStatus};

use super::sim::{Cond, ServerEvent, Sim, ms, secs};

fn connected() -> OwnStatus {
    OwnStatus::Connected {
        dead_man_switch: true,
    }
}

/// Emission times (since the start) of the requests of one kind.
fn times(sim: &Sim, action: OwnAction) -> Vec<std::time::Duration> {
    sim.requests_of(action).iter().map(|s| s.at).collect()
}

/// The sticky duration of a join or refresh.
fn sticky(kind: &OwnRequestKind) -> Option<u64> {
    match kind {
        OwnRequestKind::SendJoin {
            sticky_duration_ms, ..
        }
        | OwnRequestKind::RefreshJoin {
            sticky_duration_ms, ..
        } => Some(*sticky_duration_ms),
        _ => None,
    }
}

#[test]
fn new_devices_resend_join_and_rearm_the_delayed_leave() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(4));
    assert_eq!(sim.status(), &connected());
    let scheduled_before = sim
        .server_events(|e| matches!(e, ServerEvent::Scheduled { .. }))
        .len();

    sim.new_devices();
    sim.run_until(secs(10));

    // Cancel first, then a new schedule once the cancel is answered (50 ms each way), then the
    // refresh once the new one is armed.
    assert_eq!(
        times(&sim, OwnAction::CancelDelayedLeave),
        [secs(4)],
        "one cancel, at once"
    );
    assert_eq!(
        times(&sim, OwnAction::ScheduleDelayedLeave),
        [secs(0), secs(4) + ms(100)]
    );
    assert_eq!(times(&sim, OwnAction::RefreshJoin), [secs(4) + ms(200)]);
    let refresh = sim.requests_of(OwnAction::RefreshJoin)[0].request.clone();
    let join = sim.requests_of(OwnAction::SendJoin)[0].request.clone();
    assert_eq!(refresh.member_id(), join.member_id(), "same member id");
    assert_ne!(
        refresh.kind().txn_id(),
        join.kind().txn_id(),
        "a new txn id"
    );
    assert_eq!(sticky(refresh.kind()), sticky(join.kind()), "same duration");
    assert!(sticky(join.kind()).is_some());
    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Scheduled { .. }))
            .len(),
        scheduled_before + 1
    );
    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Cancelled { .. }))
            .len(),
        1
    );
    // The window without a switch is reported, then the switch is back.
    assert!(sim.was_ever(&OwnStatus::Connected {
        dead_man_switch: false
    }));
    assert_eq!(sim.status(), &connected());
    assert_eq!(sim.server.live_delayed().len(), 1);
    assert!(sim.member_live());
    // The heartbeat restarts the new delayed leave, counted from its schedule.
    let restarts = times(&sim, OwnAction::RestartDelayedLeave);
    assert!(restarts.contains(&(secs(7) + ms(100))), "{restarts:?}");
}

#[test]
fn new_devices_are_rate_limited() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(4));
    sim.new_devices();
    sim.run_until(secs(10));
    // Two more calls inside the interval are coalesced into one run at its end (34 s).
    sim.new_devices();
    sim.run_until(secs(20));
    sim.new_devices();
    sim.run_until(secs(33));
    assert_eq!(times(&sim, OwnAction::CancelDelayedLeave), [secs(4)]);
    assert_eq!(sim.requests_of(OwnAction::RefreshJoin).len(), 1);

    sim.run_until(secs(60));
    assert_eq!(
        times(&sim, OwnAction::CancelDelayedLeave),
        [secs(4), secs(34)]
    );
    assert_eq!(sim.requests_of(OwnAction::RefreshJoin).len(), 2);
    assert_eq!(sim.status(), &connected());
    assert_eq!(sim.server.live_delayed().len(), 1);
}

#[test]
fn new_devices_min_interval_is_configurable() {
    let config = OwnMembershipConfig {
        new_devices_min_interval_ms: 5_000,
        ..OwnMembershipConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.join("m1");
    sim.run_until(secs(4));
    sim.new_devices();
    sim.run_until(secs(6));
    sim.new_devices();
    sim.run_until(secs(20));
    assert_eq!(
        times(&sim, OwnAction::CancelDelayedLeave),
        [secs(4), secs(9)]
    );
}

#[test]
fn new_devices_ignored_when_not_joined() {
    let mut sim = Sim::default_config();
    // Before any join.
    sim.new_devices();
    sim.join("m1");
    // While joining: the schedule is in flight.
    sim.new_devices();
    sim.run_until(secs(4));
    sim.leave();
    sim.run_until(secs(5));
    assert_eq!(sim.status(), &OwnStatus::Disconnected);
    // After the leave.
    sim.new_devices();
    sim.run_until(secs(60));

    assert!(sim.requests_of(OwnAction::CancelDelayedLeave).is_empty());
    assert!(sim.requests_of(OwnAction::RefreshJoin).is_empty());
    assert_eq!(sim.requests_of(OwnAction::ScheduleDelayedLeave).len(), 1);
    assert_eq!(sim.requests_of(OwnAction::SendJoin).len(), 1);
    assert_eq!(sim.machine.next_deadline(), None);
}

#[test]
fn new_devices_await_a_restart_in_flight() {
    let mut sim = Sim::default_config();
    sim.latency = ms(500);
    sim.join("m1");
    // The restart of 3 s is in flight until 4 s.
    sim.run_until(secs(3) + ms(100));
    sim.new_devices();
    sim.run_until(secs(10));
    assert_eq!(times(&sim, OwnAction::CancelDelayedLeave), [secs(4)]);
    assert_eq!(sim.server.live_delayed().len(), 1);
    assert_eq!(sim.status(), &connected());
}

#[test]
fn a_failed_rearm_cancel_is_retried_and_never_leaves_two_delayed_leaves() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(4));
    // The cancel is processed, but its answer is lost: the machine cannot tell.
    sim.set_cond(secs(4), secs(4) + ms(60), Cond::LoseAnswers);
    sim.new_devices();
    sim.run_until(secs(30));
    let cancels = times(&sim, OwnAction::CancelDelayedLeave);
    // Timed out at 6 s, retried at once (404: gone), then a new schedule.
    assert_eq!(cancels, [secs(4), secs(6)]);
    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Fired { .. }))
            .len(),
        0
    );
    assert_eq!(sim.status(), &connected());
    assert_eq!(sim.server.live_delayed().len(), 1);
    assert!(sim.member_live());
}

/// A changed content goes out as an early refresh (same member id, a new transaction), and
/// the delayed leave stays as it was: its content is the leave of the same member.
#[test]
fn a_content_change_is_refreshed_soon_without_rearming() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(4));
    assert_eq!(sim.status(), &connected());
    sim.content_changed();
    sim.run_until(secs(6));
    assert_eq!(times(&sim, OwnAction::RefreshJoin), [secs(4)]);
    assert!(times(&sim, OwnAction::CancelDelayedLeave).is_empty());
    assert_eq!(times(&sim, OwnAction::ScheduleDelayedLeave), [secs(0)]);
    let refresh = sim.requests_of(OwnAction::RefreshJoin)[0].request.clone();
    assert_eq!(refresh.member_id(), "m1");
    assert_eq!(sim.status(), &connected());
    // Not joined: nothing happens.
    sim.leave();
    sim.run_until(secs(8));
    let refreshes = times(&sim, OwnAction::RefreshJoin).len();
    sim.content_changed();
    sim.run_until(secs(10));
    assert_eq!(times(&sim, OwnAction::RefreshJoin).len(), refreshes);
}
