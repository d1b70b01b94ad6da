//! The harness's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while installing, starting, driving or stopping a test server.
///
/// Every failure is an error, never a silent skip: a test that cannot get its server fails.
///
/// `Debug` prints the same text as `Display`, so that `.expect(..)` in a test shows log tails
/// line by line. Prefer `.expect(..)` to `?` in tests: a panic keeps the server's run directory,
/// an error returned from the test does not (the server is dropped before the test fails).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Synapse is not installed and installing it failed (or the install script is missing).
    #[error("installing synapse into {venv} failed: {reason}")]
    Install {
        /// The virtual environment that was to hold Synapse.
        venv: PathBuf,
        /// What went wrong, with the tail of the install script's output.
        reason: String,
    },
    /// A local file operation failed (run directory, config files, logs).
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The Synapse process exited before it answered `/versions`.
    #[error("synapse exited before it was ready ({status}); log tail:\n{log_tail}")]
    Exited {
        /// How the process ended.
        status: String,
        /// The server's run directory, kept for its logs.
        run_dir: PathBuf,
        /// The last lines of its logs.
        log_tail: String,
    },
    /// Synapse did not answer `/versions` in time (the process was killed).
    #[error("synapse was not ready after {timeout:?}; log tail:\n{log_tail}")]
    StartTimeout {
        /// How long the harness waited.
        timeout: Duration,
        /// The server's run directory, kept for its logs.
        run_dir: PathBuf,
        /// The last lines of its logs.
        log_tail: String,
    },
    /// The server is stopped (after [`TestHomeserver::stop`](crate::TestHomeserver::stop)).
    #[error("the test server is not running")]
    NotRunning,
    /// An HTTP request could not be made or its answer could not be read.
    #[error("http request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered a helper's request with an unexpected status.
    #[error("{method} {path} answered {status}: {body}")]
    Status {
        /// The request's method.
        method: String,
        /// The request's path (without the host).
        path: String,
        /// The HTTP status code.
        status: u16,
        /// The answer's body.
        body: serde_json::Value,
    },
    /// The server's answer lacked a field a helper needs.
    #[error("unexpected answer to {path}: {reason}")]
    InvalidResponse {
        /// The request's path (without the host).
        path: String,
        /// What was wrong with the answer.
        reason: String,
    },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
