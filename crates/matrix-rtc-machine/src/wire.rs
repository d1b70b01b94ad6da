//! The few wire names the machine routes by that the cores do not define; every other name
//! lives in the cores' `wire` modules.
use matrix_rtc_membership::wire as rtc;
use matrix_sticky_events::wire as sticky;

/// `m.room.member` (state).
pub const ROOM_MEMBER: &str = "m.room.member";
/// `m.room.encryption` (state).
pub const ROOM_ENCRYPTION: &str = "m.room.encryption";
/// `m.room.power_levels` (state).
pub const ROOM_POWER_LEVELS: &str = "m.room.power_levels";
/// `membership` value of a joined member in `m.room.member` content.
pub const MEMBERSHIP_JOIN: &str = "join";

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
        rtc::RTC_MEMBER
            | rtc::RTC_MEMBER_UNSTABLE
            | sticky::ROOM_REDACTION
            | sticky::ROOM_ENCRYPTED
    )
}
