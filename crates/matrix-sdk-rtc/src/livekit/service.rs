//! The LiveKit JWT service (lk-jwt-service and compatible): `POST /get_token`, falling back
//! to the legacy `POST /sfu/get` when the service does not serve it.
//!
//! It is a third party, not the homeserver: requests go through the SDK's HTTP client (its
//! proxy and TLS settings) but without the Matrix access token. The body carries our OpenID
//! token, which proves who we are to the service; it is never logged, and an error message
//! that quotes it is withheld.

use matrix_sdk::reqwest::{self, StatusCode, header::CONTENT_TYPE};
use serde::Serialize;
use tracing::debug;

use super::{
    LiveKitError, REQUEST_TIMEOUT, TokenEndpoint,
    error::scrubbed_message,
    wire::{self, ErrorBody, TokenAnswer},
};

/// Largest answer we read, in bytes.
const MAX_ANSWER_LEN: usize = 64 * 1024;

/// How one endpoint went.
pub(crate) enum Attempt {
    /// It answered `{url, jwt}`.
    Answered(TokenAnswer),
    /// It is not served here (404 or 405): try the next one.
    NotServed {
        /// The status it answered.
        status: u16,
    },
}

/// The full URL of an endpoint below `service_url` (one slash between them).
pub(crate) fn endpoint_url(service_url: &str, path: &str) -> String {
    format!("{}{path}", service_url.trim_end_matches('/'))
}

/// `POST`s `body` to `{service_url}{path}`.
///
/// `secrets` are withheld from any error message the service sends back.
pub(crate) async fn post<B: Serialize>(
    http: &reqwest::Client,
    service_url: &str,
    endpoint: TokenEndpoint,
    body: &B,
    secrets: &[&str],
) -> Result<Attempt, LiveKitError> {
    let path = match endpoint {
        TokenEndpoint::ServiceLegacySfuGet => wire::SERVICE_LEGACY_SFU_GET,
        _ => wire::SERVICE_GET_TOKEN,
    };
    let body = serde_json::to_vec(body).map_err(|error| LiveKitError::MalformedAnswer {
        endpoint,
        reason: format!("could not encode the request: {error}"),
    })?;
    debug!(%endpoint, "asking the LiveKit JWT service for a token");
    let response = http
        .post(endpoint_url(service_url, path))
        .header(CONTENT_TYPE, "application/json")
        .timeout(REQUEST_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|error| unreachable(endpoint, &error))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|error| unreachable(endpoint, &error))?;
    debug!(%endpoint, status = status.as_u16(), "the LiveKit JWT service answered");
    if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
        return Ok(Attempt::NotServed {
            status: status.as_u16(),
        });
    }
    if !status.is_success() {
        let error: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(LiveKitError::Refused {
            endpoint,
            status: status.as_u16(),
            errcode: error.errcode.map(|code| scrubbed_message(&code, secrets)),
            message: scrubbed_message(error.error.as_deref().unwrap_or_default(), secrets),
        });
    }
    if bytes.len() > MAX_ANSWER_LEN {
        return Err(LiveKitError::MalformedAnswer {
            endpoint,
            reason: format!("the answer is longer than {MAX_ANSWER_LEN} bytes"),
        });
    }
    // serde_json's message names the field and position, never the value.
    let answer: TokenAnswer =
        serde_json::from_slice(&bytes).map_err(|error| LiveKitError::MalformedAnswer {
            endpoint,
            reason: format!("not {{url, jwt}}: {error}"),
        })?;
    Ok(Attempt::Answered(answer))
}

/// An unreachable service. reqwest's own message holds the URL, which we leave out.
fn unreachable(endpoint: TokenEndpoint, error: &reqwest::Error) -> LiveKitError {
    let timed_out = error.is_timeout();
    let message = if timed_out {
        "request timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    LiveKitError::Unreachable {
        endpoint,
        timed_out,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_have_one_slash() {
        assert_eq!(
            endpoint_url("https://lk.example/livekit/jwt/", "/get_token"),
            "https://lk.example/livekit/jwt/get_token"
        );
        assert_eq!(
            endpoint_url("https://lk.example", "/sfu/get"),
            "https://lk.example/sfu/get"
        );
    }
}
