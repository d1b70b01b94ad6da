//! The invariants, checked after every step of a run (and at its end). Each failure names the
//! seed and the step (see [`World::context`]).
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use matrix_rtc_machine::CallId;
use matrix_rtc_membership::OwnStatus;

use super::{
    Checks,
    server::{self, Member},
    world::{World, parked_limits, sticky_limits},
};

/// A member of a crashed client that must leave the truth by `deadline`.
#[derive(Debug)]
struct Ghost {
    client: usize,
    call: CallId,
    member: Member,
    crashed_at: u64,
    deadline: u64,
}

/// What the checks remember between steps.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// The truth per room call, as of the last step.
    pub(crate) truth: BTreeMap<CallId, BTreeSet<Member>>,
    /// When each member last entered or left the truth.
    changed: HashMap<(CallId, Member), u64>,
    ghosts: Vec<Ghost>,
    drains: u64,
    /// The server version the truth was computed at, and until when it holds.
    truth_at: Option<(u64, u64)>,
    /// Bumped whenever the truth changed.
    truth_stamp: u64,
    /// Per client: the stamps its view was last compared at, and from when its oldest
    /// difference from the truth would break the bound.
    views: HashMap<usize, (Stamps, Option<u64>)>,
    pub(crate) checks: Checks,
    /// Deviations tolerated because they are known (and reported) issues outside this
    /// crate, by name.
    pub(crate) known: BTreeMap<&'static str, u64>,
}

/// What a comparison of a view depends on: the truth's, the server's and the client's stamps.
type Stamps = (u64, u64, u64);

impl Watch {
    /// When the truth may change next by itself (a candidate's expiry).
    pub(crate) fn truth_valid_until(&self) -> Option<u64> {
        self.truth_at
            .map(|(_, until)| until)
            .filter(|at| *at < u64::MAX)
    }
}

fn member_of(p: &matrix_rtc_membership::Participant) -> Member {
    (p.user_id.clone(), p.device_id.clone(), p.member_id.clone())
}

impl World {
    /// Every invariant that holds at every step.
    pub(crate) fn check(&mut self) {
        self.update_truth();
        for client in 0..self.clients.len() {
            if !self.clients[client].is_running() {
                continue;
            }
            self.check_memory(client);
            self.check_switch(client);
            self.check_view(client);
        }
        self.check_ghosts();
    }

    fn update_truth(&mut self) {
        let now = self.now;
        if self
            .watch
            .truth_at
            .is_some_and(|(version, until)| version == self.server.version && now < until)
        {
            return;
        }
        for call in self.calls.clone() {
            let truth = self.server.truth(call.room_id(), now);
            let old = self.watch.truth.remove(&call).unwrap_or_default();
            for member in old.symmetric_difference(&truth) {
                self.watch
                    .changed
                    .insert((call.clone(), member.clone()), now);
                self.watch.truth_stamp += 1;
            }
            self.watch.truth.insert(call, truth);
        }
        let until = self.server.next_expiry(now).unwrap_or(u64::MAX);
        self.watch.truth_at = Some((self.server.version, until));
    }

    /// Invariant 1, convergence: a caught-up client with a healthy network shows exactly the
    /// truth, up to the delivery bound after the last change of each member (or after the
    /// client caught up, or after its user joined the room, or after the room key of the
    /// member's current event reached it). A member whose current event is encrypted with a
    /// key the client does not hold is not constrained: nobody can require it to read that.
    fn check_view(&mut self, client: usize) {
        let c = &self.clients[client];
        if c.steady_since.is_none() || c.disturbed > 0 {
            return;
        }
        let stamps = (self.watch.truth_stamp, self.server.version, c.stamp);
        if let Some((at, due)) = self.watch.views.get(&client)
            && *at == stamps
            && due.is_none_or(|due| self.now <= due)
        {
            self.watch.checks.convergence += self.calls.len() as u64;
            return;
        }
        let due = self.compare_view(client);
        self.watch.views.insert(client, (stamps, due));
    }

    /// Compares the view of `client` with the truth; panics when a difference is older than
    /// the bound, else returns when the oldest would be.
    fn compare_view(&mut self, client: usize) -> Option<u64> {
        let c = &self.clients[client];
        let steady = c.steady_since.expect("steady");
        let now = self.now;
        let mut due: Option<u64> = None;
        for call in &self.calls {
            let room = call.room_id();
            if !self.server.is_member(room, &c.user) {
                continue;
            }
            let view: BTreeSet<Member> = c
                .machine()
                .participants(call)
                .iter()
                .map(|p| member_of(p))
                .collect();
            let truth = &self.watch.truth[call];
            for member in view.symmetric_difference(truth) {
                let mut reference = steady
                    .max(c.room_since.get(room).copied().unwrap_or(0))
                    .max(
                        self.watch
                            .changed
                            .get(&(call.clone(), member.clone()))
                            .copied()
                            .unwrap_or(0),
                    );
                // Receivers follow every change of the key's candidates (sent, redacted,
                // expired) up to a delivery later, and meanwhile may have seen them in another
                // order: a redaction before the newer event that outranks it, an older
                // candidate outliving the winner by a delivery.
                if let Some(at) = self.server.key_changed_at(room, &member.0, &member.2, now) {
                    reference = reference.max(at);
                }
                let winner = self.server.winner(room, &member.0, &member.2, now);
                // A receiver whose clock is ahead may expire a member before the server does
                // (only without the remaining lifetime): the truth is about to change.
                if truth.contains(member)
                    && winner
                        .and_then(server::Event::expires)
                        .is_some_and(|at| at <= now + self.plan.skew())
                {
                    continue;
                }
                if let Some(cipher) = winner.and_then(|w| w.sticky()?.cipher.as_ref()) {
                    // Held from when the current event became readable for it: sent, and its
                    // key there (an earlier event of the member may have been unreadable).
                    match c
                        .keys_told
                        .get(&(room.to_owned(), cipher.session_id.clone()))
                    {
                        None => continue,
                        Some(at) => {
                            let sent = winner.map_or(0, |w| w.ts);
                            reference = reference.max(*at).max(sent);
                        }
                    }
                }
                if now > reference + self.bound {
                    let shown = view.contains(member);
                    panic!(
                        "client {client} ({} {}) {} {member:?} in {call} for {} ms (bound {} ms); \
                         truth {truth:?}, view {view:?}, winner {winner:?}; {}",
                        c.user,
                        c.device,
                        if shown {
                            "still shows"
                        } else {
                            "does not show"
                        },
                        now - reference,
                        self.bound,
                        self.context()
                    );
                }
                let limit = reference + self.bound;
                due = Some(due.map_or(limit, |d| d.min(limit)));
            }
            self.watch.checks.convergence += 1;
        }
        due
    }

    /// Invariant 4: connected with a dead-man switch means the server holds our delayed
    /// leave, live, with the leave of our current member as content; a server without delayed
    /// events never gives one.
    fn check_switch(&mut self, client: usize) {
        let c = &self.clients[client];
        let machine = c.machine();
        for call in &self.calls {
            if machine.own_status(call)
                != (OwnStatus::Connected {
                    dead_man_switch: true,
                })
            {
                continue;
            }
            assert!(
                self.plan.delayed.schedules(),
                "client {client} claims a dead-man switch in {call} on a server without delayed events; {}",
                self.context()
            );
            let member_id = machine
                .own_member_id(call)
                .expect("a member id while connected");
            assert!(
                self.server.holds_delayed_leave(
                    &(c.user.clone(), c.device.clone()),
                    call.room_id(),
                    member_id,
                    self.now
                ),
                "client {client} is connected with a dead-man switch in {call} as {member_id}, \
                 but the server holds no live delayed leave for it ({:?}); {}",
                self.server
                    .delayed
                    .values()
                    .map(|d| (&d.owner, &d.room, d.fire_at, &d.sticky.content))
                    .collect::<Vec<_>>(),
                self.context()
            );
            self.watch.checks.dead_man_switch += 1;
        }
    }

    /// Invariant 5: what the machine holds stays within its caps, whatever the hostile member
    /// sends.
    fn check_memory(&mut self, client: usize) {
        let c = &self.clients[client];
        let stats = c.machine().stats();
        let rooms = self.plan.rooms.len();
        let senders = self.plan.users.len() + usize::from(self.plan.hostile.is_some());
        let sticky = sticky_limits();
        let parked = parked_limits();
        let candidates_cap = (sticky.per_room * rooms).min(sticky.per_sender * senders * rooms);
        let parked_cap = parked
            .total
            .min(parked.per_room * rooms)
            .min(parked.per_sender * senders * rooms);
        // The room calls, plus the invented slots the hostile member's candidates can hold.
        let calls_cap =
            rooms + usize::from(self.plan.hostile.is_some()) * sticky.per_sender * rooms;
        // Per own call one request per lane (two while a timed-out one is being answered),
        // one per earlier-run membership, and the capped decryptions, member queries and
        // device checks.
        let config = c.machine().config();
        let requests_cap = 4 * stats.own_calls
            + 2 * self.plan.rooms.len()
            + config.max_decrypts_in_flight
            + config.max_member_queries_in_flight
            + rooms
            + 2;
        let within = stats.sticky_candidates <= candidates_cap
            && stats.parked <= parked_cap
            && stats.active_calls <= calls_cap
            && stats.requests_in_flight <= requests_cap;
        assert!(
            within,
            "client {client}: {stats:?} beyond the caps (candidates {candidates_cap}, parked {parked_cap}, \
             calls {calls_cap}, requests {requests_cap}); {}",
            self.context()
        );
        self.watch.checks.memory += 1;
    }

    /// Invariant 2, at the crash: every membership the crashed client held with a confirmed
    /// dead-man switch must leave the truth within the delay, one restart interval and the
    /// request timeout (a restart in flight may still reach the server and push the firing
    /// back by up to the timeout).
    pub(crate) fn note_crash(&mut self, client: usize) {
        let c = &self.clients[client];
        let machine = c.machine();
        let timings = &self.plan.timings;
        let bound = timings.delay_ms + timings.restart_interval_ms + timings.request_timeout_ms;
        for call in &self.calls {
            if machine.own_status(call)
                != (OwnStatus::Connected {
                    dead_man_switch: true,
                })
            {
                continue;
            }
            let member_id = machine.own_member_id(call).expect("connected").to_owned();
            self.watch.ghosts.push(Ghost {
                client,
                call: call.clone(),
                member: (c.user.clone(), c.device.clone(), member_id),
                crashed_at: self.now,
                deadline: self.now + bound,
            });
        }
    }

    fn check_ghosts(&mut self) {
        let now = self.now;
        let (due, waiting): (Vec<Ghost>, Vec<Ghost>) = std::mem::take(&mut self.watch.ghosts)
            .into_iter()
            .partition(|g| g.deadline <= now);
        self.watch.ghosts = waiting;
        for ghost in due {
            // Every caught-up view then drops it within the delivery bound (invariant 1).
            assert!(
                !self.watch.truth[&ghost.call].contains(&ghost.member),
                "client {} crashed at {} ms, but its membership {:?} is still in {} on the server; {}",
                ghost.client,
                ghost.crashed_at,
                ghost.member,
                ghost.call,
                self.context()
            );
            self.watch.checks.ghost += 1;
        }
    }

    /// Invariants 3 and 6, after every input: the updates replay to the published lists (the
    /// calls they touched, the room calls, and now and then every call), "call active"
    /// matches emptiness, and each list is sorted by age without duplicates.
    pub(crate) fn check_updates(&mut self, client: usize) {
        self.watch.drains += 1;
        let every = self.watch.drains.is_multiple_of(64);
        let c = &self.clients[client];
        let Some(machine) = c.machine.as_ref() else {
            return;
        };
        let mut calls: BTreeSet<CallId> = self.calls.iter().cloned().collect();
        if every {
            calls.extend(machine.active_calls());
            calls.extend(c.lists.keys().cloned());
        } else {
            calls.extend(c.touched.iter().cloned());
        }
        for call in &calls {
            // Lists move only with updates: the order of an untouched one was checked when
            // it last moved.
            let touched = every || c.touched.contains(call);
            let published = machine.participants(call);
            let rebuilt = c.lists.get(call).cloned().unwrap_or_default();
            assert!(
                published == rebuilt,
                "client {client}: the diffs of {call} replay to {rebuilt:?}, but the machine publishes {published:?}; {}",
                self.context()
            );
            let active = c.active.get(call).copied().unwrap_or(false);
            assert!(
                active != published.is_empty() && machine.is_active(call) == active,
                "client {client}: {call} is said active={active} but has {} participants; {}",
                published.len(),
                self.context()
            );
            self.watch.checks.updates += 1;
            if !touched {
                continue;
            }
            let mut seen = HashSet::new();
            for pair in published.iter().collect::<Vec<_>>().windows(2) {
                assert!(
                    pair[0].cmp_by_age(pair[1]).is_lt(),
                    "client {client}: {call} is not sorted by age: {:?} before {:?}; {}",
                    pair[0],
                    pair[1],
                    self.context()
                );
            }
            for p in &published {
                assert!(
                    seen.insert(member_of(p)),
                    "client {client}: {call} lists {p:?} twice; {}",
                    self.context()
                );
            }
            self.watch.checks.lists += 1;
        }
        self.clients[client].touched.clear();
    }

    /// Invariant 2 for clean leaves: once a leave completed (`Update::LeaveFinished`), the
    /// member we were is not in the truth (our leave, or our fired delayed leave, is the
    /// winner of its key).
    pub(crate) fn check_leaves(&mut self, client: usize) {
        let left = std::mem::take(&mut self.clients[client].left);
        let c = &self.clients[client];
        let Some(machine) = c.machine.as_ref() else {
            return;
        };
        for call in left {
            let Some(member_id) = c.last_member.get(&call) else {
                continue;
            };
            let member = (c.user.clone(), c.device.clone(), member_id.clone());
            assert!(
                !self
                    .server
                    .truth(call.room_id(), self.now)
                    .contains(&member),
                "client {client} finished leaving {call} as {member_id}, but the server still has it in \
                 the call; {}",
                self.context()
            );
            self.watch.checks.ghost += 1;
        }
        let members: Vec<(CallId, String)> = self
            .calls
            .iter()
            .filter_map(|call| Some((call.clone(), machine.own_member_id(call)?.to_owned())))
            .collect();
        self.clients[client].last_member.extend(members);
    }

    /// At the end of the quiet tail: every running client caught up, and every call the app
    /// wants to be in is joined on the server, with a dead-man switch where the server has
    /// delayed events.
    pub(crate) fn final_check(&mut self) {
        for client in 0..self.clients.len() {
            let c = &self.clients[client];
            if !c.is_running() {
                continue;
            }
            assert!(
                c.steady_since.is_some(),
                "client {client} never caught up again (side connection {:?}); {}",
                c.side.state,
                self.context()
            );
            for room in c.intent.clone() {
                let call = &self.calls[room];
                if !self.server.is_member(call.room_id(), &c.user) {
                    continue;
                }
                let machine = c.machine();
                let status = machine.own_status(call);
                let expected = OwnStatus::Connected {
                    dead_man_switch: self.plan.delayed.schedules(),
                };
                let member_id = machine.own_member_id(call).map(str::to_owned);
                let live = member_id.as_ref().is_some_and(|m| {
                    self.watch.truth[call].contains(&(c.user.clone(), c.device.clone(), m.clone()))
                });
                let winner = member_id
                    .as_ref()
                    .and_then(|m| self.server.winner(call.room_id(), &c.user, m, self.now));
                assert!(
                    status == expected && live,
                    "client {client} wants to be in {call} but is {status:?} (member {member_id:?}, on the \
                     server: {live}, winner {winner:?}) after the quiet tail from {} ms; {}",
                    self.plan.quiet_from,
                    self.context()
                );
                self.watch.checks.liveness += 1;
            }
        }
    }
}
