//! One `(room, slot)`: its candidate memberships per device and its visible participants.
use std::{
    cmp::Ordering,
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use ruma_common::{OwnedDeviceId, OwnedUserId};

use super::EntryKey;
use crate::{CallIntent, Participant};

/// A participant ordered oldest first, by [`Participant::cmp_by_age`] (the one order of
/// participants in this workspace); cloning it costs a reference count.
#[derive(Debug, Clone)]
pub(crate) struct ByAge(pub(crate) Arc<Participant>);

impl PartialEq for ByAge {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ByAge {}

impl PartialOrd for ByAge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByAge {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp_by_age(&other.0)
    }
}

/// The memberships of one `(user, device)` in a slot.
#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Every join entry of this device in this slot, visible or not.
    pub(crate) candidates: Vec<Arc<EntryKey>>,
    /// The participants currently shown for this device, with the entry each comes from.
    pub(crate) visible: Vec<(ByAge, Arc<EntryKey>)>,
}

/// A slot of a room.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Device groups, by user then device (looked up without building a key).
    pub(crate) groups: HashMap<OwnedUserId, HashMap<OwnedDeviceId, Group>>,
    pub(crate) roster: Roster,
}

impl Slot {
    pub(crate) fn is_unused(&self) -> bool {
        self.groups.is_empty() && self.roster.order.is_empty()
    }
}

/// The visible participants of a slot.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    /// Visible participants, oldest first.
    pub(crate) order: BTreeSet<ByAge>,
    /// How many visible participants give each call intent (`None`: no intent).
    intents: HashMap<Option<CallIntent>, usize>,
}

impl Roster {
    pub(crate) fn insert(&mut self, participant: ByAge) {
        *self
            .intents
            .entry(participant.0.call_intent.clone())
            .or_default() += 1;
        self.order.insert(participant);
    }

    pub(crate) fn remove(&mut self, participant: &ByAge) -> bool {
        if !self.order.remove(participant) {
            return false;
        }
        let intent = &participant.0.call_intent;
        if let Some(count) = self.intents.get_mut(intent) {
            *count -= 1;
            if *count == 0 {
                self.intents.remove(intent);
            }
        }
        true
    }

    /// The intent all visible participants share, if any. O(1).
    pub(crate) fn consensus_intent(&self) -> Option<&CallIntent> {
        if self.intents.len() != 1 {
            return None;
        }
        self.intents.keys().next().and_then(Option::as_ref)
    }

    /// The participants, oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Participant> + '_ {
        self.order.iter().map(|participant| &*participant.0)
    }

    /// The participants as shared, oldest first.
    pub(crate) fn iter_shared(&self) -> impl DoubleEndedIterator<Item = &Arc<Participant>> + '_ {
        self.order.iter().map(|participant| &participant.0)
    }
}
