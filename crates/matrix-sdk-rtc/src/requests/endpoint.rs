//! A small generic ruma request for endpoints matrix-sdk 0.18 lacks.
//!
//! Every endpoint is a zero-sized marker implementing [`Endpoint`] (method, path template,
//! answer type). [`Call`] carries the path arguments, the query string and a raw JSON body, and
//! implements ruma's `OutgoingRequest`, so `Client::send` runs it with the SDK's authentication,
//! token refresh and error handling. Errors are parsed the way ruma does, except that the whole
//! JSON body of `M_UNKNOWN` and `M_FORBIDDEN` errors is kept (ruma's typed error drops the
//! MSC4140 fields that travel in them, docs/protocol.md §6.5).

use std::{
    fmt,
    marker::PhantomData,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use matrix_sdk::ruma::{
    api::{
        EndpointError, IncomingResponse, Metadata, OutgoingRequest,
        auth_scheme::{AccessToken, AuthScheme, SendAccessToken},
        error::{Error as ApiError, ErrorBody, FromHttpResponseError, IntoHttpError},
        path_builder::SinglePath,
    },
    exports::{
        bytes::BufMut,
        http::{self, header::CONTENT_TYPE},
    },
};
use serde::de::DeserializeOwned;
use serde_json::{Value, value::RawValue};

use super::wire;

/// One endpoint: its method, path template and the JSON shape of a success answer.
pub(crate) trait Endpoint: Send + Sync + 'static {
    /// HTTP method.
    const METHOD: http::Method;
    /// Path template, `{name}` segments filled from [`Call::path_args`] in order.
    const PATH: SinglePath;
    /// The success answer.
    type Answer: DeserializeOwned + Send + Sync;
}

/// A request to the endpoint `E`.
pub(crate) struct Call<E> {
    path_args: Vec<String>,
    query: String,
    body: Option<Box<RawValue>>,
    endpoint: PhantomData<fn() -> E>,
}

impl<E: Endpoint> Call<E> {
    /// A request with these path arguments, an already encoded query string (may be empty) and
    /// an optional JSON body (`{}` is sent for non-`GET` requests without one).
    pub(crate) fn new(path_args: Vec<String>, query: String, body: Option<Box<RawValue>>) -> Self {
        Self {
            path_args,
            query,
            body,
            endpoint: PhantomData,
        }
    }
}

impl<E> Clone for Call<E> {
    fn clone(&self) -> Self {
        Self {
            path_args: self.path_args.clone(),
            query: self.query.clone(),
            body: self.body.clone(),
            endpoint: PhantomData,
        }
    }
}

impl<E: Endpoint> fmt::Debug for Call<E> {
    // Path arguments can hold a delay id (a bearer secret) and bodies hold event content:
    // show the template only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("method", &E::METHOD)
            .field("path", &E::PATH.path())
            .finish()
    }
}

impl<E: Endpoint> Metadata for Call<E> {
    const METHOD: http::Method = E::METHOD;
    const RATE_LIMITED: bool = false;
    type Authentication = AccessToken;
    type PathBuilder = SinglePath;
    const PATH_BUILDER: SinglePath = E::PATH;
}

impl<E: Endpoint> OutgoingRequest for Call<E> {
    type EndpointError = ApiError;
    type IncomingResponse = Answer<E::Answer>;

    fn try_into_http_request<T: Default + BufMut + AsRef<[u8]>>(
        self,
        base_url: &str,
        access_token: SendAccessToken<'_>,
        (): (),
    ) -> Result<http::Request<T>, IntoHttpError> {
        let path_args: Vec<&dyn fmt::Display> = self
            .path_args
            .iter()
            .map(|arg| arg as &dyn fmt::Display)
            .collect();
        let url = Self::make_endpoint_url((), base_url, &path_args, &self.query)?;

        let body = match &self.body {
            Some(body) => {
                let mut buf = T::default();
                buf.put_slice(body.get().as_bytes());
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

/// A success answer, with the moment it arrived.
#[derive(Debug)]
pub(crate) struct Answer<A> {
    /// The parsed body.
    pub(crate) body: A,
    /// Monotonic instant at which the response was handed to us, before parsing.
    pub(crate) received_at: Instant,
    /// Wall clock at the same moment, in milliseconds since the Unix epoch.
    pub(crate) received_wall_ms: u64,
}

impl<A: DeserializeOwned> IncomingResponse for Answer<A> {
    type EndpointError = ApiError;

    fn try_from_http_response<T: AsRef<[u8]>>(
        response: http::Response<T>,
    ) -> Result<Self, FromHttpResponseError<ApiError>> {
        let received_at = Instant::now();
        let received_wall_ms = wall_clock_ms();
        if !response.status().is_success() {
            return Err(FromHttpResponseError::Server(endpoint_error(response)));
        }
        let body = serde_json::from_slice(response.body().as_ref())?;
        Ok(Self {
            body,
            received_at,
            received_wall_ms,
        })
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Parses an error answer like ruma, but keeps the whole JSON body of an `M_UNKNOWN` or
/// `M_FORBIDDEN` error that has fields beyond `errcode` and `error` (MSC4140 puts the maximum
/// delay there).
pub(crate) fn endpoint_error<T: AsRef<[u8]>>(response: http::Response<T>) -> ApiError {
    if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(response.body().as_ref())
        && object
            .get(wire::FIELD_ERRCODE)
            .and_then(Value::as_str)
            .is_some_and(|code| [wire::ERRCODE_UNKNOWN, wire::ERRCODE_FORBIDDEN].contains(&code))
        && object
            .keys()
            .any(|key| key != wire::FIELD_ERRCODE && key != wire::FIELD_ERROR)
    {
        return ErrorBody::Json(Value::Object(object)).into_error(response.status());
    }
    ApiError::from_http_response(response)
}

/// Declares a marker type implementing [`Endpoint`].
macro_rules! endpoint {
    ($(#[$doc:meta])* $name:ident: $method:ident $path:expr => $answer:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name;

        impl $crate::requests::endpoint::Endpoint for $name {
            const METHOD: ::matrix_sdk::ruma::exports::http::Method =
                ::matrix_sdk::ruma::exports::http::Method::$method;
            const PATH: ::matrix_sdk::ruma::api::path_builder::SinglePath =
                ::matrix_sdk::ruma::api::path_builder::SinglePath::new($path);
            type Answer = $answer;
        }
    };
}
pub(crate) use endpoint;

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::{
        api::{
            IncomingResponse, OutgoingRequest,
            auth_scheme::SendAccessToken,
            error::{ErrorBody, FromHttpResponseError},
        },
        exports::http,
    };
    use serde_json::value::to_raw_value;

    use super::{Answer, Call};
    use crate::requests::wire::SendResponse;

    endpoint!(
        /// Test endpoint.
        TestSend: PUT "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}" => SendResponse
    );
    endpoint!(
        /// Test endpoint.
        TestGet: GET "/_matrix/client/v3/capabilities" => SendResponse
    );

    #[test]
    fn builds_put_with_encoded_path_query_body_and_token() {
        let body = to_raw_value(&serde_json::json!({"a": 1})).unwrap();
        let call = Call::<TestSend>::new(
            vec![
                "!room:x".to_owned(),
                "m.type".to_owned(),
                "t/1 2".to_owned(),
            ],
            "org.matrix.msc4354.sticky_duration_ms=5".to_owned(),
            Some(body),
        );
        let request: http::Request<Vec<u8>> = call
            .try_into_http_request(
                "https://hs.example/",
                SendAccessToken::IfRequired("tok"),
                (),
            )
            .unwrap();
        assert_eq!(request.method(), http::Method::PUT);
        assert_eq!(
            request.uri().to_string(),
            "https://hs.example/_matrix/client/v3/rooms/!room:x/send/m.type/t%2F1%202\
             ?org.matrix.msc4354.sticky_duration_ms=5"
        );
        assert_eq!(request.headers()["authorization"], "Bearer tok");
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(request.body(), br#"{"a":1}"#);
    }

    #[test]
    fn get_has_empty_body_and_put_without_body_sends_empty_object() {
        let call = Call::<TestGet>::new(vec![], String::new(), None);
        let request: http::Request<Vec<u8>> = call
            .try_into_http_request("http://h", SendAccessToken::IfRequired("t"), ())
            .unwrap();
        assert!(request.body().is_empty());
        assert_eq!(
            request.uri().to_string(),
            "http://h/_matrix/client/v3/capabilities"
        );

        let call = Call::<TestSend>::new(
            vec!["r".into(), "t".into(), "x".into()],
            String::new(),
            None,
        );
        let request: http::Request<Vec<u8>> = call
            .try_into_http_request("http://h", SendAccessToken::IfRequired("t"), ())
            .unwrap();
        assert_eq!(request.body(), b"{}");
    }

    #[test]
    fn debug_hides_arguments() {
        let call = Call::<TestSend>::new(vec!["secret".into()], String::new(), None);
        assert!(!format!("{call:?}").contains("secret"));
    }

    #[test]
    fn missing_token_is_an_error() {
        let call = Call::<TestGet>::new(vec![], String::new(), None);
        let result: Result<http::Request<Vec<u8>>, _> =
            call.try_into_http_request("http://h", SendAccessToken::None, ());
        assert!(result.is_err());
    }

    #[test]
    fn parses_success_and_errors() {
        let ok = http::Response::builder()
            .status(200)
            .body(br#"{"event_id":"$e"}"#)
            .unwrap();
        let answer = Answer::<SendResponse>::try_from_http_response(ok).unwrap();
        assert_eq!(answer.body.event_id.as_deref(), Some("$e"));

        let bad = http::Response::builder().status(200).body(b"nope").unwrap();
        assert!(matches!(
            Answer::<SendResponse>::try_from_http_response(bad),
            Err(FromHttpResponseError::Deserialization(_))
        ));

        let unknown = http::Response::builder()
            .status(400)
            .body(br#"{"errcode":"M_UNKNOWN","error":"x","org.matrix.msc4140.max_delay":5}"#)
            .unwrap();
        let Err(FromHttpResponseError::Server(error)) =
            Answer::<SendResponse>::try_from_http_response(unknown)
        else {
            panic!("expected a server error");
        };
        assert!(matches!(error.body, ErrorBody::Json(_)));

        let standard = http::Response::builder()
            .status(404)
            .body(br#"{"errcode":"M_NOT_FOUND","error":"x"}"#)
            .unwrap();
        let Err(FromHttpResponseError::Server(error)) =
            Answer::<SendResponse>::try_from_http_response(standard)
        else {
            panic!("expected a server error");
        };
        assert!(matches!(error.body, ErrorBody::Standard(_)));
    }
}
