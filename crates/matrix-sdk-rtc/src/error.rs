//! The errors of this crate.
use matrix_rtc_machine::{InvalidSlotId, JoinFailure, UpdateFailure};
use matrix_sdk::ruma::{OwnedDeviceId, OwnedRoomId};

use crate::{MissingFeature, RequestError};

/// Errors returned by [`RtcClient`](crate::RtcClient) and [`RtcCall`](crate::RtcCall).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client is not logged in: the driver needs our user and device ID.
    #[error("the client is not logged in")]
    NotLoggedIn,
    /// The room is not known to the client, or we are not joined to it.
    #[error("room {0} is unknown or not joined")]
    UnknownRoom(OwnedRoomId),
    /// The room is encrypted and this client cannot encrypt our membership: only a client
    /// built by [`RtcClient::builder`](crate::RtcClient::builder) can. We never send a
    /// membership in plaintext into an encrypted room.
    #[error(
        "cannot encrypt our membership in room {0} (needs a client built by RtcClient::builder)"
    )]
    EncryptedRoomNotSupported(OwnedRoomId),
    /// The server lacks a feature this operation needs (joining needs sticky events: legacy
    /// state memberships are read but not sent).
    #[error("the server lacks a feature this operation needs: {0}")]
    MissingFeature(MissingFeature),
    /// No transport was given to join with, and the homeserver advertises none: pass one in
    /// [`JoinOptions::transport`](crate::JoinOptions::transport).
    #[error("no RTC transport: the homeserver advertises none; pass one in JoinOptions")]
    NoTransport,
    /// A slot ID must look like `{application}#{name}`.
    #[error(transparent)]
    InvalidSlot(#[from] InvalidSlotId),
    /// The pump has been shut down (or its task ended), or was never started.
    #[error("the rtc pump is not running")]
    DriverStopped,
    /// Joining failed: we are in the call as another member already, the server refused, a
    /// retry budget ran out (the machine keeps trying), or we left first.
    #[error("joining the call failed: {0}")]
    JoinFailed(JoinFailure),
    /// Our membership could not be changed (we are not in the call).
    #[error("updating our membership failed: {0}")]
    UpdateFailed(UpdateFailure),
    /// The server publishes other identity keys for our device than our crypto store holds:
    /// another crypto store (the app's, or an earlier in-memory one) uses this device. Nothing
    /// was sent. Use that store, or log in as a new device.
    #[error(
        "another crypto store uses device {device_id}: the server publishes other keys for it \
         than ours (use one store per device, or log in as a new device)"
    )]
    DeviceKeysDiffer {
        /// Our device.
        device_id: OwnedDeviceId,
    },
    /// No store was chosen for the client: give `RtcClientBuilder::sqlite_store`, or opt in
    /// to in-memory stores with `RtcClientBuilder::ephemeral_device`.
    #[error(
        "no store for the client: give a SQLite store, or opt in to an ephemeral device (keys \
         in memory)"
    )]
    NoStore,
    /// A request to the homeserver failed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// matrix-sdk reported an error.
    #[error(transparent)]
    Sdk(Box<matrix_sdk::Error>),
    /// Building the matrix-sdk client failed.
    #[error(transparent)]
    ClientBuild(Box<matrix_sdk::ClientBuildError>),
}

impl From<matrix_sdk::Error> for Error {
    fn from(error: matrix_sdk::Error) -> Self {
        Self::Sdk(Box::new(error))
    }
}

impl From<matrix_sdk::ClientBuildError> for Error {
    fn from(error: matrix_sdk::ClientBuildError) -> Self {
        Self::ClientBuild(Box::new(error))
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
