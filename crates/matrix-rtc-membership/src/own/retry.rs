//! Retry budgets per kind of request.

use std::time::Duration;

use super::{
    config::{OwnMembershipConfig, capped},
    request::{OwnAction, Transient},
    status::OwnError,
};

/// Consecutive failures of one kind of request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Streak {
    network: u32,
    rate_limited: u32,
}

/// What to do after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPlan {
    /// How long to wait before the next attempt.
    pub(crate) wait: Duration,
    /// This failure used the budget up (report it once).
    pub(crate) newly_exhausted: bool,
}

/// Failure streaks per [`OwnAction`]. A success of an action resets its streak. No failure ever
/// stops the retries: once a budget is used up, attempts are spaced by at least
/// [`OwnMembershipConfig::exhausted_retry_wait_ms`] and the status reports an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RetryBook {
    streaks: [Streak; OwnAction::COUNT],
}

impl RetryBook {
    pub(crate) fn failure(
        &mut self,
        action: OwnAction,
        failure: Transient,
        config: &OwnMembershipConfig,
    ) -> RetryPlan {
        let was_exhausted = self.is_exhausted(action, config);
        let streak = &mut self.streaks[action.index()];
        let wait_ms = match failure {
            Transient::Timeout => {
                streak.network = streak.network.saturating_add(1);
                0
            }
            Transient::Network => {
                streak.network = streak.network.saturating_add(1);
                config.network_retry_wait_ms
            }
            Transient::RateLimited(retry_after) => {
                streak.rate_limited = streak.rate_limited.saturating_add(1);
                let told = retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                told.unwrap_or(config.rate_limit_default_wait_ms)
                    .min(config.rate_limit_max_wait_ms)
            }
        };
        let exhausted = self.is_exhausted(action, config);
        let wait_ms = if exhausted {
            wait_ms.max(config.exhausted_retry_wait_ms)
        } else {
            wait_ms
        };
        RetryPlan {
            wait: capped(wait_ms),
            newly_exhausted: exhausted && !was_exhausted,
        }
    }

    pub(crate) fn success(&mut self, action: OwnAction) {
        self.streaks[action.index()] = Streak::default();
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    fn is_exhausted(&self, action: OwnAction, config: &OwnMembershipConfig) -> bool {
        let streak = self.streaks[action.index()];
        streak.network > config.network_retry_budget
            || streak.rate_limited > config.rate_limit_budget
    }

    /// The error to report if a budget is used up.
    pub(crate) fn exhausted_error(&self, config: &OwnMembershipConfig) -> Option<OwnError> {
        ALL_ACTIONS
            .into_iter()
            .find(|a| self.is_exhausted(*a, config))
            .map(|action| {
                let streak = self.streaks[action.index()];
                OwnError::RetriesExhausted {
                    action,
                    failures: streak.network.saturating_add(streak.rate_limited),
                }
            })
    }
}

const ALL_ACTIONS: [OwnAction; OwnAction::COUNT] = [
    OwnAction::ScheduleDelayedLeave,
    OwnAction::SendJoin,
    OwnAction::RefreshJoin,
    OwnAction::RestartDelayedLeave,
    OwnAction::SendDelayedLeave,
    OwnAction::CancelDelayedLeave,
    OwnAction::SendLeave,
];

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::RetryBook;
    use crate::own::{
        config::OwnMembershipConfig,
        request::{OwnAction, Transient},
    };

    #[test]
    fn budget_is_used_up_after_the_configured_failures_and_reset_by_success() {
        let config = OwnMembershipConfig::default();
        let mut book = RetryBook::default();
        for _ in 0..config.network_retry_budget {
            let plan = book.failure(OwnAction::RestartDelayedLeave, Transient::Network, &config);
            assert_eq!(
                plan.wait,
                Duration::from_millis(config.network_retry_wait_ms)
            );
            assert!(!plan.newly_exhausted);
        }
        let plan = book.failure(OwnAction::RestartDelayedLeave, Transient::Timeout, &config);
        assert!(plan.newly_exhausted);
        assert_eq!(
            plan.wait,
            Duration::from_millis(config.exhausted_retry_wait_ms)
        );
        assert!(book.exhausted_error(&config).is_some());
        book.success(OwnAction::RestartDelayedLeave);
        assert!(book.exhausted_error(&config).is_none());
    }

    #[test]
    fn rate_limit_wait_is_told_defaulted_and_capped() {
        let config = OwnMembershipConfig::default();
        let mut book = RetryBook::default();
        let told = book.failure(
            OwnAction::SendJoin,
            Transient::RateLimited(Some(Duration::from_millis(1_234))),
            &config,
        );
        assert_eq!(told.wait, Duration::from_millis(1_234));
        let default = book.failure(OwnAction::SendJoin, Transient::RateLimited(None), &config);
        assert_eq!(
            default.wait,
            Duration::from_millis(config.rate_limit_default_wait_ms)
        );
        let capped = book.failure(
            OwnAction::SendJoin,
            Transient::RateLimited(Some(Duration::from_secs(86_400))),
            &config,
        );
        assert_eq!(
            capped.wait,
            Duration::from_millis(config.rate_limit_max_wait_ms)
        );
    }
}
