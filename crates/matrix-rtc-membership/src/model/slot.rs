//! One `(room, slot)`: its candidate memberships per device and its visible participants.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use ruma_common::{OwnedDeviceId, OwnedUserId};

use super::EntryKey;
use crate::{CallIntent, Participant};

/// Ordering of participants: oldest first, ties by user, device, member ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct OrderKey {
    pub(crate) created_ts: u64,
    pub(crate) user_id: OwnedUserId,
    pub(crate) device_id: OwnedDeviceId,
    pub(crate) member_id: String,
}

impl OrderKey {
    pub(crate) fn of(participant: &Participant) -> Self {
        Self {
            created_ts: participant.created_ts,
            user_id: participant.user_id.clone(),
            device_id: participant.device_id.clone(),
            member_id: participant.member_id.clone(),
        }
    }
}

/// The memberships of one `(user, device)` in a slot.
#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Every join entry of this device in this slot, visible or not.
    pub(crate) candidates: Vec<EntryKey>,
    /// The participants currently shown for this device, with the entry each comes from.
    pub(crate) visible: Vec<(OrderKey, EntryKey)>,
}

/// A slot of a room.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) groups: HashMap<(OwnedUserId, OwnedDeviceId), Group>,
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
    pub(crate) order: BTreeMap<OrderKey, Arc<Participant>>,
    /// How many visible participants give each call intent (`None`: no intent).
    intents: HashMap<Option<CallIntent>, usize>,
}

impl Roster {
    pub(crate) fn insert(&mut self, key: OrderKey, participant: Arc<Participant>) {
        *self
            .intents
            .entry(participant.call_intent.clone())
            .or_default() += 1;
        self.order.insert(key, participant);
    }

    pub(crate) fn remove(&mut self, key: &OrderKey) -> Option<Arc<Participant>> {
        let participant = self.order.remove(key)?;
        if let Some(count) = self.intents.get_mut(&participant.call_intent) {
            *count -= 1;
            if *count == 0 {
                self.intents.remove(&participant.call_intent);
            }
        }
        Some(participant)
    }

    /// The intent all visible participants share, if any. O(1).
    pub(crate) fn consensus_intent(&self) -> Option<&CallIntent> {
        if self.intents.len() != 1 {
            return None;
        }
        self.intents.keys().next().and_then(Option::as_ref)
    }
}
