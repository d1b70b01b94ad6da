//! Records passed in: how to build a client, which call, how to join it; and what the server
//! offers.
use matrix_rtc_membership::wire::ROOM_CALL_SLOT;
use matrix_sdk::ruma::RoomId;
use matrix_sdk_rtc as rtc;

use crate::RtcFfiError;

/// How to build an [`RtcClient`](crate::RtcClient): a session restored from the app's own
/// login, and where to keep the client's stores.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClientConfig {
    /// The homeserver's base URL, e.g. `https://matrix.example.org`.
    pub homeserver_url: String,
    /// Our user, e.g. `@alice:example.org`.
    pub user_id: String,
    /// Our device.
    pub device_id: String,
    /// The device's access token.
    pub access_token: String,
    /// A folder for the client's SQLite stores (state and crypto). `None` needs
    /// [`ephemeral_device`](Self::ephemeral_device).
    #[uniffi(default)]
    pub store_path: Option<String>,
    /// The passphrase encrypting the stores, if any. It also encrypts our persisted calls
    /// (their delay ids are bearer secrets); without it they are not persisted at all unless
    /// [`persist_calls_unencrypted`](Self::persist_calls_unencrypted) is set.
    #[uniffi(default)]
    pub store_passphrase: Option<String>,
    /// Persist our calls in clear when there is no passphrase (see
    /// `RtcConfig::persist_calls_unencrypted`). Default: `false`.
    #[uniffi(default)]
    pub persist_calls_unencrypted: bool,
    /// Keep every store in memory when there is no `store_path`: this device's encryption
    /// keys then live only as long as the process. Only for a device made for this process;
    /// never for the device of an app's session that has its own store. Default: `false`
    /// (building without a `store_path` fails).
    #[uniffi(default)]
    pub ephemeral_device: bool,
}

/// How to join a call. Every field is optional: `None` keeps the library's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct JoinConfig {
    /// Delay of our delayed leave (the dead-man switch), in ms: how long after a crash the
    /// server removes us. Default: 10 000.
    #[uniffi(default)]
    pub delay_ms: Option<u64>,
    /// How often the delayed leave is restarted (the heartbeat), in ms. Keep it at most a
    /// third of the delay. Default: 3 000.
    #[uniffi(default)]
    pub restart_interval_ms: Option<u64>,
    /// Sticky duration of our membership events, in ms (at most an hour). Default: 3 600 000.
    #[uniffi(default)]
    pub sticky_duration_ms: Option<u64>,
    /// The LiveKit service URL we publish on. `None`: the first one the homeserver advertises.
    #[uniffi(default)]
    pub transport_url: Option<String>,
    /// The kind of call we announce.
    #[uniffi(default)]
    pub call_intent: Option<crate::CallIntent>,
}

impl From<JoinConfig> for rtc::JoinOptions {
    fn from(config: JoinConfig) -> Self {
        let defaults = rtc::OwnMembershipConfig::default();
        let timings = rtc::OwnMembershipConfig {
            delay_ms: config.delay_ms.unwrap_or(defaults.delay_ms),
            restart_interval_ms: config
                .restart_interval_ms
                .unwrap_or(defaults.restart_interval_ms),
            sticky_duration_ms: config
                .sticky_duration_ms
                .unwrap_or(defaults.sticky_duration_ms),
            ..defaults
        };
        let mut options = Self::default().with_timings(timings);
        if let Some(url) = config.transport_url {
            options = options.with_transport(rtc::Transport::livekit(url));
        }
        if let Some(intent) = config.call_intent {
            options = options.with_call_intent(intent.into());
        }
        options
    }
}

/// What the homeserver offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct ServerFeatures {
    /// Sticky events (MSC4354): needed to join.
    pub sticky_events: bool,
    /// Simplified sliding sync: the fast path for sticky events.
    pub sliding_sync: bool,
    /// Delayed events (MSC4140): the dead-man switch.
    pub delayed_events: bool,
    /// The RTC transports endpoint (MSC4143).
    pub rtc_transports: bool,
    /// The longest delay the server accepts, in ms, when it says.
    pub max_delay_ms: Option<u64>,
    /// How many delayed events a user may have scheduled, when the server says.
    pub max_scheduled: Option<u64>,
}

impl From<rtc::ServerFeatures> for ServerFeatures {
    fn from(features: rtc::ServerFeatures) -> Self {
        Self {
            sticky_events: features.sticky_events,
            sliding_sync: features.sliding_sync,
            delayed_events: features.delayed_events,
            rtc_transports: features.rtc_transports,
            max_delay_ms: features.max_delay_ms,
            max_scheduled: features.max_scheduled,
        }
    }
}

/// A call: one slot of one room. [`room_call`] gives the room call (`m.call#ROOM`) that
/// Element Call uses. Every operation checks it: a malformed room ID or a slot that is not
/// `{application}#{name}` fails with [`RtcFfiError::InvalidArgument`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, uniffi::Record)]
pub struct CallId {
    /// The room.
    pub room_id: String,
    /// The slot (`{application}#{name}`).
    pub slot_id: String,
}

impl TryFrom<&CallId> for rtc::CallId {
    type Error = RtcFfiError;

    fn try_from(call: &CallId) -> Result<Self, RtcFfiError> {
        let room_id = RoomId::parse(&call.room_id).map_err(|error| {
            RtcFfiError::InvalidArgument(format!("invalid room id {:?}: {error}", call.room_id))
        })?;
        Ok(Self::new(&room_id, &call.slot_id).map_err(rtc::Error::from)?)
    }
}

impl From<rtc::CallId> for CallId {
    fn from(call: rtc::CallId) -> Self {
        Self::from(&call)
    }
}

impl From<&rtc::CallId> for CallId {
    fn from(call: &rtc::CallId) -> Self {
        Self {
            room_id: call.room_id().to_string(),
            slot_id: call.slot_id().to_owned(),
        }
    }
}

/// The room call of `room_id` (slot `m.call#ROOM`), the one Element Call uses. The room ID is
/// checked where the call is used.
#[uniffi::export]
pub fn room_call(room_id: String) -> CallId {
    CallId {
        room_id,
        slot_id: ROOM_CALL_SLOT.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use matrix_sdk_rtc as rtc;

    use super::{CallId, JoinConfig, room_call};
    use crate::{CallIntent, RtcFfiError};

    #[test]
    fn call_ids_convert_both_ways_and_invalid_ones_are_typed_errors() {
        let call = room_call("!room:example.org".to_owned());
        let inner = rtc::CallId::try_from(&call).expect("a valid call id");
        let room_id = matrix_sdk::ruma::room_id!("!room:example.org");
        assert_eq!(inner, rtc::CallId::room_call(room_id));
        assert_eq!(CallId::from(inner), call);

        let bad_slot = CallId {
            slot_id: "no-separator".to_owned(),
            ..call.clone()
        };
        let error = rtc::CallId::try_from(&bad_slot).expect_err("an invalid slot");
        assert!(
            matches!(&error, RtcFfiError::InvalidArgument(message) if message.contains("no-separator")),
            "{error:?}"
        );
        let bad_room = CallId {
            room_id: "not-a-room".to_owned(),
            ..call
        };
        let error = rtc::CallId::try_from(&bad_room).expect_err("an invalid room id");
        assert!(
            matches!(&error, RtcFfiError::InvalidArgument(message) if message.contains("not-a-room")),
            "{error:?}"
        );
    }

    #[test]
    fn an_empty_join_config_keeps_the_defaults() {
        let options = rtc::JoinOptions::from(JoinConfig::default());
        assert_eq!(options.timings, Some(rtc::OwnMembershipConfig::default()));
        assert_eq!(options.transport, None);
        assert_eq!(options.call_intent, None);
    }

    #[test]
    fn every_join_config_field_reaches_the_options() {
        let options = rtc::JoinOptions::from(JoinConfig {
            delay_ms: Some(18_000),
            restart_interval_ms: Some(6_000),
            sticky_duration_ms: Some(600_000),
            transport_url: Some("https://lk.example.org".to_owned()),
            call_intent: Some(CallIntent::Video),
        });
        let expected = rtc::OwnMembershipConfig {
            delay_ms: 18_000,
            restart_interval_ms: 6_000,
            sticky_duration_ms: 600_000,
            ..rtc::OwnMembershipConfig::default()
        };
        assert_eq!(options.timings, Some(expected));
        assert_eq!(
            options.transport,
            Some(rtc::Transport::livekit("https://lk.example.org"))
        );
        assert_eq!(options.call_intent, Some(rtc::CallIntent::Video));
    }
}
