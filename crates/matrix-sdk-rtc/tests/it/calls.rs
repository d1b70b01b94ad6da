//! Live call membership between real clients on a real Synapse (unencrypted rooms).
//!
//! Every test starts its own homeserver (tests run in parallel processes), registers fresh
//! users, and drives real `matrix_sdk::Client`s with their sync loops and our driver.
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use matrix_sdk_rtc::{JoinOptions, LeftReason, OwnMembershipConfig, OwnStatus, SessionChange};
use rtc_test_homeserver::TestHomeserver;
use serde_json::json;

mod rules;
pub(crate) mod support;
use self::support::{
    Peer, diagnostic, fast_timings, has_user, init_tracing, next_matching, session_change,
    shared_room, wait_for_participants,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_seen_by_the_others() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob, carol) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
        hs.register_user("carol").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob, &carol]).await;
    let (a, b, c) = tokio::join!(
        Peer::start(&hs, &alice),
        Peer::start(&hs, &bob),
        Peer::start(&hs, &carol)
    );

    let a_call = a.room_call(&room_id).await;
    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    assert!(matches!(
        a_call.own_status(),
        OwnStatus::Connected {
            dead_man_switch: true
        }
    ));

    let own = wait_for_participants(&a_call, "alice's own entry", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    let member_id = own[0].member_id.clone();
    for peer in [&b, &c] {
        let call = peer.room_call(&room_id).await;
        let seen =
            wait_for_participants(&call, "alice in the call", |p| has_user(p, &alice.user_id))
                .await;
        assert_eq!(seen.len(), 1);
        let entry = &seen[0];
        assert_eq!(entry.device_id.as_str(), alice.device_id);
        assert_eq!(entry.member_id, member_id);
        let transport = entry.own_transport().expect("alice publishes a transport");
        assert_eq!(
            transport.to_json()["livekit_service_url"],
            "https://lk.invalid"
        );
        assert!(call.is_active());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_is_seen_with_its_reason() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(Peer::start(&hs, &alice), Peer::start(&hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);

    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;

    let mut changes = b.rtc.subscribe_session_changes();
    a_call.leave().await.expect("alice leaves");
    assert_eq!(a_call.own_status(), OwnStatus::Disconnected);
    let reason = next_matching(
        &mut changes,
        "alice's leave",
        |update| match session_change(update) {
            SessionChange::Left {
                participant,
                reason,
            } if participant.user_id == a.user_id() => Some(reason.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(reason, LeftReason::LeaveEvent);
    wait_for_participants(&b_call, "an empty call", |p| p.is_empty()).await;
    assert!(!b_call.is_active());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_client_leaves_once_its_delayed_leave_fires() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(Peer::start(&hs, &alice), Peer::start(&hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    let timings = fast_timings();
    let delay = Duration::from_millis(timings.delay_ms);

    a_call
        .join(JoinOptions::default().with_timings(timings))
        .await
        .expect("alice joins");
    wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;

    let mut changes = b.rtc.subscribe_session_changes();
    let crashed_at = Instant::now();
    a.crash();
    let alice_id = alice.user_id.clone();
    let reason = next_matching(
        &mut changes,
        "alice's delayed leave",
        |update| match session_change(update) {
            SessionChange::Left {
                participant,
                reason,
            } if participant.user_id.as_str() == alice_id => Some(reason.clone()),
            _ => None,
        },
    )
    .await;
    let elapsed = crashed_at.elapsed();
    assert!(
        matches!(
            reason,
            LeftReason::LeaveEvent | LeftReason::DelayedLeaveFired
        ),
        "unexpected reason {reason:?}"
    );
    // The server fires the delayed leave at most `delay` after the last restart; then one
    // sync round trip. The bound is loose for slow CI machines, and still far below the
    // sticky duration (1 h) that a client without a dead-man switch would leave a ghost for.
    assert!(
        elapsed <= delay + Duration::from_secs(10),
        "alice left after {elapsed:?}"
    );
    println!("crash to leave seen by bob: {elapsed:?} (delay {delay:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stays_past_its_sticky_duration() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(Peer::start(&hs, &alice), Peer::start(&hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    // A 6 s sticky duration, refreshed at half-life: over 15 s alice's membership must be
    // renewed at least twice and never disappear.
    let timings = OwnMembershipConfig {
        sticky_duration_ms: 6_000,
        ..fast_timings()
    };
    a_call
        .join(JoinOptions::default().with_timings(timings))
        .await
        .expect("alice joins");
    let first = wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    let first_event = first[0].event_id.clone();

    let mut changes = b.rtc.subscribe_session_changes();
    let window = Duration::from_secs(15);
    let mut refreshes = 0;
    let watched = tokio::time::timeout(window, async {
        while let Some(update) = changes.next().await {
            match session_change(&update) {
                SessionChange::Left {
                    participant,
                    reason,
                } => {
                    panic!("alice disappeared ({reason:?}): {participant:?}")
                }
                SessionChange::Updated { new, .. } if new.event_id != first_event => refreshes += 1,
                _ => {}
            }
        }
    })
    .await;
    assert!(watched.is_err(), "the change stream ended early");
    assert!(
        refreshes >= 2,
        "only {refreshes} refreshes seen in {window:?}"
    );
    assert!(has_user(&b_call.participants(), &alice.user_id));
    // The refreshes keep alice's place: her join time does not move.
    assert_eq!(b_call.participants()[0].created_ts, first[0].created_ts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_started_later_still_sees_the_member() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob]).await;
    let a = Peer::start(&hs, &alice).await;
    let a_call = a.room_call(&room_id).await;
    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    wait_for_participants(&a_call, "alice's own entry", |p| {
        has_user(p, &alice.user_id)
    })
    .await;

    // Bob's first client starts only now: a fresh side connection replays the live events.
    let b = Peer::start(&hs, &bob).await;
    let b_call = b.room_call(&room_id).await;
    let seen = wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    assert_eq!(seen.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_state_membership_appears_and_expires() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob]).await;
    let b = Peer::start(&hs, &bob).await;
    let b_call = b.room_call(&room_id).await;
    let mut changes = b.rtc.subscribe_session_changes();

    // What matrix-js-sdk writes in its legacy (per-device state) mode, with a short expiry.
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let state_key = format!("_{}_{}_m.call", alice.user_id, alice.device_id);
    let content = json!({
        "application": "m.call", "call_id": "", "scope": "m.room", "device_id": alice.device_id,
        "created_ts": now_ms, "expires": 8_000,
        "focus_active": { "type": "livekit", "focus_selection": "oldest_membership" },
        "foci_preferred": [{ "type": "livekit", "livekit_service_url": "https://lk.invalid", "livekit_alias": "room" }],
    });
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/org.matrix.msc3401.call.member/{}",
        rtc_test_homeserver::encode_path_segment(room_id.as_str()),
        rtc_test_homeserver::encode_path_segment(&state_key),
    );
    let (status, body) = hs
        .request(
            rtc_test_homeserver::Method::PUT,
            &path,
            Some(&alice.access_token),
            Some(&content),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    let seen = wait_for_participants(&b_call, "alice's legacy membership", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    assert_eq!(
        seen[0].member_id,
        format!("{}:{}", alice.user_id, alice.device_id)
    );
    assert_eq!(seen[0].created_ts, now_ms);
    let alice_id = alice.user_id.clone();
    let reason =
        next_matching(
            &mut changes,
            "the legacy membership to expire",
            |update| match session_change(update) {
                SessionChange::Left {
                    participant,
                    reason,
                } if participant.user_id.as_str() == alice_id => Some(reason.clone()),
                _ => None,
            },
        )
        .await;
    assert_eq!(reason, LeftReason::Expired);
    assert!(b_call.participants().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_member_events_produce_diagnostics_and_disturb_nobody() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob, mallory) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
        hs.register_user("mallory").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob, &mallory]).await;
    let (a, b) = tokio::join!(Peer::start(&hs, &alice), Peer::start(&hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    let before = wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    let alice_member_id = before[0].member_id.clone();
    let mut diagnostics = b.rtc.subscribe_diagnostics();

    // The content-level defects of the `--malformed` workload variants, sent for real by a
    // room member. Several reuse alice's member id as their key: a reader that wrongly
    // accepted them could only hide or replace mallory's own entry, never alice's.
    let id = alice_member_id.as_str();
    let valid_transports = json!({ "published": [{ "type": "livekit", "livekit_service_url": "https://lk.invalid" }], "can_subscribe": ["livekit"] });
    let member = |user: &str| json!({ "id": id, "user_id": user, "device_id": "MALLORYDEV" });
    let hostile = vec![
        (
            "member_user_id_not_sender",
            json!({ "slot_id": "m.call#ROOM", "application": { "type": "m.call" }, "member": member(&alice.user_id), "transports": valid_transports, "versions": [], "msc4354_sticky_key": id }),
        ),
        (
            "member_missing",
            json!({ "slot_id": "m.call#ROOM", "application": { "type": "m.call" }, "transports": valid_transports, "versions": [], "msc4354_sticky_key": id }),
        ),
        (
            "member_not_object",
            json!({ "slot_id": "m.call#ROOM", "application": { "type": "m.call" }, "member": "nope", "versions": [], "msc4354_sticky_key": id }),
        ),
        (
            "slot_application_mismatch",
            json!({ "slot_id": "m.call#ROOM", "application": { "type": "org.example.not_a_call" }, "member": member(&mallory.user_id), "versions": [], "msc4354_sticky_key": id }),
        ),
        (
            "slot_id_without_hash",
            json!({ "slot_id": "m.call", "application": { "type": "m.call" }, "member": member(&mallory.user_id), "versions": [], "msc4354_sticky_key": id }),
        ),
        (
            "sticky_keys_disagree",
            json!({ "slot_id": "m.call#ROOM", "application": { "type": "m.call" }, "member": member(&mallory.user_id), "versions": [], "msc4354_sticky_key": id, "sticky_key": "other" }),
        ),
        (
            "sticky_key_number",
            json!({ "slot_id": "m.call#ROOM", "application": { "type": "m.call" }, "member": member(&mallory.user_id), "versions": [], "msc4354_sticky_key": 12345 }),
        ),
        (
            "sticky_key_missing",
            json!({ "slot_id": "m.call#ROOM", "application": { "type": "m.call" }, "member": member(&mallory.user_id), "versions": [] }),
        ),
        (
            "application_not_object",
            json!({ "slot_id": "m.call#ROOM", "application": "m.call", "member": member(&mallory.user_id), "versions": [], "msc4354_sticky_key": id }),
        ),
    ];
    let mut sent = std::collections::HashSet::new();
    for (index, (name, content)) in hostile.into_iter().enumerate() {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/org.matrix.msc4143.rtc.member/hostile{index}?org.matrix.msc4354.sticky_duration_ms=3600000",
            rtc_test_homeserver::encode_path_segment(room_id.as_str()),
        );
        let (status, body) = hs
            .request(
                rtc_test_homeserver::Method::PUT,
                &path,
                Some(&mallory.access_token),
                Some(&content),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{name}: {body}");
        sent.insert(body["event_id"].as_str().expect("an event id").to_owned());
    }

    // Every hostile event is reported, each with its reason.
    while !sent.is_empty() {
        let event_id = next_matching(
            &mut diagnostics,
            "a diagnostic for each hostile event",
            |event| diagnostic(event).event_id().map(ToString::to_string),
        )
        .await;
        sent.remove(&event_id);
    }
    // Alice is still there, unchanged, and mallory never appeared.
    let after = b_call.participants();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].user_id.as_str(), alice.user_id);
    assert_eq!(after[0].member_id, alice_member_id);
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_delayed_events_a_join_says_it_has_no_dead_man_switch() {
    init_tracing();
    let config = rtc_test_homeserver::HomeserverConfig::default().with_delayed_events(false);
    let hs = TestHomeserver::start_with(config)
        .await
        .expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(Peer::start(&hs, &alice), Peer::start(&hs, &bob));
    assert!(!a.rtc.features().await.unwrap().delayed_events);
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);

    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    assert_eq!(
        a_call.own_status(),
        OwnStatus::Connected {
            dead_man_switch: false
        }
    );
    wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    a_call
        .leave()
        .await
        .expect("alice leaves with a plain leave");
    wait_for_participants(&b_call, "an empty call", |p| p.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_delayed_events_a_crashed_member_is_gone_within_its_short_lifetime() {
    init_tracing();
    let config = rtc_test_homeserver::HomeserverConfig::default().with_delayed_events(false);
    let hs = TestHomeserver::start_with(config)
        .await
        .expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(Peer::start(&hs, &alice), Peer::start(&hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    // The short lifetime of a membership without a dead-man switch is five minutes; it is never
    // above the full sticky duration, which a test may shorten to keep the run short.
    let lifetime = Duration::from_secs(15);
    let timings = OwnMembershipConfig {
        sticky_duration_ms: 15_000,
        ..fast_timings()
    };

    let joined_at = Instant::now();
    a_call
        .join(JoinOptions::default().with_timings(timings))
        .await
        .expect("alice joins without a dead-man switch");
    assert_eq!(
        a_call.own_status(),
        OwnStatus::Connected {
            dead_man_switch: false
        }
    );
    wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;

    // Refreshed at half its lifetime, the membership outlives its first join: watch it for
    // more than one lifetime, with refreshes and never a leave.
    let first_event = b_call.participants()[0].event_id.clone();
    let mut changes = b.rtc.subscribe_session_changes();
    let alice_id = alice.user_id.clone();
    let window = lifetime + Duration::from_secs(3);
    let mut refreshes = 0;
    let watched = tokio::time::timeout(window, async {
        while let Some(update) = changes.next().await {
            match session_change(&update) {
                SessionChange::Left {
                    participant,
                    reason,
                } => panic!("alice left ({reason:?}) while her client was alive: {participant:?}"),
                SessionChange::Updated { new, .. } if new.event_id != first_event => refreshes += 1,
                _ => {}
            }
        }
    })
    .await;
    assert!(watched.is_err(), "the change stream ended early");
    assert!(refreshes >= 1, "no refresh seen in {window:?}");
    assert!(joined_at.elapsed() > lifetime);
    assert!(has_user(&b_call.participants(), &alice.user_id));

    let crashed_at = Instant::now();
    a.crash();
    let reason =
        next_matching(
            &mut changes,
            "alice's membership expiring",
            |update| match session_change(update) {
                SessionChange::Left {
                    participant,
                    reason,
                } if participant.user_id.as_str() == alice_id => Some(reason.clone()),
                _ => None,
            },
        )
        .await;
    let elapsed = crashed_at.elapsed();
    assert_eq!(reason, LeftReason::Expired);
    // The last refresh went out at most half a lifetime before the crash: the ghost lasts at
    // most one lifetime (plus a loose margin for a slow machine), not the hour of a full join.
    assert!(
        elapsed <= lifetime + Duration::from_secs(5),
        "alice left {elapsed:?} after her crash"
    );
    println!(
        "without delayed events, crash to expiry seen by bob: {elapsed:?} (lifetime {lifetime:?})"
    );
}
