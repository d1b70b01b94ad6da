//! uniffi bindings of `matrix-sdk-rtc`: live MatrixRTC call membership for Kotlin, Swift (and
//! Python, for tests).
//!
//! A thin layer: mirror types converted with `From`, one listener trait per stream, and
//! handles that stop a subscription when dropped. The library owns a multi-thread tokio
//! runtime on which the sync loop, the rtc driver and every listener loop run. See
//! `bindings/README.md` for building the bindings and using them from Kotlin and Swift.
//!
//! ```no_run
//! # async fn example() -> matrix_sdk_rtc_ffi::Result<()> {
//! use matrix_sdk_rtc_ffi::{ClientConfig, JoinConfig, RtcClient, room_call};
//!
//! let client = RtcClient::build(ClientConfig {
//!     homeserver_url: "https://matrix.example.org".into(),
//!     user_id: "@alice:example.org".into(),
//!     device_id: "ALICEDEVICE".into(),
//!     access_token: "secret".into(),
//!     store_path: Some("/data/rtc-store".into()),
//!     store_passphrase: Some("a long passphrase".into()),
//!     persist_calls_unencrypted: false,
//!     ephemeral_device: false,
//! })
//! .await?;
//! client.clone().start().await?;
//! let call = room_call("!room:example.org".to_owned()); // slot "m.call#ROOM"
//! client.clone().join(call.clone(), JoinConfig::default()).await?;
//! client.clone().leave(call).await?;
//! client.stop();
//! # Ok(()) }
//! ```
// matrix-sdk's sync future is deep: proving it `Send` for `tokio::spawn` needs more room.
#![recursion_limit = "256"]

uniffi::setup_scaffolding!();

mod client;
mod config;
mod error;
mod events;
mod listeners;
mod livekit;
mod logging;
mod participant;
mod runtime;
mod status;
mod task_handle;

pub use self::{
    client::RtcClient,
    config::{CallId, ClientConfig, JoinConfig, ServerFeatures, room_call},
    error::{Result, RtcFfiError},
    events::{
        CallEvent, CallParticipants, Cap, Diagnostic, DiagnosticEvent, DiagnosticKind, LeftReason,
        SessionChange, SessionUpdate,
    },
    listeners::{
        CallActiveListener, CallEventsListener, DiagnosticsListener, OwnStatusListener,
        ParticipantsListener, SessionChangesListener,
    },
    livekit::LiveKitCredentials,
    logging::init_logging,
    participant::{CallIntent, Participant, ParticipantsDiff},
    status::{OwnStatus, SideSyncStatus, SyncStatus},
    task_handle::TaskHandle,
};
