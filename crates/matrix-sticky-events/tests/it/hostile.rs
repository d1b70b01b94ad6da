//! Hostile input: every malformed variant of the bench generator, by name, applied after the
//! `small` workload; the real-size giants and deep nestings built here.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    time::{Duration, Instant},
};

use matrix_sticky_events::{
    MAX_BATCH_BYTES, MAX_EVENT_BYTES, Parsed, Receipt, Redaction, Rejection, StickyBatch,
    StickyMap, parse_event, parse_sticky_batch,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{HOUR, ViewKey, data, room_a, view_of};

/// Serve time of the last line of the malformed cycle (all events are live then).
const RECEIPT_WALL: u64 = 1_795_660_216_700;

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Sticky,
    Redaction,
    Reject(Rejection),
}

/// What one line must give: envelope errors, and the outcome of each event.
struct Expect {
    errors: Vec<Rejection>,
    events: Vec<Outcome>,
}

fn one(outcome: Outcome) -> Expect {
    Expect {
        errors: vec![],
        events: vec![outcome],
    }
}

fn reject(rejection: Rejection) -> Expect {
    one(Outcome::Reject(rejection))
}

fn envelope(error: Rejection) -> Expect {
    Expect {
        errors: vec![error],
        events: vec![],
    }
}

/// The expected outcome of each variant of the generator's js43 cycle.
fn expected(variant: &str) -> Expect {
    use Outcome::{Redaction, Sticky};
    use Rejection as R;
    match variant {
        "duration_missing" => reject(R::DurationMissing),
        "duration_negative" => reject(R::DurationNegative),
        "duration_zero" => reject(R::DurationZero),
        "duration_float" | "duration_string" | "duration_null" | "duration_bool" => {
            reject(R::DurationNotInteger)
        }
        "sticky_not_object" => reject(R::StickyNotObject),
        "sticky_field_missing" => reject(R::NotSticky),
        "ttl_negative" => reject(R::AlreadyExpired),
        "ttl_string" => reject(R::TtlNotInteger),
        "sticky_key_number" | "sticky_key_null" | "sticky_key_object" => {
            reject(R::StickyKeyNotString)
        }
        "sticky_keys_disagree" => reject(R::StickyKeysDisagree),
        "sticky_key_control_chars" => reject(R::StickyKeyInvalid),
        "duplicate_json_key" => reject(R::DuplicateField("msc4354_sticky_key")),
        "deep_nesting_200" | "deep_nesting_10000" | "deep_array_nesting_10000" => {
            reject(R::TooDeep)
        }
        "event_id_invalid" | "event_id_empty" | "event_id_number" => reject(R::InvalidEventId),
        "sender_invalid" | "sender_number" => reject(R::InvalidSender),
        "type_number" => reject(R::InvalidEventType),
        "ots_string" | "ots_negative" | "ots_float" => reject(R::InvalidOriginServerTs),
        "ots_missing" => reject(R::MissingField("origin_server_ts")),
        "content_array" | "content_string" | "content_null" => reject(R::ContentNotObject),
        "unsigned_array" => reject(R::UnsignedNotObject),
        "event_not_object" => Expect {
            errors: vec![],
            events: vec![Outcome::Reject(R::NotAnObject); 4],
        },
        "redacted_shape" => one(Redaction),
        "room_key_invalid" | "room_key_alias" => envelope(R::InvalidRoomId),
        "events_not_array" => envelope(R::EventsNotArray),
        "rooms_array" => envelope(R::RoomsNotObject),
        "room_value_not_object" => envelope(R::RoomNotObject),
        "room_without_events" => envelope(R::MissingField("events")),
        "rooms_missing" | "empty_rooms" => Expect {
            errors: vec![],
            events: vec![],
        },
        "next_batch_number" => Expect {
            errors: vec![R::NextBatchNotString],
            events: vec![Sticky],
        },
        "duplicate_event_same_batch" => Expect {
            errors: vec![],
            events: vec![Sticky, Sticky],
        },
        "oversized_batch" => Expect {
            errors: vec![],
            events: vec![Sticky; 200],
        },
        "mixed_valid_and_invalid" => Expect {
            errors: vec![],
            events: vec![
                Sticky,
                Outcome::Reject(R::DurationNotInteger),
                Outcome::Reject(R::StickyKeyNotString),
                Sticky,
            ],
        },
        // Valid sticky events: clamped values, a fallback deadline, other keys, other rooms,
        // and defects that only the membership layer can see. Duplicates parse fine too; the
        // map ignores them.
        "duration_i64_max"
        | "duration_beyond_u64"
        | "ttl_over_max"
        | "ttl_u64_max"
        | "ttl_missing"
        | "sticky_key_missing"
        | "sticky_key_empty"
        | "only_stable_sticky_key"
        | "member_user_id_not_sender"
        | "member_missing"
        | "member_not_object"
        | "slot_application_mismatch"
        | "slot_id_without_hash"
        | "transports_published_not_array"
        | "transports_not_object"
        | "versions_not_array"
        | "content_extra_fields"
        | "giant_sticky_key"
        | "giant_transport_url"
        | "giant_many_fields"
        | "deep_nesting_64"
        | "sender_unknown_user"
        | "unknown_room"
        | "duplicate_event_id_different_content"
        | "replay_earlier_event"
        | "wrong_event_type"
        | "state_key_present"
        | "ots_far_future"
        | "next_batch_missing"
        | "next_batch_backwards"
        | "next_batch_garbage" => one(Sticky),
        other => panic!("unknown variant {other}: update this table"),
    }
}

fn outcome(result: &Result<Parsed, Rejection>) -> Outcome {
    match result {
        Ok(Parsed::Sticky(_)) => Outcome::Sticky,
        Ok(Parsed::Redaction(_)) => Outcome::Redaction,
        Ok(Parsed::Encrypted(_)) => panic!("no encrypted events in the workload"),
        Err(rejection) => Outcome::Reject(rejection.clone()),
    }
}

fn sha256(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Apply one parsed line to the map.
fn apply(map: &mut StickyMap, batch: StickyBatch, now: Instant) {
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
                Ok(Parsed::Encrypted(_)) | Err(_) => {}
            }
        }
    }
}

/// An independent model of the expected end state, from the raw JSON of the events that must be
/// accepted: winner per key by `(ots + min(duration, 1 h), event ID)`, duplicates ignored; a
/// redacted keyed event still competes (as a tombstone) but shows nothing, a redacted unkeyed
/// one is gone.
#[derive(Default)]
struct Oracle {
    seen: HashSet<String>,
    redacted: HashSet<String>,
    keyed: BTreeMap<(String, String, String, String), (u64, String)>,
    unkeyed: BTreeSet<(String, String)>,
}

impl Oracle {
    fn accept(&mut self, room: &str, event: &Value) {
        let id = event["event_id"]
            .as_str()
            .expect("accepted events have an id")
            .to_owned();
        if !self.seen.insert(id.clone()) {
            return;
        }
        let content = &event["content"];
        let key = content
            .get("sticky_key")
            .or_else(|| content.get("msc4354_sticky_key"));
        let duration = event["msc4354_sticky"]["duration_ms"]
            .as_u64()
            .unwrap_or(HOUR)
            .min(HOUR);
        let rank = event["origin_server_ts"].as_u64().expect("ots") + duration;
        match key.and_then(Value::as_str) {
            Some(key) => {
                let slot = (
                    room.to_owned(),
                    event["sender"].as_str().expect("sender").to_owned(),
                    event["type"].as_str().expect("type").to_owned(),
                    key.to_owned(),
                );
                let candidate = (rank, id);
                let best = self.keyed.entry(slot).or_insert_with(|| candidate.clone());
                if (candidate.0, candidate.1.as_bytes()) > (best.0, best.1.as_bytes()) {
                    *best = candidate;
                }
            }
            None => {
                self.unkeyed.insert((room.to_owned(), id));
            }
        }
    }

    fn view(&self) -> BTreeMap<ViewKey, String> {
        let keyed = self
            .keyed
            .iter()
            .filter(|(_, (_, id))| !self.redacted.contains(id))
            .map(|((room, sender, event_type, key), (_, id))| {
                let key = matrix_sticky_events::MapKey {
                    room_id: room.as_str().try_into().expect("room"),
                    sender: sender.as_str().try_into().expect("sender"),
                    event_type: event_type.clone(),
                    sticky_key: key.clone(),
                };
                (ViewKey::Keyed(key), id.clone())
            });
        let unkeyed = self
            .unkeyed
            .iter()
            .filter(|(_, id)| !self.redacted.contains(id))
            .map(|(_, id)| (ViewKey::Unkeyed(id.clone()), id.clone()));
        keyed.chain(unkeyed).collect()
    }
}

/// The events of a line, as `(room, event)` in order (for lines the oracle accepts).
fn raw_events(line: &str) -> Vec<(String, Value)> {
    let value: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    let mut out = vec![];
    if let Some(rooms) = value.get("rooms").and_then(Value::as_object) {
        for (room, body) in rooms {
            if let Some(events) = body.get("events").and_then(Value::as_array) {
                out.extend(events.iter().map(|event| (room.clone(), event.clone())));
            }
        }
    }
    out
}

#[test]
fn malformed_cycle_after_the_small_workload() {
    let workload = data("small.jsonl");
    let malformed = data("malformed.jsonl");
    let names = data("malformed.names");
    assert_eq!(
        sha256(&[&workload]),
        "90a8e4bb69d7e1c48e2814c3d3f98621a95c7e6ec70c08d9871cbbccda3dd784"
    );
    assert_eq!(
        sha256(&[&workload, &malformed]),
        "41fb3462169e4bb50e162f60f4f0877e88533453c226a70dbb16f16657fad3fb"
    );

    let base = Instant::now();
    let receipt = Receipt::new(base, RECEIPT_WALL);
    let now = base;
    let mut map = StickyMap::default();
    let mut oracle = Oracle::default();

    // The valid workload: one entry per member, the winner being the member's last event.
    let mut last_by_member = BTreeMap::new();
    for line in workload.lines() {
        let batch = parse_sticky_batch(line, receipt).expect("valid line");
        assert!(batch.errors.is_empty());
        assert!(
            batch
                .iter()
                .all(|(_, event)| matches!(event, Ok(Parsed::Sticky(_))))
        );
        apply(&mut map, batch, now);
        for (room, event) in raw_events(line) {
            let member = (
                room.clone(),
                event["content"]["msc4354_sticky_key"]
                    .as_str()
                    .expect("key")
                    .to_owned(),
            );
            let ts = event["origin_server_ts"].as_u64().expect("ots");
            let id = event["event_id"].as_str().expect("id").to_owned();
            let last = last_by_member.entry(member).or_insert((ts, id.clone()));
            if ts > last.0 {
                *last = (ts, id);
            }
            oracle.accept(&room, &event);
        }
    }
    assert_eq!(map.len(), 200);
    assert_eq!(map.candidate_count(), 800);
    let mut workload_winners: BTreeSet<String> =
        last_by_member.values().map(|(_, id)| id.clone()).collect();
    assert_eq!(
        map.iter()
            .map(|e| e.meta.event_id.to_string())
            .collect::<BTreeSet<_>>(),
        workload_winners
    );
    assert_eq!(view_of(&map), oracle.view());

    // The hostile lines, one by one, each checked by name.
    let names: Vec<&str> = names.lines().collect();
    let lines: Vec<&str> = malformed.lines().collect();
    assert_eq!(names.len(), 79);
    assert_eq!(lines.len(), 79);
    for (name, line) in names.iter().zip(&lines) {
        let expect = expected(name);
        let batch = parse_sticky_batch(line, receipt)
            .unwrap_or_else(|e| panic!("{name}: whole line rejected: {e}"));
        let errors: Vec<Rejection> = batch.errors.iter().map(|e| e.reason.clone()).collect();
        assert_eq!(errors, expect.errors, "{name}: envelope errors");
        let outcomes: Vec<Outcome> = batch.iter().map(|(_, event)| outcome(event)).collect();
        assert_eq!(outcomes, expect.events, "{name}: event outcomes");
        match *name {
            "next_batch_missing" | "next_batch_number" => {
                assert_eq!(batch.next_batch, None, "{name}")
            }
            "next_batch_backwards" => assert_eq!(batch.next_batch.as_deref(), Some("sticky_1")),
            "next_batch_garbage" => {
                assert_eq!(batch.next_batch.as_deref(), Some("sticky_-5\u{0}garbage"))
            }
            "duration_i64_max" | "duration_beyond_u64" => {
                let Some((_, Ok(Parsed::Sticky(event)))) = batch.iter().next() else {
                    panic!("{name}")
                };
                assert_eq!(event.meta.duration_ms, HOUR, "{name}: clamped");
                assert_eq!(
                    event.meta.expires_at,
                    base + Duration::from_millis(3_599_960)
                );
            }
            "ttl_over_max" | "ttl_u64_max" => {
                let Some((_, Ok(Parsed::Sticky(event)))) = batch.iter().next() else {
                    panic!("{name}")
                };
                assert_eq!(
                    event.meta.expires_at,
                    base + Duration::from_millis(HOUR),
                    "{name}: clamped"
                );
            }
            "ttl_missing" => {
                let Some((_, Ok(Parsed::Sticky(event)))) = batch.iter().next() else {
                    panic!("{name}")
                };
                let expires_wall = event.meta.origin_server_ts + HOUR;
                assert_eq!(event.meta.expires_wall_ms, expires_wall, "fallback formula");
            }
            "ots_far_future" => {
                let Some((_, Ok(Parsed::Sticky(event)))) = batch.iter().next() else {
                    panic!("{name}")
                };
                assert_eq!(
                    event.meta.expires_wall_ms,
                    RECEIPT_WALL + 3_599_960,
                    "the TTL bounds stickiness"
                );
            }
            "only_stable_sticky_key" | "sticky_key_empty" => {
                let Some((_, Ok(Parsed::Sticky(event)))) = batch.iter().next() else {
                    panic!("{name}")
                };
                assert!(event.sticky_key.is_some(), "{name}: keyed");
            }
            "sticky_key_missing" => {
                let Some((_, Ok(Parsed::Sticky(event)))) = batch.iter().next() else {
                    panic!("{name}")
                };
                assert_eq!(event.sticky_key, None, "{name}: unkeyed");
            }
            _ => {}
        }

        let before = view_of(&map);
        let candidates_before = map.candidate_count();
        apply(&mut map, batch, now);
        // The oracle takes exactly the events the table says are valid.
        let raw = raw_events(line);
        for ((room, event), expected) in raw.iter().zip(&expect.events) {
            match expected {
                Outcome::Sticky => oracle.accept(room, event),
                Outcome::Redaction => {
                    oracle
                        .redacted
                        .insert(event["event_id"].as_str().expect("id").to_owned());
                }
                Outcome::Reject(_) => {}
            }
        }
        if !expect.events.contains(&Outcome::Sticky) {
            assert_eq!(view_of(&map), before, "{name}: changed the map");
            assert_eq!(
                map.candidate_count(),
                candidates_before,
                "{name}: changed the candidates"
            );
        }
        if matches!(
            *name,
            "duplicate_event_id_different_content" | "replay_earlier_event"
        ) {
            assert_eq!(view_of(&map), before, "{name}: a duplicate changed the map");
        }
        assert_eq!(
            view_of(&map),
            oracle.view(),
            "{name}: end state differs from the model"
        );
    }

    // Workload keys are intact except where a valid (accepted) refresh replaced the winner.
    let final_ids: BTreeSet<String> = map.iter().map(|e| e.meta.event_id.to_string()).collect();
    workload_winners.retain(|id| !final_ids.contains(id));
    let replaced = workload_winners.len();
    assert!(
        replaced > 0 && replaced < 60,
        "{replaced} workload winners replaced by valid refreshes"
    );
}

/// A valid js43 join of about 700 bytes, with `pad` at the JSON pointer `pointer` (a string of
/// `bytes` characters).
fn giant(pointer: &str, bytes: usize) -> Value {
    let mut event = json!({
        "content": {
            "application": { "type": "m.call" },
            "member": { "device_id": "LESCBJZURK", "id": "m", "user_id": "@user40:bench.localhost" },
            "msc4354_sticky_key": "m",
            "slot_id": "m.call#ROOM",
            "transports": { "can_subscribe": ["livekit"],
                            "published": [{ "livekit_service_url": "https://x.invalid", "type": "livekit" }] },
            "versions": [],
        },
        "event_id": "$giant",
        "msc4354_sticky": { "duration_ms": HOUR },
        "origin_server_ts": RECEIPT_WALL - 100,
        "sender": "@user40:bench.localhost",
        "type": "org.matrix.msc4143.rtc.member",
        "unsigned": { "age": 40, "msc4354_sticky_duration_ttl_ms": 3_599_960 },
    });
    let pad = "k".repeat(bytes);
    match pointer {
        "key" => {
            event["content"]["msc4354_sticky_key"] = json!(pad);
            event["content"]["member"]["id"] = json!(pad);
        }
        "url" => event["content"]["transports"]["published"][0]["livekit_service_url"] = json!(pad),
        "fields" => {
            let content = event["content"].as_object_mut().expect("object");
            for n in 0..bytes / 24 {
                content.insert(format!("field_{n:08}"), json!(n));
            }
        }
        _ => unreachable!(),
    }
    event
}

#[test]
fn real_size_giants_are_too_large() {
    let receipt = Receipt::new(Instant::now(), RECEIPT_WALL);
    for kind in ["key", "url", "fields"] {
        let event = giant(kind, 262_144).to_string();
        assert!(event.len() > 4 * MAX_EVENT_BYTES - 30_000, "{kind}");
        assert_eq!(
            parse_event(&event, &room_a(), receipt),
            Err(Rejection::TooLarge { bytes: event.len() }),
            "{kind}"
        );
    }
    // Under the limit, a large key is just a key.
    let event = giant("key", MAX_EVENT_BYTES / 3).to_string();
    assert!(
        matches!(parse_event(&event, &room_a(), receipt), Ok(Parsed::Sticky(e)) if e.sticky_key.as_ref().map(String::len) == Some(MAX_EVENT_BYTES / 3))
    );

    // A giant costs only itself in its batch.
    let line = json!({
        "rooms": { "!a:example.org": { "events": [giant("url", 262_144), giant("url", 10)] } },
        "next_batch": "sticky_3",
    })
    .to_string();
    let batch = parse_sticky_batch(&line, receipt).expect("valid envelope");
    let outcomes: Vec<Outcome> = batch.iter().map(|(_, e)| outcome(e)).collect();
    assert!(matches!(
        &outcomes[..],
        [Outcome::Reject(Rejection::TooLarge { .. }), Outcome::Sticky]
    ));

    // A response over the batch limit fails as a whole, before anything is parsed.
    let huge = format!("{{\"next_batch\":\"{}\"}}", "x".repeat(MAX_BATCH_BYTES));
    assert_eq!(
        parse_sticky_batch(&huge, receipt),
        Err(Rejection::TooLarge { bytes: huge.len() })
    );
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    let receipt = Receipt::new(Instant::now(), RECEIPT_WALL);
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let objects = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));

    // Inside an event: a typed rejection, and the other events of the batch are kept.
    let bad = giant("url", 10)
        .to_string()
        .replace("\"age\":40", &format!("\"x.nested\":{}", deep(30_000)));
    assert_eq!(
        parse_event(&bad, &room_a(), receipt),
        Err(Rejection::TooDeep)
    );
    let bad_objects = giant("url", 10)
        .to_string()
        .replace("\"age\":40", &format!("\"x.nested\":{}", objects(10_000)));
    assert_eq!(
        parse_event(&bad_objects, &room_a(), receipt),
        Err(Rejection::TooDeep)
    );
    let line = format!(
        r#"{{"rooms":{{"!a:example.org":{{"events":[{bad},{}]}}}},"next_batch":"s"}}"#,
        giant("url", 10)
    );
    let batch = parse_sticky_batch(&line, receipt).expect("valid envelope");
    let outcomes: Vec<Outcome> = batch.iter().map(|(_, e)| outcome(e)).collect();
    assert_eq!(
        outcomes,
        [Outcome::Reject(Rejection::TooDeep), Outcome::Sticky]
    );

    // In the envelope: skipped without recursion, reported as a defect.
    let cases = [
        (
            format!(r#"{{"rooms":{}}}"#, deep(200_000)),
            Rejection::RoomsNotObject,
        ),
        (
            format!(r#"{{"rooms":{{"!a:example.org":{}}}}}"#, deep(200_000)),
            Rejection::RoomNotObject,
        ),
        (
            format!(
                r#"{{"rooms":{{"!a:example.org":{{"events":{}}}}}}}"#,
                objects(200_000)
            ),
            Rejection::EventsNotArray,
        ),
        (
            format!(r#"{{"rooms":{{}},"next_batch":{}}}"#, deep(200_000)),
            Rejection::NextBatchNotString,
        ),
    ];
    for (line, error) in cases {
        let batch = parse_sticky_batch(&line, receipt).expect("valid envelope");
        assert_eq!(
            batch
                .errors
                .iter()
                .map(|e| e.reason.clone())
                .collect::<Vec<_>>(),
            [error]
        );
    }
    // Deep events inside the events array are each rejected on their own.
    let line = format!(
        r#"{{"rooms":{{"!a:example.org":{{"events":[{},{}]}}}}}}"#,
        deep(200_000),
        objects(200_000)
    );
    let batch = parse_sticky_batch(&line, receipt).expect("valid envelope");
    let outcomes: Vec<Outcome> = batch.iter().map(|(_, e)| outcome(e)).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Reject(Rejection::TooLarge { bytes: 400_001 }),
            Outcome::Reject(Rejection::TooLarge { bytes: 1_200_001 })
        ]
    );
    let line = format!(
        r#"{{"rooms":{{"!a:example.org":{{"events":[{},{}]}}}}}}"#,
        deep(30_000),
        objects(10_000)
    );
    let batch = parse_sticky_batch(&line, receipt).expect("valid envelope");
    let outcomes: Vec<Outcome> = batch.iter().map(|(_, e)| outcome(e)).collect();
    // (Depth is checked before the type: neither reaches a parser.)
    assert_eq!(
        outcomes,
        [
            Outcome::Reject(Rejection::TooDeep),
            Outcome::Reject(Rejection::TooDeep)
        ]
    );
}
