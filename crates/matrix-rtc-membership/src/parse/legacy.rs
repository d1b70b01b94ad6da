//! Format C (legacy per-device state), the ignored format D, and `m.rtc.slot` state.
use std::time::Duration;

use matrix_sticky_events::Receipt;
use ruma_common::{OwnedDeviceId, OwnedEventId, OwnedUserId};
use serde_json::value::RawValue;
use tracing::{debug, info};

use super::{Join, Outcome};
use crate::{
    CallIntent, FocusSelection, LeftReason, MembershipFormat, RejectReason, Transport,
    field::{self, FieldError},
    wire::{self, FocusActiveObject, LegacyContent, SlotContent, StateEvent, Unsigned},
};

/// Which state events the model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateKind {
    /// `org.matrix.msc3401.call.member`.
    CallMember,
    /// `m.rtc.slot` / `org.matrix.msc4143.rtc.slot`.
    Slot,
}

/// The envelope of a state event the model reads.
#[derive(Debug)]
pub(crate) struct StateEventIn<'a> {
    pub(crate) kind: StateKind,
    pub(crate) state_key: String,
    pub(crate) sender: OwnedUserId,
    pub(crate) event_id: OwnedEventId,
    pub(crate) origin_server_ts: u64,
    pub(crate) content: &'a RawValue,
    /// `unsigned` carries a delay ID: our own delayed event, fired by the server.
    pub(crate) delayed: bool,
    /// `unsigned.redacted_because` is present: a redacted copy.
    pub(crate) redacted: bool,
}

/// A state event that could not be read.
#[derive(Debug)]
pub(crate) struct StateError {
    pub(crate) event_id: Option<OwnedEventId>,
    pub(crate) sender: Option<OwnedUserId>,
    pub(crate) reason: RejectReason,
}

/// Reads a state event's envelope. `Ok(None)` for event types the model does not read.
pub(crate) fn parse_state_event(raw: &str) -> Result<Option<StateEventIn<'_>>, StateError> {
    let malformed = |what| StateError {
        event_id: None,
        sender: None,
        reason: RejectReason::MalformedStateEvent(what),
    };
    // serde reads a struct from an array too: insist on an object.
    if !raw.trim_start().starts_with('{') {
        return Err(malformed("not an object"));
    }
    let event: StateEvent<'_> =
        serde_json::from_str(raw).map_err(|_| malformed("not an object"))?;
    let event_type = field::string(event.event_type).map_err(|_| malformed("type"))?;
    let kind = match event_type.as_str() {
        wire::LEGACY_CALL_MEMBER => StateKind::CallMember,
        wire::RTC_SLOT | wire::RTC_SLOT_UNSTABLE => StateKind::Slot,
        _ => return Ok(None),
    };
    let event_id = field::string(event.event_id)
        .ok()
        .and_then(|id| OwnedEventId::try_from(id).ok());
    let sender = field::string(event.sender)
        .ok()
        .and_then(|id| OwnedUserId::try_from(id).ok());
    let fail = |what| StateError {
        event_id: event_id.clone(),
        sender: sender.clone(),
        reason: RejectReason::MalformedStateEvent(what),
    };
    let Some(event_id) = event_id.clone() else {
        return Err(fail("event_id"));
    };
    let Some(sender) = sender.clone() else {
        return Err(fail("sender"));
    };
    let state_key = field::string(event.state_key).map_err(|_| fail("state_key"))?;
    let origin_server_ts =
        field::millis(event.origin_server_ts).map_err(|_| fail("origin_server_ts"))?;
    let content = event.content.ok_or_else(|| fail("content"))?;
    let unsigned = event.unsigned.and_then(field::object::<Unsigned<'_>>);
    let (delayed, redacted) = unsigned.map_or((false, false), |unsigned| {
        (
            unsigned.delay_id_unstable.is_some() || unsigned.delay_id.is_some(),
            unsigned.redacted_because.is_some(),
        )
    });
    Ok(Some(StateEventIn {
        kind,
        state_key,
        sender,
        event_id,
        origin_server_ts,
        content,
        delayed,
        redacted,
    }))
}

/// Reads a legacy call member event received at `receipt`. Rejections go to `notes`.
pub(crate) fn classify(
    event: &StateEventIn<'_>,
    receipt: Receipt,
    notes: &mut Vec<RejectReason>,
) -> Outcome {
    let reject = |notes: &mut Vec<RejectReason>, reason: RejectReason| {
        notes.push(reason.clone());
        Outcome::Gone(LeftReason::Rejected(reason))
    };
    let gone = if event.redacted {
        LeftReason::Redacted
    } else if event.delayed {
        LeftReason::DelayedLeaveFired
    } else {
        LeftReason::LeaveEvent
    };
    if !field::is_object(event.content) {
        return reject(notes, RejectReason::ContentNotObject);
    }
    if field::is_empty_object(event.content) {
        return Outcome::Gone(gone);
    }
    let Some(content) = field::object::<LegacyContent<'_>>(event.content) else {
        return reject(notes, RejectReason::ContentMalformed);
    };
    if content.memberships.is_some() {
        info!(sender = %event.sender, event_id = %event.event_id, "ignoring a per-user memberships array (format D)");
        return reject(notes, RejectReason::PerUserMembershipsIgnored);
    }
    // Content without a device is not a membership: a leave (e.g. `{"leave_reason": ...}`).
    let device_id = match field::string(content.device_id) {
        Ok(device_id) => device_id,
        Err(FieldError::Absent) => return Outcome::Gone(gone),
        Err(FieldError::WrongType) => {
            return reject(notes, RejectReason::LegacyFieldInvalid("device_id"));
        }
    };
    let Ok(application) = field::string(content.application) else {
        return reject(notes, RejectReason::LegacyFieldInvalid("application"));
    };
    // A missing call_id means the room call; the wrong type is rejected.
    let Ok(call_id) = field::opt_string(content.call_id) else {
        return reject(notes, RejectReason::LegacyFieldInvalid("call_id"));
    };
    if field::opt_string(content.scope).is_err() {
        return reject(notes, RejectReason::LegacyFieldInvalid("scope"));
    }
    let Ok(call_intent) = field::opt_string(content.call_intent) else {
        return reject(notes, RejectReason::LegacyFieldInvalid("m.call.intent"));
    };
    let created_ts = match field::millis(content.created_ts) {
        // A creation time in the future of its own event cannot stretch the lifetime.
        Ok(created) => created.min(event.origin_server_ts),
        Err(FieldError::Absent) => event.origin_server_ts,
        Err(FieldError::WrongType) => {
            return reject(notes, RejectReason::LegacyFieldInvalid("created_ts"));
        }
    };
    let expires = match field::millis(content.expires) {
        Ok(expires) => expires,
        Err(FieldError::Absent) => wire::LEGACY_DEFAULT_EXPIRES_MS,
        Err(FieldError::WrongType) => {
            return reject(notes, RejectReason::LegacyFieldInvalid("expires"));
        }
    };
    let focus_selection = match content.focus_active.map(focus_selection) {
        None => None,
        Some(Ok(selection)) => Some(selection),
        Some(Err(())) => return reject(notes, RejectReason::LegacyFieldInvalid("focus_active")),
    };
    let transports = match content.foci_preferred.map(Transport::parse_list) {
        None => Vec::new(),
        Some(Some(list)) => list,
        Some(None) => return reject(notes, RejectReason::LegacyFieldInvalid("foci_preferred")),
    };
    // An unreadable membershipID falls back to the derived one.
    let member_id = field::string(content.membership_id)
        .unwrap_or_else(|_| format!("{}:{device_id}", event.sender));

    // Rule 7.
    let expires_wall_ms = created_ts.saturating_add(expires);
    if expires_wall_ms <= receipt.wall_ms {
        debug!(sender = %event.sender, event_id = %event.event_id, "legacy membership already expired");
        notes.push(RejectReason::LegacyExpired);
        return Outcome::Gone(LeftReason::Expired);
    }
    let deadline = receipt
        .instant
        .checked_add(Duration::from_millis(expires_wall_ms - receipt.wall_ms));

    let slot_name = match call_id.as_deref() {
        None | Some("") if application == wire::CALL_APPLICATION => wire::ROOM_SLOT_NAME,
        None => "",
        Some(call_id) => call_id,
    };
    let slot_id = format!("{application}{}{slot_name}", wire::SLOT_SEPARATOR);
    let device_id: OwnedDeviceId = device_id.into();

    Outcome::Join(Box::new(Join {
        slot_id,
        device_id,
        member_id,
        format: MembershipFormat::LegacyState,
        created_ts,
        transports,
        focus_selection,
        call_intent: call_intent.map(CallIntent::from_wire),
        expires_wall_ms,
        deadline,
        encrypted: false,
        suspicious: false,
    }))
}

/// `focus_active`: an object with a string `type`; its `focus_selection` when a string.
fn focus_selection(raw: &RawValue) -> Result<FocusSelection, ()> {
    let object: FocusActiveObject<'_> = field::object(raw).ok_or(())?;
    field::string(object.focus_type).map_err(|_| ())?;
    Ok(match field::string(object.focus_selection) {
        Ok(selection) => FocusSelection::from_wire(selection),
        // js-sdk writes `oldest_membership`; without a selection use the member's own focus.
        Err(_) => FocusSelection::MultiSfu,
    })
}

/// Whether an `m.rtc.slot` content closes its slot (anything else counts as open).
pub(crate) fn slot_closed(content: &RawValue) -> bool {
    field::object::<SlotContent<'_>>(content)
        .and_then(|slot| field::string(slot.status).ok())
        .is_some_and(|status| status == wire::SLOT_STATUS_CLOSED)
}
