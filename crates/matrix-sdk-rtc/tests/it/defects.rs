//! Defects of the old async driver, shown against a real Synapse with real clients: each
//! test failed before the protocol decisions moved into the `RtcMachine`.
use std::{collections::BTreeMap, sync::Arc};

use futures_util::StreamExt;
use matrix_sdk_rtc::{
    CallId, Error, JoinFailure, JoinOptions, OwnMembershipConfig, Participant, RtcConfig,
    SessionChange, SessionUpdate, Transport,
};
use rtc_test_homeserver::{Method, TestHomeserver, TestUser, encode_path_segment};
use serde_json::{Value, json};

use crate::calls::support::{
    EVENTUALLY, Peer, has_user, init_tracing, next_matching, shared_room, wait_for_participants,
};

/// The event type of sticky memberships, as js-sdk sends it.
pub(crate) const MEMBER: &str = "org.matrix.msc4143.rtc.member";

/// Sends a sticky event of `event_type` as `user` with a raw request (a room member acting
/// on its own, as a hostile member would), and returns its event id.
pub(crate) async fn send_raw_sticky(
    hs: &TestHomeserver,
    user: &TestUser,
    room_id: &str,
    event_type: &str,
    txn: &str,
    content: &Value,
    duration_ms: u64,
) -> String {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/{event_type}/{txn}?org.matrix.msc4354.sticky_duration_ms={duration_ms}",
        encode_path_segment(room_id),
    );
    let (status, body) = hs
        .request(Method::PUT, &path, Some(&user.access_token), Some(content))
        .await
        .expect("request sent");
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().expect("an event id").to_owned()
}

/// Sends many sticky events of `event_type` as `user`, 16 at a time (their order among each
/// other is not kept), as `(txn, content)` pairs.
pub(crate) async fn send_many_raw_sticky(
    hs: &TestHomeserver,
    user: &TestUser,
    room_id: &str,
    event_type: &str,
    events: Vec<(String, Value)>,
    duration_ms: u64,
) {
    futures_util::stream::iter(events)
        .map(|(txn, content)| async move {
            send_raw_sticky(hs, user, room_id, event_type, &txn, &content, duration_ms).await
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// A js-sdk 43 join of `user` in `slot`, with `padding` bytes of filler.
pub(crate) fn join_content(
    user: &TestUser,
    device: &str,
    member_id: &str,
    slot: &str,
    padding: usize,
) -> Value {
    json!({
        "slot_id": slot,
        "application": { "type": "m.call" },
        "member": { "id": member_id, "user_id": user.user_id, "device_id": device },
        "transports": {
            "published": [{ "type": "livekit", "livekit_service_url": "https://lk.invalid" }],
            "can_subscribe": ["livekit"],
        },
        "versions": [],
        "msc4354_sticky_key": member_id,
        "org.example.padding": "x".repeat(padding),
    })
}

/// A js-sdk 43 leave of `member_id`.
pub(crate) fn leave_content(member_id: &str) -> Value {
    json!({ "slot_id": "m.call#ROOM", "msc4354_sticky_key": member_id })
}

/// A second `join()` on a call we are in is refused, and our membership stays the one our
/// delayed leave covers: its next refresh is an update of the same member, not a new member.
/// (Before, the second join overwrote the stored content before answering, so the refresh
/// published another member ID that no delayed leave covered.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_second_join_keeps_our_membership_and_its_refresh() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(Peer::start(&hs, &alice), Peer::start(&hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    // A short sticky lifetime, so that the refresh (at half of it) comes within seconds.
    let timings = OwnMembershipConfig {
        delay_ms: 5_000,
        restart_interval_ms: 1_000,
        sticky_duration_ms: 16_000,
        ..OwnMembershipConfig::default()
    };
    a_call
        .join(JoinOptions::default().with_timings(timings.clone()))
        .await
        .expect("alice joins");
    let seen = wait_for_participants(&b_call, "alice", |p| has_user(p, &alice.user_id)).await;
    let first = seen[0].member_id.clone();
    let mut changes = b.rtc.subscribe_session_changes();

    let second = a_call
        .join(
            JoinOptions::default()
                .with_timings(timings)
                .with_transport(Transport::livekit("https://other.invalid")),
        )
        .await;
    assert!(
        matches!(second, Err(Error::JoinFailed(JoinFailure::AlreadyJoined))),
        "{second:?}"
    );

    // The refresh arrives as an update of the same member, with the first transport.
    let (old, new) = next_matching(&mut changes, "alice's refresh", |update| match update {
        SessionUpdate::Change(SessionChange::Updated { old, new })
            if new.user_id.as_str() == alice.user_id =>
        {
            Some((old.clone(), new.clone()))
        }
        SessionUpdate::Change(SessionChange::Joined(joined))
            if joined.user_id.as_str() == alice.user_id =>
        {
            panic!("alice joined again as another member: {joined:?}")
        }
        _ => None,
    })
    .await;
    assert_eq!(old.member_id, first);
    assert_eq!(new.member_id, first);
    assert_eq!(
        new.own_transport().expect("a transport").to_json()["livekit_service_url"],
        "https://lk.invalid"
    );
    assert_eq!(b_call.participants().len(), 1);
}

/// A reader of `subscribe_session_changes` that falls behind is told so and handed the
/// current state: replaying what it got always gives the truth. (Before, the stream skipped
/// what a slow reader missed with only a log line, and an app following it kept ghosts.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_session_changes_resyncs_to_the_truth() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, watcher) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("watcher").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&watcher]).await;
    // Room in the sticky map for every event alice sends (a sender's cap is 256 by default).
    let mut config = RtcConfig::default();
    config.sticky_limits.per_sender = 4_096;
    let w = Peer::start_with(&hs, &watcher, config).await;
    let call = w.room_call(&room_id).await;
    // Subscribed, but not read while alice's devices come and go: more changes than the
    // stream buffers (1024).
    let mut changes = w.rtc.subscribe_session_changes();
    const DEVICES: usize = 600;
    let joins = (0..DEVICES)
        .map(|i| {
            let content = join_content(
                &alice,
                &format!("DEV{i}"),
                &format!("m{i}"),
                "m.call#ROOM",
                0,
            );
            (format!("j{i}"), content)
        })
        .collect();
    send_many_raw_sticky(&hs, &alice, room_id.as_str(), MEMBER, joins, 3_600_000).await;
    // Every device but the last 10 leaves again (each leave sent after its join).
    let leaves = (0..DEVICES - 10)
        .map(|i| (format!("l{i}"), leave_content(&format!("m{i}"))))
        .collect();
    send_many_raw_sticky(&hs, &alice, room_id.as_str(), MEMBER, leaves, 3_600_000).await;
    let last = join_content(&alice, "LAST", "last", "m.call#ROOM", 0);
    send_raw_sticky(
        &hs,
        &alice,
        room_id.as_str(),
        "org.matrix.msc4143.rtc.member",
        "last",
        &last,
        3_600_000,
    )
    .await;
    let truth: Vec<String> = (DEVICES - 10..DEVICES)
        .map(|i| format!("m{i}"))
        .chain(["last".to_owned()])
        .collect();
    wait_for_participants(&call, "the final state", |p| p.len() == truth.len()).await;

    // Now read: replaying the stream must give the same state.
    let mut state: BTreeMap<String, Arc<Participant>> = BTreeMap::new();
    let mut resyncs = 0;
    let done = tokio::time::timeout(EVENTUALLY, async {
        while let Some(update) = changes.next().await {
            match update {
                SessionUpdate::Change(SessionChange::Joined(p)) => {
                    state.insert(p.member_id.clone(), p);
                }
                SessionUpdate::Change(SessionChange::Updated { new, .. }) => {
                    state.insert(new.member_id.clone(), new);
                }
                SessionUpdate::Change(SessionChange::Left { participant, .. }) => {
                    state.remove(&participant.member_id);
                }
                SessionUpdate::Resync { missed, calls } => {
                    assert!(missed > 0);
                    resyncs += 1;
                    state = calls
                        .into_iter()
                        .filter(|(id, _)| *id == CallId::room_call(&room_id))
                        .flat_map(|(_, participants)| participants)
                        .map(|p| (p.member_id.clone(), p))
                        .collect();
                }
                _ => {}
            }
            if state.contains_key("last") && state.len() == truth.len() {
                return;
            }
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "the replayed state never reached the truth: {} members",
        state.len()
    );
    assert!(
        resyncs >= 1,
        "the reader fell behind and must have been told"
    );
    let replayed: Vec<String> = state.keys().cloned().collect();
    let mut truth = truth;
    truth.sort();
    assert_eq!(replayed, truth);
}
