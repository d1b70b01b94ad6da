//! Tests of the `rtc` binary: argument and connection errors, `ingest` on generated
//! workloads, `watch --plain` (also when it falls behind), `join` and `leave` against a local
//! Synapse, and `demo`.
mod args;
mod credentials;
mod demo;
mod flood;
mod ingest;
mod processes;
mod support;
mod watch;
