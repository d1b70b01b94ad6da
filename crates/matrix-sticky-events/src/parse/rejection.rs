//! Why an event (or a part of an extension response) was not taken.

/// Why an event, or a part of a sliding-sync extension response, was not taken.
///
/// One variant per reason, so that callers and tests can tell them apart. A rejected event costs
/// only itself: nothing else in its batch is affected. Callers normally log the reason at
/// `debug` level and move on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The input is not valid JSON (including strings holding escapes that are not valid
    /// Unicode, such as a lone surrogate, in a field name).
    #[error("not valid json")]
    NotJson,
    /// The input is JSON, but not an object.
    #[error("not a json object")]
    NotAnObject,
    /// The raw JSON is larger than the limit ([`MAX_EVENT_BYTES`](crate::MAX_EVENT_BYTES) for
    /// an event, [`MAX_BATCH_BYTES`](crate::MAX_BATCH_BYTES) for an extension response).
    #[error("too large: {bytes} bytes")]
    TooLarge {
        /// Size of the rejected input in bytes.
        bytes: usize,
    },
    /// Objects and arrays are nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH).
    #[error("nested too deeply")]
    TooDeep,
    /// A field this crate reads appears twice in the same object.
    #[error("duplicate field `{0}`")]
    DuplicateField(&'static str),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// `event_id` is not a string holding a valid event ID.
    #[error("invalid event id")]
    InvalidEventId,
    /// `sender` is not a string holding a valid user ID.
    #[error("invalid sender")]
    InvalidSender,
    /// `type` is not a string.
    #[error("invalid event type")]
    InvalidEventType,
    /// `origin_server_ts` is not an integer in `0..=2^53-1`.
    #[error("invalid origin_server_ts")]
    InvalidOriginServerTs,
    /// A redaction whose `redacts` (top level or in content) is not a valid event ID.
    #[error("invalid redacts")]
    InvalidRedacts,
    /// The event has no sticky object (`sticky` / `msc4354_sticky`): an ordinary event.
    #[error("not sticky")]
    NotSticky,
    /// The sticky object is not an object.
    #[error("sticky object is not an object")]
    StickyNotObject,
    /// The sticky object has no `duration_ms`: not sticky.
    #[error("sticky duration missing")]
    DurationMissing,
    /// `duration_ms` is not an integer (a float, a string, a boolean, null, ...): not sticky.
    #[error("sticky duration is not an integer")]
    DurationNotInteger,
    /// `duration_ms` is negative: not sticky.
    #[error("sticky duration is negative")]
    DurationNegative,
    /// `duration_ms` is zero: not sticky (what Synapse sends for `sticky_duration_ms=0`).
    #[error("sticky duration is zero")]
    DurationZero,
    /// `unsigned` is not an object.
    #[error("unsigned is not an object")]
    UnsignedNotObject,
    /// The remaining lifetime in `unsigned` is not an integer.
    #[error("sticky ttl is not an integer")]
    TtlNotInteger,
    /// The event was no longer sticky when received: a remaining lifetime of zero or less, or
    /// (without one) `min(receipt, origin_server_ts) + duration` already in the past.
    #[error("already expired")]
    AlreadyExpired,
    /// `content` is not an object.
    #[error("content is not an object")]
    ContentNotObject,
    /// A field name in `content` holds an escape that is not valid Unicode (a lone surrogate).
    #[error("content has an invalid field name")]
    ContentInvalid,
    /// A sticky key (`sticky_key` / `msc4354_sticky_key`) is present but not a string.
    #[error("sticky key is not a string")]
    StickyKeyNotString,
    /// A sticky key is a string with an escape that is not valid Unicode (a lone surrogate).
    #[error("sticky key is not valid unicode")]
    StickyKeyInvalid,
    /// `sticky_key` and `msc4354_sticky_key` are both present and differ.
    #[error("sticky keys disagree")]
    StickyKeysDisagree,
    /// The decrypted event handed back is still an `m.room.encrypted` envelope (an
    /// unable-to-decrypt event).
    #[error("still encrypted")]
    StillEncrypted,
    /// Extension response: `rooms` is not an object.
    #[error("rooms is not an object")]
    RoomsNotObject,
    /// Extension response: a room key is not a valid room ID.
    #[error("invalid room id")]
    InvalidRoomId,
    /// Extension response: a room's value is not an object.
    #[error("room is not an object")]
    RoomNotObject,
    /// Extension response: a room's `events` is not an array.
    #[error("events is not an array")]
    EventsNotArray,
    /// Extension response: `next_batch` is not a string.
    #[error("next_batch is not a string")]
    NextBatchNotString,
}
