//! Time inputs: the crate never reads a clock.
use std::time::{Duration, Instant};

use crate::{Rejection, wire::MAX_DURATION_MS};

/// When (and at what wall-clock time) an HTTP response carrying events arrived.
///
/// Take both readings once, when the response arrives (not when it is processed), and use the
/// same `Receipt` for every event of that response: the server's remaining-lifetime field is
/// measured from that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Monotonic instant at which the response arrived.
    pub instant: Instant,
    /// Local wall-clock time at that instant, in milliseconds since the Unix epoch.
    pub wall_ms: u64,
}

impl Receipt {
    /// A receipt from a monotonic instant and the wall-clock time (ms since the Unix epoch)
    /// read at the same moment.
    pub const fn new(instant: Instant, wall_ms: u64) -> Self {
        Self { instant, wall_ms }
    }
}

/// The local deadline of a sticky event, as a monotonic instant and as wall-clock ms.
///
/// With a remaining lifetime `ttl_ms` from the server (already clamped to `1..=1 h`), the
/// deadline is `receipt + ttl`. Without one, the fallback of `docs/protocol.md` §2.2:
/// `expires_wall = min(receipt.wall_ms, origin_server_ts) + duration_ms`, so that a timestamp
/// in the future cannot stretch stickiness.
pub(crate) fn deadline(
    receipt: Receipt,
    origin_server_ts: u64,
    duration_ms: u64,
    ttl_ms: Option<u64>,
) -> Result<(Instant, u64), Rejection> {
    let remaining_ms = match ttl_ms {
        Some(ttl) => ttl.min(MAX_DURATION_MS),
        None => {
            let expires_wall = receipt
                .wall_ms
                .min(origin_server_ts)
                .saturating_add(duration_ms);
            expires_wall.saturating_sub(receipt.wall_ms)
        }
    };
    if remaining_ms == 0 {
        return Err(Rejection::AlreadyExpired);
    }
    // At most one hour past a real instant: overflow is impossible on real platforms; were it
    // to happen, the event is treated as no longer sticky rather than panicking.
    let expires_at = receipt
        .instant
        .checked_add(Duration::from_millis(remaining_ms))
        .ok_or(Rejection::AlreadyExpired)?;
    Ok((expires_at, receipt.wall_ms.saturating_add(remaining_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_measured_from_the_receipt() {
        let receipt = Receipt::new(Instant::now(), 1_000_000);
        let (at, wall) = deadline(receipt, 0, 3_600_000, Some(5_000)).expect("live");
        assert_eq!(at, receipt.instant + Duration::from_millis(5_000));
        assert_eq!(wall, 1_005_000);
    }

    #[test]
    fn fallback_uses_the_earlier_of_receipt_and_origin_server_ts() {
        let receipt = Receipt::new(Instant::now(), 10_000_000);
        // Sent 1000 ms before receipt.
        let (at, wall) = deadline(receipt, 9_999_000, 3_600_000, None).expect("live");
        assert_eq!(wall, 9_999_000 + 3_600_000);
        assert_eq!(at, receipt.instant + Duration::from_millis(3_599_000));
        // A future timestamp does not stretch stickiness.
        let (_, wall) = deadline(receipt, 99_000_000, 3_600_000, None).expect("live");
        assert_eq!(wall, 10_000_000 + 3_600_000);
        // Long past: expired.
        assert_eq!(
            deadline(receipt, 1_000, 3_600_000, None),
            Err(Rejection::AlreadyExpired)
        );
        // Exactly at the deadline: expired.
        assert_eq!(
            deadline(receipt, 6_400_000, 3_600_000, None),
            Err(Rejection::AlreadyExpired)
        );
    }
}
