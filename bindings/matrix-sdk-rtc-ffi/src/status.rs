//! [`OwnStatus`]: where our own membership of a call stands.
use matrix_sdk_rtc as rtc;

/// Where our own membership of a call stands.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum OwnStatus {
    /// Not in the call (never joined, left, or our membership ended).
    Disconnected,
    /// Getting into the call: after `join`, and again while re-joining after our membership
    /// was lost.
    Connecting,
    /// In the call.
    Connected {
        /// `true` while our delayed leave (the dead-man switch) is armed and confirmed: a
        /// crash then removes us within its delay. `false` when the server has no delayed
        /// events (a crash leaves a ghost until our membership expires).
        dead_man_switch: bool,
    },
    /// Leaving: after `leave`, until our leave is out.
    Disconnecting,
    /// We meant to be in the call, but the server has probably sent our delayed leave (the
    /// network or the server is failing). The library keeps trying.
    ProbablyLeft,
    /// Something failed.
    Error {
        /// What failed.
        message: String,
        /// `true`: the library keeps retrying more slowly. `false`: the server refused our
        /// join or leave for good; nothing happens until the next `join` or `leave`.
        retrying: bool,
    },
    /// A status this version of the bindings does not know.
    Other {
        /// Its debug description.
        description: String,
    },
}

impl From<rtc::OwnStatus> for OwnStatus {
    fn from(status: rtc::OwnStatus) -> Self {
        match status {
            rtc::OwnStatus::Disconnected => Self::Disconnected,
            rtc::OwnStatus::Connecting => Self::Connecting,
            rtc::OwnStatus::Connected { dead_man_switch } => Self::Connected { dead_man_switch },
            rtc::OwnStatus::Disconnecting => Self::Disconnecting,
            rtc::OwnStatus::ProbablyLeft => Self::ProbablyLeft,
            rtc::OwnStatus::Error { error, retrying } => Self::Error {
                message: error.to_string(),
                retrying,
            },
            other => Self::Other {
                description: format!("{other:?}"),
            },
        }
    }
}

/// What the client's main sync loop is doing.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SyncStatus {
    /// Not started (before `start`, after `stop`).
    NotStarted,
    /// Started, no answer yet.
    Starting,
    /// The last sync was answered.
    Running,
    /// The last sync failed; the loop tries again after `retry_in_ms`.
    Retrying {
        /// What went wrong (no URL, no token).
        error: String,
        /// Failed attempts in a row.
        attempts: u32,
        /// How long until the next attempt, in ms.
        retry_in_ms: u64,
    },
    /// The loop ended.
    Stopped {
        /// `true`: the server ended our session (log in again); `false`: stopped by us.
        session_ended: bool,
    },
}

impl From<rtc::SyncLoopStatus> for SyncStatus {
    fn from(status: rtc::SyncLoopStatus) -> Self {
        match status {
            rtc::SyncLoopStatus::Starting => Self::Starting,
            rtc::SyncLoopStatus::Running => Self::Running,
            rtc::SyncLoopStatus::Retrying {
                error,
                attempts,
                retry_in,
            } => Self::Retrying {
                error,
                attempts,
                retry_in_ms: millis(retry_in),
            },
            rtc::SyncLoopStatus::Stopped { reason } => Self::Stopped {
                session_ended: reason == rtc::SyncLoopStop::SessionEnded,
            },
            // A state this version does not know: the loop still runs.
            _ => Self::Running,
        }
    }
}

/// What the side connection (our sliding-sync connection for sticky events) is doing.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SideSyncStatus {
    /// Created or started: no answer yet.
    Starting,
    /// The last request was answered.
    Running,
    /// The last request failed; it is tried again after `retry_in_ms`.
    BackingOff {
        /// What went wrong.
        error: String,
        /// Failed attempts in a row.
        attempts: u32,
        /// How long until the next attempt, in ms.
        retry_in_ms: u64,
    },
    /// The server does not serve sliding sync: sticky events arrive through the main sync
    /// only.
    Failed {
        /// What the server answered.
        error: String,
    },
    /// Not running (before `start`, after `stop`, or the server lacks sliding sync).
    Stopped,
}

impl From<rtc::SideSyncStatus> for SideSyncStatus {
    fn from(status: rtc::SideSyncStatus) -> Self {
        match status {
            rtc::SideSyncStatus::Starting => Self::Starting,
            rtc::SideSyncStatus::Running => Self::Running,
            rtc::SideSyncStatus::BackingOff {
                error,
                attempts,
                retry_in,
            } => Self::BackingOff {
                error: error.to_string(),
                attempts,
                retry_in_ms: millis(retry_in),
            },
            rtc::SideSyncStatus::Failed { error } => Self::Failed {
                error: error.to_string(),
            },
            _ => Self::Stopped,
        }
    }
}

/// Milliseconds of a wait, saturating.
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use matrix_rtc_membership::OwnError;
    use matrix_sdk_rtc as rtc;

    use super::OwnStatus;

    #[test]
    fn statuses_convert() {
        let connected = rtc::OwnStatus::Connected {
            dead_man_switch: true,
        };
        assert_eq!(
            OwnStatus::from(connected),
            OwnStatus::Connected {
                dead_man_switch: true
            }
        );
        assert_eq!(
            OwnStatus::from(rtc::OwnStatus::ProbablyLeft),
            OwnStatus::ProbablyLeft
        );
        let refused = rtc::OwnStatus::Error {
            error: OwnError::JoinRejected {
                status: 403,
                errcode: Some("M_FORBIDDEN".to_owned()),
            },
            retrying: false,
        };
        assert_eq!(
            OwnStatus::from(refused),
            OwnStatus::Error {
                message: "the server refused our join (HTTP 403)".to_owned(),
                retrying: false
            }
        );
    }
}
