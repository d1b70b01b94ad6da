//! Config switches: features on and off, rate limits high and low.

use std::time::Duration;

use rtc_test_homeserver::{CreateRoomOptions, Error, HomeserverConfig, Method, TestHomeserver};
use serde_json::{Value, json};

use crate::send;

const DELAYED_EVENTS_PATH: &str = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events";
const DELAY: &str = "?org.matrix.msc4140.delay=60000";

async fn capabilities(server: &TestHomeserver, token: &str) -> Value {
    let (status, answer) = server
        .request(
            Method::GET,
            "/_matrix/client/v3/capabilities",
            Some(token),
            None,
        )
        .await
        .expect("capabilities");
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_server_has_delayed_events_and_high_rate_limits() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let caps = capabilities(&server, &alice.access_token).await;
    let delayed = &caps["capabilities"]["org.matrix.msc4140.delayed_events"];
    assert_eq!(delayed["max_delay_ms"], 86_400_000, "{caps}");
    assert_eq!(delayed["max_scheduled"], 1000, "{caps}");
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
    assert_eq!(
        transports["rtc_transports"][0]["livekit_service_url"],
        "https://lk.invalid"
    );

    let room_id = server
        .create_room(&alice, CreateRoomOptions::default())
        .await
        .expect("create room");
    let (status, scheduled) = send(
        &server,
        &alice,
        &room_id,
        "org.example.leave",
        DELAY,
        &json!({}),
    )
    .await
    .expect("send");
    assert_eq!(status, 200, "{scheduled}");
    assert!(
        scheduled["delay_id"].is_string() && scheduled.get("event_id").is_none(),
        "{scheduled}"
    );

    // Far beyond Synapse's own limit of a burst of 5: never rate limited here.
    for _ in 0..20 {
        let (status, answer) = server
            .request(
                Method::GET,
                DELAYED_EVENTS_PATH,
                Some(&alice.access_token),
                None,
            )
            .await
            .expect("list");
        assert_eq!(status, 200, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_events_can_be_turned_off() {
    let config = HomeserverConfig::default().with_delayed_events(false);
    let server = TestHomeserver::start_with(config).await.expect("start");
    let versions = server.versions().await.expect("versions");
    assert_ne!(
        versions["unstable_features"]["org.matrix.msc4140"], true,
        "{versions}"
    );
    assert_eq!(
        versions["unstable_features"]["org.matrix.msc4354"], true,
        "{versions}"
    );

    let alice = server.register_user("alice").await.expect("register");
    let room_id = server
        .create_room(&alice, CreateRoomOptions::default())
        .await
        .expect("create room");
    let (status, answer) = send(
        &server,
        &alice,
        &room_id,
        "org.example.leave",
        DELAY,
        &json!({}),
    )
    .await
    .expect("send");
    assert_eq!(status, 403, "{answer}");
    assert!(answer.get("delay_id").is_none(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_events_and_rtc_transports_can_be_turned_off() {
    let config = HomeserverConfig::default()
        .with_sticky_events(false)
        .with_rtc_transports(false);
    let server = TestHomeserver::start_with(config).await.expect("start");
    let versions = server.versions().await.expect("versions");
    assert_ne!(
        versions["unstable_features"]["org.matrix.msc4354"], true,
        "{versions}"
    );
    assert_ne!(
        versions["unstable_features"]["org.matrix.msc4143"], true,
        "{versions}"
    );
    assert_eq!(
        versions["unstable_features"]["org.matrix.msc4140"], true,
        "{versions}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_event_management_rate_limit_is_configurable() {
    let config = HomeserverConfig::default().with_rc_delayed_event_mgmt(0.001, 2);
    let server = TestHomeserver::start_with(config).await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, answer) = server
            .request(
                Method::GET,
                DELAYED_EVENTS_PATH,
                Some(&alice.access_token),
                None,
            )
            .await
            .expect("list");
        if status == 429 {
            assert_eq!(answer["errcode"], "M_LIMIT_EXCEEDED", "{answer}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_synapse_rejects_fails_the_start_with_its_log_tail() {
    let config =
        HomeserverConfig::default().with_extra_config("max_event_delay_duration", json!(-5));
    let error = TestHomeserver::start_with(config)
        .await
        .expect_err("synapse must refuse -5");
    let Error::Exited {
        log_tail, run_dir, ..
    } = error
    else {
        panic!("expected Error::Exited, got {error}");
    };
    assert!(log_tail.contains("max_event_delay_duration"), "{log_tail}");
    assert!(
        run_dir.join("homeserver.yaml").is_file(),
        "run dir kept for its logs"
    );
    std::fs::remove_dir_all(&run_dir).expect("clean up the kept run dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_takes_too_long_fails_and_kills_synapse() {
    let config = HomeserverConfig::default().with_start_timeout(Duration::from_millis(1));
    let error = TestHomeserver::start_with(config)
        .await
        .expect_err("1 ms is too short");
    let Error::StartTimeout { run_dir, .. } = error else {
        panic!("expected Error::StartTimeout, got {error}");
    };
    // The killed server wrote its config path on its command line; none may be left running.
    let config_path = run_dir.join("homeserver.yaml");
    let running = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(&*config_path.to_string_lossy()));
    assert!(!running, "synapse killed after the timeout");
    std::fs::remove_dir_all(&run_dir).expect("clean up the kept run dir");
}
