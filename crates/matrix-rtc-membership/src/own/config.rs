//! Configuration of the own-membership machine: timings, budgets, server capabilities.

use std::time::Duration;

/// The longest sticky duration a server honours (MSC4354): one hour.
const MAX_STICKY_DURATION_MS: u64 = 3_600_000;
/// The shortest sticky duration we use when there is no dead-man switch: five minutes, so that
/// server clock skew cannot end our stickiness early (MSC4354 advice).
const MIN_NO_SWITCH_STICKY_DURATION_MS: u64 = 300_000;
/// Every wait and delay is capped to a day, so that no configuration (or server answer) can
/// push an instant out of range.
pub(crate) const MAX_WAIT_MS: u64 = 86_400_000;

/// `ms` as a duration, capped to [`MAX_WAIT_MS`].
pub(crate) fn capped(ms: u64) -> Duration {
    Duration::from_millis(ms.min(MAX_WAIT_MS))
}

/// Timings and retry budgets of an [`OwnMembership`](crate::OwnMembership) machine.
///
/// Every field is in milliseconds (or a count) and has a documented default, see
/// [`OwnMembershipConfig::default`]. Build one with struct update syntax:
///
/// ```
/// use matrix_rtc_membership::OwnMembershipConfig;
///
/// let config = OwnMembershipConfig { delay_ms: 18_000, ..OwnMembershipConfig::default() };
/// assert_eq!(config.restart_interval_ms, 3_000);
/// ```
///
/// # Choosing the delay and the restart interval
///
/// The server sends our leave `delay_ms` (`D`) after the last restart it received; we restart
/// every `restart_interval_ms` (`R`). Keep `D >= 3R`: then two restarts in a row can fail (or be
/// rate limited) before the server fires, which is what stops "flapping" between leave and
/// re-join on a shaky network. With [`enforce_delay_margin`](Self::enforce_delay_margin) on (the
/// default), the machine lowers `R` to `D / 3` whenever the effective delay (after clamping to the
/// server maximum) would break that rule. Keep the round-trip time well below `R` as well: the
/// machine has at most one restart in flight, and it reports
/// [`OwnStatus::ProbablyLeft`](crate::OwnStatus::ProbablyLeft) when no restart could be confirmed
/// before the earliest instant the server may fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnMembershipConfig {
    /// Delay `D` of our delayed leave (the dead-man switch): how long after our last successful
    /// restart the server sends our leave. Lowered to the server's maximum
    /// ([`ServerCapabilities::max_delay_ms`]). Default: 10 000.
    pub delay_ms: u64,
    /// Restart interval `R`: the heartbeat period. Default: 3 000 (so that `D >= 3R`).
    pub restart_interval_ms: u64,
    /// Lower the restart interval to a third of the effective delay when needed. Default: `true`.
    pub enforce_delay_margin: bool,
    /// Local timeout `T` of every request. A restart is given `min(T, expected_fire - now)`, so
    /// that its failure is known before the server would fire. Default: 2 000.
    pub request_timeout_ms: u64,
    /// Wait before retrying after a network error, a server error (5xx) or an unexpected error.
    /// A local timeout is retried at once. Default: 3 000.
    pub network_retry_wait_ms: u64,
    /// Network failures (errors and timeouts) in a row, per kind of request, after which the
    /// status becomes [`OwnStatus::Error`](crate::OwnStatus::Error) with `retrying: true`. The
    /// machine keeps retrying, every [`exhausted_retry_wait_ms`](Self::exhausted_retry_wait_ms).
    /// A success resets it. Default: 10.
    pub network_retry_budget: u32,
    /// Wait after a 429 without a `Retry-After` or `retry_after_ms`. Default: 5 000.
    pub rate_limit_default_wait_ms: u64,
    /// Longest wait honoured after a 429 (a longer `Retry-After` is cut to this). Default:
    /// 300 000.
    pub rate_limit_max_wait_ms: u64,
    /// Rate-limit answers in a row, per kind of request, after which the status becomes
    /// [`OwnStatus::Error`](crate::OwnStatus::Error) with `retrying: true` (the machine keeps
    /// retrying). A success resets it. Default: 10.
    pub rate_limit_budget: u32,
    /// The shortest wait between two attempts once a budget is used up. Default: 10 000.
    pub exhausted_retry_wait_ms: u64,
    /// Sticky duration of our member events (join, refresh, leaves), at most one hour (larger
    /// values are lowered to it). Default: 3 600 000.
    pub sticky_duration_ms: u64,
    /// Sticky duration used instead of [`sticky_duration_ms`](Self::sticky_duration_ms) for a
    /// membership without a dead-man switch (so a crash leaves a ghost for at most this long):
    /// a join made when the server has no delayed events, or whose first delayed leave the
    /// server refused (disallowed, delay too large, quota full) before anything of the
    /// membership was sent. The join is refreshed at
    /// [`refresh_at_percent`](Self::refresh_at_percent) of it (2.5 minutes by default). Never
    /// below 300 000 (five minutes, MSC4354's advice against clock skew) and never above
    /// `sticky_duration_ms` (so a test may shorten both). The choice is made once per join and
    /// kept by every event of that membership, since the event that expires last wins its key:
    /// a switch lost later in the call keeps the duration the join went out with. Default:
    /// 300 000.
    pub no_switch_sticky_duration_ms: u64,
    /// When to refresh our join, as a percentage of its sticky lifetime counted from the send.
    /// Clamped to 50..=75. Default: 50 (half-life, which leaves the most room for retries).
    pub refresh_at_percent: u8,
    /// How long after a join is acknowledged a sync report without our membership counts, if
    /// sync has not shown our membership yet (before that, the report is most likely older than
    /// the join). The grace doubles after each re-join that sync never confirmed (up to 64
    /// times). Default: 10 000.
    pub sync_grace_ms: u64,
    /// The shortest time between two re-sends for new devices
    /// ([`handle_new_devices`](crate::OwnMembership::handle_new_devices)): calls inside it are
    /// coalesced into one run at its end. Default: 30 000.
    pub new_devices_min_interval_ms: u64,
}

impl Default for OwnMembershipConfig {
    /// The defaults: `D` 10 s, `R` 3 s, `T` 2 s, network retry 3 s × 10, rate limit 5 s × 10
    /// (at most 300 s), 10 s between attempts once a budget is used up, sticky duration 1 h
    /// (5 min without a dead-man switch), refresh at 50 %, sync grace 10 s, at most one re-send
    /// for new devices every 30 s.
    fn default() -> Self {
        Self {
            delay_ms: 10_000,
            restart_interval_ms: 3_000,
            enforce_delay_margin: true,
            request_timeout_ms: 2_000,
            network_retry_wait_ms: 3_000,
            network_retry_budget: 10,
            rate_limit_default_wait_ms: 5_000,
            rate_limit_max_wait_ms: 300_000,
            rate_limit_budget: 10,
            exhausted_retry_wait_ms: 10_000,
            sticky_duration_ms: MAX_STICKY_DURATION_MS,
            no_switch_sticky_duration_ms: MIN_NO_SWITCH_STICKY_DURATION_MS,
            refresh_at_percent: 50,
            sync_grace_ms: 10_000,
            new_devices_min_interval_ms: 30_000,
        }
    }
}

impl OwnMembershipConfig {
    /// The delay to schedule given the server's capabilities (at least 1 ms, at most a day).
    pub(crate) fn effective_delay_ms(&self, caps: &ServerCapabilities) -> u64 {
        self.delay_ms
            .min(caps.max_delay_ms.unwrap_or(u64::MAX))
            .clamp(1, MAX_WAIT_MS)
    }

    /// The restart interval for a delayed leave of `delay_ms`.
    pub(crate) fn restart_interval(&self, delay_ms: u64) -> Duration {
        let mut interval = self.restart_interval_ms;
        if self.enforce_delay_margin {
            interval = interval.min(delay_ms / 3);
        }
        capped(interval.max(1))
    }

    /// The sticky duration of a membership joined with these capabilities.
    pub(crate) fn session_sticky_duration_ms(&self, caps: &ServerCapabilities) -> u64 {
        let full = self.sticky_duration_ms.clamp(1, MAX_STICKY_DURATION_MS);
        if caps.delayed_events {
            full
        } else {
            self.no_switch_sticky_duration_ms
                .max(MIN_NO_SWITCH_STICKY_DURATION_MS)
                .min(full)
        }
    }

    /// How long after sending a join its refresh is due.
    pub(crate) fn refresh_after(&self, sticky_duration_ms: u64) -> Duration {
        let percent = u64::from(self.refresh_at_percent.clamp(50, 75));
        Duration::from_millis(sticky_duration_ms.saturating_mul(percent) / 100)
    }

    pub(crate) fn new_devices_min_interval(&self) -> Duration {
        capped(self.new_devices_min_interval_ms)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        capped(self.request_timeout_ms.max(1))
    }

    pub(crate) fn sync_grace(&self, unseen_rejoins: u32) -> Duration {
        let factor = 1_u64 << unseen_rejoins.min(6);
        capped(self.sync_grace_ms.saturating_mul(factor))
    }
}

/// What the homeserver supports, as far as our own membership is concerned.
///
/// The driver fills it from `/versions` and `/capabilities` (docs/protocol.md §8) and hands it to
/// [`OwnMembership::join`](crate::OwnMembership::join) (in [`JoinConfig`]) or later to
/// [`OwnMembership::handle_capabilities`](crate::OwnMembership::handle_capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCapabilities {
    /// The server has MSC4140 delayed events in use: `/versions` advertises
    /// `org.matrix.msc4140` or `org.matrix.msc4140.stable`, and the delayed-events capability
    /// does not turn them off (a limit of 0).
    /// Without them we join without a dead-man switch and say so in the status.
    pub delayed_events: bool,
    /// The longest delay the server accepts (`max_delay_ms` of the delayed-events capability);
    /// `None` means no limit. Our delay is lowered to it.
    pub max_delay_ms: Option<u64>,
    /// The server implements MSC4354 sticky events. Informational for this machine: the driver
    /// picks the event format; the machine behaves the same either way.
    pub sticky_events: bool,
}

impl ServerCapabilities {
    /// A server with delayed events (no maximum delay) and sticky events.
    pub fn full() -> Self {
        Self {
            delayed_events: true,
            max_delay_ms: None,
            sticky_events: true,
        }
    }
}

/// What [`OwnMembership::join`](crate::OwnMembership::join) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinConfig {
    /// Our `member.id` (and sticky key) for this membership. Choose a new one (a UUIDv4) for
    /// each join the user asks for, so that a stale delayed leave of an earlier join can never
    /// remove the new one (docs/protocol.md §5.6). Automatic re-joins keep it.
    pub member_id: String,
    /// The server's capabilities at join time.
    pub capabilities: ServerCapabilities,
}

impl JoinConfig {
    /// A join as `member_id` on a server with `capabilities`.
    pub fn new(member_id: impl Into<String>, capabilities: ServerCapabilities) -> Self {
        Self {
            member_id: member_id.into(),
            capabilities,
        }
    }
}
