//! Wire names and bodies of LiveKit credentials: the JWT service's two endpoints, the
//! homeserver token endpoint and the transports list (docs/protocol-next.md §5.1–§5.2 in the
//! shared docs; docs/protocol.md §5.10–§5.11).
//!
//! Every request body that holds an OpenID token has a `Debug` that leaves it out.

use std::fmt;

use serde::{Deserialize, Serialize};

// --- Transports ---

/// `type` of a LiveKit transport as js-sdk 43, Element Call and Synapse 1.163.2 know it.
pub(crate) const TYPE_LIVEKIT: &str = "livekit";
/// `type` of a LiveKit transport in the newer MSC4195 drafts (unconfirmed in the final text).
pub(crate) const TYPE_M_LIVEKIT: &str = "m.livekit";

/// `GET` the RTC transports, stable path (MSC4143). Synapse 1.163.2 serves only the unstable
/// one, which `requests` defines.
pub(crate) const STABLE_TRANSPORTS_PATH: &str = "/_matrix/client/v1/rtc/transports";

/// The answer of either transports path: `{"rtc_transports": [...]}`, or `{}`.
#[derive(Debug, Deserialize)]
pub(crate) struct TransportsAnswer {
    #[serde(default)]
    pub(crate) rtc_transports: Option<Vec<Box<serde_json::value::RawValue>>>,
}

/// One advertised (or published) transport: only the fields we select on.
#[derive(Debug, Deserialize)]
pub(crate) struct TransportEntry {
    #[serde(rename = "type")]
    pub(crate) transport_type: String,
    /// The JWT service (deprecated in MSC4195, what js-sdk 43 publishes).
    #[serde(default)]
    pub(crate) livekit_service_url: Option<String>,
    /// The SFU itself (`wss://…`): tokens then come from the homeserver.
    #[serde(default)]
    pub(crate) url: Option<String>,
}

// --- The JWT service (lk-jwt-service) ---

/// Appended to `livekit_service_url`: the "Matrix 2.0" token endpoint.
pub(crate) const SERVICE_GET_TOKEN: &str = "/get_token";
/// Appended to `livekit_service_url`: the legacy token endpoint.
pub(crate) const SERVICE_LEGACY_SFU_GET: &str = "/sfu/get";

/// The OpenID token as the JWT service wants it (the homeserver's answer, unchanged).
#[derive(Serialize)]
pub(crate) struct OpenIdToken<'a> {
    pub(crate) access_token: &'a str,
    pub(crate) token_type: &'a str,
    pub(crate) matrix_server_name: &'a str,
    pub(crate) expires_in: u64,
}

/// `member` of a token request.
#[derive(Debug, Serialize)]
pub(crate) struct Member<'a> {
    pub(crate) id: &'a str,
    pub(crate) claimed_user_id: &'a str,
    pub(crate) claimed_device_id: &'a str,
}

/// `POST {livekit_service_url}/get_token`. The service rejects unknown fields, so this is
/// exactly its documented body; we never send the optional `delay_*` fields (see the
/// module doc of `livekit`).
#[derive(Serialize)]
pub(crate) struct GetTokenBody<'a> {
    pub(crate) room_id: &'a str,
    pub(crate) slot_id: &'a str,
    pub(crate) openid_token: OpenIdToken<'a>,
    pub(crate) member: Member<'a>,
}

/// `POST {livekit_service_url}/sfu/get`: the legacy body (no `delay_*` fields either).
#[derive(Serialize)]
pub(crate) struct LegacySfuGetBody<'a> {
    pub(crate) room: &'a str,
    pub(crate) openid_token: OpenIdToken<'a>,
    pub(crate) device_id: &'a str,
}

impl fmt::Debug for GetTokenBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetTokenBody")
            .field("room_id", &self.room_id)
            .field("slot_id", &self.slot_id)
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for LegacySfuGetBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacySfuGetBody")
            .field("room", &self.room)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// The answer of either service endpoint (and of the stable homeserver endpoint).
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    /// The SFU's WebSocket URL (js-sdk 43 types the homeserver answer as `{jwt}` only).
    #[serde(default)]
    pub(crate) url: Option<String>,
    pub(crate) jwt: String,
}

impl fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A Matrix-style error body (`{errcode, error}`), as the service answers refusals.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) errcode: Option<String>,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

// --- The homeserver token endpoint (MSC4195) ---

/// The body of the homeserver token endpoint: js-sdk 43's fields plus
/// `member.claimed_user_id`, which lk-jwt-service's homeserver endpoint accepts (it takes the
/// user from the homeserver).
#[derive(Debug, Serialize)]
pub(crate) struct HomeserverGetTokenBody<'a> {
    /// The SFU (one of the homeserver's transports).
    pub(crate) url: &'a str,
    pub(crate) room_id: &'a str,
    pub(crate) slot_id: &'a str,
    pub(crate) member: Member<'a>,
}

/// `POST`, unstable: what js-sdk 43 calls and lk-jwt-service serves behind Synapse's MSC4512
/// application-service proxy.
pub(crate) const HOMESERVER_GET_TOKEN_UNSTABLE: &str =
    "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token";
/// `POST`, stable (MSC4195@PR): no known server serves it yet.
pub(crate) const HOMESERVER_GET_TOKEN_STABLE: &str = "/_matrix/client/v1/rtc/livekit/get_token";

// --- The JWT payload ---

/// The claims of a LiveKit JWT we read (without verifying the signature: that is the SFU's
/// job; we only need the expiry, the identity and the room).
#[derive(Debug, Deserialize)]
pub(crate) struct JwtClaims {
    /// Expiry, seconds since the Unix epoch.
    pub(crate) exp: Option<f64>,
    /// The LiveKit participant identity.
    #[serde(default)]
    pub(crate) sub: Option<String>,
    #[serde(default)]
    pub(crate) video: Option<VideoGrant>,
}

/// `video` of a LiveKit JWT.
#[derive(Debug, Deserialize)]
pub(crate) struct VideoGrant {
    /// The LiveKit room (the alias of `[room_id, slot_id]` for `/get_token`).
    #[serde(default)]
    pub(crate) room: Option<String>,
}
