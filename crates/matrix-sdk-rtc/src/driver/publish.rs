//! Turning the model's session changes into observable updates.
use std::{cmp::Ordering, collections::BTreeMap, sync::Arc};

use matrix_rtc_membership::{Participant, SessionChange};
use tracing::trace;

use crate::{
    CallEvent,
    observe::{CallKey, Registry},
};

/// The order of a call's participant list: oldest first, as the model orders them.
fn order(a: &Participant, b: &Participant) -> Ordering {
    (a.created_ts, &a.user_id, &a.device_id, &a.member_id).cmp(&(
        b.created_ts,
        &b.user_id,
        &b.device_id,
        &b.member_id,
    ))
}

fn same_member(a: &Participant, b: &Participant) -> bool {
    a.user_id == b.user_id && a.device_id == b.device_id && a.member_id == b.member_id
}

/// Applies a batch of session changes to the registry's observables: one vector
/// transaction per call and batch, then the "active" flags and call events.
pub(crate) fn publish(registry: &Registry, changes: Vec<SessionChange>) {
    if changes.is_empty() {
        return;
    }
    let mut per_call: BTreeMap<CallKey, Vec<SessionChange>> = BTreeMap::new();
    // Subscribers of the change stream see a change only once the vectors show it.
    let broadcast: Vec<SessionChange> = if registry.session_changes.receiver_count() > 0 {
        changes.clone()
    } else {
        Vec::new()
    };
    for change in changes {
        let key = match &change {
            SessionChange::SessionStarted { room_id, slot_id }
            | SessionChange::SessionEnded { room_id, slot_id } => CallKey::new(room_id, slot_id),
            SessionChange::Joined(participant)
            | SessionChange::Updated {
                new: participant, ..
            }
            | SessionChange::Left { participant, .. } => {
                CallKey::new(&participant.room_id, &participant.slot_id)
            }
            other => {
                trace!(?other, "session change not published");
                continue;
            }
        };
        per_call.entry(key).or_default().push(change);
    }

    for (key, changes) in per_call {
        let call = registry.call(&key);
        // The "active" flag moves before the list does, so that a reader who sees a
        // participant always finds the call active, and one who sees the list empty after the
        // last leave finds it inactive.
        for change in &changes {
            let started = match change {
                SessionChange::SessionStarted { .. } => true,
                SessionChange::SessionEnded { .. } => false,
                _ => continue,
            };
            call.active.set_if_not_eq(started);
            let (room_id, slot_id) = (key.room_id.clone(), key.slot_id.clone());
            let event = if started {
                CallEvent::Started { room_id, slot_id }
            } else {
                CallEvent::Ended { room_id, slot_id }
            };
            // Nobody listening is fine.
            let _ = registry.call_events.send(event);
        }
        let mut vector = call.participants();
        let mut txn = vector.transaction();
        for change in changes {
            match change {
                SessionChange::SessionStarted { .. } | SessionChange::SessionEnded { .. } => {}
                SessionChange::Joined(participant) => insert(&mut txn, participant),
                SessionChange::Updated { old, new } => {
                    remove(&mut txn, &old);
                    insert(&mut txn, new);
                }
                SessionChange::Left {
                    participant,
                    reason,
                } => {
                    trace!(?reason, user = %participant.user_id, "participant left");
                    remove(&mut txn, &participant);
                }
                other => trace!(?other, "session change not published"),
            }
        }
        txn.commit();
    }
    for change in broadcast {
        // Nobody listening is fine.
        let _ = registry.session_changes.send(change);
    }
}

type Txn<'a> = eyeball_im::ObservableVectorTransaction<'a, Arc<Participant>>;

fn insert(txn: &mut Txn<'_>, participant: Arc<Participant>) {
    let index = match txn.binary_search_by(|probe| order(probe, &participant)) {
        Ok(index) | Err(index) => index,
    };
    txn.insert(index, participant);
}

fn remove(txn: &mut Txn<'_>, participant: &Participant) {
    let found = match txn.binary_search_by(|probe| order(probe, participant)) {
        Ok(index) if same_member(&txn[index], participant) => Some(index),
        // The order key moved (it should not): fall back to a scan.
        _ => txn.iter().position(|probe| same_member(probe, participant)),
    };
    if let Some(index) = found {
        txn.remove(index);
    }
}
