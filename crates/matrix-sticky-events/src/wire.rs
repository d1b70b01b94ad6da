//! Wire names of MSC4354, in one place.
//!
//! Every JSON field name, event type and unstable prefix this crate reads or that a sender of
//! sticky events needs lives here. Readers accept both names wherever two exist (the stable
//! name is preferred when both are present); senders send the unstable ones today, and for the
//! content key both (see `docs/protocol.md` §1 and §5.6).
//!
//! The private submodules hold the borrowed serde shapes used by the parser.

pub(crate) mod batch;
pub(crate) mod content;
pub(crate) mod event;
pub(crate) mod scalar;

/// Top-level sticky object of an event, stable name: `sticky: {duration_ms}`.
pub const STICKY: &str = "sticky";
/// Top-level sticky object of an event, unstable name: `msc4354_sticky: {duration_ms}`.
pub const STICKY_UNSTABLE: &str = "msc4354_sticky";
/// Field of the sticky object holding the requested lifetime in milliseconds.
pub const DURATION_MS: &str = "duration_ms";

/// Sticky key inside `content`, stable name.
pub const STICKY_KEY: &str = "sticky_key";
/// Sticky key inside `content`, unstable name.
pub const STICKY_KEY_UNSTABLE: &str = "msc4354_sticky_key";

/// Remaining lifetime in `unsigned`, stable name.
pub const TTL: &str = "sticky_duration_ttl_ms";
/// Remaining lifetime in `unsigned`, unstable name.
pub const TTL_UNSTABLE: &str = "msc4354_sticky_duration_ttl_ms";

/// Query parameter of a sticky send, stable name.
pub const SEND_PARAM: &str = "sticky_duration_ms";
/// Query parameter of a sticky send, unstable name (send this one today).
pub const SEND_PARAM_UNSTABLE: &str = "org.matrix.msc4354.sticky_duration_ms";

/// Section of a joined room in v3 `/sync`, stable name (`rooms.join.<id>.sticky.events`).
pub const SYNC_SECTION: &str = "sticky";
/// Section of a joined room in v3 `/sync`, unstable name (`rooms.join.<id>.msc4354_sticky.events`).
pub const SYNC_SECTION_UNSTABLE: &str = "msc4354_sticky";

/// Simplified sliding sync extension (MSC4480), stable name.
pub const SSS_EXTENSION: &str = "sticky_events";
/// Simplified sliding sync extension (MSC4480), unstable name (it keeps the 4354 prefix).
pub const SSS_EXTENSION_UNSTABLE: &str = "org.matrix.msc4354.sticky_events";

/// `unstable_features` flag of `/versions` advertising MSC4354.
pub const VERSIONS_FLAG_UNSTABLE: &str = "org.matrix.msc4354";

/// `unsigned` field present on redacted copies of events.
pub const REDACTED_BECAUSE: &str = "redacted_because";
/// Event type of a redaction.
pub const ROOM_REDACTION: &str = "m.room.redaction";
/// Field naming the redacted event (top level before room version 11, in `content` since).
pub const REDACTS: &str = "redacts";
/// Event type of an encrypted envelope.
pub const ROOM_ENCRYPTED: &str = "m.room.encrypted";
/// Field of an encrypted envelope's content holding the megolm session ID.
pub const SESSION_ID: &str = "session_id";

/// Longest valid sticky duration (and remaining lifetime): one hour. Longer values are clamped.
pub const MAX_DURATION_MS: u64 = 3_600_000;
