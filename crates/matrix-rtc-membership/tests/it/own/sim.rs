//! `Sim`: a deterministic harness for [`OwnMembership`], in the spirit of quinn's `Pair`.
//!
//! It holds the machine, a virtual clock, a network with configurable latency and faults over
//! time windows, and a simulated homeserver that implements delayed events (MSC4140) the way
//! Synapse does: a scheduled delayed leave fires at its deadline unless restarted, cancelled or
//! sent; unknown ids get 404; a repeated transaction gets the first answer. The server also
//! tracks whether each member is live (the latest event wins; a join lasts its sticky duration).
//!
//! [`Sim::step`] performs what the machine asked for, then jumps the clock to the earliest next
//! thing (a machine deadline, a message arriving, a delayed event firing, a sync tick). While it
//! runs, it checks the machine's invariants after every step (see [`Sim::check`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use matrix_rtc_membership::{
    DelayId, JoinConfig, OwnAction, OwnEvent, OwnMembership, OwnMembershipConfig, OwnRequest,
    OwnRequestKind, OwnStatus, RequestId, RequestOutcome, ServerCapabilities,
};

/// Milliseconds, for short test code.
pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Seconds, for short test code.
pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// What the network does to requests emitted (and answers returned) during a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cond {
    /// Delivered with the sim's latency each way.
    Normal,
    /// Delivered with this one-way latency.
    Slow(Duration),
    /// Everything is lost: no answer ever comes (the machine's local timeout fires).
    Partition,
    /// Connection refused: a network error comes back at once; the server sees nothing.
    Refuse,
    /// The server answers 503 without processing anything.
    ServerError,
    /// The server answers 429 without processing anything.
    RateLimited(Option<Duration>),
    /// The server processes requests, but their answers are lost.
    LoseAnswers,
}

/// How the simulated server treats the delay parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DelayedMode {
    /// MSC4140 as Synapse implements it.
    Supported,
    /// Synapse with delayed events switched off: 403 "disallowed".
    Disallowed,
    /// A server without MSC4140: it ignores the parameter and sends the leave at once.
    IgnoresDelay,
}

/// What happened on the server, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerEvent {
    Scheduled {
        delay_id: String,
        member_id: String,
        delay_ms: u64,
        sticky_duration_ms: u64,
    },
    Restarted {
        delay_id: String,
    },
    Cancelled {
        delay_id: String,
    },
    /// A delayed leave sent by the `send` action.
    SentNow {
        delay_id: String,
        member_id: String,
    },
    /// A delayed leave fired by the server at its deadline.
    Fired {
        delay_id: String,
        member_id: String,
    },
    Joined {
        member_id: String,
        sticky_duration_ms: u64,
        refresh: bool,
    },
    Left {
        member_id: String,
        sticky_duration_ms: u64,
    },
    /// A delayed leave sent at once by a server that ignores the delay.
    LeftAtOnce {
        member_id: String,
    },
}

#[derive(Debug, Clone)]
struct Delayed {
    member_id: String,
    delay: Duration,
    fire_at: Instant,
}

/// The simulated homeserver.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) mode: DelayedMode,
    /// Longest delay accepted.
    pub(crate) max_delay_ms: Option<u64>,
    /// Whether a "too large" answer carries the maximum.
    pub(crate) tells_max: bool,
    /// Answer every `send` action with this instead of sending (e.g. 403 on a worker setup).
    pub(crate) send_action_answer: Option<RequestOutcome>,
    /// Answer every join and refresh with this instead of joining (e.g. 403).
    pub(crate) join_answer: Option<RequestOutcome>,
    /// Answer requests of one kind with this, without processing them, from/to (since the
    /// start).
    pub(crate) failing: Vec<(OwnAction, Duration, Duration, RequestOutcome)>,
    /// Newest MSC4140 semantics: a restart or send of a cancelled delayed event gets 409
    /// (Synapse 1.163.2 answers 404).
    pub(crate) answers_conflict: bool,
    cancelled: HashSet<String>,
    /// A test interfered with the server's state behind the machine's back.
    tampered: bool,
    delayed: BTreeMap<String, Delayed>,
    /// Live-until per member (`None`: left).
    members: HashMap<String, Option<Instant>>,
    txns: HashMap<u64, RequestOutcome>,
    next_id: u64,
    start: Instant,
    pub(crate) log: Vec<(Duration, ServerEvent)>,
}

impl Server {
    fn new(start: Instant) -> Self {
        Self {
            mode: DelayedMode::Supported,
            max_delay_ms: None,
            tells_max: true,
            send_action_answer: None,
            join_answer: None,
            failing: Vec::new(),
            answers_conflict: false,
            cancelled: HashSet::new(),
            tampered: false,
            delayed: BTreeMap::new(),
            members: HashMap::new(),
            txns: HashMap::new(),
            next_id: 0,
            start,
            log: Vec::new(),
        }
    }

    fn record(&mut self, now: Instant, event: ServerEvent) {
        self.log.push((now - self.start, event));
    }

    fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// Fires every delayed leave due at `now`.
    pub(crate) fn advance(&mut self, now: Instant) {
        while let Some((id, fire_at)) = self
            .delayed
            .iter()
            .map(|(id, d)| (id.clone(), d.fire_at))
            .min_by_key(|(_, at)| *at)
        {
            if fire_at > now {
                break;
            }
            let Some(d) = self.delayed.remove(&id) else {
                break;
            };
            self.members.insert(d.member_id.clone(), None);
            self.record(
                fire_at,
                ServerEvent::Fired {
                    delay_id: id,
                    member_id: d.member_id,
                },
            );
        }
    }

    pub(crate) fn next_fire(&self) -> Option<Instant> {
        self.delayed.values().map(|d| d.fire_at).min()
    }

    /// Whether `member_id` is in the call on the server at `now`.
    pub(crate) fn is_live(&self, member_id: &str, now: Instant) -> bool {
        self.members
            .get(member_id)
            .copied()
            .flatten()
            .is_some_and(|until| until > now)
    }

    /// The delayed leaves currently scheduled (fire instants).
    pub(crate) fn live_delayed(&self) -> Vec<(String, Instant)> {
        self.delayed
            .iter()
            .map(|(id, d)| (id.clone(), d.fire_at))
            .collect()
    }

    /// The server loses every scheduled delayed event without firing it (a restore from backup).
    pub(crate) fn lose_delayed_events(&mut self) {
        self.tampered = true;
        self.delayed.clear();
    }

    /// Someone else ends our membership (an admin, another device) without our delayed leave.
    pub(crate) fn remove_member(&mut self, member_id: &str) {
        self.tampered = true;
        self.members.insert(member_id.to_owned(), None);
    }

    /// Someone else cancels our delayed leaves.
    pub(crate) fn cancel_all_delayed(&mut self) {
        self.tampered = true;
        let ids: Vec<String> = self.delayed.keys().cloned().collect();
        self.cancelled.extend(ids);
        self.delayed.clear();
    }

    /// The answer to a management action on an unknown id.
    fn unknown(&self, delay_id: &DelayId) -> RequestOutcome {
        if self.answers_conflict && self.cancelled.contains(delay_id.as_str()) {
            RequestOutcome::Conflict
        } else {
            RequestOutcome::NotFound
        }
    }

    fn handle(&mut self, request: &OwnRequest, now: Instant) -> RequestOutcome {
        self.advance(now);
        let since_start = now - self.start;
        if let Some((.., answer)) = self.failing.iter().find(|(action, from, to, _)| {
            *action == request.action() && *from <= since_start && since_start < *to
        }) {
            return answer.clone();
        }
        let member_id = request.member_id().to_owned();
        match request.kind() {
            OwnRequestKind::ScheduleDelayedLeave {
                txn_id,
                delay_ms,
                sticky_duration_ms,
            } => {
                if let Some(answer) = self.txns.get(&txn_id.get()) {
                    return answer.clone();
                }
                let answer = match self.mode {
                    DelayedMode::Disallowed => return RequestOutcome::Unsupported,
                    DelayedMode::IgnoresDelay => {
                        self.members.insert(member_id.clone(), None);
                        self.record(now, ServerEvent::LeftAtOnce { member_id });
                        RequestOutcome::sent(self.fresh_id("$leave"))
                    }
                    DelayedMode::Supported => {
                        if let Some(max) = self.max_delay_ms
                            && *delay_ms > max
                        {
                            return RequestOutcome::DelayTooLarge {
                                max_delay_ms: self.tells_max.then_some(max),
                            };
                        }
                        let id = self.fresh_id("syd");
                        let delay = Duration::from_millis(*delay_ms);
                        self.delayed.insert(
                            id.clone(),
                            Delayed {
                                member_id: member_id.clone(),
                                delay,
                                fire_at: now + delay,
                            },
                        );
                        self.record(
                            now,
                            ServerEvent::Scheduled {
                                delay_id: id.clone(),
                                member_id,
                                delay_ms: *delay_ms,
                                sticky_duration_ms: *sticky_duration_ms,
                            },
                        );
                        RequestOutcome::scheduled(DelayId::new(id))
                    }
                };
                self.txns.insert(txn_id.get(), answer.clone());
                answer
            }
            OwnRequestKind::RestartDelayedLeave { delay_id } => {
                match self.delayed.get_mut(delay_id.as_str()) {
                    Some(d) => {
                        d.fire_at = now + d.delay;
                        let delay_id = delay_id.as_str().to_owned();
                        self.record(now, ServerEvent::Restarted { delay_id });
                        RequestOutcome::ok()
                    }
                    None => self.unknown(delay_id),
                }
            }
            OwnRequestKind::CancelDelayedLeave { delay_id } => {
                match self.delayed.remove(delay_id.as_str()) {
                    Some(_) => {
                        let delay_id = delay_id.as_str().to_owned();
                        self.cancelled.insert(delay_id.clone());
                        self.record(now, ServerEvent::Cancelled { delay_id });
                        RequestOutcome::ok()
                    }
                    None => RequestOutcome::NotFound,
                }
            }
            OwnRequestKind::SendDelayedLeave { delay_id } => {
                if let Some(answer) = &self.send_action_answer {
                    return answer.clone();
                }
                match self.delayed.remove(delay_id.as_str()) {
                    Some(d) => {
                        self.members.insert(d.member_id.clone(), None);
                        let delay_id = delay_id.as_str().to_owned();
                        self.record(
                            now,
                            ServerEvent::SentNow {
                                delay_id,
                                member_id: d.member_id,
                            },
                        );
                        RequestOutcome::ok()
                    }
                    None => self.unknown(delay_id),
                }
            }
            OwnRequestKind::SendJoin {
                txn_id,
                sticky_duration_ms,
            }
            | OwnRequestKind::RefreshJoin {
                txn_id,
                sticky_duration_ms,
            } => {
                if let Some(answer) = &self.join_answer {
                    return answer.clone();
                }
                if let Some(answer) = self.txns.get(&txn_id.get()) {
                    return answer.clone();
                }
                let refresh = matches!(request.kind(), OwnRequestKind::RefreshJoin { .. });
                let until = now + Duration::from_millis(*sticky_duration_ms);
                self.members.insert(member_id.clone(), Some(until));
                self.record(
                    now,
                    ServerEvent::Joined {
                        member_id,
                        sticky_duration_ms: *sticky_duration_ms,
                        refresh,
                    },
                );
                let answer = RequestOutcome::sent(self.fresh_id("$join"));
                self.txns.insert(txn_id.get(), answer.clone());
                answer
            }
            OwnRequestKind::SendLeave {
                txn_id,
                sticky_duration_ms,
            } => {
                if let Some(answer) = self.txns.get(&txn_id.get()) {
                    return answer.clone();
                }
                self.members.insert(member_id.clone(), None);
                self.record(
                    now,
                    ServerEvent::Left {
                        member_id,
                        sticky_duration_ms: *sticky_duration_ms,
                    },
                );
                let answer = RequestOutcome::sent(self.fresh_id("$leave"));
                self.txns.insert(txn_id.get(), answer.clone());
                answer
            }
        }
    }
}

/// A request the driver received from the machine.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Since the start.
    pub(crate) at: Duration,
    pub(crate) request: OwnRequest,
}

#[derive(Debug)]
enum Flight {
    ToServer(OwnRequest),
    ToClient(RequestId, RequestOutcome),
    Sync(bool),
}

/// Bookkeeping for the invariants checked at every step.
#[derive(Debug, Default)]
struct Watch {
    /// Management requests not yet answered nor timed out, per delay id.
    mgmt_in_flight: HashMap<String, (RequestId, Instant)>,
    /// Deadline of every request.
    deadlines: HashMap<RequestId, Instant>,
    /// The latest restart: when, its id, and whether the machine got a success for it.
    last_restart: Option<(Instant, RequestId, bool)>,
    /// Restarts in a row sooner than the interval after the previous one.
    early_restarts: u32,
    /// Delay of the latest schedule (for the restart interval).
    delay_ms: Option<u64>,
}

/// The deterministic simulation.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) machine: OwnMembership,
    pub(crate) server: Server,
    /// One-way latency under [`Cond::Normal`].
    pub(crate) latency: Duration,
    /// Sync ticks: every tick samples the server and delivers "present?" after the latency.
    pub(crate) sync_interval: Option<Duration>,
    /// Check the invariants at every step.
    pub(crate) check_invariants: bool,
    /// Panic after this many steps (a bounded run).
    pub(crate) max_steps: u64,
    conds: Vec<(Instant, Instant, Cond)>,
    queue: BTreeMap<(Instant, u64), Flight>,
    seq: u64,
    next_sync: Option<Instant>,
    crashed: bool,
    member_id: Option<String>,
    /// `leave()` was called (and no `join` since).
    left: bool,
    steps: u64,
    watch: Watch,
    pub(crate) requests: Vec<Sent>,
    /// Answers delivered to the machine.
    pub(crate) answers: Vec<(Duration, RequestId, RequestOutcome)>,
    pub(crate) statuses: Vec<(Duration, OwnStatus)>,
    pub(crate) events: Vec<(Duration, OwnEvent)>,
}

impl Sim {
    /// A sim with `config`, a server with delayed events, 50 ms latency, a sync every second.
    pub(crate) fn new(config: OwnMembershipConfig) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            machine: OwnMembership::new("m.call#!room:example.org", config),
            server: Server::new(start),
            latency: ms(50),
            sync_interval: Some(secs(1)),
            check_invariants: true,
            max_steps: 1_000_000,
            conds: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            next_sync: None,
            crashed: false,
            member_id: None,
            left: false,
            steps: 0,
            watch: Watch::default(),
            requests: Vec::new(),
            answers: Vec::new(),
            statuses: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The sim with default config.
    pub(crate) fn default_config() -> Self {
        Self::new(OwnMembershipConfig::default())
    }

    /// Time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The capabilities the server advertises.
    pub(crate) fn capabilities(&self) -> ServerCapabilities {
        ServerCapabilities {
            delayed_events: self.server.mode != DelayedMode::Disallowed,
            max_delay_ms: self.server.max_delay_ms,
            sticky_events: true,
        }
    }

    /// `join` with the server's advertised capabilities.
    pub(crate) fn join(&mut self, member_id: &str) {
        let caps = self.capabilities();
        self.join_with(member_id, caps);
    }

    pub(crate) fn join_with(&mut self, member_id: &str, caps: ServerCapabilities) {
        self.member_id = Some(member_id.to_owned());
        self.left = false;
        self.machine
            .join(JoinConfig::new(member_id, caps), self.now)
            .expect("join accepted");
        if self.next_sync.is_none() {
            self.next_sync = self.sync_interval.map(|i| self.now + i);
        }
        self.flush();
    }

    pub(crate) fn leave(&mut self) {
        self.left = true;
        self.machine.leave(self.now);
        self.flush();
    }

    /// New devices appeared among the room's members.
    pub(crate) fn new_devices(&mut self) {
        self.machine.handle_new_devices(self.now);
        self.flush();
    }

    /// Our content changed (same member id).
    pub(crate) fn content_changed(&mut self) {
        self.machine.handle_content_changed(self.now);
        self.flush();
    }

    /// The driver stops calling the machine (process killed): nothing more is sent or answered.
    pub(crate) fn crash(&mut self) {
        self.crashed = true;
        // Drop what the machine had queued for a driver that is gone.
        while self.machine.poll_request().is_some() {}
    }

    /// `cond` for everything emitted from `from` to `to` (since the start).
    pub(crate) fn set_cond(&mut self, from: Duration, to: Duration, cond: Cond) {
        self.conds.push((self.start + from, self.start + to, cond));
    }

    fn cond_at(&self, at: Instant) -> Cond {
        self.conds
            .iter()
            .rev()
            .find(|(from, to, _)| *from <= at && at < *to)
            .map_or(Cond::Normal, |(_, _, c)| *c)
    }

    pub(crate) fn status(&self) -> &OwnStatus {
        self.machine.status()
    }

    /// Whether our member is live on the server now.
    pub(crate) fn member_live(&self) -> bool {
        self.member_id
            .as_deref()
            .is_some_and(|m| self.server.is_live(m, self.now))
    }

    /// Requests of one kind the driver received, in order.
    pub(crate) fn requests_of(&self, action: OwnAction) -> Vec<&Sent> {
        self.requests
            .iter()
            .filter(|s| s.request.action() == action)
            .collect()
    }

    /// The server events matching `f`.
    pub(crate) fn server_events(
        &self,
        f: impl Fn(&ServerEvent) -> bool,
    ) -> Vec<(Duration, ServerEvent)> {
        self.server
            .log
            .iter()
            .filter(|(_, e)| f(e))
            .cloned()
            .collect()
    }

    /// Whether the status was ever `status` (compared with `==`).
    pub(crate) fn was_ever(&self, status: &OwnStatus) -> bool {
        self.statuses.iter().any(|(_, s)| s == status)
    }

    /// First time the status became one matching `f`, at or after `from`.
    pub(crate) fn first_status_at(
        &self,
        from: Duration,
        f: impl Fn(&OwnStatus) -> bool,
    ) -> Option<Duration> {
        self.statuses
            .iter()
            .find(|(at, s)| *at >= from && f(s))
            .map(|(at, _)| *at)
    }

    fn push(&mut self, at: Instant, flight: Flight) {
        self.seq += 1;
        self.queue.insert((at, self.seq), flight);
    }

    /// Performs what the machine queued, and records its events.
    fn flush(&mut self) {
        if self.crashed {
            return;
        }
        while let Some(request) = self.machine.poll_request() {
            self.watch_emission(&request);
            self.requests.push(Sent {
                at: self.elapsed(),
                request: request.clone(),
            });
            let now = self.now;
            let lat = self.latency;
            match self.cond_at(now) {
                Cond::Normal | Cond::LoseAnswers => self.push(now + lat, Flight::ToServer(request)),
                Cond::Slow(l) => self.push(now + l, Flight::ToServer(request)),
                Cond::Partition => {}
                Cond::Refuse => self.push(
                    now + ms(1),
                    Flight::ToClient(request.id(), RequestOutcome::Network),
                ),
                Cond::ServerError => {
                    let answer = RequestOutcome::Http {
                        status: 503,
                        errcode: None,
                    };
                    self.push(now + lat * 2, Flight::ToClient(request.id(), answer));
                }
                Cond::RateLimited(retry_after) => {
                    let answer = RequestOutcome::RateLimited { retry_after };
                    self.push(now + lat * 2, Flight::ToClient(request.id(), answer));
                }
            }
        }
        while let Some(event) = self.machine.poll_event() {
            if let OwnEvent::StatusChanged(status) = &event {
                self.statuses.push((self.elapsed(), status.clone()));
            }
            self.events.push((self.elapsed(), event));
        }
    }

    fn next_time(&self) -> Option<Instant> {
        let mut candidates = vec![
            self.queue.keys().next().map(|k| k.0),
            self.server.next_fire(),
        ];
        if !self.crashed {
            candidates.push(self.machine.next_deadline());
            candidates.push(self.next_sync);
        }
        candidates.into_iter().flatten().min()
    }

    /// One step: perform queued requests, then jump to the next instant something happens and
    /// process it. Returns `false` if nothing is left to happen.
    pub(crate) fn step(&mut self) -> bool {
        self.flush();
        let Some(at) = self.next_time() else {
            return false;
        };
        self.advance(at);
        true
    }

    /// Runs until `until` (since the start), then sets the clock to it.
    pub(crate) fn run_until(&mut self, until: Duration) {
        let until = self.start + until;
        loop {
            self.flush();
            match self.next_time() {
                Some(at) if at <= until => self.advance(at),
                _ => break,
            }
        }
        if until > self.now {
            self.advance(until);
        }
    }

    /// Runs for `d` more.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let until = self.elapsed() + d;
        self.run_until(until);
    }

    /// Runs until the status matches `f`, at most until `limit` (since the start). Returns the
    /// time it matched.
    pub(crate) fn run_until_status(
        &mut self,
        limit: Duration,
        f: impl Fn(&OwnStatus) -> bool,
    ) -> Option<Duration> {
        let limit = self.start + limit;
        loop {
            self.flush();
            if f(self.machine.status()) {
                return Some(self.elapsed());
            }
            match self.next_time() {
                Some(at) if at <= limit => self.advance(at),
                _ => return None,
            }
        }
    }

    fn advance(&mut self, at: Instant) {
        self.steps += 1;
        assert!(
            self.steps <= self.max_steps,
            "simulation did not settle within {} steps",
            self.max_steps
        );
        let at = at.max(self.now);
        self.now = at;
        self.server.advance(at);
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > at {
                break;
            }
            match entry.remove() {
                Flight::ToServer(request) => self.at_server(request),
                Flight::ToClient(id, answer) => self.at_client(id, answer),
                Flight::Sync(present) => {
                    if !self.crashed {
                        self.machine.handle_own_membership_in_sync(present, at);
                    }
                }
            }
            self.flush();
        }
        if !self.crashed
            && let Some(tick) = self.next_sync
            && tick <= at
        {
            self.sync_tick(at);
            self.next_sync = self.sync_interval.map(|i| tick + i);
        }
        if !self.crashed && self.machine.next_deadline().is_some_and(|d| d <= at) {
            self.machine.handle_timeout(at);
        }
        self.flush();
        if self.check_invariants {
            self.check();
        }
    }

    fn at_server(&mut self, request: OwnRequest) {
        let answer = self.server.handle(&request, self.now);
        let back = match self.cond_at(self.now) {
            Cond::Normal | Cond::ServerError | Cond::RateLimited(_) => Some(self.latency),
            Cond::Slow(l) => Some(l),
            Cond::Partition | Cond::LoseAnswers | Cond::Refuse => None,
        };
        if let Some(back) = back {
            self.push(self.now + back, Flight::ToClient(request.id(), answer));
        }
    }

    fn at_client(&mut self, id: RequestId, answer: RequestOutcome) {
        if self.crashed {
            return;
        }
        let in_time = self
            .watch
            .deadlines
            .get(&id)
            .is_some_and(|d| self.now <= *d);
        if let Some((_, restart, succeeded)) = &mut self.watch.last_restart
            && *restart == id
        {
            *succeeded = in_time && matches!(answer, RequestOutcome::Success { .. });
        }
        self.watch.mgmt_in_flight.retain(|_, (r, _)| *r != id);
        self.answers.push((self.elapsed(), id, answer.clone()));
        self.machine.handle_response(id, answer, self.now);
    }

    fn sync_tick(&mut self, at: Instant) {
        let Some(member_id) = &self.member_id else {
            return;
        };
        let present = self.server.is_live(member_id, at);
        let delay = match self.cond_at(at) {
            Cond::Normal | Cond::ServerError | Cond::RateLimited(_) => Some(self.latency),
            Cond::Slow(l) => Some(l),
            Cond::Partition | Cond::LoseAnswers | Cond::Refuse => None,
        };
        if let Some(delay) = delay {
            self.push(at + delay, Flight::Sync(present));
        }
    }

    /// The restart interval the machine should keep, for the delay of the latest schedule.
    fn restart_interval(&self) -> Duration {
        let config = self.machine.config();
        let delay = self.watch.delay_ms.unwrap_or(config.delay_ms);
        let mut interval = config.restart_interval_ms;
        if config.enforce_delay_margin {
            interval = interval.min(delay / 3);
        }
        ms(interval.max(1))
    }

    /// Invariants on each request the machine emits.
    fn watch_emission(&mut self, request: &OwnRequest) {
        let now = self.now;
        self.watch
            .deadlines
            .insert(request.id(), request.deadline());
        assert!(
            request.deadline() > now,
            "a request must have a deadline after its emission"
        );
        if let OwnRequestKind::ScheduleDelayedLeave { delay_ms, .. } = request.kind() {
            self.watch.delay_ms = Some(*delay_ms);
        }
        if !self.check_invariants {
            return;
        }
        if let Some(delay_id) = request.kind().delay_id() {
            if let Some((other, deadline)) = self.watch.mgmt_in_flight.get(delay_id.as_str()) {
                assert!(
                    now >= *deadline,
                    "at {:?}: {:?} while {other} is still in flight for the same delay id",
                    self.elapsed(),
                    request.kind()
                );
            }
            self.watch.mgmt_in_flight.insert(
                delay_id.as_str().to_owned(),
                (request.id(), request.deadline()),
            );
        }
        if request.action() == OwnAction::RestartDelayedLeave {
            let interval = self.restart_interval();
            if let Some((prev_at, prev_id, succeeded)) = self.watch.last_restart {
                if now - prev_at + ms(1) < interval {
                    assert!(
                        !succeeded,
                        "at {:?}: a restart only {:?} after the successful restart {prev_id}",
                        self.elapsed(),
                        now - prev_at
                    );
                    self.watch.early_restarts += 1;
                    let config = self.machine.config();
                    let bound = config.network_retry_budget + config.rate_limit_budget + 2;
                    assert!(
                        self.watch.early_restarts <= bound,
                        "at {:?}: {} early restarts in a row",
                        self.elapsed(),
                        self.watch.early_restarts
                    );
                } else {
                    self.watch.early_restarts = 0;
                }
            }
            self.watch.last_restart = Some((now, request.id(), false));
        }
    }

    /// Invariants on the whole system, after every step:
    ///
    /// - the server never holds more than one delayed leave of ours;
    /// - while the status says connected with a dead-man switch, the server holds our delayed
    ///   leave, not yet fired, and our membership is live (unless the test removed them behind
    ///   the machine's back);
    /// - once disconnected after a `leave`, our membership is not live on the server.
    pub(crate) fn check(&self) {
        let delayed = self.server.live_delayed();
        assert!(
            delayed.len() <= 1,
            "at {:?}: more than one live delayed leave: {delayed:?}",
            self.elapsed()
        );
        if self.crashed {
            return;
        }
        match self.machine.status() {
            OwnStatus::Connected {
                dead_man_switch: true,
            } if !self.server.tampered => {
                assert!(
                    delayed.iter().any(|(_, fire_at)| *fire_at > self.now),
                    "at {:?}: connected with a dead-man switch, but the server holds none ({delayed:?})",
                    self.elapsed()
                );
                assert!(
                    self.member_live(),
                    "at {:?}: connected, but our membership is not live",
                    self.elapsed()
                );
            }
            OwnStatus::Disconnected if self.left => {
                assert!(
                    !self.member_live(),
                    "at {:?}: disconnected after leave, but still live",
                    self.elapsed()
                );
            }
            _ => {}
        }
    }
}
