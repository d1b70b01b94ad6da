//! The ephemeral map of `docs/protocol.md` §4: candidates per key, winners, expiry, redactions,
//! caps.
//!
//! Each room holds its senders, each sender its event types, each type its keyed slots (the
//! candidates of one key, best first) and unkeyed entries. Beside that tree: every candidate by
//! event ID, one deadline queue, the remembered redactions, and per room and per sender the
//! counters and orders the caps need (`room.rs`, `usage.rs`).
//!
//! A redaction never removes a keyed candidate: it replaces it, in every index, by its
//! tombstone (a key-only deletion marker with the same rank and deadline, content `{}`), so the
//! key's older candidates stay behind it. An unkeyed entry has no key to protect and is removed.
use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    sync::Arc,
    time::Instant,
};

use ruma_common::{EventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use tracing::{debug, trace};

use self::{
    deadlines::Deadlines,
    ranked::{ById, is_live},
    redactions::{Redactions, Remembered},
    room::{RoomCap, RoomState, SenderState, Slot},
};
use crate::{Change, Limits, RemovalReason, StickyEvent, Usage};

mod deadlines;
mod ranked;
mod redactions;
mod room;
#[cfg(test)]
mod tests;
mod usage;

pub(crate) use self::redactions::REMEMBER_FOR;

/// Key of a keyed entry: `(room, sender, type, sticky key)`. The sender is part of the key, so
/// users can only ever overwrite their own entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapKey {
    /// Room.
    pub room_id: OwnedRoomId,
    /// Sender.
    pub sender: OwnedUserId,
    /// Event type.
    pub event_type: String,
    /// Sticky key.
    pub sticky_key: String,
}

/// The MSC4354 ephemeral map: the live sticky events of every room, with one winner per key.
///
/// # Contract
///
/// - **Inputs** are `handle_*` calls, each given `now` (a monotonic instant that never goes
///   backwards between calls). Every `handle_*` call first expires whatever is due at `now`, then
///   applies its input. Time is never read from a clock.
/// - **Outputs**: each call returns the [`Change`]s it caused to the *visible view* (per key, the
///   winner unless it is a deletion marker; plus every unkeyed entry), in order. Replaying every
///   change list onto an empty view reproduces [`StickyMap::iter`].
/// - **Timer**: after any call, arm one timer at [`StickyMap::next_deadline`] and call
///   [`StickyMap::handle_timeout`] when it fires. Calling it early or twice is harmless.
///
/// # Rules
///
/// - The winner of a key is the candidate with the highest
///   `(origin_server_ts + min(duration, 1 h), event ID as bytes)`. The result depends only on the
///   set of events and redactions seen, never on their order or duplicates (as long as the caps
///   are not hit).
/// - Superseded candidates are kept until their own deadlines: when the winner expires, the best
///   live candidate left wins.
/// - Key-only content (only `sticky_key` / `msc4354_sticky_key`) is a deletion marker: it
///   competes like any event and, while it wins, readers see nothing.
/// - **A redaction removes the entry of its key.** The redacted candidate becomes a tombstone: a
///   deletion marker with the same metadata, rank and deadline, and the content `{}`. If it was
///   the visible winner, the key disappears (`Removed { reason: Redacted }`) and no older
///   candidate comes back; otherwise nothing visible changes. Only a later event of the key that
///   outranks the tombstone shows a value again. This is the rule of MSC4354's addendum
///   (redacting a sticky event is a way to remove the entry of its key) and of MSC4143 (a
///   redacted `m.rtc.member` reads as left, which is how moderators remove members); it replaces
///   the earlier rule, which reverted the key to its next best candidate.
/// - Events without a sticky key are unkeyed: each lives on its own until its deadline, or until
///   it is redacted.
/// - An event already seen (same event ID, in any room) or already expired at `now` is ignored.
///   An event redacted earlier goes in as its tombstone when it is keyed, and is ignored when it
///   is unkeyed.
/// - A redaction is remembered for one hour plus a margin, so that the redacted event stays
///   redacted if it arrives (again) later.
/// - Memory is bounded by [`Limits`]: over a room cap, the sender using the most of the room is
///   cut first; see there for the eviction policy.
///
/// Work is proportional to the input: inserting or redacting costs `O(log n)`, expiring `k`
/// candidates `O(k log n)`, never a scan of the map.
#[derive(Debug)]
pub struct StickyMap {
    limits: Limits,
    rooms: HashMap<OwnedRoomId, RoomState>,
    /// Every candidate, by event ID.
    by_id: HashSet<ById>,
    deadlines: Deadlines,
    redactions: Redactions,
    /// Number of visible entries.
    visible: usize,
}

impl Default for StickyMap {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// The visible change of one key (or unkeyed entry) from `before` to `after`.
fn diff(
    before: Option<Arc<StickyEvent>>,
    after: Option<Arc<StickyEvent>>,
    cause: RemovalReason,
) -> Option<Change> {
    match (before, after) {
        (None, None) => None,
        (None, Some(new)) => Some(Change::Added(new)),
        (Some(old), None) => Some(Change::Removed { old, reason: cause }),
        (Some(old), Some(new)) => {
            (!Arc::ptr_eq(&old, &new)).then_some(Change::Replaced { old, new })
        }
    }
}

/// `&mut map[key]`, inserted empty first if absent. One lookup when present (the usual case);
/// the owned key is made only when absent.
macro_rules! get_or_default {
    ($map:expr, $key:expr) => {
        match $map.get_mut($key) {
            Some(value) => value,
            None => $map.entry($key.into()).or_default(),
        }
    };
}

impl StickyMap {
    /// An empty map with the given caps.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            rooms: HashMap::new(),
            by_id: HashSet::new(),
            deadlines: Deadlines::default(),
            redactions: Redactions::default(),
            visible: 0,
        }
    }

    /// The caps of this map.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Insert a live event (expiring first whatever is due at `now`).
    ///
    /// Nothing happens to the event when it is already expired at `now`, already a candidate
    /// (same event ID), unkeyed and redacted earlier, or would be the first candidate evicted by
    /// the caps. A keyed event redacted earlier goes in as its tombstone.
    #[must_use]
    pub fn handle_event(&mut self, event: StickyEvent, now: Instant) -> Vec<Change> {
        self.handle_events([event], now)
    }

    /// Insert several live events, as [`StickyMap::handle_event`] would one by one; the changes
    /// come in the order they happened.
    #[must_use]
    pub fn handle_events<I: IntoIterator<Item = StickyEvent>>(
        &mut self,
        events: I,
        now: Instant,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        for event in events {
            self.insert(event, now, &mut out);
        }
        self.settle();
        out
    }

    /// Apply a redaction of `event_id` in `room_id` (expiring first whatever is due at `now`).
    ///
    /// If the event is a keyed candidate, it becomes its tombstone: a deletion marker that keeps
    /// the event's rank and deadline. If it was the visible winner, the key disappears
    /// (`Removed { reason: Redacted }`) and no older candidate comes back; otherwise nothing
    /// visible changes. An unkeyed entry is removed (`Removed { reason: Redacted }`). Either way
    /// the redaction is remembered for one hour plus a margin, so the event stays redacted if it
    /// arrives later. Redacting an event twice changes nothing.
    #[must_use]
    pub fn handle_redaction(
        &mut self,
        room_id: &RoomId,
        event_id: &EventId,
        now: Instant,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        self.redact(
            room_id,
            event_id,
            now.checked_add(REMEMBER_FOR).unwrap_or(now),
            &mut out,
        );
        self.settle();
        out
    }

    /// Expire every candidate whose deadline is `now` or earlier.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Change> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        self.settle();
        out
    }

    /// Drop every entry of a room (we left it: no more updates will come). Each visible entry
    /// is reported as `Removed { reason: RoomForgotten }`.
    #[must_use]
    pub fn forget_room(&mut self, room_id: &RoomId) -> Vec<Change> {
        let mut out = Vec::new();
        let Some(room) = self.rooms.remove(room_id) else {
            return out;
        };
        for sender in room.senders.into_values() {
            for types in sender.types.into_values() {
                for slot in types.keyed.into_values() {
                    if let Some(visible) = slot.visible() {
                        out.push(Change::Removed {
                            old: Arc::clone(visible),
                            reason: RemovalReason::RoomForgotten,
                        });
                    }
                    for candidate in slot.candidates() {
                        self.by_id.remove(&*candidate.meta.event_id);
                    }
                }
                for entry in types.unkeyed {
                    self.by_id.remove(&*entry.meta.event_id);
                    out.push(Change::Removed {
                        old: entry,
                        reason: RemovalReason::RoomForgotten,
                    });
                }
            }
        }
        self.visible -= out.len();
        debug!(%room_id, removed = out.len(), "forgot room");
        self.settle();
        out
    }

    /// The earliest deadline of any candidate: when to call [`StickyMap::handle_timeout`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|due| due.at)
    }

    /// The visible value of a key: its winner, unless that is a deletion marker.
    pub fn get(&self, key: &MapKey) -> Option<&Arc<StickyEvent>> {
        self.lookup(&key.room_id, &key.sender, &key.event_type, &key.sticky_key)
    }

    /// [`StickyMap::get`] with borrowed parts.
    pub fn lookup(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        event_type: &str,
        sticky_key: &str,
    ) -> Option<&Arc<StickyEvent>> {
        self.slot(room_id, sender, event_type, sticky_key)?
            .visible()
    }

    /// The winner of a key, deletion markers included (`None` when the key has no candidate).
    pub fn winner(&self, key: &MapKey) -> Option<&Arc<StickyEvent>> {
        self.slot(&key.room_id, &key.sender, &key.event_type, &key.sticky_key)?
            .winner()
    }

    fn slot(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        event_type: &str,
        sticky_key: &str,
    ) -> Option<&Slot> {
        self.rooms
            .get(room_id)?
            .senders
            .get(sender.as_str())?
            .types
            .get(event_type)?
            .keyed
            .get(sticky_key)
    }

    /// The visible entries of one room (keyed winners that are not deletion markers, and unkeyed
    /// entries), in no particular order.
    pub fn room_entries<'a>(
        &'a self,
        room_id: &RoomId,
    ) -> impl Iterator<Item = &'a Arc<StickyEvent>> + 'a {
        self.rooms
            .get(room_id)
            .into_iter()
            .flat_map(visible_of_room)
    }

    /// Every visible entry of every room, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<StickyEvent>> + '_ {
        self.rooms.values().flat_map(visible_of_room)
    }

    /// The rooms holding at least one candidate.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomId> + '_ {
        self.rooms.keys().map(|room_id| &**room_id)
    }

    /// Every candidate, including superseded ones and deletion markers, in no particular order.
    pub fn candidates(&self) -> impl Iterator<Item = &Arc<StickyEvent>> + '_ {
        self.by_id.iter().map(|entry| &entry.0)
    }

    /// Number of visible entries.
    pub fn len(&self) -> usize {
        self.visible
    }

    /// Whether there is no visible entry.
    pub fn is_empty(&self) -> bool {
        self.visible == 0
    }

    /// Number of candidates, including superseded ones and deletion markers.
    pub fn candidate_count(&self) -> usize {
        self.by_id.len()
    }

    /// Whether this event is currently a candidate.
    pub fn contains_event(&self, event_id: &EventId) -> bool {
        self.by_id.contains(event_id)
    }

    /// The candidate with this event ID (a superseded one or a deletion marker included), in
    /// any room.
    pub fn candidate(&self, event_id: &EventId) -> Option<&Arc<StickyEvent>> {
        self.by_id.get(event_id).map(|entry| &entry.0)
    }

    /// Whether a redaction of this event is remembered.
    pub fn is_redacted(&self, room_id: &RoomId, event_id: &EventId) -> bool {
        self.redactions.contains(room_id, event_id)
    }

    /// What the candidates of a room count against [`Limits::per_room`] and
    /// [`Limits::per_room_bytes`] (zero for a room without candidates).
    pub fn room_usage(&self, room_id: &RoomId) -> Usage {
        self.rooms
            .get(room_id)
            .map_or_else(Usage::default, RoomState::usage)
    }

    /// What the candidates of one sender in a room count against the caps (zero when it has
    /// none).
    pub fn sender_usage(&self, room_id: &RoomId, sender: &UserId) -> Usage {
        self.rooms
            .get(room_id)
            .and_then(|room| room.senders.get(sender.as_str()))
            .map_or_else(Usage::default, |sender| sender.usage())
    }

    fn emit(&mut self, out: &mut Vec<Change>, change: Change) {
        match &change {
            Change::Added(_) => self.visible += 1,
            Change::Removed { .. } => self.visible -= 1,
            Change::Replaced { .. } => {}
        }
        out.push(change);
    }

    fn is_live(&self, event: &Arc<StickyEvent>) -> bool {
        is_live(&self.by_id, event)
    }

    pub(crate) fn insert(&mut self, event: StickyEvent, now: Instant, out: &mut Vec<Change>) {
        let meta = &event.meta;
        if meta.is_expired(now) {
            trace!(event_id = %meta.event_id, "ignoring sticky event: already expired");
            return;
        }
        let event = if self.redactions.contains(&meta.room_id, &meta.event_id) {
            if event.sticky_key.is_none() {
                trace!(event_id = %meta.event_id, "ignoring sticky event: redacted");
                return;
            }
            trace!(event_id = %meta.event_id, "sticky event redacted earlier: taken as a tombstone");
            event.tombstone()
        } else {
            event
        };
        let limits = self.limits;
        let weight = Limits::weight(&event);
        if limits.per_sender == 0 || limits.per_room == 0 || weight > limits.per_room_bytes {
            debug!(event_id = %event.meta.event_id, "dropping sticky event: over the caps");
            return;
        }
        let event = Arc::new(event);
        let meta = &event.meta;
        // Claim the event ID first (one hash for the usual, new event); give it back if the
        // event does not get in after all.
        if !self.by_id.insert(ById(Arc::clone(&event))) {
            if event.is_tombstone() {
                // A tombstone (from a snapshot) of a candidate we hold: the redaction applies.
                self.redact_candidate(&meta.room_id, &meta.event_id, out);
            }
            trace!(event_id = %meta.event_id, "ignoring sticky event: already seen");
            return;
        }

        // One walk down room, sender, type and key: admission under the caps (an event that
        // would be the first evicted is not inserted), then insertion.
        let room = get_or_default!(self.rooms, &*meta.room_id);
        // (As `get_or_default!`, the shared sender ID being made only for a new sender.)
        let sender = match room.senders.get_mut(meta.sender.as_str()) {
            Some(sender) => sender,
            None => {
                let id: Arc<str> = Arc::from(meta.sender.as_str());
                room.senders
                    .entry(Arc::clone(&id))
                    .or_insert_with(|| SenderState::new(id))
            }
        };
        let before = sender.usage();
        let after = Usage {
            candidates: before.candidates + 1,
            bytes: before.bytes + weight,
        };
        let room_after = Usage {
            candidates: room.count + 1,
            bytes: room.bytes + weight,
        };
        // Whether the event ranks below every other candidate of its sender.
        let mut ranks_lowest = || {
            sender
                .by_rank
                .lowest(&self.by_id)
                .is_none_or(|lowest| meta.cmp_rank(&lowest.meta).is_lt())
        };
        let first_victim = if after.candidates > limits.per_sender {
            ranks_lowest()
        } else if let Some(cap) = RoomCap::exceeded(room_after, limits) {
            room.by_usage
                .would_be_heaviest(cap, meta.sender.as_str(), after)
                && ranks_lowest()
        } else {
            false
        };
        if first_victim {
            debug!(event_id = %meta.event_id, room_id = %meta.room_id, "dropping sticky event: its sender is over the caps");
            // (A room over a cap is not empty, but the sender may be new.)
            if sender.count == 0 {
                room.senders.remove(meta.sender.as_str());
            }
            self.by_id.remove(&*meta.event_id);
            return;
        }
        sender.count += 1;
        sender.bytes += weight;
        sender.by_rank.push(&event);
        room.by_usage.update(&sender.id, before, after);
        let sender_over = sender.count > limits.per_sender;
        let types = get_or_default!(sender.types, event.event_type.as_str());
        let change = match &event.sticky_key {
            Some(key) => {
                let slot = get_or_default!(types.keyed, key.as_str());
                let before = slot.visible().cloned();
                slot.insert(Arc::clone(&event));
                let after = slot.visible().cloned();
                diff(before, after, RemovalReason::Deleted)
            }
            None => {
                types.unkeyed.push(Arc::clone(&event));
                Some(Change::Added(Arc::clone(&event)))
            }
        };
        room.count += 1;
        room.bytes += weight;
        let room_over = RoomCap::exceeded(room.usage(), limits).is_some();

        self.deadlines.push(Arc::clone(&event));
        if let Some(change) = change {
            self.emit(out, change);
        }
        if sender_over || room_over {
            self.enforce_caps(&event, out);
        }
    }

    /// Evict candidates while `event`'s sender or room is over its caps: the sender's own
    /// lowest-ranked candidate over the per-sender cap, else the lowest-ranked candidate of the
    /// room's heaviest sender for the room cap exceeded (see [`Limits`]).
    fn enforce_caps(&mut self, event: &StickyEvent, out: &mut Vec<Change>) {
        let limits = self.limits;
        loop {
            let Some(room) = self.rooms.get_mut(&event.meta.room_id) else {
                return;
            };
            let sender_over = room
                .senders
                .get(event.meta.sender.as_str())
                .is_some_and(|sender| sender.count > limits.per_sender);
            let heaviest;
            let cut: &str = if sender_over {
                event.meta.sender.as_str()
            } else {
                let Some(id) = RoomCap::exceeded(room.usage(), limits)
                    .and_then(|cap| room.by_usage.heaviest(cap))
                else {
                    return;
                };
                heaviest = Arc::clone(id);
                &heaviest
            };
            let Some(victim) = room
                .senders
                .get_mut(cut)
                .and_then(|sender| sender.by_rank.lowest(&self.by_id))
                .cloned()
            else {
                return;
            };
            debug!(event_id = %victim.meta.event_id, room_id = %victim.meta.room_id, "evicting sticky event: over the caps");
            self.detach(&victim, RemovalReason::Evicted, out);
        }
    }

    /// Remove one candidate, reporting the visible change with `cause`.
    fn detach(&mut self, event: &Arc<StickyEvent>, cause: RemovalReason, out: &mut Vec<Change>) {
        let meta = &event.meta;
        let Some(room) = self.rooms.get_mut(&meta.room_id) else {
            return;
        };
        let Some(sender) = room.senders.get_mut(meta.sender.as_str()) else {
            return;
        };
        let Some(types) = sender.types.get_mut(event.event_type.as_str()) else {
            return;
        };
        let change = match &event.sticky_key {
            Some(key) => {
                let Some(slot) = types.keyed.get_mut(key.as_str()) else {
                    return;
                };
                let before = slot.visible().cloned();
                if !slot.remove(event) {
                    return;
                }
                let after = slot.visible().cloned();
                if slot.is_empty() {
                    types.keyed.remove(key.as_str());
                }
                diff(before, after, cause)
            }
            None => {
                let Some(at) = types
                    .unkeyed
                    .iter()
                    .position(|entry| Arc::ptr_eq(entry, event))
                else {
                    return;
                };
                types.unkeyed.swap_remove(at);
                Some(Change::Removed {
                    old: Arc::clone(event),
                    reason: cause,
                })
            }
        };
        self.by_id.remove(&*meta.event_id);
        if types.is_empty() {
            sender.types.remove(event.event_type.as_str());
        }
        let weight = Limits::weight(event);
        let before = sender.usage();
        sender.count -= 1;
        sender.bytes = sender.bytes.saturating_sub(weight);
        room.by_usage.update(&sender.id, before, sender.usage());
        if sender.count == 0 {
            room.senders.remove(meta.sender.as_str());
        } else {
            sender.compact();
        }
        room.count -= 1;
        room.bytes = room.bytes.saturating_sub(weight);
        if room.count == 0 {
            self.rooms.remove(&meta.room_id);
        }
        if let Some(change) = change {
            self.emit(out, change);
        }
    }

    /// Replace the keyed candidate `event` by its tombstone in every index, reporting the
    /// visible change (`Removed { reason: Redacted }` when it was the visible winner).
    fn bury(&mut self, event: &Arc<StickyEvent>, out: &mut Vec<Change>) {
        let meta = &event.meta;
        let Some(key) = &event.sticky_key else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&meta.room_id) else {
            return;
        };
        let Some(sender) = room.senders.get_mut(meta.sender.as_str()) else {
            return;
        };
        let Some(slot) = sender
            .types
            .get_mut(event.event_type.as_str())
            .and_then(|types| types.keyed.get_mut(key.as_str()))
        else {
            return;
        };
        let tombstone = Arc::new(event.tombstone());
        let before = slot.visible().cloned();
        if !slot.replace(event, Arc::clone(&tombstone)) {
            return;
        }
        let after = slot.visible().cloned();
        self.by_id.replace(ById(Arc::clone(&tombstone)));
        // The tombstone weighs less (its content is `{}`); the old entries of the heaps die with
        // the event and are dropped lazily.
        let (old, new) = (Limits::weight(event), Limits::weight(&tombstone));
        let usage = sender.usage();
        sender.bytes = (sender.bytes + new).saturating_sub(old);
        sender.by_rank.push(&tombstone);
        sender.compact();
        room.by_usage.update(&sender.id, usage, sender.usage());
        room.bytes = (room.bytes + new).saturating_sub(old);
        self.deadlines.push(tombstone);
        if let Some(change) = diff(before, after, RemovalReason::Redacted) {
            self.emit(out, change);
        }
    }

    fn redact(
        &mut self,
        room_id: &RoomId,
        event_id: &EventId,
        forget_at: Instant,
        out: &mut Vec<Change>,
    ) {
        self.redactions.remember(
            room_id,
            event_id,
            forget_at,
            self.limits.remembered_redactions,
        );
        self.redact_candidate(room_id, event_id, out);
    }

    /// Apply a redaction to the candidate `event_id` of `room_id`, if there is one: a keyed
    /// candidate becomes its tombstone (once), an unkeyed one is removed.
    fn redact_candidate(&mut self, room_id: &RoomId, event_id: &EventId, out: &mut Vec<Change>) {
        let target = self.by_id.get(event_id).map(|entry| Arc::clone(&entry.0));
        let Some(target) = target.filter(|target| target.meta.room_id == room_id) else {
            return;
        };
        if target.sticky_key.is_none() {
            debug!(%event_id, %room_id, "unkeyed sticky event redacted: removed");
            self.detach(&target, RemovalReason::Redacted, out);
        } else if !target.is_tombstone() {
            debug!(%event_id, %room_id, "sticky event redacted: now a tombstone");
            self.bury(&target, out);
        }
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Change>) {
        while self.deadlines.peek().is_some_and(|due| due.at <= now) {
            let Some(due) = self.deadlines.pop() else {
                break;
            };
            if self.is_live(&due.event) {
                self.detach(&due.event, RemovalReason::Expired, out);
            }
        }
        self.redactions.purge(now);
    }

    /// Drop dead entries off the top of the deadline queue, so that `next_deadline` is exact,
    /// and rebuild the queue when dead entries outgrow live ones.
    fn settle(&mut self) {
        while let Some(due) = self.deadlines.peek() {
            if self.is_live(&due.event) {
                break;
            }
            self.deadlines.pop();
        }
        if self.by_id.is_empty() {
            self.deadlines.clear();
        } else if self.deadlines.len() > 2 * self.by_id.len() + 64 {
            self.deadlines
                .rebuild(self.by_id.iter().map(|entry| &entry.0));
        }
    }

    pub(crate) fn remembered_redactions(&self) -> impl Iterator<Item = &Remembered> + '_ {
        self.redactions.iter()
    }

    /// Number of remembered redactions.
    pub fn remembered_redaction_count(&self) -> usize {
        self.redactions.len()
    }

    pub(crate) fn remember_redaction(
        &mut self,
        room_id: &RoomId,
        event_id: &EventId,
        forget_at: Instant,
        out: &mut Vec<Change>,
    ) {
        self.redact(room_id, event_id, forget_at, out);
    }

    pub(crate) fn expire_now(&mut self, now: Instant, out: &mut Vec<Change>) {
        self.expire(now, out);
    }

    pub(crate) fn finish(&mut self) {
        self.settle();
    }
}

fn visible_of_room(room: &RoomState) -> impl Iterator<Item = &Arc<StickyEvent>> {
    room.senders
        .values()
        .flat_map(|sender| sender.types.values())
        .flat_map(|types| {
            types
                .keyed
                .values()
                .filter_map(Slot::visible)
                .chain(types.unkeyed.iter())
        })
}
