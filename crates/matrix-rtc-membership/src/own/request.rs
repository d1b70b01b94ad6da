//! Requests the machine asks the driver to perform, and their outcomes.

use std::{fmt, time::Duration, time::Instant};

/// Identifies one request emitted by [`OwnMembership::poll_request`](crate::OwnMembership::poll_request);
/// the driver answers it with [`OwnMembership::handle_response`](crate::OwnMembership::handle_response).
///
/// Ids are unique within one machine and never reused (a retry gets a new id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The number behind the id (for logs).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Identifies one logical send (a delayed-leave schedule, a join, a refresh or a plain leave)
/// across its retries.
///
/// The driver turns it into the HTTP transaction id of the `PUT .../send/{type}/{txnId}`,
/// unique for our device (for example a random per-machine prefix plus [`TxnId::get`]), and
/// **uses the same HTTP transaction id every time it sees the same `TxnId`**. The server then
/// answers a retry with the result of the first attempt (the same `delay_id` or `event_id`), so
/// a request that timed out locally but reached the server never creates a second delayed leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId(pub(crate) u64);

impl TxnId {
    /// The number behind the id, unique within one machine.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The opaque id of a scheduled delayed event (MSC4140 `delay_id`).
///
/// Anyone holding it can send, restart or cancel the event on some servers, so treat it as a
/// secret: its `Debug` output shows none of it, and it has no `Display`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DelayId(String);

impl DelayId {
    /// Wraps the `delay_id` the server returned.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id, to build the management URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for DelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DelayId(<redacted>)")
    }
}

/// One request to perform, from [`OwnMembership::poll_request`](crate::OwnMembership::poll_request).
///
/// The driver builds the HTTP request from [`kind`](Self::kind) (the event content comes from
/// the driver: it knows the room, our device and our transport), sends it, and reports the
/// result with [`OwnMembership::handle_response`](crate::OwnMembership::handle_response)
/// under [`id`](Self::id). The machine gives up on the request at [`deadline`](Self::deadline)
/// (it then treats it as timed out and ignores a later answer); the driver may abort the HTTP
/// call at that instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request must be performed and answered with handle_response"]
pub struct OwnRequest {
    pub(crate) id: RequestId,
    pub(crate) member_id: String,
    pub(crate) slot_id: String,
    pub(crate) deadline: Instant,
    pub(crate) kind: OwnRequestKind,
}

impl OwnRequest {
    /// The id to answer with.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Our `member.id` (the sticky key) the request is about.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The slot (`slot_id`, e.g. `m.call#ROOM`) the request is about.
    pub fn slot_id(&self) -> &str {
        &self.slot_id
    }

    /// When the machine stops waiting for this request and treats it as timed out.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What to do.
    pub fn kind(&self) -> &OwnRequestKind {
        &self.kind
    }

    /// The kind of action, without its parameters.
    pub fn action(&self) -> OwnAction {
        self.kind.action()
    }
}

/// What a request asks the driver to do.
///
/// This enum is deliberately exhaustive: a new kind of request must fail to compile in the
/// driver rather than fall into a catch-all arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnRequestKind {
    /// Schedule our leave as a sticky delayed event (docs/protocol.md §6.1–6.2): the leave content of
    /// docs/protocol.md §5.6 sent with `org.matrix.msc4140.delay=<delay_ms>` and
    /// `org.matrix.msc4354.sticky_duration_ms=<sticky_duration_ms>`. Success carries the
    /// `delay_id`; an answer with an `event_id` and no `delay_id` means the server ignored the
    /// delay (and sent the leave at once).
    ScheduleDelayedLeave {
        /// Transaction of this schedule (the same across its retries).
        txn_id: TxnId,
        /// Delay of the delayed event.
        delay_ms: u64,
        /// Sticky duration of the leave once fired.
        sticky_duration_ms: u64,
    },
    /// Send our join (the member event of docs/protocol.md §5.6) as a sticky event.
    SendJoin {
        /// Transaction of this join (the same across its retries).
        txn_id: TxnId,
        /// Sticky duration of the event.
        sticky_duration_ms: u64,
    },
    /// Re-send our join with identical content and the same sticky duration, to renew its
    /// stickiness before it expires.
    RefreshJoin {
        /// Transaction of this refresh (the same across its retries).
        txn_id: TxnId,
        /// Sticky duration of the event (always the one of the join).
        sticky_duration_ms: u64,
    },
    /// Restart the countdown of our delayed leave (`POST .../delayed_events/{delay_id}/restart`).
    RestartDelayedLeave {
        /// The delayed leave.
        delay_id: DelayId,
    },
    /// Send our delayed leave now (`.../{delay_id}/send`): the normal way to leave.
    SendDelayedLeave {
        /// The delayed leave.
        delay_id: DelayId,
    },
    /// Cancel our delayed leave (`.../{delay_id}/cancel`).
    CancelDelayedLeave {
        /// The delayed leave.
        delay_id: DelayId,
    },
    /// Send our leave (the leave content of docs/protocol.md §5.6) directly, as a sticky event.
    SendLeave {
        /// Transaction of this leave (the same across its retries).
        txn_id: TxnId,
        /// Sticky duration of the event (always the one of the join).
        sticky_duration_ms: u64,
    },
}

impl OwnRequestKind {
    /// The kind of action, without its parameters.
    pub fn action(&self) -> OwnAction {
        match self {
            Self::ScheduleDelayedLeave { .. } => OwnAction::ScheduleDelayedLeave,
            Self::SendJoin { .. } => OwnAction::SendJoin,
            Self::RefreshJoin { .. } => OwnAction::RefreshJoin,
            Self::RestartDelayedLeave { .. } => OwnAction::RestartDelayedLeave,
            Self::SendDelayedLeave { .. } => OwnAction::SendDelayedLeave,
            Self::CancelDelayedLeave { .. } => OwnAction::CancelDelayedLeave,
            Self::SendLeave { .. } => OwnAction::SendLeave,
        }
    }

    /// The delayed event the request acts on, for the management actions.
    pub fn delay_id(&self) -> Option<&DelayId> {
        match self {
            Self::RestartDelayedLeave { delay_id }
            | Self::SendDelayedLeave { delay_id }
            | Self::CancelDelayedLeave { delay_id } => Some(delay_id),
            Self::ScheduleDelayedLeave { .. }
            | Self::SendJoin { .. }
            | Self::RefreshJoin { .. }
            | Self::SendLeave { .. } => None,
        }
    }

    /// The transaction, for the sends.
    pub fn txn_id(&self) -> Option<TxnId> {
        match self {
            Self::ScheduleDelayedLeave { txn_id, .. }
            | Self::SendJoin { txn_id, .. }
            | Self::RefreshJoin { txn_id, .. }
            | Self::SendLeave { txn_id, .. } => Some(*txn_id),
            Self::RestartDelayedLeave { .. }
            | Self::SendDelayedLeave { .. }
            | Self::CancelDelayedLeave { .. } => None,
        }
    }
}

/// The kinds of request, without parameters (for budgets, errors and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnAction {
    /// [`OwnRequestKind::ScheduleDelayedLeave`].
    ScheduleDelayedLeave,
    /// [`OwnRequestKind::SendJoin`].
    SendJoin,
    /// [`OwnRequestKind::RefreshJoin`].
    RefreshJoin,
    /// [`OwnRequestKind::RestartDelayedLeave`].
    RestartDelayedLeave,
    /// [`OwnRequestKind::SendDelayedLeave`].
    SendDelayedLeave,
    /// [`OwnRequestKind::CancelDelayedLeave`].
    CancelDelayedLeave,
    /// [`OwnRequestKind::SendLeave`].
    SendLeave,
}

impl OwnAction {
    pub(crate) const COUNT: usize = 7;

    pub(crate) fn index(self) -> usize {
        match self {
            Self::ScheduleDelayedLeave => 0,
            Self::SendJoin => 1,
            Self::RefreshJoin => 2,
            Self::RestartDelayedLeave => 3,
            Self::SendDelayedLeave => 4,
            Self::CancelDelayedLeave => 5,
            Self::SendLeave => 6,
        }
    }

    /// A short lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScheduleDelayedLeave => "schedule delayed leave",
            Self::SendJoin => "send join",
            Self::RefreshJoin => "refresh join",
            Self::RestartDelayedLeave => "restart delayed leave",
            Self::SendDelayedLeave => "send delayed leave",
            Self::CancelDelayedLeave => "cancel delayed leave",
            Self::SendLeave => "send leave",
        }
    }
}

impl fmt::Display for OwnAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request ended, as the driver saw it. The driver maps its HTTP client's results onto
/// these variants.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestOutcome {
    /// HTTP 200. For a schedule: `delay_id` set (or, if the server ignored the delay,
    /// `event_id` set and no `delay_id`). For a send: `event_id` set. For the management
    /// actions: neither is needed.
    Success {
        /// The `delay_id` of a scheduled delayed event.
        delay_id: Option<DelayId>,
        /// The `event_id` of a sent event.
        event_id: Option<String>,
    },
    /// 404 `M_NOT_FOUND`: the delayed event is unknown (already fired, sent, cancelled, or lost).
    /// Map 404 `M_UNRECOGNIZED` (an endpoint the server does not serve) to
    /// [`RequestOutcome::Unsupported`] or [`RequestOutcome::Http`] instead.
    NotFound,
    /// 409: the action conflicts with the delayed event's final state (newest MSC4140: restart
    /// or send after a cancel, cancel after a send).
    Conflict,
    /// 429 `M_LIMIT_EXCEEDED`, with the wait from `Retry-After` or `retry_after_ms` if given.
    RateLimited {
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The delay is above the server's maximum (`M_MAX_DELAY_EXCEEDED`,
    /// `ORG.MATRIX.MSC4140_DELAY_TOO_LARGE` and relatives), with the maximum if the server said.
    DelayTooLarge {
        /// The maximum delay the server accepts.
        max_delay_ms: Option<u64>,
    },
    /// The server refuses delayed events ("Sending delayed events has been disallowed", or a
    /// management endpoint it does not serve).
    Unsupported,
    /// The server holds as many delayed events of ours as it allows (Synapse: 429
    /// `M_LIMIT_EXCEEDED` "The maximum number of delayed events has been reached", whose wait
    /// is the time until our next scheduled event fires, often most of an hour; older MSC4140
    /// texts: 400 `M_MAX_DELAYED_EVENTS_EXCEEDED`). A quota, not a blip: a schedule refused
    /// this way means a membership without a dead-man switch.
    TooManyScheduled {
        /// How long the server said it takes until a slot frees up, if it said.
        retry_after: Option<Duration>,
    },
    /// Any other HTTP error.
    Http {
        /// The HTTP status.
        status: u16,
        /// The Matrix `errcode`, if any.
        errcode: Option<String>,
    },
    /// The request did not get an HTTP answer (connection refused or reset, DNS, TLS, ...).
    Network,
    /// The driver's own timeout fired first.
    Timeout,
}

impl RequestOutcome {
    /// A success without ids (the management actions).
    pub fn ok() -> Self {
        Self::Success {
            delay_id: None,
            event_id: None,
        }
    }

    /// A successful schedule.
    pub fn scheduled(delay_id: DelayId) -> Self {
        Self::Success {
            delay_id: Some(delay_id),
            event_id: None,
        }
    }

    /// A successful send.
    pub fn sent(event_id: impl Into<String>) -> Self {
        Self::Success {
            delay_id: None,
            event_id: Some(event_id.into()),
        }
    }
}

/// How the machine reads an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Done {
        delay_id: Option<DelayId>,
        event_id: bool,
    },
    NotFound,
    Conflict,
    TooLarge(Option<u64>),
    Unsupported,
    /// Our quota of scheduled delayed events is full (with the server's wait, if given).
    Quota(Option<Duration>),
    /// A transient failure: try again later.
    Retry(Transient),
    /// A definitive refusal.
    Rejected {
        status: u16,
        errcode: Option<String>,
    },
}

/// The transient failures, which differ in how long to wait and which budget they use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transient {
    Timeout,
    Network,
    RateLimited(Option<Duration>),
}

impl From<RequestOutcome> for Verdict {
    fn from(outcome: RequestOutcome) -> Self {
        match outcome {
            RequestOutcome::Success { delay_id, event_id } => Self::Done {
                delay_id,
                event_id: event_id.is_some(),
            },
            RequestOutcome::NotFound => Self::NotFound,
            RequestOutcome::Conflict => Self::Conflict,
            RequestOutcome::RateLimited { retry_after } => {
                Self::Retry(Transient::RateLimited(retry_after))
            }
            RequestOutcome::DelayTooLarge { max_delay_ms } => Self::TooLarge(max_delay_ms),
            RequestOutcome::Unsupported => Self::Unsupported,
            RequestOutcome::TooManyScheduled { retry_after } => Self::Quota(retry_after),
            RequestOutcome::Network => Self::Retry(Transient::Network),
            RequestOutcome::Timeout => Self::Retry(Transient::Timeout),
            RequestOutcome::Http { status, errcode } => match status {
                429 => Self::Retry(Transient::RateLimited(None)),
                408 | 500..=599 => Self::Retry(Transient::Network),
                404 if errcode.as_deref() == Some("M_NOT_FOUND") => Self::NotFound,
                409 => Self::Conflict,
                _ => Self::Rejected { status, errcode },
            },
        }
    }
}

impl Verdict {
    /// Status and errcode to report for a definitive failure (only meaningful for the refusal
    /// variants; the others never reach a refusal path).
    pub(crate) fn refusal(&self) -> (u16, Option<String>) {
        match self {
            Self::Rejected { status, errcode } => (*status, errcode.clone()),
            Self::NotFound => (404, None),
            Self::Conflict => (409, None),
            Self::TooLarge(_) | Self::Unsupported => (400, None),
            Self::Quota(_) => (429, None),
            Self::Done { .. } => (200, None),
            Self::Retry(_) => (0, None),
        }
    }
}
