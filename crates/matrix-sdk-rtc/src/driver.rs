//! The driver: one tokio task per client that owns the sticky map, the membership model and
//! the own-membership machines, with a single sleep for every expiry and heartbeat.
//!
//! Everything reaches the task as an [`Input`] on one channel: sync data from the side
//! connection and the event handlers, commands from the public API, and the outcomes of the
//! requests it spawned. After each input (and after each timeout) it polls the cores for
//! requests to perform, answers the model's member queries, and publishes the session
//! changes to the observables.
use std::{
    collections::{HashMap, HashSet},
    pin::pin,
    sync::Arc,
    time::{Duration, Instant},
};

use matrix_rtc_membership::{
    JoinConfig, MembershipContent, OwnAction, OwnMembership, OwnMembershipConfig, OwnStatus,
    RequestId, RequestOutcome, SessionChange,
};
use matrix_sdk::{
    Client,
    ruma::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId},
};
use matrix_sticky_events::{EncryptedSticky, Parsed, Receipt, Rejection, StickyEvent};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, trace, warn};

use crate::{
    Diagnostic, Error, Result, RtcConfig, SideSyncBatch,
    observe::{CallKey, Registry},
    persist::{OwnCallRecord, OwnCalls},
};

mod decrypt;
mod ingest;
mod outbound;
mod publish;

pub(crate) use self::{
    ingest::{EventRoute, Ingest},
    outbound::Outbound,
    publish::publish,
};

/// One input of the driver task.
#[derive(Debug)]
pub(crate) enum Input {
    /// A response of the side connection.
    SideSync(SideSyncBatch),
    /// A raw event seen by the main sync (timeline or state section).
    RoomEvent {
        room_id: OwnedRoomId,
        raw: Box<RawValue>,
        receipt: Receipt,
    },
    /// A sender's current room membership (answer to a member query, or a member event).
    RoomMember {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        joined: bool,
    },
    /// A room is (or is not) encrypted.
    RoomEncrypted {
        room_id: OwnedRoomId,
        encrypted: bool,
    },
    /// The app asks to join a call.
    Join(Box<JoinRequest>),
    /// The app asks to leave a call.
    Leave {
        call: CallKey,
        reply: oneshot::Sender<Result<()>>,
    },
    /// A request of an own-membership machine finished.
    Outcome {
        call: CallKey,
        id: RequestId,
        outcome: RequestOutcome,
    },
    /// An encrypted sticky envelope was decrypted (or the decrypted event was rejected).
    Decrypted {
        room_id: OwnedRoomId,
        event_id: OwnedEventId,
        result: Result<StickyEvent, Rejection>,
    },
    /// An encrypted sticky envelope could not be decrypted (yet): park it.
    Undecryptable {
        room_id: OwnedRoomId,
        envelope: EncryptedSticky,
    },
    /// Room keys arrived: `(room, megolm session id)`.
    RoomKeys(Vec<(OwnedRoomId, String)>),
    /// Retry every parked envelope (the key stream lagged or was re-subscribed).
    RetryParked,
    /// A check for new devices in an encrypted room finished: `added` if devices appeared
    /// since our last room key share there.
    DevicesChecked { room_id: OwnedRoomId, added: bool },
    /// The crypto store learnt of devices it had not seen before (somebody logged in, or a
    /// new member's keys arrived): check the rooms where we are in a call now, rather than
    /// at the next periodic check.
    DevicesDiscovered,
}

/// How often parked envelopes are retried even without news of a key.
const PARKED_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// The app asks to join a call: what the driver needs to start our membership.
#[derive(Debug)]
pub(crate) struct JoinRequest {
    pub(crate) call: CallKey,
    pub(crate) content: MembershipContent,
    pub(crate) config: JoinConfig,
    pub(crate) timings: Option<OwnMembershipConfig>,
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

/// Our own membership of one call.
#[derive(Debug)]
struct OwnCall {
    machine: OwnMembership,
    content: MembershipContent,
    /// Whether the model showed our membership the last time we looked.
    seen_in_sync: bool,
    join_waiters: Vec<oneshot::Sender<Result<()>>>,
    leave_waiters: Vec<oneshot::Sender<Result<()>>>,
}

/// What the driver task owns.
#[derive(Debug)]
pub(crate) struct Driver {
    client: Client,
    own_user: OwnedUserId,
    own_device: OwnedDeviceId,
    ingest: Ingest,
    own: HashMap<CallKey, OwnCall>,
    own_config: OwnMembershipConfig,
    /// How often rooms where we are in a call are checked for new devices.
    device_check_interval: Duration,
    registry: Arc<Registry>,
    outbound: Outbound,
    parked: decrypt::Parked,
    parked_retry_at: Option<Instant>,
    /// Our calls as the persisted record sees them (a writer task stores every change).
    persist: watch::Sender<OwnCalls>,
    /// What each request in flight is, to keep [`Self::persist`] up to date.
    in_flight: HashMap<(CallKey, RequestId), OwnAction>,
    /// The next periodic check for new devices (while joined to a call).
    device_check_at: Option<Instant>,
    /// Rooms with a check for new devices running.
    device_checks: HashSet<OwnedRoomId>,
}

impl Driver {
    pub(crate) fn new(
        client: Client,
        (own_user, own_device): (OwnedUserId, OwnedDeviceId),
        config: &RtcConfig,
        registry: Arc<Registry>,
        outbound: Outbound,
        persist: watch::Sender<OwnCalls>,
    ) -> Self {
        Self {
            client,
            own_user,
            own_device,
            ingest: Ingest::new(config.sticky_limits),
            own: HashMap::new(),
            own_config: config.own_membership.clone(),
            device_check_interval: config.device_check_interval,
            registry,
            outbound,
            parked: decrypt::Parked::default(),
            parked_retry_at: None,
            persist,
            in_flight: HashMap::new(),
            device_check_at: None,
            device_checks: HashSet::new(),
        }
    }

    /// Runs until `shutdown` flips to `true` or every input sender is gone.
    pub(crate) async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut sleep = pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = self.next_deadline();
            if deadline != armed {
                if let Some(deadline) = deadline {
                    sleep.as_mut().reset(deadline.into());
                }
                armed = deadline;
            }
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                input = inputs.recv() => {
                    let Some(input) = input else { break };
                    let mut changes = Vec::new();
                    self.handle_input(input, Instant::now(), &mut changes);
                    // Take whatever else is queued in the same step: one publish per batch.
                    while let Ok(input) = inputs.try_recv() {
                        self.handle_input(input, Instant::now(), &mut changes);
                    }
                    self.after_step(changes);
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    let mut changes = Vec::new();
                    self.handle_timeout(Instant::now(), &mut changes);
                    self.after_step(changes);
                }
            }
        }
        self.shut_down();
    }

    fn next_deadline(&self) -> Option<Instant> {
        let own = self
            .own
            .values()
            .filter_map(|call| call.machine.next_deadline());
        own.chain(self.ingest.next_deadline())
            .chain(self.parked_retry_at)
            .chain(self.device_check_at)
            .min()
    }

    fn handle_input(&mut self, input: Input, now: Instant, changes: &mut Vec<SessionChange>) {
        match input {
            Input::SideSync(batch) => {
                if batch.restarted {
                    debug!("side connection restarted: live events are replayed");
                }
                if !batch.caught_up {
                    self.ingest.hold();
                }
                let receipt = Receipt {
                    instant: batch.received_at,
                    wall_ms: batch.received_wall_ms,
                };
                for (room_id, events) in &batch.rooms {
                    for raw in events {
                        self.ingest
                            .handle_sticky_raw(room_id, raw, receipt, now, changes);
                    }
                }
                if batch.caught_up {
                    changes.extend(self.ingest.release());
                }
            }
            Input::RoomEvent {
                room_id,
                raw,
                receipt,
            } => match EventRoute::of(&raw) {
                EventRoute::Sticky => {
                    self.ingest
                        .handle_sticky_raw(&room_id, &raw, receipt, now, changes);
                }
                EventRoute::CallState => self
                    .ingest
                    .handle_state_raw(&room_id, &raw, receipt, changes),
                EventRoute::RoomMember => self.handle_member_event(&room_id, &raw, changes),
                EventRoute::Encryption => {
                    changes.extend(self.ingest.model.set_room_encrypted(&room_id, true));
                }
                EventRoute::Ignore => {}
            },
            Input::RoomMember {
                room_id,
                user_id,
                joined,
            } => {
                changes.extend(
                    self.ingest
                        .model
                        .handle_room_member(&room_id, &user_id, joined),
                );
            }
            Input::RoomEncrypted { room_id, encrypted } => {
                changes.extend(self.ingest.model.set_room_encrypted(&room_id, encrypted));
            }
            Input::Join(request) => self.join(*request, now),
            Input::Leave { call, reply } => self.leave(&call, reply, now),
            Input::Decrypted {
                room_id,
                event_id,
                result,
            } => {
                self.parked.finish(&event_id);
                self.parked.decrypted(&event_id);
                let parsed = result.map(Parsed::Sticky);
                self.ingest
                    .handle_parsed(&room_id, parsed, Some(event_id), now, changes);
            }
            Input::Undecryptable { room_id, envelope } => {
                self.parked.finish(&envelope.meta.event_id);
                let report = Diagnostic::AwaitingRoomKey {
                    room_id: room_id.clone(),
                    event_id: envelope.meta.event_id.clone(),
                    sender: envelope.meta.sender.clone(),
                };
                if self.parked.park(room_id, envelope, now) {
                    self.ingest.diagnostics.push(report);
                }
                if !self.parked.is_empty() && self.parked_retry_at.is_none() {
                    self.parked_retry_at = Some(now + PARKED_RETRY_INTERVAL);
                }
            }
            Input::RoomKeys(keys) => {
                for (room_id, session_id) in keys {
                    for envelope in self.parked.take_session(&room_id, &session_id) {
                        self.ingest.encrypted.push((room_id.clone(), envelope));
                    }
                }
            }
            Input::RetryParked => self.retry_parked(now),
            Input::DevicesDiscovered => self.check_devices_in_call_rooms(),
            Input::DevicesChecked { room_id, added } => {
                self.device_checks.remove(&room_id);
                if added {
                    for (key, own) in &mut self.own {
                        if key.room_id == room_id {
                            debug!(room = %room_id, slot = %key.slot_id, "new devices: re-sending our membership");
                            own.machine.handle_new_devices(now);
                        }
                    }
                }
            }
            Input::Outcome { call, id, outcome } => {
                if let Some(action) = self.in_flight.remove(&(call.clone(), id)) {
                    self.record_outcome(&call, action, &outcome);
                }
                if let Some(own) = self.own.get_mut(&call) {
                    own.machine.handle_response(id, outcome, now);
                } else {
                    trace!(?id, "outcome for a call we no longer track");
                }
            }
        }
    }

    fn handle_member_event(
        &mut self,
        room_id: &OwnedRoomId,
        raw: &RawValue,
        changes: &mut Vec<SessionChange>,
    ) {
        #[derive(serde::Deserialize)]
        struct Member<'a> {
            state_key: &'a str,
            #[serde(borrow)]
            content: MemberContent<'a>,
        }
        #[derive(serde::Deserialize)]
        struct MemberContent<'a> {
            membership: Option<&'a str>,
        }
        let Ok(member) = serde_json::from_str::<Member<'_>>(raw.get()) else {
            trace!(room = %room_id, "unreadable m.room.member event ignored");
            return;
        };
        let Ok(user_id) = OwnedUserId::try_from(member.state_key) else {
            return;
        };
        let joined = member.content.membership == Some(crate::wire::MEMBERSHIP_JOIN);
        if user_id == self.own_user && !joined {
            debug!(room = %room_id, "we left the room: forgetting its calls");
            self.ingest.forget_room(room_id, changes);
            return;
        }
        if self
            .joined_rooms()
            .any(|joined_room| joined_room == room_id)
        {
            self.spawn_device_check(room_id.clone());
        }
        changes.extend(
            self.ingest
                .model
                .handle_room_member(room_id, &user_id, joined),
        );
    }

    /// Keeps the persisted delay ID of a call in step with what the server holds.
    fn record_outcome(&self, call: &CallKey, action: OwnAction, outcome: &RequestOutcome) {
        trace!(?action, ?outcome, "request outcome");
        let delay_id = match (action, outcome) {
            (
                OwnAction::ScheduleDelayedLeave,
                RequestOutcome::Success {
                    delay_id: Some(id), ..
                },
            ) => Some(id.as_str().to_owned()),
            (
                OwnAction::SendDelayedLeave | OwnAction::CancelDelayedLeave,
                RequestOutcome::Success { .. }
                | RequestOutcome::NotFound
                | RequestOutcome::Conflict,
            )
            | (
                OwnAction::RestartDelayedLeave,
                RequestOutcome::NotFound | RequestOutcome::Conflict,
            ) => None,
            _ => return,
        };
        self.persist
            .send_if_modified(|calls| match calls.get_mut(&call.room_id, &call.slot_id) {
                Some(record) if record.delay_id != delay_id => {
                    record.delay_id = delay_id;
                    true
                }
                _ => false,
            });
    }

    fn retry_parked(&mut self, now: Instant) {
        self.parked_retry_at = None;
        let parked = self.parked.take_all(now);
        self.ingest.encrypted.extend(parked);
    }

    fn handle_timeout(&mut self, now: Instant, changes: &mut Vec<SessionChange>) {
        if self.parked_retry_at.is_some_and(|at| at <= now) {
            self.retry_parked(now);
        }
        self.ingest.handle_timeout(now, changes);
        for call in self.own.values_mut() {
            call.machine.handle_timeout(now);
        }
        if self.device_check_at.is_some_and(|at| at <= now) {
            self.device_check_at = None;
            self.check_devices_in_call_rooms();
        }
    }

    /// Rooms where we are in a call (once per call).
    fn joined_rooms(&self) -> impl Iterator<Item = &OwnedRoomId> {
        self.own
            .iter()
            .filter(|(_, own)| {
                matches!(
                    own.machine.status(),
                    OwnStatus::Connected { .. } | OwnStatus::ProbablyLeft
                )
            })
            .map(|(key, _)| &key.room_id)
    }

    /// Checks (in a task) whether devices appeared in `room_id` since our last room key share;
    /// the answer comes back as [`Input::DevicesChecked`]. Plaintext rooms have no share: never.
    /// Checks every room where we are in a call for new devices.
    fn check_devices_in_call_rooms(&mut self) {
        let rooms: HashSet<OwnedRoomId> = self.joined_rooms().cloned().collect();
        for room_id in rooms {
            self.spawn_device_check(room_id);
        }
    }

    fn spawn_device_check(&mut self, room_id: OwnedRoomId) {
        let Some(encryptor) = self.outbound.encryptor.clone() else {
            return;
        };
        let Some(room) = self.client.get_room(&room_id) else {
            return;
        };
        if !self.device_checks.insert(room_id.clone()) {
            trace!(room = %room_id, "a check for new devices is running already");
            return;
        }
        let client = self.client.clone();
        let inputs = self.outbound.inputs.clone();
        tokio::spawn(async move {
            let added = match encryptor.devices_added_since_share(&client, &room).await {
                Ok(added) => added,
                Err(error) => {
                    warn!(room = %room_id, %error, "could not check the room for new devices");
                    false
                }
            };
            let _ = inputs.send(Input::DevicesChecked { room_id, added });
        });
    }

    fn join(&mut self, request: JoinRequest, now: Instant) {
        let JoinRequest {
            call,
            content,
            config,
            timings,
            reply,
        } = request;
        let timings = timings.unwrap_or_else(|| self.own_config.clone());
        let slot_id = call.slot_id.clone();
        let own = self.own.entry(call.clone()).or_insert_with(|| OwnCall {
            machine: OwnMembership::new(slot_id.clone(), timings.clone()),
            content: content.clone(),
            seen_in_sync: false,
            join_waiters: Vec::new(),
            leave_waiters: Vec::new(),
        });
        if *own.machine.status() == OwnStatus::Disconnected {
            // Idle: start afresh with this join's timings.
            own.machine = OwnMembership::new(slot_id, timings);
        }
        own.content = content;
        own.seen_in_sync = false;
        let record = OwnCallRecord {
            room_id: call.room_id.clone(),
            slot_id: call.slot_id.clone(),
            member_id: config.member_id.clone(),
            delay_id: None,
            sticky_duration_ms: own.machine.config().sticky_duration_ms,
        };
        match own.machine.join(config, now) {
            Ok(()) => {
                own.join_waiters.push(reply);
                self.persist.send_if_modified(|calls| {
                    let known = calls
                        .get_mut(&record.room_id, &record.slot_id)
                        .is_some_and(|r| r.member_id == record.member_id);
                    if !known {
                        calls.insert(record);
                    }
                    !known
                });
            }
            Err(error) => {
                let _ = reply.send(Err(Error::JoinFailed(error.to_string())));
            }
        }
    }

    fn leave(&mut self, call: &CallKey, reply: oneshot::Sender<Result<()>>, now: Instant) {
        match self.own.get_mut(call) {
            Some(own) => {
                own.machine.leave(now);
                own.leave_waiters.push(reply);
            }
            None => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// After every step: requests to perform, member queries, observables, diagnostics.
    fn after_step(&mut self, changes: Vec<SessionChange>) {
        let now = Instant::now();
        // Our own membership as sync shows it, for the machines.
        for (key, own) in &mut self.own {
            let present = self
                .ingest
                .model
                .participants(&key.room_id, &key.slot_id)
                .any(|p| {
                    p.user_id == self.own_user
                        && p.device_id == self.own_device
                        && p.member_id == own.content.member_id
                });
            if present != own.seen_in_sync {
                // Report an absence only after a presence: right after a join our event
                // has not come back yet.
                own.seen_in_sync = present;
                own.machine.handle_own_membership_in_sync(present, now);
            }
        }
        // While in a call in a room (and able to encrypt), check for new devices periodically.
        if self.outbound.encryptor.is_none() || self.joined_rooms().next().is_none() {
            self.device_check_at = None;
        } else if self.device_check_at.is_none() {
            self.device_check_at = Some(now + self.device_check_interval);
        }
        publish(&self.registry, changes);
        self.ingest.drain_model_diagnostics();
        for diagnostic in self.ingest.diagnostics.drain(..) {
            let _ = self.registry.diagnostics.send(diagnostic);
        }
        for (room_id, envelope) in std::mem::take(&mut self.ingest.encrypted) {
            if !self.parked.knows(&envelope) {
                self.parked.start(&envelope);
                decrypt::spawn_decrypt(&self.client, room_id, envelope, &self.outbound.inputs);
            }
        }
        while let Some(query) = self.ingest.poll_member_query() {
            self.spawn_member_query(query.room_id, query.user_id);
        }
        for (key, own) in &mut self.own {
            while let Some(request) = own.machine.poll_request() {
                self.in_flight
                    .insert((key.clone(), request.id()), request.action());
                self.outbound
                    .spawn(key.clone(), own.content.clone(), request);
            }
            while let Some(event) = own.machine.poll_event() {
                debug!(room = %key.room_id, slot = %key.slot_id, ?event, "own membership");
            }
            let status = own.machine.status().clone();
            let observables = self.registry.call(key);
            observables.own_status.set_if_not_eq(status.clone());
            let join_result: Option<Result<(), String>> = match &status {
                OwnStatus::Connected { .. } => Some(Ok(())),
                OwnStatus::Error { error, .. } => Some(Err(error.to_string())),
                _ => None,
            };
            if let Some(result) = join_result {
                for waiter in own.join_waiters.drain(..) {
                    let _ = waiter.send(result.clone().map_err(Error::JoinFailed));
                }
            }
            if status == OwnStatus::Disconnected {
                self.persist
                    .send_if_modified(|calls| calls.remove(&key.room_id, &key.slot_id).is_some());
                for waiter in own.leave_waiters.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
                for waiter in own.join_waiters.drain(..) {
                    let _ = waiter.send(Err(Error::JoinFailed(
                        "left before the join completed".into(),
                    )));
                }
            }
        }
    }

    fn spawn_member_query(&self, room_id: OwnedRoomId, user_id: OwnedUserId) {
        let Some(room) = self.client.get_room(&room_id) else {
            warn!(room = %room_id, "member query for an unknown room");
            return;
        };
        let inputs = self.outbound.inputs.clone();
        tokio::spawn(async move {
            let joined = match room.get_member(&user_id).await {
                Ok(Some(member)) => {
                    *member.membership()
                        == matrix_sdk::ruma::events::room::member::MembershipState::Join
                }
                Ok(None) => false,
                Err(error) => {
                    warn!(room = %room_id, %error, "could not read a sender's room membership");
                    return;
                }
            };
            let _ = inputs.send(Input::RoomMember {
                room_id,
                user_id,
                joined,
            });
        });
    }

    fn shut_down(&mut self) {
        debug!("rtc driver stopped");
        for own in self.own.values_mut() {
            for waiter in own
                .join_waiters
                .drain(..)
                .chain(own.leave_waiters.drain(..))
            {
                let _ = waiter.send(Err(Error::DriverStopped));
            }
        }
    }
}
