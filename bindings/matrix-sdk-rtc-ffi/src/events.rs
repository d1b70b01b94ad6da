//! Events across rooms: calls starting and ending, membership changes, diagnostics.
use matrix_sdk_rtc as rtc;

use crate::Participant;

/// A call (one slot of one room) started or ended.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum CallEvent {
    /// The first participant appeared.
    Started {
        /// Room of the call.
        room_id: String,
        /// Slot of the call.
        slot_id: String,
    },
    /// The last participant left.
    Ended {
        /// Room of the call.
        room_id: String,
        /// Slot of the call.
        slot_id: String,
    },
}

impl CallEvent {
    /// The mirror of `event`; `None` for a kind this version does not know.
    pub(crate) fn convert(event: rtc::CallEvent) -> Option<Self> {
        match event {
            rtc::CallEvent::Started { room_id, slot_id } => Some(Self::Started {
                room_id: room_id.to_string(),
                slot_id,
            }),
            rtc::CallEvent::Ended { room_id, slot_id } => Some(Self::Ended {
                room_id: room_id.to_string(),
                slot_id,
            }),
            _ => None,
        }
    }
}

/// Why a participant left a call.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum LeftReason {
    /// An explicit leave (another client's delayed leave looks the same).
    LeaveEvent,
    /// Our own delayed leave, fired by the server (the dead-man switch).
    DelayedLeaveFired,
    /// The membership expired without a refresh.
    Expired,
    /// The membership event was redacted.
    Redacted,
    /// The member left the room.
    SenderLeftRoom,
    /// The member is now ignored.
    SenderIgnored,
    /// Dropped to stay within memory caps.
    Evicted,
    /// We left the room.
    RoomForgotten,
    /// Another membership of the same device took its place.
    Superseded,
    /// Its event was replaced by content that is not a valid membership.
    Rejected {
        /// Why that content was rejected.
        reason: String,
    },
    /// The slot was closed.
    SlotClosed,
    /// A reason this version of the bindings does not know.
    Other {
        /// Its debug description.
        description: String,
    },
}

impl From<rtc::LeftReason> for LeftReason {
    fn from(reason: rtc::LeftReason) -> Self {
        match reason {
            rtc::LeftReason::LeaveEvent => Self::LeaveEvent,
            rtc::LeftReason::DelayedLeaveFired => Self::DelayedLeaveFired,
            rtc::LeftReason::Expired => Self::Expired,
            rtc::LeftReason::Redacted => Self::Redacted,
            rtc::LeftReason::SenderLeftRoom => Self::SenderLeftRoom,
            rtc::LeftReason::SenderIgnored => Self::SenderIgnored,
            rtc::LeftReason::Evicted => Self::Evicted,
            rtc::LeftReason::RoomForgotten => Self::RoomForgotten,
            rtc::LeftReason::Superseded => Self::Superseded,
            rtc::LeftReason::Rejected(reason) => Self::Rejected {
                reason: reason.to_string(),
            },
            rtc::LeftReason::SlotClosed => Self::SlotClosed,
            other => Self::Other {
                description: format!("{other:?}"),
            },
        }
    }
}

/// One change of the calls and their participants, across rooms.
// uniffi lowers enums into a byte buffer by value and has no `Box` for records: the size of
// the Rust value only matters for the instant of the conversion.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SessionChange {
    /// A call got its first participant.
    SessionStarted {
        /// Room of the call.
        room_id: String,
        /// Slot of the call.
        slot_id: String,
    },
    /// A participant joined.
    Joined {
        /// Who.
        participant: Participant,
    },
    /// A participant refreshed or changed its membership.
    Updated {
        /// Before.
        old: Participant,
        /// After.
        new: Participant,
    },
    /// A participant left.
    Left {
        /// Who.
        participant: Participant,
        /// Why.
        reason: LeftReason,
    },
    /// A call lost its last participant.
    SessionEnded {
        /// Room of the call.
        room_id: String,
        /// Slot of the call.
        slot_id: String,
    },
}

impl SessionChange {
    /// The mirror of `change`; `None` for a kind this version does not know.
    pub(crate) fn convert(change: rtc::SessionChange) -> Option<Self> {
        Some(match change {
            rtc::SessionChange::SessionStarted { room_id, slot_id } => Self::SessionStarted {
                room_id: room_id.to_string(),
                slot_id,
            },
            rtc::SessionChange::Joined(participant) => Self::Joined {
                participant: participant.into(),
            },
            rtc::SessionChange::Updated { old, new } => Self::Updated {
                old: old.into(),
                new: new.into(),
            },
            rtc::SessionChange::Left {
                participant,
                reason,
            } => Self::Left {
                participant: participant.into(),
                reason: reason.into(),
            },
            rtc::SessionChange::SessionEnded { room_id, slot_id } => Self::SessionEnded {
                room_id: room_id.to_string(),
                slot_id,
            },
            _ => return None,
        })
    }
}

/// Which layer rejected an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum DiagnosticKind {
    /// The sticky-event layer (malformed, or not sticky).
    Sticky,
    /// The membership model (an invalid, ignored or flagged membership).
    Membership,
    /// Encryption: an encrypted membership waits for its room key (it counts once the key
    /// arrives).
    AwaitingRoomKey,
    /// A layer this version of the bindings does not know.
    Other,
}

/// An event that did not count (or counts with a flag), and why: for debugging, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Diagnostic {
    /// Which layer rejected it.
    pub kind: DiagnosticKind,
    /// Room it arrived in.
    pub room_id: String,
    /// The event, when it had a readable ID.
    pub event_id: Option<String>,
    /// Its sender, when known.
    pub sender: Option<String>,
    /// Why, in words.
    pub reason: String,
}

impl From<rtc::Diagnostic> for Diagnostic {
    fn from(diagnostic: rtc::Diagnostic) -> Self {
        let event_id = diagnostic.event_id().map(ToString::to_string);
        match diagnostic {
            rtc::Diagnostic::Sticky {
                room_id, rejection, ..
            } => Self {
                kind: DiagnosticKind::Sticky,
                room_id: room_id.to_string(),
                event_id,
                sender: None,
                reason: rejection.to_string(),
            },
            rtc::Diagnostic::Membership(membership) => Self {
                kind: DiagnosticKind::Membership,
                room_id: membership.room_id.to_string(),
                event_id,
                sender: membership.sender.as_ref().map(ToString::to_string),
                reason: membership.reason.to_string(),
            },
            rtc::Diagnostic::AwaitingRoomKey {
                room_id, sender, ..
            } => Self {
                kind: DiagnosticKind::AwaitingRoomKey,
                room_id: room_id.to_string(),
                event_id,
                sender: Some(sender.to_string()),
                reason: "waiting for the room key to decrypt it".to_owned(),
            },
            other => Self {
                kind: DiagnosticKind::Other,
                room_id: String::new(),
                event_id,
                sender: None,
                reason: format!("{other:?}"),
            },
        }
    }
}
