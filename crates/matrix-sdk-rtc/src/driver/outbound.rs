//! The sending half of the driver: performs the requests the own-membership machines ask
//! for and reports each outcome back to the driver.
use std::sync::Arc;

use matrix_rtc_membership::{MembershipContent, OwnRequest, OwnRequestKind, RequestOutcome};
use matrix_sdk::ruma::{OwnedRoomId, OwnedTransactionId};
use serde_json::value::{RawValue, to_raw_value};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span};

use super::Input;
use crate::{DelayId, DelayedEventAction, HomeserverApi, RequestError, observe::CallKey};

/// Everything a request task needs.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub(crate) api: HomeserverApi,
    pub(crate) inputs: mpsc::UnboundedSender<Input>,
    /// Prefix of our transaction IDs: unique per driver run, so that a restarted app never
    /// reuses a transaction ID of an earlier run (the server would answer with the old event).
    pub(crate) txn_prefix: Arc<str>,
}

impl Outbound {
    fn txn_id(&self, member_id: &str, txn: u64) -> OwnedTransactionId {
        // The member ID is chosen by us (a UUID), but keep the ID short and URL-safe anyway.
        let short: String = member_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        OwnedTransactionId::from(format!("{}-{short}-{txn}", self.txn_prefix))
    }

    /// Performs `request` for `call` in a task of its own and reports the outcome.
    pub(crate) fn spawn(&self, call: CallKey, content: MembershipContent, request: OwnRequest) {
        let this = self.clone();
        let span = info_span!("rtc_request", room = %call.room_id, slot = %call.slot_id, action = %request.action());
        tokio::spawn(
            async move {
                let outcome = this.perform(&call.room_id, &content, &request).await;
                debug!(?outcome, "request finished");
                let _ = this.inputs.send(Input::Outcome {
                    call,
                    id: request.id(),
                    outcome,
                });
            }
            .instrument(span),
        );
    }

    async fn perform(
        &self,
        room_id: &OwnedRoomId,
        content: &MembershipContent,
        request: &OwnRequest,
    ) -> RequestOutcome {
        let event_type = matrix_rtc_membership::wire::RTC_MEMBER_UNSTABLE;
        let result = match request.kind() {
            OwnRequestKind::ScheduleDelayedLeave {
                txn_id,
                delay_ms,
                sticky_duration_ms,
            } => {
                let body = match raw(&content.sticky_leave()) {
                    Ok(body) => body,
                    Err(outcome) => return outcome,
                };
                self.api
                    .send_sticky_delayed(
                        room_id,
                        event_type,
                        &self.txn_id(&content.member_id, txn_id.get()),
                        &body,
                        ms(*sticky_duration_ms),
                        ms(*delay_ms),
                    )
                    .await
                    .map(|delay_id| RequestOutcome::scheduled(core_delay_id(&delay_id)))
            }
            OwnRequestKind::SendJoin {
                txn_id,
                sticky_duration_ms,
            }
            | OwnRequestKind::RefreshJoin {
                txn_id,
                sticky_duration_ms,
            } => {
                let body = match raw(&content.sticky_join()) {
                    Ok(body) => body,
                    Err(outcome) => return outcome,
                };
                self.api
                    .send_sticky(
                        room_id,
                        event_type,
                        &self.txn_id(&content.member_id, txn_id.get()),
                        &body,
                        ms(*sticky_duration_ms),
                    )
                    .await
                    .map(|event_id| RequestOutcome::sent(event_id.to_string()))
            }
            OwnRequestKind::SendLeave {
                txn_id,
                sticky_duration_ms,
            } => {
                let body = match raw(&content.sticky_leave()) {
                    Ok(body) => body,
                    Err(outcome) => return outcome,
                };
                self.api
                    .send_sticky(
                        room_id,
                        event_type,
                        &self.txn_id(&content.member_id, txn_id.get()),
                        &body,
                        ms(*sticky_duration_ms),
                    )
                    .await
                    .map(|event_id| RequestOutcome::sent(event_id.to_string()))
            }
            OwnRequestKind::RestartDelayedLeave { delay_id } => {
                self.manage(delay_id, DelayedEventAction::Restart).await
            }
            OwnRequestKind::SendDelayedLeave { delay_id } => {
                self.manage(delay_id, DelayedEventAction::Send).await
            }
            OwnRequestKind::CancelDelayedLeave { delay_id } => {
                self.manage(delay_id, DelayedEventAction::Cancel).await
            }
        };
        match result {
            Ok(outcome) => outcome,
            Err(error) => outcome_of(&error),
        }
    }

    async fn manage(
        &self,
        delay_id: &matrix_rtc_membership::DelayId,
        action: DelayedEventAction,
    ) -> Result<RequestOutcome, RequestError> {
        self.api
            .update_delayed_event(&DelayId::new(delay_id.as_str()), action)
            .await
            .map(|()| RequestOutcome::ok())
    }
}

fn ms(millis: u64) -> std::time::Duration {
    std::time::Duration::from_millis(millis)
}

fn core_delay_id(delay_id: &DelayId) -> matrix_rtc_membership::DelayId {
    matrix_rtc_membership::DelayId::new(delay_id.as_str())
}

fn raw(value: &serde_json::Value) -> Result<Box<RawValue>, RequestOutcome> {
    // Serialising a `Value` cannot fail; map it to a local error rather than panic.
    to_raw_value(value).map_err(|_| RequestOutcome::Http {
        status: 0,
        errcode: None,
    })
}

/// What a failed request means to the own-membership machine.
pub(crate) fn outcome_of(error: &RequestError) -> RequestOutcome {
    match error {
        RequestError::NotFound => RequestOutcome::NotFound,
        RequestError::Conflict => RequestOutcome::Conflict,
        RequestError::RateLimited { retry_after } => RequestOutcome::RateLimited {
            retry_after: *retry_after,
        },
        RequestError::DelayTooLarge { max_delay_ms } => RequestOutcome::DelayTooLarge {
            max_delay_ms: *max_delay_ms,
        },
        RequestError::DelayedEventsDisallowed | RequestError::Unrecognized => {
            RequestOutcome::Unsupported
        }
        // The server sent our delayed leave at once: it ignored the delay.
        RequestError::DelayIgnored { event_id } => RequestOutcome::sent(event_id.to_string()),
        // A quota, not a transient: the machine treats it like a rate limit it must wait out.
        RequestError::TooManyScheduled => RequestOutcome::RateLimited { retry_after: None },
        RequestError::Network {
            timed_out: true, ..
        } => RequestOutcome::Timeout,
        RequestError::Network {
            timed_out: false, ..
        } => RequestOutcome::Network,
        RequestError::Http {
            status, errcode, ..
        } => RequestOutcome::Http {
            status: *status,
            errcode: errcode.clone(),
        },
        RequestError::UnknownPos | RequestError::InvalidResponse(_) | RequestError::Other(_) => {
            RequestOutcome::Http {
                status: 0,
                errcode: None,
            }
        }
    }
}
