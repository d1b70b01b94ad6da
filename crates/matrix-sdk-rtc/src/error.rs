//! The errors of this crate.
use matrix_sdk::ruma::OwnedRoomId;

use crate::RequestError;

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
    /// The server offers neither sticky events nor legacy state memberships we could use.
    #[error("the server lacks a feature this operation needs: {0}")]
    MissingFeature(String),
    /// A slot ID must look like `{application}#{name}`.
    #[error("invalid slot id: {0}")]
    InvalidSlot(String),
    /// The driver has been shut down (or its task ended).
    #[error("the rtc driver is not running")]
    DriverStopped,
    /// Joining failed; the status observable has the details.
    #[error("joining the call failed: {0}")]
    JoinFailed(String),
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
