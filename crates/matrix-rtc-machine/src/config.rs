//! Configuration of an [`RtcMachine`](crate::RtcMachine).
use std::time::Duration;

use matrix_rtc_membership::OwnMembershipConfig;
use matrix_sticky_events::Limits;
use ruma_common::{OwnedDeviceId, OwnedUserId};

/// Caps on the encrypted sticky envelopes kept while their room key is missing.
///
/// Every envelope counts (waiting for its key, queued for a decryption attempt, or being
/// decrypted). When a new envelope would go over a cap, one envelope is dropped, chosen so
/// that a sender flooding undecryptable envelopes only ever drops its own:
///
/// 1. over [`per_sender`](Self::per_sender) (per room and sender): the sender's envelope that
///    expires first;
/// 2. over [`per_room`](Self::per_room): the first-expiring envelope of the sender holding
///    the most in that room;
/// 3. over [`total`](Self::total): the same in the room holding the most.
///
/// When the new envelope itself would be the one chosen, it is the one dropped. A dropped
/// envelope comes back with a fresh side connection, or expires. Each drop is reported as
/// [`Diagnostic::Capped`](crate::Diagnostic::Capped) (at the 1st, 10th, 100th, … drop per
/// sender and cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParkedLimits {
    /// Envelopes per (room, sender). Default 32 (a member has one membership per device,
    /// plus a few superseded refreshes).
    pub per_sender: usize,
    /// Envelopes per room. Default 4096.
    pub per_room: usize,
    /// Envelopes in all. Default 16384.
    pub total: usize,
}

impl ParkedLimits {
    /// The defaults: 32 per sender, 4096 per room, 16384 in all.
    pub const DEFAULT: Self = Self {
        per_sender: 32,
        per_room: 4096,
        total: 16_384,
    };

    /// Caps of your choice (each at least 1).
    pub fn new(per_sender: usize, per_room: usize, total: usize) -> Self {
        Self {
            per_sender: per_sender.max(1),
            per_room: per_room.max(1),
            total: total.max(1),
        }
    }
}

impl Default for ParkedLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Configuration of an [`RtcMachine`](crate::RtcMachine): who we are, and every bound and
/// timing it applies.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MachineConfig {
    /// Our user.
    pub user_id: OwnedUserId,
    /// Our device.
    pub device_id: OwnedDeviceId,
    /// Prefix of every HTTP transaction ID we use: unique per run of the app (the pump draws
    /// it at random), so that a restarted app never reuses a transaction ID of an earlier
    /// run (the server would answer with the old event).
    pub txn_prefix: String,
    /// Caps of the sticky map.
    pub sticky_limits: Limits,
    /// Default timings of our own memberships (a join may bring its own).
    pub own_membership: OwnMembershipConfig,
    /// Caps of the parked encrypted envelopes.
    pub parked_limits: ParkedLimits,
    /// How often parked envelopes are retried without news of a key. Default 30 s.
    pub parked_retry_interval: Duration,
    /// Decryption attempts in flight at most. Default 8.
    pub max_decrypts_in_flight: usize,
    /// Member queries in flight at most. Default 8.
    pub max_member_queries_in_flight: usize,
    /// Wait before a failed member query is asked again the first time. Each further failure
    /// of the same sender's query doubles the wait, up to
    /// [`member_query_retry_max`](Self::member_query_retry_max); an answer resets it. Default
    /// 5 s.
    pub member_query_retry: Duration,
    /// The longest wait before a failed member query is asked again. Default 60 s.
    pub member_query_retry_max: Duration,
    /// The longest changes are held back while the side connection catches up: after it,
    /// they are published even if the connection is still paging (or stuck). Default 3 s.
    pub hold_limit: Duration,
    /// Whether the pump can encrypt our membership (and so check rooms for new devices).
    pub can_encrypt: bool,
    /// While we are in a call in an encrypted room, how often the room is checked for new
    /// devices (also after every `m.room.member` event and when the crypto store discovers
    /// devices). Default 10 s.
    pub device_check_interval: Duration,
}

impl MachineConfig {
    /// The defaults for our `user_id` and `device_id`, with HTTP transaction IDs starting with
    /// `txn_prefix` (draw it at random for every run).
    pub fn new(
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
        txn_prefix: impl Into<String>,
    ) -> Self {
        Self {
            user_id,
            device_id,
            txn_prefix: txn_prefix.into(),
            sticky_limits: Limits::default(),
            own_membership: OwnMembershipConfig::default(),
            parked_limits: ParkedLimits::default(),
            parked_retry_interval: Duration::from_secs(30),
            max_decrypts_in_flight: 8,
            max_member_queries_in_flight: 8,
            member_query_retry: Duration::from_secs(5),
            member_query_retry_max: Duration::from_secs(60),
            hold_limit: Duration::from_secs(3),
            can_encrypt: false,
            device_check_interval: Duration::from_secs(10),
        }
    }
}
