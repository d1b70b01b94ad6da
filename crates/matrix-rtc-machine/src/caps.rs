//! Counting what the caps drop, reported sparsely (at the 1st, 10th, 100th, … drop per room,
//! sender and cap), so that a flood costs a handful of diagnostics.
use std::collections::HashMap;

use ruma_common::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{Cap, Diagnostic};

/// Most (room, sender, cap) counters kept; beyond it they start again from zero.
const MAX_COUNTERS: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct CapCounters {
    counts: HashMap<(OwnedRoomId, OwnedUserId, Cap), u64>,
}

impl CapCounters {
    /// Counts one drop; returns the diagnostic when this count is to be reported.
    pub(crate) fn count(
        &mut self,
        room_id: &RoomId,
        sender: &UserId,
        cap: Cap,
    ) -> Option<Diagnostic> {
        if self.counts.len() >= MAX_COUNTERS {
            self.counts.clear();
        }
        let count = self
            .counts
            .entry((room_id.to_owned(), sender.to_owned(), cap))
            .or_default();
        *count += 1;
        let dropped = *count;
        is_power_of_ten(dropped).then(|| Diagnostic::Capped {
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            cap,
            dropped,
        })
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

#[cfg(test)]
mod tests {
    use super::is_power_of_ten;

    #[test]
    fn powers_of_ten() {
        let reported: Vec<u64> = (1..=1000).filter(|n| is_power_of_ten(*n)).collect();
        assert_eq!(reported, [1, 10, 100, 1000]);
    }
}
