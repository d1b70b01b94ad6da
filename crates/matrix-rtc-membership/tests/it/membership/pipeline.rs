//! End to end through the real sticky parser and map: raw responses in, sessions out.
use std::time::Duration;

use matrix_rtc_membership::{LeftReason, RejectReason, RtcMembership, SessionChange};
use matrix_sticky_events::{
    Change, Limits, Parsed, Receipt, Redaction, StickyBatch, StickyMap, parse_event,
    parse_sliding_sync_response, parse_sticky_batch,
};
use ruma_common::RoomId;
use serde_json::{Value, json};

use super::support::*;

const ROOM_A: &str = "!uAdLFUAkPuCxWiUTM7YyOLWCbGlHQYg2CH8LCHau8fM";
const ROOM_B: &str = "!q0dE-rUu9RVWaceSdAq5vcpMQVLwIer1tMZyEu-R8sM";
/// When the Synapse fixtures were captured (index.json `captured_at_ms`).
const CAPTURED_AT_MS: u64 = 1_795_668_542_182;

/// A driver in miniature: map and model, answering member queries with "joined".
struct Pipeline {
    map: StickyMap,
    model: RtcMembership,
    changes: Vec<SessionChange>,
}

impl Pipeline {
    fn new() -> Self {
        Self {
            map: StickyMap::new(Limits::default()),
            model: RtcMembership::new(),
            changes: Vec::new(),
        }
    }

    fn receipt(offset_ms: u64, wall_ms: u64) -> Receipt {
        Receipt::new(base() + Duration::from_millis(offset_ms), wall_ms)
    }

    fn feed_map_changes(&mut self, changes: &[Change]) {
        self.changes
            .extend(self.model.handle_sticky_changes(changes));
        while let Some(query) = self.model.poll_member_query() {
            self.changes.extend(self.model.handle_room_member(
                &query.room_id,
                &query.user_id,
                true,
            ));
        }
    }

    fn feed_parsed(&mut self, room_id: &RoomId, parsed: Parsed, receipt: Receipt) {
        let changes = match parsed {
            Parsed::Sticky(event) => self.map.handle_event(event, receipt.instant),
            Parsed::Redaction(Redaction {
                redacts: event_id, ..
            }) => self
                .map
                .handle_redaction(room_id, &event_id, receipt.instant),
            other => panic!("unexpected {other:?}"),
        };
        self.feed_map_changes(&changes);
    }

    fn feed_batch(&mut self, batch: StickyBatch, receipt: Receipt) {
        for room in batch.rooms {
            for parsed in room.events.into_iter().flatten() {
                self.feed_parsed(&room.room_id, parsed, receipt);
            }
        }
    }

    fn take(&mut self) -> Vec<C> {
        summary(&std::mem::take(&mut self.changes))
    }
}

#[test]
fn sliding_sync_pages_end_to_end() {
    let mut pipeline = Pipeline::new();
    let pages = [
        "sss_sticky_first_page.json",
        "sss_sticky_second_page.json",
        "sss_sticky_third_page_multi_room.json",
        "sss_sticky_caught_up.json",
    ];
    for (n, page) in pages.iter().enumerate() {
        let body = fixture(&format!("synapse-1.163.2/{page}"));
        let receipt = Pipeline::receipt(n as u64, CAPTURED_AT_MS + n as u64);
        match parse_sliding_sync_response(&body, receipt).unwrap() {
            Some(batch) => pipeline.feed_batch(batch, receipt),
            None => assert_eq!(
                *page, "sss_sticky_caught_up.json",
                "only the caught-up page is empty"
            ),
        }
    }
    let (a, dev, phone) = ("@alice:localhost", "ALICEDEV", "ALICEPHONE");
    let main_id = "0c6d1d5e-7b1f-4b7e-9a52-3f1e2d4c5b6a";
    let phone_id = "8f2a9c41-65d3-4e0b-b7a1-d2c3e4f50617";
    let delayed_id = "d31a7e00-0000-4000-8000-00000000d31a";
    let got = pipeline.take();
    // The two rooms' changes interleave only between pages; check each room's story.
    let room_a: Vec<_> = got
        .iter()
        .filter(|c| !matches!(c, C::Joined(u, ..) if u == "@bob:localhost"))
        .cloned()
        .collect();
    assert_eq!(
        room_a,
        vec![
            started(),
            joined(a, dev, main_id),
            updated(a, dev, main_id),
            joined(a, phone, phone_id),
            updated(a, dev, main_id),
            left(a, phone, phone_id, LeftReason::LeaveEvent),
            joined(a, dev, delayed_id),
            left(a, dev, delayed_id, LeftReason::LeaveEvent),
            started(), // room_b
        ]
    );
    assert!(got.contains(&joined(
        "@bob:localhost",
        "BOBDEV",
        "b0b0b0b0-1111-4222-8333-444455556666"
    )));
    assert_eq!(
        roster(&pipeline.model, &room(ROOM_A)),
        vec![(a.to_owned(), dev.to_owned(), main_id.to_owned())]
    );
    assert_eq!(roster(&pipeline.model, &room(ROOM_B)).len(), 1);
    // The keys-disagree event never reached the model; nothing was rejected.
    assert!(diagnostics(&mut pipeline.model).is_empty());

    // Later: a second refresh of alice's membership keeps her creation time.
    let body = fixture("synapse-1.163.2/sss_sticky_later_page_new_event.json");
    let receipt = Pipeline::receipt(10_000, CAPTURED_AT_MS + 10_000);
    pipeline.feed_batch(
        parse_sliding_sync_response(&body, receipt)
            .unwrap()
            .unwrap(),
        receipt,
    );
    assert_eq!(pipeline.take(), vec![updated(a, dev, main_id)]);
    let alice = pipeline
        .model
        .participants(&room(ROOM_A), ROOM_SLOT)
        .next()
        .unwrap();
    assert_eq!(
        alice.event_id.as_str(),
        "$JUfe0xJJpBQnQf89NkAw5exjiaJl8Tquh93joU1xT2M"
    );
    assert_eq!(alice.created_ts, 1_795_668_532_837);

    // Every entry expires through the map's single timer.
    let deadline = pipeline.map.next_deadline().unwrap();
    let changes = pipeline
        .map
        .handle_timeout(deadline + Duration::from_secs(3600));
    pipeline.feed_map_changes(&changes);
    let got = pipeline.take();
    assert!(
        got.contains(&left(a, dev, main_id, LeftReason::Expired)),
        "{got:?}"
    );
    assert!(pipeline.model.sessions(&room(ROOM_A)).next().is_none());
    assert!(pipeline.model.sessions(&room(ROOM_B)).next().is_none());
}

#[test]
fn v3_sync_sticky_section_and_timeline_end_to_end() {
    let mut pipeline = Pipeline::new();
    let sync = fixture_json("synapse-1.163.2/sync_v2_initial.json");
    let receipt = Pipeline::receipt(0, CAPTURED_AT_MS);
    for (room_id, joined_room) in sync["rooms"]["join"].as_object().unwrap() {
        let room_id = room(room_id);
        let sticky = joined_room["msc4354_sticky"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let timeline = joined_room["timeline"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for event in sticky.iter().chain(&timeline) {
            if let Ok(parsed) = parse_event(&event.to_string(), &room_id, receipt) {
                pipeline.feed_parsed(&room_id, parsed, receipt);
            }
        }
    }
    assert_eq!(
        roster(&pipeline.model, &room(ROOM_A)),
        vec![(
            "@alice:localhost".to_owned(),
            "ALICEDEV".to_owned(),
            "0c6d1d5e-7b1f-4b7e-9a52-3f1e2d4c5b6a".to_owned()
        )]
    );
    assert_eq!(
        roster(&pipeline.model, &room(ROOM_B)),
        vec![(
            "@bob:localhost".to_owned(),
            "BOBDEV".to_owned(),
            "b0b0b0b0-1111-4222-8333-444455556666".to_owned()
        )]
    );
}

/// A js-sdk 43 capture line as a sync event (the capture has no event ID and no TTL).
fn js43_line(n: usize, event_id: &str) -> (ruma_common::OwnedRoomId, Value) {
    let line: Value = serde_json::from_str(
        fixture("js-sdk-43.0.0/sent-events.jsonl")
            .lines()
            .nth(n)
            .unwrap(),
    )
    .unwrap();
    let mut pdu = line["pdu"].clone();
    let room_id = room(pdu["room_id"].as_str().unwrap());
    pdu["event_id"] = json!(event_id);
    pdu["unsigned"] = json!({"msc4354_sticky_duration_ttl_ms": 3_599_000});
    (room_id, pdu)
}

#[test]
fn js_sdk_43_encrypted_room_end_to_end() {
    let mut pipeline = Pipeline::new();
    let (room_id, join) = js43_line(2, "$carol_join");
    let _ = pipeline.model.set_room_encrypted(&room_id, true);
    let receipt = Pipeline::receipt(0, join["origin_server_ts"].as_u64().unwrap() + 50);

    // The join arrives as an envelope; the driver decrypts it.
    let Ok(Parsed::Encrypted(envelope)) = parse_event(&join.to_string(), &room_id, receipt) else {
        panic!("expected an encrypted envelope");
    };
    let decrypted = json!({
        "type": "org.matrix.msc4143.rtc.member",
        "content": js43_join("@carol:localhost", "CJ", "@carol:localhost:CJ"),
    });
    let event = envelope
        .into_decrypted(&decrypted.to_string(), Some(device("CJ")))
        .unwrap();
    let changes = pipeline.map.handle_event(event, receipt.instant);
    pipeline.feed_map_changes(&changes);
    assert_eq!(
        pipeline.take(),
        vec![
            started(),
            joined("@carol:localhost", "CJ", "@carol:localhost:CJ")
        ]
    );
    assert!(
        !pipeline
            .model
            .participants(&room_id, ROOM_SLOT)
            .next()
            .unwrap()
            .suspicious
    );

    // Its delayed leave fires in plaintext: a leave all the same.
    let (_, leave) = js43_line(3, "$carol_leave");
    let receipt = Pipeline::receipt(13_000, leave["origin_server_ts"].as_u64().unwrap() + 50);
    let parsed = parse_event(&leave.to_string(), &room_id, receipt).unwrap();
    pipeline.feed_parsed(&room_id, parsed, receipt);
    assert_eq!(
        pipeline.take(),
        vec![
            left(
                "@carol:localhost",
                "CJ",
                "@carol:localhost:CJ",
                LeftReason::LeaveEvent
            ),
            ended()
        ]
    );

    // A plaintext join in that room never counts.
    let (_, mut plain) = js43_line(0, "$alice_plain");
    plain["room_id"] = json!(room_id.as_str());
    let receipt = Pipeline::receipt(20_000, plain["origin_server_ts"].as_u64().unwrap() + 50);
    let parsed = parse_event(&plain.to_string(), &room_id, receipt).unwrap();
    pipeline.feed_parsed(&room_id, parsed, receipt);
    assert!(pipeline.take().is_empty());
    let found = diagnostics(&mut pipeline.model);
    assert_eq!(
        found.last().unwrap().reason,
        RejectReason::PlaintextJoinInEncryptedRoom
    );
}

#[test]
fn a_hostile_batch_costs_only_its_bad_keys() {
    let room_id = "!hostile:bench.localhost";
    let event = |sender: &str, id: &str, content: Value| {
        json!({
            "type": "org.matrix.msc4143.rtc.member", "event_id": id, "sender": sender,
            "origin_server_ts": NOW_MS, "msc4354_sticky": {"duration_ms": 3_600_000},
            "content": content, "unsigned": {"msc4354_sticky_duration_ttl_ms": 3_599_000},
        })
    };
    let mut not_object_member = js43_join("@carol:x", "C", "mc");
    not_object_member["member"] = json!("@carol:x");
    let mut wrong_user = js43_join("@mallory:x", "E", "me");
    wrong_user["msc4354_sticky_key"] = json!("me");
    let line = json!({
        "rooms": {room_id: {"events": [
            event("@bob:x", "$bob", js43_join("@bob:x", "B", "mb")),
            event("@alice:x", "$alice", json!("{\"msc4354_sticky_key\": \"ma\"}")),
            event("@carol:x", "$carol", not_object_member),
            event("@erin:x", "$erin", wrong_user),
            "not an event",
            event("@dave:x", "$dave", js43_join("@dave:x", "D", "md")),
        ]}},
        "next_batch": "sticky_7",
    });
    let mut pipeline = Pipeline::new();
    let receipt = Pipeline::receipt(0, NOW_MS);
    let batch = parse_sticky_batch(&line.to_string(), receipt).unwrap();
    pipeline.feed_batch(batch, receipt);
    let users: Vec<_> = roster(&pipeline.model, &room(room_id))
        .into_iter()
        .map(|(u, _, _)| u)
        .collect();
    assert_eq!(users, vec!["@bob:x", "@dave:x"]);
    let reasons: Vec<_> = diagnostics(&mut pipeline.model)
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(
        reasons,
        vec![RejectReason::MemberInvalid, RejectReason::UserClaimMismatch]
    );
}
