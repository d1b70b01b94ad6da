//! Parsing raw events: validity, clamping, expiry and the sticky key (`docs/protocol.md` §2, §4.1).
use std::borrow::Cow;

use ruma_common::{EventId, OwnedEventId, OwnedUserId, RoomId, UserId};
use serde::Deserialize;
use serde_json::{error::Category, value::RawValue};

use crate::{
    EncryptedSticky, EventOrigin, Receipt, StickyEvent, StickyMeta, time,
    wire::{
        self, MAX_DURATION_MS,
        content::RawContent,
        event::{RawEvent, RawSticky, RawUnsigned},
        scalar::{self, Int},
    },
};

mod batch;
mod depth;
mod rejection;

pub use self::{
    batch::{BatchError, RoomBatch, StickyBatch, parse_sliding_sync_response, parse_sticky_batch},
    rejection::Rejection,
};

/// Largest raw event accepted, in bytes (64 KiB: the Matrix limit on a whole event).
pub const MAX_EVENT_BYTES: usize = 65_536;

/// Deepest nesting of objects and arrays accepted in an event, the event object itself being
/// level 1. Matches serde_json's default recursion limit, so content accepted here can later be
/// parsed by serde_json without hitting it.
pub const MAX_DEPTH: usize = 128;

/// Largest extension response accepted by [`parse_sticky_batch`], in bytes (16 MiB: Synapse
/// sends at most 100 events per response, each at most [`MAX_EVENT_BYTES`]).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Largest integer of canonical JSON (`2^53 - 1`): the upper bound of a valid timestamp.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Result of parsing one raw event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A plaintext sticky event.
    Sticky(StickyEvent),
    /// An encrypted sticky envelope.
    Encrypted(EncryptedSticky),
    /// A redacted copy of a sticky event, or an `m.room.redaction`: redact the named event with
    /// [`StickyMap::handle_redaction`](crate::StickyMap::handle_redaction) (once the reader has
    /// decided that an `m.room.redaction`'s sender may redact it).
    Redaction(Redaction),
}

/// A redaction read by the parser: an `m.room.redaction` event, or a redacted copy of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// The event redacted.
    pub redacts: OwnedEventId,
    /// The `m.room.redaction` event, when it is one. Whether it counts is for the reader to
    /// decide: a homeserver delivers redactions it does not apply (a sender without the power
    /// to redact another's event). `None` for a redacted copy: its homeserver has applied the
    /// redaction already.
    pub by: Option<Redactor>,
}

/// The `m.room.redaction` event behind a [`Redaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redactor {
    /// The redaction event's ID.
    pub event_id: OwnedEventId,
    /// Who sent it.
    pub sender: OwnedUserId,
}

impl Redaction {
    /// A redacted copy of `redacts`, which its homeserver has redacted.
    pub fn redacted_copy(redacts: OwnedEventId) -> Self {
        Self { redacts, by: None }
    }

    /// The `m.room.redaction` `event_id` of `sender`, redacting `redacts`.
    pub fn event(redacts: OwnedEventId, event_id: OwnedEventId, sender: OwnedUserId) -> Self {
        Self {
            redacts,
            by: Some(Redactor { event_id, sender }),
        }
    }
}

/// Parse one raw event of `room_id`, received at `receipt`.
///
/// Accepts the client event format of `/sync`, sliding sync and `/event` (a `room_id` field, if
/// any, is ignored: the caller's `room_id` is used). Checks, in order: size
/// ([`MAX_EVENT_BYTES`]), nesting ([`MAX_DEPTH`]), JSON object, `event_id`, `sender`, `type`,
/// `unsigned`; then redactions (`m.room.redaction`, or a redacted copy carrying
/// `unsigned.redacted_because`) become [`Parsed::Redaction`]; then `origin_server_ts`, the
/// sticky object (stable `sticky` preferred over `msc4354_sticky`), `content`, the remaining
/// lifetime (stable name preferred) and, for plaintext events, the sticky key.
///
/// Durations over one hour are clamped to one hour, and so are remaining lifetimes. Without a
/// remaining lifetime, the deadline falls back to
/// `min(receipt.wall_ms, origin_server_ts) + duration_ms`.
///
/// The cost is linear in `raw.len()`, and nothing here recurses on the input's nesting.
pub fn parse_event(raw: &str, room_id: &RoomId, receipt: Receipt) -> Result<Parsed, Rejection> {
    check_bounds(raw)?;
    let event: RawEvent<'_> = read_object(raw)?;
    parse_fields(raw, &event, room_id, receipt)
}

/// Reject inputs too large or too deeply nested to look at.
fn check_bounds(raw: &str) -> Result<(), Rejection> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(Rejection::TooLarge { bytes: raw.len() });
    }
    if depth::too_deep(raw, MAX_DEPTH) {
        return Err(Rejection::TooDeep);
    }
    Ok(())
}

/// Deserialize one of the wire shapes (all objects) from `raw`.
fn read_object<'a, T: Deserialize<'a>>(raw: &'a str) -> Result<T, Rejection> {
    serde_json::from_str(raw).map_err(|error| match error.classify() {
        // The only data error these shapes raise is "not a map".
        Category::Data if serde_json::from_str::<serde::de::IgnoredAny>(raw).is_ok() => {
            Rejection::NotAnObject
        }
        _ => Rejection::NotJson,
    })
}

fn parse_fields(
    raw: &str,
    event: &RawEvent<'_>,
    room_id: &RoomId,
    receipt: Receipt,
) -> Result<Parsed, Rejection> {
    if let Some(name) = event.duplicate {
        return Err(Rejection::DuplicateField(name));
    }
    let event_id = event_id(event.event_id.ok_or(Rejection::MissingField("event_id"))?)
        .ok_or(Rejection::InvalidEventId)?;
    let sender = scalar::string(event.sender.ok_or(Rejection::MissingField("sender"))?)
        .and_then(|s| UserId::parse(s.as_ref()).ok())
        .ok_or(Rejection::InvalidSender)?;
    let event_type = scalar::string(event.event_type.ok_or(Rejection::MissingField("type"))?)
        .ok_or(Rejection::InvalidEventType)?;
    let unsigned = match event.unsigned {
        None => RawUnsigned::default(),
        Some(raw) if scalar::is_object(raw) => read_object(raw.get())?,
        Some(_) => return Err(Rejection::UnsignedNotObject),
    };
    if let Some(name) = unsigned.duplicate {
        return Err(Rejection::DuplicateField(name));
    }

    if event_type == wire::ROOM_REDACTION {
        return redaction_target(event)
            .map(|redacts| Parsed::Redaction(Redaction::event(redacts, event_id, sender)));
    }
    if unsigned.redacted_because.is_some() {
        // A redacted copy: it has lost its sticky object and its key, but it names itself.
        return Ok(Parsed::Redaction(Redaction::redacted_copy(event_id)));
    }

    let origin_server_ts = match event.origin_server_ts.map(scalar::int) {
        None => return Err(Rejection::MissingField("origin_server_ts")),
        Some(Int::Value(ts)) if ts <= MAX_SAFE_INTEGER => ts,
        Some(_) => return Err(Rejection::InvalidOriginServerTs),
    };
    let duration_ms = sticky_duration(event)?;
    let content = event.content.ok_or(Rejection::MissingField("content"))?;
    if !scalar::is_object(content) {
        return Err(Rejection::ContentNotObject);
    }
    let ttl_ms = remaining_lifetime(&unsigned)?;
    let (expires_at, expires_wall_ms) =
        time::deadline(receipt, origin_server_ts, duration_ms, ttl_ms)?;
    let meta = StickyMeta {
        room_id: room_id.to_owned(),
        event_id,
        sender,
        origin_server_ts,
        duration_ms,
        expires_at,
        expires_wall_ms,
    };

    if event_type == wire::ROOM_ENCRYPTED {
        let content: RawContent<'_> =
            read_object(content.get()).map_err(|_| Rejection::ContentInvalid)?;
        let session_id = content
            .session_id
            .and_then(scalar::string)
            .map(Cow::into_owned);
        let envelope = RawValue::from_string(raw.to_owned()).map_err(|_| Rejection::NotJson)?;
        return Ok(Parsed::Encrypted(EncryptedSticky {
            meta,
            session_id,
            envelope,
        }));
    }

    let info = content_info(content)?;
    Ok(Parsed::Sticky(StickyEvent {
        meta,
        event_type: event_type.into_owned(),
        sticky_key: info.sticky_key,
        key_only: info.key_only,
        content: content.to_owned(),
        origin: EventOrigin::Plaintext,
    }))
}

fn event_id(raw: &RawValue) -> Option<OwnedEventId> {
    scalar::string(raw).and_then(|s| EventId::parse(s.as_ref()).ok())
}

/// The event an `m.room.redaction` redacts: top-level `redacts` (room versions before 11),
/// else `content.redacts` (room version 11 on).
fn redaction_target(event: &RawEvent<'_>) -> Result<OwnedEventId, Rejection> {
    if let Some(raw) = event.redacts {
        return event_id(raw).ok_or(Rejection::InvalidRedacts);
    }
    let content = event.content.ok_or(Rejection::MissingField("redacts"))?;
    if !scalar::is_object(content) {
        return Err(Rejection::ContentNotObject);
    }
    let content: RawContent<'_> =
        read_object(content.get()).map_err(|_| Rejection::ContentInvalid)?;
    let raw = content.redacts.ok_or(Rejection::MissingField("redacts"))?;
    event_id(raw).ok_or(Rejection::InvalidRedacts)
}

/// The sticky duration, clamped to one hour (`docs/protocol.md` §2.1).
fn sticky_duration(event: &RawEvent<'_>) -> Result<u64, Rejection> {
    let raw = event
        .sticky
        .or(event.sticky_unstable)
        .ok_or(Rejection::NotSticky)?;
    if !scalar::is_object(raw) {
        return Err(Rejection::StickyNotObject);
    }
    let sticky: RawSticky<'_> = read_object(raw.get())?;
    if let Some(name) = sticky.duplicate {
        return Err(Rejection::DuplicateField(name));
    }
    match sticky.duration_ms.map(scalar::int) {
        None => Err(Rejection::DurationMissing),
        Some(Int::NotInteger) => Err(Rejection::DurationNotInteger),
        Some(Int::Negative) => Err(Rejection::DurationNegative),
        Some(Int::Value(0)) => Err(Rejection::DurationZero),
        Some(Int::Value(ms)) => Ok(ms.min(MAX_DURATION_MS)),
    }
}

/// The server's remaining lifetime, clamped to one hour; `None` when absent.
fn remaining_lifetime(unsigned: &RawUnsigned<'_>) -> Result<Option<u64>, Rejection> {
    match unsigned.ttl.or(unsigned.ttl_unstable).map(scalar::int) {
        None => Ok(None),
        Some(Int::NotInteger) => Err(Rejection::TtlNotInteger),
        Some(Int::Negative | Int::Value(0)) => Err(Rejection::AlreadyExpired),
        Some(Int::Value(ms)) => Ok(Some(ms.min(MAX_DURATION_MS))),
    }
}

/// What the map needs to know about a content object.
#[derive(Debug)]
pub(crate) struct ContentInfo {
    /// The sticky key, from either name.
    pub(crate) sticky_key: Option<String>,
    /// Only sticky key fields, nothing else.
    pub(crate) key_only: bool,
}

/// Read the sticky key of a content object (`docs/protocol.md` §4.1) and whether it is key-only.
pub(crate) fn content_info(content: &RawValue) -> Result<ContentInfo, Rejection> {
    if !scalar::is_object(content) {
        return Err(Rejection::ContentNotObject);
    }
    let fields: RawContent<'_> =
        serde_json::from_str(content.get()).map_err(|_| Rejection::ContentInvalid)?;
    if let Some(name) = fields.duplicate {
        return Err(Rejection::DuplicateField(name));
    }
    let stable = fields.sticky_key.map(sticky_key).transpose()?;
    let unstable = fields.sticky_key_unstable.map(sticky_key).transpose()?;
    let sticky_key = match (stable, unstable) {
        (Some(stable), Some(unstable)) if stable != unstable => {
            return Err(Rejection::StickyKeysDisagree);
        }
        (Some(key), _) | (None, Some(key)) => Some(key.into_owned()),
        (None, None) => None,
    };
    let key_only = sticky_key.is_some() && fields.other_keys == 0;
    Ok(ContentInfo {
        sticky_key,
        key_only,
    })
}

fn sticky_key(raw: &RawValue) -> Result<Cow<'_, str>, Rejection> {
    if !raw.get().starts_with('"') {
        return Err(Rejection::StickyKeyNotString);
    }
    scalar::string(raw).ok_or(Rejection::StickyKeyInvalid)
}

/// The `type` and `content` of a whole (decrypted) event.
pub(crate) fn type_and_content(raw: &str) -> Result<(String, Box<RawValue>), Rejection> {
    check_bounds(raw)?;
    let event: RawEvent<'_> = read_object(raw)?;
    if let Some(name) = event.duplicate {
        return Err(Rejection::DuplicateField(name));
    }
    let event_type = scalar::string(event.event_type.ok_or(Rejection::MissingField("type"))?)
        .ok_or(Rejection::InvalidEventType)?;
    if event_type == wire::ROOM_ENCRYPTED {
        return Err(Rejection::StillEncrypted);
    }
    let content = event.content.ok_or(Rejection::MissingField("content"))?;
    if !scalar::is_object(content) {
        return Err(Rejection::ContentNotObject);
    }
    Ok((event_type.into_owned(), content.to_owned()))
}
