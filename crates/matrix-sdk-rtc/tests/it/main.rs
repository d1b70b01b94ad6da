//! Integration tests of matrix-sdk-rtc against a local Synapse.
// matrix-sdk's sync future is deep: proving it `Send` for `tokio::spawn` needs more room.
#![recursion_limit = "256"]
mod calls;
mod defects;
mod encrypted;
mod faults;
mod hostile;
mod livekit;
mod offline;
mod one_device;
mod restart;
mod secrets;
mod sync_loop;
