//! One simulated client: an `RtcMachine` (while the process lives), what its pump keeps
//! (requests it performs, the lists rebuilt from the updates, the persisted record, the side
//! connection's cursor, the crypto store's keys) and what the app wants.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use imbl::Vector;
use matrix_rtc_machine::{CallId, OwnCallRecords, ParticipantDiff, RequestId, Update};
use matrix_rtc_membership::Participant;
use ruma_common::{OwnedDeviceId, OwnedRoomId, OwnedUserId};

use super::server::Cursor;

/// What the pump does with a request until it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Performing {
    /// Over the network to the server.
    Http,
    /// Read locally (crypto store, room state).
    Local,
}

/// Where the side connection's one request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SideState {
    /// A poll is on its way to the server.
    Polling,
    /// The server holds the poll until it has something.
    Parked,
    /// A page is on its way back.
    Paging,
    /// A poll or a page was lost: the connection is stuck until the network comes back.
    Stalled,
    /// No process.
    Down,
}

#[derive(Debug, Clone)]
pub(crate) struct Side {
    /// Connection number; pages and polls of an older connection are dropped.
    pub(crate) conn: u64,
    pub(crate) cursor: Cursor,
    pub(crate) state: SideState,
    /// The last page was as long as its limit: poll again at once (`timeout=0`).
    pub(crate) more: bool,
    /// The next page is the first of a fresh connection that replaced a dropped one.
    pub(crate) restarted: bool,
    /// Rooms joined since the last page was served: replayed from the start, also when that
    /// page (served before the join) arrives.
    pub(crate) replays: BTreeSet<OwnedRoomId>,
    /// A fresh connection is due once the network is back.
    pub(crate) must_restart: bool,
}

/// Our outbound megolm session in one room: who it was shared with.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub(crate) session_id: String,
    pub(crate) shared_with: BTreeSet<OwnedDeviceId>,
}

#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) index: usize,
    pub(crate) user: OwnedUserId,
    pub(crate) device: OwnedDeviceId,
    pub(crate) clock_offset_ms: i64,
    /// The machine while the process lives.
    pub(crate) machine: Option<matrix_rtc_machine::RtcMachine>,
    /// Bumped at every crash and restart: what was on its way to an earlier process is dropped.
    pub(crate) generation: u64,
    /// Runs of the process so far (for the transaction prefix).
    pub(crate) runs: u64,
    /// The record of our calls, as last persisted.
    pub(crate) persisted: OwnCallRecords,
    /// Requests performed and not answered yet, with their local timeout.
    pub(crate) outstanding: HashMap<RequestId, (Performing, u64)>,
    /// The lists rebuilt from `Update::Participants` alone.
    pub(crate) lists: HashMap<CallId, Vector<Arc<Participant>>>,
    /// `Update::CallActive`, as last said per call.
    pub(crate) active: HashMap<CallId, bool>,
    /// Calls the updates of the current input touched.
    pub(crate) touched: BTreeSet<CallId>,
    /// Calls whose leave completed in the current input.
    pub(crate) left: Vec<CallId>,
    /// Our member id per call, as of the end of the last input that had one.
    pub(crate) last_member: HashMap<CallId, String>,
    pub(crate) side: Side,
    /// Since when the view can be held to the delivery bound: set by a caught-up page after
    /// the process or its side connection started, or after a fault that disturbed delivery.
    pub(crate) steady_since: Option<u64>,
    /// Faults disturbing delivery right now.
    pub(crate) disturbed: usize,
    /// Room keys in the crypto store (kept across restarts), with their arrival.
    pub(crate) keys: HashMap<(OwnedRoomId, String), u64>,
    /// When the machine was told of each key (or a new process found it in the store).
    pub(crate) keys_told: HashMap<(OwnedRoomId, String), u64>,
    /// Keys in the store the machine has not been told of yet (the key stream lags).
    pub(crate) pending_keys: Vec<(OwnedRoomId, String)>,
    pub(crate) outbound: HashMap<OwnedRoomId, Outbound>,
    pub(crate) sessions_made: u64,
    /// Rooms whose call the app wants to be in (by room index).
    pub(crate) intent: BTreeSet<usize>,
    pub(crate) member_ids: u64,
    /// Reliable deliveries (room state, redactions) arrive in order: the last arrival.
    pub(crate) reliable_last: u64,
    /// When the user's view of each room (re)started (a join of the room).
    pub(crate) room_since: BTreeMap<OwnedRoomId, u64>,
    /// Bumped whenever the view or what it is held to may have changed (for the checks'
    /// cache).
    pub(crate) stamp: u64,
}

impl Client {
    pub(crate) fn new(
        index: usize,
        user: OwnedUserId,
        device: OwnedDeviceId,
        clock_offset_ms: i64,
    ) -> Self {
        Self {
            index,
            user,
            device,
            clock_offset_ms,
            machine: None,
            generation: 0,
            runs: 0,
            persisted: OwnCallRecords::default(),
            outstanding: HashMap::new(),
            lists: HashMap::new(),
            active: HashMap::new(),
            touched: BTreeSet::new(),
            left: Vec::new(),
            last_member: HashMap::new(),
            side: Side {
                conn: 0,
                cursor: Cursor::default(),
                state: SideState::Down,
                more: false,
                restarted: false,
                replays: BTreeSet::new(),
                must_restart: false,
            },
            steady_since: None,
            disturbed: 0,
            keys: HashMap::new(),
            keys_told: HashMap::new(),
            pending_keys: Vec::new(),
            outbound: HashMap::new(),
            sessions_made: 0,
            intent: BTreeSet::new(),
            member_ids: 0,
            reliable_last: 0,
            room_since: BTreeMap::new(),
            stamp: 0,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.machine.is_some()
    }

    pub(crate) fn machine(&self) -> &matrix_rtc_machine::RtcMachine {
        self.machine.as_ref().expect("running")
    }

    /// A fresh member id for a user-initiated join.
    pub(crate) fn fresh_member_id(&mut self) -> String {
        self.member_ids += 1;
        format!(
            "{}-{}-{}",
            self.user.localpart(),
            self.device,
            self.member_ids
        )
    }

    /// Applies one update to what the pump keeps (the lists, "call active", the record).
    /// Returns a description of an inconsistency, if the update does not fit.
    pub(crate) fn apply(&mut self, update: &Update) -> Result<(), String> {
        match update {
            Update::Participants { call, diffs } => {
                self.touched.insert(call.clone());
                let list = self.lists.entry(call.clone()).or_default();
                for diff in diffs {
                    match diff.clone() {
                        ParticipantDiff::Insert { index, participant } => {
                            if index > list.len() {
                                return Err(format!("insert at {index} beyond {}", list.len()));
                            }
                            list.insert(index, participant);
                        }
                        ParticipantDiff::Set { index, participant } => {
                            if index >= list.len() {
                                return Err(format!("set at {index} beyond {}", list.len()));
                            }
                            list.set(index, participant);
                        }
                        ParticipantDiff::Remove { index } => {
                            if index >= list.len() {
                                return Err(format!("remove at {index} beyond {}", list.len()));
                            }
                            list.remove(index);
                        }
                    }
                }
                if list.is_empty() {
                    self.lists.remove(call);
                }
            }
            Update::CallActive { call, active } => {
                self.touched.insert(call.clone());
                let before = self.active.insert(call.clone(), *active).unwrap_or(false);
                if before == *active {
                    return Err(format!(
                        "CallActive {{ active: {active} }} repeated for {call}"
                    ));
                }
            }
            Update::OwnCalls(record) => self.persisted = record.clone(),
            Update::LeaveFinished { call } => self.left.push(call.clone()),
            _ => {}
        }
        Ok(())
    }
}
