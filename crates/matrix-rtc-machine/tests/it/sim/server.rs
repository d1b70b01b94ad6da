//! The simulated homeserver: rooms and their members, the event stream with sticky events
//! (MSC4354), delayed events (MSC4140), idempotent transactions, the side connection's
//! pages, and the truth of who is in each call.
//!
//! Times are in ms since the start of the run; the server's wall clock is [`WALL0_MS`] plus
//! that.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use matrix_rtc_machine::DelayedAction;
use matrix_rtc_membership::{DelayId, RequestOutcome, wire as rtc_wire};
use ruma_common::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

/// The server's wall clock at the start of every run (ms since the Unix epoch).
pub(crate) const WALL0_MS: u64 = 1_795_668_868_000;
/// The longest sticky lifetime a server honours.
pub(crate) const MAX_STICKY_MS: u64 = 3_600_000;

/// Who is in a call: user, device, member id.
pub(crate) type Member = (OwnedUserId, OwnedDeviceId, String);

/// How an encrypted event was encrypted (the fake cipher: the content travels in clear
/// inside the envelope, and only devices holding the session's key may read it).
#[derive(Debug, Clone)]
pub(crate) struct Cipher {
    pub(crate) session_id: String,
    pub(crate) device: OwnedDeviceId,
}

/// What a sticky event carries.
#[derive(Debug, Clone)]
pub(crate) struct Sticky {
    pub(crate) event_type: String,
    /// The duration as sent (served as sent; its effect is clamped to one hour).
    pub(crate) duration_ms: u64,
    /// The plaintext content.
    pub(crate) content: Value,
    /// Encrypted with this session (the envelope is what is served).
    pub(crate) cipher: Option<Cipher>,
    /// For a member event of the room call: its sticky key, and the member it joins (`None`
    /// for a leave).
    pub(crate) call: Option<CallEntry>,
}

#[derive(Debug, Clone)]
pub(crate) struct CallEntry {
    pub(crate) sticky_key: String,
    pub(crate) joins: Option<Member>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Sticky(Sticky),
    Redaction { redacts: OwnedEventId },
    Member { user: OwnedUserId, joined: bool },
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) room: OwnedRoomId,
    pub(crate) event_id: OwnedEventId,
    pub(crate) sender: OwnedUserId,
    /// `origin_server_ts` minus [`WALL0_MS`].
    pub(crate) ts: u64,
    pub(crate) kind: Kind,
    /// Redacted by this redaction, at this instant.
    pub(crate) redacted_by: Option<OwnedEventId>,
    pub(crate) redacted_at: Option<u64>,
    /// [`Event::fixed_json`], made once.
    prefix: String,
}

impl Event {
    pub(crate) fn sticky(&self) -> Option<&Sticky> {
        match &self.kind {
            Kind::Sticky(sticky) => Some(sticky),
            _ => None,
        }
    }

    /// When it stops being sticky (ms since the start), for sticky events.
    pub(crate) fn expires(&self) -> Option<u64> {
        self.sticky()
            .map(|s| self.ts + s.duration_ms.clamp(1, MAX_STICKY_MS))
    }

    fn rank(&self) -> (u64, &[u8]) {
        (self.expires().unwrap_or(0), self.event_id.as_bytes())
    }

    /// The JSON the server serves at `now` (ms), or `None` when it is no longer live.
    pub(crate) fn to_json(&self, now: u64, with_ttl: bool) -> Option<String> {
        match &self.kind {
            Kind::Sticky(sticky) => {
                let expires = self.expires()?;
                if expires <= now {
                    return None;
                }
                if let Some(redaction) = &self.redacted_by {
                    // A redacted copy: no sticky object, no key, the redaction named.
                    let event_type = match sticky.cipher {
                        Some(_) => "m.room.encrypted",
                        None => sticky.event_type.as_str(),
                    };
                    return Some(
                        json!({
                            "type": event_type,
                            "event_id": self.event_id,
                            "sender": self.sender,
                            "origin_server_ts": WALL0_MS + self.ts,
                            "content": {},
                            "unsigned": { "redacted_because": {
                                "type": "m.room.redaction", "event_id": redaction, "sender": "@mod:sim.test",
                                "content": { "redacts": self.event_id },
                            } },
                        })
                        .to_string(),
                    );
                }
                let age = now - self.ts;
                Some(if with_ttl {
                    format!(
                        "{}\"unsigned\":{{\"age\":{age},\"{}\":{}}}}}",
                        self.prefix,
                        matrix_sticky_events::wire::TTL_UNSTABLE,
                        expires - now
                    )
                } else {
                    format!("{}\"unsigned\":{{\"age\":{age}}}}}", self.prefix)
                })
            }
            Kind::Redaction { .. } | Kind::Member { .. } => Some(self.prefix.clone()),
        }
    }

    /// The part of the JSON that never changes: for a sticky event everything up to its
    /// `unsigned` (which the TTL changes), for the others the whole event.
    fn fixed_json(&self) -> String {
        let origin_server_ts = WALL0_MS + self.ts;
        match &self.kind {
            Kind::Sticky(sticky) => {
                let (event_type, content) = match &sticky.cipher {
                    None => (sticky.event_type.clone(), sticky.content.clone()),
                    Some(cipher) => {
                        let inner = json!({
                            "type": sticky.event_type,
                            "room_id": self.room,
                            "content": sticky.content,
                        });
                        (
                            "m.room.encrypted".to_owned(),
                            json!({
                                "algorithm": "m.megolm.v1.aes-sha2",
                                "ciphertext": inner.to_string(),
                                "device_id": cipher.device,
                                "sender_key": format!("curve-{}", cipher.device),
                                "session_id": cipher.session_id,
                            }),
                        )
                    }
                };
                format!(
                    "{{\"type\":{},\"event_id\":{},\"sender\":{},\"origin_server_ts\":{origin_server_ts},\
                     \"msc4354_sticky\":{{\"duration_ms\":{}}},\"content\":{content},",
                    Value::from(event_type),
                    Value::from(self.event_id.as_str()),
                    Value::from(self.sender.as_str()),
                    sticky.duration_ms,
                )
            }
            Kind::Redaction { redacts } => json!({
                "type": "m.room.redaction",
                "event_id": self.event_id,
                "sender": self.sender,
                "origin_server_ts": origin_server_ts,
                "redacts": redacts,
                "content": { "redacts": redacts },
            })
            .to_string(),
            Kind::Member { user, joined } => json!({
                "type": "m.room.member",
                "state_key": user,
                "event_id": self.event_id,
                "sender": user,
                "origin_server_ts": origin_server_ts,
                "content": { "membership": if *joined { "join" } else { "leave" } },
            })
            .to_string(),
        }
    }
}

/// A scheduled delayed sticky event.
#[derive(Debug, Clone)]
pub(crate) struct Delayed {
    pub(crate) owner: (OwnedUserId, OwnedDeviceId),
    pub(crate) room: OwnedRoomId,
    pub(crate) sticky: Sticky,
    pub(crate) delay_ms: u64,
    pub(crate) fire_at: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Room {
    pub(crate) encrypted: bool,
    pub(crate) members: BTreeSet<OwnedUserId>,
    /// Room-call member events per (sender, sticky key): indexes into the event log.
    pub(crate) call_keys: BTreeMap<(OwnedUserId, String), Vec<usize>>,
}

/// An HTTP request as the server receives it.
#[derive(Debug, Clone)]
pub(crate) enum Http {
    Send {
        room: OwnedRoomId,
        sticky: Sticky,
        txn_id: String,
    },
    Schedule {
        room: OwnedRoomId,
        sticky: Sticky,
        txn_id: String,
        delay_ms: u64,
    },
    Update {
        delay_id: String,
        action: DelayedAction,
    },
}

/// What a side-connection page carried.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) body: String,
    pub(crate) caught_up: bool,
}

/// Where a side connection stands in the sticky stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct Cursor {
    /// Next index into the sticky stream.
    pub(crate) since: usize,
    /// Rooms joined after the connection started: replayed from this index.
    pub(crate) rooms: BTreeMap<OwnedRoomId, usize>,
}

#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) delayed_supported: bool,
    ordered_ids: bool,
    pub(crate) with_ttl: bool,
    pub(crate) rooms: BTreeMap<OwnedRoomId, Room>,
    pub(crate) events: Vec<Event>,
    /// Indexes of sticky events, in stream order.
    pub(crate) stream: Vec<usize>,
    pub(crate) delayed: BTreeMap<String, Delayed>,
    txns: HashMap<(OwnedUserId, OwnedDeviceId, String), RequestOutcome>,
    next_id: u64,
    next_delay: u64,
    /// Counters, for the summary.
    pub(crate) fired: u64,
    /// Bumped by every change of the events or of room membership.
    pub(crate) version: u64,
}

impl Server {
    pub(crate) fn new(delayed_supported: bool, ordered_ids: bool, with_ttl: bool) -> Self {
        Self {
            delayed_supported,
            ordered_ids,
            with_ttl,
            rooms: BTreeMap::new(),
            events: Vec::new(),
            stream: Vec::new(),
            delayed: BTreeMap::new(),
            txns: HashMap::new(),
            next_id: 0,
            next_delay: 0,
            fired: 0,
            version: 0,
        }
    }

    pub(crate) fn room(&self, room: &RoomId) -> &Room {
        self.rooms.get(room).expect("known room")
    }

    pub(crate) fn is_member(&self, room: &RoomId, user: &UserId) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.members.contains(user))
    }

    fn fresh_event_id(&mut self) -> OwnedEventId {
        self.next_id += 1;
        let n = self.next_id;
        let id = if self.ordered_ids {
            format!("$e{n:08}")
        } else {
            // Hash-like: the order of ids has nothing to do with the order of events.
            let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
            format!("${h:016x}{n}")
        };
        OwnedEventId::try_from(id).expect("valid event id")
    }

    /// Appends an event; returns its index.
    fn push(&mut self, room: &RoomId, sender: &UserId, now: u64, kind: Kind) -> usize {
        let event_id = self.fresh_event_id();
        let index = self.events.len();
        let sticky_call = match &kind {
            Kind::Sticky(sticky) => Some(sticky.call.clone()),
            _ => None,
        };
        let mut event = Event {
            room: room.to_owned(),
            event_id: event_id.clone(),
            sender: sender.to_owned(),
            ts: now,
            kind,
            redacted_by: None,
            redacted_at: None,
            prefix: String::new(),
        };
        event.prefix = event.fixed_json();
        self.events.push(event);
        self.version += 1;
        if let Some(call) = sticky_call {
            self.stream.push(index);
            if let Some(call) = call {
                self.rooms
                    .entry(room.to_owned())
                    .or_default()
                    .call_keys
                    .entry((sender.to_owned(), call.sticky_key))
                    .or_default()
                    .push(index);
            }
        }
        index
    }

    /// A room membership change; returns the `m.room.member` event's index.
    pub(crate) fn set_member(
        &mut self,
        room: &RoomId,
        user: &UserId,
        joined: bool,
        now: u64,
    ) -> usize {
        let members = &mut self.rooms.entry(room.to_owned()).or_default().members;
        if joined {
            members.insert(user.to_owned());
        } else {
            members.remove(user);
        }
        self.push(
            room,
            user,
            now,
            Kind::Member {
                user: user.to_owned(),
                joined,
            },
        )
    }

    /// A sticky event sent directly (a hostile member's client); returns its index.
    pub(crate) fn send_raw(
        &mut self,
        room: &RoomId,
        sender: &UserId,
        sticky: Sticky,
        now: u64,
    ) -> usize {
        self.push(room, sender, now, Kind::Sticky(sticky))
    }

    /// A moderator's redaction of `target`; returns the redaction's index.
    pub(crate) fn redact(&mut self, target: usize, now: u64) -> usize {
        let (room, redacts) = {
            let event = &self.events[target];
            (event.room.clone(), event.event_id.clone())
        };
        let moderator = OwnedUserId::try_from("@mod:sim.test").expect("valid user id");
        let index = self.push(&room, &moderator, now, Kind::Redaction { redacts });
        let redaction = self.events[index].event_id.clone();
        self.events[target].redacted_by = Some(redaction);
        self.events[target].redacted_at = Some(now);
        self.version += 1;
        index
    }

    /// Performs one HTTP request of `user`'s `device`; returns the answer and the indexes of
    /// the events it created.
    pub(crate) fn handle(
        &mut self,
        user: &UserId,
        device: &OwnedDeviceId,
        request: Http,
        now: u64,
    ) -> (RequestOutcome, Vec<usize>) {
        let forbidden = RequestOutcome::Http {
            status: 403,
            errcode: Some("M_FORBIDDEN".to_owned()),
        };
        match request {
            Http::Send {
                room,
                sticky,
                txn_id,
            } => {
                let key = (user.to_owned(), device.clone(), txn_id);
                if let Some(answer) = self.txns.get(&key) {
                    return (answer.clone(), Vec::new());
                }
                if !self.is_member(&room, user) {
                    return (forbidden, Vec::new());
                }
                let index = self.push(&room, user, now, Kind::Sticky(sticky));
                let answer = RequestOutcome::sent(self.events[index].event_id.to_string());
                self.txns.insert(key, answer.clone());
                (answer, vec![index])
            }
            Http::Schedule {
                room,
                sticky,
                txn_id,
                delay_ms,
            } => {
                let key = (user.to_owned(), device.clone(), txn_id);
                if let Some(answer) = self.txns.get(&key) {
                    return (answer.clone(), Vec::new());
                }
                if !self.delayed_supported {
                    return (RequestOutcome::Unsupported, Vec::new());
                }
                if !self.is_member(&room, user) {
                    return (forbidden, Vec::new());
                }
                self.next_delay += 1;
                let delay_id = format!("syd{}", self.next_delay);
                self.delayed.insert(
                    delay_id.clone(),
                    Delayed {
                        owner: (user.to_owned(), device.clone()),
                        room,
                        sticky,
                        delay_ms,
                        fire_at: now + delay_ms,
                    },
                );
                let answer = RequestOutcome::scheduled(DelayId::new(delay_id));
                self.txns.insert(key, answer.clone());
                (answer, Vec::new())
            }
            Http::Update { delay_id, action } => {
                // Management works with anyone's token on Synapse; ours only ever touch our own.
                let Some(delayed) = self.delayed.get_mut(&delay_id) else {
                    return (RequestOutcome::NotFound, Vec::new());
                };
                match action {
                    DelayedAction::Restart => {
                        delayed.fire_at = now + delayed.delay_ms;
                        (RequestOutcome::ok(), Vec::new())
                    }
                    DelayedAction::Cancel => {
                        self.delayed.remove(&delay_id);
                        (RequestOutcome::ok(), Vec::new())
                    }
                    DelayedAction::Send => {
                        let delayed = self.delayed.remove(&delay_id).expect("just found");
                        let created = self.fire(delayed, now);
                        (RequestOutcome::ok(), created)
                    }
                }
            }
        }
    }

    /// A delayed event becomes a sticky event sent now (if its sender may still send there:
    /// power and membership are checked at firing time, and a refused firing is not retried).
    fn fire(&mut self, delayed: Delayed, now: u64) -> Vec<usize> {
        self.fired += 1;
        let (user, _) = &delayed.owner;
        if !self.is_member(&delayed.room, user) {
            return Vec::new();
        }
        let user = user.clone();
        vec![self.push(&delayed.room, &user, now, Kind::Sticky(delayed.sticky))]
    }

    pub(crate) fn next_fire(&self) -> Option<u64> {
        self.delayed.values().map(|d| d.fire_at).min()
    }

    /// Fires every delayed event due at `now`; returns the events created.
    pub(crate) fn fire_due(&mut self, now: u64) -> Vec<usize> {
        let mut created = Vec::new();
        loop {
            let due = self
                .delayed
                .iter()
                .filter(|(_, d)| d.fire_at <= now)
                .min_by_key(|(id, d)| (d.fire_at, (*id).clone()))
                .map(|(id, _)| id.clone());
            let Some(id) = due else { break };
            let delayed = self.delayed.remove(&id).expect("just found");
            // It fires at its due time.
            let at = delayed.fire_at;
            created.extend(self.fire(delayed, at));
        }
        created
    }

    /// The next instant a room-call candidate expires (the truth may change then).
    pub(crate) fn next_expiry(&self, now: u64) -> Option<u64> {
        self.rooms
            .values()
            .flat_map(|room| room.call_keys.values().flatten())
            .filter_map(|index| self.events[*index].expires())
            .filter(|at| *at > now)
            .min()
    }

    /// The live winner of one room-call key at `now`.
    pub(crate) fn winner(
        &self,
        room: &RoomId,
        sender: &UserId,
        key: &str,
        now: u64,
    ) -> Option<&Event> {
        self.rooms
            .get(room)?
            .call_keys
            .get(&(sender.to_owned(), key.to_owned()))?
            .iter()
            .map(|index| &self.events[*index])
            .filter(|event| event.expires().is_some_and(|at| at > now))
            .max_by(|a, b| a.rank().cmp(&b.rank()))
    }

    /// The latest instant up to `now` at which the candidates of the key changed: one was
    /// sent, redacted or expired. Receivers follow each change up to a delivery later (and
    /// may see them in another order meanwhile).
    pub(crate) fn key_changed_at(
        &self,
        room: &RoomId,
        sender: &UserId,
        key: &str,
        now: u64,
    ) -> Option<u64> {
        self.rooms
            .get(room)?
            .call_keys
            .get(&(sender.to_owned(), key.to_owned()))?
            .iter()
            .map(|index| &self.events[*index])
            .flat_map(|e| {
                [
                    Some(e.ts),
                    e.redacted_at,
                    e.expires().filter(|at| *at <= now),
                ]
            })
            .flatten()
            .max()
    }

    /// The truth: who is in the room call of `room` at `now`. Per key, the live candidate
    /// with the largest `(origin_server_ts + duration, event_id)` wins; a redacted winner is a
    /// tombstone (not joined); a join counts while its sender is joined to the room, and in an
    /// encrypted room only if it was encrypted.
    pub(crate) fn truth(&self, room: &RoomId, now: u64) -> BTreeSet<Member> {
        let Some(state) = self.rooms.get(room) else {
            return BTreeSet::new();
        };
        let mut members = BTreeSet::new();
        for (sender, key) in state.call_keys.keys() {
            let Some(winner) = self.winner(room, sender, key, now) else {
                continue;
            };
            let Some(sticky) = winner.sticky() else {
                continue;
            };
            if winner.redacted_by.is_some() || !state.members.contains(sender) {
                continue;
            }
            if state.encrypted && sticky.cipher.is_none() {
                continue;
            }
            if let Some(CallEntry {
                joins: Some(member),
                ..
            }) = &sticky.call
            {
                members.insert(member.clone());
            }
        }
        members
    }

    /// Whether the server holds a live delayed leave of `owner` for `member_id` in the room
    /// call of `room` (its content exactly the leave of that member).
    pub(crate) fn holds_delayed_leave(
        &self,
        owner: &(OwnedUserId, OwnedDeviceId),
        room: &RoomId,
        member_id: &str,
        now: u64,
    ) -> bool {
        let leave =
            matrix_rtc_membership::sticky_leave_content(rtc_wire::ROOM_CALL_SLOT, member_id);
        self.delayed.values().any(|d| {
            d.owner == *owner && d.room == room && d.fire_at > now && d.sticky.content == leave
        })
    }

    /// The next page of a side connection of `user`, at most `limit` events, from `cursor`.
    pub(crate) fn page(&self, user: &UserId, cursor: &mut Cursor, limit: usize, now: u64) -> Page {
        let joined: BTreeSet<&OwnedRoomId> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.members.contains(user))
            .map(|(id, _)| id)
            .collect();
        let since_of = |room: &OwnedRoomId| cursor.rooms.get(room).copied().unwrap_or(cursor.since);
        let low = joined
            .iter()
            .map(|room| since_of(room))
            .min()
            .unwrap_or(cursor.since)
            .min(cursor.since);
        let mut taken: Vec<(&OwnedRoomId, String)> = Vec::new();
        let mut last = None;
        let mut full = false;
        for position in low..self.stream.len() {
            let event = &self.events[self.stream[position]];
            if !joined.contains(&event.room) || position < since_of(&event.room) {
                continue;
            }
            let Some(json) = event.to_json(now, self.with_ttl) else {
                continue;
            };
            if taken.len() == limit {
                full = true;
                break;
            }
            taken.push((&event.room, json));
            last = Some(position);
        }
        let next = if full {
            last.map_or(cursor.since, |p| p + 1)
        } else {
            self.stream.len()
        };
        let mut rooms: BTreeMap<&OwnedRoomId, Vec<String>> = BTreeMap::new();
        for (room, json) in taken.iter() {
            rooms.entry(room).or_default().push(json.clone());
        }
        let rooms: Vec<String> = rooms
            .into_iter()
            .map(|(room, events)| {
                format!(
                    "{}:{{\"events\":[{}]}}",
                    Value::from(room.as_str()),
                    events.join(",")
                )
            })
            .collect();
        let events = taken.len();
        cursor.since = cursor.since.max(next);
        cursor.rooms.retain(|_, since| {
            *since = (*since).max(next);
            *since < cursor.since
        });
        let body = format!(
            "{{\"next_batch\":\"s{next}\",\"rooms\":{{{}}}}}",
            rooms.join(",")
        );
        Page {
            body,
            // A page as long as its limit may have more behind it.
            caught_up: events < limit,
        }
    }

    /// Whether a side connection of `user` at `cursor` has something to serve.
    pub(crate) fn has_news(&self, user: &UserId, cursor: &Cursor, now: u64) -> bool {
        let since_of = |room: &OwnedRoomId| cursor.rooms.get(room).copied().unwrap_or(cursor.since);
        let low = cursor
            .rooms
            .values()
            .copied()
            .min()
            .unwrap_or(cursor.since)
            .min(cursor.since);
        (low..self.stream.len()).any(|position| {
            let event = &self.events[self.stream[position]];
            position >= since_of(&event.room)
                && self.is_member(&event.room, user)
                && event.expires().is_some_and(|at| at > now)
        })
    }
}
