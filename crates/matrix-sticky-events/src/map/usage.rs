//! The senders of one room ordered by what they use, for fair eviction under the room caps.
//!
//! Over [`Limits::per_room`](crate::Limits::per_room) the map cuts the sender holding the most
//! candidates (then the most bytes, then the greatest user ID); over
//! [`Limits::per_room_bytes`](crate::Limits::per_room_bytes), the sender holding the most bytes
//! (then the most candidates, then the greatest user ID). Two ordered sets give either at the
//! end, and each change of a sender's usage costs `O(log senders)`.
use std::{collections::BTreeSet, sync::Arc};

use super::room::RoomCap;
use crate::Usage;

/// `(primary, secondary, sender)`: for [`RoomCap::Count`] `(candidates, bytes, sender)`, for
/// [`RoomCap::Bytes`] `(bytes, candidates, sender)`.
type Entry = (usize, usize, Arc<str>);

/// The two orders of a room's senders.
#[derive(Debug, Default)]
pub(crate) struct SenderIndex {
    by_count: BTreeSet<Entry>,
    by_bytes: BTreeSet<Entry>,
}

/// The order key of `usage` for `cap`, without the sender.
fn rank(cap: RoomCap, usage: Usage) -> (usize, usize) {
    match cap {
        RoomCap::Count => (usage.candidates, usage.bytes),
        RoomCap::Bytes => (usage.bytes, usage.candidates),
    }
}

impl SenderIndex {
    fn set(&self, cap: RoomCap) -> &BTreeSet<Entry> {
        match cap {
            RoomCap::Count => &self.by_count,
            RoomCap::Bytes => &self.by_bytes,
        }
    }

    /// Record that the usage of `sender` went from `before` to `after` (a sender without
    /// candidates is not in the index).
    pub(crate) fn update(&mut self, sender: &Arc<str>, before: Usage, after: Usage) {
        if before == after {
            return;
        }
        for (cap, set) in [
            (RoomCap::Count, &mut self.by_count),
            (RoomCap::Bytes, &mut self.by_bytes),
        ] {
            if before.candidates > 0 {
                let (a, b) = rank(cap, before);
                set.remove(&(a, b, Arc::clone(sender)));
            }
            if after.candidates > 0 {
                let (a, b) = rank(cap, after);
                set.insert((a, b, Arc::clone(sender)));
            }
        }
    }

    /// The sender first cut under `cap`.
    pub(crate) fn heaviest(&self, cap: RoomCap) -> Option<&Arc<str>> {
        self.set(cap).last().map(|(_, _, sender)| sender)
    }

    /// Whether `sender` would be the sender first cut under `cap` if its usage became `after`
    /// (which must exceed its current usage in both candidates and bytes).
    pub(crate) fn would_be_heaviest(&self, cap: RoomCap, sender: &str, after: Usage) -> bool {
        let (a, b) = rank(cap, after);
        self.set(cap)
            .last()
            .is_none_or(|(x, y, other)| (a, b, sender) > (*x, *y, &**other))
    }

    /// Every sender with its usage, in no particular order (for consistency checks).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> Vec<(Arc<str>, Usage)> {
        self.by_count
            .iter()
            .map(|(candidates, bytes, sender)| {
                (
                    Arc::clone(sender),
                    Usage {
                        candidates: *candidates,
                        bytes: *bytes,
                    },
                )
            })
            .collect()
    }

    /// Whether the two orders hold the same senders and usages.
    #[cfg(test)]
    pub(crate) fn orders_agree(&self) -> bool {
        let mut count: Vec<_> = self.by_count.iter().map(|(c, b, s)| (s, *c, *b)).collect();
        let mut bytes: Vec<_> = self.by_bytes.iter().map(|(b, c, s)| (s, *c, *b)).collect();
        count.sort();
        bytes.sort();
        count == bytes
    }
}
