//! Calls in encrypted rooms, between real clients on a real Synapse: our membership goes out
//! as `m.room.encrypted` with the sticky object in clear, never in plaintext, and the other
//! members' ordinary matrix-sdk clients decrypt it.
use std::time::Duration;

use matrix_rtc_membership::{
    MembershipContent, RejectReason, sticky_leave_content, wire::RTC_MEMBER_UNSTABLE,
};
use matrix_sdk::{
    deserialized_responses::EncryptionInfo,
    ruma::{
        OwnedDeviceId, OwnedEventId, RoomId,
        events::{AnySyncTimelineEvent, room::encrypted::OriginalSyncRoomEncryptedEvent},
        serde::Raw,
    },
};
use matrix_sdk_rtc::{
    Diagnostic, Error, JoinOptions, LeftReason, OwnMembershipConfig, OwnStatus, RtcClient,
    RtcConfig, SessionChange, Transport,
};
use rtc_test_homeserver::{Method, TestHomeserver, TestUser, encode_path_segment, unique_id};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    calls::support::{
        EVENTUALLY, Peer, delayed_events_of, diagnostic, encrypted_room, fast_timings, has_user,
        init_tracing, next_matching, session_change, sqlite_peer, sqlite_peer_with,
        wait_for_participants,
    },
    defects::send_raw_sticky,
};

/// A configuration whose periodic check for new devices never comes within a test: new
/// devices must be noticed as they are discovered.
fn without_periodic_device_checks() -> RtcConfig {
    let mut config = RtcConfig::default();
    config.device_check_interval = Duration::from_secs(3_600);
    config
}

/// An RTC member event a client decrypted in its ordinary sync.
#[derive(Debug)]
struct Decrypted {
    event: Value,
    sender_device: Option<String>,
}

/// Every RTC member event `peer`'s sync decrypts, from now on.
fn decrypted_member_events(peer: &Peer) -> mpsc::UnboundedReceiver<Decrypted> {
    let (sender, receiver) = mpsc::unbounded_channel();
    peer.rtc.client().add_event_handler(
        move |raw: Raw<AnySyncTimelineEvent>, info: Option<EncryptionInfo>| {
            let sender = sender.clone();
            async move {
                let Some(info) = info else { return };
                let event: Value = raw.deserialize_as_unchecked().expect("event is JSON");
                if event["type"] == RTC_MEMBER_UNSTABLE {
                    let sender_device = info.sender_device.map(|device| device.to_string());
                    let _ = sender.send(Decrypted {
                        event,
                        sender_device,
                    });
                }
            }
        },
    );
    receiver
}

/// The next decrypted member event from `user_id` that `pick` accepts.
async fn next_decrypted(
    events: &mut mpsc::UnboundedReceiver<Decrypted>,
    user_id: &str,
    what: &str,
    pick: impl Fn(&Value) -> bool,
) -> Decrypted {
    let found = tokio::time::timeout(EVENTUALLY, async {
        while let Some(decrypted) = events.recv().await {
            if decrypted.event["sender"] == user_id && pick(&decrypted.event["content"]) {
                return Some(decrypted);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(decrypted)) => decrypted,
        Ok(None) => panic!("event handler gone before {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// One event as the server stores it (`GET /rooms/{room}/event/{event}`).
async fn raw_event(hs: &TestHomeserver, user: &TestUser, room_id: &str, event_id: &str) -> Value {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode_path_segment(room_id),
        encode_path_segment(event_id)
    );
    let (status, event) = hs
        .request(Method::GET, &path, Some(&user.access_token), None)
        .await
        .expect("request sent");
    assert_eq!(status, 200, "{event}");
    event
}

/// The room's timeline events `sender` sent, newest first (`GET /messages`).
pub(crate) async fn events_of(
    hs: &TestHomeserver,
    reader: &TestUser,
    room_id: &str,
    sender: &str,
) -> Vec<Value> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000",
        encode_path_segment(room_id)
    );
    let (status, page) = hs
        .request(Method::GET, &path, Some(&reader.access_token), None)
        .await
        .expect("request sent");
    assert_eq!(status, 200, "{page}");
    page["chunk"]
        .as_array()
        .expect("a chunk")
        .iter()
        .filter(|event| event["sender"] == sender)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_membership_is_encrypted_on_the_wire_and_decrypted_by_the_others() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(sqlite_peer(&hs, &alice), sqlite_peer(&hs, &bob));
    let mut b_decrypted = decrypted_member_events(&b);
    let a_call = a.room_call(&room_id).await;
    // Bob's client must know the room to decrypt in it.
    b.room_call(&room_id).await;

    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins the call in an encrypted room");
    assert_eq!(
        a_call.own_status(),
        OwnStatus::Connected {
            dead_man_switch: true
        }
    );

    // Bob's ordinary sync decrypts alice's join, sent by alice's device.
    let join = next_decrypted(
        &mut b_decrypted,
        &alice.user_id,
        "alice's join",
        |content| content.get("application").is_some(),
    )
    .await;
    assert_eq!(
        join.sender_device.as_deref(),
        Some(alice.device_id.as_str())
    );
    let content = &join.event["content"];
    assert_eq!(content["member"]["user_id"], alice.user_id.as_str());
    assert_eq!(content["member"]["device_id"], alice.device_id.as_str());
    let member_id = content["member"]["id"].as_str().expect("a member id");
    assert_eq!(content["msc4354_sticky_key"], member_id);
    assert_eq!(content["sticky_key"], member_id);
    let join_id = join.event["event_id"].as_str().expect("an event id");

    // On the wire: an encrypted envelope with the sticky object in clear.
    let envelope = raw_event(&hs, &bob, room_id.as_str(), join_id).await;
    assert_eq!(envelope["type"], "m.room.encrypted", "{envelope}");
    assert_eq!(envelope["content"]["algorithm"], "m.megolm.v1.aes-sha2");
    assert!(
        envelope["msc4354_sticky"]["duration_ms"]
            .as_u64()
            .is_some_and(|duration| duration > 0),
        "no sticky object on the envelope: {envelope}"
    );
    assert!(
        envelope
            .get("content")
            .and_then(|c| c.get("member"))
            .is_none(),
        "plaintext fields on the envelope: {envelope}"
    );

    // Bob's client decrypts the envelope fetched from the server, too.
    let b_room = b
        .rtc
        .client()
        .get_room(&room_id)
        .expect("bob knows the room");
    let raw: Raw<OriginalSyncRoomEncryptedEvent> =
        serde_json::from_value(envelope).expect("an encrypted event");
    let decrypted = b_room
        .decrypt_event(&raw, None)
        .await
        .expect("decryption runs");
    assert!(decrypted.encryption_info().is_some(), "not decrypted");
    let plain: Value = decrypted
        .raw()
        .deserialize_as_unchecked()
        .expect("event is JSON");
    assert_eq!(plain["type"], RTC_MEMBER_UNSTABLE);
    assert_eq!(plain["content"]["member"]["id"], member_id);

    // The leave (alice's scheduled delayed leave, sent now) is encrypted as well.
    a_call.leave().await.expect("alice leaves");
    let leave = next_decrypted(
        &mut b_decrypted,
        &alice.user_id,
        "alice's leave",
        |content| {
            content.get("application").is_none() && content["msc4354_sticky_key"] == member_id
        },
    )
    .await;
    assert_eq!(
        leave.sender_device.as_deref(),
        Some(alice.device_id.as_str())
    );

    // Nothing of alice's call membership was ever sent in plaintext into the room.
    let sent = events_of(&hs, &bob, room_id.as_str(), &alice.user_id).await;
    let plaintext: Vec<&Value> = sent
        .iter()
        .filter(|event| event["type"] != "m.room.encrypted" && event.get("state_key").is_none())
        .collect();
    assert!(
        plaintext.is_empty(),
        "alice sent plaintext events: {plaintext:?}"
    );
    let encrypted = sent
        .iter()
        .filter(|event| event["type"] == "m.room.encrypted")
        .count();
    assert!(encrypted >= 2, "expected alice's encrypted join and leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_built_elsewhere_refuses_encrypted_rooms_and_sends_nothing() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &alice, &[&bob]).await;
    // Our crate cannot reach the olm machine of a client it did not build.
    let client = matrix_sdk::Client::builder()
        .homeserver_url(hs.base_url())
        .build()
        .await
        .expect("client builds");
    let a = Peer::start_client(&alice, RtcClient::new(client, RtcConfig::default())).await;
    let a_call = a.room_call(&room_id).await;

    let error = a_call
        .join(JoinOptions::default())
        .await
        .expect_err("joining must fail");
    assert!(
        matches!(error, Error::EncryptedRoomNotSupported(ref id) if *id == room_id),
        "{error}"
    );
    assert_eq!(a_call.own_status(), OwnStatus::Disconnected);
    // Nothing was scheduled on the server, and nothing sent into the room.
    let delayed = delayed_events_of(&hs, &alice).await;
    assert_eq!(delayed.len(), 0, "{delayed:?}");
    let sent = events_of(&hs, &bob, room_id.as_str(), &alice.user_id).await;
    assert!(
        sent.iter().all(|event| event.get("state_key").is_some()),
        "alice sent timeline events: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_join_refresh_and_leave_reach_two_others() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob, carol) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
        hs.register_user("carol").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &alice, &[&bob, &carol]).await;
    let (a, b, c) = tokio::join!(
        sqlite_peer(&hs, &alice),
        sqlite_peer(&hs, &bob),
        sqlite_peer(&hs, &carol)
    );
    let (a_call, b_call, c_call) = (
        a.room_call(&room_id).await,
        b.room_call(&room_id).await,
        c.room_call(&room_id).await,
    );
    // A 6 s sticky duration, refreshed at half-life: a refresh comes within seconds.
    let timings = OwnMembershipConfig {
        sticky_duration_ms: 6_000,
        ..fast_timings()
    };
    let mut changes = b.rtc.subscribe_session_changes();
    let mut c_changes = c.rtc.subscribe_session_changes();

    a_call
        .join(JoinOptions::default().with_timings(timings))
        .await
        .expect("alice joins");
    let seen = wait_for_participants(&b_call, "alice in bob's view", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].device_id.as_str(), alice.device_id);
    let seen_by_carol = wait_for_participants(&c_call, "alice in carol's view", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    assert_eq!(seen_by_carol.len(), 1);
    assert_eq!(seen_by_carol[0].member_id, seen[0].member_id);
    // Alice decrypts her own membership too.
    let own = wait_for_participants(&a_call, "alice's own entry", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    assert_eq!(own[0].member_id, seen[0].member_id);
    let envelope = raw_event(&hs, &bob, room_id.as_str(), own[0].event_id.as_str()).await;
    assert_eq!(envelope["type"], "m.room.encrypted", "{envelope}");
    assert_eq!(
        envelope["msc4354_sticky"]["duration_ms"], 6_000,
        "{envelope}"
    );

    // The refresh is encrypted and decrypted like the join.
    let first_event = seen[0].event_id.clone();
    let alice_id = alice.user_id.clone();
    let refreshed = next_matching(
        &mut changes,
        "alice's refresh",
        |update| match session_change(update) {
            SessionChange::Updated { new, .. }
                if new.user_id.as_str() == alice_id && new.event_id != first_event =>
            {
                Some(new.clone())
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(refreshed.member_id, seen[0].member_id);
    let envelope = raw_event(&hs, &bob, room_id.as_str(), refreshed.event_id.as_str()).await;
    assert_eq!(envelope["type"], "m.room.encrypted", "{envelope}");

    a_call.leave().await.expect("alice leaves");
    wait_for_participants(&b_call, "an empty call", |p| p.is_empty()).await;
    // Carol sees the leave, as a leave event (not an expiry).
    let member_id = seen[0].member_id.clone();
    let reason =
        next_matching(
            &mut c_changes,
            "alice's leave at carol's",
            |update| match session_change(update) {
                SessionChange::Left {
                    participant,
                    reason,
                } if participant.member_id == member_id => Some(reason.clone()),
                _ => None,
            },
        )
        .await;
    assert_eq!(reason, LeftReason::LeaveEvent);
    assert!(c_call.participants().is_empty());
    // The "active" flag follows the participant list (it is published right after it).
    let mut active = b_call.subscribe_active();
    tokio::time::timeout(EVENTUALLY, async {
        while active.get() {
            active.next().await;
        }
    })
    .await
    .expect("the call ends for bob");

    // Nothing of alice's call membership went out in plaintext.
    let sent = events_of(&hs, &bob, room_id.as_str(), &alice.user_id).await;
    assert!(
        sent.iter()
            .all(|event| event["type"] == "m.room.encrypted" || event.get("state_key").is_some()),
        "alice sent plaintext events: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_client_s_encrypted_delayed_leave_reaches_the_others() {
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
    wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;

    // Alice's client dies; the server fires her delayed leave, encrypted when it was
    // scheduled, and bob decrypts it.
    let mut changes = b.rtc.subscribe_session_changes();
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
    assert!(
        matches!(
            reason,
            LeftReason::LeaveEvent | LeftReason::DelayedLeaveFired
        ),
        "unexpected reason {reason:?}"
    );
    // The newest event of alice's is that leave, and none of hers was plaintext.
    let sent = events_of(&hs, &bob, room_id.as_str(), &alice.user_id).await;
    let newest = sent.first().expect("alice's leave");
    assert_eq!(newest["type"], "m.room.encrypted", "{newest}");
    assert!(
        sent.iter()
            .all(|event| event["type"] == "m.room.encrypted" || event.get("state_key").is_some()),
        "alice sent plaintext events: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_of_a_member_decrypts_our_resent_membership() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &alice, &[&bob]).await;
    // Only the discovery of the new device can trigger the re-send in time.
    let (a, b) = tokio::join!(
        sqlite_peer_with(&hs, &alice, without_periodic_device_checks()),
        sqlite_peer(&hs, &bob)
    );
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    wait_for_participants(&b_call, "alice in bob's view", |p| {
        has_user(p, &alice.user_id)
    })
    .await;

    // Bob logs in on a new device, after alice's join and delayed leave were encrypted: alice
    // notices the new device and sends both again, so the phone can decrypt her membership.
    let phone = hs.login(&bob, "BOBPHONE").await.expect("second login");
    let stores = hs.run_dir().join("stores-bob-phone");
    let rtc = RtcClient::builder(hs.base_url())
        .sqlite_store(&stores, None)
        .build()
        .await
        .expect("client builds");
    let logged_in = std::time::Instant::now();
    let p = Peer::start_client(&phone, rtc).await;
    let p_call = p.room_call(&room_id).await;
    let seen = wait_for_participants(&p_call, "alice in the new device's view", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].device_id.as_str(), alice.device_id);
    eprintln!(
        "new device: alice seen {:?} after the new device logged in",
        logged_in.elapsed()
    );

    // The delayed leave was re-armed without ever leaving two of them on the server.
    let delayed = delayed_events_of(&hs, &alice).await;
    assert_eq!(delayed.len(), 1, "{delayed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_event_whose_room_key_arrives_late_counts_once_the_key_is_there() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &alice, &[&bob]).await;
    let (a, mut b) = tokio::join!(sqlite_peer(&hs, &alice), sqlite_peer(&hs, &bob));
    let a_call = a.room_call(&room_id).await;
    let b_call = b.room_call(&room_id).await;

    // Bob's main sync stops: alice's room key (a to-device message) waits on the server,
    // while bob's side connection still receives alice's encrypted membership.
    b.pause_sync();
    let mut diagnostics = b.rtc.subscribe_diagnostics();
    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    let waiting = next_matching(
        &mut diagnostics,
        "alice's membership to wait for its key",
        |event| match diagnostic(event) {
            Diagnostic::AwaitingRoomKey {
                room_id: room,
                event_id,
                sender,
            } if room == &room_id && sender.as_str() == alice.user_id => Some(event_id.clone()),
            _ => None,
        },
    )
    .await;
    assert!(
        !has_user(&b_call.participants(), &alice.user_id),
        "alice counted before her key arrived: {:?}",
        b_call.participants()
    );

    // The key arrives with the next main sync; the parked event enters the call.
    let resumed = std::time::Instant::now();
    b.resume_sync();
    let seen = wait_for_participants(&b_call, "alice once her key arrived", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    eprintln!(
        "late key: alice seen {:?} after bob's sync resumed (event {waiting})",
        resumed.elapsed()
    );
    let alice_entry = seen
        .iter()
        .find(|p| p.user_id.as_str() == alice.user_id)
        .expect("alice is in the call");
    assert_eq!(alice_entry.device_id.as_str(), alice.device_id.as_str());
    assert_eq!(
        alice_entry.event_id, waiting,
        "the parked event itself counts"
    );
    // With its original timing: the join time is the event's, as alice sees it, not the
    // moment bob could decrypt it.
    let a_entry = wait_for_participants(&a_call, "alice's own entry", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    assert_eq!(alice_entry.created_ts, a_entry[0].created_ts);
    assert_eq!(alice_entry.member_id, a_entry[0].member_id);
    assert!(
        alice_entry
            .expires_wall_ms
            .abs_diff(a_entry[0].expires_wall_ms)
            < 60_000,
        "bob's expiry is not counted from the decryption: {} vs {}",
        alice_entry.expires_wall_ms,
        a_entry[0].expires_wall_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_joins_the_room_later_decrypts_our_resent_membership() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob, dave) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
        hs.register_user("dave").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &alice, &[&bob]).await;
    // Only the discovery of the new device can trigger the re-send in time.
    let (a, b) = tokio::join!(
        sqlite_peer_with(&hs, &alice, without_periodic_device_checks()),
        sqlite_peer(&hs, &bob)
    );
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    a_call
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins");
    let before = wait_for_participants(&b_call, "alice in bob's view", |p| {
        has_user(p, &alice.user_id)
    })
    .await;

    // Dave is invited and joins after alice's membership was encrypted for bob alone; then
    // his client starts (and uploads its device keys). Alice's client discovers his device
    // and re-sends her membership and her delayed leave.
    let invite = format!(
        "/_matrix/client/v3/rooms/{}/invite",
        encode_path_segment(room_id.as_str())
    );
    let (status, body) = hs
        .request(
            Method::POST,
            &invite,
            Some(&alice.access_token),
            Some(&serde_json::json!({ "user_id": dave.user_id })),
        )
        .await
        .expect("request sent");
    assert_eq!(status, 200, "{body}");
    hs.join_room(&dave, room_id.as_str()).await.expect("joined");
    let joined = std::time::Instant::now();
    let d = sqlite_peer(&hs, &dave).await;
    let d_call = d.room_call(&room_id).await;
    let seen = wait_for_participants(&d_call, "alice in dave's view", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].member_id, before[0].member_id);
    eprintln!(
        "new member: alice seen {:?} after dave joined the room",
        joined.elapsed()
    );
    let delayed = delayed_events_of(&hs, &alice).await;
    assert_eq!(delayed.len(), 1, "one delayed leave armed: {delayed:?}");
}

/// Sends `content` as a sticky RTC member event of `user`, in plaintext whatever the room
/// (a raw request, past our encryption), and returns its event ID.
async fn send_in_plaintext(
    hs: &TestHomeserver,
    user: &TestUser,
    room_id: &RoomId,
    content: &Value,
) -> OwnedEventId {
    let txn = unique_id("plaintext");
    let event_id = send_raw_sticky(
        hs,
        user,
        room_id.as_str(),
        RTC_MEMBER_UNSTABLE,
        &txn,
        content,
        3_600_000,
    )
    .await;
    OwnedEventId::try_from(event_id).expect("a valid event id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_encrypted_room_a_plaintext_join_never_counts_and_a_plaintext_leave_does() {
    init_tracing();
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob, carol) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
        hs.register_user("carol").await.unwrap(),
    );
    let room_id = encrypted_room(&hs, &alice, &[&bob, &carol]).await;
    let (a, b, c) = tokio::join!(
        sqlite_peer(&hs, &alice),
        sqlite_peer(&hs, &bob),
        sqlite_peer(&hs, &carol)
    );
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);
    c.room_call(&room_id).await;
    // A long delay: only a leave event can end alice's membership within the test.
    let timings = OwnMembershipConfig {
        delay_ms: 300_000,
        ..fast_timings()
    };
    a_call
        .join(JoinOptions::default().with_timings(timings))
        .await
        .expect("alice joins");
    let seen = wait_for_participants(&b_call, "alice in bob's view", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    let member_id = seen[0].member_id.clone();
    let mut diagnostics = b.rtc.subscribe_diagnostics();
    let mut changes = b.rtc.subscribe_session_changes();

    // Carol's client bypasses encryption and sends a well-formed join in plaintext: bob
    // reports it and does not count it.
    let carol_id = c.user_id();
    let content = MembershipContent::room_call(
        carol_id.clone(),
        OwnedDeviceId::from(carol.device_id.as_str()),
        "carol-plaintext-member",
        Transport::livekit("https://lk.invalid".to_owned()),
    )
    .sticky_join();
    let sent = send_in_plaintext(&hs, &carol, &room_id, &content).await;
    let reason = next_matching(
        &mut diagnostics,
        "the plaintext join's diagnostic",
        |event| match diagnostic(event) {
            Diagnostic::Membership(inner) if inner.event_id.as_ref() == Some(&sent) => {
                Some(inner.reason.clone())
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(reason, RejectReason::PlaintextJoinInEncryptedRoom);
    assert!(
        !has_user(&b_call.participants(), carol_id.as_str()),
        "{:?}",
        b_call.participants()
    );

    // A leave needs no secrecy: alice's plaintext leave (sent past her own client's
    // encryption) ends her encrypted membership.
    let leave = sticky_leave_content("m.call#ROOM", &member_id);
    send_in_plaintext(&hs, &alice, &room_id, &leave).await;
    let reason = next_matching(
        &mut changes,
        "alice's leave at bob's",
        |update| match session_change(update) {
            SessionChange::Left {
                participant,
                reason,
            } if participant.member_id == member_id => Some(reason.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(reason, LeftReason::LeaveEvent);
    assert!(b_call.participants().is_empty());
}
