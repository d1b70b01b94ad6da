//! The map's single deadline queue: a min-heap of candidate deadlines with lazy deletion.
//!
//! Removing a candidate early (redaction, eviction, a forgotten room) leaves its entry behind;
//! the map skips entries whose candidate is gone when they surface, and rebuilds the heap from
//! the live candidates when garbage outgrows them, so the heap stays within a constant factor
//! of the live candidates. Expiring `k` candidates costs `O(k log n)`.
use std::{cmp::Ordering, collections::BinaryHeap, sync::Arc, time::Instant};

use crate::StickyEvent;

/// One deadline.
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub(crate) at: Instant,
    pub(crate) event: Arc<StickyEvent>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline first; ties go by
    /// event ID, so expiry order is deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at).then_with(|| {
            other
                .event
                .meta
                .event_id
                .as_bytes()
                .cmp(self.event.meta.event_id.as_bytes())
        })
    }
}

/// The queue.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Due>,
}

impl Deadlines {
    pub(crate) fn push(&mut self, event: Arc<StickyEvent>) {
        self.heap.push(Due {
            at: event.meta.expires_at,
            event,
        });
    }

    pub(crate) fn peek(&self) -> Option<&Due> {
        self.heap.peek()
    }

    pub(crate) fn pop(&mut self) -> Option<Due> {
        self.heap.pop()
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Replace the whole queue with the deadlines of `live`.
    pub(crate) fn rebuild<'a>(&mut self, live: impl Iterator<Item = &'a Arc<StickyEvent>>) {
        let entries: Vec<Due> = live
            .map(|event| Due {
                at: event.meta.expires_at,
                event: Arc::clone(event),
            })
            .collect();
        self.heap = BinaryHeap::from(entries);
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}
