//! A parsed sticky event and its clear-text metadata.
use std::{cmp::Ordering, time::Instant};

use ruma_common::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId};
use serde_json::value::RawValue;

use crate::{MapKey, Rejection, parse};

/// The clear-text sticky metadata of an event: what is known before (or without) decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyMeta {
    /// Room the event belongs to (given by the caller: sliding-sync events carry no `room_id`).
    pub room_id: OwnedRoomId,
    /// Event ID.
    pub event_id: OwnedEventId,
    /// Sender.
    pub sender: OwnedUserId,
    /// `origin_server_ts` in ms.
    pub origin_server_ts: u64,
    /// Sticky duration in ms, already clamped to `1..=3_600_000`.
    pub duration_ms: u64,
    /// Local monotonic deadline at which the event stops being sticky.
    pub expires_at: Instant,
    /// The same deadline as wall-clock ms (for snapshots).
    pub expires_wall_ms: u64,
}

impl StickyMeta {
    /// Rank used for conflicts: `origin_server_ts + duration_ms` (saturating), with the
    /// duration already clamped to one hour. It uses event fields only, so every client ranks
    /// the same way; it is never the local deadline.
    pub fn rank(&self) -> u64 {
        self.origin_server_ts.saturating_add(self.duration_ms)
    }

    /// Conflict order between two events of one key: the higher rank wins, then the higher
    /// event ID compared as bytes. `Ordering::Greater` means `self` wins.
    pub fn cmp_rank(&self, other: &Self) -> Ordering {
        self.rank()
            .cmp(&other.rank())
            .then_with(|| self.event_id.as_bytes().cmp(other.event_id.as_bytes()))
    }

    /// Whether the event is no longer sticky at `now` (its deadline is `now` or earlier).
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at <= now
    }
}

/// How the event reached us.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventOrigin {
    /// Sent in clear text.
    #[default]
    Plaintext,
    /// Decrypted from an `m.room.encrypted` envelope.
    Encrypted {
        /// Device that encrypted it, when decryption reported one.
        sender_device: Option<OwnedDeviceId>,
    },
}

/// A valid, live sticky event, ready for the map.
///
/// Equality compares every field, the content as raw JSON text.
#[derive(Debug, Clone)]
pub struct StickyEvent {
    /// Clear-text metadata.
    pub meta: StickyMeta,
    /// Event type (the decrypted type for encrypted events).
    pub event_type: String,
    /// The sticky key, when the content has one.
    pub sticky_key: Option<String>,
    /// The content holds nothing but the sticky key(s): a deletion marker.
    pub key_only: bool,
    /// The raw content, unparsed beyond the sticky key.
    pub content: Box<RawValue>,
    /// Plaintext or decrypted.
    pub origin: EventOrigin,
}

impl PartialEq for StickyEvent {
    fn eq(&self, other: &Self) -> bool {
        self.meta == other.meta
            && self.event_type == other.event_type
            && self.sticky_key == other.sticky_key
            && self.key_only == other.key_only
            && self.content.get() == other.content.get()
            && self.origin == other.origin
    }
}

impl Eq for StickyEvent {}

impl StickyEvent {
    /// Build the event of a decrypted envelope: the sticky metadata comes from the envelope
    /// (decrypted events lose the sticky object), the type and content from the decryption.
    ///
    /// `content` must be a JSON object; its sticky key and key-only-ness are read here with the
    /// same rules as for plaintext events.
    pub fn from_decrypted(
        meta: StickyMeta,
        event_type: impl Into<String>,
        content: Box<RawValue>,
        origin: EventOrigin,
    ) -> Result<Self, Rejection> {
        let event_type = event_type.into();
        if event_type == crate::wire::ROOM_ENCRYPTED {
            return Err(Rejection::StillEncrypted);
        }
        let info = parse::content_info(&content)?;
        Ok(Self {
            meta,
            event_type,
            sticky_key: info.sticky_key,
            key_only: info.key_only,
            content,
            origin,
        })
    }

    /// The map key of this event, when it has a sticky key.
    pub fn map_key(&self) -> Option<MapKey> {
        let sticky_key = self.sticky_key.clone()?;
        Some(MapKey {
            room_id: self.meta.room_id.clone(),
            sender: self.meta.sender.clone(),
            event_type: self.event_type.clone(),
            sticky_key,
        })
    }

    /// Whether this event, when it is its key's winner, shows readers a value: false for
    /// key-only content (a deletion marker, or tombstone).
    pub fn is_visible(&self) -> bool {
        !self.key_only
    }

    /// The tombstone a redaction leaves of this keyed event: the same metadata, type, sticky key
    /// and origin, key-only, with the content `{}`.
    pub(crate) fn tombstone(&self) -> Self {
        Self {
            meta: self.meta.clone(),
            event_type: self.event_type.clone(),
            sticky_key: self.sticky_key.clone(),
            key_only: true,
            content: empty_object(),
            origin: self.origin.clone(),
        }
    }

    /// Whether this is the tombstone of a redacted event: keyed, key-only, and the content `{}`
    /// (the content of a parsed or decrypted keyed event always holds its key).
    pub(crate) fn is_tombstone(&self) -> bool {
        self.key_only && self.sticky_key.is_some() && self.content.get() == EMPTY_OBJECT
    }
}

/// The content of a tombstone.
pub(crate) const EMPTY_OBJECT: &str = "{}";

/// [`EMPTY_OBJECT`] as a raw value.
pub(crate) fn empty_object() -> Box<RawValue> {
    RawValue::from_string(EMPTY_OBJECT.to_owned()).expect("`{}` is valid JSON")
}

/// An encrypted sticky envelope waiting for decryption.
///
/// Equality compares every field, the envelope as raw JSON text.
#[derive(Debug, Clone)]
pub struct EncryptedSticky {
    /// Clear-text metadata from the envelope.
    pub meta: StickyMeta,
    /// The megolm session ID from the envelope content, when present.
    pub session_id: Option<String>,
    /// The whole envelope, as received, to hand to the decryptor.
    pub envelope: Box<RawValue>,
}

impl PartialEq for EncryptedSticky {
    fn eq(&self, other: &Self) -> bool {
        self.meta == other.meta
            && self.session_id == other.session_id
            && self.envelope.get() == other.envelope.get()
    }
}

impl Eq for EncryptedSticky {}

impl EncryptedSticky {
    /// Combine this envelope with the decrypted event JSON (the whole decrypted event, as a
    /// decryptor returns it: at least `type` and `content`).
    ///
    /// The sticky metadata is kept from the envelope; only `type` and `content` are read from
    /// `decrypted`. An unable-to-decrypt result (still `m.room.encrypted`) is
    /// [`Rejection::StillEncrypted`].
    pub fn into_decrypted(
        self,
        decrypted: &str,
        sender_device: Option<OwnedDeviceId>,
    ) -> Result<StickyEvent, Rejection> {
        let (event_type, content) = parse::type_and_content(decrypted)?;
        StickyEvent::from_decrypted(
            self.meta,
            event_type,
            content,
            EventOrigin::Encrypted { sender_device },
        )
    }
}
