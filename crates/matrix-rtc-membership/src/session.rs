//! Sessions per `(room, slot)` and the changes the model reports.
use std::{collections::HashSet, sync::Arc};

use ruma_common::{OwnedRoomId, RoomId, UserId};

use crate::{CallIntent, FocusSelection, Participant, RejectReason, Transport, model::slot::Slot};

/// Longest `leave_reason.code` kept in [`LeftReason::OtherLeaveCode`], in bytes: the code is a
/// peer's string, so its size is bounded like every other input.
pub const MAX_LEAVE_CODE_LEN: usize = 64;

/// Why a participant left a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeftReason {
    /// An explicit leave: sticky content without `application` (js-sdk), a format A
    /// `membership: "leave"`, a key-only deletion, or empty legacy content `{}`.
    LeaveEvent,
    /// A delayed leave fired by the server (the dead-man switch): a leave whose `unsigned`
    /// carries the delay ID (only the sender sees it), or a format A leave with
    /// `leave_reason.code == "delayed_leave"`. Other clients' delayed leaves look like
    /// [`LeftReason::LeaveEvent`]: js-sdk's explicit and delayed leaves are identical.
    DelayedLeaveFired,
    /// The sticky event expired, or a legacy membership's `created + expires` passed.
    Expired,
    /// The membership event was redacted.
    Redacted,
    /// The sender is no longer joined to the room.
    SenderLeftRoom,
    /// The sender is now ignored.
    SenderIgnored,
    /// The sticky map evicted the event to stay within its memory caps.
    Evicted,
    /// The room was forgotten (we left it).
    RoomForgotten,
    /// Another membership of the same device took its place: a sticky membership hid a
    /// legacy one with another member ID, or the event moved to another slot or member ID.
    Superseded,
    /// Its event was replaced by content that is not a valid membership.
    Rejected(RejectReason),
    /// Format A only: the slot was closed (`leave_reason.code == "slot_closed"`, or the
    /// slot's state event says `closed`).
    SlotClosed,
    /// Format A only: an explicit leave whose `leave_reason.code` is none of the generic codes
    /// (`leave`, `delayed_leave`, `slot_closed`), for instance an application's own. The code
    /// is kept as sent when it is 1 to [`MAX_LEAVE_CODE_LEN`](crate::MAX_LEAVE_CODE_LEN)
    /// bytes long; a longer, empty or non-string code reads as [`LeftReason::LeaveEvent`].
    OtherLeaveCode(String),
}

/// One change of the sessions and their participants.
///
/// For each input, changes come in this order per device: `SessionStarted` (when the slot
/// had no participant), `Left`, `Updated`, `Joined`, then `SessionEnded` (when the slot has
/// none left).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionChange {
    /// The slot got its first participant: a session started.
    SessionStarted {
        /// Room.
        room_id: OwnedRoomId,
        /// Slot.
        slot_id: String,
    },
    /// A participant joined.
    Joined(Arc<Participant>),
    /// A participant's membership changed (a refresh, a new transport, ...). The ordering
    /// key may change when `created_ts` does.
    Updated {
        /// Before.
        old: Arc<Participant>,
        /// After.
        new: Arc<Participant>,
    },
    /// A participant left.
    Left {
        /// The participant as it was.
        participant: Arc<Participant>,
        /// Why.
        reason: LeftReason,
    },
    /// The slot has no participant left: the session ended.
    SessionEnded {
        /// Room.
        room_id: OwnedRoomId,
        /// Slot.
        slot_id: String,
    },
}

/// A live session: the participants of one `(room, slot)`, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    pub(crate) room_id: &'a RoomId,
    pub(crate) slot_id: &'a str,
    pub(crate) slot: &'a Slot,
}

impl<'a> Session<'a> {
    /// The room.
    pub fn room_id(&self) -> &'a RoomId {
        self.room_id
    }

    /// The slot ID.
    pub fn slot_id(&self) -> &'a str {
        self.slot_id
    }

    /// Number of participants (devices).
    pub fn len(&self) -> usize {
        self.slot.roster.order.len()
    }

    /// Whether the session has no participant (never true for a session returned by the
    /// model; provided for completeness).
    pub fn is_empty(&self) -> bool {
        self.slot.roster.order.is_empty()
    }

    /// The participants, oldest first (ties by user ID, device ID, member ID).
    pub fn participants(&self) -> impl DoubleEndedIterator<Item = &'a Participant> + 'a {
        self.slot.roster.iter()
    }

    /// The oldest participant.
    pub fn oldest(&self) -> Option<&'a Participant> {
        self.slot
            .roster
            .order
            .first()
            .map(|participant| &*participant.0)
    }

    /// The distinct users taking part, in the order of their oldest device (a per-user
    /// view; costs O(participants)).
    pub fn users(&self) -> impl Iterator<Item = &'a UserId> + 'a {
        let mut seen = HashSet::new();
        self.participants()
            .map(|participant| &*participant.user_id)
            .filter(move |user_id| seen.insert(*user_id))
    }

    /// The call intent every participant agrees on: `Some` only when all participants give
    /// the same `m.call.intent`.
    pub fn call_intent(&self) -> Option<&'a CallIntent> {
        self.slot.roster.consensus_intent()
    }

    /// The transport to subscribe to for `participant`'s media (`docs/protocol.md` §5.10):
    /// its own transport, except for legacy members in `oldest_membership` mode, who all
    /// use the transport of the oldest participant that publishes a supported one.
    pub fn transport_for(&self, participant: &'a Participant) -> Option<&'a Transport> {
        match participant.focus_selection {
            Some(FocusSelection::OldestMembership) => self.oldest_transport(),
            _ => participant.own_transport(),
        }
    }

    /// The transport of the oldest participant that publishes a supported one: where a
    /// legacy `oldest_membership` call meets.
    pub fn oldest_transport(&self) -> Option<&'a Transport> {
        self.participants().find_map(Participant::own_transport)
    }
}
