//! What the homeserver supports, from `/versions` flags and the delayed-events capability
//! (docs/protocol.md §8).
//!
//! Servers without a feature silently ignore its query parameters, so check before the first
//! send. Flags count only when they are `true` (Synapse reports `false` for features it has
//! switched off).
//!
//! Delayed events count when `/versions` advertises `org.matrix.msc4140` or
//! `org.matrix.msc4140.stable` **and** the capability (read under `m.delayed_events` and
//! `org.matrix.msc4140.delayed_events`) does not say they are off: a `max_delay_ms` or a
//! `max_scheduled` of 0 means disabled (Synapse 1.163.2 always serves the capability, with
//! `max_delay_ms: 0` when the feature is off). A missing capability says nothing: servers may
//! leave it out although the feature works. No spec version is known to contain delayed
//! events yet, so none is read; the stable scheduling endpoint is tried only where
//! `org.matrix.msc4140.stable` is advertised (the management forms are probed on any server,
//! docs/protocol.md §6.9).

use std::fmt;

use matrix_rtc_membership::ServerCapabilities;
use matrix_sdk::{Client, config::RequestConfig};

use crate::requests::{
    Advertised, DelayedEventsLimits, HomeserverApi, RequestContext, RequestError, map_http_error,
    wire,
};

/// The MatrixRTC-related features of a homeserver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerFeatures {
    /// Sticky events (`org.matrix.msc4354`): the sticky send parameter, the v3 `/sync` section
    /// and the sliding sync extension.
    pub sticky_events: bool,
    /// Simplified sliding sync (`org.matrix.simplified_msc3575`), needed by the side
    /// connection.
    pub sliding_sync: bool,
    /// Delayed events: the dead-man switch. `/versions` advertises `org.matrix.msc4140` or
    /// `org.matrix.msc4140.stable`, and the delayed-events capability does not turn them off
    /// (`max_delay_ms` or `max_scheduled` of 0). Without them a join works with no dead-man
    /// switch and a short sticky lifetime.
    pub delayed_events: bool,
    /// The merged MSC4140 (`org.matrix.msc4140.stable`): the stable dedicated scheduling
    /// endpoint is tried first. Only meaningful with
    /// [`delayed_events`](Self::delayed_events).
    pub delayed_events_stable: bool,
    /// The RTC transports endpoint (`org.matrix.msc4143`).
    pub rtc_transports: bool,
    /// Longest delay the server accepts, in milliseconds (`None`: no limit advertised).
    pub max_delay_ms: Option<u64>,
    /// Most delayed events one user may have scheduled (`None`: no limit advertised).
    pub max_scheduled: Option<u64>,
}

/// A feature the homeserver does not advertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MissingFeature {
    /// Sticky events (MSC4354).
    StickyEvents,
    /// Simplified sliding sync.
    SlidingSync,
    /// Delayed events (MSC4140).
    DelayedEvents,
    /// The RTC transports endpoint (MSC4143).
    RtcTransports,
}

impl MissingFeature {
    /// The `/versions` flag that would enable it (for delayed events the unstable one;
    /// `org.matrix.msc4140.stable` counts too, and either needs a delayed-events capability
    /// that does not say 0).
    pub fn flag(self) -> &'static str {
        match self {
            Self::StickyEvents => wire::FLAG_STICKY_EVENTS,
            Self::SlidingSync => wire::FLAG_SLIDING_SYNC,
            Self::DelayedEvents => wire::FLAG_DELAYED_EVENTS,
            Self::RtcTransports => wire::FLAG_RTC_TRANSPORTS,
        }
    }
}

impl fmt::Display for MissingFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::StickyEvents => "sticky events (MSC4354)",
            Self::SlidingSync => "simplified sliding sync",
            Self::DelayedEvents => "delayed events (MSC4140)",
            Self::RtcTransports => "RTC transports (MSC4143)",
        };
        write!(f, "{name}, flag `{}`", self.flag())
    }
}

impl ServerFeatures {
    /// Reads the features through matrix-sdk's cached `/versions` answer (the SDK fetches it
    /// when nothing is cached and refreshes it in the background when it is stale), plus the
    /// delayed-events limits when delayed events are supported.
    #[cfg(test)] // The pump always asks afresh; the tests use the cache too.
    pub(crate) async fn fetch(client: &Client) -> Result<Self, RequestError> {
        let flags = client
            .unstable_features()
            .await
            .map_err(|error| map_http_error(&error, RequestContext::Plain))?;
        let features = Self::from_enabled_flags(flags.iter().map(|flag| flag.as_str()));
        features.with_limits(client).await
    }

    /// Like [`ServerFeatures::fetch`], but asks the server for `/versions` again instead of
    /// using the cache (for instance after a reconnection).
    pub(crate) async fn fetch_fresh(client: &Client) -> Result<Self, RequestError> {
        let versions = client
            .fetch_server_versions(Some(RequestConfig::new().disable_retry()))
            .await
            .map_err(|error| map_http_error(&error, RequestContext::Plain))?;
        let features = Self::from_enabled_flags(
            versions
                .unstable_features
                .iter()
                .filter(|(_, on)| **on)
                .map(|(flag, _)| flag.as_str()),
        );
        features.with_limits(client).await
    }

    /// The features named by the flags that are `true`.
    pub(crate) fn from_enabled_flags<'a>(flags: impl IntoIterator<Item = &'a str>) -> Self {
        let mut features = Self::default();
        for flag in flags {
            match flag {
                wire::FLAG_STICKY_EVENTS => features.sticky_events = true,
                wire::FLAG_SLIDING_SYNC => features.sliding_sync = true,
                wire::FLAG_DELAYED_EVENTS => features.delayed_events = true,
                wire::FLAG_DELAYED_EVENTS_STABLE => {
                    features.delayed_events = true;
                    features.delayed_events_stable = true;
                }
                wire::FLAG_RTC_TRANSPORTS => features.rtc_transports = true,
                _ => {}
            }
        }
        features
    }

    async fn with_limits(self, client: &Client) -> Result<Self, RequestError> {
        if !self.delayed_events {
            return Ok(self);
        }
        let limits = HomeserverApi::new(client.clone())
            .delayed_events_limits()
            .await?;
        Ok(self.with_delayed_events_limits(limits))
    }

    /// Applies the delayed-events capability: its limits, and a limit of 0 turns the feature
    /// off.
    pub(crate) fn with_delayed_events_limits(mut self, limits: DelayedEventsLimits) -> Self {
        if limits.disabled() {
            tracing::info!(
                "the server advertises delayed events but its capability turns them off"
            );
            self.delayed_events = false;
            self.delayed_events_stable = false;
            self.max_delay_ms = None;
            self.max_scheduled = None;
        } else {
            self.max_delay_ms = limits.max_delay_ms;
            self.max_scheduled = limits.max_scheduled;
        }
        self
    }

    /// Which delayed-event forms the HTTP layer may use.
    pub(crate) fn delayed_events_advertised(&self) -> Advertised {
        match (self.delayed_events, self.delayed_events_stable) {
            (false, _) => Advertised::None,
            (true, false) => Advertised::Unstable,
            (true, true) => Advertised::Stable,
        }
    }

    /// What the own-membership machine needs to know for a join.
    pub(crate) fn capabilities(&self) -> ServerCapabilities {
        ServerCapabilities {
            delayed_events: self.delayed_events,
            max_delay_ms: self.max_delay_ms,
            sticky_events: self.sticky_events,
        }
    }

    /// What is missing, in a fixed order (sticky events, sliding sync, delayed events, RTC
    /// transports); empty when everything is there.
    pub fn missing(&self) -> Vec<MissingFeature> {
        [
            (self.sticky_events, MissingFeature::StickyEvents),
            (self.sliding_sync, MissingFeature::SlidingSync),
            (self.delayed_events, MissingFeature::DelayedEvents),
            (self.rtc_transports, MissingFeature::RtcTransports),
        ]
        .into_iter()
        .filter_map(|(present, feature)| (!present).then_some(feature))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{MissingFeature, ServerFeatures};

    #[test]
    fn flags_map_to_features() {
        let all = ServerFeatures::from_enabled_flags([
            "org.matrix.msc4354",
            "org.matrix.simplified_msc3575",
            "org.matrix.msc4140",
            "org.matrix.msc4143",
            "org.matrix.other",
        ]);
        assert!(all.sticky_events && all.sliding_sync && all.delayed_events && all.rtc_transports);
        assert!(all.missing().is_empty());
    }

    #[test]
    fn stable_delayed_events_flag() {
        let features = ServerFeatures::from_enabled_flags(["org.matrix.msc4140.stable"]);
        assert!(features.delayed_events);
        assert_eq!(
            features.missing(),
            vec![
                MissingFeature::StickyEvents,
                MissingFeature::SlidingSync,
                MissingFeature::RtcTransports
            ]
        );
    }

    #[test]
    fn stable_flag_enables_the_merged_forms() {
        use crate::requests::Advertised;
        let unstable = ServerFeatures::from_enabled_flags(["org.matrix.msc4140"]);
        assert!(unstable.delayed_events && !unstable.delayed_events_stable);
        assert_eq!(unstable.delayed_events_advertised(), Advertised::Unstable);
        let stable = ServerFeatures::from_enabled_flags(["org.matrix.msc4140.stable"]);
        assert!(stable.delayed_events_stable);
        assert_eq!(stable.delayed_events_advertised(), Advertised::Stable);
        assert_eq!(
            ServerFeatures::default().delayed_events_advertised(),
            Advertised::None
        );
    }

    #[test]
    fn a_zero_limit_in_the_capability_turns_delayed_events_off() {
        use crate::requests::{Advertised, DelayedEventsLimits};
        let flags = ["org.matrix.msc4354", "org.matrix.msc4140"];
        let limits = |max_delay_ms, max_scheduled| DelayedEventsLimits {
            advertised: true,
            max_delay_ms,
            max_scheduled,
        };
        // Synapse 1.163.2 switched off: the capability is there with `max_delay_ms: 0`.
        for off in [limits(Some(0), Some(100)), limits(None, Some(0))] {
            let features =
                ServerFeatures::from_enabled_flags(flags).with_delayed_events_limits(off);
            assert!(!features.delayed_events, "{off:?}");
            assert_eq!(features.delayed_events_advertised(), Advertised::None);
            assert!(features.missing().contains(&MissingFeature::DelayedEvents));
            // What the own-membership machine is given for a join.
            let caps = features.capabilities();
            assert!(!caps.delayed_events && caps.sticky_events);
            assert_eq!(caps.max_delay_ms, None);
        }
        let on = ServerFeatures::from_enabled_flags(flags)
            .with_delayed_events_limits(limits(Some(86_400_000), Some(1000)));
        let caps = on.capabilities();
        assert!(caps.delayed_events);
        assert_eq!(caps.max_delay_ms, Some(86_400_000));
        // No capability at all: limits unknown, the feature still counts.
        let silent = ServerFeatures::from_enabled_flags(flags)
            .with_delayed_events_limits(Default::default());
        assert!(silent.capabilities().delayed_events);
    }

    #[test]
    fn prefixes_do_not_count() {
        let features =
            ServerFeatures::from_enabled_flags(["org.matrix.msc4354.extra", "org.matrix.msc414"]);
        assert_eq!(features, ServerFeatures::default());
    }

    #[test]
    fn missing_descriptions_name_the_flag() {
        assert_eq!(
            MissingFeature::StickyEvents.to_string(),
            "sticky events (MSC4354), flag `org.matrix.msc4354`"
        );
        assert_eq!(MissingFeature::DelayedEvents.flag(), "org.matrix.msc4140");
    }
}
