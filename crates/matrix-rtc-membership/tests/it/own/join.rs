//! Joining: delayed leave first, capabilities, delay limits, refusals.

use matrix_rtc_membership::{
    JoinConfig, JoinError, OwnAction, OwnError, OwnEvent, OwnMembership, OwnMembershipConfig,
    OwnRequestKind, OwnStatus, RequestOutcome, ServerCapabilities, UnavailableReason,
};

use super::sim::{DelayedMode, ServerEvent, Sim, ms, secs};

#[test]
fn join_schedules_delayed_leave_before_join() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    // Step by step: the schedule reaches the server, its answer comes back, the join goes out.
    let mut steps = 0;
    while sim.requests_of(OwnAction::SendJoin).is_empty() {
        assert!(sim.step());
        steps += 1;
        assert!(steps <= 2, "one step per hop");
    }
    assert_eq!(sim.elapsed(), ms(100));
    sim.run_for(secs(1));

    let actions: Vec<_> = sim.requests.iter().map(|s| s.request.action()).collect();
    assert_eq!(
        actions[..2],
        [OwnAction::ScheduleDelayedLeave, OwnAction::SendJoin]
    );
    let schedule = &sim.requests[0];
    let join = &sim.requests[1];
    assert_eq!(schedule.at, ms(0));
    // The join goes out only once the schedule's answer is back (one round trip).
    assert_eq!(join.at, ms(100));
    assert!(matches!(
        schedule.request.kind(),
        OwnRequestKind::ScheduleDelayedLeave {
            delay_ms: 10_000,
            sticky_duration_ms: 3_600_000,
            ..
        }
    ));
    assert!(matches!(
        join.request.kind(),
        OwnRequestKind::SendJoin {
            sticky_duration_ms: 3_600_000,
            ..
        }
    ));
    assert_eq!(join.request.member_id(), "m1");
    assert_eq!(join.request.slot_id(), "m.call#!room:example.org");

    let server: Vec<_> = sim.server.log.iter().map(|(_, e)| e.clone()).collect();
    assert!(matches!(
        server[0],
        ServerEvent::Scheduled {
            delay_ms: 10_000,
            ..
        }
    ));
    assert!(matches!(
        server[1],
        ServerEvent::Joined { refresh: false, .. }
    ));
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    assert_eq!(
        sim.statuses
            .iter()
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>(),
        [
            OwnStatus::Connecting,
            OwnStatus::Connected {
                dead_man_switch: true
            }
        ]
    );
}

#[test]
fn no_delayed_event_support_joins_without_dead_man_switch() {
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::Disallowed;
    sim.join("m1");
    sim.run_for(secs(60));

    assert!(sim.requests_of(OwnAction::ScheduleDelayedLeave).is_empty());
    assert!(sim.requests_of(OwnAction::RestartDelayedLeave).is_empty());
    let joins = sim.requests_of(OwnAction::SendJoin);
    assert_eq!(joins.len(), 1);
    assert_eq!(
        joins[0].at,
        ms(0),
        "nothing to wait for: the join goes out at once"
    );
    // Without a dead-man switch, a shorter sticky duration bounds a ghost after a crash.
    assert!(matches!(
        joins[0].request.kind(),
        OwnRequestKind::SendJoin {
            sticky_duration_ms: 300_000,
            ..
        }
    ));
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
    assert!(sim.events.iter().any(|(_, e)| {
        *e == OwnEvent::DeadManSwitchUnavailable {
            reason: UnavailableReason::Capability,
        }
    }));
    assert!(sim.member_live());
}

#[test]
fn disallowed_scheduling_joins_without_dead_man_switch() {
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::Disallowed;
    // The capability claims support, but the server refuses (403 "disallowed").
    sim.join_with("m1", ServerCapabilities::full());
    sim.run_for(secs(30));

    assert_eq!(sim.requests_of(OwnAction::ScheduleDelayedLeave).len(), 1);
    assert_eq!(sim.requests_of(OwnAction::SendJoin).len(), 1);
    assert!(sim.requests_of(OwnAction::RestartDelayedLeave).is_empty());
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
    assert!(sim.events.iter().any(|(_, e)| {
        *e == OwnEvent::DeadManSwitchUnavailable {
            reason: UnavailableReason::Refused,
        }
    }));
    assert!(sim.member_live());
}

#[test]
fn event_id_answer_to_a_schedule_means_no_switch_and_the_join_follows_the_leave() {
    let mut sim = Sim::default_config();
    sim.server.mode = DelayedMode::IgnoresDelay;
    sim.join_with("m1", ServerCapabilities::full());
    sim.run_for(secs(30));

    // The server sent our "delayed" leave at once; the join comes after it, so we are in.
    let server: Vec<_> = sim.server.log.iter().map(|(_, e)| e.clone()).collect();
    assert!(matches!(server[0], ServerEvent::LeftAtOnce { .. }));
    assert!(matches!(server[1], ServerEvent::Joined { .. }));
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
    assert!(sim.events.iter().any(|(_, e)| {
        *e == OwnEvent::DeadManSwitchUnavailable {
            reason: UnavailableReason::DelayIgnored,
        }
    }));
    assert!(sim.requests_of(OwnAction::RestartDelayedLeave).is_empty());
    assert!(sim.member_live());
}

#[test]
fn event_id_answer_to_a_rearm_rejoins_without_switch() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(5));
    // The server loses our delayed leave and, from now on, ignores the delay.
    sim.server.lose_delayed_events();
    sim.server.mode = DelayedMode::IgnoresDelay;
    sim.run_until(secs(30));

    let server: Vec<_> = sim.server.log.iter().map(|(_, e)| e.clone()).collect();
    let at_once = server
        .iter()
        .position(|e| matches!(e, ServerEvent::LeftAtOnce { .. }))
        .expect("leave at once");
    assert!(
        server[at_once..]
            .iter()
            .any(|e| matches!(e, ServerEvent::Joined { refresh: false, .. })),
        "the leave sent at once is followed by a re-join: {server:?}"
    );
    assert!(sim.events.iter().any(|(_, e)| {
        matches!(
            e,
            OwnEvent::Rejoining {
                reason: matrix_rtc_membership::RejoinReason::DelayedLeaveFired
            }
        )
    }));
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
    assert!(sim.member_live());
}

#[test]
fn delay_above_server_max_is_lowered() {
    let mut sim = Sim::default_config();
    sim.server.max_delay_ms = Some(6_000);
    sim.join("m1");
    sim.run_for(secs(20));

    let schedules = sim.requests_of(OwnAction::ScheduleDelayedLeave);
    assert_eq!(schedules.len(), 1);
    assert!(matches!(
        schedules[0].request.kind(),
        OwnRequestKind::ScheduleDelayedLeave {
            delay_ms: 6_000,
            ..
        }
    ));
    // D >= 3R is kept: the restart interval follows the lowered delay (2 s instead of 3 s).
    let restarts: Vec<_> = sim
        .requests_of(OwnAction::RestartDelayedLeave)
        .iter()
        .map(|s| s.at)
        .collect();
    assert_eq!(restarts[..3], [secs(2), secs(4), secs(6)]);
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

#[test]
fn delay_too_large_error_uses_the_max_and_retries_once() {
    let mut sim = Sim::default_config();
    sim.server.max_delay_ms = Some(6_000);
    // The capability does not tell the maximum; the error does.
    sim.join_with("m1", ServerCapabilities::full());
    sim.run_for(secs(20));

    let delays: Vec<_> = sim
        .requests_of(OwnAction::ScheduleDelayedLeave)
        .iter()
        .map(|s| match s.request.kind() {
            OwnRequestKind::ScheduleDelayedLeave { delay_ms, .. } => *delay_ms,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(delays, [10_000, 6_000]);
    assert!(
        sim.events
            .iter()
            .any(|(_, e)| *e == OwnEvent::DelayLowered { delay_ms: 6_000 })
    );
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

#[test]
fn delay_too_large_without_a_max_joins_without_switch() {
    let mut sim = Sim::default_config();
    sim.server.max_delay_ms = Some(6_000);
    sim.server.tells_max = false;
    sim.join_with("m1", ServerCapabilities::full());
    sim.run_for(secs(20));

    assert_eq!(sim.requests_of(OwnAction::ScheduleDelayedLeave).len(), 1);
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
    assert!(sim.events.iter().any(|(_, e)| {
        *e == OwnEvent::DeadManSwitchUnavailable {
            reason: UnavailableReason::DelayTooLarge,
        }
    }));
}

#[test]
fn capabilities_update_arms_a_switch_later() {
    let mut sim = Sim::default_config();
    let no_delayed = ServerCapabilities {
        delayed_events: false,
        ..ServerCapabilities::full()
    };
    sim.join_with("m1", no_delayed);
    sim.run_for(secs(5));
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );

    let now = sim.now;
    sim.machine
        .handle_capabilities(ServerCapabilities::full(), now);
    sim.run_for(secs(10));
    assert_eq!(sim.requests_of(OwnAction::ScheduleDelayedLeave).len(), 1);
    assert_eq!(
        sim.requests_of(OwnAction::SendJoin).len(),
        1,
        "no second join is needed"
    );
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

#[test]
fn join_twice_is_a_no_op_and_another_member_is_refused() {
    let now = std::time::Instant::now();
    let mut machine = OwnMembership::new("m.call#", OwnMembershipConfig::default());
    machine
        .join(JoinConfig::new("m1", ServerCapabilities::full()), now)
        .unwrap();
    let first = machine.poll_request().expect("a schedule");
    assert_eq!(first.action(), OwnAction::ScheduleDelayedLeave);

    machine
        .join(JoinConfig::new("m1", ServerCapabilities::full()), now)
        .unwrap();
    assert!(
        machine.poll_request().is_none(),
        "joining again changes nothing"
    );
    assert_eq!(
        machine.join(JoinConfig::new("m2", ServerCapabilities::full()), now),
        Err(JoinError::AlreadyJoined)
    );
    assert_eq!(
        machine.join(JoinConfig::new("", ServerCapabilities::full()), now),
        Err(JoinError::EmptyMemberId)
    );
    assert_eq!(machine.member_id(), Some("m1"));
}

#[test]
fn rejected_join_rests_in_error_and_cleans_up() {
    let mut sim = Sim::default_config();
    sim.server.join_answer = Some(RequestOutcome::Http {
        status: 403,
        errcode: Some("M_FORBIDDEN".into()),
    });
    sim.join("m1");
    sim.run_for(secs(30));

    let expected = OwnStatus::Error {
        error: OwnError::JoinRejected {
            status: 403,
            errcode: Some("M_FORBIDDEN".into()),
        },
        retrying: false,
    };
    assert_eq!(sim.status(), &expected);
    // The delayed leave scheduled for it is cancelled, and the machine rests.
    assert!(
        sim.server
            .log
            .iter()
            .any(|(_, e)| matches!(e, ServerEvent::Cancelled { .. }))
    );
    assert!(sim.server.live_delayed().is_empty());
    assert_eq!(sim.requests_of(OwnAction::SendJoin).len(), 1);
    assert_eq!(sim.machine.next_deadline(), None);

    // `leave` clears the error.
    let now = sim.now;
    sim.machine.leave(now);
    assert_eq!(sim.machine.status(), &OwnStatus::Disconnected);
}
