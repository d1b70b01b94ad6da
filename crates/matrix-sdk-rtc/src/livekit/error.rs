//! [`LiveKitError`]: why we could not get LiveKit credentials.

use std::fmt;

use crate::RequestError;

/// Which token endpoint answered (or failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenEndpoint {
    /// `POST {livekit_service_url}/get_token` of the JWT service (lk-jwt-service, "Matrix
    /// 2.0"). Its identity is the one peers compute for our sticky membership.
    ServiceGetToken,
    /// `POST {livekit_service_url}/sfu/get`, the JWT service's legacy endpoint, used when the
    /// service does not serve `/get_token` (404 or 405). Its identity is `"{user_id}:{device_id}"`,
    /// which peers reading our sticky membership do not expect (see
    /// [`LiveKitCredentials::identity_matches_membership`](crate::LiveKitCredentials::identity_matches_membership)).
    ServiceLegacySfuGet,
    /// `POST /_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token` on the
    /// homeserver (js-sdk 43's client; lk-jwt-service serves it behind Synapse's MSC4512
    /// application-service proxy).
    HomeserverUnstable,
    /// `POST /_matrix/client/v1/rtc/livekit/get_token` on the homeserver (MSC4195).
    HomeserverStable,
}

impl TokenEndpoint {
    /// A short name for logs and messages (never a URL: the app's logs need no hosts).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceGetToken => "service /get_token",
            Self::ServiceLegacySfuGet => "service /sfu/get",
            Self::HomeserverUnstable => "homeserver unstable get_token",
            Self::HomeserverStable => "homeserver v1 get_token",
        }
    }
}

impl fmt::Display for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`RtcCall::livekit_credentials`](crate::RtcCall::livekit_credentials) failed.
///
/// No variant carries the OpenID token, the JWT or a delay ID, and neither do their
/// messages: a message the service sent back is dropped if it quotes our token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LiveKitError {
    /// The client is not logged in.
    #[error("the client is not logged in")]
    NotLoggedIn,
    /// We have no membership in this call: join it first. (Credentials are for our member
    /// ID: the identity derives from it.)
    #[error("we are not in this call: join it first")]
    NotJoined,
    /// The pump is not running.
    #[error("the rtc pump is not running")]
    DriverStopped,
    /// No LiveKit transport to get a token for: our membership publishes none we know how
    /// to reach, and the homeserver advertises none.
    #[error("no LiveKit transport: our membership publishes none we can reach")]
    NoTransport,
    /// Asking the homeserver for its RTC transports failed.
    #[error("asking the homeserver for its RTC transports failed: {0}")]
    Discovery(RequestError),
    /// The homeserver did not give us an OpenID token.
    #[error("the homeserver did not give us an OpenID token: {0}")]
    OpenId(RequestError),
    /// The token service (or the homeserver's token endpoint) could not be reached, or did
    /// not answer in time. Worth retrying.
    #[error("the LiveKit token endpoint ({endpoint}) is unreachable: {message}")]
    Unreachable {
        /// The endpoint we tried.
        endpoint: TokenEndpoint,
        /// Whether the request timed out.
        timed_out: bool,
        /// What went wrong (no URL, no token).
        message: String,
    },
    /// The token endpoint refused: an HTTP error status (after the fallbacks: a 404 of the
    /// last endpoint tried lands here too).
    #[error(
        "the LiveKit token endpoint ({endpoint}) refused: {status} {}: {message}",
        errcode.as_deref().unwrap_or("(no errcode)")
    )]
    Refused {
        /// The endpoint that refused.
        endpoint: TokenEndpoint,
        /// HTTP status code.
        status: u16,
        /// Matrix-style error code of the body, if any (`M_UNAUTHORIZED`, `M_BAD_JSON`, …).
        errcode: Option<String>,
        /// The body's `error` message (shortened), possibly empty.
        message: String,
    },
    /// The token endpoint answered success with something we cannot use: not `{url, jwt}`,
    /// or a JWT whose payload lacks `exp`, `sub` or `video.room`.
    #[error("the LiveKit token endpoint ({endpoint}) answered something we cannot use: {reason}")]
    MalformedAnswer {
        /// The endpoint that answered.
        endpoint: TokenEndpoint,
        /// What was wrong.
        reason: String,
    },
    /// The homeserver's token endpoint failed in another way.
    #[error("the homeserver token endpoint ({endpoint}) failed: {error}")]
    Homeserver {
        /// The endpoint we tried.
        endpoint: TokenEndpoint,
        /// The failure.
        error: RequestError,
    },
}

impl LiveKitError {
    /// Whether trying again later may succeed: unreachable endpoints, server-side errors and
    /// rate limits (of the service or the homeserver).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Refused { status, .. } => *status >= 500 || *status == 429,
            Self::Discovery(error) | Self::OpenId(error) | Self::Homeserver { error, .. } => {
                error.is_transient()
            }
            _ => false,
        }
    }
}

/// Longest server-provided message we keep, in bytes.
const MAX_MESSAGE_LEN: usize = 512;

/// A message from a server, shortened, and dropped when it quotes one of `secrets`.
pub(crate) fn scrubbed_message(text: &str, secrets: &[&str]) -> String {
    if secrets
        .iter()
        .any(|secret| !secret.is_empty() && text.contains(secret))
    {
        return "(message withheld: it quoted a secret)".to_owned();
    }
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
    use super::*;

    #[test]
    fn messages_quoting_a_secret_are_withheld() {
        assert_eq!(scrubbed_message("bad token", &["s3cret"]), "bad token");
        assert!(!scrubbed_message("token s3cret is bad", &["s3cret"]).contains("s3cret"));
        assert_eq!(scrubbed_message("anything", &[""]), "anything");
        let long = "é".repeat(400);
        assert!(scrubbed_message(&long, &[]).len() <= MAX_MESSAGE_LEN + 3);
    }

    #[test]
    fn transient_errors() {
        let refused = |status| LiveKitError::Refused {
            endpoint: TokenEndpoint::ServiceGetToken,
            status,
            errcode: None,
            message: String::new(),
        };
        assert!(refused(503).is_transient());
        assert!(refused(429).is_transient());
        assert!(!refused(401).is_transient());
        assert!(
            LiveKitError::Unreachable {
                endpoint: TokenEndpoint::ServiceLegacySfuGet,
                timed_out: true,
                message: "request timed out".to_owned(),
            }
            .is_transient()
        );
        assert!(!LiveKitError::NotJoined.is_transient());
    }
}
