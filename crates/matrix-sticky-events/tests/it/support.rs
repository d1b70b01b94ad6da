//! Helpers shared by the test modules: a virtual clock, event JSON builders, views.
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use matrix_sticky_events::{
    Change, MapKey, Parsed, Receipt, Rejection, StickyEvent, StickyMap, parse_event,
};
use ruma_common::{EventId, OwnedEventId, OwnedRoomId, RoomId};
use serde_json::{Value, json};

/// Wall-clock time of the virtual clock's origin (close to the bench workloads' timestamps).
pub(crate) const T0_WALL: u64 = 1_795_660_000_000;

/// One hour in ms.
pub(crate) const HOUR: u64 = 3_600_000;

/// A virtual clock: an origin instant and offsets in ms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    /// The instant `ms` after the origin.
    pub(crate) fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// A receipt `ms` after the origin (wall clock `T0_WALL + ms`).
    pub(crate) fn receipt(&self, ms: u64) -> Receipt {
        Receipt::new(self.at(ms), T0_WALL + ms)
    }
}

pub(crate) fn eid(id: &str) -> OwnedEventId {
    EventId::parse(id).expect("valid event id")
}

pub(crate) fn room(id: &str) -> OwnedRoomId {
    RoomId::parse(id).expect("valid room id")
}

/// The default test room.
pub(crate) fn room_a() -> OwnedRoomId {
    room("!a:example.org")
}

/// A sticky event of type `org.example.sticky` sent at `T0_WALL + ots_offset`, sticky for one
/// hour, with `sticky_key` (unstable name) when given and a `body`, and no remaining lifetime
/// (so the deadline falls back to `min(receipt, ots) + duration`).
pub(crate) fn event_json(id: &str, sender: &str, key: Option<&str>, ots_offset: i64) -> Value {
    let mut content = json!({ "body": id });
    if let Some(key) = key {
        content["msc4354_sticky_key"] = json!(key);
    }
    json!({
        "type": "org.example.sticky",
        "event_id": format!("${id}"),
        "sender": sender,
        "origin_server_ts": T0_WALL.checked_add_signed(ots_offset).expect("in range"),
        "msc4354_sticky": { "duration_ms": HOUR },
        "content": content,
    })
}

/// Set `value` at the JSON pointer `path` (parents must exist).
pub(crate) fn set(event: &mut Value, path: &str, value: Value) {
    let (parent, field) = path.rsplit_once('/').expect("a pointer");
    let parent = if parent.is_empty() {
        &mut *event
    } else {
        event.pointer_mut(parent).expect("parent exists")
    };
    parent
        .as_object_mut()
        .expect("an object")
        .insert(field.to_owned(), value);
}

/// Remove the field at the JSON pointer `path`.
pub(crate) fn remove(event: &mut Value, path: &str) {
    let (parent, field) = path.rsplit_once('/').expect("a pointer");
    let parent = if parent.is_empty() {
        &mut *event
    } else {
        event.pointer_mut(parent).expect("parent exists")
    };
    parent.as_object_mut().expect("an object").remove(field);
}

/// Parse `event` as an event of the default room.
pub(crate) fn parse(event: &Value, receipt: Receipt) -> Result<Parsed, Rejection> {
    parse_event(&event.to_string(), &room_a(), receipt)
}

/// Parse `event`, which must be a plaintext sticky event.
pub(crate) fn sticky(event: &Value, receipt: Receipt) -> StickyEvent {
    match parse(event, receipt) {
        Ok(Parsed::Sticky(event)) => event,
        other => panic!("expected a sticky event, got {other:?}"),
    }
}

/// A sticky event built by [`event_json`] with a remaining lifetime of `ttl_ms`, received at
/// `recv_ms` on `clock`.
pub(crate) fn make(
    clock: &Clock,
    recv_ms: u64,
    id: &str,
    sender: &str,
    key: Option<&str>,
    ots_offset: i64,
    ttl_ms: u64,
) -> StickyEvent {
    let mut event = event_json(id, sender, key, ots_offset);
    event["unsigned"] = json!({ "msc4354_sticky_duration_ttl_ms": ttl_ms });
    sticky(&event, clock.receipt(recv_ms))
}

/// What a reader sees: keyed winners by key, unkeyed entries by event ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ViewKey {
    Keyed(MapKey),
    Unkeyed(String),
}

pub(crate) fn view_key(event: &StickyEvent) -> ViewKey {
    match event.map_key() {
        Some(key) => ViewKey::Keyed(key),
        None => ViewKey::Unkeyed(event.meta.event_id.to_string()),
    }
}

/// The visible view of a map, as event IDs.
pub(crate) fn view_of(map: &StickyMap) -> BTreeMap<ViewKey, String> {
    map.iter()
        .map(|event| (view_key(event), event.meta.event_id.to_string()))
        .collect()
}

/// Apply changes to a view built from earlier changes; panics on an inconsistent change.
pub(crate) fn replay(view: &mut BTreeMap<ViewKey, Arc<StickyEvent>>, changes: &[Change]) {
    for change in changes {
        match change {
            Change::Added(new) => {
                let previous = view.insert(view_key(new), Arc::clone(new));
                assert!(previous.is_none(), "added over a visible entry: {change:?}");
            }
            Change::Replaced { old, new } => {
                assert_eq!(view_key(old), view_key(new), "replaced across keys");
                let previous = view
                    .insert(view_key(new), Arc::clone(new))
                    .expect("replaced an absent entry");
                assert!(
                    Arc::ptr_eq(&previous, old),
                    "replaced another entry than the visible one"
                );
            }
            Change::Removed { old, .. } => {
                let previous = view
                    .remove(&view_key(old))
                    .expect("removed an absent entry");
                assert!(
                    Arc::ptr_eq(&previous, old),
                    "removed another entry than the visible one"
                );
            }
        }
    }
}

/// A replayed view, as event IDs.
pub(crate) fn ids_of(view: &BTreeMap<ViewKey, Arc<StickyEvent>>) -> BTreeMap<ViewKey, String> {
    view.iter()
        .map(|(key, event)| (key.clone(), event.meta.event_id.to_string()))
        .collect()
}

/// Path of a file of the captured fixtures (the repository's `fixtures/`).
pub(crate) fn fixture_path(relative: &str) -> String {
    format!("{}/../../fixtures/{relative}", env!("CARGO_MANIFEST_DIR"))
}

/// Read a shared fixture.
pub(crate) fn fixture(relative: &str) -> String {
    let path = fixture_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Read a file of `tests/data`.
pub(crate) fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}
