//! The record of our own calls, for the pump to persist and hand back after a restart.
use std::collections::BTreeMap;

use ruma_common::{OwnedRoomId, RoomId};
use serde::{Deserialize, Serialize};

/// One call we are in, as persisted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OwnCallRecord {
    /// Room.
    pub room_id: OwnedRoomId,
    /// Slot.
    pub slot_id: String,
    /// Our member ID there.
    pub member_id: String,
    /// Our delayed leave the server may hold (a secret).
    pub delay_id: Option<String>,
    /// The sticky duration of our member events there.
    pub sticky_duration_ms: u64,
}

impl OwnCallRecord {
    /// A record (for tests and for pumps that store their own format).
    pub fn new(
        room_id: OwnedRoomId,
        slot_id: impl Into<String>,
        member_id: impl Into<String>,
        delay_id: Option<String>,
        sticky_duration_ms: u64,
    ) -> Self {
        Self {
            room_id,
            slot_id: slot_id.into(),
            member_id: member_id.into(),
            delay_id,
            sticky_duration_ms,
        }
    }
}

impl std::fmt::Debug for OwnCallRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The delay ID is a bearer secret: never print it.
        f.debug_struct("OwnCallRecord")
            .field("room_id", &self.room_id)
            .field("slot_id", &self.slot_id)
            .field("member_id", &self.member_id)
            .field("delay_id", &self.delay_id.as_ref().map(|_| "<redacted>"))
            .field("sticky_duration_ms", &self.sticky_duration_ms)
            .finish()
    }
}

/// Every call we are in (and every membership of an earlier run not ended yet), keyed by
/// `(room, slot)`. Serialized as `{"calls": {"<room>|<slot>": record}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnCallRecords {
    calls: BTreeMap<String, OwnCallRecord>,
}

impl OwnCallRecords {
    fn key(room_id: &RoomId, slot_id: &str) -> String {
        format!("{room_id}|{slot_id}")
    }

    /// Adds (or replaces) the record of its call.
    pub fn insert(&mut self, record: OwnCallRecord) {
        self.calls
            .insert(Self::key(&record.room_id, &record.slot_id), record);
    }

    /// Every record, by `(room, slot)`.
    pub fn records(&self) -> impl Iterator<Item = &OwnCallRecord> {
        self.calls.values()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.calls.len()
    }
}

impl FromIterator<OwnCallRecord> for OwnCallRecords {
    fn from_iter<I: IntoIterator<Item = OwnCallRecord>>(iter: I) -> Self {
        let mut records = Self::default();
        for record in iter {
            records.insert(record);
        }
        records
    }
}
