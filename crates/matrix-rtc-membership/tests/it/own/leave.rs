//! Leaving: `send` the delayed leave, fall back to a plain leave, clean up while joining.

use matrix_rtc_membership::{
    OwnAction, OwnRequestKind, OwnStatus, RequestOutcome, ServerCapabilities,
};

use super::sim::{Cond, DelayedMode, ServerEvent, Sim, ms, secs};

#[test]
fn leave_sends_the_delayed_leave_now() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(10));
    sim.leave();
    assert_eq!(sim.status(), &OwnStatus::Disconnecting);
    let done = sim.run_until_status(secs(30), |s| *s == OwnStatus::Disconnected);
    assert_eq!(done, Some(ms(10_100)), "one round trip");
    sim.run_until(secs(30));

    let sends = sim.requests_of(OwnAction::SendDelayedLeave);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].at, secs(10));
    let scheduled = sim.server_events(|e| matches!(e, ServerEvent::Scheduled { .. }));
    let ServerEvent::Scheduled { delay_id, .. } = &scheduled[0].1 else {
        unreachable!()
    };
    assert!(
        matches!(sends[0].request.kind(), OwnRequestKind::SendDelayedLeave { delay_id: d } if d.as_str() == delay_id)
    );
    assert!(sim.requests_of(OwnAction::SendLeave).is_empty());
    assert_eq!(
        sim.first_status_at(secs(10), |s| *s == OwnStatus::Disconnected),
        Some(ms(10_100))
    );
    assert!(!sim.member_live());
    assert!(sim.server.live_delayed().is_empty());
    // At rest: no more requests, no deadline.
    assert!(sim.requests.iter().all(|s| s.at <= secs(10)));
    assert_eq!(sim.machine.next_deadline(), None);
}

#[test]
fn leave_falls_back_to_plain_leave_on_404() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(10));
    sim.server.lose_delayed_events();
    sim.leave();
    sim.run_until(secs(30));

    assert!(
        sim.answers
            .iter()
            .any(|(_, _, a)| *a == RequestOutcome::NotFound)
    );
    let leaves = sim.requests_of(OwnAction::SendLeave);
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].at, ms(10_100));
    assert!(matches!(
        leaves[0].request.kind(),
        OwnRequestKind::SendLeave {
            sticky_duration_ms: 3_600_000,
            ..
        }
    ));
    assert_eq!(sim.status(), &OwnStatus::Disconnected);
    assert!(!sim.member_live());
}

#[test]
fn leave_falls_back_to_plain_leave_when_send_fails() {
    let mut sim = Sim::default_config();
    // `send` is refused (a worker setup that does not route it).
    sim.server.send_action_answer = Some(RequestOutcome::Http {
        status: 403,
        errcode: Some("M_FORBIDDEN".into()),
    });
    sim.join("m1");
    sim.run_until(secs(10));
    sim.leave();
    sim.run_until(secs(11));

    assert_eq!(sim.requests_of(OwnAction::SendLeave).len(), 1);
    assert_eq!(sim.status(), &OwnStatus::Disconnected);
    assert!(!sim.member_live());
    // The delayed leave is still scheduled; it fires later (a second leave: harmless).
    assert_eq!(sim.server.live_delayed().len(), 1);
    sim.run_until(secs(30));
    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Fired { .. }))
            .len(),
        1
    );
}

#[test]
fn leftover_delayed_leave_is_cancelled_before_the_next_join() {
    let mut sim = Sim::default_config();
    sim.server.send_action_answer = Some(RequestOutcome::Http {
        status: 403,
        errcode: None,
    });
    sim.join("m1");
    sim.run_until(secs(10));
    sim.leave();
    sim.run_until(secs(11));
    assert_eq!(sim.server.live_delayed().len(), 1);
    let before = sim.requests.len();

    // A new join while the old delayed leave is still live: cancel it first, then schedule.
    sim.join("m2");
    sim.run_until(secs(20));
    let actions: Vec<_> = sim.requests[before..]
        .iter()
        .map(|s| s.request.action())
        .collect();
    assert_eq!(
        actions[..3],
        [
            OwnAction::CancelDelayedLeave,
            OwnAction::ScheduleDelayedLeave,
            OwnAction::SendJoin
        ]
    );
    assert_eq!(sim.requests[before].request.member_id(), "m1");
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    // (The sim checks at every step that the server never holds two.)
    assert_eq!(sim.server.live_delayed().len(), 1);
}

#[test]
fn leave_while_scheduling_cancels_the_delayed_leave() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(ms(20));
    // The schedule is in flight: wait for its answer, then cancel what it created.
    sim.leave();
    sim.run_until(secs(5));

    let actions: Vec<_> = sim.requests.iter().map(|s| s.request.action()).collect();
    assert_eq!(
        actions,
        [
            OwnAction::ScheduleDelayedLeave,
            OwnAction::CancelDelayedLeave
        ]
    );
    assert_eq!(sim.requests[1].at, ms(100));
    assert!(sim.requests_of(OwnAction::SendJoin).is_empty());
    assert!(
        sim.server_events(|e| matches!(e, ServerEvent::Cancelled { .. }))
            .len()
            == 1
    );
    assert!(sim.server.live_delayed().is_empty());
    assert_eq!(sim.status(), &OwnStatus::Disconnected);
}

#[test]
fn leave_while_join_in_flight_sends_the_leave() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(ms(120));
    assert_eq!(
        sim.requests_of(OwnAction::SendJoin).len(),
        1,
        "the join is in flight"
    );
    sim.leave();
    sim.run_until(secs(5));

    // The join lands, so the leave must follow it: the delayed leave is sent at once.
    let sends = sim.requests_of(OwnAction::SendDelayedLeave);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].at, ms(200));
    assert_eq!(sim.status(), &OwnStatus::Disconnected);
    assert!(!sim.member_live());
    assert!(sim.server.live_delayed().is_empty());
}

#[test]
fn leave_during_an_outage_completes_when_the_delayed_leave_fires() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(10));
    sim.set_cond(ms(10_500), secs(1_000), Cond::Partition);
    sim.run_until(secs(11));
    sim.leave();
    sim.run_until(secs(60));

    // The restart of 9 s reached the server: it fires at 19.05 s. The machine, which cannot
    // reach the server, gives up waiting once that has surely happened.
    let fired = sim.server_events(|e| matches!(e, ServerEvent::Fired { .. }));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].0, ms(19_050));
    let done = sim.first_status_at(secs(11), |s| *s == OwnStatus::Disconnected);
    assert!(
        done.is_some_and(|at| at >= fired[0].0 && at <= secs(21)),
        "{:?}",
        sim.statuses
    );
    assert!(!sim.member_live());
}

#[test]
fn join_while_leaving_starts_after_the_leave() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(10));
    sim.leave();
    sim.join("m2");
    assert_eq!(sim.status(), &OwnStatus::Disconnecting);
    sim.run_until(secs(20));

    let sends = sim.requests_of(OwnAction::SendDelayedLeave);
    let joins = sim.requests_of(OwnAction::SendJoin);
    assert_eq!(joins.len(), 2);
    assert!(joins[1].at > sends[0].at);
    assert_eq!(joins[1].request.member_id(), "m2");
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    assert_eq!(sim.machine.member_id(), Some("m2"));
}

#[test]
fn leave_without_dead_man_switch_sends_a_plain_leave() {
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::Disallowed;
    sim.join_with(
        "m1",
        ServerCapabilities {
            delayed_events: false,
            ..ServerCapabilities::full()
        },
    );
    sim.run_until(secs(5));
    sim.leave();
    sim.run_until(secs(10));

    let leaves = sim.requests_of(OwnAction::SendLeave);
    assert_eq!(leaves.len(), 1);
    // Same duration as the join (the short one used without a dead-man switch).
    assert!(matches!(
        leaves[0].request.kind(),
        OwnRequestKind::SendLeave {
            sticky_duration_ms: 300_000,
            ..
        }
    ));
    assert_eq!(sim.status(), &OwnStatus::Disconnected);
    assert!(!sim.member_live());
}

#[test]
fn plain_leave_is_retried_through_errors() {
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::Disallowed;
    sim.join_with(
        "m1",
        ServerCapabilities {
            delayed_events: false,
            ..ServerCapabilities::full()
        },
    );
    sim.run_until(secs(5));
    sim.set_cond(secs(5), secs(20), Cond::ServerError);
    sim.leave();
    sim.run_until(secs(30));

    let leaves = sim.requests_of(OwnAction::SendLeave);
    assert!(leaves.len() >= 5, "retried: {}", leaves.len());
    assert!(
        leaves
            .windows(2)
            .all(|w| w[0].request.kind().txn_id() == w[1].request.kind().txn_id())
    );
    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Left { .. }))
            .len(),
        1
    );
    assert_eq!(sim.status(), &OwnStatus::Disconnected);
    assert!(!sim.member_live());
}

#[test]
fn unanswered_schedule_is_resolved_and_cancelled_before_the_next_join() {
    let mut sim = Sim::default_config();
    // The server schedules our delayed leave, but every answer is lost until 5 s.
    sim.set_cond(secs(0), secs(5), Cond::LoseAnswers);
    sim.join("m1");
    sim.run_until(secs(3));
    sim.leave();
    sim.run_until(secs(6));
    // The machine never learnt the delay id: it stopped waiting, the server still holds it.
    assert_eq!(sim.status(), &OwnStatus::Disconnected);
    assert_eq!(sim.server.live_delayed().len(), 1);
    let before = sim.requests.len();

    sim.join("m2");
    sim.run_until(secs(12));
    let requests: Vec<_> = sim.requests[before..].iter().map(|s| &s.request).collect();
    let actions: Vec<_> = requests.iter().map(|r| r.action()).collect();
    assert_eq!(
        actions[..4],
        [
            OwnAction::ScheduleDelayedLeave,
            OwnAction::CancelDelayedLeave,
            OwnAction::ScheduleDelayedLeave,
            OwnAction::SendJoin,
        ]
    );
    // The same transaction as before tells the id, which is then cancelled.
    assert_eq!(
        requests[0].kind().txn_id(),
        sim.requests[0].request.kind().txn_id()
    );
    assert_eq!(requests[0].member_id(), "m1");
    assert_eq!(requests[2].member_id(), "m2");
    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Cancelled { .. }))
            .len(),
        1
    );
    assert!(
        sim.server_events(|e| matches!(e, ServerEvent::Fired { .. }))
            .is_empty()
    );
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}
