//! The HTTP layer: its small pure helpers, and the layer against a real Synapse (feature
//! detection, sticky and delayed sends, delayed event management and the side connection).
//! Faults a real server does not produce on demand go through a small proxy ([`proxy`]) in
//! front of the same Synapse.

mod builder;
mod delayed;
mod features;
mod forms;
mod proxy;
mod side_sync;

use std::{collections::BTreeSet, future::Future, time::Duration};

use eyeball::Subscriber;
use matrix_rtc_machine::PageFlags;
use matrix_sdk::{
    Client, SessionMeta, SessionTokens,
    authentication::matrix::MatrixSession,
    ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId},
    store::RoomLoadSettings,
};
use matrix_sticky_events::{Parsed, StickyBatch, StickyEvent};
use rtc_test_homeserver::TestUser;
use serde_json::{Value, value::RawValue};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use super::{RequestError, encode_query, millis};
use crate::{SideSync, SideSyncStatus, pump::SyncInput};

#[test]
fn millis_saturates() {
    assert_eq!(millis(Duration::from_secs(2)), 2000);
    assert_eq!(millis(Duration::MAX), u64::MAX);
}

#[test]
fn query_encoding() {
    assert_eq!(
        encode_query(&[("a", "1"), ("b.c", "x y")]).unwrap(),
        "a=1&b.c=x+y"
    );
}

/// Longest wait for anything the server should do promptly.
const PROMPT: Duration = Duration::from_secs(20);

/// How many inputs the side connection may queue before it waits for the test to read them.
const SIDE_QUEUE: usize = 64;

/// A client logged in as `user` on the server at `base_url`, with an in-memory store and no
/// sync loop.
async fn client_for(base_url: &str, user: &TestUser) -> Client {
    let client = Client::builder()
        .homeserver_url(base_url)
        .build()
        .await
        .expect("build client");
    restore(&client, user).await;
    client
}

/// Logs `client` in as `user` by restoring its session.
pub(crate) async fn restore(client: &Client, user: &TestUser) {
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

/// One page of the side connection, as the pump receives it: parsed by the one sticky
/// parser, with its flags.
#[derive(Debug)]
struct Page {
    batch: StickyBatch,
    flags: PageFlags,
}

/// A running side connection whose inputs for the pump arrive on a channel.
struct RunningSideSync {
    inputs: mpsc::Receiver<SyncInput>,
    status: Subscriber<SideSyncStatus>,
    /// How many times the connection reported itself down (`SyncInput::SideDown`) so far.
    downs: usize,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RequestError>>,
}

impl RunningSideSync {
    fn spawn(side_sync: SideSync) -> Self {
        let (sink, inputs) = mpsc::channel(SIDE_QUEUE);
        let (stop, stopped) = oneshot::channel::<()>();
        let status = side_sync.subscribe_status();
        let task = tokio::spawn(side_sync.run(sink, async move {
            let _ = stopped.await;
        }));
        Self {
            inputs,
            status,
            downs: 0,
            stop: Some(stop),
            task,
        }
    }

    /// The next page; reports of the connection being down are counted in `downs`.
    async fn next_page(&mut self) -> Page {
        loop {
            let input = prompt("side connection page", self.inputs.recv())
                .await
                .expect("side connection ended");
            match input {
                SyncInput::SidePage { batch, flags } => return Page { batch, flags },
                SyncInput::SideDown => self.downs += 1,
                other => panic!("the side connection sent {other:?}"),
            }
        }
    }

    /// Receives pages until every id in `wanted` was seen; returns them all.
    async fn pages_until(&mut self, wanted: &[&str]) -> Vec<Page> {
        let mut missing: BTreeSet<String> = wanted.iter().map(|id| (*id).to_owned()).collect();
        let mut pages = Vec::new();
        while !missing.is_empty() {
            let page = self.next_page().await;
            for id in event_ids(&page) {
                missing.remove(&id);
            }
            pages.push(page);
        }
        pages
    }

    /// Stops the loop and returns what it returned, with its final status.
    async fn stop(mut self) -> (Result<(), RequestError>, SideSyncStatus) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = prompt("side connection stop", self.task)
            .await
            .expect("side connection task");
        (result, self.status.get())
    }
}

/// The parsed sticky events of a page with their rooms, in order (rejected events and
/// encrypted envelopes are skipped).
fn sticky_events(page: &Page) -> impl Iterator<Item = (OwnedRoomId, &StickyEvent)> + '_ {
    page.batch.iter().filter_map(|(room, event)| match event {
        Ok(Parsed::Sticky(event)) => Some((room.to_owned(), event)),
        _ => None,
    })
}

/// The event ids of a page's parsed sticky events, in order.
fn event_ids(page: &Page) -> Vec<String> {
    sticky_events(page)
        .map(|(_, event)| event.meta.event_id.to_string())
        .collect()
}

/// The parsed sticky event with this id in some page, with its room.
fn find_event<'a>(pages: &'a [Page], event_id: &str) -> Option<(OwnedRoomId, &'a StickyEvent)> {
    pages
        .iter()
        .flat_map(sticky_events)
        .find(|(_, event)| event.meta.event_id == event_id)
}
