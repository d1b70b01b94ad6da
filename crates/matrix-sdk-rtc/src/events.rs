//! The items of the streams across rooms. Each stream delivers every change, or, when its
//! reader fell behind, says so and hands over the current state to resync from.
use std::sync::Arc;

use imbl::Vector;
use matrix_rtc_machine::{CallId, Diagnostic};
use matrix_rtc_membership::{Participant, SessionChange};

/// A call (one slot of one room) started or ended: its participant list went from empty to
/// non-empty or back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEvent {
    /// The first participant appeared.
    Started {
        /// The call.
        call: CallId,
    },
    /// The last participant left.
    Ended {
        /// The call.
        call: CallId,
    },
    /// The reader fell behind and missed `missed` events: these are the calls active now.
    /// Forget what you knew and start again from here.
    Resync {
        /// How many events were skipped.
        missed: u64,
        /// Every active call, sorted.
        active: Vec<CallId>,
    },
}

/// An item of [`RtcClient::subscribe_session_changes`](crate::RtcClient::subscribe_session_changes).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionUpdate {
    /// One membership change: a session starting or ending, a participant joining, updating
    /// (a refresh) or leaving with its reason.
    Change(SessionChange),
    /// The reader fell behind and missed `missed` changes: these are the participants of every
    /// active call now. Forget what you knew and start again from here; the changes that
    /// follow apply on top of it.
    Resync {
        /// How many changes were skipped.
        missed: u64,
        /// Every active call with its participants (oldest first), sorted by call.
        calls: Vec<(CallId, Vector<Arc<Participant>>)>,
    },
}

/// An item of [`RtcClient::subscribe_diagnostics`](crate::RtcClient::subscribe_diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiagnosticEvent {
    /// Why something did not count.
    Diagnostic(Diagnostic),
    /// The reader fell behind: this many diagnostics were skipped.
    Missed {
        /// How many.
        missed: u64,
    },
}
