//! The switch lane: our delayed leave (schedule, restart, send, cancel).

use std::{
    mem,
    time::{Duration, Instant},
};

use tracing::{debug, trace, warn};

use super::OwnMembership;
use crate::own::{
    request::{OwnAction, OwnRequestKind, Transient, Verdict},
    state::{
        Armed, Attempt, Cancelling, Goal, InFlight, JoinSend, Leftover, Member, SchedulePurpose,
        Scheduling, Switch,
    },
    status::{OwnEvent, RejoinReason, UnavailableReason},
};

impl OwnMembership {
    pub(super) fn drive_switch(&mut self, now: Instant) -> bool {
        match self.goal {
            Goal::Join(_) => self.drive_switch_joining(now),
            Goal::Leave(_) => self.drive_switch_leaving(now),
            Goal::Idle { .. } => false,
        }
    }

    fn drive_switch_joining(&mut self, now: Instant) -> bool {
        let (next, progressed) = match mem::replace(&mut self.switch, Switch::Off) {
            Switch::Off => (self.start_switch(now), true),
            Switch::AwaitScheduled(mut s) => match s.attempt {
                Attempt::RetryAt(at) if now >= at => {
                    s.attempt = Attempt::InFlight(self.emit_schedule(&s, now));
                    (Switch::AwaitScheduled(s), true)
                }
                _ => (Switch::AwaitScheduled(s), false),
            },
            Switch::AwaitRestartDue(mut a) => {
                // Unconfirmed (the earliest firing instant has passed): find out at once,
                // unless we are waiting out a failure.
                if now >= a.expected_fire && !a.backing_off {
                    a.next_restart = a.next_restart.min(now);
                }
                if now >= a.next_restart {
                    (self.emit_restart(a, now), true)
                } else if self.rearm_at.is_some_and(|at| now >= at) {
                    // New devices: cancel it, then schedule a new one (never two at once).
                    self.rearm_at = None;
                    debug!(slot = %self.slot_id, "new devices: cancelling our delayed leave to schedule a new one");
                    let f = self.emit_cancel(&a, now);
                    (
                        Switch::AwaitRearmCancelled(Cancelling {
                            target: a,
                            attempt: Attempt::InFlight(f),
                        }),
                        true,
                    )
                } else {
                    (Switch::AwaitRestartDue(a), false)
                }
            }
            Switch::AwaitCancelled(mut c) => match c.attempt {
                Attempt::RetryAt(_) if now >= c.target.fire_by => {
                    debug!(slot = %self.slot_id, "the delayed leave we could not cancel has fired by now");
                    (Switch::Off, true)
                }
                Attempt::RetryAt(at) if now >= at => {
                    c.attempt = Attempt::InFlight(self.emit_cancel(&c.target, now));
                    (Switch::AwaitCancelled(c), true)
                }
                _ => (Switch::AwaitCancelled(c), false),
            },
            Switch::AwaitRearmCancelled(c) => self.drive_rearm_cancel(c, now),
            Switch::Unavailable(UnavailableReason::Capability) if self.caps.delayed_events => {
                debug!(slot = %self.slot_id, "delayed events are available now: arming a dead-man switch");
                (Switch::Off, true)
            }
            other => (other, false),
        };
        self.switch = next;
        progressed
    }

    /// Retries the cancel of a re-arm, until it is answered or the old delayed leave is gone
    /// either way (cancelled or fired).
    fn drive_rearm_cancel(&mut self, mut c: Cancelling, now: Instant) -> (Switch, bool) {
        match c.attempt {
            Attempt::RetryAt(_) if now >= c.target.fire_by => {
                debug!(slot = %self.slot_id, "the delayed leave we could not cancel is gone by now (cancelled or fired)");
                // Nothing left to cancel: the failure streak ends.
                self.retries.success(OwnAction::CancelDelayedLeave);
                self.on_leave_went_out(&c.target.member_id, false);
                (Switch::Off, true)
            }
            Attempt::RetryAt(at) if now >= at => {
                c.attempt = Attempt::InFlight(self.emit_cancel(&c.target, now));
                (Switch::AwaitRearmCancelled(c), true)
            }
            _ => (Switch::AwaitRearmCancelled(c), false),
        }
    }

    /// From [`Switch::Off`] while joining: get rid of a leftover, then schedule ours.
    fn start_switch(&mut self, now: Instant) -> Switch {
        match self.leftover.take() {
            Some(Leftover::Known(a)) if now < a.fire_by => {
                debug!(slot = %self.slot_id, "cancelling a delayed leave of an earlier join first");
                let f = self.emit_cancel(&a, now);
                Switch::AwaitCancelled(Cancelling {
                    target: a,
                    attempt: Attempt::InFlight(f),
                })
            }
            Some(Leftover::Known(_)) => {
                trace!(slot = %self.slot_id, "the delayed leave of an earlier join has fired by now");
                Switch::Off
            }
            Some(Leftover::Unresolved(mut s)) => {
                debug!(slot = %self.slot_id, "re-sending an unanswered schedule to learn its delay id");
                s.purpose = SchedulePurpose::Resolve;
                s.attempt = Attempt::InFlight(self.emit_schedule(&s, now));
                Switch::AwaitScheduled(s)
            }
            None if !self.caps.delayed_events => {
                debug!(slot = %self.slot_id, "no delayed events: joining without a dead-man switch");
                self.push_event(OwnEvent::DeadManSwitchUnavailable {
                    reason: UnavailableReason::Capability,
                });
                Switch::Unavailable(UnavailableReason::Capability)
            }
            None => {
                // A new schedule is encrypted for the devices of now.
                self.rearm_at = None;
                let txn = self.new_txn();
                let Some(session) = self.session() else {
                    return Switch::Off;
                };
                let mut s = Scheduling {
                    txn,
                    member_id: session.member_id.clone(),
                    delay_ms: session.delay_ms,
                    sticky_duration_ms: session.sticky_duration_ms,
                    purpose: SchedulePurpose::Arm,
                    attempt: Attempt::RetryAt(now),
                    first_emitted_at: now,
                    lowered: false,
                };
                s.attempt = Attempt::InFlight(self.emit_schedule(&s, now));
                Switch::AwaitScheduled(s)
            }
        }
    }

    fn drive_switch_leaving(&mut self, now: Instant) -> bool {
        let join_in_flight = matches!(
            &self.member,
            Member::AwaitJoinAck(JoinSend {
                attempt: Attempt::InFlight(_),
                ..
            })
        );
        let (next, progressed) = match mem::replace(&mut self.switch, Switch::Off) {
            Switch::AwaitScheduled(s) if s.attempt.in_flight().is_none() => {
                // Its outcome is unknown: the next join resolves it.
                self.keep_leftover(Leftover::Unresolved(s));
                (Switch::Off, true)
            }
            Switch::AwaitRestartDue(a) if now >= a.fire_by => {
                debug!(slot = %self.slot_id, "our delayed leave has fired");
                (Switch::Off, true)
            }
            Switch::AwaitRestartDue(a) if join_in_flight => (Switch::AwaitRestartDue(a), false),
            Switch::AwaitRestartDue(a) if self.member_maybe_live => {
                let f = self.emit_send(&a, now);
                (Switch::AwaitSent(a, f), true)
            }
            Switch::AwaitRestartDue(a) => {
                debug!(slot = %self.slot_id, "no join was sent: cancelling our delayed leave");
                let f = self.emit_cancel(&a, now);
                (
                    Switch::AwaitCancelled(Cancelling {
                        target: a,
                        attempt: Attempt::InFlight(f),
                    }),
                    true,
                )
            }
            // A re-arm interrupted by the leave: the cancel may have gone through, so the old
            // delayed leave proves nothing; the leave is sent directly meanwhile.
            Switch::AwaitRearmCancelled(c) => self.drive_rearm_cancel(c, now),
            Switch::AwaitCancelled(c) if c.attempt.in_flight().is_none() => {
                if now < c.target.fire_by {
                    self.keep_leftover(Leftover::Known(c.target));
                }
                (Switch::Off, true)
            }
            other => (other, false),
        };
        self.switch = next;
        progressed
    }

    /// The answer (or local timeout) of the request in flight on this lane.
    pub(super) fn on_switch_answer(&mut self, verdict: Verdict, now: Instant) {
        self.switch = match mem::replace(&mut self.switch, Switch::Off) {
            Switch::AwaitScheduled(s) => match s.attempt {
                Attempt::InFlight(f) => self.scheduled(s, f, verdict, now),
                Attempt::RetryAt(_) => Switch::AwaitScheduled(s),
            },
            Switch::AwaitRestarted(a, f) => self.restarted(a, f, verdict, now),
            Switch::AwaitCancelled(c) => match c.attempt {
                Attempt::InFlight(_) => self.cancelled(c, verdict, now),
                Attempt::RetryAt(_) => Switch::AwaitCancelled(c),
            },
            Switch::AwaitSent(a, _) => self.sent(a, verdict, now),
            Switch::AwaitRearmCancelled(c) => match c.attempt {
                Attempt::InFlight(_) => self.rearm_cancelled(c, verdict, now),
                Attempt::RetryAt(_) => Switch::AwaitRearmCancelled(c),
            },
            other => other,
        };
    }

    fn scheduled(&mut self, s: Scheduling, f: InFlight, verdict: Verdict, now: Instant) -> Switch {
        let action = OwnAction::ScheduleDelayedLeave;
        match verdict {
            Verdict::Done {
                delay_id: Some(delay_id),
                ..
            } => {
                self.retries.success(action);
                // Any attempt of the transaction may be the one the server processed: the
                // earliest firing counts from the first, the latest from this one.
                let delay = Duration::from_millis(s.delay_ms);
                let armed = Armed {
                    delay_id,
                    member_id: s.member_id,
                    delay_ms: s.delay_ms,
                    expected_fire: s.first_emitted_at + delay,
                    fire_by: f.emitted_at + self.config.request_timeout() + delay,
                    next_restart: s.first_emitted_at + self.config.restart_interval(s.delay_ms),
                    backing_off: false,
                };
                match s.purpose {
                    SchedulePurpose::Arm => {
                        debug!(slot = %self.slot_id, delay_ms = s.delay_ms, "delayed leave armed");
                        // Once fired, it carries the session's sticky duration.
                        self.fix_sticky_duration();
                        Switch::AwaitRestartDue(armed)
                    }
                    SchedulePurpose::Resolve => {
                        let g = self.emit_cancel(&armed, now);
                        Switch::AwaitCancelled(Cancelling {
                            target: armed,
                            attempt: Attempt::InFlight(g),
                        })
                    }
                }
            }
            Verdict::Done {
                delay_id: None,
                event_id: true,
            } => {
                self.retries.success(action);
                warn!(slot = %self.slot_id, "the server ignored the delay and sent our leave at once: no dead-man switch");
                self.on_leave_went_out(&s.member_id, true);
                match s.purpose {
                    SchedulePurpose::Arm => {
                        // Our leave is out with the session's sticky duration: the join that
                        // follows must last as long to win the key.
                        self.fix_sticky_duration();
                        self.caps.delayed_events = false;
                        self.push_event(OwnEvent::DeadManSwitchUnavailable {
                            reason: UnavailableReason::DelayIgnored,
                        });
                        Switch::Unavailable(UnavailableReason::DelayIgnored)
                    }
                    SchedulePurpose::Resolve => Switch::Off,
                }
            }
            Verdict::Retry(failure) => {
                let wait = self.retry_wait(action, failure);
                Switch::AwaitScheduled(Scheduling {
                    attempt: Attempt::RetryAt(now + wait),
                    ..s
                })
            }
            Verdict::TooLarge(Some(max))
                if s.purpose == SchedulePurpose::Arm
                    && !s.lowered
                    && max > 0
                    && max < s.delay_ms =>
            {
                debug!(slot = %self.slot_id, max_delay_ms = max, "delay too large: lowering it to the server maximum");
                self.push_event(OwnEvent::DelayLowered { delay_ms: max });
                if let Goal::Join(session) = &mut self.goal {
                    session.delay_ms = max;
                }
                let mut next = Scheduling {
                    delay_ms: max,
                    lowered: true,
                    txn: self.new_txn(),
                    first_emitted_at: now,
                    ..s
                };
                next.attempt = Attempt::InFlight(self.emit_schedule(&next, now));
                Switch::AwaitScheduled(next)
            }
            refused => match s.purpose {
                // Nothing was scheduled under that transaction.
                SchedulePurpose::Resolve => {
                    self.retries.success(action);
                    Switch::Off
                }
                SchedulePurpose::Arm => {
                    let reason = match refused {
                        Verdict::TooLarge(_) => UnavailableReason::DelayTooLarge,
                        Verdict::Quota(_) => UnavailableReason::TooManyScheduled,
                        _ => UnavailableReason::Refused,
                    };
                    // An answer ends the streak of transient failures: no stale
                    // "retries exhausted" while we are in the call without a switch.
                    self.retries.success(action);
                    warn!(slot = %self.slot_id, ?refused, "the server refused our delayed leave: no dead-man switch");
                    self.use_no_switch_sticky_duration();
                    self.push_event(OwnEvent::DeadManSwitchUnavailable { reason });
                    Switch::Unavailable(reason)
                }
            },
        }
    }

    fn restarted(&mut self, mut a: Armed, f: InFlight, verdict: Verdict, now: Instant) -> Switch {
        let action = OwnAction::RestartDelayedLeave;
        match verdict {
            Verdict::Done { .. } => {
                self.retries.success(action);
                a.expected_fire = f.emitted_at + Duration::from_millis(a.delay_ms);
                a.next_restart = f.emitted_at + self.config.restart_interval(a.delay_ms);
                a.backing_off = false;
                trace!(slot = %self.slot_id, "delayed leave restarted");
                Switch::AwaitRestartDue(a)
            }
            Verdict::NotFound => {
                self.retries.success(action);
                let may_have_fired = now >= a.expected_fire;
                debug!(slot = %self.slot_id, may_have_fired, "our delayed leave is gone: arming a new one");
                if may_have_fired {
                    self.on_leave_went_out(&a.member_id, false);
                }
                Switch::Off
            }
            Verdict::Conflict => {
                self.retries.success(action);
                debug!(slot = %self.slot_id, "our delayed leave was cancelled elsewhere: arming a new one");
                Switch::Off
            }
            Verdict::Retry(failure) => self.restart_later(a, failure, now),
            other => {
                warn!(slot = %self.slot_id, ?other, "unexpected answer to a restart; retrying");
                self.restart_later(a, Transient::Network, now)
            }
        }
    }

    fn restart_later(&mut self, mut a: Armed, failure: Transient, now: Instant) -> Switch {
        let wait = self.retry_wait(OwnAction::RestartDelayedLeave, failure);
        a.next_restart = now + wait;
        a.backing_off = !wait.is_zero();
        Switch::AwaitRestartDue(a)
    }

    fn cancelled(&mut self, c: Cancelling, verdict: Verdict, now: Instant) -> Switch {
        let action = OwnAction::CancelDelayedLeave;
        match verdict {
            Verdict::Done { .. } | Verdict::NotFound => {
                self.retries.success(action);
                debug!(slot = %self.slot_id, "delayed leave cancelled (or already gone)");
                Switch::Off
            }
            Verdict::Conflict => {
                self.retries.success(action);
                debug!(slot = %self.slot_id, "the delayed leave we cancelled was sent already");
                self.on_leave_went_out(&c.target.member_id, true);
                Switch::Off
            }
            Verdict::Retry(failure) => {
                let wait = self.retry_wait(action, failure);
                Switch::AwaitCancelled(Cancelling {
                    attempt: Attempt::RetryAt(now + wait),
                    ..c
                })
            }
            other => {
                warn!(slot = %self.slot_id, ?other, "unexpected answer to a cancel; retrying until it would have fired");
                let wait = self.retry_wait(action, Transient::Network);
                Switch::AwaitCancelled(Cancelling {
                    attempt: Attempt::RetryAt(now + wait),
                    ..c
                })
            }
        }
    }

    /// The cancel of a re-arm: once the old one is gone, [`Switch::Off`] schedules a new one. A
    /// failure is retried: the cancel may have gone through, so the old one is not restarted.
    fn rearm_cancelled(&mut self, c: Cancelling, verdict: Verdict, now: Instant) -> Switch {
        let a = &c.target;
        let action = OwnAction::CancelDelayedLeave;
        match verdict {
            Verdict::Done { .. } => {
                self.retries.success(action);
                debug!(slot = %self.slot_id, "delayed leave cancelled: scheduling a new one");
                Switch::Off
            }
            Verdict::NotFound => {
                self.retries.success(action);
                let may_have_fired = now >= a.expected_fire;
                debug!(slot = %self.slot_id, may_have_fired, "our delayed leave is gone: scheduling a new one");
                if may_have_fired {
                    self.on_leave_went_out(&a.member_id, false);
                }
                Switch::Off
            }
            Verdict::Conflict => {
                self.retries.success(action);
                debug!(slot = %self.slot_id, "the delayed leave we cancelled was sent already");
                self.on_leave_went_out(&a.member_id, true);
                Switch::Off
            }
            Verdict::Retry(failure) => self.rearm_later(c, failure, now),
            other => {
                warn!(slot = %self.slot_id, ?other, "unexpected answer to a cancel; retrying");
                self.rearm_later(c, Transient::Network, now)
            }
        }
    }

    fn rearm_later(&mut self, c: Cancelling, failure: Transient, now: Instant) -> Switch {
        let wait = self.retry_wait(OwnAction::CancelDelayedLeave, failure);
        Switch::AwaitRearmCancelled(Cancelling {
            attempt: Attempt::RetryAt(now + wait),
            ..c
        })
    }

    fn sent(&mut self, a: Armed, verdict: Verdict, now: Instant) -> Switch {
        let action = OwnAction::SendDelayedLeave;
        match verdict {
            Verdict::Done { .. } => {
                self.retries.success(action);
                debug!(slot = %self.slot_id, "our leave is out (delayed leave sent)");
                self.on_leave_went_out(&a.member_id, true);
            }
            Verdict::NotFound | Verdict::Conflict => {
                self.retries.success(action);
                debug!(slot = %self.slot_id, "our delayed leave is gone: sending the leave directly");
            }
            other => {
                debug!(slot = %self.slot_id, ?other, "sending our delayed leave failed: sending the leave directly");
                if now < a.fire_by {
                    self.keep_leftover(Leftover::Known(a));
                }
            }
        }
        Switch::Off
    }

    /// A leave for `member_id` went out (or, when not `definitive`, probably did). While
    /// joining, re-join; while leaving, a definitive leave ends our membership.
    fn on_leave_went_out(&mut self, member_id: &str, definitive: bool) {
        let ours = self.session().is_some_and(|s| s.member_id == member_id);
        if !ours {
            return;
        }
        match self.goal {
            Goal::Join(_) => self.rejoin(RejoinReason::DelayedLeaveFired),
            Goal::Leave(_) if definitive => self.member_maybe_live = false,
            Goal::Leave(_) | Goal::Idle { .. } => {}
        }
    }

    fn emit_schedule(&mut self, s: &Scheduling, now: Instant) -> InFlight {
        let kind = OwnRequestKind::ScheduleDelayedLeave {
            txn_id: s.txn,
            delay_ms: s.delay_ms,
            sticky_duration_ms: s.sticky_duration_ms,
        };
        let timeout = self.config.request_timeout();
        self.emit(&s.member_id, kind, timeout, now)
    }

    /// Emits a restart, with a timeout that ends before the server could fire.
    fn emit_restart(&mut self, mut a: Armed, now: Instant) -> Switch {
        let full = self.config.request_timeout();
        let timeout = match a.expected_fire.checked_duration_since(now) {
            Some(left) if !left.is_zero() => full.min(left),
            _ => full,
        };
        let kind = OwnRequestKind::RestartDelayedLeave {
            delay_id: a.delay_id.clone(),
        };
        let f = self.emit(&a.member_id, kind, timeout, now);
        a.fire_by = a
            .fire_by
            .max(now + full + Duration::from_millis(a.delay_ms));
        a.backing_off = false;
        Switch::AwaitRestarted(a, f)
    }

    fn emit_cancel(&mut self, a: &Armed, now: Instant) -> InFlight {
        let kind = OwnRequestKind::CancelDelayedLeave {
            delay_id: a.delay_id.clone(),
        };
        let timeout = self.config.request_timeout();
        self.emit(&a.member_id, kind, timeout, now)
    }

    fn emit_send(&mut self, a: &Armed, now: Instant) -> InFlight {
        let kind = OwnRequestKind::SendDelayedLeave {
            delay_id: a.delay_id.clone(),
        };
        let timeout = self.config.request_timeout();
        self.emit(&a.member_id, kind, timeout, now)
    }

    /// Whether the switch allows sending our join now: armed and certainly not fired yet, or
    /// unavailable.
    pub(super) fn switch_confirmed(&self, now: Instant) -> bool {
        match &self.switch {
            Switch::AwaitRestartDue(a) | Switch::AwaitRestarted(a, _) => now < a.expected_fire,
            Switch::Unavailable(_) => true,
            Switch::Off
            | Switch::AwaitScheduled(_)
            | Switch::AwaitCancelled(_)
            | Switch::AwaitSent(..)
            | Switch::AwaitRearmCancelled(..) => false,
        }
    }
}
