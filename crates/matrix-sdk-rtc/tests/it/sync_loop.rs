//! The supervised main sync loop against a real Synapse that is restarted and frozen under it:
//! it says it is retrying, comes back by itself, and receives what was sent meanwhile.
use std::time::Duration;

use matrix_sdk::{Client, ruma::events::room::message::OriginalSyncRoomMessageEvent};
use matrix_sdk_rtc::{RtcClient, SyncLoop, SyncLoopHandle, SyncLoopStatus};
use rtc_test_homeserver::{Method, TestHomeserver, TestUser, encode_path_segment, unique_id};
use serde_json::json;
use tokio::sync::mpsc;

use crate::calls::support::{EVENTUALLY, restore_session, shared_room};

/// A client of `user` (its session restored) whose room messages arrive on the channel.
async fn client(hs: &TestHomeserver, user: &TestUser) -> (Client, mpsc::UnboundedReceiver<String>) {
    let rtc = RtcClient::builder(hs.base_url())
        .ephemeral_device()
        .build()
        .await
        .expect("client");
    let client = rtc.client().clone();
    restore_session(&client, user).await;
    let (sender, receiver) = mpsc::unbounded_channel();
    client.add_event_handler(move |event: OriginalSyncRoomMessageEvent| {
        let sender = sender.clone();
        async move {
            let _ = sender.send(event.content.body().to_owned());
        }
    });
    (client, receiver)
}

async fn send_text(hs: &TestHomeserver, user: &TestUser, room: &str, body: &str) {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        encode_path_segment(room),
        unique_id("txn")
    );
    let (status, answer) = hs
        .request(
            Method::PUT,
            &path,
            Some(&user.access_token),
            Some(&json!({ "msgtype": "m.text", "body": body })),
        )
        .await
        .expect("send");
    assert_eq!(status, 200, "{answer}");
}

async fn next_message(messages: &mut mpsc::UnboundedReceiver<String>, wanted: &str) {
    tokio::time::timeout(EVENTUALLY, async {
        while let Some(body) = messages.recv().await {
            if body == wanted {
                return;
            }
        }
        panic!("the handler went away before {wanted:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("{wanted:?} never arrived"));
}

/// Waits until the loop's status is `Running`.
async fn running(sync: &SyncLoopHandle) {
    let mut status = sync.subscribe_status();
    tokio::time::timeout(EVENTUALLY, async {
        while sync.status() != SyncLoopStatus::Running {
            status.next().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the loop is not running: {:?}", sync.status()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_loop_survives_a_restart_and_a_freeze_of_the_server() {
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room = shared_room(&hs, &alice, &[&bob]).await;
    let (client, mut messages) = client(&hs, &bob).await;
    let sync = SyncLoop::new(client)
        .with_poll_timeout(Duration::from_secs(5))
        .with_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .spawn(None);
    send_text(&hs, &alice, room.as_str(), "before").await;
    next_message(&mut messages, "before").await;
    // The handler runs while the answer is processed, before the loop records it.
    running(&sync).await;

    // Every status from now on, until the loop runs again after having retried.
    let mut status = sync.subscribe_status();
    let retried = tokio::spawn(async move {
        let mut retries = 0;
        while let Some(value) = status.next().await {
            match value {
                SyncLoopStatus::Retrying { .. } => retries += 1,
                SyncLoopStatus::Running if retries > 0 => return retries,
                SyncLoopStatus::Stopped { reason } => panic!("the loop stopped: {reason:?}"),
                _ => {}
            }
        }
        retries
    });
    hs.restart().await.expect("synapse restarts");
    send_text(&hs, &alice, room.as_str(), "after the restart").await;
    next_message(&mut messages, "after the restart").await;
    let retries = tokio::time::timeout(EVENTUALLY, retried)
        .await
        .expect("the loop runs again")
        .expect("status task");
    assert!(retries >= 1, "the loop said it was retrying");

    // Frozen (SIGSTOP) for longer than a long poll: requests hang, time out, are retried;
    // once thawed the loop goes on by itself.
    let pid = hs.pid().expect("synapse runs");
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([name, &pid.to_string()])
            .status()
            .expect("kill runs")
    };
    assert!(signal("-STOP").success());
    let frozen_for = Duration::from_secs(8);
    let thaw = tokio::spawn(async move {
        tokio::time::sleep(frozen_for).await; // the length of the outage is the test's input
        assert!(
            std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status()
                .expect("kill runs")
                .success()
        );
    });
    // Sent while frozen: the server takes it once it thaws.
    send_text(&hs, &alice, room.as_str(), "after the freeze").await;
    thaw.await.expect("thawed");
    next_message(&mut messages, "after the freeze").await;
    running(&sync).await;
    sync.stop();
    assert!(matches!(sync.status(), SyncLoopStatus::Stopped { .. }));
}
