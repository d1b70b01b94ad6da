//! Tests of the machine crate.
mod scenarios;
mod sim;
