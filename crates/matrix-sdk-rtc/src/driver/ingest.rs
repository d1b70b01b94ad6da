//! The receiving half of the driver: sticky map and membership model, fed from the side
//! connection, the main sync's timeline and room state.
use std::time::Instant;

use matrix_rtc_membership::{MemberQuery, RtcMembership, SessionChange};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, RoomId};
use matrix_sticky_events::{
    EncryptedSticky, Limits, Parsed, Receipt, Rejection, StickyMap, parse_event,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::{debug, trace};

use crate::{Diagnostic, wire};

/// What a raw room event is, by its `type` (and `state_key`), for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventRoute {
    /// A sticky event (or its redacted copy, or an `m.room.redaction`): the sticky map.
    Sticky,
    /// A legacy call member (or `m.rtc.slot`) state event: the model.
    CallState,
    /// An `m.room.member` state event: the senders' room membership.
    RoomMember,
    /// An `m.room.encryption` state event: the room is encrypted from now on.
    Encryption,
    /// Nothing for us.
    Ignore,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Option<&'a str>,
    #[serde(borrow)]
    state_key: Option<&'a RawValue>,
}

/// The `event_id` of a raw event, if it has a valid one (for diagnostics).
fn peek_event_id(raw: &RawValue) -> Option<OwnedEventId> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        event_id: Option<&'a str>,
    }
    let id = serde_json::from_str::<Id<'_>>(raw.get()).ok()?.event_id?;
    OwnedEventId::try_from(id).ok()
}

impl EventRoute {
    /// Looks at the top level of a raw event to decide where it goes. Malformed events go
    /// to the sticky map, which reports why they are malformed.
    pub(crate) fn of(raw: &RawValue) -> Self {
        let Ok(peek) = serde_json::from_str::<Peek<'_>>(raw.get()) else {
            return Self::Sticky;
        };
        match (peek.event_type, peek.state_key.is_some()) {
            (Some(t), true) if wire::is_call_state_type(t) => Self::CallState,
            (Some(wire::ROOM_MEMBER), true) => Self::RoomMember,
            (Some(wire::ROOM_ENCRYPTION), true) => Self::Encryption,
            (Some(t), false) if wire::is_sticky_candidate_type(t) => Self::Sticky,
            _ => Self::Ignore,
        }
    }
}

/// The receiving state: the sticky map and the membership model.
#[derive(Debug)]
pub(crate) struct Ingest {
    pub(crate) map: StickyMap,
    pub(crate) model: RtcMembership,
    /// Session changes held back while the side connection catches up (a briefly stale
    /// value is an accepted flicker on the wire; we hide it).
    held: Option<Vec<SessionChange>>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Encrypted envelopes seen in this step, for the driver to decrypt.
    pub(crate) encrypted: Vec<(OwnedRoomId, EncryptedSticky)>,
}

impl Ingest {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            map: StickyMap::new(limits),
            model: RtcMembership::new(),
            held: None,
            diagnostics: Vec::new(),
            encrypted: Vec::new(),
        }
    }

    /// Starts holding back session changes (side connection catching up).
    pub(crate) fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Stops holding back: returns what was held.
    pub(crate) fn release(&mut self) -> Vec<SessionChange> {
        self.held.take().unwrap_or_default()
    }

    fn emit(&mut self, out: &mut Vec<SessionChange>, changes: Vec<SessionChange>) {
        match &mut self.held {
            Some(held) => held.extend(changes),
            None => out.extend(changes),
        }
    }

    /// One sticky-channel event (plaintext, an encrypted envelope, or a redaction).
    pub(crate) fn handle_sticky_raw(
        &mut self,
        room_id: &RoomId,
        raw: &RawValue,
        receipt: Receipt,
        now: Instant,
        out: &mut Vec<SessionChange>,
    ) {
        let parsed = parse_event(raw.get(), room_id, receipt);
        let event_id = if parsed.is_err() {
            peek_event_id(raw)
        } else {
            None
        };
        self.handle_parsed(room_id, parsed, event_id, now, out);
    }

    /// One sticky-channel event, already parsed. `event_id` names a rejected event for the
    /// diagnostic, when known.
    pub(crate) fn handle_parsed(
        &mut self,
        room_id: &RoomId,
        parsed: Result<Parsed, Rejection>,
        event_id: Option<OwnedEventId>,
        now: Instant,
        out: &mut Vec<SessionChange>,
    ) {
        match parsed {
            Ok(Parsed::Sticky(event)) => {
                let changes = self.map.handle_event(event, now);
                let sessions = self.model.handle_sticky_changes(&changes);
                self.emit(out, sessions);
            }
            Ok(Parsed::Redaction(event_id)) => {
                let changes = self.map.handle_redaction(room_id, &event_id, now);
                let mut sessions = self.model.handle_sticky_changes(&changes);
                sessions.extend(self.model.handle_redaction(room_id, &event_id));
                self.emit(out, sessions);
            }
            Ok(Parsed::Encrypted(envelope)) => {
                // Decrypted by the driver, outside this synchronous step.
                self.encrypted.push((room_id.to_owned(), envelope));
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

    /// A legacy call member (or slot) state event.
    pub(crate) fn handle_state_raw(
        &mut self,
        room_id: &RoomId,
        raw: &RawValue,
        receipt: Receipt,
        out: &mut Vec<SessionChange>,
    ) {
        let changes = self.model.handle_state_event(room_id, raw.get(), receipt);
        self.emit(out, changes);
    }

    /// Expiry of sticky entries and legacy memberships.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<SessionChange>) {
        let changes = self.map.handle_timeout(now);
        let mut sessions = self.model.handle_sticky_changes(&changes);
        sessions.extend(self.model.handle_timeout(now));
        self.emit(out, sessions);
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.map.next_deadline(), self.model.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the model's diagnostics into ours.
    pub(crate) fn drain_model_diagnostics(&mut self) {
        while let Some(diagnostic) = self.model.poll_diagnostic() {
            self.diagnostics.push(Diagnostic::Membership(diagnostic));
        }
    }

    pub(crate) fn poll_member_query(&mut self) -> Option<MemberQuery> {
        self.model.poll_member_query()
    }

    /// We left a room: forget everything in it.
    pub(crate) fn forget_room(&mut self, room_id: &OwnedRoomId, out: &mut Vec<SessionChange>) {
        let changes = self.map.forget_room(room_id);
        let mut sessions = self.model.handle_sticky_changes(&changes);
        sessions.extend(self.model.forget_room(room_id));
        self.emit(out, sessions);
    }
}
