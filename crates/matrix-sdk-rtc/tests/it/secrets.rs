//! Secrets never reach a log line: every log line of every crate, at every level (TRACE), is
//! captured while a client joins, heartbeats, refreshes and leaves a call on a real Synapse,
//! and searched for its access token and for every delay id the server held for it.
use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use matrix_sdk_rtc::{JoinOptions, OwnMembershipConfig};
use rtc_test_homeserver::{Method, TestHomeserver, TestUser};
use tracing_subscriber::fmt::MakeWriter;

use crate::calls::support::{Peer, fast_timings, has_user, shared_room, wait_for_participants};

/// Every byte logged, from every thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The delay ids the server holds for `user` now.
async fn scheduled_delay_ids(hs: &TestHomeserver, user: &TestUser) -> Vec<String> {
    let (status, answer) = hs
        .request(
            Method::GET,
            "/_matrix/client/unstable/org.matrix.msc4140/delayed_events",
            Some(&user.access_token),
            None,
        )
        .await
        .expect("list delayed events");
    assert_eq!(status, 200, "{answer}");
    answer["delayed_events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|event| event["delay_id"].as_str().map(ToOwned::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_delay_id_reaches_any_log_line_during_a_call() {
    let captured = Captured::default();
    // Every target at every level, with span fields (where request paths travel).
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(captured.clone())
            .finish(),
    )
    .expect("this test owns the process's logging (run it under nextest)");

    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(&hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(Peer::start(&hs, &alice), Peer::start(&hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);

    // A 6 s membership refreshed at half-life, a heartbeat every second: within the call
    // below alice restarts her delayed leave several times and refreshes her join twice.
    let timings = OwnMembershipConfig {
        sticky_duration_ms: 6_000,
        ..fast_timings()
    };
    a_call
        .join(JoinOptions::default().with_timings(timings))
        .await
        .expect("alice joins");
    wait_for_participants(&b_call, "alice in the call", |p| {
        has_user(p, &alice.user_id)
    })
    .await;
    let mut delay_ids = scheduled_delay_ids(&hs, &alice).await;
    assert!(!delay_ids.is_empty(), "alice's delayed leave is scheduled");
    // Heartbeats and refreshes go on; a heartbeat is seen working when the next refresh of
    // bob's view arrives.
    let first_event = b_call.participants()[0].event_id.clone();
    wait_for_participants(&b_call, "a refresh of alice's join", |p| {
        p.iter().any(|p| p.event_id != first_event)
    })
    .await;
    for id in scheduled_delay_ids(&hs, &alice).await {
        if !delay_ids.contains(&id) {
            delay_ids.push(id);
        }
    }
    a_call.leave().await.expect("alice leaves");
    wait_for_participants(&b_call, "an empty call", |p| p.is_empty()).await;
    drop((a, b));

    let logs = captured.text();
    assert!(
        logs.lines().count() > 100,
        "the capture holds the call's logs ({} lines)",
        logs.lines().count()
    );
    let mut secrets: Vec<(&str, &str)> = vec![
        ("alice's access token", alice.access_token.as_str()),
        ("bob's access token", bob.access_token.as_str()),
    ];
    secrets.extend(
        delay_ids
            .iter()
            .map(|id| ("a delay id of alice", id.as_str())),
    );
    for (what, secret) in secrets {
        let leaks: Vec<&str> = logs.lines().filter(|line| line.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "{what} appears in {} log lines, e.g. {:?}",
            leaks.len(),
            &leaks[..leaks.len().min(3)]
        );
    }
}
