//! LiveKit credentials for a call we are in: the SFU URL, a JWT and our LiveKit identity.
//!
//! Where the token comes from follows the transport our membership publishes on (the one
//! peers subscribe to), docs/protocol.md §5.10–§5.11:
//!
//! * a transport with a `livekit_service_url` (what js-sdk 43 and Element Call publish): a
//!   fresh OpenID token from the homeserver (`Account::request_openid_token`), then the JWT
//!   service's `POST {livekit_service_url}/get_token` with `{room_id, slot_id, openid_token,
//!   member}`; when the service does not serve it (404 or 405), the legacy
//!   `POST {livekit_service_url}/sfu/get` with `{room, openid_token, device_id}`;
//! * a LiveKit transport with only an SFU `url` (newer MSC4195 drafts): the homeserver's
//!   `POST …/unstable/io.element.msc4195/rtc/livekit/get_token`, then the stable
//!   `POST /_matrix/client/v1/rtc/livekit/get_token`.
//!
//! When the app joins without a transport, [`RtcCall::join`](crate::RtcCall::join) picks one
//! from the homeserver's list (`discovery`: the unstable MSC4143 path, then the stable one).
//!
//! The identity peers compute for our sticky membership is
//! [`livekit_identity`](matrix_rtc_membership::livekit_identity)`(user, device, member_id)`;
//! `/get_token` and the homeserver endpoint mint exactly that, the legacy `/sfu/get` mints
//! `"{user}:{device}"` ([`LiveKitCredentials::identity_matches_membership`] says which).
//!
//! **Why outside the machine.** The `RtcMachine` decides the Matrix protocol: what to send to
//! the homeserver and when. Tokens are IO against a third-party service whose answers change
//! nothing in our membership, so which endpoint to try, the one-shot fallbacks and the cache
//! live here; the pump only tells us our member ID and the transport we published.
//!
//! **No retries, one cache.** Each endpoint is tried once per call (the fallbacks above are
//! not retries); [`LiveKitError::is_transient`] tells the app whether to try again. A token
//! is cached per call, for our member ID and transport, until shortly before its `exp` (60 s,
//! or half its remaining lifetime when that is shorter); concurrent calls share one fetch.
//!
//! **Secrets.** The OpenID token and the JWT are never logged or put into an error; the JWT
//! is handed to the app (that is its purpose) and hidden from `Debug`. We never send our
//! delayed leave's `delay_id` to the service (the optional `delay_*` fields of lk-jwt-service
//! are deprecated there; a service holding it could fire our leave, and our client keeps the
//! dead-man switch alive itself).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use matrix_rtc_machine::CallId;
use matrix_rtc_membership::livekit_identity;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId};
use tokio::sync::oneshot;
use tracing::{debug, instrument, warn};

use crate::{
    RtcClient,
    pump::{Control, OwnMember},
    requests::{RequestContext, map_http_error},
};

mod discovery;
mod error;
mod homeserver;
mod jwt;
mod request;
mod service;
mod wire;

pub(crate) use self::discovery::{advertised_transports, choose_transport};
pub use self::error::{LiveKitError, TokenEndpoint};
use self::{
    discovery::{TokenSource, token_source},
    service::Attempt,
};

/// Time limit of one request to a token endpoint or for discovery.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A cached token is renewed this long before it expires (at most).
const REFRESH_MARGIN_MS: u64 = 60_000;

/// What an app needs to connect to the call's media: the SFU, a JWT for it and our identity
/// there.
///
/// `Debug` hides the JWT.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveKitCredentials {
    /// The SFU's WebSocket URL (`wss://…`), to connect with the JWT.
    pub sfu_url: String,
    /// The LiveKit access token. A bearer secret: hand it to the LiveKit SDK, never log it.
    pub jwt: String,
    /// Our LiveKit participant identity: the JWT's `sub`.
    pub identity: String,
    /// Whether [`identity`](Self::identity) is the one peers compute for our membership
    /// (`false` only for the legacy `/sfu/get` endpoint, whose identity is
    /// `"{user_id}:{device_id}"`: peers then cannot match our media to our membership).
    pub identity_matches_membership: bool,
    /// The LiveKit room the JWT grants (`video.room`): for `/get_token` and the homeserver
    /// endpoint the alias of `[room_id, slot_id]`.
    pub room: String,
    /// When the JWT expires (`exp`), in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// The JWT service's base URL, when a service issued the JWT (`None`: the homeserver).
    pub service_url: Option<String>,
    /// Which endpoint issued the JWT.
    pub endpoint: TokenEndpoint,
}

impl fmt::Debug for LiveKitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveKitCredentials")
            .field("sfu_url", &self.sfu_url)
            .field("jwt", &"<redacted>")
            .field("identity", &self.identity)
            .field(
                "identity_matches_membership",
                &self.identity_matches_membership,
            )
            .field("room", &self.room)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("service_url", &self.service_url)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// The per-client cache of credentials, one slot per call.
#[derive(Debug, Default)]
pub(crate) struct LiveKitTokens {
    calls: Mutex<HashMap<CallId, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

/// A cached token and what it was issued for.
#[derive(Debug)]
struct Cached {
    key: CacheKey,
    credentials: LiveKitCredentials,
    /// When to fetch a new one, in ms since the Unix epoch.
    refresh_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheKey {
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
    member_id: String,
    source: TokenSource,
}

impl LiveKitTokens {
    fn slot(&self, call: &CallId) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        let mut calls = self
            .calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        calls.entry(call.clone()).or_default().clone()
    }

    fn forget(&self, call: &CallId) {
        let mut calls = self
            .calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        calls.remove(call);
    }
}

/// LiveKit credentials for our membership of `call` (see the module doc).
#[instrument(skip_all, fields(room = %call.room_id(), slot = call.slot_id()))]
pub(crate) async fn credentials(
    rtc: &RtcClient,
    call: &CallId,
) -> Result<LiveKitCredentials, LiveKitError> {
    let client = rtc.client();
    let (Some(user_id), Some(device_id)) = (client.user_id(), client.device_id()) else {
        return Err(LiveKitError::NotLoggedIn);
    };
    let Some(own) = own_member(rtc, call).await? else {
        rtc.livekit_tokens().forget(call);
        return Err(LiveKitError::NotJoined);
    };
    let source = match own.transport.as_ref() {
        Some(transport) => token_source(transport).ok_or(LiveKitError::NoTransport)?,
        // Not recorded (cannot happen for a join through this pump): what join would pick.
        None => advertised_source(rtc).await?,
    };
    let key = CacheKey {
        user_id: user_id.to_owned(),
        device_id: device_id.to_owned(),
        member_id: own.member_id,
        source,
    };

    let slot = rtc.livekit_tokens().slot(call);
    let mut cached = slot.lock().await;
    let now = wall_clock_ms();
    if let Some(entry) = cached.as_ref()
        && entry.key == key
        && now < entry.refresh_at_ms
    {
        debug!("LiveKit credentials from the cache");
        return Ok(entry.credentials.clone());
    }
    *cached = None;
    let credentials = fetch(rtc, call, &key).await?;
    let now = wall_clock_ms();
    if credentials.expires_at_ms > now {
        let margin = REFRESH_MARGIN_MS.min((credentials.expires_at_ms - now) / 2);
        *cached = Some(Cached {
            key,
            credentials: credentials.clone(),
            refresh_at_ms: credentials.expires_at_ms - margin,
        });
    } else {
        warn!("the LiveKit JWT has already expired by our clock; not caching it");
    }
    debug!(
        endpoint = %credentials.endpoint,
        identity = %credentials.identity,
        expires_at_ms = credentials.expires_at_ms,
        "got LiveKit credentials"
    );
    Ok(credentials)
}

/// Our member ID and published transport in `call`, from the pump.
async fn own_member(rtc: &RtcClient, call: &CallId) -> Result<Option<OwnMember>, LiveKitError> {
    let (reply, answer) = oneshot::channel();
    rtc.send_control(Control::OwnMember {
        call: call.clone(),
        reply,
    })
    .await
    .map_err(|_| LiveKitError::DriverStopped)?;
    answer.await.map_err(|_| LiveKitError::DriverStopped)
}

/// The token source of the transport the homeserver advertises.
async fn advertised_source(rtc: &RtcClient) -> Result<TokenSource, LiveKitError> {
    let advertised = advertised_transports(rtc.api())
        .await
        .map_err(LiveKitError::Discovery)?;
    choose_transport(&advertised)
        .as_ref()
        .and_then(token_source)
        .ok_or(LiveKitError::NoTransport)
}

/// Asks the endpoints of `key.source` for a token, in order.
async fn fetch(
    rtc: &RtcClient,
    call: &CallId,
    key: &CacheKey,
) -> Result<LiveKitCredentials, LiveKitError> {
    let expected_identity =
        livekit_identity(key.user_id.as_str(), key.device_id.as_str(), &key.member_id);
    match &key.source {
        TokenSource::Service { service_url } => {
            let openid = rtc
                .client()
                .account()
                .request_openid_token()
                .await
                .map_err(|error| match error {
                    matrix_sdk::Error::Http(error) => {
                        LiveKitError::OpenId(map_http_error(&error, RequestContext::Plain))
                    }
                    matrix_sdk::Error::AuthenticationRequired => LiveKitError::NotLoggedIn,
                    other => LiveKitError::OpenId(crate::RequestError::Other(other.to_string())),
                })?;
            let token_type = openid.token_type.to_string();
            let openid_token = || wire::OpenIdToken {
                access_token: &openid.access_token,
                token_type: &token_type,
                matrix_server_name: openid.matrix_server_name.as_str(),
                expires_in: openid.expires_in.as_secs(),
            };
            let secrets = [openid.access_token.as_str()];
            let http = rtc.client().http_client();
            let body = wire::GetTokenBody {
                room_id: call.room_id().as_str(),
                slot_id: call.slot_id(),
                openid_token: openid_token(),
                member: wire::Member {
                    id: &key.member_id,
                    claimed_user_id: key.user_id.as_str(),
                    claimed_device_id: key.device_id.as_str(),
                },
            };
            let mut endpoint = TokenEndpoint::ServiceGetToken;
            let mut attempt = service::post(http, service_url, endpoint, &body, &secrets).await?;
            if let Attempt::NotServed { status } = attempt {
                debug!(status, "the JWT service has no /get_token, trying /sfu/get");
                endpoint = TokenEndpoint::ServiceLegacySfuGet;
                let body = wire::LegacySfuGetBody {
                    room: call.room_id().as_str(),
                    openid_token: openid_token(),
                    device_id: key.device_id.as_str(),
                };
                attempt = service::post(http, service_url, endpoint, &body, &secrets).await?;
            }
            let answer = match attempt {
                Attempt::Answered(answer) => answer,
                Attempt::NotServed { status } => {
                    return Err(LiveKitError::Refused {
                        endpoint,
                        status,
                        errcode: None,
                        message: "the service serves neither /get_token nor /sfu/get".to_owned(),
                    });
                }
            };
            let sfu_url = answer.url.filter(|url| !url.is_empty()).ok_or_else(|| {
                LiveKitError::MalformedAnswer {
                    endpoint,
                    reason: "the answer has no `url`".to_owned(),
                }
            })?;
            build(
                endpoint,
                sfu_url,
                answer.jwt,
                Some(service_url.clone()),
                &expected_identity,
            )
        }
        TokenSource::Homeserver { sfu_url } => {
            let body = wire::HomeserverGetTokenBody {
                url: sfu_url,
                room_id: call.room_id().as_str(),
                slot_id: call.slot_id(),
                member: wire::Member {
                    id: &key.member_id,
                    claimed_user_id: key.user_id.as_str(),
                    claimed_device_id: key.device_id.as_str(),
                },
            };
            let answered = homeserver::get_token(rtc.client(), &body).await?;
            let url = answered
                .answer
                .url
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| sfu_url.clone());
            build(
                answered.endpoint,
                url,
                answered.answer.jwt,
                None,
                &expected_identity,
            )
        }
    }
}

/// Credentials from an answer, with what its JWT says.
fn build(
    endpoint: TokenEndpoint,
    sfu_url: String,
    jwt: String,
    service_url: Option<String>,
    expected_identity: &str,
) -> Result<LiveKitCredentials, LiveKitError> {
    let facts =
        jwt::read(&jwt).map_err(|reason| LiveKitError::MalformedAnswer { endpoint, reason })?;
    let identity_matches_membership = facts.identity == expected_identity;
    if !identity_matches_membership {
        // Identities are pseudonyms peers compute anyway: not a secret.
        warn!(
            %endpoint,
            identity = %facts.identity,
            expected = %expected_identity,
            "the LiveKit identity is not the one peers compute for our membership"
        );
    }
    Ok(LiveKitCredentials {
        sfu_url,
        jwt,
        identity: facts.identity,
        identity_matches_membership,
        room: facts.room,
        expires_at_ms: facts.expires_at_ms,
        service_url,
        endpoint,
    })
}

/// Milliseconds since the Unix epoch (0 before it).
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_jwt() {
        let credentials = LiveKitCredentials {
            sfu_url: "wss://sfu".to_owned(),
            jwt: "eyJ.secret.jwt".to_owned(),
            identity: "id".to_owned(),
            identity_matches_membership: true,
            room: "room".to_owned(),
            expires_at_ms: 5,
            service_url: Some("https://jwt".to_owned()),
            endpoint: TokenEndpoint::ServiceGetToken,
        };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("wss://sfu") && shown.contains("<redacted>"));
    }
}
