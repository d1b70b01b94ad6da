//! The captured wire fixtures (`fixtures/`), parsed as the real server sent them, with
//! "now" pinned to the capture time.
use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use matrix_sticky_events::{
    Change, EventOrigin, Parsed, Receipt, Redaction, Rejection, StickyMap, parse_event,
    parse_sliding_sync_response,
};
use ruma_common::{OwnedDeviceId, OwnedRoomId, RoomId};
use serde_json::{Value, json};

use crate::support::{HOUR, eid, fixture, room_a};

const ROOM_A: &str = "!uAdLFUAkPuCxWiUTM7YyOLWCbGlHQYg2CH8LCHau8fM";
const ROOM_B: &str = "!q0dE-rUu9RVWaceSdAq5vcpMQVLwIer1tMZyEu-R8sM";
const MEMBER_ALICE: &str = "0c6d1d5e-7b1f-4b7e-9a52-3f1e2d4c5b6a";
const MEMBER_ALICE_PHONE: &str = "8f2a9c41-65d3-4e0b-b7a1-d2c3e4f50617";
const MEMBER_DELAYED: &str = "d31a7e00-0000-4000-8000-00000000d31a";
const EV_DURATION_2H: &str = "$f5xqF-OCugmZNVnfMmn9dDBGiKzqWSGqVrbpoJ6D_80";
const EV_LEAVE: &str = "$GzL0_Eipob69SW9DH7UYSHOXCLvsOgry7AAO0pe-bCI";
const EV_REDACTED: &str = "$YlDCkseT-BCRfpLB3XY-9S7_Jm6M7MzwAD2KRNhXQPg";
const EV_DELAYED_FIRED: &str = "$rbQ4wR5vgOZRmLMhR8bRHRyQU9BDH4BPfJsO2xAcUYI";
const EV_BOB_ROOM_B: &str = "$EmszwJ6Y9vPj_ZYEGybfPnLXgOnDgYcEbMQ3ipHkq5c";
const EV_REFRESH2: &str = "$JUfe0xJJpBQnQf89NkAw5exjiaJl8Tquh93joU1xT2M";

fn captured_at_ms() -> u64 {
    let index: Value = serde_json::from_str(&fixture("synapse-1.163.2/index.json")).expect("json");
    index["captured_at_ms"].as_u64().expect("captured_at_ms")
}

fn synapse(name: &str) -> String {
    fixture(&format!("synapse-1.163.2/{name}"))
}

fn receipt() -> Receipt {
    Receipt::new(Instant::now(), captured_at_ms())
}

fn room(id: &str) -> OwnedRoomId {
    RoomId::parse(id).expect("room id")
}

fn visible_ids(map: &StickyMap) -> BTreeSet<String> {
    map.iter().map(|e| e.meta.event_id.to_string()).collect()
}

/// Check the state after every live sticky event of the capture (before `ev_refresh2`).
fn check_capture_state(map: &StickyMap) {
    // member_alice: join, refresh and the 2 h (clamped) event, which wins; member_alice_phone:
    // a key-only leave wins (readers see nothing); member_delayed: the fired delayed leave is
    // key-only too; the redacted event is gone; bob's member in room_b.
    assert_eq!(
        visible_ids(map),
        BTreeSet::from([EV_DURATION_2H.to_owned(), EV_BOB_ROOM_B.to_owned()])
    );
    assert_eq!(map.candidate_count(), 8);
    let alice: ruma_common::OwnedUserId = "@alice:localhost".try_into().expect("user id");
    let winner = |key: &str| {
        map.winner(&matrix_sticky_events::MapKey {
            room_id: room(ROOM_A),
            sender: alice.clone(),
            event_type: "org.matrix.msc4143.rtc.member".to_owned(),
            sticky_key: key.to_owned(),
        })
        .map(|e| (e.meta.event_id.to_string(), e.key_only))
    };
    assert_eq!(
        winner(MEMBER_ALICE),
        Some((EV_DURATION_2H.to_owned(), false))
    );
    assert_eq!(
        winner(MEMBER_ALICE_PHONE),
        Some((EV_LEAVE.to_owned(), true))
    );
    assert_eq!(
        winner(MEMBER_DELAYED),
        Some((EV_DELAYED_FIRED.to_owned(), true))
    );
    assert!(map.is_redacted(&room(ROOM_A), &eid(EV_REDACTED)));
}

#[test]
fn sliding_sync_pages() {
    let receipt = receipt();
    let now = receipt.instant;
    let mut map = StickyMap::default();
    let mut rejections = vec![];
    let mut tokens = vec![];
    for page in [
        "sss_sticky_first_page.json",
        "sss_sticky_second_page.json",
        "sss_sticky_third_page_multi_room.json",
    ] {
        let batch = parse_sliding_sync_response(&synapse(page), receipt)
            .expect("valid")
            .expect("extension present");
        assert!(batch.errors.is_empty(), "{page}");
        tokens.push(batch.next_batch.clone());
        for room in batch.rooms {
            for event in room.events {
                match event {
                    Ok(Parsed::Sticky(event)) => {
                        let _ = map.handle_event(event, now);
                    }
                    Ok(Parsed::Redaction(Redaction {
                        redacts: event_id, ..
                    })) => {
                        let _ = map.handle_redaction(&room.room_id, &event_id, now);
                    }
                    Ok(Parsed::Encrypted(_)) => panic!("no encrypted event in these pages"),
                    Err(rejection) => rejections.push(rejection),
                }
            }
        }
    }
    assert_eq!(
        tokens,
        [
            Some("sticky_4".into()),
            Some("sticky_7".into()),
            Some("sticky_11".into())
        ]
    );
    assert_eq!(rejections, [Rejection::StickyKeysDisagree]);
    check_capture_state(&map);

    // Nothing new: the extension is absent.
    assert_eq!(
        parse_sliding_sync_response(&synapse("sss_sticky_caught_up.json"), receipt),
        Ok(None)
    );
    // An error body has no extension either.
    assert_eq!(
        parse_sliding_sync_response(&synapse("sss_sticky_bad_since.json"), receipt),
        Ok(None)
    );

    // Later: a refresh of member_alice replaces the 2 h event.
    let batch =
        parse_sliding_sync_response(&synapse("sss_sticky_later_page_new_event.json"), receipt)
            .expect("valid")
            .expect("extension present");
    assert_eq!(batch.next_batch.as_deref(), Some("sticky_12"));
    let events: Vec<_> = batch
        .rooms
        .into_iter()
        .flat_map(|room| room.events)
        .collect();
    let [Ok(Parsed::Sticky(refresh))] = &events[..] else {
        panic!("one sticky event: {events:?}")
    };
    let changes = map.handle_event(refresh.clone(), now);
    assert!(matches!(&changes[..], [Change::Replaced { old, new }]
        if old.meta.event_id == EV_DURATION_2H && new.meta.event_id == EV_REFRESH2));
    assert_eq!(map.next_deadline().map(|d| d > now), Some(true));
}

#[test]
fn sync_v2_sticky_section_of_a_newly_joined_room() {
    let receipt = receipt();
    let sync: Value = serde_json::from_str(&synapse("sync_v2_newly_joined.json")).expect("json");
    let section = &sync["rooms"]["join"][ROOM_A]["msc4354_sticky"]["events"];
    let events = section.as_array().expect("events");
    assert_eq!(events.len(), 9);
    let mut map = StickyMap::default();
    for event in events {
        match parse_event(&event.to_string(), &room(ROOM_A), receipt) {
            Ok(Parsed::Sticky(event)) => {
                // Every TTL here is under an hour and counts from the receipt.
                assert!(event.meta.expires_at <= receipt.instant + Duration::from_millis(HOUR));
                let _ = map.handle_event(event, receipt.instant);
            }
            Ok(Parsed::Redaction(Redaction {
                redacts: event_id, ..
            })) => {
                assert_eq!(event_id, EV_REDACTED);
                let _ = map.handle_redaction(&room(ROOM_A), &event_id, receipt.instant);
            }
            Ok(Parsed::Encrypted(_)) => panic!("no encrypted event here"),
            Err(rejection) => assert_eq!(rejection, Rejection::StickyKeysDisagree),
        }
    }
    // The same state as the sliding-sync pages, minus room_b.
    let bob_room_b =
        parse_sliding_sync_response(&synapse("sss_sticky_third_page_multi_room.json"), receipt)
            .expect("valid")
            .expect("present")
            .rooms
            .into_iter()
            .find(|r| r.room_id == ROOM_B)
            .expect("room_b");
    for event in bob_room_b.events {
        let Ok(Parsed::Sticky(event)) = event else {
            panic!("bob's member")
        };
        let _ = map.handle_event(event, receipt.instant);
    }
    check_capture_state(&map);
}

#[test]
fn event_endpoint_edge_cases() {
    let receipt = receipt();
    let parse = |name: &str| parse_event(&synapse(name), &room(ROOM_A), receipt);

    // Sent with 2 h: the duration is clamped to 1 h, and the TTL (already capped by Synapse)
    // counts from the receipt.
    let Ok(Parsed::Sticky(over)) = parse("get_event_sticky_duration_over_max.json") else {
        panic!("sticky")
    };
    assert_eq!(over.meta.duration_ms, HOUR);
    assert_eq!(over.meta.rank(), 1_795_668_533_910 + HOUR);
    assert_eq!(
        over.meta.expires_at,
        receipt.instant + Duration::from_millis(3_599_941)
    );
    assert_eq!(over.sticky_key.as_deref(), Some(MEMBER_ALICE));

    // Sent with 0: not sticky.
    assert_eq!(
        parse("get_event_sticky_duration_zero.json"),
        Err(Rejection::DurationZero)
    );
    // A state event sent with the sticky parameter: stored as an ordinary state event.
    assert_eq!(
        parse("get_event_state_sticky_param_ignored.json"),
        Err(Rejection::NotSticky)
    );
    // The redacted copy names itself.
    assert_eq!(
        parse("get_event_redacted_sticky.json"),
        Ok(Parsed::Redaction(Redaction::redacted_copy(eid(
            EV_REDACTED
        ))))
    );
    let Ok(Parsed::Sticky(plain)) = parse("get_event_sticky.json") else {
        panic!("sticky")
    };
    assert!(!plain.key_only);
}

#[test]
fn sync_v2_timeline_events() {
    let receipt = receipt();
    let timeline = |name: &str| {
        let sync: Value = serde_json::from_str(&synapse(name)).expect("json");
        sync["rooms"]["join"][ROOM_A]["timeline"]["events"]
            .as_array()
            .expect("timeline")
            .iter()
            .map(|event| parse_event(&event.to_string(), &room(ROOM_A), receipt))
            .collect::<Vec<_>>()
    };
    // The m.room.redaction (top-level `redacts` and `content.redacts`), then ordinary messages.
    let events = timeline("sync_v2_redaction_after_seen_full_timeline.json");
    let Ok(Parsed::Redaction(redaction)) = &events[0] else {
        panic!("a redaction: {:?}", events[0])
    };
    assert_eq!(redaction.redacts, eid(EV_REDACTED));
    // An m.room.redaction names its sender, for the reader to judge.
    let by = redaction.by.as_ref().expect("an m.room.redaction");
    assert_eq!(by.sender, "@alice:localhost");
    assert!(events[1..].iter().all(|e| *e == Err(Rejection::NotSticky)));

    // The fired delayed leave: key-only, its TTL counted from its actual send.
    let events = timeline("sync_v2_delayed_sticky_fired.json");
    let [Ok(Parsed::Sticky(leave))] = &events[..] else {
        panic!("one sticky event")
    };
    assert!(leave.key_only);
    assert_eq!(
        leave.meta.expires_at,
        receipt.instant + Duration::from_millis(3_599_956)
    );

    let sections = |name: &str| {
        let sync: Value = serde_json::from_str(&synapse(name)).expect("json");
        sync["rooms"]["join"][ROOM_A]["msc4354_sticky"]["events"]
            .as_array()
            .expect("section")
            .iter()
            .map(|event| parse_event(&event.to_string(), &room(ROOM_A), receipt))
            .collect::<Vec<_>>()
    };
    let both = sections("sync_v2_sticky_both_keys.json");
    let [Ok(Parsed::Sticky(both))] = &both[..] else {
        panic!("one sticky event")
    };
    assert_eq!(both.sticky_key.as_deref(), Some(MEMBER_ALICE_PHONE));
    assert_eq!(
        sections("sync_v2_sticky_keys_disagree.json"),
        [Err(Rejection::StickyKeysDisagree)]
    );
    let leave = sections("sync_v2_sticky_leave.json");
    let [Ok(Parsed::Sticky(leave))] = &leave[..] else {
        panic!("one sticky event")
    };
    assert!(leave.key_only);
    assert_eq!(
        sections("sync_v2_sticky_redacted.json"),
        [Ok(Parsed::Redaction(Redaction::redacted_copy(eid(
            EV_REDACTED
        ))))]
    );
}

#[test]
fn js_sdk_43_member_events() {
    let lines = fixture("js-sdk-43.0.0/sent-events.jsonl");
    let pdus: Vec<Value> = lines
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("json")["pdu"].clone())
        .collect();
    assert_eq!(pdus.len(), 4);
    // The captured PDUs have no event ID (they were captured before the server assigned one).
    let receipt_for = |pdu: &Value| {
        Receipt::new(
            Instant::now(),
            pdu["unsigned"]["age_ts"].as_u64().expect("age_ts"),
        )
    };
    assert_eq!(
        parse_event(&pdus[0].to_string(), &room_a(), receipt_for(&pdus[0])),
        Err(Rejection::MissingField("event_id"))
    );
    let with_id = |pdu: &Value, id: &str| {
        let mut pdu = pdu.clone();
        pdu["event_id"] = json!(id);
        let room_id = room(pdu["room_id"].as_str().expect("room_id"));
        parse_event(&pdu.to_string(), &room_id, receipt_for(&pdu))
    };

    let Ok(Parsed::Sticky(join)) = with_id(&pdus[0], "$join") else {
        panic!("sticky join")
    };
    assert_eq!(join.sticky_key.as_deref(), Some("@alice:localhost:G1"));
    assert!(!join.key_only);
    assert_eq!(join.meta.duration_ms, HOUR);
    // No TTL on the captured PDU: the formula from receipt and origin_server_ts.
    assert_eq!(
        join.meta.expires_wall_ms,
        pdus[0]["origin_server_ts"].as_u64().expect("ts") + HOUR
    );

    // The js-sdk 43 leave carries slot_id: not key-only.
    let Ok(Parsed::Sticky(leave)) = with_id(&pdus[1], "$leave") else {
        panic!("sticky leave")
    };
    assert_eq!(leave.sticky_key.as_deref(), Some("@alice:localhost:G1"));
    assert!(!leave.key_only);
    let mut map = StickyMap::default();
    let now = receipt_for(&pdus[1]).instant;
    let _ = map.handle_events([join, leave], now);
    assert_eq!(map.len(), 1);
    assert_eq!(
        map.iter().next().map(|e| e.meta.event_id.to_string()),
        Some("$leave".into())
    );

    // The encrypted join: the sticky metadata is in clear and kept apart from the ciphertext.
    let Ok(Parsed::Encrypted(envelope)) = with_id(&pdus[2], "$encjoin") else {
        panic!("encrypted")
    };
    assert_eq!(envelope.meta.duration_ms, HOUR);
    assert_eq!(envelope.meta.sender, "@carol:localhost");
    assert_eq!(
        envelope.session_id.as_deref(),
        pdus[2]["content"]["session_id"].as_str()
    );
    let decrypted = json!({
        "type": "org.matrix.msc4143.rtc.member",
        "event_id": "$encjoin",
        "sender": "@carol:localhost",
        "origin_server_ts": pdus[2]["origin_server_ts"],
        "content": {
            "application": { "type": "m.call" },
            "member": { "device_id": "CJ", "id": "@carol:localhost:CJ", "user_id": "@carol:localhost" },
            "msc4354_sticky_key": "@carol:localhost:CJ",
            "slot_id": "m.call#ROOM",
            "transports": { "can_subscribe": ["livekit"], "published": [{ "livekit_service_url": "https://lk.invalid", "type": "livekit" }] },
            "versions": [],
        },
    });
    let meta = envelope.meta.clone();
    let join = envelope
        .into_decrypted(&decrypted.to_string(), Some(OwnedDeviceId::from("CJ")))
        .expect("valid");
    assert_eq!(join.meta, meta);
    assert_eq!(join.sticky_key.as_deref(), Some("@carol:localhost:CJ"));
    assert_eq!(
        join.origin,
        EventOrigin::Encrypted {
            sender_device: Some(OwnedDeviceId::from("CJ"))
        }
    );

    // Its delayed leave arrives in plaintext under the same key.
    let Ok(Parsed::Sticky(leave)) = with_id(&pdus[3], "$encleave") else {
        panic!("plaintext leave")
    };
    assert_eq!(leave.sticky_key, join.sticky_key);
    let mut map = StickyMap::default();
    let now = receipt_for(&pdus[3]).instant;
    let _ = map.handle_events([join, leave], now);
    assert_eq!(
        map.iter().next().map(|e| e.origin.clone()),
        Some(EventOrigin::Plaintext)
    );
}
