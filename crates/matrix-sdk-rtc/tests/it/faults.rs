//! Faults a real server produces: a restart in the middle of a call, and rate-limited
//! delayed-event management. Encrypted rooms, real clients, a real Synapse.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{FutureExt as _, StreamExt as _};
use matrix_sdk_rtc::{JoinOptions, OwnMembershipConfig, OwnStatus, SessionChange};
use rtc_test_homeserver::{HomeserverConfig, TestHomeserver, TestUser};

use super::{
    calls::support::{
        EVENTUALLY, delayed_events_of, encrypted_room, fast_timings, has_user, init_tracing,
        next_matching, session_change, sqlite_peer, wait_for_participants,
    },
    encrypted::events_of,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_call_ends_with_the_member_joined_once() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(sqlite_peer(&hs, &alice), sqlite_peer(&hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    let before = wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    let member_id = before[0].member_id.clone();

    // The server goes away. Alice cannot restart her delayed leave: once it could have
    // fired, her status says she has probably left.
    let mut status = a_call.subscribe_own_status();
    let mut changes = b.rtc.subscribe_session_changes();
    hs.stop().await.expect("synapse stops");
    let stopped = Instant::now();
    next_matching(&mut status, "alice's status to say probably left", |s| {
        (*s == OwnStatus::ProbablyLeft).then_some(())
    })
    .await;
    let probably_left_after = stopped.elapsed();

    // It comes back (and fires the overdue delayed leave at startup, unless alice's restart
    // gets there first); alice gets back in.
    hs.restart().await.expect("synapse starts again");
    let back = Instant::now();
    let outage = stopped.elapsed();
    next_matching(&mut status, "alice connected again", |s| {
        (*s == OwnStatus::Connected {
            dead_man_switch: true,
        })
        .then_some(())
    })
    .await;
    let reconnected_after = back.elapsed();

    // Connected again means alice's last membership event is final: her old join (a restart
    // went through) or a new join (the leave had fired). Both clients end with exactly one
    // entry for alice, carrying that event.
    let newest = events_of(&hs, &bob, room_id.as_str(), &alice.user_id)
        .await
        .into_iter()
        .find(|event| event["type"] == "m.room.encrypted")
        .expect("alice's membership events");
    let current = newest["event_id"].as_str().expect("an event id").to_owned();
    let own = wait_for_participants(&a_call, "alice's current membership at alice's", |p| {
        p.iter().any(|p| p.event_id == current.as_str())
    })
    .await;
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0].member_id, member_id, "a rejoin keeps the member id");
    let after = wait_for_participants(&b_call, "alice's current membership at bob's", |p| {
        p.iter().any(|p| p.event_id == current.as_str())
    })
    .await;
    let seen_by_bob_after = back.elapsed();
    let alices = after
        .iter()
        .filter(|p| p.user_id.as_str() == alice.user_id)
        .count();
    assert_eq!(alices, 1, "one entry for alice: {after:?}");
    let delayed = delayed_events_of(&hs, &alice).await;
    assert_eq!(delayed.len(), 1, "one delayed leave armed: {delayed:?}");
    let mut seen_by_bob = Vec::new();
    while let Some(Some(change)) = changes.next().now_or_never() {
        seen_by_bob.push(change);
    }
    let rejoined = current != before[0].event_id.as_str();
    eprintln!(
        "server restart: probably left {probably_left_after:?} after the stop; outage \
         {outage:?}; connected again {reconnected_after:?} and seen by bob \
         {seen_by_bob_after:?} after the server was back; rejoined: {rejoined}; bob saw: \
         {seen_by_bob:?}"
    );
}

/// One request in Synapse's access log.
#[derive(Debug)]
struct Access {
    status: u16,
    path: String,
}

/// The delayed-event management requests (`POST …/delayed_events/…`) `user` made so far,
/// in order, from the server's access log.
fn management_requests(hs: &TestHomeserver, user: &TestUser) -> Vec<Access> {
    let log = std::fs::read_to_string(hs.log_path()).unwrap_or_default();
    let who = format!("{{{}}}", user.user_id);
    log.lines()
        .filter(|line| line.contains("Processed request") && line.contains(&who))
        .filter_map(|line| {
            let (head, request) = line.split_once(" \"POST ")?;
            let path = request.split_whitespace().next()?;
            if !path.contains("/delayed_events/") {
                return None;
            }
            let status = head.split_whitespace().last()?.parse().ok()?;
            Some(Access {
                status,
                path: path.to_owned(),
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_delayed_event_management_keeps_the_membership() {
    init_tracing();
    // One management request per 5 s, while alice wants to restart every second.
    let config = HomeserverConfig::default().with_rc_delayed_event_mgmt(0.2, 1);
    let hs = TestHomeserver::start_with(config)
        .await
        .expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(sqlite_peer(&hs, &alice), sqlite_peer(&hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    let timings = OwnMembershipConfig {
        delay_ms: 15_000,
        restart_interval_ms: 1_000,
        ..OwnMembershipConfig::default()
    };
    a_call
        .join(JoinOptions::default().with_timings(timings))
        .await
        .expect("alice joins");
    wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;

    // Everything alice's status and bob's view go through from now on.
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let mut status = a_call.subscribe_own_status();
    let recorder = {
        let statuses = statuses.clone();
        tokio::spawn(async move {
            while let Some(s) = status.next().await {
                statuses.lock().unwrap().push(s);
            }
        })
    };
    let mut changes = b.rtc.subscribe_session_changes();
    let watched = Instant::now();

    // Wait until the server has refused alice's restarts a few times.
    let deadline = Instant::now() + EVENTUALLY * 3;
    let requests = loop {
        let requests = management_requests(&hs, &alice);
        if requests.iter().filter(|r| r.status == 429).count() >= 3 {
            break requests;
        }
        assert!(
            Instant::now() < deadline,
            "the server never rate limited alice: {requests:?}"
        );
        // Polling the server's log file: there is no event to await for a line in it.
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let window = watched.elapsed();
    recorder.abort();

    // Retry-after honoured: a refused restart is retried when the server allows it, so it
    // is never refused twice in a row (each delayed leave has its own path).
    for pair in requests.windows(2) {
        assert!(
            !(pair[0].status == 429 && pair[1].status == 429 && pair[0].path == pair[1].path),
            "retried before the server's retry-after: {requests:?}"
        );
    }
    let accepted = requests.iter().filter(|r| r.status == 200).count();
    assert!(accepted >= 2, "restarts still go through: {requests:?}");

    // No flapping: alice stayed connected with an armed dead-man switch, and bob never saw
    // her leave.
    let seen = statuses.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| *s
            == OwnStatus::Connected {
                dead_man_switch: true
            }),
        "alice's status flapped: {seen:?}"
    );
    assert_eq!(
        a_call.own_status(),
        OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    while let Some(Some(update)) = changes.next().now_or_never() {
        let change = session_change(&update);
        assert!(
            !matches!(change, SessionChange::Left { participant, .. }
                if participant.user_id.as_str() == alice.user_id),
            "bob saw alice leave: {change:?}"
        );
    }
    assert!(has_user(&b_call.participants(), &alice.user_id));
    let refused = requests.iter().filter(|r| r.status == 429).count();
    eprintln!(
        "rate limit: {} management requests in {window:?}: {accepted} accepted, {refused} \
         refused with 429; alice's status: {seen:?}",
        requests.len()
    );
    drop(a);
    drop(b);
}
