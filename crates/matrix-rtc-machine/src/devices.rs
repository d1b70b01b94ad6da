//! Checks for new devices in encrypted rooms where we are in a call: a device that appeared
//! after our membership was encrypted cannot decrypt it, so it must be re-sent (and our
//! delayed leave re-armed) for them. One check per room at a time.
use std::{collections::BTreeSet, time::Instant};

use ruma_common::{OwnedRoomId, RoomId};

#[derive(Debug, Default)]
pub(crate) struct DeviceChecks {
    /// Rooms to check at the next drive.
    wanted: BTreeSet<OwnedRoomId>,
    in_flight: BTreeSet<OwnedRoomId>,
    /// The next periodic check.
    pub(crate) periodic_at: Option<Instant>,
}

impl DeviceChecks {
    pub(crate) fn want(&mut self, room_id: &RoomId) {
        self.wanted.insert(room_id.to_owned());
    }

    /// The rooms to check now (none already being checked).
    pub(crate) fn take_wanted(&mut self) -> Vec<OwnedRoomId> {
        let wanted = std::mem::take(&mut self.wanted);
        wanted
            .into_iter()
            .filter(|room_id| self.in_flight.insert(room_id.clone()))
            .collect()
    }

    pub(crate) fn done(&mut self, room_id: &RoomId) {
        self.in_flight.remove(room_id);
    }
}
