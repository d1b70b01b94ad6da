//! Integration tests of matrix-sdk-rtc against a local Synapse.
// matrix-sdk's sync future is deep: proving it `Send` for `tokio::spawn` needs more room.
#![recursion_limit = "256"]
mod calls;
mod encrypted;
mod faults;
mod http;
mod offline;
mod restart;
