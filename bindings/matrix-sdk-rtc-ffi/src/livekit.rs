//! [`LiveKitCredentials`]: what an app needs to connect to a call's media.
use std::fmt;

use matrix_sdk_rtc as rtc;

/// The SFU to connect to, the JWT for it and our LiveKit identity there
/// ([`RtcClient::livekit_credentials`](crate::RtcClient::livekit_credentials)).
///
/// `jwt` is a bearer secret: hand it to the LiveKit SDK, never log it (`Debug` hides it).
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct LiveKitCredentials {
    /// The JWT service's base URL, when a service issued the JWT (`None`: the homeserver).
    pub service_url: Option<String>,
    /// The SFU's WebSocket URL.
    pub sfu_url: String,
    /// The LiveKit access token.
    pub jwt: String,
    /// Our LiveKit participant identity (the JWT's `sub`).
    pub identity: String,
    /// Whether `identity` is the one peers compute for our membership (`false` only when the
    /// legacy `/sfu/get` endpoint issued it).
    pub identity_matches_membership: bool,
    /// The LiveKit room the JWT grants.
    pub room: String,
    /// When the JWT expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// Which endpoint issued it: `service /get_token`, `service /sfu/get`,
    /// `homeserver unstable get_token` or `homeserver v1 get_token`.
    pub endpoint: String,
}

impl fmt::Debug for LiveKitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveKitCredentials")
            .field("service_url", &self.service_url)
            .field("sfu_url", &self.sfu_url)
            .field("jwt", &"<redacted>")
            .field("identity", &self.identity)
            .field(
                "identity_matches_membership",
                &self.identity_matches_membership,
            )
            .field("room", &self.room)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl From<rtc::LiveKitCredentials> for LiveKitCredentials {
    fn from(credentials: rtc::LiveKitCredentials) -> Self {
        Self {
            endpoint: credentials.endpoint.as_str().to_owned(),
            service_url: credentials.service_url,
            sfu_url: credentials.sfu_url,
            jwt: credentials.jwt,
            identity: credentials.identity,
            identity_matches_membership: credentials.identity_matches_membership,
            room: credentials.room,
            expires_at_ms: credentials.expires_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LiveKitCredentials;

    #[test]
    fn debug_hides_the_jwt() {
        let credentials = LiveKitCredentials {
            service_url: None,
            sfu_url: "wss://sfu".to_owned(),
            jwt: "header.payload.signature".to_owned(),
            identity: "me".to_owned(),
            identity_matches_membership: true,
            room: "room".to_owned(),
            expires_at_ms: 1,
            endpoint: "service /get_token".to_owned(),
        };
        assert!(!format!("{credentials:?}").contains("payload"));
    }
}
