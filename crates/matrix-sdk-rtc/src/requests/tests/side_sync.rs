//! The side connection against Synapse: replay, long-poll wake-up, paging, restart, backoff.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use matrix_sdk::ruma::TransactionId;
use matrix_sticky_events::Rejection;
use rtc_test_homeserver::{CreateRoomOptions, TestHomeserver, unique_id};
use serde_json::json;

use super::{
    RunningSideSync, client_for, event_ids, find_event, prompt,
    proxy::{CannedResponse, FaultProxy, matrix_error},
    raw, room_id,
};
use crate::{
    SideSync, SideSyncStatus,
    requests::{HomeserverApi, RequestError},
};

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
    // Content the sticky parser rejects (its sticky key is not a string): still delivered,
    // as a rejected entry of its room.
    let junk_content = json!({ "msc4354_sticky_key": { "not": "a string" }, "member": 5 });
    api.send_sticky(
        &room_a,
        MEMBER_TYPE,
        &TransactionId::new(),
        &raw(&junk_content),
        STICKY,
    )
    .await
    .expect("junk send");

    let before = wall_ms();
    let mut side = RunningSideSync::spawn(SideSync::new(client, unique_id("conn")));
    let first = side.next_page().await;
    let after = wall_ms();
    assert!(!first.flags.restarted && first.flags.caught_up);
    let ids: BTreeSet<String> = event_ids(&first).into_iter().collect();
    assert_eq!(ids, BTreeSet::from([a1.clone(), b1.clone()]));
    let per_room: Vec<_> = first
        .batch
        .rooms
        .iter()
        .map(|room| (room.room_id.clone(), room.events.len()))
        .collect();
    assert!(
        per_room.contains(&(room_a.clone(), 2)) && per_room.contains(&(room_b.clone(), 1)),
        "{per_room:?}"
    );
    let rejected: Vec<_> = first
        .batch
        .iter()
        .filter_map(|(room, event)| event.as_ref().err().map(|why| (room.to_owned(), why)))
        .collect();
    assert_eq!(
        rejected,
        vec![(room_a.clone(), &Rejection::StickyKeyNotString)],
        "the junk arrived in its room and was rejected"
    );
    assert!(first.batch.errors.is_empty(), "{:?}", first.batch.errors);

    let pages = [first];
    let (room, a1_event) = find_event(&pages, &a1).expect("a1 delivered");
    assert_eq!(room, room_a);
    assert_eq!(a1_event.meta.duration_ms, 600_000);
    // The deadline is the receipt plus the server's remaining lifetime (0 < ttl <= 600 s),
    // and the page was received between `before` and `after`.
    let expires = a1_event.meta.expires_wall_ms;
    assert!(
        expires > before && expires <= after + 600_000,
        "{before} < {expires} <= {after} + 600000: {a1_event:?}"
    );
    assert_eq!(side.status.get(), SideSyncStatus::Running);

    // Idle now: a new event must come long before the 30 s long-poll would time out.
    let sent_at = Instant::now();
    let c1 = send_keyed(&api, &room_b, "k3").await;
    let pages = side.pages_until(&[&c1]).await;
    assert!(
        sent_at.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent_at.elapsed()
    );
    assert!(
        pages
            .iter()
            .all(|page| !page.flags.restarted && page.flags.caught_up)
    );
    assert!(
        pages
            .iter()
            .all(|page| event_ids(page).len() == page.batch.event_count()),
        "nothing rejected: {pages:?}"
    );
    assert!(
        pages.iter().flat_map(event_ids).all(|id| id == c1),
        "only the new event: {pages:?}"
    );
    assert_eq!(side.downs, 0, "the connection never went down");

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
    let pages = side.pages_until(&wanted).await;
    let shape: Vec<(usize, bool)> = pages
        .iter()
        .map(|page| (page.batch.event_count(), page.flags.caught_up))
        .collect();
    assert_eq!(shape, vec![(2, false), (2, false), (1, true)]);
    let delivered: Vec<String> = pages.iter().flat_map(event_ids).collect();
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
    let first = side.next_page().await;
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
        let page = side.next_page().await;
        if page.flags.restarted {
            break page;
        }
    };
    assert_eq!(
        event_ids(&restarted),
        vec![a1.clone()],
        "the fresh connection replays"
    );
    assert!(restarted.flags.caught_up);
    assert!(side.downs >= 1, "the failure was reported to the pump");

    // Nothing is lost afterwards either.
    let b1 = send_keyed(&api, &room, "k2").await;
    let later = side.pages_until(&[&b1]).await;
    assert!(later.iter().all(|page| !page.flags.restarted));

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_reported_and_retried_after_a_growing_backoff() {
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

    // The first two requests of the connection fail with a server error.
    let mut failures = 2;
    proxy.set_hook(move |request| {
        (failures > 0 && request.path().ends_with("/sync")).then(|| {
            failures -= 1;
            matrix_error(502, "M_UNKNOWN", "bad gateway")
        })
    });
    let backoff = Duration::from_millis(300);
    let side_sync =
        SideSync::new(client, unique_id("conn")).with_backoff(backoff, Duration::from_secs(5));
    // Every status until the connection runs (each backoff lasts long enough to be seen).
    let mut status = side_sync.subscribe_status();
    let statuses = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(value) = status.next().await {
            let running = value == SideSyncStatus::Running;
            seen.push(value);
            if running {
                break;
            }
        }
        seen
    });
    let started = Instant::now();
    let mut side = RunningSideSync::spawn(side_sync);

    let first = side.next_page().await;
    let waited = started.elapsed();
    assert_eq!(event_ids(&first), vec![a1.clone()]);
    assert!(
        !first.flags.restarted && first.flags.caught_up,
        "a fresh connection that failed is no restart: {:?}",
        first.flags
    );
    assert_eq!(side.downs, 2, "each failure is reported to the pump");
    assert!(
        waited >= backoff * 3,
        "the backoff was not waited: {waited:?}"
    );

    let seen = prompt("the statuses", statuses).await.expect("status task");
    let backing_off: Vec<(u32, Duration)> = seen
        .iter()
        .filter_map(|status| match status {
            SideSyncStatus::BackingOff {
                error: RequestError::Http { status: 502, .. },
                attempts,
                retry_in,
            } => Some((*attempts, *retry_in)),
            _ => None,
        })
        .collect();
    assert_eq!(
        backing_off,
        vec![(1, backoff), (2, backoff * 2)],
        "the backoff doubles: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&SideSyncStatus::Running));
    let log = proxy.log();
    let canned = log
        .iter()
        .filter(|(request, canned)| *canned && request.path().ends_with("/sync"))
        .count();
    assert_eq!(canned, 2, "{log:?}");

    let (result, status) = side.stop().await;
    assert_eq!(result, Ok(()));
    assert_eq!(status, SideSyncStatus::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_connection_waits_out_bare_404s() {
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
    let side_sync = SideSync::new(client, unique_id("conn"))
        .with_backoff(Duration::from_millis(20), Duration::from_millis(200));
    let mut status = side_sync.subscribe_status();
    let mut side = RunningSideSync::spawn(side_sync);
    side.pages_until(&[&a1]).await;

    // What a proxy in front of a restarting server answers: a bare 404, more times in a row
    // than a connection that never worked would accept.
    let downs_before = side.downs;
    let mut outage = 7;
    proxy.set_hook(move |request| {
        (outage > 0 && request.path().ends_with("/sync")).then(|| {
            outage -= 1;
            CannedResponse {
                status: 404,
                body: "404 page not found".to_owned(),
            }
        })
    });
    // Every status from now until the connection runs again after the outage.
    let statuses = tokio::spawn(async move {
        let mut unrecognized = 0;
        while let Some(value) = futures_util::StreamExt::next(&mut status).await {
            match value {
                SideSyncStatus::BackingOff {
                    error: RequestError::Unrecognized,
                    ..
                } => unrecognized += 1,
                SideSyncStatus::Failed { error } => return Err(error),
                SideSyncStatus::Running if unrecognized > 0 => return Ok(unrecognized),
                _ => {}
            }
        }
        Ok(unrecognized)
    });
    // Wakes the long poll that may already be on its way to Synapse; the requests after it
    // meet the outage, and the next event arrives once it is over.
    let wake = send_keyed(&api, &room, "k2").await;
    let a3 = send_keyed(&api, &room, "k3").await;
    side.pages_until(&[&wake, &a3]).await;
    assert_eq!(
        side.downs - downs_before,
        7,
        "each 404 is reported to the pump"
    );

    // The status said it was backing off, never that it gave up, and it runs again.
    let unrecognized = prompt("the statuses", statuses)
        .await
        .expect("status task")
        .expect("the connection never gives up");
    assert!(unrecognized >= 1);
    let canned = proxy
        .log()
        .iter()
        .filter(|(request, canned)| *canned && request.path().ends_with("/sync"))
        .count();
    assert_eq!(canned, 7);
    let (result, status) = side.stop().await;
    assert_eq!(result, Ok(()));
    assert_eq!(status, SideSyncStatus::Stopped);
}
