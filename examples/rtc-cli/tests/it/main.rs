//! Tests of the `rtc` binary: argument and connection errors, `ingest` on generated
//! workloads, `watch --plain` (also when it falls behind), `join` and `leave` against a local
//! Synapse (also one without delayed events), and `demo`.
mod args;
mod credentials;
mod demo;
mod flood;
mod ingest;
mod no_delayed_events;
mod processes;
mod support;
mod terminal;
mod watch;
