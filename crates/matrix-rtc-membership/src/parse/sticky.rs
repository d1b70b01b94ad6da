//! Formats A and B: sticky `m.rtc.member` / `org.matrix.msc4143.rtc.member` content.
use matrix_sticky_events::{EventOrigin, StickyEvent};
use ruma_common::OwnedDeviceId;
use serde_json::value::RawValue;
use tracing::trace;

use super::{Join, Outcome};
use crate::{
    CallIntent, LeftReason, MAX_LEAVE_CODE_LEN, MembershipFormat, RejectReason, Transport,
    field::{self, FieldError},
    transport::MAX_TRANSPORTS,
    wire::{
        self, ApplicationObject, FastStickyContent, LeaveReasonObject, MemberObject, StickyContent,
        TransportsObject,
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

    // Key-only content is a deletion: a leave (docs/protocol.md §4.3).
    if event.key_only {
        return Outcome::Gone(LeftReason::LeaveEvent);
    }
    if !field::is_object(&event.content) {
        return reject(notes, RejectReason::ContentNotObject);
    }
    if let Some(outcome) = classify_well_formed(event, sticky_key) {
        return outcome;
    }
    classify_field_by_field(event, sticky_key, notes)
}

/// The one-pass reading of well-formed content. `None` whenever anything is unusual (a field
/// of the wrong type, a rule broken, a flag to raise): the field-by-field reading then
/// decides, and says why. When it returns `Some`, the outcome is the one
/// [`classify_field_by_field`] would give, with no notes.
fn classify_well_formed(event: &StickyEvent, sticky_key: &str) -> Option<Outcome> {
    let content: FastStickyContent<'_> = serde_json::from_str(event.content.get()).ok()?;
    let membership = content
        .member
        .as_ref()
        .and_then(|member| member.membership.as_deref());
    let format = match membership {
        Some(wire::MEMBERSHIP_LEAVE) => {
            return Some(Outcome::Gone(leave_reason(content.leave_reason)));
        }
        Some(wire::MEMBERSHIP_JOIN) => MembershipFormat::Msc4143,
        None => MembershipFormat::JsSdk,
        Some(_) => return None,
    };
    let Some(application) = content.application else {
        return (format == MembershipFormat::JsSdk)
            .then_some(Outcome::Gone(LeftReason::LeaveEvent));
    };
    let application_type = application.app_type?;
    let member = content.member?;
    let member_id = member.id?;
    if member_id != sticky_key {
        return None;
    }
    let sender = event.meta.sender.as_str();
    if [&member.user_id, &member.claimed_user_id]
        .into_iter()
        .any(|claim| claim.as_deref().is_some_and(|user| user != sender))
    {
        return None;
    }
    let slot_id = content.slot_id?;
    if !slot_matches(&slot_id, &application_type) {
        return None;
    }
    let claimed_device = member.device_id.or(member.claimed_device_id);
    let (encrypted, sender_device) = match &event.origin {
        EventOrigin::Plaintext => (false, None),
        EventOrigin::Encrypted { sender_device } => (true, sender_device.as_ref()),
    };
    let device_id: OwnedDeviceId = match (claimed_device, sender_device) {
        (Some(claimed), Some(actual)) if claimed != actual.as_str() => return None,
        (Some(claimed), _) => claimed.as_ref().into(),
        (None, Some(actual)) => actual.clone(),
        (None, None) => return None,
    };
    let mut transports = Vec::new();
    if let Some(object) = content.transports {
        transports = parse_transports(object.published?);
    }
    if transports.is_empty()
        && let Some(list) = content.rtc_transports
    {
        transports = parse_transports(list);
    }
    let call_intent = field::string(application.call_intent)
        .ok()
        .map(CallIntent::from_wire);
    Some(Outcome::Join(Box::new(Join {
        slot_id: slot_id.into_owned(),
        device_id,
        member_id: member_id.into_owned(),
        format,
        created_ts: event.meta.origin_server_ts,
        transports,
        focus_selection: None,
        call_intent,
        expires_wall_ms: event.meta.expires_wall_ms,
        deadline: None,
        encrypted,
        suspicious: false,
    })))
}

fn parse_transports(list: Vec<&RawValue>) -> Vec<Transport> {
    list.into_iter()
        .filter_map(Transport::parse)
        .take(MAX_TRANSPORTS)
        .collect()
}

/// The field-by-field reading: each rule in turn, with the reason of the first one broken.
fn classify_field_by_field(
    event: &StickyEvent,
    sticky_key: &str,
    notes: &mut Vec<RejectReason>,
) -> Outcome {
    let reject = |notes: &mut Vec<RejectReason>, reason: RejectReason| {
        notes.push(reason.clone());
        Outcome::Gone(LeftReason::Rejected(reason))
    };
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

    Outcome::Join(Box::new(Join {
        slot_id,
        device_id,
        member_id,
        format,
        created_ts: event.meta.origin_server_ts,
        transports,
        focus_selection: None,
        call_intent,
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

/// The reason of a format A leave, from `leave_reason.code` (docs/protocol.md §5.7): the
/// generic codes map onto their reasons, another short code is kept, and anything else (no
/// `leave_reason`, no code, a code that is not a string, empty or too long) is a plain leave.
fn leave_reason(raw: Option<&RawValue>) -> LeftReason {
    let code = raw
        .and_then(field::object::<LeaveReasonObject<'_>>)
        .and_then(|object| field::string(object.code).ok());
    match code.as_deref() {
        Some(wire::LEAVE_CODE_DELAYED) => LeftReason::DelayedLeaveFired,
        Some(wire::LEAVE_CODE_SLOT_CLOSED) => LeftReason::SlotClosed,
        Some(wire::LEAVE_CODE_LEAVE) | None => LeftReason::LeaveEvent,
        Some(code) if !code.is_empty() && code.len() <= MAX_LEAVE_CODE_LEN => {
            LeftReason::OtherLeaveCode(code.to_owned())
        }
        Some(_) => LeftReason::LeaveEvent,
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

#[cfg(test)]
mod equivalence {
    use std::time::Instant;

    use matrix_sticky_events::StickyMeta;
    use ruma_common::{owned_event_id, owned_room_id, owned_user_id};
    use serde_json::json;

    use super::*;

    fn event(content: &serde_json::Value, origin: EventOrigin) -> StickyEvent {
        StickyEvent {
            meta: StickyMeta {
                room_id: owned_room_id!("!r:x"),
                event_id: owned_event_id!("$e"),
                sender: owned_user_id!("@a:x"),
                origin_server_ts: 5,
                duration_ms: 3_600_000,
                expires_at: Instant::now(),
                expires_wall_ms: 3_600_005,
            },
            event_type: wire::RTC_MEMBER_UNSTABLE.to_owned(),
            sticky_key: Some("m".to_owned()),
            key_only: false,
            content: RawValue::from_string(content.to_string()).unwrap(),
            origin,
        }
    }

    /// Content shapes, each varied field by field with values of every JSON type.
    fn corpus() -> Vec<serde_json::Value> {
        let base = json!({
            "slot_id": "m.call#ROOM",
            "application": {"type": "m.call", "m.call.intent": "audio"},
            "member": {"id": "m", "user_id": "@a:x", "device_id": "D"},
            "transports": {"published": [{"type": "livekit", "livekit_service_url": "https://u"}]},
            "rtc_transports": [{"type": "livekit", "livekit_service_url": "https://old"}],
            "leave_reason": {"code": "delayed_leave"},
            "msc4354_sticky_key": "m",
        });
        let values = [
            json!(null),
            json!("m"),
            json!("m.call#ROOM"),
            json!("@a:x"),
            json!("@b:x"),
            json!("join"),
            json!("leave"),
            json!("other"),
            json!(3),
            json!([]),
            json!([{"type": "livekit", "livekit_service_url": "https://u"}, 7, {"type": "x"}]),
            json!({}),
            json!({"type": "m.call"}),
            json!({"published": []}),
            json!({"published": {}}),
        ];
        let mut out = vec![base.clone()];
        let paths: &[&[&str]] = &[
            &["slot_id"],
            &["application"],
            &["application", "type"],
            &["application", "m.call.intent"],
            &["member"],
            &["member", "id"],
            &["member", "user_id"],
            &["member", "claimed_user_id"],
            &["member", "device_id"],
            &["member", "claimed_device_id"],
            &["member", "membership"],
            &["transports"],
            &["transports", "published"],
            &["rtc_transports"],
            &["leave_reason"],
        ];
        for path in paths {
            let (last, parents) = path.split_last().unwrap();
            for value in &values {
                for remove in [false, true] {
                    let mut content = base.clone();
                    let mut target = &mut content;
                    for step in parents {
                        target = &mut target[*step];
                    }
                    let Some(object) = target.as_object_mut() else {
                        continue;
                    };
                    if remove {
                        object.remove(*last);
                    } else {
                        object.insert((*last).to_owned(), value.clone());
                    }
                    out.push(content);
                }
            }
        }
        out
    }

    #[test]
    fn the_one_pass_reading_agrees_with_the_field_by_field_one() {
        let origins = [
            EventOrigin::Plaintext,
            EventOrigin::Encrypted {
                sender_device: Some("D".into()),
            },
            EventOrigin::Encrypted {
                sender_device: Some("OTHER".into()),
            },
            EventOrigin::Encrypted {
                sender_device: None,
            },
        ];
        let mut fast_hits = 0;
        for content in corpus() {
            for origin in &origins {
                let event = event(&content, origin.clone());
                let mut notes = Vec::new();
                let slow = classify_field_by_field(&event, "m", &mut notes);
                if let Some(fast) = classify_well_formed(&event, "m") {
                    fast_hits += 1;
                    assert_eq!(fast, slow, "content {content} origin {origin:?}");
                    assert!(notes.is_empty(), "content {content}: {notes:?}");
                }
            }
        }
        assert!(
            fast_hits > 100,
            "the corpus exercises the one-pass reading ({fast_hits})"
        );
    }
}
