//! Degraded mode: a membership without a dead-man switch (docs/protocol.md §7.4, §6.9).
//!
//! Without a delayed leave only expiry removes a crashed client, so such a membership uses the
//! short sticky lifetime (five minutes by default), refreshed at half of it. The lifetime is
//! chosen once per join: it is shortened only while nothing of the membership can be on the
//! server yet, because the event that expires last wins its key.

use matrix_rtc_membership::{
    OwnAction, OwnEvent, OwnRequestKind, OwnStatus, RequestOutcome, ServerCapabilities,
    UnavailableReason,
};

use super::sim::{DelayedMode, ServerEvent, Sim, secs};

const SHORT: u64 = 300_000;
const HOUR: u64 = 3_600_000;

/// The sticky durations of every join and refresh the driver was asked for, in order.
fn join_durations(sim: &Sim) -> Vec<u64> {
    sim.requests
        .iter()
        .filter_map(|sent| match sent.request.kind() {
            OwnRequestKind::SendJoin {
                sticky_duration_ms, ..
            }
            | OwnRequestKind::RefreshJoin {
                sticky_duration_ms, ..
            } => Some(*sticky_duration_ms),
            _ => None,
        })
        .collect()
}

fn unavailable(sim: &Sim, reason: UnavailableReason) -> bool {
    sim.events
        .iter()
        .any(|(_, e)| *e == OwnEvent::DeadManSwitchUnavailable { reason })
}

#[test]
fn without_delayed_events_the_join_lives_five_minutes_and_is_refreshed_at_half_life() {
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::Disallowed;
    sim.join("m1");
    sim.run_for(secs(16 * 60));

    let joins = sim.requests_of(OwnAction::SendJoin);
    assert_eq!(joins.len(), 1);
    let refreshes: Vec<_> = sim
        .requests_of(OwnAction::RefreshJoin)
        .iter()
        .map(|s| s.at)
        .collect();
    // Every 150 s, well before the five minutes end, for as long as we are in the call.
    assert_eq!(refreshes[..4], [secs(150), secs(300), secs(450), secs(600)]);
    assert!(join_durations(&sim).iter().all(|d| *d == SHORT));
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
    assert!(sim.member_live());
}

#[test]
fn without_delayed_events_a_crash_leaves_a_ghost_for_at_most_the_short_lifetime() {
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::Disallowed;
    sim.join("m1");
    sim.run_until(secs(200));
    assert!(sim.member_live());
    // The last refresh went out at 150 s: the membership lasts until 450 s, not an hour.
    sim.crash();
    sim.run_until(secs(449));
    assert!(sim.member_live());
    sim.run_until(secs(451));
    assert!(!sim.member_live());
}

#[test]
fn a_refused_first_schedule_shortens_the_lifetime_of_the_join() {
    // The server claims delayed events but refuses ours (403 "disallowed" behind a
    // `/versions` that says otherwise): nothing of the membership is out yet.
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::Disallowed;
    sim.join_with("m1", ServerCapabilities::full());
    sim.run_for(secs(60));

    assert!(matches!(
        sim.requests_of(OwnAction::ScheduleDelayedLeave)[0]
            .request
            .kind(),
        OwnRequestKind::ScheduleDelayedLeave {
            sticky_duration_ms: HOUR,
            ..
        }
    ));
    assert_eq!(join_durations(&sim), [SHORT]);
    assert!(unavailable(&sim, UnavailableReason::Refused));
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
}

#[test]
fn a_full_quota_means_no_switch_and_the_short_lifetime() {
    let mut sim = Sim::default_config();
    sim.server.failing.push((
        OwnAction::ScheduleDelayedLeave,
        secs(0),
        secs(3600),
        RequestOutcome::TooManyScheduled {
            retry_after: Some(secs(3594)),
        },
    ));
    sim.join("m1");
    sim.run_for(secs(20));

    // Answered at once: the join does not wait an hour for a free slot.
    assert_eq!(sim.requests_of(OwnAction::ScheduleDelayedLeave).len(), 1);
    assert_eq!(join_durations(&sim), [SHORT]);
    assert!(unavailable(&sim, UnavailableReason::TooManyScheduled));
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
    assert!(sim.member_live());
}

#[test]
fn a_leave_sent_at_once_keeps_the_full_lifetime_so_the_join_wins_its_key() {
    // The server ignored the delay: our leave is out with a one-hour sticky duration, so a
    // five-minute join would lose the key to it.
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::IgnoresDelay;
    sim.join_with("m1", ServerCapabilities::full());
    sim.run_for(secs(30));

    assert!(unavailable(&sim, UnavailableReason::DelayIgnored));
    assert_eq!(join_durations(&sim), [HOUR]);
    assert!(sim.member_live());
}

#[test]
fn a_switch_lost_in_the_call_keeps_the_lifetime_the_join_went_out_with() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(5));
    // The server loses our delayed leave and from now on refuses new ones.
    sim.server.lose_delayed_events();
    sim.server.mode = DelayedMode::Disallowed;
    sim.run_until(secs(2000));

    assert!(unavailable(&sim, UnavailableReason::Refused));
    let durations = join_durations(&sim);
    assert!(durations.len() >= 2, "{durations:?}");
    assert!(durations.iter().all(|d| *d == HOUR), "{durations:?}");
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
}

#[test]
fn without_delayed_events_leave_sends_the_leave_directly() {
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::Disallowed;
    sim.join_with("m1", ServerCapabilities::full());
    sim.run_until(secs(10));
    sim.leave();
    sim.run_until(secs(20));

    assert!(sim.requests_of(OwnAction::SendDelayedLeave).is_empty());
    let leaves = sim.requests_of(OwnAction::SendLeave);
    assert_eq!(leaves.len(), 1);
    assert!(matches!(
        leaves[0].request.kind(),
        OwnRequestKind::SendLeave {
            sticky_duration_ms: SHORT,
            ..
        }
    ));
    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Left { .. }))
            .len(),
        1
    );
    assert_eq!(sim.status(), &OwnStatus::Disconnected);
    assert!(!sim.member_live());
}
