//! Feature detection and the server's limits and transports.

use std::time::Duration;

use matrix_sdk::ruma::TransactionId;
use rtc_test_homeserver::{CreateRoomOptions, HomeserverConfig, TestHomeserver};
use serde_json::{Value, json};

use super::{client_for, raw, room_id};
use crate::{
    MissingFeature, ServerFeatures,
    requests::{HomeserverApi, RequestError},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_is_detected_on_the_test_server() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let client = client_for(server.base_url(), &alice).await;

    let features = ServerFeatures::fetch(&client).await.expect("features");
    assert!(features.sticky_events, "{features:?}");
    assert!(features.sliding_sync, "{features:?}");
    assert!(features.delayed_events, "{features:?}");
    assert!(features.rtc_transports, "{features:?}");
    assert_eq!(features.max_delay_ms, Some(86_400_000));
    assert_eq!(features.max_scheduled, Some(1000));
    assert!(features.missing().is_empty());
    assert_eq!(
        ServerFeatures::fetch_fresh(&client)
            .await
            .expect("fresh features"),
        features
    );

    let api = HomeserverApi::new(client);
    let limits = api.delayed_events_limits().await.expect("limits");
    assert!(limits.advertised);
    assert_eq!(
        (limits.max_delay_ms, limits.max_scheduled),
        (Some(86_400_000), Some(1000))
    );

    let transports = api.rtc_transports().await.expect("transports");
    assert_eq!(transports.len(), 1);
    let transport: Value = serde_json::from_str(transports[0].get()).expect("transport json");
    assert_eq!(
        transport,
        json!({"type": "livekit", "livekit_service_url": "https://lk.invalid"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_features_are_missing_and_refused() {
    let config = HomeserverConfig::default()
        .with_sticky_events(false)
        .with_delayed_events(false)
        .with_rtc_transports(false);
    let server = TestHomeserver::start_with(config).await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let client = client_for(server.base_url(), &alice).await;

    let features = ServerFeatures::fetch(&client).await.expect("features");
    assert_eq!(
        features.missing(),
        vec![
            MissingFeature::StickyEvents,
            MissingFeature::DelayedEvents,
            MissingFeature::RtcTransports
        ]
    );
    assert!(features.sliding_sync);
    assert_eq!(
        (features.max_delay_ms, features.max_scheduled),
        (None, None)
    );

    let api = HomeserverApi::new(client);
    let room = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("room"),
    );
    let scheduled = api
        .send_sticky_delayed(
            &room,
            "org.example.leave",
            &TransactionId::new(),
            &raw(&json!({})),
            Duration::from_secs(600),
            Duration::from_secs(60),
        )
        .await;
    // `/versions` does not advertise delayed events: nothing is sent (Synapse's own refusal
    // behind a flag that claims them is tested in `forms`).
    assert_eq!(scheduled, Err(RequestError::DelayedEventsUnavailable));

    let delayed_state = api
        .send_delayed_state(
            &room,
            "org.example.state",
            "",
            &raw(&json!({})),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(delayed_state, Err(RequestError::DelayedEventsUnavailable));
}
