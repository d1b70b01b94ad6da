//! [`RtcFfiError`]: every error of this library, flattened to a kind and a message.
use matrix_sdk_rtc as rtc;

/// What went wrong. A Kotlin exception (`RtcFfiException.*`), a Swift `Error`, a Python
/// exception: each kind carries a human-readable message.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
#[non_exhaustive]
pub enum RtcFfiError {
    /// An argument is malformed: a room ID, a user ID, a device ID, a slot ID
    /// (`{application}#{name}`) or a URL.
    #[error("{0}")]
    InvalidArgument(String),
    /// The client is not started (call `start` first), or it was stopped.
    #[error("{0}")]
    NotRunning(String),
    /// The room is unknown to the client, or we are not joined to it.
    #[error("{0}")]
    UnknownRoom(String),
    /// The room is encrypted: this version cannot encrypt our membership, and never sends it
    /// in plaintext there.
    #[error("{0}")]
    EncryptedRoomNotSupported(String),
    /// The homeserver lacks something this operation needs: sticky events (to join), or an
    /// RTC transport (it advertises none: pass `transportUrl` in the `JoinConfig`).
    #[error("{0}")]
    MissingFeature(String),
    /// Joining failed: we are already joining or in this call as another member. Nothing
    /// changed: leave first.
    #[error("{0}")]
    AlreadyJoined(String),
    /// Joining was cut short by a `leave` of the same call before the join completed.
    #[error("{0}")]
    LeftBeforeJoined(String),
    /// Joining failed: the server refused our join for good, or a retry budget ran out (then
    /// the library keeps trying; `ownStatus` says `Error` with `retrying`).
    #[error("{0}")]
    JoinFailed(String),
    /// Our membership could not be changed: we are not joining or joined in that call.
    #[error("{0}")]
    NotInCall(String),
    /// A request to the homeserver failed.
    #[error("{0}")]
    Request(String),
    /// Getting LiveKit credentials failed: the token service (or the homeserver's token
    /// endpoint) is unreachable, refused, or answered something unusable, or the homeserver
    /// gave no OpenID token.
    #[error("{0}")]
    LiveKit(String),
    /// Another crypto store uses this device: the server publishes other identity keys for it
    /// than this client's store holds. Nothing was sent. Use one store per device (the same
    /// `storePath` every time), or log in as a new device.
    #[error("{0}")]
    DeviceInUse(String),
    /// The Matrix client failed: building it, its stores, its session or its sync.
    #[error("{0}")]
    Client(String),
    /// Anything else (a background task that failed, an error kind this version does not
    /// know).
    #[error("{0}")]
    Other(String),
}

impl From<rtc::Error> for RtcFfiError {
    fn from(error: rtc::Error) -> Self {
        let message = error.to_string();
        match error {
            rtc::Error::NotLoggedIn | rtc::Error::DriverStopped => Self::NotRunning(message),
            rtc::Error::UnknownRoom(_) => Self::UnknownRoom(message),
            rtc::Error::EncryptedRoomNotSupported(_) => Self::EncryptedRoomNotSupported(message),
            rtc::Error::MissingFeature(_) | rtc::Error::NoTransport => {
                Self::MissingFeature(message)
            }
            rtc::Error::InvalidSlot(_) => Self::InvalidArgument(message),
            rtc::Error::JoinFailed(rtc::JoinFailure::AlreadyJoined) => Self::AlreadyJoined(message),
            rtc::Error::JoinFailed(rtc::JoinFailure::LeftBeforeJoined) => {
                Self::LeftBeforeJoined(message)
            }
            rtc::Error::JoinFailed(_) => Self::JoinFailed(message),
            rtc::Error::UpdateFailed(_) => Self::NotInCall(message),
            rtc::Error::Request(_) => Self::Request(message),
            rtc::Error::DeviceKeysDiffer { .. } => Self::DeviceInUse(message),
            rtc::Error::NoStore => Self::InvalidArgument(message),
            rtc::Error::Sdk(_) | rtc::Error::ClientBuild(_) => Self::Client(message),
            _ => Self::Other(message),
        }
    }
}

impl From<rtc::LiveKitError> for RtcFfiError {
    fn from(error: rtc::LiveKitError) -> Self {
        let message = error.to_string();
        match error {
            rtc::LiveKitError::NotLoggedIn | rtc::LiveKitError::DriverStopped => {
                Self::NotRunning(message)
            }
            rtc::LiveKitError::NotJoined => Self::NotInCall(message),
            rtc::LiveKitError::NoTransport => Self::MissingFeature(message),
            _ => Self::LiveKit(message),
        }
    }
}

impl From<matrix_sdk::Error> for RtcFfiError {
    fn from(error: matrix_sdk::Error) -> Self {
        Self::Client(error.to_string())
    }
}

/// Result alias of this crate.
pub type Result<T, E = RtcFfiError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use matrix_sdk_rtc as rtc;

    use super::RtcFfiError;

    #[test]
    fn errors_keep_their_kind_and_message() {
        let error = RtcFfiError::from(rtc::Error::InvalidSlot(rtc::InvalidSlotId(
            "no-slot".to_owned(),
        )));
        assert!(
            matches!(&error, RtcFfiError::InvalidArgument(_)),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "invalid slot id \"no-slot\": expected `{application}#{name}`"
        );
        for stopped in [rtc::Error::DriverStopped, rtc::Error::NotLoggedIn] {
            assert!(matches!(
                RtcFfiError::from(stopped),
                RtcFfiError::NotRunning(_)
            ));
        }
        let missing = RtcFfiError::from(rtc::Error::MissingFeature(
            rtc::MissingFeature::StickyEvents,
        ));
        assert!(
            matches!(&missing, RtcFfiError::MissingFeature(message) if message.contains("sticky events")),
            "{missing:?}"
        );
        let in_use = RtcFfiError::from(rtc::Error::DeviceKeysDiffer {
            device_id: "ALICEDEVICE".into(),
        });
        assert!(
            matches!(&in_use, RtcFfiError::DeviceInUse(message) if message.contains("ALICEDEVICE")),
            "{in_use:?}"
        );
        let no_transport = RtcFfiError::from(rtc::Error::NoTransport);
        assert!(
            matches!(&no_transport, RtcFfiError::MissingFeature(message) if message.contains("transport")),
            "{no_transport:?}"
        );
    }

    #[test]
    fn livekit_errors_keep_their_kind() {
        assert!(matches!(
            RtcFfiError::from(rtc::LiveKitError::NotJoined),
            RtcFfiError::NotInCall(_)
        ));
        let refused = RtcFfiError::from(rtc::LiveKitError::Refused {
            endpoint: rtc::TokenEndpoint::ServiceGetToken,
            status: 403,
            errcode: Some("M_FORBIDDEN".to_owned()),
            message: "no".to_owned(),
        });
        assert!(
            matches!(&refused, RtcFfiError::LiveKit(message) if message.contains("403")),
            "{refused:?}"
        );
    }

    #[test]
    fn join_failures_keep_their_reason_as_the_kind() {
        let join = |failure| RtcFfiError::from(rtc::Error::JoinFailed(failure));
        assert!(matches!(
            join(rtc::JoinFailure::AlreadyJoined),
            RtcFfiError::AlreadyJoined(message) if message.contains("leave first")
        ));
        assert!(matches!(
            join(rtc::JoinFailure::LeftBeforeJoined),
            RtcFfiError::LeftBeforeJoined(_)
        ));
        let refused = join(rtc::JoinFailure::Failed(rtc::OwnError::JoinRejected {
            status: 403,
            errcode: Some("M_FORBIDDEN".to_owned()),
        }));
        assert!(
            matches!(&refused, RtcFfiError::JoinFailed(message) if message.contains("HTTP 403")),
            "{refused:?}"
        );
    }
}
