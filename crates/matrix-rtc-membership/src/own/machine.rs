//! [`OwnMembership`]: public API, the drive loop, timers and status.

mod member;
mod switch;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use tracing::{debug, trace, warn};

use super::{
    config::{JoinConfig, OwnMembershipConfig, ServerCapabilities},
    request::{
        DelayId, OwnAction, OwnRequest, OwnRequestKind, RequestId, RequestOutcome, Transient,
        TxnId, Verdict,
    },
    retry::RetryBook,
    state::{
        AfterLeave, Attempt, Goal, InFlight, JoinSend, Leaving, Leftover, Member, NewDevices,
        Session, Switch,
    },
    status::{JoinError, OwnError, OwnEvent, OwnStatus},
    timer::{Timer, TimerTable},
};

/// Events kept for [`OwnMembership::poll_event`]; older ones are dropped beyond this.
const MAX_EVENTS: usize = 64;
/// Safety net for the drive loop (a few rounds always suffice).
const MAX_DRIVE_ROUNDS: usize = 32;

/// The sans-IO state machine of our own membership in one (room, slot).
///
/// It decides what to send and when, and never performs IO or reads a clock: every input
/// carries `now` (from a monotonic clock), and every output is something for the driver to do.
/// One machine per (client, room, slot): two machines for one slot would double the joins and
/// the delayed leaves.
///
/// # What it does
///
/// - **Delayed leave first, then the join.** It schedules our leave as a sticky delayed event
///   (delay `D`) and sends our sticky join only once the server holds it. Without delayed events
///   (capability off, scheduling refused, or the server ignoring the delay), it joins without a
///   dead-man switch and says so ([`OwnStatus::Connected`] with `dead_man_switch: false`).
///   Such a membership uses the short sticky lifetime
///   ([`no_switch_sticky_duration_ms`](OwnMembershipConfig::no_switch_sticky_duration_ms),
///   five minutes), unless something of it is on the server already with the full one (a
///   leave the server sent at once, or a join sent before the switch was lost): the lifetime is
///   fixed per join. Its leave is sent directly.
/// - **Heartbeat.** It restarts the delayed leave every `R`, each restart with a local timeout of
///   `min(T, expected_fire - now)`. A 404 means the delayed leave is gone: it arms a new one
///   (never two at once) and re-joins (same member id) if the old one could have fired. Sync
///   not showing our membership also triggers a re-join.
/// - **Failures.** Network errors, timeouts and 5xx are retried (every 3 s by default, a timeout
///   at once), 429 after the server's wait (5 s if not told). Budgets (10 in a row per kind of
///   request) only slow the retries down and report an error: no transient failure ends the
///   loop. A restart or cancel refused for an unexpected reason is retried the same way; a
///   refused schedule means no dead-man switch; a refused join ends in
///   [`OwnStatus::Error`] (after cleaning up). When the earliest instant the server could fire passes without a confirmed restart,
///   the status says [`OwnStatus::ProbablyLeft`] rather than pretending to be connected.
/// - **Refresh** of the join at 50–75 % of its sticky lifetime, same duration, with retries.
/// - **New devices** in an encrypted room cannot decrypt what was encrypted before they
///   appeared, and a delayed event is encrypted when it is scheduled. On
///   [`handle_new_devices`](Self::handle_new_devices) it refreshes the join early and re-arms the
///   delayed leave: it cancels the armed one, then schedules a new one (never two at once; in
///   between, a short window without a dead-man switch, reported as
///   [`OwnStatus::Connected`] with `dead_man_switch: false`). At most once per
///   `new_devices_min_interval_ms`.
/// - **Leave**: `send` the delayed leave now; on 404, 409 or any other failure, send the leave
///   directly. A leave while joining awaits what is in flight and cleans it up.
///
/// Every timing is a field of [`OwnMembershipConfig`].
///
/// # Contract
///
/// The methods come in four kinds:
///
/// - **Getters** (`&self`): [`status`](Self::status), [`next_deadline`](Self::next_deadline),
///   [`member_id`](Self::member_id), [`config`](Self::config), ...
/// - **Commands** from the app: [`join`](Self::join), [`leave`](Self::leave).
/// - **Inputs** from the world: [`handle_response`](Self::handle_response),
///   [`handle_timeout`](Self::handle_timeout),
///   [`handle_own_membership_in_sync`](Self::handle_own_membership_in_sync),
///   [`handle_capabilities`](Self::handle_capabilities),
///   [`handle_new_devices`](Self::handle_new_devices),
///   [`handle_content_changed`](Self::handle_content_changed).
/// - **Outputs**: [`poll_request`](Self::poll_request) and [`poll_event`](Self::poll_event).
///
/// After **every** command or input, the driver:
///
/// 1. drains [`poll_request`](Self::poll_request) and performs each request; it answers each one
///    exactly once with [`handle_response`](Self::handle_response) (a failure too: map it to a
///    [`RequestOutcome`]; a request that cannot be performed at all is a
///    [`RequestOutcome::Network`]). Requests carrying a [`TxnId`] must reuse the same HTTP
///    transaction id on every attempt with that `TxnId`;
/// 2. drains [`poll_event`](Self::poll_event) (status changes for the app, diagnostics);
/// 3. re-arms its single timer at [`next_deadline`](Self::next_deadline) (`None`: nothing to
///    wait for) and calls [`handle_timeout`](Self::handle_timeout) once that instant passes.
///
/// `now` must never go backwards (an earlier value is replaced by the latest one seen). Calling
/// too often is harmless: an extra `handle_timeout` does nothing, and an answer to an unknown,
/// already answered or timed-out request is ignored. The machine times a request out itself at
/// its [`deadline`](OwnRequest::deadline) and then ignores a late answer. Feeding
/// `handle_own_membership_in_sync` after every sync (or whenever the driver's view of our
/// membership changes) is fine. Feed `handle_new_devices` whenever devices appear among the
/// members of an encrypted room (after a sync, or a periodic check): it is rate limited, and
/// ignored unless joined.
///
/// To stop cleanly, call [`leave`](Self::leave) and keep driving until the status is
/// [`OwnStatus::Disconnected`]. Dropping the machine instead (or crashing) is safe: the server
/// sends our leave within `D` of the last restart.
///
/// # Example
///
/// A driver loop against a server that accepts everything at once:
///
/// ```
/// use std::time::Instant;
///
/// use matrix_rtc_membership::{
///     DelayId, JoinConfig, OwnMembership, OwnMembershipConfig, OwnRequestKind, OwnStatus,
///     RequestOutcome, ServerCapabilities,
/// };
///
/// fn drive(machine: &mut OwnMembership, now: Instant) {
///     while let Some(request) = machine.poll_request() {
///         // A real driver sends the HTTP request here and answers when it completes.
///         let outcome = match request.kind() {
///             OwnRequestKind::ScheduleDelayedLeave { .. } => {
///                 RequestOutcome::scheduled(DelayId::new("syd-1"))
///             }
///             OwnRequestKind::SendJoin { .. } | OwnRequestKind::SendLeave { .. } => {
///                 RequestOutcome::sent("$event")
///             }
///             _ => RequestOutcome::ok(),
///         };
///         machine.handle_response(request.id(), outcome, now);
///     }
///     while let Some(event) = machine.poll_event() {
///         println!("{event:?}");
///     }
/// }
///
/// let mut now = Instant::now();
/// let mut machine = OwnMembership::new("m.call#!room:example.org", OwnMembershipConfig::default());
/// machine.join(JoinConfig::new("3f1c2e0a", ServerCapabilities::full()), now)?;
/// drive(&mut machine, now);
/// assert_eq!(machine.status(), &OwnStatus::Connected { dead_man_switch: true });
///
/// // Heartbeat: sleep until the next deadline, tell the machine, perform what it asks.
/// for _ in 0..5 {
///     now = machine.next_deadline().expect("a restart is always scheduled while joined");
///     machine.handle_timeout(now);
///     drive(&mut machine, now);
/// }
/// assert_eq!(machine.status(), &OwnStatus::Connected { dead_man_switch: true });
///
/// machine.leave(now);
/// drive(&mut machine, now);
/// assert_eq!(machine.status(), &OwnStatus::Disconnected);
/// assert_eq!(machine.next_deadline(), None);
/// # Ok::<(), matrix_rtc_membership::JoinError>(())
/// ```
#[derive(Debug)]
pub struct OwnMembership {
    slot_id: String,
    config: OwnMembershipConfig,
    caps: ServerCapabilities,
    goal: Goal,
    switch: Switch,
    member: Member,
    /// A join of ours may be live on the server (acknowledged, or sent with an unknown outcome)
    /// and no leave of ours has been confirmed since.
    member_maybe_live: bool,
    /// When every join of ours sent in this session has surely expired.
    member_gone_by: Option<Instant>,
    leftover: Option<Leftover>,
    timers: TimerTable,
    outbox: VecDeque<OwnRequest>,
    events: VecDeque<OwnEvent>,
    retries: RetryBook,
    new_devices: NewDevices,
    /// An early refresh of our join is wanted (for new devices); cleared by any new join.
    early_refresh: bool,
    /// A re-arm of our delayed leave is wanted from this instant on (for new devices); cleared
    /// by any new schedule.
    rearm_at: Option<Instant>,
    status: OwnStatus,
    last_now: Option<Instant>,
    next_request: u64,
    next_txn: u64,
}

impl OwnMembership {
    /// A machine for our membership in the slot `slot_id` (e.g. `m.call#ROOM`) of one room,
    /// [`Disconnected`](OwnStatus::Disconnected). Use one machine per (client, room, slot).
    pub fn new(slot_id: impl Into<String>, config: OwnMembershipConfig) -> Self {
        Self {
            slot_id: slot_id.into(),
            config,
            caps: ServerCapabilities::full(),
            goal: Goal::Idle { error: None },
            switch: Switch::Off,
            member: Member::Absent,
            member_maybe_live: false,
            member_gone_by: None,
            leftover: None,
            timers: TimerTable::default(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            retries: RetryBook::default(),
            new_devices: NewDevices::default(),
            early_refresh: false,
            rearm_at: None,
            status: OwnStatus::Disconnected,
            last_now: None,
            next_request: 0,
            next_txn: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OwnMembershipConfig {
        &self.config
    }

    /// The slot this machine is for.
    pub fn slot_id(&self) -> &str {
        &self.slot_id
    }

    /// The latest server capabilities given (those of `join` or `handle_capabilities`).
    pub fn capabilities(&self) -> ServerCapabilities {
        self.caps
    }

    /// Our member id while joining, joined or leaving.
    pub fn member_id(&self) -> Option<&str> {
        self.session().map(|s| s.member_id.as_str())
    }

    /// The delayed leave of ours the server may hold right now: the armed one (also while
    /// it is being restarted, sent or cancelled), else one left over from an earlier session.
    /// This is what to persist, so that a restarted app can send it at once. A secret: never
    /// log it.
    pub fn delay_id(&self) -> Option<&DelayId> {
        let armed = match &self.switch {
            Switch::AwaitRestartDue(armed)
            | Switch::AwaitRestarted(armed, _)
            | Switch::AwaitSent(armed, _) => Some(&armed.delay_id),
            Switch::AwaitCancelled(cancelling) | Switch::AwaitRearmCancelled(cancelling) => {
                Some(&cancelling.target.delay_id)
            }
            Switch::Off | Switch::AwaitScheduled(_) | Switch::Unavailable(_) => None,
        };
        armed.or(match &self.leftover {
            Some(Leftover::Known(armed)) => Some(&armed.delay_id),
            Some(Leftover::Unresolved(_)) | None => None,
        })
    }

    /// The current status (as of the latest input).
    pub fn status(&self) -> &OwnStatus {
        &self.status
    }

    /// Join the call as `config.member_id`.
    ///
    /// From [`Disconnected`](OwnStatus::Disconnected) (or an error at rest) this starts a new
    /// membership: the delayed leave is scheduled first, the join is sent once it is armed (or
    /// right away if the server has no delayed events). While leaving, the join is started once
    /// the leave is out. While joining or joined with the same member id it only updates the
    /// capabilities.
    ///
    /// # Errors
    ///
    /// [`JoinError::EmptyMemberId`], or [`JoinError::AlreadyJoined`] while joining or joined with
    /// another member id.
    pub fn join(&mut self, config: JoinConfig, now: Instant) -> Result<(), JoinError> {
        let now = self.begin(now);
        if config.member_id.is_empty() {
            return Err(JoinError::EmptyMemberId);
        }
        match &mut self.goal {
            Goal::Idle { .. } => self.start_session(config),
            Goal::Join(session) if session.member_id == config.member_id => {
                self.apply_capabilities(config.capabilities);
            }
            Goal::Join(_) => return Err(JoinError::AlreadyJoined),
            Goal::Leave(leaving) => {
                debug!(slot = %self.slot_id, "join requested while leaving: it starts once the leave is out");
                leaving.then = AfterLeave::Join(config);
            }
        }
        self.drive(now);
        Ok(())
    }

    /// Leave the call.
    ///
    /// Our delayed leave is sent now (`send`); if that fails, the leave is sent directly. While
    /// still joining, whatever is in flight is awaited and then cleaned up (a delayed leave
    /// scheduled for a join that was never sent is cancelled). Calling it again, or while
    /// disconnected, changes nothing (it clears an error at rest, and drops a join requested
    /// while leaving).
    pub fn leave(&mut self, now: Instant) {
        let now = self.begin(now);
        match &mut self.goal {
            Goal::Idle { error } => *error = None,
            Goal::Join(session) => {
                let session = session.clone();
                debug!(slot = %self.slot_id, "leaving");
                self.goal = Goal::Leave(Leaving {
                    session,
                    then: AfterLeave::Idle,
                });
            }
            Goal::Leave(leaving) => {
                if matches!(leaving.then, AfterLeave::Join(_)) {
                    leaving.then = AfterLeave::Idle;
                }
            }
        }
        self.drive(now);
    }

    /// New server capabilities (e.g. after a reconnect). A lower maximum delay applies to the
    /// next schedule; delayed events becoming available arm a dead-man switch for a membership
    /// that had none because of the capability.
    pub fn handle_capabilities(&mut self, capabilities: ServerCapabilities, now: Instant) {
        let now = self.begin(now);
        self.apply_capabilities(capabilities);
        self.drive(now);
    }

    /// The outcome of the request `id`.
    ///
    /// An answer to a request that is not in flight (unknown, answered already, or timed out
    /// locally) is ignored.
    pub fn handle_response(&mut self, id: RequestId, outcome: RequestOutcome, now: Instant) {
        let now = self.clock(now);
        let verdict = Verdict::from(outcome);
        if self.switch_in_flight().is_some_and(|f| f.id == id) {
            self.outbox.retain(|r| r.id != id);
            self.on_switch_answer(verdict, now);
        } else if self.member_in_flight().is_some_and(|f| f.id == id) {
            self.outbox.retain(|r| r.id != id);
            self.on_member_answer(verdict, now);
        } else {
            trace!(slot = %self.slot_id, request = %id, "ignoring an answer to a request not in flight (unknown, answered, or timed out)");
        }
        self.expire_requests(now);
        self.drive(now);
    }

    /// Whether sync currently shows our own membership (our member id, live) in this slot.
    ///
    /// While joined, a report without it means our membership is gone (for instance our
    /// delayed leave fired during a network blip): the machine re-joins with the same member id,
    /// unless a join or refresh is already on its way. A report is trusted once sync has shown
    /// our join, or [`sync_grace_ms`](OwnMembershipConfig::sync_grace_ms) after the join was
    /// acknowledged (an earlier report may predate the join).
    pub fn handle_own_membership_in_sync(&mut self, present: bool, now: Instant) {
        let now = self.begin(now);
        self.on_sync(present, now);
        self.drive(now);
    }

    /// New devices appeared among the members of the room (encrypted): re-send what they could
    /// not decrypt.
    ///
    /// While joined ([`Connected`](OwnStatus::Connected) or
    /// [`ProbablyLeft`](OwnStatus::ProbablyLeft)) it refreshes our join early (same member id,
    /// same sticky duration, a new transaction) and re-arms our delayed leave: it cancels the
    /// armed one, then schedules a new one, so that the server never holds two. Between the
    /// cancel and the new schedule there is no dead-man switch (a window of about two round
    /// trips; the status says so). What is in flight on a lane is awaited first, and the refresh
    /// follows the new schedule (delayed leave first, then the join).
    ///
    /// It runs at most once per
    /// [`new_devices_min_interval_ms`](OwnMembershipConfig::new_devices_min_interval_ms): calls
    /// inside the interval are coalesced into one run at its end (dropped if no longer joined
    /// then). Ignored when not joined.
    pub fn handle_new_devices(&mut self, now: Instant) {
        let now = self.begin(now);
        if !self.is_joined() {
            trace!(slot = %self.slot_id, "new devices ignored: not joined");
        } else if self.new_devices_due(now) {
            self.run_new_devices(now);
        } else {
            trace!(slot = %self.slot_id, "new devices: coalesced into the next run");
            self.new_devices.pending = true;
        }
        self.drive(now);
    }

    /// The content of our member event changed (same member id: a new transport or call
    /// intent): it goes out with the next join or refresh, and a refresh is sent soon (as soon
    /// as the delayed leave is confirmed and nothing is in flight on the member lane). Ignored
    /// unless joining or joined.
    pub fn handle_content_changed(&mut self, now: Instant) {
        let now = self.begin(now);
        if matches!(self.goal, Goal::Join(_)) {
            debug!(slot = %self.slot_id, "our content changed: refreshing our join");
            self.early_refresh = true;
        } else {
            trace!(slot = %self.slot_id, "content change ignored: not joined");
        }
        self.drive(now);
    }

    /// Time has passed: call it at (or after) [`next_deadline`](Self::next_deadline). Extra
    /// calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.begin(now);
        self.drive(now);
    }

    /// The next request to perform. Drain it (`while let`) after every input; each request must
    /// be answered with [`handle_response`](Self::handle_response).
    #[must_use = "every request must be performed"]
    pub fn poll_request(&mut self) -> Option<OwnRequest> {
        self.outbox.pop_front()
    }

    /// The next event (status changes and diagnostics). Only the latest 64 are kept.
    #[must_use = "events report status changes"]
    pub fn poll_event(&mut self) -> Option<OwnEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, if anything is pending.
    #[must_use = "the driver must wake up at this instant"]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    // --- input plumbing -------------------------------------------------------------------

    /// Time never goes backwards: an earlier `now` is replaced by the latest one seen.
    fn clock(&mut self, now: Instant) -> Instant {
        match self.last_now {
            Some(last) if now < last => {
                trace!(slot = %self.slot_id, "time went backwards; using the latest instant");
                last
            }
            _ => {
                self.last_now = Some(now);
                now
            }
        }
    }

    fn begin(&mut self, now: Instant) -> Instant {
        let now = self.clock(now);
        self.expire_requests(now);
        now
    }

    /// Treats requests whose local timeout has passed as timed out.
    fn expire_requests(&mut self, now: Instant) {
        let table = self.timers.clone();
        for timer in table.expired(now) {
            match timer {
                Timer::SwitchRequestTimeout => {
                    if let Some(id) = self
                        .switch_in_flight()
                        .filter(|f| now >= f.deadline)
                        .map(|f| f.id)
                    {
                        debug!(slot = %self.slot_id, request = %id, "request timed out");
                        self.outbox.retain(|r| r.id != id);
                        self.on_switch_answer(Verdict::Retry(Transient::Timeout), now);
                    }
                }
                Timer::MemberRequestTimeout => {
                    if let Some(id) = self
                        .member_in_flight()
                        .filter(|f| now >= f.deadline)
                        .map(|f| f.id)
                    {
                        debug!(slot = %self.slot_id, request = %id, "request timed out");
                        self.outbox.retain(|r| r.id != id);
                        self.on_member_answer(Verdict::Retry(Transient::Timeout), now);
                    }
                }
                // The drive loop re-checks these conditions against `now`.
                Timer::Restart
                | Timer::ExpectedFire
                | Timer::SwitchRetry
                | Timer::Refresh
                | Timer::JoinExpiry
                | Timer::MemberRetry
                | Timer::NewDevices => {}
            }
        }
    }

    fn start_session(&mut self, config: JoinConfig) {
        self.caps = config.capabilities;
        let session = Session {
            delay_ms: self.config.effective_delay_ms(&self.caps),
            sticky_duration_ms: self.config.session_sticky_duration_ms(&self.caps),
            sticky_fixed: false,
            member_id: config.member_id,
            unseen_rejoins: 0,
        };
        debug!(slot = %self.slot_id, delay_ms = session.delay_ms, sticky_ms = session.sticky_duration_ms, "joining");
        self.goal = Goal::Join(session);
        self.switch = Switch::Off;
        self.member = Member::AwaitSwitch { rejoin: None };
        self.member_maybe_live = false;
        self.member_gone_by = None;
        self.retries.reset();
    }

    fn apply_capabilities(&mut self, caps: ServerCapabilities) {
        self.caps = caps;
        if let Goal::Join(session) = &mut self.goal {
            session.delay_ms = session.delay_ms.min(self.config.effective_delay_ms(&caps));
        }
    }

    // --- the drive loop -------------------------------------------------------------------

    /// Makes every step the current state allows at `now`, then updates timers and status.
    fn drive(&mut self, now: Instant) {
        self.drive_new_devices(now);
        let mut rounds = 0;
        loop {
            let progressed = self.drive_goal(now) | self.drive_switch(now) | self.drive_member(now);
            if !progressed {
                break;
            }
            rounds += 1;
            if rounds >= MAX_DRIVE_ROUNDS {
                warn!(slot = %self.slot_id, "own-membership drive loop did not settle");
                break;
            }
        }
        self.refresh_timers(now);
        self.refresh_status(now);
    }

    /// Runs a coalesced re-send for new devices once due; drops every new-devices wish when not
    /// joining.
    fn drive_new_devices(&mut self, now: Instant) {
        if !matches!(self.goal, Goal::Join(_)) {
            self.new_devices.pending = false;
            self.early_refresh = false;
            self.rearm_at = None;
            return;
        }
        if matches!(self.switch, Switch::Unavailable(_)) {
            self.rearm_at = None;
        }
        if self.new_devices.pending && self.new_devices_due(now) {
            if self.is_joined() {
                self.run_new_devices(now);
            } else {
                debug!(slot = %self.slot_id, "coalesced new devices dropped: no longer joined");
                self.new_devices.pending = false;
            }
        }
    }

    fn new_devices_due(&self, now: Instant) -> bool {
        self.new_devices
            .last_run
            .is_none_or(|at| now >= at + self.config.new_devices_min_interval())
    }

    fn run_new_devices(&mut self, now: Instant) {
        debug!(slot = %self.slot_id, "new devices: refreshing our join and re-arming our delayed leave");
        self.new_devices = NewDevices {
            last_run: Some(now),
            pending: false,
        };
        self.early_refresh = true;
        if !matches!(self.switch, Switch::Unavailable(_)) {
            self.rearm_at = Some(now);
        }
    }

    /// Joined: an acknowledged join of this session is live (as far as we know).
    fn is_joined(&self) -> bool {
        matches!(self.goal, Goal::Join(_))
            && matches!(
                self.member,
                Member::AwaitRefreshDue(_)
                    | Member::AwaitJoinAck(JoinSend {
                        previous: Some(_),
                        ..
                    })
            )
    }

    /// While leaving: notices that the leave is out, and ends the leave.
    fn drive_goal(&mut self, now: Instant) -> bool {
        let Goal::Leave(leaving) = &self.goal else {
            return false;
        };
        if self.member_maybe_live {
            let member_id = leaving.session.member_id.as_str();
            let fired = self.settled_fire_by(member_id).is_some_and(|at| now >= at);
            let expired = self.member_gone_by.is_some_and(|at| now >= at);
            if fired || expired {
                debug!(slot = %self.slot_id, fired, expired, "our membership is gone");
                self.member_maybe_live = false;
            }
        }
        // Done once the leave is out and both lanes have settled (the leaving drive brings
        // every state there, once what is in flight is answered).
        let settled = matches!(self.switch, Switch::Off | Switch::Unavailable(_))
            && matches!(self.member, Member::Absent);
        if self.member_maybe_live || !settled {
            return false;
        }
        self.finish_leave();
        true
    }

    /// The instant our delayed leave for `member_id` has fired by, if one is armed and nothing
    /// about it is in flight.
    fn settled_fire_by(&self, member_id: &str) -> Option<Instant> {
        let armed = match &self.switch {
            Switch::AwaitRestartDue(a) if a.member_id == member_id => Some(a.fire_by),
            _ => None,
        };
        let left = match &self.leftover {
            Some(Leftover::Known(a)) if a.member_id == member_id => Some(a.fire_by),
            _ => None,
        };
        armed.into_iter().chain(left).min()
    }

    fn finish_leave(&mut self) {
        let goal = std::mem::replace(&mut self.goal, Goal::Idle { error: None });
        let Goal::Leave(leaving) = goal else {
            self.goal = goal;
            return;
        };
        self.switch = Switch::Off;
        self.member = Member::Absent;
        self.member_maybe_live = false;
        self.member_gone_by = None;
        self.retries.reset();
        debug!(slot = %self.slot_id, "leave done");
        match leaving.then {
            AfterLeave::Idle => {}
            AfterLeave::Fail(error) => self.goal = Goal::Idle { error: Some(error) },
            AfterLeave::Join(config) => self.start_session(config),
        }
    }

    /// Something of this session may be on the server with its sticky duration now: that
    /// duration stays for the rest of the session.
    fn fix_sticky_duration(&mut self) {
        if let Goal::Join(session) = &mut self.goal {
            session.sticky_fixed = true;
        }
    }

    /// This membership has no dead-man switch after all. While nothing of it can be on the
    /// server yet, it takes the shorter lifetime of a membership without one
    /// ([`no_switch_sticky_duration_ms`](OwnMembershipConfig::no_switch_sticky_duration_ms)),
    /// so that a crash leaves a ghost for minutes rather than an hour. Once something may be
    /// out, the duration is fixed: a shorter one would lose to it (last to expire wins).
    fn use_no_switch_sticky_duration(&mut self) {
        let without_switch = ServerCapabilities {
            delayed_events: false,
            ..self.caps
        };
        let short = self.config.session_sticky_duration_ms(&without_switch);
        if let Goal::Join(session) = &mut self.goal {
            if session.sticky_fixed {
                debug!(slot = %self.slot_id, sticky_ms = session.sticky_duration_ms, "no dead-man switch, but our sticky duration is fixed for this membership");
            } else if short < session.sticky_duration_ms {
                debug!(slot = %self.slot_id, sticky_ms = short, "no dead-man switch: using the shorter sticky duration");
                session.sticky_duration_ms = short;
            }
        }
    }

    /// Remembers a delayed leave of ours that may still be live.
    fn keep_leftover(&mut self, leftover: Leftover) {
        if let Some(old) = self.leftover.replace(leftover) {
            // Cannot happen by construction: a session only leaves one behind.
            warn!(slot = %self.slot_id, ?old, "dropping an older leftover delayed leave");
        }
    }

    // --- shared helpers ---------------------------------------------------------------------

    fn session(&self) -> Option<&Session> {
        match &self.goal {
            Goal::Join(s) => Some(s),
            Goal::Leave(l) => Some(&l.session),
            Goal::Idle { .. } => None,
        }
    }

    fn switch_in_flight(&self) -> Option<&InFlight> {
        match &self.switch {
            Switch::AwaitScheduled(s) => s.attempt.in_flight(),
            Switch::AwaitCancelled(c) => c.attempt.in_flight(),
            Switch::AwaitRestarted(_, f) | Switch::AwaitSent(_, f) => Some(f),
            Switch::AwaitRearmCancelled(c) => c.attempt.in_flight(),
            Switch::Off | Switch::AwaitRestartDue(_) | Switch::Unavailable(_) => None,
        }
    }

    fn member_in_flight(&self) -> Option<&InFlight> {
        match &self.member {
            Member::AwaitJoinAck(j) => j.attempt.in_flight(),
            Member::AwaitLeaveAck(l) => l.attempt.in_flight(),
            Member::Absent | Member::AwaitSwitch { .. } | Member::AwaitRefreshDue(_) => None,
        }
    }

    fn new_txn(&mut self) -> TxnId {
        self.next_txn += 1;
        TxnId(self.next_txn)
    }

    /// Queues a request and returns its in-flight record.
    fn emit(
        &mut self,
        member_id: &str,
        kind: OwnRequestKind,
        timeout: Duration,
        now: Instant,
    ) -> InFlight {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let deadline = now + timeout.max(Duration::from_millis(1));
        debug!(slot = %self.slot_id, request = %id, action = %kind.action(), timeout_ms = timeout.as_millis(), "request");
        self.outbox.push_back(OwnRequest {
            id,
            member_id: member_id.to_owned(),
            slot_id: self.slot_id.clone(),
            deadline,
            kind,
        });
        InFlight {
            id,
            emitted_at: now,
            deadline,
        }
    }

    /// Counts a transient failure and returns how long to wait before the next attempt.
    fn retry_wait(&mut self, action: OwnAction, failure: Transient) -> Duration {
        let plan = self.retries.failure(action, failure, &self.config);
        debug!(slot = %self.slot_id, %action, ?failure, wait_ms = plan.wait.as_millis(), "retrying");
        if plan.newly_exhausted {
            warn!(slot = %self.slot_id, %action, "retry budget used up; retrying more slowly");
            self.push_event(OwnEvent::RetriesExhausted { action });
        }
        plan.wait
    }

    fn push_event(&mut self, event: OwnEvent) {
        if self.events.len() >= MAX_EVENTS {
            trace!(slot = %self.slot_id, "event queue full; dropping the oldest event");
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Enters a terminal failure: clean up (the leave machinery), then rest in error.
    fn fail(&mut self, error: OwnError) {
        match &mut self.goal {
            Goal::Join(session) => {
                let session = session.clone();
                self.goal = Goal::Leave(Leaving {
                    session,
                    then: AfterLeave::Fail(error),
                });
            }
            Goal::Leave(_) | Goal::Idle { .. } => {
                debug!(slot = %self.slot_id, %error, "failure while leaving; ignored");
            }
        }
    }

    // --- timers and status ------------------------------------------------------------------

    fn refresh_timers(&mut self, now: Instant) {
        let mut t = TimerTable::default();
        let joining = matches!(self.goal, Goal::Join(_));
        let leaving = matches!(self.goal, Goal::Leave(_));
        let arm_attempt =
            |t: &mut TimerTable, attempt: &Attempt, timeout: Timer, retry: Timer| match attempt {
                Attempt::InFlight(f) => t.arm(timeout, f.deadline),
                Attempt::RetryAt(at) => t.arm(retry, *at),
            };
        match &self.switch {
            Switch::AwaitScheduled(s) => {
                arm_attempt(
                    &mut t,
                    &s.attempt,
                    Timer::SwitchRequestTimeout,
                    Timer::SwitchRetry,
                );
            }
            Switch::AwaitCancelled(c) => {
                arm_attempt(
                    &mut t,
                    &c.attempt,
                    Timer::SwitchRequestTimeout,
                    Timer::SwitchRetry,
                );
                if matches!(c.attempt, Attempt::RetryAt(_)) {
                    t.arm(Timer::ExpectedFire, c.target.fire_by);
                }
            }
            Switch::AwaitRestartDue(a) => {
                if joining {
                    t.arm(Timer::Restart, a.next_restart);
                    t.arm(Timer::ExpectedFire, a.expected_fire);
                    if let Some(at) = self.rearm_at {
                        t.arm(Timer::SwitchRetry, at);
                    }
                } else if leaving {
                    t.arm(Timer::ExpectedFire, a.fire_by);
                }
            }
            Switch::AwaitRestarted(a, f) => {
                t.arm(Timer::SwitchRequestTimeout, f.deadline);
                if joining {
                    t.arm(Timer::ExpectedFire, a.expected_fire);
                }
            }
            Switch::AwaitSent(_, f) => t.arm(Timer::SwitchRequestTimeout, f.deadline),
            Switch::AwaitRearmCancelled(c) => {
                arm_attempt(
                    &mut t,
                    &c.attempt,
                    Timer::SwitchRequestTimeout,
                    Timer::SwitchRetry,
                );
                if joining {
                    t.arm(Timer::ExpectedFire, c.target.expected_fire);
                }
            }
            Switch::Off | Switch::Unavailable(_) => {}
        }
        if leaving && self.member_maybe_live {
            if let Some(Leftover::Known(a)) = &self.leftover {
                t.arm(Timer::ExpectedFire, a.fire_by);
            }
            if let Some(at) = self.member_gone_by {
                t.arm(Timer::JoinExpiry, at);
            }
        }
        if joining
            && self.new_devices.pending
            && let Some(last) = self.new_devices.last_run
        {
            t.arm(
                Timer::NewDevices,
                last + self.config.new_devices_min_interval(),
            );
        }
        match &self.member {
            Member::AwaitJoinAck(j) => {
                arm_attempt(
                    &mut t,
                    &j.attempt,
                    Timer::MemberRequestTimeout,
                    Timer::MemberRetry,
                );
                if let (true, Some(p)) = (joining, &j.previous) {
                    t.arm(Timer::JoinExpiry, p.may_expire_at);
                }
            }
            Member::AwaitRefreshDue(j) if joining => {
                t.arm(Timer::Refresh, j.refresh_due);
                t.arm(Timer::JoinExpiry, j.may_expire_at);
            }
            Member::AwaitLeaveAck(l) => {
                arm_attempt(
                    &mut t,
                    &l.attempt,
                    Timer::MemberRequestTimeout,
                    Timer::MemberRetry,
                );
            }
            Member::AwaitRefreshDue(_) | Member::Absent | Member::AwaitSwitch { .. } => {}
        }
        // A condition that is due but could not progress waits for another input, not a timer;
        // request timeouts are always kept so they are processed.
        t.retain_future(now, |timer| {
            matches!(
                timer,
                Timer::SwitchRequestTimeout | Timer::MemberRequestTimeout
            )
        });
        self.timers = t;
    }

    fn compute_status(&self, now: Instant) -> OwnStatus {
        match &self.goal {
            Goal::Idle { error: Some(error) }
            | Goal::Leave(Leaving {
                then: AfterLeave::Fail(error),
                ..
            }) => {
                return OwnStatus::Error {
                    error: error.clone(),
                    retrying: false,
                };
            }
            Goal::Idle { error: None } => return OwnStatus::Disconnected,
            Goal::Leave(_) => return OwnStatus::Disconnecting,
            Goal::Join(_) => {}
        }
        let armed = match &self.switch {
            Switch::AwaitRestartDue(a) | Switch::AwaitRestarted(a, _) => Some(a),
            _ => None,
        };
        let joined = matches!(
            self.member,
            Member::AwaitRefreshDue(_)
                | Member::AwaitJoinAck(JoinSend {
                    previous: Some(_),
                    ..
                })
        );
        let rearm_unconfirmed = matches!(
            &self.switch,
            Switch::AwaitRearmCancelled(c) if now >= c.target.expected_fire
        );
        let rejoining = matches!(
            self.member,
            Member::AwaitSwitch { rejoin: Some(_) }
                | Member::AwaitJoinAck(JoinSend {
                    rejoin: Some(_),
                    ..
                })
        );
        let base = match (joined, armed) {
            (true, Some(a)) if now < a.expected_fire => OwnStatus::Connected {
                dead_man_switch: true,
            },
            (true, Some(_)) => OwnStatus::ProbablyLeft,
            (true, None) if rearm_unconfirmed => OwnStatus::ProbablyLeft,
            (true, None) => OwnStatus::Connected {
                dead_man_switch: false,
            },
            (false, Some(a)) if rejoining && now >= a.expected_fire => OwnStatus::ProbablyLeft,
            (false, _) => OwnStatus::Connecting,
        };
        if base != OwnStatus::ProbablyLeft
            && let Some(error) = self.retries.exhausted_error(&self.config)
        {
            return OwnStatus::Error {
                error,
                retrying: true,
            };
        }
        base
    }

    fn refresh_status(&mut self, now: Instant) {
        let status = self.compute_status(now);
        if status != self.status {
            debug!(slot = %self.slot_id, ?status, "status");
            self.status = status.clone();
            self.push_event(OwnEvent::StatusChanged(status));
        }
    }
}
