//! What feeds the pump's sync queue besides the side connection: event handlers on the app's
//! sync, the room-key and device streams of the crypto store, and the rooms the store already
//! knows when we start.
use std::time::Instant;

use matrix_rtc_machine::EventRoute;
use matrix_sdk::{
    Client, Room,
    deserialized_responses::RawAnySyncOrStrippedState,
    event_handler::EventHandlerHandle,
    ruma::{
        OwnedUserId,
        events::{
            AnySyncStateEvent, AnySyncTimelineEvent, StateEventType,
            ignored_user_list::IgnoredUserListEventContent,
        },
        serde::Raw,
    },
};
use matrix_sticky_events::Receipt;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use super::SyncInput;

/// The receipt of what arrives now.
pub(crate) fn receipt_now() -> Receipt {
    Receipt::new(Instant::now(), crate::requests::wall_clock_ms())
}

/// The app's sync's event handlers: sticky events in the timeline (low latency, and the
/// decrypted copies of encrypted ones, which tell that their key is here), and room state
/// (legacy call memberships, room members, encryption, power levels). Only what the machine
/// reads is queued; a full queue makes the handler wait.
pub(crate) fn register_handlers(
    client: &Client,
    sync: &mpsc::Sender<SyncInput>,
) -> Vec<EventHandlerHandle> {
    let timeline_sync = sync.clone();
    let timeline = client.add_event_handler(move |raw: Raw<AnySyncTimelineEvent>, room: Room| {
        let sync = timeline_sync.clone();
        async move {
            let raw = raw.into_json();
            if EventRoute::of(raw.get()) == EventRoute::Sticky {
                let input = SyncInput::RoomEvent {
                    room_id: room.room_id().to_owned(),
                    raw,
                    receipt: receipt_now(),
                };
                if sync.send(input).await.is_err() {
                    trace!("the pump stopped");
                }
            }
        }
    });
    let state_sync = sync.clone();
    let state = client.add_event_handler(move |raw: Raw<AnySyncStateEvent>, room: Room| {
        let sync = state_sync.clone();
        async move {
            let raw = raw.into_json();
            let room_id = room.room_id().to_owned();
            let input = match EventRoute::of(raw.get()) {
                EventRoute::CallState
                | EventRoute::RoomMember
                | EventRoute::Encryption
                | EventRoute::PowerLevels => SyncInput::RoomEvent {
                    room_id,
                    raw,
                    receipt: receipt_now(),
                },
                _ => return,
            };
            if sync.send(input).await.is_err() {
                trace!("the pump stopped");
            }
        }
    });
    vec![timeline, state]
}

/// Forwards the room keys the client receives, so that parked encrypted envelopes are
/// retried. The stream ends when the olm machine is replaced: subscribe again.
pub(crate) async fn forward_room_keys(client: Client, sync: mpsc::Sender<SyncInput>) {
    use futures_util::StreamExt as _;
    loop {
        let Some(stream) = client.encryption().room_keys_received_stream().await else {
            // No olm machine (yet): keys cannot arrive either. Look again shortly.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        let mut stream = std::pin::pin!(stream);
        // Keys may have arrived while nobody listened.
        if sync.send(SyncInput::RoomKeysLagged).await.is_err() {
            return;
        }
        while let Some(batch) = stream.next().await {
            let input = match batch {
                Ok(keys) => SyncInput::RoomKeys(
                    keys.into_iter()
                        .map(|key| (key.room_id, key.session_id))
                        .collect(),
                ),
                // We missed some: retry everything.
                Err(_lagged) => SyncInput::RoomKeysLagged,
            };
            if sync.send(input).await.is_err() {
                return;
            }
        }
        debug!("room key stream ended (olm machine replaced); subscribing again");
    }
}

/// Tells the pump when the crypto store discovers devices, so that rooms where we are in a
/// call are checked for devices that cannot decrypt our membership yet. The stream ends when
/// the olm machine is replaced: subscribe again.
pub(crate) async fn forward_new_devices(client: Client, sync: mpsc::Sender<SyncInput>) {
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
            if sync.send(SyncInput::DevicesDiscovered).await.is_err() {
                return;
            }
        }
        debug!("device stream ended (olm machine replaced); subscribing again");
    }
}

/// Forwards the list of users we ignore (`m.ignored_user_list`): first as the store holds it,
/// then every change the client's sync brings. Each item is the whole list; the machine diffs.
pub(crate) async fn forward_ignored_users(client: Client, sync: mpsc::Sender<SyncInput>) {
    // Subscribe before reading the store, so that no change falls between the two.
    let mut changes = client.subscribe_to_ignore_user_list_changes();
    let stored = match client
        .account()
        .account_data::<IgnoredUserListEventContent>()
        .await
    {
        Ok(Some(raw)) => match raw.deserialize() {
            Ok(content) => content.ignored_users.into_keys().collect(),
            Err(error) => {
                warn!(%error, "unreadable ignored user list in the store");
                Vec::new()
            }
        },
        Ok(None) => Vec::new(),
        Err(error) => {
            warn!(%error, "could not read the ignored user list");
            Vec::new()
        }
    };
    if sync.send(SyncInput::IgnoredUsers(stored)).await.is_err() {
        return;
    }
    while let Some(users) = changes.next().await {
        let users: Vec<OwnedUserId> = users
            .iter()
            .filter_map(|user| OwnedUserId::try_from(user.as_str()).ok())
            .collect();
        trace!(users = users.len(), "ignored user list changed");
        if sync.send(SyncInput::IgnoredUsers(users)).await.is_err() {
            return;
        }
    }
}

/// Feeds what the store already knows of a room we are in: its encryption, its power levels
/// (who may redact others' memberships), and its legacy state memberships.
pub(crate) async fn seed_room(room: &Room, sync: &mpsc::Sender<SyncInput>) {
    let room_id = room.room_id().to_owned();
    match room.latest_encryption_state().await {
        Ok(state) => {
            let input = SyncInput::RoomEncrypted {
                room_id: room_id.clone(),
                encrypted: state.is_encrypted(),
            };
            if sync.send(input).await.is_err() {
                return;
            }
        }
        Err(error) => warn!(room = %room_id, %error, "could not read the room's encryption state"),
    }
    let event_types = [
        StateEventType::RoomPowerLevels,
        StateEventType::from(matrix_rtc_membership::wire::LEGACY_CALL_MEMBER),
    ];
    for event_type in event_types {
        let events = match room.get_state_events(event_type.clone()).await {
            Ok(events) => events,
            Err(error) => {
                warn!(room = %room_id, %error, %event_type, "could not read room state");
                continue;
            }
        };
        for event in events {
            if let RawAnySyncOrStrippedState::Sync(raw) = event {
                let input = SyncInput::StoredState {
                    room_id: room_id.clone(),
                    raw: raw.into_json(),
                    receipt: receipt_now(),
                };
                if sync.send(input).await.is_err() {
                    return;
                }
            }
        }
    }
}
