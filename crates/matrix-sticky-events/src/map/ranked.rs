//! Orderings and lookups of shared events, without copying their strings.
use std::{
    borrow::Borrow,
    cmp::{Ordering, Reverse},
    collections::{BinaryHeap, HashSet},
    hash::{Hash, Hasher},
    sync::Arc,
};

use ruma_common::EventId;

use crate::StickyEvent;

/// An event ordered by conflict rank: `(origin_server_ts + duration, event ID)`. The rank is
/// kept inline, so most comparisons do not touch the event.
#[derive(Debug, Clone)]
pub(crate) struct Ranked {
    rank: u64,
    pub(crate) event: Arc<StickyEvent>,
}

impl Ranked {
    pub(crate) fn new(event: &Arc<StickyEvent>) -> Self {
        Self {
            rank: event.meta.rank(),
            event: Arc::clone(event),
        }
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank.cmp(&other.rank).then_with(|| {
            self.event
                .meta
                .event_id
                .as_bytes()
                .cmp(other.event.meta.event_id.as_bytes())
        })
    }
}

/// An event hashed and compared by its event ID, so a set of them can be searched with a
/// `&EventId`.
#[derive(Debug, Clone)]
pub(crate) struct ById(pub(crate) Arc<StickyEvent>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.meta.event_id == other.0.meta.event_id
    }
}

impl Eq for ById {}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly as `EventId` does, for `Borrow<EventId>`.
        let id: &EventId = &self.0.meta.event_id;
        id.hash(state);
    }
}

impl Borrow<EventId> for ById {
    fn borrow(&self) -> &EventId {
        &self.0.meta.event_id
    }
}

/// Whether `event` is (still) this very candidate of the map.
pub(crate) fn is_live(by_id: &HashSet<ById>, event: &Arc<StickyEvent>) -> bool {
    by_id
        .get(&*event.meta.event_id)
        .is_some_and(|entry| Arc::ptr_eq(&entry.0, event))
}

/// The candidates of one scope (a room, or a sender in a room), lowest rank first, for the
/// caps. Deletion is lazy: removed candidates stay until they surface at the top, or until the
/// heap is rebuilt because garbage outgrew the live entries.
#[derive(Debug, Default)]
pub(crate) struct RankHeap {
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl RankHeap {
    pub(crate) fn push(&mut self, event: &Arc<StickyEvent>) {
        self.heap.push(Reverse(Ranked::new(event)));
    }

    /// The lowest-ranked live candidate, dropping dead entries on the way.
    pub(crate) fn lowest(&mut self, by_id: &HashSet<ById>) -> Option<&Arc<StickyEvent>> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if is_live(by_id, &top.event) {
                break;
            }
            self.heap.pop();
        }
        self.heap.peek().map(|Reverse(top)| &top.event)
    }

    /// Rebuild from `live` when dead entries outnumber the `count` live ones (plus slack).
    /// A heap of exactly these (live) events.
    pub(crate) fn from_events<'a>(live: impl Iterator<Item = &'a Arc<StickyEvent>>) -> Self {
        Self {
            heap: live.map(|event| Reverse(Ranked::new(event))).collect(),
        }
    }

    /// Whether dead entries outnumber the `count` live ones (plus slack): then rebuild it with
    /// [`RankHeap::from_events`].
    pub(crate) fn needs_compaction(&self, count: usize) -> bool {
        self.heap.len() > 2 * count + 16
    }
}
