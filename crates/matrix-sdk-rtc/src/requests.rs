//! Custom requests for the endpoints matrix-sdk 0.18 lacks: sticky and delayed sends,
//! delayed-event management, the delayed-events capability, RTC transports and the side
//! connection's sliding sync request.
//!
//! Every request goes through `Client::send` (so the SDK adds the access token, refreshes it
//! and parses errors) with automatic retries disabled: the own-membership state machine decides
//! about retries. Every failure is one [`RequestError`].

use std::{sync::Arc, time::Duration};

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
mod quiet;
mod send;
mod sync;
pub(crate) mod wire;

#[cfg(test)]
pub(crate) use self::delayed::DelayedEventInfo;
#[cfg(test)]
use self::delayed::DelayedListEndpoint;
pub(crate) use self::delayed::{
    Advertised, DelayId, DelayedEventAction, DelayedEventsLimits, ManagementForm, ScheduleForm,
};
pub use self::error::RequestError;
use self::{
    delayed::{
        DelayedActionBodyEndpoint, DelayedActionEndpoint, DelayedActionStableEndpoint,
        DelayedEventEndpoint, DelayedEventUnstableEndpoint, DelayedForms,
    },
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
/// Requests are never retried automatically; each has a time limit (30 s). Clones share what
/// they learnt about the server's delayed events: what `/versions` advertises, and which
/// scheduling and management forms work (docs/protocol.md §6.9).
///
/// This layer sends what it is given: it does not encrypt content, and a server without
/// MSC4354 silently ignores the sticky parameter. Delayed events are the exception, because a
/// server without MSC4140 would send a "delayed" event at once: they are scheduled only where
/// `/versions` advertises them ([`RequestError::DelayedEventsUnavailable`] otherwise, with
/// nothing sent).
#[derive(Debug, Clone)]
pub(crate) struct HomeserverApi {
    client: Client,
    request_timeout: Duration,
    delayed: Arc<DelayedForms>,
}

impl HomeserverApi {
    /// Wraps a logged-in client.
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            delayed: Arc::new(DelayedForms::default()),
        }
    }

    /// Takes note of what the server's `/versions` (and its capability) said about delayed
    /// events, so that no request of ours needs to ask again.
    pub(crate) fn note_features(&self, features: &crate::ServerFeatures) {
        self.delayed
            .set_advertised(features.delayed_events_advertised());
    }

    /// What the server advertises for delayed events: as noted, else asked once.
    async fn delayed_advertised(&self) -> Result<Advertised, RequestError> {
        if let Some(advertised) = self.delayed.advertised() {
            return Ok(advertised);
        }
        let features = crate::ServerFeatures::fetch_fresh(&self.client).await?;
        self.note_features(&features);
        Ok(features.delayed_events_advertised())
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
        let query = encode_query(&send::send_query(Some(sticky_duration), None))?;
        let call = Call::<SendEventEndpoint>::new(
            vec![
                room_id.to_string(),
                event_type.to_owned(),
                txn_id.to_string(),
            ],
            query,
            Some(content.to_owned()),
        );
        let answer = self
            .call(call, RequestContext::Plain, self.request_timeout)
            .await?;
        send::sent_event_id(answer.body)
    }

    /// Schedules a sticky message-like event to be sent after `delay` and returns its delay
    /// id.
    ///
    /// The forms are tried in the order of [`ScheduleForm::order`], the one that worked last
    /// first: the dedicated endpoint (stable where `/versions` advertises
    /// `org.matrix.msc4140.stable`, then unstable), then the query parameter on `/send`; an
    /// answer `M_UNRECOGNIZED` (or a bare 404/405) moves on to the next form. The sticky
    /// duration is the `org.matrix.msc4354.sticky_duration_ms` query parameter in every form.
    /// On a server whose `/versions` advertises no delayed events, nothing is sent:
    /// [`RequestError::DelayedEventsUnavailable`]. Fails with [`RequestError::DelayIgnored`]
    /// when the server sent the event at once.
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
        let scheduled = Scheduled {
            room_id,
            event_type,
            key: txn_id.as_str(),
            state: false,
            content,
            sticky_duration: Some(sticky_duration),
            delay,
        };
        self.schedule(&scheduled).await
    }

    /// Schedules `scheduled` through the first form the server recognises.
    async fn schedule(&self, scheduled: &Scheduled<'_>) -> Result<DelayId, RequestError> {
        let advertised = self.delayed_advertised().await?;
        let forms = self.delayed.schedule_order(ScheduleForm::order(advertised));
        if forms.is_empty() {
            debug!("the server advertises no delayed events: not scheduling");
            return Err(RequestError::DelayedEventsUnavailable);
        }
        first_served(
            forms,
            |form| self.schedule_as(form, scheduled),
            |form| self.delayed.learn_schedule(form),
        )
        .await
    }

    async fn schedule_as(
        &self,
        form: ScheduleForm,
        scheduled: &Scheduled<'_>,
    ) -> Result<DelayId, RequestError> {
        let path_args = vec![
            scheduled.room_id.to_string(),
            scheduled.event_type.to_owned(),
            scheduled.key.to_owned(),
        ];
        let answer = match form {
            ScheduleForm::QueryParameter => {
                let query = encode_query(&send::send_query(
                    scheduled.sticky_duration,
                    Some(scheduled.delay),
                ))?;
                let body = Some(scheduled.content.to_owned());
                if scheduled.state {
                    let call = Call::<send::SendStateEndpoint>::new(path_args, query, body);
                    self.call(call, RequestContext::DelayedSend, self.request_timeout)
                        .await?
                } else {
                    let call = Call::<SendEventEndpoint>::new(path_args, query, body);
                    self.call(call, RequestContext::DelayedSend, self.request_timeout)
                        .await?
                }
            }
            ScheduleForm::Dedicated | ScheduleForm::DedicatedUnstable => {
                // The dedicated endpoint names the transaction in the path and the state key in
                // the body.
                let mut path_args = path_args;
                let state_key = scheduled.state.then_some(scheduled.key);
                if state_key.is_some() {
                    path_args[2] = TransactionId::new().to_string();
                }
                let query = encode_query(&send::send_query(scheduled.sticky_duration, None))?;
                let body = to_raw_json(&wire::DelayedEventBody {
                    delay_ms: millis(scheduled.delay),
                    state_key,
                    content: scheduled.content,
                })?;
                if form == ScheduleForm::Dedicated {
                    let call = Call::<DelayedEventEndpoint>::new(path_args, query, Some(body));
                    self.call(call, RequestContext::DelayedSend, self.request_timeout)
                        .await?
                } else {
                    let call =
                        Call::<DelayedEventUnstableEndpoint>::new(path_args, query, Some(body));
                    self.call(call, RequestContext::DelayedSend, self.request_timeout)
                        .await?
                }
            }
        };
        send::scheduled_delay_id(answer.body)
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
        let call = Call::<send::SendStateEndpoint>::new(
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
    /// Schedules a state event to be sent after `delay` and returns its delay id, through the
    /// forms of [`HomeserverApi::send_sticky_delayed`] (the dedicated endpoint gets a fresh
    /// transaction id).
    #[instrument(skip(self, content))]
    pub(crate) async fn send_delayed_state(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
        content: &RawValue,
        delay: Duration,
    ) -> Result<DelayId, RequestError> {
        let scheduled = Scheduled {
            room_id,
            event_type,
            key: state_key,
            state: true,
            content,
            sticky_duration: None,
            delay,
        };
        self.schedule(&scheduled).await
    }

    /// Restarts, cancels or sends a scheduled delayed event.
    ///
    /// The forms are tried in the order of [`ManagementForm::order`], the one that worked last
    /// first: the v1 path of the merged MSC4140, the
    /// unstable per-action path (`.../delayed_events/{id}/{action}`), then the older body form
    /// (`{"action": ...}`); an answer `M_UNRECOGNIZED` moves on to the next form. Always
    /// authenticated. 404 [`RequestError::NotFound`] means the event is unknown, already fired
    /// or cancelled; 409 [`RequestError::Conflict`] (merged MSC4140) that the action
    /// contradicts how it ended.
    #[instrument(skip(self, delay_id))]
    pub(crate) async fn update_delayed_event(
        &self,
        delay_id: &DelayId,
        action: DelayedEventAction,
    ) -> Result<(), RequestError> {
        first_served(
            self.delayed.management_order(ManagementForm::order()),
            |form| self.delayed_action(delay_id, action, form),
            |form| self.delayed.learn_management(form),
        )
        .await
    }

    async fn delayed_action(
        &self,
        delay_id: &DelayId,
        action: DelayedEventAction,
        form: ManagementForm,
    ) -> Result<(), RequestError> {
        let per_action = vec![
            delay_id.as_str().to_owned(),
            delayed::action_wire(action).to_owned(),
        ];
        if form == ManagementForm::StablePath {
            let call = Call::<DelayedActionStableEndpoint>::new(per_action, String::new(), None);
            self.call_quiet(call, RequestContext::Plain, self.request_timeout)
                .await?;
        } else if form == ManagementForm::UnstableBody {
            let body = to_raw_json(&wire::DelayedActionBody {
                action: delayed::action_wire(action),
            })?;
            let call = Call::<DelayedActionBodyEndpoint>::new(
                vec![delay_id.as_str().to_owned()],
                String::new(),
                Some(body),
            );
            self.call_quiet(call, RequestContext::Plain, self.request_timeout)
                .await?;
        } else {
            let call = Call::<DelayedActionEndpoint>::new(per_action, String::new(), None);
            self.call_quiet(call, RequestContext::Plain, self.request_timeout)
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

/// Tries `forms` in order with `attempt`: an answer [`RequestError::Unrecognized`] moves on to
/// the next form, any other answer is returned, and its form handed to `learn` when the answer
/// proves the server serves it (docs/protocol.md §6.9). `Unrecognized` when no form is served.
async fn first_served<F, T, Fut>(
    forms: Vec<F>,
    mut attempt: impl FnMut(F) -> Fut,
    learn: impl Fn(F),
) -> Result<T, RequestError>
where
    F: Copy + std::fmt::Debug,
    Fut: Future<Output = Result<T, RequestError>>,
{
    for form in forms {
        let result = attempt(form).await;
        if matches!(result, Err(RequestError::Unrecognized)) {
            debug!(
                ?form,
                "delayed-event form not recognised, trying the next one"
            );
            continue;
        }
        if result
            .as_ref()
            .err()
            .is_none_or(RequestError::proves_endpoint)
        {
            learn(form);
        }
        return result;
    }
    Err(RequestError::Unrecognized)
}

/// A delayed event to schedule, whatever the form.
#[derive(Debug)]
struct Scheduled<'a> {
    room_id: &'a RoomId,
    event_type: &'a str,
    /// The transaction id of a message-like event, or the state key of a state event.
    key: &'a str,
    /// A state event (only the tests of this layer schedule those).
    state: bool,
    content: &'a RawValue,
    sticky_duration: Option<Duration>,
    delay: Duration,
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
pub(crate) mod tests;
