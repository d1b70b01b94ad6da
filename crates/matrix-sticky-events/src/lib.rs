#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod change;
mod event;
mod limits;
mod map;
mod parse;
mod snapshot;
mod time;
pub mod wire;

#[doc(inline)]
pub use self::{
    change::{Change, RemovalReason},
    event::{EncryptedSticky, EventOrigin, StickyEvent, StickyMeta},
    limits::{Limits, Usage},
    map::{MapKey, StickyMap},
    parse::{
        BatchError, MAX_BATCH_BYTES, MAX_DEPTH, MAX_EVENT_BYTES, Parsed, Redaction, Redactor,
        Rejection, RoomBatch, StickyBatch, parse_event, parse_sliding_sync_response,
        parse_sticky_batch,
    },
    snapshot::{Snapshot, SnapshotError},
    time::Receipt,
};
