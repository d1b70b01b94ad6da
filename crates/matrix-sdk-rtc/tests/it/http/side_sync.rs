//! The side connection against Synapse: replay, long-poll wake-up, paging, restart.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use matrix_sdk::ruma::TransactionId;
use matrix_sdk_rtc::{HomeserverApi, SideSync, SideSyncStatus};
use rtc_test_homeserver::{CreateRoomOptions, TestHomeserver, unique_id};
use serde_json::json;

use super::{RunningSideSync, client_for, event_ids, find_event, proxy::FaultProxy, raw, room_id};

const MEMBER_TYPE: &str = "org.matrix.msc4143.rtc.member";
const STICKY: Duration = Duration::from_secs(600);

fn wall_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since_epoch.as_millis()).expect("ms fit")
}

async fn send_keyed(api: &HomeserverApi, room: &matrix_sdk::ruma::RoomId, key: &str) -> String {
    api.send_sticky(
        room,
        MEMBER_TYPE,
        &TransactionId::new(),
        &raw(&json!({ "msc4354_sticky_key": key, "slot_id": "m.call#ROOM" })),
        STICKY,
    )
    .await
    .expect("sticky send")
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_connection_replays_live_events_and_wakes_on_new_ones() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let client = client_for(server.base_url(), &alice).await;
    let api = HomeserverApi::new(client.clone());
    let room_a = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("a"),
    );
    let room_b = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("b"),
    );

    let a1 = send_keyed(&api, &room_a, "k1").await;
    let b1 = send_keyed(&api, &room_b, "k2").await;
    // Content the membership layer will reject: still delivered, raw.
    let junk_content = json!({ "msc4354_sticky_key": { "not": "a string" }, "member": 5 });
    let junk = api
        .send_sticky(
            &room_a,
            MEMBER_TYPE,
            &TransactionId::new(),
            &raw(&junk_content),
            STICKY,
        )
        .await
        .expect("junk send")
        .to_string();

    let before = wall_ms();
    let mut side = RunningSideSync::spawn(SideSync::new(client, unique_id("conn")));
    let first = side.next_batch().await;
    let after = wall_ms();
    assert!(!first.restarted && first.caught_up);
    assert!((before..=after).contains(&first.received_wall_ms));
    let ids: BTreeSet<String> = event_ids(&first).into_iter().collect();
    assert_eq!(ids, BTreeSet::from([a1.clone(), b1.clone(), junk.clone()]));
    let per_room: Vec<_> = first
        .rooms
        .iter()
        .map(|(room, events)| (room.clone(), events.len()))
        .collect();
    assert!(per_room.contains(&(room_a.clone(), 2)) && per_room.contains(&(room_b.clone(), 1)));

    let batches = [first];
    let (room, junk_event) = find_event(&batches, &junk).expect("junk delivered");
    assert_eq!(room, room_a);
    assert_eq!(junk_event["content"], junk_content);
    let (_, a1_event) = find_event(&batches, &a1).expect("a1 delivered");
    let ttl = a1_event["unsigned"]["msc4354_sticky_duration_ttl_ms"]
        .as_u64()
        .expect("ttl");
    assert!(ttl > 0 && ttl <= 600_000, "{a1_event}");
    assert_eq!(a1_event["msc4354_sticky"]["duration_ms"], 600_000);
    assert_eq!(side.status.get(), SideSyncStatus::Running);

    // Idle now: a new event must come long before the 30 s long-poll would time out.
    let sent_at = Instant::now();
    let c1 = send_keyed(&api, &room_b, "k3").await;
    let batches = side.batches_until(&[&c1]).await;
    assert!(
        sent_at.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent_at.elapsed()
    );
    assert!(
        batches
            .iter()
            .all(|batch| !batch.restarted && batch.caught_up)
    );
    assert!(
        batches.iter().flat_map(event_ids).all(|id| id == c1),
        "only the new event"
    );

    let (result, status) = side.stop().await;
    assert_eq!(result, Ok(()));
    assert_eq!(status, SideSyncStatus::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_until_a_short_page() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let client = client_for(server.base_url(), &alice).await;
    let api = HomeserverApi::new(client.clone());
    let room = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("room"),
    );
    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(send_keyed(&api, &room, &format!("k{n}")).await);
    }

    let mut side =
        RunningSideSync::spawn(SideSync::new(client, unique_id("conn")).with_page_limit(2));
    let wanted: Vec<&str> = sent.iter().map(String::as_str).collect();
    let batches = side.batches_until(&wanted).await;
    let shape: Vec<(usize, bool)> = batches
        .iter()
        .map(|batch| (event_ids(batch).len(), batch.caught_up))
        .collect();
    assert_eq!(shape, vec![(2, false), (2, false), (1, true)]);
    let delivered: Vec<String> = batches.iter().flat_map(event_ids).collect();
    assert_eq!(delivered, sent, "oldest first, each once");
    let (result, _) = side.stop().await;
    assert_eq!(result, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pos_restarts_and_replays_everything() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let proxy = FaultProxy::start(server.base_url());
    let client = client_for(proxy.url(), &alice).await;
    let api = HomeserverApi::new(client.clone());
    let room = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("room"),
    );
    let a1 = send_keyed(&api, &room, "k1").await;

    let side_sync =
        SideSync::new(client, unique_id("conn")).with_poll_timeout(Duration::from_secs(1));
    let mut side = RunningSideSync::spawn(side_sync);
    let first = side.next_batch().await;
    assert_eq!(event_ids(&first), vec![a1.clone()]);

    // The next request that carries a position gets one the server never gave out.
    let mut corrupted = false;
    proxy.set_hook(move |request| {
        if !corrupted && request.path().ends_with("/sync") && request.query_param("pos").is_some() {
            request.set_query_param("pos", Some("999999%2Fbogus"));
            corrupted = true;
        }
        None
    });
    let restarted = loop {
        let batch = side.next_batch().await;
        if batch.restarted {
            break batch;
        }
    };
    assert_eq!(
        event_ids(&restarted),
        vec![a1.clone()],
        "the fresh connection replays"
    );
    assert!(restarted.caught_up);

    // Nothing is lost afterwards either.
    let b1 = send_keyed(&api, &room, "k2").await;
    let later = side.batches_until(&[&b1]).await;
    assert!(later.iter().all(|batch| !batch.restarted));

    let log = proxy.log();
    let syncs: Vec<_> = log
        .iter()
        .filter(|(request, _)| request.path().ends_with("/sync"))
        .collect();
    let bogus = syncs
        .iter()
        .position(|(request, _)| request.query_param("pos") == Some("999999%2Fbogus"))
        .expect("the corrupted request was sent");
    let (fresh, _) = syncs
        .get(bogus + 1)
        .expect("a request after the corrupted one");
    assert_eq!(
        fresh.query_param("pos"),
        None,
        "restarted without pos: {}",
        fresh.target
    );
    let (result, _) = side.stop().await;
    assert_eq!(result, Ok(()));
}
