//! Redactions remembered so that a redacted event arriving later (or again) stays out.
//!
//! Every redaction is remembered until the redacted event can no longer be live: one hour (the
//! longest sticky duration) plus [`MARGIN`] after the redaction was handled. The memory is
//! bounded by [`Limits::remembered_redactions`](crate::Limits::remembered_redactions); over it,
//! the oldest are forgotten first.
use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use ruma_common::{EventId, OwnedEventId, OwnedRoomId, RoomId};

use crate::wire::MAX_DURATION_MS;

/// Extra time a redaction is remembered beyond the longest sticky duration, for delivery delays
/// and clock differences.
pub(crate) const MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long a redaction is remembered.
pub(crate) const REMEMBER_FOR: Duration =
    Duration::from_millis(MAX_DURATION_MS).saturating_add(MARGIN);

/// One remembered redaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remembered {
    pub(crate) forget_at: Instant,
    pub(crate) event_id: OwnedEventId,
    pub(crate) room_id: OwnedRoomId,
}

/// The remembered redactions.
#[derive(Debug, Default)]
pub(crate) struct Redactions {
    /// Event ID to the rooms it was redacted in (almost always one).
    index: HashMap<OwnedEventId, Vec<OwnedRoomId>>,
    /// In the order remembered; `forget_at` is non-decreasing as long as time is.
    queue: VecDeque<Remembered>,
}

impl Redactions {
    pub(crate) fn contains(&self, room_id: &RoomId, event_id: &EventId) -> bool {
        self.index
            .get(event_id)
            .is_some_and(|rooms| rooms.iter().any(|r| r == room_id))
    }

    /// Remember a redaction until `forget_at`, keeping at most `cap` (the oldest go first).
    pub(crate) fn remember(
        &mut self,
        room_id: &RoomId,
        event_id: &EventId,
        forget_at: Instant,
        cap: usize,
    ) {
        if cap == 0 || self.contains(room_id, event_id) {
            return;
        }
        while self.queue.len() >= cap {
            self.forget_oldest();
        }
        self.index
            .entry(event_id.to_owned())
            .or_default()
            .push(room_id.to_owned());
        self.queue.push_back(Remembered {
            forget_at,
            event_id: event_id.to_owned(),
            room_id: room_id.to_owned(),
        });
    }

    /// Forget what is due at `now`.
    pub(crate) fn purge(&mut self, now: Instant) {
        while self.queue.front().is_some_and(|r| r.forget_at <= now) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some(oldest) = self.queue.pop_front() else {
            return;
        };
        if let Some(rooms) = self.index.get_mut(&oldest.event_id) {
            rooms.retain(|r| *r != oldest.room_id);
            if rooms.is_empty() {
                self.index.remove(&oldest.event_id);
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Remembered> {
        self.queue.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}
