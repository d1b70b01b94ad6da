//! Parsing whole sliding-sync extension responses: envelope defects cost only their room.
use matrix_sticky_events::{
    BatchError, Parsed, Rejection, parse_sliding_sync_response, parse_sticky_batch,
};
use serde_json::{Value, json};

use crate::support::{Clock, event_json};

fn good(id: &str) -> Value {
    let mut event = event_json(id, "@alice:example.org", Some(id), -1_000);
    event["unsigned"] = json!({ "msc4354_sticky_duration_ttl_ms": 3_599_000 });
    event
}

#[test]
fn a_bad_room_costs_only_itself() {
    let line = json!({
        "rooms": {
            "!good:example.org": { "events": [good("a"), { "not": "an event" }, good("b")] },
            "not-a-room": { "events": [good("c")] },
            "#alias:example.org": { "events": [good("d")] },
            "!list:example.org": [good("e")],
            "!map:example.org": { "events": { "$f": good("f") } },
            "!empty:example.org": {},
            "!uAdLFUAkPuCxWiUTM7YyOLWCbGlHQYg2CH8LCHau8fM": { "events": [good("g")], "limited": true },
        },
        "next_batch": "sticky_9",
        "unknown": [1, 2, 3],
    });
    let batch =
        parse_sticky_batch(&line.to_string(), Clock::new().receipt(0)).expect("valid envelope");
    assert_eq!(batch.next_batch.as_deref(), Some("sticky_9"));
    let rooms: Vec<String> = batch.rooms.iter().map(|r| r.room_id.to_string()).collect();
    // (serde_json sorts the keys of this test's object.)
    assert_eq!(
        rooms,
        [
            "!good:example.org",
            "!uAdLFUAkPuCxWiUTM7YyOLWCbGlHQYg2CH8LCHau8fM"
        ]
    );
    assert_eq!(batch.event_count(), 4);
    let good_room = &batch.rooms[0];
    assert!(matches!(
        &good_room.events[..],
        [
            Ok(Parsed::Sticky(_)),
            Err(Rejection::MissingField("event_id")),
            Ok(Parsed::Sticky(_))
        ]
    ));
    let mut errors = batch.errors.clone();
    errors.sort_by(|a, b| a.room.cmp(&b.room));
    let error = |room: &str, reason| BatchError {
        room: Some(room.to_owned()),
        reason,
    };
    assert_eq!(
        errors,
        [
            error("!empty:example.org", Rejection::MissingField("events")),
            error("!list:example.org", Rejection::RoomNotObject),
            error("!map:example.org", Rejection::EventsNotArray),
            error("#alias:example.org", Rejection::InvalidRoomId),
            error("not-a-room", Rejection::InvalidRoomId),
        ]
    );
    assert_eq!(batch.iter().count(), 4);
}

#[test]
fn envelope_shapes() {
    let receipt = Clock::new().receipt(0);
    let parse = |line: &str| parse_sticky_batch(line, receipt);
    assert_eq!(parse("nope"), Err(Rejection::NotJson));
    assert_eq!(parse("[]"), Err(Rejection::NotAnObject));
    let empty = parse(r#"{"next_batch":"sticky_1"}"#).expect("valid");
    assert!(empty.rooms.is_empty() && empty.errors.is_empty());
    let rooms_array = parse(r#"{"rooms":[{"!a:b":{"events":[]}}]}"#).expect("valid");
    assert_eq!(
        rooms_array.errors,
        [BatchError {
            room: None,
            reason: Rejection::RoomsNotObject
        }]
    );
    let token = parse(r#"{"rooms":{},"next_batch":12}"#).expect("valid");
    assert_eq!(token.next_batch, None);
    assert_eq!(
        token.errors,
        [BatchError {
            room: None,
            reason: Rejection::NextBatchNotString
        }]
    );
    // A huge invalid room key is reported cut to 255 bytes.
    let key = "é".repeat(1_000);
    let long = parse(&format!(r#"{{"rooms":{{"{key}":{{"events":[]}}}}}}"#)).expect("valid");
    assert_eq!(long.errors[0].room.as_ref().map(String::len), Some(254));
}

#[test]
fn whole_sliding_sync_responses() {
    let receipt = Clock::new().receipt(0);
    let response = |extensions: Value| {
        json!({ "pos": "1", "lists": { "all": { "count": 1 } }, "rooms": {}, "extensions": extensions }).to_string()
    };
    let extension = json!({ "rooms": { "!a:example.org": { "events": [good("a")] } }, "next_batch": "sticky_2" });
    let unstable = parse_sliding_sync_response(
        &response(json!({ "org.matrix.msc4354.sticky_events": extension })),
        receipt,
    )
    .expect("valid")
    .expect("present");
    assert_eq!(unstable.event_count(), 1);
    // The stable name is preferred when both are present.
    let both = json!({
        "sticky_events": { "rooms": {}, "next_batch": "stable" },
        "org.matrix.msc4354.sticky_events": extension,
    });
    let stable = parse_sliding_sync_response(&response(both), receipt)
        .expect("valid")
        .expect("present");
    assert_eq!(stable.next_batch.as_deref(), Some("stable"));
    assert_eq!(
        parse_sliding_sync_response(&response(json!({ "e2ee": {} })), receipt),
        Ok(None)
    );
    assert_eq!(
        parse_sliding_sync_response(r#"{"pos":"1"}"#, receipt),
        Ok(None)
    );
    assert_eq!(
        parse_sliding_sync_response(&response(json!([])), receipt),
        Err(Rejection::NotAnObject)
    );
}
