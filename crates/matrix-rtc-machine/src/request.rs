//! What the machine asks the pump to do ([`Request`]), and what the pump reports back
//! ([`Outcome`]).
use std::{
    fmt,
    time::{Duration, Instant},
};

use matrix_rtc_membership::{DelayId, RequestOutcome};
use ruma_common::{OwnedDeviceId, OwnedRoomId, OwnedUserId};
use serde_json::{Value, value::RawValue};

/// Identifies one [`Request`]; the pump answers it with
/// [`RtcMachine::handle_response`](crate::RtcMachine::handle_response). Ids are never reused
/// within one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The number behind the id (for logs).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One piece of IO to perform, from [`RtcMachine::poll_request`](crate::RtcMachine::poll_request).
///
/// Perform it, then answer it exactly once with
/// [`RtcMachine::handle_response`](crate::RtcMachine::handle_response) under its
/// [`id`](Self::id), a failure too. Requests with a [`deadline`](Self::deadline) are given
/// up by the machine at that instant (a later answer is ignored); the pump may abort them.
#[derive(Debug, Clone)]
#[must_use = "a request must be performed and answered"]
pub struct Request {
    pub(crate) id: RequestId,
    pub(crate) deadline: Option<Instant>,
    pub(crate) kind: RequestKind,
}

impl Request {
    /// The id to answer with.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// When the machine stops waiting for the answer, if it does.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// What to do.
    pub fn kind(&self) -> &RequestKind {
        &self.kind
    }

    /// Takes the request apart.
    pub fn into_parts(self) -> (RequestId, RequestKind) {
        (self.id, self.kind)
    }
}

/// What to do with a delayed event (MSC4140 management actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DelayedAction {
    /// Fire at now plus the original delay (the heartbeat).
    Restart,
    /// Fire now.
    Send,
    /// Never fire.
    Cancel,
}

/// The IO a [`Request`] asks for.
///
/// The HTTP kinds are answered with [`Outcome::Http`]; the others name their outcomes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RequestKind {
    /// Send a sticky event now (`PUT …/send/{event_type}/{txn_id}` with the sticky
    /// duration), encrypted in an encrypted room: never in plaintext there. Answer with
    /// [`Outcome::Http`] (`RequestOutcome::sent(event_id)` on success).
    SendSticky {
        /// Room.
        room_id: OwnedRoomId,
        /// Event type (before encryption).
        event_type: &'static str,
        /// Content (before encryption).
        content: Value,
        /// HTTP transaction ID: the same on every attempt of the same logical send.
        txn_id: String,
        /// Sticky duration.
        sticky_duration: Duration,
    },
    /// Schedule a sticky event as a delayed event (MSC4140), encrypted in an encrypted room.
    /// Answer with [`Outcome::Http`] (`RequestOutcome::scheduled(delay_id)` on success).
    ScheduleDelayedSticky {
        /// Room.
        room_id: OwnedRoomId,
        /// Event type (before encryption).
        event_type: &'static str,
        /// Content (before encryption).
        content: Value,
        /// HTTP transaction ID: the same on every attempt of the same logical send.
        txn_id: String,
        /// Sticky duration.
        sticky_duration: Duration,
        /// Delay before the server sends it.
        delay: Duration,
    },
    /// Restart, send or cancel a delayed event. Answer with [`Outcome::Http`].
    UpdateDelayed {
        /// The delayed event (a secret: never log it).
        delay_id: DelayId,
        /// What to do.
        action: DelayedAction,
    },
    /// Decrypt an encrypted sticky envelope (`m.room.encrypted`, as received). Answer with
    /// [`Outcome::Decrypted`], [`Outcome::MissingRoomKey`] or [`Outcome::DecryptionFailed`].
    Decrypt {
        /// Room.
        room_id: OwnedRoomId,
        /// The whole envelope.
        event: Box<RawValue>,
    },
    /// Read a sender's current room membership. Answer with [`Outcome::Member`], or
    /// [`Outcome::MemberUnknown`] when it could not be read.
    QueryMember {
        /// Room.
        room_id: OwnedRoomId,
        /// Sender.
        user_id: OwnedUserId,
    },
    /// Check whether devices appeared among the room's members since we last shared our
    /// room key there (they cannot decrypt our membership yet). Answer with
    /// [`Outcome::NewDevices`].
    CheckNewDevices {
        /// Room.
        room_id: OwnedRoomId,
    },
}

/// How a [`Request`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The answer to an HTTP request (sends and delayed-event management), mapped onto the
    /// own-membership machine's outcomes.
    Http(RequestOutcome),
    /// The envelope decrypted to this event JSON (at least `type` and `content`), encrypted by
    /// `sender_device` when decryption tells.
    Decrypted {
        /// The decrypted event.
        event: String,
        /// The device that encrypted it.
        sender_device: Option<OwnedDeviceId>,
    },
    /// The room key of the envelope is not there (yet).
    MissingRoomKey,
    /// Decryption failed for another reason (it is kept and retried like a missing key).
    DecryptionFailed,
    /// The sender's room membership: `joined` is membership `join`.
    Member {
        /// Membership `join`.
        joined: bool,
    },
    /// The membership could not be read (asked again later).
    MemberUnknown,
    /// The result of a check for new devices.
    NewDevices {
        /// Devices appeared since our last room key share.
        added: bool,
    },
}
