//! [`RtcMachine`]: the calling contract, the inputs and outputs, and the drive that follows
//! every input.
use std::{
    collections::{BTreeSet, VecDeque},
    sync::Arc,
    time::Instant,
};

use imbl::Vector;
use matrix_rtc_membership::{OwnStatus, Participant, RtcMembership};
use matrix_sticky_events::{
    Change, Parsed, Receipt, Redaction, Redactor, Rejection, RemovalReason, StickyBatch,
    StickyEvent, StickyMap, parse_event,
};
use ruma_common::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use tracing::{debug, trace};

use crate::{
    CallId, Cap, ContentUpdate, Diagnostic, EventRoute, JoinFailure, JoinParams, MachineConfig,
    Outcome, OwnCallRecords, RedactionRefusal, Request, RequestId, RequestKind, Update,
    UpdateFailure,
    caps::CapCounters,
    devices::DeviceChecks,
    io::{Io, Pending},
    members::{Backoff, MemberQueries},
    own::{Identity, OwnCalls, local_failure},
    parked::Parked,
    publish::Publisher,
    redactions::{RedactionRules, Verdict, Waiting},
    route,
    timer::{Timer, TimerTable},
};

/// How a side-connection page ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageFlags {
    /// The server had nothing more right now (the page was shorter than its limit). While
    /// `false`, more pages follow at once and older values may show briefly: the machine holds
    /// back publication until a caught-up page (or its hold limit).
    pub caught_up: bool,
    /// The first page of a fresh connection that replaced a dropped one: every live sticky
    /// event is replayed from here (replays are harmless).
    pub restarted: bool,
}

impl PageFlags {
    /// A page with these flags.
    pub fn new(caught_up: bool, restarted: bool) -> Self {
        Self {
            caught_up,
            restarted,
        }
    }
}

/// What one side-connection page contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageSummary {
    /// Events in the page, valid or not.
    pub events: usize,
    /// Events or parts of the page that were rejected.
    pub rejected: usize,
}

/// Counts of what the machine holds, for tests, benchmarks and the curious.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MachineStats {
    /// Visible entries of the sticky map.
    pub sticky_entries: usize,
    /// Candidates of the sticky map (superseded ones and deletion markers included).
    pub sticky_candidates: usize,
    /// Encrypted envelopes waiting for (or being) decrypted.
    pub parked: usize,
    /// Calls with participants.
    pub active_calls: usize,
    /// Participants across calls.
    pub participants: usize,
    /// Calls we are in (or leaving).
    pub own_calls: usize,
    /// Requests handed out (or queued) and not answered yet.
    pub requests_in_flight: usize,
}

/// Every MatrixRTC protocol decision of one client, with no IO and no clock.
///
/// It owns the sticky map (MSC4354), the membership model, one own-membership machine per
/// call we are in (the dead-man switch of MSC4140), the encrypted envelopes waiting for their
/// room keys, the participant lists as published, and one timer table. The pump (the async
/// crate) feeds it what it receives, performs the requests it asks for, and shows its updates.
///
/// # Contract
///
/// - **Inputs** (`handle_*`, and the commands [`join`](Self::join), [`update`](Self::update),
///   [`leave`](Self::leave), [`restore`](Self::restore)) each take `now`, a monotonic instant that never goes
///   backwards (an earlier one is replaced by the latest seen). Time is never read from a
///   clock, and nothing here sleeps, spawns or blocks.
/// - After **every** input, drain the outputs: [`poll_request`](Self::poll_request) (perform
///   each, answer each exactly once with [`handle_response`](Self::handle_response)), then
///   [`poll_update`](Self::poll_update) (publish each, in order), then re-arm the one timer at
///   [`next_deadline`](Self::next_deadline) and call [`handle_timeout`](Self::handle_timeout)
///   when it passes.
/// - Calling too often is harmless: an extra `handle_timeout` does nothing, a replayed event
///   changes nothing, and an answer to an unknown or already answered request is ignored.
/// - The same inputs in the same order give the same outputs.
///
/// # Example
///
/// ```
/// use std::time::Instant;
///
/// use matrix_rtc_machine::{CallId, MachineConfig, PageFlags, RtcMachine, Update};
/// use matrix_sticky_events::{Receipt, parse_sticky_batch};
/// use ruma_common::{owned_device_id, owned_user_id, room_id};
///
/// let now = Instant::now();
/// let config = MachineConfig::new(owned_user_id!("@me:example.org"), owned_device_id!("ME"), "run1");
/// let mut machine = RtcMachine::new(config);
///
/// // A side-connection page with a js-sdk 43 join of Alice, parsed by the one sticky parser.
/// let page = r#"{"next_batch":"s1","rooms":{"!room:example.org":{"events":[{
///   "type":"org.matrix.msc4143.rtc.member","event_id":"$join","sender":"@alice:example.org",
///   "origin_server_ts":1795668868679,"msc4354_sticky":{"duration_ms":3600000},
///   "unsigned":{"msc4354_sticky_duration_ttl_ms":3599000},
///   "content":{"slot_id":"m.call#ROOM","application":{"type":"m.call"},
///     "member":{"id":"m1","user_id":"@alice:example.org","device_id":"DEVA"},
///     "transports":{"published":[{"type":"livekit","livekit_service_url":"https://lk.example.org"}],
///     "can_subscribe":["livekit"]},"versions":[],"msc4354_sticky_key":"m1"}}]}}}"#;
/// let batch = parse_sticky_batch(page, Receipt::new(now, 1_795_668_869_000)).unwrap();
/// machine.handle_sticky_batch(batch, PageFlags::new(true, false), now);
///
/// // The model asks whether Alice is joined to the room; the pump would read it from its store.
/// while let Some(request) = machine.poll_request() {
///     machine.handle_response(request.id(), matrix_rtc_machine::Outcome::Member { joined: true }, now);
/// }
/// let call = CallId::room_call(room_id!("!room:example.org"));
/// assert_eq!(machine.participants(&call).len(), 1);
/// let updates: Vec<Update> = std::iter::from_fn(|| machine.poll_update()).collect();
/// assert!(matches!(&updates[0], Update::CallActive { active: true, .. }));
/// assert!(matches!(&updates[1], Update::Participants { diffs, .. } if diffs.len() == 1));
/// // The sticky event expires within the hour: that is the next deadline.
/// assert!(machine.next_deadline().is_some());
/// ```
#[derive(Debug)]
pub struct RtcMachine {
    config: MachineConfig,
    identity: Identity,
    map: StickyMap,
    model: RtcMembership,
    publisher: Publisher,
    parked: Parked,
    own: OwnCalls,
    devices: DeviceChecks,
    members: MemberQueries,
    caps: CapCounters,
    redactions: RedactionRules,
    /// The users we ignore, as last given.
    ignored: BTreeSet<OwnedUserId>,
    timers: TimerTable,
    io: Io,
    updates: VecDeque<Update>,
    /// Diagnostics of this input, published after the lists.
    diagnostics: Vec<Diagnostic>,
    last_now: Option<Instant>,
}

impl RtcMachine {
    /// A machine with nothing seen yet.
    pub fn new(config: MachineConfig) -> Self {
        let identity = Identity {
            user_id: config.user_id.clone(),
            device_id: config.device_id.clone(),
            txn_prefix: config.txn_prefix.clone(),
        };
        Self {
            map: StickyMap::new(config.sticky_limits),
            model: RtcMembership::new(),
            publisher: Publisher::default(),
            parked: Parked::new(config.parked_limits),
            own: OwnCalls::default(),
            devices: DeviceChecks::default(),
            members: MemberQueries::default(),
            caps: CapCounters::default(),
            redactions: RedactionRules::default(),
            ignored: BTreeSet::new(),
            timers: TimerTable::default(),
            io: Io::default(),
            updates: VecDeque::new(),
            diagnostics: Vec::new(),
            last_now: None,
            identity,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    // --- getters ------------------------------------------------------------------------

    /// The participants of `call` as published (oldest first).
    pub fn participants(&self, call: &CallId) -> Vector<Arc<Participant>> {
        self.publisher.participants(call)
    }

    /// Whether `call` has participants (as published).
    pub fn is_active(&self, call: &CallId) -> bool {
        self.publisher.is_active(call)
    }

    /// The calls with participants (as published), sorted.
    pub fn active_calls(&self) -> Vec<CallId> {
        self.publisher.active_calls()
    }

    /// Our own status in `call`.
    pub fn own_status(&self, call: &CallId) -> OwnStatus {
        self.own.status(call)
    }

    /// Our member ID in `call`, while joining, joined or leaving.
    pub fn own_member_id(&self, call: &CallId) -> Option<&str> {
        self.own.member_id(call)
    }

    /// Whether our delayed leave is armed in `call` (the server may hold one).
    pub fn has_delayed_leave(&self, call: &CallId) -> bool {
        self.own.delay_id(call).is_some()
    }

    /// The calls a previous run was in, given to [`restore`](Self::restore).
    pub fn interrupted_calls(&self) -> &[CallId] {
        self.own.interrupted()
    }

    /// The membership model (sessions as the model sees them, before any hold).
    pub fn model(&self) -> &RtcMembership {
        &self.model
    }

    /// Counts of what the machine holds.
    pub fn stats(&self) -> MachineStats {
        MachineStats {
            sticky_entries: self.map.len(),
            sticky_candidates: self.map.candidate_count(),
            parked: self.parked.len(),
            active_calls: self.publisher.active_calls().len(),
            participants: self.publisher.participant_count(),
            own_calls: self.own.len(),
            requests_in_flight: self.io.in_flight(),
        }
    }

    // --- outputs ------------------------------------------------------------------------

    /// The next request to perform; drain it after every input.
    #[must_use = "every request must be performed and answered"]
    pub fn poll_request(&mut self) -> Option<Request> {
        self.io.poll()
    }

    /// The next update to publish; drain it after every input.
    #[must_use = "updates are what the app sees"]
    pub fn poll_update(&mut self) -> Option<Update> {
        self.updates.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    #[must_use = "the pump must wake up at this instant"]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    // --- inputs -------------------------------------------------------------------------

    /// A page of our side connection's sticky-events extension, parsed by
    /// [`parse_sticky_batch`](matrix_sticky_events::parse_sticky_batch) with the receipt of
    /// its response.
    pub fn handle_sticky_batch(
        &mut self,
        batch: StickyBatch,
        flags: PageFlags,
        now: Instant,
    ) -> PageSummary {
        let now = self.clock(now);
        if flags.restarted {
            debug!("side connection restarted: live events are replayed");
        }
        if !flags.caught_up {
            self.publisher.hold(now + self.config.hold_limit);
        }
        let mut summary = PageSummary {
            events: 0,
            rejected: batch.errors.len(),
        };
        for error in batch.errors {
            self.diagnostics.push(Diagnostic::MalformedBatch {
                room: error.room,
                rejection: error.reason,
            });
        }
        for room in batch.rooms {
            for parsed in room.events {
                summary.events += 1;
                summary.rejected += usize::from(parsed.is_err());
                self.handle_parsed(&room.room_id, parsed, None, now);
            }
        }
        if flags.caught_up {
            self.publisher.release(&self.model);
        }
        self.drive(now);
        summary
    }

    /// The side connection failed or stopped: whatever was held back is published now.
    pub fn handle_side_connection_down(&mut self, now: Instant) {
        let now = self.clock(now);
        self.publisher.release(&self.model);
        self.drive(now);
    }

    /// A raw event of the app's sync (timeline or state section), received at `receipt`:
    /// sticky member events, redactions and encrypted envelopes, legacy call member and slot
    /// state, `m.room.member`, `m.room.encryption` and `m.room.power_levels` (also as the
    /// store holds it when starting: until a room's power levels are known, only a sender's
    /// own redactions of its memberships count). Other events are ignored (see
    /// [`EventRoute::of`] to skip them before they reach the machine).
    pub fn handle_room_event(
        &mut self,
        room_id: &RoomId,
        raw: &str,
        receipt: Receipt,
        now: Instant,
    ) {
        let now = self.clock(now);
        match EventRoute::of(raw) {
            EventRoute::Sticky => {
                let parsed = parse_event(raw, room_id, receipt);
                let event_id = if parsed.is_err() {
                    route::peek_event_id(raw)
                } else {
                    None
                };
                if let (Err(Rejection::NotSticky), Some(event_id)) = (&parsed, &event_id)
                    && self.parked.knows(event_id)
                {
                    // The app's sync decrypted this envelope (and dropped its sticky object):
                    // its key is here, so try our copy again now.
                    self.parked.retry_event(event_id);
                }
                self.handle_parsed(room_id, parsed, event_id, now);
            }
            EventRoute::CallState => {
                let changes = self.model.handle_state_event(room_id, raw, receipt);
                self.publisher.apply(changes);
            }
            EventRoute::RoomMember => self.handle_member_event(room_id, raw),
            EventRoute::Encryption => {
                let changes = self.model.set_room_encrypted(room_id, true);
                self.publisher.apply(changes);
            }
            EventRoute::PowerLevels => self.handle_power_levels(room_id, raw),
            _ => {}
        }
        self.drive(now);
    }

    /// A state event of `room_id` as the client's store held it when the pump started, read
    /// while the app's sync may already be delivering newer state: power levels count only
    /// while none came through [`handle_room_event`](Self::handle_room_event) for the room
    /// (so a stale read never replaces what sync brought); anything else is handled as
    /// `handle_room_event` would.
    pub fn handle_stored_state(
        &mut self,
        room_id: &RoomId,
        raw: &str,
        receipt: Receipt,
        now: Instant,
    ) {
        if EventRoute::of(raw) == EventRoute::PowerLevels {
            let now = self.clock(now);
            if self.redactions.knows_power_levels(room_id) {
                trace!(room = %room_id, "stored power levels older than those from sync: ignored");
            } else {
                self.handle_power_levels(room_id, raw);
            }
            self.drive(now);
        } else {
            self.handle_room_event(room_id, raw, receipt, now);
        }
    }

    /// Whether `room_id` is encrypted (from the store when starting, or from sync).
    pub fn handle_room_encryption(&mut self, room_id: &RoomId, encrypted: bool, now: Instant) {
        let now = self.clock(now);
        let changes = self.model.set_room_encrypted(room_id, encrypted);
        self.publisher.apply(changes);
        self.drive(now);
    }

    /// The whole current list of users we ignore (the `m.ignored_user_list` account data):
    /// their memberships are hidden in every room (`docs/protocol.md` §5.8 rule 9), leaving
    /// with [`LeftReason::SenderIgnored`](matrix_rtc_membership::LeftReason::SenderIgnored),
    /// and show again when they are no longer ignored. Give the full list every time (at
    /// start and after every change); the machine compares it with the previous one. Our own
    /// user is never ignored.
    pub fn handle_ignored_users<I>(&mut self, users: I, now: Instant)
    where
        I: IntoIterator<Item = OwnedUserId>,
    {
        let now = self.clock(now);
        let own = &self.identity.user_id;
        let users: BTreeSet<OwnedUserId> = users.into_iter().filter(|u| u != own).collect();
        // Sorted, so the same input gives the same output order.
        let unignored: Vec<OwnedUserId> = self.ignored.difference(&users).cloned().collect();
        let ignored: Vec<OwnedUserId> = users.difference(&self.ignored).cloned().collect();
        debug!(
            ignored = ignored.len(),
            unignored = unignored.len(),
            "ignored users changed"
        );
        for user_id in &unignored {
            let changes = self.model.handle_ignored_user(user_id, false);
            self.publisher.apply(changes);
        }
        for user_id in &ignored {
            let changes = self.model.handle_ignored_user(user_id, true);
            self.publisher.apply(changes);
        }
        self.ignored = users;
        self.drive(now);
    }

    /// Room keys arrived, as `(room, megolm session id)`: their envelopes are tried again.
    pub fn handle_room_keys<I>(&mut self, keys: I, now: Instant)
    where
        I: IntoIterator<Item = (OwnedRoomId, String)>,
    {
        let now = self.clock(now);
        for (room_id, session_id) in keys {
            self.parked.keys_arrived(&room_id, &session_id);
        }
        self.drive(now);
    }

    /// Room keys may have arrived unseen (the key stream lagged or was re-subscribed): every
    /// waiting envelope is tried again.
    pub fn handle_room_keys_lagged(&mut self, now: Instant) {
        let now = self.clock(now);
        self.parked.retry_all();
        self.drive(now);
    }

    /// The crypto store discovered devices: the rooms where we are in a call are checked now.
    pub fn handle_devices_discovered(&mut self, now: Instant) {
        let now = self.clock(now);
        for room_id in self.own.joined_rooms() {
            self.want_device_check(&room_id);
        }
        self.drive(now);
    }

    /// The outcome of the request `id`.
    pub fn handle_response(&mut self, id: RequestId, outcome: Outcome, now: Instant) {
        let now = self.clock(now);
        let Some(pending) = self.io.answer(id) else {
            trace!(request = %id, "answer to an unknown or answered request ignored");
            return;
        };
        match pending {
            Pending::Own { call, id } => {
                let outcome = http_outcome(outcome);
                self.own.handle_response(&call, id, outcome, now);
            }
            Pending::Previous { call } => {
                let outcome = http_outcome(outcome);
                self.own.handle_previous_response(&call, &outcome, now);
            }
            Pending::Decrypt { event_id } => self.handle_decrypted(&event_id, outcome, now),
            Pending::Member { room_id, user_id } => match outcome {
                Outcome::Member { joined } => {
                    self.members.answered(&room_id, &user_id);
                    let changes = self.model.handle_room_member(&room_id, &user_id, joined);
                    self.publisher.apply(changes);
                }
                other => {
                    let backoff = Backoff {
                        base: self.config.member_query_retry,
                        max: self.config.member_query_retry_max,
                    };
                    let wait = self.members.failed(backoff, now, room_id.clone(), user_id);
                    trace!(room = %room_id, ?other, ?wait, "member query failed; asking again later");
                }
            },
            Pending::Devices { room_id } => {
                self.devices.done(&room_id);
                if outcome == (Outcome::NewDevices { added: true }) {
                    self.own.handle_new_devices(&room_id, now);
                }
            }
        }
        self.drive(now);
    }

    /// Time has passed: call it at (or after) [`next_deadline`](Self::next_deadline).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        let changes = self.map.handle_timeout(now);
        self.apply_map_changes(changes);
        let changes = self.model.handle_timeout(now);
        self.publisher.apply(changes);
        self.own.handle_timeout(now);
        self.parked.expire(now);
        if self.timers.is_due(Timer::ParkedRetry, now) {
            self.timers.set(Timer::ParkedRetry, None);
            self.parked.retry_all();
        }
        if self.timers.is_due(Timer::HoldRelease, now) {
            self.publisher.release(&self.model);
        }
        if self.timers.is_due(Timer::DeviceCheck, now) {
            self.devices.periodic_at = None;
            for room_id in self.own.joined_rooms() {
                self.want_device_check(&room_id);
            }
        }
        self.members.handle_timeout(now);
        self.drive(now);
    }

    // --- commands -----------------------------------------------------------------------

    /// Joins `call`: our delayed leave is scheduled first, then our membership is sent and
    /// kept alive until [`leave`](Self::leave). Completion comes as
    /// [`Update::JoinFinished`].
    ///
    /// # Errors
    ///
    /// [`JoinFailure::AlreadyJoined`] when we are joining or joined as another member, and
    /// [`JoinFailure::EmptyMemberId`]; a refused join changes nothing.
    pub fn join(
        &mut self,
        call: &CallId,
        params: JoinParams,
        now: Instant,
    ) -> Result<(), JoinFailure> {
        let now = self.clock(now);
        let result = self
            .own
            .join(call, params, &self.config.own_membership, now);
        self.drive(now);
        result
    }

    /// Changes our membership of `call` (its transport or call intent) while we are joining
    /// or joined: the new content goes out soon as a refresh of the same member (our delayed
    /// leave, the leave of that member, stays as it is).
    ///
    /// # Errors
    ///
    /// [`UpdateFailure::NotInCall`] when we are not joining or joined; nothing changes.
    pub fn update(
        &mut self,
        call: &CallId,
        update: ContentUpdate,
        now: Instant,
    ) -> Result<(), UpdateFailure> {
        let now = self.clock(now);
        let result = self.own.update(call, update, now);
        self.drive(now);
        result
    }

    /// Leaves `call`: our delayed leave is sent now (a plain leave if that fails).
    /// Completion comes as [`Update::LeaveFinished`] (at once when we were not in the call).
    pub fn leave(&mut self, call: &CallId, now: Instant) {
        let now = self.clock(now);
        if !self.own.leave(call, now) {
            self.updates
                .push_back(Update::LeaveFinished { call: call.clone() });
        }
        self.drive(now);
    }

    /// The calls a previous run of the app was in when it stopped (persisted from
    /// [`Update::OwnCalls`]): their memberships are ended now, and the calls are listed by
    /// [`interrupted_calls`](Self::interrupted_calls) for the app to offer re-joining.
    pub fn restore(&mut self, records: &OwnCallRecords, now: Instant) {
        let now = self.clock(now);
        self.own.restore(records);
        self.drive(now);
    }

    // --- internals ----------------------------------------------------------------------

    /// Time never goes backwards.
    fn clock(&mut self, now: Instant) -> Instant {
        match self.last_now {
            Some(last) if now < last => last,
            _ => {
                self.last_now = Some(now);
                now
            }
        }
    }

    fn handle_parsed(
        &mut self,
        room_id: &RoomId,
        parsed: Result<Parsed, Rejection>,
        event_id: Option<OwnedEventId>,
        now: Instant,
    ) {
        match parsed {
            Ok(Parsed::Sticky(event)) => self.insert_sticky(event, now),
            Ok(Parsed::Redaction(redaction)) => self.handle_redaction(room_id, redaction, now),
            Ok(Parsed::Encrypted(envelope)) => {
                let meta = &envelope.meta;
                self.settle_waiting_redactions(room_id, &meta.event_id, &meta.sender, now);
                let event_id = &envelope.meta.event_id;
                if self.map.contains_event(event_id) || self.map.is_redacted(room_id, event_id) {
                    // Decrypted before (a replay of the side connection): nothing to do.
                    trace!(%event_id, "encrypted envelope already in the map");
                    return;
                }
                let drops = self.parked.admit(room_id, envelope, now);
                for (room_id, sender, cap) in drops {
                    self.report_cap(&room_id, &sender, cap);
                }
            }
            Err(Rejection::NotSticky) => trace!(room = %room_id, "ordinary event ignored"),
            Err(rejection) => {
                debug!(room = %room_id, %rejection, "sticky event rejected");
                self.diagnostics.push(Diagnostic::Sticky {
                    room_id: room_id.to_owned(),
                    event_id,
                    rejection,
                });
            }
        }
    }

    /// An `m.room.redaction` counts when its sender sent the redacted event or may redact
    /// another's (`docs/protocol.md` §4.3); a redacted copy always does (its homeserver
    /// applied the redaction).
    fn handle_redaction(&mut self, room_id: &RoomId, redaction: Redaction, now: Instant) {
        let Redaction { redacts, by } = redaction;
        if let Some(by) = by {
            let sender = self.sender_of(room_id, &redacts);
            match self.redactions.judge(room_id, &by, sender.as_deref()) {
                Verdict::Apply => {}
                Verdict::Wait(refusal) => {
                    trace!(room = %room_id, %redacts, "redaction waits for the event it redacts");
                    self.redactions
                        .wait(room_id, &redacts, Waiting { by, refusal }, now);
                    return;
                }
                Verdict::Refuse(reason) => {
                    if let Some(sender) = sender {
                        self.refuse_redaction(room_id, by, redacts, sender, reason);
                    }
                    return;
                }
            }
        }
        self.apply_redaction(room_id, &redacts, now);
    }

    fn apply_redaction(&mut self, room_id: &RoomId, redacts: &ruma_common::EventId, now: Instant) {
        let changes = self.map.handle_redaction(room_id, redacts, now);
        self.apply_map_changes(changes);
        let changes = self.model.handle_redaction(room_id, redacts);
        self.publisher.apply(changes);
    }

    fn refuse_redaction(
        &mut self,
        room_id: &RoomId,
        by: Redactor,
        redacts: OwnedEventId,
        sender: OwnedUserId,
        reason: RedactionRefusal,
    ) {
        debug!(room = %room_id, %redacts, redactor = %by.sender, %reason, "redaction refused");
        self.diagnostics.push(Diagnostic::RedactionRefused {
            room_id: room_id.to_owned(),
            redaction: by.event_id,
            redactor: by.sender,
            redacts,
            sender,
            reason,
        });
    }

    /// Who sent `event_id` of `room_id`, as far as the machine knows it.
    fn sender_of(&self, room_id: &RoomId, event_id: &ruma_common::EventId) -> Option<OwnedUserId> {
        let sticky = self
            .map
            .candidate(event_id)
            .filter(|event| event.meta.room_id == room_id)
            .map(|event| &event.meta.sender);
        sticky
            .map(|sender| &**sender)
            .or_else(|| self.parked.sender_of(room_id, event_id))
            .or_else(|| self.model.legacy_sender(room_id, event_id))
            .map(ToOwned::to_owned)
    }

    /// The event `event_id` of `sender` arrived: the redactions that waited for it count now
    /// if they are its sender's, and are refused otherwise.
    fn settle_waiting_redactions(
        &mut self,
        room_id: &RoomId,
        event_id: &ruma_common::EventId,
        sender: &ruma_common::UserId,
        now: Instant,
    ) {
        for waiting in self.redactions.take(room_id, event_id, now) {
            if waiting.by.sender == sender {
                self.apply_redaction(room_id, event_id, now);
            } else {
                self.refuse_redaction(
                    room_id,
                    waiting.by,
                    event_id.to_owned(),
                    sender.to_owned(),
                    waiting.refusal,
                );
            }
        }
    }

    fn insert_sticky(&mut self, event: StickyEvent, now: Instant) {
        let meta = &event.meta;
        let (room_id, event_id, sender) = (
            meta.room_id.clone(),
            meta.event_id.clone(),
            meta.sender.clone(),
        );
        self.settle_waiting_redactions(&room_id, &event_id, &sender, now);
        let known = self.map.contains_event(&event_id) || self.map.is_redacted(&room_id, &event_id);
        let expired = meta.is_expired(now);
        let changes = self.map.handle_event(event, now);
        if !known && !expired && !self.map.contains_event(&event_id) {
            // Neither known nor expired, and still not in: the caps refused it.
            self.report_cap(&room_id, &sender, Cap::StickyMap);
        }
        self.apply_map_changes(changes);
    }

    fn apply_map_changes(&mut self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        for change in &changes {
            if let Change::Removed {
                old,
                reason: RemovalReason::Evicted,
            } = change
            {
                let (room_id, sender) = (old.meta.room_id.clone(), old.meta.sender.clone());
                self.report_cap(&room_id, &sender, Cap::StickyMap);
            }
        }
        let sessions = self.model.handle_sticky_changes(&changes);
        self.publisher.apply(sessions);
    }

    fn report_cap(&mut self, room_id: &RoomId, sender: &ruma_common::UserId, cap: Cap) {
        if let Some(diagnostic) = self.caps.count(room_id, sender, cap) {
            self.diagnostics.push(diagnostic);
        }
    }

    fn handle_power_levels(&mut self, room_id: &RoomId, raw: &str) {
        if !self.redactions.handle_power_levels(room_id, raw) {
            debug!(room = %room_id, "unreadable m.room.power_levels event ignored");
        }
    }

    fn handle_member_event(&mut self, room_id: &RoomId, raw: &str) {
        let Some((user_id, joined)) = route::room_member(raw) else {
            trace!(room = %room_id, "unreadable m.room.member event ignored");
            return;
        };
        if user_id == self.identity.user_id && !joined {
            debug!(room = %room_id, "we left the room: forgetting its calls");
            let mut changes = self.map.forget_room(room_id);
            // The map lists them in hash order: sort, so the same input gives the same output.
            changes.sort_by(|a, b| change_event_id(a).cmp(change_event_id(b)));
            self.apply_map_changes(changes);
            let changes = self.model.forget_room(room_id);
            self.publisher.apply(changes);
            self.parked.forget_room(room_id);
            self.members.forget_room(room_id);
            self.redactions.forget_room(room_id);
            return;
        }
        if self.own.is_joined_in(room_id) {
            self.want_device_check(room_id);
        }
        let changes = self.model.handle_room_member(room_id, &user_id, joined);
        self.publisher.apply(changes);
    }

    fn handle_decrypted(&mut self, event_id: &OwnedEventId, outcome: Outcome, now: Instant) {
        self.parked.flight_ended();
        match outcome {
            Outcome::Decrypted {
                event,
                sender_device,
            } => {
                let Some((room_id, envelope)) = self.parked.decrypted(event_id) else {
                    trace!(%event_id, "decrypted an envelope no longer parked");
                    return;
                };
                match envelope.into_decrypted(&event, sender_device) {
                    Ok(event) => self.insert_sticky(event, now),
                    Err(rejection) => {
                        debug!(room = %room_id, %rejection, "decrypted sticky event rejected");
                        self.diagnostics.push(Diagnostic::Sticky {
                            room_id,
                            event_id: Some(event_id.clone()),
                            rejection,
                        });
                    }
                }
            }
            other => {
                trace!(%event_id, ?other, "envelope not decrypted: parked");
                if let Some(diagnostic) = self.parked.undecrypted(event_id) {
                    self.diagnostics.push(diagnostic);
                }
            }
        }
    }

    fn want_device_check(&mut self, room_id: &RoomId) {
        if self.config.can_encrypt && self.model.is_room_encrypted(room_id) {
            self.devices.want(room_id);
        }
    }

    /// After every input: the own-membership machines, requests, diagnostics, timers, and
    /// the updates of this input in their order.
    fn drive(&mut self, now: Instant) {
        self.publisher.flush(&mut self.updates);
        let mut own_updates = Vec::new();
        self.own.drive(
            &self.model,
            &self.identity,
            &mut self.io,
            &mut own_updates,
            now,
        );
        // Periodic checks for new devices while we are in a call (and can encrypt).
        let joined = self.config.can_encrypt && !self.own.joined_rooms().is_empty();
        match (joined, self.devices.periodic_at) {
            (false, _) => self.devices.periodic_at = None,
            (true, None) => {
                self.devices.periodic_at = Some(now + self.config.device_check_interval);
            }
            (true, Some(_)) => {}
        }
        for room_id in self.devices.take_wanted() {
            self.io.emit(
                RequestKind::CheckNewDevices {
                    room_id: room_id.clone(),
                },
                None,
                Pending::Devices { room_id },
            );
        }
        while let Some(query) = self.model.poll_member_query() {
            self.members.push(query.room_id, query.user_id);
        }
        while let Some((room_id, user_id)) =
            self.members.next(self.config.max_member_queries_in_flight)
        {
            self.io.emit(
                RequestKind::QueryMember {
                    room_id: room_id.clone(),
                    user_id: user_id.clone(),
                },
                None,
                Pending::Member { room_id, user_id },
            );
        }
        while self.parked.in_flight() < self.config.max_decrypts_in_flight {
            let Some((event_id, room_id, event)) = self.parked.take_next() else {
                break;
            };
            self.io.emit(
                RequestKind::Decrypt { room_id, event },
                None,
                Pending::Decrypt { event_id },
            );
        }
        while let Some(diagnostic) = self.model.poll_diagnostic() {
            self.diagnostics.push(Diagnostic::Membership(diagnostic));
        }
        // A membership event may have been published by the own machines' answers: flush
        // again so the lists come before the statuses.
        self.publisher.flush(&mut self.updates);
        self.updates.extend(own_updates);
        self.updates
            .extend(self.diagnostics.drain(..).map(Update::Diagnostic));
        self.refresh_timers(now);
    }

    fn refresh_timers(&mut self, now: Instant) {
        let retry = match (
            self.parked.has_waiting(),
            self.timers.get(Timer::ParkedRetry),
        ) {
            (false, _) => None,
            (true, None) => Some(now + self.config.parked_retry_interval),
            (true, Some(at)) => Some(at),
        };
        let table = [
            (Timer::StickyExpiry, self.map.next_deadline()),
            (Timer::LegacyExpiry, self.model.next_deadline()),
            (Timer::OwnMembership, self.own.next_deadline()),
            (Timer::ParkedRetry, retry),
            (Timer::ParkedExpiry, self.parked.next_expiry()),
            (Timer::HoldRelease, self.publisher.hold_deadline()),
            (Timer::DeviceCheck, self.devices.periodic_at),
            (Timer::MemberQueryRetry, self.members.next_retry()),
        ];
        for (timer, at) in table {
            self.timers.set(timer, at);
        }
    }
}

/// An HTTP request's outcome; anything else in its place is a bug of the pump, read as a
/// local failure.
fn http_outcome(outcome: Outcome) -> matrix_rtc_membership::RequestOutcome {
    match outcome {
        Outcome::Http(outcome) => outcome,
        other => {
            tracing::warn!(?other, "an HTTP request answered with a non-HTTP outcome");
            local_failure()
        }
    }
}

/// The event a change of the sticky map is about (its new value for a replacement).
fn change_event_id(change: &Change) -> &ruma_common::EventId {
    match change {
        Change::Added(event) | Change::Replaced { new: event, .. } => &event.meta.event_id,
        Change::Removed { old, .. } => &old.meta.event_id,
    }
}
