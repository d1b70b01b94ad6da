//! Sessions: ordering, format preference, transports, identity, intent, leave reasons, cost.
use std::time::Duration;

use matrix_rtc_membership::{
    CallIntent, LeftReason, MembershipFormat, RejectReason, RtcMembership, SessionChange,
    Transport, livekit_identity,
};
use matrix_sticky_events::RemovalReason;
use serde_json::json;

use super::support::*;

#[test]
fn sessions_start_and_end_on_first_join_and_last_leave() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
    let a = Ev::new(&room_id, &user("@a:x"), "$a", &js43_join("@a:x", "A", "ma")).build();
    let b = Ev::new(&room_id, &user("@b:x"), "$b", &js43_join("@b:x", "B", "mb"))
        .ts(NOW_MS + 1)
        .build();
    let changes = model.handle_sticky_changes(&[added(&a), added(&b)]);
    assert_eq!(
        summary(&changes),
        vec![
            started(),
            joined("@a:x", "A", "ma"),
            joined("@b:x", "B", "mb")
        ]
    );
    assert_eq!(model.sessions(&room_id).count(), 1);
    let a_leave = Ev::new(&room_id, &user("@a:x"), "$al", &js43_leave("ma"))
        .ts(NOW_MS + 2)
        .build();
    let b_leave = Ev::new(&room_id, &user("@b:x"), "$bl", &js43_leave("mb"))
        .ts(NOW_MS + 3)
        .build();
    let changes = model.handle_sticky_changes(&[replaced(&a, &a_leave), replaced(&b, &b_leave)]);
    assert_eq!(
        summary(&changes),
        vec![
            left("@a:x", "A", "ma", LeftReason::LeaveEvent),
            left("@b:x", "B", "mb", LeftReason::LeaveEvent),
            ended(),
        ]
    );
    assert!(model.sessions(&room_id).next().is_none());
    assert!(model.session(&room_id, ROOM_SLOT).is_none());
    assert_eq!(model.participants(&room_id, ROOM_SLOT).count(), 0);
}

#[test]
fn participants_are_ordered_oldest_first_ties_by_user_then_device() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x", "@b:x", "@c:x"]);
    let events = [
        Ev::new(
            &room_id,
            &user("@b:x"),
            "$b2",
            &js43_join("@b:x", "D2", "b2"),
        )
        .ts(NOW_MS + 2),
        Ev::new(&room_id, &user("@a:x"), "$a", &js43_join("@a:x", "A", "a")).ts(NOW_MS + 2),
        Ev::new(&room_id, &user("@c:x"), "$c", &js43_join("@c:x", "C", "c")).ts(NOW_MS + 1),
        Ev::new(
            &room_id,
            &user("@b:x"),
            "$b1",
            &js43_join("@b:x", "D1", "b1"),
        )
        .ts(NOW_MS + 2),
    ];
    let changes: Vec<_> = events.iter().map(|e| added(&e.build())).collect();
    let _ = model.handle_sticky_changes(&changes);
    let order: Vec<_> = roster(&model, &room_id)
        .into_iter()
        .map(|(u, d, _)| format!("{u}/{d}"))
        .collect();
    assert_eq!(order, vec!["@c:x/C", "@a:x/A", "@b:x/D1", "@b:x/D2"]);
    let session = model.session(&room_id, ROOM_SLOT).unwrap();
    assert_eq!(session.oldest().unwrap().user_id, "@c:x");
    let users: Vec<_> = session.users().map(|u| u.as_str()).collect();
    assert_eq!(
        users,
        vec!["@c:x", "@a:x", "@b:x"],
        "one entry per user in the per-user view"
    );
    assert_eq!(session.len(), 4);
    assert!(!session.is_empty());
}

#[test]
fn ordering_is_stable_across_refreshes() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
    let a = Ev::new(&room_id, &user("@a:x"), "$a", &js43_join("@a:x", "A", "ma"))
        .ts(NOW_MS)
        .build();
    let b = Ev::new(&room_id, &user("@b:x"), "$b", &js43_join("@b:x", "B", "mb"))
        .ts(NOW_MS + 1000)
        .build();
    let _ = model.handle_sticky_changes(&[added(&a), added(&b)]);
    // a refreshes an hour later: js-sdk would move a behind b (§9.5); we keep a first.
    let a2 = Ev::new(
        &room_id,
        &user("@a:x"),
        "$a2",
        &js43_join("@a:x", "A", "ma"),
    )
    .ts(NOW_MS + HOUR_MS)
    .build();
    let changes = model.handle_sticky_changes(&[replaced(&a, &a2)]);
    assert_eq!(summary(&changes), vec![updated("@a:x", "A", "ma")]);
    let SessionChange::Updated { old, new } = &changes[0] else {
        unreachable!()
    };
    assert_eq!((old.created_ts, new.created_ts), (NOW_MS, NOW_MS));
    assert_eq!(new.event_id.as_str(), "$a2");
    assert_eq!(new.expires_wall_ms, NOW_MS + 2 * HOUR_MS);
    let order: Vec<_> = roster(&model, &room_id)
        .into_iter()
        .map(|(u, _, _)| u)
        .collect();
    assert_eq!(order, vec!["@a:x", "@b:x"]);
    assert_eq!(
        model
            .session(&room_id, ROOM_SLOT)
            .unwrap()
            .oldest()
            .unwrap()
            .user_id,
        "@a:x"
    );
}

#[test]
fn a_rejoin_after_a_leave_starts_a_new_creation_time() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
    let a = Ev::new(&room_id, &user("@a:x"), "$a", &js43_join("@a:x", "A", "ma"))
        .ts(NOW_MS)
        .build();
    let b = Ev::new(&room_id, &user("@b:x"), "$b", &js43_join("@b:x", "B", "mb"))
        .ts(NOW_MS + 1)
        .build();
    let _ = model.handle_sticky_changes(&[added(&a), added(&b)]);
    let leave = Ev::new(&room_id, &user("@a:x"), "$l", &js43_leave("ma"))
        .ts(NOW_MS + 2)
        .build();
    // An automatic re-join after a fired leave keeps the member ID (docs/protocol.md §7.2).
    let rejoin = Ev::new(&room_id, &user("@a:x"), "$r", &js43_join("@a:x", "A", "ma"))
        .ts(NOW_MS + 3)
        .build();
    let changes = model.handle_sticky_changes(&[replaced(&a, &leave), replaced(&leave, &rejoin)]);
    assert_eq!(
        summary(&changes),
        vec![
            left("@a:x", "A", "ma", LeftReason::LeaveEvent),
            joined("@a:x", "A", "ma")
        ]
    );
    let order: Vec<_> = roster(&model, &room_id)
        .into_iter()
        .map(|(u, _, _)| u)
        .collect();
    assert_eq!(order, vec!["@b:x", "@a:x"]);
}

#[test]
fn one_device_with_two_member_ids_shows_twice() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x"]);
    let m1 = Ev::new(&room_id, &user("@a:x"), "$1", &js43_join("@a:x", "A", "m1")).build();
    let m2 = Ev::new(&room_id, &user("@a:x"), "$2", &js43_join("@a:x", "A", "m2"))
        .ts(NOW_MS + 1)
        .build();
    let changes = model.handle_sticky_changes(&[added(&m1), added(&m2)]);
    assert_eq!(
        summary(&changes),
        vec![
            started(),
            joined("@a:x", "A", "m1"),
            joined("@a:x", "A", "m2")
        ]
    );
}

#[test]
fn sticky_membership_is_preferred_over_legacy_for_the_same_device() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x"]);
    let legacy = state_event(
        "@a:x",
        "_@a:x_A_m.call",
        "$c",
        NOW_MS,
        &legacy_join("A", "multi_sfu", LK),
    );
    let _ = model.handle_state_event(&room_id, &legacy, receipt(0));

    // Same member ID ("{user}:{device}", as js-sdk 43 uses): one entry, updated in place.
    let b = Ev::new(
        &room_id,
        &user("@a:x"),
        "$b",
        &js43_join("@a:x", "A", "@a:x:A"),
    )
    .ts(NOW_MS + 5)
    .build();
    let changes = model.handle_sticky_changes(&[added(&b)]);
    assert_eq!(summary(&changes), vec![updated("@a:x", "A", "@a:x:A")]);
    let SessionChange::Updated { old, new } = &changes[0] else {
        unreachable!()
    };
    assert_eq!(
        (old.format, new.format),
        (MembershipFormat::LegacyState, MembershipFormat::JsSdk)
    );
    assert_eq!(model.participants(&room_id, ROOM_SLOT).count(), 1);
    // When the sticky one leaves, the still-live legacy one shows again.
    let leave = Ev::new(&room_id, &user("@a:x"), "$bl", &js43_leave("@a:x:A"))
        .ts(NOW_MS + 6)
        .build();
    let changes = model.handle_sticky_changes(&[replaced(&b, &leave)]);
    assert_eq!(summary(&changes), vec![updated("@a:x", "A", "@a:x:A")]);
    assert_eq!(
        model
            .participants(&room_id, ROOM_SLOT)
            .next()
            .unwrap()
            .format,
        MembershipFormat::LegacyState
    );

    // Another member ID: the legacy entry is superseded, and back when the sticky one goes.
    let b = Ev::new(
        &room_id,
        &user("@a:x"),
        "$b2",
        &js43_join("@a:x", "A", "uuid"),
    )
    .ts(NOW_MS + 7)
    .build();
    let changes = model.handle_sticky_changes(&[added(&b)]);
    assert_eq!(
        summary(&changes),
        vec![
            left("@a:x", "A", "@a:x:A", LeftReason::Superseded),
            joined("@a:x", "A", "uuid")
        ]
    );
    let changes = model.handle_sticky_changes(&[removed(&b, RemovalReason::Expired)]);
    assert_eq!(
        summary(&changes),
        vec![
            left("@a:x", "A", "uuid", LeftReason::Expired),
            joined("@a:x", "A", "@a:x:A")
        ]
    );

    // Another device of the same user is another participant.
    let phone = Ev::new(
        &room_id,
        &user("@a:x"),
        "$p",
        &js43_join("@a:x", "PHONE", "p"),
    )
    .ts(NOW_MS + 8)
    .build();
    let changes = model.handle_sticky_changes(&[added(&phone)]);
    assert_eq!(summary(&changes), vec![joined("@a:x", "PHONE", "p")]);
    assert_eq!(model.participants(&room_id, ROOM_SLOT).count(), 2);
}

#[test]
fn transport_selection_per_format() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x", "@b:x", "@c:x", "@d:x"]);
    // a (oldest): legacy, oldest_membership, focus A.
    let a = state_event(
        "@a:x",
        "_@a:x_A_m.call",
        "$a",
        NOW_MS,
        &legacy_join("A", "oldest_membership", "https://a.example.org"),
    );
    let _ = model.handle_state_event(&room_id, &a, receipt(0));
    // b: legacy, oldest_membership, focus B.
    let b = state_event(
        "@b:x",
        "_@b:x_B_m.call",
        "$b",
        NOW_MS + 1,
        &legacy_join("B", "oldest_membership", "https://b.example.org"),
    );
    let _ = model.handle_state_event(&room_id, &b, receipt(0));
    // c: legacy, multi_sfu, focus C.
    let c = state_event(
        "@c:x",
        "_@c:x_C_m.call",
        "$c",
        NOW_MS + 2,
        &legacy_join("C", "multi_sfu", "https://c.example.org"),
    );
    let _ = model.handle_state_event(&room_id, &c, receipt(0));
    // d: js-sdk 43, publishes on D.
    let mut content = js43_join("@d:x", "D", "md");
    content["transports"]["published"][0]["livekit_service_url"] = json!("https://d.example.org");
    let d = Ev::new(&room_id, &user("@d:x"), "$d", &content)
        .ts(NOW_MS + 3)
        .build();
    let _ = model.handle_sticky_changes(&[added(&d)]);

    let url = |t: Option<&Transport>| match t {
        Some(Transport::LiveKit { service_url, .. }) => service_url.clone(),
        other => panic!("{other:?}"),
    };
    let session = model.session(&room_id, ROOM_SLOT).unwrap();
    let ps: Vec<_> = session.participants().collect();
    assert_eq!(url(session.transport_for(ps[0])), "https://a.example.org");
    assert_eq!(
        url(session.transport_for(ps[1])),
        "https://a.example.org",
        "oldest_membership: the oldest's focus"
    );
    assert_eq!(
        url(session.transport_for(ps[2])),
        "https://c.example.org",
        "multi_sfu: its own"
    );
    assert_eq!(
        url(session.transport_for(ps[3])),
        "https://d.example.org",
        "sticky: published[0]"
    );
    assert_eq!(url(ps[1].own_transport()), "https://b.example.org");
    assert_eq!(url(session.oldest_transport()), "https://a.example.org");

    // The oldest leaves: the oldest_membership focus moves to b.
    let leave = state_event("@a:x", "_@a:x_A_m.call", "$al", NOW_MS + 4, &json!({}));
    let _ = model.handle_state_event(&room_id, &leave, receipt(1));
    let session = model.session(&room_id, ROOM_SLOT).unwrap();
    let ps: Vec<_> = session.participants().collect();
    assert_eq!(url(session.transport_for(ps[0])), "https://b.example.org");
}

#[test]
fn oldest_transport_skips_members_without_a_supported_one() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x", "@b:x"]);
    let mut content = js43_join("@a:x", "A", "ma");
    content["transports"]["published"] = json!([{"type": "org.example.mesh"}]);
    let a = Ev::new(&room_id, &user("@a:x"), "$a", &content).build();
    let _ = model.handle_sticky_changes(&[added(&a)]);
    let b = state_event(
        "@b:x",
        "_@b:x_B_m.call",
        "$b",
        NOW_MS + 1,
        &legacy_join("B", "oldest_membership", LK),
    );
    let _ = model.handle_state_event(&room_id, &b, receipt(0));
    let session = model.session(&room_id, ROOM_SLOT).unwrap();
    assert_eq!(session.oldest().unwrap().user_id, "@a:x");
    assert_eq!(session.oldest().unwrap().own_transport(), None);
    assert_eq!(
        session.oldest_transport().map(Transport::transport_type),
        Some("livekit")
    );
}

#[test]
fn livekit_identity_test_vector() {
    assert_eq!(
        livekit_identity(
            "@alice:example.org",
            "DEVICEA",
            "c0ffee00-0000-4000-8000-000000000001"
        ),
        "NIhr9StCx5JXUvm+Str08ZFLjNkeQEHX6vQW0l14ZGw"
    );
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@alice:example.org"]);
    let content = js43_join(
        "@alice:example.org",
        "DEVICEA",
        "c0ffee00-0000-4000-8000-000000000001",
    );
    let ev = Ev::new(&room_id, &user("@alice:example.org"), "$a", &content).build();
    let _ = model.handle_sticky_changes(&[added(&ev)]);
    let p = model.participants(&room_id, ROOM_SLOT).next().unwrap();
    assert_eq!(
        p.livekit_identity,
        "NIhr9StCx5JXUvm+Str08ZFLjNkeQEHX6vQW0l14ZGw"
    );
    // Legacy members use "{user}:{device}".
    let raw = state_event(
        "@alice:example.org",
        "_@alice:example.org_OLD_m.call",
        "$l",
        NOW_MS,
        &legacy_join("OLD", "multi_sfu", LK),
    );
    let _ = model.handle_state_event(&room_id, &raw, receipt(0));
    let legacy = model
        .participants(&room_id, ROOM_SLOT)
        .find(|p| p.device_id == "OLD")
        .unwrap();
    assert_eq!(legacy.livekit_identity, "@alice:example.org:OLD");
}

#[test]
fn call_intent_consensus() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x", "@b:x", "@c:x", "@d:x"]);
    let with_intent = |u: &str, d: &str, m: &str, intent: &str, ts: u64| {
        let mut content = js43_join(u, d, m);
        content["application"]["m.call.intent"] = json!(intent);
        Ev::new(&room_id, &user(u), &format!("${m}"), &content)
            .ts(ts)
            .build()
    };
    let a = with_intent("@a:x", "A", "ma", "audio", NOW_MS);
    let b = with_intent("@b:x", "B", "mb", "audio", NOW_MS + 1);
    let _ = model.handle_sticky_changes(&[added(&a), added(&b)]);
    let intent = |model: &RtcMembership| {
        model
            .session(&room_id, ROOM_SLOT)
            .and_then(|s| s.call_intent().cloned())
    };
    assert_eq!(intent(&model), Some(CallIntent::Audio));
    let c = with_intent("@c:x", "C", "mc", "video", NOW_MS + 2);
    let _ = model.handle_sticky_changes(&[added(&c)]);
    assert_eq!(intent(&model), None, "no agreement");
    let _ = model.handle_sticky_changes(&[removed(&c, RemovalReason::Expired)]);
    assert_eq!(intent(&model), Some(CallIntent::Audio));
    // A member without an intent breaks the agreement too.
    let d = Ev::new(&room_id, &user("@d:x"), "$d", &js43_join("@d:x", "D", "md"))
        .ts(NOW_MS + 3)
        .build();
    let _ = model.handle_sticky_changes(&[added(&d)]);
    assert_eq!(intent(&model), None);
    let _ = model.handle_sticky_changes(&[removed(&d, RemovalReason::Expired)]);
    // Both switch to video by refreshing.
    let a2 = with_intent("@a:x", "A", "ma", "video", NOW_MS + 4);
    let b2 = with_intent("@b:x", "B", "mb", "video", NOW_MS + 5);
    let _ = model.handle_sticky_changes(&[replaced(&a, &a2)]);
    assert_eq!(intent(&model), None);
    let _ = model.handle_sticky_changes(&[replaced(&b, &b2)]);
    assert_eq!(intent(&model), Some(CallIntent::Video));
    // Legacy members give theirs at the top level.
    let mut legacy = legacy_join("L", "multi_sfu", LK);
    legacy["m.call.intent"] = json!("video");
    let _ = model.handle_room_member(&room_id, &user("@l:x"), true);
    let _ = model.handle_state_event(
        &room_id,
        &state_event("@l:x", "_@l:x_L_m.call", "$l", NOW_MS, &legacy),
        receipt(0),
    );
    assert_eq!(intent(&model), Some(CallIntent::Video));
}

#[test]
fn every_left_reason() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x", "@keep:x"]);
    let keep = Ev::new(
        &room_id,
        &user("@keep:x"),
        "$k",
        &js43_join("@keep:x", "K", "mk"),
    )
    .build();
    let _ = model.handle_sticky_changes(&[added(&keep)]);
    let expect = |model: &mut RtcMembership, changes: Vec<SessionChange>, reason: LeftReason| {
        let got = summary(&changes);
        assert_eq!(got.len(), 1, "{reason:?}: {got:?}");
        assert!(
            matches!(&got[0], C::Left(u, _, _, r) if u == "@a:x" && *r == reason),
            "{reason:?}: {got:?}"
        );
        let _ = diagnostics(model);
    };
    let join = |n: u64| {
        Ev::new(
            &room_id,
            &user("@a:x"),
            &format!("$j{n}"),
            &js43_join("@a:x", "A", "ma"),
        )
        .ts(NOW_MS + n)
        .build()
    };

    // From the sticky map.
    for (n, map_reason, reason) in [
        (1, RemovalReason::Expired, LeftReason::Expired),
        (2, RemovalReason::Redacted, LeftReason::Redacted),
        (3, RemovalReason::Deleted, LeftReason::LeaveEvent),
        (4, RemovalReason::Evicted, LeftReason::Evicted),
        (5, RemovalReason::RoomForgotten, LeftReason::RoomForgotten),
    ] {
        let j = join(n);
        let _ = model.handle_sticky_changes(&[added(&j)]);
        let changes = model.handle_sticky_changes(&[removed(&j, map_reason)]);
        expect(&mut model, changes, reason);
    }
    // From the content of a replacing event.
    let leaves = [
        (js43_leave("ma"), LeftReason::LeaveEvent),
        (json!({"msc4354_sticky_key": "ma"}), LeftReason::LeaveEvent),
        (
            json!({"slot_id": ROOM_SLOT, "member": {"id": "ma", "membership": "leave"}, "leave_reason": {"code": "delayed_leave"}, "msc4354_sticky_key": "ma"}),
            LeftReason::DelayedLeaveFired,
        ),
        (
            json!({"slot_id": ROOM_SLOT, "member": {"id": "ma", "membership": "leave"}, "leave_reason": {"code": "slot_closed"}, "msc4354_sticky_key": "ma"}),
            LeftReason::SlotClosed,
        ),
        (
            json!("junk"),
            LeftReason::Rejected(RejectReason::ContentNotObject),
        ),
    ];
    for (n, (content, reason)) in leaves.into_iter().enumerate() {
        let j = join(10 + n as u64);
        let _ = model.handle_sticky_changes(&[added(&j)]);
        let leave = Ev::new(&room_id, &user("@a:x"), &format!("$l{n}"), &content)
            .ts(NOW_MS + 20 + n as u64)
            .build_with_key("ma");
        let changes = model.handle_sticky_changes(&[replaced(&j, &leave)]);
        expect(&mut model, changes, reason);
    }
    // From the read-time filters.
    let j = join(30);
    let _ = model.handle_sticky_changes(&[added(&j)]);
    let changes = model.handle_room_member(&room_id, &user("@a:x"), false);
    expect(&mut model, changes, LeftReason::SenderLeftRoom);
    let _ = model.handle_room_member(&room_id, &user("@a:x"), true);
    let changes = model.handle_ignored_user(&user("@a:x"), true);
    expect(&mut model, changes, LeftReason::SenderIgnored);
    let _ = model.handle_ignored_user(&user("@a:x"), false);
    let changes = model.set_room_encrypted(&room_id, true);
    assert!(summary(&changes).contains(&left(
        "@a:x",
        "A",
        "ma",
        LeftReason::Rejected(RejectReason::PlaintextJoinInEncryptedRoom)
    )));
    let _ = model.set_room_encrypted(&room_id, false);
    // Superseded: the key's member moved to another slot.
    let mut other_slot = js43_join("@a:x", "A", "ma");
    other_slot["slot_id"] = json!("m.call#standup");
    let moved = Ev::new(&room_id, &user("@a:x"), "$m", &other_slot)
        .ts(NOW_MS + 40)
        .build();
    let changes = model.handle_sticky_changes(&[replaced(&j, &moved)]);
    assert_eq!(
        summary(&changes),
        vec![
            left("@a:x", "A", "ma", LeftReason::Superseded),
            C::Started("m.call#standup".to_owned()),
            joined("@a:x", "A", "ma"),
        ]
    );
    // Legacy: expiry, delayed leave, redaction (see formats.rs) and forgetting the room.
    let raw = state_event(
        "@a:x",
        "_@a:x_A_m.call",
        "$s",
        NOW_MS,
        &legacy_join("A", "multi_sfu", LK),
    );
    let _ = model.handle_state_event(&room_id, &raw, receipt(0));
    let changes = model.handle_timeout(base() + Duration::from_millis(4 * HOUR_MS));
    expect(&mut model, changes, LeftReason::Expired);
    let changes = model.forget_room(&room_id);
    let got = summary(&changes);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.contains(&left("@keep:x", "K", "mk", LeftReason::RoomForgotten)));
    assert!(got.contains(&left("@a:x", "A", "ma", LeftReason::RoomForgotten)));
    assert!(got.contains(&C::Ended("m.call#standup".to_owned())));
    assert!(got.contains(&ended()));
    assert!(model.sessions(&room_id).next().is_none());
    assert!(model.forget_room(&room_id).is_empty());
}

#[test]
fn replays_change_nothing() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@a:x"]);
    let a = Ev::new(&room_id, &user("@a:x"), "$a", &js43_join("@a:x", "A", "ma")).build();
    assert_eq!(model.handle_sticky_changes(&[added(&a)]).len(), 2);
    assert!(model.handle_sticky_changes(&[added(&a)]).is_empty());
    assert!(model.handle_sticky_changes(&[replaced(&a, &a)]).is_empty());
    let raw = state_event(
        "@a:x",
        "_@a:x_A_m.call",
        "$s",
        NOW_MS,
        &legacy_join("A", "multi_sfu", LK),
    );
    let _ = model.handle_state_event(&room_id, &raw, receipt(0));
    assert!(
        model
            .handle_state_event(&room_id, &raw, receipt(0))
            .is_empty()
    );
    assert!(
        model
            .handle_room_member(&room_id, &user("@a:x"), true)
            .is_empty()
    );
}

#[test]
fn rooms_are_independent() {
    let (r1, r2) = (room("!one:x"), room("!two:x"));
    let mut model = model_with(&r1, &["@a:x"]);
    let _ = model.handle_room_member(&r2, &user("@a:x"), true);
    let a1 = Ev::new(&r1, &user("@a:x"), "$1", &js43_join("@a:x", "A", "m")).build();
    let a2 = Ev::new(&r2, &user("@a:x"), "$2", &js43_join("@a:x", "A", "m")).build();
    let _ = model.handle_sticky_changes(&[added(&a1), added(&a2)]);
    let changes = model.handle_room_member(&r1, &user("@a:x"), false);
    assert_eq!(changes.len(), 2);
    assert_eq!(model.participants(&r2, ROOM_SLOT).count(), 1);
    assert!(changes.iter().all(|c| match c {
        SessionChange::Left { participant, .. } => participant.room_id == r1,
        SessionChange::SessionEnded { room_id, .. } => *room_id == r1,
        _ => false,
    }));
}

/// A room with `n` sticky members.
fn big_room(n: usize) -> (RtcMembership, ruma_common::OwnedRoomId) {
    let room_id = room("!big:x");
    let mut model = RtcMembership::new();
    let mut changes = Vec::with_capacity(n);
    for i in 0..n {
        let u = format!("@u{i}:x");
        let _ = model.handle_room_member(&room_id, &user(&u), true);
        let ev = Ev::new(
            &room_id,
            &user(&u),
            &format!("$e{i}"),
            &js43_join(&u, "D", &format!("m{i}")),
        )
        .ts(NOW_MS + i as u64);
        changes.push(added(&ev.build()));
    }
    let out = model.handle_sticky_changes(&changes);
    assert_eq!(out.len(), n + 1);
    (model, room_id)
}

#[test]
fn cost_one_join_or_leave_in_a_room_of_ten_thousand_is_one_change() {
    let (mut model, room_id) = big_room(10_000);
    let _ = model.handle_room_member(&room_id, &user("@new:x"), true);
    let new = Ev::new(
        &room_id,
        &user("@new:x"),
        "$new",
        &js43_join("@new:x", "N", "mn"),
    )
    .ts(NOW_MS + 20_000)
    .build();
    let changes = model.handle_sticky_changes(&[added(&new)]);
    assert_eq!(summary(&changes), vec![joined("@new:x", "N", "mn")]);
    let refresh = Ev::new(
        &room_id,
        &user("@new:x"),
        "$new2",
        &js43_join("@new:x", "N", "mn"),
    )
    .ts(NOW_MS + 30_000)
    .build();
    let changes = model.handle_sticky_changes(&[replaced(&new, &refresh)]);
    assert_eq!(summary(&changes), vec![updated("@new:x", "N", "mn")]);
    let changes = model.handle_room_member(&room_id, &user("@u5000:x"), false);
    assert_eq!(
        summary(&changes),
        vec![left("@u5000:x", "D", "m5000", LeftReason::SenderLeftRoom)]
    );
    let changes = model.handle_sticky_changes(&[removed(&refresh, RemovalReason::Expired)]);
    assert_eq!(
        summary(&changes),
        vec![left("@new:x", "N", "mn", LeftReason::Expired)]
    );
    assert_eq!(model.participants(&room_id, ROOM_SLOT).count(), 9_999);
    // The new member went to the end, and the order is intact.
    assert_eq!(
        model
            .participants(&room_id, ROOM_SLOT)
            .next_back()
            .unwrap()
            .user_id,
        "@u9999:x"
    );
}
