//! Hostile input: each bad event costs only its own key, never the room's other members
//! (js-sdk 43 freezes a whole room on one string content, docs/protocol.md §9.11).
use matrix_rtc_membership::{LeftReason, RejectReason, RtcMembership, Transport};
use ruma_common::RoomId;
use serde_json::json;

use super::support::*;

/// A room where bob is in the call, and alice's valid join under key `ma` is replaced by
/// `content`: returns the model after checking bob is untouched.
fn replace_alice_with(content: &str) -> (RtcMembership, Vec<C>, Vec<RejectReason>) {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@alice:x", "@bob:x"]);
    let bob = Ev::new(
        &room_id,
        &user("@bob:x"),
        "$bob",
        &js43_join("@bob:x", "B", "mb"),
    )
    .build();
    let alice = Ev::new(
        &room_id,
        &user("@alice:x"),
        "$a1",
        &js43_join("@alice:x", "A", "ma"),
    )
    .ts(NOW_MS + 1)
    .build();
    let _ = model.handle_sticky_changes(&[added(&bob), added(&alice)]);
    let bad = Ev::raw(&room_id, &user("@alice:x"), "$bad", content)
        .ts(NOW_MS + 2)
        .build_with_key("ma");
    // The bad event arrives in one batch between two valid changes of other keys.
    let _ = model.handle_room_member(&room_id, &user("@carol:x"), true);
    let carol = Ev::new(
        &room_id,
        &user("@carol:x"),
        "$c",
        &js43_join("@carol:x", "C", "mc"),
    )
    .ts(NOW_MS + 3)
    .build();
    let bob2 = Ev::new(
        &room_id,
        &user("@bob:x"),
        "$bob2",
        &js43_join("@bob:x", "B", "mb"),
    )
    .ts(NOW_MS + 4)
    .build();
    let batch = [replaced(&bob, &bob2), replaced(&alice, &bad), added(&carol)];
    let changes = summary(&model.handle_sticky_changes(&batch));
    let reasons = diagnostics(&mut model)
        .into_iter()
        .map(|d| d.reason)
        .collect();
    check_others(&model, &room_id);
    (model, changes, reasons)
}

fn check_others(model: &RtcMembership, room_id: &RoomId) {
    let users: Vec<_> = roster(model, room_id)
        .into_iter()
        .map(|(u, _, _)| u)
        .collect();
    assert!(users.contains(&"@bob:x".to_owned()), "bob stays: {users:?}");
    assert!(
        users.contains(&"@carol:x".to_owned()),
        "the rest of the batch applies: {users:?}"
    );
}

fn expect_rejected(content: &str, reason: RejectReason) {
    let (model, changes, reasons) = replace_alice_with(content);
    assert_eq!(
        changes,
        vec![
            updated("@bob:x", "B", "mb"),
            left("@alice:x", "A", "ma", LeftReason::Rejected(reason.clone())),
            joined("@carol:x", "C", "mc"),
        ],
        "content {content}"
    );
    assert_eq!(reasons, vec![reason], "content {content}");
    assert_eq!(roster(&model, &room("!r:example.org")).len(), 2);
}

#[test]
fn content_that_is_not_an_object() {
    let join = js43_join("@alice:x", "A", "ma").to_string();
    for content in [
        "\"a string\"",
        "[1, 2]",
        "null",
        "42",
        "true",
        &format!("[{join}]"),
        &serde_json::to_string(&join).unwrap(),
    ] {
        expect_rejected(content, RejectReason::ContentNotObject);
    }
}

#[test]
fn member_not_an_object_or_missing_or_badly_typed() {
    let mut content = js43_join("@alice:x", "A", "ma");
    content["member"] = json!("@alice:x");
    expect_rejected(&content.to_string(), RejectReason::MemberInvalid);
    // serde would read a struct from an array by position: arrays are not objects.
    content["member"] = json!(["ma", "join", "@alice:x", null, "A"]);
    expect_rejected(&content.to_string(), RejectReason::MemberInvalid);
    content["member"] = json!({"id": 5, "user_id": "@alice:x", "device_id": "A"});
    expect_rejected(&content.to_string(), RejectReason::MemberInvalid);
    content["member"] = json!({"id": "ma", "user_id": ["@alice:x"], "device_id": "A"});
    expect_rejected(&content.to_string(), RejectReason::MemberInvalid);
    content["member"] = json!({"id": "ma", "user_id": "@alice:x", "device_id": {"d": 1}});
    expect_rejected(&content.to_string(), RejectReason::MemberInvalid);
    content["member"] = json!({"user_id": "@alice:x", "device_id": "A"});
    expect_rejected(&content.to_string(), RejectReason::MemberIdMissing);
    content.as_object_mut().unwrap().remove("member");
    expect_rejected(&content.to_string(), RejectReason::MemberMissing);
}

#[test]
fn application_and_slot_of_the_wrong_type() {
    let mut content = js43_join("@alice:x", "A", "ma");
    content["application"] = json!("m.call");
    expect_rejected(&content.to_string(), RejectReason::ApplicationInvalid);
    content["application"] = json!({"type": 1});
    expect_rejected(&content.to_string(), RejectReason::ApplicationInvalid);
    content["application"] = json!(["m.call"]);
    expect_rejected(&content.to_string(), RejectReason::ApplicationInvalid);
    let mut content = js43_join("@alice:x", "A", "ma");
    content["slot_id"] = json!(["m.call#ROOM"]);
    expect_rejected(&content.to_string(), RejectReason::SlotIdInvalid);
}

#[test]
fn duplicated_fields_and_deep_nesting_are_malformed() {
    let join = js43_join("@alice:x", "A", "ma").to_string();
    let duplicated = join.replacen('{', r#"{"slot_id":"m.call#other","#, 1);
    expect_rejected(&duplicated, RejectReason::ContentMalformed);

    let mut deep = String::new();
    for _ in 0..200 {
        deep.push_str("{\"a\":");
    }
    deep.push('1');
    deep.push_str(&"}".repeat(200));
    let nested = join.replacen(
        r#""application":{"type":"m.call"}"#,
        &format!(r#""application":{deep}"#),
        1,
    );
    assert_ne!(nested, join);
    let (_, changes, reasons) = replace_alice_with(&nested);
    assert!(matches!(&changes[1], C::Left(u, _, _, LeftReason::Rejected(_)) if u == "@alice:x"));
    assert_eq!(reasons.len(), 1);
}

#[test]
fn giant_values_cost_only_their_own_key() {
    let giant = "x".repeat(262_144);
    // A giant member ID that is also the sticky key: valid, if silly.
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@alice:x", "@bob:x"]);
    let bob = Ev::new(
        &room_id,
        &user("@bob:x"),
        "$bob",
        &js43_join("@bob:x", "B", "mb"),
    )
    .build();
    let alice = Ev::new(
        &room_id,
        &user("@alice:x"),
        "$a",
        &js43_join("@alice:x", "A", &giant),
    )
    .ts(NOW_MS + 1)
    .build();
    let changes = model.handle_sticky_changes(&[added(&bob), added(&alice)]);
    assert_eq!(changes.len(), 3);
    let debug = format!("{changes:?}");
    assert!(
        debug.len() < 10_000,
        "debug output of a giant member stays bounded"
    );

    // A giant transport URL: kept as is.
    let mut content = js43_join("@alice:x", "A", "ma");
    content["transports"]["published"][0]["livekit_service_url"] = json!(giant);
    let (model, changes, reasons) = replace_alice_with(&content.to_string());
    assert!(reasons.is_empty());
    assert_eq!(changes[1], updated("@alice:x", "A", "ma"));
    let alice = model
        .participants(&room("!r:example.org"), ROOM_SLOT)
        .find(|p| p.user_id == "@alice:x")
        .unwrap();
    assert_eq!(
        alice.own_transport(),
        Some(&Transport::livekit(giant.clone()))
    );

    // Thousands of extra fields are skipped.
    let mut content = js43_join("@alice:x", "A", "ma");
    for i in 0..10_922 {
        content[format!("field_{i:05}")] = json!("v");
    }
    let (_, changes, reasons) = replace_alice_with(&content.to_string());
    assert!(reasons.is_empty());
    assert_eq!(changes[1], updated("@alice:x", "A", "ma"));
}

#[test]
fn many_transports_are_capped_and_bad_ones_only_flag() {
    let mut content = js43_join("@alice:x", "A", "ma");
    let many: Vec<_> = (0..1000).map(|i| json!({"type": "livekit", "livekit_service_url": format!("https://{i}.example.org")})).collect();
    content["transports"]["published"] = json!(many);
    let (model, _, reasons) = replace_alice_with(&content.to_string());
    assert!(reasons.is_empty());
    let alice = model
        .participants(&room("!r:example.org"), ROOM_SLOT)
        .find(|p| p.user_id == "@alice:x")
        .unwrap();
    assert_eq!(alice.transports.len(), 8);

    for transports in [
        json!({"published": {"type": "livekit"}}),
        json!([{"type": "livekit", "livekit_service_url": LK}]),
        json!("x"),
    ] {
        let mut content = js43_join("@alice:x", "A", "ma");
        content["transports"] = transports;
        let (model, changes, reasons) = replace_alice_with(&content.to_string());
        assert_eq!(reasons, vec![RejectReason::TransportsInvalid]);
        assert_eq!(
            changes[1],
            updated("@alice:x", "A", "ma"),
            "kept, without a transport"
        );
        let alice = model
            .participants(&room("!r:example.org"), ROOM_SLOT)
            .find(|p| p.user_id == "@alice:x")
            .unwrap();
        assert_eq!(alice.own_transport(), None);
    }
    let mut content = js42_join("@alice:x", "A", "ma");
    content["rtc_transports"] = json!({"type": "livekit"});
    let (_, _, reasons) = replace_alice_with(&content.to_string());
    assert_eq!(reasons, vec![RejectReason::TransportsInvalid]);
}

#[test]
fn unknown_transport_types_are_kept_but_never_selected() {
    let mut content = js43_join("@alice:x", "A", "ma");
    content["transports"]["published"] = json!([
        {"type": "org.example.mesh", "peers": 3},
        {"type": "livekit"},
        7,
        {"type": "livekit", "livekit_service_url": LK},
    ]);
    let (model, _, reasons) = replace_alice_with(&content.to_string());
    assert!(reasons.is_empty());
    let alice = model
        .participants(&room("!r:example.org"), ROOM_SLOT)
        .find(|p| p.user_id == "@alice:x")
        .unwrap();
    let types: Vec<_> = alice
        .transports
        .iter()
        .map(Transport::transport_type)
        .collect();
    assert_eq!(types, vec!["org.example.mesh", "livekit", "livekit"]);
    assert!(!alice.transports[0].is_supported());
    assert_eq!(
        alice.transports[0].to_json(),
        json!({"type": "org.example.mesh", "peers": 3})
    );
    assert!(
        !alice.transports[1].is_supported(),
        "livekit without a URL cannot be used"
    );
    assert_eq!(alice.own_transport(), Some(&Transport::livekit(LK)));
}

#[test]
fn wrongly_typed_optional_fields_do_not_hide_the_member() {
    let mut content = js43_join("@alice:x", "A", "ma");
    content["versions"] = json!("v0");
    content["application"]["m.call.intent"] = json!(["video"]);
    content["m.relation"] = json!({"rel_type": "m.reference", "event_id": "$prev"});
    content["leave_reason"] = json!(5);
    let (model, changes, reasons) = replace_alice_with(&content.to_string());
    assert!(reasons.is_empty());
    assert_eq!(changes[1], updated("@alice:x", "A", "ma"));
    let alice = model
        .participants(&room("!r:example.org"), ROOM_SLOT)
        .find(|p| p.user_id == "@alice:x")
        .unwrap();
    assert_eq!(alice.call_intent, None);
}

#[test]
fn unkeyed_member_events_are_ignored_with_a_diagnostic() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let mut content = js43_join("@a:x", "A", "m");
    content
        .as_object_mut()
        .unwrap()
        .remove("msc4354_sticky_key");
    let ev = Ev::new(&room_id, &user("@a:x"), "$u", &content).build();
    assert!(ev.sticky_key.is_none());
    assert!(
        model
            .handle_sticky_changes(&[
                added(&ev),
                removed(&ev, matrix_sticky_events::RemovalReason::Expired)
            ])
            .is_empty()
    );
    assert_eq!(
        diagnostics(&mut model)
            .iter()
            .map(|d| d.reason.clone())
            .collect::<Vec<_>>(),
        vec![RejectReason::MissingStickyKey]
    );
}

#[test]
fn hostile_legacy_content_costs_only_its_state_key() {
    let room_id = room("!r:example.org");
    let cases: Vec<(serde_json::Value, RejectReason)> = vec![
        (json!("a string"), RejectReason::ContentNotObject),
        (json!([1]), RejectReason::ContentNotObject),
        (
            json!({"device_id": 5, "application": "m.call"}),
            RejectReason::LegacyFieldInvalid("device_id"),
        ),
        (
            json!({"device_id": "A"}),
            RejectReason::LegacyFieldInvalid("application"),
        ),
        (
            json!({"device_id": "A", "application": "m.call", "call_id": 0}),
            RejectReason::LegacyFieldInvalid("call_id"),
        ),
        (
            json!({"device_id": "A", "application": "m.call", "scope": {}}),
            RejectReason::LegacyFieldInvalid("scope"),
        ),
        (
            json!({"device_id": "A", "application": "m.call", "created_ts": "1"}),
            RejectReason::LegacyFieldInvalid("created_ts"),
        ),
        (
            json!({"device_id": "A", "application": "m.call", "expires": -1}),
            RejectReason::LegacyFieldInvalid("expires"),
        ),
        (
            json!({"device_id": "A", "application": "m.call", "focus_active": "livekit"}),
            RejectReason::LegacyFieldInvalid("focus_active"),
        ),
        (
            json!({"device_id": "A", "application": "m.call", "focus_active": ["livekit", "multi_sfu"]}),
            RejectReason::LegacyFieldInvalid("focus_active"),
        ),
        (
            json!({"device_id": "A", "application": "m.call", "focus_active": {"focus_selection": "multi_sfu"}}),
            RejectReason::LegacyFieldInvalid("focus_active"),
        ),
        (
            json!({"device_id": "A", "application": "m.call", "foci_preferred": {}}),
            RejectReason::LegacyFieldInvalid("foci_preferred"),
        ),
        (
            json!({"device_id": "A", "application": "m.call", "m.call.intent": 3}),
            RejectReason::LegacyFieldInvalid("m.call.intent"),
        ),
    ];
    for (content, reason) in cases {
        let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
        let b = state_event(
            "@b:x",
            "_@b:x_B_m.call",
            "$b",
            NOW_MS,
            &legacy_join("B", "multi_sfu", LK),
        );
        let _ = model.handle_state_event(&room_id, &b, receipt(0));
        let a = state_event(
            "@a:x",
            "_@a:x_A_m.call",
            "$a",
            NOW_MS,
            &legacy_join("A", "multi_sfu", LK),
        );
        let _ = model.handle_state_event(&room_id, &a, receipt(0));
        let bad = state_event("@a:x", "_@a:x_A_m.call", "$bad", NOW_MS + 1, &content);
        let changes = model.handle_state_event(&room_id, &bad, receipt(1));
        assert_eq!(
            summary(&changes),
            vec![left(
                "@a:x",
                "A",
                "@a:x:A",
                LeftReason::Rejected(reason.clone())
            )],
            "{content}"
        );
        assert_eq!(
            diagnostics(&mut model)
                .into_iter()
                .map(|d| d.reason)
                .collect::<Vec<_>>(),
            vec![reason]
        );
        assert_eq!(
            roster(&model, &room_id),
            vec![("@b:x".to_owned(), "B".to_owned(), "@b:x:B".to_owned())]
        );
    }
}

#[test]
fn malformed_state_events_are_reported_not_applied() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let good: serde_json::Value = serde_json::from_str(&state_event(
        "@a:x",
        "_@a:x_A_m.call",
        "$a",
        NOW_MS,
        &legacy_join("A", "multi_sfu", LK),
    ))
    .unwrap();
    let mut cases = Vec::new();
    for (field, value, what) in [
        ("sender", json!("not-a-user"), "sender"),
        ("sender", json!(7), "sender"),
        ("event_id", json!(""), "event_id"),
        ("state_key", json!(null), "state_key"),
        ("origin_server_ts", json!("1"), "origin_server_ts"),
        ("content", json!(null), "content"),
    ] {
        let mut event = good.clone();
        event[field] = value;
        cases.push((event.to_string(), what));
    }
    cases.push(("[]".to_owned(), "not an object"));
    cases.push(("{\"type\": 5}".to_owned(), "type"));
    for (raw, what) in cases {
        assert!(
            model
                .handle_state_event(&room_id, &raw, receipt(0))
                .is_empty(),
            "{raw}"
        );
        let found = diagnostics(&mut model);
        assert_eq!(found.len(), 1, "{raw}");
        assert_eq!(
            found[0].reason,
            RejectReason::MalformedStateEvent(what),
            "{raw}"
        );
    }
    assert!(model.sessions(&room_id).next().is_none());
}
