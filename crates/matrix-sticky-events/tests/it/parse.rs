//! Parsing one event: sticky object and key names, validity and clamping, expiry, encrypted
//! envelopes, redactions, typed rejections.
use std::time::Duration;

use matrix_sticky_events::{
    EventOrigin, MAX_DEPTH, MAX_EVENT_BYTES, Parsed, Redaction, Rejection, StickyEvent, parse_event,
};
use ruma_common::{OwnedDeviceId, owned_event_id, owned_user_id};
use serde_json::{Value, json};

use crate::support::{Clock, HOUR, T0_WALL, event_json, parse, remove, room, room_a, set, sticky};

fn alice(id: &str, key: Option<&str>) -> Value {
    event_json(id, "@alice:example.org", key, -1_000)
}

fn rejected(event: &Value) -> Rejection {
    match parse(event, Clock::new().receipt(0)) {
        Err(rejection) => rejection,
        Ok(parsed) => panic!("expected a rejection, got {parsed:?}"),
    }
}

#[test]
fn unstable_and_stable_sticky_object_names() {
    let clock = Clock::new();
    let unstable = sticky(&alice("u", Some("k")), clock.receipt(0));
    assert_eq!(unstable.meta.duration_ms, HOUR);

    let mut stable = alice("s", Some("k"));
    remove(&mut stable, "/msc4354_sticky");
    set(&mut stable, "/sticky", json!({ "duration_ms": 600_000 }));
    assert_eq!(sticky(&stable, clock.receipt(0)).meta.duration_ms, 600_000);

    // Both: the stable name wins.
    set(
        &mut stable,
        "/msc4354_sticky",
        json!({ "duration_ms": 1_200_000 }),
    );
    assert_eq!(sticky(&stable, clock.receipt(0)).meta.duration_ms, 600_000);
}

#[test]
fn duration_validity_and_clamping() {
    let cases: [(Value, Result<u64, Rejection>); 11] = [
        (json!(1), Ok(1)),
        (json!(HOUR), Ok(HOUR)),
        (json!(HOUR + 1), Ok(HOUR)),
        (json!(7_200_000), Ok(HOUR)),
        (json!(i64::MAX), Ok(HOUR)),
        (json!(0), Err(Rejection::DurationZero)),
        (json!(-HOUR.cast_signed()), Err(Rejection::DurationNegative)),
        (json!(3_600_000.5), Err(Rejection::DurationNotInteger)),
        (json!("3600000"), Err(Rejection::DurationNotInteger)),
        (Value::Null, Err(Rejection::DurationNotInteger)),
        (json!(true), Err(Rejection::DurationNotInteger)),
    ];
    let clock = Clock::new();
    for (duration, expected) in cases {
        let mut event = alice("d", Some("k"));
        // Sent at the receipt time, so that even 1 ms is still live.
        set(&mut event, "/origin_server_ts", json!(T0_WALL));
        set(&mut event, "/msc4354_sticky/duration_ms", duration.clone());
        let got = parse(&event, clock.receipt(0)).map(|parsed| match parsed {
            Parsed::Sticky(event) => event.meta.duration_ms,
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(got, expected, "duration_ms = {duration}");
    }

    // An integer literal beyond u64 (serde_json's `Value` would turn it into a float).
    let text = alice("d", Some("k"))
        .to_string()
        .replace("3600000", "1000000000000000000000000");
    let Ok(Parsed::Sticky(event)) = parse_event(&text, &room_a(), clock.receipt(0)) else {
        panic!("sticky");
    };
    assert_eq!(event.meta.duration_ms, HOUR);

    let mut missing = alice("d", Some("k"));
    set(&mut missing, "/msc4354_sticky", json!({}));
    assert_eq!(rejected(&missing), Rejection::DurationMissing);
    set(&mut missing, "/msc4354_sticky", json!("3600000"));
    assert_eq!(rejected(&missing), Rejection::StickyNotObject);
    remove(&mut missing, "/msc4354_sticky");
    assert_eq!(rejected(&missing), Rejection::NotSticky);
}

#[test]
fn rank_uses_the_clamped_duration_never_the_local_deadline() {
    let clock = Clock::new();
    let mut event = alice("r", Some("k"));
    set(&mut event, "/msc4354_sticky/duration_ms", json!(7_200_000));
    set(
        &mut event,
        "/unsigned",
        json!({ "msc4354_sticky_duration_ttl_ms": 5_000 }),
    );
    let event = sticky(&event, clock.receipt(0));
    assert_eq!(event.meta.rank(), T0_WALL - 1_000 + HOUR);
    assert_eq!(event.meta.expires_at, clock.at(5_000));
}

#[test]
fn ttl_is_authoritative_and_clamped() {
    let clock = Clock::new();
    let receipt = clock.receipt(10_000);
    let with_ttl = |ttl: Value| {
        let mut event = alice("t", Some("k"));
        set(
            &mut event,
            "/unsigned",
            json!({ "msc4354_sticky_duration_ttl_ms": ttl }),
        );
        parse(&event, receipt).map(|parsed| match parsed {
            Parsed::Sticky(event) => (event.meta.expires_at, event.meta.expires_wall_ms),
            other => panic!("unexpected {other:?}"),
        })
    };
    assert_eq!(
        with_ttl(json!(1_234)),
        Ok((clock.at(11_234), T0_WALL + 11_234))
    );
    assert_eq!(
        with_ttl(json!(7_200_000)),
        Ok((clock.at(10_000 + HOUR), T0_WALL + 10_000 + HOUR))
    );
    assert_eq!(
        with_ttl(json!(u64::MAX)),
        Ok((clock.at(10_000 + HOUR), T0_WALL + 10_000 + HOUR))
    );
    assert_eq!(with_ttl(json!(0)), Err(Rejection::AlreadyExpired));
    assert_eq!(with_ttl(json!(-5_000)), Err(Rejection::AlreadyExpired));
    assert_eq!(with_ttl(json!("3599000")), Err(Rejection::TtlNotInteger));
    assert_eq!(with_ttl(json!(1.5)), Err(Rejection::TtlNotInteger));

    // The stable name, and the stable name first when both are present.
    let mut event = alice("t", Some("k"));
    set(
        &mut event,
        "/unsigned",
        json!({ "sticky_duration_ttl_ms": 2_000, "msc4354_sticky_duration_ttl_ms": 9_000 }),
    );
    assert_eq!(sticky(&event, receipt).meta.expires_at, clock.at(12_000));
}

#[test]
fn without_ttl_the_deadline_falls_back_to_the_formula() {
    let clock = Clock::new();
    // Sent 1 s before T0, received at T0 + 10 s: expires at (T0 - 1 s) + 1 h.
    let event = sticky(&alice("f", Some("k")), clock.receipt(10_000));
    assert_eq!(event.meta.expires_wall_ms, T0_WALL - 1_000 + HOUR);
    assert_eq!(event.meta.expires_at, clock.at(HOUR - 1_000));

    // A timestamp in the future does not stretch stickiness.
    let future = sticky(
        &event_json("g", "@alice:example.org", Some("k"), 600_000),
        clock.receipt(0),
    );
    assert_eq!(future.meta.expires_wall_ms, T0_WALL + HOUR);
    assert_eq!(future.meta.rank(), T0_WALL + 600_000 + HOUR);

    // Sent more than an hour before receipt: already expired.
    let old = event_json("h", "@alice:example.org", Some("k"), -(HOUR.cast_signed()));
    assert_eq!(
        parse(&old, clock.receipt(0)),
        Err(Rejection::AlreadyExpired)
    );
}

#[test]
fn sticky_key_names_and_conflicts() {
    let clock = Clock::new();
    let key_of = |content: Value| {
        let mut event = alice("k", None);
        set(&mut event, "/content", content);
        parse(&event, clock.receipt(0)).map(|parsed| match parsed {
            Parsed::Sticky(event) => (event.sticky_key, event.key_only),
            other => panic!("unexpected {other:?}"),
        })
    };
    let some = |key: &str, key_only| Ok((Some(key.to_owned()), key_only));
    assert_eq!(
        key_of(json!({ "msc4354_sticky_key": "a", "x": 1 })),
        some("a", false)
    );
    assert_eq!(
        key_of(json!({ "sticky_key": "a", "x": 1 })),
        some("a", false)
    );
    assert_eq!(
        key_of(json!({ "sticky_key": "a", "msc4354_sticky_key": "a", "x": 1 })),
        some("a", false)
    );
    assert_eq!(key_of(json!({ "x": 1 })), Ok((None, false)));
    assert_eq!(key_of(json!({})), Ok((None, false)));
    // Key-only content: a deletion marker.
    assert_eq!(
        key_of(json!({ "msc4354_sticky_key": "a" })),
        some("a", true)
    );
    assert_eq!(key_of(json!({ "sticky_key": "a" })), some("a", true));
    assert_eq!(
        key_of(json!({ "sticky_key": "a", "msc4354_sticky_key": "a" })),
        some("a", true)
    );
    // js-sdk 43's leave carries `slot_id`: an ordinary entry, not a deletion.
    assert_eq!(
        key_of(json!({ "msc4354_sticky_key": "a", "slot_id": "m.call#ROOM" })),
        some("a", false)
    );
    // Any string is a key, the empty one included; escapes are decoded.
    assert_eq!(
        key_of(json!({ "msc4354_sticky_key": "" , "x": 1})),
        some("", false)
    );
    assert_eq!(
        key_of(json!({ "msc4354_sticky_key": "é\"\n", "x": 1 })),
        some("é\"\n", false)
    );

    assert_eq!(
        key_of(json!({ "sticky_key": "a", "msc4354_sticky_key": "b" })),
        Err(Rejection::StickyKeysDisagree)
    );
    for bad in [
        json!(12345),
        Value::Null,
        json!({ "id": "a" }),
        json!(["a"]),
        json!(true),
    ] {
        assert_eq!(
            key_of(json!({ "msc4354_sticky_key": bad })),
            Err(Rejection::StickyKeyNotString)
        );
        assert_eq!(
            key_of(json!({ "sticky_key": bad, "msc4354_sticky_key": "a" })),
            Err(Rejection::StickyKeyNotString)
        );
    }
}

#[test]
fn sticky_key_edge_encodings() {
    let room = room_a();
    let receipt = Clock::new().receipt(0);
    let with_content = |content: &str| {
        let raw = format!(
            r#"{{"type":"t","event_id":"$e","sender":"@a:x","origin_server_ts":{},"msc4354_sticky":{{"duration_ms":60000}},"content":{content}}}"#,
            T0_WALL
        );
        parse_event(&raw, &room, receipt).map(|parsed| match parsed {
            Parsed::Sticky(event) => event.sticky_key,
            other => panic!("unexpected {other:?}"),
        })
    };
    // A lone surrogate cannot be a key.
    assert_eq!(
        with_content(r#"{"msc4354_sticky_key":"k\ud800","x":1}"#),
        Err(Rejection::StickyKeyInvalid)
    );
    // ... but elsewhere in a value it is not looked at.
    assert_eq!(
        with_content(r#"{"msc4354_sticky_key":"k","x":"\ud800"}"#),
        Ok(Some("k".to_owned()))
    );
    // In a field name it makes the content unreadable.
    assert_eq!(
        with_content(r#"{"msc4354_sticky_key":"k","\ud800":1}"#),
        Err(Rejection::ContentInvalid)
    );
    // The key written twice is ambiguous.
    assert_eq!(
        with_content(r#"{"msc4354_sticky_key":"a","msc4354_sticky_key":"b"}"#),
        Err(Rejection::DuplicateField("msc4354_sticky_key"))
    );
    // An escaped field name is still the key.
    assert_eq!(
        with_content(r#"{"msc4354_sticky\u005fkey":"k","x":1}"#),
        Ok(Some("k".to_owned()))
    );
}

#[test]
fn content_is_kept_raw() {
    let raw = format!(
        r#"{{"content": {{ "msc4354_sticky_key" : "k", "n": [1, 2.50, {{}}] }}, "type":"t","event_id":"$e","sender":"@a:x","origin_server_ts":{},"msc4354_sticky":{{"duration_ms":60000}}}}"#,
        T0_WALL
    );
    let Ok(Parsed::Sticky(event)) = parse_event(&raw, &room_a(), Clock::new().receipt(0)) else {
        panic!("expected a sticky event");
    };
    assert_eq!(
        event.content.get(),
        r#"{ "msc4354_sticky_key" : "k", "n": [1, 2.50, {}] }"#
    );
    assert_eq!(event.origin, EventOrigin::Plaintext);
    assert_eq!(event.event_type, "t");
}

#[test]
fn the_callers_room_is_used() {
    let mut event = alice("r", Some("k"));
    set(&mut event, "/room_id", json!("!other:example.org"));
    let other = room("!mine:example.org");
    let Ok(Parsed::Sticky(event)) =
        parse_event(&event.to_string(), &other, Clock::new().receipt(0))
    else {
        panic!("expected a sticky event");
    };
    assert_eq!(event.meta.room_id, other);
}

#[test]
fn every_defect_has_its_own_rejection() {
    let room = room_a();
    let receipt = Clock::new().receipt(0);
    let raw = |s: &str| parse_event(s, &room, receipt);
    assert_eq!(raw("not json"), Err(Rejection::NotJson));
    assert_eq!(raw(r#"{"a":1"#), Err(Rejection::NotJson));
    assert_eq!(raw(r#"{"a":1} x"#), Err(Rejection::NotJson));
    assert_eq!(raw("[1, 2]"), Err(Rejection::NotAnObject));
    assert_eq!(raw(r#""$event""#), Err(Rejection::NotAnObject));
    assert_eq!(raw("null"), Err(Rejection::NotAnObject));
    assert_eq!(raw(r#"{"\ud800":1}"#), Err(Rejection::NotJson));

    let mutated = |path: &str, value: Option<Value>| {
        let mut event = alice("m", Some("k"));
        match value {
            Some(value) => set(&mut event, path, value),
            None => remove(&mut event, path),
        }
        parse(&event, receipt)
    };
    assert_eq!(
        mutated("/event_id", None),
        Err(Rejection::MissingField("event_id"))
    );
    assert_eq!(
        mutated("/sender", None),
        Err(Rejection::MissingField("sender"))
    );
    assert_eq!(mutated("/type", None), Err(Rejection::MissingField("type")));
    assert_eq!(
        mutated("/origin_server_ts", None),
        Err(Rejection::MissingField("origin_server_ts"))
    );
    assert_eq!(
        mutated("/content", None),
        Err(Rejection::MissingField("content"))
    );
    for bad in [json!(42), json!(""), json!("not-an-event-id"), Value::Null] {
        assert_eq!(
            mutated("/event_id", Some(bad)),
            Err(Rejection::InvalidEventId)
        );
    }
    for bad in [
        json!(7),
        json!("user-without-sigil"),
        json!("@no-server"),
        json!(""),
    ] {
        assert_eq!(mutated("/sender", Some(bad)), Err(Rejection::InvalidSender));
    }
    assert_eq!(
        mutated("/type", Some(json!(1))),
        Err(Rejection::InvalidEventType)
    );
    for bad in [
        json!("1795660000000"),
        json!(-1),
        json!(1_795_660_000_000.25),
        json!(1u64 << 53),
    ] {
        assert_eq!(
            mutated("/origin_server_ts", Some(bad)),
            Err(Rejection::InvalidOriginServerTs)
        );
    }
    for bad in [
        json!([{ "msc4354_sticky_key": "k" }]),
        json!("{}"),
        Value::Null,
    ] {
        assert_eq!(
            mutated("/content", Some(bad)),
            Err(Rejection::ContentNotObject)
        );
    }
    assert_eq!(
        mutated("/unsigned", Some(json!([{}]))),
        Err(Rejection::UnsignedNotObject)
    );

    // Unknown fields are ignored, wherever they are.
    assert!(mutated("/x.top_level_unknown", Some(json!({ "a": [1, 2] }))).is_ok());
    assert!(mutated("/state_key", Some(json!("s"))).is_ok());

    // A duplicated top-level field.
    let text = alice("m", Some("k")).to_string();
    let doubled = text.replacen(
        "\"sender\":",
        "\"sender\":\"@mallory:example.org\",\"sender\":",
        1,
    );
    assert_eq!(raw(&doubled), Err(Rejection::DuplicateField("sender")));
}

#[test]
fn size_and_depth_are_bounded() {
    let room = room_a();
    let receipt = Clock::new().receipt(0);
    let with_padding = |len: usize| {
        let mut event = alice("big", Some("k"));
        let base = event.to_string().len() + r#","pad":"""#.len();
        set(&mut event, "/content/pad", json!("p".repeat(len - base)));
        let text = event.to_string();
        assert_eq!(text.len(), len);
        parse_event(&text, &room, receipt)
    };
    assert!(with_padding(MAX_EVENT_BYTES).is_ok());
    assert_eq!(
        with_padding(MAX_EVENT_BYTES + 1),
        Err(Rejection::TooLarge {
            bytes: MAX_EVENT_BYTES + 1
        })
    );

    let nested = |levels: usize| {
        let mut event = alice("deep", Some("k"));
        set(&mut event, "/content/application", json!(null));
        let text = event.to_string().replace(
            "null",
            &format!("{}1{}", "[".repeat(levels), "]".repeat(levels)),
        );
        parse_event(&text, &room, receipt)
    };
    // The event is level 1 and the content level 2, so content values may nest MAX_DEPTH - 2.
    assert!(nested(MAX_DEPTH - 2).is_ok());
    assert_eq!(nested(MAX_DEPTH - 1), Err(Rejection::TooDeep));
    assert_eq!(nested(20_000), Err(Rejection::TooDeep));
}

#[test]
fn redactions() {
    let clock = Clock::new();
    // A redacted copy: no sticky object, empty content, `unsigned.redacted_because`.
    let mut redacted = alice("gone", Some("k"));
    remove(&mut redacted, "/msc4354_sticky");
    set(&mut redacted, "/content", json!({}));
    set(
        &mut redacted,
        "/unsigned",
        json!({ "redacted_because": { "type": "m.room.redaction" } }),
    );
    assert_eq!(
        parse(&redacted, clock.receipt(0)),
        Ok(Parsed::Redaction(Redaction::redacted_copy(
            owned_event_id!("$gone")
        )))
    );

    // m.room.redaction, before room version 11 (top level) and from 11 (content).
    let redaction = |top: Option<Value>, content: Value| {
        let mut event = json!({
            "type": "m.room.redaction", "event_id": "$r", "sender": "@alice:example.org",
            "origin_server_ts": T0_WALL, "content": content,
        });
        if let Some(top) = top {
            event["redacts"] = top;
        }
        parse(&event, clock.receipt(0))
    };
    let target = Ok(Parsed::Redaction(Redaction::event(
        owned_event_id!("$target"),
        owned_event_id!("$r"),
        owned_user_id!("@alice:example.org"),
    )));
    assert_eq!(redaction(Some(json!("$target")), json!({})), target);
    assert_eq!(redaction(None, json!({ "redacts": "$target" })), target);
    assert_eq!(
        redaction(Some(json!("$target")), json!({ "redacts": "$target" })),
        target
    );
    assert_eq!(
        redaction(Some(json!(5)), json!({})),
        Err(Rejection::InvalidRedacts)
    );
    assert_eq!(
        redaction(None, json!({ "redacts": "nope" })),
        Err(Rejection::InvalidRedacts)
    );
    assert_eq!(
        redaction(None, json!({})),
        Err(Rejection::MissingField("redacts"))
    );
}

#[test]
fn encrypted_envelopes_keep_their_sticky_metadata_apart() {
    let clock = Clock::new();
    let envelope = json!({
        "type": "m.room.encrypted", "event_id": "$enc", "sender": "@carol:example.org",
        "origin_server_ts": T0_WALL - 2_000,
        "msc4354_sticky": { "duration_ms": HOUR },
        "content": { "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "device_id": "CJ",
                     "sender_key": "SBkp", "session_id": "IrXz" },
        "unsigned": { "msc4354_sticky_duration_ttl_ms": 3_598_000 },
    });
    let Ok(Parsed::Encrypted(encrypted)) = parse(&envelope, clock.receipt(0)) else {
        panic!("expected an encrypted envelope");
    };
    assert_eq!(encrypted.session_id.as_deref(), Some("IrXz"));
    assert_eq!(encrypted.meta.duration_ms, HOUR);
    assert_eq!(encrypted.meta.expires_at, clock.at(3_598_000));
    assert_eq!(
        serde_json::from_str::<Value>(encrypted.envelope.get()).expect("json"),
        envelope
    );

    // What a decryptor returns: no sticky object, but the TTL and other fields.
    let decrypted = json!({
        "type": "org.matrix.msc4143.rtc.member", "event_id": "$enc", "sender": "@carol:example.org",
        "origin_server_ts": T0_WALL - 2_000,
        "content": { "msc4354_sticky_key": "@carol:example.org:CJ", "slot_id": "m.call#ROOM",
                     "application": { "type": "m.call" } },
        "unsigned": { "msc4354_sticky_duration_ttl_ms": 3_598_000 },
    });
    let device = OwnedDeviceId::from("CJ");
    let event: StickyEvent = encrypted
        .clone()
        .into_decrypted(&decrypted.to_string(), Some(device.clone()))
        .expect("valid");
    assert_eq!(event.meta, encrypted.meta);
    assert_eq!(event.event_type, "org.matrix.msc4143.rtc.member");
    assert_eq!(event.sticky_key.as_deref(), Some("@carol:example.org:CJ"));
    assert!(!event.key_only);
    assert_eq!(
        event.origin,
        EventOrigin::Encrypted {
            sender_device: Some(device)
        }
    );

    // An unable-to-decrypt result is still the envelope.
    assert_eq!(
        encrypted
            .clone()
            .into_decrypted(&envelope.to_string(), None),
        Err(Rejection::StillEncrypted)
    );
    // Decrypted content is checked like plaintext content.
    let bad = json!({ "type": "t", "content": { "sticky_key": "a", "msc4354_sticky_key": "b" } });
    assert_eq!(
        encrypted.clone().into_decrypted(&bad.to_string(), None),
        Err(Rejection::StickyKeysDisagree)
    );
    let bad = json!({ "type": "t", "content": "{}" });
    assert_eq!(
        encrypted.clone().into_decrypted(&bad.to_string(), None),
        Err(Rejection::ContentNotObject)
    );
    let event = StickyEvent::from_decrypted(
        encrypted.meta.clone(),
        "t",
        serde_json::value::to_raw_value(&json!({ "sticky_key": "k" })).expect("json"),
        EventOrigin::Encrypted {
            sender_device: None,
        },
    )
    .expect("valid");
    assert!(event.key_only);

    // A decrypted event's own expiry fields are never used: the envelope's deadline stands.
    assert_eq!(
        event.meta.expires_at - clock.at(0),
        Duration::from_millis(3_598_000)
    );
}
