//! Performing the machine's requests: HTTP sends and delayed-event management (encrypted in
//! encrypted rooms, never plaintext there), decryption, member queries and checks for new
//! devices. Each runs in a task of its own and reports its outcome on the control queue.
use std::time::Instant;

use matrix_rtc_machine::{Outcome, Request, RequestId, RequestKind};
use matrix_rtc_membership::RequestOutcome;
use matrix_sdk::{
    Client,
    deserialized_responses::TimelineEventKind,
    ruma::{
        OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId,
        events::room::{encrypted::OriginalSyncRoomEncryptedEvent, member::MembershipState},
        serde::Raw,
    },
};
use serde_json::value::{RawValue, to_raw_value};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, trace, warn};

use super::Control;
use crate::{
    HomeserverApi, RequestError,
    encryption::{Encryptor, RoomSendLock},
    requests::{DelayId, millis},
};

/// Slack given to a request past the machine's own deadline before its task gives up.
const DEADLINE_SLACK: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything a request task needs. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Performer {
    pub(crate) api: HomeserverApi,
    pub(crate) control: mpsc::Sender<Control>,
    /// Our handle on the client's olm machine (clients built by `RtcClientBuilder` only):
    /// without it, nothing is sent into encrypted rooms.
    pub(crate) encryptor: Option<Encryptor>,
}

impl Performer {
    fn client(&self) -> &Client {
        self.api.client()
    }

    /// Performs `request` in a task of its own and reports the outcome.
    pub(crate) fn spawn(&self, request: Request) {
        let this = self.clone();
        let deadline = request.deadline();
        let (id, kind) = request.into_parts();
        let span = info_span!("rtc_request", request = %id, kind = kind_name(&kind));
        tokio::spawn(
            async move {
                let work = this.perform(kind);
                let outcome = match deadline {
                    Some(deadline) => {
                        let until = tokio::time::Instant::from_std(deadline + DEADLINE_SLACK);
                        tokio::time::timeout_at(until, work)
                            .await
                            .unwrap_or(Outcome::Http(RequestOutcome::Timeout))
                    }
                    None => work.await,
                };
                trace!(?outcome, "request finished");
                this.answer(id, outcome).await;
            }
            .instrument(span),
        );
    }

    async fn answer(&self, id: RequestId, outcome: Outcome) {
        if self
            .control
            .send(Control::Outcome { id, outcome })
            .await
            .is_err()
        {
            trace!(request = %id, "the pump stopped before the answer");
        }
    }

    async fn perform(&self, kind: RequestKind) -> Outcome {
        match kind {
            RequestKind::SendSticky {
                room_id,
                event_type,
                content,
                txn_id,
                sticky_duration,
            } => Outcome::Http(
                self.send(
                    &room_id,
                    event_type,
                    &content,
                    &txn_id,
                    sticky_duration,
                    None,
                )
                .await,
            ),
            RequestKind::ScheduleDelayedSticky {
                room_id,
                event_type,
                content,
                txn_id,
                sticky_duration,
                delay,
            } => Outcome::Http(
                self.send(
                    &room_id,
                    event_type,
                    &content,
                    &txn_id,
                    sticky_duration,
                    Some(delay),
                )
                .await,
            ),
            RequestKind::UpdateDelayed { delay_id, action } => {
                let result = self.api.update_delayed_event(&delay_id, action).await;
                Outcome::Http(match result {
                    Ok(()) => RequestOutcome::ok(),
                    Err(error) => outcome_of(&error),
                })
            }
            RequestKind::Decrypt { room_id, event } => self.decrypt(&room_id, event).await,
            RequestKind::QueryMember { room_id, user_id } => {
                self.query_member(room_id, user_id).await
            }
            RequestKind::CheckNewDevices { room_id } => self.check_devices(&room_id).await,
            other => {
                warn!(?other, "a request this pump does not know");
                Outcome::Http(local_failure())
            }
        }
    }

    /// Sends (or schedules) a sticky event, encrypted in an encrypted room.
    async fn send(
        &self,
        room_id: &RoomId,
        event_type: &'static str,
        content: &serde_json::Value,
        txn_id: &str,
        sticky_duration: std::time::Duration,
        delay: Option<std::time::Duration>,
    ) -> RequestOutcome {
        let prepared = match self.prepare(room_id, event_type, content).await {
            Ok(prepared) => prepared,
            Err(outcome) => return outcome,
        };
        let txn_id = OwnedTransactionId::from(txn_id);
        let result = match delay {
            Some(delay) => self
                .api
                .send_sticky_delayed(
                    room_id,
                    prepared.event_type,
                    &txn_id,
                    &prepared.body,
                    sticky_duration,
                    delay,
                )
                .await
                .map(|delay_id: DelayId| RequestOutcome::scheduled(delay_id)),
            None => self
                .api
                .send_sticky(
                    room_id,
                    prepared.event_type,
                    &txn_id,
                    &prepared.body,
                    sticky_duration,
                )
                .await
                .map(|event_id| RequestOutcome::sent(event_id.to_string())),
        };
        prepared.finish(result.is_ok());
        result.unwrap_or_else(|error| outcome_of(&error))
    }

    /// The event to send: as is in an unencrypted room, encrypted in an encrypted one. Never
    /// plaintext in an encrypted room: when we cannot encrypt (or cannot tell whether the room
    /// is encrypted) this is the failed outcome to report.
    async fn prepare(
        &self,
        room_id: &RoomId,
        event_type: &'static str,
        content: &serde_json::Value,
    ) -> Result<Prepared, RequestOutcome> {
        // Serialising a `Value` cannot fail; map it to a local error rather than panic.
        let body = to_raw_value(content).map_err(|_| local_failure())?;
        let client = self.client();
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
                event_type: matrix_sticky_events::wire::ROOM_ENCRYPTED,
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

    async fn decrypt(&self, room_id: &OwnedRoomId, event: Box<RawValue>) -> Outcome {
        let Some(room) = self.client().get_room(room_id) else {
            trace!(room = %room_id, "encrypted sticky event of an unknown room");
            return Outcome::DecryptionFailed;
        };
        let raw: Raw<OriginalSyncRoomEncryptedEvent> = Raw::from_json(event);
        let decrypted = match room.decrypt_event(&raw, None).await {
            Ok(event) => event,
            Err(error) => {
                debug!(room = %room_id, %error, "decryption failed");
                return Outcome::DecryptionFailed;
            }
        };
        let sender_device = decrypted
            .encryption_info()
            .and_then(|info| info.sender_device.clone());
        match &decrypted.kind {
            TimelineEventKind::Decrypted(event) => Outcome::Decrypted {
                event: event.event.json().get().to_owned(),
                sender_device,
            },
            TimelineEventKind::UnableToDecrypt { .. } | TimelineEventKind::PlainText { .. } => {
                Outcome::MissingRoomKey
            }
        }
    }

    async fn query_member(&self, room_id: OwnedRoomId, user_id: OwnedUserId) -> Outcome {
        let Some(room) = self.client().get_room(&room_id) else {
            warn!(room = %room_id, "member query for an unknown room");
            return Outcome::MemberUnknown;
        };
        match room.get_member(&user_id).await {
            Ok(Some(member)) => Outcome::Member {
                joined: *member.membership() == MembershipState::Join,
            },
            Ok(None) => Outcome::Member { joined: false },
            Err(error) => {
                warn!(room = %room_id, %error, "could not read a sender's room membership");
                Outcome::MemberUnknown
            }
        }
    }

    async fn check_devices(&self, room_id: &RoomId) -> Outcome {
        let (Some(encryptor), Some(room)) = (&self.encryptor, self.client().get_room(room_id))
        else {
            return Outcome::NewDevices { added: false };
        };
        let added = match encryptor
            .devices_added_since_share(self.client(), &room)
            .await
        {
            Ok(added) => added,
            Err(error) => {
                warn!(room = %room_id, %error, "could not check the room for new devices");
                false
            }
        };
        Outcome::NewDevices { added }
    }
}

fn kind_name(kind: &RequestKind) -> &'static str {
    match kind {
        RequestKind::SendSticky { .. } => "send_sticky",
        RequestKind::ScheduleDelayedSticky { .. } => "schedule_delayed_sticky",
        RequestKind::UpdateDelayed { .. } => "update_delayed",
        RequestKind::Decrypt { .. } => "decrypt",
        RequestKind::QueryMember { .. } => "query_member",
        RequestKind::CheckNewDevices { .. } => "check_new_devices",
        _ => "other",
    }
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

/// A failure of ours that no retry fixes (the machine treats it as a refusal).
fn local_failure() -> RequestOutcome {
    RequestOutcome::Http {
        status: 0,
        errcode: None,
    }
}

/// What a failed request means to the machine: the error mapping of the HTTP layer.
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
        // The server refuses delayed events, does not advertise them (nothing was sent), or
        // serves none of the forms we know: no dead-man switch for a schedule.
        RequestError::DelayedEventsDisallowed
        | RequestError::DelayedEventsUnavailable
        | RequestError::Unrecognized => RequestOutcome::Unsupported,
        // The server sent our delayed leave at once: it ignored the delay.
        RequestError::DelayIgnored { event_id } => RequestOutcome::sent(event_id.to_string()),
        // A quota, not a blip: a schedule refused this way means no dead-man switch (rather
        // than a join that waits up to an hour for a free slot).
        RequestError::TooManyScheduled { retry_after } => RequestOutcome::TooManyScheduled {
            retry_after: *retry_after,
        },
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
            local_failure()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use matrix_rtc_membership::RequestOutcome;
    use matrix_sdk::ruma::owned_event_id;

    use super::outcome_of;
    use crate::RequestError;

    /// What the own-membership machine is told for each delayed-event answer
    /// (docs/protocol.md §6.5): the machine's reactions are tested in matrix-rtc-membership.
    #[test]
    fn delayed_event_answers_become_the_outcomes_the_machine_acts_on() {
        let wait = Some(Duration::from_secs(7));
        let cases = [
            (RequestError::NotFound, RequestOutcome::NotFound),
            (RequestError::Conflict, RequestOutcome::Conflict),
            (
                RequestError::RateLimited { retry_after: wait },
                RequestOutcome::RateLimited { retry_after: wait },
            ),
            (
                RequestError::DelayTooLarge {
                    max_delay_ms: Some(5_000),
                },
                RequestOutcome::DelayTooLarge {
                    max_delay_ms: Some(5_000),
                },
            ),
            (
                RequestError::TooManyScheduled { retry_after: wait },
                RequestOutcome::TooManyScheduled { retry_after: wait },
            ),
            (
                RequestError::DelayedEventsDisallowed,
                RequestOutcome::Unsupported,
            ),
            (
                RequestError::DelayedEventsUnavailable,
                RequestOutcome::Unsupported,
            ),
            (RequestError::Unrecognized, RequestOutcome::Unsupported),
            (
                RequestError::DelayIgnored {
                    event_id: owned_event_id!("$sent"),
                },
                RequestOutcome::sent("$sent"),
            ),
            (
                RequestError::Network {
                    timed_out: true,
                    message: String::new(),
                },
                RequestOutcome::Timeout,
            ),
            (
                RequestError::Network {
                    timed_out: false,
                    message: String::new(),
                },
                RequestOutcome::Network,
            ),
            (
                RequestError::Http {
                    status: 403,
                    errcode: Some("M_FORBIDDEN".to_owned()),
                    message: "not in room".to_owned(),
                },
                RequestOutcome::Http {
                    status: 403,
                    errcode: Some("M_FORBIDDEN".to_owned()),
                },
            ),
        ];
        for (error, outcome) in cases {
            assert_eq!(outcome_of(&error), outcome, "{error:?}");
        }
    }
}
