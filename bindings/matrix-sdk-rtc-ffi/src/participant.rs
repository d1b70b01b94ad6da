//! Participants and the diffs of a participant list.
use std::sync::Arc;

use eyeball_im::VectorDiff;
use matrix_rtc_membership::MembershipFormat;
use matrix_sdk_rtc as rtc;

/// One device taking part in a call: a valid, visible membership.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Participant {
    /// Room of the call.
    pub room_id: String,
    /// Slot of the call (`{application}#{name}`, `m.call#ROOM` for the room call).
    pub slot_id: String,
    /// The member's user (always the event's sender).
    pub user_id: String,
    /// The member's device.
    pub device_id: String,
    /// The membership ID: opaque, compare it, never parse it.
    pub member_id: String,
    /// When the membership started, in ms since the Unix epoch (stable across refreshes).
    pub created_ts: u64,
    /// The event currently carrying the membership (changes at every refresh).
    pub event_id: String,
    /// The wire format it was read from: `msc4143`, `js-sdk` or `legacy-state`.
    pub format: String,
    /// The LiveKit service URL the member publishes on (its first supported transport), if
    /// any.
    pub transport_service_url: Option<String>,
    /// The member's LiveKit participant identity.
    pub livekit_identity: String,
    /// The kind of call the member asked for, when given.
    pub call_intent: Option<CallIntent>,
    /// When the membership stops counting unless refreshed, in ms since the Unix epoch.
    pub expires_ts: u64,
    /// The device that encrypted the event differs from the claimed device: do not trust
    /// this membership for key exchange.
    pub suspicious: bool,
}

impl From<&rtc::Participant> for Participant {
    fn from(participant: &rtc::Participant) -> Self {
        let transport_service_url = match participant.own_transport() {
            Some(rtc::Transport::LiveKit { service_url, .. }) => Some(service_url.clone()),
            _ => None,
        };
        let format = match participant.format {
            MembershipFormat::Msc4143 => "msc4143",
            MembershipFormat::JsSdk => "js-sdk",
            MembershipFormat::LegacyState => "legacy-state",
            _ => "unknown",
        };
        Self {
            room_id: participant.room_id.to_string(),
            slot_id: participant.slot_id.clone(),
            user_id: participant.user_id.to_string(),
            device_id: participant.device_id.to_string(),
            member_id: participant.member_id.clone(),
            created_ts: participant.created_ts,
            event_id: participant.event_id.to_string(),
            format: format.to_owned(),
            transport_service_url,
            livekit_identity: participant.livekit_identity.clone(),
            call_intent: participant.call_intent.clone().map(Into::into),
            expires_ts: participant.expires_wall_ms,
            suspicious: participant.suspicious,
        }
    }
}

impl From<Arc<rtc::Participant>> for Participant {
    fn from(participant: Arc<rtc::Participant>) -> Self {
        Self::from(&*participant)
    }
}

/// The kind of call a member asks for (`m.call.intent`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum CallIntent {
    /// An audio call.
    Audio,
    /// A video call.
    Video,
    /// Another value.
    Other {
        /// The value as sent.
        value: String,
    },
}

impl From<rtc::CallIntent> for CallIntent {
    fn from(intent: rtc::CallIntent) -> Self {
        match intent {
            rtc::CallIntent::Audio => Self::Audio,
            rtc::CallIntent::Video => Self::Video,
            other => Self::Other {
                value: other.as_str().to_owned(),
            },
        }
    }
}

impl From<CallIntent> for rtc::CallIntent {
    fn from(intent: CallIntent) -> Self {
        match intent {
            CallIntent::Audio => Self::Audio,
            CallIntent::Video => Self::Video,
            CallIntent::Other { value } => Self::Other(value),
        }
    }
}

/// One change of a participant list, as the list of a `VectorDiff` (indices are positions in
/// the list before the change is applied). A subscription starts with one `Reset`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ParticipantsDiff {
    /// Add these at the end.
    Append {
        /// The new participants.
        values: Vec<Participant>,
    },
    /// Remove everyone.
    Clear,
    /// Add one at the front.
    PushFront {
        /// The new participant.
        value: Participant,
    },
    /// Add one at the end.
    PushBack {
        /// The new participant.
        value: Participant,
    },
    /// Remove the first one.
    PopFront,
    /// Remove the last one.
    PopBack,
    /// Insert one at `index`.
    Insert {
        /// Where.
        index: u32,
        /// The new participant.
        value: Participant,
    },
    /// Replace the one at `index`.
    Set {
        /// Where.
        index: u32,
        /// Its new value.
        value: Participant,
    },
    /// Remove the one at `index`.
    Remove {
        /// Where.
        index: u32,
    },
    /// Keep only the first `length`.
    Truncate {
        /// How many to keep.
        length: u32,
    },
    /// Replace the whole list.
    Reset {
        /// The whole list.
        values: Vec<Participant>,
    },
}

/// A list index as `u32` (a participant list never comes near `u32::MAX` entries).
fn index(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl From<VectorDiff<Arc<rtc::Participant>>> for ParticipantsDiff {
    fn from(diff: VectorDiff<Arc<rtc::Participant>>) -> Self {
        let list = |values: eyeball_im::Vector<Arc<rtc::Participant>>| {
            values.into_iter().map(Into::into).collect()
        };
        match diff {
            VectorDiff::Append { values } => Self::Append {
                values: list(values),
            },
            VectorDiff::Clear => Self::Clear,
            VectorDiff::PushFront { value } => Self::PushFront {
                value: value.into(),
            },
            VectorDiff::PushBack { value } => Self::PushBack {
                value: value.into(),
            },
            VectorDiff::PopFront => Self::PopFront,
            VectorDiff::PopBack => Self::PopBack,
            VectorDiff::Insert { index: at, value } => Self::Insert {
                index: index(at),
                value: value.into(),
            },
            VectorDiff::Set { index: at, value } => Self::Set {
                index: index(at),
                value: value.into(),
            },
            VectorDiff::Remove { index: at } => Self::Remove { index: index(at) },
            VectorDiff::Truncate { length } => Self::Truncate {
                length: index(length),
            },
            VectorDiff::Reset { values } => Self::Reset {
                values: list(values),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use eyeball_im::{Vector, VectorDiff};
    use matrix_sdk_rtc as rtc;

    use super::{CallIntent, ParticipantsDiff, index};

    type Diff = VectorDiff<Arc<rtc::Participant>>;

    #[test]
    fn diffs_without_values_keep_their_positions() {
        let cases: [(Diff, ParticipantsDiff); 6] = [
            (VectorDiff::Clear, ParticipantsDiff::Clear),
            (VectorDiff::PopFront, ParticipantsDiff::PopFront),
            (VectorDiff::PopBack, ParticipantsDiff::PopBack),
            (
                VectorDiff::Remove { index: 3 },
                ParticipantsDiff::Remove { index: 3 },
            ),
            (
                VectorDiff::Truncate { length: 2 },
                ParticipantsDiff::Truncate { length: 2 },
            ),
            (
                VectorDiff::Reset {
                    values: Vector::new(),
                },
                ParticipantsDiff::Reset { values: Vec::new() },
            ),
        ];
        for (diff, expected) in cases {
            assert_eq!(ParticipantsDiff::from(diff), expected);
        }
        assert_eq!(index(usize::MAX), u32::MAX);
    }

    #[test]
    fn call_intents_round_trip() {
        for intent in [
            CallIntent::Audio,
            CallIntent::Video,
            CallIntent::Other {
                value: "screen-share".to_owned(),
            },
        ] {
            assert_eq!(
                CallIntent::from(rtc::CallIntent::from(intent.clone())),
                intent
            );
        }
    }
}
