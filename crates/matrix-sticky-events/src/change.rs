//! Changes reported by every map operation.
use std::sync::Arc;

use crate::StickyEvent;

/// Why an entry left the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalReason {
    /// Its deadline passed and no live candidate was left.
    Expired,
    /// It was redacted: the entry of its key is removed (the redacted event stays as a
    /// tombstone until its own deadline, so no older candidate comes back), or the unkeyed entry
    /// is gone.
    Redacted,
    /// A key-only (deletion) event won.
    Deleted,
    /// Evicted by the memory caps.
    Evicted,
    /// The room was forgotten.
    RoomForgotten,
}

/// One visible change of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A key (or an unkeyed entry) appeared.
    Added(Arc<StickyEvent>),
    /// A key's visible value changed.
    Replaced {
        /// The previous winner.
        old: Arc<StickyEvent>,
        /// The new winner.
        new: Arc<StickyEvent>,
    },
    /// A key (or an unkeyed entry) disappeared.
    Removed {
        /// The entry that was visible.
        old: Arc<StickyEvent>,
        /// Why.
        reason: RemovalReason,
    },
}

impl Change {
    /// The event this change brings in (`Added`, `Replaced`) or takes out (`Removed`).
    pub fn event(&self) -> &Arc<StickyEvent> {
        match self {
            Self::Added(event)
            | Self::Replaced { new: event, .. }
            | Self::Removed { old: event, .. } => event,
        }
    }
}
