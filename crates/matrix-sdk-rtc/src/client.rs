//! [`RtcClient`]: the entry point. It owns the driver task of one `matrix_sdk::Client`.
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures_util::Stream;
use matrix_rtc_membership::SessionChange;
use matrix_sdk::{
    Client, Room,
    event_handler::EventHandlerHandle,
    ruma::{
        OwnedRoomId, RoomId,
        events::{AnySyncStateEvent, AnySyncTimelineEvent, StateEventType},
        serde::Raw,
    },
};
use matrix_sticky_events::Receipt;
use tokio::sync::{OnceCell, broadcast, mpsc, watch};
use tracing::{debug, info, trace, warn};

use crate::{
    CallEvent, Diagnostic, Error, HomeserverApi, Result, RtcCall, RtcConfig, ServerFeatures,
    SideSync, SideSyncStatus,
    driver::{Driver, EventRoute, Input, Outbound},
    encryption::Encryptor,
    observe::{CallKey, Registry},
    persist::{CallStore, OwnCalls},
};

/// Live MatrixRTC call membership for one `matrix_sdk::Client`.
///
/// Build it with [`RtcClient::builder`] (which also builds the `matrix_sdk::Client`), or wrap
/// a client you built yourself with [`RtcClient::new`]. After logging in, call
/// [`start`](Self::start): it opens our own sliding-sync side connection for sticky events,
/// registers event handlers on the client's main sync (the app keeps running its sync loop),
/// and spawns the driver task. Then use [`call`](Self::call) to observe and join calls.
///
/// Cloning is cheap and every clone refers to the same driver. When the last clone is
/// dropped, the driver stops *without* leaving calls: the server-side delayed leave then ends
/// our memberships, as it would after a crash. Call [`RtcCall::leave`] first for a clean exit.
///
/// ```no_run
/// # #![recursion_limit = "256"]
/// # async fn example() -> matrix_sdk_rtc::Result<()> {
/// use matrix_sdk_rtc::{JoinOptions, RtcClient};
/// use matrix_sdk::ruma::room_id;
///
/// let rtc = RtcClient::builder("http://127.0.0.1:8008").build().await?;
/// rtc.client().matrix_auth().login_username("alice", "secret").send().await?;
/// rtc.start().await?;
/// let sync = rtc.client().clone();
/// tokio::spawn(async move { sync.sync(Default::default()).await });
///
/// let call = rtc.room_call(room_id!("!room:example.org"));
/// let (participants, _diffs) = call.subscribe_participants();
/// println!("{} in the call", participants.len());
/// call.join(JoinOptions::default()).await?;
/// call.leave().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RtcClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    config: RtcConfig,
    api: HomeserverApi,
    registry: Arc<Registry>,
    features: OnceCell<ServerFeatures>,
    side_sync_status: eyeball::SharedObservable<SideSyncStatus>,
    running: Mutex<Option<Running>>,
    /// Our handle on the client's olm machine: only for clients built by [`RtcClientBuilder`].
    encryptor: Option<Encryptor>,
    /// The store passphrase, which also protects our persisted calls.
    store_passphrase: Option<String>,
    /// Calls we were in when the app last stopped (see [`RtcClient::interrupted_calls`]).
    interrupted: Mutex<Vec<(OwnedRoomId, String)>>,
}

/// What `start` set up, torn down on shutdown or drop.
#[derive(Debug)]
struct Running {
    inputs: mpsc::UnboundedSender<Input>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    handlers: Vec<EventHandlerHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(running) = self.running.get_mut().ok().and_then(Option::take) {
            stop(&self.client, running);
        }
    }
}

fn stop(client: &Client, running: Running) {
    let _ = running.shutdown.send(true);
    for handler in running.handlers {
        client.remove_event_handler(handler);
    }
    for task in running.tasks {
        task.abort();
    }
}

fn receipt_now() -> Receipt {
    Receipt {
        instant: Instant::now(),
        wall_ms: crate::requests::wall_clock_ms(),
    }
}

/// Builds a `matrix_sdk::Client` together with its [`RtcClient`].
///
/// Building the client here (rather than wrapping one) is what lets this crate encrypt our
/// membership in encrypted rooms: the encryption route needs a handle on the client's olm
/// machine that only its builder can keep.
#[derive(Debug)]
pub struct RtcClientBuilder {
    homeserver_url: String,
    sqlite_store: Option<(PathBuf, Option<String>)>,
    config: RtcConfig,
}

impl RtcClientBuilder {
    /// Keep the client's state and crypto stores in SQLite databases under `path`,
    /// encrypted with `passphrase` when given. Without this, the stores live in memory.
    #[must_use]
    pub fn sqlite_store(mut self, path: impl Into<PathBuf>, passphrase: Option<&str>) -> Self {
        self.sqlite_store = Some((path.into(), passphrase.map(ToOwned::to_owned)));
        self
    }

    /// Use this configuration instead of the default one.
    #[must_use]
    pub fn config(mut self, config: RtcConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the `matrix_sdk::Client` and the [`RtcClient`] around it. The client is not
    /// logged in yet.
    pub async fn build(self) -> Result<RtcClient> {
        // We build the base client ourselves and keep a clone: after login its olm machine is
        // the client's, which is how we encrypt our membership (see `encryption.rs`).
        let sqlite = self
            .sqlite_store
            .as_ref()
            .map(|(path, passphrase)| (path.as_path(), passphrase.as_deref()));
        let base = crate::encryption::base_client(sqlite).await?;
        let client = Client::builder()
            .homeserver_url(&self.homeserver_url)
            .base_client(base.clone())
            .build()
            .await?;
        let passphrase = self.sqlite_store.and_then(|(_, passphrase)| passphrase);
        Ok(RtcClient::with_encryptor(
            client,
            self.config,
            Some(Encryptor::new(base)),
            passphrase,
        ))
    }
}

impl RtcClient {
    /// A builder for a new `matrix_sdk::Client` on `homeserver_url` and its `RtcClient`.
    pub fn builder(homeserver_url: impl Into<String>) -> RtcClientBuilder {
        RtcClientBuilder {
            homeserver_url: homeserver_url.into(),
            sqlite_store: None,
            config: RtcConfig::default(),
        }
    }

    /// Wraps a client built elsewhere. Such a client can observe every room, and join calls
    /// in unencrypted rooms only: matrix-sdk offers no public way to the olm machine of a
    /// client it built, so we could not encrypt our membership, and joining an encrypted
    /// room fails with [`Error::EncryptedRoomNotSupported`] (we never send it in plaintext).
    /// Build the client with [`RtcClient::builder`] to join calls in encrypted rooms.
    pub fn new(client: Client, config: RtcConfig) -> Self {
        Self::with_encryptor(client, config, None, None)
    }

    fn with_encryptor(
        client: Client,
        config: RtcConfig,
        encryptor: Option<Encryptor>,
        store_passphrase: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                api: HomeserverApi::new(client.clone()),
                client,
                config,
                registry: Arc::new(Registry::new()),
                features: OnceCell::new(),
                side_sync_status: eyeball::SharedObservable::new(SideSyncStatus::Stopped),
                running: Mutex::new(None),
                encryptor,
                store_passphrase,
                interrupted: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The underlying `matrix_sdk::Client`.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// What the homeserver offers (sticky events, delayed events, sliding sync, RTC
    /// transports), fetched once from `/versions` and `/capabilities`.
    pub async fn features(&self) -> Result<ServerFeatures> {
        let features = self
            .inner
            .features
            .get_or_try_init(|| ServerFeatures::fetch_fresh(&self.inner.client))
            .await?;
        Ok(*features)
    }

    /// Starts the driver: feature detection, the side connection (when the server offers
    /// sticky events over sliding sync), the event handlers on the main sync, and the task
    /// that owns all state. The client must be logged in. Calling it again does nothing.
    pub async fn start(&self) -> Result<()> {
        let client = &self.inner.client;
        let (Some(user_id), Some(device_id)) = (client.user_id(), client.device_id()) else {
            return Err(Error::NotLoggedIn);
        };
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        let features = self.features().await?;
        for missing in features.missing() {
            warn!(%missing, "the homeserver lacks a feature; falling back to what it offers");
        }
        let call_store =
            CallStore::open(client.clone(), self.inner.store_passphrase.as_deref()).await;
        let previous = call_store.load().await;

        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if running.is_some() {
            return Ok(());
        }
        let (inputs, input_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let outbound = Outbound {
            api: self.inner.api.clone(),
            inputs: inputs.clone(),
            txn_prefix: uuid::Uuid::new_v4().simple().to_string()[..12].into(),
            encryptor: self.inner.encryptor.clone(),
        };
        // Calls we were in when the app stopped: end those memberships now (they would
        // otherwise linger until their delayed leave fires), and let the app resume them.
        *self
            .inner
            .interrupted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = previous
            .records()
            .map(|record| (record.room_id.clone(), record.slot_id.clone()))
            .collect();
        let (persist, persist_rx) = watch::channel(OwnCalls::default());
        let persist_task = tokio::spawn(persist_calls(
            call_store,
            previous,
            outbound.clone(),
            persist_rx,
        ));
        let driver = Driver::new(
            client.clone(),
            (user_id, device_id),
            &self.inner.config,
            self.inner.registry.clone(),
            outbound,
            persist,
        );
        let mut tasks = vec![
            tokio::spawn(driver.run(input_rx, shutdown_rx.clone())),
            persist_task,
        ];
        // Listen for room keys before the first decryption attempt: a key may arrive between
        // a failed attempt and the subscription.
        tasks.push(tokio::spawn(forward_room_keys(
            client.clone(),
            inputs.clone(),
        )));
        tasks.push(tokio::spawn(forward_new_devices(
            client.clone(),
            inputs.clone(),
        )));
        let handlers = register_handlers(client, &inputs);

        if features.sticky_events && features.sliding_sync {
            let side = SideSync::new(client.clone(), self.inner.config.side_sync_conn_id.clone())
                .with_poll_timeout(self.inner.config.side_sync_poll_timeout);
            let mut status = side.subscribe_status();
            let mirror = self.inner.side_sync_status.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(value) = status.next().await {
                    mirror.set(value);
                }
            }));
            let sink_inputs = inputs.clone();
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let sink = move |batch| {
                    let _ = sink_inputs.send(Input::SideSync(batch));
                };
                let shutdown = async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                };
                if let Err(error) = side.run(sink, shutdown).await {
                    warn!(%error, "side connection ended; sticky events arrive through the main sync only");
                }
            }));
        } else {
            info!("no sticky-events side connection: the server does not offer it");
        }

        // The rooms we are in already: their encryption, and their legacy state memberships.
        let seed_inputs = inputs.clone();
        let seed_client = client.clone();
        tasks.push(tokio::spawn(async move {
            for room in seed_client.joined_rooms() {
                seed_room(&room, &seed_inputs).await;
            }
        }));

        *running = Some(Running {
            inputs,
            shutdown,
            tasks,
            handlers,
        });
        debug!("rtc driver started");
        Ok(())
    }

    /// The calls (`(room, slot)`) we were in when this client last stopped without leaving
    /// (the app was killed or restarted mid-call). Their old memberships are ended by
    /// [`start`](Self::start); join them again to resume.
    pub fn interrupted_calls(&self) -> Vec<(OwnedRoomId, String)> {
        self.inner
            .interrupted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stops the driver, its side connection and event handlers, without leaving calls.
    pub fn shutdown(&self) {
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(running) = running {
            stop(&self.inner.client, running);
        }
    }

    /// The call in `slot_id` (`{application}#{name}`) of `room_id`.
    pub fn call(&self, room_id: &RoomId, slot_id: &str) -> Result<RtcCall> {
        let valid = slot_id
            .split_once(matrix_rtc_membership::wire::SLOT_SEPARATOR)
            .is_some_and(|(application, name)| !application.is_empty() && !name.is_empty());
        if !valid {
            return Err(Error::InvalidSlot(slot_id.to_owned()));
        }
        Ok(self.call_unchecked(CallKey::new(room_id, slot_id)))
    }

    /// The room's call (`m.call#ROOM`), the one Element Call uses.
    pub fn room_call(&self, room_id: &RoomId) -> RtcCall {
        self.call_unchecked(CallKey::new(
            room_id,
            matrix_rtc_membership::wire::ROOM_CALL_SLOT,
        ))
    }

    fn call_unchecked(&self, key: CallKey) -> RtcCall {
        let observables = self.inner.registry.call(&key);
        RtcCall::new(self.clone(), key, observables)
    }

    /// The calls that have at least one participant now, as `(room, slot)`.
    pub fn active_calls(&self) -> Vec<(OwnedRoomId, String)> {
        self.inner
            .registry
            .active_calls()
            .into_iter()
            .map(|key| (key.room_id, key.slot_id))
            .collect()
    }

    /// Calls starting and ending, across all rooms, from now on.
    pub fn subscribe_call_events(&self) -> impl Stream<Item = CallEvent> + Send + Unpin + use<> {
        broadcast_stream(self.inner.registry.call_events.subscribe())
    }

    /// Every membership change across rooms, from now on: sessions starting and ending,
    /// participants joining, updating (a refresh) and leaving, each leave with its reason.
    pub fn subscribe_session_changes(
        &self,
    ) -> impl Stream<Item = SessionChange> + Send + Unpin + use<> {
        broadcast_stream(self.inner.registry.session_changes.subscribe())
    }

    /// Events that did not count, and why, from now on.
    pub fn subscribe_diagnostics(&self) -> impl Stream<Item = Diagnostic> + Send + Unpin + use<> {
        broadcast_stream(self.inner.registry.diagnostics.subscribe())
    }

    /// The state of the sticky-events side connection.
    pub fn subscribe_side_sync_status(&self) -> eyeball::Subscriber<SideSyncStatus> {
        self.inner.side_sync_status.subscribe()
    }

    pub(crate) fn api(&self) -> &HomeserverApi {
        &self.inner.api
    }

    /// Our handle on the client's olm machine, when we built the client.
    pub(crate) fn encryptor(&self) -> Option<&Encryptor> {
        self.inner.encryptor.as_ref()
    }

    pub(crate) fn send_input(&self, input: Input) -> Result<()> {
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let inputs = running
            .as_ref()
            .map(|running| running.inputs.clone())
            .ok_or(Error::DriverStopped)?;
        drop(running);
        inputs.send(input).map_err(|_| Error::DriverStopped)
    }
}

/// A broadcast receiver as a stream that skips what a slow reader missed (with a log line).
fn broadcast_stream<T: Clone + Send + 'static>(
    receiver: broadcast::Receiver<T>,
) -> impl Stream<Item = T> + Send + Unpin {
    use futures_util::StreamExt as _;
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(item) => return Some((item, receiver)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "a slow subscriber missed events");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// The main sync's event handlers: sticky events in the timeline (low latency), and room
/// state (legacy call memberships, room members, encryption).
fn register_handlers(
    client: &Client,
    inputs: &mpsc::UnboundedSender<Input>,
) -> Vec<EventHandlerHandle> {
    let timeline_inputs = inputs.clone();
    let timeline = client.add_event_handler(move |raw: Raw<AnySyncTimelineEvent>, room: Room| {
        let inputs = timeline_inputs.clone();
        async move {
            let raw = raw.into_json();
            if EventRoute::of(&raw) == EventRoute::Sticky {
                let _ = inputs.send(Input::RoomEvent {
                    room_id: room.room_id().to_owned(),
                    raw,
                    receipt: receipt_now(),
                });
            }
        }
    });
    let state_inputs = inputs.clone();
    let state = client.add_event_handler(move |raw: Raw<AnySyncStateEvent>, room: Room| {
        let inputs = state_inputs.clone();
        async move {
            let raw = raw.into_json();
            let room_id = room.room_id().to_owned();
            match EventRoute::of(&raw) {
                EventRoute::CallState | EventRoute::RoomMember => {
                    let _ = inputs.send(Input::RoomEvent {
                        room_id,
                        raw,
                        receipt: receipt_now(),
                    });
                }
                EventRoute::Encryption => {
                    let _ = inputs.send(Input::RoomEncrypted {
                        room_id,
                        encrypted: true,
                    });
                }
                EventRoute::Sticky | EventRoute::Ignore => {}
            }
        }
    });
    vec![timeline, state]
}

/// Forwards the room keys the client receives to the driver, so that parked encrypted
/// envelopes are retried. The stream ends when the olm machine is replaced: subscribe again.
async fn forward_room_keys(client: Client, inputs: mpsc::UnboundedSender<Input>) {
    use futures_util::StreamExt as _;
    loop {
        let Some(stream) = client.encryption().room_keys_received_stream().await else {
            // No olm machine (yet): keys cannot arrive either. Look again shortly.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        let mut stream = std::pin::pin!(stream);
        // Keys may have arrived while nobody listened.
        if inputs.send(Input::RetryParked).is_err() {
            return;
        }
        while let Some(batch) = stream.next().await {
            let input = match batch {
                Ok(keys) => Input::RoomKeys(
                    keys.into_iter()
                        .map(|key| (key.room_id, key.session_id))
                        .collect(),
                ),
                // We missed some: retry everything.
                Err(_lagged) => Input::RetryParked,
            };
            if inputs.send(input).is_err() {
                return;
            }
        }
        debug!("room key stream ended (olm machine replaced); subscribing again");
    }
}

/// Tells the driver when the crypto store discovers devices, so that rooms where we are in a
/// call are checked for devices that cannot decrypt our membership yet. The stream ends when
/// the olm machine is replaced: subscribe again.
async fn forward_new_devices(client: Client, inputs: mpsc::UnboundedSender<Input>) {
    use futures_util::StreamExt as _;
    loop {
        let Ok(stream) = client.encryption().devices_stream().await else {
            // No olm machine (yet): no devices can be discovered either. Look again shortly.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(updates) = stream.next().await {
            if updates.new.is_empty() {
                continue;
            }
            trace!(users = updates.new.len(), "new devices discovered");
            if inputs.send(Input::DevicesDiscovered).is_err() {
                return;
            }
        }
        debug!("device stream ended (olm machine replaced); subscribing again");
    }
}

/// Ends the memberships of a previous run, then keeps the store in step with the driver's
/// view of our calls.
async fn persist_calls(
    store: CallStore,
    previous: OwnCalls,
    outbound: Outbound,
    mut calls: watch::Receiver<OwnCalls>,
) {
    for record in previous.records() {
        outbound.end_previous_membership(record).await;
    }
    loop {
        let current = calls.borrow_and_update().clone();
        store.save(&current).await;
        if calls.changed().await.is_err() {
            return;
        }
    }
}

/// Feeds what the store already knows of a room we are in.
async fn seed_room(room: &Room, inputs: &mpsc::UnboundedSender<Input>) {
    let room_id = room.room_id().to_owned();
    match room.latest_encryption_state().await {
        Ok(state) => {
            let _ = inputs.send(Input::RoomEncrypted {
                room_id: room_id.clone(),
                encrypted: state.is_encrypted(),
            });
        }
        Err(error) => warn!(room = %room_id, %error, "could not read the room's encryption state"),
    }
    let event_type = StateEventType::from(matrix_rtc_membership::wire::LEGACY_CALL_MEMBER);
    match room.get_state_events(event_type).await {
        Ok(events) => {
            for event in events {
                if let matrix_sdk::deserialized_responses::RawAnySyncOrStrippedState::Sync(raw) =
                    event
                {
                    let _ = inputs.send(Input::RoomEvent {
                        room_id: room_id.clone(),
                        raw: raw.into_json(),
                        receipt: receipt_now(),
                    });
                }
            }
        }
        Err(error) => warn!(room = %room_id, %error, "could not read legacy call memberships"),
    }
}
