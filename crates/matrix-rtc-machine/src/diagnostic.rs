//! Why something did not count: [`Diagnostic`].
use matrix_sticky_events::Rejection;
use ruma_common::{OwnedEventId, OwnedRoomId, OwnedUserId};

use crate::RedactionRefusal;

/// Which cap dropped something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Cap {
    /// The sticky map's caps (per sender, or per room where the sender using the most is cut
    /// first).
    StickyMap,
    /// Parked envelopes per (room, sender).
    ParkedPerSender,
    /// Parked envelopes per room (the sender holding the most loses one).
    ParkedPerRoom,
    /// Parked envelopes in all (the room holding the most loses one).
    ParkedTotal,
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::StickyMap => "the sticky map's caps",
            Self::ParkedPerSender => "the parked envelopes per sender",
            Self::ParkedPerRoom => "the parked envelopes per room",
            Self::ParkedTotal => "the parked envelopes in all",
        })
    }
}

/// Why an event did not count, or what was dropped: visible to the app, never fatal.
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
    /// A part of a side-connection response could not be read (a room, or the envelope);
    /// the rest of the response counted.
    MalformedBatch {
        /// The room key as sent, when the defect is about one room.
        room: Option<String>,
        /// What was wrong.
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
    /// An `m.room.redaction` of a membership did not count: its sender did not send the
    /// redacted event and lacks the power to redact another's (`docs/protocol.md` §4.3).
    RedactionRefused {
        /// Room.
        room_id: OwnedRoomId,
        /// The `m.room.redaction` event.
        redaction: OwnedEventId,
        /// Its sender.
        redactor: OwnedUserId,
        /// The event it would have redacted.
        redacts: OwnedEventId,
        /// That event's sender.
        sender: OwnedUserId,
        /// Why it did not count.
        reason: RedactionRefusal,
    },
    /// A cap dropped events of this sender (reported at the 1st, 10th, 100th, … drop per
    /// room, sender and cap, so a flood costs a handful of diagnostics).
    Capped {
        /// Room.
        room_id: OwnedRoomId,
        /// The sender whose events were dropped.
        sender: OwnedUserId,
        /// Which cap.
        cap: Cap,
        /// Drops of this sender under this cap so far.
        dropped: u64,
    },
}

impl Diagnostic {
    /// The event this diagnostic is about, when it had a readable ID.
    pub fn event_id(&self) -> Option<&OwnedEventId> {
        match self {
            Self::Sticky { event_id, .. } => event_id.as_ref(),
            Self::Membership(diagnostic) => diagnostic.event_id.as_ref(),
            Self::AwaitingRoomKey { event_id, .. } => Some(event_id),
            Self::RedactionRefused { redaction, .. } => Some(redaction),
            Self::MalformedBatch { .. } | Self::Capped { .. } => None,
        }
    }
}
