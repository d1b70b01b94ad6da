//! Encrypted sticky envelopes waiting for decryption: queued for an attempt, being
//! decrypted, or parked until their room key arrives. Bounded per sender, per room and in
//! all, so that one sender's flood only ever evicts that sender's own envelopes (see
//! [`ParkedLimits`]).
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    time::Instant,
};

use matrix_sticky_events::EncryptedSticky;
use ruma_common::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::value::RawValue;
use tracing::{debug, trace};

use crate::{Cap, Diagnostic, ParkedLimits};

/// Where an envelope stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Awaiting a decryption slot.
    Queued,
    /// Being decrypted.
    InFlight,
    /// Its room key is missing: awaiting a key (or the periodic retry).
    Waiting,
}

#[derive(Debug)]
struct Entry {
    room_id: OwnedRoomId,
    envelope: EncryptedSticky,
    state: State,
    /// A key arrived while it was being decrypted: try again at once if that attempt fails.
    retry_after_flight: bool,
    /// Already reported as awaiting its room key.
    reported: bool,
}

impl Entry {
    fn sender(&self) -> &OwnedUserId {
        &self.envelope.meta.sender
    }

    fn expires_at(&self) -> Instant {
        self.envelope.meta.expires_at
    }
}

/// How many envelopes a room holds, and per sender (ordered, for the heaviest).
#[derive(Debug, Default)]
struct RoomLoad {
    count: usize,
    senders: BTreeSet<(usize, OwnedUserId)>,
}

/// An envelope dropped by a cap: whose, and which cap.
pub(crate) type Drop = (OwnedRoomId, OwnedUserId, Cap);

/// The parked envelopes. Every operation costs `O(log n)` per envelope it touches.
#[derive(Debug)]
pub(crate) struct Parked {
    limits: ParkedLimits,
    entries: HashMap<OwnedEventId, Entry>,
    by_session: HashMap<(OwnedRoomId, String), BTreeSet<OwnedEventId>>,
    /// Per (room, sender): its envelopes, first-expiring first.
    by_sender: HashMap<(OwnedRoomId, OwnedUserId), BTreeSet<(Instant, OwnedEventId)>>,
    rooms: HashMap<OwnedRoomId, RoomLoad>,
    /// Rooms by load, for the heaviest.
    room_load: BTreeSet<(usize, OwnedRoomId)>,
    expiry: BTreeSet<(Instant, OwnedEventId)>,
    /// Attempts to make first (new envelopes, keys arrived, decrypted copies seen).
    urgent: VecDeque<OwnedEventId>,
    /// Attempts of the periodic retry.
    routine: VecDeque<OwnedEventId>,
    in_flight: usize,
    waiting: usize,
}

impl Parked {
    pub(crate) fn new(limits: ParkedLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            by_session: HashMap::new(),
            by_sender: HashMap::new(),
            rooms: HashMap::new(),
            room_load: BTreeSet::new(),
            expiry: BTreeSet::new(),
            urgent: VecDeque::new(),
            routine: VecDeque::new(),
            in_flight: 0,
            waiting: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Decryption attempts the pump is performing.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether any envelope awaits its key.
    pub(crate) fn has_waiting(&self) -> bool {
        self.waiting > 0
    }

    pub(crate) fn knows(&self, event_id: &EventId) -> bool {
        self.entries.contains_key(event_id)
    }

    /// The sender of the envelope `event_id` of `room_id`, while it is parked.
    pub(crate) fn sender_of(&self, room_id: &RoomId, event_id: &EventId) -> Option<&UserId> {
        self.entries
            .get(event_id)
            .filter(|entry| entry.room_id == room_id)
            .map(|entry| &**entry.sender())
    }

    /// The earliest expiry of an envelope.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// A new envelope from sync: queued for a first attempt, within the caps. Replays of a
    /// known envelope and expired ones change nothing. Returns what the caps dropped (the
    /// new envelope itself, when it is the one to go).
    pub(crate) fn admit(
        &mut self,
        room_id: &RoomId,
        envelope: EncryptedSticky,
        now: Instant,
    ) -> Vec<Drop> {
        let mut drops = Vec::new();
        let id = envelope.meta.event_id.clone();
        if self.entries.contains_key(&id) {
            trace!(event_id = %id, "encrypted envelope already known");
            return drops;
        }
        if envelope.meta.expires_at <= now {
            trace!(event_id = %id, "encrypted envelope already expired");
            return drops;
        }
        let sender = envelope.meta.sender.clone();
        let expires_at = envelope.meta.expires_at;
        for cap in [Cap::ParkedPerSender, Cap::ParkedPerRoom, Cap::ParkedTotal] {
            // Counted afresh for each cap: an eviction for one cap makes room under the next.
            let over = match cap {
                Cap::ParkedPerSender => {
                    self.sender_count(room_id, &sender) >= self.limits.per_sender
                }
                Cap::ParkedPerRoom => self.room_count(room_id) >= self.limits.per_room,
                _ => self.entries.len() >= self.limits.total,
            };
            if !over {
                continue;
            }
            let (victim_room, victim_sender) = match cap {
                Cap::ParkedPerSender => (room_id.to_owned(), sender.clone()),
                Cap::ParkedPerRoom => (room_id.to_owned(), self.heaviest_sender(room_id, &sender)),
                _ => {
                    let room = self.heaviest_room(room_id);
                    let victim = self.heaviest_sender(&room, &sender);
                    (room, victim)
                }
            };
            let ours = *victim_room == *room_id && victim_sender == sender;
            let victim = self.first_expiring(&victim_room, &victim_sender);
            match victim {
                // The new envelope expires first among the victim sender's: it goes.
                Some((at, _)) if ours && expires_at <= at => {
                    debug!(room = %room_id, event_id = %id, ?cap, "parked envelopes over a cap: dropping the new one");
                    drops.push((room_id.to_owned(), sender, cap));
                    return drops;
                }
                None if ours => {
                    drops.push((room_id.to_owned(), sender, cap));
                    return drops;
                }
                Some((_, victim_id)) => {
                    debug!(room = %victim_room, event_id = %victim_id, ?cap, "parked envelopes over a cap: dropping one");
                    self.remove(&victim_id);
                    drops.push((victim_room, victim_sender, cap));
                }
                None => {}
            }
        }
        self.insert(room_id, envelope);
        drops
    }

    fn insert(&mut self, room_id: &RoomId, envelope: EncryptedSticky) {
        let id = envelope.meta.event_id.clone();
        let sender = envelope.meta.sender.clone();
        let expires_at = envelope.meta.expires_at;
        if let Some(session_id) = &envelope.session_id {
            self.by_session
                .entry((room_id.to_owned(), session_id.clone()))
                .or_default()
                .insert(id.clone());
        }
        let old = self.sender_count(room_id, &sender);
        self.by_sender
            .entry((room_id.to_owned(), sender.clone()))
            .or_default()
            .insert((expires_at, id.clone()));
        let room = self.rooms.entry(room_id.to_owned()).or_default();
        if old > 0 {
            room.senders.remove(&(old, sender.clone()));
        }
        room.senders.insert((old + 1, sender));
        self.room_load.remove(&(room.count, room_id.to_owned()));
        room.count += 1;
        self.room_load.insert((room.count, room_id.to_owned()));
        self.expiry.insert((expires_at, id.clone()));
        self.urgent.push_back(id.clone());
        self.entries.insert(
            id,
            Entry {
                room_id: room_id.to_owned(),
                envelope,
                state: State::Queued,
                retry_after_flight: false,
                reported: false,
            },
        );
    }

    /// Removes one envelope from every index.
    fn remove(&mut self, id: &EventId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        let room_id = &entry.room_id;
        let sender = entry.sender().clone();
        if entry.state == State::Waiting {
            self.waiting -= 1;
        }
        if let Some(session_id) = &entry.envelope.session_id {
            let key = (room_id.clone(), session_id.clone());
            if let Some(ids) = self.by_session.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_session.remove(&key);
                }
            }
        }
        let key = (room_id.clone(), sender.clone());
        let mut left = 0;
        if let Some(ids) = self.by_sender.get_mut(&key) {
            ids.remove(&(entry.expires_at(), id.to_owned()));
            left = ids.len();
            if ids.is_empty() {
                self.by_sender.remove(&key);
            }
        }
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.senders.remove(&(left + 1, sender.clone()));
            if left > 0 {
                room.senders.insert((left, sender));
            }
            self.room_load.remove(&(room.count, room_id.clone()));
            room.count -= 1;
            if room.count == 0 {
                self.rooms.remove(room_id);
            } else {
                self.room_load.insert((room.count, room_id.clone()));
            }
        }
        self.expiry.remove(&(entry.expires_at(), id.to_owned()));
        Some(entry)
    }

    fn sender_count(&self, room_id: &RoomId, sender: &OwnedUserId) -> usize {
        self.by_sender
            .get(&(room_id.to_owned(), sender.clone()))
            .map_or(0, BTreeSet::len)
    }

    fn room_count(&self, room_id: &RoomId) -> usize {
        self.rooms.get(room_id).map_or(0, |room| room.count)
    }

    /// The sender holding the most in `room_id`, counting one more for `newcomer`.
    fn heaviest_sender(&self, room_id: &RoomId, newcomer: &OwnedUserId) -> OwnedUserId {
        let mine = (self.sender_count(room_id, newcomer) + 1, newcomer);
        match self.rooms.get(room_id).and_then(|room| room.senders.last()) {
            Some((count, sender)) if (*count, sender) > mine => sender.clone(),
            _ => newcomer.clone(),
        }
    }

    /// The room holding the most, counting one more for `newcomer`.
    fn heaviest_room(&self, newcomer: &RoomId) -> OwnedRoomId {
        let mine_count = self.room_count(newcomer) + 1;
        match self.room_load.last() {
            Some((count, room)) if (*count, &**room) > (mine_count, newcomer) => room.clone(),
            _ => newcomer.to_owned(),
        }
    }

    fn first_expiring(
        &self,
        room_id: &RoomId,
        sender: &OwnedUserId,
    ) -> Option<(Instant, OwnedEventId)> {
        self.by_sender
            .get(&(room_id.to_owned(), sender.clone()))?
            .first()
            .cloned()
    }

    /// The next envelope to decrypt: marked in flight, its room and raw envelope returned.
    pub(crate) fn take_next(&mut self) -> Option<(OwnedEventId, OwnedRoomId, Box<RawValue>)> {
        self.compact_queues();
        while let Some(id) = self.urgent.pop_front().or_else(|| self.routine.pop_front()) {
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            if entry.state != State::Queued {
                continue;
            }
            entry.state = State::InFlight;
            entry.retry_after_flight = false;
            self.in_flight += 1;
            return Some((id, entry.room_id.clone(), entry.envelope.envelope.clone()));
        }
        None
    }

    /// Queues hold ids of envelopes dropped since: drop those when they outgrow the live.
    fn compact_queues(&mut self) {
        let limit = 2 * self.entries.len() + 64;
        for queue in [&mut self.urgent, &mut self.routine] {
            if queue.len() > limit {
                let entries = &self.entries;
                queue.retain(|id| entries.get(id).is_some_and(|e| e.state == State::Queued));
            }
        }
    }

    /// A decryption attempt ended (whatever became of its envelope).
    pub(crate) fn flight_ended(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The envelope decrypted: it leaves.
    pub(crate) fn decrypted(&mut self, id: &EventId) -> Option<(OwnedRoomId, EncryptedSticky)> {
        let entry = self.remove(id)?;
        Some((entry.room_id, entry.envelope))
    }

    /// The attempt failed (no key yet): the envelope waits for its key, or is tried again at
    /// once if a key arrived meanwhile. The first time, returns the diagnostic to report.
    pub(crate) fn undecrypted(&mut self, id: &EventId) -> Option<Diagnostic> {
        let entry = self.entries.get_mut(id)?;
        if entry.state != State::InFlight {
            return None;
        }
        if entry.retry_after_flight {
            entry.state = State::Queued;
            entry.retry_after_flight = false;
            self.urgent.push_back(id.to_owned());
        } else {
            entry.state = State::Waiting;
            self.waiting += 1;
        }
        if entry.reported {
            return None;
        }
        entry.reported = true;
        Some(Diagnostic::AwaitingRoomKey {
            room_id: entry.room_id.clone(),
            event_id: id.to_owned(),
            sender: entry.sender().clone(),
        })
    }

    /// Queue `id` for an attempt now (urgent) or at the periodic retry.
    fn requeue(&mut self, id: &EventId, urgent: bool) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        match entry.state {
            State::Waiting => {
                entry.state = State::Queued;
                self.waiting -= 1;
                if urgent {
                    self.urgent.push_back(id.to_owned());
                } else {
                    self.routine.push_back(id.to_owned());
                }
            }
            State::InFlight => entry.retry_after_flight = true,
            State::Queued => {}
        }
    }

    /// Room keys of `(room, session)` arrived: its envelopes are tried again first.
    pub(crate) fn keys_arrived(&mut self, room_id: &RoomId, session_id: &str) {
        let ids: Vec<OwnedEventId> = self
            .by_session
            .get(&(room_id.to_owned(), session_id.to_owned()))
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            self.requeue(&id, true);
        }
    }

    /// The event was seen decrypted elsewhere (the app's sync decrypted it): its key is here.
    pub(crate) fn retry_event(&mut self, id: &EventId) {
        self.requeue(id, true);
    }

    /// Every waiting envelope is tried again (after the urgent ones), first-expiring first.
    pub(crate) fn retry_all(&mut self) {
        let ids: Vec<OwnedEventId> = self.expiry.iter().map(|(_, id)| id.clone()).collect();
        for id in ids {
            self.requeue(&id, false);
        }
    }

    /// Drops the envelopes expired at `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((at, id)) = self.expiry.first().cloned() {
            if at > now {
                break;
            }
            trace!(event_id = %id, "parked envelope expired");
            self.remove(&id);
        }
    }

    /// We left the room: its envelopes go.
    pub(crate) fn forget_room(&mut self, room_id: &RoomId) {
        let ids: Vec<OwnedEventId> = self
            .entries
            .iter()
            .filter(|(_, entry)| *entry.room_id == *room_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.remove(&id);
        }
    }
}
