//! Encrypting our own membership events in encrypted rooms, with public matrix-sdk API only.
//!
//! matrix-sdk 0.18 encrypts only what it sends itself (`Room::send_raw`), which cannot carry
//! the sticky and delay query parameters, and its olm machine is private. Our route:
//! [`RtcClientBuilder`](crate::RtcClientBuilder) builds the client's `BaseClient` itself (with
//! the stores matrix-sdk's own builder would open, see [`base_client`]) and keeps a clone in an
//! [`Encryptor`]. After login, that clone's `olm_machine()` is the client's own machine: we
//! share the room key and encrypt with it, and the driver sends the ciphertext as
//! `m.room.encrypted` through its own sticky (and delayed) request.
//!
//! The steps of [`RoomSendLock::encrypt`], in order: take the crypto store lock (taking it may
//! replace the olm machine, so the machine is read only after it, and no machine guard is ever
//! held while taking it); fetch the member list if it is incomplete; track the members and
//! query the keys of those whose device lists are unknown or stale; claim one-time keys for
//! devices we have no Olm session with; share the room key and send the to-device messages;
//! encrypt. Encrypting before the key is shared makes matrix-sdk-crypto panic, so our sends are
//! serialised per room by [`Encryptor::lock_room`] (the SDK's own room locks are private), and
//! a panic that still happens (the app's own send racing ours) becomes an error.
//!
//! A client built elsewhere ([`RtcClient::new`](crate::RtcClient::new)) has no such handle:
//! matrix-sdk offers no public way to its olm machine, so joins in encrypted rooms fail there
//! with [`Error::EncryptedRoomNotSupported`](crate::Error::EncryptedRoomNotSupported). Nothing
//! is ever sent in plaintext into an encrypted room: every failure here is an
//! [`EncryptionError`].
use std::{
    collections::{BTreeSet, HashMap},
    ops::Deref,
    panic::AssertUnwindSafe,
    path::Path,
    sync::{Arc, Mutex},
};

use futures_util::FutureExt as _;
use matrix_sdk::{
    Client, ClientBuildError, HttpError, Room, RoomMemberships, SqliteCryptoStore,
    SqliteEventCacheStore, SqliteMediaStore, SqliteStateStore, SqliteStoreConfig, StoreError,
    config::RequestConfig,
    cross_process_lock::CrossProcessLockConfig,
    ruma::{
        OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomId,
        api::client::{keys::get_keys, to_device::send_event_to_device},
        events::{AnyMessageLikeEventContent, room::history_visibility::HistoryVisibility},
        serde::Raw,
    },
    store::StoreConfig,
};
use matrix_sdk_base::{
    BaseClient, DmRoomDefinition, ThreadingSupport,
    crypto::{
        CollectStrategy, DecryptionSettings, EncryptionSettings, MegolmError, OlmError, OlmMachine,
        store::CryptoStoreError,
    },
};
use serde_json::value::RawValue;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tracing::{debug, instrument};

use crate::{
    RequestError,
    requests::{RequestContext, map_http_error},
};

/// The holder name of the cross-process store lock: the one matrix-sdk's builder uses.
const LOCK_HOLDER_NAME: &str = "main";

/// The longest pause between two attempts to take the crypto store lock (matrix-sdk's own
/// sends use the same).
const STORE_LOCK_MAX_BACKOFF_MS: u32 = 60_000;

/// What the app chose for the `BaseClient` (matrix-sdk's builder would put these on the one
/// it builds, but ignores them once it is handed ours).
#[derive(Debug, Clone)]
pub(crate) struct BaseOptions {
    /// The holder name of the cross-process store lock.
    pub(crate) lock_holder: String,
    pub(crate) room_key_recipient_strategy: Option<CollectStrategy>,
    pub(crate) decryption_settings: Option<DecryptionSettings>,
    pub(crate) threading_support: ThreadingSupport,
}

impl Default for BaseOptions {
    fn default() -> Self {
        Self {
            lock_holder: LOCK_HOLDER_NAME.to_owned(),
            room_key_recipient_strategy: None,
            decryption_settings: None,
            threading_support: ThreadingSupport::Disabled,
        }
    }
}

/// Builds the `BaseClient` that [`RtcClientBuilder`](crate::RtcClientBuilder) hands to
/// matrix-sdk's builder: SQLite stores at `path` (encrypted with the passphrase, when given)
/// opened the way matrix-sdk's own builder opens them, or in-memory stores, with the app's
/// [`BaseOptions`].
///
/// With a base client given, matrix-sdk's builder ignores its own room-key recipient strategy
/// and decryption settings: they are set here instead.
pub(crate) async fn base_client(
    sqlite: Option<(&Path, Option<&str>)>,
    options: &BaseOptions,
) -> Result<BaseClient, ClientBuildError> {
    let lock = CrossProcessLockConfig::multi_process(options.lock_holder.clone());
    let stores = match sqlite {
        None => StoreConfig::new(lock),
        Some((path, passphrase)) => {
            let config = SqliteStoreConfig::new(path).passphrase(passphrase);
            let (state, event_cache, media, crypto) = tokio::try_join!(
                SqliteStateStore::open_with_config(&config),
                SqliteEventCacheStore::open_with_config(&config),
                SqliteMediaStore::open_with_config(&config),
                SqliteCryptoStore::open_with_config(&config),
            )?;
            StoreConfig::new(lock)
                .state_store(state)
                .event_cache_store(event_cache)
                .media_store(media)
                .crypto_store(crypto)
        }
    };
    let mut base = BaseClient::new(
        stores,
        options.threading_support,
        DmRoomDefinition::MatrixSpec,
    );
    if let Some(strategy) = &options.room_key_recipient_strategy {
        base.room_key_recipient_strategy = strategy.clone();
    }
    if let Some(settings) = &options.decryption_settings {
        base.decryption_settings = settings.clone();
    }
    Ok(base)
}

/// Why our event could not be encrypted. Nothing was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum EncryptionError {
    /// The client is not logged in (or its olm machine is gone).
    #[error("the client has no olm machine (not logged in?)")]
    NoOlmMachine,
    /// The room's `m.room.encryption` event is unknown or redacted: we cannot tell how to
    /// encrypt.
    #[error("the encryption settings of room {0} are unknown")]
    UnknownSettings(OwnedRoomId),
    /// The crypto store lock could not be taken.
    #[error("could not take the crypto store lock: {0}")]
    StoreLock(Box<matrix_sdk::Error>),
    /// Fetching the room's member list failed.
    #[error("could not fetch the room members: {0}")]
    Members(Box<matrix_sdk::Error>),
    /// Reading the room's members from the state store failed.
    #[error("could not read the room members: {0}")]
    StateStore(Box<StoreError>),
    /// A request of the key exchange failed.
    #[error("{step} failed: {error}")]
    Request {
        /// The step of the key exchange.
        step: Step,
        /// What went wrong.
        error: RequestError,
    },
    /// The crypto store failed.
    #[error("crypto store error: {0}")]
    CryptoStore(Box<CryptoStoreError>),
    /// The olm machine refused (sharing the room key, or reading a key answer).
    #[error("olm error: {0}")]
    Olm(Box<OlmError>),
    /// Megolm encryption failed.
    #[error("megolm error: {0}")]
    Megolm(Box<MegolmError>),
    /// The room key was replaced between sharing and encrypting (another send in the same
    /// room rotated it). Trying again shares the new key.
    #[error("the room key changed before encryption; try again")]
    KeyReplaced,
}

impl EncryptionError {
    /// Whether trying again later may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::KeyReplaced | Self::StoreLock(_) => true,
            Self::Request { error, .. } => {
                matches!(
                    error,
                    RequestError::Network { .. } | RequestError::RateLimited { .. }
                ) || matches!(error, RequestError::Http { status, .. } if *status >= 500)
            }
            Self::Members(error) => matches!(error.as_ref(), matrix_sdk::Error::Http(_)),
            _ => false,
        }
    }

    /// The failed request's error, when a request failed.
    pub(crate) fn request_error(&self) -> Option<&RequestError> {
        match self {
            Self::Request { error, .. } => Some(error),
            _ => None,
        }
    }

    fn request(step: Step, error: &HttpError) -> Self {
        Self::Request {
            step,
            error: map_http_error(error, RequestContext::Plain),
        }
    }
}

impl From<CryptoStoreError> for EncryptionError {
    fn from(error: CryptoStoreError) -> Self {
        Self::CryptoStore(Box::new(error))
    }
}

impl From<OlmError> for EncryptionError {
    fn from(error: OlmError) -> Self {
        Self::Olm(Box::new(error))
    }
}

/// A step of the key exchange that needs a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `POST /keys/query`.
    KeysQuery,
    /// `POST /keys/claim`.
    KeysClaim,
    /// `PUT /sendToDevice`: the room key itself.
    RoomKeyShare,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::KeysQuery => "querying device keys",
            Self::KeysClaim => "claiming one-time keys",
            Self::RoomKeyShare => "sending the room key",
        })
    }
}

/// The encryption handle of a client built by [`RtcClientBuilder`](crate::RtcClientBuilder):
/// a clone of its `BaseClient`, and our per-room send locks. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Encryptor {
    base: BaseClient,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    rooms: Mutex<HashMap<OwnedRoomId, Arc<AsyncMutex<RoomSends>>>>,
    /// Only one `/keys/claim` of ours at a time (matrix-sdk-crypto asks for that).
    key_claim: AsyncMutex<()>,
}

/// What we remember of our sends in one room.
#[derive(Debug, Default)]
struct RoomSends {
    /// The member devices (ours excepted) the olm machine knew when we last shared the room
    /// key, `None` before the first share.
    shared_with: Option<BTreeSet<(OwnedUserId, OwnedDeviceId)>>,
}

impl Encryptor {
    /// The `BaseClient` we built (tests check what was set on it).
    #[cfg(test)]
    pub(crate) fn base_client(&self) -> &BaseClient {
        &self.base
    }
}

impl Encryptor {
    /// Wraps the base client the `matrix_sdk::Client` was built with.
    pub(crate) fn new(base: BaseClient) -> Self {
        Self {
            base,
            shared: Arc::default(),
        }
    }

    /// Waits for our previous send in `room` to finish, and holds the room until the returned
    /// lock is dropped: keep it from encrypting until the send's answer.
    pub(crate) async fn lock_room(&self, room: Room) -> RoomSendLock {
        let lock = {
            let mut rooms = self
                .shared
                .rooms
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            rooms.entry(room.room_id().to_owned()).or_default().clone()
        };
        RoomSendLock {
            encryptor: self.clone(),
            room,
            sends: lock.lock_owned().await,
        }
    }

    /// Whether devices appeared among the room's members since our last room-key share in
    /// it: they cannot decrypt what we sent before, so our membership (and delayed leave)
    /// should be sent again. `false` before our first share. Reads the stores only (no
    /// request); the olm machine learns new devices through the client's sync.
    pub(crate) async fn devices_added_since_share(
        &self,
        client: &Client,
        room: &Room,
    ) -> Result<bool, EncryptionError> {
        let lock = self.lock_room(room.clone()).await;
        let Some(shared_with) = &lock.sends.shared_with else {
            return Ok(false);
        };
        let members = recipients(client, room).await?;
        let machine = self.base.olm_machine().await;
        let machine = machine.as_ref().ok_or(EncryptionError::NoOlmMachine)?;
        let now = member_devices(machine, &members).await?;
        Ok(!now.is_subset(shared_with))
    }
}

/// Our exclusive right to send in one room; see [`Encryptor::lock_room`].
#[derive(Debug)]
pub(crate) struct RoomSendLock {
    encryptor: Encryptor,
    room: Room,
    sends: OwnedMutexGuard<RoomSends>,
}

impl RoomSendLock {
    /// Encrypts `content` of `event_type` for the room, sharing the room key first, and
    /// returns the `m.room.encrypted` content. See the module doc for the steps.
    #[instrument(skip_all, fields(room = %self.room.room_id()))]
    pub(crate) async fn encrypt(
        &mut self,
        client: &Client,
        event_type: &str,
        content: &RawValue,
    ) -> Result<Box<RawValue>, EncryptionError> {
        let room = &self.room;
        let room_id = room.room_id();
        // No machine guard is held here: taking the lock may replace the machine.
        let _store_lock = client
            .encryption()
            .spin_lock_store(Some(STORE_LOCK_MAX_BACKOFF_MS))
            .await
            .map_err(|error| EncryptionError::StoreLock(Box::new(error)))?;
        if !room.are_members_synced() {
            room.sync_members()
                .await
                .map_err(|error| EncryptionError::Members(Box::new(error)))?;
        }
        let settings = self.encryptor.settings(room)?;
        let members = recipients(client, room).await?;

        let machine = self.encryptor.base.olm_machine().await;
        let machine = machine.as_ref().ok_or(EncryptionError::NoOlmMachine)?;
        query_keys(client, machine, &members).await?;
        self.encryptor
            .claim_sessions(client, machine, &members)
            .await?;
        share_room_key(client, machine, room_id, &members, settings).await?;
        self.sends.shared_with = Some(member_devices(machine, &members).await?);

        let content = Raw::<AnyMessageLikeEventContent>::from_json(content.to_owned());
        // matrix-sdk-crypto panics when the room key is missing or expired; we shared it just
        // now, but the app's own send in this room may have rotated it in between.
        let encrypted =
            AssertUnwindSafe(machine.encrypt_room_event_raw(room_id, event_type, &content))
                .catch_unwind()
                .await
                .map_err(|_panic| EncryptionError::KeyReplaced)?
                .map_err(|error| EncryptionError::Megolm(Box::new(error)))?;
        Ok(encrypted.content.into_json())
    }
}

impl Encryptor {
    /// The room's encryption settings, with our base client's recipient strategy.
    fn settings(&self, room: &Room) -> Result<EncryptionSettings, EncryptionError> {
        let unknown = || EncryptionError::UnknownSettings(room.room_id().to_owned());
        let event = room.encryption_settings().ok_or_else(unknown)?;
        EncryptionSettings::from_possibly_redacted(
            event,
            room.history_visibility_or_default(),
            self.base.room_key_recipient_strategy.clone(),
        )
        .ok_or_else(unknown)
    }

    /// Claims one-time keys of the members' devices we have no Olm session with.
    async fn claim_sessions(
        &self,
        client: &Client,
        machine: &OlmMachine,
        members: &[OwnedUserId],
    ) -> Result<(), EncryptionError> {
        let _claim = self.shared.key_claim.lock().await;
        let Some((request_id, request)) = machine
            .get_missing_sessions(members.iter().map(Deref::deref))
            .await?
        else {
            return Ok(());
        };
        debug!(
            users = request.one_time_keys.len(),
            "claiming one-time keys"
        );
        let response = client
            .send(request)
            .with_request_config(request_config())
            .await
            .map_err(|error| EncryptionError::request(Step::KeysClaim, &error))?;
        machine.mark_request_as_sent(&request_id, &response).await?;
        Ok(())
    }
}

/// Retries of the key-exchange requests: a few, then the own-membership machine decides.
fn request_config() -> RequestConfig {
    RequestConfig::short_retry()
}

/// The users who get the room key: the joined members, and the invited ones unless the room
/// shows history to joined members only (what matrix-sdk does for its own sends).
async fn recipients(client: &Client, room: &Room) -> Result<Vec<OwnedUserId>, EncryptionError> {
    let memberships = if room.history_visibility_or_default() == HistoryVisibility::Joined {
        RoomMemberships::JOIN
    } else {
        RoomMemberships::ACTIVE
    };
    client
        .state_store()
        .get_user_ids(room.room_id(), memberships)
        .await
        .map_err(|error| EncryptionError::StateStore(Box::new(error)))
}

/// Tracks the members' device lists and queries the keys of those we know nothing or only
/// stale things about.
async fn query_keys(
    client: &Client,
    machine: &OlmMachine,
    members: &[OwnedUserId],
) -> Result<(), EncryptionError> {
    machine
        .update_tracked_users(members.iter().map(Deref::deref))
        .await?;
    let tracked: HashMap<OwnedUserId, bool> = machine
        .store()
        .load_tracked_users()
        .await?
        .into_iter()
        .map(|user| (user.user_id, user.dirty))
        .collect();
    let stale = members
        .iter()
        .filter(|user| tracked.get(*user).is_none_or(|dirty| *dirty))
        .map(Deref::deref);
    let (request_id, request) = machine.query_keys_for_users(stale);
    if request.device_keys.is_empty() {
        return Ok(());
    }
    debug!(users = request.device_keys.len(), "querying device keys");
    let mut query = get_keys::v3::Request::new();
    query.device_keys = request.device_keys;
    query.timeout = request.timeout;
    let response = client
        .send(query)
        .with_request_config(request_config())
        .await
        .map_err(|error| EncryptionError::request(Step::KeysQuery, &error))?;
    machine.mark_request_as_sent(&request_id, &response).await?;
    Ok(())
}

/// Shares the room key with the members' devices (a no-op when they all have it). If a
/// to-device send fails, the key is discarded so that nothing is encrypted with a key some
/// recipients lack; the next share makes a new one.
async fn share_room_key(
    client: &Client,
    machine: &OlmMachine,
    room_id: &RoomId,
    members: &[OwnedUserId],
    settings: EncryptionSettings,
) -> Result<(), EncryptionError> {
    let requests = machine
        .share_room_key(room_id, members.iter().map(Deref::deref), settings)
        .await?;
    for request in requests {
        let to_device = send_event_to_device::v3::Request::new_raw(
            request.event_type.clone(),
            request.txn_id.clone(),
            request.messages.clone(),
        );
        let sent = client
            .send(to_device)
            .with_request_config(request_config())
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                machine.discard_room_key(room_id).await?;
                return Err(EncryptionError::request(Step::RoomKeyShare, &error));
            }
        };
        machine
            .mark_request_as_sent(&request.txn_id, &response)
            .await?;
    }
    Ok(())
}

/// The devices of `members` the olm machine knows, our own device excepted.
async fn member_devices(
    machine: &OlmMachine,
    members: &[OwnedUserId],
) -> Result<BTreeSet<(OwnedUserId, OwnedDeviceId)>, EncryptionError> {
    let mut devices = BTreeSet::new();
    for user in members {
        let user_devices = machine.get_user_devices(user, None).await?;
        for device in user_devices.keys() {
            if user != machine.user_id() || device != machine.device_id() {
                devices.insert((user.clone(), device.to_owned()));
            }
        }
    }
    Ok(devices)
}

mod device_keys;
#[cfg(test)]
mod tests;
