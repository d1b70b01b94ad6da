//! Events across rooms: calls starting and ending, membership changes, diagnostics. None of
//! these streams loses silently: a listener that falls behind gets a resync (or, for
//! diagnostics, a count of what it missed) instead of the items it missed.
use matrix_sdk_rtc as rtc;

use crate::{CallId, Participant};

/// A call (one slot of one room) started or ended; or the listener fell behind.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum CallEvent {
    /// The first participant appeared.
    Started {
        /// The call.
        call: CallId,
    },
    /// The last participant left.
    Ended {
        /// The call.
        call: CallId,
    },
    /// The listener fell behind and missed `missed` events: these are the calls active now.
    /// Forget what you knew and start again from here.
    Resync {
        /// How many events were skipped.
        missed: u64,
        /// Every active call, sorted.
        active: Vec<CallId>,
    },
}

impl CallEvent {
    /// The mirror of `event`; `None` for a kind this version does not know.
    pub(crate) fn convert(event: rtc::CallEvent) -> Option<Self> {
        Some(match event {
            rtc::CallEvent::Started { call } => Self::Started { call: call.into() },
            rtc::CallEvent::Ended { call } => Self::Ended { call: call.into() },
            rtc::CallEvent::Resync { missed, active } => Self::Resync {
                missed,
                active: active.into_iter().map(Into::into).collect(),
            },
            _ => return None,
        })
    }
}

/// Why a participant left a call.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum LeftReason {
    /// An explicit leave (another client's delayed leave looks the same).
    LeaveEvent,
    /// Our own delayed leave, fired by the server (the dead-man switch).
    DelayedLeaveFired,
    /// The membership expired without a refresh.
    Expired,
    /// The membership event was redacted.
    Redacted,
    /// The member left the room.
    SenderLeftRoom,
    /// The member is now ignored.
    SenderIgnored,
    /// Dropped to stay within memory caps.
    Evicted,
    /// We left the room.
    RoomForgotten,
    /// Another membership of the same device took its place.
    Superseded,
    /// Its event was replaced by content that is not a valid membership.
    Rejected {
        /// Why that content was rejected.
        reason: String,
    },
    /// The slot was closed.
    SlotClosed,
    /// A reason this version of the bindings does not know.
    Other {
        /// Its debug description.
        description: String,
    },
}

impl From<rtc::LeftReason> for LeftReason {
    fn from(reason: rtc::LeftReason) -> Self {
        match reason {
            rtc::LeftReason::LeaveEvent => Self::LeaveEvent,
            rtc::LeftReason::DelayedLeaveFired => Self::DelayedLeaveFired,
            rtc::LeftReason::Expired => Self::Expired,
            rtc::LeftReason::Redacted => Self::Redacted,
            rtc::LeftReason::SenderLeftRoom => Self::SenderLeftRoom,
            rtc::LeftReason::SenderIgnored => Self::SenderIgnored,
            rtc::LeftReason::Evicted => Self::Evicted,
            rtc::LeftReason::RoomForgotten => Self::RoomForgotten,
            rtc::LeftReason::Superseded => Self::Superseded,
            rtc::LeftReason::Rejected(reason) => Self::Rejected {
                reason: reason.to_string(),
            },
            rtc::LeftReason::SlotClosed => Self::SlotClosed,
            other => Self::Other {
                description: format!("{other:?}"),
            },
        }
    }
}

/// One change of the calls and their participants, across rooms.
// uniffi lowers enums into a byte buffer by value and has no `Box` for records: the size of
// the Rust value only matters for the instant of the conversion.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SessionChange {
    /// A call got its first participant.
    SessionStarted {
        /// Room of the call.
        room_id: String,
        /// Slot of the call.
        slot_id: String,
    },
    /// A participant joined.
    Joined {
        /// Who.
        participant: Participant,
    },
    /// A participant refreshed or changed its membership.
    Updated {
        /// Before.
        old: Participant,
        /// After.
        new: Participant,
    },
    /// A participant left.
    Left {
        /// Who.
        participant: Participant,
        /// Why.
        reason: LeftReason,
    },
    /// A call lost its last participant.
    SessionEnded {
        /// Room of the call.
        room_id: String,
        /// Slot of the call.
        slot_id: String,
    },
}

impl SessionChange {
    /// The mirror of `change`; `None` for a kind this version does not know.
    pub(crate) fn convert(change: rtc::SessionChange) -> Option<Self> {
        Some(match change {
            rtc::SessionChange::SessionStarted { room_id, slot_id } => Self::SessionStarted {
                room_id: room_id.to_string(),
                slot_id,
            },
            rtc::SessionChange::Joined(participant) => Self::Joined {
                participant: participant.into(),
            },
            rtc::SessionChange::Updated { old, new } => Self::Updated {
                old: old.into(),
                new: new.into(),
            },
            rtc::SessionChange::Left {
                participant,
                reason,
            } => Self::Left {
                participant: participant.into(),
                reason: reason.into(),
            },
            rtc::SessionChange::SessionEnded { room_id, slot_id } => Self::SessionEnded {
                room_id: room_id.to_string(),
                slot_id,
            },
            _ => return None,
        })
    }
}

/// One call and its participants (oldest first), in a [`SessionUpdate::Resync`].
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CallParticipants {
    /// The call.
    pub call: CallId,
    /// Its participants, oldest first.
    pub participants: Vec<Participant>,
}

/// What a [`SessionChangesListener`](crate::SessionChangesListener) receives: one membership
/// change, or, when it fell behind, the whole current state.
#[allow(clippy::large_enum_variant)] // as for `SessionChange`
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SessionUpdate {
    /// One membership change.
    Change {
        /// The change.
        change: SessionChange,
    },
    /// The listener fell behind and missed `missed` changes: these are the participants of
    /// every active call now. Forget what you knew and start again from here; the changes
    /// that follow apply on top of it.
    Resync {
        /// How many changes were skipped.
        missed: u64,
        /// Every active call with its participants, sorted by call.
        calls: Vec<CallParticipants>,
    },
}

impl SessionUpdate {
    /// The mirror of `update`; `None` for a kind this version does not know.
    pub(crate) fn convert(update: rtc::SessionUpdate) -> Option<Self> {
        Some(match update {
            rtc::SessionUpdate::Change(change) => Self::Change {
                change: SessionChange::convert(change)?,
            },
            rtc::SessionUpdate::Resync { missed, calls } => Self::Resync {
                missed,
                calls: calls
                    .into_iter()
                    .map(|(call, participants)| CallParticipants {
                        call: call.into(),
                        participants: participants.into_iter().map(Into::into).collect(),
                    })
                    .collect(),
            },
            _ => return None,
        })
    }
}

/// Which layer rejected an event, or which bound dropped something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum DiagnosticKind {
    /// The sticky-event layer (malformed, or not sticky).
    Sticky,
    /// A part of a sticky-events response could not be read (a room, or the whole envelope);
    /// the rest of the response counted. `room_id` is the room key as sent, when the defect
    /// is about one room.
    MalformedBatch,
    /// The membership model (an invalid, ignored or flagged membership).
    Membership,
    /// Encryption: an encrypted membership waits for its room key (it counts once the key
    /// arrives).
    AwaitingRoomKey,
    /// A memory cap dropped events of `sender` (`cap` says which, `dropped` how many so far).
    /// Reported at the 1st, 10th, 100th, ... drop, so a flood costs a handful of these.
    Capped,
    /// A layer this version of the bindings does not know.
    Other,
}

/// Which memory cap dropped events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Cap {
    /// The sticky map's caps (per sender, or per room where the sender using the most is cut
    /// first).
    StickyMap,
    /// Encrypted events waiting for their room key, per sender and room.
    ParkedPerSender,
    /// Encrypted events waiting for their room key, per room (the sender holding the most
    /// loses one).
    ParkedPerRoom,
    /// Encrypted events waiting for their room key, in all (the room holding the most loses
    /// one).
    ParkedTotal,
    /// A cap this version of the bindings does not know.
    Other,
}

impl From<rtc::Cap> for Cap {
    fn from(cap: rtc::Cap) -> Self {
        match cap {
            rtc::Cap::StickyMap => Self::StickyMap,
            rtc::Cap::ParkedPerSender => Self::ParkedPerSender,
            rtc::Cap::ParkedPerRoom => Self::ParkedPerRoom,
            rtc::Cap::ParkedTotal => Self::ParkedTotal,
            _ => Self::Other,
        }
    }
}

/// An event that did not count (or counts with a flag), or what a cap dropped, and why: for
/// debugging, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Diagnostic {
    /// Which layer rejected it.
    pub kind: DiagnosticKind,
    /// Room it arrived in, when known.
    pub room_id: Option<String>,
    /// The event, when it had a readable ID.
    pub event_id: Option<String>,
    /// Its sender, when known.
    pub sender: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// `Capped` only: which cap.
    pub cap: Option<Cap>,
    /// `Capped` only: how many events of this sender the cap dropped so far.
    pub dropped: Option<u64>,
}

impl From<rtc::Diagnostic> for Diagnostic {
    fn from(diagnostic: rtc::Diagnostic) -> Self {
        let event_id = diagnostic.event_id().map(ToString::to_string);
        let reason = match &diagnostic {
            rtc::Diagnostic::Sticky { rejection, .. }
            | rtc::Diagnostic::MalformedBatch { rejection, .. } => rejection.to_string(),
            rtc::Diagnostic::Membership(membership) => membership.reason.to_string(),
            rtc::Diagnostic::AwaitingRoomKey { .. } => {
                "waiting for the room key to decrypt it".to_owned()
            }
            rtc::Diagnostic::Capped { cap, dropped, .. } => {
                format!("a memory cap ({cap:?}) dropped {dropped} events of this sender")
            }
            rtc::Diagnostic::RedactionRefused {
                redacts, reason, ..
            } => format!("the redaction of {redacts} did not count: {reason}"),
            other => format!("{other:?}"),
        };
        let diagnostic_of = |kind, room_id: Option<String>, sender: Option<String>| Self {
            kind,
            room_id,
            event_id: event_id.clone(),
            sender,
            reason: reason.clone(),
            cap: None,
            dropped: None,
        };
        match &diagnostic {
            rtc::Diagnostic::Sticky { room_id, .. } => {
                diagnostic_of(DiagnosticKind::Sticky, Some(room_id.to_string()), None)
            }
            rtc::Diagnostic::MalformedBatch { room, .. } => {
                diagnostic_of(DiagnosticKind::MalformedBatch, room.clone(), None)
            }
            rtc::Diagnostic::Membership(membership) => diagnostic_of(
                DiagnosticKind::Membership,
                Some(membership.room_id.to_string()),
                membership.sender.as_ref().map(ToString::to_string),
            ),
            rtc::Diagnostic::AwaitingRoomKey {
                room_id, sender, ..
            } => diagnostic_of(
                DiagnosticKind::AwaitingRoomKey,
                Some(room_id.to_string()),
                Some(sender.to_string()),
            ),
            rtc::Diagnostic::Capped {
                room_id,
                sender,
                cap,
                dropped,
            } => Self {
                cap: Some((*cap).into()),
                dropped: Some(*dropped),
                ..diagnostic_of(
                    DiagnosticKind::Capped,
                    Some(room_id.to_string()),
                    Some(sender.to_string()),
                )
            },
            rtc::Diagnostic::RedactionRefused {
                room_id, redactor, ..
            } => diagnostic_of(
                DiagnosticKind::Other,
                Some(room_id.to_string()),
                Some(redactor.to_string()),
            ),
            _ => diagnostic_of(DiagnosticKind::Other, None, None),
        }
    }
}

/// What a [`DiagnosticsListener`](crate::DiagnosticsListener) receives: a diagnostic, or, when
/// it fell behind, how many it missed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum DiagnosticEvent {
    /// Why something did not count.
    Reported {
        /// The diagnostic.
        diagnostic: Diagnostic,
    },
    /// The listener fell behind: this many diagnostics were skipped.
    Missed {
        /// How many.
        missed: u64,
    },
}

impl DiagnosticEvent {
    /// The mirror of `event`; `None` for a kind this version does not know.
    pub(crate) fn convert(event: rtc::DiagnosticEvent) -> Option<Self> {
        Some(match event {
            rtc::DiagnosticEvent::Diagnostic(diagnostic) => Self::Reported {
                diagnostic: diagnostic.into(),
            },
            rtc::DiagnosticEvent::Missed { missed } => Self::Missed { missed },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Instant};

    use eyeball_im::Vector;
    use matrix_sdk::ruma::{owned_room_id, owned_user_id, room_id};
    use matrix_sdk_rtc as rtc;

    use super::{
        CallEvent, CallParticipants, Cap, Diagnostic, DiagnosticEvent, DiagnosticKind,
        SessionChange, SessionUpdate,
    };
    use crate::{CallId, Participant};

    /// One real participant, read by the library's offline path from a js-sdk membership.
    fn participant() -> Arc<rtc::Participant> {
        let response = r#"{
            "rooms": { "!room:example.org": { "events": [{
                "type": "org.matrix.msc4143.rtc.member",
                "event_id": "$member",
                "sender": "@alice:example.org",
                "origin_server_ts": 1795668532837,
                "msc4354_sticky": { "duration_ms": 3600000 },
                "unsigned": { "msc4354_sticky_duration_ttl_ms": 3600000 },
                "content": {
                    "application": { "type": "m.call" },
                    "slot_id": "m.call#ROOM",
                    "member": { "id": "m1", "user_id": "@alice:example.org", "device_id": "DEV" },
                    "msc4354_sticky_key": "m1",
                    "rtc_transports": [{ "type": "livekit", "livekit_service_url": "https://lk.invalid" }],
                    "versions": []
                }
            }]}},
            "next_batch": "sticky_1"
        }"#;
        let mut ingest = rtc::OfflineIngest::new(rtc::Limits::default());
        let receipt = rtc::Receipt {
            instant: Instant::now(),
            wall_ms: 1_795_668_533_000,
        };
        ingest
            .ingest_response(response, receipt)
            .expect("a response object");
        let call = rtc::CallId::room_call(room_id!("!room:example.org"));
        ingest.call(&call).participants()[0].clone()
    }

    fn call() -> rtc::CallId {
        rtc::CallId::room_call(room_id!("!room:example.org"))
    }

    fn ffi_call() -> CallId {
        CallId {
            room_id: "!room:example.org".to_owned(),
            slot_id: "m.call#ROOM".to_owned(),
        }
    }

    #[test]
    fn call_events_and_their_resync_convert() {
        assert_eq!(
            CallEvent::convert(rtc::CallEvent::Started { call: call() }),
            Some(CallEvent::Started { call: ffi_call() })
        );
        assert_eq!(
            CallEvent::convert(rtc::CallEvent::Ended { call: call() }),
            Some(CallEvent::Ended { call: ffi_call() })
        );
        assert_eq!(
            CallEvent::convert(rtc::CallEvent::Resync {
                missed: 1500,
                active: vec![call()],
            }),
            Some(CallEvent::Resync {
                missed: 1500,
                active: vec![ffi_call()],
            })
        );
    }

    #[test]
    fn session_updates_and_their_resync_convert() {
        let alice = participant();
        let joined = SessionUpdate::convert(rtc::SessionUpdate::Change(
            rtc::SessionChange::Joined(alice.clone()),
        ));
        assert_eq!(
            joined,
            Some(SessionUpdate::Change {
                change: SessionChange::Joined {
                    participant: Participant::from(alice.clone()),
                },
            })
        );
        let resync = SessionUpdate::convert(rtc::SessionUpdate::Resync {
            missed: 2048,
            calls: vec![(call(), Vector::from(vec![alice.clone()]))],
        });
        let Some(SessionUpdate::Resync { missed, calls }) = resync else {
            panic!("a resync: {resync:?}");
        };
        assert_eq!(missed, 2048);
        assert_eq!(
            calls,
            vec![CallParticipants {
                call: ffi_call(),
                participants: vec![Participant::from(alice)],
            }]
        );
        assert_eq!(calls[0].participants[0].user_id, "@alice:example.org");
        assert_eq!(calls[0].participants[0].member_id, "m1");
    }

    #[test]
    fn diagnostics_of_every_new_kind_and_the_missed_count_convert() {
        let capped = rtc::Diagnostic::Capped {
            room_id: owned_room_id!("!room:example.org"),
            sender: owned_user_id!("@flood:example.org"),
            cap: rtc::Cap::StickyMap,
            dropped: 10,
        };
        let Some(DiagnosticEvent::Reported { diagnostic }) =
            DiagnosticEvent::convert(rtc::DiagnosticEvent::Diagnostic(capped))
        else {
            panic!("a reported diagnostic");
        };
        assert_eq!(diagnostic.kind, DiagnosticKind::Capped);
        assert_eq!(diagnostic.room_id.as_deref(), Some("!room:example.org"));
        assert_eq!(diagnostic.sender.as_deref(), Some("@flood:example.org"));
        assert_eq!(diagnostic.cap, Some(Cap::StickyMap));
        assert_eq!(diagnostic.dropped, Some(10));
        assert!(diagnostic.reason.contains("dropped 10"), "{diagnostic:?}");

        let malformed = Diagnostic::from(rtc::Diagnostic::MalformedBatch {
            room: Some("not a room id".to_owned()),
            rejection: rtc::Rejection::NotAnObject,
        });
        assert_eq!(
            malformed,
            Diagnostic {
                kind: DiagnosticKind::MalformedBatch,
                room_id: Some("not a room id".to_owned()),
                event_id: None,
                sender: None,
                reason: "not a json object".to_owned(),
                cap: None,
                dropped: None,
            }
        );
        let envelope = Diagnostic::from(rtc::Diagnostic::MalformedBatch {
            room: None,
            rejection: rtc::Rejection::NotJson,
        });
        assert_eq!(envelope.room_id, None);

        assert_eq!(
            DiagnosticEvent::convert(rtc::DiagnosticEvent::Missed { missed: 7 }),
            Some(DiagnosticEvent::Missed { missed: 7 })
        );
    }
}
