//! What the machine tells the pump to show ([`Update`]).
use std::sync::Arc;

use matrix_rtc_membership::{
    CallIntent, OwnError, OwnStatus, Participant, SessionChange, Transport,
};

use crate::{CallId, Diagnostic, OwnCallRecords};

/// One change of a call's participant list, with indices into the list as it was just
/// before the change (apply the diffs of one [`Update::Participants`] in order). The list is
/// ordered oldest first by [`Participant::cmp_by_age`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantDiff {
    /// Insert at `index`.
    Insert {
        /// Where.
        index: usize,
        /// Who.
        participant: Arc<Participant>,
    },
    /// Replace the participant at `index` (the same member, a newer event).
    Set {
        /// Where.
        index: usize,
        /// The new value.
        participant: Arc<Participant>,
    },
    /// Remove the participant at `index`.
    Remove {
        /// Where.
        index: usize,
    },
}

/// Why a join did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinFailure {
    /// We are already joining or joined this call as another member: leave first. Nothing
    /// changed.
    #[error("already in this call as another member; leave first")]
    AlreadyJoined,
    /// The member ID is empty.
    #[error("the member id is empty")]
    EmptyMemberId,
    /// The server refused our join for good, or a retry budget ran out (with
    /// `OwnError::RetriesExhausted` the machine keeps trying; the status tells).
    #[error(transparent)]
    Failed(OwnError),
    /// A leave came before the join completed.
    #[error("left before the join completed")]
    LeftBeforeJoined,
}

/// A change of our membership's content while we are in a call: what to change (`None`
/// keeps it). It goes out as a refresh of the same member, soon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContentUpdate {
    /// Publish on this transport from now on.
    pub transport: Option<Transport>,
    /// Announce this call intent from now on.
    pub call_intent: Option<CallIntent>,
}

impl ContentUpdate {
    /// Publish on `transport` from now on.
    #[must_use]
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Announce `intent` from now on.
    #[must_use]
    pub fn with_call_intent(mut self, intent: CallIntent) -> Self {
        self.call_intent = Some(intent);
        self
    }
}

/// Why an [`update`](crate::RtcMachine::update) was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateFailure {
    /// We are not joining or joined in this call.
    #[error("not in this call")]
    NotInCall,
}

/// Something for the pump to publish, from [`RtcMachine::poll_update`](crate::RtcMachine::poll_update).
///
/// After each input the updates come in this order: for each call touched, its
/// [`CallActive`](Self::CallActive) change (before the list moves, so a reader who sees a
/// participant finds the call active, and one who sees the list empty finds it inactive),
/// then its [`Participants`](Self::Participants) diffs; then the
/// [`SessionChange`](Self::SessionChange)s (once the lists show them); then own statuses, join
/// and leave completions, the record of our calls, and diagnostics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Update {
    /// The call got its first participant (`true`) or lost its last (`false`).
    CallActive {
        /// The call.
        call: CallId,
        /// Whether it has participants now.
        active: bool,
    },
    /// The call's participant list changed: one batch of diffs per input.
    Participants {
        /// The call.
        call: CallId,
        /// The diffs, in order.
        diffs: Vec<ParticipantDiff>,
    },
    /// A membership change, with its reason for leaves.
    SessionChange(SessionChange),
    /// Our own status in a call changed.
    OwnStatus {
        /// The call.
        call: CallId,
        /// The new status.
        status: OwnStatus,
    },
    /// A [`join`](crate::RtcMachine::join) completed: we are connected, or it failed.
    JoinFinished {
        /// The call.
        call: CallId,
        /// Connected, or why not.
        result: Result<(), JoinFailure>,
    },
    /// A [`leave`](crate::RtcMachine::leave) completed: our leave is out (or we were not in
    /// the call).
    LeaveFinished {
        /// The call.
        call: CallId,
    },
    /// The calls we are in changed: persist this record (encrypted: it holds delay IDs), so
    /// that [`restore`](crate::RtcMachine::restore) can end our memberships after a crash.
    OwnCalls(OwnCallRecords),
    /// An event did not count, or something was dropped, and why.
    Diagnostic(Diagnostic),
}
