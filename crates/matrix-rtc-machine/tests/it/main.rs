//! Tests of the machine crate.
mod scenarios;
