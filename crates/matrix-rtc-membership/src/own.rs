//! Own-membership state machine: our own device's membership in one (room, slot), kept alive by
//! a delayed leave (MSC4140, the "dead-man switch") and a sticky join (MSC4354).
//!
//! The public contract is on [`OwnMembership`]. Inside:
//!
//! - `config`: timings and budgets ([`OwnMembershipConfig`]), server capabilities, join input.
//! - `request`: what the driver performs ([`OwnRequest`]) and what it reports back
//!   ([`RequestOutcome`]), with their ids.
//! - `status`: [`OwnStatus`], [`OwnEvent`] and the errors.
//! - `state`: the states, named for what they await. Two lanes, each with at most one request in
//!   flight: the *switch* lane (schedule, restart, send, cancel our delayed leave) and the
//!   *member* lane (join, refresh, plain leave); a goal (idle, join, leave) on top.
//! - `timer`: the closed table of deadlines (one slot per kind).
//! - `retry`: failure streaks and budgets per kind of request.
//! - `machine`: [`OwnMembership`] itself: inputs, the drive loop (which makes every step the
//!   state allows at `now`, then recomputes timers and status), and the two lanes' transitions.

mod config;
mod machine;
mod request;
mod retry;
mod state;
mod status;
mod timer;

pub use self::{
    config::{JoinConfig, OwnMembershipConfig, ServerCapabilities},
    machine::OwnMembership,
    request::{DelayId, OwnAction, OwnRequest, OwnRequestKind, RequestId, RequestOutcome, TxnId},
    status::{JoinError, OwnError, OwnEvent, OwnStatus, RejoinReason, UnavailableReason},
};
