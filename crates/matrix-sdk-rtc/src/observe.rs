//! The observables the driver publishes: participants, "call active" and our own status per
//! call, calls that start and end across rooms, and diagnostics.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use eyeball::SharedObservable;
use eyeball_im::{ObservableVector, VectorDiff};
use imbl::Vector;
use matrix_rtc_membership::{Participant, SessionChange};
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use tokio::sync::broadcast;

use matrix_rtc_membership::OwnStatus;

use crate::{CallEvent, Diagnostic};

/// How many batches of participant diffs a slow subscriber may lag before it gets a `Reset`.
const PARTICIPANT_DIFF_CAPACITY: usize = 256;
/// How many call events and diagnostics a slow subscriber may lag before it skips some.
const BROADCAST_CAPACITY: usize = 1024;

/// A call: one slot of one room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct CallKey {
    pub(crate) room_id: OwnedRoomId,
    pub(crate) slot_id: String,
}

impl CallKey {
    pub(crate) fn new(room_id: &RoomId, slot_id: &str) -> Self {
        Self {
            room_id: room_id.to_owned(),
            slot_id: slot_id.to_owned(),
        }
    }
}

/// The observables of one call.
#[derive(Debug)]
pub(crate) struct CallObservables {
    participants: Mutex<ObservableVector<Arc<Participant>>>,
    pub(crate) active: SharedObservable<bool>,
    pub(crate) own_status: SharedObservable<OwnStatus>,
}

impl CallObservables {
    fn new() -> Self {
        Self {
            participants: Mutex::new(ObservableVector::with_capacity(PARTICIPANT_DIFF_CAPACITY)),
            active: SharedObservable::new(false),
            own_status: SharedObservable::new(OwnStatus::Disconnected),
        }
    }

    pub(crate) fn participants(&self) -> MutexGuard<'_, ObservableVector<Arc<Participant>>> {
        // A panic while holding this lock would be a bug in this crate; the vector itself is
        // always consistent between calls, so keep serving it.
        self.participants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current participants and a stream of their changes, with no gap between the two.
    pub(crate) fn subscribe_participants(
        &self,
    ) -> (
        Vector<Arc<Participant>>,
        impl futures_util::Stream<Item = Vec<VectorDiff<Arc<Participant>>>> + use<>,
    ) {
        let guard = self.participants();
        guard.subscribe().into_values_and_batched_stream()
    }
}

/// Every observable of one client.
#[derive(Debug)]
pub(crate) struct Registry {
    calls: Mutex<HashMap<CallKey, Arc<CallObservables>>>,
    pub(crate) call_events: broadcast::Sender<CallEvent>,
    pub(crate) diagnostics: broadcast::Sender<Diagnostic>,
    pub(crate) session_changes: broadcast::Sender<SessionChange>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            calls: Mutex::new(HashMap::new()),
            call_events: broadcast::channel(BROADCAST_CAPACITY).0,
            diagnostics: broadcast::channel(BROADCAST_CAPACITY).0,
            session_changes: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }

    /// The observables of a call, created (empty) on first use.
    pub(crate) fn call(&self, key: &CallKey) -> Arc<CallObservables> {
        let mut calls = self
            .calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        calls
            .entry(key.clone())
            .or_insert_with(|| Arc::new(CallObservables::new()))
            .clone()
    }

    /// The calls that currently have at least one participant.
    pub(crate) fn active_calls(&self) -> Vec<CallKey> {
        let calls = self
            .calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut active: Vec<_> = calls
            .iter()
            .filter(|(_, call)| call.active.get())
            .map(|(key, _)| key.clone())
            .collect();
        active.sort();
        active
    }
}
