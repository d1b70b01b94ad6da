//! Transports (foci): what a member publishes on, and which one to use.
use std::{borrow::Cow, fmt};

use serde_json::value::RawValue;

use crate::{
    field,
    wire::{self, FastTransportObject, TransportObject},
};

/// The most transports kept per membership; more are dropped (bounded memory per member).
pub(crate) const MAX_TRANSPORTS: usize = 8;

/// A media transport (an SFU, called a "focus" in the legacy format).
///
/// Unknown transport types are kept, so that they can be shown and re-published, but are
/// never selected (`docs/protocol.md` §5.5).
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A LiveKit SFU, reached through its JWT service.
    LiveKit {
        /// `livekit_service_url`: where to ask for a token.
        service_url: String,
        /// `livekit_alias` (legacy format only): the LiveKit room name.
        alias: Option<String>,
    },
    /// A transport of another type, or a LiveKit entry without a service URL.
    Unknown {
        /// Its `type`.
        transport_type: String,
        /// The object as received, as compact JSON text.
        json: String,
    },
}

impl Transport {
    /// A LiveKit transport with the given service URL.
    pub fn livekit(service_url: impl Into<String>) -> Self {
        Self::LiveKit {
            service_url: service_url.into(),
            alias: None,
        }
    }

    /// The transport's `type`.
    pub fn transport_type(&self) -> &str {
        match self {
            Self::LiveKit { .. } => wire::TRANSPORT_LIVEKIT,
            Self::Unknown { transport_type, .. } => transport_type,
        }
    }

    /// Whether this transport can be selected (a LiveKit SFU with a service URL).
    pub fn is_supported(&self) -> bool {
        matches!(self, Self::LiveKit { .. })
    }

    /// The transport as the JSON object that goes into member content.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::LiveKit { service_url, alias } => serde_json::to_value(wire::LiveKitOut {
                transport_type: wire::TRANSPORT_LIVEKIT,
                livekit_service_url: service_url,
                livekit_alias: alias.as_deref(),
            })
            .unwrap_or(serde_json::Value::Null),
            Self::Unknown { json, .. } => {
                serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
            }
        }
    }

    /// Parses one transport object; `None` when it is not an object with a string `type`.
    pub(crate) fn parse(raw: &RawValue) -> Option<Self> {
        if let Some(object) = field::object::<FastTransportObject<'_>>(raw) {
            // One pass for the common shape: every field absent or a string.
            let transport_type = object.transport_type?.into_owned();
            if transport_type == wire::TRANSPORT_LIVEKIT
                && let Some(service_url) = object.livekit_service_url
            {
                let alias = object.livekit_alias.map(Cow::into_owned);
                return Some(Self::LiveKit {
                    service_url: service_url.into_owned(),
                    alias,
                });
            }
            return Some(Self::Unknown {
                transport_type,
                json: raw.get().to_owned(),
            });
        }
        let object: TransportObject<'_> = field::object(raw)?;
        let transport_type = field::string(object.transport_type).ok()?;
        if transport_type == wire::TRANSPORT_LIVEKIT
            && let Ok(service_url) = field::string(object.livekit_service_url)
        {
            let alias = field::string(object.livekit_alias).ok();
            return Some(Self::LiveKit { service_url, alias });
        }
        Some(Self::Unknown {
            transport_type,
            json: raw.get().to_owned(),
        })
    }

    /// Parses a JSON array of transports, keeping at most [`MAX_TRANSPORTS`] entries.
    /// Entries that are not transport objects are skipped. `None` when `raw` is not an array.
    pub(crate) fn parse_list(raw: &RawValue) -> Option<Vec<Self>> {
        let items: Vec<&RawValue> = serde_json::from_str(raw.get()).ok()?;
        Some(
            items
                .into_iter()
                .filter_map(Self::parse)
                .take(MAX_TRANSPORTS)
                .collect(),
        )
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bounded output: a hostile URL or object can be huge.
        match self {
            Self::LiveKit { service_url, alias } => f
                .debug_struct("LiveKit")
                .field("service_url", &field::Truncated(service_url))
                .field("alias", &alias.as_deref().map(field::Truncated))
                .finish(),
            Self::Unknown {
                transport_type,
                json,
            } => f
                .debug_struct("Unknown")
                .field("transport_type", &field::Truncated(transport_type))
                .field("json", &field::Truncated(json))
                .finish(),
        }
    }
}

/// How members of a legacy (format C) call pick their SFU (`focus_active.focus_selection`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FocusSelection {
    /// Everyone uses the oldest member's preferred focus.
    OldestMembership,
    /// Every member publishes on its own preferred focus.
    MultiSfu,
    /// Another value: treated like [`FocusSelection::MultiSfu`].
    Other(String),
}

impl FocusSelection {
    pub(crate) fn from_wire(value: String) -> Self {
        match value.as_str() {
            wire::FOCUS_OLDEST_MEMBERSHIP => Self::OldestMembership,
            wire::FOCUS_MULTI_SFU => Self::MultiSfu,
            _ => Self::Other(value),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::OldestMembership => wire::FOCUS_OLDEST_MEMBERSHIP,
            Self::MultiSfu => wire::FOCUS_MULTI_SFU,
            Self::Other(value) => value,
        }
    }
}
