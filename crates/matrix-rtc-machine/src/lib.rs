#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod call_id;
mod caps;
mod config;
mod devices;
mod diagnostic;
mod io;
mod machine;
mod members;
mod own;
mod parked;
mod persist;
mod publish;
mod redactions;
mod request;
mod route;
mod timer;
mod update;
pub mod wire;

#[doc(inline)]
pub use self::{
    call_id::{CallId, InvalidSlotId},
    config::{MachineConfig, ParkedLimits},
    diagnostic::{Cap, Diagnostic},
    machine::{MachineStats, PageFlags, PageSummary, RtcMachine},
    own::JoinParams,
    persist::{OwnCallRecord, OwnCallRecords},
    redactions::RedactionRefusal,
    request::{DelayedAction, Outcome, Request, RequestId, RequestKind},
    route::EventRoute,
    update::{ContentUpdate, JoinFailure, ParticipantDiff, Update, UpdateFailure},
};
