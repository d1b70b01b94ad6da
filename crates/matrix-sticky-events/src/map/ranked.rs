//! Orderings and lookups of shared events, without copying their strings.
use std::{
    borrow::Borrow,
    cmp::Ordering,
    hash::{Hash, Hasher},
    sync::Arc,
};

use ruma_common::EventId;

use crate::StickyEvent;

/// An event ordered by conflict rank: `(origin_server_ts + duration, event ID)`.
#[derive(Debug, Clone)]
pub(crate) struct Ranked(pub(crate) Arc<StickyEvent>);

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
        self.0.meta.cmp_rank(&other.0.meta)
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
