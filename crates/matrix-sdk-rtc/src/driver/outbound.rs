//! The sending half of the driver: performs the requests the own-membership machines ask
//! for and reports each outcome back to the driver.
use std::{sync::Arc, time::Instant};

use matrix_rtc_membership::{MembershipContent, OwnRequest, OwnRequestKind, RequestOutcome};
use matrix_sdk::ruma::{OwnedRoomId, OwnedTransactionId};
use serde_json::value::{RawValue, to_raw_value};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, warn};

use super::Input;
use crate::{
    DelayId, DelayedEventAction, HomeserverApi, RequestError,
    encryption::{Encryptor, RoomSendLock},
    observe::CallKey,
    persist::OwnCallRecord,
    requests::millis,
};

/// Everything a request task needs.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub(crate) api: HomeserverApi,
    pub(crate) inputs: mpsc::UnboundedSender<Input>,
    /// Prefix of our transaction IDs: unique per driver run, so that a restarted app never
    /// reuses a transaction ID of an earlier run (the server would answer with the old event).
    pub(crate) txn_prefix: Arc<str>,
    /// Our handle on the client's olm machine (clients built by `RtcClientBuilder` only):
    /// without it, nothing is sent into encrypted rooms.
    pub(crate) encryptor: Option<Encryptor>,
}

/// An event ready to send.
struct Prepared {
    event_type: &'static str,
    body: Box<RawValue>,
    /// Set in an encrypted room.
    encrypted: Option<Encrypted>,
}

/// An encrypted event: the room's send lock, held until the send's answer, and timings.
struct Encrypted {
    _lock: RoomSendLock,
    started: Instant,
    locked: Instant,
    encrypted: Instant,
}

impl Prepared {
    /// After the send: releases the room's send lock, and logs what encryption cost.
    fn finish(self, ok: bool) {
        if let Some(encrypted) = self.encrypted {
            let now = Instant::now();
            debug!(
                ok,
                wait_ms = millis(encrypted.locked - encrypted.started),
                encrypt_ms = millis(encrypted.encrypted - encrypted.locked),
                send_ms = millis(now - encrypted.encrypted),
                "encrypted send"
            );
        }
    }
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
        let result = match request.kind() {
            OwnRequestKind::ScheduleDelayedLeave {
                txn_id,
                delay_ms,
                sticky_duration_ms,
            } => {
                // In an encrypted room the leave is encrypted now, with the room key of now.
                let event = match self.prepare(room_id, &content.sticky_leave()).await {
                    Ok(event) => event,
                    Err(outcome) => return outcome,
                };
                let sent = self
                    .api
                    .send_sticky_delayed(
                        room_id,
                        event.event_type,
                        &self.txn_id(&content.member_id, txn_id.get()),
                        &event.body,
                        ms(*sticky_duration_ms),
                        ms(*delay_ms),
                    )
                    .await;
                event.finish(sent.is_ok());
                sent.map(|delay_id| RequestOutcome::scheduled(core_delay_id(&delay_id)))
            }
            OwnRequestKind::SendJoin {
                txn_id,
                sticky_duration_ms,
            }
            | OwnRequestKind::RefreshJoin {
                txn_id,
                sticky_duration_ms,
            } => {
                self.send_now(
                    room_id,
                    &content.sticky_join(),
                    &self.txn_id(&content.member_id, txn_id.get()),
                    *sticky_duration_ms,
                )
                .await
            }
            OwnRequestKind::SendLeave {
                txn_id,
                sticky_duration_ms,
            } => {
                self.send_now(
                    room_id,
                    &content.sticky_leave(),
                    &self.txn_id(&content.member_id, txn_id.get()),
                    *sticky_duration_ms,
                )
                .await
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

    /// Sends a sticky member event now (encrypted in an encrypted room).
    async fn send_now(
        &self,
        room_id: &OwnedRoomId,
        content: &serde_json::Value,
        txn_id: &OwnedTransactionId,
        sticky_duration_ms: u64,
    ) -> Result<RequestOutcome, RequestError> {
        let event = match self.prepare(room_id, content).await {
            Ok(event) => event,
            Err(outcome) => return Ok(outcome),
        };
        let sent = self
            .api
            .send_sticky(
                room_id,
                event.event_type,
                txn_id,
                &event.body,
                ms(sticky_duration_ms),
            )
            .await;
        event.finish(sent.is_ok());
        sent.map(|event_id| RequestOutcome::sent(event_id.to_string()))
    }

    /// The event to send for `content`: as is in an unencrypted room, encrypted in an
    /// encrypted one. Never plaintext in an encrypted room: when we cannot encrypt (or cannot
    /// tell whether the room is encrypted) this is the failed outcome to report.
    async fn prepare(
        &self,
        room_id: &OwnedRoomId,
        content: &serde_json::Value,
    ) -> Result<Prepared, RequestOutcome> {
        let event_type = matrix_rtc_membership::wire::RTC_MEMBER_UNSTABLE;
        let body = raw(content)?;
        let client = self.api.client();
        let Some(room) = client.get_room(room_id) else {
            warn!(room = %room_id, "not sending into a room the client does not know (is it encrypted?)");
            return Err(local_failure());
        };
        let encrypted = match room.latest_encryption_state().await {
            Ok(state) => state.is_encrypted(),
            Err(error) => {
                warn!(room = %room_id, %error, "could not learn whether the room is encrypted; not sending");
                return Err(RequestOutcome::Network);
            }
        };
        if !encrypted {
            return Ok(Prepared {
                event_type,
                body,
                encrypted: None,
            });
        }
        let Some(encryptor) = &self.encryptor else {
            warn!(room = %room_id, "cannot encrypt in this room (client not built by RtcClient::builder); not sending");
            return Err(local_failure());
        };
        let started = Instant::now();
        let mut lock = encryptor.lock_room(room).await;
        let locked = Instant::now();
        match lock.encrypt(client, event_type, &body).await {
            Ok(body) => Ok(Prepared {
                event_type: crate::wire::ROOM_ENCRYPTED,
                body,
                encrypted: Some(Encrypted {
                    _lock: lock,
                    started,
                    locked,
                    encrypted: Instant::now(),
                }),
            }),
            Err(error) => {
                warn!(room = %room_id, %error, "could not encrypt our membership; not sending");
                Err(match error.request_error() {
                    Some(error) => outcome_of(error),
                    None if error.is_transient() => RequestOutcome::Network,
                    None => local_failure(),
                })
            }
        }
    }

    /// Ends a membership of an earlier run of the app: sends its delayed leave now, or, when
    /// that is gone or fails, a plain leave for its member ID (encrypted where needed). A
    /// second leave for a membership already ended is harmless.
    pub(crate) async fn end_previous_membership(&self, record: &OwnCallRecord) {
        if let Some(delay_id) = &record.delay_id {
            match self
                .api
                .update_delayed_event(&DelayId::new(delay_id.as_str()), DelayedEventAction::Send)
                .await
            {
                Ok(()) => {
                    debug!(room = %record.room_id, "sent the delayed leave of an earlier run");
                    return;
                }
                Err(error) => {
                    debug!(room = %record.room_id, %error, "delayed leave of an earlier run is gone")
                }
            }
        }
        let content =
            matrix_rtc_membership::sticky_leave_content(&record.slot_id, &record.member_id);
        let txn_id = OwnedTransactionId::from(format!("{}-previous-leave", self.txn_prefix));
        match self
            .send_now(
                &record.room_id,
                &content,
                &txn_id,
                record.sticky_duration_ms,
            )
            .await
        {
            Ok(RequestOutcome::Success { .. }) => {
                debug!(room = %record.room_id, "sent a leave for the membership of an earlier run");
            }
            Ok(outcome) => {
                warn!(room = %record.room_id, ?outcome, "could not end the membership of an earlier run")
            }
            Err(error) => {
                warn!(room = %record.room_id, %error, "could not end the membership of an earlier run")
            }
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
    to_raw_value(value).map_err(|_| local_failure())
}

/// A failure of ours that no retry fixes (the machine treats it as a refusal).
fn local_failure() -> RequestOutcome {
    RequestOutcome::Http {
        status: 0,
        errcode: None,
    }
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
