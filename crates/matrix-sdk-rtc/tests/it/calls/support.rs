//! Real clients on a real Synapse: what every scenario needs.
use std::{sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt};
use imbl::Vector;
use matrix_sdk::{
    Client, SessionMeta, SessionTokens,
    authentication::matrix::MatrixSession,
    config::SyncSettings,
    ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomId},
    store::RoomLoadSettings,
};
use matrix_sdk_rtc::{
    Diagnostic, DiagnosticEvent, OwnMembershipConfig, Participant, RtcCall, RtcClient, RtcConfig,
    SessionChange, SessionUpdate,
};
use rtc_test_homeserver::{CreateRoomOptions, Method, TestHomeserver, TestUser};
use serde_json::Value;
use tokio::task::JoinHandle;

/// How long any scenario waits for something that should happen within a sync round trip
/// or two. Generous: CI machines are slow and shared.
pub(crate) const EVENTUALLY: Duration = Duration::from_secs(30);

/// Fast heartbeat timings for tests: a 3 s delayed leave restarted every second.
pub(crate) fn fast_timings() -> OwnMembershipConfig {
    OwnMembershipConfig {
        delay_ms: 3_000,
        restart_interval_ms: 1_000,
        ..OwnMembershipConfig::default()
    }
}

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,matrix_sdk_rtc=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// One real client: a `matrix_sdk::Client` with its sync loop and our driver.
pub(crate) struct Peer {
    pub(crate) user: TestUser,
    pub(crate) rtc: RtcClient,
    sync: Option<JoinHandle<()>>,
}

impl Peer {
    /// Logs `user` in (restoring its session), syncs once, starts the sync loop and the
    /// rtc driver.
    pub(crate) async fn start(hs: &TestHomeserver, user: &TestUser) -> Self {
        Self::start_with(hs, user, RtcConfig::default()).await
    }

    pub(crate) async fn start_with(
        hs: &TestHomeserver,
        user: &TestUser,
        config: RtcConfig,
    ) -> Self {
        // Every test user's device is fresh: its keys need not outlive the test.
        let rtc = RtcClient::builder(hs.base_url())
            .ephemeral_device()
            .config(config)
            .build()
            .await
            .expect("client builds");
        Self::start_client(user, rtc).await
    }

    /// Like [`start`](Self::start), with a client that is built but not logged in yet.
    pub(crate) async fn start_client(user: &TestUser, rtc: RtcClient) -> Self {
        restore_session(rtc.client(), user).await;
        let client = rtc.client().clone();
        // No long-poll: a client restarted on its stores has a sync token, and the server
        // would hold the request until something happens.
        client
            .sync_once(SyncSettings::default().timeout(Duration::ZERO))
            .await
            .expect("first sync");
        let sync = Some(spawn_sync_loop(client));
        rtc.start().await.expect("rtc driver starts");
        Self {
            user: user.clone(),
            rtc,
            sync,
        }
    }

    /// Stops the main sync loop (our side connection keeps running): from now on this client
    /// receives no to-device messages, so no room keys.
    pub(crate) fn pause_sync(&mut self) {
        if let Some(sync) = self.sync.take() {
            sync.abort();
        }
    }

    /// Starts the main sync loop again, from where it stopped.
    pub(crate) fn resume_sync(&mut self) {
        if self.sync.is_none() {
            self.sync = Some(spawn_sync_loop(self.rtc.client().clone()));
        }
    }

    pub(crate) fn user_id(&self) -> OwnedUserId {
        OwnedUserId::try_from(self.user.user_id.as_str()).expect("valid user id")
    }

    /// The room call of `room_id`, once this client knows the room.
    pub(crate) async fn room_call(&self, room_id: &RoomId) -> RtcCall {
        let client = self.rtc.client();
        tokio::time::timeout(EVENTUALLY, async {
            let mut updates = client.subscribe_to_all_room_updates();
            while client.get_room(room_id).is_none() {
                let _ = updates.recv().await;
            }
        })
        .await
        .expect("the room reaches this client");
        self.rtc.room_call(room_id)
    }

    /// Kills this client without leaving: its driver, sync loop and client are dropped.
    pub(crate) fn crash(mut self) {
        self.pause_sync();
        self.rtc.shutdown();
        // Dropping `self` drops the client and the last handle on the driver.
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.pause_sync();
    }
}

/// Logs `client` in as `user` by restoring its session (its access token and device).
pub(crate) async fn restore_session(client: &Client, user: &TestUser) {
    let session = MatrixSession {
        meta: SessionMeta {
            user_id: OwnedUserId::try_from(user.user_id.as_str()).expect("valid user id"),
            device_id: OwnedDeviceId::from(user.device_id.as_str()),
        },
        tokens: SessionTokens {
            access_token: user.access_token.clone(),
            refresh_token: None,
        },
    };
    client
        .matrix_auth()
        .restore_session(session, RoomLoadSettings::default())
        .await
        .expect("session restores");
}

/// The main sync loop, continuing from the client's last sync token. matrix-sdk's `sync`
/// returns at its first failure (a restarting server, say), so it is started again after a
/// short pause until the task is aborted.
fn spawn_sync_loop(client: Client) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let settings = SyncSettings::default().timeout(Duration::from_secs(10));
            match client.sync(settings).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::debug!(%error, "the main sync failed; starting it again");
                    // A retry backoff, not a synchronisation: nothing to wait for but time.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    })
}

/// A room of `creator` that every one of `others` has joined.
pub(crate) async fn shared_room(
    hs: &TestHomeserver,
    creator: &TestUser,
    others: &[&TestUser],
) -> OwnedRoomId {
    room(hs, creator, others, false).await
}

/// A room of `creator` with encryption on from the start, that every one of `others` joined.
pub(crate) async fn encrypted_room(
    hs: &TestHomeserver,
    creator: &TestUser,
    others: &[&TestUser],
) -> OwnedRoomId {
    room(hs, creator, others, true).await
}

/// A room of `creator`, encrypted from the start or not, that every one of `others` joined.
pub(crate) async fn room(
    hs: &TestHomeserver,
    creator: &TestUser,
    others: &[&TestUser],
    encrypted: bool,
) -> OwnedRoomId {
    let options = CreateRoomOptions {
        encrypted,
        invite: others.iter().map(|user| user.user_id.clone()).collect(),
        ..CreateRoomOptions::default()
    };
    let room_id = hs
        .create_room(creator, options)
        .await
        .expect("room created");
    for user in others {
        hs.join_room(user, &room_id).await.expect("joined");
    }
    OwnedRoomId::try_from(room_id.as_str()).expect("valid room id")
}

/// A client built by our builder, with its SQLite stores in the server's run directory.
///
/// Without a passphrase: with one, opening the four stores derives a key four times, which
/// takes about 12 s per client in a debug build (unoptimised dependencies).
pub(crate) async fn sqlite_peer(hs: &TestHomeserver, user: &TestUser) -> Peer {
    sqlite_peer_with(hs, user, RtcConfig::default()).await
}

/// [`sqlite_peer`] with a configuration of its own.
pub(crate) async fn sqlite_peer_with(
    hs: &TestHomeserver,
    user: &TestUser,
    config: RtcConfig,
) -> Peer {
    let stores = hs.run_dir().join(format!("stores-{}", user.localpart));
    let rtc = RtcClient::builder(hs.base_url())
        .sqlite_store(&stores, None)
        .config(config)
        .build()
        .await
        .expect("client builds");
    Peer::start_client(user, rtc).await
}

/// The delayed events `user` has scheduled on the server (`GET …/delayed_events`).
pub(crate) async fn delayed_events_of(hs: &TestHomeserver, user: &TestUser) -> Vec<Value> {
    let (status, body) = hs
        .request(
            Method::GET,
            "/_matrix/client/unstable/org.matrix.msc4140/delayed_events",
            Some(&user.access_token),
            None,
        )
        .await
        .expect("request sent");
    assert_eq!(status, 200, "{body}");
    body["delayed_events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("a list of delayed events: {body}"))
}

/// Waits until `call`'s participants satisfy `done`, and returns them.
pub(crate) async fn wait_for_participants(
    call: &RtcCall,
    what: &str,
    done: impl Fn(&Vector<Arc<Participant>>) -> bool,
) -> Vector<Arc<Participant>> {
    let (mut current, mut diffs) = call.subscribe_participants();
    let found = tokio::time::timeout(EVENTUALLY, async {
        loop {
            if done(&current) {
                return current.clone();
            }
            let Some(batch) = diffs.next().await else {
                panic!("participant stream ended")
            };
            for diff in batch {
                diff.apply(&mut current);
            }
        }
    })
    .await;
    match found {
        Ok(participants) => participants,
        Err(_) => panic!(
            "timed out waiting for {what}; participants: {:?}",
            call.participants()
        ),
    }
}

/// The next item of `stream` that `pick` accepts, within [`EVENTUALLY`].
pub(crate) async fn next_matching<T: std::fmt::Debug, U>(
    stream: &mut (impl Stream<Item = T> + Unpin),
    what: &str,
    mut pick: impl FnMut(&T) -> Option<U>,
) -> U {
    let found = tokio::time::timeout(EVENTUALLY, async {
        while let Some(item) = stream.next().await {
            if let Some(found) = pick(&item) {
                return Some(found);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(found)) => found,
        Ok(None) => panic!("stream ended before {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

pub(crate) fn has_user(participants: &Vector<Arc<Participant>>, user_id: &str) -> bool {
    participants
        .iter()
        .any(|participant| participant.user_id.as_str() == user_id)
}

/// The change an item of `subscribe_session_changes` carries. A `Resync` fails the test: the
/// tests read every change, so their reader must never fall behind.
pub(crate) fn session_change(update: &SessionUpdate) -> &SessionChange {
    match update {
        SessionUpdate::Change(change) => change,
        SessionUpdate::Resync { missed, calls } => panic!(
            "the session-change reader fell behind and missed {missed} changes; now: {calls:?}"
        ),
        other => panic!("an unknown session update: {other:?}"),
    }
}

/// The diagnostic an item of `subscribe_diagnostics` carries. A `Missed` fails the test: the
/// tests read every diagnostic, so their reader must never fall behind.
pub(crate) fn diagnostic(event: &DiagnosticEvent) -> &Diagnostic {
    match event {
        DiagnosticEvent::Diagnostic(diagnostic) => diagnostic,
        DiagnosticEvent::Missed { missed } => {
            panic!("the diagnostics reader fell behind and missed {missed} diagnostics")
        }
        other => panic!("an unknown diagnostic event: {other:?}"),
    }
}
