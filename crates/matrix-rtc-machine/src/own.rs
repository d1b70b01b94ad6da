//! Our own memberships: one [`OwnMembership`] machine per call we are in, the content of our
//! member events, whether sync shows us, join and leave completion, and the record to
//! persist. Plus the memberships of an earlier run to end (`previous`).
use std::{collections::BTreeMap, time::Duration, time::Instant};

use matrix_rtc_membership::{
    JoinConfig, JoinError, MembershipContent, OwnMembership, OwnMembershipConfig, OwnRequest,
    OwnRequestKind, OwnStatus, RequestOutcome, RtcMembership, ServerCapabilities,
    sticky_leave_content, wire as rtc_wire,
};
use ruma_common::{OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomId};
use tracing::{debug, warn};

use crate::{
    CallId, ContentUpdate, DelayedAction, JoinFailure, OwnCallRecord, OwnCallRecords, RequestKind,
    Update, UpdateFailure,
    io::{Io, Pending},
};

mod previous;

pub(crate) use self::previous::Previous;

/// What a join needs: our member event content and what the server offers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JoinParams {
    /// Our membership (its `member_id` must be new for every user-initiated join).
    pub content: MembershipContent,
    /// What the server offers (delayed events and their maximum delay).
    pub capabilities: ServerCapabilities,
    /// Timings for this join; `None` uses [`MachineConfig::own_membership`](crate::MachineConfig::own_membership).
    pub timings: Option<OwnMembershipConfig>,
}

impl JoinParams {
    /// A join with this content and these server capabilities, default timings.
    pub fn new(content: MembershipContent, capabilities: ServerCapabilities) -> Self {
        Self {
            content,
            capabilities,
            timings: None,
        }
    }

    /// The same join with its own timings.
    #[must_use]
    pub fn with_timings(mut self, timings: OwnMembershipConfig) -> Self {
        self.timings = Some(timings);
        self
    }
}

/// Our membership of one call.
#[derive(Debug)]
struct OwnCall {
    machine: OwnMembership,
    /// The contents of our latest joins (at most two: the one leaving and the next).
    contents: Vec<MembershipContent>,
    join_pending: bool,
    leave_pending: bool,
    /// The status last published.
    status: OwnStatus,
}

impl OwnCall {
    fn new(call: &CallId, timings: OwnMembershipConfig) -> Self {
        Self {
            machine: OwnMembership::new(call.slot_id(), timings),
            contents: Vec::new(),
            join_pending: false,
            leave_pending: false,
            status: OwnStatus::Disconnected,
        }
    }

    fn content_of(&self, member_id: &str) -> Option<&MembershipContent> {
        self.contents.iter().find(|c| c.member_id == member_id)
    }

    fn remember(&mut self, content: MembershipContent) {
        self.contents.retain(|c| c.member_id != content.member_id);
        self.contents.push(content);
        if self.contents.len() > 2 {
            self.contents.remove(0);
        }
    }

    /// Nothing left to do or to tell.
    fn is_idle(&self) -> bool {
        self.status == OwnStatus::Disconnected
            && !self.join_pending
            && !self.leave_pending
            && self.machine.member_id().is_none()
            && self.machine.delay_id().is_none()
            && self.machine.next_deadline().is_none()
    }

    fn is_joined(&self) -> bool {
        matches!(
            self.machine.status(),
            OwnStatus::Connected { .. } | OwnStatus::ProbablyLeft
        )
    }
}

/// Who we are, for the checks against sync and for transaction IDs.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) user_id: OwnedUserId,
    pub(crate) device_id: OwnedDeviceId,
    pub(crate) txn_prefix: String,
}

impl Identity {
    /// The HTTP transaction ID of one logical send: the run's prefix, a short form of the
    /// member ID, and the machine's transaction number.
    pub(crate) fn txn_id(&self, member_id: &str, txn: u64) -> String {
        let short: String = member_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        format!("{}-{short}-{txn}", self.txn_prefix)
    }
}

/// Every own membership, and those of an earlier run.
#[derive(Debug, Default)]
pub(crate) struct OwnCalls {
    calls: BTreeMap<CallId, OwnCall>,
    previous: BTreeMap<CallId, Previous>,
    interrupted: Vec<CallId>,
    /// The record last published.
    record: OwnCallRecords,
    next_previous: u64,
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

impl OwnCalls {
    pub(crate) fn status(&self, call: &CallId) -> OwnStatus {
        self.calls
            .get(call)
            .map_or(OwnStatus::Disconnected, |own| own.machine.status().clone())
    }

    pub(crate) fn interrupted(&self) -> &[CallId] {
        &self.interrupted
    }

    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// The rooms where we are in a call (connected, or probably left and trying).
    pub(crate) fn joined_rooms(&self) -> Vec<OwnedRoomId> {
        let mut rooms: Vec<OwnedRoomId> = self
            .calls
            .iter()
            .filter(|(_, own)| own.is_joined())
            .map(|(call, _)| call.room_id().to_owned())
            .collect();
        rooms.dedup();
        rooms
    }

    pub(crate) fn is_joined_in(&self, room_id: &RoomId) -> bool {
        self.calls
            .iter()
            .any(|(call, own)| call.room_id() == room_id && own.is_joined())
    }

    /// The delay ID armed for `call` (for tests of the persistence).
    pub(crate) fn delay_id(&self, call: &CallId) -> Option<&matrix_rtc_membership::DelayId> {
        self.calls.get(call).and_then(|own| own.machine.delay_id())
    }

    /// The member ID of our current membership of `call`.
    pub(crate) fn member_id(&self, call: &CallId) -> Option<&str> {
        self.calls.get(call).and_then(|own| own.machine.member_id())
    }

    pub(crate) fn join(
        &mut self,
        call: &CallId,
        params: JoinParams,
        defaults: &OwnMembershipConfig,
        now: Instant,
    ) -> Result<(), JoinFailure> {
        let timings = params.timings.unwrap_or_else(|| defaults.clone());
        let member_id = params.content.member_id.clone();
        let own = self
            .calls
            .entry(call.clone())
            .or_insert_with(|| OwnCall::new(call, timings.clone()));
        // At rest, with nothing of an earlier session left to clean up: start afresh with
        // this join's timings.
        let at_rest = *own.machine.status() == OwnStatus::Disconnected
            && own.machine.member_id().is_none()
            && own.machine.delay_id().is_none()
            && own.machine.next_deadline().is_none();
        if at_rest {
            own.machine = OwnMembership::new(call.slot_id(), timings);
        }
        // Refusals change nothing: the content is kept only once the machine took the join.
        match own
            .machine
            .join(JoinConfig::new(member_id, params.capabilities), now)
        {
            Ok(()) => {
                own.remember(params.content);
                own.join_pending = true;
                Ok(())
            }
            Err(JoinError::EmptyMemberId) => Err(JoinFailure::EmptyMemberId),
            Err(_) => Err(JoinFailure::AlreadyJoined),
        }
    }

    /// Changes the content of our membership of `call` and has it refreshed soon.
    pub(crate) fn update(
        &mut self,
        call: &CallId,
        update: ContentUpdate,
        now: Instant,
    ) -> Result<(), UpdateFailure> {
        let own = self.calls.get_mut(call).ok_or(UpdateFailure::NotInCall)?;
        let joining = matches!(
            own.machine.status(),
            OwnStatus::Connecting | OwnStatus::Connected { .. } | OwnStatus::ProbablyLeft
        ) || matches!(
            own.machine.status(),
            OwnStatus::Error { retrying: true, .. }
        );
        let member_id = own.machine.member_id().ok_or(UpdateFailure::NotInCall)?;
        let mut content = own
            .content_of(member_id)
            .cloned()
            .filter(|_| joining)
            .ok_or(UpdateFailure::NotInCall)?;
        if let Some(transport) = update.transport {
            content.transport = transport;
        }
        if let Some(intent) = update.call_intent {
            content.call_intent = Some(intent);
        }
        own.remember(content);
        own.machine.handle_content_changed(now);
        Ok(())
    }

    /// Starts our leave; `false` when there is nothing to leave (the leave is done at once).
    pub(crate) fn leave(&mut self, call: &CallId, now: Instant) -> bool {
        let Some(own) = self.calls.get_mut(call) else {
            return false;
        };
        own.machine.leave(now);
        if *own.machine.status() == OwnStatus::Disconnected && !own.join_pending {
            return false;
        }
        own.leave_pending = true;
        true
    }

    /// An answer to a request of `call`'s machine.
    pub(crate) fn handle_response(
        &mut self,
        call: &CallId,
        id: matrix_rtc_membership::RequestId,
        outcome: RequestOutcome,
        now: Instant,
    ) {
        match self.calls.get_mut(call) {
            Some(own) => own.machine.handle_response(id, outcome, now),
            None => tracing::trace!(%call, "answer for a call we no longer track"),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for own in self.calls.values_mut() {
            own.machine.handle_timeout(now);
        }
        for previous in self.previous.values_mut() {
            previous.handle_timeout(now);
        }
    }

    /// New devices appeared in `room_id`: our memberships there are re-sent for them.
    pub(crate) fn handle_new_devices(&mut self, room_id: &RoomId, now: Instant) {
        for (call, own) in &mut self.calls {
            if call.room_id() == room_id {
                debug!(%call, "new devices: re-sending our membership");
                own.machine.handle_new_devices(now);
            }
        }
    }

    /// Memberships of an earlier run, to end now.
    pub(crate) fn restore(&mut self, records: &OwnCallRecords) {
        for record in records.records() {
            let call = CallId::unchecked(&record.room_id, &record.slot_id);
            if !self.interrupted.contains(&call) {
                self.interrupted.push(call.clone());
            }
            self.next_previous += 1;
            self.previous
                .insert(call, Previous::new(record.clone(), self.next_previous));
        }
    }

    pub(crate) fn handle_previous_response(
        &mut self,
        call: &CallId,
        outcome: &RequestOutcome,
        now: Instant,
    ) {
        let done = match self.previous.get_mut(call) {
            Some(previous) => previous.handle_response(outcome, now),
            None => return,
        };
        if done {
            self.previous.remove(call);
        }
    }

    /// The earliest deadline of every machine here.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(|own| own.machine.next_deadline())
            .chain(self.previous.values().filter_map(Previous::next_deadline))
            .min()
    }

    /// After every input: tells each machine whether sync shows us, hands out their
    /// requests, and reports statuses, completions and the record to persist.
    pub(crate) fn drive(
        &mut self,
        model: &RtcMembership,
        identity: &Identity,
        io: &mut Io,
        updates: &mut Vec<Update>,
        now: Instant,
    ) {
        for (call, own) in &mut self.calls {
            // Whether sync shows our current member ID, told after every input: the machine
            // ignores a report it cannot trust yet (before our join is acknowledged, or within
            // its grace after that), so a change told only once could be lost for good.
            if let Some(member_id) = own.machine.member_id().map(str::to_owned) {
                let present = model.is_visible(
                    call.room_id(),
                    call.slot_id(),
                    &identity.user_id,
                    &identity.device_id,
                    &member_id,
                );
                own.machine.handle_own_membership_in_sync(present, now);
            }
            let mut unanswerable = Vec::new();
            while let Some(request) = own.machine.poll_request() {
                match request_kind(call, own, &request, identity) {
                    Some(kind) => {
                        io.emit(
                            kind,
                            Some(request.deadline()),
                            Pending::Own {
                                call: call.clone(),
                                id: request.id(),
                            },
                        );
                    }
                    None => unanswerable.push(request.id()),
                }
            }
            for id in unanswerable {
                warn!(%call, "no content for our join; reporting the request as failed");
                own.machine.handle_response(id, local_failure(), now);
            }
            while let Some(event) = own.machine.poll_event() {
                debug!(%call, ?event, "own membership");
            }
            let status = own.machine.status().clone();
            if status != own.status {
                own.status = status.clone();
                updates.push(Update::OwnStatus {
                    call: call.clone(),
                    status: status.clone(),
                });
            }
            if own.join_pending {
                let result = match &status {
                    OwnStatus::Connected { .. } => Some(Ok(())),
                    OwnStatus::Error { error, .. } => Some(Err(JoinFailure::Failed(error.clone()))),
                    OwnStatus::Disconnected | OwnStatus::Disconnecting => {
                        Some(Err(JoinFailure::LeftBeforeJoined))
                    }
                    _ => None,
                };
                if let Some(result) = result {
                    own.join_pending = false;
                    updates.push(Update::JoinFinished {
                        call: call.clone(),
                        result,
                    });
                }
            }
            if own.leave_pending && status != OwnStatus::Disconnecting {
                own.leave_pending = false;
                updates.push(Update::LeaveFinished { call: call.clone() });
            }
        }
        self.calls.retain(|_, own| !own.is_idle());
        for (call, previous) in &mut self.previous {
            previous.drive(call, identity, io, now);
        }
        let record = self.record();
        if record != self.record {
            self.record = record.clone();
            updates.push(Update::OwnCalls(record));
        }
    }

    /// What to persist: our current memberships, and those of an earlier run not ended yet.
    fn record(&self) -> OwnCallRecords {
        let previous = self.previous.values().map(Previous::record);
        let current = self.calls.iter().filter_map(|(call, own)| {
            let member_id = own.machine.member_id()?;
            Some(OwnCallRecord::new(
                call.room_id().to_owned(),
                call.slot_id(),
                member_id,
                own.machine.delay_id().map(|id| id.as_str().to_owned()),
                own.machine.config().sticky_duration_ms,
            ))
        });
        // A current membership of the same call replaces the earlier run's in the record.
        previous.chain(current).collect()
    }
}

/// The request for one of our machine's requests, or `None` when the content of a join is
/// unknown (which would be a bug).
fn request_kind(
    call: &CallId,
    own: &OwnCall,
    request: &OwnRequest,
    identity: &Identity,
) -> Option<RequestKind> {
    let room_id = call.room_id().to_owned();
    let member_id = request.member_id();
    let txn = |txn: matrix_rtc_membership::TxnId| identity.txn_id(member_id, txn.get());
    let event_type = rtc_wire::RTC_MEMBER_UNSTABLE;
    Some(match request.kind() {
        OwnRequestKind::ScheduleDelayedLeave {
            txn_id,
            delay_ms,
            sticky_duration_ms,
        } => RequestKind::ScheduleDelayedSticky {
            room_id,
            event_type,
            content: sticky_leave_content(call.slot_id(), member_id),
            txn_id: txn(*txn_id),
            sticky_duration: ms(*sticky_duration_ms),
            delay: ms(*delay_ms),
        },
        OwnRequestKind::SendJoin {
            txn_id,
            sticky_duration_ms,
        }
        | OwnRequestKind::RefreshJoin {
            txn_id,
            sticky_duration_ms,
        } => RequestKind::SendSticky {
            room_id,
            event_type,
            content: own.content_of(member_id)?.sticky_join(),
            txn_id: txn(*txn_id),
            sticky_duration: ms(*sticky_duration_ms),
        },
        OwnRequestKind::SendLeave {
            txn_id,
            sticky_duration_ms,
        } => RequestKind::SendSticky {
            room_id,
            event_type,
            content: sticky_leave_content(call.slot_id(), member_id),
            txn_id: txn(*txn_id),
            sticky_duration: ms(*sticky_duration_ms),
        },
        OwnRequestKind::RestartDelayedLeave { delay_id } => RequestKind::UpdateDelayed {
            delay_id: delay_id.clone(),
            action: DelayedAction::Restart,
        },
        OwnRequestKind::SendDelayedLeave { delay_id } => RequestKind::UpdateDelayed {
            delay_id: delay_id.clone(),
            action: DelayedAction::Send,
        },
        OwnRequestKind::CancelDelayedLeave { delay_id } => RequestKind::UpdateDelayed {
            delay_id: delay_id.clone(),
            action: DelayedAction::Cancel,
        },
    })
}

/// A failure of ours that no retry fixes (the machine treats it as a refusal).
pub(crate) fn local_failure() -> RequestOutcome {
    RequestOutcome::Http {
        status: 0,
        errcode: None,
    }
}
