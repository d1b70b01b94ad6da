//! The homeserver's LiveKit token endpoint (MSC4195): the unstable path js-sdk 43 calls, then
//! the stable one.
//!
//! Both go through `Client::send`, so the SDK authenticates them; the body names the SFU
//! (`url`), the room, the slot and our member. No OpenID token is involved: the homeserver
//! knows who we are.

use matrix_sdk::{Client, config::RequestConfig};

use super::{
    LiveKitError, REQUEST_TIMEOUT, TokenEndpoint,
    error::scrubbed_message,
    request::{HomeserverCall, homeserver_endpoint},
    wire::{self, HomeserverGetTokenBody, TokenAnswer},
};
use crate::{
    RequestError,
    requests::{RequestContext, map_http_error},
};

homeserver_endpoint!(
    /// `POST …/unstable/io.element.msc4195/rtc/livekit/get_token`.
    UnstableGetToken: POST wire::HOMESERVER_GET_TOKEN_UNSTABLE => TokenAnswer
);
homeserver_endpoint!(
    /// `POST /_matrix/client/v1/rtc/livekit/get_token`.
    StableGetToken: POST wire::HOMESERVER_GET_TOKEN_STABLE => TokenAnswer
);

/// What one homeserver endpoint answered.
pub(crate) struct HomeserverAnswer {
    pub(crate) endpoint: TokenEndpoint,
    pub(crate) answer: TokenAnswer,
}

/// Asks the homeserver for a token: the unstable path, then (when that is not served: 404,
/// `M_NOT_FOUND` or `M_UNRECOGNIZED`) the stable one.
pub(crate) async fn get_token(
    client: &Client,
    body: &HomeserverGetTokenBody<'_>,
) -> Result<HomeserverAnswer, LiveKitError> {
    let config = RequestConfig::new()
        .disable_retry()
        .timeout(REQUEST_TIMEOUT);
    let body = serde_json::to_vec(body).map_err(|error| LiveKitError::MalformedAnswer {
        endpoint: TokenEndpoint::HomeserverUnstable,
        reason: format!("could not encode the request: {error}"),
    })?;
    let endpoint = TokenEndpoint::HomeserverUnstable;
    let call = HomeserverCall::<UnstableGetToken>::new(Some(body.clone()));
    match client.send(call).with_request_config(config).await {
        Ok(answer) => {
            return Ok(HomeserverAnswer {
                endpoint,
                answer: answer.0,
            });
        }
        Err(error) => match map_http_error(&error, RequestContext::Plain) {
            RequestError::Unrecognized | RequestError::NotFound => {}
            other => return Err(mapped(endpoint, other)),
        },
    }
    tracing::debug!("unstable homeserver get_token not served, trying the stable path");
    let endpoint = TokenEndpoint::HomeserverStable;
    let call = HomeserverCall::<StableGetToken>::new(Some(body));
    match client.send(call).with_request_config(config).await {
        Ok(answer) => Ok(HomeserverAnswer {
            endpoint,
            answer: answer.0,
        }),
        Err(error) => Err(match map_http_error(&error, RequestContext::Plain) {
            RequestError::Unrecognized => LiveKitError::Refused {
                endpoint,
                status: 404,
                errcode: Some("M_UNRECOGNIZED".to_owned()),
                message: "the homeserver serves no LiveKit token endpoint".to_owned(),
            },
            other => mapped(endpoint, other),
        }),
    }
}

/// The typed error of a failed homeserver request.
fn mapped(endpoint: TokenEndpoint, error: RequestError) -> LiveKitError {
    match error {
        RequestError::Network { timed_out, message } => LiveKitError::Unreachable {
            endpoint,
            timed_out,
            message,
        },
        RequestError::Http {
            status,
            errcode,
            message,
        } => LiveKitError::Refused {
            endpoint,
            status,
            errcode,
            message: scrubbed_message(&message, &[]),
        },
        RequestError::NotFound => LiveKitError::Refused {
            endpoint,
            status: 404,
            errcode: Some("M_NOT_FOUND".to_owned()),
            message: String::new(),
        },
        RequestError::InvalidResponse(reason) => LiveKitError::MalformedAnswer { endpoint, reason },
        other => LiveKitError::Homeserver {
            endpoint,
            error: other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let body = HomeserverGetTokenBody {
            url: "wss://sfu",
            room_id: "!r:hs",
            slot_id: "m.call#ROOM",
            member: wire::Member {
                id: "m1",
                claimed_user_id: "@a:hs",
                claimed_device_id: "DEV",
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "url": "wss://sfu", "room_id": "!r:hs", "slot_id": "m.call#ROOM",
                "member": { "id": "m1", "claimed_user_id": "@a:hs", "claimed_device_id": "DEV" },
            })
        );
    }
}
