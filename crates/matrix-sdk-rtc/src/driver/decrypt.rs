//! Encrypted sticky envelopes: decrypted in tasks of their own (decryption is async and must
//! not stall the driver), and parked by `(room, megolm session)` while their room key is
//! missing, to be retried when the key arrives (and periodically, in case a key arrived
//! while nobody listened).
use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use matrix_sdk::{
    Client,
    deserialized_responses::TimelineEventKind,
    ruma::{
        OwnedEventId, OwnedRoomId, events::room::encrypted::OriginalSyncRoomEncryptedEvent,
        serde::Raw,
    },
};
use matrix_sticky_events::EncryptedSticky;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use super::Input;

/// The most envelopes kept waiting for their keys. Beyond it, new ones are dropped (they
/// come back with a fresh side connection, or expire): undecryptable input from a hostile
/// sender must not grow memory without limit.
const MAX_PARKED: usize = 10_000;

/// Envelopes waiting for a room key, and those being decrypted right now.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    by_session: HashMap<(OwnedRoomId, String), Vec<EncryptedSticky>>,
    events: HashSet<OwnedEventId>,
    in_flight: HashSet<OwnedEventId>,
    /// Envelopes already reported as awaiting their key (parked or being retried), so that
    /// each is reported once.
    reported: HashSet<OwnedEventId>,
}

impl Parked {
    /// Whether this envelope is already parked or being decrypted.
    pub(crate) fn knows(&self, envelope: &EncryptedSticky) -> bool {
        let id = &envelope.meta.event_id;
        self.events.contains(id) || self.in_flight.contains(id)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Marks an envelope as being decrypted.
    pub(crate) fn start(&mut self, envelope: &EncryptedSticky) {
        self.in_flight.insert(envelope.meta.event_id.clone());
    }

    /// A decryption attempt ended (whatever its result).
    pub(crate) fn finish(&mut self, event_id: &OwnedEventId) {
        self.in_flight.remove(event_id);
    }

    /// Keeps an undecryptable envelope until its key arrives or it expires. Returns `true`
    /// the first time this envelope is parked (to be reported), `false` when it was parked
    /// before or is dropped.
    pub(crate) fn park(
        &mut self,
        room_id: OwnedRoomId,
        envelope: EncryptedSticky,
        now: Instant,
    ) -> bool {
        let id = &envelope.meta.event_id;
        if envelope.meta.expires_at <= now {
            self.reported.remove(id);
            return false;
        }
        if self.events.contains(id) {
            return false;
        }
        if self.events.len() >= MAX_PARKED {
            warn!(room = %room_id, "too many undecryptable sticky events parked; dropping one");
            self.reported.remove(id);
            return false;
        }
        let Some(session_id) = envelope.session_id.clone() else {
            debug!(room = %room_id, "encrypted sticky event without a session id dropped");
            return false;
        };
        let first = self.reported.insert(id.clone());
        self.events.insert(envelope.meta.event_id.clone());
        self.by_session
            .entry((room_id, session_id))
            .or_default()
            .push(envelope);
        first
    }

    /// An envelope was decrypted: it no longer awaits a key.
    pub(crate) fn decrypted(&mut self, event_id: &OwnedEventId) {
        self.reported.remove(event_id);
    }

    /// The envelopes of one megolm session, taken out for another attempt.
    pub(crate) fn take_session(
        &mut self,
        room_id: &OwnedRoomId,
        session_id: &str,
    ) -> Vec<EncryptedSticky> {
        let taken = self
            .by_session
            .remove(&(room_id.clone(), session_id.to_owned()))
            .unwrap_or_default();
        for envelope in &taken {
            self.events.remove(&envelope.meta.event_id);
        }
        taken
    }

    /// Every parked envelope still live at `now`, taken out for another attempt; expired
    /// ones are dropped.
    pub(crate) fn take_all(&mut self, now: Instant) -> Vec<(OwnedRoomId, EncryptedSticky)> {
        self.events.clear();
        let (live, expired): (Vec<_>, Vec<_>) = self
            .by_session
            .drain()
            .flat_map(|((room_id, _), envelopes)| {
                envelopes.into_iter().map(move |e| (room_id.clone(), e))
            })
            .partition(|(_, envelope)| envelope.meta.expires_at > now);
        for (_, envelope) in expired {
            self.reported.remove(&envelope.meta.event_id);
        }
        live
    }
}

/// Tries to decrypt `envelope` in a task of its own and reports the result as an input.
pub(crate) fn spawn_decrypt(
    client: &Client,
    room_id: OwnedRoomId,
    envelope: EncryptedSticky,
    inputs: &mpsc::UnboundedSender<Input>,
) {
    let client = client.clone();
    let inputs = inputs.clone();
    tokio::spawn(async move {
        let input = decrypt(&client, room_id, envelope).await;
        let _ = inputs.send(input);
    });
}

async fn decrypt(client: &Client, room_id: OwnedRoomId, envelope: EncryptedSticky) -> Input {
    let Some(room) = client.get_room(&room_id) else {
        trace!(room = %room_id, "encrypted sticky event of an unknown room: parked");
        return Input::Undecryptable { room_id, envelope };
    };
    let raw: Raw<OriginalSyncRoomEncryptedEvent> = Raw::from_json(envelope.envelope.clone());
    let event = match room.decrypt_event(&raw, None).await {
        Ok(event) => event,
        Err(error) => {
            debug!(room = %room_id, %error, "decryption failed: parked");
            return Input::Undecryptable { room_id, envelope };
        }
    };
    let sender_device = event
        .encryption_info()
        .and_then(|info| info.sender_device.clone());
    match &event.kind {
        TimelineEventKind::Decrypted(decrypted) => {
            let event_id = envelope.meta.event_id.clone();
            let result = envelope.into_decrypted(decrypted.event.json().get(), sender_device);
            Input::Decrypted {
                room_id,
                event_id,
                result,
            }
        }
        TimelineEventKind::UnableToDecrypt { .. } | TimelineEventKind::PlainText { .. } => {
            trace!(room = %room_id, "room key missing: parked");
            Input::Undecryptable { room_id, envelope }
        }
    }
}
