//! The ephemeral map of `protocol.md` §4: candidates per key, winners, expiry, redactions,
//! caps.
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
    ranked::{ById, RankHeap, is_live},
    redactions::{Redactions, Remembered},
    room::{RoomState, SenderState, Slot},
};
use crate::{Change, Limits, RemovalReason, StickyEvent};

mod deadlines;
mod ranked;
mod redactions;
mod room;

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
///   set of events seen, never on their order or duplicates (as long as the caps are not hit).
/// - Superseded candidates are kept until their own deadlines, so a redaction of the winner falls
///   back to the best live candidate left.
/// - Key-only content (only `sticky_key` / `msc4354_sticky_key`) is a deletion marker: it
///   competes like any event and, while it wins, readers see nothing.
/// - Events without a sticky key are unkeyed: each lives on its own until its deadline.
/// - An event already seen (same event ID, in any room), already expired at `now`, or redacted
///   earlier is ignored.
/// - A redaction is remembered for one hour plus a margin, so the redacted event stays out if it
///   arrives (again) later.
/// - Memory is bounded by [`Limits`]; see there for the eviction policy.
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
    /// (same event ID), redacted earlier, or would be the first candidate evicted by the caps.
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
    /// If the event is a candidate, it is removed: its key falls back to the best live candidate
    /// left, or disappears (`Removed { reason: Redacted }`). Either way the redaction is
    /// remembered for one hour plus a margin, so the event stays out if it arrives later.
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
            .get(sender)?
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

    /// Whether a redaction of this event is remembered.
    pub fn is_redacted(&self, room_id: &RoomId, event_id: &EventId) -> bool {
        self.redactions.contains(room_id, event_id)
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
        if self.redactions.contains(&meta.room_id, &meta.event_id) {
            trace!(event_id = %meta.event_id, "ignoring sticky event: redacted");
            return;
        }
        let limits = self.limits;
        let weight = Limits::weight(&event);
        if limits.per_sender == 0 || limits.per_room == 0 || weight > limits.per_room_bytes {
            debug!(event_id = %meta.event_id, "dropping sticky event: over the caps");
            return;
        }
        let event = Arc::new(event);
        let meta = &event.meta;
        // Claim the event ID first (one hash for the usual, new event); give it back if the
        // event does not get in after all.
        if !self.by_id.insert(ById(Arc::clone(&event))) {
            trace!(event_id = %meta.event_id, "ignoring sticky event: already seen");
            return;
        }
        let ranks_below = |lowest: Option<&Arc<StickyEvent>>| {
            lowest.is_some_and(|lowest| meta.cmp_rank(&lowest.meta).is_lt())
        };

        // One walk down room, sender, type and key: admission under the caps (an event that
        // would be the first evicted is not inserted), then insertion.
        let room = get_or_default!(self.rooms, &*meta.room_id);
        let room_full =
            room.count >= limits.per_room || room.bytes + weight > limits.per_room_bytes;
        // (A full room is not empty, so nothing is left behind when returning here.)
        if room_full && ranks_below(room.by_rank.lowest(&self.by_id)) {
            debug!(event_id = %meta.event_id, room_id = %meta.room_id, "dropping sticky event: room over its caps");
            self.by_id.remove(&*meta.event_id);
            return;
        }
        let sender = get_or_default!(room.senders, &*meta.sender);
        if sender.count >= limits.per_sender && ranks_below(sender.by_rank.lowest(&self.by_id)) {
            debug!(event_id = %meta.event_id, room_id = %meta.room_id, "dropping sticky event: sender over its cap");
            self.by_id.remove(&*meta.event_id);
            return;
        }
        sender.count += 1;
        sender.by_rank.push(&event);
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
        room.by_rank.push(&event);
        let room_over = room.count > limits.per_room || room.bytes > limits.per_room_bytes;

        self.deadlines.push(Arc::clone(&event));
        if let Some(change) = change {
            self.emit(out, change);
        }
        if sender_over || room_over {
            self.enforce_caps(&event, out);
        }
    }

    /// Evict the lowest-ranked candidates while `event`'s sender or room is over its caps.
    fn enforce_caps(&mut self, event: &StickyEvent, out: &mut Vec<Change>) {
        let limits = self.limits;
        loop {
            let Some(room) = self.rooms.get_mut(&event.meta.room_id) else {
                return;
            };
            let room_over = room.count > limits.per_room || room.bytes > limits.per_room_bytes;
            let victim = match room.senders.get_mut(&event.meta.sender) {
                Some(sender) if sender.count > limits.per_sender => {
                    sender.by_rank.lowest(&self.by_id)
                }
                _ if room_over => room.by_rank.lowest(&self.by_id),
                _ => return,
            };
            let Some(victim) = victim.cloned() else {
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
        let Some(sender) = room.senders.get_mut(&meta.sender) else {
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
        sender.count -= 1;
        if sender.count == 0 {
            room.senders.remove(&meta.sender);
        } else {
            if sender.by_rank.needs_compaction(sender.count) {
                sender.by_rank = RankHeap::from_events(sender.iter());
            }
        }
        room.count -= 1;
        room.bytes = room.bytes.saturating_sub(Limits::weight(event));
        if room.count == 0 {
            self.rooms.remove(&meta.room_id);
        } else {
            if room.by_rank.needs_compaction(room.count) {
                room.by_rank =
                    RankHeap::from_events(room.senders.values().flat_map(SenderState::iter));
            }
        }
        if let Some(change) = change {
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
        let target = self.by_id.get(event_id).map(|entry| Arc::clone(&entry.0));
        if let Some(target) = target.filter(|target| target.meta.room_id == room_id) {
            debug!(%event_id, %room_id, "sticky event redacted");
            self.detach(&target, RemovalReason::Redacted, out);
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
