//! One error type for every request of the HTTP layer, and the single function that maps
//! matrix-sdk's [`HttpError`] onto it (docs/protocol.md §6.3, §6.5, §3.2).

use std::time::{Duration, SystemTime};

use matrix_sdk::{
    HttpError, RumaApiError,
    ruma::{
        OwnedEventId,
        api::error::{
            Error as ApiError, ErrorBody, ErrorKind, FromHttpResponseError, LimitExceededErrorData,
            RetryAfter, StandardErrorBody,
        },
    },
};
use serde_json::{Map, Value};

use super::wire;

/// Longest server-provided message we keep in an error, in bytes.
const MAX_MESSAGE_LEN: usize = 512;

/// Why a request of the HTTP layer failed, sorted for the own-membership state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// 404 `M_NOT_FOUND`: for a delayed event, it is unknown, already fired or cancelled.
    #[error("not found")]
    NotFound,

    /// 409: the action conflicts with the delayed event's final outcome (newest MSC4140).
    #[error("conflict with the delayed event's final outcome")]
    Conflict,

    /// 429 `M_LIMIT_EXCEEDED`: wait before retrying.
    #[error("rate limited")]
    RateLimited {
        /// How long the server asked us to wait: the `Retry-After` header, else
        /// `retry_after_ms`, else unknown.
        retry_after: Option<Duration>,
    },

    /// The requested delay is above the server's maximum.
    #[error("delay above the server's maximum")]
    DelayTooLarge {
        /// The maximum the server reported, when it reported one.
        max_delay_ms: Option<u64>,
    },

    /// 403 "Sending delayed events has been disallowed" (or another message saying the
    /// feature is disabled): the feature is off on this server.
    #[error("delayed events are disallowed by the server")]
    DelayedEventsDisallowed,

    /// The server's `/versions` advertises no delayed events, so nothing was sent: such a
    /// server would ignore the delay and send the event at once.
    #[error("the server does not advertise delayed events; nothing was sent")]
    DelayedEventsUnavailable,

    /// The server holds as many delayed events of this user as it allows: Synapse's 429
    /// "The maximum number of delayed events has been reached.", or the older 400
    /// `M_MAX_DELAYED_EVENTS_EXCEEDED`.
    #[error("too many scheduled delayed events")]
    TooManyScheduled {
        /// How long until one of them fires, when the server said (Synapse: the
        /// `Retry-After` header and `retry_after_ms`).
        retry_after: Option<Duration>,
    },

    /// The server ignored the delay parameter and sent the event at once (it lacks MSC4140).
    ///
    /// The event is out: callers treat delayed events as unsupported.
    #[error("delay ignored by the server: the event was sent at once")]
    DelayIgnored {
        /// The event the server sent instead of scheduling it.
        event_id: OwnedEventId,
    },

    /// Any 400 on the side connection: it must restart without `pos` and `since`.
    #[error("unknown sliding sync position")]
    UnknownPos,

    /// 404/405 `M_UNRECOGNIZED`: the server does not serve this endpoint.
    #[error("endpoint not recognised by the server")]
    Unrecognized,

    /// Any other error answer from the server.
    #[error("http error {status} {}: {message}", errcode.as_deref().unwrap_or("(no errcode)"))]
    Http {
        /// HTTP status code.
        status: u16,
        /// Matrix error code, if the body had one.
        errcode: Option<String>,
        /// Error message from the body (shortened), possibly empty.
        message: String,
    },

    /// The request did not get an answer: connection error or timeout.
    #[error("network error: {message}")]
    Network {
        /// Whether the request timed out.
        timed_out: bool,
        /// What went wrong.
        message: String,
    },

    /// The server answered with a success that we could not read.
    #[error("invalid response: {0}")]
    InvalidResponse(String),

    /// Anything else (request building, token refresh, ...).
    #[error("request failed: {0}")]
    Other(String),
}

impl RequestError {
    /// Whether retrying the same request later may succeed: network errors, rate limits and
    /// server-side (5xx) errors.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } | Self::RateLimited { .. } => true,
            Self::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The wait the server asked for, for [`RequestError::RateLimited`] and
    /// [`RequestError::TooManyScheduled`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::TooManyScheduled { retry_after } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Whether this answer shows that the server serves the endpoint it came from: a Matrix
    /// answer about the request itself. Not `M_UNRECOGNIZED`, nor a failure that did not
    /// reach a Matrix handler (network, rate limits, which a proxy may give on any path,
    /// unreadable answers, 5xx).
    pub(crate) fn proves_endpoint(&self) -> bool {
        match self {
            Self::NotFound
            | Self::Conflict
            | Self::DelayTooLarge { .. }
            | Self::DelayedEventsDisallowed
            | Self::TooManyScheduled { .. }
            | Self::DelayIgnored { .. } => true,
            Self::Http { status, .. } => (400..500).contains(status),
            Self::RateLimited { .. }
            | Self::DelayedEventsUnavailable
            | Self::UnknownPos
            | Self::Unrecognized
            | Self::Network { .. }
            | Self::InvalidResponse(_)
            | Self::Other(_) => false,
        }
    }
}

/// What kind of request failed: a few answers mean different things per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestContext {
    /// Any request without special meaning.
    Plain,
    /// A send carrying the delay parameter.
    DelayedSend,
    /// The side connection's sliding sync request.
    SideSync,
}

/// Maps a matrix-sdk error onto [`RequestError`].
///
/// The order of the checks matters: rate limits first, then "endpoint unknown", then the
/// context-specific meanings, then the delayed-events errors of docs/protocol.md §6.5 in every form seen, then
/// the generic status codes.
pub(crate) fn map_http_error(error: &HttpError, context: RequestContext) -> RequestError {
    #[allow(unreachable_patterns)] // `HttpError` has a platform-specific variant
    match error {
        HttpError::Reqwest(error) => map_reqwest_error(error),
        HttpError::Cached(inner) => map_http_error(inner, context),
        HttpError::Api(api) => match api.as_ref() {
            FromHttpResponseError::Deserialization(error) => {
                RequestError::InvalidResponse(shorten(&error.to_string()))
            }
            FromHttpResponseError::Server(RumaApiError::MatrixError(error)) => {
                map_api_error(error, context)
            }
            FromHttpResponseError::Server(RumaApiError::AuthResponse(_)) => RequestError::Http {
                status: 401,
                errcode: None,
                message: "user-interactive authentication required".to_owned(),
            },
            other => RequestError::Other(shorten(&other.to_string())),
        },
        HttpError::IntoHttp(error) => {
            RequestError::Other(shorten(&format!("could not build the request: {error}")))
        }
        HttpError::RefreshToken(error) => {
            RequestError::Other(shorten(&format!("access token refresh failed: {error}")))
        }
        other => RequestError::Other(shorten(&other.to_string())),
    }
}

/// A transport failure. Never keeps reqwest's message: it contains the URL, and our paths can
/// carry a delay id, which is a bearer secret.
pub(crate) fn map_reqwest_error(error: &matrix_sdk::reqwest::Error) -> RequestError {
    let timed_out = error.is_timeout();
    let message = if timed_out {
        "request timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    RequestError::Network {
        timed_out,
        message: message.to_owned(),
    }
}

/// The parts of an error answer we look at, whatever form its body had.
struct ErrorParts<'a> {
    status: u16,
    errcode: Option<String>,
    message: &'a str,
    /// Fields beyond `errcode` and `error`, when the body kept them.
    extra: Option<&'a Map<String, Value>>,
    /// Parsed by ruma for `M_LIMIT_EXCEEDED` (the `Retry-After` header wins over the body).
    retry_after: Option<&'a RetryAfter>,
}

impl<'a> ErrorParts<'a> {
    fn new(error: &'a ApiError) -> Self {
        let status = error.status_code.as_u16();
        match &error.body {
            ErrorBody::Standard(StandardErrorBody { kind, message, .. }) => {
                let retry_after = match kind {
                    ErrorKind::LimitExceeded(LimitExceededErrorData { retry_after, .. }) => {
                        retry_after.as_ref()
                    }
                    _ => None,
                };
                Self {
                    status,
                    errcode: Some(kind.errcode().to_string()),
                    message,
                    extra: kind.custom_json_data(),
                    retry_after,
                }
            }
            ErrorBody::Json(json) => {
                let object = json.as_object();
                let field = |name: &str| object.and_then(|o| o.get(name)).and_then(Value::as_str);
                Self {
                    status,
                    errcode: field(wire::FIELD_ERRCODE).map(str::to_owned),
                    message: field(wire::FIELD_ERROR).unwrap_or_default(),
                    extra: object,
                    retry_after: None,
                }
            }
            ErrorBody::NotJson { .. } => Self {
                status,
                errcode: None,
                message: "",
                extra: None,
                retry_after: None,
            },
            #[allow(unreachable_patterns)] // future ruma versions
            _ => Self {
                status,
                errcode: None,
                message: "",
                extra: None,
                retry_after: None,
            },
        }
    }

    fn extra_u64(&self, field: &str) -> Option<u64> {
        self.extra?.get(field)?.as_u64()
    }

    fn extra_str(&self, field: &str) -> Option<&str> {
        self.extra?.get(field)?.as_str()
    }
}

/// A 429 on a delayed send that asks us to wait longer than this is the quota of scheduled
/// delayed events, not a rate limit (docs/protocol.md §6.5).
const QUOTA_MIN_WAIT: Duration = Duration::from_secs(60);

pub(crate) fn map_api_error(error: &ApiError, context: RequestContext) -> RequestError {
    let parts = ErrorParts::new(error);
    let errcode = parts.errcode.as_deref();
    // `M_UNKNOWN` bodies may carry the real code under the MSC4140 prefix.
    let msc4140_errcode = parts.extra_str(wire::FIELD_MSC4140_ERRCODE);

    if parts.status == 429 || errcode == Some("M_LIMIT_EXCEEDED") {
        let retry_after = match parts.retry_after {
            Some(RetryAfter::Delay(delay)) => Some(*delay),
            Some(RetryAfter::DateTime(at)) => {
                Some(at.duration_since(SystemTime::now()).unwrap_or_default())
            }
            _ => parts
                .extra_u64(wire::FIELD_RETRY_AFTER_MS)
                .map(Duration::from_millis),
        };
        // Synapse names its quota of scheduled delayed events in the message. The merged MSC
        // says only 429 with `Retry-After` (the time until our next scheduled event fires):
        // a wait longer than any rate limiter asks for is that quota; a shorter one is waited
        // out either way, so reading it as a rate limit costs nothing.
        if context == RequestContext::DelayedSend
            && (parts
                .message
                .to_ascii_lowercase()
                .contains(wire::QUOTA_MESSAGE_WORDS)
                || retry_after.is_some_and(|wait| wait > QUOTA_MIN_WAIT))
        {
            return RequestError::TooManyScheduled { retry_after };
        }
        return RequestError::RateLimited { retry_after };
    }

    if errcode == Some("M_UNRECOGNIZED") || (errcode.is_none() && matches!(parts.status, 404 | 405))
    {
        // A Matrix server always names its errors; a bare 404/405 comes from a proxy in front
        // of a server that does not route this path.
        return RequestError::Unrecognized;
    }

    if context == RequestContext::SideSync && parts.status == 400 {
        return RequestError::UnknownPos;
    }

    if errcode == Some(wire::ERRCODE_DELAY_TOO_LARGE) {
        return RequestError::DelayTooLarge {
            max_delay_ms: max_from_message(parts.message),
        };
    }
    if errcode == Some(wire::ERRCODE_MAX_DELAY_EXCEEDED) {
        return RequestError::DelayTooLarge {
            max_delay_ms: parts
                .extra_u64(wire::FIELD_MAX_DELAY)
                .or_else(|| parts.extra_u64(wire::FIELD_MSC4140_MAX_DELAY))
                .or_else(|| max_from_message(parts.message)),
        };
    }
    if msc4140_errcode == Some(wire::ERRCODE_MAX_DELAY_EXCEEDED) {
        return RequestError::DelayTooLarge {
            max_delay_ms: parts
                .extra_u64(wire::FIELD_MSC4140_MAX_DELAY)
                .or_else(|| parts.extra_u64(wire::FIELD_MAX_DELAY))
                .or_else(|| max_from_message(parts.message)),
        };
    }
    if errcode == Some(wire::ERRCODE_MAX_DELAYED_EVENTS_EXCEEDED)
        || msc4140_errcode == Some(wire::ERRCODE_MAX_DELAYED_EVENTS_EXCEEDED)
    {
        return RequestError::TooManyScheduled { retry_after: None };
    }
    if parts.status == 403 && errcode == Some("M_FORBIDDEN") {
        // The merged MSC4140 answers both "delay above the maximum" and "feature disabled"
        // with a plain 403 `M_FORBIDDEN` and leaves the message free: tell them apart by the
        // message (Synapse's disabled feature says "disallowed") or a maximum in the body.
        let message = parts.message.to_ascii_lowercase();
        if message.contains("delayed event")
            && ["disallowed", "disabled", "not enabled"]
                .iter()
                .any(|w| message.contains(w))
        {
            return RequestError::DelayedEventsDisallowed;
        }
        if context == RequestContext::DelayedSend {
            let max_in_body = parts
                .extra_u64(wire::FIELD_MAX_DELAY)
                .or_else(|| parts.extra_u64(wire::FIELD_MSC4140_MAX_DELAY));
            let says_too_long = message.contains("delay")
                && ["maximum", "exceed", "too large", "too long"]
                    .iter()
                    .any(|w| message.contains(w));
            if max_in_body.is_some() || says_too_long {
                return RequestError::DelayTooLarge {
                    max_delay_ms: max_in_body.or_else(|| max_from_message(parts.message)),
                };
            }
        }
        // Anything else (for instance "not in the room") stays a plain 403: the machine takes
        // a refused schedule as "no dead-man switch" either way.
    }

    if parts.status == 404 && errcode == Some("M_NOT_FOUND") {
        return RequestError::NotFound;
    }
    if parts.status == 409 {
        return RequestError::Conflict;
    }

    RequestError::Http {
        status: parts.status,
        errcode: parts.errcode.as_deref().map(shorten),
        message: shorten(parts.message),
    }
}

/// Reads the maximum out of a message such as Synapse's
/// "The requested delay (99999ms) exceeds the allowed maximum (86400000ms)": the first number
/// after the last "maximum" (or "max"), else `None`.
fn max_from_message(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let start = lower.rfind("maximum").or_else(|| lower.rfind("max"))?;
    let digits: String = lower[start..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Caps a server-provided string at [`MAX_MESSAGE_LEN`] bytes, on a character boundary.
pub(crate) fn shorten(text: &str) -> String {
    if text.len() <= MAX_MESSAGE_LEN {
        return text.to_owned();
    }
    let mut end = MAX_MESSAGE_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use matrix_sdk::{
        HttpError,
        ruma::{
            api::{
                EndpointError,
                error::{Error as ApiError, FromHttpResponseError},
            },
            exports::http,
        },
    };
    use serde_json::json;

    use super::{RequestContext, RequestError, map_http_error, max_from_message, shorten};
    use crate::requests::endpoint::endpoint_error;

    /// Builds the `HttpError` matrix-sdk would return for this answer to one of our requests.
    fn error_for(status: u16, headers: &[(&str, &str)], body: &str) -> HttpError {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = builder.body(body.as_bytes().to_vec()).unwrap();
        HttpError::from(FromHttpResponseError::<ApiError>::Server(endpoint_error(
            response,
        )))
    }

    /// The same through ruma's own error parsing (what typed ruma requests give).
    fn ruma_error_for(status: u16, body: &str) -> HttpError {
        let response = http::Response::builder()
            .status(status)
            .body(body.as_bytes())
            .unwrap();
        HttpError::from(FromHttpResponseError::<ApiError>::Server(
            ApiError::from_http_response(response),
        ))
    }

    fn map(status: u16, body: serde_json::Value) -> RequestError {
        map_http_error(
            &error_for(status, &[], &body.to_string()),
            RequestContext::Plain,
        )
    }

    fn map_delayed(status: u16, body: serde_json::Value) -> RequestError {
        map_http_error(
            &error_for(status, &[], &body.to_string()),
            RequestContext::DelayedSend,
        )
    }

    /// One captured Synapse 1.163.2 answer (`fixtures/synapse-1.163.2/`): status, headers and
    /// body, as the HTTP layer would receive it.
    fn captured(file: &str) -> HttpError {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/synapse-1.163.2"
        );
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/index.json")).unwrap())
                .unwrap();
        let entry = index["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["file"] == file)
            .unwrap_or_else(|| panic!("{file} is in the index"));
        let status = u16::try_from(entry["status"].as_u64().unwrap()).unwrap();
        let headers: Vec<(String, String)> = entry["headers"]
            .as_object()
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let body = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
        error_for(status, &headers, &body)
    }

    #[test]
    fn captured_synapse_answers_map_to_what_the_machine_acts_on() {
        let delayed = |file: &str| map_http_error(&captured(file), RequestContext::DelayedSend);
        let plain = |file: &str| map_http_error(&captured(file), RequestContext::Plain);
        assert_eq!(
            delayed("delayed_too_large_error.json"),
            RequestError::DelayTooLarge {
                max_delay_ms: Some(86_400_000)
            }
        );
        // The quota: 429 with a wait of most of an hour, the header read first.
        assert_eq!(
            delayed("delayed_too_many_scheduled_error.json"),
            RequestError::TooManyScheduled {
                retry_after: Some(Duration::from_secs(3595))
            }
        );
        assert!(matches!(
            delayed("delayed_negative_delay_error.json"),
            RequestError::Http { status: 400, errcode: Some(code), .. } if code == "M_INVALID_PARAM"
        ));
        // Forms Synapse 1.163.2 does not serve: move on to the next one.
        assert_eq!(
            delayed("delayed_dedicated_endpoint_unrecognized.json"),
            RequestError::Unrecognized
        );
        assert_eq!(
            plain("delayed_stable_v1_restart_unrecognized.json"),
            RequestError::Unrecognized
        );
        // Finalised or unknown: 404, never 409 on Synapse 1.163.2.
        for file in [
            "delayed_restart_cancelled_404.json",
            "delayed_send_already_sent_404.json",
            "delayed_unknown_restart_404.json",
        ] {
            assert_eq!(plain(file), RequestError::NotFound, "{file}");
        }
    }

    #[test]
    fn not_found() {
        let body = json!({"errcode": "M_NOT_FOUND", "error": "Delayed event not found"});
        assert_eq!(map(404, body), RequestError::NotFound);
    }

    #[test]
    fn conflict_any_errcode() {
        assert_eq!(
            map(409, json!({"errcode": "M_UNKNOWN", "error": "x"})),
            RequestError::Conflict
        );
    }

    #[test]
    fn unrecognized_404_and_405() {
        let body = json!({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"});
        assert_eq!(map(404, body.clone()), RequestError::Unrecognized);
        assert_eq!(map(405, body), RequestError::Unrecognized);
        let bare = map_http_error(&error_for(405, &[], "<html>"), RequestContext::Plain);
        assert_eq!(bare, RequestError::Unrecognized);
    }

    #[test]
    fn rate_limited_body() {
        let body =
            json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too many", "retry_after_ms": 1500});
        assert_eq!(
            map(429, body),
            RequestError::RateLimited {
                retry_after: Some(Duration::from_millis(1500))
            }
        );
    }

    #[test]
    fn rate_limited_header_wins() {
        let body = json!({"errcode": "M_LIMIT_EXCEEDED", "error": "x", "retry_after_ms": 1500});
        let error = error_for(429, &[("retry-after", "7")], &body.to_string());
        assert_eq!(
            map_http_error(&error, RequestContext::Plain),
            RequestError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn rate_limited_without_details() {
        let error = error_for(429, &[], "Too Many Requests");
        assert_eq!(
            map_http_error(&error, RequestContext::Plain),
            RequestError::RateLimited { retry_after: None }
        );
        assert!(map_http_error(&error, RequestContext::Plain).is_transient());
    }

    #[test]
    fn delay_too_large_synapse() {
        let body = json!({
            "errcode": "ORG.MATRIX.MSC4140_DELAY_TOO_LARGE",
            "error": "The requested delay (99999999999ms) exceeds the allowed maximum (86400000ms)"
        });
        assert_eq!(
            map_delayed(400, body),
            RequestError::DelayTooLarge {
                max_delay_ms: Some(86_400_000)
            }
        );
    }

    #[test]
    fn delay_too_large_max_delay_exceeded() {
        let body = json!({"errcode": "M_MAX_DELAY_EXCEEDED", "error": "x", "max_delay": 1000});
        assert_eq!(
            map_delayed(400, body),
            RequestError::DelayTooLarge {
                max_delay_ms: Some(1000)
            }
        );
    }

    #[test]
    fn delay_too_large_prefixed_in_m_unknown() {
        let body = json!({
            "errcode": "M_UNKNOWN",
            "error": "x",
            "org.matrix.msc4140.errcode": "M_MAX_DELAY_EXCEEDED",
            "org.matrix.msc4140.max_delay": 2000
        });
        assert_eq!(
            map_delayed(400, body),
            RequestError::DelayTooLarge {
                max_delay_ms: Some(2000)
            }
        );
    }

    #[test]
    fn delay_too_large_forbidden_only_on_delayed_sends() {
        let body =
            json!({"errcode": "M_FORBIDDEN", "error": "Delay exceeds the maximum of 5000ms"});
        assert_eq!(
            map_delayed(403, body.clone()),
            RequestError::DelayTooLarge {
                max_delay_ms: Some(5000)
            }
        );
        assert!(matches!(
            map(403, body),
            RequestError::Http { status: 403, .. }
        ));
    }

    #[test]
    fn delayed_events_disallowed() {
        let body = json!({"errcode": "M_FORBIDDEN", "error": "Sending delayed events has been disallowed"});
        assert_eq!(
            map_delayed(403, body),
            RequestError::DelayedEventsDisallowed
        );
        // Constructed: other wordings of a switched-off feature (the merged MSC4140 leaves the
        // message free).
        for message in [
            "Delayed events are disabled",
            "delayed events are not enabled",
        ] {
            let body = json!({"errcode": "M_FORBIDDEN", "error": message});
            assert_eq!(
                map_delayed(403, body),
                RequestError::DelayedEventsDisallowed,
                "{message}"
            );
        }
    }

    #[test]
    fn forbidden_delay_too_large_with_the_maximum_in_the_body() {
        // Constructed from the merged MSC4140: 403 `M_FORBIDDEN` for a delay above the
        // maximum; a server that adds the maximum (either name) has it read.
        for field in ["max_delay", "org.matrix.msc4140.max_delay"] {
            let mut body = json!({"errcode": "M_FORBIDDEN", "error": "Forbidden"});
            body[field] = json!(30_000);
            assert_eq!(
                map_delayed(403, body),
                RequestError::DelayTooLarge {
                    max_delay_ms: Some(30_000)
                },
                "{field}"
            );
        }
        // A 403 that says neither stays a plain refusal (for the machine: no dead-man switch).
        let body = json!({"errcode": "M_FORBIDDEN", "error": "User not in room"});
        assert!(matches!(
            map_delayed(403, body),
            RequestError::Http { status: 403, .. }
        ));
    }

    #[test]
    fn too_many_scheduled() {
        let body = json!({"errcode": "M_MAX_DELAYED_EVENTS_EXCEEDED", "error": "x"});
        assert_eq!(
            map_delayed(400, body),
            RequestError::TooManyScheduled { retry_after: None }
        );
        let prefixed = json!({
            "errcode": "M_UNKNOWN", "error": "x",
            "org.matrix.msc4140.errcode": "M_MAX_DELAYED_EVENTS_EXCEEDED"
        });
        assert_eq!(
            map_delayed(400, prefixed),
            RequestError::TooManyScheduled { retry_after: None }
        );
        // Synapse's quota answer, only on a delayed send; elsewhere a 429 is a rate limit.
        let quota = json!({
            "errcode": "M_LIMIT_EXCEEDED",
            "error": "The maximum number of delayed events has been reached.",
            "retry_after_ms": 3_594_662
        });
        assert_eq!(
            map_delayed(429, quota.clone()),
            RequestError::TooManyScheduled {
                retry_after: Some(Duration::from_millis(3_594_662))
            }
        );
        assert_eq!(
            map(429, quota),
            RequestError::RateLimited {
                retry_after: Some(Duration::from_millis(3_594_662))
            }
        );
        // The merged MSC's bare 429: a short wait is waited out like a rate limit, a wait of
        // more than a minute is the quota (the time until our next scheduled event fires).
        let bare = json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests"});
        let error = error_for(429, &[("retry-after", "12")], &bare.to_string());
        assert_eq!(
            map_http_error(&error, RequestContext::DelayedSend),
            RequestError::RateLimited {
                retry_after: Some(Duration::from_secs(12))
            }
        );
        let error = error_for(429, &[("retry-after", "3595")], &bare.to_string());
        assert_eq!(
            map_http_error(&error, RequestContext::DelayedSend),
            RequestError::TooManyScheduled {
                retry_after: Some(Duration::from_secs(3595))
            }
        );
        assert_eq!(
            map_http_error(&error, RequestContext::Plain),
            RequestError::RateLimited {
                retry_after: Some(Duration::from_secs(3595))
            }
        );
    }

    #[test]
    fn which_answers_prove_an_endpoint() {
        assert!(RequestError::NotFound.proves_endpoint());
        assert!(RequestError::Conflict.proves_endpoint());
        assert!(RequestError::DelayedEventsDisallowed.proves_endpoint());
        assert!(
            RequestError::Http {
                status: 403,
                errcode: None,
                message: String::new()
            }
            .proves_endpoint()
        );
        assert!(!RequestError::Unrecognized.proves_endpoint());
        assert!(!RequestError::RateLimited { retry_after: None }.proves_endpoint());
        assert!(
            !RequestError::Http {
                status: 502,
                errcode: None,
                message: String::new()
            }
            .proves_endpoint()
        );
        assert!(
            !RequestError::Network {
                timed_out: true,
                message: String::new()
            }
            .proves_endpoint()
        );
    }

    #[test]
    fn any_400_on_side_sync_is_unknown_pos() {
        for body in [
            json!({"errcode": "M_UNKNOWN_POS", "error": "Unknown position"}),
            json!({"errcode": "M_UNKNOWN", "error": "Invalid stream token"}),
        ] {
            let error = error_for(400, &[], &body.to_string());
            assert_eq!(
                map_http_error(&error, RequestContext::SideSync),
                RequestError::UnknownPos
            );
            assert!(matches!(
                map_http_error(&error, RequestContext::Plain),
                RequestError::Http { status: 400, .. }
            ));
        }
    }

    #[test]
    fn generic_http_error_keeps_details() {
        let body = json!({"errcode": "M_FORBIDDEN", "error": "You are not in the room"});
        assert_eq!(
            map(403, body),
            RequestError::Http {
                status: 403,
                errcode: Some("M_FORBIDDEN".to_owned()),
                message: "You are not in the room".to_owned(),
            }
        );
        let server = map(502, json!({"errcode": "M_UNKNOWN", "error": "bad gateway"}));
        assert!(server.is_transient());
    }

    #[test]
    fn typed_ruma_errors_map_too() {
        let body = json!({"errcode": "M_NOT_FOUND", "error": "x"}).to_string();
        assert_eq!(
            map_http_error(&ruma_error_for(404, &body), RequestContext::Plain),
            RequestError::NotFound
        );
        let body = json!({"errcode": "M_LIMIT_EXCEEDED", "error": "x", "retry_after_ms": 10});
        assert_eq!(
            map_http_error(
                &ruma_error_for(429, &body.to_string()),
                RequestContext::Plain
            ),
            RequestError::RateLimited {
                retry_after: Some(Duration::from_millis(10))
            }
        );
    }

    #[test]
    fn cached_errors_are_unwrapped() {
        let inner = error_for(
            404,
            &[],
            &json!({"errcode": "M_NOT_FOUND", "error": ""}).to_string(),
        );
        let error = HttpError::Cached(std::sync::Arc::new(inner));
        assert_eq!(
            map_http_error(&error, RequestContext::Plain),
            RequestError::NotFound
        );
    }

    #[test]
    fn max_parsing() {
        assert_eq!(
            max_from_message("exceeds the allowed maximum (86400000ms)"),
            Some(86_400_000)
        );
        assert_eq!(
            max_from_message("The requested delay (5ms) exceeds max 10"),
            Some(10)
        );
        assert_eq!(max_from_message("too large"), None);
        assert_eq!(max_from_message("maximum 99999999999999999999999"), None);
    }

    #[test]
    fn display() {
        let error = RequestError::Http {
            status: 403,
            errcode: Some("M_FORBIDDEN".to_owned()),
            message: "not in room".to_owned(),
        };
        assert_eq!(error.to_string(), "http error 403 M_FORBIDDEN: not in room");
        let error = RequestError::Http {
            status: 502,
            errcode: None,
            message: String::new(),
        };
        assert_eq!(error.to_string(), "http error 502 (no errcode): ");
    }

    #[test]
    fn long_messages_are_shortened() {
        let long = "é".repeat(1000);
        let short = shorten(&long);
        assert!(short.len() <= super::MAX_MESSAGE_LEN + '…'.len_utf8());
        assert!(short.ends_with('…'));
    }
}
