//! The side connection's bookkeeping, without IO: which tokens to send, when to page, when to
//! restart and how long to back off.

use std::time::Duration;

use matrix_rtc_machine::PageFlags;

use crate::requests::{RequestError, SyncPage, SyncRequest};

/// Longest wait we accept from a rate-limit answer.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(300);

/// "Not served" answers (`M_UNRECOGNIZED`, a bare 404 or 405) in a row after which a
/// connection that never got an answer gives up: the server advertises sliding sync but does
/// not serve it. A connection that worked once never gives up on them: a restarting server or
/// a proxy in front of it answers that way for a moment.
const UNRECOGNIZED_BEFORE_GIVING_UP: u32 = 5;

/// What to do after a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterError {
    /// The connection was dropped: send a fresh request at once.
    Restart,
    /// Wait this long, then try again.
    BackOff(Duration),
    /// Give up: the server does not serve the endpoint.
    Fail,
}

/// Tokens and counters of one side connection.
#[derive(Debug)]
pub(crate) struct Cursor {
    pos: Option<String>,
    since: Option<String>,
    /// The next batch is the first of a connection that replaced an earlier one.
    restart_pending: bool,
    /// Caught up: the next request long-polls instead of paging.
    polling: bool,
    /// Failed attempts since the last success.
    failures: u32,
    /// "Not served" answers since the last success.
    unrecognized: u32,
    /// The server answered this connection at least once.
    ever_answered: bool,
    limit: u64,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl Cursor {
    pub(crate) fn new(limit: u64, backoff_min: Duration, backoff_max: Duration) -> Self {
        Self {
            pos: None,
            since: None,
            restart_pending: false,
            polling: false,
            failures: 0,
            unrecognized: 0,
            ever_answered: false,
            limit,
            backoff_min,
            backoff_max,
        }
    }

    /// The next request: long-poll with `poll_timeout_ms` once caught up, else page at once.
    pub(crate) fn request<'a>(&'a self, conn_id: &'a str, poll_timeout_ms: u64) -> SyncRequest<'a> {
        SyncRequest {
            conn_id,
            pos: self.pos.as_deref(),
            since: self.since.as_deref(),
            limit: self.limit,
            timeout_ms: if self.polling { poll_timeout_ms } else { 0 },
        }
    }

    /// Takes in a page: new `pos`, new `since` when given, and the batch flags.
    pub(crate) fn handle_page(&mut self, page: &SyncPage) -> PageFlags {
        self.failures = 0;
        self.unrecognized = 0;
        self.ever_answered = true;
        self.pos = Some(page.pos.clone());
        let advanced = match page.next_batch() {
            Some(next_batch) if self.since.as_deref() != Some(next_batch) => {
                self.since = Some(next_batch.to_owned());
                true
            }
            _ => false,
        };
        let full = u64::try_from(page.event_count()).unwrap_or(u64::MAX) >= self.limit;
        // A full page may have more behind it; but without a new `since` asking again would
        // return the same page, so then take it as the end.
        let caught_up = !(full && advanced);
        if full && !advanced {
            tracing::warn!(
                "full sticky-events page without a new next_batch: treating as caught up"
            );
        }
        self.polling = caught_up;
        PageFlags::new(caught_up, std::mem::take(&mut self.restart_pending))
    }

    /// Takes in a failure and says what to do next.
    pub(crate) fn handle_error(&mut self, error: &RequestError) -> AfterError {
        match error {
            RequestError::Unrecognized => {
                self.unrecognized = self.unrecognized.saturating_add(1);
                if !self.ever_answered && self.unrecognized >= UNRECOGNIZED_BEFORE_GIVING_UP {
                    return AfterError::Fail;
                }
                self.failures = self.failures.saturating_add(1);
                AfterError::BackOff(self.backoff())
            }
            RequestError::UnknownPos if !self.is_fresh() => {
                self.pos = None;
                self.since = None;
                self.polling = false;
                self.restart_pending = true;
                AfterError::Restart
            }
            // A fresh connection refused, or any other error: back off.
            other => {
                self.failures = self.failures.saturating_add(1);
                let wait = self.backoff();
                let wait = match other.retry_after() {
                    Some(asked) => wait.max(asked.min(MAX_RATE_LIMIT_WAIT)),
                    None => wait,
                };
                AfterError::BackOff(wait)
            }
        }
    }

    /// Failed attempts since the last success.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    fn is_fresh(&self) -> bool {
        self.pos.is_none() && self.since.is_none()
    }

    /// `backoff_min` doubled per failure after the first, capped at `backoff_max`.
    fn backoff(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(20);
        self.backoff_min
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use matrix_sdk::ruma::owned_room_id;
    use matrix_sticky_events::{Rejection, RoomBatch, StickyBatch};

    use super::{AfterError, Cursor, PageFlags};
    use crate::requests::{RequestError, SyncPage};

    const MIN: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    fn page(pos: &str, next_batch: Option<&str>, event_count: usize) -> SyncPage {
        let events = (0..event_count).map(|_| Err(Rejection::NotJson)).collect();
        SyncPage {
            pos: pos.to_owned(),
            batch: StickyBatch {
                rooms: vec![RoomBatch {
                    room_id: owned_room_id!("!r:x"),
                    events,
                }],
                errors: Vec::new(),
                next_batch: next_batch.map(str::to_owned),
            },
        }
    }

    #[test]
    fn starts_fresh_and_pages_at_once() {
        let cursor = Cursor::new(2, MIN, MAX);
        let request = cursor.request("c", 30_000);
        assert_eq!(
            (request.pos, request.since, request.timeout_ms),
            (None, None, 0)
        );
    }

    #[test]
    fn pages_while_full_then_long_polls() {
        let mut cursor = Cursor::new(2, MIN, MAX);
        let flags = cursor.handle_page(&page("p1", Some("s1"), 2));
        assert_eq!(flags, PageFlags::new(false, false));
        let request = cursor.request("c", 30_000);
        assert_eq!(
            (request.pos, request.since, request.timeout_ms),
            (Some("p1"), Some("s1"), 0)
        );

        let flags = cursor.handle_page(&page("p2", Some("s2"), 1));
        assert!(flags.caught_up);
        let request = cursor.request("c", 30_000);
        assert_eq!(
            (request.pos, request.since, request.timeout_ms),
            (Some("p2"), Some("s2"), 30_000)
        );
    }

    #[test]
    fn absent_next_batch_keeps_since() {
        let mut cursor = Cursor::new(100, MIN, MAX);
        cursor.handle_page(&page("p1", Some("s1"), 1));
        cursor.handle_page(&page("p2", None, 0));
        assert_eq!(cursor.request("c", 1).since, Some("s1"));
        assert_eq!(cursor.request("c", 1).pos, Some("p2"));
    }

    #[test]
    fn full_page_without_progress_counts_as_caught_up() {
        let mut cursor = Cursor::new(1, MIN, MAX);
        assert!(!cursor.handle_page(&page("p1", Some("s1"), 1)).caught_up);
        assert!(cursor.handle_page(&page("p2", Some("s1"), 1)).caught_up);
        assert!(cursor.handle_page(&page("p3", None, 1)).caught_up);
    }

    #[test]
    fn unknown_pos_restarts_and_flags_the_next_batch_once() {
        let mut cursor = Cursor::new(100, MIN, MAX);
        cursor.handle_page(&page("p1", Some("s1"), 0));
        assert_eq!(
            cursor.handle_error(&RequestError::UnknownPos),
            AfterError::Restart
        );
        let request = cursor.request("c", 30_000);
        assert_eq!(
            (request.pos, request.since, request.timeout_ms),
            (None, None, 0)
        );
        assert!(cursor.handle_page(&page("p9", Some("s9"), 0)).restarted);
        assert!(!cursor.handle_page(&page("p10", None, 0)).restarted);
    }

    #[test]
    fn restart_flag_survives_errors_until_a_batch() {
        let mut cursor = Cursor::new(100, MIN, MAX);
        cursor.handle_page(&page("p1", Some("s1"), 0));
        cursor.handle_error(&RequestError::UnknownPos);
        let network = RequestError::Network {
            timed_out: true,
            message: String::new(),
        };
        assert_eq!(cursor.handle_error(&network), AfterError::BackOff(MIN));
        assert!(cursor.handle_page(&page("p2", None, 0)).restarted);
    }

    #[test]
    fn unknown_pos_on_a_fresh_connection_backs_off() {
        let mut cursor = Cursor::new(100, MIN, MAX);
        assert_eq!(
            cursor.handle_error(&RequestError::UnknownPos),
            AfterError::BackOff(MIN)
        );
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut cursor = Cursor::new(100, MIN, MAX);
        let error = RequestError::Network {
            timed_out: false,
            message: String::new(),
        };
        let waits: Vec<_> = (0..9).map(|_| cursor.handle_error(&error)).collect();
        let expected: Vec<_> = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
            .into_iter()
            .map(|ms| AfterError::BackOff(Duration::from_millis(ms)))
            .collect();
        assert_eq!(waits, expected);
        assert_eq!(cursor.failures(), 9);
        cursor.handle_page(&page("p", None, 0));
        assert_eq!(cursor.failures(), 0);
        assert_eq!(cursor.handle_error(&error), AfterError::BackOff(MIN));
        for _ in 0..100 {
            cursor.handle_error(&error);
        }
        assert_eq!(cursor.handle_error(&error), AfterError::BackOff(MAX));
    }

    #[test]
    fn rate_limit_wait_is_honoured_and_bounded() {
        let mut cursor = Cursor::new(100, MIN, MAX);
        let limited = RequestError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            cursor.handle_error(&limited),
            AfterError::BackOff(Duration::from_secs(7))
        );
        let huge = RequestError::RateLimited {
            retry_after: Some(Duration::from_secs(99_999)),
        };
        assert_eq!(
            cursor.handle_error(&huge),
            AfterError::BackOff(Duration::from_secs(300))
        );
    }

    #[test]
    fn unrecognized_backs_off_and_fails_only_a_connection_that_never_worked() {
        // Never answered: backs off four times, gives up at the fifth.
        let mut cursor = Cursor::new(100, MIN, MAX);
        for attempt in 1..super::UNRECOGNIZED_BEFORE_GIVING_UP {
            assert!(
                matches!(
                    cursor.handle_error(&RequestError::Unrecognized),
                    AfterError::BackOff(_)
                ),
                "attempt {attempt}"
            );
        }
        assert_eq!(
            cursor.handle_error(&RequestError::Unrecognized),
            AfterError::Fail
        );

        // Answered once: a bare 404 (a restarting server) is waited out, however long.
        let mut cursor = Cursor::new(100, MIN, MAX);
        cursor.handle_page(&page("1", Some("s1"), 0));
        for _ in 0..50 {
            assert!(matches!(
                cursor.handle_error(&RequestError::Unrecognized),
                AfterError::BackOff(wait) if wait <= MAX
            ));
        }
    }
}
