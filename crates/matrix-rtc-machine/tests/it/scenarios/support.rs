//! One machine, a virtual clock, events built as the server would send them, and a small pump
//! that answers requests and keeps the published lists from the updates.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use imbl::Vector;
use matrix_rtc_machine::{
    CallId, Diagnostic, JoinParams, MachineConfig, Outcome, PageFlags, ParticipantDiff, Request,
    RequestKind, RtcMachine, Update,
};
use matrix_rtc_membership::{
    DelayId, MembershipContent, OwnMembershipConfig, Participant, RequestOutcome,
    ServerCapabilities, SessionChange, Transport,
};
use matrix_sticky_events::{Receipt, parse_sticky_batch};
use ruma_common::{OwnedRoomId, OwnedUserId, owned_device_id, owned_user_id};
use serde_json::{Value, json};

/// The server's wall clock at the start of every scenario (ms since the Unix epoch).
pub(crate) const T0_MS: u64 = 1_795_668_868_000;
/// The sticky lifetime of the events built here.
pub(crate) const HOUR_MS: u64 = 3_600_000;

pub(crate) fn me() -> OwnedUserId {
    owned_user_id!("@me:example.org")
}

pub(crate) fn room() -> OwnedRoomId {
    "!room:example.org".try_into().expect("room id")
}

pub(crate) fn room_call() -> CallId {
    CallId::room_call(&room())
}

/// A js-sdk 43 join, sent at `ts_ms` with `ttl_ms` left when served.
pub(crate) fn join(
    sender: &str,
    device: &str,
    member_id: &str,
    event_id: &str,
    slot: &str,
    ts_ms: u64,
    ttl_ms: u64,
) -> Value {
    json!({
        "type": "org.matrix.msc4143.rtc.member",
        "event_id": event_id,
        "sender": sender,
        "origin_server_ts": ts_ms,
        "msc4354_sticky": { "duration_ms": HOUR_MS },
        "unsigned": { "msc4354_sticky_duration_ttl_ms": ttl_ms },
        "content": {
            "slot_id": slot,
            "application": { "type": "m.call" },
            "member": { "id": member_id, "user_id": sender, "device_id": device },
            "transports": {
                "published": [{ "type": "livekit", "livekit_service_url": "https://lk.example.org" }],
                "can_subscribe": ["livekit"],
            },
            "versions": [],
            "msc4354_sticky_key": member_id,
        },
    })
}

/// A js-sdk 43 leave of `member_id`.
pub(crate) fn leave(
    sender: &str,
    member_id: &str,
    event_id: &str,
    ts_ms: u64,
    ttl_ms: u64,
) -> Value {
    json!({
        "type": "org.matrix.msc4143.rtc.member",
        "event_id": event_id,
        "sender": sender,
        "origin_server_ts": ts_ms,
        "msc4354_sticky": { "duration_ms": HOUR_MS },
        "unsigned": { "msc4354_sticky_duration_ttl_ms": ttl_ms },
        "content": { "slot_id": "m.call#ROOM", "msc4354_sticky_key": member_id },
    })
}

/// An `m.room.redaction` of `redacts`.
pub(crate) fn redaction(sender: &str, redacts: &str, event_id: &str, ts_ms: u64) -> Value {
    json!({
        "type": "m.room.redaction",
        "event_id": event_id,
        "sender": sender,
        "origin_server_ts": ts_ms,
        "redacts": redacts,
        "content": { "redacts": redacts },
    })
}

/// The room's `m.room.power_levels` state, with these users' levels (the `redact` level is
/// the default, 50).
pub(crate) fn power_levels(users: &[(&str, i64)]) -> Value {
    let users: serde_json::Map<String, Value> = users
        .iter()
        .map(|(user, level)| ((*user).to_owned(), json!(level)))
        .collect();
    json!({
        "type": "m.room.power_levels",
        "state_key": "",
        "event_id": "$power",
        "sender": "@creator:example.org",
        "origin_server_ts": T0_MS,
        "content": { "users": users },
    })
}

/// An encrypted sticky envelope of `session_id` (the ciphertext is the test's secret: the
/// pump here "decrypts" it by looking it up).
pub(crate) fn envelope(
    sender: &str,
    event_id: &str,
    session_id: &str,
    ts_ms: u64,
    ttl_ms: u64,
) -> Value {
    json!({
        "type": "m.room.encrypted",
        "event_id": event_id,
        "sender": sender,
        "origin_server_ts": ts_ms,
        "msc4354_sticky": { "duration_ms": HOUR_MS },
        "unsigned": { "msc4354_sticky_duration_ttl_ms": ttl_ms },
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "opaque",
            "device_id": "DEV",
            "sender_key": "key",
            "session_id": session_id,
        },
    })
}

/// An `m.room.member` state event.
pub(crate) fn member(user: &str, membership: &str) -> Value {
    json!({
        "type": "m.room.member",
        "state_key": user,
        "event_id": format!("$member-{user}-{membership}"),
        "sender": user,
        "origin_server_ts": T0_MS,
        "content": { "membership": membership },
    })
}

/// What the test pump answers for decryption.
pub(crate) type Decryptor = Box<dyn FnMut(&str) -> Outcome>;

/// One machine with its clock and a pump kept in the test.
pub(crate) struct Harness {
    pub(crate) machine: RtcMachine,
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    /// The lists rebuilt from `Update::Participants` alone.
    pub(crate) lists: HashMap<CallId, Vector<Arc<Participant>>>,
    pub(crate) changes: Vec<SessionChange>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    pub(crate) updates: Vec<Update>,
    /// Requests the pump was asked to perform, with what it answered.
    pub(crate) performed: Vec<RequestKind>,
    /// Requests held back (not answered) by the test.
    pub(crate) held: Vec<Request>,
    /// Answer the machine's requests at once.
    pub(crate) auto_answer: bool,
    pub(crate) decrypt: Decryptor,
    delay_ids: u64,
    event_ids: u64,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with(|_| {})
    }

    pub(crate) fn with(configure: impl FnOnce(&mut MachineConfig)) -> Self {
        let mut config = MachineConfig::new(me(), owned_device_id!("MYDEVICE"), "test");
        configure(&mut config);
        let start = Instant::now();
        Self {
            machine: RtcMachine::new(config),
            start,
            now: start,
            lists: HashMap::new(),
            changes: Vec::new(),
            diagnostics: Vec::new(),
            updates: Vec::new(),
            performed: Vec::new(),
            held: Vec::new(),
            auto_answer: true,
            decrypt: Box::new(|_| Outcome::MissingRoomKey),
            delay_ids: 0,
            event_ids: 0,
        }
    }

    pub(crate) fn receipt(&self) -> Receipt {
        Receipt::new(self.now, T0_MS + millis(self.now - self.start))
    }

    /// A side-connection page with these events of the test room.
    pub(crate) fn page(&mut self, events: &[Value], caught_up: bool) {
        let body = json!({ "next_batch": "s", "rooms": { room().as_str(): { "events": events } } });
        let batch = parse_sticky_batch(&body.to_string(), self.receipt()).expect("page parses");
        self.machine
            .handle_sticky_batch(batch, PageFlags::new(caught_up, false), self.now);
        self.settle();
    }

    /// One event of the app's sync.
    pub(crate) fn timeline(&mut self, event: &Value) {
        self.machine
            .handle_room_event(&room(), &event.to_string(), self.receipt(), self.now);
        self.settle();
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(deadline) = self.machine.next_deadline() {
            if deadline > until {
                break;
            }
            self.now = deadline.max(self.now);
            self.machine.handle_timeout(self.now);
            self.settle();
        }
        self.now = until;
        self.machine.handle_timeout(self.now);
        self.settle();
    }

    pub(crate) fn join_with(
        &mut self,
        member_id: &str,
        transport: &str,
        timings: OwnMembershipConfig,
    ) -> Result<(), matrix_rtc_machine::JoinFailure> {
        let content = MembershipContent::room_call(
            me(),
            owned_device_id!("MYDEVICE"),
            member_id,
            Transport::livekit(transport),
        );
        let params = JoinParams::new(content, ServerCapabilities::full()).with_timings(timings);
        let result = self.machine.join(&room_call(), params, self.now);
        self.settle();
        result
    }

    /// Drains requests (answering them unless held) and updates, until quiet.
    pub(crate) fn settle(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(request) = self.machine.poll_request() {
                progressed = true;
                self.performed.push(request.kind().clone());
                if self.auto_answer {
                    let outcome = self.answer(request.kind());
                    self.machine
                        .handle_response(request.id(), outcome, self.now);
                } else {
                    self.held.push(request);
                }
            }
            while let Some(update) = self.machine.poll_update() {
                progressed = true;
                self.apply(update);
            }
            if !progressed {
                break;
            }
        }
        self.check_lists();
    }

    fn answer(&mut self, kind: &RequestKind) -> Outcome {
        match kind {
            RequestKind::ScheduleDelayedSticky { .. } => {
                self.delay_ids += 1;
                Outcome::Http(RequestOutcome::scheduled(DelayId::new(format!(
                    "delay{}",
                    self.delay_ids
                ))))
            }
            RequestKind::SendSticky { .. } => {
                self.event_ids += 1;
                Outcome::Http(RequestOutcome::sent(format!("$ours{}", self.event_ids)))
            }
            RequestKind::UpdateDelayed { .. } => Outcome::Http(RequestOutcome::ok()),
            RequestKind::Decrypt { event, .. } => (self.decrypt)(event.get()),
            RequestKind::QueryMember { .. } => Outcome::Member { joined: true },
            RequestKind::CheckNewDevices { .. } => Outcome::NewDevices { added: false },
            other => panic!("unexpected request {other:?}"),
        }
    }

    fn apply(&mut self, update: Update) {
        match &update {
            Update::Participants { call, diffs } => {
                let list = self.lists.entry(call.clone()).or_default();
                for diff in diffs {
                    match diff.clone() {
                        ParticipantDiff::Insert { index, participant } => {
                            list.insert(index, participant)
                        }
                        ParticipantDiff::Set { index, participant } => {
                            list.set(index, participant);
                        }
                        ParticipantDiff::Remove { index } => {
                            list.remove(index);
                        }
                    }
                }
            }
            Update::SessionChange(change) => self.changes.push(change.clone()),
            Update::Diagnostic(diagnostic) => self.diagnostics.push(diagnostic.clone()),
            _ => {}
        }
        self.updates.push(update);
    }

    /// The lists rebuilt from the diffs are the machine's.
    fn check_lists(&self) {
        for (call, list) in &self.lists {
            assert_eq!(
                *list,
                self.machine.participants(call),
                "diffs of {call} replay to the published list"
            );
        }
    }

    /// The member ids and transports of our join and refresh sends, in order.
    pub(crate) fn sent_joins(&self) -> Vec<(String, String)> {
        self.performed
            .iter()
            .filter_map(|kind| match kind {
                RequestKind::SendSticky { content, .. } if content.get("application").is_some() => {
                    Some((
                        content["member"]["id"].as_str()?.to_owned(),
                        content["transports"]["published"][0]["livekit_service_url"]
                            .as_str()?
                            .to_owned(),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    /// The member ids published in the room call.
    pub(crate) fn members(&self) -> Vec<String> {
        self.machine
            .participants(&room_call())
            .iter()
            .map(|p| p.member_id.clone())
            .collect()
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).expect("fits")
}

pub(crate) fn alice() -> &'static str {
    "@alice:example.org"
}
