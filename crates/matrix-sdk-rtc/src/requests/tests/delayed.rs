//! Sticky and delayed sends, and delayed-event management.

use std::time::Duration;

use matrix_sdk::ruma::{TransactionId, api::client::room::get_room_event};
use rtc_test_homeserver::{CreateRoomOptions, HomeserverConfig, TestHomeserver, unique_id};
use serde_json::{Value, json};

use super::{
    RunningSideSync, client_for,
    proxy::{FaultProxy, matrix_error},
    raw, room_id, sticky_events,
};
use crate::{
    SideSync,
    requests::{DelayId, DelayedEventAction, HomeserverApi, RequestError},
};

const MEMBER_TYPE: &str = "org.matrix.msc4143.rtc.member";
const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn leave_content(member_id: &str) -> Value {
    json!({ "slot_id": "m.call#ROOM", "msc4354_sticky_key": member_id, "sticky_key": member_id })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_delayed_leave_lifecycle() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let client = client_for(server.base_url(), &alice).await;
    let api = HomeserverApi::new(client.clone());
    let room = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("room"),
    );

    // Schedule: a delay id; the same transaction id gives the same one.
    let member_id = unique_id("member");
    let content = raw(&leave_content(&member_id));
    let txn = TransactionId::new();
    let delay_id = api
        .send_sticky_delayed(&room, MEMBER_TYPE, &txn, &content, HOUR, MINUTE)
        .await
        .expect("schedule");
    let again = api
        .send_sticky_delayed(&room, MEMBER_TYPE, &txn, &content, HOUR, MINUTE)
        .await
        .expect("schedule again");
    assert_eq!(again, delay_id);

    // Listed with its room, type, delay and content.
    let listed = api.delayed_events().await.expect("list");
    let entry = listed
        .iter()
        .find(|e| e.delay_id == delay_id)
        .expect("scheduled event listed");
    assert_eq!(entry.room_id, room);
    assert_eq!(entry.event_type, MEMBER_TYPE);
    assert_eq!(entry.state_key, None);
    assert_eq!(entry.delay_ms, Some(60_000));
    assert!(entry.scheduled_at_ms.is_some());
    let listed_content: Value =
        serde_json::from_str(entry.content.as_ref().expect("content").get()).expect("json");
    assert_eq!(listed_content, leave_content(&member_id));

    // Restart works while armed; after a cancel, the id is gone.
    api.update_delayed_event(&delay_id, DelayedEventAction::Restart)
        .await
        .expect("restart");
    api.update_delayed_event(&delay_id, DelayedEventAction::Cancel)
        .await
        .expect("cancel");
    for action in [
        DelayedEventAction::Restart,
        DelayedEventAction::Cancel,
        DelayedEventAction::Send,
    ] {
        assert_eq!(
            api.update_delayed_event(&delay_id, action).await,
            Err(RequestError::NotFound),
            "{action:?} after cancel"
        );
    }
    assert!(
        api.delayed_events()
            .await
            .expect("list")
            .iter()
            .all(|e| e.delay_id != delay_id)
    );

    // Unknown ids are not found either.
    let unknown = DelayId::new("syd_unknown");
    assert_eq!(
        api.update_delayed_event(&unknown, DelayedEventAction::Restart)
            .await,
        Err(RequestError::NotFound)
    );

    // `send` fires now: the leave arrives as a sticky event on a side connection.
    let fired_member = unique_id("member");
    let fired_id = api
        .send_sticky_delayed(
            &room,
            MEMBER_TYPE,
            &TransactionId::new(),
            &raw(&leave_content(&fired_member)),
            HOUR,
            MINUTE,
        )
        .await
        .expect("schedule second");
    api.update_delayed_event(&fired_id, DelayedEventAction::Send)
        .await
        .expect("send now");
    let mut side = RunningSideSync::spawn(SideSync::new(client.clone(), unique_id("conn")));
    let mut fired = None;
    while fired.is_none() {
        let page = side.next_page().await;
        fired = sticky_events(&page).find_map(|(room, event)| {
            (event.sticky_key.as_deref() == Some(fired_member.as_str()))
                .then(|| (room, event.clone()))
        });
    }
    let (fired_room, fired) = fired.expect("fired leave");
    assert_eq!(fired_room, room);
    assert_eq!(fired.event_type, MEMBER_TYPE);
    assert_eq!(fired.meta.duration_ms, 3_600_000, "{fired:?}");
    // The parsed event carries no `unsigned`: the server's copy of it names the delay.
    let stored = client
        .send(get_room_event::v3::Request::new(
            room.clone(),
            fired.meta.event_id.clone(),
        ))
        .await
        .expect("the fired leave is stored");
    let stored: Value = stored.event.deserialize_as_unchecked().expect("json");
    assert_eq!(
        stored["unsigned"]["org.matrix.msc4140.delay_id"],
        fired_id.as_str(),
        "{stored}"
    );
    let (result, _) = side.stop().await;
    assert_eq!(result, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_above_the_maximum_report_it() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let api = HomeserverApi::new(client_for(server.base_url(), &alice).await);
    let room = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("room"),
    );
    let too_long = Duration::from_secs(25 * 3600);

    let sticky = api
        .send_sticky_delayed(
            &room,
            MEMBER_TYPE,
            &TransactionId::new(),
            &raw(&json!({})),
            HOUR,
            too_long,
        )
        .await;
    assert_eq!(
        sticky,
        Err(RequestError::DelayTooLarge {
            max_delay_ms: Some(86_400_000)
        })
    );

    let state = api
        .send_delayed_state(&room, "org.example.state", "", &raw(&json!({})), too_long)
        .await;
    assert_eq!(
        state,
        Err(RequestError::DelayTooLarge {
            max_delay_ms: Some(86_400_000)
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_plain_state_events() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let api = HomeserverApi::new(client_for(server.base_url(), &alice).await);
    let room = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("room"),
    );
    let state_type = "org.matrix.msc3401.call.member";
    let state_key = format!("_{}_DEVICE_m.call", alice.user_id);

    let delay_id = api
        .send_delayed_state(&room, state_type, &state_key, &raw(&json!({})), MINUTE)
        .await
        .expect("schedule state");
    let listed = api.delayed_events().await.expect("list");
    let entry = listed
        .iter()
        .find(|e| e.delay_id == delay_id)
        .expect("listed");
    assert_eq!(entry.event_type, state_type);
    assert_eq!(entry.state_key.as_deref(), Some(state_key.as_str()));

    let event_id = api
        .send_state(
            &room,
            state_type,
            &state_key,
            &raw(&json!({"application": "m.call"})),
        )
        .await
        .expect("send state");
    assert!(event_id.as_str().starts_with('$'));
    api.update_delayed_event(&delay_id, DelayedEventAction::Cancel)
        .await
        .expect("cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_is_rate_limited_with_a_wait() {
    let config = HomeserverConfig::default().with_default_rate_limit("rc_delayed_event_mgmt");
    let server = TestHomeserver::start_with(config).await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let api = HomeserverApi::new(client_for(server.base_url(), &alice).await);
    let room = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("room"),
    );
    let delay_id = api
        .send_sticky_delayed(
            &room,
            MEMBER_TYPE,
            &TransactionId::new(),
            &raw(&json!({})),
            HOUR,
            MINUTE,
        )
        .await
        .expect("schedule");

    // Synapse's default is 1 per second with a burst of 5: well within 20 quick restarts.
    let mut limited = None;
    for _ in 0..20 {
        match api
            .update_delayed_event(&delay_id, DelayedEventAction::Restart)
            .await
        {
            Ok(()) => {}
            Err(error) => {
                limited = Some(error);
                break;
            }
        }
    }
    let Some(RequestError::RateLimited {
        retry_after: Some(wait),
    }) = limited
    else {
        panic!("expected a rate limit with a wait, got {limited:?}");
    };
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_falls_back_to_the_body_form_and_remembers_it() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let proxy = FaultProxy::start(server.base_url());
    let api = HomeserverApi::new(client_for(proxy.url(), &alice).await);
    let room = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("room"),
    );
    let delay_id = api
        .send_sticky_delayed(
            &room,
            MEMBER_TYPE,
            &TransactionId::new(),
            &raw(&json!({})),
            HOUR,
            MINUTE,
        )
        .await
        .expect("schedule");

    // A server that only knows the body form.
    proxy.set_hook(|request| {
        let per_action = request.path().contains("/delayed_events/")
            && request
                .path()
                .rsplit('/')
                .next()
                .is_some_and(|last| ["restart", "cancel", "send"].contains(&last));
        per_action.then(|| matrix_error(404, "M_UNRECOGNIZED", "Unrecognized request"))
    });
    api.update_delayed_event(&delay_id, DelayedEventAction::Restart)
        .await
        .expect("restart");
    api.update_delayed_event(&delay_id, DelayedEventAction::Restart)
        .await
        .expect("restart again");
    api.update_delayed_event(&delay_id, DelayedEventAction::Cancel)
        .await
        .expect("cancel");
    assert_eq!(
        api.update_delayed_event(&delay_id, DelayedEventAction::Cancel)
            .await,
        Err(RequestError::NotFound)
    );

    let management: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|(request, _)| request.path().contains("/delayed_events/"))
        .collect();
    let canned = management.iter().filter(|(_, canned)| *canned).count();
    // The first call probes the v1 and the unstable per-action paths; the others go straight
    // to the body form.
    assert_eq!(
        canned, 2,
        "only the first call tries the per-action paths: {management:?}"
    );
    assert_eq!(management.len(), 6, "{management:?}");
    assert!(management[0].0.path().starts_with("/_matrix/client/v1/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_delay_is_reported_with_the_sent_event() {
    let server = TestHomeserver::start().await.expect("start");
    let alice = server.register_user("alice").await.expect("register");
    let proxy = FaultProxy::start(server.base_url());
    let api = HomeserverApi::new(client_for(proxy.url(), &alice).await);
    let room = room_id(
        &server
            .create_room(&alice, CreateRoomOptions::default())
            .await
            .expect("room"),
    );

    // A server without MSC4140 ignores the parameter and sends at once.
    proxy.set_hook(|request| {
        request.set_query_param("org.matrix.msc4140.delay", None);
        None
    });
    let result = api
        .send_sticky_delayed(
            &room,
            MEMBER_TYPE,
            &TransactionId::new(),
            &raw(&json!({})),
            HOUR,
            MINUTE,
        )
        .await;
    let Err(RequestError::DelayIgnored { event_id }) = result else {
        panic!("expected DelayIgnored, got {result:?}");
    };
    proxy.clear_hook();
    assert!(event_id.as_str().starts_with('$'));
    assert!(api.delayed_events().await.expect("list").is_empty());
}
