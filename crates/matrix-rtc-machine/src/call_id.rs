//! [`CallId`]: which call (one slot of one room).
use std::fmt;

use matrix_rtc_membership::{Participant, wire};
use ruma_common::{OwnedRoomId, RoomId};

/// One call: a slot (`{application}#{name}`) of one room. The room call that Element Call
/// uses is [`CallId::room_call`] (`m.call#ROOM`).
///
/// ```
/// use matrix_rtc_machine::CallId;
/// use ruma_common::room_id;
///
/// let call = CallId::new(room_id!("!room:example.org"), "m.call#ROOM")?;
/// assert_eq!(call, CallId::room_call(room_id!("!room:example.org")));
/// assert!(CallId::new(room_id!("!room:example.org"), "no-separator").is_err());
/// # Ok::<(), matrix_rtc_machine::InvalidSlotId>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId {
    room_id: OwnedRoomId,
    slot_id: String,
}

/// A slot ID that is not `{application}#{name}` with both parts non-empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid slot id {0:?}: expected `{{application}}#{{name}}`")]
pub struct InvalidSlotId(pub String);

impl CallId {
    /// The call in `slot_id` of `room_id`; the slot must be `{application}#{name}`.
    ///
    /// # Errors
    ///
    /// [`InvalidSlotId`] when `slot_id` has no `#` or an empty part.
    pub fn new(room_id: &RoomId, slot_id: &str) -> Result<Self, InvalidSlotId> {
        let valid = slot_id
            .split_once(wire::SLOT_SEPARATOR)
            .is_some_and(|(application, name)| !application.is_empty() && !name.is_empty());
        if valid {
            Ok(Self::unchecked(room_id, slot_id))
        } else {
            Err(InvalidSlotId(slot_id.to_owned()))
        }
    }

    /// The room call of `room_id` (`m.call#ROOM`).
    pub fn room_call(room_id: &RoomId) -> Self {
        Self::unchecked(room_id, wire::ROOM_CALL_SLOT)
    }

    /// A call id from a slot the membership model accepted (which checks the slot against
    /// the application itself).
    pub(crate) fn unchecked(room_id: &RoomId, slot_id: &str) -> Self {
        Self {
            room_id: room_id.to_owned(),
            slot_id: slot_id.to_owned(),
        }
    }

    /// The call a participant belongs to.
    pub fn of(participant: &Participant) -> Self {
        Self::unchecked(&participant.room_id, &participant.slot_id)
    }

    /// The room.
    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }

    /// The slot (`{application}#{name}`).
    pub fn slot_id(&self) -> &str {
        &self.slot_id
    }

    /// The application part of the slot (`m.call` for `m.call#ROOM`).
    pub fn application(&self) -> &str {
        self.slot_id
            .split_once(wire::SLOT_SEPARATOR)
            .map_or(self.slot_id.as_str(), |(application, _)| application)
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.room_id, self.slot_id)
    }
}
