//! The side connection's simplified sliding sync request (docs/protocol.md §3.2, §3.3).
//!
//! The request enables one list covering every room and only the sticky-events extension. The
//! answer is read leniently: everything but `pos` and our extension is skipped, and the
//! extension goes through the one sticky parser, where a malformed part costs only itself.

use std::collections::BTreeMap;

use matrix_sticky_events::{BatchError, Receipt, StickyBatch, parse_sticky_batch};
use serde_json::value::{RawValue, to_raw_value};
use tracing::warn;

use super::{
    RequestError,
    endpoint::{Answer, endpoint},
    wire::{self, SlidingSyncResponse, SlidingSyncResponseExtensions},
};

endpoint!(
    /// `POST .../org.matrix.simplified_msc3575/sync`.
    SlidingSyncEndpoint: POST wire::SLIDING_SYNC_PATH => SlidingSyncResponse
);

/// What the side connection sends: the connection id and the two tokens it carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncRequest<'a> {
    pub(crate) conn_id: &'a str,
    pub(crate) pos: Option<&'a str>,
    pub(crate) since: Option<&'a str>,
    pub(crate) limit: u64,
    pub(crate) timeout_ms: u64,
}

impl SyncRequest<'_> {
    /// The encoded query string.
    pub(crate) fn query(&self) -> Result<String, RequestError> {
        let timeout = self.timeout_ms.to_string();
        let mut query = vec![
            (wire::TIMEOUT_QUERY, timeout.as_str()),
            (wire::SET_PRESENCE_QUERY, wire::SET_PRESENCE_OFFLINE),
        ];
        if let Some(pos) = self.pos {
            query.push((wire::POS_QUERY, pos));
        }
        super::encode_query(&query)
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Result<Box<RawValue>, RequestError> {
        let body = wire::SlidingSyncBody {
            conn_id: self.conn_id,
            lists: BTreeMap::from([(
                wire::SIDE_LIST_NAME,
                wire::SlidingSyncList {
                    ranges: [[0, 0]],
                    timeline_limit: 0,
                    required_state: [],
                },
            )]),
            extensions: wire::SlidingSyncExtensions {
                sticky_events: wire::StickyExtensionRequest {
                    enabled: true,
                    limit: self.limit,
                    since: self.since,
                },
            },
        };
        to_raw_value(&body).map_err(|error| RequestError::Other(error.to_string()))
    }
}

/// One answer of the side connection.
#[derive(Debug)]
pub(crate) struct SyncPage {
    /// The connection position to send back as `pos`.
    pub(crate) pos: String,
    /// Our extension, parsed by the one sticky parser of the workspace
    /// ([`parse_sticky_batch`]): every event on its own, a bad part costing only itself.
    /// Empty when the extension is absent (nothing new).
    pub(crate) batch: StickyBatch,
}

impl SyncPage {
    /// Reads our extension out of an answer.
    pub(crate) fn from_answer(answer: Answer<SlidingSyncResponse>) -> Self {
        let Answer {
            body,
            received_at,
            received_wall_ms,
        } = answer;
        let receipt = Receipt::new(received_at, received_wall_ms);
        let batch = body
            .extensions
            .and_then(|raw| {
                match serde_json::from_str::<SlidingSyncResponseExtensions>(raw.get()) {
                    Ok(extensions) => extensions.sticky_events,
                    Err(error) => {
                        warn!(%error, "ignoring malformed sliding sync extensions");
                        None
                    }
                }
            })
            .map(|raw| {
                parse_sticky_batch(raw.get(), receipt).unwrap_or_else(|reason| {
                    warn!(%reason, "ignoring a malformed sticky-events extension response");
                    StickyBatch {
                        errors: vec![BatchError { room: None, reason }],
                        ..StickyBatch::default()
                    }
                })
            })
            .unwrap_or_default();
        Self {
            pos: body.pos,
            batch,
        }
    }

    /// The extension's `next_batch`, to send back as `since`; `None` means keep the old one.
    pub(crate) fn next_batch(&self) -> Option<&str> {
        self.batch.next_batch.as_deref()
    }

    /// How many events the server delivered in this page (for paging against `limit`).
    pub(crate) fn event_count(&self) -> usize {
        self.batch.event_count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::{SyncPage, SyncRequest};
    use crate::requests::{endpoint::Answer, wire::SlidingSyncResponse};

    fn page(json: &str) -> SyncPage {
        let body: SlidingSyncResponse = serde_json::from_str(json).unwrap();
        SyncPage::from_answer(Answer {
            body,
            received_at: Instant::now(),
            received_wall_ms: 7,
        })
    }

    #[test]
    fn query_encodes_pos() {
        let request = SyncRequest {
            conn_id: "c",
            pos: Some("1/s8_1 &x"),
            since: None,
            limit: 100,
            timeout_ms: 30_000,
        };
        assert_eq!(
            request.query().unwrap(),
            "timeout=30000&set_presence=offline&pos=1%2Fs8_1+%26x"
        );
        let fresh = SyncRequest {
            pos: None,
            timeout_ms: 0,
            ..request
        };
        assert_eq!(fresh.query().unwrap(), "timeout=0&set_presence=offline");
    }

    #[test]
    fn body_carries_since_only_when_known() {
        let request = SyncRequest {
            conn_id: "c",
            pos: None,
            since: Some("sticky_2"),
            limit: 5,
            timeout_ms: 0,
        };
        let body: serde_json::Value = serde_json::from_str(request.body().unwrap().get()).unwrap();
        assert_eq!(
            body["extensions"]["org.matrix.msc4354.sticky_events"]["since"],
            "sticky_2"
        );
        assert_eq!(
            body["extensions"]["org.matrix.msc4354.sticky_events"]["limit"],
            5
        );
        assert_eq!(body["extensions"].as_object().unwrap().len(), 1);
        let request = SyncRequest {
            since: None,
            ..request
        };
        let body: serde_json::Value = serde_json::from_str(request.body().unwrap().get()).unwrap();
        assert!(
            body["extensions"]["org.matrix.msc4354.sticky_events"]
                .get("since")
                .is_none()
        );
    }

    #[test]
    fn synapse_answer() {
        let page = page(
            r#"{"pos":"1/s8","lists":{"all":{"count":1}},"rooms":{"!r":{"initial":true}},
            "extensions":{"org.matrix.msc4354.sticky_events":{"rooms":{"!r:x":{"events":[
              {"type":"m.y","event_id":"$e","content":{"msc4354_sticky_key":"k"}}]}},
              "next_batch":"sticky_2"}}}"#,
        );
        assert_eq!(page.pos, "1/s8");
        assert_eq!(page.next_batch(), Some("sticky_2"));
        assert_eq!(page.event_count(), 1);
        assert_eq!(page.batch.rooms.len(), 1);
        assert_eq!(page.batch.rooms[0].room_id.as_str(), "!r:x");
    }

    #[test]
    fn absent_extension_keeps_nothing() {
        let page = page(r#"{"pos":"2"}"#);
        assert_eq!(page.next_batch(), None);
        assert!(page.batch.rooms.is_empty());
        assert_eq!(page.event_count(), 0);
    }

    #[test]
    fn hostile_parts_cost_only_themselves() {
        let page = page(
            r#"{"pos":"3","extensions":{"org.matrix.msc4354.sticky_events":{
              "next_batch":5,
              "rooms":{
                "!bad_room_shape:x":{"events":"nope"},
                "not a room id":{"events":[{}]},
                "!good:x":{"events":["a string", 42, {"content":"junk"}]},
                "!empty:x":{"events":[]}
              }}}}"#,
        );
        assert_eq!(page.next_batch(), None);
        let good = page
            .batch
            .rooms
            .iter()
            .find(|room| room.room_id.as_str() == "!good:x")
            .expect("the good room is kept");
        assert_eq!(good.events.len(), 3);
        assert!(good.events.iter().all(Result::is_err));
        assert!(page.batch.errors.len() >= 2, "{:?}", page.batch.errors);
    }

    #[test]
    fn malformed_extensions_object_is_ignored() {
        let page = page(r#"{"pos":"5","extensions":"x"}"#);
        assert_eq!(page.pos, "5");
        assert!(page.batch.rooms.is_empty());
    }

    #[test]
    fn malformed_extension_is_reported() {
        let page = page(r#"{"pos":"4","extensions":{"org.matrix.msc4354.sticky_events":[1,2]}}"#);
        assert_eq!(page.pos, "4");
        assert!(page.batch.rooms.is_empty());
        assert_eq!(page.batch.errors.len(), 1);
    }
}
