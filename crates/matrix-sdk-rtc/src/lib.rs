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
