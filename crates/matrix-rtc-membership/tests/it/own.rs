//! Tests and simulations of the own-membership state machine.
//!
//! Each behaviour has one deterministic test named after it, run in the [`sim::Sim`] harness
//! (virtual clock, simulated homeserver with delayed events, faults over time windows) or, for
//! input edge cases, against the bare machine. `props` drives random schedules of latency,
//! errors, 429s and outages and checks the invariants.

mod degraded;
mod faults;
mod heartbeat;
mod join;
mod leave;
mod new_devices;
mod props;
mod sim;
