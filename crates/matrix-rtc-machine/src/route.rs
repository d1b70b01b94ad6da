//! Where a raw room event goes, read from its top level only.
use ruma_common::{OwnedEventId, OwnedUserId};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::wire;

/// What a raw room event is, by its `type` and whether it has a `state_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventRoute {
    /// A sticky event (or its redacted copy, an encrypted envelope, or an
    /// `m.room.redaction`): the sticky map.
    Sticky,
    /// A legacy call member (or `m.rtc.slot`) state event: the membership model.
    CallState,
    /// An `m.room.member` state event: a sender's room membership.
    RoomMember,
    /// An `m.room.encryption` state event: the room is encrypted from now on.
    Encryption,
    /// An `m.room.power_levels` state event: who may redact others' memberships.
    PowerLevels,
    /// Nothing for us.
    Ignore,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Option<&'a str>,
    #[serde(borrow)]
    state_key: Option<&'a RawValue>,
}

impl EventRoute {
    /// Looks at the top level of a raw event. A malformed event goes to the sticky map, which
    /// reports why it is malformed.
    ///
    /// The pump may use this to skip events the machine would ignore anyway.
    ///
    /// ```
    /// use matrix_rtc_machine::EventRoute;
    ///
    /// let join = r#"{"type":"org.matrix.msc4143.rtc.member","content":{}}"#;
    /// assert_eq!(EventRoute::of(join), EventRoute::Sticky);
    /// let message = r#"{"type":"m.room.message","content":{}}"#;
    /// assert_eq!(EventRoute::of(message), EventRoute::Ignore);
    /// ```
    pub fn of(raw: &str) -> Self {
        let Ok(peek) = serde_json::from_str::<Peek<'_>>(raw) else {
            return Self::Sticky;
        };
        match (peek.event_type, peek.state_key.is_some()) {
            (Some(t), true) if wire::is_call_state_type(t) => Self::CallState,
            (Some(wire::ROOM_MEMBER), true) => Self::RoomMember,
            (Some(wire::ROOM_ENCRYPTION), true) => Self::Encryption,
            (Some(wire::ROOM_POWER_LEVELS), true) => Self::PowerLevels,
            (Some(t), false) if wire::is_sticky_candidate_type(t) => Self::Sticky,
            _ => Self::Ignore,
        }
    }
}

/// The `event_id` of a raw event, if it has a valid one (for diagnostics).
pub(crate) fn peek_event_id(raw: &str) -> Option<OwnedEventId> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        event_id: Option<&'a str>,
    }
    let id = serde_json::from_str::<Id<'_>>(raw).ok()?.event_id?;
    OwnedEventId::try_from(id).ok()
}

/// An `m.room.member` state event: whose membership, and whether it is `join`.
pub(crate) fn room_member(raw: &str) -> Option<(OwnedUserId, bool)> {
    #[derive(Deserialize)]
    struct Member<'a> {
        state_key: &'a str,
        #[serde(borrow)]
        content: MemberContent<'a>,
    }
    #[derive(Deserialize)]
    struct MemberContent<'a> {
        membership: Option<&'a str>,
    }
    let member = serde_json::from_str::<Member<'_>>(raw).ok()?;
    let user_id = OwnedUserId::try_from(member.state_key).ok()?;
    Some((
        user_id,
        member.content.membership == Some(wire::MEMBERSHIP_JOIN),
    ))
}
