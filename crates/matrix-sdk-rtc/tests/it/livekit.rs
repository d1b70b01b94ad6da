//! LiveKit credentials against a real Synapse and a *stand-in* LiveKit JWT service.
//!
//! lk-jwt-service cannot be installed from the registries this project reaches, so the
//! service is `rtc_test_homeserver::JwtService`: a small Python server that follows
//! lk-jwt-service's documented requests and answers (`/get_token`, the legacy `/sfu/get`, and
//! the homeserver endpoint behind Synapse's MSC4512 proxy), verifies our OpenID token against
//! the real Synapse and mints real LiveKit JWTs with the `livekit-api` package. The JWTs are
//! checked here with the stand-in's secret, independently of that library.
use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use matrix_sdk::ruma::RoomId;
use matrix_sdk_rtc::{JoinOptions, LiveKitError, RtcCall, TokenEndpoint, Transport};
use rtc_test_homeserver::{HomeserverConfig, JwtService, TestHomeserver, TestUser};
use sha2::{Digest, Sha256};

use crate::calls::support::{
    Peer, delayed_events_of, fast_timings, has_user, init_tracing, shared_room,
    wait_for_participants,
};

/// The LiveKit room alias of `[room_id, slot_id]` (MSC4195): computed here, from the rule.
fn alias(room_id: &RoomId, slot_id: &str) -> String {
    let json = serde_json::to_vec(&[room_id.as_str(), slot_id]).unwrap();
    STANDARD_NO_PAD.encode(Sha256::digest(json))
}

/// A server advertising the stand-in, alice and bob in one room, alice joined; bob sees her.
struct Scene {
    hs: TestHomeserver,
    jwt: JwtService,
    alice: Peer,
    bob: Peer,
    alice_user: TestUser,
    call: RtcCall,
}

async fn scene(config: HomeserverConfig) -> Scene {
    let (hs, jwt) = TestHomeserver::start_with_jwt_service(config)
        .await
        .expect("synapse and the jwt stand-in start");
    let alice_user = hs.register_user("alice").await.unwrap();
    let bob_user = hs.register_user("bob").await.unwrap();
    let room_id = shared_room(&hs, &alice_user, &[&bob_user]).await;
    let alice = Peer::start(&hs, &alice_user).await;
    let bob = Peer::start(&hs, &bob_user).await;
    let call = alice.room_call(&room_id).await;
    Scene {
        hs,
        jwt,
        alice,
        bob,
        alice_user,
        call,
    }
}

impl Scene {
    async fn join(&self) {
        self.call
            .join(JoinOptions::default().with_timings(fast_timings()))
            .await
            .expect("alice joins");
    }

    /// Alice's LiveKit identity as bob's client computes it from her membership.
    async fn identity_bob_sees(&self) -> String {
        let call = self.bob.room_call(self.call.room_id()).await;
        let seen = wait_for_participants(&call, "alice in bob's view", |p| {
            has_user(p, &self.alice_user.user_id)
        })
        .await;
        seen[0].livekit_identity.clone()
    }

    async fn paths(&self) -> Vec<(String, u16)> {
        self.jwt
            .requests()
            .await
            .expect("stand-in requests")
            .into_iter()
            .map(|request| (request.path, request.status))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_for_a_joined_member_match_what_peers_compute_and_are_cached() {
    init_tracing();
    let scene = scene(HomeserverConfig::default()).await;
    assert_eq!(
        scene.call.livekit_credentials().await,
        Err(LiveKitError::NotJoined)
    );
    scene.join().await;

    let credentials = scene.call.livekit_credentials().await.expect("credentials");
    assert_eq!(credentials.endpoint, TokenEndpoint::ServiceGetToken);
    assert_eq!(credentials.sfu_url, scene.jwt.sfu_url());
    assert_eq!(credentials.service_url.as_deref(), Some(scene.jwt.url()));
    let claims = scene
        .jwt
        .verify(&credentials.jwt)
        .expect("the JWT verifies");
    let identity = scene.identity_bob_sees().await;
    assert_eq!(claims["sub"], identity.as_str());
    assert_eq!(credentials.identity, identity);
    assert!(credentials.identity_matches_membership);
    let room = alias(scene.call.room_id(), scene.call.slot_id());
    assert_eq!(claims["video"]["room"], room.as_str());
    assert_eq!(credentials.room, room);
    assert_eq!(claims["video"]["roomJoin"], true);
    assert_eq!(
        Some(credentials.expires_at_ms / 1000),
        claims["exp"].as_u64()
    );
    assert!(!format!("{credentials:?}").contains(&credentials.jwt));

    // Cached: a second call (from another handle of the same call) asks nobody.
    let again = scene
        .alice
        .rtc
        .call(scene.call.id())
        .livekit_credentials()
        .await
        .expect("cached credentials");
    assert_eq!(again, credentials);
    assert_eq!(scene.paths().await, [("/get_token".to_owned(), 200)]);

    // After leaving there is nothing to get credentials for.
    scene.call.leave().await.expect("alice leaves");
    assert_eq!(
        scene.call.livekit_credentials().await,
        Err(LiveKitError::NotJoined)
    );
    drop(scene.hs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_is_renewed_before_it_expires() {
    init_tracing();
    let scene = scene(HomeserverConfig::default()).await;
    scene
        .jwt
        .set_token_lifetime(Duration::from_secs(2))
        .await
        .unwrap();
    scene.join().await;
    let first = scene.call.livekit_credentials().await.expect("credentials");
    let cached = scene.call.livekit_credentials().await.expect("credentials");
    assert_eq!(cached, first);
    // The cache keeps a token until half its remaining lifetime at most (60 s for real
    // tokens): past its `exp`, the next call must fetch a new one.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let renewed = scene.call.livekit_credentials().await.expect("credentials");
    assert_ne!(renewed.jwt, first.jwt);
    assert!(renewed.expires_at_ms > first.expires_at_ms);
    assert_eq!(
        scene.paths().await,
        [
            ("/get_token".to_owned(), 200),
            ("/get_token".to_owned(), 200)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_service_is_asked_through_the_legacy_sfu_get() {
    init_tracing();
    let scene = scene(HomeserverConfig::default()).await;
    scene
        .jwt
        .set_disabled_paths(&[JwtService::GET_TOKEN_PATH])
        .await
        .unwrap();
    scene.join().await;

    let credentials = scene.call.livekit_credentials().await.expect("credentials");
    assert_eq!(credentials.endpoint, TokenEndpoint::ServiceLegacySfuGet);
    let claims = scene
        .jwt
        .verify(&credentials.jwt)
        .expect("the JWT verifies");
    // The legacy identity: peers reading our sticky membership expect another one.
    let legacy = format!(
        "{}:{}",
        scene.alice_user.user_id, scene.alice_user.device_id
    );
    assert_eq!(claims["sub"], legacy.as_str());
    assert_eq!(credentials.identity, legacy);
    assert!(!credentials.identity_matches_membership);
    assert_ne!(credentials.identity, scene.identity_bob_sees().await);
    assert_eq!(
        credentials.room,
        alias(scene.call.room_id(), "m.call#ROOM"),
        "lk-jwt-service >= 0.4.4 hashes the room with the room call's slot"
    );
    assert_eq!(
        scene.paths().await,
        [("/get_token".to_owned(), 404), ("/sfu/get".to_owned(), 200)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_unreachable_services_are_typed_errors() {
    init_tracing();
    let scene = scene(HomeserverConfig::default()).await;
    scene.join().await;
    scene
        .jwt
        .set_refusal(Some((403, "M_FORBIDDEN", "not in this deployment")))
        .await
        .unwrap();
    let refused = scene.call.livekit_credentials().await.unwrap_err();
    assert_eq!(
        refused,
        LiveKitError::Refused {
            endpoint: TokenEndpoint::ServiceGetToken,
            status: 403,
            errcode: Some("M_FORBIDDEN".to_owned()),
            message: "not in this deployment".to_owned(),
        }
    );
    assert!(!refused.is_transient());
    // A refusal is not cached: once the service serves again, we get a token.
    scene.jwt.set_refusal(None).await.unwrap();
    scene.call.livekit_credentials().await.expect("credentials");

    // A service that serves neither endpoint.
    scene
        .jwt
        .set_disabled_paths(&[JwtService::GET_TOKEN_PATH, JwtService::LEGACY_SFU_GET_PATH])
        .await
        .unwrap();
    let other = scene.bob.rtc.room_call(scene.call.room_id());
    other
        .join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("bob joins");
    let missing = other.livekit_credentials().await.unwrap_err();
    assert!(
        matches!(
            missing,
            LiveKitError::Refused {
                endpoint: TokenEndpoint::ServiceLegacySfuGet,
                status: 404,
                ..
            }
        ),
        "{missing:?}"
    );

    // A service nobody answers for: bob publishes on a closed port.
    other
        .update(
            matrix_sdk_rtc::ContentUpdate::default()
                .with_transport(Transport::livekit("http://127.0.0.1:9")),
        )
        .await
        .expect("bob moves to another transport");
    let unreachable = other.livekit_credentials().await.unwrap_err();
    assert!(
        matches!(
            unreachable,
            LiveKitError::Unreachable {
                endpoint: TokenEndpoint::ServiceGetToken,
                timed_out: false,
                ..
            }
        ),
        "{unreachable:?}"
    );
    assert!(unreachable.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_homeserver_advertising_only_an_sfu_issues_the_token() {
    init_tracing();
    let jwt = JwtService::start().await.expect("stand-in");
    let config = HomeserverConfig::default().with_rtc_transport_list(vec![jwt.sfu_transport()]);
    // start_with_jwt_service would start a second stand-in: wire this one up by hand.
    let hs = TestHomeserver::start_with(config.with_livekit_appservice(jwt.appservice()))
        .await
        .expect("synapse");
    jwt.trust_homeserver(&hs).await.unwrap();
    let alice_user = hs.register_user("alice").await.unwrap();
    let bob_user = hs.register_user("bob").await.unwrap();
    let room_id = shared_room(&hs, &alice_user, &[&bob_user]).await;
    let alice = Peer::start(&hs, &alice_user).await;
    let bob = Peer::start(&hs, &bob_user).await;
    let call = alice.room_call(&room_id).await;
    call.join(JoinOptions::default().with_timings(fast_timings()))
        .await
        .expect("alice joins on the advertised SFU");

    let credentials = call.livekit_credentials().await.expect("credentials");
    assert_eq!(credentials.endpoint, TokenEndpoint::HomeserverUnstable);
    assert_eq!(credentials.service_url, None);
    assert_eq!(credentials.sfu_url, jwt.sfu_url());
    let claims = jwt.verify(&credentials.jwt).expect("the JWT verifies");
    let seen = wait_for_participants(&bob.room_call(&room_id).await, "alice", |p| {
        has_user(p, &alice_user.user_id)
    })
    .await;
    assert_eq!(claims["sub"], seen[0].livekit_identity.as_str());
    assert!(credentials.identity_matches_membership);
    assert_eq!(
        seen[0].transports[0].to_json(),
        jwt.sfu_transport(),
        "we publish the advertised SFU as it is"
    );
    let paths: Vec<String> = jwt
        .requests()
        .await
        .unwrap()
        .into_iter()
        .map(|request| request.path)
        .collect();
    assert_eq!(paths, [JwtService::HOMESERVER_UNSTABLE_PATH]);
}

/// Everything every tracing event and span of this process wrote, at trace level.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        // nextest runs every test in its own process, so this test owns the global default.
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other subscriber in this test process");
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_log_line() {
    let logs = captured_logs();
    let scene = scene(HomeserverConfig::default()).await;
    scene.join().await;
    let modern = scene.call.livekit_credentials().await.expect("credentials");
    tracing::info!(?modern, "what an app might log");
    scene
        .jwt
        .set_disabled_paths(&[JwtService::GET_TOKEN_PATH])
        .await
        .unwrap();
    scene
        .jwt
        .set_refusal(Some((401, "M_UNAUTHORIZED", "no")))
        .await
        .unwrap();
    // Another member ID (a fresh join) makes the cache miss.
    scene.call.leave().await.unwrap();
    scene.join().await;
    let refused = scene.call.livekit_credentials().await.unwrap_err();
    tracing::info!(?refused, %refused, "what an app might log");
    scene.jwt.set_refusal(None).await.unwrap();
    let legacy = scene.call.livekit_credentials().await.expect("credentials");
    tracing::info!(?legacy, "what an app might log");

    let mut secrets = scene.jwt.received_openid_tokens().await.unwrap();
    assert_eq!(secrets.len(), 2, "one per token the stand-in issued");
    secrets.push(modern.jwt.clone());
    secrets.push(legacy.jwt.clone());
    // Its payload and signature alone too (every HS256 header is the same).
    secrets.extend(modern.jwt.split('.').skip(1).map(str::to_owned));
    secrets.push(scene.alice_user.access_token.clone());
    let delayed = delayed_events_of(&scene.hs, &scene.alice_user).await;
    assert!(!delayed.is_empty(), "alice has a delayed leave");
    for event in delayed {
        secrets.push(event["delay_id"].as_str().unwrap().to_owned());
    }

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.contains("LiveKit") && text.contains("TRACE"),
        "the capture sees our logs at every level"
    );
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret.as_str()),
            "a secret reached the logs ({} bytes captured)",
            text.len()
        );
    }
}
