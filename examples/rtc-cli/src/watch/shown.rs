//! What the watcher has shown: the calls and their participants, as its output told them. When
//! the session-change stream says the watcher fell behind, [`Shown::resync`] compares that
//! with the current state and gives the lines that make the output true again.
use std::{
    collections::{BTreeMap, btree_map::Entry},
    sync::Arc,
};

use matrix_sdk::ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId};
use matrix_sdk_rtc::{CallId, Participant, SessionChange};

/// One call: `(room, slot)`.
type Call = (OwnedRoomId, String);

fn call_of(participant: &Participant) -> Call {
    (participant.room_id.clone(), participant.slot_id.clone())
}

/// One participant of a call: `(user, device, member ID)`, as the library keys them.
type Member = (OwnedUserId, OwnedDeviceId, String);

fn member(participant: &Participant) -> Member {
    (
        participant.user_id.clone(),
        participant.device_id.clone(),
        participant.member_id.clone(),
    )
}

/// What to show to bring the output in line with the current state after a resync.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// A change the watcher did not show: a call started or ended, a participant joined or
    /// was updated.
    Change(SessionChange),
    /// A participant the watcher showed is not in the current state: it left while the
    /// watcher was behind (why is unknown).
    LeftOnResync(Arc<Participant>),
}

/// The calls shown as active, each with the participants shown in it.
#[derive(Debug, Default)]
pub(super) struct Shown {
    calls: BTreeMap<Call, BTreeMap<Member, Arc<Participant>>>,
}

impl Shown {
    /// Records a change that was shown.
    pub(super) fn apply(&mut self, change: &SessionChange) {
        match change {
            SessionChange::SessionStarted { room_id, slot_id } => {
                self.calls
                    .entry((room_id.clone(), slot_id.clone()))
                    .or_default();
            }
            SessionChange::SessionEnded { room_id, slot_id } => {
                self.calls.remove(&(room_id.clone(), slot_id.clone()));
            }
            SessionChange::Joined(participant) => self.insert(participant),
            SessionChange::Updated { old, new } => {
                if let Some(members) = self.calls.get_mut(&call_of(old)) {
                    members.remove(&member(old));
                }
                self.insert(new);
            }
            SessionChange::Left { participant, .. } => {
                if let Some(members) = self.calls.get_mut(&call_of(participant)) {
                    members.remove(&member(participant));
                }
            }
            _ => {}
        }
    }

    fn insert(&mut self, participant: &Arc<Participant>) {
        self.calls
            .entry(call_of(participant))
            .or_default()
            .insert(member(participant), participant.clone());
    }

    /// Replaces what was shown with `now` (every active call with its participants), and
    /// returns what to show for that: first the participants that are gone (and the calls
    /// that ended), then the calls that started and the participants that joined or changed.
    pub(super) fn resync(
        &mut self,
        now: impl IntoIterator<Item = (CallId, Vec<Arc<Participant>>)>,
    ) -> Vec<Step> {
        let now: BTreeMap<Call, BTreeMap<Member, Arc<Participant>>> = now
            .into_iter()
            .map(|(call, participants)| {
                let members = participants.into_iter().map(|p| (member(&p), p)).collect();
                (
                    (call.room_id().to_owned(), call.slot_id().to_owned()),
                    members,
                )
            })
            .collect();
        let mut steps = Vec::new();
        for (call, members) in &self.calls {
            let current = now.get(call);
            for (key, participant) in members {
                if current.is_none_or(|current| !current.contains_key(key)) {
                    steps.push(Step::LeftOnResync(participant.clone()));
                }
            }
            if current.is_none() {
                steps.push(Step::Change(SessionChange::SessionEnded {
                    room_id: call.0.clone(),
                    slot_id: call.1.clone(),
                }));
            }
        }
        for (call, members) in &now {
            let before = match self.calls.entry(call.clone()) {
                Entry::Occupied(before) => before.remove(),
                Entry::Vacant(_) => {
                    steps.push(Step::Change(SessionChange::SessionStarted {
                        room_id: call.0.clone(),
                        slot_id: call.1.clone(),
                    }));
                    BTreeMap::new()
                }
            };
            for (key, participant) in members {
                match before.get(key) {
                    None => steps.push(Step::Change(SessionChange::Joined(participant.clone()))),
                    Some(old) if old != participant => {
                        steps.push(Step::Change(SessionChange::Updated {
                            old: old.clone(),
                            new: participant.clone(),
                        }));
                    }
                    Some(_) => {}
                }
            }
        }
        self.calls = now;
        steps
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc, time::Instant};

    use matrix_sdk::ruma::{RoomId, room_id};
    use matrix_sdk_rtc::{CallId, Limits, OfflineIngest, Participant, Receipt, SessionChange};
    use serde_json::{Value, json};

    use super::{Shown, Step};

    const NOW_MS: u64 = 1_795_668_600_000;
    const ROOM: &str = "m.call#ROOM";

    /// One membership: room, slot, user (device `DEV`), member ID, event ID.
    type Member<'a> = (&'a RoomId, &'a str, &'a str, &'a str, &'a str);

    /// Every active call with its participants, as the library's offline path reads these
    /// js-sdk memberships.
    fn state(members: &[Member<'_>]) -> Vec<(CallId, Vec<Arc<Participant>>)> {
        let mut rooms: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (room, slot, user, member, event) in members {
            rooms.entry(room.to_string()).or_default().push(json!({
                "type": "org.matrix.msc4143.rtc.member",
                "event_id": event,
                "sender": user,
                "origin_server_ts": NOW_MS - 1_000,
                "msc4354_sticky": { "duration_ms": 3_600_000 },
                "unsigned": { "msc4354_sticky_duration_ttl_ms": 3_599_000 },
                "content": {
                    "application": { "type": "m.call" },
                    "slot_id": slot,
                    "member": { "id": member, "user_id": user, "device_id": "DEV" },
                    "msc4354_sticky_key": member,
                    "rtc_transports": [{ "type": "livekit", "livekit_service_url": "https://lk.invalid" }],
                    "versions": [],
                },
            }));
        }
        let rooms: serde_json::Map<String, Value> = rooms
            .into_iter()
            .map(|(room, events)| (room, json!({ "events": events })))
            .collect();
        let response = json!({ "rooms": rooms, "next_batch": "sticky_1" });
        let mut ingest = OfflineIngest::new(Limits::default());
        let receipt = Receipt {
            instant: Instant::now(),
            wall_ms: NOW_MS,
        };
        let stats = ingest
            .ingest_response(&response.to_string(), receipt)
            .expect("a response object");
        assert_eq!(stats.rejected, 0, "{:?}", ingest.take_diagnostics());
        ingest
            .active_calls()
            .into_iter()
            .map(|call| {
                let participants = ingest.call(&call).participants().into_iter().collect();
                (call, participants)
            })
            .collect()
    }

    /// Each step as `(what, call or user)`, for comparing.
    fn described(steps: &[Step]) -> Vec<(&'static str, String)> {
        steps
            .iter()
            .map(|step| match step {
                Step::LeftOnResync(p) => ("left", p.user_id.to_string()),
                Step::Change(SessionChange::Joined(p)) => ("joined", p.user_id.to_string()),
                Step::Change(SessionChange::Updated { new, .. }) => {
                    ("updated", new.user_id.to_string())
                }
                Step::Change(SessionChange::SessionStarted { room_id, slot_id }) => {
                    ("call_started", format!("{room_id} {slot_id}"))
                }
                Step::Change(SessionChange::SessionEnded { room_id, slot_id }) => {
                    ("call_ended", format!("{room_id} {slot_id}"))
                }
                Step::Change(other) => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_resync_tells_who_left_joined_and_changed_and_which_calls_ended_and_started() {
        let (x, y, z) = (
            room_id!("!x:example.org"),
            room_id!("!y:example.org"),
            room_id!("!z:example.org"),
        );
        // What the watcher showed before it fell behind: alice and bob in x, erin in z.
        let mut shown = Shown::default();
        for (call, participants) in state(&[
            (x, ROOM, "@alice:example.org", "a1", "$a1"),
            (x, ROOM, "@bob:example.org", "b1", "$b1"),
            (z, ROOM, "@erin:example.org", "e1", "$e1"),
        ]) {
            shown.apply(&SessionChange::SessionStarted {
                room_id: call.room_id().to_owned(),
                slot_id: call.slot_id().to_owned(),
            });
            for participant in participants {
                shown.apply(&SessionChange::Joined(participant));
            }
        }
        // Now: alice refreshed (a new event), bob left, carol joined x; z ended; dave is in y.
        let now = state(&[
            (x, ROOM, "@alice:example.org", "a1", "$a2"),
            (x, ROOM, "@carol:example.org", "c1", "$c1"),
            (y, ROOM, "@dave:example.org", "d1", "$d1"),
        ]);
        let steps = shown.resync(now.clone());
        let call = |room: &RoomId| format!("{room} {ROOM}");
        assert_eq!(
            described(&steps),
            vec![
                ("left", "@bob:example.org".to_owned()),
                ("left", "@erin:example.org".to_owned()),
                ("call_ended", call(z)),
                ("updated", "@alice:example.org".to_owned()),
                ("joined", "@carol:example.org".to_owned()),
                ("call_started", call(y)),
                ("joined", "@dave:example.org".to_owned()),
            ]
        );
        // The same state again: nothing to show.
        assert!(shown.resync(now).is_empty());
        // Changes apply on top of the resync.
        let carol = state(&[(x, ROOM, "@carol:example.org", "c1", "$c1")]);
        shown.apply(&SessionChange::Left {
            participant: carol[0].1[0].clone(),
            reason: matrix_sdk_rtc::LeftReason::LeaveEvent,
        });
        let steps = shown.resync(state(&[
            (x, ROOM, "@alice:example.org", "a1", "$a2"),
            (y, ROOM, "@dave:example.org", "d1", "$d1"),
        ]));
        assert!(steps.is_empty(), "{:?}", described(&steps));
    }

    #[test]
    fn a_participant_gone_on_resync_is_shown_as_left_with_reason_resync() {
        let x = room_id!("!x:example.org");
        let alice = state(&[(x, ROOM, "@alice:example.org", "a1", "$a1")])
            .remove(0)
            .1
            .remove(0);
        let object = crate::watch::format::left_on_resync_json(&alice);
        assert_eq!(object["event"], "left");
        assert_eq!(object["reason"], "resync");
        assert_eq!(object["user_id"], "@alice:example.org");
        assert_eq!(object["device_id"], "DEV");
        assert_eq!(object["member_id"], "a1");
        assert_eq!(object["room_id"], "!x:example.org");
        assert_eq!(object["slot_id"], ROOM);
        assert_eq!(object["event_id"], "$a1");
        assert!(
            crate::watch::format::left_on_resync_line(&alice)
                .starts_with("left: @alice:example.org (DEV), reason: resync")
        );
    }

    #[test]
    fn a_resync_into_nothing_ends_every_shown_call() {
        let x = room_id!("!x:example.org");
        let mut shown = Shown::default();
        shown.apply(&SessionChange::SessionStarted {
            room_id: x.to_owned(),
            slot_id: ROOM.to_owned(),
        });
        for (_, participants) in state(&[(x, ROOM, "@alice:example.org", "a1", "$a1")]) {
            shown.apply(&SessionChange::Joined(participants[0].clone()));
        }
        let steps = shown.resync(Vec::new());
        assert_eq!(
            described(&steps),
            vec![
                ("left", "@alice:example.org".to_owned()),
                ("call_ended", format!("{x} {ROOM}")),
            ]
        );
    }
}
