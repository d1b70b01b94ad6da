//! Events published across rooms: calls that start and end, and diagnostics.
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use matrix_sticky_events::Rejection;

/// A call (one slot of one room) started or ended: its participant list went from empty to
/// non-empty or back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEvent {
    /// The first participant appeared.
    Started {
        /// Room of the call.
        room_id: OwnedRoomId,
        /// Slot of the call.
        slot_id: String,
    },
    /// The last participant left.
    Ended {
        /// Room of the call.
        room_id: OwnedRoomId,
        /// Slot of the call.
        slot_id: String,
    },
}

/// Why an event did not count, for debugging: visible to the app, never fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Diagnostic {
    /// A sticky event was rejected by the sticky-event layer (malformed or not sticky).
    Sticky {
        /// Room it arrived in.
        room_id: OwnedRoomId,
        /// The event, when it had a readable ID.
        event_id: Option<OwnedEventId>,
        /// Why it was rejected.
        rejection: Rejection,
    },
    /// A membership event was rejected, ignored or flagged by the membership model.
    Membership(matrix_rtc_membership::Diagnostic),
    /// An encrypted sticky event could not be decrypted yet: its room key has not arrived.
    /// It is kept, and enters the call with its original timing once the key arrives (or is
    /// dropped when it expires first). Reported once per event.
    AwaitingRoomKey {
        /// Room it arrived in.
        room_id: OwnedRoomId,
        /// The encrypted event.
        event_id: OwnedEventId,
        /// Its sender.
        sender: OwnedUserId,
    },
}

impl Diagnostic {
    /// The event this diagnostic is about, when it had a readable ID.
    pub fn event_id(&self) -> Option<&OwnedEventId> {
        match self {
            Self::Sticky { event_id, .. } => event_id.as_ref(),
            Self::Membership(diagnostic) => diagnostic.event_id.as_ref(),
            Self::AwaitingRoomKey { event_id, .. } => Some(event_id),
        }
    }
}
