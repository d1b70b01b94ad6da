//! Memory bounds.
use crate::StickyEvent;

/// Caps on what the map keeps, so that hostile input can never grow memory without limit.
///
/// Every candidate counts, including superseded ones, deletion markers and the tombstones of
/// redacted events (with their content `{}`).
///
/// # Eviction: the sender using the most goes first
///
/// When an insertion takes a cap over, the map evicts one candidate at a time until no cap is
/// exceeded, and reports [`RemovalReason::Evicted`](crate::RemovalReason::Evicted) for each
/// evicted candidate that was visible. Caps are checked in this order:
///
/// 1. Over [`per_sender`](Self::per_sender): that sender's own lowest-ranked candidate goes
///    (rank = `origin_server_ts + min(duration_ms, 1 h)`, then event ID).
/// 2. Over [`per_room`](Self::per_room): the lowest-ranked candidate of the sender holding the
///    **most candidates** in the room goes (ties: the larger total weight, then the greater user
///    ID).
/// 3. Over [`per_room_bytes`](Self::per_room_bytes): the lowest-ranked candidate of the sender
///    holding the **largest total weight** in the room goes (ties: more candidates, then the
///    greater user ID).
///
/// So a room over its caps is cut where it is used most, never at its oldest entry: a sender
/// whose usage is within its fair share of a room cap (the cap divided by the number of senders
/// in the room) never loses a candidate to that cap, since the room exceeds the cap only when
/// the heaviest sender is above the fair share. Accounts flooding a room push out each other's
/// candidates, not those of long-standing participants with a few small events.
///
/// Within a sender, a key's superseded candidates rank below its winner, so they always go
/// before it: an eviction never brings an older value back. An incoming event that would itself
/// be the first to go (its sender is the one to cut, and it ranks below that sender's other
/// candidates) is not inserted at all.
///
/// Finding the sender to cut costs `O(log senders)` (each room keeps its senders ordered by
/// usage), and finding its lowest-ranked candidate `O(log n)`.
///
/// Worst case per room: `per_room_bytes` of candidate weight (see [`Limits::weight`]), at most
/// `per_room` candidates, of which at most `per_sender` per sender; plus `remembered_redactions`
/// event IDs for the whole map (about 100 bytes each). The number of rooms is the number of
/// rooms the account is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum candidates (keyed and unkeyed) per (room, sender). Default 256.
    pub per_sender: usize,
    /// Maximum candidates per room. Default 20 000.
    pub per_room: usize,
    /// Maximum total [`Limits::weight`] of the candidates of one room. Default 32 MiB
    /// (about 500 events of the largest size, 64 KiB, or 20 000 ordinary member events).
    pub per_room_bytes: usize,
    /// Maximum remembered redactions of events not (or no longer) in the map. The oldest are
    /// forgotten first. Default 10 000.
    pub remembered_redactions: usize,
}

impl Limits {
    /// The defaults: 256 per sender, 20 000 per room, 32 MiB per room, 10 000 redactions.
    pub const DEFAULT: Self = Self {
        per_sender: 256,
        per_room: 20_000,
        per_room_bytes: 32 << 20,
        remembered_redactions: 10_000,
    };

    /// Estimated fixed heap cost of one candidate beyond its strings: the event struct, its
    /// `Arc`, and its entries in the map's indexes.
    pub const ENTRY_OVERHEAD: usize = 320;

    /// The weight of one candidate counted against [`Limits::per_room_bytes`]: the lengths of its
    /// content, type, sticky key, event ID, sender and room ID, plus
    /// [`Limits::ENTRY_OVERHEAD`]. An estimate of its heap cost.
    pub fn weight(event: &StickyEvent) -> usize {
        Self::ENTRY_OVERHEAD
            + event.content.get().len()
            + event.event_type.len()
            + event.sticky_key.as_ref().map_or(0, String::len)
            + event.meta.event_id.as_str().len()
            + event.meta.sender.as_str().len()
            + event.meta.room_id.as_str().len()
    }
}

/// What the candidates of a room, or of one sender in a room, count against the caps (see
/// [`StickyMap::room_usage`](crate::StickyMap::room_usage) and
/// [`StickyMap::sender_usage`](crate::StickyMap::sender_usage)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Usage {
    /// Number of candidates, superseded ones and deletion markers included.
    pub candidates: usize,
    /// Their total [`Limits::weight`].
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
