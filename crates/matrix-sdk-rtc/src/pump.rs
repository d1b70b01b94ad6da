//! The pump: one tokio task per client around the [`RtcMachine`]. It reads the app's sync,
//! the side connection and the one timer into the machine, performs the requests the machine
//! polls, feeds the outcomes back, and shows the updates on the observables. It decides no
//! protocol.
//!
//! Two bounded queues feed it: [`Control`] (app commands and request outcomes; their number
//! is bounded by what the machine has in flight) and [`SyncInput`] (what the server sends,
//! which a hostile room member can flood). A full sync queue pushes back on its producers (the
//! side connection waits, the app's sync handlers wait) instead of growing. Control comes
//! first, so a flood never starves our own joins, leaves and heartbeats.
use std::{collections::HashMap, pin::pin, sync::Arc, time::Instant};

use matrix_rtc_machine::{
    CallId, ContentUpdate, JoinParams, Outcome, OwnCallRecords, PageFlags, RequestId, RtcMachine,
    Update,
};
use matrix_rtc_membership::Transport;
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId};
use matrix_sticky_events::{Receipt, StickyBatch};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, trace};

use crate::{Error, Result, observe::Registry};

mod handlers;
mod perform;

pub(crate) use self::{
    handlers::{
        forward_ignored_users, forward_new_devices, forward_room_keys, register_handlers, seed_room,
    },
    perform::Performer,
};

/// Most sync inputs handled in one step before the outputs are drained and control is looked
/// at again.
const MAX_SYNC_INPUTS_PER_STEP: usize = 64;

/// App commands and request outcomes.
#[derive(Debug)]
pub(crate) enum Control {
    /// The app asks to join a call.
    Join {
        call: CallId,
        params: Box<JoinParams>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// The app changes our membership of a call.
    Update {
        call: CallId,
        update: ContentUpdate,
        reply: oneshot::Sender<Result<()>>,
    },
    /// The app asks to leave a call.
    Leave {
        call: CallId,
        reply: oneshot::Sender<Result<()>>,
    },
    /// A request of the machine finished.
    Outcome { id: RequestId, outcome: Outcome },
    /// The app asks for our member ID and transport in a call (for LiveKit credentials,
    /// which `livekit` fetches outside the machine).
    OwnMember {
        call: CallId,
        reply: oneshot::Sender<Option<OwnMember>>,
    },
}

/// Our membership of one call, as far as LiveKit credentials need it.
#[derive(Debug, Clone)]
pub(crate) struct OwnMember {
    /// Our member ID there (the machine's).
    pub(crate) member_id: String,
    /// The transport we publish on: as last given to a join or an update that succeeded.
    pub(crate) transport: Option<Transport>,
}

/// What the server sent, in the order it arrived.
#[derive(Debug)]
pub(crate) enum SyncInput {
    /// A page of the side connection, parsed.
    SidePage {
        batch: StickyBatch,
        flags: PageFlags,
    },
    /// The side connection failed (it retries by itself).
    SideDown,
    /// A raw event seen by the app's sync (timeline or state section).
    RoomEvent {
        room_id: OwnedRoomId,
        raw: Box<RawValue>,
        receipt: Receipt,
    },
    /// A state event as the store held it when the pump started.
    StoredState {
        room_id: OwnedRoomId,
        raw: Box<RawValue>,
        receipt: Receipt,
    },
    /// A room is (or is not) encrypted.
    RoomEncrypted {
        room_id: OwnedRoomId,
        encrypted: bool,
    },
    /// Room keys arrived: `(room, megolm session id)`.
    RoomKeys(Vec<(OwnedRoomId, String)>),
    /// Room keys may have arrived unseen: retry every parked envelope.
    RoomKeysLagged,
    /// The crypto store learnt of devices it had not seen before.
    DevicesDiscovered,
    /// The whole current list of users we ignore.
    IgnoredUsers(Vec<OwnedUserId>),
}

/// The senders of the two queues.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) sync: mpsc::Sender<SyncInput>,
}

/// What the pump task owns.
#[derive(Debug)]
pub(crate) struct Pump {
    machine: RtcMachine,
    registry: Arc<Registry>,
    performer: Performer,
    join_waiters: HashMap<CallId, Vec<oneshot::Sender<Result<()>>>>,
    leave_waiters: HashMap<CallId, Vec<oneshot::Sender<Result<()>>>>,
    /// Our calls as the record to persist says (a writer task stores every change).
    persist: watch::Sender<OwnCallRecords>,
    /// The transport we publish on per call, as given to the machine (bookkeeping for
    /// [`Control::OwnMember`]; the machine's member ID says whether we are in the call).
    own_transports: HashMap<CallId, Transport>,
}

impl Pump {
    pub(crate) fn new(
        machine: RtcMachine,
        registry: Arc<Registry>,
        performer: Performer,
        persist: watch::Sender<OwnCallRecords>,
    ) -> Self {
        Self {
            machine,
            registry,
            performer,
            join_waiters: HashMap::new(),
            leave_waiters: HashMap::new(),
            persist,
            own_transports: HashMap::new(),
        }
    }

    /// Runs until `shutdown` flips to `true` or every sender is gone.
    pub(crate) async fn run(
        mut self,
        mut control: mpsc::Receiver<Control>,
        mut sync: mpsc::Receiver<SyncInput>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Whatever the machine asked for before the task started (a restore).
        self.drain();
        let mut sleep = pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = self.machine.next_deadline();
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
                input = control.recv() => {
                    let Some(input) = input else { break };
                    self.handle_control(input);
                    while let Ok(input) = control.try_recv() {
                        self.handle_control(input);
                    }
                }
                input = sync.recv() => {
                    let Some(input) = input else { break };
                    self.handle_sync(input);
                    for _ in 1..MAX_SYNC_INPUTS_PER_STEP {
                        let Ok(input) = sync.try_recv() else { break };
                        self.handle_sync(input);
                    }
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.machine.handle_timeout(Instant::now());
                    self.drain();
                }
            }
        }
        self.shut_down();
    }

    fn handle_control(&mut self, input: Control) {
        let now = Instant::now();
        match input {
            Control::Join {
                call,
                params,
                reply,
            } => {
                let transport = params.content.transport.clone();
                match self.machine.join(&call, *params, now) {
                    Ok(()) => {
                        self.own_transports.insert(call.clone(), transport);
                        self.join_waiters.entry(call).or_default().push(reply);
                    }
                    Err(failure) => {
                        let _ = reply.send(Err(Error::JoinFailed(failure)));
                    }
                }
            }
            Control::Update {
                call,
                update,
                reply,
            } => {
                let transport = update.transport.clone();
                let result = self.machine.update(&call, update, now);
                if let (Ok(()), Some(transport)) = (&result, transport) {
                    self.own_transports.insert(call.clone(), transport);
                }
                let _ = reply.send(result.map_err(Error::UpdateFailed));
            }
            Control::OwnMember { call, reply } => {
                let member = self.machine.own_member_id(&call).map(|id| OwnMember {
                    member_id: id.to_owned(),
                    transport: self.own_transports.get(&call).cloned(),
                });
                if member.is_none() {
                    self.own_transports.remove(&call);
                }
                let _ = reply.send(member);
            }
            Control::Leave { call, reply } => {
                self.leave_waiters
                    .entry(call.clone())
                    .or_default()
                    .push(reply);
                self.machine.leave(&call, now);
            }
            Control::Outcome { id, outcome } => self.machine.handle_response(id, outcome, now),
        }
        self.drain();
    }

    fn handle_sync(&mut self, input: SyncInput) {
        let now = Instant::now();
        match input {
            SyncInput::SidePage { batch, flags } => {
                let summary = self.machine.handle_sticky_batch(batch, flags, now);
                trace!(
                    events = summary.events,
                    rejected = summary.rejected,
                    "side connection page"
                );
            }
            SyncInput::SideDown => self.machine.handle_side_connection_down(now),
            SyncInput::RoomEvent {
                room_id,
                raw,
                receipt,
            } => self
                .machine
                .handle_room_event(&room_id, raw.get(), receipt, now),
            SyncInput::StoredState {
                room_id,
                raw,
                receipt,
            } => self
                .machine
                .handle_stored_state(&room_id, raw.get(), receipt, now),
            SyncInput::RoomEncrypted { room_id, encrypted } => {
                self.machine
                    .handle_room_encryption(&room_id, encrypted, now);
            }
            SyncInput::RoomKeys(keys) => self.machine.handle_room_keys(keys, now),
            SyncInput::RoomKeysLagged => self.machine.handle_room_keys_lagged(now),
            SyncInput::DevicesDiscovered => self.machine.handle_devices_discovered(now),
            SyncInput::IgnoredUsers(users) => self.machine.handle_ignored_users(users, now),
        }
        self.drain();
    }

    /// After every input: perform the requests, publish the updates.
    fn drain(&mut self) {
        while let Some(request) = self.machine.poll_request() {
            self.performer.spawn(request);
        }
        let updates: Vec<Update> = std::iter::from_fn(|| self.machine.poll_update()).collect();
        if updates.is_empty() {
            return;
        }
        for update in self.registry.apply(updates) {
            match update {
                Update::JoinFinished { call, result } => {
                    for waiter in self.join_waiters.remove(&call).unwrap_or_default() {
                        let _ = waiter.send(result.clone().map_err(Error::JoinFailed));
                    }
                }
                Update::LeaveFinished { call } => {
                    for waiter in self.leave_waiters.remove(&call).unwrap_or_default() {
                        let _ = waiter.send(Ok(()));
                    }
                }
                Update::OwnCalls(record) => {
                    self.persist.send_replace(record);
                }
                other => debug!(?other, "update not shown"),
            }
        }
    }

    fn shut_down(&mut self) {
        debug!("rtc pump stopped");
        let waiters = self
            .join_waiters
            .drain()
            .chain(self.leave_waiters.drain())
            .flat_map(|(_, waiters)| waiters);
        for waiter in waiters {
            let _ = waiter.send(Err(Error::DriverStopped));
        }
    }
}
