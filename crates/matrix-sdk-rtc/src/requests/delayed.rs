//! Delayed events (MSC4140): ids, management actions, the forms of scheduling and management
//! we try and the one we learnt, the list of our scheduled events, and the limits the server
//! advertises (docs/protocol.md §6).

use std::sync::atomic::{AtomicU8, Ordering};

#[cfg(test)]
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use serde_json::Value;
#[cfg(test)]
use serde_json::value::RawValue;
use tracing::warn;

use super::{endpoint::endpoint, wire};

endpoint!(
    /// `PUT /_matrix/client/v3/rooms/{room_id}/delayed_event/{event_type}/{txn_id}`.
    DelayedEventEndpoint: PUT wire::DELAYED_EVENT_PATH => wire::SendResponse
);
endpoint!(
    /// `PUT .../unstable/org.matrix.msc4140/rooms/{room_id}/delayed_event/{event_type}/{txn_id}`.
    DelayedEventUnstableEndpoint: PUT wire::DELAYED_EVENT_PATH_UNSTABLE => wire::SendResponse
);
endpoint!(
    /// `POST /_matrix/client/v1/delayed_events/{delay_id}/{action}` with `{}`.
    DelayedActionStableEndpoint: POST wire::DELAYED_ACTION_PATH_STABLE => wire::IgnoredResponse
);
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

/// Which delayed events a server's `/versions` advertises (docs/protocol.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Advertised {
    /// Neither flag: a delay parameter would be ignored and the event sent at once.
    None,
    /// `org.matrix.msc4140`: the unstable forms.
    Unstable,
    /// `org.matrix.msc4140.stable` (with or without the unstable flag): the merged forms first.
    Stable,
}

/// One way of scheduling a delayed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScheduleForm {
    /// `PUT /_matrix/client/v3/rooms/{room}/delayed_event/{type}/{txn}` (merged MSC4140).
    Dedicated,
    /// The same under `unstable/org.matrix.msc4140`.
    DedicatedUnstable,
    /// `PUT .../send/{type}/{txn}?org.matrix.msc4140.delay=` (what Synapse 1.163.2 serves).
    QueryParameter,
}

impl ScheduleForm {
    const ALL: [Self; 3] = [
        Self::Dedicated,
        Self::DedicatedUnstable,
        Self::QueryParameter,
    ];

    /// The forms to try, in order, on a server advertising `advertised`. Nothing on a server
    /// without delayed events: never the query parameter there (it would send at once), and
    /// no dedicated endpoint is advertised either.
    pub(crate) fn order(advertised: Advertised) -> &'static [Self] {
        match advertised {
            Advertised::None => &[],
            Advertised::Unstable => &Self::ALL[1..],
            Advertised::Stable => &Self::ALL,
        }
    }
}

/// One way of managing (restarting, cancelling, sending) a delayed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ManagementForm {
    /// `POST /_matrix/client/v1/delayed_events/{id}/{action}` (merged MSC4140).
    StablePath,
    /// `POST .../unstable/org.matrix.msc4140/delayed_events/{id}/{action}`.
    UnstablePath,
    /// `POST .../unstable/org.matrix.msc4140/delayed_events/{id}` with `{"action": ...}`.
    UnstableBody,
}

impl ManagementForm {
    const ALL: [Self; 3] = [Self::StablePath, Self::UnstablePath, Self::UnstableBody];

    /// The forms to try, in order, whatever `/versions` says: the v1 path of the merged MSC
    /// first (a server may serve it under a spec version we do not know yet), then the
    /// unstable per-action path, then the body form. A form the server does not serve is
    /// answered `M_UNRECOGNIZED` without acting, so probing is safe, and the form that worked
    /// is tried first from then on: one extra request per client, not per heartbeat.
    pub(crate) fn order() -> &'static [Self] {
        &Self::ALL
    }
}

/// What one client knows about a server's delayed events, shared by the clones of
/// [`HomeserverApi`](super::HomeserverApi): what `/versions` advertises, and the scheduling and
/// management forms that worked (tried first next time).
#[derive(Debug, Default)]
pub(crate) struct DelayedForms {
    /// 0: unknown; else 1 + the index of the [`Advertised`] value.
    advertised: AtomicU8,
    /// 0: none learnt; else 1 + the index in [`ScheduleForm::ALL`].
    schedule: AtomicU8,
    /// 0: none learnt; else 1 + the index in [`ManagementForm::ALL`].
    management: AtomicU8,
}

impl DelayedForms {
    pub(crate) fn advertised(&self) -> Option<Advertised> {
        match self.advertised.load(Ordering::Relaxed) {
            1 => Some(Advertised::None),
            2 => Some(Advertised::Unstable),
            3 => Some(Advertised::Stable),
            _ => None,
        }
    }

    pub(crate) fn set_advertised(&self, advertised: Advertised) {
        let value = match advertised {
            Advertised::None => 1,
            Advertised::Unstable => 2,
            Advertised::Stable => 3,
        };
        self.advertised.store(value, Ordering::Relaxed);
    }

    /// The forms of `order`, starting with the one learnt (if it is among them), then the
    /// others in order: a server that stops serving the learnt form still gets every form.
    pub(crate) fn schedule_order(&self, order: &[ScheduleForm]) -> Vec<ScheduleForm> {
        learnt_first(order, learnt(&self.schedule, &ScheduleForm::ALL))
    }

    pub(crate) fn management_order(&self, order: &[ManagementForm]) -> Vec<ManagementForm> {
        learnt_first(order, learnt(&self.management, &ManagementForm::ALL))
    }

    pub(crate) fn learn_schedule(&self, form: ScheduleForm) {
        store(&self.schedule, &ScheduleForm::ALL, form);
    }

    pub(crate) fn learn_management(&self, form: ManagementForm) {
        store(&self.management, &ManagementForm::ALL, form);
    }

    #[cfg(test)]
    pub(crate) fn learnt_schedule(&self) -> Option<ScheduleForm> {
        learnt(&self.schedule, &ScheduleForm::ALL)
    }

    #[cfg(test)]
    pub(crate) fn learnt_management(&self) -> Option<ManagementForm> {
        learnt(&self.management, &ManagementForm::ALL)
    }
}

fn learnt<T: Copy>(slot: &AtomicU8, all: &[T]) -> Option<T> {
    let index = usize::from(slot.load(Ordering::Relaxed)).checked_sub(1)?;
    all.get(index).copied()
}

fn store<T: PartialEq>(slot: &AtomicU8, all: &[T], form: T) {
    if let Some(index) = all.iter().position(|f| *f == form) {
        // At most three forms: the index always fits.
        slot.store(u8::try_from(index + 1).unwrap_or(0), Ordering::Relaxed);
    }
}

fn learnt_first<T: Copy + PartialEq>(order: &[T], first: Option<T>) -> Vec<T> {
    let first = first.filter(|first| order.contains(first));
    first
        .into_iter()
        .chain(order.iter().copied().filter(|f| Some(*f) != first))
        .collect()
}

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

impl DelayedEventsLimits {
    /// A limit of 0 turns the feature off: no delay, or no event, is allowed (Synapse 1.163.2
    /// advertises `max_delay_ms: 0` when delayed events are disabled, its stock setting).
    pub(crate) fn disabled(&self) -> bool {
        self.max_delay_ms == Some(0) || self.max_scheduled == Some(0)
    }
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

/// Reads the delayed-events capability out of the raw capabilities, under its stable name
/// (`m.delayed_events`) or else its unstable one (`org.matrix.msc4140.delayed_events`, what
/// Synapse 1.163.2 serves).
pub(crate) fn parse_limits(response: &wire::CapabilitiesResponse) -> DelayedEventsLimits {
    let Some(raw) = response
        .capabilities
        .get(wire::DELAYED_EVENTS_CAPABILITY_STABLE)
        .or_else(|| response.capabilities.get(wire::DELAYED_EVENTS_CAPABILITY))
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
    fn both_capability_names_and_zero_means_disabled() {
        let parse =
            |json: &str| parse_limits(&serde_json::from_str::<CapabilitiesResponse>(json).unwrap());
        // Synapse 1.163.2 with delayed events off (its stock configuration).
        let off = parse(
            r#"{"capabilities":{"org.matrix.msc4140.delayed_events":{"max_delay_ms":0,"max_scheduled":100}}}"#,
        );
        assert!(off.advertised && off.disabled());
        assert!(parse(r#"{"capabilities":{"m.delayed_events":{"max_scheduled":0}}}"#).disabled());
        // The stable name wins when a server serves both.
        let both = parse(
            r#"{"capabilities":{"m.delayed_events":{"max_delay_ms":30000},
                "org.matrix.msc4140.delayed_events":{"max_delay_ms":0}}}"#,
        );
        assert_eq!(both.max_delay_ms, Some(30_000));
        assert!(!both.disabled());
        // No limits, or no capability at all: not disabled.
        assert!(!parse(r#"{"capabilities":{"m.delayed_events":{}}}"#).disabled());
        assert!(!parse(r#"{"capabilities":{}}"#).disabled());
    }

    #[test]
    fn form_orders() {
        use super::{Advertised, DelayedForms, ManagementForm as M, ScheduleForm as S};
        assert!(S::order(Advertised::None).is_empty());
        assert_eq!(
            S::order(Advertised::Unstable),
            [S::DedicatedUnstable, S::QueryParameter]
        );
        assert_eq!(
            S::order(Advertised::Stable),
            [S::Dedicated, S::DedicatedUnstable, S::QueryParameter]
        );
        assert_eq!(
            M::order(),
            [M::StablePath, M::UnstablePath, M::UnstableBody]
        );

        // The learnt form goes first, the others keep their order.
        let forms = DelayedForms::default();
        assert_eq!(forms.advertised(), None);
        forms.set_advertised(Advertised::Stable);
        assert_eq!(forms.advertised(), Some(Advertised::Stable));
        forms.learn_management(M::UnstablePath);
        assert_eq!(
            forms.management_order(M::order()),
            [M::UnstablePath, M::StablePath, M::UnstableBody]
        );
        forms.learn_schedule(S::Dedicated);
        // A learnt form the server no longer advertises is not tried.
        assert_eq!(
            forms.schedule_order(S::order(Advertised::Unstable)),
            [S::DedicatedUnstable, S::QueryParameter]
        );
        assert_eq!(forms.learnt_schedule(), Some(S::Dedicated));
        assert_eq!(forms.learnt_management(), Some(M::UnstablePath));
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
