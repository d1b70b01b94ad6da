//! A supervised main sync loop for apps (and our FFI and CLI) that have none of their own.
//!
//! matrix-sdk's `Client::sync` returns at its first error, and between two quick answers it
//! pauses for a second; in an encrypted room a fresh participant's room key then waits out that
//! pause before we can decrypt their membership. [`SyncLoop`] calls `sync_once` back to back
//! instead: a healthy loop never waits, a failing one retries after an exponential backoff with
//! jitter (so that many clients of a restarted server do not come back in step), for every
//! kind of error, until it is stopped or the server says the session is over. What it is doing
//! is an observable [`SyncLoopStatus`].
use std::time::Duration;

use eyeball::{SharedObservable, Subscriber};
use matrix_sdk::{Client, config::SyncSettings, ruma::api::error::ErrorKind};
use rand::Rng as _;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::requests::{RequestContext, map_http_error};

/// Long-poll timeout of each `/sync`.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// First wait after a failure.
const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest wait between two attempts.
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What a [`SyncLoop`] is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncLoopStatus {
    /// Created, or started: no answer yet.
    Starting,
    /// The last `/sync` was answered.
    Running,
    /// The last `/sync` failed; the loop tries again after `retry_in`.
    Retrying {
        /// What went wrong (no URL, no token: safe to show and log).
        error: String,
        /// Failed attempts in a row.
        attempts: u32,
        /// How long the loop waits before the next attempt.
        retry_in: Duration,
    },
    /// The loop ended.
    Stopped {
        /// Why.
        reason: SyncLoopStop,
    },
}

/// Why a [`SyncLoop`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncLoopStop {
    /// [`SyncLoopHandle::stop`] (or dropping the handle).
    Stopped,
    /// The server no longer accepts our access token and it could not be refreshed: the app
    /// must log in again.
    SessionEnded,
}

/// A main sync loop that never ends on a transient error and never throttles a healthy
/// connection.
///
/// ```no_run
/// # async fn example(client: matrix_sdk::Client) {
/// use matrix_sdk_rtc::SyncLoop;
///
/// let sync = SyncLoop::new(client).spawn(None);
/// let mut status = sync.subscribe_status();
/// tokio::spawn(async move {
///     while let Some(status) = futures_util::StreamExt::next(&mut status).await {
///         println!("sync: {status:?}");
///     }
/// });
/// // ... later
/// sync.stop();
/// # }
/// ```
#[derive(Debug)]
pub struct SyncLoop {
    client: Client,
    status: SharedObservable<SyncLoopStatus>,
    poll_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl SyncLoop {
    /// A loop for `client` (logged in), with a 30 s long poll and a backoff from 250 ms to
    /// 30 s.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            status: SharedObservable::new(SyncLoopStatus::Starting),
            poll_timeout: POLL_TIMEOUT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }

    /// The wait after the first failure, doubled after each further one up to `max`; each wait
    /// is drawn at random between half of it and all of it.
    #[must_use]
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_min);
        self
    }

    /// The long-poll timeout of each `/sync`.
    #[must_use]
    pub fn with_poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Runs the loop on the current tokio runtime, continuing from `token` (the
    /// `next_batch` of an earlier sync; `None`: the client's stored token, if any).
    pub fn spawn(self, token: Option<String>) -> SyncLoopHandle {
        let status = self.status.clone();
        let task = tokio::spawn(self.run(token));
        SyncLoopHandle { status, task }
    }

    async fn run(self, mut token: Option<String>) {
        self.status.set_if_not_eq(SyncLoopStatus::Starting);
        let mut failures: u32 = 0;
        // The first request, and the first after a failure, does not long-poll: its answer
        // comes at once and says the server is there (and catches up on what was missed).
        let mut catch_up = true;
        loop {
            let timeout = if catch_up {
                Duration::ZERO
            } else {
                self.poll_timeout
            };
            let mut settings = SyncSettings::default().timeout(timeout);
            if let Some(token) = &token {
                settings = settings.token(token.clone());
            }
            match self.client.sync_once(settings).await {
                Ok(response) => {
                    if failures > 0 {
                        info!(failures, "the sync loop is answered again");
                    }
                    failures = 0;
                    catch_up = false;
                    token = Some(response.next_batch);
                    self.status.set_if_not_eq(SyncLoopStatus::Running);
                }
                Err(error) => {
                    if matches!(
                        error.client_api_error_kind(),
                        Some(ErrorKind::UnknownToken(_))
                    ) {
                        // matrix-sdk refreshes a refreshable token by itself: this one is over.
                        warn!("the server ended our session: the sync loop stops");
                        self.status.set(SyncLoopStatus::Stopped {
                            reason: SyncLoopStop::SessionEnded,
                        });
                        return;
                    }
                    failures = failures.saturating_add(1);
                    catch_up = true;
                    let retry_in = self.backoff(failures);
                    let error = describe(&error);
                    debug!(%error, failures, ?retry_in, "sync failed; trying again");
                    self.status.set(SyncLoopStatus::Retrying {
                        error,
                        attempts: failures,
                        retry_in,
                    });
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }

    /// The wait after `failures` failures in a row: the capped exponential, jittered down to
    /// at most half.
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        let full = self
            .backoff_min
            .saturating_mul(1 << doublings)
            .min(self.backoff_max);
        let half = full / 2;
        let jitter_ms = crate::requests::millis(full - half);
        half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
    }
}

/// What went wrong, without anything secret: HTTP failures through the crate's one error
/// mapping, which never keeps a URL.
fn describe(error: &matrix_sdk::Error) -> String {
    match error {
        matrix_sdk::Error::Http(http) => map_http_error(http, RequestContext::Plain).to_string(),
        _ => "the sync could not be processed".to_owned(),
    }
}

/// A running [`SyncLoop`]; dropping it stops the loop.
#[derive(Debug)]
pub struct SyncLoopHandle {
    status: SharedObservable<SyncLoopStatus>,
    task: JoinHandle<()>,
}

impl SyncLoopHandle {
    /// What the loop is doing now.
    pub fn status(&self) -> SyncLoopStatus {
        self.status.get()
    }

    /// Every change of [`status`](Self::status) from now on (a subscriber sees the latest
    /// value when it falls behind).
    pub fn subscribe_status(&self) -> Subscriber<SyncLoopStatus> {
        self.status.subscribe()
    }

    /// Stops the loop (an answer in flight is dropped).
    pub fn stop(&self) {
        self.task.abort();
        self.status.set(SyncLoopStatus::Stopped {
            reason: SyncLoopStop::Stopped,
        });
    }

    /// Whether the loop has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for SyncLoopHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::SyncLoop;

    #[tokio::test]
    async fn backoff_doubles_to_the_cap_with_jitter_down_to_half() {
        let client = matrix_sdk::Client::builder()
            .homeserver_url("http://127.0.0.1:9")
            .build()
            .await
            .expect("client");
        let sync = SyncLoop::new(client)
            .with_backoff(Duration::from_millis(100), Duration::from_millis(1_000));
        for (failures, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (30, 1_000),
        ] {
            for _ in 0..20 {
                let wait = sync.backoff(failures);
                assert!(
                    wait >= Duration::from_millis(full / 2) && wait <= Duration::from_millis(full),
                    "{failures} failures: {wait:?}"
                );
            }
        }
    }
}
