//! The forms of delayed events (docs/protocol.md §6.9): which scheduling and management form is
//! tried in which order, what is learnt, and that a server without delayed events is never sent
//! a delay.
//!
//! Against the real Synapse 1.163.2 for what it serves: the query parameter, the unstable
//! management forms, its `M_UNRECOGNIZED` answers to the merged forms (the dedicated `PUT`, the
//! v1 path), its 403 "disallowed", its 429 quota and its `max_delay_ms: 0`. The merged MSC4140
//! forms no installable server speaks yet (the dedicated `PUT`, the v1 path, 409, the 403 forms
//! of a delay above the maximum) are answered by the proxy in front of that Synapse with
//! answers constructed from the MSC text, and the tests check the shape of what we sent; each
//! such test says so.

use std::time::Duration;

use matrix_sdk::ruma::TransactionId;
use rtc_test_homeserver::{CreateRoomOptions, HomeserverConfig, TestHomeserver};
use serde_json::{Value, json};

use super::{
    client_for,
    proxy::{CannedResponse, FaultProxy, ProxiedRequest, matrix_error},
    raw, room_id,
};
use crate::{
    ServerFeatures,
    requests::{
        DelayId, DelayedEventAction, HomeserverApi, ManagementForm, RequestError, ScheduleForm,
    },
};

const MEMBER_TYPE: &str = "org.matrix.msc4143.rtc.member";
const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// A server, a user with a room, and our HTTP layer talking to the server through a proxy.
struct Setup {
    /// Kept alive for the test.
    _server: TestHomeserver,
    proxy: FaultProxy,
    api: HomeserverApi,
    room: matrix_sdk::ruma::OwnedRoomId,
}

impl Setup {
    async fn start(config: HomeserverConfig) -> Self {
        let server = TestHomeserver::start_with(config).await.expect("start");
        let alice = server.register_user("alice").await.expect("register");
        let proxy = FaultProxy::start(server.base_url());
        let api = HomeserverApi::new(client_for(proxy.url(), &alice).await);
        let room = room_id(
            &server
                .create_room(&alice, CreateRoomOptions::default())
                .await
                .expect("room"),
        );
        Self {
            _server: server,
            proxy,
            api,
            room,
        }
    }

    /// Tells the layer what `/versions` says, as `RtcClient::features` does.
    fn advertise(&self, flags: &[&str]) {
        self.api
            .note_features(&ServerFeatures::from_enabled_flags(flags.iter().copied()));
    }

    async fn schedule(&self, content: &Value) -> Result<DelayId, RequestError> {
        self.api
            .send_sticky_delayed(
                &self.room,
                MEMBER_TYPE,
                &TransactionId::new(),
                &raw(content),
                HOUR,
                MINUTE,
            )
            .await
    }

    /// The requests about delayed events the proxy saw, `(method path, answered by the proxy)`.
    fn delayed_requests(&self) -> Vec<(ProxiedRequest, bool)> {
        self.proxy
            .log()
            .into_iter()
            .filter(|(request, _)| {
                let path = request.path();
                path.contains("/delayed_event")
                    || request.query_param("org.matrix.msc4140.delay").is_some()
            })
            .collect()
    }

    fn forget_log(&self) -> usize {
        self.proxy.log().len()
    }
}

fn leave(member: &str) -> Value {
    json!({ "slot_id": "m.call#ROOM", "msc4354_sticky_key": member, "sticky_key": member })
}

/// `METHOD path` with the room, delay id and transaction replaced, for readable assertions.
fn shape(request: &ProxiedRequest) -> String {
    let segments: Vec<&str> = request
        .path()
        .split('/')
        .map(|segment| {
            if segment.starts_with('!') || segment.starts_with("%21") {
                "{room}"
            } else if segment.starts_with("syd_") {
                "{delay_id}"
            } else {
                segment
            }
        })
        .collect();
    let mut path = segments.join("/");
    // The transaction id is the last segment of a send or a dedicated schedule.
    if (path.contains("/send/") || path.contains("/delayed_event/"))
        && let Some(cut) = path.rfind('/')
    {
        path.truncate(cut);
        path.push_str("/{txn}");
    }
    format!("{} {path}", request.method)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_synapse_the_query_parameter_is_learnt_after_the_unrecognised_endpoint() {
    let s = Setup::start(HomeserverConfig::default()).await;
    // Nothing noted: the layer asks `/versions` itself (Synapse: `org.matrix.msc4140`).
    let first = s.schedule(&leave("m1")).await.expect("schedule");
    let second = s.schedule(&leave("m2")).await.expect("schedule again");
    assert_ne!(first, second);

    let seen: Vec<_> = s
        .delayed_requests()
        .iter()
        .map(|(request, canned)| {
            assert!(!canned, "every answer here is Synapse's own");
            shape(request)
        })
        .collect();
    assert_eq!(
        seen,
        [
            // Synapse 1.163.2 answers 404 M_UNRECOGNIZED: nothing was scheduled.
            "PUT /_matrix/client/unstable/org.matrix.msc4140/rooms/{room}/delayed_event/org.matrix.msc4143.rtc.member/{txn}",
            "PUT /_matrix/client/v3/rooms/{room}/send/org.matrix.msc4143.rtc.member/{txn}",
            // Learnt: straight to the query parameter.
            "PUT /_matrix/client/v3/rooms/{room}/send/org.matrix.msc4143.rtc.member/{txn}",
        ]
    );
    assert_eq!(
        s.api.delayed.learnt_schedule(),
        Some(ScheduleForm::QueryParameter)
    );
    let listed = s.api.delayed_events().await.expect("list");
    assert_eq!(listed.len(), 2, "exactly the two we scheduled: {listed:?}");

    // Management: the v1 path once (Synapse 1.163.2: 404 M_UNRECOGNIZED, nothing done), then
    // the unstable per-action path, learnt; always with our token.
    let before = s.forget_log();
    s.api
        .update_delayed_event(&first, DelayedEventAction::Restart)
        .await
        .expect("restart");
    s.api
        .update_delayed_event(&first, DelayedEventAction::Cancel)
        .await
        .expect("cancel");
    let management: Vec<_> = s.proxy.log()[before..]
        .iter()
        .map(|(request, _)| {
            assert!(request.authenticated);
            shape(request)
        })
        .collect();
    assert_eq!(
        management,
        [
            "POST /_matrix/client/v1/delayed_events/{delay_id}/restart",
            "POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/restart",
            "POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/cancel",
        ]
    );
    assert_eq!(
        s.api.delayed.learnt_management(),
        Some(ManagementForm::UnstablePath)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_stable_flag_synapse_turns_down_the_merged_forms_and_the_unstable_ones_work() {
    let s = Setup::start(HomeserverConfig::default()).await;
    // As a server that advertises the merged MSC would (Synapse 1.163.2 does not: the flag is
    // noted by hand); every answer below is Synapse's own.
    s.advertise(&["org.matrix.msc4354", "org.matrix.msc4140.stable"]);
    let delay_id = s.schedule(&leave("m1")).await.expect("schedule");
    s.api
        .update_delayed_event(&delay_id, DelayedEventAction::Restart)
        .await
        .expect("restart");
    s.api
        .update_delayed_event(&delay_id, DelayedEventAction::Restart)
        .await
        .expect("restart again");
    s.api
        .update_delayed_event(&delay_id, DelayedEventAction::Send)
        .await
        .expect("send");

    let seen: Vec<_> = s
        .delayed_requests()
        .iter()
        .map(|(request, canned)| {
            assert!(!canned);
            shape(request)
        })
        .collect();
    assert_eq!(
        seen,
        [
            "PUT /_matrix/client/v3/rooms/{room}/delayed_event/org.matrix.msc4143.rtc.member/{txn}",
            "PUT /_matrix/client/unstable/org.matrix.msc4140/rooms/{room}/delayed_event/org.matrix.msc4143.rtc.member/{txn}",
            "PUT /_matrix/client/v3/rooms/{room}/send/org.matrix.msc4143.rtc.member/{txn}",
            // Synapse 1.163.2 has no v1 path (404 M_UNRECOGNIZED).
            "POST /_matrix/client/v1/delayed_events/{delay_id}/restart",
            "POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/restart",
            "POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/restart",
            "POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/send",
        ]
    );
    // The event fired: it is gone from the list, and a second send finds nothing.
    assert!(s.api.delayed_events().await.expect("list").is_empty());
    assert_eq!(
        s.api
            .update_delayed_event(&delay_id, DelayedEventAction::Send)
            .await,
        Err(RequestError::NotFound)
    );
}

/// Answers the merged MSC4140 forms the way its text says (constructed: no installable server
/// serves them), and lets everything else through to Synapse.
fn merged_msc4140(request: &mut ProxiedRequest) -> Option<CannedResponse> {
    let path = request.path().to_owned();
    if request.method == "PUT" && path.starts_with("/_matrix/client/v3/rooms/") {
        if path.contains("/delayed_event/") {
            return Some(CannedResponse::json(
                200,
                &json!({ "delay_id": "syd_merged" }),
            ));
        }
        return None;
    }
    let action = path.strip_prefix("/_matrix/client/v1/delayed_events/syd_merged/")?;
    Some(match action {
        "restart" => CannedResponse::json(200, &json!({})),
        // Sent already: cancelling contradicts the outcome.
        "cancel" => matrix_error(409, "M_UNKNOWN", "The delayed event has already been sent"),
        _ => matrix_error(404, "M_NOT_FOUND", "Delayed event not found"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merged_forms_have_the_shapes_of_the_msc() {
    let s = Setup::start(HomeserverConfig::default()).await;
    s.advertise(&["org.matrix.msc4354", "org.matrix.msc4140.stable"]);
    s.proxy.set_hook(merged_msc4140);
    let content = leave("m1");
    let txn = TransactionId::new();
    let delay_id = s
        .api
        .send_sticky_delayed(&s.room, MEMBER_TYPE, &txn, &raw(&content), HOUR, MINUTE)
        .await
        .expect("scheduled through the dedicated endpoint");
    assert_eq!(delay_id.as_str(), "syd_merged");

    let (schedule, canned) = s.delayed_requests().remove(0);
    assert!(canned);
    assert_eq!(
        shape(&schedule),
        "PUT /_matrix/client/v3/rooms/{room}/delayed_event/org.matrix.msc4143.rtc.member/{txn}"
    );
    // Our transaction id: a retry would be answered with the same delay id.
    assert!(schedule.path().ends_with(&format!("/{txn}")));
    assert!(schedule.authenticated);
    // The sticky duration as on `/send`; the delay in the body, never as a query parameter.
    assert_eq!(
        schedule.query_param("org.matrix.msc4354.sticky_duration_ms"),
        Some("3600000")
    );
    assert_eq!(schedule.query_param("org.matrix.msc4140.delay"), None);
    assert_eq!(
        schedule.body_json(),
        json!({ "delay_ms": 60_000, "content": content })
    );
    assert_eq!(
        s.api.delayed.learnt_schedule(),
        Some(ScheduleForm::Dedicated)
    );

    // Management through the v1 path, body `{}`, authenticated; 409 and 404 as the MSC says.
    s.api
        .update_delayed_event(&delay_id, DelayedEventAction::Restart)
        .await
        .expect("restart");
    assert_eq!(
        s.api
            .update_delayed_event(&delay_id, DelayedEventAction::Cancel)
            .await,
        Err(RequestError::Conflict)
    );
    assert_eq!(
        s.api
            .update_delayed_event(&delay_id, DelayedEventAction::Send)
            .await,
        Err(RequestError::NotFound)
    );
    let management: Vec<_> = s
        .proxy
        .log()
        .into_iter()
        .filter(|(request, _)| request.path().contains("/delayed_events/"))
        .collect();
    assert_eq!(management.len(), 3, "the v1 path only: {management:?}");
    for (request, canned) in &management {
        assert!(*canned && request.authenticated);
        assert!(
            request
                .path()
                .starts_with("/_matrix/client/v1/delayed_events/")
        );
        assert_eq!(request.body_json(), json!({}));
    }
    assert_eq!(
        s.api.delayed.learnt_management(),
        Some(ManagementForm::StablePath)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unstable_dedicated_endpoint_and_the_403_forms_of_the_msc() {
    let s = Setup::start(HomeserverConfig::default()).await;
    s.advertise(&["org.matrix.msc4354", "org.matrix.msc4140"]);
    // Constructed answers on the unstable dedicated endpoint: the merged text's 403 for a delay
    // above the maximum (with the maximum, and without anything that tells), the older
    // `M_MAX_DELAY_EXCEEDED`, and a disabled feature.
    let answers = std::sync::Arc::new(std::sync::Mutex::new(vec![
        CannedResponse::json(
            403,
            &json!({"errcode": "M_FORBIDDEN", "error": "Forbidden", "max_delay": 30_000}),
        ),
        matrix_error(
            403,
            "M_FORBIDDEN",
            "The delay exceeds the maximum of 20000ms",
        ),
        CannedResponse::json(
            400,
            &json!({"errcode": "M_MAX_DELAY_EXCEEDED", "error": "x", "max_delay": 10_000}),
        ),
        matrix_error(
            403,
            "M_FORBIDDEN",
            "Delayed events are disabled on this server",
        ),
        CannedResponse::json(200, &json!({ "delay_id": "syd_unstable" })),
    ]));
    let queue = answers.clone();
    s.proxy.set_hook(move |request| {
        (request.method == "PUT" && request.path().contains("/org.matrix.msc4140/rooms/"))
            .then(|| queue.lock().expect("answers").remove(0))
    });
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(s.schedule(&leave("m1")).await);
    }
    assert_eq!(
        results,
        [
            Err(RequestError::DelayTooLarge {
                max_delay_ms: Some(30_000)
            }),
            Err(RequestError::DelayTooLarge {
                max_delay_ms: Some(20_000)
            }),
            Err(RequestError::DelayTooLarge {
                max_delay_ms: Some(10_000)
            }),
            Err(RequestError::DelayedEventsDisallowed),
            Ok(DelayId::new("syd_unstable")),
        ]
    );
    // Each answer proved the endpoint: the query parameter was never used.
    let seen = s.delayed_requests();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.iter().all(|(request, canned)| {
        *canned
            && request
                .path()
                .starts_with("/_matrix/client/unstable/org.matrix.msc4140/rooms/")
    }));
    assert_eq!(
        s.api.delayed.learnt_schedule(),
        Some(ScheduleForm::DedicatedUnstable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_delayed_events_is_never_sent_a_delay() {
    let s = Setup::start(HomeserverConfig::default().with_delayed_events(false)).await;
    // Synapse 1.163.2 switched off: `/versions` says `org.matrix.msc4140: false`, and the
    // capability is still served, with `max_delay_ms: 0`.
    let features = ServerFeatures::fetch_fresh(s.api.client())
        .await
        .expect("features");
    assert!(!features.delayed_events);
    let limits = s.api.delayed_events_limits().await.expect("limits");
    assert!(limits.advertised);
    assert_eq!(limits.max_delay_ms, Some(0));

    // Nothing is sent: a server without the feature would send the event at once.
    assert_eq!(
        s.schedule(&leave("m1")).await,
        Err(RequestError::DelayedEventsUnavailable)
    );
    assert!(s.delayed_requests().is_empty(), "{:?}", s.proxy.log());

    // Behind a `/versions` that claims the feature, Synapse's own refusal reads as disallowed.
    s.advertise(&["org.matrix.msc4354", "org.matrix.msc4140"]);
    assert_eq!(
        s.schedule(&leave("m1")).await,
        Err(RequestError::DelayedEventsDisallowed)
    );
    assert_eq!(
        s.api.delayed.learnt_schedule(),
        Some(ScheduleForm::QueryParameter)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_of_zero_turns_delayed_events_off() {
    let s = Setup::start(HomeserverConfig::default()).await;
    // Constructed: the flag on, the capability saying 0 (under its stable name).
    s.proxy.set_hook(|request| {
        (request.path() == "/_matrix/client/v3/capabilities").then(|| {
            CannedResponse::json(
                200,
                &json!({"capabilities": {"m.delayed_events": {"max_delay_ms": 0}}}),
            )
        })
    });
    let features = ServerFeatures::fetch_fresh(s.api.client())
        .await
        .expect("features");
    assert!(!features.delayed_events, "{features:?}");
    assert!(!features.capabilities().delayed_events);
    s.api.note_features(&features);
    assert_eq!(
        s.schedule(&leave("m1")).await,
        Err(RequestError::DelayedEventsUnavailable)
    );
    assert!(s.delayed_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_of_scheduled_events_is_not_a_rate_limit() {
    let s = Setup::start(HomeserverConfig::default().with_max_delayed_events_per_user(1)).await;
    s.schedule(&leave("m1")).await.expect("the one allowed");
    // Synapse 1.163.2: 429 M_LIMIT_EXCEEDED "The maximum number of delayed events has been
    // reached." with the time until our scheduled event fires (about a minute here).
    let Err(RequestError::TooManyScheduled {
        retry_after: Some(wait),
    }) = s.schedule(&leave("m2")).await
    else {
        panic!("expected the quota");
    };
    assert!(wait > Duration::from_secs(30) && wait <= MINUTE, "{wait:?}");
}
