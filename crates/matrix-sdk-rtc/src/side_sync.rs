//! The side connection: a simplified sliding sync connection of our own that carries only the
//! sticky-events extension (docs/protocol.md §3.2, §3.3).
//!
//! It uses its own `conn_id`, one list covering every room with no timeline, and never enables
//! the `to_device`, `e2ee`, `account_data`, `receipts` or `typing` extensions: a second
//! consumer of to-device messages would swallow the app's room keys. A fresh connection replays
//! every live sticky event, so nothing needs to be stored; replays are normal and the caller
//! merges by event id.
//!
//! Each page is parsed by the one sticky parser of the workspace and handed to the pump as a
//! [`SyncInput::SidePage`]; the pump's bounded queue pushes back on the connection when the
//! machine is behind. A failure is reported as [`SyncInput::SideDown`], so that the machine
//! publishes what it held back while catching up.
//!
//! The loop does not spawn: the caller spawns [`SideSync::run`] and ends it with the shutdown
//! future, or by dropping it.

use std::{future::Future, pin::pin, time::Duration};

use eyeball::{SharedObservable, Subscriber};
use matrix_sdk::Client;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::{
    pump::SyncInput,
    requests::{HomeserverApi, RequestError, millis},
};

mod state;

use self::state::{AfterError, Cursor};

/// Default long-poll timeout.
const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than the long-poll a request may take before it counts as timed out.
const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);
/// Default (and largest) number of sticky events per page; Synapse caps it at 100.
const DEFAULT_PAGE_LIMIT: u64 = 100;
/// Default first wait after a failure.
const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Default longest wait after failures.
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the side connection is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SideSyncStatus {
    /// Entered when created and when the loop starts: no answer yet.
    Starting,
    /// Entered on every successful answer.
    Running,
    /// Entered after a failed request: the loop waits, then tries again.
    BackingOff {
        /// The last failure.
        error: RequestError,
        /// Failed attempts since the last success.
        attempts: u32,
        /// How long the loop waits before the next attempt.
        retry_in: Duration,
    },
    /// Entered when the loop ended because the server does not serve sliding sync.
    Failed {
        /// What the server answered.
        error: RequestError,
    },
    /// Entered when the loop ended on shutdown.
    Stopped,
}

/// A side connection, configured and not yet running.
#[derive(Debug)]
pub(crate) struct SideSync {
    api: HomeserverApi,
    conn_id: String,
    poll_timeout: Duration,
    page_limit: u64,
    backoff_min: Duration,
    backoff_max: Duration,
    status: SharedObservable<SideSyncStatus>,
}

impl SideSync {
    /// A side connection for this logged-in client, with its own connection id (never the
    /// app's own sliding sync `conn_id`).
    pub(crate) fn new(client: Client, conn_id: impl Into<String>) -> Self {
        Self {
            api: HomeserverApi::new(client),
            conn_id: conn_id.into(),
            poll_timeout: DEFAULT_POLL_TIMEOUT,
            page_limit: DEFAULT_PAGE_LIMIT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            status: SharedObservable::new(SideSyncStatus::Starting),
        }
    }

    /// Sets the long-poll timeout (default 30 s). Each request may take 10 s longer.
    #[must_use]
    pub(crate) fn with_poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Sets the number of sticky events per page, between 1 and 100 (default 100).
    #[must_use]
    #[cfg(test)]
    pub(crate) fn with_page_limit(mut self, limit: u64) -> Self {
        self.page_limit = limit.clamp(1, DEFAULT_PAGE_LIMIT);
        self
    }

    /// Sets the backoff after failures: `min` doubled per failure, at most `max`
    /// (default 0.5 s to 30 s), reset by a success.
    #[must_use]
    #[cfg(test)]
    pub(crate) fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// The status, current value and updates.
    pub(crate) fn subscribe_status(&self) -> Subscriber<SideSyncStatus> {
        self.status.subscribe()
    }

    /// Runs the connection until `shutdown` completes (returns `Ok`), the pump's queue closes
    /// (returns `Ok`), or the server turns out not to serve sliding sync (returns the error).
    /// Every answer, even an empty one, goes to `sink`.
    ///
    /// Any 400 answer restarts the connection without `pos` and `since` (the next page is
    /// flagged `restarted`); other failures back off. Rate limits are honoured.
    pub(crate) async fn run(
        self,
        sink: mpsc::Sender<SyncInput>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RequestError> {
        let Self {
            api,
            conn_id,
            poll_timeout,
            page_limit,
            backoff_min,
            backoff_max,
            status,
        } = self;
        let mut shutdown = pin!(shutdown);
        let mut cursor = Cursor::new(page_limit, backoff_min, backoff_max);
        let poll_timeout_ms = millis(poll_timeout);
        let request_timeout = poll_timeout.saturating_add(REQUEST_TIMEOUT_MARGIN);
        status.set_if_not_eq(SideSyncStatus::Starting);
        info!(conn_id, "side connection starting");

        loop {
            let request = cursor.request(&conn_id, poll_timeout_ms);
            let result = tokio::select! {
                result = api.sliding_sync(request, request_timeout) => result,
                () = &mut shutdown => break,
            };
            let error = match result {
                Ok(page) => {
                    let flags = cursor.handle_page(&page);
                    status.set_if_not_eq(SideSyncStatus::Running);
                    let input = SyncInput::SidePage {
                        batch: page.batch,
                        flags,
                    };
                    // Back-pressure: wait while the pump's queue is full.
                    let sent = tokio::select! {
                        sent = sink.send(input) => sent.is_ok(),
                        () = &mut shutdown => break,
                    };
                    if !sent {
                        break;
                    }
                    continue;
                }
                Err(error) => error,
            };
            // Whatever the machine held back while catching up is published now.
            let _ = sink.try_send(SyncInput::SideDown);
            match cursor.handle_error(&error) {
                AfterError::Restart => {
                    info!(%error, "side connection dropped by the server, restarting");
                }
                AfterError::Fail => {
                    warn!(%error, "side connection not served by the homeserver, stopping");
                    status.set(SideSyncStatus::Failed {
                        error: error.clone(),
                    });
                    return Err(error);
                }
                AfterError::BackOff(retry_in) => {
                    debug!(%error, ?retry_in, "side connection request failed, backing off");
                    status.set(SideSyncStatus::BackingOff {
                        error,
                        attempts: cursor.failures(),
                        retry_in,
                    });
                    tokio::select! {
                        () = tokio::time::sleep(retry_in) => {}
                        () = &mut shutdown => break,
                    }
                }
            }
        }
        info!(conn_id, "side connection stopped");
        status.set(SideSyncStatus::Stopped);
        Ok(())
    }
}
