//! Deterministic scenarios of one `RtcMachine`: each defect of the old async driver, and each
//! bound against a hostile room member, with a test of its own.
mod bounds;
mod defects;
mod determinism;
mod hold;
mod own;
mod rules;
mod support;
