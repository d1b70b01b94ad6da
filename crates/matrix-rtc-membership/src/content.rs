//! Outbound member content: what today's clients read (`docs/protocol.md` §5.4, §5.6).
use ruma_common::{OwnedDeviceId, OwnedUserId};
use serde_json::Value;

use crate::{
    CallIntent, FocusSelection, Transport,
    wire::{
        self, ApplicationOut, FocusActiveOut, LegacyJoinOut, MemberOut, StickyJoinOut,
        StickyLeaveOut, TransportsOut,
    },
};

/// Our own membership of a slot, from which every outbound content is built.
///
/// ```
/// use matrix_rtc_membership::{MembershipContent, Transport};
/// use ruma_common::{owned_device_id, owned_user_id};
///
/// let ours = MembershipContent::room_call(
///     owned_user_id!("@alice:example.org"),
///     owned_device_id!("DEVICEA"),
///     "c0ffee00-0000-4000-8000-000000000001",
///     Transport::livekit("https://livekit.example.org"),
/// );
/// let join = ours.sticky_join();
/// assert_eq!(join["sticky_key"], join["msc4354_sticky_key"]);
/// assert_eq!(ours.sticky_leave()["slot_id"], "m.call#ROOM");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MembershipContent {
    /// Slot ID (`{application}#{name}`).
    pub slot_id: String,
    /// Application type (`m.call`).
    pub application: String,
    /// `m.call.intent`, if any.
    pub call_intent: Option<CallIntent>,
    /// Member ID: a fresh UUIDv4 per user-initiated join (`docs/protocol.md` §5.6).
    pub member_id: String,
    /// Our user.
    pub user_id: OwnedUserId,
    /// Our device.
    pub device_id: OwnedDeviceId,
    /// The transport we publish on.
    pub transport: Transport,
}

impl MembershipContent {
    /// Our membership of the room call (`m.call#ROOM`).
    pub fn room_call(
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
        member_id: impl Into<String>,
        transport: Transport,
    ) -> Self {
        Self {
            slot_id: wire::ROOM_CALL_SLOT.to_owned(),
            application: wire::CALL_APPLICATION.to_owned(),
            call_intent: None,
            member_id: member_id.into(),
            user_id,
            device_id,
            transport,
        }
    }

    /// The same membership with `m.call.intent` set.
    pub fn with_call_intent(mut self, call_intent: CallIntent) -> Self {
        self.call_intent = Some(call_intent);
        self
    }

    /// Sticky join (and refresh) content in the js-sdk 43 shape, with both sticky key names
    /// and no relation. Send it as `org.matrix.msc4143.rtc.member`.
    pub fn sticky_join(&self) -> Value {
        let transport = self.transport.to_json();
        to_value(&StickyJoinOut {
            slot_id: &self.slot_id,
            application: ApplicationOut {
                app_type: &self.application,
                call_intent: self.call_intent.as_ref().map(CallIntent::as_str),
            },
            member: MemberOut {
                id: &self.member_id,
                user_id: self.user_id.as_str(),
                device_id: self.device_id.as_str(),
            },
            transports: TransportsOut {
                published: [&transport],
                can_subscribe: &[wire::TRANSPORT_LIVEKIT],
            },
            versions: [],
            msc4354_sticky_key: &self.member_id,
            sticky_key: &self.member_id,
        })
    }

    /// Sticky leave content (explicit and delayed): js-sdk 43's `{slot_id,
    /// msc4354_sticky_key}` plus the stable `sticky_key`.
    pub fn sticky_leave(&self) -> Value {
        sticky_leave_content(&self.slot_id, &self.member_id)
    }

    /// Legacy (format C) join content. `created_ts` is the `origin_server_ts` of our first
    /// join event (`None` on the first join), `expires_ms` is relative to it.
    pub fn legacy_join(
        &self,
        created_ts: Option<u64>,
        expires_ms: u64,
        focus_selection: &FocusSelection,
    ) -> Value {
        let focus = self.transport.to_json();
        to_value(&LegacyJoinOut {
            application: &self.application,
            call_id: self.legacy_call_id(),
            scope: wire::SCOPE_ROOM,
            device_id: self.device_id.as_str(),
            membership_id: &self.member_id,
            created_ts,
            expires: expires_ms,
            focus_active: FocusActiveOut {
                focus_type: self.transport.transport_type(),
                focus_selection: focus_selection.as_str(),
            },
            foci_preferred: [&focus],
            call_intent: self.call_intent.as_ref().map(CallIntent::as_str),
        })
    }

    /// The legacy state key js-sdk ≥ 38 uses: `_{user}_{device}_{application}{call_id}`,
    /// without the leading `_` in rooms with owned state (MSC3757 / MSC3779 room versions).
    pub fn legacy_state_key(&self, owned_state_room: bool) -> String {
        let key = format!(
            "{}_{}_{}{}",
            self.user_id,
            self.device_id,
            self.application,
            self.legacy_call_id()
        );
        if owned_state_room {
            key
        } else {
            format!("_{key}")
        }
    }

    /// The legacy `call_id`: the slot name, empty for the room call.
    fn legacy_call_id(&self) -> &str {
        let name = self
            .slot_id
            .strip_prefix(self.application.as_str())
            .and_then(|rest| rest.strip_prefix(wire::SLOT_SEPARATOR))
            .unwrap_or(&self.slot_id);
        if self.application == wire::CALL_APPLICATION && name == wire::ROOM_SLOT_NAME {
            ""
        } else {
            name
        }
    }
}

/// Sticky leave content for `member_id` in `slot_id`:
/// `{slot_id, msc4354_sticky_key, sticky_key}`.
pub fn sticky_leave_content(slot_id: &str, member_id: &str) -> Value {
    to_value(&StickyLeaveOut {
        slot_id,
        msc4354_sticky_key: member_id,
        sticky_key: member_id,
    })
}

/// Legacy (format C) leave content: `{}` on the state key we joined with.
pub fn legacy_leave_content() -> Value {
    Value::Object(serde_json::Map::new())
}

fn to_value(content: &impl serde::Serialize) -> Value {
    // Serialising these plain structs into a `Value` cannot fail (string keys, no floats);
    // an impossible failure yields `null` rather than a panic.
    serde_json::to_value(content).unwrap_or(Value::Null)
}
