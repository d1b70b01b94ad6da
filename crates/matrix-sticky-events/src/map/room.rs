//! What the map holds per room: senders, then event types, then keyed slots and unkeyed entries.
use std::{collections::HashMap, sync::Arc};

use super::{ranked::RankHeap, usage::SenderIndex};
use crate::{Limits, StickyEvent, Usage};

/// One room: its senders, the counters of its candidates, and its senders ordered by what they
/// use (for the per-room caps).
#[derive(Debug, Default)]
pub(crate) struct RoomState {
    /// Senders by user ID.
    pub(crate) senders: HashMap<Arc<str>, SenderState>,
    /// Number of candidates.
    pub(crate) count: usize,
    /// Total [`Limits::weight`] of the candidates.
    pub(crate) bytes: usize,
    /// Every sender of [`RoomState::senders`] with its usage, heaviest last.
    pub(crate) by_usage: SenderIndex,
}

/// One room cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomCap {
    /// [`Limits::per_room`]: the number of candidates.
    Count,
    /// [`Limits::per_room_bytes`]: the total weight of the candidates.
    Bytes,
}

impl RoomCap {
    /// The room cap a room holding `usage` exceeds, the count cap first.
    pub(crate) fn exceeded(usage: Usage, limits: Limits) -> Option<Self> {
        if usage.candidates > limits.per_room {
            Some(Self::Count)
        } else if usage.bytes > limits.per_room_bytes {
            Some(Self::Bytes)
        } else {
            None
        }
    }
}

impl RoomState {
    /// What the room's candidates use.
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            candidates: self.count,
            bytes: self.bytes,
        }
    }
}

/// One sender in one room: its event types, and the counters and order of its candidates (for
/// the caps).
#[derive(Debug)]
pub(crate) struct SenderState {
    /// The sender's user ID, shared with the room's [`SenderIndex`].
    pub(crate) id: Arc<str>,
    pub(crate) types: HashMap<Box<str>, TypeState>,
    /// Number of candidates.
    pub(crate) count: usize,
    /// Total [`Limits::weight`] of the candidates.
    pub(crate) bytes: usize,
    pub(crate) by_rank: RankHeap,
}

impl SenderState {
    pub(crate) fn new(id: Arc<str>) -> Self {
        Self {
            id,
            types: HashMap::new(),
            count: 0,
            bytes: 0,
            by_rank: RankHeap::default(),
        }
    }

    /// What the sender's candidates use.
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            candidates: self.count,
            bytes: self.bytes,
        }
    }

    /// Every candidate of the sender.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<StickyEvent>> {
        self.types.values().flat_map(|types| {
            types
                .keyed
                .values()
                .flat_map(|slot| slot.candidates().iter())
                .chain(types.unkeyed.iter())
        })
    }

    /// Rebuild the rank heap when dead entries outgrew the live ones.
    pub(crate) fn compact(&mut self) {
        if self.by_rank.needs_compaction(self.count) {
            self.by_rank = RankHeap::from_events(self.iter());
        }
    }
}

/// One event type of one sender in one room.
#[derive(Debug, Default)]
pub(crate) struct TypeState {
    /// Keyed slots by sticky key.
    pub(crate) keyed: HashMap<Box<str>, Slot>,
    /// Unkeyed entries: each is visible on its own until its deadline.
    pub(crate) unkeyed: Vec<Arc<StickyEvent>>,
}

impl TypeState {
    pub(crate) fn is_empty(&self) -> bool {
        self.keyed.is_empty() && self.unkeyed.is_empty()
    }
}

/// The live candidates of one map key, best first.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    candidates: Vec<Arc<StickyEvent>>,
}

impl Slot {
    /// The winner: the candidate with the highest rank, then the highest event ID.
    pub(crate) fn winner(&self) -> Option<&Arc<StickyEvent>> {
        self.candidates.first()
    }

    /// The winner when it shows a value (not a deletion marker).
    pub(crate) fn visible(&self) -> Option<&Arc<StickyEvent>> {
        self.winner().filter(|event| !event.key_only)
    }

    /// All candidates, best first.
    pub(crate) fn candidates(&self) -> &[Arc<StickyEvent>] {
        &self.candidates
    }

    pub(crate) fn insert(&mut self, event: Arc<StickyEvent>) {
        let at = self
            .candidates
            .partition_point(|c| c.meta.cmp_rank(&event.meta).is_gt());
        self.candidates.insert(at, event);
    }

    /// Remove this very candidate; whether it was there.
    pub(crate) fn remove(&mut self, event: &Arc<StickyEvent>) -> bool {
        match self.candidates.iter().position(|c| Arc::ptr_eq(c, event)) {
            Some(at) => {
                self.candidates.remove(at);
                true
            }
            None => false,
        }
    }

    /// Put `by` in the place of this very candidate `event` (of the same rank and event ID);
    /// whether it was there.
    pub(crate) fn replace(&mut self, event: &Arc<StickyEvent>, by: Arc<StickyEvent>) -> bool {
        match self.candidates.iter_mut().find(|c| Arc::ptr_eq(c, event)) {
            Some(place) => {
                *place = by;
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }
}
