//! The observables the pump publishes: participants, "call active" and our own status per
//! call, and three streams across rooms (session changes, call events, diagnostics) that never
//! lose silently.
//!
//! Calls are kept while they have participants, while we are in them, or while the app holds
//! a handle, a participant stream or a subscriber of them; others are dropped, so an event
//! with an invented slot costs nothing once its call is over.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use eyeball::SharedObservable;
use eyeball_im::{ObservableVector, VectorDiff};
use futures_util::Stream;
use imbl::Vector;
use matrix_rtc_machine::{CallId, Diagnostic, ParticipantDiff, Update};
use matrix_rtc_membership::{OwnStatus, Participant};

use crate::{CallEvent, DiagnosticEvent, SessionUpdate};

mod feed;

pub(crate) use self::feed::Feed;

/// How many batches of participant diffs a slow subscriber may lag before it gets a `Reset`.
const PARTICIPANT_DIFF_CAPACITY: usize = 256;
/// How many items a slow reader of a cross-room stream may lag before it resyncs.
const FEED_CAPACITY: usize = 1024;

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

    /// Whether nothing needs this call any more: no participant, not ours, and nobody
    /// outside the registry holding it or subscribed to it.
    fn is_unused(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1
            && !self.active.get()
            && self.own_status.get() == OwnStatus::Disconnected
            && self.active.subscriber_count() == 0
            && self.own_status.subscriber_count() == 0
    }
}

/// The current participants of a call and a `'static` stream of their changes, with no gap
/// between the two. The stream holds the call's observables, so the call is kept as long as
/// someone listens. A reader that falls more than 256 batches behind gets a
/// `VectorDiff::Reset` with the whole list.
pub(crate) fn subscribe_participants(
    observables: &Arc<CallObservables>,
) -> (
    Vector<Arc<Participant>>,
    impl Stream<Item = Vec<VectorDiff<Arc<Participant>>>> + use<>,
) {
    use futures_util::StreamExt as _;
    let guard = observables.participants();
    let (values, stream) = guard.subscribe().into_values_and_batched_stream();
    drop(guard);
    let keep = observables.clone();
    let stream = stream.map(move |batch| {
        let _held = &keep;
        batch
    });
    (values, stream)
}

/// Every observable of one client.
#[derive(Debug)]
pub(crate) struct Registry {
    calls: Mutex<Calls>,
    pub(crate) session_changes: Feed<SessionUpdate>,
    pub(crate) call_events: Feed<CallEvent>,
    pub(crate) diagnostics: Feed<DiagnosticEvent>,
}

#[derive(Debug, Default)]
struct Calls {
    map: HashMap<CallId, Arc<CallObservables>>,
    /// Size after the last sweep: the next sweep runs when the map has doubled.
    swept_at: usize,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            calls: Mutex::new(Calls::default()),
            session_changes: Feed::new(FEED_CAPACITY),
            call_events: Feed::new(FEED_CAPACITY),
            diagnostics: Feed::new(FEED_CAPACITY),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The observables of a call, created (empty) on first use.
    pub(crate) fn call(&self, call: &CallId) -> Arc<CallObservables> {
        let mut calls = self.lock();
        if let Some(observables) = calls.map.get(call) {
            return observables.clone();
        }
        let observables = Arc::new(CallObservables::new());
        calls.map.insert(call.clone(), observables.clone());
        if calls.map.len() > 2 * calls.swept_at + 64 {
            calls.map.retain(|_, observables| !observables.is_unused());
            calls.swept_at = calls.map.len();
        }
        observables
    }

    /// Calls kept (for tests of the pruning).
    pub(crate) fn call_count(&self) -> usize {
        self.lock().map.len()
    }

    /// Drops `call` if nothing needs it any more.
    fn prune(&self, call: &CallId) {
        let mut calls = self.lock();
        if calls.map.get(call).is_some_and(CallObservables::is_unused) {
            calls.map.remove(call);
        }
    }

    /// The calls that currently have at least one participant.
    pub(crate) fn active_calls(&self) -> Vec<CallId> {
        let calls = self.lock();
        let mut active: Vec<_> = calls
            .map
            .iter()
            .filter(|(_, observables)| observables.active.get())
            .map(|(call, _)| call.clone())
            .collect();
        active.sort();
        active
    }

    /// Every active call with its participants, for a reader that fell behind.
    pub(crate) fn snapshot(&self) -> Vec<(CallId, Vector<Arc<Participant>>)> {
        let calls: Vec<(CallId, Arc<CallObservables>)> = {
            let calls = self.lock();
            calls
                .map
                .iter()
                .filter(|(_, observables)| observables.active.get())
                .map(|(call, observables)| (call.clone(), observables.clone()))
                .collect()
        };
        let mut snapshot: Vec<_> = calls
            .into_iter()
            .map(|(call, observables)| {
                let participants = (*observables.participants()).clone();
                (call, participants)
            })
            .collect();
        snapshot.sort_by(|a, b| a.0.cmp(&b.0));
        snapshot
    }

    /// A stream of session changes that, when its reader falls behind, says so and hands
    /// over every active call's participants.
    pub(crate) fn subscribe_session_changes(
        self: &Arc<Self>,
    ) -> impl Stream<Item = SessionUpdate> + Send + Unpin + use<> {
        let registry = Arc::downgrade(self);
        self.session_changes
            .subscribe(move |missed| SessionUpdate::Resync {
                missed,
                calls: registry
                    .upgrade()
                    .map(|registry| registry.snapshot())
                    .unwrap_or_default(),
            })
    }

    /// A stream of calls starting and ending that, when its reader falls behind, says so and
    /// hands over the active calls.
    pub(crate) fn subscribe_call_events(
        self: &Arc<Self>,
    ) -> impl Stream<Item = CallEvent> + Send + Unpin + use<> {
        let registry = Arc::downgrade(self);
        self.call_events.subscribe(move |missed| CallEvent::Resync {
            missed,
            active: registry
                .upgrade()
                .map(|registry| registry.active_calls())
                .unwrap_or_default(),
        })
    }

    /// A stream of diagnostics that, when its reader falls behind, says how many it missed.
    pub(crate) fn subscribe_diagnostics(
        &self,
    ) -> impl Stream<Item = DiagnosticEvent> + Send + Unpin + use<> {
        self.diagnostics
            .subscribe(|missed| DiagnosticEvent::Missed { missed })
    }

    /// Publishes the updates of one machine step. The participant lists, the "active" flags
    /// and the items of the session-change and call-event feeds move under the feeds' locks,
    /// so a reader that resyncs sees whole steps. Updates that are not for observables (join
    /// and leave completions, the record to persist) are returned.
    pub(crate) fn apply(&self, updates: impl IntoIterator<Item = Update>) -> Vec<Update> {
        let mut rest = Vec::new();
        let mut prune = Vec::new();
        // Lock order everywhere: session changes, call events, calls, a call's vector.
        let mut sessions = self.session_changes.lock();
        let mut events = self.call_events.lock();
        for update in updates {
            match update {
                Update::CallActive { call, active } => {
                    // The flag moves before the list does (the machine orders them so).
                    self.call(&call).active.set_if_not_eq(active);
                    events.send(if active {
                        CallEvent::Started { call: call.clone() }
                    } else {
                        CallEvent::Ended { call: call.clone() }
                    });
                    if !active {
                        prune.push(call);
                    }
                }
                Update::Participants { call, diffs } => {
                    let observables = self.call(&call);
                    let mut vector = observables.participants();
                    let mut txn = vector.transaction();
                    for diff in diffs {
                        match diff {
                            ParticipantDiff::Insert { index, participant } => {
                                txn.insert(index, participant);
                            }
                            ParticipantDiff::Set { index, participant } => {
                                txn.set(index, participant);
                            }
                            ParticipantDiff::Remove { index } => {
                                txn.remove(index);
                            }
                        }
                    }
                    txn.commit();
                }
                Update::SessionChange(change) => sessions.send(SessionUpdate::Change(change)),
                Update::OwnStatus { call, status } => {
                    if status == OwnStatus::Disconnected {
                        prune.push(call.clone());
                    }
                    self.call(&call).own_status.set_if_not_eq(status);
                }
                Update::Diagnostic(diagnostic) => self.publish_diagnostic(diagnostic),
                other => rest.push(other),
            }
        }
        drop(events);
        drop(sessions);
        for call in prune {
            self.prune(&call);
        }
        rest
    }

    pub(crate) fn publish_diagnostic(&self, diagnostic: Diagnostic) {
        self.diagnostics
            .lock()
            .send(DiagnosticEvent::Diagnostic(diagnostic));
    }
}
