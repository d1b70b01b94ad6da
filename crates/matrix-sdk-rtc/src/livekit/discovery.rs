//! Transport discovery (MSC4143) and where a transport's tokens come from.
//!
//! The unstable `GET …/org.matrix.msc4143/rtc/transports` (the request of `requests`, the
//! only path Synapse 1.163.2 serves) is asked first; when the server does not serve it (404 or
//! `M_UNRECOGNIZED`), the stable `GET /_matrix/client/v1/rtc/transports`. A server serving
//! neither advertises nothing.

use matrix_rtc_membership::Transport;
use matrix_sdk::config::RequestConfig;
use serde_json::value::RawValue;
use tracing::debug;

use super::{
    REQUEST_TIMEOUT,
    request::{HomeserverCall, homeserver_endpoint},
    wire,
};
use crate::{
    HomeserverApi, RequestError,
    requests::{RequestContext, map_http_error},
};

homeserver_endpoint!(
    /// `GET /_matrix/client/v1/rtc/transports` (the unstable one lives in `requests`).
    StableTransports: GET wire::STABLE_TRANSPORTS_PATH => wire::TransportsAnswer
);

/// Where the tokens of a transport come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// A JWT service at this `livekit_service_url`.
    Service {
        /// The service's base URL.
        service_url: String,
    },
    /// The homeserver (MSC4195), for the SFU at this `url`.
    Homeserver {
        /// The SFU's WebSocket URL.
        sfu_url: String,
    },
}

/// The token source of a transport we publish on; `None` when it is not LiveKit or has
/// neither a service URL nor an SFU URL.
pub(crate) fn token_source(transport: &Transport) -> Option<TokenSource> {
    match transport {
        Transport::LiveKit { service_url, .. } => Some(TokenSource::Service {
            service_url: service_url.clone(),
        }),
        Transport::Unknown {
            transport_type,
            json,
        } if is_livekit_type(transport_type) => {
            let entry: wire::TransportEntry = serde_json::from_str(json).ok()?;
            if let Some(service_url) = entry.livekit_service_url.filter(|url| !url.is_empty()) {
                return Some(TokenSource::Service { service_url });
            }
            entry
                .url
                .filter(|url| !url.is_empty())
                .map(|sfu_url| TokenSource::Homeserver { sfu_url })
        }
        _ => None,
    }
}

fn is_livekit_type(transport_type: &str) -> bool {
    transport_type == wire::TYPE_LIVEKIT || transport_type == wire::TYPE_M_LIVEKIT
}

/// The transport to publish on from the advertised list: the first LiveKit entry with a
/// `livekit_service_url` (what js-sdk 43 and Element Call read from member events), else the
/// first LiveKit entry with only an SFU `url` (published as advertised; its tokens come from
/// the homeserver).
pub(crate) fn choose_transport(advertised: &[Box<RawValue>]) -> Option<Transport> {
    let entries: Vec<(wire::TransportEntry, &RawValue)> = advertised
        .iter()
        .filter_map(|raw| Some((serde_json::from_str(raw.get()).ok()?, &**raw)))
        .collect();
    let with_service = entries.iter().find_map(|(entry, _)| {
        (entry.transport_type == wire::TYPE_LIVEKIT)
            .then(|| entry.livekit_service_url.clone())
            .flatten()
            .filter(|url| !url.is_empty())
    });
    if let Some(service_url) = with_service {
        return Some(Transport::livekit(service_url));
    }
    entries.iter().find_map(|(entry, raw)| {
        let has_url = entry.url.as_deref().is_some_and(|url| !url.is_empty());
        if !is_livekit_type(&entry.transport_type) || !has_url {
            return None;
        }
        // Compact, as `Transport::Unknown` keeps it.
        let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
        Some(Transport::Unknown {
            transport_type: entry.transport_type.clone(),
            json: value.to_string(),
        })
    })
}

/// The transports the homeserver advertises, most preferred first, each raw; empty when it
/// serves neither path or configures none.
pub(crate) async fn advertised_transports(
    api: &HomeserverApi,
) -> Result<Vec<Box<RawValue>>, RequestError> {
    match api.rtc_transports().await {
        Err(RequestError::Unrecognized | RequestError::NotFound) => {}
        other => return other,
    }
    debug!("unstable rtc/transports not served, trying the stable path");
    let config = RequestConfig::new()
        .disable_retry()
        .timeout(REQUEST_TIMEOUT);
    match api
        .client()
        .send(HomeserverCall::<StableTransports>::new(None))
        .with_request_config(config)
        .await
    {
        Ok(answer) => Ok(answer.0.rtc_transports.unwrap_or_default()),
        Err(error) => match map_http_error(&error, RequestContext::Plain) {
            RequestError::Unrecognized | RequestError::NotFound => Ok(Vec::new()),
            other => Err(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::to_raw_value;

    use super::*;

    fn raw(value: serde_json::Value) -> Box<RawValue> {
        to_raw_value(&value).unwrap()
    }

    #[test]
    fn prefers_a_service_url_then_an_sfu_url() {
        let list = vec![
            raw(serde_json::json!({ "type": "other" })),
            raw(serde_json::json!({ "type": "livekit", "url": "wss://sfu" })),
            raw(serde_json::json!({ "type": "livekit", "livekit_service_url": "https://jwt" })),
        ];
        assert_eq!(
            choose_transport(&list),
            Some(Transport::livekit("https://jwt"))
        );
        let only_url = vec![raw(
            serde_json::json!({ "type": "m.livekit", "url": "wss://sfu" }),
        )];
        let chosen = choose_transport(&only_url).unwrap();
        assert_eq!(
            token_source(&chosen),
            Some(TokenSource::Homeserver {
                sfu_url: "wss://sfu".to_owned()
            })
        );
        assert_eq!(
            chosen.to_json(),
            serde_json::json!({ "type": "m.livekit", "url": "wss://sfu" })
        );
        assert_eq!(choose_transport(&[raw(serde_json::json!("odd"))]), None);
        assert_eq!(choose_transport(&[]), None);
    }

    #[test]
    fn token_sources() {
        assert_eq!(
            token_source(&Transport::livekit("https://jwt")),
            Some(TokenSource::Service {
                service_url: "https://jwt".to_owned()
            })
        );
        let other = Transport::Unknown {
            transport_type: "webrtc".to_owned(),
            json: r#"{"type":"webrtc","url":"wss://x"}"#.to_owned(),
        };
        assert_eq!(token_source(&other), None);
        let bare = Transport::Unknown {
            transport_type: "livekit".to_owned(),
            json: r#"{"type":"livekit"}"#.to_owned(),
        };
        assert_eq!(token_source(&bare), None);
    }
}
