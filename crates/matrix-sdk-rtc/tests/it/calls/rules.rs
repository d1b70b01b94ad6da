//! Room rules against a real Synapse: ignored users' memberships are hidden (and come back when
//! unignored), and redactions of memberships count from their sender and from moderators.
use matrix_sdk::ruma::{Int, OwnedEventId, OwnedUserId};
use matrix_sdk_rtc::{JoinOptions, LeftReason, OwnMembershipConfig, SessionChange};
use rtc_test_homeserver::{Method, TestHomeserver, TestUser, encode_path_segment, unique_id};
use serde_json::json;

use super::support::{
    Peer, fast_timings, has_user, init_tracing, next_matching, session_change, shared_room,
    wait_for_participants,
};

/// `user` redacts `event_id` of `room_id` through the client API; returns the HTTP status.
async fn redact(
    hs: &TestHomeserver,
    user: &TestUser,
    room_id: &str,
    event_id: &OwnedEventId,
) -> u16 {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/redact/{}/{}",
        encode_path_segment(room_id),
        encode_path_segment(event_id.as_str()),
        unique_id("redact"),
    );
    let (status, body) = hs
        .request(
            Method::PUT,
            &path,
            Some(&user.access_token),
            Some(&json!({})),
        )
        .await
        .expect("request sent");
    tracing::debug!(status, %body, "redaction answered");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_member_is_hidden_and_comes_back_when_unignored() {
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
    let alice_id = a.user_id();
    b.rtc
        .client()
        .account()
        .ignore_user(&alice_id)
        .await
        .expect("bob ignores alice");
    let reason = next_matching(
        &mut changes,
        "alice hidden",
        |update| match session_change(update) {
            SessionChange::Left {
                participant,
                reason,
            } if participant.user_id == alice_id => Some(reason.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(reason, LeftReason::SenderIgnored);
    wait_for_participants(&b_call, "an empty call", |p| p.is_empty()).await;
    // Alice herself still sees herself: ignoring is bob's.
    assert!(has_user(&a_call.participants(), &alice.user_id));

    b.rtc
        .client()
        .account()
        .unignore_user(&alice_id)
        .await
        .expect("bob unignores alice");
    let back = wait_for_participants(&b_call, "alice back in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    assert_eq!(back.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderators_redaction_and_the_senders_own_remove_memberships() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob, carol, moderator, mallory) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
        hs.register_user("carol").await.unwrap(),
        hs.register_user("moderator").await.unwrap(),
        hs.register_user("mallory").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob, &carol, &moderator, &mallory]).await;
    let (a, b, c) = tokio::join!(
        Peer::start(&hs, &alice),
        Peer::start(&hs, &bob),
        Peer::start(&hs, &carol)
    );
    // Alice (the creator, at 100) makes the moderator a moderator.
    let moderator_id = OwnedUserId::try_from(moderator.user_id.as_str()).expect("user id");
    let a_call = a.room_call(&room_id).await;
    a.rtc
        .client()
        .get_room(&room_id)
        .expect("alice knows the room")
        .update_power_levels(vec![(&moderator_id, Int::from(50))])
        .await
        .expect("power levels set");

    // A long delayed leave: only the redactions can end these memberships within the test.
    let timings = OwnMembershipConfig {
        delay_ms: 300_000,
        ..fast_timings()
    };
    let (b_call, c_call) = (b.room_call(&room_id).await, c.room_call(&room_id).await);
    for call in [&b_call, &c_call] {
        call.join(JoinOptions::default().with_timings(timings.clone()))
            .await
            .expect("joins");
    }
    let seen = wait_for_participants(&a_call, "bob and carol in the call", |p| {
        has_user(p, &bob.user_id) && has_user(p, &carol.user_id)
    })
    .await;
    let event_of = |user: &TestUser| {
        seen.iter()
            .find(|p| p.user_id.as_str() == user.user_id)
            .map(|p| p.event_id.clone())
            .expect("a participant")
    };
    let (bob_event, carol_event) = (event_of(&bob), event_of(&carol));
    let (bob_id, carol_id) = (b.user_id(), c.user_id());
    // Their clients stop without leaving: a live client would send its membership again once it
    // sees it redacted, and that could outrun the removal seen here.
    b.crash();
    c.crash();

    // Synapse refuses a local user's redaction of another's event without the power to.
    assert_eq!(
        redact(&hs, &mallory, room_id.as_str(), &bob_event).await,
        403
    );

    let mut changes = a.rtc.subscribe_session_changes();
    let left = |user: OwnedUserId| {
        move |update: &_| match session_change(update) {
            SessionChange::Left {
                participant,
                reason,
            } if participant.user_id == user => Some(reason.clone()),
            _ => None,
        }
    };
    // The moderator's redaction of bob's membership.
    assert_eq!(
        redact(&hs, &moderator, room_id.as_str(), &bob_event).await,
        200
    );
    let reason = next_matching(&mut changes, "bob removed", left(bob_id)).await;
    assert_eq!(reason, LeftReason::Redacted);

    // Carol's redaction of her own membership.
    assert_eq!(
        redact(&hs, &carol, room_id.as_str(), &carol_event).await,
        200
    );
    let reason = next_matching(&mut changes, "carol removed", left(carol_id)).await;
    assert_eq!(reason, LeftReason::Redacted);
}
