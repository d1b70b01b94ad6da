//! [`OfflineIngest`]: the driver's receiving path (sticky map, membership model,
//! observables) without a client or a network, for replaying recorded sync data.
use std::{sync::Arc, time::Instant};

use matrix_rtc_membership::SessionChange;
use matrix_sdk::ruma::RoomId;
use matrix_sticky_events::{Limits, Receipt, Rejection, parse_sticky_batch};

use crate::{
    RtcCallView,
    driver::{Ingest, publish},
    observe::{CallKey, Registry},
};

/// What one ingested batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngestStats {
    /// Events in the batch (valid or not).
    pub events: usize,
    /// Events or parts of the batch that were rejected.
    pub rejected: usize,
    /// Session changes the batch caused.
    pub changes: usize,
}

/// Feeds recorded sliding-sync sticky-event responses through the same code the driver runs
/// on live data: parsing, the sticky map, the membership model and the observable
/// participant lists.
///
/// Without room state, every sender counts as joined to its room.
///
/// ```
/// use std::time::Instant;
/// use matrix_sdk_rtc::{Limits, OfflineIngest, Receipt};
///
/// let mut ingest = OfflineIngest::new(Limits::default());
/// let line = r#"{"rooms": {}, "next_batch": "sticky_1"}"#;
/// let receipt = Receipt { instant: Instant::now(), wall_ms: 1_795_660_000_000 };
/// let stats = ingest.ingest_response(line, receipt).unwrap();
/// assert_eq!(stats.events, 0);
/// assert_eq!(ingest.live_participants(), 0);
/// ```
#[derive(Debug)]
pub struct OfflineIngest {
    ingest: Ingest,
    registry: Arc<Registry>,
    live: usize,
}

impl OfflineIngest {
    /// An empty state with the given memory caps.
    pub fn new(limits: Limits) -> Self {
        Self {
            ingest: Ingest::new(limits),
            registry: Arc::new(Registry::new()),
            live: 0,
        }
    }

    /// Ingests one response of the sticky-events extension (the object with `rooms` and
    /// `next_batch`) received at `receipt`. A malformed event or room costs only itself;
    /// only a response that is not a JSON object at all is an error.
    pub fn ingest_response(
        &mut self,
        json: &str,
        receipt: Receipt,
    ) -> Result<IngestStats, Rejection> {
        let batch = parse_sticky_batch(json, receipt)?;
        let mut stats = IngestStats {
            rejected: batch.errors.len(),
            ..IngestStats::default()
        };
        let mut changes = Vec::new();
        for room in batch.rooms {
            for parsed in room.events {
                stats.events += 1;
                stats.rejected += usize::from(parsed.is_err());
                self.ingest.handle_parsed(
                    &room.room_id,
                    parsed,
                    None,
                    receipt.instant,
                    &mut changes,
                );
            }
        }
        self.answer_member_queries(&mut changes);
        stats.changes = changes.len();
        self.publish(changes);
        Ok(stats)
    }

    /// Expires what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let mut changes = Vec::new();
        self.ingest.handle_timeout(now, &mut changes);
        let count = changes.len();
        self.publish(changes);
        count
    }

    /// The earliest expiry.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ingest.next_deadline()
    }

    /// Participants across all calls now.
    pub fn live_participants(&self) -> usize {
        self.live
    }

    /// Entries (keyed and unkeyed) in the sticky map now.
    pub fn sticky_entries(&self) -> usize {
        self.ingest.map.len()
    }

    /// The calls that have participants now, as `(room, slot)`.
    pub fn active_calls(&self) -> Vec<(matrix_sdk::ruma::OwnedRoomId, String)> {
        self.registry
            .active_calls()
            .into_iter()
            .map(|key| (key.room_id, key.slot_id))
            .collect()
    }

    /// The observable view of one call.
    pub fn call(&self, room_id: &RoomId, slot_id: &str) -> RtcCallView {
        RtcCallView::new(self.registry.call(&CallKey::new(room_id, slot_id)))
    }

    /// Diagnostics collected so far (rejected events and memberships), oldest first.
    pub fn take_diagnostics(&mut self) -> Vec<crate::Diagnostic> {
        self.ingest.drain_model_diagnostics();
        std::mem::take(&mut self.ingest.diagnostics)
    }

    fn answer_member_queries(&mut self, changes: &mut Vec<SessionChange>) {
        while let Some(query) = self.ingest.poll_member_query() {
            changes.extend(self.ingest.model.handle_room_member(
                &query.room_id,
                &query.user_id,
                true,
            ));
        }
    }

    fn publish(&mut self, changes: Vec<SessionChange>) {
        for change in &changes {
            match change {
                SessionChange::Joined(_) => self.live += 1,
                SessionChange::Left { .. } => self.live = self.live.saturating_sub(1),
                _ => {}
            }
        }
        publish(&self.registry, changes);
    }
}
