//! [`RtcClient`]: the entry point. It owns the driver task of one `matrix_sdk::Client`.
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures_util::Stream;
use matrix_rtc_machine::{CallId, MachineConfig, OwnCallRecords, RtcMachine};
use matrix_sdk::{
    Client, ClientBuilder, cross_process_lock::CrossProcessLockConfig,
    event_handler::EventHandlerHandle, ruma::RoomId,
};
use matrix_sdk_base::{
    ThreadingSupport,
    crypto::{CollectStrategy, DecryptionSettings},
};
use tokio::sync::{OnceCell, mpsc, watch};
use tracing::{debug, info, warn};

use crate::{
    CallEvent, DiagnosticEvent, Error, HomeserverApi, Result, RtcCall, RtcConfig, ServerFeatures,
    SessionUpdate, SideSync, SideSyncStatus,
    encryption::{BaseOptions, Encryptor},
    livekit::LiveKitTokens,
    observe::Registry,
    persist::CallStore,
    pump::{
        Control, Inputs, Performer, Pump, SyncInput, forward_ignored_users, forward_new_devices,
        forward_room_keys, register_handlers, seed_room,
    },
};

/// Live MatrixRTC call membership for one `matrix_sdk::Client`.
///
/// Build it with [`RtcClient::builder`] (which also builds the `matrix_sdk::Client`), or wrap
/// a client you built yourself with [`RtcClient::new`]. After logging in, call
/// [`start`](Self::start): it opens our own sliding-sync side connection for sticky events,
/// registers event handlers on the client's main sync (the app keeps running its sync loop),
/// and spawns the pump task. Then use [`call`](Self::call) to observe and join calls.
///
/// Cloning is cheap and every clone refers to the same driver. When the last clone is
/// dropped, the driver stops *without* leaving calls: the server-side delayed leave then ends
/// our memberships, as it would after a crash. Call [`RtcCall::leave`] first for a clean exit.
///
/// ```no_run
/// # #![recursion_limit = "256"]
/// # async fn example() -> matrix_sdk_rtc::Result<()> {
/// use matrix_sdk_rtc::{JoinOptions, RtcClient, SyncLoop};
/// use matrix_sdk::ruma::room_id;
///
/// let rtc = RtcClient::builder("http://127.0.0.1:8008")
///     .sqlite_store("/path/to/store", Some("passphrase"))
///     .build()
///     .await?;
/// rtc.client().matrix_auth().login_username("alice", "secret").send().await?;
/// rtc.start().await?;
/// let _sync = SyncLoop::new(rtc.client().clone()).spawn(None);
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
    interrupted: Mutex<Vec<CallId>>,
    /// Cached LiveKit credentials, per call.
    livekit: LiveKitTokens,
}

/// What `start` set up, torn down on shutdown or drop.
#[derive(Debug)]
struct Running {
    inputs: Inputs,
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

/// Builds a `matrix_sdk::Client` together with its [`RtcClient`].
///
/// Building the client here (rather than wrapping one) is what lets this crate encrypt our
/// membership in encrypted rooms: the encryption route needs a handle on the client's olm
/// machine that only its builder can keep.
pub struct RtcClientBuilder {
    homeserver_url: String,
    sqlite_store: Option<(PathBuf, Option<String>)>,
    config: RtcConfig,
    base: BaseOptions,
    /// The app's own settings of matrix-sdk's builder.
    client_builder: Option<ClientBuilderFn>,
    /// In-memory stores were asked for.
    ephemeral_device: bool,
}

/// A change to matrix-sdk's `ClientBuilder`, applied before we add what we need.
type ClientBuilderFn = Box<dyn FnOnce(ClientBuilder) -> ClientBuilder + Send>;

impl std::fmt::Debug for RtcClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcClientBuilder")
            .field("homeserver_url", &self.homeserver_url)
            .field(
                "sqlite_store",
                &self.sqlite_store.as_ref().map(|(path, _)| path),
            )
            .field("config", &self.config)
            .field("base", &self.base)
            .field("client_builder", &self.client_builder.is_some())
            .field("ephemeral_device", &self.ephemeral_device)
            .finish()
    }
}

impl RtcClientBuilder {
    /// Keep the client's state and crypto stores in SQLite databases under `path`,
    /// encrypted with `passphrase` when given. Without this (or
    /// [`ephemeral_device`](Self::ephemeral_device)) [`build`](Self::build) fails.
    #[must_use]
    pub fn sqlite_store(mut self, path: impl Into<PathBuf>, passphrase: Option<&str>) -> Self {
        self.sqlite_store = Some((path.into(), passphrase.map(ToOwned::to_owned)));
        self
    }

    /// Keep every store in memory: this device's encryption keys then live only as long as
    /// the process. Only for a device made for this process (a fresh login): a session
    /// restored into memory on a device that has keys elsewhere would give that device a
    /// second crypto store ([`RtcClient::start`] refuses it with
    /// [`Error::DeviceKeysDiffer`](crate::Error::DeviceKeysDiffer)), and the next process
    /// could not decrypt anything sent to this one.
    #[must_use]
    pub fn ephemeral_device(mut self) -> Self {
        self.ephemeral_device = true;
        self
    }

    /// Use this configuration instead of the default one.
    #[must_use]
    pub fn config(mut self, config: RtcConfig) -> Self {
        self.config = config;
        self
    }

    /// Any setting of matrix-sdk's own `ClientBuilder`: a proxy, a user agent, a request
    /// config, refresh-token handling, root certificates, server versions, OIDC and so on.
    /// `configure` gets the builder with the homeserver URL set; we then add only our
    /// `BaseClient` (the route to the olm machine that lets us encrypt our membership). Set
    /// the stores with [`sqlite_store`](Self::sqlite_store) and the settings matrix-sdk
    /// keeps on the `BaseClient` with the methods below, not through this builder: it
    /// ignores them once it is handed our `BaseClient`.
    ///
    /// ```no_run
    /// # async fn example() -> matrix_sdk_rtc::Result<()> {
    /// let rtc = matrix_sdk_rtc::RtcClient::builder("https://matrix.example.org")
    ///     .sqlite_store("/path/to/store", Some("passphrase"))
    ///     .with_client_builder(|builder| builder.user_agent("my-app/1.0").handle_refresh_tokens())
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_client_builder(
        mut self,
        configure: impl FnOnce(ClientBuilder) -> ClientBuilder + Send + 'static,
    ) -> Self {
        self.client_builder = Some(Box::new(configure));
        self
    }

    /// To which devices room keys are shared (matrix-sdk's default otherwise).
    #[must_use]
    pub fn room_key_recipient_strategy(mut self, strategy: CollectStrategy) -> Self {
        self.base.room_key_recipient_strategy = Some(strategy);
        self
    }

    /// How events are decrypted, e.g. which sender trust is required (matrix-sdk's default
    /// otherwise).
    #[must_use]
    pub fn decryption_settings(mut self, settings: DecryptionSettings) -> Self {
        self.base.decryption_settings = Some(settings);
        self
    }

    /// Thread support of the client's stores (disabled otherwise).
    #[must_use]
    pub fn threading_support(mut self, threading_support: ThreadingSupport) -> Self {
        self.base.threading_support = threading_support;
        self
    }

    /// The holder name of the cross-process store locks (`main`, matrix-sdk's own default,
    /// otherwise), for our `BaseClient`'s stores and the client alike (it replaces one set
    /// through [`with_client_builder`](Self::with_client_builder)). Give each process that
    /// opens the same stores its own name, e.g. an app and its notification extension.
    #[must_use]
    pub fn cross_process_lock_holder(mut self, name: impl Into<String>) -> Self {
        self.base.lock_holder = name.into();
        self
    }

    /// Builds the `matrix_sdk::Client` and the [`RtcClient`] around it. The client is not
    /// logged in yet.
    ///
    /// Fails with [`Error::NoStore`](crate::Error::NoStore) unless a store was chosen:
    /// [`sqlite_store`](Self::sqlite_store), or in memory by
    /// [`ephemeral_device`](Self::ephemeral_device).
    pub async fn build(self) -> Result<RtcClient> {
        if self.sqlite_store.is_none() && !self.ephemeral_device {
            return Err(Error::NoStore);
        }
        // We build the base client ourselves and keep a clone: after login its olm machine is
        // the client's, which is how we encrypt our membership (see `encryption.rs`).
        let sqlite = self
            .sqlite_store
            .as_ref()
            .map(|(path, passphrase)| (path.as_path(), passphrase.as_deref()));
        let base = crate::encryption::base_client(sqlite, &self.base).await?;
        let mut builder = Client::builder().homeserver_url(&self.homeserver_url);
        if let Some(configure) = self.client_builder {
            builder = configure(builder);
        }
        // The client's own locks and our `BaseClient`'s stores use one holder name.
        let client = builder
            .cross_process_store_config(CrossProcessLockConfig::multi_process(
                self.base.lock_holder.clone(),
            ))
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
    /// The `BaseClient` we built, if we built the client (tests check what was set on it).
    #[cfg(test)]
    pub(crate) fn built_base_client(&self) -> Option<&matrix_sdk_base::BaseClient> {
        self.inner.encryptor.as_ref().map(Encryptor::base_client)
    }

    /// A builder for a new `matrix_sdk::Client` on `homeserver_url` and its `RtcClient`.
    pub fn builder(homeserver_url: impl Into<String>) -> RtcClientBuilder {
        RtcClientBuilder {
            homeserver_url: homeserver_url.into(),
            sqlite_store: None,
            config: RtcConfig::default(),
            base: BaseOptions::default(),
            client_builder: None,
            ephemeral_device: false,
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
                livekit: LiveKitTokens::default(),
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
        // Our requests schedule delayed events only where the server advertises them.
        self.inner.api.note_features(features);
        Ok(*features)
    }

    /// Starts the pump: feature detection, the side connection (when the server offers
    /// sticky events over sliding sync), the event handlers on the main sync, and the task
    /// that owns the [`RtcMachine`]. The client must be logged in. Calling it again does
    /// nothing.
    pub async fn start(&self) -> Result<()> {
        let client = &self.inner.client;
        let (Some(user_id), Some(device_id)) = (client.user_id(), client.device_id()) else {
            return Err(Error::NotLoggedIn);
        };
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        // One device, one crypto store: stop before anything of ours is sent if another store
        // made this device's published keys.
        if let Some(encryptor) = &self.inner.encryptor {
            encryptor
                .check_device_keys(client, &user_id, &device_id)
                .await?;
        }
        let features = self.features().await?;
        for missing in features.missing() {
            warn!(%missing, "the homeserver lacks a feature; falling back to what it offers");
        }
        let call_store = CallStore::open(
            client.clone(),
            self.inner.store_passphrase.as_deref(),
            self.inner.config.persist_calls_unencrypted,
        )
        .await;
        let previous = call_store.load().await;

        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if running.is_some() {
            return Ok(());
        }
        let config = &self.inner.config;
        let (control, control_rx) = mpsc::channel(config.input_queue_capacity.max(1));
        let (sync, sync_rx) = mpsc::channel(config.input_queue_capacity.max(1));
        let inputs = Inputs { control, sync };
        let (shutdown, shutdown_rx) = watch::channel(false);

        // A fresh transaction-id prefix per run: a restarted app never reuses an old one.
        let txn_prefix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let mut machine_config = MachineConfig::new(user_id, device_id, txn_prefix);
        machine_config.sticky_limits = config.sticky_limits;
        machine_config.own_membership = config.own_membership.clone();
        machine_config.parked_limits = config.parked_limits;
        machine_config.device_check_interval = config.device_check_interval;
        machine_config.can_encrypt = self.inner.encryptor.is_some();
        let mut machine = RtcMachine::new(machine_config);
        // Calls we were in when the app stopped: their memberships are ended now (they would
        // otherwise linger until their delayed leave fires), and the app may resume them.
        machine.restore(&previous, Instant::now());
        *self
            .inner
            .interrupted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            machine.interrupted_calls().to_vec();

        let (persist, persist_rx) = watch::channel(previous);
        let performer = Performer {
            api: self.inner.api.clone(),
            control: inputs.control.clone(),
            encryptor: self.inner.encryptor.clone(),
        };
        let pump = Pump::new(machine, self.inner.registry.clone(), performer, persist);
        let mut tasks = vec![
            tokio::spawn(pump.run(control_rx, sync_rx, shutdown_rx.clone())),
            tokio::spawn(persist_calls(call_store, persist_rx)),
        ];
        // Listen for room keys before the first decryption attempt: a key may arrive between
        // a failed attempt and the subscription.
        tasks.push(tokio::spawn(forward_room_keys(
            client.clone(),
            inputs.sync.clone(),
        )));
        tasks.push(tokio::spawn(forward_new_devices(
            client.clone(),
            inputs.sync.clone(),
        )));
        tasks.push(tokio::spawn(forward_ignored_users(
            client.clone(),
            inputs.sync.clone(),
        )));
        let handlers = register_handlers(client, &inputs.sync);

        if features.sticky_events && features.sliding_sync {
            let side = SideSync::new(client.clone(), config.side_sync_conn_id.clone())
                .with_poll_timeout(config.side_sync_poll_timeout);
            let mut status = side.subscribe_status();
            let mirror = self.inner.side_sync_status.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(value) = status.next().await {
                    mirror.set(value);
                }
            }));
            let sink = inputs.sync.clone();
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                };
                if let Err(error) = side.run(sink.clone(), shutdown).await {
                    warn!(%error, "side connection ended; sticky events arrive through the main sync only");
                    let _ = sink.send(SyncInput::SideDown).await;
                }
            }));
        } else {
            info!("no sticky-events side connection: the server does not offer it");
        }

        // The rooms we are in already: their encryption, and their legacy state memberships.
        let seed_sync = inputs.sync.clone();
        let seed_client = client.clone();
        tasks.push(tokio::spawn(async move {
            for room in seed_client.joined_rooms() {
                seed_room(&room, &seed_sync).await;
            }
        }));

        *running = Some(Running {
            inputs,
            shutdown,
            tasks,
            handlers,
        });
        debug!("rtc pump started");
        Ok(())
    }

    /// The calls we were in when this client last stopped without leaving (the app was killed
    /// or restarted mid-call). Their old memberships are ended by [`start`](Self::start); join
    /// them again to resume.
    pub fn interrupted_calls(&self) -> Vec<CallId> {
        self.inner
            .interrupted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stops the pump, its side connection and event handlers, without leaving calls.
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

    /// The call `call`. Build the id with [`CallId::new`] (which checks the slot) or
    /// [`CallId::room_call`].
    pub fn call(&self, call: &CallId) -> RtcCall {
        let observables = self.inner.registry.call(call);
        RtcCall::new(self.clone(), call.clone(), observables)
    }

    /// The room's call (`m.call#ROOM`), the one Element Call uses.
    pub fn room_call(&self, room_id: &RoomId) -> RtcCall {
        self.call(&CallId::room_call(room_id))
    }

    /// The calls that have at least one participant now, sorted.
    pub fn active_calls(&self) -> Vec<CallId> {
        self.inner.registry.active_calls()
    }

    /// Calls starting and ending, across all rooms, from now on. A reader that falls behind
    /// gets [`CallEvent::Resync`] with the calls active then, never a silent gap.
    pub fn subscribe_call_events(&self) -> impl Stream<Item = CallEvent> + Send + Unpin + use<> {
        self.inner.registry.subscribe_call_events()
    }

    /// Every membership change across rooms, from now on: sessions starting and ending,
    /// participants joining, updating (a refresh) and leaving, each leave with its reason. A
    /// reader that falls behind gets [`SessionUpdate::Resync`] with every active call's
    /// participants, never a silent gap.
    pub fn subscribe_session_changes(
        &self,
    ) -> impl Stream<Item = SessionUpdate> + Send + Unpin + use<> {
        self.inner.registry.subscribe_session_changes()
    }

    /// Events that did not count (or were dropped), and why, from now on. A reader that falls
    /// behind gets [`DiagnosticEvent::Missed`] with the count it missed.
    pub fn subscribe_diagnostics(
        &self,
    ) -> impl Stream<Item = DiagnosticEvent> + Send + Unpin + use<> {
        self.inner.registry.subscribe_diagnostics()
    }

    /// The state of the sticky-events side connection.
    pub fn subscribe_side_sync_status(&self) -> eyeball::Subscriber<SideSyncStatus> {
        self.inner.side_sync_status.subscribe()
    }

    pub(crate) fn api(&self) -> &HomeserverApi {
        &self.inner.api
    }

    /// The cache of LiveKit credentials.
    pub(crate) fn livekit_tokens(&self) -> &LiveKitTokens {
        &self.inner.livekit
    }

    /// Our handle on the client's olm machine, when we built the client.
    pub(crate) fn encryptor(&self) -> Option<&Encryptor> {
        self.inner.encryptor.as_ref()
    }

    /// How many calls this client keeps observables for: calls with participants, calls we
    /// are in, and calls the app holds a handle or subscription of. Others are dropped, so
    /// this stays small however many slots a room's members invent (for monitoring memory).
    pub fn observed_call_count(&self) -> usize {
        self.inner.registry.call_count()
    }

    /// Sends a command to the pump (waiting while its queue is full).
    pub(crate) async fn send_control(&self, input: Control) -> Result<()> {
        let control = {
            let running = self
                .inner
                .running
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            running
                .as_ref()
                .map(|running| running.inputs.control.clone())
                .ok_or(Error::DriverStopped)?
        };
        control.send(input).await.map_err(|_| Error::DriverStopped)
    }
}

/// Keeps the store in step with the machine's record of our calls.
async fn persist_calls(store: CallStore, mut calls: watch::Receiver<OwnCallRecords>) {
    loop {
        let current = calls.borrow_and_update().clone();
        store.save(&current).await;
        if calls.changed().await.is_err() {
            return;
        }
    }
}
