//! The event types the driver routes. The names themselves live in the cores' `wire`
//! modules; this module only adds the few the cores do not need.
use matrix_rtc_membership::wire as rtc;

/// `m.room.member`.
pub(crate) const ROOM_MEMBER: &str = "m.room.member";
/// `m.room.redaction`.
pub(crate) const ROOM_REDACTION: &str = "m.room.redaction";
/// `m.room.encryption` (state).
pub(crate) const ROOM_ENCRYPTION: &str = "m.room.encryption";
/// `m.room.encrypted`.
pub(crate) const ROOM_ENCRYPTED: &str = "m.room.encrypted";
/// `membership` inside `m.room.member` content.
pub(crate) const MEMBERSHIP_JOIN: &str = "join";

/// State event types the membership model reads (legacy call members and RTC slots).
pub(crate) fn is_call_state_type(event_type: &str) -> bool {
    matches!(
        event_type,
        rtc::LEGACY_CALL_MEMBER | rtc::RTC_SLOT | rtc::RTC_SLOT_UNSTABLE
    )
}

/// Timeline event types that may carry (or end) a sticky RTC membership.
pub(crate) fn is_sticky_candidate_type(event_type: &str) -> bool {
    matches!(
        event_type,
        rtc::RTC_MEMBER | rtc::RTC_MEMBER_UNSTABLE | ROOM_REDACTION | ROOM_ENCRYPTED
    )
}
