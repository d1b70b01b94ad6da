//! Live MatrixRTC call membership on matrix-sdk, and joining and leaving calls with a
//! dead-man switch.
//!
//! This is the pump around [`matrix_rtc_machine::RtcMachine`], the sans-IO machine that makes
//! every protocol decision (on top of the two cores, [`matrix_sticky_events`] for the MSC4354
//! ephemeral map and [`matrix_rtc_membership`] for membership formats, sessions and the
//! own-membership state machine). The pump does the IO: it runs on a `matrix_sdk::Client`,
//! feeds the machine what arrives, performs what it asks for, and shows its updates as
//! observables.
//!
//! ```text
//!  homeserver --our sliding-sync side connection (sticky events only)--+
//!             --the app's sync: timeline events (low latency)-----------+--> bounded queues
//!             --room state (legacy call members, room members)---------+        |
//!                                                                               v
//!    pump task (one per client):  RtcMachine.handle_*(.., now)  -->  poll_request(): HTTP,
//!                                 one sleep at next_deadline()        decryption, member
//!                                 poll_update() --> eyeball            queries (spawned tasks,
//!                                 observables, streams                 outcomes fed back)
//! ```
//!
//! * [`RtcClient`] owns the driver of one client. Build the client with
//!   [`RtcClient::builder`] (needed to join calls in encrypted rooms), log in, then
//!   [`RtcClient::start`]. The app keeps running its own sync loop, or runs a [`SyncLoop`].
//! * [`RtcCall`] is one call ([`CallId`]: a slot of a room): its participants as an
//!   `eyeball_im` vector with `VectorDiff` updates, whether it is active, our own status, and
//!   [`join`](RtcCall::join) / [`leave`](RtcCall::leave). Once joined,
//!   [`livekit_credentials`](RtcCall::livekit_credentials) gives the SFU URL, a JWT and our
//!   LiveKit identity to connect to the call's media.
//! * [`RtcClient::subscribe_session_changes`], [`RtcClient::subscribe_call_events`] and
//!   [`RtcClient::subscribe_diagnostics`] are streams across all rooms. None of them loses
//!   silently: a reader that falls behind is told so, with the current state to resync from.
//! * [`OfflineIngest`] runs the receiving path on recorded data, without a network.
//!
//! # Example
//!
//! ```no_run
//! # // The sync future is deep: proving it `Send` for `tokio::spawn` needs more room.
//! # #![recursion_limit = "256"]
//! use futures_util::StreamExt;
//! use matrix_sdk::ruma::room_id;
//! use matrix_sdk_rtc::{JoinOptions, RtcClient, SyncLoop};
//!
//! async fn example() -> matrix_sdk_rtc::Result<()> {
//!     // Build the matrix-sdk client through us: that is what lets us encrypt our membership.
//!     let rtc = RtcClient::builder("https://matrix.example.org")
//!         .sqlite_store("/path/to/store", Some("passphrase"))
//!         .build()
//!         .await?;
//!     rtc.client().matrix_auth().login_username("alice", "secret").send().await?;
//!     rtc.start().await?; // side connection for sticky events, event handlers, driver task
//!
//!     // The main sync loop: the app's own, or ours (retries every failure with backoff,
//!     // never pauses between quick answers, which would delay room keys in encrypted calls).
//!     let _sync = SyncLoop::new(rtc.client().clone()).spawn(None);
//!
//!     let call = rtc.room_call(room_id!("!room:example.org")); // slot "m.call#ROOM"
//!     let (participants, mut diffs) = call.subscribe_participants();
//!     println!("{} in the call", participants.len());
//!     tokio::spawn(async move {
//!         while let Some(batch) = diffs.next().await {
//!             println!("participants changed: {batch:?}");
//!         }
//!     });
//!
//!     call.join(JoinOptions::default()).await?; // delayed leave first, then our membership
//!     println!("our status: {:?}", call.own_status());
//!     call.leave().await?; // sends the delayed leave now
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! `client` and `server` exist only because ruma's request macros require crates that define
//! requests to declare them; they change nothing.

// --- the HTTP layer (private): custom requests, server features, the side connection ---
mod requests;
mod server_features;
mod side_sync;

pub(crate) use self::{requests::HomeserverApi, side_sync::SideSync};
pub use self::{
    requests::RequestError,
    server_features::{MissingFeature, ServerFeatures},
    side_sync::SideSyncStatus,
};

// --- the pump and the public API ---
mod call;
mod client;
mod config;
mod encryption;
mod error;
mod events;
mod livekit;
mod observe;
mod offline;
mod persist;
mod pump;
mod sync_loop;

pub use matrix_rtc_machine::{
    CallId, Cap, ContentUpdate, Diagnostic, InvalidSlotId, JoinFailure, ParkedLimits,
    RedactionRefusal, UpdateFailure,
};
pub use matrix_rtc_membership::{
    CallIntent, LeftReason, OwnError, OwnMembershipConfig, OwnStatus, Participant, SessionChange,
    Transport,
};
pub use matrix_sticky_events::{Limits, Receipt, Rejection};

pub use self::{
    call::{RtcCall, RtcCallView},
    client::{RtcClient, RtcClientBuilder},
    config::{JoinOptions, RtcConfig},
    error::{Error, Result},
    events::{CallEvent, DiagnosticEvent, SessionUpdate},
    livekit::{LiveKitCredentials, LiveKitError, TokenEndpoint},
    offline::{IngestStats, OfflineIngest},
    sync_loop::{SyncLoop, SyncLoopHandle, SyncLoopStatus, SyncLoopStop},
};
