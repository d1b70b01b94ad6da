//! The member lane: our member event (join, refresh, plain leave), and sync reports.

use std::{
    mem,
    time::{Duration, Instant},
};

use tracing::{debug, trace, warn};

use super::OwnMembership;
use crate::own::{
    request::{OwnAction, OwnRequestKind, Transient, TxnId, Verdict},
    state::{AfterLeave, Attempt, Goal, InFlight, JoinSend, Joined, LeaveSend, Member, Switch},
    status::{OwnError, OwnEvent, RejoinReason},
};

impl OwnMembership {
    pub(super) fn drive_member(&mut self, now: Instant) -> bool {
        match self.goal {
            Goal::Join(_) => self.drive_member_joining(now),
            Goal::Leave(_) => self.drive_member_leaving(now),
            Goal::Idle { .. } => false,
        }
    }

    fn drive_member_joining(&mut self, now: Instant) -> bool {
        let confirmed = self.switch_confirmed(now);
        let (next, progressed) = match mem::replace(&mut self.member, Member::Absent) {
            Member::Absent => (Member::AwaitSwitch { rejoin: None }, true),
            // Delayed leave first, then the join.
            Member::AwaitSwitch { rejoin } if confirmed => {
                // A new join is encrypted for the devices of now.
                self.early_refresh = false;
                let txn = self.new_txn();
                let f = self.emit_member(txn, false, now);
                let send = JoinSend {
                    txn,
                    previous: None,
                    rejoin,
                    attempt: Attempt::InFlight(f),
                    first_emitted_at: now,
                    outdated: false,
                };
                (Member::AwaitJoinAck(send), true)
            }
            Member::AwaitJoinAck(mut send) => match send.attempt {
                Attempt::RetryAt(at) if now >= at && confirmed => {
                    send.attempt =
                        Attempt::InFlight(self.emit_member(send.txn, send.previous.is_some(), now));
                    (Member::AwaitJoinAck(send), true)
                }
                // A fresh join must follow a confirmed switch: start over (new transaction).
                Attempt::RetryAt(at) if now >= at && send.previous.is_none() => (
                    Member::AwaitSwitch {
                        rejoin: send.rejoin,
                    },
                    true,
                ),
                _ if send
                    .previous
                    .as_ref()
                    .is_some_and(|p| now >= p.may_expire_at) =>
                {
                    debug!(slot = %self.slot_id, "our join expired before its refresh succeeded");
                    self.push_event(OwnEvent::Rejoining {
                        reason: RejoinReason::JoinExpired,
                    });
                    send.previous = None;
                    send.rejoin = Some(RejoinReason::JoinExpired);
                    (Member::AwaitJoinAck(send), true)
                }
                _ => (Member::AwaitJoinAck(send), false),
            },
            Member::AwaitRefreshDue(joined) if now >= joined.may_expire_at => {
                debug!(slot = %self.slot_id, "our join expired before its refresh");
                self.push_event(OwnEvent::Rejoining {
                    reason: RejoinReason::JoinExpired,
                });
                (
                    Member::AwaitSwitch {
                        rejoin: Some(RejoinReason::JoinExpired),
                    },
                    true,
                )
            }
            // The refresh is a join too: it also waits for a confirmed switch.
            Member::AwaitRefreshDue(joined)
                if (now >= joined.refresh_due || self.early_refresh) && confirmed =>
            {
                self.early_refresh = false;
                let txn = self.new_txn();
                let f = self.emit_member(txn, true, now);
                let send = JoinSend {
                    txn,
                    previous: Some(joined),
                    rejoin: None,
                    attempt: Attempt::InFlight(f),
                    first_emitted_at: now,
                    outdated: false,
                };
                (Member::AwaitJoinAck(send), true)
            }
            other => (other, false),
        };
        self.member = next;
        progressed
    }

    fn drive_member_leaving(&mut self, now: Instant) -> bool {
        // A cancel for a re-arm proves nothing about our leave: send it directly meanwhile.
        let switch_idle = matches!(
            self.switch,
            Switch::Off | Switch::Unavailable(_) | Switch::AwaitRearmCancelled(_)
        );
        let (next, progressed) = match mem::replace(&mut self.member, Member::Absent) {
            Member::AwaitSwitch { .. } | Member::AwaitRefreshDue(_) => (Member::Absent, true),
            Member::AwaitJoinAck(send) if send.attempt.in_flight().is_none() => {
                (Member::Absent, true)
            }
            // No delayed leave can carry our leave: send it directly.
            Member::Absent if self.member_maybe_live && switch_idle => {
                let txn = self.new_txn();
                let f = self.emit_leave(txn, now);
                (
                    Member::AwaitLeaveAck(LeaveSend {
                        txn,
                        attempt: Attempt::InFlight(f),
                    }),
                    true,
                )
            }
            Member::AwaitLeaveAck(send)
                if send.attempt.in_flight().is_none() && !self.member_maybe_live =>
            {
                (Member::Absent, true)
            }
            Member::AwaitLeaveAck(mut send) => match send.attempt {
                Attempt::RetryAt(at) if now >= at => {
                    send.attempt = Attempt::InFlight(self.emit_leave(send.txn, now));
                    (Member::AwaitLeaveAck(send), true)
                }
                _ => (Member::AwaitLeaveAck(send), false),
            },
            other => (other, false),
        };
        self.member = next;
        progressed
    }

    /// The answer (or local timeout) of the request in flight on this lane.
    pub(super) fn on_member_answer(&mut self, verdict: Verdict, now: Instant) {
        self.member = match mem::replace(&mut self.member, Member::Absent) {
            Member::AwaitJoinAck(send) => match send.attempt {
                Attempt::InFlight(f) => self.join_answered(send, f, verdict, now),
                Attempt::RetryAt(_) => Member::AwaitJoinAck(send),
            },
            Member::AwaitLeaveAck(send) => match send.attempt {
                Attempt::InFlight(_) => self.leave_answered(send, verdict, now),
                Attempt::RetryAt(_) => Member::AwaitLeaveAck(send),
            },
            other => other,
        };
    }

    fn join_answered(
        &mut self,
        send: JoinSend,
        f: InFlight,
        verdict: Verdict,
        now: Instant,
    ) -> Member {
        let action = if send.previous.is_some() {
            OwnAction::RefreshJoin
        } else {
            OwnAction::SendJoin
        };
        let sticky_ms = self.session().map_or(0, |s| s.sticky_duration_ms);
        let sticky = Duration::from_millis(sticky_ms);
        if send.outdated {
            if matches!(
                verdict,
                Verdict::Done { .. } | Verdict::Retry(Transient::Timeout | Transient::Network)
            ) {
                // It may have (re-)added us, or not.
                self.member_maybe_live = true;
                self.extend_member_gone_by(now.max(f.deadline) + sticky);
            }
            debug!(slot = %self.slot_id, "a join sent before our leave went out was answered; sending a new one");
            return Member::AwaitSwitch {
                rejoin: send.rejoin,
            };
        }
        match verdict {
            Verdict::Done { .. } => {
                self.retries.success(action);
                self.member_maybe_live = true;
                self.extend_member_gone_by(now + sticky);
                debug!(slot = %self.slot_id, refresh = send.previous.is_some(), "join acknowledged");
                // The server may have processed the first attempt of the transaction: the
                // lifetime counts from there.
                Member::AwaitRefreshDue(Joined {
                    acked_at: now,
                    refresh_due: send.first_emitted_at + self.config.refresh_after(sticky_ms),
                    may_expire_at: send.first_emitted_at + sticky,
                    seen_in_sync: send.previous.as_ref().is_some_and(|p| p.seen_in_sync),
                })
            }
            Verdict::Retry(failure) => {
                if matches!(failure, Transient::Timeout | Transient::Network) {
                    // It may have reached the server.
                    self.member_maybe_live = true;
                    self.extend_member_gone_by(
                        f.emitted_at + self.config.request_timeout() + sticky,
                    );
                }
                let wait = self.retry_wait(action, failure);
                Member::AwaitJoinAck(JoinSend {
                    attempt: Attempt::RetryAt(now + wait),
                    ..send
                })
            }
            refused => {
                let (status, errcode) = refused.refusal();
                warn!(slot = %self.slot_id, status, ?errcode, "the server refused our join");
                self.fail(OwnError::JoinRejected { status, errcode });
                match send.previous {
                    Some(joined) => Member::AwaitRefreshDue(joined),
                    None => Member::Absent,
                }
            }
        }
    }

    fn leave_answered(&mut self, send: LeaveSend, verdict: Verdict, now: Instant) -> Member {
        let action = OwnAction::SendLeave;
        match verdict {
            Verdict::Done { .. } => {
                self.retries.success(action);
                debug!(slot = %self.slot_id, "our leave is out (sent directly)");
                self.member_maybe_live = false;
                Member::Absent
            }
            Verdict::Retry(failure) => {
                let wait = self.retry_wait(action, failure);
                Member::AwaitLeaveAck(LeaveSend {
                    attempt: Attempt::RetryAt(now + wait),
                    ..send
                })
            }
            refused => {
                let (status, errcode) = refused.refusal();
                warn!(slot = %self.slot_id, status, ?errcode, "the server refused our leave");
                self.member_maybe_live = false;
                if let Goal::Leave(leaving) = &mut self.goal
                    && matches!(leaving.then, AfterLeave::Idle)
                {
                    leaving.then = AfterLeave::Fail(OwnError::LeaveRejected { status, errcode });
                }
                Member::Absent
            }
        }
    }

    /// Sync reported whether it shows our membership.
    pub(super) fn on_sync(&mut self, present: bool, now: Instant) {
        let Goal::Join(session) = &mut self.goal else {
            trace!(slot = %self.slot_id, present, "sync report ignored: not joining");
            return;
        };
        let mut missing = false;
        match &mut self.member {
            Member::AwaitRefreshDue(joined) => {
                if present {
                    joined.seen_in_sync = true;
                    session.unseen_rejoins = 0;
                } else if joined.seen_in_sync
                    || now >= joined.acked_at + self.config.sync_grace(session.unseen_rejoins)
                {
                    if !joined.seen_in_sync {
                        session.unseen_rejoins = session.unseen_rejoins.saturating_add(1);
                    }
                    missing = true;
                } else {
                    trace!(slot = %self.slot_id, "sync does not show our join yet (grace period)");
                }
            }
            // A refresh is on its way: it re-adds us anyway.
            Member::AwaitJoinAck(JoinSend {
                previous: Some(joined),
                ..
            }) => {
                if present {
                    joined.seen_in_sync = true;
                }
            }
            Member::Absent
            | Member::AwaitSwitch { .. }
            | Member::AwaitJoinAck(_)
            | Member::AwaitLeaveAck(_) => {
                trace!(slot = %self.slot_id, present, "sync report ignored: no acknowledged join");
            }
        }
        if missing {
            debug!(slot = %self.slot_id, "sync no longer shows our membership: re-joining");
            self.rejoin(RejoinReason::MissingFromSync);
        }
    }

    /// Our membership is gone while we want to be in the call: send the join again (same
    /// member id) once the switch is confirmed.
    pub(super) fn rejoin(&mut self, reason: RejoinReason) {
        let next = match mem::replace(&mut self.member, Member::Absent) {
            Member::AwaitRefreshDue(_) => Member::AwaitSwitch {
                rejoin: Some(reason),
            },
            // A join or refresh on its way: await its answer (one request at a time), then
            // start over with a new transaction.
            Member::AwaitJoinAck(send) if send.attempt.in_flight().is_some() => {
                Member::AwaitJoinAck(JoinSend {
                    previous: None,
                    rejoin: Some(reason),
                    outdated: true,
                    ..send
                })
            }
            Member::AwaitJoinAck(_) => Member::AwaitSwitch {
                rejoin: Some(reason),
            },
            other => {
                trace!(slot = %self.slot_id, ?reason, "no acknowledged join to re-send");
                self.member = other;
                return;
            }
        };
        self.member = next;
        self.push_event(OwnEvent::Rejoining { reason });
    }

    fn extend_member_gone_by(&mut self, at: Instant) {
        self.member_gone_by = Some(self.member_gone_by.map_or(at, |old| old.max(at)));
    }

    fn emit_member(&mut self, txn: TxnId, refresh: bool, now: Instant) -> InFlight {
        // From here on our join may be on the server: its sticky duration is the session's.
        self.fix_sticky_duration();
        // Only called with a session.
        let (member_id, sticky_duration_ms) = self
            .session()
            .map(|s| (s.member_id.clone(), s.sticky_duration_ms))
            .unwrap_or_default();
        let kind = if refresh {
            OwnRequestKind::RefreshJoin {
                txn_id: txn,
                sticky_duration_ms,
            }
        } else {
            OwnRequestKind::SendJoin {
                txn_id: txn,
                sticky_duration_ms,
            }
        };
        let timeout = self.config.request_timeout();
        self.emit(&member_id, kind, timeout, now)
    }

    fn emit_leave(&mut self, txn: TxnId, now: Instant) -> InFlight {
        let (member_id, sticky_duration_ms) = self
            .session()
            .map(|s| (s.member_id.clone(), s.sticky_duration_ms))
            .unwrap_or_default();
        let kind = OwnRequestKind::SendLeave {
            txn_id: txn,
            sticky_duration_ms,
        };
        let timeout = self.config.request_timeout();
        self.emit(&member_id, kind, timeout, now)
    }
}
