//! Delayed events (MSC4140): ids, management actions, the list of our scheduled events, and
//! the limits the server advertises (docs/protocol.md §6).

#[cfg(test)]
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use serde_json::Value;
#[cfg(test)]
use serde_json::value::RawValue;
use tracing::warn;

use super::{endpoint::endpoint, wire};

endpoint!(
    /// `POST .../delayed_events/{delay_id}/{action}` with `{}`.
    DelayedActionEndpoint: POST wire::DELAYED_ACTION_PATH => wire::IgnoredResponse
);
endpoint!(
    /// `POST .../delayed_events/{delay_id}` with `{"action": ...}`.
    DelayedActionBodyEndpoint: POST wire::DELAYED_ACTION_BODY_PATH => wire::IgnoredResponse
);
#[cfg(test)]
endpoint!(
    /// `GET .../delayed_events`.
    DelayedListEndpoint: GET wire::DELAYED_LIST_PATH => wire::DelayedListResponse
);

/// What to do with a scheduled delayed event: the machine's type.
pub(crate) use matrix_rtc_machine::DelayedAction as DelayedEventAction;
/// The one delay-id type of the workspace (a secret: its `Debug` shows none of it).
pub(crate) use matrix_rtc_membership::DelayId;

/// The management path segment or body value of an action.
pub(crate) fn action_wire(action: DelayedEventAction) -> &'static str {
    match action {
        DelayedEventAction::Restart => wire::ACTION_RESTART,
        DelayedEventAction::Cancel => wire::ACTION_CANCEL,
        DelayedEventAction::Send => wire::ACTION_SEND,
    }
}

/// One of our scheduled delayed events, as listed by the server (only the tests list them).
#[cfg(test)]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub(crate) struct DelayedEventInfo {
    /// Its id.
    pub(crate) delay_id: DelayId,
    /// The room it will be sent to.
    pub(crate) room_id: OwnedRoomId,
    /// The event type.
    pub(crate) event_type: String,
    /// The state key, for a delayed state event.
    pub(crate) state_key: Option<String>,
    /// The content that will be sent, as the server holds it.
    pub(crate) content: Option<Box<RawValue>>,
    /// The delay, in milliseconds (`delay_ms`, formerly `delay`).
    pub(crate) delay_ms: Option<u64>,
    /// When the countdown last (re)started, in milliseconds since the Unix epoch
    /// (`scheduled_at`, `delayed_since_ts` or `running_since`).
    pub(crate) scheduled_at_ms: Option<u64>,
}

/// The delayed-events limits of the server's capabilities; a `None` field means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct DelayedEventsLimits {
    /// Whether the server advertised the capability at all.
    pub(crate) advertised: bool,
    /// Longest delay accepted, in milliseconds.
    pub(crate) max_delay_ms: Option<u64>,
    /// Most delayed events one user may have scheduled.
    pub(crate) max_scheduled: Option<u64>,
}

/// Reads the entries of a list answer, skipping (and logging) the unusable ones.
#[cfg(test)]
pub(crate) fn parse_delayed_list(response: wire::DelayedListResponse) -> Vec<DelayedEventInfo> {
    let entries = response
        .delayed_events
        .or(response.scheduled)
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(|raw| parse_delayed_entry(raw))
        .collect()
}

#[cfg(test)]
fn parse_delayed_entry(raw: &RawValue) -> Option<DelayedEventInfo> {
    let entry: wire::DelayedEventEntry = match serde_json::from_str(raw.get()) {
        Ok(entry) => entry,
        Err(error) => {
            warn!(%error, "skipping a malformed delayed event in the list");
            return None;
        }
    };
    let (Some(delay_id), Some(room_id), Some(event_type)) =
        (entry.delay_id, entry.room_id, entry.event_type)
    else {
        warn!("skipping a delayed event without delay_id, room_id or type");
        return None;
    };
    let room_id = match RoomId::parse(&room_id) {
        Ok(room_id) => room_id,
        Err(error) => {
            warn!(%error, "skipping a delayed event with an invalid room id");
            return None;
        }
    };
    let number = |value: Option<Value>| value.as_ref().and_then(Value::as_u64);
    Some(DelayedEventInfo {
        delay_id: DelayId::new(delay_id),
        room_id,
        event_type,
        state_key: entry.state_key,
        content: entry.content,
        delay_ms: number(entry.delay_ms).or_else(|| number(entry.delay)),
        scheduled_at_ms: number(entry.scheduled_at)
            .or_else(|| number(entry.delayed_since_ts))
            .or_else(|| number(entry.running_since)),
    })
}

/// Reads the delayed-events capability out of the raw capabilities, unstable name first.
pub(crate) fn parse_limits(response: &wire::CapabilitiesResponse) -> DelayedEventsLimits {
    let Some(raw) = response
        .capabilities
        .get(wire::DELAYED_EVENTS_CAPABILITY)
        .or_else(|| {
            response
                .capabilities
                .get(wire::DELAYED_EVENTS_CAPABILITY_STABLE)
        })
    else {
        return DelayedEventsLimits::default();
    };
    let capability: Value = serde_json::from_str(raw.get()).unwrap_or_default();
    let Some(capability) = capability.as_object() else {
        warn!("ignoring a delayed-events capability that is not an object");
        return DelayedEventsLimits {
            advertised: true,
            ..DelayedEventsLimits::default()
        };
    };
    let limit = |field: &str| capability.get(field).and_then(Value::as_u64);
    DelayedEventsLimits {
        advertised: true,
        max_delay_ms: limit(wire::CAPABILITY_MAX_DELAY_MS),
        max_scheduled: limit(wire::CAPABILITY_MAX_SCHEDULED),
    }
}

#[cfg(test)]
mod tests {
    use super::{DelayId, DelayedEventsLimits, parse_delayed_list, parse_limits};
    use crate::requests::wire::{CapabilitiesResponse, DelayedListResponse};

    #[test]
    fn delay_id_debug_is_redacted() {
        let id = DelayId::new("syd_OUoLItElgVdDJiYFIBzs");
        assert_eq!(format!("{id:?}"), "DelayId(<redacted>)");
        assert_eq!(id.as_str(), "syd_OUoLItElgVdDJiYFIBzs");
    }

    #[test]
    fn synapse_list_with_legacy_copies() {
        let json = r#"{"delayed_events":[{"delay_id":"syd_a","room_id":"!r:x","type":"m.x",
            "delay_ms":5000,"delayed_since_ts":1795673391005,"content":{"a":1},
            "delay":5000,"running_since":1795673391005}]}"#;
        let list = parse_delayed_list(serde_json::from_str::<DelayedListResponse>(json).unwrap());
        assert_eq!(list.len(), 1);
        let entry = &list[0];
        assert_eq!(entry.delay_id.as_str(), "syd_a");
        assert_eq!(entry.room_id.as_str(), "!r:x");
        assert_eq!(entry.event_type, "m.x");
        assert_eq!(entry.state_key, None);
        assert_eq!(entry.delay_ms, Some(5000));
        assert_eq!(entry.scheduled_at_ms, Some(1_795_673_391_005));
        assert_eq!(entry.content.as_ref().unwrap().get(), r#"{"a":1}"#);
    }

    #[test]
    fn every_field_name_variant() {
        let json = r#"{"delayed_events":[
            {"delay_id":"new","room_id":"!r","type":"t","delay_ms":1,"scheduled_at":10},
            {"delay_id":"old","room_id":"!r","type":"t","state_key":"","delay":2,"running_since":20}
        ]}"#;
        let list = parse_delayed_list(serde_json::from_str(json).unwrap());
        assert_eq!(list[0].delay_ms, Some(1));
        assert_eq!(list[0].scheduled_at_ms, Some(10));
        assert_eq!(list[1].delay_ms, Some(2));
        assert_eq!(list[1].scheduled_at_ms, Some(20));
        assert_eq!(list[1].state_key.as_deref(), Some(""));
    }

    #[test]
    fn older_scheduled_form() {
        let json = r#"{"scheduled":[{"delay_id":"a","room_id":"!r","type":"t"}],
            "finalised":[{"delay_id":"b","room_id":"!r","type":"t"}],"next_batch":"n"}"#;
        let list = parse_delayed_list(serde_json::from_str(json).unwrap());
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].delay_id.as_str(), "a");
    }

    #[test]
    fn bad_entries_cost_only_themselves() {
        let json = r#"{"delayed_events":[
            "junk", {"room_id":"!r","type":"t"}, {"delay_id":"x","room_id":"bad","type":"t"},
            {"delay_id":5,"room_id":"!r","type":"t"},
            {"delay_id":"ok","room_id":"!r","type":"t","delay_ms":"soon","content":"str"}
        ]}"#;
        let list = parse_delayed_list(serde_json::from_str(json).unwrap());
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].delay_id.as_str(), "ok");
        assert_eq!(list[0].delay_ms, None);
    }

    #[test]
    fn empty_list() {
        assert!(parse_delayed_list(serde_json::from_str("{}").unwrap()).is_empty());
    }

    #[test]
    fn limits() {
        let parse =
            |json: &str| parse_limits(&serde_json::from_str::<CapabilitiesResponse>(json).unwrap());
        assert_eq!(
            parse(
                r#"{"capabilities":{"m.room_versions":{"weird":true},
                "org.matrix.msc4140.delayed_events":{"max_delay_ms":86400000,"max_scheduled":1000}}}"#
            ),
            DelayedEventsLimits {
                advertised: true,
                max_delay_ms: Some(86_400_000),
                max_scheduled: Some(1000)
            }
        );
        assert_eq!(
            parse(r#"{"capabilities":{"m.delayed_events":{"max_delay_ms":5}}}"#),
            DelayedEventsLimits {
                advertised: true,
                max_delay_ms: Some(5),
                max_scheduled: None
            }
        );
        assert_eq!(
            parse(r#"{"capabilities":{}}"#),
            DelayedEventsLimits::default()
        );
        assert_eq!(
            parse(r#"{"capabilities":{"org.matrix.msc4140.delayed_events":[1]}}"#),
            DelayedEventsLimits {
                advertised: true,
                max_delay_ms: None,
                max_scheduled: None
            }
        );
        assert_eq!(
            parse(r#"{"capabilities":{"org.matrix.msc4140.delayed_events":{"max_delay_ms":-1}}}"#)
                .max_delay_ms,
            None
        );
    }
}
