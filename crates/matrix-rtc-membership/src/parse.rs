//! Reading membership events into one internal shape: a join, or a reason it is gone.
use std::time::Instant;

use ruma_common::OwnedDeviceId;

use crate::{CallIntent, FocusSelection, LeftReason, MembershipFormat, Transport};

pub(crate) mod legacy;
pub(crate) mod sticky;

/// A valid join read from one event (before the read-time filters of the model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Join {
    pub(crate) slot_id: String,
    pub(crate) device_id: OwnedDeviceId,
    pub(crate) member_id: String,
    pub(crate) format: MembershipFormat,
    /// For sticky events the event's `origin_server_ts` (the model keeps the first one seen),
    /// for legacy events `created_ts ?? origin_server_ts`.
    pub(crate) created_ts: u64,
    pub(crate) transports: Vec<Transport>,
    pub(crate) focus_selection: Option<FocusSelection>,
    pub(crate) call_intent: Option<CallIntent>,
    pub(crate) expires_wall_ms: u64,
    /// Legacy memberships only: when `created + expires` passes, on the monotonic clock.
    pub(crate) deadline: Option<Instant>,
    /// Sticky memberships only: whether it arrived encrypted (rule 5 is applied at read time).
    pub(crate) encrypted: bool,
    pub(crate) suspicious: bool,
}

/// What one event means for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A join (a refresh when the key already had one).
    Join(Box<Join>),
    /// Not a membership: a leave, or content that is not valid.
    Gone(LeftReason),
}
