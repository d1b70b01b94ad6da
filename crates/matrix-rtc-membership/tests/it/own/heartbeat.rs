//! The heartbeat: restarts, re-arming, re-joining, refresh, and what a crash leaves behind.

use std::time::Instant;

use matrix_rtc_membership::{
    DelayId, JoinConfig, OwnAction, OwnEvent, OwnMembership, OwnMembershipConfig, OwnRequest,
    OwnStatus, RejoinReason, RequestOutcome, ServerCapabilities,
};

use super::sim::{Cond, ServerEvent, Sim, ms, secs};

#[test]
fn restarts_every_interval() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(60));

    let restarts: Vec<_> = sim
        .requests_of(OwnAction::RestartDelayedLeave)
        .iter()
        .map(|s| s.at)
        .collect();
    assert_eq!(restarts.len(), 20);
    // Counted from the schedule's emission (t = 0), every R = 3 s exactly.
    for (i, at) in restarts.iter().enumerate() {
        assert_eq!(*at, secs(3) * (i as u32 + 1));
    }
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
    assert_eq!(sim.statuses.len(), 2, "no flapping: {:?}", sim.statuses);
    assert_eq!(sim.requests_of(OwnAction::SendJoin).len(), 1);
}

#[test]
fn restart_timeout_is_shorter_than_the_time_left_before_fire() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    // The restart of t = 3 s succeeds (the server may fire from 13 s on); then nothing gets
    // through.
    sim.set_cond(secs(5), secs(100), Cond::Partition);
    sim.run_until(secs(14));

    let restarts: Vec<_> = sim
        .requests_of(OwnAction::RestartDelayedLeave)
        .iter()
        .map(|s| (s.at, s.request.deadline() - sim.start))
        .collect();
    // Regular restart at 6 s, timeouts retried at once at 8 s and 10 s, and the one of 12 s
    // only gets the 1 s left before the server could fire.
    assert_eq!(
        restarts,
        [
            (secs(3), secs(5)),
            (secs(6), secs(8)),
            (secs(8), secs(10)),
            (secs(10), secs(12)),
            (secs(12), secs(13)),
            (secs(13), secs(15)),
        ]
    );
    assert_eq!(
        sim.first_status_at(secs(0), |s| *s == OwnStatus::ProbablyLeft),
        Some(secs(13))
    );
}

#[test]
fn restart_404_rearms_a_new_delayed_leave() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(5));
    // The server loses our delayed leave without firing it: the restart of 6 s gets 404.
    sim.server.lose_delayed_events();
    sim.run_until(secs(30));

    let scheduled = sim.server_events(|e| matches!(e, ServerEvent::Scheduled { .. }));
    assert_eq!(scheduled.len(), 2);
    assert_eq!(
        scheduled[1].0,
        ms(6_150),
        "404 at 6.1 s, new schedule reaches the server 50 ms later"
    );
    // It could not have fired (before its earliest firing time): no re-join needed.
    assert_eq!(sim.requests_of(OwnAction::SendJoin).len(), 1);
    assert!(sim.server.live_delayed().len() == 1);
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    assert!(sim.member_live());
}

#[test]
fn restart_conflict_rearms_without_rejoin() {
    let mut sim = Sim::default_config();
    sim.server.answers_conflict = true;
    sim.join("m1");
    sim.run_until(secs(5));
    sim.server.cancel_all_delayed();
    sim.run_until(secs(30));

    assert!(
        sim.answers
            .iter()
            .any(|(_, _, a)| *a == RequestOutcome::Conflict)
    );
    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Scheduled { .. }))
            .len(),
        2
    );
    assert_eq!(sim.requests_of(OwnAction::SendJoin).len(), 1);
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

#[test]
fn missing_from_sync_rejoins_with_same_member_id() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(20));
    // Our membership disappears without our delayed leave (say, another client's leave).
    sim.server.remove_member("m1");
    sim.run_until(secs(30));

    let joins = sim.requests_of(OwnAction::SendJoin);
    assert_eq!(joins.len(), 2);
    assert_eq!(joins[1].request.member_id(), "m1");
    // The sync tick of 21 s sees it gone; its report arrives 50 ms later.
    assert_eq!(joins[1].at, ms(21_050));
    assert!(sim.events.iter().any(|(_, e)| *e
        == OwnEvent::Rejoining {
            reason: RejoinReason::MissingFromSync
        }));
    // The delayed leave was armed and confirmed all along: no new one.
    assert_eq!(sim.requests_of(OwnAction::ScheduleDelayedLeave).len(), 1);
    assert!(sim.member_live());
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

/// Joins on a bare machine and answers the schedule and the join at `now`.
fn joined_machine(config: OwnMembershipConfig, now: Instant) -> OwnMembership {
    let mut machine = OwnMembership::new("m.call#", config);
    machine
        .join(JoinConfig::new("m1", ServerCapabilities::full()), now)
        .unwrap();
    let schedule = machine.poll_request().unwrap();
    machine.handle_response(
        schedule.id(),
        RequestOutcome::scheduled(DelayId::new("d1")),
        now,
    );
    let join = machine.poll_request().unwrap();
    assert_eq!(join.action(), OwnAction::SendJoin);
    machine.handle_response(join.id(), RequestOutcome::sent("$j"), now);
    assert_eq!(
        machine.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    machine
}

/// Answers every restart with success; returns the other requests.
fn answer_restarts(machine: &mut OwnMembership, now: Instant) -> Vec<OwnRequest> {
    let mut others = Vec::new();
    while let Some(request) = machine.poll_request() {
        if request.action() == OwnAction::RestartDelayedLeave {
            machine.handle_response(request.id(), RequestOutcome::ok(), now);
        } else {
            others.push(request);
        }
    }
    others
}

#[test]
fn stale_sync_right_after_join_does_not_rejoin() {
    let t0 = Instant::now();
    let mut machine = joined_machine(OwnMembershipConfig::default(), t0);

    // A sync response older than the join: ignored within the grace period.
    machine.handle_own_membership_in_sync(false, t0 + ms(500));
    assert!(answer_restarts(&mut machine, t0 + ms(500)).is_empty());
    assert_eq!(
        machine.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );

    // Still missing once the grace (10 s) has passed: re-join.
    let mut now = t0;
    while now < t0 + secs(10) {
        now = machine.next_deadline().unwrap().min(t0 + secs(10));
        machine.handle_timeout(now);
        assert!(answer_restarts(&mut machine, now).is_empty());
    }
    machine.handle_own_membership_in_sync(false, now);
    let rejoin = answer_restarts(&mut machine, now);
    assert_eq!(rejoin.len(), 1);
    assert_eq!(rejoin[0].action(), OwnAction::SendJoin);
    assert_eq!(machine.status(), &OwnStatus::Connecting);
    machine.handle_response(rejoin[0].id(), RequestOutcome::sent("$j2"), now);

    // Never seen since: the grace doubles (20 s) before the next re-join.
    machine.handle_own_membership_in_sync(false, now + secs(15));
    assert!(answer_restarts(&mut machine, now + secs(15)).is_empty());
    machine.handle_own_membership_in_sync(false, now + secs(20));
    let again = answer_restarts(&mut machine, now + secs(20));
    assert_eq!(
        again.iter().map(OwnRequest::action).collect::<Vec<_>>(),
        [OwnAction::SendJoin]
    );
}

#[test]
fn missing_from_sync_while_a_refresh_is_in_flight_does_not_rejoin() {
    let t0 = Instant::now();
    let config = OwnMembershipConfig {
        sticky_duration_ms: 60_000,
        ..OwnMembershipConfig::default()
    };
    let mut machine = joined_machine(config, t0);
    machine.handle_own_membership_in_sync(true, t0 + secs(1));

    // Run to the refresh (30 s), answering restarts.
    let mut now;
    let refresh = loop {
        now = machine.next_deadline().unwrap();
        machine.handle_timeout(now);
        let others = answer_restarts(&mut machine, now);
        if let Some(r) = others.into_iter().next() {
            break r;
        }
    };
    assert_eq!(refresh.action(), OwnAction::RefreshJoin);
    assert_eq!(now, t0 + secs(30));

    machine.handle_own_membership_in_sync(false, now);
    assert!(
        answer_restarts(&mut machine, now).is_empty(),
        "the refresh re-adds us anyway"
    );
    machine.handle_response(refresh.id(), RequestOutcome::sent("$r"), now);
    assert_eq!(
        machine.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

#[test]
fn refresh_before_sticky_expiry_with_same_duration() {
    let config = OwnMembershipConfig {
        sticky_duration_ms: 60_000,
        ..OwnMembershipConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.join("m1");
    sim.run_until(secs(200));

    let joins = sim.server_events(|e| matches!(e, ServerEvent::Joined { .. }));
    let times: Vec<_> = joins.iter().map(|(at, _)| *at).collect();
    // The join (sent at 100 ms, arriving at 150 ms), then a refresh every 30 s (50 %).
    assert_eq!(
        times,
        [
            ms(150),
            ms(30_150),
            ms(60_150),
            ms(90_150),
            ms(120_150),
            ms(150_150),
            ms(180_150)
        ]
    );
    for (_, event) in &joins[1..] {
        assert_eq!(
            *event,
            ServerEvent::Joined {
                member_id: "m1".into(),
                sticky_duration_ms: 60_000,
                refresh: true
            }
        );
    }
    assert!(sim.member_live());
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}

#[test]
fn refresh_at_75_percent_when_configured() {
    let config = OwnMembershipConfig {
        sticky_duration_ms: 60_000,
        refresh_at_percent: 90,
        ..OwnMembershipConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.join("m1");
    sim.run_until(secs(50));
    let refreshes = sim.requests_of(OwnAction::RefreshJoin);
    // 90 % is clamped to 75 %: 45 s after the join's emission (100 ms).
    assert_eq!(
        refreshes.iter().map(|s| s.at).collect::<Vec<_>>(),
        [ms(45_100)]
    );
}

#[test]
fn refresh_failures_are_retried_before_expiry() {
    let config = OwnMembershipConfig {
        sticky_duration_ms: 60_000,
        ..OwnMembershipConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.join("m1");
    // Every refresh fails with 503 from 29 s to 45 s.
    let unavailable = RequestOutcome::Http {
        status: 503,
        errcode: None,
    };
    sim.server
        .failing
        .push((OwnAction::RefreshJoin, secs(29), secs(45), unavailable));
    let mut sampled = 0;
    for t in 1..=70 {
        sim.run_until(secs(t));
        assert!(sim.member_live(), "our membership lapsed at {t} s");
        sampled += 1;
    }
    assert_eq!(sampled, 70);
    let refreshes: Vec<_> = sim
        .requests_of(OwnAction::RefreshJoin)
        .iter()
        .map(|s| s.at)
        .collect();
    assert!(refreshes.len() > 2, "refresh retried: {refreshes:?}");
    assert!(
        refreshes.windows(2).all(|w| w[1] - w[0] >= secs(3)),
        "retries wait: {refreshes:?}"
    );
    // The first refresh that got through came after the failures, before the join expired.
    let refreshed = sim.server_events(|e| matches!(e, ServerEvent::Joined { refresh: true, .. }));
    assert!(
        refreshed[0].0 >= secs(45) && refreshed[0].0 < ms(60_150),
        "{refreshed:?}"
    );
}

#[test]
fn crash_lets_the_server_fire_the_leave_within_the_delay() {
    let mut sim = Sim::default_config();
    sim.join("m1");
    sim.run_until(secs(20));
    assert!(sim.member_live());
    let crashed_at = sim.elapsed();
    sim.crash();
    sim.run_until(secs(60));

    let fired = sim.server_events(|e| matches!(e, ServerEvent::Fired { .. }));
    assert_eq!(fired.len(), 1);
    let delay = ms(sim.machine.config().delay_ms);
    // The last restart (18 s) reached the server at 18.05 s: fired 10 s later.
    assert_eq!(fired[0].0, ms(28_050));
    assert!(fired[0].0 <= crashed_at + delay + sim.latency);
    assert!(!sim.member_live());
}

#[test]
fn restart_404_after_the_firing_time_rejoins_without_waiting_for_sync() {
    let mut sim = Sim::default_config();
    sim.sync_interval = None;
    sim.join("m1");
    sim.set_cond(secs(10), secs(25), Cond::Partition);
    sim.run_until(secs(45));

    assert_eq!(
        sim.server_events(|e| matches!(e, ServerEvent::Fired { .. }))
            .len(),
        1
    );
    assert!(
        sim.answers
            .iter()
            .any(|(at, _, a)| *at >= secs(25) && *a == RequestOutcome::NotFound)
    );
    assert!(sim.events.iter().any(|(_, e)| *e
        == OwnEvent::Rejoining {
            reason: RejoinReason::DelayedLeaveFired
        }));
    let joins = sim.requests_of(OwnAction::SendJoin);
    assert_eq!(joins.len(), 2);
    assert_eq!(joins[1].request.member_id(), "m1");
    assert!(sim.member_live());
    assert_eq!(
        sim.status(),
        &OwnStatus::Connected {
            dead_man_switch: true
        }
    );
}
