//! What the homeserver supports, from `/versions` flags and the delayed-events capability
//! (docs/protocol.md §8).
//!
//! Servers without a feature silently ignore its query parameters, so check before the first
//! send. Flags count only when they are `true` (Synapse reports `false` for features it has
//! switched off).

use std::fmt;

use matrix_sdk::{Client, config::RequestConfig};

use crate::requests::{HomeserverApi, RequestContext, RequestError, map_http_error, wire};

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
    /// Delayed events (`org.matrix.msc4140` or `org.matrix.msc4140.stable`): the dead-man
    /// switch.
    pub delayed_events: bool,
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
    /// The `/versions` flag that would enable it.
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
                wire::FLAG_DELAYED_EVENTS | wire::FLAG_DELAYED_EVENTS_STABLE => {
                    features.delayed_events = true;
                }
                wire::FLAG_RTC_TRANSPORTS => features.rtc_transports = true,
                _ => {}
            }
        }
        features
    }

    async fn with_limits(mut self, client: &Client) -> Result<Self, RequestError> {
        if self.delayed_events {
            let limits = HomeserverApi::new(client.clone())
                .delayed_events_limits()
                .await?;
            self.max_delay_ms = limits.max_delay_ms;
            self.max_scheduled = limits.max_scheduled;
        }
        Ok(self)
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
