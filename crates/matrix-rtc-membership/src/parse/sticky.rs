//! Formats A and B: sticky `m.rtc.member` / `org.matrix.msc4143.rtc.member` content.
use matrix_sticky_events::{EventOrigin, StickyEvent};
use ruma_common::OwnedDeviceId;
use serde_json::value::RawValue;
use tracing::trace;

use super::{Join, Outcome};
use crate::{
    CallIntent, LeftReason, MembershipFormat, RejectReason, Transport,
    field::{self, FieldError},
    livekit_identity,
    wire::{
        self, ApplicationObject, LeaveReasonObject, MemberObject, StickyContent, TransportsObject,
    },
};

/// Whether `event_type` is a sticky RTC member event type.
pub(crate) fn is_member_type(event_type: &str) -> bool {
    event_type == wire::RTC_MEMBER || event_type == wire::RTC_MEMBER_UNSTABLE
}

/// Reads one keyed sticky member event. Rejections and flags go to `notes`.
pub(crate) fn classify(
    event: &StickyEvent,
    sticky_key: &str,
    notes: &mut Vec<RejectReason>,
) -> Outcome {
    let reject = |notes: &mut Vec<RejectReason>, reason: RejectReason| {
        notes.push(reason.clone());
        Outcome::Gone(LeftReason::Rejected(reason))
    };

    // Key-only content is a deletion: a leave (protocol.md §4.3).
    if event.key_only {
        return Outcome::Gone(LeftReason::LeaveEvent);
    }
    if !field::is_object(&event.content) {
        return reject(notes, RejectReason::ContentNotObject);
    }
    let Some(content) = field::object::<StickyContent<'_>>(&event.content) else {
        return reject(notes, RejectReason::ContentMalformed);
    };

    // `member` is read first: format A says leave in `member.membership`.
    let member = match content.member {
        None => None,
        Some(raw_member) => match field::object::<MemberObject<'_>>(raw_member) {
            Some(member) => Some(member),
            None => return reject(notes, RejectReason::MemberInvalid),
        },
    };
    let membership = match member
        .as_ref()
        .map(|member| field::opt_string(member.membership))
    {
        None => None,
        Some(Ok(membership)) => membership,
        Some(Err(_)) => return reject(notes, RejectReason::MemberInvalid),
    };
    match membership.as_deref() {
        Some(wire::MEMBERSHIP_LEAVE) => return Outcome::Gone(leave_reason(content.leave_reason)),
        Some(wire::MEMBERSHIP_JOIN) | None => {}
        Some(_) => return reject(notes, RejectReason::MembershipUnknown),
    }
    let format = if membership.is_some() {
        MembershipFormat::Msc4143
    } else {
        MembershipFormat::JsSdk
    };

    // Format B: content without `application` is a leave (key-only, or key plus `slot_id`).
    let Some(raw_application) = content.application else {
        if format == MembershipFormat::Msc4143 {
            return reject(notes, RejectReason::ApplicationMissing);
        }
        return Outcome::Gone(LeftReason::LeaveEvent);
    };
    let Some(application) = field::object::<ApplicationObject<'_>>(raw_application) else {
        return reject(notes, RejectReason::ApplicationInvalid);
    };
    let Ok(application_type) = field::string(application.app_type) else {
        return reject(notes, RejectReason::ApplicationInvalid);
    };

    let Some(member) = member else {
        return reject(notes, RejectReason::MemberMissing);
    };
    let member_id = match field::string(member.id) {
        Ok(id) => id,
        Err(FieldError::Absent) => return reject(notes, RejectReason::MemberIdMissing),
        Err(FieldError::WrongType) => return reject(notes, RejectReason::MemberInvalid),
    };
    // Rule 2.
    if member_id != sticky_key {
        return reject(notes, RejectReason::StickyKeyMismatch);
    }
    // Rule 3: every claimed user present must be the sender.
    for claim in [member.user_id, member.claimed_user_id] {
        match field::opt_string(claim) {
            Ok(None) => {}
            Ok(Some(user)) if user == event.meta.sender.as_str() => {}
            Ok(Some(_)) => return reject(notes, RejectReason::UserClaimMismatch),
            Err(_) => return reject(notes, RejectReason::MemberInvalid),
        }
    }
    // Rule 4.
    let Ok(slot_id) = field::string(content.slot_id) else {
        return reject(notes, RejectReason::SlotIdInvalid);
    };
    if !slot_matches(&slot_id, &application_type) {
        return reject(notes, RejectReason::SlotApplicationMismatch);
    }

    // The device: claimed, or else the one that encrypted the event.
    let claimed_device = match (
        field::opt_string(member.device_id),
        field::opt_string(member.claimed_device_id),
    ) {
        (Ok(device), Ok(claimed)) => device.or(claimed),
        _ => return reject(notes, RejectReason::MemberInvalid),
    };
    let (encrypted, sender_device) = match &event.origin {
        EventOrigin::Plaintext => (false, None),
        EventOrigin::Encrypted { sender_device } => (true, sender_device.as_ref()),
    };
    let mut suspicious = false;
    let device_id: OwnedDeviceId = match (claimed_device, sender_device) {
        (Some(claimed), Some(actual)) => {
            if claimed != actual.as_str() {
                suspicious = true;
                notes.push(RejectReason::DeviceMismatch);
            }
            claimed.into()
        }
        (Some(claimed), None) => claimed.into(),
        (None, Some(actual)) => actual.clone(),
        (None, None) => return reject(notes, RejectReason::DeviceMissing),
    };

    let transports = transports(content.transports, content.rtc_transports, notes);
    // An intent of the wrong type is dropped; it never hides the member.
    let call_intent = field::string(application.call_intent)
        .ok()
        .map(CallIntent::from_wire);
    let livekit_identity =
        livekit_identity(event.meta.sender.as_str(), device_id.as_str(), &member_id);

    Outcome::Join(Box::new(Join {
        slot_id,
        device_id,
        member_id,
        format,
        created_ts: event.meta.origin_server_ts,
        transports,
        focus_selection: None,
        call_intent,
        livekit_identity,
        expires_wall_ms: event.meta.expires_wall_ms,
        deadline: None,
        encrypted,
        suspicious,
    }))
}

/// Rule 4: `slot_id` starts with `application.type + "#"`.
pub(crate) fn slot_matches(slot_id: &str, application_type: &str) -> bool {
    slot_id
        .strip_prefix(application_type)
        .is_some_and(|rest| rest.starts_with(wire::SLOT_SEPARATOR))
}

/// The published transports: `transports.published` when it is a non-empty array, else
/// `rtc_transports` (js-sdk 39–42). A malformed transport field only flags the member.
fn transports(
    transports: Option<&RawValue>,
    rtc_transports: Option<&RawValue>,
    notes: &mut Vec<RejectReason>,
) -> Vec<Transport> {
    if let Some(raw) = transports {
        let published = field::object::<TransportsObject<'_>>(raw)
            .and_then(|object| object.published)
            .and_then(Transport::parse_list);
        match published {
            Some(list) if !list.is_empty() => return list,
            Some(_) => {}
            None => {
                trace!("transports is not an object with a published array");
                notes.push(RejectReason::TransportsInvalid);
            }
        }
    }
    match rtc_transports.map(Transport::parse_list) {
        Some(Some(list)) => list,
        Some(None) => {
            trace!("rtc_transports is not an array");
            notes.push(RejectReason::TransportsInvalid);
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// The reason of a format A leave, from `leave_reason.code`.
fn leave_reason(raw: Option<&RawValue>) -> LeftReason {
    let code = raw
        .and_then(field::object::<LeaveReasonObject<'_>>)
        .and_then(|object| field::string(object.code).ok());
    match code.as_deref() {
        Some(wire::LEAVE_CODE_DELAYED) => LeftReason::DelayedLeaveFired,
        Some(wire::LEAVE_CODE_SLOT_CLOSED) => LeftReason::SlotClosed,
        _ => LeftReason::LeaveEvent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_must_start_with_application_and_hash() {
        assert!(slot_matches("m.call#ROOM", "m.call"));
        assert!(slot_matches("m.call#", "m.call"));
        assert!(!slot_matches("m.call", "m.call"));
        assert!(!slot_matches("m.callx#ROOM", "m.call"));
        assert!(!slot_matches("m.call#ROOM", "org.example.not_a_call"));
    }
}
