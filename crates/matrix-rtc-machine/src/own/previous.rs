//! A membership of an earlier run of the app (it was killed or crashed mid-call): ended at
//! once after a restart, rather than lingering until its delayed leave fires. First its
//! delayed leave is sent now; when that is gone (or fails for good), a plain leave for its
//! member ID is sent (a second leave for a membership already ended is harmless). Transient
//! failures are retried with backoff, a few times.
use std::time::{Duration, Instant};

use matrix_rtc_membership::{DelayId, RequestOutcome, sticky_leave_content, wire as rtc_wire};
use tracing::{debug, warn};

use super::Identity;
use crate::{
    CallId, DelayedAction, OwnCallRecord, RequestKind,
    io::{Io, Pending},
};

/// Attempts of one stage before moving on.
const MAX_ATTEMPTS: u32 = 5;
/// First wait after a transient failure (doubled per failure).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Send the delayed leave now.
    SendDelayed,
    /// Send a plain leave.
    SendLeave,
}

#[derive(Debug)]
pub(crate) struct Previous {
    record: OwnCallRecord,
    stage: Stage,
    failures: u32,
    retry_at: Option<Instant>,
    in_flight: bool,
    /// Number of this entry, for its transaction ID.
    number: u64,
}

impl Previous {
    pub(crate) fn new(record: OwnCallRecord, number: u64) -> Self {
        let stage = if record.delay_id.is_some() {
            Stage::SendDelayed
        } else {
            Stage::SendLeave
        };
        Self {
            record,
            stage,
            failures: 0,
            retry_at: None,
            in_flight: false,
            number,
        }
    }

    /// What to persist while it is not ended.
    pub(crate) fn record(&self) -> OwnCallRecord {
        let mut record = self.record.clone();
        if self.stage == Stage::SendLeave {
            record.delay_id = None;
        }
        record
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.in_flight { None } else { self.retry_at }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
        }
    }

    pub(crate) fn drive(&mut self, call: &CallId, identity: &Identity, io: &mut Io, now: Instant) {
        if self.in_flight || self.retry_at.is_some_and(|at| at > now) {
            return;
        }
        self.retry_at = None;
        let kind = match (self.stage, &self.record.delay_id) {
            (Stage::SendDelayed, Some(delay_id)) => RequestKind::UpdateDelayed {
                delay_id: DelayId::new(delay_id.clone()),
                action: DelayedAction::Send,
            },
            _ => RequestKind::SendSticky {
                room_id: self.record.room_id.clone(),
                event_type: rtc_wire::RTC_MEMBER_UNSTABLE,
                content: sticky_leave_content(&self.record.slot_id, &self.record.member_id),
                txn_id: format!("{}-previous-{}", identity.txn_prefix, self.number),
                sticky_duration: Duration::from_millis(self.record.sticky_duration_ms),
            },
        };
        self.in_flight = true;
        io.emit(kind, None, Pending::Previous { call: call.clone() });
    }

    /// Returns `true` once this membership is ended (or given up).
    pub(crate) fn handle_response(&mut self, outcome: &RequestOutcome, now: Instant) -> bool {
        self.in_flight = false;
        let call = &self.record.room_id;
        let transient = match outcome {
            RequestOutcome::Success { .. } => {
                debug!(room = %call, stage = ?self.stage, "ended the membership of an earlier run");
                return true;
            }
            RequestOutcome::Network | RequestOutcome::Timeout => Some(None),
            RequestOutcome::RateLimited { retry_after } => Some(*retry_after),
            RequestOutcome::Http { status, .. } if *status >= 500 => Some(None),
            _ => None,
        };
        match (transient, self.stage) {
            (Some(asked), _) if self.failures + 1 < MAX_ATTEMPTS => {
                self.failures += 1;
                let wait = FIRST_BACKOFF.saturating_mul(1 << self.failures.min(6));
                self.retry_at = Some(now + asked.map_or(wait, |asked| asked.max(wait)));
                false
            }
            (_, Stage::SendDelayed) => {
                debug!(room = %call, ?outcome, "the delayed leave of an earlier run is gone; sending a leave");
                self.stage = Stage::SendLeave;
                self.failures = 0;
                false
            }
            (_, Stage::SendLeave) => {
                warn!(room = %call, ?outcome, "could not end the membership of an earlier run");
                true
            }
        }
    }
}
