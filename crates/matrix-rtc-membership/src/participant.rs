//! A participant of a session: one valid, visible membership of one device.
use std::{cmp::Ordering, fmt};

use ruma_common::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId};

use crate::{FocusSelection, Transport, field::Truncated, wire};

/// Which wire format a membership was read from (`docs/protocol.md` §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MembershipFormat {
    /// Format A: a sticky `m.rtc.member` in the newest MSC4143 shape (`member.membership`).
    Msc4143,
    /// Format B: a sticky member event in the shape matrix-js-sdk sends (39–42 with
    /// `rtc_transports`, 43 with `transports`).
    JsSdk,
    /// Format C: a legacy per-device `org.matrix.msc3401.call.member` state event.
    LegacyState,
}

impl MembershipFormat {
    /// Whether the membership comes from a sticky event (formats A and B).
    pub fn is_sticky(self) -> bool {
        !matches!(self, Self::LegacyState)
    }
}

/// The kind of call a member asked for (`m.call.intent`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallIntent {
    /// `audio`.
    Audio,
    /// `video`.
    Video,
    /// Another value.
    Other(String),
}

impl CallIntent {
    pub(crate) fn from_wire(value: String) -> Self {
        match value.as_str() {
            wire::INTENT_AUDIO => Self::Audio,
            wire::INTENT_VIDEO => Self::Video,
            _ => Self::Other(value),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Audio => wire::INTENT_AUDIO,
            Self::Video => wire::INTENT_VIDEO,
            Self::Other(value) => value,
        }
    }
}

/// One device taking part in a session: a membership that passed every validity rule of
/// `docs/protocol.md` §5.8 and is currently visible.
///
/// Participants of a slot are keyed by `(user_id, device_id, member_id)` and ordered oldest
/// first by `(created_ts, user_id, device_id, member_id)`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Participant {
    /// Room of the session.
    pub room_id: OwnedRoomId,
    /// Slot of the session (`{application}#{name}`, e.g. `m.call#ROOM`).
    pub slot_id: String,
    /// The member's user: always the event's sender.
    pub user_id: OwnedUserId,
    /// The member's device.
    pub device_id: OwnedDeviceId,
    /// The membership ID (`member.id`; for legacy events `membershipID`, or else
    /// `"{user_id}:{device_id}"`). Opaque: compare it, never parse it.
    pub member_id: String,
    /// When the membership started, in ms since the Unix epoch: for sticky events the
    /// `origin_server_ts` of the first event seen for this member ID while it stayed joined
    /// (stable across refreshes), for legacy events `created_ts` or else `origin_server_ts`.
    pub created_ts: u64,
    /// The event currently carrying the membership (changes at every refresh).
    pub event_id: OwnedEventId,
    /// The wire format it was read from.
    pub format: MembershipFormat,
    /// Every transport the member published, in its order (unknown types included, at most
    /// eight): `transports.published`, or else `rtc_transports`, or for legacy events
    /// `foci_preferred`.
    pub transports: Vec<Transport>,
    /// Legacy events only: how the call picks its SFU.
    pub focus_selection: Option<FocusSelection>,
    /// `m.call.intent`, when given.
    pub call_intent: Option<CallIntent>,
    /// The member's LiveKit participant identity (`docs/protocol.md` §5.11).
    pub livekit_identity: String,
    /// When the membership stops counting unless refreshed, in ms since the Unix epoch:
    /// the sticky expiry for formats A and B, `created + expires` for format C.
    pub expires_wall_ms: u64,
    /// The device that encrypted the event differs from the claimed device
    /// (`docs/protocol.md` §5.8). The membership is kept, but should not be trusted for key
    /// exchange.
    pub suspicious: bool,
}

impl Participant {
    /// The one order of a slot's participants: oldest first, by
    /// `(created_ts, user_id, device_id, member_id)`. Within one slot the tuple is unique (one
    /// participant per member ID and device), so the order is total. Every list of
    /// participants this workspace publishes is sorted by it.
    ///
    /// ```
    /// # use std::cmp::Ordering;
    /// # fn check(older: &matrix_rtc_membership::Participant, newer: &matrix_rtc_membership::Participant) {
    /// assert_eq!(older.cmp_by_age(newer), Ordering::Less);
    /// # }
    /// ```
    pub fn cmp_by_age(&self, other: &Self) -> Ordering {
        self.age_key().cmp(&other.age_key())
    }

    /// The key [`cmp_by_age`](Self::cmp_by_age) compares.
    fn age_key(&self) -> (u64, &str, &str, &str) {
        (
            self.created_ts,
            self.user_id.as_str(),
            self.device_id.as_str(),
            &self.member_id,
        )
    }

    /// Whether both are the same member of a slot: same user, device and member ID (the
    /// event carrying it may differ, e.g. after a refresh).
    pub fn is_same_member(&self, other: &Self) -> bool {
        self.member_id == other.member_id
            && self.device_id == other.device_id
            && self.user_id == other.user_id
    }

    /// The transport this member publishes on: the first supported one it lists
    /// (unknown transport types are never selected). For the transport to *subscribe*
    /// to, which for legacy `oldest_membership` calls is another member's, see
    /// [`Session::transport_for`](crate::Session::transport_for).
    pub fn own_transport(&self) -> Option<&Transport> {
        self.transports
            .iter()
            .find(|transport| transport.is_supported())
    }
}

impl fmt::Debug for Participant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Participant")
            .field("room_id", &self.room_id)
            .field("slot_id", &Truncated(&self.slot_id))
            .field("user_id", &self.user_id)
            .field("device_id", &Truncated(self.device_id.as_str()))
            .field("member_id", &Truncated(&self.member_id))
            .field("created_ts", &self.created_ts)
            .field("event_id", &self.event_id)
            .field("format", &self.format)
            .field("transports", &self.transports)
            .field("focus_selection", &self.focus_selection)
            .field("call_intent", &self.call_intent)
            .field("livekit_identity", &Truncated(&self.livekit_identity))
            .field("expires_wall_ms", &self.expires_wall_ms)
            .field("suspicious", &self.suspicious)
            .finish()
    }
}
