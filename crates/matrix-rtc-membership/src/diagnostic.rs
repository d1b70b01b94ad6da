//! Why an event did not count (or counts with a flag): for debugging, visible to the app.
use ruma_common::{OwnedEventId, OwnedRoomId, OwnedUserId};

/// Why a membership event was rejected, ignored or flagged.
///
/// Each variant names the rule of `docs/protocol.md` §5.5/§5.8 that the event broke. Most hide
/// the member ([`RejectReason::hides_member`]); [`RejectReason::DeviceMismatch`] and
/// [`RejectReason::TransportsInvalid`] only flag it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The content is not a JSON object (a string, an array, `null`, ...).
    #[error("content is not an object")]
    ContentNotObject,
    /// The content is an object that cannot be read (e.g. a duplicated field).
    #[error("content is malformed")]
    ContentMalformed,
    /// A sticky member event without a sticky key (format A/B events must be keyed).
    #[error("sticky member event without a sticky key")]
    MissingStickyKey,
    /// `application` is not an object with a string `type`.
    #[error("application is not an object with a string type")]
    ApplicationInvalid,
    /// A format A join without `application`.
    #[error("join without application")]
    ApplicationMissing,
    /// A join without `member`.
    #[error("member is missing")]
    MemberMissing,
    /// `member` is not an object, or one of its fields has the wrong type.
    #[error("member is not a valid object")]
    MemberInvalid,
    /// `member.id` is missing.
    #[error("member.id is missing")]
    MemberIdMissing,
    /// Rule 2: `member.id` differs from the sticky key.
    #[error("member.id differs from the sticky key")]
    StickyKeyMismatch,
    /// Rule 3: the claimed user (`member.user_id` / `member.claimed_user_id`) is not the
    /// sender.
    #[error("claimed user is not the sender")]
    UserClaimMismatch,
    /// Rule 6: `member.membership` is neither `join` nor `leave`.
    #[error("unknown member.membership value")]
    MembershipUnknown,
    /// `slot_id` is missing or not a string.
    #[error("slot_id is missing or not a string")]
    SlotIdInvalid,
    /// Rule 4: `slot_id` does not start with `application.type + "#"`.
    #[error("slot_id does not match the application type")]
    SlotApplicationMismatch,
    /// The device is neither claimed nor known from decryption.
    #[error("the member's device is unknown")]
    DeviceMissing,
    /// The device that encrypted the event differs from the claimed device. The member is
    /// kept, flagged [`suspicious`](crate::Participant::suspicious).
    #[error("claimed device differs from the device that encrypted the event")]
    DeviceMismatch,
    /// `transports` is not an object with a `published` array (or `rtc_transports` is not an
    /// array). The member is kept, without those transports.
    #[error("transports are malformed")]
    TransportsInvalid,
    /// Rule 5: a plaintext join in an encrypted room never counts.
    #[error("plaintext join in an encrypted room")]
    PlaintextJoinInEncryptedRoom,
    /// Rule 8: the sender is not joined to the room. The membership is kept and shows again
    /// if the sender rejoins while it is live.
    #[error("sender is not joined to the room")]
    SenderNotJoined,
    /// Rule 9: the sender is ignored. The membership is kept and shows again if the sender
    /// is unignored while it is live.
    #[error("sender is ignored")]
    SenderIgnored,
    /// Rule 6: the slot of a format A membership is explicitly closed.
    #[error("slot is closed")]
    SlotClosed,
    /// A legacy field has the wrong type (or a required one is missing).
    #[error("legacy field `{0}` is missing or has the wrong type")]
    LegacyFieldInvalid(&'static str),
    /// Rule 7: a legacy membership whose `created + expires` has passed.
    #[error("legacy membership has expired")]
    LegacyExpired,
    /// Format D (a per-user `memberships` array) is ignored.
    #[error("per-user memberships array (format D) is ignored")]
    PerUserMembershipsIgnored,
    /// The state event itself is malformed (missing or invalid `sender`, `event_id`,
    /// `state_key`, `type` or `content`).
    #[error("state event is malformed: {0}")]
    MalformedStateEvent(&'static str),
}

impl RejectReason {
    /// Whether the event does not count as a membership because of this. `false` for
    /// reasons that only flag an otherwise valid membership.
    pub fn hides_member(&self) -> bool {
        !matches!(self, Self::DeviceMismatch | Self::TransportsInvalid)
    }
}

/// One rejected, ignored or flagged membership event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnostic {
    /// Room of the event.
    pub room_id: OwnedRoomId,
    /// The event, when it had a valid ID.
    pub event_id: Option<OwnedEventId>,
    /// Its sender, when it had a valid one.
    pub sender: Option<OwnedUserId>,
    /// What was wrong.
    pub reason: RejectReason,
}

/// A request for the current room membership of a sender the model knows nothing about.
///
/// Memberships of such a sender stay hidden (rule 8) until the driver answers with
/// [`RtcMembership::handle_room_member`](crate::RtcMembership::handle_room_member).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct MemberQuery {
    /// The room.
    pub room_id: OwnedRoomId,
    /// The sender whose membership is unknown.
    pub user_id: OwnedUserId,
}
