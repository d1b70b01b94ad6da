//! The machine's one timer table: a closed set of deadlines, one slot per kind. The pump
//! sleeps until the earliest ([`RtcMachine::next_deadline`](crate::RtcMachine::next_deadline)).
use std::time::Instant;

/// Every kind of deadline the machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The earliest expiry of a sticky candidate (the sticky map's deadline).
    StickyExpiry,
    /// The earliest `created + expires` of a legacy membership (the model's deadline).
    LegacyExpiry,
    /// The earliest deadline of our own-membership machines (heartbeats, refreshes, retries)
    /// and of the retries ending memberships of an earlier run.
    OwnMembership,
    /// Parked encrypted envelopes are retried now, even without news of a key.
    ParkedRetry,
    /// The earliest expiry of a parked envelope.
    ParkedExpiry,
    /// Held-back changes are released now, caught up or not.
    HoldRelease,
    /// Rooms where we are in a call are checked for new devices now.
    DeviceCheck,
    /// A failed member query is asked again now.
    MemberQueryRetry,
}

impl Timer {
    const ALL: [Self; 8] = [
        Self::StickyExpiry,
        Self::LegacyExpiry,
        Self::OwnMembership,
        Self::ParkedRetry,
        Self::ParkedExpiry,
        Self::HoldRelease,
        Self::DeviceCheck,
        Self::MemberQueryRetry,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One optional instant per [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.slots[timer.index()] = at;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer.index()]
    }

    /// Whether `timer` is set and due at `now`.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }
}
