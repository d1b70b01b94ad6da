//! One device, one crypto store: a second crypto store restoring a session whose device
//! already has published keys is stopped before it sends anything, and the device's published
//! keys stay those of the first store.
use std::time::Duration;

use matrix_sdk_rtc::{Error, RtcClient};
use rtc_test_homeserver::{Method, TestHomeserver, TestUser};
use serde_json::json;

use crate::calls::support::{EVENTUALLY, Peer, restore_session};

/// The ed25519 key the server publishes for `user`'s device, once it publishes one.
async fn published_ed25519(hs: &TestHomeserver, user: &TestUser) -> String {
    let body = json!({ "device_keys": { &user.user_id: [&user.device_id] } });
    tokio::time::timeout(EVENTUALLY, async {
        loop {
            let (status, answer) = hs
                .request(
                    Method::POST,
                    "/_matrix/client/v3/keys/query",
                    Some(&user.access_token),
                    Some(&body),
                )
                .await
                .expect("keys query");
            assert_eq!(status, 200, "{answer}");
            let key = &answer["device_keys"][&user.user_id][&user.device_id]["keys"]
                [format!("ed25519:{}", user.device_id)];
            if let Some(key) = key.as_str() {
                return key.to_owned();
            }
            // The first client uploads its keys right after its first sync.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the first client's keys are published")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_crypto_store_on_one_device_is_stopped_before_it_sends() {
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let alice = hs.register_user("alice").await.unwrap();
    // The app's client: its store made and uploaded this device's keys.
    let app = Peer::start(&hs, &alice).await;
    let published = published_ed25519(&hs, &alice).await;

    // Our client restores the same session with a store of its own (here in memory).
    let rtc = RtcClient::builder(hs.base_url())
        .ephemeral_device()
        .build()
        .await
        .expect("client");
    restore_session(rtc.client(), &alice).await;
    match rtc.start().await {
        Err(Error::DeviceKeysDiffer { device_id }) => {
            assert_eq!(device_id.as_str(), alice.device_id);
        }
        other => panic!("expected DeviceKeysDiffer, got {other:?}"),
    }
    // Nothing of the second store reached the server.
    assert_eq!(published_ed25519(&hs, &alice).await, published);
    drop(app);
}
