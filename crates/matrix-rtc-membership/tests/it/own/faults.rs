//! Failures: rate limits, network errors, outages, lost answers, local timeouts, stale inputs.

use std::time::Instant;

use matrix_rtc_membership::{
    DelayId, JoinConfig, OwnAction, OwnError, OwnEvent, OwnMembership, OwnMembershipConfig,
    OwnRequestKind, OwnStatus, RejoinReason, RequestOutcome, ServerCapabilities,
};

use super::sim::{Cond, ServerEvent, Sim, ms, secs};

fn restart_times(sim: &Sim) -> Vec<std::time::Duration> {
    sim.requests_of(OwnAction::RestartDelayedLeave)
        .iter()
        .map(|s| s.at)
        .collect()
}

#[test]
fn rate_limited_restart_honours_retry_after() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    // The restart of 6 s gets 429 with Retry-After 2 s (answer at 6.1 s).
    sim.set_cond(secs(5), ms(6_500), Cond::RateLimited(Some(secs(2))));
    sim.run_until(secs(15));

    assert_eq!(
        restart_times(&sim)[..4],
        [secs(3), secs(6), ms(8_100), ms(11_100)]
    );
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

#[test]
fn rate_limited_without_retry_after_waits_five_seconds() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.set_cond(secs(5), ms(6_500), Cond::RateLimited(None));
    sim.run_until(secs(15));

    assert_eq!(restart_times(&sim)[..3], [secs(3), secs(6), ms(11_100)]);
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    assert_eq!(
        sim.statuses.len(),
        2,
        "no status change: {:?}",
        sim.statuses
    );
}

#[test]
fn network_errors_retry_with_bounded_budget_and_recover() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    // Connection refused from 5 s to 80 s.
    sim.set_cond(secs(5), secs(80), Cond::Refuse);
    sim.run_until(secs(120));

    let restarts = restart_times(&sim);
    let failed: Vec<_> = restarts
        .iter()
        .copied()
        .filter(|at| *at >= secs(6) && *at < secs(80))
        .collect();
    // The first failure, then 10 retries 3 s apart (the budget), then one every 10 s.
    let gaps: Vec<_> = failed.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[..10], [ms(3_001); 10]);
    assert!(
        gaps[10..].iter().all(|g| *g == ms(10_001)),
        "slower once the budget is used up: {gaps:?}"
    );
    assert!(sim.events.iter().any(|(_, e)| {
        *e == OwnEvent::RetriesExhausted {
            action: OwnAction::RestartDelayedLeave,
        }
    }));
    // The loop never ended: after the outage, the machine re-arms and re-joins.
    assert!(restarts.iter().any(|at| *at >= secs(80)));
    let back = sim.first_status_at(secs(80), |s| {
        *s == OwnStatus::Connected {
            dead_man_switch: true,
        }
    });
    assert!(
        back.is_some_and(|at| at < secs(91)),
        "reconnected within the slow retry wait: {back:?}"
    );
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    assert!(sim.member_live());
}

#[test]
fn scheduling_failures_report_an_error_while_retrying() {
    let mut sim = Sim::default_config();
    sim.set_cond(secs(0), secs(60), Cond::ServerError);
    sim.join("m1");
    sim.run_until(secs(40));

    let expected = OwnStatus::Error {
        error: OwnError::RetriesExhausted {
            action: OwnAction::ScheduleDelayedLeave,
            failures: 11,
        },
        retrying: true,
    };
    assert!(sim.was_ever(&expected), "statuses: {:?}", sim.statuses);
    assert!(
        sim.requests_of(OwnAction::SendJoin).is_empty(),
        "no join before the delayed leave"
    );
    // Every attempt reuses the transaction, so a server that did process one answers with it.
    let txns: Vec<_> = sim
        .requests_of(OwnAction::ScheduleDelayedLeave)
        .iter()
        .map(|s| s.request.kind().txn_id())
        .collect();
    assert!(txns.windows(2).all(|w| w[0] == w[1]));

    sim.run_until(secs(90));
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

#[test]
fn outage_longer_than_delay_reports_probably_left_then_rejoins() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.set_cond(secs(10), secs(40), Cond::Partition);
    sim.run_until(secs(60));

    // Last restart before the outage: 9 s, so the server may fire from 19 s on.
    let probably_left = sim.first_status_at(secs(0), |s| *s == OwnStatus::ProbablyLeft);
    assert_eq!(probably_left, Some(secs(19)));
    let fired = sim.server_events(|e| matches!(e, ServerEvent::Fired { .. }));
    assert_eq!(fired.len(), 1);
    assert!(fired[0].0 >= secs(19) && fired[0].0 < secs(40));
    // After the outage: a restart finds the delayed leave gone, a new one is armed, and we join
    // again with the same member id.
    // The retry budget was used up during the outage, so the next attempt comes within the
    // slower wait (10 s) after it ends.
    let reconnected = sim.first_status_at(secs(40), |s| {
        *s == OwnStatus::Connected {
            dead_man_switch: true,
        }
    });
    assert!(
        reconnected.is_some_and(|at| at < secs(51)),
        "{:?}",
        sim.statuses
    );
    assert!(
        sim.statuses
            .iter()
            .any(|(at, s)| *at >= secs(40) && *s == OwnStatus::Connecting)
    );
    let joins = sim.requests_of(OwnAction::SendJoin);
    assert_eq!(joins.len(), 2);
    assert_eq!(joins[1].request.member_id(), "m1");
    // Sync, back first, reports our membership gone (the restart's 404 would tell too).
    assert!(sim.events.iter().any(|(_, e)| *e
        == OwnEvent::Rejoining {
            reason: RejoinReason::MissingFromSync
        }));
    assert_eq!(sim.server.live_delayed().len(), 1);
    assert!(sim.member_live());
}

#[test]
fn short_blip_does_not_flap() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    // Shorter than D - R: one restart is lost, the next one gets through in time.
    sim.set_cond(secs(10), secs(14), Cond::Partition);
    sim.run_until(secs(60));

    assert_eq!(
        sim.statuses.len(),
        2,
        "never left connected: {:?}",
        sim.statuses
    );
    assert!(
        sim.server_events(|e| matches!(e, ServerEvent::Fired { .. }))
            .is_empty()
    );
    assert_eq!(sim.requests_of(OwnAction::SendJoin).len(), 1);
    assert_eq!(sim.requests_of(OwnAction::ScheduleDelayedLeave).len(), 1);
}

#[test]
fn lost_answers_never_create_a_second_delayed_leave() {
    let mut sim = Sim::default_config();
    // The server processes the schedule, but its answers are lost for 5 s.
    sim.set_cond(secs(0), secs(5), Cond::LoseAnswers);
    sim.join("m1");
    sim.run_until(secs(30));

    let schedules = sim.requests_of(OwnAction::ScheduleDelayedLeave);
    assert!(schedules.len() >= 3, "retried: {}", schedules.len());
    assert!(
        schedules
            .windows(2)
            .all(|w| w[0].request.kind().txn_id() == w[1].request.kind().txn_id())
    );
    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Scheduled { .. }))
            .len(),
        1
    );
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

#[test]
fn local_timeout_ignores_a_late_answer() {
    let t0 = Instant::now();
    let mut machine = OwnMembership::new("m.call#", OwnMembershipConfig::default());
    machine
        .join(JoinConfig::new("m1", ServerCapabilities::full()), t0)
        .unwrap();
    let first = machine.poll_request().unwrap();
    assert_eq!(first.deadline(), t0 + secs(2));
    assert_eq!(machine.next_deadline(), Some(first.deadline()));

    // The machine times it out itself, and retries at once with the same transaction.
    machine.handle_timeout(first.deadline());
    let retry = machine.poll_request().unwrap();
    assert_ne!(retry.id(), first.id());
    assert_eq!(retry.kind().txn_id(), first.kind().txn_id());

    // The late answer to the first attempt is ignored: nothing changes.
    let late = t0 + ms(2_500);
    machine.handle_response(
        first.id(),
        RequestOutcome::scheduled(DelayId::new("d1")),
        late,
    );
    assert!(machine.poll_request().is_none());
    assert_eq!(machine.status(), &OwnStatus::Connecting);

    // The retry's answer counts.
    machine.handle_response(
        retry.id(),
        RequestOutcome::scheduled(DelayId::new("d1")),
        late,
    );
    let join = machine.poll_request().unwrap();
    assert!(matches!(join.kind(), OwnRequestKind::SendJoin { .. }));
}

#[test]
fn over_calls_and_stale_inputs_are_harmless() {
    let t0 = Instant::now();
    let mut machine = OwnMembership::new("m.call#", OwnMembershipConfig::default());
    // Inputs before any join.
    machine.handle_timeout(t0);
    machine.leave(t0);
    machine.handle_own_membership_in_sync(false, t0);
    assert!(machine.poll_request().is_none());
    assert_eq!(machine.next_deadline(), None);
    assert_eq!(machine.status(), &OwnStatus::Disconnected);

    machine
        .join(JoinConfig::new("m1", ServerCapabilities::full()), t0)
        .unwrap();
    let schedule = machine.poll_request().unwrap();
    // Extra timeouts before the deadline change nothing.
    for _ in 0..3 {
        machine.handle_timeout(t0 + ms(10));
    }
    assert!(machine.poll_request().is_none());
    machine.handle_response(
        schedule.id(),
        RequestOutcome::scheduled(DelayId::new("d1")),
        t0 + ms(20),
    );
    let join = machine.poll_request().unwrap();
    // A duplicate answer, an answer to a request never made, and time going backwards.
    machine.handle_response(schedule.id(), RequestOutcome::NotFound, t0 + ms(30));
    machine.handle_response(join.id(), RequestOutcome::sent("$j"), t0 + ms(5));
    machine.handle_response(join.id(), RequestOutcome::Network, t0 + ms(40));
    assert!(machine.poll_request().is_none());
    assert_eq!(
        machine.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    // The restart is still due 3 s after the schedule's emission.
    assert_eq!(machine.next_deadline(), Some(t0 + secs(3)));
    let events: Vec<_> = std::iter::from_fn(|| machine.poll_event()).collect();
    assert_eq!(
        events,
        [
            OwnEvent::StatusChanged(OwnStatus::Connecting),
            OwnEvent::StatusChanged(OwnStatus::Connected {
                dead_man_switch: true
            }),
        ]
    );
}

#[test]
fn probably_left_goes_back_to_connected_when_a_late_restart_succeeds() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    // The server keeps restarting our delayed leave, but we hear nothing back for a while.
    sim.set_cond(secs(5), secs(15), Cond::LoseAnswers);
    sim.run_until(secs(30));

    let statuses: Vec<_> = sim.statuses.iter().map(|(_, s)| s.clone()).collect();
    assert_eq!(
        statuses,
        [
            OwnStatus::Connecting,
            OwnStatus::Connected {
                dead_man_switch: true
            },
            OwnStatus::ProbablyLeft,
            OwnStatus::Connected {
                dead_man_switch: true
            },
        ]
    );
    assert_eq!(
        sim.first_status_at(secs(0), |s| *s == OwnStatus::ProbablyLeft),
        Some(secs(13))
    );
    // The server never fired: no re-arm, no re-join.
    assert!(
        sim.server_events(|e| matches!(e, ServerEvent::Fired { .. }))
            .is_empty()
    );
    assert_eq!(sim.requests_of(OwnAction::ScheduleDelayedLeave).len(), 1);
    assert_eq!(sim.requests_of(OwnAction::SendJoin).len(), 1);
}

#[test]
fn the_machine_can_move_between_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<OwnMembership>();
    send_sync::<matrix_rtc_membership::OwnRequest>();
    send_sync::<OwnEvent>();
}

#[test]
fn extreme_config_and_server_values_do_not_panic() {
    let config = OwnMembershipConfig {
        delay_ms: u64::MAX,
        restart_interval_ms: u64::MAX,
        enforce_delay_margin: false,
        request_timeout_ms: u64::MAX,
        network_retry_wait_ms: u64::MAX,
        network_retry_budget: 0,
        rate_limit_default_wait_ms: u64::MAX,
        rate_limit_max_wait_ms: u64::MAX,
        rate_limit_budget: 0,
        exhausted_retry_wait_ms: u64::MAX,
        sticky_duration_ms: u64::MAX,
        no_switch_sticky_duration_ms: u64::MAX,
        refresh_at_percent: u8::MAX,
        sync_grace_ms: u64::MAX,
        new_devices_min_interval_ms: u64::MAX,
    };
    let t0 = Instant::now();
    let mut machine = OwnMembership::new("m.call#", config);
    machine
        .join(JoinConfig::new("m1", ServerCapabilities::full()), t0)
        .unwrap();
    let schedule = machine.poll_request().unwrap();
    // The delay is capped to a day.
    assert!(matches!(
        schedule.kind(),
        OwnRequestKind::ScheduleDelayedLeave {
            delay_ms: 86_400_000,
            sticky_duration_ms: 3_600_000,
            ..
        }
    ));
    let huge = std::time::Duration::from_secs(u64::MAX);
    machine.handle_response(
        schedule.id(),
        RequestOutcome::RateLimited {
            retry_after: Some(huge),
        },
        t0,
    );
    machine.handle_response(
        schedule.id(),
        RequestOutcome::DelayTooLarge {
            max_delay_ms: Some(u64::MAX),
        },
        t0,
    );
    let deadline = machine.next_deadline().unwrap();
    assert!(deadline <= t0 + secs(86_400));
    machine.handle_timeout(deadline);
    let retry = machine.poll_request().unwrap();
    machine.handle_response(
        retry.id(),
        RequestOutcome::DelayTooLarge {
            max_delay_ms: Some(0),
        },
        deadline,
    );
    assert!(matches!(
        machine.status(),
        OwnStatus::Connecting | OwnStatus::Error { .. }
    ));
    let join = machine.poll_request().expect("no switch: join");
    assert_eq!(join.action(), OwnAction::SendJoin);
}

/// A schedule that used up its retry budget on 5xx and is then refused (delayed events
/// disallowed): the membership goes on without a dead-man switch, and the status says so
/// rather than a stale "retries exhausted" (found by the whole-system simulation, seed 3559).
#[test]
fn a_refusal_after_exhausted_schedule_retries_is_not_an_error() {
    let now = Instant::now();
    let config = OwnMembershipConfig::default();
    let budget = config.network_retry_budget;
    let mut machine = OwnMembership::new("m.call#ROOM", config);
    machine
        .join(JoinConfig::new("m1", ServerCapabilities::full()), now)
        .expect("joins");
    let mut at = now;
    let mut failures = 0;
    loop {
        let request = machine.poll_request().expect("a request");
        match request.kind() {
            OwnRequestKind::ScheduleDelayedLeave { .. } if failures <= budget => {
                failures += 1;
                let outcome = RequestOutcome::Http {
                    status: 503,
                    errcode: None,
                };
                machine.handle_response(request.id(), outcome, at);
                at = machine.next_deadline().expect("a retry");
                machine.handle_timeout(at);
            }
            OwnRequestKind::ScheduleDelayedLeave { .. } => {
                assert!(matches!(
                    machine.status(),
                    OwnStatus::Error {
                        error: OwnError::RetriesExhausted { .. },
                        retrying: true
                    }
                ));
                machine.handle_response(request.id(), RequestOutcome::Unsupported, at);
            }
            OwnRequestKind::SendJoin { .. } => {
                machine.handle_response(request.id(), RequestOutcome::sent("$join"), at);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        machine.status(),
        &OwnStatus::Connected {
            dead_man_switch: false
        }
    );
}
