//! Memory bounds.
use crate::StickyEvent;

/// Caps on what the map keeps, so that hostile input can never grow memory without limit.
///
/// Every candidate counts, including superseded ones and deletion markers. When a cap is
/// exceeded, the map evicts the **lowest-ranked** candidates of the scope over its cap first
/// (rank = `origin_server_ts + min(duration_ms, 1 h)`, then event ID), and reports
/// [`RemovalReason::Evicted`](crate::RemovalReason::Evicted) when the evicted candidate was
/// visible. Since a key's superseded candidates rank below its winner, they always go before it,
/// so an eviction never brings an older value back. An incoming event that would itself be the
/// first to go is not inserted at all.
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

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
