//! The membership model: sessions per `(room, slot)` from sticky map changes and legacy state.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Instant,
};

use matrix_sticky_events::{Change, Receipt, RemovalReason, StickyEvent};
use ruma_common::{
    DeviceId, EventId, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId,
};
use tracing::{debug, trace};

use crate::{
    Diagnostic, LeftReason, MemberQuery, MembershipFormat, Participant, RejectReason, Session,
    SessionChange, legacy_livekit_identity, livekit_identity,
    parse::{
        Join, Outcome,
        legacy::{self, StateKind},
        sticky,
    },
    wire,
};

pub(crate) mod slot;

use self::slot::{ByAge, Group, Slot};

/// The most diagnostics kept until polled; older ones are dropped first.
const MAX_DIAGNOSTICS: usize = 1024;

/// Where a membership comes from, within its room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum EntryKey {
    /// A sticky map key (the room is implied; `stable`: `m.rtc.member`, else the unstable
    /// type: the only two member types).
    Sticky {
        sender: OwnedUserId,
        stable: bool,
        sticky_key: String,
    },
    /// A legacy state key (the type is implied).
    Legacy { state_key: String },
}

/// A join currently held by a key: the participant it shows as (built once per event),
/// plus what the read-time filters and the expiry need.
#[derive(Debug)]
struct Entry {
    participant: Arc<Participant>,
    /// Sticky memberships: it arrived encrypted (rule 5).
    encrypted: bool,
    /// Legacy memberships: when `created + expires` passes.
    deadline: Option<Instant>,
}

/// What an input means for one key.
enum Update {
    Join {
        sender: OwnedUserId,
        event_id: OwnedEventId,
        join: Box<Join>,
    },
    Gone(LeftReason),
}

/// Per-room state.
#[derive(Debug, Default)]
struct Room {
    encrypted: bool,
    /// Known room membership of senders: `true` = joined.
    members: HashMap<OwnedUserId, bool>,
    /// Senders we asked the driver about and got no answer for yet.
    queried: HashSet<OwnedUserId>,
    /// Keys holding a join.
    entries: HashMap<Arc<EntryKey>, Entry>,
    /// Keys holding a join, per sender.
    by_sender: HashMap<OwnedUserId, HashSet<Arc<EntryKey>>>,
    /// Legacy joins by event ID (for redactions).
    legacy_by_event: HashMap<OwnedEventId, String>,
    slots: BTreeMap<String, Slot>,
    /// Slots explicitly closed by `m.rtc.slot`.
    closed_slots: HashSet<String>,
}

/// The read-time filters of a room (`docs/protocol.md` §5.8 rules 5, 6, 8, 9).
struct Filters<'a> {
    encrypted: bool,
    members: &'a HashMap<OwnedUserId, bool>,
    closed_slots: &'a HashSet<String>,
    ignored: &'a HashSet<OwnedUserId>,
}

impl Filters<'_> {
    /// `Ok` when the join counts now, else why it is hidden.
    fn check(&self, entry: &Entry) -> Result<(), LeftReason> {
        let participant = &*entry.participant;
        // Rules about the event itself first, so that their diagnostic is reported even
        // while the sender's membership is still unknown.
        if participant.format.is_sticky() && self.encrypted && !entry.encrypted {
            return Err(LeftReason::Rejected(
                RejectReason::PlaintextJoinInEncryptedRoom,
            ));
        }
        if participant.format == MembershipFormat::Msc4143
            && self.closed_slots.contains(&participant.slot_id)
        {
            return Err(LeftReason::SlotClosed);
        }
        if self.ignored.contains(&participant.user_id) {
            return Err(LeftReason::SenderIgnored);
        }
        if self.members.get(&participant.user_id) != Some(&true) {
            return Err(LeftReason::SenderLeftRoom);
        }
        Ok(())
    }
}

/// Sans-IO MatrixRTC membership model: which devices take part in which session.
///
/// # Calling contract
///
/// * **Inputs** (`handle_*`, `set_room_encrypted`, `forget_room`) take what the driver saw
///   and return the [`SessionChange`]s they caused, in order. Their cost is proportional
///   to what changed, not to the size of the room.
///   - [`handle_sticky_changes`](Self::handle_sticky_changes): every `Change` of the
///     `matrix_sticky_events::StickyMap` (sticky formats A and B; other event types are
///     skipped).
///   - [`handle_state_event`](Self::handle_state_event): legacy call member state events
///     (format C) and `m.rtc.slot` state, in stream order.
///   - [`handle_room_member`](Self::handle_room_member): the senders' room membership.
///     Writes are always applied; a membership whose sender is not joined is hidden, and
///     shows again if the sender (re)joins while it is live. A sender whose membership was
///     never given is hidden and asked about through
///     [`poll_member_query`](Self::poll_member_query).
///   - [`handle_timeout`](Self::handle_timeout) when [`next_deadline`](Self::next_deadline)
///     passes: legacy memberships expire by `created + expires` (sticky ones expire through
///     the sticky map).
/// * **Outputs** to drain after inputs: [`poll_diagnostic`](Self::poll_diagnostic) (why
///   events were rejected or flagged) and [`poll_member_query`](Self::poll_member_query).
/// * **Getters**: [`sessions`](Self::sessions), [`session`](Self::session),
///   [`participants`](Self::participants).
///
/// The model never reads a clock: time comes with the inputs. Calling an input twice with
/// the same data changes nothing the second time.
#[derive(Debug, Default)]
pub struct RtcMembership {
    rooms: HashMap<OwnedRoomId, Room>,
    ignored: HashSet<OwnedUserId>,
    /// Legacy expiry deadlines: `(deadline, room, state key)`.
    deadlines: BTreeSet<(Instant, OwnedRoomId, String)>,
    diagnostics: VecDeque<Diagnostic>,
    dropped_diagnostics: u64,
    queries: VecDeque<MemberQuery>,
}

impl RtcMembership {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies changes of the sticky map. Changes of other event types, and unkeyed member
    /// events (which are rejected with a diagnostic), are skipped.
    #[must_use]
    pub fn handle_sticky_changes(&mut self, changes: &[Change]) -> Vec<SessionChange> {
        let mut out = Vec::new();
        for change in changes {
            match change {
                Change::Added(event) | Change::Replaced { new: event, .. } => {
                    self.apply_sticky_event(event, &mut out);
                }
                Change::Removed { old, reason } => {
                    if !sticky::is_member_type(&old.event_type) {
                        continue;
                    }
                    let Some(sticky_key) = &old.sticky_key else {
                        continue;
                    };
                    let key = EntryKey::Sticky {
                        sender: old.meta.sender.clone(),
                        stable: old.event_type == wire::RTC_MEMBER,
                        sticky_key: sticky_key.clone(),
                    };
                    let reason = match reason {
                        RemovalReason::Expired => LeftReason::Expired,
                        RemovalReason::Redacted => LeftReason::Redacted,
                        RemovalReason::Deleted => LeftReason::LeaveEvent,
                        RemovalReason::Evicted => LeftReason::Evicted,
                        RemovalReason::RoomForgotten => LeftReason::RoomForgotten,
                        // A reason added later: the entry is gone all the same.
                        _ => LeftReason::Evicted,
                    };
                    self.apply(&old.meta.room_id, key, Update::Gone(reason), &mut out);
                }
            }
        }
        out
    }

    fn apply_sticky_event(&mut self, event: &StickyEvent, out: &mut Vec<SessionChange>) {
        if !sticky::is_member_type(&event.event_type) {
            trace!(event_type = %event.event_type, "not a member event");
            return;
        }
        let room_id = &event.meta.room_id;
        let Some(sticky_key) = &event.sticky_key else {
            self.diagnose(
                room_id,
                Some(&event.meta.event_id),
                Some(&event.meta.sender),
                RejectReason::MissingStickyKey,
            );
            return;
        };
        let mut notes = Vec::new();
        let outcome = sticky::classify(event, sticky_key, &mut notes);
        for reason in notes {
            self.diagnose(
                room_id,
                Some(&event.meta.event_id),
                Some(&event.meta.sender),
                reason,
            );
        }
        let key = EntryKey::Sticky {
            sender: event.meta.sender.clone(),
            stable: event.event_type == wire::RTC_MEMBER,
            sticky_key: sticky_key.clone(),
        };
        let update = match outcome {
            Outcome::Join(join) => Update::Join {
                sender: event.meta.sender.clone(),
                event_id: event.meta.event_id.clone(),
                join,
            },
            Outcome::Gone(reason) => Update::Gone(reason),
        };
        self.apply(room_id, key, update, out);
    }

    /// Applies one state event of `room_id` (the raw JSON of a sync or `/state` event),
    /// received at `receipt`: legacy `org.matrix.msc3401.call.member` memberships
    /// (format C; format D is ignored with a diagnostic) and `m.rtc.slot` status. Other
    /// event types are skipped. Feed state events in stream order: the latest event of a
    /// state key replaces the previous one.
    #[must_use]
    pub fn handle_state_event(
        &mut self,
        room_id: &RoomId,
        raw_event: &str,
        receipt: Receipt,
    ) -> Vec<SessionChange> {
        let mut out = Vec::new();
        let event = match legacy::parse_state_event(raw_event) {
            Ok(Some(event)) => event,
            Ok(None) => return out,
            Err(error) => {
                self.diagnose(
                    room_id,
                    error.event_id.as_deref(),
                    error.sender.as_deref(),
                    error.reason,
                );
                return out;
            }
        };
        match event.kind {
            StateKind::Slot => {
                let closed = legacy::slot_closed(event.content);
                self.set_slot_closed(room_id, &event.state_key, closed, &mut out);
            }
            StateKind::CallMember => {
                let mut notes = Vec::new();
                let outcome = legacy::classify(&event, receipt, &mut notes);
                for reason in notes {
                    self.diagnose(room_id, Some(&event.event_id), Some(&event.sender), reason);
                }
                let update = match outcome {
                    Outcome::Join(join) => Update::Join {
                        sender: event.sender,
                        event_id: event.event_id,
                        join,
                    },
                    Outcome::Gone(reason) => Update::Gone(reason),
                };
                let key = EntryKey::Legacy {
                    state_key: event.state_key,
                };
                self.apply(room_id, key, update, &mut out);
            }
        }
        out
    }

    /// A redaction of `event_id` in `room_id`: ends the legacy membership it carried.
    /// (Sticky memberships are redacted through the sticky map.)
    #[must_use]
    pub fn handle_redaction(&mut self, room_id: &RoomId, event_id: &EventId) -> Vec<SessionChange> {
        let mut out = Vec::new();
        let state_key = self
            .rooms
            .get(room_id)
            .and_then(|room| room.legacy_by_event.get(event_id))
            .cloned();
        if let Some(state_key) = state_key {
            let key = EntryKey::Legacy { state_key };
            self.apply(room_id, key, Update::Gone(LeftReason::Redacted), &mut out);
        }
        out
    }

    /// The sender of the legacy membership event `event_id` of `room_id`, while it is the
    /// current membership of its state key (for the reader to decide whether a redaction of it
    /// counts).
    pub fn legacy_sender(&self, room_id: &RoomId, event_id: &EventId) -> Option<&UserId> {
        let room = self.rooms.get(room_id)?;
        let state_key = room.legacy_by_event.get(event_id)?.clone();
        let entry = room.entries.get(&EntryKey::Legacy { state_key })?;
        Some(&entry.participant.user_id)
    }

    /// The current room membership of `user_id` in `room_id` (`joined`: membership `join`).
    /// Memberships of a sender who is not joined are hidden, not dropped.
    #[must_use]
    pub fn handle_room_member(
        &mut self,
        room_id: &RoomId,
        user_id: &UserId,
        joined: bool,
    ) -> Vec<SessionChange> {
        let mut out = Vec::new();
        let room = room_mut(&mut self.rooms, room_id);
        room.queried.remove(user_id);
        if room.members.insert(user_id.to_owned(), joined) == Some(joined) {
            return out;
        }
        self.refilter_sender(room_id, user_id, &mut out);
        out
    }

    /// Whether we ignore `user_id` (rule 9): their memberships are hidden in every room
    /// while ignored.
    #[must_use]
    pub fn handle_ignored_user(&mut self, user_id: &UserId, ignored: bool) -> Vec<SessionChange> {
        let mut out = Vec::new();
        let changed = if ignored {
            self.ignored.insert(user_id.to_owned())
        } else {
            self.ignored.remove(user_id)
        };
        if changed {
            let mut rooms: Vec<OwnedRoomId> = self
                .rooms
                .iter()
                .filter(|(_, room)| room.by_sender.contains_key(user_id))
                .map(|(room_id, _)| room_id.clone())
                .collect();
            // The same input gives the same output order.
            rooms.sort();
            for room_id in rooms {
                self.refilter_sender(&room_id, user_id, &mut out);
            }
        }
        out
    }

    /// Whether `room_id` is encrypted. In an encrypted room, sticky joins that arrived in
    /// plaintext never count (rule 5); plaintext leaves still end memberships.
    #[must_use]
    pub fn set_room_encrypted(&mut self, room_id: &RoomId, encrypted: bool) -> Vec<SessionChange> {
        let mut out = Vec::new();
        let room = room_mut(&mut self.rooms, room_id);
        if room.encrypted == encrypted {
            return out;
        }
        room.encrypted = encrypted;
        let affected = room
            .entries
            .values()
            .filter(|entry| entry.participant.format.is_sticky() && !entry.encrypted)
            .map(|entry| entry.participant.clone());
        for participant in distinct_groups(affected) {
            self.recompute_group_of(room_id, &participant, &LeftReason::Superseded, &mut out);
        }
        out
    }

    /// We left `room_id`: drops everything about it. Every participant leaves with
    /// [`LeftReason::RoomForgotten`] and every session ends.
    #[must_use]
    pub fn forget_room(&mut self, room_id: &RoomId) -> Vec<SessionChange> {
        let mut out = Vec::new();
        let Some(room) = self.rooms.remove(room_id) else {
            return out;
        };
        for (key, entry) in &room.entries {
            if let (Some(deadline), EntryKey::Legacy { state_key }) = (entry.deadline, &**key) {
                self.deadlines
                    .remove(&(deadline, room_id.to_owned(), state_key.clone()));
            }
        }
        for (slot_id, slot) in room.slots {
            if slot.roster.order.is_empty() {
                continue;
            }
            for ByAge(participant) in slot.roster.order {
                out.push(SessionChange::Left {
                    participant,
                    reason: LeftReason::RoomForgotten,
                });
            }
            out.push(SessionChange::SessionEnded {
                room_id: room_id.to_owned(),
                slot_id,
            });
        }
        self.queries.retain(|query| query.room_id != room_id);
        out
    }

    /// Expires the legacy memberships whose `created + expires` is at or before `now`.
    /// Calling it early or twice does nothing.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<SessionChange> {
        let mut out = Vec::new();
        while self
            .deadlines
            .first()
            .is_some_and(|(deadline, _, _)| *deadline <= now)
        {
            let Some((_, room_id, state_key)) = self.deadlines.pop_first() else {
                break;
            };
            let key = EntryKey::Legacy { state_key };
            self.apply(&room_id, key, Update::Gone(LeftReason::Expired), &mut out);
        }
        out
    }

    /// The earliest legacy expiry, if any: call [`handle_timeout`](Self::handle_timeout)
    /// then.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _, _)| *deadline)
    }

    /// The next diagnostic: an event that was rejected, ignored or flagged. At most 1024
    /// are kept; older ones are dropped first (see
    /// [`dropped_diagnostics`](Self::dropped_diagnostics)).
    #[must_use]
    pub fn poll_diagnostic(&mut self) -> Option<Diagnostic> {
        self.diagnostics.pop_front()
    }

    /// How many diagnostics were dropped because nobody polled them.
    pub fn dropped_diagnostics(&self) -> u64 {
        self.dropped_diagnostics
    }

    /// The next sender whose room membership the model needs: answer with
    /// [`handle_room_member`](Self::handle_room_member). Each is asked once.
    #[must_use]
    pub fn poll_member_query(&mut self) -> Option<MemberQuery> {
        self.queries.pop_front()
    }

    /// The live sessions of `room_id`, by slot ID.
    pub fn sessions<'a>(&'a self, room_id: &RoomId) -> impl Iterator<Item = Session<'a>> + 'a {
        self.rooms
            .get_key_value(room_id)
            .into_iter()
            .flat_map(|(room_id, room)| {
                room.slots
                    .iter()
                    .filter(|(_, slot)| !slot.roster.order.is_empty())
                    .map(move |(slot_id, slot)| Session {
                        room_id,
                        slot_id,
                        slot,
                    })
            })
    }

    /// The live session of `slot_id` in `room_id`.
    pub fn session(&self, room_id: &RoomId, slot_id: &str) -> Option<Session<'_>> {
        let (room_id, room) = self.rooms.get_key_value(room_id)?;
        let (slot_id, slot) = room.slots.get_key_value(slot_id)?;
        (!slot.roster.order.is_empty()).then_some(Session {
            room_id,
            slot_id,
            slot,
        })
    }

    /// The participants of `slot_id` in `room_id` as shared values, oldest first (by
    /// [`Participant::cmp_by_age`]).
    pub fn shared_participants<'a>(
        &'a self,
        room_id: &RoomId,
        slot_id: &str,
    ) -> impl DoubleEndedIterator<Item = &'a Arc<Participant>> + 'a {
        self.rooms
            .get(room_id)
            .and_then(|room| room.slots.get(slot_id))
            .into_iter()
            .flat_map(|slot| slot.roster.iter_shared())
    }

    /// Whether the member `(user_id, device_id, member_id)` is a visible participant of
    /// `slot_id` in `room_id` now. Cost: the memberships of that one device.
    pub fn is_visible(
        &self,
        room_id: &RoomId,
        slot_id: &str,
        user_id: &UserId,
        device_id: &DeviceId,
        member_id: &str,
    ) -> bool {
        self.rooms
            .get(room_id)
            .and_then(|room| room.slots.get(slot_id))
            .and_then(|slot| slot.groups.get(user_id))
            .and_then(|devices| devices.get(device_id))
            .is_some_and(|group| {
                group
                    .visible
                    .iter()
                    .any(|(participant, _)| participant.0.member_id == member_id)
            })
    }

    /// Whether `room_id` is encrypted, as last told with
    /// [`set_room_encrypted`](Self::set_room_encrypted).
    pub fn is_room_encrypted(&self, room_id: &RoomId) -> bool {
        self.rooms.get(room_id).is_some_and(|room| room.encrypted)
    }

    /// The participants of `slot_id` in `room_id`, oldest first.
    pub fn participants<'a>(
        &'a self,
        room_id: &RoomId,
        slot_id: &str,
    ) -> impl DoubleEndedIterator<Item = &'a Participant> + 'a {
        self.rooms
            .get(room_id)
            .and_then(|room| room.slots.get(slot_id))
            .into_iter()
            .flat_map(|slot| slot.roster.iter())
    }

    // --- internals -----------------------------------------------------------------------

    fn diagnose(
        &mut self,
        room_id: &RoomId,
        event_id: Option<&EventId>,
        sender: Option<&UserId>,
        reason: RejectReason,
    ) {
        debug!(%room_id, ?event_id, ?sender, %reason, "membership event not counted as is");
        if self.diagnostics.len() >= MAX_DIAGNOSTICS {
            self.diagnostics.pop_front();
            self.dropped_diagnostics += 1;
        }
        self.diagnostics.push_back(Diagnostic {
            room_id: room_id.to_owned(),
            event_id: event_id.map(ToOwned::to_owned),
            sender: sender.map(ToOwned::to_owned),
            reason,
        });
    }

    /// Applies one update of one key and recomputes the devices it touches.
    fn apply(
        &mut self,
        room_id: &RoomId,
        key: EntryKey,
        update: Update,
        out: &mut Vec<SessionChange>,
    ) {
        // One room lookup for the whole update: the other fields are borrowed beside it.
        let Self {
            rooms,
            ignored,
            deadlines,
            queries,
            ..
        } = self;
        let room = room_mut(rooms, room_id);
        let old = room.entries.remove_entry(&key);
        if let Some((old_key, old)) = &old {
            if let (Some(deadline), EntryKey::Legacy { state_key }) = (old.deadline, &**old_key) {
                deadlines.remove(&(deadline, room_id.to_owned(), state_key.clone()));
            }
            if old.participant.format == MembershipFormat::LegacyState {
                room.legacy_by_event.remove(&old.participant.event_id);
            }
        }

        let (sender, event_id, join) = match update {
            Update::Gone(reason) => {
                let Some((key, old)) = old else {
                    trace!(%room_id, ?reason, "leave for a key without a membership");
                    return;
                };
                unregister(room, &key, &old.participant);
                unindex_sender(room, &key, &old.participant.user_id);
                self.recompute_group_of(room_id, &old.participant, &reason, out);
                return;
            }
            Update::Join {
                sender,
                event_id,
                join,
            } => (sender, event_id, join),
        };
        let (key, old) = match old {
            Some((key, old)) => (key, Some(old)),
            None => (Arc::new(key), None),
        };
        let entry = new_entry(room_id, sender, event_id, *join, old.as_ref());
        let participant = entry.participant.clone();
        if let EntryKey::Legacy { state_key } = &*key {
            if let Some(deadline) = entry.deadline {
                deadlines.insert((deadline, room_id.to_owned(), state_key.clone()));
            }
            room.legacy_by_event
                .insert(participant.event_id.clone(), state_key.clone());
        }
        let moved = old.as_ref().filter(|old| {
            old.participant.slot_id != participant.slot_id
                || old.participant.device_id != participant.device_id
        });
        if let Some(old) = moved {
            unregister(room, &key, &old.participant);
        }
        if old.is_none() || moved.is_some() {
            register(room, &key, &participant);
        }
        if old.is_none() {
            room.by_sender
                .entry(participant.user_id.clone())
                .or_default()
                .insert(key.clone());
        }

        // Say why a new join does not show (rules 5, 6, 8, 9), and ask about unknown senders.
        let filters = Filters {
            encrypted: room.encrypted,
            members: &room.members,
            closed_slots: &room.closed_slots,
            ignored,
        };
        let hidden = filters.check(&entry).err();
        // A join that shows has a joined sender: only a hidden one can have an unknown one.
        let membership_unknown =
            hidden.is_some() && !room.members.contains_key(&participant.user_id);
        if membership_unknown && room.queried.insert(participant.user_id.clone()) {
            queries.push_back(MemberQuery {
                room_id: room_id.to_owned(),
                user_id: participant.user_id.clone(),
            });
        }
        room.entries.insert(key, entry);
        let hidden_reason = match hidden {
            Some(LeftReason::SenderLeftRoom) if !membership_unknown => {
                Some(RejectReason::SenderNotJoined)
            }
            Some(LeftReason::SenderIgnored) => Some(RejectReason::SenderIgnored),
            Some(LeftReason::SlotClosed) => Some(RejectReason::SlotClosed),
            Some(LeftReason::Rejected(reason)) => Some(reason),
            _ => None,
        };
        if let Some(reason) = hidden_reason {
            let (event_id, sender) = (&participant.event_id, &participant.user_id);
            self.diagnose(room_id, Some(event_id), Some(sender), reason);
        }

        if let Some(old) = &moved {
            self.recompute_group_of(room_id, &old.participant, &LeftReason::Superseded, out);
        }
        self.recompute_group_of(room_id, &participant, &LeftReason::Superseded, out);
    }

    /// Re-applies the read-time filters to every membership of `user_id` in `room_id`.
    fn refilter_sender(
        &mut self,
        room_id: &RoomId,
        user_id: &UserId,
        out: &mut Vec<SessionChange>,
    ) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let Some(keys) = room.by_sender.get(user_id) else {
            return;
        };
        let affected: Vec<_> = keys
            .iter()
            .filter_map(|key| room.entries.get(key))
            .map(|entry| entry.participant.clone())
            .collect();
        for participant in distinct_groups(affected) {
            self.recompute_group_of(room_id, &participant, &LeftReason::Superseded, out);
        }
    }

    fn set_slot_closed(
        &mut self,
        room_id: &RoomId,
        slot_id: &str,
        closed: bool,
        out: &mut Vec<SessionChange>,
    ) {
        let room = room_mut(&mut self.rooms, room_id);
        let changed = if closed {
            room.closed_slots.insert(slot_id.to_owned())
        } else {
            room.closed_slots.remove(slot_id)
        };
        if !changed {
            return;
        }
        let Some(slot) = room.slots.get(slot_id) else {
            return;
        };
        let groups: Vec<(OwnedUserId, OwnedDeviceId)> = slot
            .groups
            .iter()
            .flat_map(|(user_id, devices)| {
                devices
                    .keys()
                    .map(move |device_id| (user_id.clone(), device_id.clone()))
            })
            .collect();
        // The same input gives the same output order.
        let mut groups = groups;
        groups.sort();
        for (user_id, device_id) in groups {
            self.recompute(
                room_id,
                slot_id,
                &user_id,
                &device_id,
                &LeftReason::SlotClosed,
                out,
            );
        }
    }

    fn recompute_group_of(
        &mut self,
        room_id: &RoomId,
        participant: &Participant,
        reason: &LeftReason,
        out: &mut Vec<SessionChange>,
    ) {
        let (slot_id, user_id, device_id) = (
            &participant.slot_id,
            &participant.user_id,
            &participant.device_id,
        );
        self.recompute(room_id, slot_id, user_id, device_id, reason, out);
    }

    /// Recomputes the visible participants of one device in one slot and reports the
    /// difference. `reason` is given to participants whose entry is gone from this group.
    /// Cost: O(memberships of this device × log(participants of the slot)).
    fn recompute(
        &mut self,
        room_id: &RoomId,
        slot_id: &str,
        user_id: &UserId,
        device_id: &DeviceId,
        reason: &LeftReason,
        out: &mut Vec<SessionChange>,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Room {
            encrypted,
            members,
            entries,
            slots,
            closed_slots,
            ..
        } = room;
        let filters = Filters {
            encrypted: *encrypted,
            members,
            closed_slots,
            ignored: &self.ignored,
        };
        let Some(slot) = slots.get_mut(slot_id) else {
            return;
        };
        let Slot { groups, roster } = slot;
        let Some(devices) = groups.get_mut(user_id) else {
            return;
        };
        let Some(group) = devices.get_mut(device_id) else {
            return;
        };

        // The entries that count now, one per member ID; sticky formats hide legacy ones of
        // the same device.
        let shown: Vec<(&Arc<EntryKey>, &Entry)> = group
            .candidates
            .iter()
            .filter_map(|key| entries.get(key).map(|entry| (key, entry)))
            .filter(|(_, entry)| filters.check(entry).is_ok())
            .collect();
        let any_sticky = shown
            .iter()
            .any(|(_, entry)| entry.participant.format.is_sticky());
        let mut best: Vec<(&Arc<EntryKey>, &Entry)> = Vec::with_capacity(shown.len());
        for (key, entry) in shown {
            if any_sticky && !entry.participant.format.is_sticky() {
                continue;
            }
            let same_member = best
                .iter()
                .position(|(_, b)| b.participant.member_id == entry.participant.member_id);
            match same_member {
                Some(i) if rank(best[i].0, best[i].1) >= rank(key, entry) => {}
                Some(i) => best[i] = (key, entry),
                None => best.push((key, entry)),
            }
        }

        let before = roster.order.len();
        let mut left = Vec::new();
        let mut updated = Vec::new();
        let mut visible = Vec::with_capacity(best.len());
        for (old, old_key) in std::mem::take(&mut group.visible) {
            roster.remove(&old);
            let same_member = best
                .iter()
                .position(|(_, entry)| entry.participant.member_id == old.0.member_id);
            match same_member {
                None => {
                    let why = match entries.get(&old_key) {
                        Some(entry) if group.candidates.contains(&old_key) => {
                            match filters.check(entry) {
                                Ok(()) => LeftReason::Superseded,
                                Err(hidden) => hidden,
                            }
                        }
                        _ => reason.clone(),
                    };
                    left.push(SessionChange::Left {
                        participant: old.0,
                        reason: why,
                    });
                }
                Some(i) => {
                    let (key, entry) = best.swap_remove(i);
                    let new = &entry.participant;
                    if Arc::ptr_eq(&old.0, new) || *old.0 == **new {
                        roster.insert(old.clone());
                        visible.push((old, key.clone()));
                    } else {
                        roster.insert(ByAge(new.clone()));
                        visible.push((ByAge(new.clone()), key.clone()));
                        updated.push(SessionChange::Updated {
                            old: old.0,
                            new: new.clone(),
                        });
                    }
                }
            }
        }
        let mut joined = Vec::with_capacity(best.len());
        for (key, entry) in best {
            let new = &entry.participant;
            roster.insert(ByAge(new.clone()));
            visible.push((ByAge(new.clone()), key.clone()));
            joined.push(SessionChange::Joined(new.clone()));
        }
        group.visible = visible;
        let after = roster.order.len();

        if before == 0 && after > 0 {
            out.push(SessionChange::SessionStarted {
                room_id: room_id.to_owned(),
                slot_id: slot_id.to_owned(),
            });
        }
        out.append(&mut left);
        out.append(&mut updated);
        out.append(&mut joined);
        if before > 0 && after == 0 {
            out.push(SessionChange::SessionEnded {
                room_id: room_id.to_owned(),
                slot_id: slot_id.to_owned(),
            });
        }

        if group.candidates.is_empty() && group.visible.is_empty() {
            devices.remove(device_id);
            if devices.is_empty() {
                groups.remove(user_id);
            }
        }
        if slot.is_unused() {
            slots.remove(slot_id);
        }
    }
}

/// The room, created empty when unknown (without allocating a key when it exists).
fn room_mut<'a>(rooms: &'a mut HashMap<OwnedRoomId, Room>, room_id: &RoomId) -> &'a mut Room {
    if !rooms.contains_key(room_id) {
        rooms.insert(room_id.to_owned(), Room::default());
    }
    // Present: inserted just above when it was missing.
    rooms.get_mut(room_id).expect("the room was just inserted")
}

/// Builds the entry of a join of `sender` in `room_id`, keeping what a refresh of the same
/// member carries over from `old`: the creation time and the LiveKit identity.
fn new_entry(
    room_id: &RoomId,
    sender: OwnedUserId,
    event_id: OwnedEventId,
    join: Join,
    old: Option<&Entry>,
) -> Entry {
    let same_member = old.map(|old| &*old.participant).filter(|old| {
        old.format.is_sticky() == join.format.is_sticky()
            && old.member_id == join.member_id
            && old.device_id == join.device_id
            && old.slot_id == join.slot_id
    });
    let created_ts = match same_member {
        // A sticky member keeps its first creation time across refreshes (docs/protocol.md §9.5).
        Some(old) if join.format.is_sticky() => join.created_ts.min(old.created_ts),
        _ => join.created_ts,
    };
    let livekit_identity = match same_member {
        Some(old) => old.livekit_identity.clone(),
        None if join.format.is_sticky() => {
            livekit_identity(sender.as_str(), join.device_id.as_str(), &join.member_id)
        }
        None => legacy_livekit_identity(sender.as_str(), join.device_id.as_str()),
    };
    Entry {
        participant: Arc::new(Participant {
            room_id: room_id.to_owned(),
            slot_id: join.slot_id,
            user_id: sender,
            device_id: join.device_id,
            member_id: join.member_id,
            created_ts,
            event_id,
            format: join.format,
            transports: join.transports,
            focus_selection: join.focus_selection,
            call_intent: join.call_intent,
            livekit_identity,
            expires_wall_ms: join.expires_wall_ms,
            suspicious: join.suspicious,
        }),
        encrypted: join.encrypted,
        deadline: join.deadline,
    }
}

/// Adds `key` to the candidates of the device group `participant` belongs to.
fn register(room: &mut Room, key: &Arc<EntryKey>, participant: &Participant) {
    if !room.slots.contains_key(&participant.slot_id) {
        room.slots
            .insert(participant.slot_id.clone(), Slot::default());
    }
    let Some(slot) = room.slots.get_mut(&participant.slot_id) else {
        return;
    };
    let devices = match slot.groups.get_mut(&participant.user_id) {
        Some(devices) => devices,
        None => slot.groups.entry(participant.user_id.clone()).or_default(),
    };
    let group = match devices.get_mut(&participant.device_id) {
        Some(group) => group,
        None => devices
            .entry(participant.device_id.clone())
            .or_insert_with(Group::default),
    };
    group.candidates.push(key.clone());
}

/// Removes `key` from the candidates of the device group `participant` belongs to.
fn unregister(room: &mut Room, key: &EntryKey, participant: &Participant) {
    if let Some(slot) = room.slots.get_mut(&participant.slot_id)
        && let Some(devices) = slot.groups.get_mut(&participant.user_id)
        && let Some(group) = devices.get_mut(&participant.device_id)
    {
        group.candidates.retain(|candidate| **candidate != *key);
    }
}

/// Removes `key` from the sender index.
fn unindex_sender(room: &mut Room, key: &EntryKey, user_id: &UserId) {
    if let Some(keys) = room.by_sender.get_mut(user_id) {
        keys.remove(key);
        if keys.is_empty() {
            room.by_sender.remove(user_id);
        }
    }
}

/// One participant per distinct `(slot, device)` group among `participants`.
fn distinct_groups(
    participants: impl IntoIterator<Item = Arc<Participant>>,
) -> Vec<Arc<Participant>> {
    let mut participants: Vec<_> = participants.into_iter().collect();
    participants.sort_by(|a, b| {
        (&a.slot_id, &a.user_id, &a.device_id).cmp(&(&b.slot_id, &b.user_id, &b.device_id))
    });
    participants.dedup_by(|a, b| {
        a.slot_id == b.slot_id && a.user_id == b.user_id && a.device_id == b.device_id
    });
    participants
}

/// Preference between two entries of one member ID: sticky first, then the greater key
/// (an arbitrary but order-independent choice).
fn rank<'a>(key: &'a EntryKey, entry: &Entry) -> (bool, &'a EntryKey) {
    (entry.participant.format.is_sticky(), key)
}
