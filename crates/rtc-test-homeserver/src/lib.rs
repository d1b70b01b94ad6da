//! Test-only: a real Synapse homeserver on `127.0.0.1` for integration tests and demos.
//!
//! [`TestHomeserver::start`] installs the pinned Synapse ([`SYNAPSE_VERSION`]) into
//! `<workspace>/.build/synapse-venv` on first use (the same steps as
//! `scripts/install-synapse.sh`, which it runs; `RTC_SYNAPSE_VENV` overrides the location),
//! writes a loopback-only config with sticky events (MSC4354), delayed events (MSC4140) and
//! the RTC transports endpoint (MSC4143) on and every rate limit raised out of reach, starts
//! Synapse on a free port and waits until it answers. A server starts in about 1.2–3.5 s and
//! uses about 125 MB.
//!
//! The helpers register users through the shared-secret admin API, log in further devices,
//! create and join rooms, and send any raw request. Every user name they make is unique, so
//! tests may share one server. Anything that cannot be done is an [`Error`]: a test without its
//! server fails, it is never skipped.
//!
//! Dropping the server kills Synapse and deletes its run directory
//! (`<workspace>/.build/synapse-runs/<test name>-<pid>-<n>`), except when the test panicked
//! (or `RTC_SYNAPSE_KEEP_RUNS=1`): then the directory and its `homeserver.log` are kept and
//! their paths printed. Synapse also dies with the test process (`PR_SET_PDEATHSIG`).
//! Linux only.
//!
//! [`JwtService`] is a *stand-in* for a LiveKit JWT service (lk-jwt-service cannot be
//! installed from the registries here): a small Python server that follows its documented
//! requests and answers, checks OpenID tokens against the real Synapse and mints real LiveKit
//! JWTs with the `livekit-api` package. [`TestHomeserver::start_with_jwt_service`] starts both,
//! with Synapse advertising the stand-in; the default config keeps advertising
//! `https://lk.invalid`.
//!
//! ```no_run
//! use rtc_test_homeserver::{CreateRoomOptions, HomeserverConfig, Method, TestHomeserver};
//! use serde_json::json;
//!
//! # async fn example() -> rtc_test_homeserver::Result<()> {
//! let server = TestHomeserver::start_with(HomeserverConfig::default()).await?;
//! let alice = server.register_user("alice").await?;
//! let bob = server.register_user("bob").await?;
//! let bob_phone = server.login(&bob, "PHONE").await?; // a second device of bob
//!
//! let options =
//!     CreateRoomOptions { encrypted: false, invite: vec![bob.user_id.clone()], ..Default::default() };
//! let room_id = server.create_room(&alice, options).await?;
//! server.join_room(&bob_phone, &room_id).await?;
//!
//! // Raw requests: status and JSON come back whatever the status.
//! let path = format!(
//!     "/_matrix/client/v3/rooms/{}/send/m.room.message/{}?org.matrix.msc4354.sticky_duration_ms=60000",
//!     rtc_test_homeserver::encode_path_segment(&room_id),
//!     rtc_test_homeserver::unique_id("txn"),
//! );
//! let body = json!({ "msgtype": "m.text", "body": "hi" });
//! let (status, answer) =
//!     server.request(Method::PUT, &path, Some(&alice.access_token), Some(&body)).await?;
//! assert_eq!(status, 200, "{answer}");
//!
//! // Same port, same database.
//! server.restart().await?;
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod install;
mod jwt_service;
mod names;
mod process;
mod server;
mod wire;

pub use reqwest::Method;

pub use crate::config::{HomeserverConfig, LiveKitAppservice};
pub use crate::error::{Error, Result};
pub use crate::install::{
    LIVEKIT_API_VERSION, SYNAPSE_VERSION, VENV_ENV_VAR, ensure_synapse, venv_dir, workspace_root,
};
pub use crate::jwt_service::{JwtService, JwtServiceRequest};
pub use crate::names::{encode_path_segment, unique_id};
pub use crate::server::{CreateRoomOptions, TestHomeserver, TestUser};
