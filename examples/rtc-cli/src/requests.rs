//! The three homeserver requests `rtc leave` makes itself: `matrix-sdk-rtc` keeps its HTTP
//! layer private (its pump decides every request), and matrix-sdk 0.18 has none of them.
//!
//! They go through the client's own HTTP client with its access token: list our scheduled
//! delayed events and fire one (MSC4140), and send a sticky event (MSC4354).
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use matrix_sdk::{
    Client,
    reqwest::{Method, StatusCode},
    ruma::{OwnedRoomId, RoomId, TransactionId},
};
use serde_json::{Value, json};

/// The MSC4140 management endpoints (unstable prefix, as Synapse serves them).
const DELAYED_EVENTS: [&str; 5] = [
    "_matrix",
    "client",
    "unstable",
    "org.matrix.msc4140",
    "delayed_events",
];
/// The query parameter making a send sticky (MSC4354), in ms.
const STICKY_DURATION: &str = "org.matrix.msc4354.sticky_duration_ms";
/// Every request's time limit.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One of our scheduled delayed events, as the server lists it.
pub(crate) struct Delayed {
    /// Its id (a secret: whoever has it can fire or cancel the event).
    pub(crate) delay_id: String,
    pub(crate) room_id: OwnedRoomId,
    pub(crate) event_type: String,
    /// The content that will be sent.
    pub(crate) content: Value,
}

impl std::fmt::Debug for Delayed {
    // The delay id is a bearer secret: never show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delayed")
            .field("room_id", &self.room_id)
            .field("event_type", &self.event_type)
            .finish_non_exhaustive()
    }
}

/// Our scheduled delayed events (entries the server lists without an id, room or type are
/// skipped).
pub(crate) async fn delayed_events(client: &Client) -> Result<Vec<Delayed>> {
    let answer = request(client, Method::GET, &DELAYED_EVENTS, &[], None)
        .await?
        .body()
        .context("listing our delayed events")?;
    // `delayed_events` now; `scheduled` in the older form of the MSC.
    let entries = answer
        .get("delayed_events")
        .or_else(|| answer.get("scheduled"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(entries.into_iter().filter_map(delayed).collect())
}

fn delayed(mut entry: Value) -> Option<Delayed> {
    let text = |field: &str| Some(entry.get(field)?.as_str()?.to_owned());
    let (delay_id, room_id, event_type) = (text("delay_id")?, text("room_id")?, text("type")?);
    Some(Delayed {
        delay_id,
        room_id: RoomId::parse(room_id).ok()?,
        event_type,
        content: entry
            .get_mut("content")
            .map(Value::take)
            .unwrap_or_default(),
    })
}

/// Sends the delayed event `delay_id` now (`POST .../delayed_events/{id}/send`, or the
/// older `POST .../delayed_events/{id}` with `{"action": "send"}` where the server does not
/// recognise the first form).
pub(crate) async fn fire_delayed_event(client: &Client, delay_id: &str) -> Result<()> {
    let mut path = DELAYED_EVENTS.to_vec();
    path.extend([delay_id, "send"]);
    let mut answer = request(client, Method::POST, &path, &[], Some(&json!({}))).await?;
    if answer.errcode() == Some("M_UNRECOGNIZED") {
        path.pop();
        let body = json!({ "action": "send" });
        answer = request(client, Method::POST, &path, &[], Some(&body)).await?;
    }
    answer.body().map(drop)
}

/// Sends a sticky message-like event now (`PUT .../send/{type}/{txn}` with
/// `org.matrix.msc4354.sticky_duration_ms`); returns its event ID.
pub(crate) async fn send_sticky(
    client: &Client,
    room_id: &RoomId,
    event_type: &str,
    content: &Value,
    sticky: Duration,
) -> Result<String> {
    let txn_id = TransactionId::new();
    let path = [
        "_matrix",
        "client",
        "v3",
        "rooms",
        room_id.as_str(),
        "send",
        event_type,
        txn_id.as_str(),
    ];
    let millis = sticky.as_millis().to_string();
    let query = [(STICKY_DURATION, millis.as_str())];
    let answer = request(client, Method::PUT, &path, &query, Some(content))
        .await?
        .body()?;
    answer
        .get("event_id")
        .and_then(Value::as_str)
        .map(ToOwned::to_owned)
        .with_context(|| format!("the server's answer has no event_id: {answer}"))
}

/// What the homeserver answered.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    /// The JSON body of a success, or the refusal as an error.
    fn body(self) -> Result<Value> {
        if self.status.is_success() {
            return Ok(self.body);
        }
        let error = self.body.get("error").and_then(Value::as_str).unwrap_or("");
        bail!(
            "the homeserver answered {} {}: {error}",
            self.status,
            self.errcode().unwrap_or("")
        )
    }

    fn errcode(&self) -> Option<&str> {
        self.body.get("errcode").and_then(Value::as_str)
    }
}

/// One authenticated request with a JSON body (or none). Fails only when no answer came.
async fn request(
    client: &Client,
    method: Method,
    path: &[&str],
    query: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Answer> {
    let token = client
        .access_token()
        .context("the client is not logged in")?;
    let mut url = client.homeserver();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("the homeserver URL cannot take a path"))?
        .pop_if_empty()
        .extend(path);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let mut builder = client
        .http_client()
        .request(method, url)
        .bearer_auth(token)
        .timeout(TIMEOUT);
    if let Some(body) = body {
        builder = builder
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = builder
        .send()
        .await
        .context("the request to the homeserver failed")?;
    let status = response.status();
    let text = response
        .text()
        .await
        .context("reading the homeserver's answer")?;
    Ok(Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}
