//! A small authenticated JSON request to the homeserver, for the two paths this module needs
//! beyond the HTTP layer's (the stable transports list and the homeserver token endpoint).
//!
//! The HTTP layer's generic request is private to it, and ruma's request macros would make
//! this crate's `client` feature meaningful; so this is our own `OutgoingRequest`: a method,
//! a fixed path, an optional JSON body, and an answer parsed with serde. `Client::send` adds
//! the access token; errors are parsed the way ruma parses them.

use std::{fmt, marker::PhantomData};

use matrix_sdk::ruma::{
    api::{
        EndpointError, IncomingResponse, Metadata, OutgoingRequest,
        auth_scheme::{AccessToken, AuthScheme, SendAccessToken},
        error::{Error as ApiError, FromHttpResponseError, IntoHttpError},
        path_builder::SinglePath,
    },
    exports::{
        bytes::BufMut,
        http::{self, header::CONTENT_TYPE},
    },
};
use serde::de::DeserializeOwned;

/// One homeserver endpoint: method, path and the success answer's shape.
pub(crate) trait HomeserverEndpoint: Send + Sync + 'static {
    /// HTTP method.
    const METHOD: http::Method;
    /// The path (no arguments).
    const PATH: SinglePath;
    /// The success answer.
    type Answer: DeserializeOwned + Send + Sync;
}

/// A request to `E`, with its JSON body (`{}` is sent for non-`GET` requests without one).
pub(crate) struct HomeserverCall<E> {
    body: Option<Vec<u8>>,
    endpoint: PhantomData<fn() -> E>,
}

impl<E> HomeserverCall<E> {
    pub(crate) fn new(body: Option<Vec<u8>>) -> Self {
        Self {
            body,
            endpoint: PhantomData,
        }
    }
}

impl<E> Clone for HomeserverCall<E> {
    fn clone(&self) -> Self {
        Self::new(self.body.clone())
    }
}

impl<E: HomeserverEndpoint> fmt::Debug for HomeserverCall<E> {
    // The path only: bodies are ours to keep out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HomeserverCall")
            .field("method", &E::METHOD)
            .field("path", &E::PATH.path())
            .finish()
    }
}

impl<E: HomeserverEndpoint> Metadata for HomeserverCall<E> {
    const METHOD: http::Method = E::METHOD;
    const RATE_LIMITED: bool = false;
    type Authentication = AccessToken;
    type PathBuilder = SinglePath;
    const PATH_BUILDER: SinglePath = E::PATH;
}

impl<E: HomeserverEndpoint> OutgoingRequest for HomeserverCall<E> {
    type EndpointError = ApiError;
    type IncomingResponse = HomeserverAnswer<E::Answer>;

    fn try_into_http_request<T: Default + BufMut + AsRef<[u8]>>(
        self,
        base_url: &str,
        access_token: SendAccessToken<'_>,
        (): (),
    ) -> Result<http::Request<T>, IntoHttpError> {
        let url = Self::make_endpoint_url((), base_url, &[], "")?;
        let body = match &self.body {
            Some(body) => {
                let mut buf = T::default();
                buf.put_slice(body);
                buf
            }
            None => Self::empty_request_body(),
        };
        let mut builder = http::Request::builder().method(E::METHOD).uri(url);
        if E::METHOD != http::Method::GET {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let mut request = builder.body(body)?;
        AccessToken::add_authentication(&mut request, access_token)
            .map_err(|error| IntoHttpError::Authentication(Box::new(error)))?;
        Ok(request)
    }
}

/// A success answer.
pub(crate) struct HomeserverAnswer<A>(pub(crate) A);

impl<A> fmt::Debug for HomeserverAnswer<A> {
    // Answers can hold a JWT.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HomeserverAnswer(..)")
    }
}

impl<A: DeserializeOwned> IncomingResponse for HomeserverAnswer<A> {
    type EndpointError = ApiError;

    fn try_from_http_response<T: AsRef<[u8]>>(
        response: http::Response<T>,
    ) -> Result<Self, FromHttpResponseError<ApiError>> {
        if !response.status().is_success() {
            return Err(FromHttpResponseError::Server(ApiError::from_http_response(
                response,
            )));
        }
        Ok(Self(serde_json::from_slice(response.body().as_ref())?))
    }
}

/// Declares a marker type implementing [`HomeserverEndpoint`].
macro_rules! homeserver_endpoint {
    ($(#[$doc:meta])* $name:ident: $method:ident $path:expr => $answer:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name;

        impl $crate::livekit::request::HomeserverEndpoint for $name {
            const METHOD: ::matrix_sdk::ruma::exports::http::Method =
                ::matrix_sdk::ruma::exports::http::Method::$method;
            const PATH: ::matrix_sdk::ruma::api::path_builder::SinglePath =
                ::matrix_sdk::ruma::api::path_builder::SinglePath::new($path);
            type Answer = $answer;
        }
    };
}
pub(crate) use homeserver_endpoint;

#[cfg(test)]
mod tests {
    use super::*;

    homeserver_endpoint!(
        /// Test endpoint.
        TestPost: POST "/_matrix/client/v1/rtc/livekit/get_token" => serde_json::Value
    );

    #[test]
    fn builds_an_authenticated_post_and_parses_answers() {
        let call = HomeserverCall::<TestPost>::new(Some(br#"{"a":1}"#.to_vec()));
        assert!(!format!("{call:?}").contains("\"a\""));
        let request: http::Request<Vec<u8>> = call
            .try_into_http_request("https://hs", SendAccessToken::IfRequired("tok"), ())
            .unwrap();
        assert_eq!(
            request.uri().to_string(),
            "https://hs/_matrix/client/v1/rtc/livekit/get_token"
        );
        assert_eq!(request.headers()["authorization"], "Bearer tok");
        assert_eq!(request.body(), br#"{"a":1}"#);

        let ok = http::Response::builder()
            .status(200)
            .body(br#"{"jwt":"x"}"#)
            .unwrap();
        let answer = HomeserverAnswer::<serde_json::Value>::try_from_http_response(ok).unwrap();
        assert_eq!(answer.0["jwt"], "x");
        assert_eq!(format!("{answer:?}"), "HomeserverAnswer(..)");
        let refused = http::Response::builder()
            .status(403)
            .body(br#"{"errcode":"M_FORBIDDEN","error":"no"}"#)
            .unwrap();
        assert!(matches!(
            HomeserverAnswer::<serde_json::Value>::try_from_http_response(refused),
            Err(FromHttpResponseError::Server(_))
        ));
    }
}
