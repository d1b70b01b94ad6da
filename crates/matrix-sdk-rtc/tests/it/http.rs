//! The HTTP layer against a real Synapse: feature detection, sticky and delayed sends, delayed
//! event management and the side connection. Faults a real server does not produce on demand
//! go through a small proxy ([`proxy`]) in front of the same Synapse.

mod delayed;
mod features;
mod proxy;
mod side_sync;

use std::{collections::BTreeSet, future::Future, time::Duration};

use matrix_sdk::{
    Client, SessionMeta, SessionTokens,
    authentication::matrix::MatrixSession,
    ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId},
    store::RoomLoadSettings,
};
use matrix_sdk_rtc::{SideSync, SideSyncBatch, SideSyncStatus};
use rtc_test_homeserver::TestUser;
use serde_json::{Value, value::RawValue};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

/// Longest wait for anything the server should do promptly.
const PROMPT: Duration = Duration::from_secs(20);

/// A client logged in as `user` on the server at `base_url`, with an in-memory store and no
/// sync loop.
async fn client_for(base_url: &str, user: &TestUser) -> Client {
    let client = Client::builder()
        .homeserver_url(base_url)
        .build()
        .await
        .expect("build client");
    let user_id: OwnedUserId = user.user_id.parse().expect("user id");
    let device_id: OwnedDeviceId = user.device_id.as_str().into();
    let session = MatrixSession {
        meta: SessionMeta { user_id, device_id },
        tokens: SessionTokens {
            access_token: user.access_token.clone(),
            refresh_token: None,
        },
    };
    client
        .matrix_auth()
        .restore_session(session, RoomLoadSettings::default())
        .await
        .expect("restore session");
    client
}

/// JSON as a raw value.
fn raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("raw json")
}

/// A room id from the harness.
fn room_id(id: &str) -> OwnedRoomId {
    id.parse().expect("room id")
}

/// Runs `future` with the [`PROMPT`] time limit.
async fn prompt<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PROMPT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PROMPT:?}"))
}

/// A running side connection whose batches arrive on a channel.
struct RunningSideSync {
    batches: mpsc::UnboundedReceiver<SideSyncBatch>,
    status: eyeball::Subscriber<SideSyncStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), matrix_sdk_rtc::RequestError>>,
}

impl RunningSideSync {
    fn spawn(side_sync: SideSync) -> Self {
        let (sender, batches) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let status = side_sync.subscribe_status();
        let task = tokio::spawn(side_sync.run(
            move |batch| {
                // The test may have stopped listening; that is fine.
                let _ = sender.send(batch);
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            batches,
            status,
            stop: Some(stop),
            task,
        }
    }

    async fn next_batch(&mut self) -> SideSyncBatch {
        prompt("side connection batch", self.batches.recv())
            .await
            .expect("side connection ended")
    }

    /// Receives batches until every id in `wanted` was seen; returns them all.
    async fn batches_until(&mut self, wanted: &[&str]) -> Vec<SideSyncBatch> {
        let mut missing: BTreeSet<String> = wanted.iter().map(|id| (*id).to_owned()).collect();
        let mut batches = Vec::new();
        while !missing.is_empty() {
            let batch = self.next_batch().await;
            for id in event_ids(&batch) {
                missing.remove(&id);
            }
            batches.push(batch);
        }
        batches
    }

    /// Stops the loop and returns what it returned, with its final status.
    async fn stop(mut self) -> (Result<(), matrix_sdk_rtc::RequestError>, SideSyncStatus) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = prompt("side connection stop", self.task)
            .await
            .expect("side connection task");
        (result, self.status.get())
    }
}

/// The event ids of a batch, in order (events without one are skipped).
fn event_ids(batch: &SideSyncBatch) -> Vec<String> {
    batch
        .rooms
        .iter()
        .flat_map(|(_, events)| events.iter())
        .filter_map(|event| {
            let value: Value = serde_json::from_str(event.get()).ok()?;
            value["event_id"].as_str().map(str::to_owned)
        })
        .collect()
}

/// The event with this id in a batch, parsed, with its room.
fn find_event(batches: &[SideSyncBatch], event_id: &str) -> Option<(OwnedRoomId, Value)> {
    batches
        .iter()
        .flat_map(|batch| batch.rooms.iter())
        .find_map(|(room, events)| {
            events.iter().find_map(|event| {
                let value: Value = serde_json::from_str(event.get()).ok()?;
                (value["event_id"] == event_id).then(|| (room.clone(), value))
            })
        })
}
