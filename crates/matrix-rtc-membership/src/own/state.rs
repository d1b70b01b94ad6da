//! The machine's states. Each is named for what it awaits; transitions take it by value.
//!
//! The machine runs two lanes side by side, each with at most one request in flight:
//! the **switch** lane (our delayed leave: schedule, restart, send, cancel) and the **member**
//! lane (our member event: join, refresh, plain leave). A [`Goal`] says what the user asked for.

use std::time::Instant;

use super::{
    config::JoinConfig,
    request::{DelayId, RequestId, TxnId},
    status::{OwnError, RejoinReason, UnavailableReason},
};

/// A request the driver is performing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InFlight {
    pub(crate) id: RequestId,
    /// When the machine emitted it (the server cannot have processed it earlier).
    pub(crate) emitted_at: Instant,
    /// When the machine stops waiting for it.
    pub(crate) deadline: Instant,
}

/// Where a retried request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Awaiting its answer.
    InFlight(InFlight),
    /// Awaiting the instant to try again.
    RetryAt(Instant),
}

impl Attempt {
    pub(crate) fn in_flight(&self) -> Option<&InFlight> {
        match self {
            Self::InFlight(f) => Some(f),
            Self::RetryAt(_) => None,
        }
    }
}

/// What the user asked for.
#[derive(Debug)]
pub(crate) enum Goal {
    /// Awaiting [`join`](crate::OwnMembership::join); `error` if the last session failed.
    Idle { error: Option<OwnError> },
    /// Be in the call.
    Join(Session),
    /// Get our leave out, then do `then`.
    Leave(Leaving),
}

/// One membership, from `join` to the end of its leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) member_id: String,
    /// Delay for the next schedule (lowered to the server maximum).
    pub(crate) delay_ms: u64,
    /// Sticky duration of every member event of this session.
    pub(crate) sticky_duration_ms: u64,
    /// An event of this session (a join, a leave, or a delayed leave the server accepted) may
    /// be on the server with [`sticky_duration_ms`](Self::sticky_duration_ms): from then on the
    /// duration is fixed, since under last-to-expire-wins a shorter one would lose to it.
    pub(crate) sticky_fixed: bool,
    /// Re-joins in a row that sync never confirmed (widens the sync grace).
    pub(crate) unseen_rejoins: u32,
}

#[derive(Debug)]
pub(crate) struct Leaving {
    pub(crate) session: Session,
    pub(crate) then: AfterLeave,
}

/// What to do once the leave is out.
#[derive(Debug)]
pub(crate) enum AfterLeave {
    /// Rest ([`OwnStatus::Disconnected`](crate::OwnStatus::Disconnected)).
    Idle,
    /// Rest in error (the server refused our join or leave).
    Fail(OwnError),
    /// Start this join (asked for while leaving).
    Join(JoinConfig),
}

/// The switch lane: our delayed leave.
#[derive(Debug)]
pub(crate) enum Switch {
    /// No delayed leave of ours is known to be live (apart from a [`Leftover`]).
    Off,
    /// Awaiting the `delay_id` of a schedule.
    AwaitScheduled(Scheduling),
    /// Armed; awaiting the next restart instant.
    AwaitRestartDue(Armed),
    /// Armed; awaiting the answer to a restart.
    AwaitRestarted(Armed, InFlight),
    /// Awaiting the answer to a cancel.
    AwaitCancelled(Cancelling),
    /// Awaiting the answer to a `send` (our leave).
    AwaitSent(Armed, InFlight),
    /// Awaiting the cancel of our armed delayed leave, to schedule a new one that new devices
    /// can decrypt. A failed cancel is retried (it may have gone through: we cannot claim the
    /// old one armed any more).
    AwaitRearmCancelled(Cancelling),
    /// No dead-man switch for this session.
    Unavailable(UnavailableReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scheduling {
    pub(crate) txn: TxnId,
    pub(crate) member_id: String,
    pub(crate) delay_ms: u64,
    pub(crate) sticky_duration_ms: u64,
    pub(crate) purpose: SchedulePurpose,
    pub(crate) attempt: Attempt,
    /// When the first attempt of this transaction was emitted: the server may have scheduled
    /// it from then on (a retry of the transaction only returns the first answer).
    pub(crate) first_emitted_at: Instant,
    /// The delay was lowered after a "too large" answer already (lower only once).
    pub(crate) lowered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchedulePurpose {
    /// Arm the dead-man switch of the session.
    Arm,
    /// Re-send a schedule whose outcome we never learnt, to learn its `delay_id` and cancel it.
    Resolve,
}

/// A delayed leave of ours that the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Armed {
    pub(crate) delay_id: DelayId,
    pub(crate) member_id: String,
    pub(crate) delay_ms: u64,
    /// Earliest instant the server may fire it: last confirmed (re)start request's emission plus
    /// the delay. Before it, the server has certainly not fired.
    pub(crate) expected_fire: Instant,
    /// Latest instant it fires unless restarted again: the latest emission of a (re)start plus
    /// the request timeout plus the delay (assuming a request that outlives its local timeout
    /// was not processed).
    pub(crate) fire_by: Instant,
    pub(crate) next_restart: Instant,
    /// `next_restart` is a retry wait that must not be shortened.
    pub(crate) backing_off: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cancelling {
    pub(crate) target: Armed,
    pub(crate) attempt: Attempt,
}

/// A delayed leave of ours from an ended session that may still be live; the next session
/// gets rid of it before it schedules its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leftover {
    Known(Armed),
    /// A schedule whose answer never came: re-sending its transaction tells its `delay_id`.
    Unresolved(Scheduling),
}

/// The member lane: our member event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    /// Nothing to send.
    Absent,
    /// Awaiting a confirmed dead-man switch (or its absence) before sending our join.
    AwaitSwitch { rejoin: Option<RejoinReason> },
    /// Awaiting the answer to a join, or to a refresh when `previous` is the join it renews.
    AwaitJoinAck(JoinSend),
    /// Joined; awaiting the refresh instant.
    AwaitRefreshDue(Joined),
    /// Awaiting the answer to a plain leave.
    AwaitLeaveAck(LeaveSend),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinSend {
    pub(crate) txn: TxnId,
    pub(crate) previous: Option<Joined>,
    pub(crate) rejoin: Option<RejoinReason>,
    pub(crate) attempt: Attempt,
    /// When the first attempt of this transaction was emitted.
    pub(crate) first_emitted_at: Instant,
    /// A leave of ours may have gone out since this transaction was first sent, so its answer
    /// proves nothing (a retry would only return the first attempt's answer): once answered,
    /// start over with a new transaction.
    pub(crate) outdated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    pub(crate) acked_at: Instant,
    pub(crate) refresh_due: Instant,
    /// The join may have expired from here on (its emission plus the sticky duration).
    pub(crate) may_expire_at: Instant,
    pub(crate) seen_in_sync: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaveSend {
    pub(crate) txn: TxnId,
    pub(crate) attempt: Attempt,
}

/// The re-send for new devices, rate limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NewDevices {
    /// When it last ran.
    pub(crate) last_run: Option<Instant>,
    /// A call inside the interval awaits its end.
    pub(crate) pending: bool,
}
