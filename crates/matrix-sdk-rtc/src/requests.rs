//! Custom requests for the endpoints matrix-sdk 0.18 lacks: sticky and delayed sends,
//! delayed-event management, the delayed-events capability, RTC transports and the side
//! connection's sliding sync request.
//!
//! Every request goes through `Client::send` (so the SDK adds the access token, refreshes it
//! and parses errors) with automatic retries disabled: the own-membership state machine decides
//! about retries. Every failure is one [`RequestError`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use matrix_sdk::{
    Client,
    config::RequestConfig,
    ruma::{OwnedEventId, RoomId, TransactionId, exports::serde_html_form},
};
use serde::Serialize;
use serde_json::value::{RawValue, to_raw_value};
use tracing::{debug, instrument};

mod delayed;
mod discovery;
mod endpoint;
mod error;
mod send;
mod sync;
pub(crate) mod wire;

#[cfg(test)]
pub(crate) use self::delayed::DelayedEventInfo;
pub(crate) use self::delayed::{DelayId, DelayedEventAction, DelayedEventsLimits};
pub use self::error::RequestError;
#[cfg(test)]
use self::{delayed::DelayedListEndpoint, send::SendStateEndpoint};
use self::{
    delayed::{DelayedActionBodyEndpoint, DelayedActionEndpoint},
    discovery::{CapabilitiesEndpoint, RtcTransportsEndpoint},
    endpoint::{Answer, Call, Endpoint},
    send::SendEventEndpoint,
    sync::SlidingSyncEndpoint,
};
pub(crate) use self::{
    endpoint::wall_clock_ms,
    error::{RequestContext, map_http_error},
    sync::{SyncPage, SyncRequest},
};

/// Default time limit of one request (matrix-sdk's own default).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The homeserver endpoints of sticky events (MSC4354), delayed events (MSC4140) and RTC
/// transports (MSC4143), on top of a logged-in [`Client`].
///
/// Requests are never retried automatically; each has a time limit (30 s unless changed with
/// [`HomeserverApi::with_request_timeout`]). Clones share the knowledge of which delayed-event
/// management form the server understands.
///
/// This layer sends exactly what it is given: it neither encrypts content nor checks that the
/// server supports a feature (see [`ServerFeatures`](crate::ServerFeatures)); a server without
/// MSC4354 or MSC4140 silently ignores the parameters.
#[derive(Debug, Clone)]
pub(crate) struct HomeserverApi {
    client: Client,
    request_timeout: Duration,
    /// Set once the per-action management path got `M_UNRECOGNIZED` and the body form worked.
    management_body_form: Arc<AtomicBool>,
}

impl HomeserverApi {
    /// Wraps a logged-in client.
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            management_body_form: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The wrapped client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a sticky message-like event (`PUT .../send/{type}/{txn}` with
    /// `org.matrix.msc4354.sticky_duration_ms`) and returns its event id.
    ///
    /// `content` is sent as is (encrypt it first in encrypted rooms, and pass
    /// `m.room.encrypted` as the type). Reuse `txn_id` when retrying the same send.
    #[instrument(skip(self, content))]
    pub(crate) async fn send_sticky(
        &self,
        room_id: &RoomId,
        event_type: &str,
        txn_id: &TransactionId,
        content: &RawValue,
        sticky_duration: Duration,
    ) -> Result<OwnedEventId, RequestError> {
        let answer = self
            .send_event(
                room_id,
                event_type,
                txn_id,
                content,
                Some(sticky_duration),
                None,
            )
            .await?;
        send::sent_event_id(answer.body)
    }

    /// Schedules a sticky message-like event to be sent after `delay` (both query parameters)
    /// and returns its delay id.
    ///
    /// Fails with [`RequestError::DelayIgnored`] when the server sent the event at once.
    #[instrument(skip(self, content))]
    pub(crate) async fn send_sticky_delayed(
        &self,
        room_id: &RoomId,
        event_type: &str,
        txn_id: &TransactionId,
        content: &RawValue,
        sticky_duration: Duration,
        delay: Duration,
    ) -> Result<DelayId, RequestError> {
        let answer = self
            .send_event(
                room_id,
                event_type,
                txn_id,
                content,
                Some(sticky_duration),
                Some(delay),
            )
            .await?;
        send::scheduled_delay_id(answer.body)
    }

    /// One `PUT .../send/{type}/{txn}` with the sticky and delay query parameters given; a
    /// delayed send maps its errors in the delayed-send context.
    async fn send_event(
        &self,
        room_id: &RoomId,
        event_type: &str,
        txn_id: &TransactionId,
        content: &RawValue,
        sticky_duration: Option<Duration>,
        delay: Option<Duration>,
    ) -> Result<Answer<wire::SendResponse>, RequestError> {
        let query = encode_query(&send::send_query(sticky_duration, delay))?;
        let call = Call::<SendEventEndpoint>::new(
            vec![
                room_id.to_string(),
                event_type.to_owned(),
                txn_id.to_string(),
            ],
            query,
            Some(content.to_owned()),
        );
        let context = if delay.is_some() {
            RequestContext::DelayedSend
        } else {
            RequestContext::Plain
        };
        self.call(call, context, self.request_timeout).await
    }

    #[cfg(test)] // Only the tests of this layer send state or list delayed events.
    /// Sends a state event now and returns its event id.
    #[instrument(skip(self, content))]
    pub(crate) async fn send_state(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
        content: &RawValue,
    ) -> Result<OwnedEventId, RequestError> {
        let call = Call::<SendStateEndpoint>::new(
            vec![
                room_id.to_string(),
                event_type.to_owned(),
                state_key.to_owned(),
            ],
            String::new(),
            Some(content.to_owned()),
        );
        let answer = self
            .call(call, RequestContext::Plain, self.request_timeout)
            .await?;
        send::sent_event_id(answer.body)
    }

    #[cfg(test)] // Only the tests of this layer send state or list delayed events.
    /// Schedules a state event to be sent after `delay` (`org.matrix.msc4140.delay`) and
    /// returns its delay id.
    ///
    /// Fails with [`RequestError::DelayIgnored`] when the server sent the event at once.
    #[instrument(skip(self, content))]
    pub(crate) async fn send_delayed_state(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
        content: &RawValue,
        delay: Duration,
    ) -> Result<DelayId, RequestError> {
        let query = encode_query(&send::send_query(None, Some(delay)))?;
        let call = Call::<SendStateEndpoint>::new(
            vec![
                room_id.to_string(),
                event_type.to_owned(),
                state_key.to_owned(),
            ],
            query,
            Some(content.to_owned()),
        );
        let answer = self
            .call(call, RequestContext::DelayedSend, self.request_timeout)
            .await?;
        send::scheduled_delay_id(answer.body)
    }

    /// Restarts, cancels or sends a scheduled delayed event.
    ///
    /// Uses the per-action path (`.../delayed_events/{id}/{action}`); when the server answers
    /// `M_UNRECOGNIZED`, falls back to the older body form (`{"action": ...}`) and remembers
    /// which form works. 404 [`RequestError::NotFound`] means the event is unknown, already
    /// fired or cancelled.
    #[instrument(skip(self, delay_id))]
    pub(crate) async fn update_delayed_event(
        &self,
        delay_id: &DelayId,
        action: DelayedEventAction,
    ) -> Result<(), RequestError> {
        let body_first = self.management_body_form.load(Ordering::Relaxed);
        let first = self.delayed_action(delay_id, action, body_first).await;
        if first != Err(RequestError::Unrecognized) {
            return first;
        }
        debug!(
            body_first,
            "delayed-event management form not recognised, trying the other one"
        );
        let second = self.delayed_action(delay_id, action, !body_first).await;
        if matches!(
            second,
            Ok(()) | Err(RequestError::NotFound | RequestError::Conflict)
        ) {
            self.management_body_form
                .store(!body_first, Ordering::Relaxed);
        }
        second
    }

    async fn delayed_action(
        &self,
        delay_id: &DelayId,
        action: DelayedEventAction,
        body_form: bool,
    ) -> Result<(), RequestError> {
        if body_form {
            let body = to_raw_json(&wire::DelayedActionBody {
                action: delayed::action_wire(action),
            })?;
            let call = Call::<DelayedActionBodyEndpoint>::new(
                vec![delay_id.as_str().to_owned()],
                String::new(),
                Some(body),
            );
            self.call(call, RequestContext::Plain, self.request_timeout)
                .await?;
        } else {
            let call = Call::<DelayedActionEndpoint>::new(
                vec![
                    delay_id.as_str().to_owned(),
                    delayed::action_wire(action).to_owned(),
                ],
                String::new(),
                None,
            );
            self.call(call, RequestContext::Plain, self.request_timeout)
                .await?;
        }
        Ok(())
    }

    #[cfg(test)] // Only the tests of this layer send state or list delayed events.
    /// Lists our own scheduled delayed events. Entries the server lists without a usable
    /// `delay_id`, `room_id` or `type` are skipped.
    pub(crate) async fn delayed_events(&self) -> Result<Vec<DelayedEventInfo>, RequestError> {
        let call = Call::<DelayedListEndpoint>::new(Vec::new(), String::new(), None);
        let answer = self
            .call(call, RequestContext::Plain, self.request_timeout)
            .await?;
        Ok(delayed::parse_delayed_list(answer.body))
    }

    /// Reads the delayed-events limits from `GET /capabilities`.
    ///
    /// The capability may be missing where delayed events work: detect support with
    /// [`ServerFeatures`](crate::ServerFeatures) and read only limits here.
    pub(crate) async fn delayed_events_limits(&self) -> Result<DelayedEventsLimits, RequestError> {
        let call = Call::<CapabilitiesEndpoint>::new(Vec::new(), String::new(), None);
        let answer = self
            .call(call, RequestContext::Plain, self.request_timeout)
            .await?;
        Ok(delayed::parse_limits(&answer.body))
    }

    /// The RTC transports the homeserver offers, in its order of preference, each raw JSON
    /// (`GET .../org.matrix.msc4143/rtc/transports`; empty when none are configured).
    pub(crate) async fn rtc_transports(&self) -> Result<Vec<Box<RawValue>>, RequestError> {
        let call = Call::<RtcTransportsEndpoint>::new(Vec::new(), String::new(), None);
        let answer = self
            .call(call, RequestContext::Plain, self.request_timeout)
            .await?;
        Ok(discovery::transports(answer.body))
    }

    /// One request of the side connection, with its own time limit (above the long-poll
    /// timeout).
    pub(crate) async fn sliding_sync(
        &self,
        request: SyncRequest<'_>,
        request_timeout: Duration,
    ) -> Result<SyncPage, RequestError> {
        let call =
            Call::<SlidingSyncEndpoint>::new(Vec::new(), request.query()?, Some(request.body()?));
        let answer = self
            .call(call, RequestContext::SideSync, request_timeout)
            .await?;
        Ok(SyncPage::from_answer(answer))
    }

    async fn call<E: Endpoint>(
        &self,
        call: Call<E>,
        context: RequestContext,
        timeout: Duration,
    ) -> Result<Answer<E::Answer>, RequestError> {
        let config = RequestConfig::new().disable_retry().timeout(timeout);
        self.client
            .send(call)
            .with_request_config(config)
            .await
            .map_err(|error| map_http_error(&error, context))
    }
}

/// Milliseconds of a duration, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Encodes query parameters (`application/x-www-form-urlencoded`).
pub(crate) fn encode_query<T: Serialize + ?Sized>(pairs: &T) -> Result<String, RequestError> {
    serde_html_form::to_string(pairs)
        .map_err(|error| RequestError::Other(format!("could not encode the query: {error}")))
}

fn to_raw_json<T: Serialize>(value: &T) -> Result<Box<RawValue>, RequestError> {
    to_raw_value(value)
        .map_err(|error| RequestError::Other(format!("could not encode the body: {error}")))
}

#[cfg(test)]
mod tests;
