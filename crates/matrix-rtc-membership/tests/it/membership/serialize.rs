//! Every serialized shape, against literal JSON (docs/protocol.md §5.4, §5.6) and the captures.
use matrix_rtc_membership::{
    CallIntent, FocusSelection, MembershipContent, Transport, legacy_leave_content,
    sticky_leave_content,
};
use serde_json::{Value, json};

use super::support::*;

fn alice() -> MembershipContent {
    MembershipContent::room_call(
        user("@alice:localhost"),
        device("G1"),
        "@alice:localhost:G1",
        Transport::livekit("https://lk.invalid"),
    )
}

#[test]
fn sticky_join_is_the_js_sdk_43_shape_with_both_keys() {
    assert_eq!(
        alice().sticky_join(),
        json!({
            "slot_id": "m.call#ROOM",
            "application": {"type": "m.call"},
            "member": {"id": "@alice:localhost:G1", "user_id": "@alice:localhost", "device_id": "G1"},
            "transports": {
                "published": [{"type": "livekit", "livekit_service_url": "https://lk.invalid"}],
                "can_subscribe": ["livekit"],
            },
            "versions": [],
            "msc4354_sticky_key": "@alice:localhost:G1",
            "sticky_key": "@alice:localhost:G1",
        })
    );
}

#[test]
fn sticky_join_equals_the_captured_js_sdk_43_join_plus_the_stable_key() {
    let line: Value = serde_json::from_str(
        fixture("js-sdk-43.0.0/sent-events.jsonl")
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let mut captured = line["pdu"]["content"].clone();
    captured["sticky_key"] = captured["msc4354_sticky_key"].clone();
    assert_eq!(alice().sticky_join(), captured);
    assert!(alice().sticky_join().get("m.relation").is_none());
    assert!(alice().sticky_join().get("m.relates_to").is_none());
}

#[test]
fn sticky_join_with_an_intent() {
    let content = alice().with_call_intent(CallIntent::Audio).sticky_join();
    assert_eq!(
        content["application"],
        json!({"type": "m.call", "m.call.intent": "audio"})
    );
}

#[test]
fn sticky_leave_shape() {
    let expected = json!({
        "slot_id": "m.call#ROOM",
        "msc4354_sticky_key": "@alice:localhost:G1",
        "sticky_key": "@alice:localhost:G1",
    });
    assert_eq!(alice().sticky_leave(), expected);
    assert_eq!(
        sticky_leave_content("m.call#ROOM", "@alice:localhost:G1"),
        expected
    );
    // It is the captured js-sdk 43 leave plus the stable key.
    let line: Value = serde_json::from_str(
        fixture("js-sdk-43.0.0/sent-events.jsonl")
            .lines()
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    let mut captured = line["pdu"]["content"].clone();
    captured["sticky_key"] = captured["msc4354_sticky_key"].clone();
    assert_eq!(alice().sticky_leave(), captured);
}

#[test]
fn legacy_join_shape_matches_the_captured_request() {
    let room_a = "!uAdLFUAkPuCxWiUTM7YyOLWCbGlHQYg2CH8LCHau8fM";
    let ours = MembershipContent::room_call(
        user("@alice:localhost"),
        device("ALICEDEV"),
        "@alice:localhost:ALICEDEV",
        Transport::LiveKit {
            service_url: "https://lk.invalid".to_owned(),
            alias: Some(room_a.to_owned()),
        },
    );
    let expected = json!({
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": "ALICEDEV",
        "membershipID": "@alice:localhost:ALICEDEV",
        "expires": 14_400_000,
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
        "foci_preferred": [{"type": "livekit", "livekit_service_url": "https://lk.invalid", "livekit_alias": room_a}],
    });
    assert_eq!(
        ours.legacy_join(None, 14_400_000, &FocusSelection::OldestMembership),
        expected
    );

    let index = fixture_json("synapse-1.163.2/index.json");
    let file = index["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|file| file["file"] == "send_legacy_call_member_state.json")
        .unwrap();
    assert_eq!(file["request"]["body"], expected);
    let path = file["request"]["path"].as_str().unwrap();
    assert!(path.ends_with("/_%40alice%3Alocalhost_ALICEDEV_m.call"));
    assert_eq!(
        ours.legacy_state_key(false),
        "_@alice:localhost_ALICEDEV_m.call"
    );
}

#[test]
fn legacy_refresh_shape() {
    let content = alice().with_call_intent(CallIntent::Video).legacy_join(
        Some(1_795_668_535_026),
        28_800_000,
        &FocusSelection::MultiSfu,
    );
    assert_eq!(
        content,
        json!({
            "application": "m.call",
            "call_id": "",
            "scope": "m.room",
            "device_id": "G1",
            "membershipID": "@alice:localhost:G1",
            "created_ts": 1_795_668_535_026_u64,
            "expires": 28_800_000,
            "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
            "foci_preferred": [{"type": "livekit", "livekit_service_url": "https://lk.invalid"}],
            "m.call.intent": "video",
        })
    );
}

#[test]
fn legacy_state_keys_and_leave() {
    let ours = alice();
    assert_eq!(ours.legacy_state_key(false), "_@alice:localhost_G1_m.call");
    assert_eq!(ours.legacy_state_key(true), "@alice:localhost_G1_m.call");
    let mut standup = ours.clone();
    standup.slot_id = "m.call#standup".to_owned();
    assert_eq!(
        standup.legacy_state_key(false),
        "_@alice:localhost_G1_m.callstandup"
    );
    assert_eq!(
        standup.legacy_join(None, 1, &FocusSelection::MultiSfu)["call_id"],
        "standup"
    );
    assert_eq!(legacy_leave_content(), json!({}));
}

#[test]
fn unknown_transports_serialise_as_received() {
    let transport = Transport::Unknown {
        transport_type: "org.example.mesh".to_owned(),
        json: r#"{"type":"org.example.mesh","peers":[1,2]}"#.to_owned(),
    };
    assert_eq!(
        transport.to_json(),
        json!({"type": "org.example.mesh", "peers": [1, 2]})
    );
}

#[test]
fn what_we_send_reads_back_as_the_same_membership() {
    let room_id = room("!r:x");
    let mut model = model_with(&room_id, &["@alice:localhost"]);
    let content = alice().with_call_intent(CallIntent::Video).sticky_join();
    let join = Ev::new(&room_id, &user("@alice:localhost"), "$j", &content).build();
    let _ = model.handle_sticky_changes(&[added(&join)]);
    let p = model.participants(&room_id, ROOM_SLOT).next().unwrap();
    assert_eq!(
        (
            p.device_id.as_str(),
            p.member_id.as_str(),
            p.call_intent.clone()
        ),
        ("G1", "@alice:localhost:G1", Some(CallIntent::Video))
    );
    assert_eq!(
        p.own_transport(),
        Some(&Transport::livekit("https://lk.invalid"))
    );
    let leave = Ev::new(
        &room_id,
        &user("@alice:localhost"),
        "$l",
        &alice().sticky_leave(),
    )
    .ts(NOW_MS + 1)
    .build();
    assert!(!leave.key_only, "our leave carries slot_id, as js-sdk 43's");
    assert_eq!(
        model
            .handle_sticky_changes(&[replaced(&join, &leave)])
            .len(),
        2
    );

    let legacy = alice().legacy_join(None, 14_400_000, &FocusSelection::OldestMembership);
    let raw = state_event(
        "@alice:localhost",
        &alice().legacy_state_key(false),
        "$s",
        NOW_MS,
        &legacy,
    );
    let changes = model.handle_state_event(&room_id, &raw, receipt(0));
    assert_eq!(
        summary(&changes),
        vec![
            started(),
            joined("@alice:localhost", "G1", "@alice:localhost:G1")
        ]
    );
    assert!(diagnostics(&mut model).is_empty());
}
