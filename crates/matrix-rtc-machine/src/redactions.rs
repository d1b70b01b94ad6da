//! Which `m.room.redaction`s of memberships count (`docs/protocol.md` §4.3, our rule).
//!
//! A homeserver delivers redactions it does not apply itself (a sender without the power to
//! redact another's event, arriving over federation), so the reader decides: a redaction counts
//! when its sender sent the redacted event, or when the room's `m.room.power_levels` give its
//! sender at least the `redact` level. Until a room's power levels are known, only a sender's
//! own redactions count. A redaction of an event not seen yet, from a sender without that
//! power, waits here until the event shows who sent it (bounded, and forgotten once the event
//! can no longer be live). Redacted copies (`unsigned.redacted_because`) are not judged here:
//! their homeserver has applied the redaction already.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    fmt,
    time::{Duration, Instant},
};

use matrix_sticky_events::Redactor;
use ruma_common::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::Deserialize;
use serde_json::Value;

/// The `redact` level when the power levels do not say.
const DEFAULT_REDACT_LEVEL: i64 = 50;

/// Redactions waiting for their event, at most; the oldest are forgotten first.
const MAX_WAITING: usize = 1024;

/// How long a redaction waits for its event: the longest sticky lifetime, plus a margin for
/// delivery delays.
const WAIT_FOR: Duration = Duration::from_secs(65 * 60);

/// Why a redaction of a membership did not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedactionRefusal {
    /// The room's power levels give the redaction's sender less than the `redact` level, and
    /// the redacted event is someone else's.
    NoPower,
    /// The room's power levels are not known (yet), and the redacted event is someone else's:
    /// without them, only a sender's own redactions count.
    PowerLevelsUnknown,
}

impl fmt::Display for RedactionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoPower => "its sender lacks the power to redact another's event",
            Self::PowerLevelsUnknown => {
                "the room's power levels are unknown and the event is another's"
            }
        })
    }
}

/// Who may redact another's event in one room.
#[derive(Debug, Default)]
struct RedactPower {
    /// Whether `users_default` reaches the `redact` level.
    by_default: bool,
    /// The users listed in `users` whose level decides otherwise than the default.
    exceptions: HashSet<OwnedUserId>,
}

impl RedactPower {
    fn can_redact(&self, user_id: &UserId) -> bool {
        self.by_default != self.exceptions.contains(user_id)
    }
}

/// What to do with an `m.room.redaction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It counts.
    Apply,
    /// It does not count.
    Refuse(RedactionRefusal),
    /// It counts only if the redacted event, not seen yet, turns out to be its sender's.
    Wait(RedactionRefusal),
}

/// A redaction waiting for its event.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    pub(crate) by: Redactor,
    /// Why it does not count unless the event is its sender's.
    pub(crate) refusal: RedactionRefusal,
}

/// The power levels of every room (as far as redactions need them) and the waiting
/// redactions.
#[derive(Debug, Default)]
pub(crate) struct RedactionRules {
    rooms: HashMap<OwnedRoomId, RedactPower>,
    /// By room and redacted event.
    waiting: HashMap<(OwnedRoomId, OwnedEventId), Vec<Waiting>>,
    /// In the order they started waiting, with when to forget them.
    order: VecDeque<(Instant, OwnedRoomId, OwnedEventId)>,
}

#[derive(Deserialize)]
struct PowerLevelsEvent<'a> {
    #[serde(borrow)]
    state_key: Option<&'a str>,
    content: Option<PowerLevelsContent>,
}

#[derive(Deserialize, Default)]
struct PowerLevelsContent {
    redact: Option<Value>,
    users_default: Option<Value>,
    users: Option<HashMap<String, Value>>,
}

/// A power level: an integer, or (in old room versions) a string holding one.
fn level(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str()?.trim().parse().ok())
}

impl RedactionRules {
    /// An `m.room.power_levels` state event of `room_id` (the raw event). Returns `false` when
    /// it is unreadable (it is then ignored and the previous levels stay).
    pub(crate) fn handle_power_levels(&mut self, room_id: &RoomId, raw: &str) -> bool {
        let Ok(event) = serde_json::from_str::<PowerLevelsEvent<'_>>(raw) else {
            return false;
        };
        if event.state_key != Some("") {
            return false;
        }
        let content = event.content.unwrap_or_default();
        let redact = content
            .redact
            .as_ref()
            .and_then(level)
            .unwrap_or(DEFAULT_REDACT_LEVEL);
        let users_default = content.users_default.as_ref().and_then(level).unwrap_or(0);
        let by_default = users_default >= redact;
        let exceptions = content
            .users
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(user, value)| {
                let can = level(&value)? >= redact;
                (can != by_default)
                    .then(|| OwnedUserId::try_from(user).ok())
                    .flatten()
            })
            .collect();
        self.rooms.insert(
            room_id.to_owned(),
            RedactPower {
                by_default,
                exceptions,
            },
        );
        true
    }

    /// Whether power levels of `room_id` are known.
    pub(crate) fn knows_power_levels(&self, room_id: &RoomId) -> bool {
        self.rooms.contains_key(room_id)
    }

    /// Whether the redaction `by` of an event of `target_sender` (`None`: not seen yet) in
    /// `room_id` counts.
    pub(crate) fn judge(
        &self,
        room_id: &RoomId,
        by: &Redactor,
        target_sender: Option<&UserId>,
    ) -> Verdict {
        if target_sender == Some(&*by.sender) {
            return Verdict::Apply;
        }
        let refusal = match self.rooms.get(room_id) {
            Some(power) if power.can_redact(&by.sender) => return Verdict::Apply,
            Some(_) => RedactionRefusal::NoPower,
            None => RedactionRefusal::PowerLevelsUnknown,
        };
        match target_sender {
            Some(_) => Verdict::Refuse(refusal),
            None => Verdict::Wait(refusal),
        }
    }

    /// Keeps the redaction `by` of `redacts` until that event arrives (or until it could no
    /// longer be live).
    pub(crate) fn wait(
        &mut self,
        room_id: &RoomId,
        redacts: &EventId,
        waiting: Waiting,
        now: Instant,
    ) {
        self.purge(now);
        while self.order.len() >= MAX_WAITING {
            self.forget_oldest();
        }
        let key = (room_id.to_owned(), redacts.to_owned());
        self.waiting.entry(key.clone()).or_default().push(waiting);
        self.order.push_back((now + WAIT_FOR, key.0, key.1));
    }

    /// The redactions waiting for `event_id` of `room_id`, which just arrived.
    pub(crate) fn take(
        &mut self,
        room_id: &RoomId,
        event_id: &EventId,
        now: Instant,
    ) -> Vec<Waiting> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        self.purge(now);
        self.waiting
            .remove(&(room_id.to_owned(), event_id.to_owned()))
            .unwrap_or_default()
    }

    /// We left `room_id`: its power levels and waiting redactions go.
    pub(crate) fn forget_room(&mut self, room_id: &RoomId) {
        self.rooms.remove(room_id);
        self.waiting.retain(|(room, _), _| **room != *room_id);
        self.order.retain(|(_, room, _)| **room != *room_id);
    }

    /// Redactions waiting for their event.
    #[cfg(test)]
    fn waiting_count(&self) -> usize {
        self.waiting.values().map(Vec::len).sum()
    }

    fn purge(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(at, _, _)| *at <= now) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((_, room_id, event_id)) = self.order.pop_front() else {
            return;
        };
        let key = (room_id, event_id);
        if let Some(list) = self.waiting.get_mut(&key) {
            // Entries of one event are pushed in order: the first is the oldest.
            if !list.is_empty() {
                list.remove(0);
            }
            if list.is_empty() {
                self.waiting.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ruma_common::{owned_event_id, owned_user_id, room_id};
    use serde_json::json;

    use super::*;

    fn by(sender: &str) -> Redactor {
        Redactor {
            event_id: owned_event_id!("$redaction"),
            sender: OwnedUserId::try_from(sender).expect("user id"),
        }
    }

    #[test]
    fn levels_from_users_and_defaults_decide() {
        let room = room_id!("!r:example.org");
        let mut rules = RedactionRules::default();
        let alice = owned_user_id!("@alice:example.org");
        // Without power levels: only one's own event.
        assert_eq!(
            rules.judge(room, &by("@mod:example.org"), Some(&alice)),
            Verdict::Refuse(RedactionRefusal::PowerLevelsUnknown)
        );
        assert_eq!(
            rules.judge(room, &by("@alice:example.org"), Some(&alice)),
            Verdict::Apply
        );
        let event = json!({
            "type": "m.room.power_levels", "state_key": "",
            "content": { "users": { "@mod:example.org": 50, "@old:example.org": "75",
                "@low:example.org": 10 } },
        });
        assert!(rules.handle_power_levels(room, &event.to_string()));
        assert_eq!(
            rules.judge(room, &by("@mod:example.org"), Some(&alice)),
            Verdict::Apply
        );
        assert_eq!(
            rules.judge(room, &by("@old:example.org"), None),
            Verdict::Apply
        );
        assert_eq!(
            rules.judge(room, &by("@low:example.org"), Some(&alice)),
            Verdict::Refuse(RedactionRefusal::NoPower)
        );
        assert_eq!(
            rules.judge(room, &by("@low:example.org"), None),
            Verdict::Wait(RedactionRefusal::NoPower)
        );
        // Everyone at the redact level by default, but one user listed below it.
        let event = json!({
            "type": "m.room.power_levels", "state_key": "",
            "content": { "users_default": 20, "redact": 20, "users": { "@low:example.org": 0 } },
        });
        assert!(rules.handle_power_levels(room, &event.to_string()));
        assert_eq!(
            rules.judge(room, &by("@bob:example.org"), Some(&alice)),
            Verdict::Apply
        );
        assert_eq!(
            rules.judge(room, &by("@low:example.org"), Some(&alice)),
            Verdict::Refuse(RedactionRefusal::NoPower)
        );
        // Not a room's power levels: ignored.
        assert!(!rules.handle_power_levels(room, r#"{"state_key":"x","content":{}}"#));
    }

    #[test]
    fn waiting_redactions_are_bounded_and_expire() {
        let room = room_id!("!r:example.org");
        let mut rules = RedactionRules::default();
        let now = Instant::now();
        for i in 0..MAX_WAITING + 10 {
            let event_id = OwnedEventId::try_from(format!("$e{i}")).expect("event id");
            let waiting = Waiting {
                by: by("@bob:example.org"),
                refusal: RedactionRefusal::NoPower,
            };
            rules.wait(room, &event_id, waiting, now);
        }
        assert_eq!(rules.waiting_count(), MAX_WAITING);
        // The oldest went first.
        assert!(rules.take(room, &owned_event_id!("$e0"), now).is_empty());
        assert_eq!(rules.take(room, &owned_event_id!("$e10"), now).len(), 1);
        // After the longest lifetime, nothing waits any more.
        assert!(
            rules
                .take(room, &owned_event_id!("$e11"), now + WAIT_FOR)
                .is_empty()
        );
        assert_eq!(rules.waiting_count(), 0);
    }
}
