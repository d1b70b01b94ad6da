//! A hostile room member, against a real Synapse: what it floods costs it, never the others.
//! Each flood is sent with raw requests, as a member's own client could, and each test shows
//! that another member's join and leave still arrive.
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use matrix_sdk_rtc::{
    Cap, Diagnostic, DiagnosticEvent, JoinOptions, Limits, ParkedLimits, RtcConfig,
};
use rtc_test_homeserver::TestHomeserver;
use serde_json::json;

use crate::{
    calls::support::{
        EVENTUALLY, Peer, encrypted_room, fast_timings, has_user, init_tracing, shared_room,
        wait_for_participants,
    },
    defects::{MEMBER, join_content, send_many_raw_sticky, send_raw_sticky},
};

/// Collects diagnostics in the background.
fn capped_senders(peer: &Peer) -> tokio::sync::mpsc::UnboundedReceiver<(String, Cap)> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut diagnostics = peer.rtc.subscribe_diagnostics();
    tokio::spawn(async move {
        while let Some(event) = diagnostics.next().await {
            if let DiagnosticEvent::Diagnostic(Diagnostic::Capped {
                sender: who, cap, ..
            }) = event
            {
                let _ = sender.send((who.to_string(), cap));
            }
        }
    });
    receiver
}

fn drain(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Cap)>) -> Vec<(String, Cap)> {
    std::iter::from_fn(|| receiver.try_recv().ok()).collect()
}

/// Undecryptable envelopes from one member fill only that member's share of the parked
/// envelopes: another member's encrypted join and leave still arrive. (Before, 10,000 parked
/// envelopes for all senders together, then new ones dropped: one flood hid every new caller.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_undecryptable_envelopes_does_not_hide_a_real_join() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (mallory, bob, watcher) = (
        hs.register_user("mallory").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
        hs.register_user("watcher").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &mallory, &[&bob, &watcher]).await;
    // Small caps, so that a flood of a few hundred events crosses every one of them.
    let mut config = RtcConfig::default();
    config.parked_limits = ParkedLimits::new(8, 32, 64);
    let w = Peer::start_with(&hs, &watcher, config).await;
    let mut capped = capped_senders(&w);
    let w_call = w.room_call(&room_id).await;

    let envelopes = (0..300)
        .map(|i| {
            let envelope = json!({
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgAEpABm6rF8c1aX5QFake+ciphertext/that+never+decrypts",
                "device_id": "MALLORYDEV",
                "sender_key": "k9y6b0aV8n0m3l+fake+curve25519+key+of+mallory",
                "session_id": format!("fake-session-{}", i % 7),
            });
            (format!("x{i}"), envelope)
        })
        .collect();
    send_many_raw_sticky(
        &hs,
        &mallory,
        room_id.as_str(),
        "m.room.encrypted",
        envelopes,
        3_600_000,
    )
    .await;

    let b = Peer::start(&hs, &bob).await;
    let b_call = b.room_call(&room_id).await;
    let started = Instant::now();
    b_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("bob joins");
    wait_for_participants(&w_call, "bob's encrypted join", |p| {
        has_user(p, &bob.user_id)
    })
    .await;
    let joined_after = started.elapsed();
    b_call.leave().await.expect("bob leaves");
    wait_for_participants(&w_call, "bob's leave", |p| !has_user(p, &bob.user_id)).await;
    eprintln!(
        "after a flood of 300 envelopes: bob's join seen {joined_after:?} after his join call"
    );

    let capped = drain(&mut capped);
    assert!(
        capped.iter().any(|(who, _)| *who == mallory.user_id),
        "the flood hit the caps: {capped:?}"
    );
    assert!(
        capped.iter().all(|(who, _)| *who == mallory.user_id),
        "only mallory lost envelopes: {capped:?}"
    );
}

/// Sticky joins in invented slots: each makes a call, but they count against the sender's
/// cap, and a call with no participants and no subscribers is dropped. (Before, every slot
/// ever seen kept a call and a 256-slot broadcast channel for ever: about 40 KB each.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_slots_cost_their_sender_and_are_freed() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (mallory, alice, watcher) = (
        hs.register_user("mallory").await.unwrap(),
        hs.register_user("alice").await.unwrap(),
        hs.register_user("watcher").await.unwrap(),
    );
    let room_id = shared_room(&hs, &mallory, &[&alice, &watcher]).await;
    let mut config = RtcConfig::default();
    config.sticky_limits = Limits {
        per_sender: 32,
        ..Limits::default()
    };
    let w = Peer::start_with(&hs, &watcher, config).await;
    let mut capped = capped_senders(&w);
    let w_call = w.room_call(&room_id).await;
    // Short-lived, so that the test sees them go.
    const LIFETIME_MS: u64 = 12_000;
    let joins = (0..300)
        .map(|i| {
            let slot = format!("m.call#invented{i}");
            (
                format!("s{i}"),
                join_content(&mallory, "MDEV", &format!("m{i}"), &slot, 0),
            )
        })
        .collect();
    send_many_raw_sticky(&hs, &mallory, room_id.as_str(), MEMBER, joins, LIFETIME_MS).await;
    let flooded_at = Instant::now();
    // Alice's real join and leave still arrive.
    let a = Peer::start(&hs, &alice).await;
    let a_call = a.room_call(&room_id).await;
    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    wait_for_participants(&w_call, "alice", |p| has_user(p, &alice.user_id)).await;
    let kept = w.rtc.observed_call_count();
    // 32 of mallory's, the room call, and a few in between.
    assert!(kept <= 32 + 4, "{kept} calls kept");
    a_call.leave().await.expect("alice leaves");
    wait_for_participants(&w_call, "alice gone", |p| !has_user(p, &alice.user_id)).await;
    assert!(
        drain(&mut capped)
            .iter()
            .all(|(who, cap)| *who == mallory.user_id && *cap == Cap::StickyMap)
    );

    // Once mallory's events expire, their calls are gone (only the room call we hold stays).
    let deadline = flooded_at + Duration::from_millis(LIFETIME_MS) + EVENTUALLY;
    let mut active = w.rtc.subscribe_call_events();
    while w.rtc.observed_call_count() > 1 {
        assert!(
            Instant::now() < deadline,
            "{} calls still kept",
            w.rtc.observed_call_count()
        );
        // Each expiry ends a call: wait for the next call event.
        let _ = tokio::time::timeout(Duration::from_secs(1), active.next()).await;
    }
    assert!(
        w.rtc.active_calls().is_empty(),
        "{:?}",
        w.rtc.active_calls()
    );
}

/// Three members sending large sticky joins push the room over its byte cap: the sender
/// using the most is cut first, and a long-standing participant with one small event is
/// never evicted. (Before, the room's lowest-ranked event went first: the oldest real
/// participant.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_over_its_byte_cap_cuts_the_heaviest_sender_not_a_real_participant() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, watcher) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("watcher").await.unwrap(),
    );
    let hostile = [
        hs.register_user("mallory1").await.unwrap(),
        hs.register_user("mallory2").await.unwrap(),
        hs.register_user("mallory3").await.unwrap(),
    ];
    let others: Vec<_> = hostile.iter().chain([&watcher]).collect();
    let room_id = shared_room(&hs, &alice, &others).await;
    let mut config = RtcConfig::default();
    config.sticky_limits = Limits {
        per_room_bytes: 1 << 20,
        ..Limits::default()
    };
    let w = Peer::start_with(&hs, &watcher, config).await;
    let mut capped = capped_senders(&w);
    let w_call = w.room_call(&room_id).await;
    // Alice has been in the call first, with one small event.
    let a = Peer::start(&hs, &alice).await;
    let a_call = a.room_call(&room_id).await;
    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    wait_for_participants(&w_call, "alice", |p| has_user(p, &alice.user_id)).await;

    // 3 × 30 joins of 16 KB: about 1.5 MB, over the 1 MiB cap.
    for round in 0..30 {
        for (n, mallory) in hostile.iter().enumerate() {
            let content = join_content(
                mallory,
                &format!("D{round}"),
                &format!("m{n}-{round}"),
                "m.call#ROOM",
                16 * 1024,
            );
            send_raw_sticky(
                &hs,
                mallory,
                room_id.as_str(),
                MEMBER,
                &format!("b{round}"),
                &content,
                3_600_000,
            )
            .await;
        }
    }
    // The last of them is seen, and alice is still there.
    wait_for_participants(&w_call, "the flood", |p| {
        p.iter().any(|participant| participant.member_id == "m2-29")
    })
    .await;
    assert!(
        has_user(&w_call.participants(), &alice.user_id),
        "alice was evicted"
    );
    let capped = drain(&mut capped);
    assert!(!capped.is_empty(), "the flood went over the cap");
    assert!(
        capped
            .iter()
            .all(|(who, _)| hostile.iter().any(|m| m.user_id == *who)),
        "only the flooders lost events: {capped:?}"
    );
    // And alice's leave still arrives.
    a_call.leave().await.expect("alice leaves");
    wait_for_participants(&w_call, "alice gone", |p| !has_user(p, &alice.user_id)).await;
}
