//! Member queries: the membership model asks for the room membership of senders it has not
//! been told about; at most a few are in flight, and a failed one is asked again later.
use std::{collections::VecDeque, time::Instant};

use ruma_common::{OwnedRoomId, OwnedUserId, RoomId};

#[derive(Debug, Default)]
pub(crate) struct MemberQueries {
    queue: VecDeque<(OwnedRoomId, OwnedUserId)>,
    retry: VecDeque<(Instant, OwnedRoomId, OwnedUserId)>,
    in_flight: usize,
}

impl MemberQueries {
    pub(crate) fn push(&mut self, room_id: OwnedRoomId, user_id: OwnedUserId) {
        self.queue.push_back((room_id, user_id));
    }

    /// The next query to send, when fewer than `max` are in flight.
    pub(crate) fn next(&mut self, max: usize) -> Option<(OwnedRoomId, OwnedUserId)> {
        if self.in_flight >= max {
            return None;
        }
        let query = self.queue.pop_front()?;
        self.in_flight += 1;
        Some(query)
    }

    pub(crate) fn answered(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Asks again at `at`.
    pub(crate) fn retry_at(&mut self, at: Instant, room_id: OwnedRoomId, user_id: OwnedUserId) {
        self.retry.push_back((at, room_id, user_id));
    }

    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.retry.front().map(|(at, _, _)| *at)
    }

    /// Moves the retries due at `now` back into the queue.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while self.retry.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, room_id, user_id)) = self.retry.pop_front() {
                self.queue.push_back((room_id, user_id));
            }
        }
    }

    pub(crate) fn forget_room(&mut self, room_id: &RoomId) {
        self.queue.retain(|(room, _)| **room != *room_id);
        self.retry.retain(|(_, room, _)| **room != *room_id);
    }
}
