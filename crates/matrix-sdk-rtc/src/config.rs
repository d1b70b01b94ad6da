//! Configuration of the client-wide driver and of each join.
use std::time::Duration;

use matrix_rtc_machine::ParkedLimits;
use matrix_rtc_membership::{CallIntent, OwnMembershipConfig, Transport};
use matrix_sticky_events::Limits;

/// Configuration of an [`RtcClient`](crate::RtcClient).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RtcConfig {
    /// The `conn_id` of our own sliding-sync side connection. Never reuse the app's.
    /// Default: `matrix-sdk-rtc`.
    pub side_sync_conn_id: String,
    /// Long-poll timeout of the side connection. Default: 30 s.
    pub side_sync_poll_timeout: Duration,
    /// Memory caps of the sticky map (per sender, and per room where the sender using the
    /// most is cut first).
    pub sticky_limits: Limits,
    /// Caps on the encrypted sticky events kept while their room key is missing (per sender,
    /// per room, in all; a flooding sender only ever loses its own).
    pub parked_limits: ParkedLimits,
    /// Capacity of each of the pump's two input queues (sync data; commands and request
    /// outcomes). A full sync queue makes the side connection and the app's sync handlers
    /// wait. Default: 1024.
    pub input_queue_capacity: usize,
    /// Timings of our own membership (delayed leave, heartbeat, refresh, retries); a join
    /// may override them with [`JoinOptions::timings`].
    pub own_membership: OwnMembershipConfig,
    /// While we are in a call in an encrypted room, how often the room is checked for
    /// devices that cannot decrypt our membership and delayed leave yet (they are re-sent
    /// for them). Checks also run after every `m.room.member` event and whenever the crypto
    /// store discovers devices, so this is only the fallback. Default: 10 s.
    pub device_check_interval: Duration,
    /// Whether our own calls (member ids and the delay ids of our pending delayed leaves) may
    /// be persisted in the client's state store **unencrypted** when no store passphrase was
    /// given. A delay id is a bearer secret: whoever reads it can cancel our dead-man switch
    /// or send our leave. With a passphrase (see `RtcClientBuilder::sqlite_store`) the record
    /// is always encrypted with it; without one, and with this `false`, nothing is persisted,
    /// so after a crash our old membership stays until its delayed leave fires (seconds) and
    /// the call cannot be offered for resuming. Default: `false`.
    pub persist_calls_unencrypted: bool,
}

impl Default for RtcConfig {
    fn default() -> Self {
        Self {
            side_sync_conn_id: "matrix-sdk-rtc".to_owned(),
            side_sync_poll_timeout: Duration::from_secs(30),
            sticky_limits: Limits::default(),
            parked_limits: ParkedLimits::default(),
            input_queue_capacity: 1024,
            own_membership: OwnMembershipConfig::default(),
            device_check_interval: Duration::from_secs(10),
            persist_calls_unencrypted: false,
        }
    }
}

/// How to join a call.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct JoinOptions {
    /// `m.call.intent` to announce (audio or video).
    pub call_intent: Option<CallIntent>,
    /// The transport we publish on. When `None`, the first LiveKit transport the homeserver
    /// advertises (`/rtc/transports`) is used, and joining fails if there is none.
    pub transport: Option<Transport>,
    /// Timings for this join; `None` uses the client's [`RtcConfig::own_membership`].
    pub timings: Option<OwnMembershipConfig>,
}

impl JoinOptions {
    /// Announce a call intent.
    #[must_use]
    pub fn with_call_intent(mut self, intent: CallIntent) -> Self {
        self.call_intent = Some(intent);
        self
    }

    /// Publish on `transport`.
    #[must_use]
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Use these timings for this join.
    #[must_use]
    pub fn with_timings(mut self, timings: OwnMembershipConfig) -> Self {
        self.timings = Some(timings);
        self
    }
}
