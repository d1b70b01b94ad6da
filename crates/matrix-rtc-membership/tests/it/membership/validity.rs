//! One test per validity rule of docs/protocol.md §5.8, named after it.
use matrix_rtc_membership::{LeftReason, MemberQuery, RejectReason, SessionChange};
use matrix_sticky_events::RemovalReason;
use serde_json::json;

use super::support::*;

/// Applies one join and returns the changes plus the diagnostics it produced.
fn try_join(content: serde_json::Value) -> (Vec<C>, Vec<RejectReason>) {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@alice:example.org"]);
    let ev = Ev::new(&room_id, &user("@alice:example.org"), "$j", &content).build();
    let changes = summary(&model.handle_sticky_changes(&[added(&ev)]));
    let reasons = diagnostics(&mut model)
        .into_iter()
        .map(|d| {
            assert_eq!(d.room_id, room_id);
            assert_eq!(d.event_id.as_deref().map(|e| e.as_str()), Some("$j"));
            assert_eq!(
                d.sender.as_deref().map(|s| s.as_str()),
                Some("@alice:example.org")
            );
            d.reason
        })
        .collect();
    (changes, reasons)
}

#[test]
fn rule1_a_key_only_winner_is_a_deletion() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let join = Ev::new(&room_id, &user("@a:x"), "$j", &js42_join("@a:x", "A", "m")).build();
    let _ = model.handle_sticky_changes(&[added(&join)]);
    // The map reports a key-only winner as a deletion...
    let changes = model.handle_sticky_changes(&[removed(&join, RemovalReason::Deleted)]);
    assert_eq!(
        summary(&changes),
        vec![left("@a:x", "A", "m", LeftReason::LeaveEvent), ended()]
    );
    // ...and should it report one as a replacement, it is a leave all the same.
    let _ = model.handle_sticky_changes(&[added(&join)]);
    let tombstone = Ev::new(
        &room_id,
        &user("@a:x"),
        "$t",
        &json!({"msc4354_sticky_key": "m", "sticky_key": "m"}),
    )
    .build();
    assert!(tombstone.key_only);
    let changes = model.handle_sticky_changes(&[replaced(&join, &tombstone)]);
    assert_eq!(
        summary(&changes),
        vec![left("@a:x", "A", "m", LeftReason::LeaveEvent), ended()]
    );
}

#[test]
fn rule2_member_id_must_equal_the_sticky_key() {
    let mut content = js43_join("@alice:example.org", "DEV", "m1");
    content["msc4354_sticky_key"] = json!("another-key");
    let (changes, reasons) = try_join(content);
    assert!(changes.is_empty());
    assert_eq!(reasons, vec![RejectReason::StickyKeyMismatch]);
}

#[test]
fn rule2_sticky_key_may_be_the_stable_name() {
    let mut content = js43_join("@alice:example.org", "DEV", "m1");
    content
        .as_object_mut()
        .unwrap()
        .remove("msc4354_sticky_key");
    content["sticky_key"] = json!("m1");
    let (changes, reasons) = try_join(content);
    assert_eq!(
        changes,
        vec![started(), joined("@alice:example.org", "DEV", "m1")]
    );
    assert!(reasons.is_empty());
}

#[test]
fn rule3_claimed_user_must_be_the_sender() {
    let (changes, reasons) = try_join(js43_join("@mallory:example.org", "DEV", "m1"));
    assert!(changes.is_empty());
    assert_eq!(reasons, vec![RejectReason::UserClaimMismatch]);

    let mut content = js43_join("@alice:example.org", "DEV", "m1");
    content["member"]["claimed_user_id"] = json!("@mallory:example.org");
    let (changes, reasons) = try_join(content);
    assert!(changes.is_empty());
    assert_eq!(reasons, vec![RejectReason::UserClaimMismatch]);
}

#[test]
fn rule3_without_a_claim_the_sender_is_the_user() {
    let mut content = js43_join("@alice:example.org", "DEV", "m1");
    content["member"].as_object_mut().unwrap().remove("user_id");
    let (changes, reasons) = try_join(content);
    assert_eq!(
        changes,
        vec![started(), joined("@alice:example.org", "DEV", "m1")]
    );
    assert!(reasons.is_empty());
}

#[test]
fn rule4_slot_must_match_the_application() {
    let mut content = js43_join("@alice:example.org", "DEV", "m1");
    content["application"]["type"] = json!("org.example.not_a_call");
    let (changes, reasons) = try_join(content);
    assert!(changes.is_empty());
    assert_eq!(reasons, vec![RejectReason::SlotApplicationMismatch]);

    let mut content = js43_join("@alice:example.org", "DEV", "m1");
    content["slot_id"] = json!("m.call");
    let (changes, reasons) = try_join(content);
    assert!(changes.is_empty());
    assert_eq!(reasons, vec![RejectReason::SlotApplicationMismatch]);

    let mut content = js43_join("@alice:example.org", "DEV", "m1");
    content.as_object_mut().unwrap().remove("slot_id");
    let (changes, reasons) = try_join(content);
    assert!(changes.is_empty());
    assert_eq!(reasons, vec![RejectReason::SlotIdInvalid]);
}

#[test]
fn rule4_other_applications_get_their_own_slots() {
    let mut content = js43_join("@alice:example.org", "DEV", "m1");
    content["application"]["type"] = json!("org.example.whiteboard");
    content["slot_id"] = json!("org.example.whiteboard#main");
    let (changes, reasons) = try_join(content);
    assert_eq!(
        changes[0],
        C::Started("org.example.whiteboard#main".to_owned())
    );
    assert!(reasons.is_empty());
}

#[test]
fn rule5_plaintext_join_in_an_encrypted_room_never_counts() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    assert!(model.set_room_encrypted(&room_id, true).is_empty());
    let plain = Ev::new(&room_id, &user("@a:x"), "$p", &js43_join("@a:x", "A", "m")).build();
    assert!(model.handle_sticky_changes(&[added(&plain)]).is_empty());
    assert_eq!(
        diagnostics(&mut model)[0].reason,
        RejectReason::PlaintextJoinInEncryptedRoom
    );
    // The encrypted refresh of the same key counts.
    let encrypted = Ev::new(&room_id, &user("@a:x"), "$e", &js43_join("@a:x", "A", "m"))
        .ts(NOW_MS + 1)
        .encrypted_by(Some("A"))
        .build();
    let changes = model.handle_sticky_changes(&[replaced(&plain, &encrypted)]);
    assert_eq!(summary(&changes), vec![started(), joined("@a:x", "A", "m")]);
}

#[test]
fn rule5_plaintext_leave_in_an_encrypted_room_is_a_leave() {
    // js-sdk 43 sends its delayed leave in plaintext, even in encrypted rooms (capture line 4).
    let line: serde_json::Value = serde_json::from_str(
        fixture("js-sdk-43.0.0/sent-events.jsonl")
            .lines()
            .nth(3)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["room"], "encrypted");
    let pdu = &line["pdu"];
    let room_id = room(pdu["room_id"].as_str().unwrap());
    let carol = user("@carol:localhost");
    let mut model = model_with(&room_id, &["@carol:localhost"]);
    let _ = model.set_room_encrypted(&room_id, true);
    let join = Ev::new(
        &room_id,
        &carol,
        "$join",
        &js43_join("@carol:localhost", "CJ", "@carol:localhost:CJ"),
    )
    .encrypted_by(Some("CJ"))
    .build();
    let _ = model.handle_sticky_changes(&[added(&join)]);
    let leave = Ev::new(&room_id, &carol, "$leave", &pdu["content"])
        .ts(NOW_MS + 13_000)
        .build();
    let changes = model.handle_sticky_changes(&[replaced(&join, &leave)]);
    assert_eq!(
        summary(&changes),
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
}

#[test]
fn rule5_a_room_becoming_encrypted_hides_plaintext_joins() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
    let plain = Ev::new(&room_id, &user("@a:x"), "$p", &js43_join("@a:x", "A", "ma")).build();
    let enc = Ev::new(&room_id, &user("@b:x"), "$e", &js43_join("@b:x", "B", "mb"))
        .encrypted_by(Some("B"))
        .build();
    let _ = model.handle_sticky_changes(&[added(&plain), added(&enc)]);
    let changes = model.set_room_encrypted(&room_id, true);
    assert_eq!(
        summary(&changes),
        vec![left(
            "@a:x",
            "A",
            "ma",
            LeftReason::Rejected(RejectReason::PlaintextJoinInEncryptedRoom)
        )]
    );
    assert_eq!(
        roster(&model, &room_id),
        vec![("@b:x".to_owned(), "B".to_owned(), "mb".to_owned())]
    );
}

#[test]
fn rule5_legacy_state_is_exempt_from_encryption() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let _ = model.set_room_encrypted(&room_id, true);
    let raw = state_event(
        "@a:x",
        "_@a:x_A_m.call",
        "$s",
        NOW_MS,
        &legacy_join("A", "multi_sfu", LK),
    );
    let changes = model.handle_state_event(&room_id, &raw, receipt(0));
    assert_eq!(
        summary(&changes),
        vec![started(), joined("@a:x", "A", "@a:x:A")]
    );
}

#[test]
fn claimed_device_must_match_the_encrypting_device_else_suspicious() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let ev = Ev::new(
        &room_id,
        &user("@a:x"),
        "$e",
        &js43_join("@a:x", "CLAIMED", "m"),
    )
    .encrypted_by(Some("ACTUAL"))
    .build();
    let changes = model.handle_sticky_changes(&[added(&ev)]);
    // Decision: kept (under the claimed device, as peers see it) but flagged.
    let SessionChange::Joined(p) = &changes[1] else {
        panic!("{changes:?}")
    };
    assert!(p.suspicious);
    assert_eq!(p.device_id, "CLAIMED");
    let found = diagnostics(&mut model);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].reason, RejectReason::DeviceMismatch);
    assert!(!found[0].reason.hides_member());

    // Matching devices, or an unknown encrypting device, are not suspicious.
    for origin in [Some("CLAIMED"), None] {
        let mut model = model_with(&room_id, &["@a:x"]);
        let ev = Ev::new(
            &room_id,
            &user("@a:x"),
            "$e",
            &js43_join("@a:x", "CLAIMED", "m"),
        )
        .encrypted_by(origin)
        .build();
        let _ = model.handle_sticky_changes(&[added(&ev)]);
        assert!(
            !model
                .participants(&room_id, ROOM_SLOT)
                .next()
                .unwrap()
                .suspicious
        );
        assert!(diagnostics(&mut model).is_empty());
    }
}

#[test]
fn rule6_format_a_membership_must_be_join() {
    let mut content = a_join("m1", "DEV");
    content["member"]["membership"] = json!("knock");
    let (changes, reasons) = try_join(content);
    assert!(changes.is_empty());
    assert_eq!(reasons, vec![RejectReason::MembershipUnknown]);

    let mut content = a_join("m1", "DEV");
    content.as_object_mut().unwrap().remove("application");
    let (changes, reasons) = try_join(content);
    assert!(changes.is_empty());
    assert_eq!(reasons, vec![RejectReason::ApplicationMissing]);
}

#[test]
fn rule8_sender_must_be_joined_hidden_but_kept_and_back_on_rejoin() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
    let a = Ev::new(&room_id, &user("@a:x"), "$a", &js43_join("@a:x", "A", "ma")).build();
    let b = Ev::new(&room_id, &user("@b:x"), "$b", &js43_join("@b:x", "B", "mb"))
        .ts(NOW_MS + 1)
        .build();
    let _ = model.handle_sticky_changes(&[added(&a), added(&b)]);

    let changes = model.handle_room_member(&room_id, &user("@a:x"), false);
    assert_eq!(
        summary(&changes),
        vec![left("@a:x", "A", "ma", LeftReason::SenderLeftRoom)]
    );
    assert!(
        model
            .handle_room_member(&room_id, &user("@a:x"), false)
            .is_empty(),
        "idempotent"
    );

    // A refresh while not joined is applied (and flagged), but stays hidden.
    let a2 = Ev::new(
        &room_id,
        &user("@a:x"),
        "$a2",
        &js43_join("@a:x", "A", "ma"),
    )
    .ts(NOW_MS + 2)
    .build();
    assert!(model.handle_sticky_changes(&[replaced(&a, &a2)]).is_empty());
    assert_eq!(
        diagnostics(&mut model)[0].reason,
        RejectReason::SenderNotJoined
    );

    // Rejoining while the entry is live shows it again, with its original creation time.
    let changes = model.handle_room_member(&room_id, &user("@a:x"), true);
    assert_eq!(summary(&changes), vec![joined("@a:x", "A", "ma")]);
    let order: Vec<_> = roster(&model, &room_id)
        .into_iter()
        .map(|(u, _, _)| u)
        .collect();
    assert_eq!(order, vec!["@a:x", "@b:x"]);
    assert_eq!(
        model
            .participants(&room_id, ROOM_SLOT)
            .next()
            .unwrap()
            .event_id
            .as_str(),
        "$a2"
    );

    // The last member leaving the room ends the session.
    let _ = model.handle_room_member(&room_id, &user("@a:x"), false);
    let changes = model.handle_room_member(&room_id, &user("@b:x"), false);
    assert_eq!(
        summary(&changes),
        vec![left("@b:x", "B", "mb", LeftReason::SenderLeftRoom), ended()]
    );
}

#[test]
fn rule8_an_unknown_sender_is_hidden_and_asked_about_once() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &[]);
    let a = Ev::new(&room_id, &user("@a:x"), "$a", &js43_join("@a:x", "A", "ma")).build();
    let a2 = Ev::new(
        &room_id,
        &user("@a:x"),
        "$a2",
        &js43_join("@a:x", "A", "ma"),
    )
    .ts(NOW_MS + 1)
    .build();
    assert!(
        model
            .handle_sticky_changes(&[added(&a), replaced(&a, &a2)])
            .is_empty()
    );
    assert_eq!(
        model
            .poll_member_query()
            .map(|q| (q.room_id.clone(), q.user_id.clone())),
        Some((room_id.clone(), user("@a:x")))
    );
    assert_eq!(model.poll_member_query(), None::<MemberQuery>, "asked once");
    assert!(
        diagnostics(&mut model).is_empty(),
        "unknown is not yet a rejection"
    );
    let changes = model.handle_room_member(&room_id, &user("@a:x"), true);
    assert_eq!(
        summary(&changes),
        vec![started(), joined("@a:x", "A", "ma")]
    );
}

#[test]
fn rule8_legacy_memberships_need_a_joined_sender_too() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let _ = model.handle_room_member(&room_id, &user("@a:x"), false);
    let raw = state_event(
        "@a:x",
        "_@a:x_A_m.call",
        "$s",
        NOW_MS,
        &legacy_join("A", "multi_sfu", LK),
    );
    assert!(
        model
            .handle_state_event(&room_id, &raw, receipt(0))
            .is_empty()
    );
    assert_eq!(
        diagnostics(&mut model)[0].reason,
        RejectReason::SenderNotJoined
    );
    let changes = model.handle_room_member(&room_id, &user("@a:x"), true);
    assert_eq!(
        summary(&changes),
        vec![started(), joined("@a:x", "A", "@a:x:A")]
    );
}

#[test]
fn rule9_ignored_senders_are_hidden_in_every_room() {
    let (r1, r2) = (room("!one:x"), room("!two:x"));
    let mut model = model_with(&r1, &["@a:x"]);
    let _ = model.handle_room_member(&r2, &user("@a:x"), true);
    let a1 = Ev::new(&r1, &user("@a:x"), "$1", &js43_join("@a:x", "A", "m1")).build();
    let a2 = Ev::new(&r2, &user("@a:x"), "$2", &js43_join("@a:x", "A", "m2")).build();
    let _ = model.handle_sticky_changes(&[added(&a1), added(&a2)]);
    let changes = model.handle_ignored_user(&user("@a:x"), true);
    let mut got = summary(&changes);
    got.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        got,
        vec![
            ended(),
            ended(),
            left("@a:x", "A", "m1", LeftReason::SenderIgnored),
            left("@a:x", "A", "m2", LeftReason::SenderIgnored),
        ]
    );
    assert!(
        model.handle_ignored_user(&user("@a:x"), true).is_empty(),
        "idempotent"
    );
    let changes = model.handle_ignored_user(&user("@a:x"), false);
    assert_eq!(changes.len(), 4);
    assert_eq!(model.participants(&r1, ROOM_SLOT).count(), 1);
    assert_eq!(model.participants(&r2, ROOM_SLOT).count(), 1);
}

#[test]
fn diagnostics_are_bounded() {
    let room_id = room("!r:example.org");
    let mut model = model_with(&room_id, &["@a:x"]);
    let changes: Vec<_> = (0..1500)
        .map(|i| {
            added(
                &Ev::raw(&room_id, &user("@a:x"), &format!("$e{i}"), "\"junk\"")
                    .build_with_key("k"),
            )
        })
        .collect();
    assert!(model.handle_sticky_changes(&changes).is_empty());
    assert_eq!(model.dropped_diagnostics(), 476);
    let kept = diagnostics(&mut model);
    assert_eq!(kept.len(), 1024);
    assert_eq!(
        kept[0].event_id.as_deref().map(|e| e.as_str()),
        Some("$e476"),
        "the oldest are dropped"
    );
}
