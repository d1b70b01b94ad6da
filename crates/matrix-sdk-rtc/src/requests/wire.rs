//! Wire names and serde shapes of the HTTP layer: paths, query parameters, capability and
//! extension names, error codes, `/versions` flags, and the JSON bodies we send and read.
//!
//! Everything here follows docs/protocol.md §1, §3.2, §6 and §8. The unstable names are the ones
//! Synapse 1.163.2 serves; stable names are read where the protocol lists them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

// --- Paths (ruma path templates: `{name}` segments are filled and percent-encoded) ---

/// `PUT` a message-like event, optionally sticky and/or delayed.
pub(crate) const SEND_EVENT_PATH: &str =
    "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}";
/// `PUT` a state event, optionally delayed.
pub(crate) const SEND_STATE_PATH: &str =
    "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}";
/// `PUT` a delayed event through the dedicated endpoint of the merged MSC4140 (body
/// [`DelayedEventBody`]); not served by Synapse 1.163.2.
pub(crate) const DELAYED_EVENT_PATH: &str =
    "/_matrix/client/v3/rooms/{room_id}/delayed_event/{event_type}/{txn_id}";
/// The same endpoint under the unstable prefix; not served by Synapse 1.163.2 either.
pub(crate) const DELAYED_EVENT_PATH_UNSTABLE: &str = "/_matrix/client/unstable/org.matrix.msc4140/rooms/{room_id}/delayed_event/{event_type}/{txn_id}";
/// `POST` a delayed-event action, stable per-action path of the merged MSC4140 (body `{}`);
/// not served by Synapse 1.163.2.
pub(crate) const DELAYED_ACTION_PATH_STABLE: &str =
    "/_matrix/client/v1/delayed_events/{delay_id}/{action}";
/// `POST` a delayed-event action, current per-action form (body `{}`).
pub(crate) const DELAYED_ACTION_PATH: &str =
    "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/{action}";
/// `POST` a delayed-event action, older form with `{"action": ...}` in the body.
pub(crate) const DELAYED_ACTION_BODY_PATH: &str =
    "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}";
/// `GET` our own scheduled delayed events.
#[cfg(test)]
pub(crate) const DELAYED_LIST_PATH: &str =
    "/_matrix/client/unstable/org.matrix.msc4140/delayed_events";
/// `GET` the server capabilities.
pub(crate) const CAPABILITIES_PATH: &str = "/_matrix/client/v3/capabilities";
/// `GET` the RTC transports the homeserver offers (MSC4143).
pub(crate) const RTC_TRANSPORTS_PATH: &str =
    "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports";
/// `POST` a simplified sliding sync request (the side connection).
pub(crate) const SLIDING_SYNC_PATH: &str =
    "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

// --- Query parameters ---

/// Sticky duration of a sent event, in milliseconds (MSC4354).
pub(crate) const STICKY_DURATION_QUERY: &str = "org.matrix.msc4354.sticky_duration_ms";
/// Delay of a scheduled event, in milliseconds (MSC4140).
pub(crate) const DELAY_QUERY: &str = "org.matrix.msc4140.delay";
/// Long-poll timeout of a sliding sync request, in milliseconds.
pub(crate) const TIMEOUT_QUERY: &str = "timeout";
/// Presence update of a sliding sync request.
pub(crate) const SET_PRESENCE_QUERY: &str = "set_presence";
/// We never change presence from the side connection.
pub(crate) const SET_PRESENCE_OFFLINE: &str = "offline";
/// Sliding sync connection position.
pub(crate) const POS_QUERY: &str = "pos";

// --- Delayed-event actions ---

/// Re-arm the countdown with the original delay.
pub(crate) const ACTION_RESTART: &str = "restart";
/// Never fire.
pub(crate) const ACTION_CANCEL: &str = "cancel";
/// Fire now.
pub(crate) const ACTION_SEND: &str = "send";

// --- `/versions` flags (test for `true`, never for presence) ---

/// Sticky events (MSC4354).
pub(crate) const FLAG_STICKY_EVENTS: &str = "org.matrix.msc4354";
/// Simplified sliding sync (MSC4186 / the `simplified_msc3575` endpoint).
pub(crate) const FLAG_SLIDING_SYNC: &str = "org.matrix.simplified_msc3575";
/// Delayed events (MSC4140), unstable flag.
pub(crate) const FLAG_DELAYED_EVENTS: &str = "org.matrix.msc4140";
/// Delayed events (MSC4140), once accepted.
pub(crate) const FLAG_DELAYED_EVENTS_STABLE: &str = "org.matrix.msc4140.stable";
/// RTC transports endpoint (MSC4143).
pub(crate) const FLAG_RTC_TRANSPORTS: &str = "org.matrix.msc4143";

// --- Capability ---

/// Delayed-events limits, unstable name.
pub(crate) const DELAYED_EVENTS_CAPABILITY: &str = "org.matrix.msc4140.delayed_events";
/// Delayed-events limits, stable name.
pub(crate) const DELAYED_EVENTS_CAPABILITY_STABLE: &str = "m.delayed_events";

// --- Sliding sync extension ---

// The sticky-events extension name, `org.matrix.msc4354.sticky_events` (MSC4480 keeps the
// MSC4354 prefix), appears in the serde renames below.
/// Name of our single sliding sync list.
pub(crate) const SIDE_LIST_NAME: &str = "all";

// --- Error codes and error fields (docs/protocol.md §6.5) ---

/// 429 `M_LIMIT_EXCEEDED` of a delayed send whose message names delayed events: Synapse
/// 1.163.2's answer when the user holds `msc4140_max_delayed_events_per_user` of them ("The
/// maximum number of delayed events has been reached."), not a plain rate limit.
pub(crate) const QUOTA_MESSAGE_WORDS: &str = "delayed events";
/// Synapse 1.163.2: delay above `max_event_delay_duration` (maximum only in the message).
pub(crate) const ERRCODE_DELAY_TOO_LARGE: &str = "ORG.MATRIX.MSC4140_DELAY_TOO_LARGE";
/// Older MSC4140 text: delay above the maximum, with `max_delay`.
pub(crate) const ERRCODE_MAX_DELAY_EXCEEDED: &str = "M_MAX_DELAY_EXCEEDED";
/// Older MSC4140 text: too many scheduled delayed events.
pub(crate) const ERRCODE_MAX_DELAYED_EVENTS_EXCEEDED: &str = "M_MAX_DELAYED_EVENTS_EXCEEDED";
/// `M_UNKNOWN` errors may carry the real code here (older MSC4140 text).
pub(crate) const FIELD_MSC4140_ERRCODE: &str = "org.matrix.msc4140.errcode";
/// Maximum delay next to [`FIELD_MSC4140_ERRCODE`].
pub(crate) const FIELD_MSC4140_MAX_DELAY: &str = "org.matrix.msc4140.max_delay";
/// Maximum delay next to [`ERRCODE_MAX_DELAY_EXCEEDED`].
pub(crate) const FIELD_MAX_DELAY: &str = "max_delay";
/// Rate-limit wait in the error body.
pub(crate) const FIELD_RETRY_AFTER_MS: &str = "retry_after_ms";
/// The generic error code whose extra fields ruma drops.
pub(crate) const ERRCODE_UNKNOWN: &str = "M_UNKNOWN";
/// The merged MSC4140's code for a delay above the maximum (and for a disabled feature),
/// whose extra fields ruma drops too.
pub(crate) const ERRCODE_FORBIDDEN: &str = "M_FORBIDDEN";
/// Error code field.
pub(crate) const FIELD_ERRCODE: &str = "errcode";
/// Error message field.
pub(crate) const FIELD_ERROR: &str = "error";

// --- Bodies ---

/// Answer to an event send: `{event_id}` for an event sent now, `{delay_id}` for a scheduled one.
#[derive(Debug, Deserialize)]
pub(crate) struct SendResponse {
    /// The sent event (no delay, or the server ignored the delay parameter).
    #[serde(default)]
    pub(crate) event_id: Option<String>,
    /// The scheduled event.
    #[serde(default)]
    pub(crate) delay_id: Option<String>,
}

/// Body of the dedicated scheduling endpoint ([`DELAYED_EVENT_PATH`]). The sticky duration
/// travels as the query parameter [`STICKY_DURATION_QUERY`], as on `/send`.
#[derive(Debug, Serialize)]
pub(crate) struct DelayedEventBody<'a> {
    /// The delay, in milliseconds (above 0).
    pub(crate) delay_ms: u64,
    /// Only for a state event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) state_key: Option<&'a str>,
    /// The content as it will be sent.
    pub(crate) content: &'a RawValue,
}

/// Older management form: the action in the body.
#[derive(Debug, Serialize)]
pub(crate) struct DelayedActionBody<'a> {
    /// `restart`, `cancel` or `send`.
    pub(crate) action: &'a str,
}

/// Any JSON object answer whose content we ignore (`{}` from the management endpoints).
#[derive(Debug, Deserialize)]
pub(crate) struct IgnoredResponse {}

#[cfg(test)]
/// The list of our own delayed events, every form seen (docs/protocol.md §6.4, §6.7).
#[derive(Debug, Deserialize)]
pub(crate) struct DelayedListResponse {
    /// Current form.
    #[serde(default)]
    pub(crate) delayed_events: Option<Vec<Box<RawValue>>>,
    /// Older form: the scheduled ones (we ignore `finalised` and `next_batch`).
    #[serde(default)]
    pub(crate) scheduled: Option<Vec<Box<RawValue>>>,
}

#[cfg(test)]
/// One entry of [`DelayedListResponse`], read leniently: numbers as loose JSON, all optional.
#[derive(Debug, Deserialize)]
pub(crate) struct DelayedEventEntry {
    #[serde(default)]
    pub(crate) delay_id: Option<String>,
    #[serde(default)]
    pub(crate) room_id: Option<String>,
    #[serde(default, rename = "type")]
    pub(crate) event_type: Option<String>,
    #[serde(default)]
    pub(crate) state_key: Option<String>,
    #[serde(default)]
    pub(crate) content: Option<Box<RawValue>>,
    /// Current name of the delay length.
    #[serde(default)]
    pub(crate) delay_ms: Option<serde_json::Value>,
    /// Older name of the delay length.
    #[serde(default)]
    pub(crate) delay: Option<serde_json::Value>,
    /// Newest MSC name of the countdown start.
    #[serde(default)]
    pub(crate) scheduled_at: Option<serde_json::Value>,
    /// Synapse name of the countdown start.
    #[serde(default)]
    pub(crate) delayed_since_ts: Option<serde_json::Value>,
    /// Oldest name of the countdown start.
    #[serde(default)]
    pub(crate) running_since: Option<serde_json::Value>,
}

/// `GET /capabilities`, keeping each capability raw so one odd capability cannot fail ours.
#[derive(Debug, Deserialize)]
pub(crate) struct CapabilitiesResponse {
    #[serde(default)]
    pub(crate) capabilities: BTreeMap<String, Box<RawValue>>,
}

/// Longest delay field of the delayed-events capability (missing: no limit).
pub(crate) const CAPABILITY_MAX_DELAY_MS: &str = "max_delay_ms";
/// Most-scheduled field of the delayed-events capability (missing: no limit).
pub(crate) const CAPABILITY_MAX_SCHEDULED: &str = "max_scheduled";

/// `GET .../rtc/transports` (`{}` when none are configured).
#[derive(Debug, Deserialize)]
pub(crate) struct RtcTransportsResponse {
    #[serde(default)]
    pub(crate) rtc_transports: Option<Vec<Box<RawValue>>>,
}

/// The side connection's request body: one list, only the sticky-events extension.
///
/// There is deliberately no way to express the `to_device`, `e2ee`, `account_data`,
/// `receipts` or `typing` extensions here (docs/protocol.md §3.3).
#[derive(Debug, Serialize)]
pub(crate) struct SlidingSyncBody<'a> {
    pub(crate) conn_id: &'a str,
    pub(crate) lists: BTreeMap<&'static str, SlidingSyncList>,
    pub(crate) extensions: SlidingSyncExtensions<'a>,
}

/// Our single list: one room in range, no timeline, no state.
#[derive(Debug, Serialize)]
pub(crate) struct SlidingSyncList {
    pub(crate) ranges: [[u64; 2]; 1],
    pub(crate) timeline_limit: u64,
    pub(crate) required_state: [(); 0],
}

/// The extensions object of the request: sticky events only.
#[derive(Debug, Serialize)]
pub(crate) struct SlidingSyncExtensions<'a> {
    #[serde(rename = "org.matrix.msc4354.sticky_events")]
    pub(crate) sticky_events: StickyExtensionRequest<'a>,
}

/// Request side of the sticky-events extension.
#[derive(Debug, Serialize)]
pub(crate) struct StickyExtensionRequest<'a> {
    pub(crate) enabled: bool,
    pub(crate) limit: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<&'a str>,
}

/// The side connection's response: only `pos` and the extensions are read.
#[derive(Debug, Deserialize)]
pub(crate) struct SlidingSyncResponse {
    pub(crate) pos: String,
    /// Kept raw: read as [`SlidingSyncResponseExtensions`] on its own.
    #[serde(default)]
    pub(crate) extensions: Option<Box<RawValue>>,
}

/// The extensions object of the response, our extension kept raw.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SlidingSyncResponseExtensions {
    #[serde(default, rename = "org.matrix.msc4354.sticky_events")]
    pub(crate) sticky_events: Option<Box<RawValue>>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn side_sync_body_has_only_the_sticky_extension() {
        let body = SlidingSyncBody {
            conn_id: "rtc-sticky",
            lists: BTreeMap::from([(
                SIDE_LIST_NAME,
                SlidingSyncList {
                    ranges: [[0, 0]],
                    timeline_limit: 0,
                    required_state: [],
                },
            )]),
            extensions: SlidingSyncExtensions {
                sticky_events: StickyExtensionRequest {
                    enabled: true,
                    limit: 100,
                    since: Some("sticky_2"),
                },
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "conn_id": "rtc-sticky",
                "lists": { "all": { "ranges": [[0, 0]], "timeline_limit": 0, "required_state": [] } },
                "extensions": { "org.matrix.msc4354.sticky_events":
                    { "enabled": true, "limit": 100, "since": "sticky_2" } }
            })
        );
    }

    #[test]
    fn side_sync_body_omits_since_at_start() {
        let ext = StickyExtensionRequest {
            enabled: true,
            limit: 100,
            since: None,
        };
        assert_eq!(
            serde_json::to_value(&ext).unwrap(),
            serde_json::json!({ "enabled": true, "limit": 100 })
        );
    }

    #[test]
    fn extension_name_in_responses() {
        let json = r#"{"pos":"1","extensions":{"org.matrix.msc4354.sticky_events":{}}}"#;
        let response: SlidingSyncResponse = serde_json::from_str(json).unwrap();
        let extensions: SlidingSyncResponseExtensions =
            serde_json::from_str(response.extensions.unwrap().get()).unwrap();
        assert!(extensions.sticky_events.is_some());
    }

    #[test]
    fn dedicated_schedule_body_shape() {
        let content = serde_json::value::to_raw_value(&serde_json::json!({"a": 1})).unwrap();
        let body = DelayedEventBody {
            delay_ms: 10_000,
            state_key: None,
            content: &content,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"delay_ms":10000,"content":{"a":1}}"#
        );
        let state = DelayedEventBody {
            state_key: Some(""),
            ..body
        };
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            r#"{"delay_ms":10000,"state_key":"","content":{"a":1}}"#
        );
    }

    #[test]
    fn action_body_shape() {
        assert_eq!(
            serde_json::to_string(&DelayedActionBody {
                action: ACTION_RESTART
            })
            .unwrap(),
            r#"{"action":"restart"}"#
        );
    }
}
