//! Requests whose path holds a secret, sent past matrix-sdk's HTTP layer.
//!
//! matrix-sdk records the path of every request it sends in a tracing span (`uri`), which every
//! log line inside the request carries, at DEBUG and TRACE level. Our delayed-event management
//! paths end in a delay id, a bearer secret (Synapse 1.163.2 accepts these requests without an
//! access token, docs/protocol.md §6.3), so they are sent here instead: through the client's
//! own `reqwest` client (its proxy, TLS and timeout settings) with the client's access token,
//! and parsed by the same answer and error code as every other request. Nothing of the URL
//! reaches a log line or an error message.
//!
//! What the SDK's layer would add, and this one does not: the automatic token refresh on
//! `M_UNKNOWN_TOKEN` (the own-membership machine retries, and the app's sync refreshes the
//! token) and the limit on concurrent requests (at most one management request is in flight
//! per delay id).

use std::time::Duration;

use matrix_sdk::{
    reqwest,
    ruma::api::{
        IncomingResponse, OutgoingRequest, auth_scheme::SendAccessToken,
        error::FromHttpResponseError,
    },
    ruma::exports::http,
};

use super::{
    HomeserverApi, RequestError,
    endpoint::{Answer, Call, Endpoint},
    error::{RequestContext, map_api_error, map_reqwest_error},
};

impl HomeserverApi {
    /// Sends `call` like [`call`](Self::call), but without matrix-sdk's HTTP layer and its
    /// request spans: for paths that carry a delay id.
    pub(super) async fn call_quiet<E: Endpoint>(
        &self,
        call: Call<E>,
        context: RequestContext,
        timeout: Duration,
    ) -> Result<Answer<E::Answer>, RequestError> {
        let token = self
            .client
            .access_token()
            .ok_or_else(|| RequestError::Other("the client is not logged in".to_owned()))?;
        let homeserver = self.client.homeserver();
        let request: http::Request<Vec<u8>> = call
            .try_into_http_request(
                homeserver.as_str().trim_end_matches('/'),
                SendAccessToken::Always(&token),
                (),
            )
            // The error can name the URL: keep none of it.
            .map_err(|_| RequestError::Other("could not build the request".to_owned()))?;
        let (parts, body) = request.into_parts();
        let response = self
            .client
            .http_client()
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| map_reqwest_error(&error))?;
        let answer = into_http_response(response).await?;
        Answer::try_from_http_response(answer).map_err(|error| match error {
            FromHttpResponseError::Server(error) => map_api_error(&error, context),
            FromHttpResponseError::Deserialization(_) => RequestError::InvalidResponse(
                "the answer is not what the endpoint returns".to_owned(),
            ),
            _ => RequestError::Other("the answer could not be read".to_owned()),
        })
    }
}

/// The status, headers and body of `response`, read whole.
async fn into_http_response(
    response: reqwest::Response,
) -> Result<http::Response<Vec<u8>>, RequestError> {
    let mut builder = http::Response::builder().status(response.status());
    if let Some(headers) = builder.headers_mut() {
        headers.extend(
            response
                .headers()
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
    }
    let body = response
        .bytes()
        .await
        .map_err(|error| map_reqwest_error(&error))?;
    builder
        .body(body.to_vec())
        .map_err(|_| RequestError::InvalidResponse("an unreadable answer".to_owned()))
}
