//! The world of one run: the server, the clients with their pumps, the network, one event
//! queue and the virtual clock. [`World::run`] jumps from one instant to the next (the
//! earliest queued delivery, delayed event, expiry or machine deadline), never sleeping, and
//! checks the invariants after every step.
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use matrix_rtc_machine::{
    CallId, ContentUpdate, JoinParams, MachineConfig, Outcome, PageFlags, ParkedLimits, RequestId,
    RequestKind, RtcMachine,
};
use matrix_rtc_membership::{
    MembershipContent, RequestOutcome, ServerCapabilities, Transport, wire as rtc_wire,
};
use matrix_sticky_events::{Limits, Receipt, parse_sticky_batch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ruma_common::{OwnedDeviceId, OwnedRoomId, OwnedUserId};
use serde_json::{Value, json};

use super::{
    Stats,
    client::{Client, Outbound, Performing, SideState},
    invariants::Watch,
    network::{Network, Trip},
    schedule::{Action, DelayedMode, Fault, Plan},
    server::{CallEntry, Cipher, Cursor, Http, Kind, Server, Sticky, WALL0_MS},
};

/// Steps of one run at most (a run that does not settle is a failure too).
const MAX_STEPS: u64 = 200_000;
/// The pump's own timeout for requests without a deadline (ms).
const PUMP_TIMEOUT_MS: u64 = 5_000;

/// Caps of every machine in the simulation: small enough for the hostile member to hit them,
/// large enough that honest senders never do.
pub(crate) fn sticky_limits() -> Limits {
    Limits {
        per_sender: 128,
        per_room: 2_000,
        per_room_bytes: 4 << 20,
        remembered_redactions: 1_000,
    }
}

pub(crate) fn parked_limits() -> ParkedLimits {
    ParkedLimits::new(32, 512, 2_048)
}

/// A request answered locally by the pump (crypto store, room state).
#[derive(Debug)]
enum Local {
    Decrypt {
        room: OwnedRoomId,
        event: String,
    },
    Member {
        room: OwnedRoomId,
        user: OwnedUserId,
    },
    Devices {
        room: OwnedRoomId,
    },
}

#[derive(Debug)]
enum Ev {
    Action(Action),
    FaultStart(usize),
    FaultEnd(usize),
    /// A request reaches the server.
    AtServer {
        client: usize,
        generation: u64,
        id: RequestId,
        http: Http,
        abort_at: u64,
    },
    /// An answer reaches the client.
    Answer {
        client: usize,
        generation: u64,
        id: RequestId,
        outcome: Outcome,
    },
    LocalAnswer {
        client: usize,
        generation: u64,
        id: RequestId,
        local: Local,
    },
    /// The pump gives up on a request.
    LocalTimeout {
        client: usize,
        generation: u64,
        id: RequestId,
    },
    /// An event of the app's sync reaches the client.
    Timeline {
        client: usize,
        generation: u64,
        room: OwnedRoomId,
        raw: String,
        /// Our own user's join of the room.
        rejoined: bool,
    },
    /// A side-connection poll reaches the server.
    SidePoll {
        client: usize,
        generation: u64,
        conn: u64,
    },
    /// A side-connection page reaches the client.
    SidePage {
        client: usize,
        generation: u64,
        conn: u64,
        body: String,
        caught_up: bool,
        cursor: Cursor,
    },
    /// A room key reaches a device.
    Keys {
        client: usize,
        room: OwnedRoomId,
        session: String,
    },
    /// The room-key stream of a client lagged: it is told to retry everything.
    KeysLagged {
        client: usize,
    },
    /// The app re-joins a call after a restart.
    Rejoin {
        client: usize,
        room: usize,
    },
}

pub(crate) struct World {
    pub(crate) plan: Plan,
    rng: ChaCha8Rng,
    start: Instant,
    pub(crate) now: u64,
    pub(crate) server: Server,
    pub(crate) clients: Vec<Client>,
    pub(crate) network: Network,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    pub(crate) step: u64,
    pub(crate) stats: Stats,
    pub(crate) watch: Watch,
    /// Rooms by id, for their index.
    room_index: BTreeMap<OwnedRoomId, usize>,
    /// The ids of the room calls (by room index).
    pub(crate) calls: Vec<CallId>,
    pub(crate) bound: u64,
    /// Print what happens (`SIM_TRACE`, for replays).
    pub(crate) trace: bool,
}

/// Prints a line of the run's trace when tracing.
macro_rules! trace {
    ($world:expr, $($arg:tt)*) => {
        if $world.trace {
            eprintln!("[{:>6} ms] {}", $world.now, format!($($arg)*));
        }
    };
}

impl World {
    pub(crate) fn new(plan: Plan) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(plan.seed ^ 0x5EED_5EED_5EED_5EED);
        let server = Server::new(
            plan.delayed.schedules(),
            plan.net.ordered_event_ids,
            !plan.net.without_ttl,
        );
        let clients = plan
            .clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Client::new(
                    i,
                    plan.users[c.user].clone(),
                    c.device.clone(),
                    c.clock_offset_ms,
                )
            })
            .collect();
        let network = Network {
            net: plan.net.clone(),
            windows: plan.windows.clone(),
        };
        let calls = plan
            .rooms
            .iter()
            .map(|r| CallId::room_call(&r.id))
            .collect();
        let room_index = plan
            .rooms
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        let bound = plan.delivery_bound();
        Self {
            rng,
            start: Instant::now(),
            now: 0,
            server,
            clients,
            network,
            queue: BTreeMap::new(),
            seq: 0,
            step: 0,
            stats: Stats::default(),
            watch: Watch::default(),
            room_index,
            calls,
            bound,
            trace: false,
            plan,
        }
    }

    pub(crate) fn instant(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn ms_of(&self, instant: Instant) -> u64 {
        let nanos = instant.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos.div_ceil(1_000_000)).expect("fits")
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    /// Where a failure happened, for every assertion message.
    pub(crate) fn context(&self) -> String {
        format!(
            "seed {} step {} at {} ms (replay: SIM_SEED={} cargo test -p matrix-rtc-machine --test it sim::replay -- --ignored --nocapture)",
            self.plan.seed, self.step, self.now, self.plan.seed
        )
    }

    // --- the run ------------------------------------------------------------------------

    pub(crate) fn run(mut self) -> Stats {
        self.setup();
        while let Some(at) = self.next_time().filter(|at| *at <= self.plan.end) {
            self.advance(at);
        }
        self.now = self.plan.end;
        self.step += 1;
        self.check();
        self.final_check();
        self.stats.schedules += 1;
        self.stats.steps += self.step;
        self.stats.fired += self.server.fired;
        self.stats.checks.add(&self.watch.checks);
        self.stats.known = std::mem::take(&mut self.watch.known);
        self.stats
    }

    fn setup(&mut self) {
        for room in self.plan.rooms.clone() {
            self.server
                .rooms
                .entry(room.id.clone())
                .or_default()
                .encrypted = room.encrypted;
            for user in self.plan.users.clone() {
                self.server.set_member(&room.id, &user, true, 0);
            }
            if let Some(hostile) = self.plan.hostile.clone() {
                self.server.set_member(&room.id, &hostile, true, 0);
            }
        }
        for (at, action) in self.plan.actions.clone() {
            self.push(at, Ev::Action(action));
        }
        for (i, window) in self.plan.windows.clone().into_iter().enumerate() {
            *self.stats.faults.entry(window.fault.name()).or_default() += 1;
            if window.client.is_some() && window.fault.disturbs_delivery() {
                self.push(window.from, Ev::FaultStart(i));
                self.push(window.to, Ev::FaultEnd(i));
            }
        }
        for client in 0..self.clients.len() {
            self.start_process(client);
        }
    }

    fn next_time(&self) -> Option<u64> {
        let queued = self.queue.keys().next().map(|(at, _)| *at);
        let machines = self
            .clients
            .iter()
            .filter_map(|c| c.machine.as_ref()?.next_deadline())
            .map(|d| self.ms_of(d).max(self.now))
            .min();
        [
            queued,
            machines,
            self.server.next_fire(),
            self.watch.truth_valid_until(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn advance(&mut self, at: u64) {
        self.step += 1;
        assert!(
            self.step <= MAX_STEPS,
            "the run did not settle within {MAX_STEPS} steps; {}",
            self.context()
        );
        self.now = at;
        let fired = self.server.fire_due(at);
        for index in fired {
            self.distribute(index);
        }
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > at {
                break;
            }
            let ev = entry.remove();
            self.handle(ev);
        }
        for client in 0..self.clients.len() {
            let due = self.clients[client]
                .machine
                .as_ref()
                .and_then(RtcMachine::next_deadline)
                .is_some_and(|d| self.ms_of(d) <= at);
            if due {
                let now = self.instant(at);
                self.machine_mut(client).handle_timeout(now);
                self.drain(client);
            }
        }
        self.check();
    }

    fn machine_mut(&mut self, client: usize) -> &mut RtcMachine {
        self.clients[client].machine.as_mut().expect("running")
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Action(action) => self.act(action),
            Ev::FaultStart(i) => {
                let client = self.plan.windows[i].client.expect("a client's fault");
                let c = &mut self.clients[client];
                c.disturbed += 1;
                c.steady_since = None;
                c.stamp += 1;
            }
            Ev::FaultEnd(i) => {
                let client = self.plan.windows[i].client.expect("a client's fault");
                self.clients[client].disturbed -= 1;
                if self.clients[client].disturbed == 0 && self.clients[client].is_running() {
                    self.recover_side(client);
                }
            }
            Ev::AtServer {
                client,
                generation,
                id,
                http,
                abort_at,
            } => self.at_server(client, generation, id, http, abort_at),
            Ev::Answer {
                client,
                generation,
                id,
                outcome,
            } => self.answer(client, generation, id, outcome),
            Ev::LocalAnswer {
                client,
                generation,
                id,
                local,
            } => {
                let outcome = self.local_outcome(client, local);
                self.answer(client, generation, id, outcome);
            }
            Ev::LocalTimeout {
                client,
                generation,
                id,
            } => {
                let c = &mut self.clients[client];
                if c.generation == generation && c.outstanding.remove(&id).is_some() {
                    self.stats.timeouts += 1;
                    let now = self.instant(self.now);
                    self.machine_mut(client).handle_response(
                        id,
                        Outcome::Http(RequestOutcome::Timeout),
                        now,
                    );
                    self.drain(client);
                }
            }
            Ev::Timeline {
                client,
                generation,
                room,
                raw,
                rejoined,
            } => {
                if self.clients[client].generation != generation
                    || !self.clients[client].is_running()
                {
                    return;
                }
                let receipt = self.receipt(client);
                let now = self.instant(self.now);
                trace!(
                    self,
                    "client {client} timeline: {}",
                    &raw[..raw.len().min(160)]
                );
                self.machine_mut(client)
                    .handle_room_event(&room, &raw, receipt, now);
                if rejoined {
                    // The room's state comes with our join: its power levels.
                    self.machine_mut(client).handle_room_event(
                        &room,
                        &power_levels(),
                        receipt,
                        now,
                    );
                }
                self.drain(client);
                if rejoined {
                    // The machine forgot the room when it saw our leave, possibly after the
                    // side connection had already replayed the room for our new join: the pump
                    // opens a fresh connection so that the room's live events come again (once
                    // the network is back, if it is cut off).
                    if self.clients[client].disturbed == 0 {
                        self.restart_side(client);
                    } else {
                        self.clients[client].side.must_restart = true;
                    }
                }
            }
            Ev::SidePoll {
                client,
                generation,
                conn,
            } => {
                let c = &self.clients[client];
                if c.generation != generation || c.side.conn != conn {
                    return;
                }
                let news = self.server.has_news(&c.user, &c.side.cursor, self.now);
                if news || c.side.more {
                    self.serve_page(client);
                } else {
                    // Nothing new since the last (caught-up) page: the client has it all.
                    self.clients[client].side.state = SideState::Parked;
                    self.mark_steady(client);
                }
            }
            Ev::SidePage {
                client,
                generation,
                conn,
                body,
                caught_up,
                cursor,
            } => {
                let c = &self.clients[client];
                if c.generation != generation || c.side.conn != conn {
                    return;
                }
                self.at_page(client, &body, caught_up, cursor);
            }
            Ev::Keys {
                client,
                room,
                session,
            } => {
                let key = (room.clone(), session.clone());
                if self.clients[client].keys.contains_key(&key) {
                    return;
                }
                let now = self.now;
                self.clients[client].keys.insert(key.clone(), now);
                if !self.clients[client].is_running() {
                    // A new process finds it in the store.
                    self.clients[client].keys_told.insert(key, now);
                    return;
                }
                if self.rng.random_bool(self.plan.net.key_lag) {
                    // The key is in the store, but the stream telling the machine lagged: it
                    // hears of it as a lag, a little later.
                    let at = now + self.rng.random_range(0..=1_000);
                    self.clients[client].pending_keys.push(key);
                    self.push(at, Ev::KeysLagged { client });
                    return;
                }
                let c = &mut self.clients[client];
                c.keys_told.insert(key, now);
                c.stamp += 1;
                let now = self.instant(now);
                self.machine_mut(client)
                    .handle_room_keys([(room, session)], now);
                self.drain(client);
            }
            Ev::KeysLagged { client } => {
                let now = self.now;
                let c = &mut self.clients[client];
                for key in std::mem::take(&mut c.pending_keys) {
                    c.keys_told.entry(key).or_insert(now);
                }
                c.stamp += 1;
                if c.is_running() {
                    let now = self.instant(now);
                    self.machine_mut(client).handle_room_keys_lagged(now);
                    self.drain(client);
                }
            }
            Ev::Rejoin { client, room } => self.join(client, room),
        }
    }

    /// The receipt of a response reaching `client` now: the shared monotonic instant, and
    /// the server's wall clock plus the client's offset.
    fn receipt(&self, client: usize) -> Receipt {
        let wall =
            (WALL0_MS + self.now).saturating_add_signed(self.clients[client].clock_offset_ms);
        Receipt::new(self.instant(self.now), wall)
    }

    // --- app commands and world events --------------------------------------------------

    fn act(&mut self, action: Action) {
        trace!(self, "action {action:?}");
        *self.stats.actions.entry(action.name()).or_default() += 1;
        match action {
            Action::Join { client, room } => self.join(client, room),
            Action::Leave { client, room } => {
                self.clients[client].intent.remove(&room);
                if self.clients[client].is_running() {
                    let call = self.calls[room].clone();
                    let now = self.instant(self.now);
                    self.machine_mut(client).leave(&call, now);
                    self.drain(client);
                }
            }
            Action::Update { client, room } => {
                if self.clients[client].is_running() {
                    let call = self.calls[room].clone();
                    let transport = format!("https://lk{}.sim.test", self.rng.random_range(0..100));
                    let update =
                        ContentUpdate::default().with_transport(Transport::livekit(transport));
                    let now = self.instant(self.now);
                    // Refused (nothing changes) when not in the call.
                    let _ = self.machine_mut(client).update(&call, update, now);
                    self.drain(client);
                }
            }
            Action::Crash { client } => self.crash(client),
            Action::Restart { client, rejoin } => {
                if self.clients[client].is_running() {
                    return;
                }
                let interrupted = self.start_process(client);
                if rejoin {
                    for call in interrupted {
                        let room = self.room_index[call.room_id()];
                        let at = self.now + self.rng.random_range(0..=2_000);
                        self.push(at, Ev::Rejoin { client, room });
                    }
                }
            }
            Action::SideRestart { client } => {
                if self.clients[client].is_running() && self.clients[client].disturbed == 0 {
                    self.restart_side(client);
                }
            }
            Action::RoomLeave { user, room } => self.room_leave(user, room),
            Action::RoomJoin { user, room } => {
                let user_id = self.plan.users[user].clone();
                let room_id = self.plan.rooms[room].id.clone();
                if !self.server.is_member(&room_id, &user_id) {
                    let index = self.server.set_member(&room_id, &user_id, true, self.now);
                    self.distribute(index);
                }
            }
            Action::Redact { room, pick } => {
                let room_id = &self.plan.rooms[room].id;
                let now = self.now;
                // A redacted copy has lost its sticky key: a client that never saw the original
                // cannot tombstone its key, and falls back to the best candidate it can place.
                // So only redactions after which that fallback agrees with the tombstone (no
                // older join takes over) are made; the others are a known limit of the
                // protocol, not of the machine.
                let room_state = self.server.room(room_id);
                let mut live = Vec::new();
                for candidates in room_state.call_keys.values() {
                    let alive: Vec<usize> = candidates
                        .iter()
                        .copied()
                        .filter(|i| self.server.events[*i].expires().is_some_and(|at| at > now))
                        .collect();
                    for &target in &alive {
                        if self.server.events[target].redacted_by.is_some() {
                            continue;
                        }
                        let rank = |i: usize| {
                            let e = &self.server.events[i];
                            (e.expires(), e.event_id.as_bytes().to_vec())
                        };
                        let winner = alive.iter().copied().max_by_key(|i| rank(*i));
                        let placeable = alive
                            .iter()
                            .copied()
                            .filter(|i| {
                                *i != target && self.server.events[*i].redacted_by.is_none()
                            })
                            .max_by_key(|i| rank(*i));
                        let revives = placeable.is_some_and(|i| {
                            self.server.events[i]
                                .sticky()
                                .and_then(|s| s.call.as_ref())
                                .is_some_and(|c| c.joins.is_some())
                        });
                        let winner_after_is_tombstone = winner == Some(target)
                            || winner.is_some_and(|w| self.server.events[w].redacted_by.is_some());
                        if !(winner_after_is_tombstone && revives) {
                            live.push(target);
                        }
                    }
                }
                if !live.is_empty() {
                    let mut live = live;
                    live.sort_unstable();
                    let target = live[pick % live.len()];
                    let index = self.server.redact(target, now);
                    self.distribute(index);
                }
            }
            Action::Hostile { room, count } => self.flood(room, count),
        }
    }

    /// The app joins the room call with a fresh member id (when the process lives, the user
    /// is in the room, and the app is not in that call already; while our leave is still
    /// going out, the machine starts the join once it is out).
    fn join(&mut self, client: usize, room: usize) {
        let call = self.calls[room].clone();
        let room_id = self.plan.rooms[room].id.clone();
        let c = &self.clients[client];
        if !c.is_running() || !self.server.is_member(&room_id, &c.user) || c.intent.contains(&room)
        {
            return;
        }
        let member_id = self.clients[client].fresh_member_id();
        let c = &self.clients[client];
        let content = MembershipContent::room_call(
            c.user.clone(),
            c.device.clone(),
            member_id,
            Transport::livekit("https://lk.sim.test"),
        );
        let capabilities = ServerCapabilities {
            delayed_events: self.plan.delayed != DelayedMode::NotAdvertised,
            max_delay_ms: None,
            sticky_events: true,
        };
        let params = JoinParams::new(content, capabilities).with_timings(self.plan.timings.clone());
        self.clients[client].intent.insert(room);
        let now = self.instant(self.now);
        let result = self.machine_mut(client).join(&call, params, now);
        assert!(
            result.is_ok(),
            "join refused: {result:?}; {}",
            self.context()
        );
        self.drain(client);
    }

    /// Starts (or restarts) the process of `client`: a new machine, the record of the last
    /// run restored, a fresh side connection. Returns the interrupted calls.
    fn start_process(&mut self, client: usize) -> Vec<CallId> {
        let now = self.now;
        let c = &mut self.clients[client];
        c.runs += 1;
        c.generation += 1;
        let mut config = MachineConfig::new(
            c.user.clone(),
            c.device.clone(),
            format!("{}r{}", c.device, c.runs),
        );
        config.sticky_limits = sticky_limits();
        config.parked_limits = parked_limits();
        config.own_membership = self.plan.timings.clone();
        config.parked_retry_interval = Duration::from_secs(5);
        config.member_query_retry = Duration::from_secs(1);
        config.hold_limit = Duration::from_millis(self.plan.hold_limit_ms);
        config.can_encrypt = true;
        config.device_check_interval = Duration::from_secs(2);
        c.machine = Some(RtcMachine::new(config));
        c.lists.clear();
        c.active.clear();
        c.outstanding.clear();
        c.last_member.clear();
        // A new process finds every stored key.
        for (key, _) in c.keys.iter() {
            c.keys_told.entry(key.clone()).or_insert(now);
        }
        for room in &self.plan.rooms {
            c.room_since.insert(room.id.clone(), now);
        }
        let instant = self.instant(now);
        let encrypted: Vec<OwnedRoomId> = self
            .plan
            .rooms
            .iter()
            .filter(|r| r.encrypted)
            .map(|r| r.id.clone())
            .collect();
        for room in encrypted {
            self.machine_mut(client)
                .handle_room_encryption(&room, true, instant);
        }
        // The store knows every room's power levels: the moderator may redact.
        let receipt = self.receipt(client);
        let rooms: Vec<OwnedRoomId> = self.plan.rooms.iter().map(|r| r.id.clone()).collect();
        for room in rooms {
            self.machine_mut(client)
                .handle_room_event(&room, &power_levels(), receipt, instant);
        }
        let records = self.clients[client].persisted.clone();
        if !records.is_empty() {
            self.machine_mut(client).restore(&records, instant);
        }
        self.drain(client);
        self.start_side(client, false);
        self.clients[client].machine().interrupted_calls().to_vec()
    }

    fn crash(&mut self, client: usize) {
        if !self.clients[client].is_running() {
            return;
        }
        self.note_crash(client);
        let c = &mut self.clients[client];
        c.machine = None;
        c.generation += 1;
        // What the app wanted dies with it; a restart may re-join.
        c.intent.clear();
        c.outstanding.clear();
        c.lists.clear();
        c.active.clear();
        c.side.state = SideState::Down;
        c.steady_since = None;
    }

    fn room_leave(&mut self, user: usize, room: usize) {
        let user_id = self.plan.users[user].clone();
        let room_id = self.plan.rooms[room].id.clone();
        let call = &self.calls[room];
        if !self.server.is_member(&room_id, &user_id) {
            return;
        }
        // Leaving a room while a device is in a call there would leave a ghost the sender
        // can no longer end (the firing of a delayed leave is refused); the app leaves the
        // call first. Skip while any device of the user may still be there.
        let busy = self.clients.iter().any(|c| {
            c.user == user_id
                && (c.machine.as_ref().is_some_and(|m| {
                    m.own_member_id(call).is_some() || !m.interrupted_calls().is_empty()
                }) || !c.persisted.is_empty())
        }) || self
            .watch
            .truth
            .get(call)
            .is_some_and(|members| members.iter().any(|(u, _, _)| *u == user_id))
            || self
                .server
                .delayed
                .values()
                .any(|d| d.owner.0 == user_id && d.room == room_id);
        if busy {
            return;
        }
        let index = self.server.set_member(&room_id, &user_id, false, self.now);
        self.distribute(index);
    }

    /// The hostile member's flood: invented slots, impersonations, mismatched keys,
    /// undecryptable envelopes, plaintext joins in encrypted rooms, malformed keys.
    fn flood(&mut self, room: usize, count: usize) {
        let Some(hostile) = self.plan.hostile.clone() else {
            return;
        };
        let room_id = self.plan.rooms[room].id.clone();
        let encrypted = self.plan.rooms[room].encrypted;
        let victim = self.plan.users[0].clone();
        let count = count.min(8 * self.plan.net.page_limit);
        for i in 0..count {
            let n = self.rng.random_range(0..1_000_000u64);
            let duration_ms = self.rng.random_range(60_000..=7_200_000u64);
            let join = |slot: &str, member: &str, key: &str, user: &str, device: &str| {
                json!({
                    "slot_id": slot,
                    "application": { "type": "m.call" },
                    "member": { "id": member, "user_id": user, "device_id": device },
                    "transports": { "published": [{ "type": "livekit", "livekit_service_url": "https://evil.sim.test" }], "can_subscribe": ["livekit"] },
                    "versions": [],
                    "msc4354_sticky_key": key,
                })
            };
            let h = hostile.as_str();
            let (content, cipher, call) = match self.rng.random_range(0..100) {
                0..40 => (
                    join(
                        &format!("m.call#x{n}"),
                        &format!("x{n}"),
                        &format!("x{n}"),
                        h,
                        "EVIL",
                    ),
                    None,
                    None,
                ),
                40..55 => (
                    join(
                        rtc_wire::ROOM_CALL_SLOT,
                        &format!("a{n}"),
                        &format!("b{n}"),
                        h,
                        "EVIL",
                    ),
                    None,
                    None,
                ),
                55..70 => (
                    join(
                        rtc_wire::ROOM_CALL_SLOT,
                        &format!("v{n}"),
                        &format!("v{n}"),
                        victim.as_str(),
                        "DEV0",
                    ),
                    None,
                    None,
                ),
                70..85 => (
                    json!({ "junk": n }),
                    Some(Cipher {
                        session_id: format!("junk-{n}"),
                        device: "EVIL".into(),
                    }),
                    None,
                ),
                85..92 if encrypted => {
                    let key = format!("p{n}");
                    let call = CallEntry {
                        sticky_key: key.clone(),
                        joins: Some((hostile.clone(), "EVIL".into(), key.clone())),
                    };
                    (
                        join(rtc_wire::ROOM_CALL_SLOT, &key, &key, h, "EVIL"),
                        None,
                        Some(call),
                    )
                }
                _ => (
                    json!({ "slot_id": rtc_wire::ROOM_CALL_SLOT, "sticky_key": format!("k{i}"), "msc4354_sticky_key": format!("q{i}") }),
                    None,
                    None,
                ),
            };
            let sticky = Sticky {
                event_type: rtc_wire::RTC_MEMBER_UNSTABLE.to_owned(),
                duration_ms,
                content,
                cipher,
                call,
            };
            let index = self.server.send_raw(&room_id, &hostile, sticky, self.now);
            self.stats.hostile_events += 1;
            self.distribute(index);
        }
    }

    // --- the pump -------------------------------------------------------------------------

    /// Drains the machine of `client` after an input: performs its requests, applies its
    /// updates, and checks that the updates replay to what the machine publishes.
    fn drain(&mut self, client: usize) {
        self.clients[client].stamp += 1;
        loop {
            let Some(machine) = self.clients[client].machine.as_mut() else {
                return;
            };
            let mut progressed = false;
            let mut requests = Vec::new();
            while let Some(request) = machine.poll_request() {
                requests.push(request);
            }
            let mut updates = Vec::new();
            while let Some(update) = machine.poll_update() {
                updates.push(update);
            }
            for request in requests {
                progressed = true;
                let deadline = request.deadline().map(|d| self.ms_of(d));
                let (id, kind) = request.into_parts();
                self.perform(client, id, kind, deadline);
            }
            for update in updates {
                progressed = true;
                if let Err(error) = self.clients[client].apply(&update) {
                    panic!(
                        "client {client}: the update stream is inconsistent: {error} ({update:?}); {}",
                        self.context()
                    );
                }
            }
            if !progressed {
                break;
            }
        }
        if self.trace {
            for call in self.calls.clone() {
                let m = self.clients[client].machine();
                let members: Vec<_> = m
                    .participants(&call)
                    .iter()
                    .map(|p| p.member_id.clone())
                    .collect();
                trace!(
                    self,
                    "client {client} view {call}: {members:?}, own {:?} {:?}",
                    m.own_status(&call),
                    m.own_member_id(&call)
                );
            }
        }
        self.check_updates(client);
        self.check_leaves(client);
    }

    fn perform(&mut self, client: usize, id: RequestId, kind: RequestKind, deadline: Option<u64>) {
        let now = self.now;
        let generation = self.clients[client].generation;
        trace!(self, "client {client} performs {id}: {}", summary(&kind));
        let http = match kind {
            RequestKind::SendSticky {
                room_id,
                event_type,
                content,
                txn_id,
                sticky_duration,
            } => {
                let sticky = self.outgoing(client, &room_id, event_type, content, sticky_duration);
                Http::Send {
                    room: room_id,
                    sticky,
                    txn_id,
                }
            }
            RequestKind::ScheduleDelayedSticky {
                room_id,
                event_type,
                content,
                txn_id,
                sticky_duration,
                delay,
            } => {
                let sticky = self.outgoing(client, &room_id, event_type, content, sticky_duration);
                Http::Schedule {
                    room: room_id,
                    sticky,
                    txn_id,
                    delay_ms: u64::try_from(delay.as_millis()).expect("fits"),
                }
            }
            RequestKind::UpdateDelayed { delay_id, action } => Http::Update {
                delay_id: delay_id.as_str().to_owned(),
                action,
            },
            RequestKind::Decrypt { room_id, event } => {
                return self.local(
                    client,
                    id,
                    Local::Decrypt {
                        room: room_id,
                        event: event.get().to_owned(),
                    },
                );
            }
            RequestKind::QueryMember { room_id, user_id } => {
                self.stats.member_queries += 1;
                return self.local(
                    client,
                    id,
                    Local::Member {
                        room: room_id,
                        user: user_id,
                    },
                );
            }
            RequestKind::CheckNewDevices { room_id } => {
                return self.local(client, id, Local::Devices { room: room_id });
            }
            other => panic!("unexpected request {other:?}; {}", self.context()),
        };
        self.stats.http_requests += 1;
        let abort_at = deadline.unwrap_or(now + PUMP_TIMEOUT_MS).max(now + 1);
        self.clients[client]
            .outstanding
            .insert(id, (Performing::Http, abort_at));
        self.push(
            abort_at,
            Ev::LocalTimeout {
                client,
                generation,
                id,
            },
        );
        match self.network.trip(client, now, false, &mut self.rng) {
            Trip::After(latency) => self.push(
                now + latency,
                Ev::AtServer {
                    client,
                    generation,
                    id,
                    http,
                    abort_at,
                },
            ),
            Trip::Refused => self.push(
                now + 1,
                Ev::Answer {
                    client,
                    generation,
                    id,
                    outcome: Outcome::Http(RequestOutcome::Network),
                },
            ),
            Trip::Lost { .. } => self.stats.lost_requests += 1,
        }
    }

    fn local(&mut self, client: usize, id: RequestId, local: Local) {
        let generation = self.clients[client].generation;
        let at = self.now + self.rng.random_range(0..=5);
        self.clients[client]
            .outstanding
            .insert(id, (Performing::Local, at));
        self.push(
            at,
            Ev::LocalAnswer {
                client,
                generation,
                id,
                local,
            },
        );
    }

    fn local_outcome(&mut self, client: usize, local: Local) -> Outcome {
        match local {
            Local::Decrypt { room, event } => {
                let envelope: Value = serde_json::from_str(&event).unwrap_or(Value::Null);
                let content = &envelope["content"];
                let session = content["session_id"].as_str().unwrap_or_default();
                let c = &self.clients[client];
                match (
                    c.keys.contains_key(&(room, session.to_owned())),
                    content["ciphertext"].as_str(),
                ) {
                    (true, Some(inner)) => Outcome::Decrypted {
                        event: inner.to_owned(),
                        sender_device: content["device_id"].as_str().map(OwnedDeviceId::from),
                    },
                    _ => Outcome::MissingRoomKey,
                }
            }
            Local::Member { room, user } => Outcome::Member {
                joined: self.server.is_member(&room, &user),
            },
            Local::Devices { room } => {
                let current = self.room_devices(&room, client);
                let added = self.clients[client]
                    .outbound
                    .get(&room)
                    .is_some_and(|o| !current.is_subset(&o.shared_with));
                Outcome::NewDevices { added }
            }
        }
    }

    fn answer(&mut self, client: usize, generation: u64, id: RequestId, outcome: Outcome) {
        let c = &mut self.clients[client];
        if c.generation != generation || c.outstanding.remove(&id).is_none() {
            return;
        }
        trace!(self, "client {client} gets {id}: {outcome:?}");
        let now = self.instant(self.now);
        self.machine_mut(client).handle_response(id, outcome, now);
        self.drain(client);
    }

    /// The devices (other than `client`'s) of the users in `room`.
    fn room_devices(&self, room: &OwnedRoomId, client: usize) -> BTreeSet<OwnedDeviceId> {
        self.clients
            .iter()
            .filter(|c| c.index != client && self.server.is_member(room, &c.user))
            .map(|c| c.device.clone())
            .collect()
    }

    /// An outgoing sticky event of `client`: encrypted in an encrypted room (with a session
    /// shared with the devices of the room, rotated when they changed), and tagged for the
    /// truth when it is a room-call member event.
    fn outgoing(
        &mut self,
        client: usize,
        room: &OwnedRoomId,
        event_type: &str,
        content: Value,
        duration: Duration,
    ) -> Sticky {
        let user = self.clients[client].user.clone();
        let call = (event_type == rtc_wire::RTC_MEMBER_UNSTABLE
            && content["slot_id"] == rtc_wire::ROOM_CALL_SLOT)
            .then(|| {
                let sticky_key = content[rtc_wire::STICKY_KEY_UNSTABLE]
                    .as_str()
                    .expect("our content has a key")
                    .to_owned();
                let joins = content.get("application").map(|_| {
                    let member = &content["member"];
                    (
                        user.clone(),
                        OwnedDeviceId::from(member["device_id"].as_str().expect("a device")),
                        member["id"].as_str().expect("an id").to_owned(),
                    )
                });
                CallEntry { sticky_key, joins }
            });
        let encrypted = self.server.rooms.get(room).is_some_and(|r| r.encrypted);
        let cipher = encrypted.then(|| self.outbound_session(client, room));
        Sticky {
            event_type: event_type.to_owned(),
            duration_ms: u64::try_from(duration.as_millis()).expect("fits"),
            content,
            cipher,
            call,
        }
    }

    fn outbound_session(&mut self, client: usize, room: &OwnedRoomId) -> Cipher {
        let current = self.room_devices(room, client);
        let now = self.now;
        let c = &self.clients[client];
        let reuse = c.outbound.get(room).filter(|o| o.shared_with == current);
        if let Some(outbound) = reuse {
            return Cipher {
                session_id: outbound.session_id.clone(),
                device: c.device.clone(),
            };
        }
        let c = &mut self.clients[client];
        c.sessions_made += 1;
        let session_id = format!("{}-s{}-{}", c.device, c.runs, c.sessions_made);
        c.keys.insert((room.clone(), session_id.clone()), now);
        c.keys_told.insert((room.clone(), session_id.clone()), now);
        c.outbound.insert(
            room.clone(),
            Outbound {
                session_id: session_id.clone(),
                shared_with: current.clone(),
            },
        );
        let device = c.device.clone();
        for target in current {
            let target = self
                .clients
                .iter()
                .position(|c| c.device == target)
                .expect("a client's device");
            let at = now + self.rng.random_range(1..=self.plan.net.key_delay_max);
            self.push(
                at,
                Ev::Keys {
                    client: target,
                    room: room.clone(),
                    session: session_id.clone(),
                },
            );
        }
        self.stats.sessions += 1;
        Cipher { session_id, device }
    }

    fn at_server(
        &mut self,
        client: usize,
        generation: u64,
        id: RequestId,
        http: Http,
        abort_at: u64,
    ) {
        let now = self.now;
        if now > abort_at {
            // The pump gave up on it before it arrived: the server never sees it.
            self.stats.aborted += 1;
            return;
        }
        let outcome = match self.network.server_fault(now) {
            Some(Fault::ServerError) => RequestOutcome::Http {
                status: 503,
                errcode: None,
            },
            Some(Fault::RateLimited { retry_after_ms }) => RequestOutcome::RateLimited {
                retry_after: retry_after_ms.map(Duration::from_millis),
            },
            _ => {
                let (user, device) = {
                    let c = &self.clients[client];
                    (c.user.clone(), c.device.clone())
                };
                let (outcome, created) = self.server.handle(&user, &device, http, now);
                for index in created {
                    self.distribute(index);
                }
                outcome
            }
        };
        match self.network.trip(client, now, true, &mut self.rng) {
            Trip::After(latency) => self.push(
                now + latency,
                Ev::Answer {
                    client,
                    generation,
                    id,
                    outcome: Outcome::Http(outcome),
                },
            ),
            _ => self.stats.lost_answers += 1,
        }
    }

    // --- delivery ---------------------------------------------------------------------------

    /// A new event of the server: to the app's sync of every client in the room (sticky
    /// events may be lost or duplicated; room state and redactions arrive, in order), and
    /// to the side connections waiting for news.
    fn distribute(&mut self, index: usize) {
        let event = self.server.events[index].clone();
        let now = self.now;
        trace!(
            self,
            "server: {} by {} in {}: {:?}",
            event.event_id,
            event.sender,
            event.room,
            match &event.kind {
                Kind::Sticky(s) => format!(
                    "sticky {} ({} ms, encrypted {:?})",
                    s.content,
                    s.duration_ms,
                    s.cipher.as_ref().map(|c| &c.session_id)
                ),
                other => format!("{other:?}"),
            }
        );
        let mut recipients: Vec<usize> = self
            .clients
            .iter()
            .filter(|c| c.is_running() && self.server.is_member(&event.room, &c.user))
            .map(|c| c.index)
            .collect();
        let reliable = match &event.kind {
            Kind::Sticky(_) => false,
            Kind::Redaction { .. } => true,
            Kind::Member { user, joined } => {
                for c in &mut self.clients {
                    if c.user == *user {
                        if *joined {
                            c.stamp += 1;
                            c.room_since.insert(event.room.clone(), now);
                            c.side.cursor.rooms.insert(event.room.clone(), 0);
                            c.side.replays.insert(event.room.clone());
                        } else if c.is_running() && !recipients.contains(&c.index) {
                            // We see our own leave.
                            recipients.push(c.index);
                        }
                    }
                }
                true
            }
        };
        let raw = event
            .to_json(now, self.server.with_ttl)
            .expect("a new event is live");
        if let Kind::Member { user, joined: true } = &event.kind
            && self.server.room(&event.room).encrypted
        {
            // A room joined (again) comes with its state: it is encrypted.
            let encryption = json!({
                "type": "m.room.encryption",
                "state_key": "",
                "event_id": format!("$encryption-{}", event.event_id.as_str().trim_start_matches('$')),
                "sender": user,
                "origin_server_ts": WALL0_MS + now,
                "content": { "algorithm": "m.megolm.v1.aes-sha2" },
            })
            .to_string();
            for client in recipients.clone() {
                if self.clients[client].user == *user {
                    self.deliver(client, &event.room, encryption.clone(), true);
                }
            }
        }
        for client in recipients {
            let rejoined = matches!(
                &event.kind,
                Kind::Member { user, joined: true } if *user == self.clients[client].user
            );
            self.deliver_flagged(client, &event.room, raw.clone(), reliable, rejoined);
        }
        // Side connections parked at the server answer now.
        let waiting: Vec<usize> = self
            .clients
            .iter()
            .filter(|c| c.is_running() && c.side.state == SideState::Parked)
            .filter(|c| self.server.has_news(&c.user, &c.side.cursor, now))
            .map(|c| c.index)
            .collect();
        for client in waiting {
            self.serve_page(client);
        }
    }

    fn deliver(&mut self, client: usize, room: &OwnedRoomId, raw: String, reliable: bool) {
        self.deliver_flagged(client, room, raw, reliable, false);
    }

    fn deliver_flagged(
        &mut self,
        client: usize,
        room: &OwnedRoomId,
        raw: String,
        reliable: bool,
        rejoined: bool,
    ) {
        let now = self.now;
        let generation = self.clients[client].generation;
        let arrival = match self.network.delivery(client, now, &mut self.rng) {
            Trip::After(latency) => now + latency,
            Trip::Lost { until } if reliable => until + self.network.latency(&mut self.rng),
            Trip::Lost { .. } | Trip::Refused => {
                self.stats.timeline_lost += 1;
                return;
            }
        };
        if !reliable && self.rng.random_bool(self.plan.net.timeline_loss) {
            self.stats.timeline_lost += 1;
            return;
        }
        let arrival = if reliable {
            let c = &mut self.clients[client];
            let arrival = arrival.max(c.reliable_last);
            c.reliable_last = arrival;
            arrival
        } else {
            arrival
        };
        if !reliable && self.rng.random_bool(self.plan.net.timeline_dup) {
            self.stats.timeline_dups += 1;
            let again = arrival + self.network.latency(&mut self.rng);
            self.push(
                again,
                Ev::Timeline {
                    client,
                    generation,
                    room: room.clone(),
                    raw: raw.clone(),
                    rejoined,
                },
            );
        }
        self.push(
            arrival,
            Ev::Timeline {
                client,
                generation,
                room: room.clone(),
                raw,
                rejoined,
            },
        );
    }

    // --- the side connection ------------------------------------------------------------------

    fn start_side(&mut self, client: usize, restarted: bool) {
        let c = &mut self.clients[client];
        c.side.conn += 1;
        c.side.cursor = Cursor::default();
        // The first request of a connection is answered at once, even when empty.
        c.side.more = true;
        c.side.restarted = restarted;
        c.side.replays.clear();
        c.side.must_restart = false;
        c.steady_since = None;
        c.stamp += 1;
        self.send_poll(client);
    }

    /// The side connection fails and a fresh one replays every live event.
    fn restart_side(&mut self, client: usize) {
        self.stats.side_restarts += 1;
        let now = self.instant(self.now);
        self.machine_mut(client).handle_side_connection_down(now);
        self.drain(client);
        self.start_side(client, true);
    }

    fn send_poll(&mut self, client: usize) {
        let now = self.now;
        let (generation, conn) = {
            let c = &self.clients[client];
            (c.generation, c.side.conn)
        };
        match self.network.trip(client, now, false, &mut self.rng) {
            Trip::After(latency) => {
                self.clients[client].side.state = SideState::Polling;
                self.push(
                    now + latency,
                    Ev::SidePoll {
                        client,
                        generation,
                        conn,
                    },
                );
            }
            _ => self.clients[client].side.state = SideState::Stalled,
        }
    }

    fn serve_page(&mut self, client: usize) {
        let now = self.now;
        let c = &self.clients[client];
        let mut cursor = c.side.cursor.clone();
        let page = self
            .server
            .page(&c.user, &mut cursor, self.plan.net.page_limit, now);
        let (generation, conn) = (c.generation, c.side.conn);
        self.clients[client].side.replays.clear();
        match self.network.delivery(client, now, &mut self.rng) {
            Trip::After(latency) => {
                self.clients[client].side.state = SideState::Paging;
                self.stats.pages += 1;
                self.push(
                    now + latency,
                    Ev::SidePage {
                        client,
                        generation,
                        conn,
                        body: page.body,
                        caught_up: page.caught_up,
                        cursor,
                    },
                );
            }
            _ => self.clients[client].side.state = SideState::Stalled,
        }
    }

    fn at_page(&mut self, client: usize, body: &str, caught_up: bool, cursor: Cursor) {
        let receipt = self.receipt(client);
        let now = self.instant(self.now);
        let c = &mut self.clients[client];
        c.side.cursor = cursor;
        // Rooms joined while the page travelled are replayed from the start.
        for room in std::mem::take(&mut c.side.replays) {
            c.side.cursor.rooms.insert(room, 0);
        }
        c.side.more = !caught_up;
        let restarted = std::mem::take(&mut c.side.restarted);
        let batch = parse_sticky_batch(body, receipt).expect("our pages parse");
        trace!(
            self,
            "client {client} page: {} events, caught up {caught_up}, restarted {restarted}",
            batch.event_count()
        );
        if !caught_up {
            self.stats.pages_not_caught_up += 1;
        }
        self.machine_mut(client).handle_sticky_batch(
            batch,
            PageFlags::new(caught_up, restarted),
            now,
        );
        self.drain(client);
        if caught_up {
            self.mark_steady(client);
        }
        self.send_poll(client);
    }

    /// The client has everything the server had for it: its view is held to the delivery
    /// bound from now on (or from when the room state and redactions on their way to it
    /// have arrived), unless a fault still disturbs its delivery.
    fn mark_steady(&mut self, client: usize) {
        let now = self.now;
        let c = &mut self.clients[client];
        if c.steady_since.is_none() && c.disturbed == 0 {
            c.steady_since = Some(now.max(c.reliable_last));
            c.stamp += 1;
        }
    }

    /// The network of `client` came back: a stuck side connection resumes where it was, or
    /// starts afresh (half the time each); an idle one is caught up already.
    fn recover_side(&mut self, client: usize) {
        if std::mem::take(&mut self.clients[client].side.must_restart) {
            self.restart_side(client);
            return;
        }
        match self.clients[client].side.state {
            SideState::Stalled => {
                if self.rng.random_bool(0.5) {
                    self.send_poll(client);
                } else {
                    self.restart_side(client);
                }
            }
            SideState::Parked => self.mark_steady(client),
            SideState::Polling | SideState::Paging | SideState::Down => {}
        }
    }
}

/// A short description of a request, for traces.
fn summary(kind: &RequestKind) -> String {
    match kind {
        RequestKind::SendSticky {
            content, txn_id, ..
        } => format!("send {content} (txn {txn_id})"),
        RequestKind::ScheduleDelayedSticky {
            content,
            txn_id,
            delay,
            ..
        } => {
            format!("schedule {content} in {delay:?} (txn {txn_id})")
        }
        RequestKind::UpdateDelayed { delay_id, action } => {
            format!("{action:?} {}", delay_id.as_str())
        }
        RequestKind::Decrypt { .. } => "decrypt".to_owned(),
        RequestKind::QueryMember { user_id, .. } => format!("query {user_id}"),
        RequestKind::CheckNewDevices { room_id } => format!("check devices of {room_id}"),
        other => format!("{other:?}"),
    }
}

/// Every room's `m.room.power_levels`: the moderator who redacts (`Server::redact`) has the
/// `redact` level.
fn power_levels() -> String {
    json!({
        "type": "m.room.power_levels",
        "state_key": "",
        "event_id": "$power",
        "sender": "@mod:sim.test",
        "origin_server_ts": WALL0_MS,
        "content": { "users": { "@mod:sim.test": 50 } },
    })
    .to_string()
}
