//! The re-send signal against a real Synapse: a device that appears after our room-key share
//! is noticed, and a new share covers it. The clients sync by hand (`sync_once`), so each
//! step waits for exactly the sync that brings the news.
use std::time::Duration;

use matrix_sdk::{Room, config::SyncSettings, ruma::OwnedRoomId};
use rtc_test_homeserver::{CreateRoomOptions, TestHomeserver, TestUser};
use serde_json::value::to_raw_value;

use super::Encryptor;
use crate::RtcClient;

/// A client of ours (built by our builder) logged in as `user`.
async fn logged_in(hs: &TestHomeserver, user: &TestUser) -> RtcClient {
    let rtc = RtcClient::builder(hs.base_url())
        .ephemeral_device()
        .build()
        .await
        .expect("client builds");
    crate::requests::tests::restore(rtc.client(), user).await;
    rtc
}

/// One sync (it uploads our keys, and queries the keys of users whose devices changed).
async fn sync(rtc: &RtcClient, since: &mut Option<String>) {
    let mut settings = SyncSettings::default().timeout(Duration::from_secs(1));
    if let Some(token) = since.take() {
        settings = settings.token(token);
    }
    let response = rtc.client().sync_once(settings).await.expect("sync");
    *since = Some(response.next_batch);
}

async fn encrypt_once(encryptor: &Encryptor, rtc: &RtcClient, room: &Room) {
    let content = to_raw_value(&serde_json::json!({ "slot_id": "m.call#ROOM" })).unwrap();
    encryptor
        .lock_room(room.clone())
        .await
        .encrypt(rtc.client(), "org.matrix.msc4143.rtc.member", &content)
        .await
        .expect("encrypts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_added_after_our_share_is_noticed_until_the_next_share() {
    let hs = TestHomeserver::start().await.expect("synapse starts");
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let options = CreateRoomOptions {
        encrypted: true,
        invite: vec![bob.user_id.clone()],
        ..CreateRoomOptions::default()
    };
    let room_id = hs.create_room(&alice, options).await.expect("room");
    hs.join_room(&bob, &room_id).await.expect("bob joins");
    let room_id = OwnedRoomId::try_from(room_id.as_str()).unwrap();

    let (a, b1) = (logged_in(&hs, &alice).await, logged_in(&hs, &bob).await);
    let (mut a_since, mut b1_since) = (None, None);
    sync(&b1, &mut b1_since).await;
    sync(&a, &mut a_since).await;
    let room = a.client().get_room(&room_id).expect("alice knows the room");
    let encryptor = a.encryptor().expect("built by our builder").clone();
    let added = || encryptor.devices_added_since_share(a.client(), &room);

    assert!(!added().await.unwrap(), "nothing shared yet");
    encrypt_once(&encryptor, &a, &room).await;
    assert!(!added().await.unwrap(), "bob's only device got the key");

    // Bob logs in on a second device, which uploads its keys.
    let bob2 = hs.login(&bob, "BOBSECOND").await.expect("second login");
    let b2 = logged_in(&hs, &bob2).await;
    sync(&b2, &mut None).await;

    // Alice's sync learns that bob's devices changed and queries them.
    let mut noticed = false;
    for _ in 0..20 {
        sync(&a, &mut a_since).await;
        if added().await.unwrap() {
            noticed = true;
            break;
        }
    }
    assert!(noticed, "alice never noticed bob's second device");

    // A new share covers it.
    encrypt_once(&encryptor, &a, &room).await;
    assert!(
        !added().await.unwrap(),
        "the new share reached bob's second device"
    );
}
