//! The app's settings of matrix-sdk's builder reach the client we build (issue: builder
//! pass-through): a user agent set through `with_client_builder` is on every request, ours
//! included, and the settings matrix-sdk keeps on the `BaseClient` are on ours.

use matrix_sdk::cross_process_lock::CrossProcessLockConfig;
use matrix_sdk_base::crypto::{CollectStrategy, DecryptionSettings, TrustRequirement};
use rtc_test_homeserver::TestHomeserver;

use super::{proxy::FaultProxy, restore};
use crate::RtcClient;

const AGENT: &str = "rtc-builder-test/7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_builder_settings_reach_the_client_and_every_request() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let proxy = FaultProxy::start(server.base_url());
    let rtc = RtcClient::builder(proxy.url())
        .ephemeral_device()
        .with_client_builder(|builder| builder.user_agent(AGENT))
        .room_key_recipient_strategy(CollectStrategy::IdentityBasedStrategy)
        .decryption_settings(DecryptionSettings {
            sender_device_trust_requirement: TrustRequirement::CrossSignedOrLegacy,
        })
        .cross_process_lock_holder("rtc-builder-test")
        .build()
        .await
        .expect("builds");
    restore(rtc.client(), &alice).await;
    // Requests of matrix-sdk (`/versions`) and of our own layer (`/capabilities`).
    let features = rtc.features().await.expect("features");
    assert!(features.sticky_events);

    let log = proxy.log();
    assert!(log.len() >= 2, "{log:?}");
    for (request, _) in &log {
        assert_eq!(
            request.user_agent.as_deref(),
            Some(AGENT),
            "{} {}",
            request.method,
            request.path()
        );
    }
    assert!(
        matches!(
            rtc.client().cross_process_lock_config(),
            CrossProcessLockConfig::MultiProcess { holder_name } if holder_name == "rtc-builder-test"
        ),
        "{:?}",
        rtc.client().cross_process_lock_config()
    );
    let base = rtc.built_base_client().expect("built by us");
    assert_eq!(
        base.room_key_recipient_strategy,
        CollectStrategy::IdentityBasedStrategy
    );
    assert!(matches!(
        base.decryption_settings.sender_device_trust_requirement,
        TrustRequirement::CrossSignedOrLegacy
    ));
}

#[tokio::test]
async fn a_client_without_a_store_needs_the_ephemeral_opt_in() {
    let refused = RtcClient::builder("http://127.0.0.1:9").build().await;
    assert!(matches!(refused, Err(crate::Error::NoStore)), "{refused:?}");
    let ephemeral = RtcClient::builder("http://127.0.0.1:9")
        .ephemeral_device()
        .build()
        .await;
    assert!(ephemeral.is_ok(), "{ephemeral:?}");
}
