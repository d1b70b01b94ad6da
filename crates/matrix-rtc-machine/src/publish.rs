//! The participant lists as published to the app, and the changes that move them: one
//! ordering ([`Participant::cmp_by_age`]), one batch of diffs per call and input, and the
//! hold while the side connection catches up.
//!
//! While holding, nothing is published: the calls touched are marked dirty (with the reason
//! of every leave), and on release each dirty list is reconciled with the membership model.
//! A hold costs memory in proportion to the members touched, never to the number of changes.
use std::{
    cmp::Ordering,
    collections::{BTreeSet, HashMap, VecDeque},
    sync::Arc,
    time::Instant,
};

use imbl::Vector;
use matrix_rtc_membership::{LeftReason, Participant, RtcMembership, SessionChange};
use ruma_common::{OwnedDeviceId, OwnedUserId};
use tracing::{debug, trace};

use crate::{CallId, ParticipantDiff, Update};

/// Who a participant is within a call: user, device and member ID.
type Member = (OwnedUserId, OwnedDeviceId, String);

fn member_of(participant: &Participant) -> Member {
    (
        participant.user_id.clone(),
        participant.device_id.clone(),
        participant.member_id.clone(),
    )
}

/// The call a change is about, if it is about one.
fn call_of(change: &SessionChange) -> Option<CallId> {
    match change {
        SessionChange::SessionStarted { room_id, slot_id }
        | SessionChange::SessionEnded { room_id, slot_id } => {
            Some(CallId::unchecked(room_id, slot_id))
        }
        SessionChange::Joined(participant)
        | SessionChange::Updated {
            new: participant, ..
        }
        | SessionChange::Left { participant, .. } => Some(CallId::of(participant)),
        other => {
            trace!(?other, "session change not published");
            None
        }
    }
}

#[derive(Debug)]
struct Hold {
    until: Instant,
    dirty: BTreeSet<CallId>,
    reasons: HashMap<(CallId, Member), LeftReason>,
}

#[derive(Debug)]
struct CallBatch {
    was_active: bool,
    diffs: Vec<ParticipantDiff>,
}

/// What one input changed, until flushed.
#[derive(Debug, Default)]
struct Batch {
    order: Vec<CallId>,
    calls: HashMap<CallId, CallBatch>,
    changes: Vec<SessionChange>,
}

/// The published lists (only non-empty ones are kept).
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    lists: HashMap<CallId, Vector<Arc<Participant>>>,
    hold: Option<Hold>,
    batch: Batch,
}

impl Publisher {
    /// The participants of `call` as published.
    pub(crate) fn participants(&self, call: &CallId) -> Vector<Arc<Participant>> {
        self.lists.get(call).cloned().unwrap_or_default()
    }

    pub(crate) fn is_active(&self, call: &CallId) -> bool {
        self.lists.contains_key(call)
    }

    /// The calls with participants, sorted.
    pub(crate) fn active_calls(&self) -> Vec<CallId> {
        let mut calls: Vec<_> = self.lists.keys().cloned().collect();
        calls.sort();
        calls
    }

    /// Participants published across calls.
    pub(crate) fn participant_count(&self) -> usize {
        self.lists.values().map(Vector::len).sum()
    }

    /// The release deadline of the current hold.
    pub(crate) fn hold_deadline(&self) -> Option<Instant> {
        self.hold.as_ref().map(|hold| hold.until)
    }

    /// Holds back publication until [`release`](Self::release) or `until`, whichever comes
    /// first. A hold already running keeps its (earlier) deadline, so the app's view moves at
    /// least once per hold limit even while pages keep coming.
    pub(crate) fn hold(&mut self, until: Instant) {
        if self.hold.is_none() {
            debug!("holding back changes while the side connection catches up");
            self.hold = Some(Hold {
                until,
                dirty: BTreeSet::new(),
                reasons: HashMap::new(),
            });
        }
    }

    /// Takes in the model's changes: published at once, or marked while holding.
    pub(crate) fn apply(&mut self, changes: Vec<SessionChange>) {
        for change in changes {
            let Some(call) = call_of(&change) else {
                continue;
            };
            if let Some(hold) = &mut self.hold {
                if let SessionChange::Left {
                    participant,
                    reason,
                } = &change
                {
                    hold.reasons
                        .insert((call.clone(), member_of(participant)), reason.clone());
                }
                hold.dirty.insert(call);
                continue;
            }
            self.touch(&call);
            match &change {
                SessionChange::Joined(participant) => self.insert(&call, participant),
                SessionChange::Left { participant, .. } => self.remove(&call, participant),
                SessionChange::Updated { old, new } => {
                    if old.cmp_by_age(new) == Ordering::Equal {
                        self.set(&call, old, new);
                    } else {
                        self.remove(&call, old);
                        self.insert(&call, new);
                    }
                }
                _ => {}
            }
            self.batch.changes.push(change);
        }
    }

    /// Ends the hold: every call touched during it is reconciled with the model.
    pub(crate) fn release(&mut self, model: &RtcMembership) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        debug!(calls = hold.dirty.len(), "releasing held-back changes");
        for call in &hold.dirty {
            let current: Vec<Arc<Participant>> = model
                .shared_participants(call.room_id(), call.slot_id())
                .cloned()
                .collect();
            self.reconcile(call, &current, &hold.reasons);
        }
    }

    /// Records the state of `call` before this input's first change to it.
    fn touch(&mut self, call: &CallId) {
        if !self.batch.calls.contains_key(call) {
            self.batch.calls.insert(
                call.clone(),
                CallBatch {
                    was_active: self.lists.contains_key(call),
                    diffs: Vec::new(),
                },
            );
            self.batch.order.push(call.clone());
        }
    }

    fn diffs(&mut self, call: &CallId) -> &mut Vec<ParticipantDiff> {
        &mut self
            .batch
            .calls
            .get_mut(call)
            .expect("touched before any diff")
            .diffs
    }

    fn insert(&mut self, call: &CallId, participant: &Arc<Participant>) {
        let list = self.lists.entry(call.clone()).or_default();
        let found = list.binary_search_by(|probe| probe.cmp_by_age(participant));
        let diff = match found {
            // The same member at the same place: a change we missed; show the newer value.
            Ok(index) => {
                list.set(index, participant.clone());
                ParticipantDiff::Set {
                    index,
                    participant: participant.clone(),
                }
            }
            Err(index) => {
                list.insert(index, participant.clone());
                ParticipantDiff::Insert {
                    index,
                    participant: participant.clone(),
                }
            }
        };
        self.diffs(call).push(diff);
    }

    fn position(list: &Vector<Arc<Participant>>, participant: &Participant) -> Option<usize> {
        match list.binary_search_by(|probe| probe.cmp_by_age(participant)) {
            Ok(index) if list[index].is_same_member(participant) => Some(index),
            // The ordering key moved (it should not): look for the member itself.
            _ => list
                .iter()
                .position(|probe| probe.is_same_member(participant)),
        }
    }

    fn remove(&mut self, call: &CallId, participant: &Participant) {
        let Some(list) = self.lists.get_mut(call) else {
            trace!(%call, "leave of a participant not published");
            return;
        };
        let Some(index) = Self::position(list, participant) else {
            trace!(%call, "leave of a participant not published");
            return;
        };
        list.remove(index);
        if list.is_empty() {
            self.lists.remove(call);
        }
        self.diffs(call).push(ParticipantDiff::Remove { index });
    }

    fn set(&mut self, call: &CallId, old: &Participant, new: &Arc<Participant>) {
        let index = self
            .lists
            .get(call)
            .and_then(|list| Self::position(list, old));
        match index {
            Some(index) => {
                if let Some(list) = self.lists.get_mut(call) {
                    list.set(index, new.clone());
                }
                self.diffs(call).push(ParticipantDiff::Set {
                    index,
                    participant: new.clone(),
                });
            }
            None => self.insert(call, new),
        }
    }

    /// Moves the published list of `call` to `current` (sorted by age), with diffs and the
    /// session changes that say what happened.
    fn reconcile(
        &mut self,
        call: &CallId,
        current: &[Arc<Participant>],
        reasons: &HashMap<(CallId, Member), LeftReason>,
    ) {
        self.touch(call);
        let mut list = self.lists.remove(call).unwrap_or_default();
        let was_empty = list.is_empty();
        let now_by_member: HashMap<Member, &Arc<Participant>> =
            current.iter().map(|p| (member_of(p), p)).collect();
        let mut diffs = Vec::new();
        let mut left = Vec::new();
        let mut moved: HashMap<Member, Arc<Participant>> = HashMap::new();
        // Removals, from the end so that each index holds when applied in order.
        for index in (0..list.len()).rev() {
            let old = list[index].clone();
            let key = member_of(&old);
            match now_by_member.get(&key) {
                Some(new) if new.cmp_by_age(&old) == Ordering::Equal => continue,
                Some(_) => {
                    moved.insert(key, old);
                }
                None => {
                    let reason = reasons
                        .get(&(call.clone(), key))
                        .cloned()
                        .unwrap_or(LeftReason::Superseded);
                    left.push(SessionChange::Left {
                        participant: old,
                        reason,
                    });
                }
            }
            list.remove(index);
            diffs.push(ParticipantDiff::Remove { index });
        }
        left.reverse();
        // Insertions and replacements, in order: what is left of the list is the kept members,
        // in the same relative order as in `current`.
        let mut updated = Vec::new();
        let mut joined = Vec::new();
        for (index, new) in current.iter().enumerate() {
            let kept = list
                .get(index)
                .filter(|old| old.is_same_member(new) && old.cmp_by_age(new) == Ordering::Equal)
                .cloned();
            match kept {
                Some(old) => {
                    if !Arc::ptr_eq(&old, new) && *old != **new {
                        list.set(index, new.clone());
                        diffs.push(ParticipantDiff::Set {
                            index,
                            participant: new.clone(),
                        });
                        updated.push(SessionChange::Updated {
                            old,
                            new: new.clone(),
                        });
                    }
                }
                None => {
                    list.insert(index, new.clone());
                    diffs.push(ParticipantDiff::Insert {
                        index,
                        participant: new.clone(),
                    });
                    match moved.remove(&member_of(new)) {
                        Some(old) => updated.push(SessionChange::Updated {
                            old,
                            new: new.clone(),
                        }),
                        None => joined.push(SessionChange::Joined(new.clone())),
                    }
                }
            }
        }
        let is_empty = list.is_empty();
        if !is_empty {
            self.lists.insert(call.clone(), list);
        }
        self.diffs(call).extend(diffs);
        let (room_id, slot_id) = (call.room_id().to_owned(), call.slot_id().to_owned());
        if was_empty && !is_empty {
            self.batch.changes.push(SessionChange::SessionStarted {
                room_id: room_id.clone(),
                slot_id: slot_id.clone(),
            });
        }
        self.batch.changes.extend(left);
        self.batch.changes.extend(updated);
        self.batch.changes.extend(joined);
        if !was_empty && is_empty {
            self.batch
                .changes
                .push(SessionChange::SessionEnded { room_id, slot_id });
        }
    }

    /// Publishes this input's changes: per call its "active" change, then its diffs; then the
    /// session changes.
    pub(crate) fn flush(&mut self, out: &mut VecDeque<Update>) {
        let batch = std::mem::take(&mut self.batch);
        let mut calls = batch.calls;
        for call in batch.order {
            let Some(CallBatch { was_active, diffs }) = calls.remove(&call) else {
                continue;
            };
            let active = self.lists.contains_key(&call);
            if was_active != active {
                out.push_back(Update::CallActive {
                    call: call.clone(),
                    active,
                });
            }
            if !diffs.is_empty() {
                out.push_back(Update::Participants { call, diffs });
            }
        }
        out.extend(batch.changes.into_iter().map(Update::SessionChange));
    }
}
