//! Restarts and persistence: a client that is killed mid-call and started again from the same
//! store ends its old membership at once and rejoins as exactly one participant, in an
//! unencrypted and in an encrypted room.
use std::time::{Duration, Instant};

use matrix_sdk_rtc::{CallId, JoinOptions, OwnMembershipConfig, RtcClient, SessionChange};
use rtc_test_homeserver::TestHomeserver;

use super::calls::support::{
    Peer, delayed_events_of, has_user, init_tracing, next_matching, room, session_change,
    sqlite_peer, wait_for_participants,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_ends_its_old_membership_and_rejoins_once() {
    restart_mid_call(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_ends_its_old_membership_and_rejoins_once_in_an_encrypted_room() {
    restart_mid_call(true).await;
}

/// Alice joins, her client is killed and started again from the same stores: her old
/// membership ends long before its delayed leave could fire, and after she rejoins there is
/// one entry for her and one delayed leave on the server.
async fn restart_mid_call(encrypted: bool) {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = room(&hs, &alice, &[&bob], encrypted).await;
    let store = hs.run_dir().join("alice-store");
    let alice_client = || async {
        RtcClient::builder(hs.base_url())
            .sqlite_store(&store, Some("correct horse battery staple"))
            .build()
            .await
            .expect("client builds")
    };
    // A long delay: if alice's old membership goes away quickly, it is because the restarted
    // client ended it, not because the server fired the delayed leave.
    let timings = OwnMembershipConfig {
        delay_ms: 300_000,
        restart_interval_ms: 2_000,
        ..OwnMembershipConfig::default()
    };

    let (a1, b) = tokio::join!(
        Peer::start_client(&alice, alice_client().await),
        sqlite_peer(&hs, &bob)
    );
    let b_call = b.room_call(&room_id).await;
    a1.room_call(&room_id)
        .await
        .join(JoinOptions::default().with_timings(timings.clone()))
        .await
        .expect("alice joins");
    let seen = wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    let first_member_id = seen[0].member_id.clone();

    let mut changes = b.rtc.subscribe_session_changes();
    a1.crash();
    let restarted = Instant::now();
    let a2 = Peer::start_client(&alice, alice_client().await).await;
    assert_eq!(
        a2.rtc.interrupted_calls(),
        vec![CallId::room_call(&room_id)]
    );

    let gone = first_member_id.clone();
    next_matching(
        &mut changes,
        "alice's old membership to end",
        |update| match session_change(update) {
            SessionChange::Left { participant, .. } if participant.member_id == gone => Some(()),
            _ => None,
        },
    )
    .await;
    let elapsed = restarted.elapsed();
    eprintln!(
        "restart (encrypted: {encrypted}): old membership ended {elapsed:?} after the restart began"
    );
    assert!(
        elapsed < Duration::from_secs(90),
        "the old membership lingered for {elapsed:?}"
    );

    a2.room_call(&room_id)
        .await
        .join(JoinOptions::default().with_timings(timings))
        .await
        .expect("alice rejoins");
    let now = wait_for_participants(&b_call, "alice's new membership", |p| {
        p.iter()
            .any(|p| p.user_id.as_str() == alice.user_id && p.member_id != first_member_id)
    })
    .await;
    let alices: Vec<_> = now
        .iter()
        .filter(|p| p.user_id.as_str() == alice.user_id)
        .collect();
    assert_eq!(alices.len(), 1, "exactly one entry for alice: {now:?}");

    // And exactly one delayed leave of ours is scheduled on the server: the new one.
    let delayed = delayed_events_of(&hs, &alice).await;
    assert_eq!(delayed.len(), 1, "{delayed:?}");
}
