//! [`RtcClient`]: a Matrix client restored from the app's session, with its sync loop and the
//! rtc driver, and every operation on calls.
use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures_util::StreamExt;
use matrix_sdk::{
    SessionMeta, SessionTokens,
    authentication::matrix::MatrixSession,
    config::SyncSettings,
    ruma::{OwnedDeviceId, OwnedUserId},
    store::RoomLoadSettings,
};
use matrix_sdk_rtc as rtc;

use crate::{
    CallActiveListener, CallEvent, CallEventsListener, CallId, ClientConfig, DiagnosticEvent,
    DiagnosticsListener, JoinConfig, OwnStatus, OwnStatusListener, Participant, ParticipantsDiff,
    ParticipantsListener, Result, RtcFfiError, ServerFeatures, SessionChangesListener,
    SessionUpdate, SideSyncStatus, SyncStatus, TaskHandle,
    runtime::{self, RuntimeDropped},
};

/// Long-poll timeout of the main sync loop.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Live MatrixRTC call membership for one logged-in device.
///
/// Build it with [`build`](Self::build) from a session the app already has, then
/// [`start`](Self::start) it: that restores the session, runs a first sync, keeps a sync loop
/// running in the background and starts the rtc driver. Calls are addressed by [`CallId`]
/// (room ID and slot ID; [`room_call`](crate::room_call) gives the room call Element Call
/// uses).
///
/// Every `subscribe_*` calls its listener with the current value at once, then with each
/// change from a background thread, and returns a [`TaskHandle`] that stops it.
#[derive(uniffi::Object)]
pub struct RtcClient {
    rtc: RuntimeDropped<rtc::RtcClient>,
    session: MatrixSession,
    /// Serialises [`start`](Self::start) calls.
    starting: tokio::sync::Mutex<()>,
    /// The sync loop, while it runs.
    sync: Mutex<Option<rtc::SyncLoopHandle>>,
}

impl fmt::Debug for RtcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The session holds the access token: show who we are, never the token.
        f.debug_struct("RtcClient")
            .field("user_id", &self.session.meta.user_id)
            .field("device_id", &self.session.meta.device_id)
            .finish_non_exhaustive()
    }
}

impl Drop for RtcClient {
    fn drop(&mut self) {
        if let Some(sync) = self.sync_task().take() {
            sync.stop();
        }
        self.rtc.shutdown();
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl RtcClient {
    /// Builds the client from a session the app already has (no login happens here) and
    /// opens its stores. Nothing is sent until [`start`](Self::start).
    #[uniffi::constructor]
    pub async fn build(config: ClientConfig) -> Result<Arc<Self>> {
        let user_id = OwnedUserId::try_from(config.user_id.as_str()).map_err(|error| {
            RtcFfiError::InvalidArgument(format!("invalid user id {:?}: {error}", config.user_id))
        })?;
        if config.device_id.is_empty() {
            return Err(RtcFfiError::InvalidArgument(
                "the device id is empty".to_owned(),
            ));
        }
        let session = MatrixSession {
            meta: SessionMeta {
                user_id,
                device_id: OwnedDeviceId::from(config.device_id.as_str()),
            },
            tokens: SessionTokens {
                access_token: config.access_token,
                refresh_token: None,
            },
        };
        let mut rtc_config = rtc::RtcConfig::default();
        rtc_config.persist_calls_unencrypted = config.persist_calls_unencrypted;
        let mut builder = rtc::RtcClient::builder(config.homeserver_url).config(rtc_config);
        builder = match config.store_path {
            Some(path) => builder.sqlite_store(path, config.store_passphrase.as_deref()),
            None if config.ephemeral_device => builder.ephemeral_device(),
            None => {
                return Err(RtcFfiError::InvalidArgument(
                    "no storePath: give one, or set ephemeralDevice for a device that lives \
                     only as long as this process"
                        .to_owned(),
                ));
            }
        };
        let rtc = runtime::run(async move { Ok(builder.build().await?) }).await?;
        Ok(Arc::new(Self {
            rtc: RuntimeDropped::new(rtc),
            session,
            starting: tokio::sync::Mutex::new(()),
            sync: Mutex::new(None),
        }))
    }

    /// Our user ID.
    pub fn user_id(&self) -> String {
        self.session.meta.user_id.to_string()
    }

    /// Our device ID.
    pub fn device_id(&self) -> String {
        self.session.meta.device_id.to_string()
    }

    /// Restores the session (once), runs a first sync, starts the sync loop in the
    /// background and the rtc driver. Returns once all of them are up. Calling it again while
    /// running does nothing; after [`stop`](Self::stop) it starts everything again.
    pub async fn start(self: Arc<Self>) -> Result<()> {
        runtime::run(async move {
            let _starting = self.starting.lock().await;
            let client = self.rtc.client().clone();
            if client.session_meta().is_none() {
                client
                    .matrix_auth()
                    .restore_session(self.session.clone(), RoomLoadSettings::default())
                    .await?;
            }
            let syncing = self
                .sync_task()
                .as_ref()
                .is_some_and(|sync| !sync.is_finished());
            if !syncing {
                // No long-poll: with a stored sync token, the server would hold the first
                // request until something happens (up to matrix-sdk's default 30 s).
                let first = client
                    .sync_once(SyncSettings::default().timeout(Duration::ZERO))
                    .await?;
                // Supervised: every failure is retried with backoff, never throttled when
                // healthy; its state is `sync_status`.
                let sync = rtc::SyncLoop::new(client)
                    .with_poll_timeout(SYNC_TIMEOUT)
                    .spawn(Some(first.next_batch));
                if let Some(old) = self.sync_task().replace(sync) {
                    old.stop();
                }
            }
            self.rtc.start().await?;
            Ok(())
        })
        .await
    }

    /// Stops the sync loop and the rtc driver, *without* leaving calls: the server-side
    /// delayed leave then ends our memberships, as after a crash. Call
    /// [`leave`](Self::leave) first for a clean exit. Subscriptions stay open but get no
    /// more updates until the next [`start`](Self::start).
    pub fn stop(&self) {
        if let Some(sync) = self.sync_task().take() {
            sync.stop();
        }
        self.rtc.shutdown();
    }

    /// What the main sync loop is doing (`NotStarted` before [`start`](Self::start) and after
    /// [`stop`](Self::stop)).
    pub fn sync_status(&self) -> SyncStatus {
        self.sync_task()
            .as_ref()
            .map_or(SyncStatus::NotStarted, |sync| sync.status().into())
    }

    /// What the side connection (sticky events over sliding sync) is doing.
    pub fn side_sync_status(&self) -> SideSyncStatus {
        self.rtc.subscribe_side_sync_status().get().into()
    }

    /// What the homeserver offers (fetched once).
    pub async fn features(self: Arc<Self>) -> Result<ServerFeatures> {
        runtime::run(async move { Ok(self.rtc.features().await?.into()) }).await
    }

    /// Joins `call`: schedules our delayed leave (the dead-man switch), sends our membership
    /// and keeps both alive until [`leave`](Self::leave). Returns once we are connected, or
    /// fails.
    pub async fn join(self: Arc<Self>, call: CallId, config: JoinConfig) -> Result<()> {
        let call = self.call(&call)?;
        runtime::run(async move { Ok(call.join(config.into()).await?) }).await
    }

    /// Changes our membership of `call` while we are joining or joined: publish on
    /// `transport_url` and/or announce `call_intent` from now on (`None` keeps each). It goes
    /// out soon as a refresh of the same member. Fails with `NotInCall` otherwise.
    pub async fn update_membership(
        self: Arc<Self>,
        call: CallId,
        transport_url: Option<String>,
        call_intent: Option<crate::CallIntent>,
    ) -> Result<()> {
        let call = self.call(&call)?;
        let mut update = rtc::ContentUpdate::default();
        if let Some(url) = transport_url {
            update = update.with_transport(rtc::Transport::livekit(url));
        }
        if let Some(intent) = call_intent {
            update = update.with_call_intent(intent.into());
        }
        runtime::run(async move { Ok(call.update(update).await?) }).await
    }

    /// LiveKit credentials for our membership of `call` (we must be joining or joined): the
    /// SFU URL, a JWT and our LiveKit identity, from the JWT service our membership publishes
    /// (`/get_token`, else the legacy `/sfu/get`) or from the homeserver. Cached until shortly
    /// before the JWT expires. Fails with `NotInCall` when we are not in the call and
    /// `LiveKit` when the token endpoint fails.
    pub async fn livekit_credentials(
        self: Arc<Self>,
        call: CallId,
    ) -> Result<crate::LiveKitCredentials> {
        let call = self.call(&call)?;
        runtime::run(async move { Ok(call.livekit_credentials().await?.into()) }).await
    }

    /// Leaves `call`, and returns once our leave is sent. Leaving a call we are not in does
    /// nothing.
    pub async fn leave(self: Arc<Self>, call: CallId) -> Result<()> {
        let call = self.call(&call)?;
        runtime::run(async move { Ok(call.leave().await?) }).await
    }

    /// The participants of `call` now, oldest first.
    pub fn participants(&self, call: CallId) -> Result<Vec<Participant>> {
        let call = self.call(&call)?;
        Ok(call.participants().into_iter().map(Into::into).collect())
    }

    /// Whether `call` has at least one participant now.
    pub fn is_call_active(&self, call: CallId) -> Result<bool> {
        Ok(self.call(&call)?.is_active())
    }

    /// Our own status in `call` now.
    pub fn own_status(&self, call: CallId) -> Result<OwnStatus> {
        Ok(self.call(&call)?.own_status().into())
    }

    /// The calls that have at least one participant now, sorted.
    pub fn active_calls(&self) -> Vec<CallId> {
        self.rtc
            .active_calls()
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// The calls we were in when this client last stopped without leaving (the app was killed
    /// or restarted mid-call), known once [`start`](Self::start) has returned. `start` ends
    /// their old memberships: join them again to resume.
    pub fn interrupted_calls(&self) -> Vec<CallId> {
        self.rtc
            .interrupted_calls()
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// The participant list of `call`: `listener` gets one `Reset` with the whole list now,
    /// then every batch of changes (a listener far behind gets a `Reset` again).
    pub fn subscribe_participants(
        &self,
        call: CallId,
        listener: Arc<dyn ParticipantsListener>,
    ) -> Result<Arc<TaskHandle>> {
        let call = self.call(&call)?;
        let (values, mut batches) = call.subscribe_participants();
        listener.on_update(vec![ParticipantsDiff::Reset {
            values: values.into_iter().map(Into::into).collect(),
        }]);
        Ok(spawn_listener(async move {
            while let Some(batch) = batches.next().await {
                listener.on_update(batch.into_iter().map(Into::into).collect());
            }
        }))
    }

    /// Whether `call` is active: `listener` gets the current value now, then every change.
    pub fn subscribe_call_active(
        &self,
        call: CallId,
        listener: Arc<dyn CallActiveListener>,
    ) -> Result<Arc<TaskHandle>> {
        let mut active = self.call(&call)?.subscribe_active();
        listener.on_update(active.get());
        Ok(spawn_listener(async move {
            while let Some(value) = active.next().await {
                listener.on_update(value);
            }
        }))
    }

    /// Our own status in `call`: `listener` gets the current value now, then every change.
    pub fn subscribe_own_status(
        &self,
        call: CallId,
        listener: Arc<dyn OwnStatusListener>,
    ) -> Result<Arc<TaskHandle>> {
        let mut status = self.call(&call)?.subscribe_own_status();
        listener.on_update(status.get().into());
        Ok(spawn_listener(async move {
            while let Some(value) = status.next().await {
                listener.on_update(value.into());
            }
        }))
    }

    /// Calls starting and ending across rooms, from now on. A listener that falls behind gets
    /// `CallEvent::Resync` with the calls active then.
    pub fn subscribe_call_events(&self, listener: Arc<dyn CallEventsListener>) -> Arc<TaskHandle> {
        let mut events = self.rtc.subscribe_call_events();
        spawn_listener(async move {
            while let Some(event) = events.next().await {
                if let Some(event) = CallEvent::convert(event) {
                    listener.on_update(event);
                }
            }
        })
    }

    /// Every membership change across rooms, from now on. A listener that falls behind gets
    /// `SessionUpdate::Resync` with every active call's participants.
    pub fn subscribe_session_changes(
        &self,
        listener: Arc<dyn SessionChangesListener>,
    ) -> Arc<TaskHandle> {
        let mut updates = self.rtc.subscribe_session_changes();
        spawn_listener(async move {
            while let Some(update) = updates.next().await {
                if let Some(update) = SessionUpdate::convert(update) {
                    listener.on_update(update);
                }
            }
        })
    }

    /// Events that did not count, and why, from now on. Subscribe before
    /// [`start`](Self::start) to see those of the first sync. A listener that falls behind
    /// gets `DiagnosticEvent::Missed` with the count it missed.
    pub fn subscribe_diagnostics(&self, listener: Arc<dyn DiagnosticsListener>) -> Arc<TaskHandle> {
        let mut events = self.rtc.subscribe_diagnostics();
        spawn_listener(async move {
            while let Some(event) = events.next().await {
                if let Some(event) = DiagnosticEvent::convert(event) {
                    listener.on_update(event);
                }
            }
        })
    }
}

impl RtcClient {
    /// The wrapped `matrix_sdk_rtc::RtcClient`, for Rust code linking this crate.
    pub fn inner(&self) -> &rtc::RtcClient {
        &self.rtc
    }

    fn call(&self, call: &CallId) -> Result<rtc::RtcCall> {
        Ok(self.rtc.call(&rtc::CallId::try_from(call)?))
    }

    fn sync_task(&self) -> MutexGuard<'_, Option<rtc::SyncLoopHandle>> {
        // Nothing panics while holding this lock; a poisoned one still holds a valid handle.
        self.sync
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Spawns a listener loop on the library's runtime.
fn spawn_listener(task: impl Future<Output = ()> + Send + 'static) -> Arc<TaskHandle> {
    Arc::new(TaskHandle::new(runtime::get().spawn(task)))
}
