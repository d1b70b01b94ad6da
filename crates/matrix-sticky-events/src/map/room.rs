//! What the map holds per room: senders, then event types, then keyed slots and unkeyed entries.
use std::{collections::HashMap, sync::Arc};

use ruma_common::OwnedUserId;

use super::ranked::RankHeap;
use crate::StickyEvent;

/// One room: its senders, and the counters and order of its candidates (for the per-room caps).
#[derive(Debug, Default)]
pub(crate) struct RoomState {
    pub(crate) senders: HashMap<OwnedUserId, SenderState>,
    /// Number of candidates.
    pub(crate) count: usize,
    /// Total [`Limits::weight`](crate::Limits::weight) of the candidates.
    pub(crate) bytes: usize,
    pub(crate) by_rank: RankHeap,
}

/// One sender in one room: its event types, and the counter and order of its candidates (for
/// the per-sender cap).
#[derive(Debug, Default)]
pub(crate) struct SenderState {
    pub(crate) types: HashMap<Box<str>, TypeState>,
    pub(crate) count: usize,
    pub(crate) by_rank: RankHeap,
}

impl SenderState {
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

    pub(crate) fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }
}
