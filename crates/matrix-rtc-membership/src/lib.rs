//! MatrixRTC call membership, sans-IO: who is in which call, and our own membership.
//!
//! This crate sits between the sticky-event map (`matrix-sticky-events`, below) and the
//! driver (`matrix-sdk-rtc`, above). It does no IO and never reads a clock: the driver
//! hands it what it received, with the time it was received, and gets back plain values.
//!
//! ```text
//!  sticky map Changes ──▶ ┌──────────────────────────────┐ ──▶ Vec<SessionChange>
//!  legacy state events ─▶ │ RtcMembership                │ ──▶ poll_diagnostic()
//!  room membership ─────▶ │  formats A/B/C → validity →  │ ──▶ poll_member_query()
//!  now (timeouts) ──────▶ │  sessions per (room, slot)   │ ──▶ next_deadline()
//!                         └──────────────────────────────┘
//! ```
//!
//! # The membership model
//!
//! [`RtcMembership`] reads every membership format peers send today (`docs/protocol.md` §5):
//!
//! * **A**: sticky `m.rtc.member` in the newest MSC4143 shape (`member.membership`);
//! * **B**: sticky `org.matrix.msc4143.rtc.member` as matrix-js-sdk sends it, both the
//!   js-sdk 43 `transports` object and the js-sdk 39–42 `rtc_transports` array;
//! * **C**: legacy per-device `org.matrix.msc3401.call.member` state, with every state key
//!   shape; identity comes from the sender and `content.device_id`, never the state key;
//! * **D** (per-user `memberships` arrays) is recognised and ignored with a diagnostic.
//!
//! Each membership passes the validity checklist of `docs/protocol.md` §5.8 at read time: the
//! claimed user is the sender, the sticky key is `member.id`, the slot matches the
//! application, a plaintext join never counts in an encrypted room (a plaintext leave is a
//! leave), the sender is joined to the room and not ignored. Every rejection is reported as
//! a [`Diagnostic`] with a typed [`RejectReason`]. A malformed event only ever affects its own
//! key. A claimed device that differs from the device that encrypted the event is kept but
//! flagged [`Participant::suspicious`].
//!
//! Valid memberships are grouped into [`Session`]s per `(room, slot)` (legacy `call_id ""`
//! is the room call `m.call#ROOM`). [`Participant`]s are keyed by `(user, device, member
//! ID)` and ordered oldest first; a sticky member keeps its creation time across refreshes.
//! When one device has both a sticky and a legacy membership, the sticky one is shown. Each
//! input returns [`SessionChange`]s whose cost is proportional to the change, not to the
//! size of the room.
//!
//! Outbound content for our own membership is built by [`MembershipContent`]: the js-sdk 43
//! sticky join with both sticky key names, its leave, and the legacy state shape.
//!
//! ```
//! use std::{sync::Arc, time::Instant};
//!
//! use matrix_rtc_membership::{LeftReason, RtcMembership, SessionChange};
//! use matrix_sticky_events::{Change, EventOrigin, RemovalReason, StickyEvent, StickyMeta};
//! use ruma_common::{owned_event_id, owned_room_id, owned_user_id};
//! use serde_json::value::RawValue;
//!
//! let room_id = owned_room_id!("!room:example.org");
//! let alice = owned_user_id!("@alice:example.org");
//! let mut model = RtcMembership::new();
//! // The driver tells the model who is joined to the room.
//! let _ = model.handle_room_member(&room_id, &alice, true);
//!
//! // A js-sdk 43 join, as the sticky map reports it.
//! let content = r#"{"slot_id":"m.call#ROOM","application":{"type":"m.call"},
//!     "member":{"id":"m1","user_id":"@alice:example.org","device_id":"DEVA"},
//!     "transports":{"published":[{"type":"livekit","livekit_service_url":"https://lk.example.org"}],
//!     "can_subscribe":["livekit"]},"versions":[],"msc4354_sticky_key":"m1"}"#;
//! let now = Instant::now();
//! let join = Arc::new(StickyEvent {
//!     meta: StickyMeta {
//!         room_id: room_id.clone(),
//!         event_id: owned_event_id!("$join"),
//!         sender: alice.clone(),
//!         origin_server_ts: 1_795_668_868_679,
//!         duration_ms: 3_600_000,
//!         expires_at: now,
//!         expires_wall_ms: 1_795_672_468_679,
//!     },
//!     event_type: "org.matrix.msc4143.rtc.member".to_owned(),
//!     sticky_key: Some("m1".to_owned()),
//!     key_only: false,
//!     content: RawValue::from_string(content.to_owned()).unwrap(),
//!     origin: EventOrigin::Plaintext,
//! });
//!
//! let changes = model.handle_sticky_changes(&[Change::Added(join.clone())]);
//! assert!(matches!(&changes[0], SessionChange::SessionStarted { slot_id, .. } if slot_id == "m.call#ROOM"));
//! let SessionChange::Joined(alice_call) = &changes[1] else { panic!("expected a join") };
//! assert_eq!(alice_call.device_id, "DEVA");
//! assert_eq!(alice_call.own_transport().map(|t| t.transport_type()), Some("livekit"));
//!
//! let session = model.session(&room_id, "m.call#ROOM").unwrap();
//! assert_eq!(session.participants().count(), 1);
//!
//! // The sticky map later reports that the event expired.
//! let changes = model.handle_sticky_changes(&[Change::Removed { old: join, reason: RemovalReason::Expired }]);
//! assert!(matches!(&changes[0], SessionChange::Left { reason: LeftReason::Expired, .. }));
//! assert!(matches!(&changes[1], SessionChange::SessionEnded { .. }));
//! ```
//!
//! # The own-membership state machine
//!
//! [`OwnMembership`] keeps our own device in a call; see its documentation.
#![forbid(unsafe_code)]

// --- membership model (formats, validity, sessions, identity) ---
mod content;
mod diagnostic;
mod field;
mod identity;
mod model;
mod parse;
mod participant;
mod session;
mod transport;
pub mod wire;

#[doc(inline)]
pub use self::{
    content::{MembershipContent, legacy_leave_content, sticky_leave_content},
    diagnostic::{Diagnostic, MemberQuery, RejectReason},
    identity::{legacy_livekit_identity, livekit_identity},
    model::RtcMembership,
    participant::{CallIntent, MembershipFormat, Participant},
    session::{LeftReason, MAX_LEAVE_CODE_LEN, Session, SessionChange},
    transport::{FocusSelection, Transport},
};

// --- own-membership state machine ---
mod own;

#[doc(inline)]
pub use self::own::{
    DelayId, JoinConfig, JoinError, OwnAction, OwnError, OwnEvent, OwnMembership,
    OwnMembershipConfig, OwnRequest, OwnRequestKind, OwnStatus, RejoinReason, RequestId,
    RequestOutcome, ServerCapabilities, TxnId, UnavailableReason,
};
