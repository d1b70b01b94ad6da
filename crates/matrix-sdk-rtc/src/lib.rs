//! Live MatrixRTC call membership on matrix-sdk (work in progress).

// --- HTTP layer: custom requests, server features, side connection (helper h-http) ---
mod requests;
mod server_features;
mod side_sync;

pub use self::{
    requests::{
        DelayId, DelayedEventAction, DelayedEventInfo, DelayedEventsLimits, HomeserverApi,
        RequestError,
    },
    server_features::{MissingFeature, ServerFeatures},
    side_sync::{SideSync, SideSyncBatch, SideSyncStatus, run_side_sync},
};

// --- driver and public API ---
mod call;
mod client;
mod config;
mod driver;
mod encryption;
mod error;
mod events;
mod observe;
mod offline;
mod wire;

pub use matrix_rtc_membership::{
    CallIntent, LeftReason, OwnMembershipConfig, OwnStatus, Participant, SessionChange, Transport,
};
pub use matrix_sticky_events::{Limits, Receipt, Rejection};

pub use self::{
    call::{RtcCall, RtcCallView},
    client::{RtcClient, RtcClientBuilder},
    config::{JoinOptions, RtcConfig},
    error::{Error, Result},
    events::{CallEvent, Diagnostic},
    offline::{IngestStats, OfflineIngest},
};
