//! `rtc join --print-credentials` against a local Synapse and the *stand-in* LiveKit JWT
//! service of `rtc-test-homeserver` (lk-jwt-service cannot be installed here; the stand-in
//! follows its documented requests and mints real LiveKit JWTs).
use matrix_rtc_membership::livekit_identity;
use rtc_test_homeserver::{HomeserverConfig, TestHomeserver};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::{
    support::{EVENTUALLY, room, token_login},
    watch::spawn,
};

#[tokio::test]
async fn join_prints_credentials_only_when_asked() {
    let (server, jwt) = TestHomeserver::start_with_jwt_service(HomeserverConfig::default())
        .await
        .expect("synapse and the stand-in start");
    let member = server.register_user("member").await.expect("user");
    let peer = server.register_user("peer").await.expect("user");
    let room = room(&server, &member, &[&peer], false).await;

    let mut args = vec![
        "join".to_owned(),
        room.clone(),
        "--print-credentials".to_owned(),
    ];
    args.extend(token_login(&server, &member));
    let mut join = spawn(&args);
    let mut lines = BufReader::new(join.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(EVENTUALLY, async {
        // The credentials come right after the join; then our entry, once sync shows it.
        while let Some(line) = lines.next_line().await.expect("output") {
            let done = line.starts_with("visible in the call as member ");
            printed.push(line);
            if done {
                return;
            }
        }
        panic!("rtc join ended early: {printed:?}");
    })
    .await
    .expect("credentials printed in time");
    let value = |prefix: &str| {
        printed
            .iter()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {printed:?}"))
            .to_owned()
    };
    assert_eq!(value("livekit sfu: "), jwt.sfu_url());
    let claims = jwt
        .verify(&value("livekit jwt: "))
        .expect("the JWT verifies");
    assert_eq!(claims["sub"], value("livekit identity: ").as_str());
    assert_eq!(claims["video"]["room"], value("livekit room: ").as_str());
    assert!(
        !printed
            .iter()
            .any(|line| line.starts_with("livekit warning")),
        "{printed:?}"
    );
    // The identity is the one peers compute for the membership the process published.
    let member_id = value("visible in the call as member ");
    assert_eq!(
        claims["sub"],
        livekit_identity(&member.user_id, &member.device_id, &member_id).as_str()
    );
    let requests = jwt.requests().await.expect("requests");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, "/get_token");
    join.kill().await.expect("killed");

    // Without the flag: no credentials, no token request.
    let mut args = vec!["join".to_owned(), room.clone()];
    args.extend(token_login(&server, &peer));
    let mut plain = spawn(&args);
    let mut lines = BufReader::new(plain.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(EVENTUALLY, async {
        while let Some(line) = lines.next_line().await.expect("output") {
            let done = line.starts_with("visible in the call");
            seen.push(line);
            if done {
                return;
            }
        }
    })
    .await
    .expect("the peer joins in time");
    assert!(
        !seen.iter().any(|line| line.starts_with("livekit")),
        "{seen:?}"
    );
    assert_eq!(jwt.requests().await.expect("requests").len(), 1);
    plain.kill().await.expect("killed");
}
