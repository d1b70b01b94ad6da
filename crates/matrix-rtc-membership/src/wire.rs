//! Wire names and serde shapes of MatrixRTC membership events, in one place.
//!
//! Every event type, content field name and unstable prefix the membership model reads or
//! writes is spelled here and nowhere else. The deserialisation structs are deliberately
//! shallow: each field is captured as raw JSON first, so one field of the wrong type costs
//! only that field, and the model can say which rule an event broke
//! (`docs/protocol.md` §5.5: a malformed event affects only its own key).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::field::map_only;

/// Stable type of the sticky RTC member event (formats A and B).
pub const RTC_MEMBER: &str = "m.rtc.member";
/// Unstable type of the sticky RTC member event; what clients send today.
pub const RTC_MEMBER_UNSTABLE: &str = "org.matrix.msc4143.rtc.member";
/// Stable type of the RTC slot state event (format A, not deployed).
pub const RTC_SLOT: &str = "m.rtc.slot";
/// Unstable type of the RTC slot state event.
pub const RTC_SLOT_UNSTABLE: &str = "org.matrix.msc4143.rtc.slot";
/// Type of the legacy per-device call membership state event (format C, and the ignored
/// per-user format D).
pub const LEGACY_CALL_MEMBER: &str = "org.matrix.msc3401.call.member";

/// Stable sticky key field inside content.
pub const STICKY_KEY: &str = "sticky_key";
/// Unstable sticky key field inside content.
pub const STICKY_KEY_UNSTABLE: &str = "msc4354_sticky_key";

/// Stable name of the delay ID echoed to the sender in `unsigned`.
pub const DELAY_ID: &str = "delay_id";
/// Unstable name of the delay ID echoed to the sender in `unsigned`.
pub const DELAY_ID_UNSTABLE: &str = "org.matrix.msc4140.delay_id";

/// The application type of calls.
pub const CALL_APPLICATION: &str = "m.call";
/// The slot name of a room's call.
pub const ROOM_SLOT_NAME: &str = "ROOM";
/// The slot ID of a room's call (`m.call#ROOM`).
pub const ROOM_CALL_SLOT: &str = "m.call#ROOM";
/// Separator between application type and slot name in a slot ID.
pub const SLOT_SEPARATOR: char = '#';

/// `m.call.intent` value for an audio call.
pub const INTENT_AUDIO: &str = "audio";
/// `m.call.intent` value for a video call.
pub const INTENT_VIDEO: &str = "video";

/// Transport type of LiveKit SFUs.
pub const TRANSPORT_LIVEKIT: &str = "livekit";
/// Legacy `focus_selection` value: everyone uses the oldest member's focus.
pub const FOCUS_OLDEST_MEMBERSHIP: &str = "oldest_membership";
/// Legacy `focus_selection` value: every member publishes on its own focus.
pub const FOCUS_MULTI_SFU: &str = "multi_sfu";
/// Legacy `scope` of room calls.
pub const SCOPE_ROOM: &str = "m.room";

/// Format A `member.membership` value of a join.
pub const MEMBERSHIP_JOIN: &str = "join";
/// Format A `member.membership` value of a leave.
pub const MEMBERSHIP_LEAVE: &str = "leave";
/// Format A `leave_reason.code` of a leave the member chose to send.
pub const LEAVE_CODE_LEAVE: &str = "leave";
/// Format A `leave_reason.code` of a delayed leave fired by the server.
pub const LEAVE_CODE_DELAYED: &str = "delayed_leave";
/// Format A `leave_reason.code` of a slot being closed.
pub const LEAVE_CODE_SLOT_CLOSED: &str = "slot_closed";
/// `m.rtc.slot` `status` of a closed slot.
pub const SLOT_STATUS_CLOSED: &str = "closed";

/// Default lifetime of a legacy membership without `expires`: 4 hours.
pub const LEGACY_DEFAULT_EXPIRES_MS: u64 = 14_400_000;

// ---------------------------------------------------------------------------------------------
// Inbound shapes. Every field is raw JSON: the model converts each one on its own.
// ---------------------------------------------------------------------------------------------

/// Top level of sticky member content (formats A and B).
#[derive(Debug, Deserialize)]
pub(crate) struct StickyContent<'a> {
    #[serde(borrow, default)]
    pub(crate) slot_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) application: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) member: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) transports: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) rtc_transports: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) leave_reason: Option<&'a RawValue>,
}

/// `member` object of sticky member content (A: `id`, `membership`; B: `id`, `user_id`,
/// `device_id`; the MSC draft spells the last two `claimed_user_id` / `claimed_device_id`).
#[derive(Debug, Deserialize)]
pub(crate) struct MemberObject<'a> {
    #[serde(borrow, default)]
    pub(crate) id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) membership: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) claimed_user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) device_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) claimed_device_id: Option<&'a RawValue>,
}

/// `application` object of sticky member content.
#[derive(Debug, Deserialize)]
pub(crate) struct ApplicationObject<'a> {
    #[serde(borrow, rename = "type", default)]
    pub(crate) app_type: Option<&'a RawValue>,
    #[serde(borrow, rename = "m.call.intent", default)]
    pub(crate) call_intent: Option<&'a RawValue>,
}

/// `transports` object (format A, and js-sdk 43's format B).
#[derive(Debug, Deserialize)]
pub(crate) struct TransportsObject<'a> {
    #[serde(borrow, default)]
    pub(crate) published: Option<&'a RawValue>,
}

/// One transport (or legacy focus) object: only the fields we select on.
#[derive(Debug, Deserialize)]
pub(crate) struct TransportObject<'a> {
    #[serde(borrow, rename = "type", default)]
    pub(crate) transport_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) livekit_service_url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) livekit_alias: Option<&'a RawValue>,
}

/// Format A `leave_reason` object.
#[derive(Debug, Deserialize)]
pub(crate) struct LeaveReasonObject<'a> {
    #[serde(borrow, default)]
    pub(crate) code: Option<&'a RawValue>,
}

/// Sticky member content read in one pass, for the common well-formed case. Any field of an
/// unexpected type fails the whole read, and the content is then read field by field with
/// [`StickyContent`] to say exactly what is wrong. Objects are read with [`map_only`] so that
/// an array is never taken for an object.
#[derive(Debug, Deserialize)]
pub(crate) struct FastStickyContent<'a> {
    #[serde(borrow, default)]
    pub(crate) slot_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "map_only")]
    pub(crate) application: Option<FastApplication<'a>>,
    #[serde(borrow, default, deserialize_with = "map_only")]
    pub(crate) member: Option<FastMember<'a>>,
    #[serde(borrow, default, deserialize_with = "map_only")]
    pub(crate) transports: Option<FastTransports<'a>>,
    #[serde(borrow, default)]
    pub(crate) rtc_transports: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    pub(crate) leave_reason: Option<&'a RawValue>,
}

/// `member`, read in one pass.
#[derive(Debug, Deserialize)]
pub(crate) struct FastMember<'a> {
    #[serde(borrow, default)]
    pub(crate) id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) membership: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) claimed_user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) device_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) claimed_device_id: Option<Cow<'a, str>>,
}

/// `application`, read in one pass.
#[derive(Debug, Deserialize)]
pub(crate) struct FastApplication<'a> {
    #[serde(borrow, rename = "type", default)]
    pub(crate) app_type: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "m.call.intent", default)]
    pub(crate) call_intent: Option<&'a RawValue>,
}

/// `transports`, read in one pass.
#[derive(Debug, Deserialize)]
pub(crate) struct FastTransports<'a> {
    #[serde(borrow, default)]
    pub(crate) published: Option<Vec<&'a RawValue>>,
}

/// One transport object, read in one pass.
#[derive(Debug, Deserialize)]
pub(crate) struct FastTransportObject<'a> {
    #[serde(borrow, rename = "type", default)]
    pub(crate) transport_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) livekit_service_url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) livekit_alias: Option<Cow<'a, str>>,
}

/// A state event (the legacy call member and the RTC slot), as the driver hands it over.
#[derive(Debug, Deserialize)]
pub(crate) struct StateEvent<'a> {
    #[serde(borrow, rename = "type", default)]
    pub(crate) event_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) state_key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) sender: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) origin_server_ts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) unsigned: Option<&'a RawValue>,
}

/// The parts of `unsigned` that matter to membership.
#[derive(Debug, Deserialize)]
pub(crate) struct Unsigned<'a> {
    #[serde(borrow, rename = "org.matrix.msc4140.delay_id", default)]
    pub(crate) delay_id_unstable: Option<&'a RawValue>,
    #[serde(borrow, rename = "delay_id", default)]
    pub(crate) delay_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) redacted_because: Option<&'a RawValue>,
}

/// Legacy per-device call membership content (format C), plus the per-user `memberships`
/// array of format D so that it can be recognised.
#[derive(Debug, Deserialize)]
pub(crate) struct LegacyContent<'a> {
    #[serde(borrow, default)]
    pub(crate) application: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) call_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) scope: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) device_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "membershipID", default)]
    pub(crate) membership_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) created_ts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) expires: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) focus_active: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) foci_preferred: Option<&'a RawValue>,
    #[serde(borrow, rename = "m.call.intent", default)]
    pub(crate) call_intent: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) memberships: Option<&'a RawValue>,
}

/// Legacy `focus_active` object.
#[derive(Debug, Deserialize)]
pub(crate) struct FocusActiveObject<'a> {
    #[serde(borrow, rename = "type", default)]
    pub(crate) focus_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) focus_selection: Option<&'a RawValue>,
}

/// `m.rtc.slot` state content: only the status matters to membership.
#[derive(Debug, Deserialize)]
pub(crate) struct SlotContent<'a> {
    #[serde(borrow, default)]
    pub(crate) status: Option<&'a RawValue>,
}

// ---------------------------------------------------------------------------------------------
// Outbound shapes: what today's clients read (docs/protocol.md §5.4 and §5.6).
// ---------------------------------------------------------------------------------------------

/// The js-sdk 43 sticky join content, with both sticky key names and no relation.
#[derive(Debug, Serialize)]
pub(crate) struct StickyJoinOut<'a> {
    pub(crate) slot_id: &'a str,
    pub(crate) application: ApplicationOut<'a>,
    pub(crate) member: MemberOut<'a>,
    pub(crate) transports: TransportsOut<'a>,
    pub(crate) versions: [&'a str; 0],
    pub(crate) msc4354_sticky_key: &'a str,
    pub(crate) sticky_key: &'a str,
}

/// `application` of an outbound join.
#[derive(Debug, Serialize)]
pub(crate) struct ApplicationOut<'a> {
    #[serde(rename = "type")]
    pub(crate) app_type: &'a str,
    #[serde(rename = "m.call.intent", skip_serializing_if = "Option::is_none")]
    pub(crate) call_intent: Option<&'a str>,
}

/// `member` of an outbound join (js-sdk names).
#[derive(Debug, Serialize)]
pub(crate) struct MemberOut<'a> {
    pub(crate) id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) device_id: &'a str,
}

/// `transports` of an outbound join.
#[derive(Debug, Serialize)]
pub(crate) struct TransportsOut<'a> {
    pub(crate) published: [&'a serde_json::Value; 1],
    pub(crate) can_subscribe: &'a [&'a str],
}

/// The js-sdk 43 sticky leave content, plus the stable key.
#[derive(Debug, Serialize)]
pub(crate) struct StickyLeaveOut<'a> {
    pub(crate) slot_id: &'a str,
    pub(crate) msc4354_sticky_key: &'a str,
    pub(crate) sticky_key: &'a str,
}

/// The legacy per-device join content (format C).
#[derive(Debug, Serialize)]
pub(crate) struct LegacyJoinOut<'a> {
    pub(crate) application: &'a str,
    pub(crate) call_id: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) device_id: &'a str,
    #[serde(rename = "membershipID")]
    pub(crate) membership_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created_ts: Option<u64>,
    pub(crate) expires: u64,
    pub(crate) focus_active: FocusActiveOut<'a>,
    pub(crate) foci_preferred: [&'a serde_json::Value; 1],
    #[serde(rename = "m.call.intent", skip_serializing_if = "Option::is_none")]
    pub(crate) call_intent: Option<&'a str>,
}

/// Legacy `focus_active` of an outbound join.
#[derive(Debug, Serialize)]
pub(crate) struct FocusActiveOut<'a> {
    #[serde(rename = "type")]
    pub(crate) focus_type: &'a str,
    pub(crate) focus_selection: &'a str,
}

/// An outbound LiveKit transport object.
#[derive(Debug, Serialize)]
pub(crate) struct LiveKitOut<'a> {
    #[serde(rename = "type")]
    pub(crate) transport_type: &'a str,
    pub(crate) livekit_service_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) livekit_alias: Option<&'a str>,
}
