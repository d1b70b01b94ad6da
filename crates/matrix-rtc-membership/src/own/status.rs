//! What the machine reports: status, events and errors.

use super::request::OwnAction;

/// Where our own membership stands, from [`OwnMembership::status`](crate::OwnMembership::status).
///
/// Every change is also reported as [`OwnEvent::StatusChanged`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnStatus {
    /// Not in the call. Entered at creation, when a leave is done (our leave was sent and
    /// acknowledged, our delayed leave has fired, our join has expired, or no join was ever
    /// sent), and by [`leave`](crate::OwnMembership::leave) after an error.
    Disconnected,
    /// Getting into the call. Entered by [`join`](crate::OwnMembership::join), and again when
    /// our membership is gone and we are re-joining (our delayed leave fired, sync no longer
    /// shows us, or our join expired). Left when our join is acknowledged.
    Connecting,
    /// In the call: our join was acknowledged and has not expired.
    Connected {
        /// `true` while our delayed leave is armed and confirmed, i.e. the server has certainly
        /// not fired it yet (now is before the earliest instant it could fire), so a crash
        /// removes us within the delay. `false` when the server has no delayed events (or
        /// refused ours), or briefly while a lost delayed leave is re-armed: a crash then leaves
        /// a ghost until our join's sticky lifetime ends.
        dead_man_switch: bool,
    },
    /// Leaving: entered by [`leave`](crate::OwnMembership::leave) while joined or joining; left
    /// for [`Disconnected`](Self::Disconnected) once the leave is out.
    Disconnecting,
    /// We meant to be in the call, but the earliest instant the server could fire our delayed
    /// leave has passed without a confirmed restart (the network or the server is failing), so
    /// the server has probably sent our leave. The machine keeps trying; it goes back to
    /// [`Connected`](Self::Connected) if a restart succeeds, or re-joins (through
    /// [`Connecting`](Self::Connecting)) once it learns that the leave fired.
    ProbablyLeft,
    /// Something failed.
    Error {
        /// What failed.
        error: OwnError,
        /// `true`: a retry budget is used up but the machine keeps retrying more slowly
        /// (entered on the failure that used the budget up, left on the next success; while in
        /// the call, [`ProbablyLeft`](Self::ProbablyLeft) takes precedence). `false`: the
        /// server refused our join or our leave for good; the machine has stopped (after
        /// cleaning up its delayed leave) until the next `join` or `leave`.
        retrying: bool,
    },
}

/// Why the machine works without a dead-man switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnavailableReason {
    /// [`ServerCapabilities::delayed_events`](crate::ServerCapabilities::delayed_events) is false.
    Capability,
    /// The server refused to schedule our delayed leave (e.g. 403 "disallowed").
    Refused,
    /// The server answered the schedule with an `event_id` and no `delay_id`: it ignored the
    /// delay and sent our leave at once (a server without MSC4140).
    DelayIgnored,
    /// The server still found the delay too large after we lowered it (or gave no maximum).
    DelayTooLarge,
    /// The server holds as many delayed events of ours as it allows
    /// ([`RequestOutcome::TooManyScheduled`](crate::RequestOutcome::TooManyScheduled)).
    TooManyScheduled,
}

/// Why the machine sends our join again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejoinReason {
    /// Sync stopped showing our membership while we were joined.
    MissingFromSync,
    /// Our delayed leave fired (a restart found it gone after its firing time, or the server
    /// ignored the delay of a new one).
    DelayedLeaveFired,
    /// Our join's sticky lifetime ended before a refresh succeeded.
    JoinExpired,
}

/// Something worth telling the app or the logs, from
/// [`OwnMembership::poll_event`](crate::OwnMembership::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnEvent {
    /// The status changed to this value.
    StatusChanged(OwnStatus),
    /// This membership has no dead-man switch.
    DeadManSwitchUnavailable {
        /// Why.
        reason: UnavailableReason,
    },
    /// The delay was lowered to the server's maximum after a "delay too large" answer.
    DelayLowered {
        /// The new delay.
        delay_ms: u64,
    },
    /// Our join is sent again with the same member id.
    Rejoining {
        /// Why.
        reason: RejoinReason,
    },
    /// A retry budget is used up; the machine keeps retrying more slowly.
    RetriesExhausted {
        /// The kind of request that keeps failing.
        action: OwnAction,
    },
}

/// What went wrong, in [`OwnStatus::Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OwnError {
    /// A kind of request failed too many times in a row (network errors, timeouts, 5xx or 429).
    #[error("{action} failed {failures} times in a row; still retrying")]
    RetriesExhausted {
        /// The kind of request.
        action: OwnAction,
        /// Failures in a row so far.
        failures: u32,
    },
    /// The server refused our join or its refresh for good (e.g. 403: no permission).
    #[error("the server refused our join (HTTP {status})")]
    JoinRejected {
        /// The HTTP status.
        status: u16,
        /// The Matrix `errcode`, if any.
        errcode: Option<String>,
    },
    /// The server refused our leave for good.
    #[error("the server refused our leave (HTTP {status})")]
    LeaveRejected {
        /// The HTTP status.
        status: u16,
        /// The Matrix `errcode`, if any.
        errcode: Option<String>,
    },
}

/// Why [`OwnMembership::join`](crate::OwnMembership::join) refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The member id is empty.
    #[error("the member id is empty")]
    EmptyMemberId,
    /// The machine is already joining or joined with another member id: leave first.
    #[error("already joined as another member")]
    AlreadyJoined,
}
