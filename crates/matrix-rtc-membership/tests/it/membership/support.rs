//! Helpers: sticky events built by hand, member content in every format, fixtures.
use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use matrix_rtc_membership::{Diagnostic, LeftReason, Participant, RtcMembership, SessionChange};
use matrix_sticky_events::{Change, EventOrigin, Receipt, RemovalReason, StickyEvent, StickyMeta};
use ruma_common::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{Value, json, value::RawValue};

pub(crate) const MEMBER_TYPE: &str = "org.matrix.msc4143.rtc.member";
pub(crate) const LEGACY_TYPE: &str = "org.matrix.msc3401.call.member";
pub(crate) const ROOM_SLOT: &str = "m.call#ROOM";
pub(crate) const LK: &str = "https://lk.example.org";
/// A wall-clock "now" for tests (2026-11-26), in ms.
pub(crate) const NOW_MS: u64 = 1_795_668_000_000;
pub(crate) const HOUR_MS: u64 = 3_600_000;

/// One monotonic base instant per test binary; tests never sleep.
pub(crate) fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// A receipt `offset_ms` after the base, at wall time `NOW_MS + offset_ms`.
pub(crate) fn receipt(offset_ms: u64) -> Receipt {
    Receipt {
        instant: base() + Duration::from_millis(offset_ms),
        wall_ms: NOW_MS + offset_ms,
    }
}

pub(crate) fn room(id: &str) -> OwnedRoomId {
    OwnedRoomId::try_from(id).unwrap()
}

pub(crate) fn user(id: &str) -> OwnedUserId {
    OwnedUserId::try_from(id).unwrap()
}

pub(crate) fn device(id: &str) -> OwnedDeviceId {
    id.into()
}

pub(crate) fn event_id(id: &str) -> OwnedEventId {
    OwnedEventId::try_from(id).unwrap()
}

/// A sticky event as the map would report it. The sticky key and key-only-ness are read
/// from the content the way MSC4354 says (either key name; only key fields = key-only).
#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) room_id: OwnedRoomId,
    pub(crate) sender: OwnedUserId,
    pub(crate) event_id: OwnedEventId,
    pub(crate) ots: u64,
    pub(crate) event_type: String,
    pub(crate) content: String,
    pub(crate) origin: EventOrigin,
}

impl Ev {
    pub(crate) fn new(room_id: &RoomId, sender: &UserId, event_id: &str, content: &Value) -> Self {
        Self::raw(room_id, sender, event_id, &content.to_string())
    }

    /// Content given as raw JSON text (may be anything, even not an object).
    pub(crate) fn raw(room_id: &RoomId, sender: &UserId, event_id: &str, content: &str) -> Self {
        Self {
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            event_id: self::event_id(event_id),
            ots: NOW_MS,
            event_type: MEMBER_TYPE.to_owned(),
            content: content.to_owned(),
            origin: EventOrigin::Plaintext,
        }
    }

    pub(crate) fn ts(mut self, ots: u64) -> Self {
        self.ots = ots;
        self
    }

    pub(crate) fn event_type(mut self, event_type: &str) -> Self {
        self.event_type = event_type.to_owned();
        self
    }

    pub(crate) fn encrypted_by(mut self, device: Option<&str>) -> Self {
        self.origin = EventOrigin::Encrypted {
            sender_device: device.map(Into::into),
        };
        self
    }

    pub(crate) fn build(&self) -> Arc<StickyEvent> {
        let parsed: Option<serde_json::Map<String, Value>> =
            serde_json::from_str(&self.content).ok();
        let (sticky_key, key_only) = match &parsed {
            Some(object) => {
                let key = object
                    .get("msc4354_sticky_key")
                    .or_else(|| object.get("sticky_key"))
                    .and_then(Value::as_str)
                    .map(ToOwned::to_owned);
                let key_only = key.is_some()
                    && object
                        .keys()
                        .all(|k| k == "sticky_key" || k == "msc4354_sticky_key");
                (key, key_only)
            }
            None => (None, false),
        };
        Arc::new(StickyEvent {
            meta: StickyMeta {
                room_id: self.room_id.clone(),
                event_id: self.event_id.clone(),
                sender: self.sender.clone(),
                origin_server_ts: self.ots,
                duration_ms: HOUR_MS,
                expires_at: base() + Duration::from_millis(HOUR_MS),
                expires_wall_ms: self.ots + HOUR_MS,
            },
            event_type: self.event_type.clone(),
            sticky_key,
            key_only,
            content: RawValue::from_string(self.content.clone()).unwrap(),
            origin: self.origin.clone(),
        })
    }

    /// Forces the sticky key (for content whose key the map read differently).
    pub(crate) fn build_with_key(&self, key: &str) -> Arc<StickyEvent> {
        let mut event = (*self.build()).clone();
        event.sticky_key = Some(key.to_owned());
        Arc::new(event)
    }
}

pub(crate) fn added(event: &Arc<StickyEvent>) -> Change {
    Change::Added(event.clone())
}

pub(crate) fn replaced(old: &Arc<StickyEvent>, new: &Arc<StickyEvent>) -> Change {
    Change::Replaced {
        old: old.clone(),
        new: new.clone(),
    }
}

pub(crate) fn removed(old: &Arc<StickyEvent>, reason: RemovalReason) -> Change {
    Change::Removed {
        old: old.clone(),
        reason,
    }
}

/// js-sdk 43 join content (format B).
pub(crate) fn js43_join(user: &str, device: &str, member_id: &str) -> Value {
    json!({
        "slot_id": ROOM_SLOT,
        "application": {"type": "m.call"},
        "member": {"id": member_id, "user_id": user, "device_id": device},
        "transports": {"published": [{"type": "livekit", "livekit_service_url": LK}], "can_subscribe": ["livekit"]},
        "versions": [],
        "msc4354_sticky_key": member_id,
    })
}

/// js-sdk 39–42 join content (format B with `rtc_transports`).
pub(crate) fn js42_join(user: &str, device: &str, member_id: &str) -> Value {
    json!({
        "slot_id": ROOM_SLOT,
        "application": {"type": "m.call"},
        "member": {"id": member_id, "user_id": user, "device_id": device},
        "rtc_transports": [{"type": "livekit", "livekit_service_url": LK}],
        "versions": [],
        "msc4354_sticky_key": member_id,
    })
}

/// js-sdk 43 leave content.
pub(crate) fn js43_leave(member_id: &str) -> Value {
    json!({"msc4354_sticky_key": member_id, "slot_id": ROOM_SLOT})
}

/// Newest MSC4143 join content (format A).
pub(crate) fn a_join(member_id: &str, device: &str) -> Value {
    json!({
        "slot_id": ROOM_SLOT,
        "member": {"id": member_id, "membership": "join", "claimed_device_id": device},
        "application": {"type": "m.call"},
        "transports": {"published": [{"type": "livekit", "livekit_service_url": LK}], "can_subscribe": ["livekit"]},
        "sticky_key": member_id,
    })
}

/// Legacy per-device content (format C), the js-sdk shape.
pub(crate) fn legacy_join(device: &str, selection: &str, focus_url: &str) -> Value {
    json!({
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": device,
        "expires": 14_400_000,
        "focus_active": {"type": "livekit", "focus_selection": selection},
        "foci_preferred": [{"type": "livekit", "livekit_service_url": focus_url, "livekit_alias": "alias"}],
    })
}

/// A legacy state event as sync delivers it.
pub(crate) fn state_event(
    sender: &str,
    state_key: &str,
    event_id: &str,
    ots: u64,
    content: &Value,
) -> String {
    json!({
        "type": LEGACY_TYPE,
        "state_key": state_key,
        "sender": sender,
        "event_id": event_id,
        "origin_server_ts": ots,
        "content": content,
        "unsigned": {},
    })
    .to_string()
}

/// A model where the given users are joined to `room_id`.
pub(crate) fn model_with(room_id: &RoomId, users: &[&str]) -> RtcMembership {
    let mut model = RtcMembership::new();
    for u in users {
        let changes = model.handle_room_member(room_id, &user(u), true);
        assert!(changes.is_empty());
    }
    model
}

pub(crate) fn diagnostics(model: &mut RtcMembership) -> Vec<Diagnostic> {
    std::iter::from_fn(|| model.poll_diagnostic()).collect()
}

/// A compact, comparable form of a change list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum C {
    Started(String),
    Joined(String, String, String),
    Updated(String, String, String),
    Left(String, String, String, LeftReason),
    Ended(String),
}

fn ids(p: &Participant) -> (String, String, String) {
    (
        p.user_id.to_string(),
        p.device_id.to_string(),
        p.member_id.clone(),
    )
}

pub(crate) fn summary(changes: &[SessionChange]) -> Vec<C> {
    changes
        .iter()
        .map(|change| match change {
            SessionChange::SessionStarted { slot_id, .. } => C::Started(slot_id.clone()),
            SessionChange::Joined(p) => {
                let (u, d, m) = ids(p);
                C::Joined(u, d, m)
            }
            SessionChange::Updated { old, new } => {
                assert_eq!(ids(old).0, ids(new).0, "an update never changes the user");
                let (u, d, m) = ids(new);
                C::Updated(u, d, m)
            }
            SessionChange::Left {
                participant,
                reason,
            } => {
                let (u, d, m) = ids(participant);
                C::Left(u, d, m, reason.clone())
            }
            SessionChange::SessionEnded { slot_id, .. } => C::Ended(slot_id.clone()),
            other => panic!("unexpected change {other:?}"),
        })
        .collect()
}

pub(crate) fn joined(u: &str, d: &str, m: &str) -> C {
    C::Joined(u.to_owned(), d.to_owned(), m.to_owned())
}

pub(crate) fn updated(u: &str, d: &str, m: &str) -> C {
    C::Updated(u.to_owned(), d.to_owned(), m.to_owned())
}

pub(crate) fn left(u: &str, d: &str, m: &str, reason: LeftReason) -> C {
    C::Left(u.to_owned(), d.to_owned(), m.to_owned(), reason)
}

pub(crate) fn started() -> C {
    C::Started(ROOM_SLOT.to_owned())
}

pub(crate) fn ended() -> C {
    C::Ended(ROOM_SLOT.to_owned())
}

/// `(user, device, member id)` of the participants of the room call, in order.
pub(crate) fn roster(model: &RtcMembership, room_id: &RoomId) -> Vec<(String, String, String)> {
    model.participants(room_id, ROOM_SLOT).map(ids).collect()
}

/// Reads a fixture file from the repository's `fixtures/`.
pub(crate) fn fixture(path: &str) -> String {
    let full = format!("{}/../../fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("fixture {full}: {err}"))
}

pub(crate) fn fixture_json(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).unwrap()
}
