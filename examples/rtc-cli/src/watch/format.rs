//! How changes, diagnostics and calls are shown: JSON objects, log lines and the table.
use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use matrix_rtc_membership::MembershipFormat;
use matrix_sdk_rtc::{CallId, Cap, Diagnostic, LeftReason, Participant, SessionChange, Transport};
use serde_json::{Map, Value, json};

use super::terminal::safe;

/// Widest member ID and transport shown in the table.
const MEMBER_WIDTH: usize = 14;
const TRANSPORT_WIDTH: usize = 34;

/// Milliseconds since the Unix epoch now.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The time of day (UTC), `HH:MM:SS`.
pub(super) fn clock() -> String {
    let seconds = now_ms() / 1_000 % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The JSON object for one change (`None` for kinds this version does not know).
pub(super) fn change_json(change: &SessionChange) -> Option<Value> {
    let mut object = Map::new();
    let (event, participant) = match change {
        SessionChange::SessionStarted { room_id, slot_id } => {
            return Some(json!({
                "event": "call_started", "ts": now_ms(), "room_id": room_id, "slot_id": slot_id,
            }));
        }
        SessionChange::SessionEnded { room_id, slot_id } => {
            return Some(json!({
                "event": "call_ended", "ts": now_ms(), "room_id": room_id, "slot_id": slot_id,
            }));
        }
        SessionChange::Joined(participant) => ("joined", participant),
        SessionChange::Updated { new, .. } => ("updated", new),
        SessionChange::Left {
            participant,
            reason,
        } => {
            object.insert("reason".into(), left_reason(reason).into());
            if let LeftReason::Rejected(why) = reason {
                object.insert("detail".into(), why.to_string().into());
            }
            ("left", participant)
        }
        _ => return None,
    };
    let mut out = Map::new();
    out.insert("event".into(), event.into());
    out.insert("ts".into(), now_ms().into());
    out.extend(participant_fields(participant));
    out.extend(object);
    Some(Value::Object(out))
}

/// The `left` object for a participant the watcher showed that is not in the current state
/// after it fell behind (reason `resync`: it left while the watcher was behind).
pub(super) fn left_on_resync_json(participant: &Participant) -> Value {
    let mut out = Map::new();
    out.insert("event".into(), "left".into());
    out.insert("ts".into(), now_ms().into());
    out.extend(participant_fields(participant));
    out.insert("reason".into(), "resync".into());
    Value::Object(out)
}

/// The log line for the same.
pub(super) fn left_on_resync_line(p: &Participant) -> String {
    format!(
        "left: {} ({}), reason: resync (gone from the current state while the watcher was behind)",
        p.user_id, p.device_id
    )
}

/// The marker object of a resync: the watcher fell behind and missed `missed` changes; the
/// lines that follow bring the output to the current state (`calls` active calls shown).
pub(super) fn resync_json(missed: u64, calls: usize) -> Value {
    json!({ "event": "resync", "ts": now_ms(), "missed": missed, "active_calls": calls })
}

/// The log line for the same.
pub(super) fn resync_line(missed: u64, calls: usize) -> String {
    format!(
        "fell behind: missed {missed} changes; catching up with the current state ({calls} \
         active call{})",
        if calls == 1 { "" } else { "s" }
    )
}

fn participant_fields(participant: &Participant) -> Map<String, Value> {
    let fields = json!({
        "room_id": participant.room_id,
        "slot_id": participant.slot_id,
        "user_id": participant.user_id,
        "device_id": participant.device_id,
        "member_id": participant.member_id,
        "transport": participant.own_transport().map(transport_text),
        "created_ts": participant.created_ts,
        "expires_wall_ms": participant.expires_wall_ms,
        "event_id": participant.event_id,
        "format": format_name(participant.format),
        "call_intent": participant.call_intent.as_ref().map(|intent| intent.as_str()),
        "livekit_identity": participant.livekit_identity,
        "suspicious": participant.suspicious,
    });
    match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The log line for one change (`None` for kinds this version does not know).
pub(super) fn change_line(change: &SessionChange) -> Option<String> {
    Some(match change {
        SessionChange::SessionStarted { room_id, slot_id } => {
            format!("call started: {slot_id} in {room_id}")
        }
        SessionChange::SessionEnded { room_id, slot_id } => {
            format!("call ended: {slot_id} in {room_id}")
        }
        SessionChange::Joined(p) => format!(
            "joined: {} ({}) as member {}",
            p.user_id,
            p.device_id,
            short(&p.member_id, MEMBER_WIDTH)
        ),
        SessionChange::Updated { new: p, .. } => format!(
            "updated: {} ({}), expires in {}",
            p.user_id,
            p.device_id,
            until(p.expires_wall_ms)
        ),
        SessionChange::Left {
            participant: p,
            reason,
        } => format!(
            "left: {} ({}), reason: {}",
            p.user_id,
            p.device_id,
            left_reason_text(reason)
        ),
        _ => return None,
    })
}

/// The room a diagnostic is about: its ID, or for a malformed part of a response the room key
/// as sent. `None` for a defect of the whole response.
pub(super) fn diagnostic_room(diagnostic: &Diagnostic) -> Option<&str> {
    match diagnostic {
        Diagnostic::Sticky { room_id, .. }
        | Diagnostic::AwaitingRoomKey { room_id, .. }
        | Diagnostic::Capped { room_id, .. }
        | Diagnostic::RedactionRefused { room_id, .. } => Some(room_id.as_str()),
        Diagnostic::Membership(inner) => Some(inner.room_id.as_str()),
        Diagnostic::MalformedBatch { room, .. } => room.as_deref(),
        _ => None,
    }
}

/// The JSON object for a rejected event (or what a cap dropped).
pub(super) fn diagnostic_json(diagnostic: &Diagnostic) -> Value {
    let (layer, sender, reason) = diagnostic_parts(diagnostic);
    let mut object = json!({
        "event": "rejected",
        "ts": now_ms(),
        "layer": layer,
        "room_id": diagnostic_room(diagnostic),
        "event_id": diagnostic.event_id(),
        "sender": sender,
        "reason": reason,
    });
    if let (Diagnostic::Capped { cap, dropped, .. }, Some(fields)) =
        (diagnostic, object.as_object_mut())
    {
        fields.insert("cap".into(), cap_name(*cap).into());
        fields.insert("dropped".into(), (*dropped).into());
    }
    object
}

/// The log line for a rejected event.
pub(super) fn diagnostic_line(diagnostic: &Diagnostic) -> String {
    let (layer, sender, reason) = diagnostic_parts(diagnostic);
    let event = diagnostic
        .event_id()
        .map_or_else(|| "(no event id)".to_owned(), ToString::to_string);
    let room = diagnostic_room(diagnostic).unwrap_or("(the whole response)");
    let sender = sender.map_or_else(String::new, |sender| format!(" from {sender}"));
    format!("{layer}: {reason}: {event}{sender} in {room}")
}

/// The object saying the watcher fell behind and did not show `missed` diagnostics.
pub(super) fn diagnostics_missed_json(missed: u64) -> Value {
    json!({ "event": "diagnostics_missed", "ts": now_ms(), "missed": missed })
}

/// The log line for the same.
pub(super) fn diagnostics_missed_line(missed: u64) -> String {
    format!("fell behind: {missed} rejected events not shown")
}

fn diagnostic_parts(diagnostic: &Diagnostic) -> (&'static str, Option<String>, String) {
    match diagnostic {
        Diagnostic::Sticky { rejection, .. } => ("sticky", None, rejection.to_string()),
        Diagnostic::MalformedBatch { rejection, .. } => (
            "malformed",
            None,
            format!("unreadable part of a response: {rejection}"),
        ),
        Diagnostic::Membership(inner) => (
            "membership",
            inner.sender.as_ref().map(ToString::to_string),
            inner.reason.to_string(),
        ),
        Diagnostic::AwaitingRoomKey { sender, .. } => (
            "encryption",
            Some(sender.to_string()),
            "waiting for the room key".to_owned(),
        ),
        Diagnostic::Capped {
            sender,
            cap,
            dropped,
            ..
        } => (
            "capped",
            Some(sender.to_string()),
            format!(
                "the {} cap dropped {dropped} of this sender's events so far",
                cap_name(*cap).replace('_', " ")
            ),
        ),
        Diagnostic::RedactionRefused {
            redactor,
            redacts,
            reason,
            ..
        } => (
            "redaction",
            Some(redactor.to_string()),
            format!("redaction of {redacts} refused: {reason}"),
        ),
        _ => ("other", None, format!("{diagnostic:?}")),
    }
}

/// A stable, machine-readable name for a cap.
fn cap_name(cap: Cap) -> &'static str {
    match cap {
        Cap::StickyMap => "sticky_map",
        Cap::ParkedPerSender => "parked_per_sender",
        Cap::ParkedPerRoom => "parked_per_room",
        Cap::ParkedTotal => "parked_total",
        _ => "other",
    }
}

/// One call as a table: a heading and a row per participant, oldest first.
pub(super) fn call_table(call: &CallId, participants: &[Arc<Participant>]) -> String {
    let mut out = format!(
        "CALL {}  {}  ({} participant{})\n",
        safe(call.room_id().as_str()),
        safe(call.slot_id()),
        participants.len(),
        if participants.len() == 1 { "" } else { "s" }
    );
    let user_width = participants
        .iter()
        .map(|p| safe(p.user_id.as_str()).chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    let device_width = participants
        .iter()
        .map(|p| safe(p.device_id.as_str()).chars().count())
        .max()
        .unwrap_or(6)
        .clamp(6, 20);
    out.push_str(&format!(
        "  {:user_width$}  {:device_width$}  {:MEMBER_WIDTH$}  {:TRANSPORT_WIDTH$}  {:>9}  {:>9}\n",
        "USER", "DEVICE", "MEMBER", "TRANSPORT", "JOINED", "EXPIRES"
    ));
    for p in participants.iter() {
        let transport = p
            .own_transport()
            .map_or_else(|| "(none)".to_owned(), transport_text);
        let flag = if p.suspicious { "  suspicious" } else { "" };
        out.push_str(&format!(
            "  {:user_width$}  {:device_width$}  {:MEMBER_WIDTH$}  {:TRANSPORT_WIDTH$}  {:>9}  {:>9}{flag}\n",
            short(p.user_id.as_str(), user_width),
            short(p.device_id.as_str(), device_width),
            short(&p.member_id, MEMBER_WIDTH),
            short(&transport, TRANSPORT_WIDTH),
            format!("{} ago", age(p.created_ts)),
            until(p.expires_wall_ms),
        ));
    }
    out
}

fn transport_text(transport: &Transport) -> String {
    match transport {
        Transport::LiveKit { service_url, .. } => service_url.clone(),
        other => other.transport_type().to_owned(),
    }
}

fn format_name(format: MembershipFormat) -> &'static str {
    match format {
        MembershipFormat::Msc4143 => "msc4143",
        MembershipFormat::JsSdk => "js-sdk",
        MembershipFormat::LegacyState => "legacy",
        _ => "other",
    }
}

/// A stable, machine-readable name for a leave reason.
fn left_reason(reason: &LeftReason) -> &'static str {
    match reason {
        LeftReason::LeaveEvent => "leave_event",
        LeftReason::DelayedLeaveFired => "delayed_leave_fired",
        LeftReason::Expired => "expired",
        LeftReason::Redacted => "redacted",
        LeftReason::SenderLeftRoom => "sender_left_room",
        LeftReason::SenderIgnored => "sender_ignored",
        LeftReason::Evicted => "evicted",
        LeftReason::RoomForgotten => "room_forgotten",
        LeftReason::Superseded => "superseded",
        LeftReason::Rejected(_) => "rejected",
        LeftReason::SlotClosed => "slot_closed",
        _ => "other",
    }
}

fn left_reason_text(reason: &LeftReason) -> String {
    match reason {
        LeftReason::LeaveEvent => {
            "leave event (explicit, or another device's delayed leave)".into()
        }
        LeftReason::DelayedLeaveFired => "our delayed leave fired".into(),
        LeftReason::Rejected(why) => format!("replaced by an invalid event ({why})"),
        other => left_reason(other).replace('_', " "),
    }
}

/// `text` made safe for a terminal (it is a room member's), cut to `width` characters with an
/// ellipsis.
fn short(text: &str, width: usize) -> String {
    let text = safe(text);
    if text.chars().count() <= width {
        return text.into_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How long ago `ts_ms` was.
fn age(ts_ms: u64) -> String {
    human(now_ms().saturating_sub(ts_ms))
}

/// How long until `ts_ms`.
fn until(ts_ms: u64) -> String {
    let now = now_ms();
    if ts_ms <= now {
        "now".to_owned()
    } else {
        format!("in {}", human(ts_ms - now))
    }
}

fn human(ms: u64) -> String {
    let seconds = ms / 1_000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3_600, seconds / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::{owned_room_id, owned_user_id};
    use matrix_sdk_rtc::{Cap, Diagnostic, Rejection};

    use super::{
        diagnostic_json, diagnostic_line, diagnostics_missed_json, resync_json, resync_line,
    };

    #[test]
    fn resync_and_missed_markers() {
        let marker = resync_json(1_500, 2);
        assert_eq!(marker["event"], "resync");
        assert_eq!(marker["missed"], 1_500);
        assert_eq!(marker["active_calls"], 2);
        assert!(marker["ts"].is_u64());
        assert_eq!(
            resync_line(1_500, 1),
            "fell behind: missed 1500 changes; catching up with the current state (1 active call)"
        );
        let missed = diagnostics_missed_json(7);
        assert_eq!(missed["event"], "diagnostics_missed");
        assert_eq!(missed["missed"], 7);
    }

    #[test]
    fn capped_and_malformed_diagnostics() {
        let capped = Diagnostic::Capped {
            room_id: owned_room_id!("!room:example.org"),
            sender: owned_user_id!("@flood:example.org"),
            cap: Cap::ParkedPerSender,
            dropped: 100,
        };
        let object = diagnostic_json(&capped);
        assert_eq!(object["event"], "rejected");
        assert_eq!(object["layer"], "capped");
        assert_eq!(object["room_id"], "!room:example.org");
        assert_eq!(object["sender"], "@flood:example.org");
        assert_eq!(object["cap"], "parked_per_sender");
        assert_eq!(object["dropped"], 100);
        assert_eq!(object["event_id"], serde_json::Value::Null);
        assert_eq!(
            diagnostic_line(&capped),
            "capped: the parked per sender cap dropped 100 of this sender's events so far: \
             (no event id) from @flood:example.org in !room:example.org"
        );

        let whole = Diagnostic::MalformedBatch {
            room: None,
            rejection: Rejection::NotAnObject,
        };
        let object = diagnostic_json(&whole);
        assert_eq!(object["layer"], "malformed");
        assert_eq!(object["room_id"], serde_json::Value::Null);
        assert!(object.get("cap").is_none());
        assert_eq!(
            diagnostic_line(&whole),
            "malformed: unreadable part of a response: not a json object: (no event id) in \
             (the whole response)"
        );
        let one_room = Diagnostic::MalformedBatch {
            room: Some("!bad:example.org".to_owned()),
            rejection: Rejection::NotAnObject,
        };
        assert_eq!(diagnostic_json(&one_room)["room_id"], "!bad:example.org");
    }
}
