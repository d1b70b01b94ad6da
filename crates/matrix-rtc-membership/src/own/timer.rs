//! The closed table of timers: one slot per kind of deadline.

use std::time::Instant;

/// Every kind of deadline the machine can wait for. [`OwnMembership::next_deadline`] is the
/// earliest filled slot.
///
/// [`OwnMembership::next_deadline`]: crate::OwnMembership::next_deadline
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The next restart of our armed delayed leave is due (heartbeat, or retry after a failure).
    Restart,
    /// While joined: the earliest instant the server could fire our delayed leave (the status
    /// turns to "probably left" unless a restart succeeded). While leaving: the latest instant it
    /// can fire, after which the leave is out.
    ExpectedFire,
    /// The local timeout of the request in flight on the delayed-leave lane.
    SwitchRequestTimeout,
    /// The retry of a failed schedule or cancel is due.
    SwitchRetry,
    /// The refresh of our join is due.
    Refresh,
    /// While joined: our join may have expired (re-join). While leaving: it has surely expired.
    JoinExpiry,
    /// The local timeout of the request in flight on the member-event lane.
    MemberRequestTimeout,
    /// The retry of a failed join, refresh or leave is due.
    MemberRetry,
    /// A coalesced re-send for new devices is due (the end of the rate-limit interval).
    NewDevices,
}

impl Timer {
    const COUNT: usize = 9;
    const ALL: [Self; Self::COUNT] = [
        Self::Restart,
        Self::ExpectedFire,
        Self::SwitchRequestTimeout,
        Self::SwitchRetry,
        Self::Refresh,
        Self::JoinExpiry,
        Self::MemberRequestTimeout,
        Self::MemberRetry,
        Self::NewDevices,
    ];

    fn index(self) -> usize {
        match self {
            Self::Restart => 0,
            Self::ExpectedFire => 1,
            Self::SwitchRequestTimeout => 2,
            Self::SwitchRetry => 3,
            Self::Refresh => 4,
            Self::JoinExpiry => 5,
            Self::MemberRequestTimeout => 6,
            Self::MemberRetry => 7,
            Self::NewDevices => 8,
        }
    }
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    /// Arms `timer` at `at`, or keeps the earlier deadline if it is armed already.
    pub(crate) fn arm(&mut self, timer: Timer, at: Instant) {
        let slot = &mut self.slots[timer.index()];
        *slot = Some(slot.map_or(at, |old| old.min(at)));
    }

    /// The deadline of `timer`.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer.index()]
    }

    /// Empties every slot whose deadline is not after `now` and which `keep` rejects.
    pub(crate) fn retain_future(&mut self, now: Instant, keep: impl Fn(Timer) -> bool) {
        for timer in Timer::ALL {
            let slot = &mut self.slots[timer.index()];
            if slot.is_some_and(|at| at <= now) && !keep(timer) {
                *slot = None;
            }
        }
    }

    /// The timers due at `now`.
    pub(crate) fn expired(&self, now: Instant) -> impl Iterator<Item = Timer> + '_ {
        Timer::ALL
            .into_iter()
            .filter(move |t| self.get(*t).is_some_and(|at| at <= now))
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Timer, TimerTable};

    #[test]
    fn next_is_the_earliest_slot_and_arm_keeps_the_earlier_deadline() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.arm(Timer::Refresh, t0 + Duration::from_secs(5));
        table.arm(Timer::Restart, t0 + Duration::from_secs(3));
        table.arm(Timer::Restart, t0 + Duration::from_secs(4));
        assert_eq!(table.get(Timer::Restart), Some(t0 + Duration::from_secs(3)));
        assert_eq!(table.next(), Some(t0 + Duration::from_secs(3)));
        let due: Vec<_> = table.expired(t0 + Duration::from_secs(3)).collect();
        assert_eq!(due, vec![Timer::Restart]);
    }

    #[test]
    fn retain_future_drops_past_slots_unless_kept() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.arm(Timer::Restart, t0);
        table.arm(Timer::SwitchRequestTimeout, t0);
        table.arm(Timer::Refresh, t0 + Duration::from_secs(1));
        table.retain_future(t0, |t| t == Timer::SwitchRequestTimeout);
        assert_eq!(table.get(Timer::Restart), None);
        assert_eq!(table.get(Timer::SwitchRequestTimeout), Some(t0));
        assert_eq!(table.get(Timer::Refresh), Some(t0 + Duration::from_secs(1)));
    }
}
