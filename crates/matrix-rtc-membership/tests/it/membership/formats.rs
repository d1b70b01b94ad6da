//! Every format, read from real captures (fixtures) and by hand.
use std::{collections::HashMap, sync::Arc, time::Duration};

use matrix_rtc_membership::{
    FocusSelection, LeftReason, MAX_LEAVE_CODE_LEN, MembershipFormat, RejectReason, SessionChange,
    Transport, legacy_livekit_identity, livekit_identity,
};
use matrix_sticky_events::{Change, RemovalReason, StickyEvent};
use ruma_common::RoomId;
use serde_json::{Value, json};

use super::support::*;

const ROOM_A: &str = "!uAdLFUAkPuCxWiUTM7YyOLWCbGlHQYg2CH8LCHau8fM";

/// The js-sdk 43.0.0 capture: `(kind, pdu)` per line.
fn js_sdk_43() -> Vec<(String, Value)> {
    fixture("js-sdk-43.0.0/sent-events.jsonl")
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            (
                line["kind"].as_str().unwrap().to_owned(),
                line["pdu"].clone(),
            )
        })
        .collect()
}

fn ev_from_pdu(pdu: &Value, event_id: &str) -> Ev {
    let room_id = room(pdu["room_id"].as_str().unwrap());
    Ev::new(
        &room_id,
        &user(pdu["sender"].as_str().unwrap()),
        event_id,
        &pdu["content"],
    )
    .ts(pdu["origin_server_ts"].as_u64().unwrap())
    .event_type(pdu["type"].as_str().unwrap())
}

/// A minimal stand-in for the sticky map over sync-format events: last to expire wins,
/// key-only winners are deletions, events whose two keys disagree and redacted copies
/// (no sticky object) are skipped.
#[derive(Default)]
struct MiniMap {
    winners: HashMap<(String, String, String), Arc<StickyEvent>>,
}

impl MiniMap {
    fn feed(&mut self, room_id: &RoomId, event: &Value) -> Vec<Change> {
        let content = &event["content"];
        let (Some(_duration), Some(sender)) = (
            event["msc4354_sticky"]["duration_ms"].as_u64(),
            event["sender"].as_str(),
        ) else {
            return Vec::new();
        };
        if let (Some(a), Some(b)) = (content.get("sticky_key"), content.get("msc4354_sticky_key"))
            && a != b
        {
            return Vec::new();
        }
        let ev = Ev::new(
            room_id,
            &user(sender),
            event["event_id"].as_str().unwrap(),
            content,
        )
        .ts(event["origin_server_ts"].as_u64().unwrap())
        .event_type(event["type"].as_str().unwrap())
        .build();
        let Some(key) = ev.sticky_key.clone() else {
            return Vec::new();
        };
        let rank = |e: &StickyEvent| {
            (
                e.meta.origin_server_ts + e.meta.duration_ms.min(HOUR_MS),
                e.meta.event_id.clone(),
            )
        };
        let map_key = (sender.to_owned(), ev.event_type.clone(), key);
        let old = self.winners.get(&map_key).cloned();
        if let Some(old) = &old
            && rank(old) >= rank(&ev)
        {
            return Vec::new();
        }
        self.winners.insert(map_key, ev.clone());
        match (old, ev.key_only) {
            (None, true) => Vec::new(),
            (Some(old), true) if !old.key_only => vec![removed(&old, RemovalReason::Deleted)],
            (Some(_), true) => Vec::new(),
            (Some(old), false) if !old.key_only => vec![replaced(&old, &ev)],
            _ => vec![added(&ev)],
        }
    }
}

#[test]
fn format_b_js_sdk_43_join_and_delayed_leave_from_capture() {
    let lines = js_sdk_43();
    let (kind, join_pdu) = &lines[0];
    assert_eq!(kind, "join");
    let join = ev_from_pdu(join_pdu, "$js43join").build();
    let room_id = join.meta.room_id.clone();
    let mut model = model_with(&room_id, &["@alice:localhost"]);

    let changes = model.handle_sticky_changes(&[added(&join)]);
    assert_eq!(
        summary(&changes),
        vec![
            started(),
            joined("@alice:localhost", "G1", "@alice:localhost:G1")
        ]
    );
    let SessionChange::Joined(alice) = &changes[1] else {
        unreachable!()
    };
    assert_eq!(alice.format, MembershipFormat::JsSdk);
    assert_eq!(alice.slot_id, ROOM_SLOT);
    assert_eq!(alice.created_ts, 1_795_668_868_679);
    assert_eq!(
        alice.own_transport(),
        Some(&Transport::livekit("https://lk.invalid"))
    );
    assert_eq!(
        alice.livekit_identity,
        livekit_identity("@alice:localhost", "G1", "@alice:localhost:G1")
    );
    assert_eq!(alice.call_intent, None);
    assert!(!alice.suspicious);
    assert!(diagnostics(&mut model).is_empty());

    let (kind, leave_pdu) = &lines[1];
    assert_eq!(kind, "leave(delayed)");
    let leave = ev_from_pdu(leave_pdu, "$js43leave").build();
    assert!(
        !leave.key_only,
        "js-sdk 43 leaves carry slot_id next to the key"
    );
    let changes = model.handle_sticky_changes(&[replaced(&join, &leave)]);
    assert_eq!(
        summary(&changes),
        vec![
            left(
                "@alice:localhost",
                "G1",
                "@alice:localhost:G1",
                LeftReason::LeaveEvent
            ),
            ended()
        ]
    );
    assert!(
        diagnostics(&mut model).is_empty(),
        "a leave is not a rejection"
    );
}

#[test]
fn format_b_js_sdk_42_join_from_synapse_capture() {
    let sync = fixture_json("synapse-1.163.2/sync_v2_sticky_section.json");
    let room_id = room(ROOM_A);
    let event = &sync["rooms"]["join"][ROOM_A]["msc4354_sticky"]["events"][0];
    let mut map = MiniMap::default();
    let mut model = model_with(&room_id, &["@alice:localhost"]);
    let changes = model.handle_sticky_changes(&map.feed(&room_id, event));
    let member = "0c6d1d5e-7b1f-4b7e-9a52-3f1e2d4c5b6a";
    assert_eq!(
        summary(&changes),
        vec![started(), joined("@alice:localhost", "ALICEDEV", member)]
    );
    let alice = model.participants(&room_id, ROOM_SLOT).next().unwrap();
    assert_eq!(
        alice.event_id.as_str(),
        "$1LrwecwXnqPZvtygWE-QFelmHUlFaM-NS2TVF61Rnzs"
    );
    // js-sdk 39–42 publish in `rtc_transports`.
    assert_eq!(
        alice.transports,
        vec![Transport::livekit("https://lk.invalid")]
    );
    assert_eq!(
        alice.own_transport(),
        Some(&Transport::livekit("https://lk.invalid"))
    );
}

#[test]
fn format_b_whole_catch_up_from_synapse_capture() {
    // carol's first sync after joining: every live sticky event of room_a, in stream order.
    let sync = fixture_json("synapse-1.163.2/sync_v2_newly_joined.json");
    let room_id = room(ROOM_A);
    let events = sync["rooms"]["join"][ROOM_A]["msc4354_sticky"]["events"]
        .as_array()
        .unwrap();
    assert_eq!(events.len(), 9);
    let mut map = MiniMap::default();
    let mut model = model_with(&room_id, &["@alice:localhost"]);
    let mut all = Vec::new();
    for event in events {
        let changes = map.feed(&room_id, event);
        all.extend(summary(&model.handle_sticky_changes(&changes)));
    }
    let (a, dev, phone) = ("@alice:localhost", "ALICEDEV", "ALICEPHONE");
    let main_id = "0c6d1d5e-7b1f-4b7e-9a52-3f1e2d4c5b6a";
    let phone_id = "8f2a9c41-65d3-4e0b-b7a1-d2c3e4f50617";
    let delayed_id = "d31a7e00-0000-4000-8000-00000000d31a";
    assert_eq!(
        all,
        vec![
            started(),
            joined(a, dev, main_id),
            updated(a, dev, main_id), // refresh
            joined(a, phone, phone_id),
            updated(a, dev, main_id), // the 2 h event (clamped to 1 h) wins
            left(a, phone, phone_id, LeftReason::LeaveEvent), // js-sdk 39–42 key-only leave
            joined(a, dev, delayed_id),
            left(a, dev, delayed_id, LeftReason::LeaveEvent), // the fired delayed leave
        ]
    );
    let alice = model.participants(&room_id, ROOM_SLOT).next().unwrap();
    assert_eq!(
        roster(&model, &room_id),
        vec![(a.to_owned(), dev.to_owned(), main_id.to_owned())]
    );
    // Creation time stays the first join's across both refreshes.
    assert_eq!(alice.created_ts, 1_795_668_532_837);
    assert_eq!(
        alice.event_id.as_str(),
        "$f5xqF-OCugmZNVnfMmn9dDBGiKzqWSGqVrbpoJ6D_80"
    );
}

#[test]
fn format_b_claimed_field_names_of_the_msc_draft() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@alice:example.org"]);
    let content = json!({
        "slot_id": ROOM_SLOT, "application": {"type": "m.call"},
        "member": {"id": "m1", "claimed_user_id": "@alice:example.org", "claimed_device_id": "DEV"},
        "transports": {"published": [{"type": "livekit", "livekit_service_url": LK}]},
        "sticky_key": "m1",
    });
    let ev = Ev::new(&room_id, &user("@alice:example.org"), "$1", &content).build();
    let changes = model.handle_sticky_changes(&[added(&ev)]);
    assert_eq!(
        summary(&changes),
        vec![started(), joined("@alice:example.org", "DEV", "m1")]
    );
}

#[test]
fn format_b_published_transports_win_over_rtc_transports() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
    let mut both = js43_join("@a:x", "A", "ma");
    both["rtc_transports"] =
        json!([{"type": "livekit", "livekit_service_url": "https://old.example.org"}]);
    let mut empty_published = js42_join("@b:x", "B", "mb");
    empty_published["transports"] = json!({"published": [], "can_subscribe": ["livekit"]});
    let a = Ev::new(&room_id, &user("@a:x"), "$a", &both).build();
    let b = Ev::new(&room_id, &user("@b:x"), "$b", &empty_published)
        .ts(NOW_MS + 1)
        .build();
    let _ = model.handle_sticky_changes(&[added(&a), added(&b)]);
    let ps: Vec<_> = model.participants(&room_id, ROOM_SLOT).collect();
    assert_eq!(ps[0].own_transport(), Some(&Transport::livekit(LK)));
    // An empty `published` falls back to `rtc_transports`.
    assert_eq!(ps[1].own_transport(), Some(&Transport::livekit(LK)));
    assert!(diagnostics(&mut model).is_empty());
}

#[test]
fn format_a_join_and_leaves() {
    let room_id = room("!r:example.org");
    let alice = user("@alice:example.org");
    let mut model = model_with(&room_id, &["@alice:example.org"]);
    let join = Ev::new(&room_id, &alice, "$j", &a_join("m1", "DEV"))
        .event_type("m.rtc.member")
        .build();
    let changes = model.handle_sticky_changes(&[added(&join)]);
    assert_eq!(
        summary(&changes),
        vec![started(), joined("@alice:example.org", "DEV", "m1")]
    );
    let p = model.participants(&room_id, ROOM_SLOT).next().unwrap();
    assert_eq!(p.format, MembershipFormat::Msc4143);

    for (code, reason) in [
        (json!("leave"), LeftReason::LeaveEvent),
        (json!("delayed_leave"), LeftReason::DelayedLeaveFired),
        (json!("slot_closed"), LeftReason::SlotClosed),
        // Any other code is kept for the app, within a size bound.
        (
            json!("m.call.hangup"),
            LeftReason::OtherLeaveCode("m.call.hangup".to_owned()),
        ),
        (
            json!("x".repeat(MAX_LEAVE_CODE_LEN)),
            LeftReason::OtherLeaveCode("x".repeat(MAX_LEAVE_CODE_LEN)),
        ),
        (
            json!("x".repeat(MAX_LEAVE_CODE_LEN + 1)),
            LeftReason::LeaveEvent,
        ),
        (json!(""), LeftReason::LeaveEvent),
        (json!(7), LeftReason::LeaveEvent),
        (json!(null), LeftReason::LeaveEvent),
    ] {
        let leave = json!({
            "slot_id": ROOM_SLOT, "member": {"id": "m1", "membership": "leave"},
            "leave_reason": {"code": code}, "sticky_key": "m1",
        });
        let leave = Ev::new(&room_id, &alice, "$l", &leave)
            .ts(NOW_MS + 1)
            .event_type("m.rtc.member")
            .build();
        let changes = model.handle_sticky_changes(&[replaced(&join, &leave)]);
        assert_eq!(
            summary(&changes),
            vec![left("@alice:example.org", "DEV", "m1", reason), ended()]
        );
        let _ = model.handle_sticky_changes(&[replaced(&leave, &join)]);
    }
    assert!(diagnostics(&mut model).is_empty());
}

#[test]
fn format_a_device_from_decryption_when_not_claimed() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@alice:example.org"]);
    let mut content = a_join("m1", "X");
    content["member"] = json!({"id": "m1", "membership": "join"});
    let ev = Ev::new(&room_id, &user("@alice:example.org"), "$j", &content)
        .encrypted_by(Some("ENCDEV"))
        .build();
    let changes = model.handle_sticky_changes(&[added(&ev)]);
    assert_eq!(
        summary(&changes),
        vec![started(), joined("@alice:example.org", "ENCDEV", "m1")]
    );

    // Without a claim and in plaintext the device is unknown: rejected.
    let mut model = model_with(&room_id, &["@alice:example.org"]);
    let ev = Ev::new(&room_id, &user("@alice:example.org"), "$j", &content).build();
    assert!(model.handle_sticky_changes(&[added(&ev)]).is_empty());
    assert_eq!(
        diagnostics(&mut model)[0].reason,
        RejectReason::DeviceMissing
    );
}

#[test]
fn format_c_join_and_leave_from_synapse_capture() {
    let room_id = room(ROOM_A);
    let mut model = model_with(&room_id, &["@alice:localhost"]);
    let sync = fixture_json("synapse-1.163.2/sync_v2_legacy_call_member_timeline.json");
    let join = &sync["rooms"]["join"][ROOM_A]["timeline"]["events"][0];
    let at = receipt(0);
    let changes = model.handle_state_event(&room_id, &join.to_string(), at);
    let member = "@alice:localhost:ALICEDEV";
    assert_eq!(
        summary(&changes),
        vec![started(), joined("@alice:localhost", "ALICEDEV", member)]
    );
    let alice = model.participants(&room_id, ROOM_SLOT).next().unwrap();
    assert_eq!(alice.format, MembershipFormat::LegacyState);
    assert_eq!(alice.created_ts, 1_795_668_535_026);
    assert_eq!(alice.expires_wall_ms, 1_795_668_535_026 + 14_400_000);
    assert_eq!(
        alice.focus_selection,
        Some(FocusSelection::OldestMembership)
    );
    assert_eq!(
        alice.livekit_identity,
        legacy_livekit_identity("@alice:localhost", "ALICEDEV")
    );
    assert_eq!(alice.livekit_identity, "@alice:localhost:ALICEDEV");
    assert_eq!(
        alice.own_transport(),
        Some(&Transport::LiveKit {
            service_url: "https://lk.invalid".to_owned(),
            alias: Some(ROOM_A.to_owned()),
        })
    );
    // The expiry deadline is measured from the receipt on the monotonic clock.
    let expected = at.instant + Duration::from_millis(1_795_668_535_026 + 14_400_000 - at.wall_ms);
    assert_eq!(model.next_deadline(), Some(expected));

    // The same event after a gap arrives in `state.events`: a replay changes nothing.
    let state_sync = fixture_json("synapse-1.163.2/sync_v2_legacy_call_member_state.json");
    let same = &state_sync["rooms"]["join"][ROOM_A]["state"]["events"][0];
    assert!(
        model
            .handle_state_event(&room_id, &same.to_string(), receipt(10))
            .is_empty()
    );

    let sync = fixture_json("synapse-1.163.2/sync_v2_legacy_call_member_leave.json");
    let leave = &sync["rooms"]["join"][ROOM_A]["timeline"]["events"][0];
    let changes = model.handle_state_event(&room_id, &leave.to_string(), receipt(20));
    assert_eq!(
        summary(&changes),
        vec![
            left(
                "@alice:localhost",
                "ALICEDEV",
                member,
                LeftReason::LeaveEvent
            ),
            ended()
        ]
    );
    assert_eq!(model.next_deadline(), None);
    assert!(diagnostics(&mut model).is_empty());
}

#[test]
fn format_c_request_body_of_the_capture_reads_as_a_membership() {
    let index = fixture_json("synapse-1.163.2/index.json");
    let file = index["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|file| file["file"] == "send_legacy_call_member_state.json")
        .unwrap();
    let body = &file["request"]["body"];
    let room_id = room(ROOM_A);
    let mut model = model_with(&room_id, &["@alice:localhost"]);
    let raw = state_event(
        "@alice:localhost",
        "_@alice:localhost_ALICEDEV_m.call",
        "$s",
        NOW_MS,
        body,
    );
    let changes = model.handle_state_event(&room_id, &raw, receipt(0));
    assert_eq!(
        summary(&changes),
        vec![
            started(),
            joined("@alice:localhost", "ALICEDEV", "@alice:localhost:ALICEDEV")
        ]
    );
}

#[test]
fn format_c_every_state_key_shape_with_identity_from_sender_and_content() {
    let room_id = room("!r:example.org");
    let shapes = [
        "_@alice:example.org_DEV_m.call",    // js-sdk ≥ 38
        "_@alice:example.org_DEV",           // js-sdk 34–37
        "@alice:example.org_DEV_m.call",     // owned state, ≥ 38
        "@alice:example.org_DEV",            // owned state, 34–37
        "_@mallory:example.org_EVIL_m.call", // a key naming someone else: ignored for identity
    ];
    for state_key in shapes {
        let mut model = model_with(&room_id, &["@alice:example.org"]);
        let raw = state_event(
            "@alice:example.org",
            state_key,
            "$s",
            NOW_MS,
            &legacy_join("DEV", "multi_sfu", LK),
        );
        let changes = model.handle_state_event(&room_id, &raw, receipt(0));
        // No membershipID: the member ID is "{sender}:{device_id}".
        assert_eq!(
            summary(&changes),
            vec![
                started(),
                joined("@alice:example.org", "DEV", "@alice:example.org:DEV")
            ],
            "state key {state_key}"
        );
        // The leave goes on the same key.
        let raw = state_event(
            "@alice:example.org",
            state_key,
            "$l",
            NOW_MS + 1,
            &json!({}),
        );
        let changes = model.handle_state_event(&room_id, &raw, receipt(1));
        assert_eq!(changes.len(), 2, "state key {state_key}");
    }
}

#[test]
fn format_c_call_id_maps_to_the_slot() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let mut content = legacy_join("D1", "multi_sfu", LK);
    let raw = state_event("@a:x", "_@a:x_D1_m.call", "$1", NOW_MS, &content);
    let _ = model.handle_state_event(&room_id, &raw, receipt(0));
    content["call_id"] = json!("standup");
    content["device_id"] = json!("D2");
    let raw = state_event("@a:x", "_@a:x_D2_m.callstandup", "$2", NOW_MS, &content);
    let _ = model.handle_state_event(&room_id, &raw, receipt(0));
    content.as_object_mut().unwrap().remove("call_id");
    content["device_id"] = json!("D3");
    let raw = state_event("@a:x", "_@a:x_D3_m.call", "$3", NOW_MS, &content);
    let _ = model.handle_state_event(&room_id, &raw, receipt(0));
    let slots: Vec<_> = model
        .sessions(&room_id)
        .map(|s| (s.slot_id().to_owned(), s.len()))
        .collect();
    assert_eq!(
        slots,
        vec![
            ("m.call#ROOM".to_owned(), 2),
            ("m.call#standup".to_owned(), 1)
        ]
    );
}

#[test]
fn format_c_expires_after_created_plus_expires_default_four_hours() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
    // a: no `expires` (4 h default) and no created_ts: from origin_server_ts.
    let mut a = legacy_join("A", "multi_sfu", LK);
    a.as_object_mut().unwrap().remove("expires");
    let _ = model.handle_state_event(
        &room_id,
        &state_event("@a:x", "_@a:x_A_m.call", "$a", NOW_MS, &a),
        receipt(0),
    );
    // b: created 1 h ago, expires after 90 min: 30 min left.
    let mut b = legacy_join("B", "multi_sfu", LK);
    b["created_ts"] = json!(NOW_MS - HOUR_MS);
    b["expires"] = json!(90 * 60 * 1000);
    let _ = model.handle_state_event(
        &room_id,
        &state_event("@b:x", "_@b:x_B_m.call", "$b", NOW_MS, &b),
        receipt(0),
    );
    assert_eq!(roster(&model, &room_id).len(), 2);

    let b_deadline = base() + Duration::from_millis(30 * 60 * 1000);
    assert_eq!(model.next_deadline(), Some(b_deadline));
    assert!(
        model
            .handle_timeout(b_deadline - Duration::from_millis(1))
            .is_empty(),
        "never early"
    );
    let changes = model.handle_timeout(b_deadline);
    assert_eq!(
        summary(&changes),
        vec![left("@b:x", "B", "@b:x:B", LeftReason::Expired)]
    );
    assert!(
        model.handle_timeout(b_deadline).is_empty(),
        "an extra timeout does nothing"
    );

    let a_deadline = base() + Duration::from_millis(4 * HOUR_MS);
    assert_eq!(model.next_deadline(), Some(a_deadline));
    let changes = model.handle_timeout(a_deadline + Duration::from_secs(5));
    assert_eq!(
        summary(&changes),
        vec![left("@a:x", "A", "@a:x:A", LeftReason::Expired), ended()]
    );
    assert_eq!(model.next_deadline(), None);
}

#[test]
fn format_c_refresh_keeps_created_ts_and_moves_the_deadline() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let mut content = legacy_join("A", "multi_sfu", LK);
    content["expires"] = json!(HOUR_MS);
    let _ = model.handle_state_event(
        &room_id,
        &state_event("@a:x", "_@a:x_A_m.call", "$1", NOW_MS, &content),
        receipt(0),
    );
    content["created_ts"] = json!(NOW_MS);
    content["expires"] = json!(2 * HOUR_MS);
    let raw = state_event(
        "@a:x",
        "_@a:x_A_m.call",
        "$2",
        NOW_MS + HOUR_MS - 5000,
        &content,
    );
    let changes = model.handle_state_event(&room_id, &raw, receipt(HOUR_MS - 5000));
    assert_eq!(summary(&changes), vec![updated("@a:x", "A", "@a:x:A")]);
    let p = model.participants(&room_id, ROOM_SLOT).next().unwrap();
    assert_eq!(p.created_ts, NOW_MS);
    assert_eq!(
        model.next_deadline(),
        Some(base() + Duration::from_millis(2 * HOUR_MS))
    );
    assert!(
        model
            .handle_timeout(base() + Duration::from_millis(HOUR_MS))
            .is_empty(),
        "the old deadline is gone"
    );
}

#[test]
fn format_c_already_expired_on_receipt_is_rejected() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let mut content = legacy_join("A", "multi_sfu", LK);
    content["created_ts"] = json!(NOW_MS - 5 * HOUR_MS);
    let raw = state_event("@a:x", "_@a:x_A_m.call", "$1", NOW_MS, &content);
    assert!(
        model
            .handle_state_event(&room_id, &raw, receipt(0))
            .is_empty()
    );
    assert_eq!(
        diagnostics(&mut model)[0].reason,
        RejectReason::LegacyExpired
    );
    assert_eq!(model.next_deadline(), None);
}

#[test]
fn format_c_future_created_ts_cannot_stretch_the_lifetime() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let mut content = legacy_join("A", "multi_sfu", LK);
    content["created_ts"] = json!(NOW_MS + 100 * HOUR_MS);
    let raw = state_event("@a:x", "_@a:x_A_m.call", "$1", NOW_MS, &content);
    let _ = model.handle_state_event(&room_id, &raw, receipt(0));
    assert_eq!(
        model.next_deadline(),
        Some(base() + Duration::from_millis(4 * HOUR_MS))
    );
}

#[test]
fn format_c_delayed_leave_and_redaction() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let key = "_@a:x_A_m.call";
    let join = state_event(
        "@a:x",
        key,
        "$1",
        NOW_MS,
        &legacy_join("A", "multi_sfu", LK),
    );
    let _ = model.handle_state_event(&room_id, &join, receipt(0));
    // Our own fired delayed leave: the sender sees the delay ID in `unsigned`.
    let mut leave: Value =
        serde_json::from_str(&state_event("@a:x", key, "$2", NOW_MS + 1, &json!({}))).unwrap();
    leave["unsigned"] = json!({"org.matrix.msc4140.delay_id": "syd_abc"});
    let changes = model.handle_state_event(&room_id, &leave.to_string(), receipt(1));
    assert_eq!(
        summary(&changes),
        vec![
            left("@a:x", "A", "@a:x:A", LeftReason::DelayedLeaveFired),
            ended()
        ]
    );

    // A redaction of the join event.
    let join = state_event(
        "@a:x",
        key,
        "$3",
        NOW_MS + 2,
        &legacy_join("A", "multi_sfu", LK),
    );
    let _ = model.handle_state_event(&room_id, &join, receipt(2));
    assert!(
        model
            .handle_redaction(&room_id, &event_id("$unknown"))
            .is_empty()
    );
    let changes = model.handle_redaction(&room_id, &event_id("$3"));
    assert_eq!(
        summary(&changes),
        vec![left("@a:x", "A", "@a:x:A", LeftReason::Redacted), ended()]
    );
    assert_eq!(model.next_deadline(), None);

    // A redacted copy of a join (content stripped, `redacted_because`).
    let join = state_event(
        "@a:x",
        key,
        "$4",
        NOW_MS + 3,
        &legacy_join("A", "multi_sfu", LK),
    );
    let _ = model.handle_state_event(&room_id, &join, receipt(3));
    let mut copy: Value =
        serde_json::from_str(&state_event("@a:x", key, "$4", NOW_MS + 3, &json!({}))).unwrap();
    copy["unsigned"] = json!({"redacted_because": {"type": "m.room.redaction", "redacts": "$4"}});
    let changes = model.handle_state_event(&room_id, &copy.to_string(), receipt(4));
    assert_eq!(
        summary(&changes),
        vec![left("@a:x", "A", "@a:x:A", LeftReason::Redacted), ended()]
    );
}

#[test]
fn format_d_memberships_array_is_ignored_with_a_diagnostic() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let content = json!({"memberships": [{
        "application": "m.call", "call_id": "", "device_id": "A", "scope": "m.room",
        "expires": 3_600_000, "created_ts": NOW_MS,
        "foci_active": [{"type": "livekit", "livekit_service_url": LK}], "membershipID": "x",
    }]});
    let raw = state_event("@a:x", "@a:x", "$d", NOW_MS, &content);
    assert!(
        model
            .handle_state_event(&room_id, &raw, receipt(0))
            .is_empty()
    );
    let found = diagnostics(&mut model);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].reason, RejectReason::PerUserMembershipsIgnored);
    assert_eq!(found[0].event_id.as_deref().map(|e| e.as_str()), Some("$d"));
    assert_eq!(found[0].sender.as_deref().map(|s| s.as_str()), Some("@a:x"));
    assert!(model.sessions(&room_id).next().is_none());
}

#[test]
fn format_e_and_other_event_types_are_skipped() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    for event_type in ["m.call.member", "m.call", "m.room.member"] {
        let mut raw: Value = serde_json::from_str(&state_event(
            "@a:x",
            "@a:x",
            "$e",
            NOW_MS,
            &json!({"m.calls": []}),
        ))
        .unwrap();
        raw["type"] = json!(event_type);
        assert!(
            model
                .handle_state_event(&room_id, &raw.to_string(), receipt(0))
                .is_empty()
        );
    }
    // A sticky event of another type (e.g. from the same map) is skipped too.
    let other = Ev::new(&room_id, &user("@a:x"), "$o", &js43_join("@a:x", "A", "m"))
        .event_type("m.room.message")
        .build();
    assert!(model.handle_sticky_changes(&[added(&other)]).is_empty());
    assert!(diagnostics(&mut model).is_empty());
}

#[test]
fn rtc_slot_closed_hides_format_a_members_only() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
    let a = Ev::new(&room_id, &user("@a:x"), "$a", &a_join("ma", "A"))
        .event_type("m.rtc.member")
        .build();
    let b = Ev::new(&room_id, &user("@b:x"), "$b", &js43_join("@b:x", "B", "mb"))
        .ts(NOW_MS + 1)
        .build();
    let _ = model.handle_sticky_changes(&[added(&a), added(&b)]);
    let slot = |status: &str| {
        json!({"type": "m.rtc.slot", "state_key": ROOM_SLOT, "sender": "@admin:x", "event_id": "$slot",
               "origin_server_ts": NOW_MS, "content": {"status": status, "application": {"type": "m.call"}}})
        .to_string()
    };
    let changes = model.handle_state_event(&room_id, &slot("closed"), receipt(0));
    assert_eq!(
        summary(&changes),
        vec![left("@a:x", "A", "ma", LeftReason::SlotClosed)]
    );
    assert_eq!(roster(&model, &room_id).len(), 1);
    let changes = model.handle_state_event(&room_id, &slot("open"), receipt(1));
    assert_eq!(summary(&changes), vec![joined("@a:x", "A", "ma")]);
}
