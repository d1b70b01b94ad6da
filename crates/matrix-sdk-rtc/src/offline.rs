//! [`OfflineIngest`]: the receiving path (the one sticky parser, the [`RtcMachine`], the
//! observables) without a client or a network, for replaying recorded sync data.
use std::{sync::Arc, time::Instant};

use matrix_rtc_machine::{
    CallId, MachineConfig, Outcome, PageFlags, RequestKind, RtcMachine, Update,
};
use matrix_rtc_membership::RequestOutcome;
use matrix_sdk::ruma::{owned_device_id, owned_user_id};
use matrix_sticky_events::{Limits, Receipt, Rejection, parse_sticky_batch};

use crate::{Diagnostic, RtcCallView, observe::Registry};

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

/// Feeds recorded sliding-sync sticky-event responses through the same code the pump runs on
/// live data: [`parse_sticky_batch`], the [`RtcMachine`] and the observable participant lists.
///
/// Without room state, every sender counts as joined to its room, and encrypted events stay
/// parked (there are no keys).
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
    machine: RtcMachine,
    registry: Arc<Registry>,
    diagnostics: Vec<Diagnostic>,
}

impl OfflineIngest {
    /// An empty state with the given memory caps.
    pub fn new(limits: Limits) -> Self {
        let mut config = MachineConfig::new(
            owned_user_id!("@offline:localhost"),
            owned_device_id!("OFFLINE"),
            "offline",
        );
        config.sticky_limits = limits;
        Self {
            machine: RtcMachine::new(config),
            registry: Arc::new(Registry::new()),
            diagnostics: Vec::new(),
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
        let summary =
            self.machine
                .handle_sticky_batch(batch, PageFlags::new(true, false), receipt.instant);
        let changes = self.settle(receipt.instant);
        Ok(IngestStats {
            events: summary.events,
            rejected: summary.rejected,
            changes,
        })
    }

    /// Expires what is due at `now`; returns the number of session changes.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        self.machine.handle_timeout(now);
        self.settle(now)
    }

    /// The earliest expiry.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.machine.next_deadline()
    }

    /// Participants across all calls now.
    pub fn live_participants(&self) -> usize {
        self.machine.stats().participants
    }

    /// Visible entries (keyed and unkeyed) in the sticky map now.
    pub fn sticky_entries(&self) -> usize {
        self.machine.stats().sticky_entries
    }

    /// The calls that have participants now, sorted.
    pub fn active_calls(&self) -> Vec<CallId> {
        self.registry.active_calls()
    }

    /// The observable view of one call.
    pub fn call(&self, call: &CallId) -> RtcCallView {
        RtcCallView::new(self.registry.call(call))
    }

    /// Diagnostics collected so far (rejected events and memberships), oldest first.
    pub fn take_diagnostics(&mut self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.diagnostics)
    }

    /// Answers what the machine asks (every sender is joined; nothing is sent or decrypted)
    /// and publishes its updates; returns the number of session changes.
    fn settle(&mut self, now: Instant) -> usize {
        let mut changes = 0;
        loop {
            let mut answered = false;
            while let Some(request) = self.machine.poll_request() {
                let outcome = match request.kind() {
                    RequestKind::QueryMember { .. } => Outcome::Member { joined: true },
                    RequestKind::Decrypt { .. } => Outcome::MissingRoomKey,
                    RequestKind::CheckNewDevices { .. } => Outcome::NewDevices { added: false },
                    _ => Outcome::Http(RequestOutcome::Network),
                };
                self.machine.handle_response(request.id(), outcome, now);
                answered = true;
            }
            let updates: Vec<Update> = std::iter::from_fn(|| self.machine.poll_update()).collect();
            changes += updates
                .iter()
                .filter(|update| matches!(update, Update::SessionChange(_)))
                .count();
            for update in &updates {
                if let Update::Diagnostic(diagnostic) = update {
                    self.diagnostics.push(diagnostic.clone());
                }
            }
            let _ = self.registry.apply(updates);
            if !answered {
                return changes;
            }
        }
    }
}
