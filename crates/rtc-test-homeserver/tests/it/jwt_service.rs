//! The LiveKit JWT service stand-in against a real Synapse, through raw requests: each
//! documented endpoint, OpenID verification, refusals, and the homeserver endpoint through
//! Synapse's MSC4512 proxy. (A stand-in: lk-jwt-service cannot be installed here.)

use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use rtc_test_homeserver::{
    HomeserverConfig, JwtService, Method, TestHomeserver, TestUser, encode_path_segment,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn b64_sha256(items: &[&str]) -> String {
    STANDARD_NO_PAD.encode(Sha256::digest(serde_json::to_vec(items).unwrap()))
}

async fn openid_token(server: &TestHomeserver, user: &TestUser) -> Value {
    let path = format!(
        "/_matrix/client/v3/user/{}/openid/request_token",
        encode_path_segment(&user.user_id)
    );
    let (status, token) = server
        .request(
            Method::POST,
            &path,
            Some(&user.access_token),
            Some(&json!({})),
        )
        .await
        .expect("openid");
    assert_eq!(status, 200, "{token}");
    token
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stand_in_serves_every_documented_endpoint() {
    let (server, jwt) = TestHomeserver::start_with_jwt_service(HomeserverConfig::default())
        .await
        .expect("start");
    let alice = server.register_user("alice").await.expect("register");

    // Synapse advertises the stand-in.
    let (status, transports) = server
        .request(
            Method::GET,
            "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports",
            Some(&alice.access_token),
            None,
        )
        .await
        .expect("transports");
    assert_eq!(status, 200, "{transports}");
    assert_eq!(transports["rtc_transports"][0], jwt.service_transport());

    // /get_token: identity and alias per MSC4195; the JWT verifies.
    let openid = openid_token(&server, &alice).await;
    let body = json!({
        "room_id": "!room:localhost", "slot_id": "m.call#ROOM", "openid_token": openid,
        "member": { "id": "m-1", "claimed_user_id": alice.user_id, "claimed_device_id": alice.device_id },
    });
    let (status, answer) = post(&format!("{}/get_token", jwt.url()), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["url"], jwt.sfu_url());
    let claims = jwt
        .verify(answer["jwt"].as_str().unwrap())
        .expect("verifies");
    assert_eq!(
        claims["sub"],
        b64_sha256(&[&alice.user_id, &alice.device_id, "m-1"])
    );
    assert_eq!(
        claims["video"]["room"],
        b64_sha256(&["!room:localhost", "m.call#ROOM"])
    );
    assert_eq!(claims["video"]["roomJoin"], true);
    // A token of another signer does not verify.
    let mut forged = answer["jwt"].as_str().unwrap().to_owned();
    forged.push('A');
    assert!(jwt.verify(&forged).is_err());

    // Unknown fields, a wrong claimed user and a bad OpenID token are refused.
    let mut unknown = body.clone();
    unknown["extra"] = json!(1);
    let (status, answer) = post(&format!("{}/get_token", jwt.url()), &unknown).await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (400, json!("M_NOT_JSON"))
    );
    let mut other_user = body.clone();
    other_user["member"]["claimed_user_id"] = json!("@mallory:localhost");
    let (status, answer) = post(&format!("{}/get_token", jwt.url()), &other_user).await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (401, json!("M_UNAUTHORIZED"))
    );
    let mut bad_token = body.clone();
    bad_token["openid_token"]["access_token"] = json!("nope");
    let (status, answer) = post(&format!("{}/get_token", jwt.url()), &bad_token).await;
    assert_eq!(
        (status, answer["errcode"].clone()),
        (401, json!("M_UNAUTHORIZED"))
    );

    // /sfu/get: the legacy identity and room.
    let legacy =
        json!({ "room": "!room:localhost", "openid_token": openid, "device_id": alice.device_id });
    let (status, answer) = post(&format!("{}/sfu/get", jwt.url()), &legacy).await;
    assert_eq!(status, 200, "{answer}");
    let claims = jwt
        .verify(answer["jwt"].as_str().unwrap())
        .expect("verifies");
    assert_eq!(
        claims["sub"],
        format!("{}:{}", alice.user_id, alice.device_id)
    );

    // Disabled paths answer 404 like an old service; a refusal applies to every endpoint.
    jwt.set_disabled_paths(&[JwtService::GET_TOKEN_PATH])
        .await
        .expect("config");
    let (status, _) = post(&format!("{}/get_token", jwt.url()), &body).await;
    assert_eq!(status, 404);
    jwt.set_disabled_paths(&[]).await.expect("config");
    jwt.set_refusal(Some((403, "M_FORBIDDEN", "go away")))
        .await
        .expect("config");
    let (status, answer) = post(&format!("{}/sfu/get", jwt.url()), &legacy).await;
    assert_eq!((status, answer["error"].clone()), (403, json!("go away")));

    let requests = jwt.requests().await.expect("requests");
    let statuses: Vec<(&str, u16)> = requests
        .iter()
        .map(|request| (request.path.as_str(), request.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("/get_token", 200),
            ("/get_token", 400),
            ("/get_token", 401),
            ("/get_token", 401),
            ("/sfu/get", 200),
            ("/get_token", 404),
            ("/sfu/get", 403),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn homeserver_endpoint_through_the_msc4512_proxy() {
    let jwt = JwtService::start().await.expect("stand-in");
    let config = HomeserverConfig::default()
        .with_rtc_transport_list(vec![jwt.sfu_transport()])
        .with_livekit_appservice(jwt.appservice());
    let server = TestHomeserver::start_with(config).await.expect("synapse");
    jwt.trust_homeserver(&server).await.expect("trust");
    let alice = server.register_user("alice").await.expect("register");

    let body = json!({
        "url": jwt.sfu_url(), "room_id": "!room:localhost", "slot_id": "m.call#ROOM",
        "member": { "id": "m-2", "claimed_user_id": alice.user_id, "claimed_device_id": alice.device_id },
    });
    for path in [
        JwtService::HOMESERVER_UNSTABLE_PATH,
        JwtService::HOMESERVER_STABLE_PATH,
    ] {
        let (status, answer) = server
            .request(Method::POST, path, Some(&alice.access_token), Some(&body))
            .await
            .expect("get_token");
        assert_eq!(status, 200, "{path}: {answer}");
        let claims = jwt
            .verify(answer["jwt"].as_str().unwrap())
            .expect("verifies");
        assert_eq!(
            claims["sub"],
            b64_sha256(&[&alice.user_id, &alice.device_id, "m-2"])
        );
    }
    // Without our access token Synapse refuses before the stand-in sees anything.
    let (status, _) = server
        .request(
            Method::POST,
            JwtService::HOMESERVER_UNSTABLE_PATH,
            None,
            Some(&body),
        )
        .await
        .expect("get_token");
    assert_eq!(status, 401);
    assert_eq!(jwt.requests().await.expect("requests").len(), 2);
}
