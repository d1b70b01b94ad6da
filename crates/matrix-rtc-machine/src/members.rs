//! Member queries: the membership model asks for the room membership of senders it has not
//! been told about; at most a few are in flight, and a failed one is asked again later, each
//! failure of the same sender doubling the wait (from the configured base up to its cap) until
//! an answer resets it.
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    time::{Duration, Instant},
};

use ruma_common::{OwnedRoomId, OwnedUserId, RoomId, UserId};

/// The waits of one sender's member queries: `base`, `2 × base`, `4 × base`, … up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (the first is `1`).
    pub(crate) fn wait(self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1 << doublings)
            .map_or(self.max, |wait| wait.min(self.max))
    }
}

#[derive(Debug, Default)]
pub(crate) struct MemberQueries {
    queue: VecDeque<(OwnedRoomId, OwnedUserId)>,
    /// Queries to ask again, by due time (then room and user, so ties keep a fixed order).
    retry: BTreeSet<(Instant, OwnedRoomId, OwnedUserId)>,
    /// Failures in a row per `(room, sender)`, forgotten at the first answer.
    failures: HashMap<(OwnedRoomId, OwnedUserId), u32>,
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

    /// The query of `user_id` in `room_id` was answered: its next failure waits the base again.
    pub(crate) fn answered(&mut self, room_id: &RoomId, user_id: &UserId) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.failures
            .remove(&(room_id.to_owned(), user_id.to_owned()));
    }

    /// The query failed: it is asked again after the backoff's wait, which is returned.
    pub(crate) fn failed(
        &mut self,
        backoff: Backoff,
        now: Instant,
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
    ) -> Duration {
        self.in_flight = self.in_flight.saturating_sub(1);
        let failures = self
            .failures
            .entry((room_id.clone(), user_id.clone()))
            .or_insert(0);
        *failures = failures.saturating_add(1);
        let wait = backoff.wait(*failures);
        self.retry.insert((now + wait, room_id, user_id));
        wait
    }

    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.retry.first().map(|(at, _, _)| *at)
    }

    /// Moves the retries due at `now` back into the queue.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while self.retry.first().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, room_id, user_id)) = self.retry.pop_first() {
                self.queue.push_back((room_id, user_id));
            }
        }
    }

    pub(crate) fn forget_room(&mut self, room_id: &RoomId) {
        self.queue.retain(|(room, _)| **room != *room_id);
        self.retry.retain(|(_, room, _)| **room != *room_id);
        self.failures.retain(|(room, _), _| **room != *room_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_base_up_to_the_cap() {
        let backoff = Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        let waits: Vec<u64> = (1..=7).map(|n| backoff.wait(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(backoff.wait(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn an_answer_resets_the_wait() {
        let backoff = Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        let mut queries = MemberQueries::default();
        let room_id: OwnedRoomId = "!r:example.org".try_into().expect("room id");
        let user_id: OwnedUserId = "@a:example.org".try_into().expect("user id");
        let now = Instant::now();
        let fail = |queries: &mut MemberQueries| {
            queries.push(room_id.clone(), user_id.clone());
            assert!(queries.next(8).is_some());
            queries.failed(backoff, now, room_id.clone(), user_id.clone())
        };
        assert_eq!(fail(&mut queries), Duration::from_secs(5));
        assert_eq!(fail(&mut queries), Duration::from_secs(10));
        queries.push(room_id.clone(), user_id.clone());
        assert!(queries.next(8).is_some());
        queries.answered(&room_id, &user_id);
        assert_eq!(fail(&mut queries), Duration::from_secs(5));
    }
}
