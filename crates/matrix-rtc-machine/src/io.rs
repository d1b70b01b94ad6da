//! The requests in flight: what each one is for, so that its outcome reaches the part of the
//! machine that asked.
use std::{
    collections::{BTreeMap, VecDeque},
    time::Instant,
};

use ruma_common::{OwnedEventId, OwnedRoomId, OwnedUserId};
use tracing::trace;

use crate::{CallId, Request, RequestId, RequestKind};

/// Who asked for a request.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    /// The own-membership machine of a call (its own request id).
    Own {
        call: CallId,
        id: matrix_rtc_membership::RequestId,
    },
    /// Ending a membership of an earlier run.
    Previous { call: CallId },
    /// Decrypting a parked envelope.
    Decrypt { event_id: OwnedEventId },
    /// A sender's room membership.
    Member {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
    },
    /// A check for new devices.
    Devices { room_id: OwnedRoomId },
}

/// Requests to hand out and requests in flight.
#[derive(Debug, Default)]
pub(crate) struct Io {
    next: u64,
    pending: BTreeMap<RequestId, Pending>,
    outbox: VecDeque<Request>,
}

impl Io {
    /// Queues a request for the pump.
    pub(crate) fn emit(
        &mut self,
        kind: RequestKind,
        deadline: Option<Instant>,
        pending: Pending,
    ) -> RequestId {
        self.next += 1;
        let id = RequestId(self.next);
        trace!(request = %id, ?pending, "request");
        self.pending.insert(id, pending);
        self.outbox.push_back(Request { id, deadline, kind });
        id
    }

    pub(crate) fn poll(&mut self) -> Option<Request> {
        self.outbox.pop_front()
    }

    /// Who asked for `id`; `None` for an unknown or already answered request.
    pub(crate) fn answer(&mut self, id: RequestId) -> Option<Pending> {
        self.pending.remove(&id)
    }

    /// Requests handed out or queued and not answered yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.pending.len()
    }
}
