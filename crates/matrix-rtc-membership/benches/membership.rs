//! Benchmarks of the membership model.
//!
//! * `incremental/*`: one member joining then leaving a room of 1 000 and of 10 000
//!   members. The cost must not grow with the room.
//! * `large/*`: the `large` workload (10 000 members, 41 000 events, 410 sliding-sync
//!   lines) end to end: parse each line, feed the sticky map, feed the model; next to the
//!   baseline of merely parsing the same lines into `serde_json::Value`. Compare the two
//!   (same run, same machine), never absolute times. Generate the workload with
//!   `python3 scripts/bench/gen_workload.py --preset large --out target/bench/sticky-large.jsonl`;
//!   the directory can be overridden with `STICKY_BENCH_DIR`. Without it, these are skipped.
use std::{
    hint::black_box,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput};
use matrix_rtc_membership::{RtcMembership, SessionChange};
use matrix_sticky_events::{
    Change, EventOrigin, Limits, Parsed, Receipt, Redaction, RemovalReason, StickyEvent, StickyMap,
    StickyMeta, parse_sticky_batch,
};
use ruma_common::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde_json::value::RawValue;

const NOW_MS: u64 = 1_795_660_000_000;

fn member_event(room_id: &OwnedRoomId, i: usize, leave: bool, base: Instant) -> Arc<StickyEvent> {
    let user = format!("@user{i}:bench.localhost");
    let member_id = format!("member-{i}");
    let content = if leave {
        format!(r#"{{"msc4354_sticky_key":"{member_id}","slot_id":"m.call#ROOM"}}"#)
    } else {
        format!(
            r#"{{"application":{{"type":"m.call"}},"member":{{"device_id":"DEV{i}","id":"{member_id}","user_id":"{user}"}},"msc4354_sticky_key":"{member_id}","slot_id":"m.call#ROOM","transports":{{"can_subscribe":["livekit"],"published":[{{"livekit_service_url":"https://livekit-jwt.bench.invalid","type":"livekit"}}]}},"versions":[]}}"#
        )
    };
    let ots = NOW_MS + i as u64 + u64::from(leave);
    Arc::new(StickyEvent {
        meta: StickyMeta {
            room_id: room_id.clone(),
            event_id: OwnedEventId::try_from(format!("$e{i}-{leave}")).expect("valid event id"),
            sender: OwnedUserId::try_from(user).expect("valid user id"),
            origin_server_ts: ots,
            duration_ms: 3_600_000,
            expires_at: base + Duration::from_secs(3600),
            expires_wall_ms: ots + 3_600_000,
        },
        event_type: "org.matrix.msc4143.rtc.member".to_owned(),
        sticky_key: Some(member_id),
        key_only: false,
        content: RawValue::from_string(content).expect("valid JSON"),
        origin: EventOrigin::Plaintext,
    })
}

fn incremental(c: &mut Criterion) {
    let mut group = c.benchmark_group("incremental");
    let base = Instant::now();
    for size in [1_000_usize, 10_000] {
        let room_id = OwnedRoomId::try_from("!bench:bench.localhost").expect("valid room id");
        let mut model = RtcMembership::new();
        let changes: Vec<Change> = (0..size)
            .map(|i| {
                let event = member_event(&room_id, i, false, base);
                let _ = model.handle_room_member(&room_id, &event.meta.sender, true);
                Change::Added(event)
            })
            .collect();
        assert_eq!(model.handle_sticky_changes(&changes).len(), size + 1);

        let join = member_event(&room_id, size, false, base);
        let _ = model.handle_room_member(&room_id, &join.meta.sender, true);
        let leave = member_event(&room_id, size, true, base);
        let join_change = [Change::Added(join.clone())];
        let leave_change = [Change::Replaced {
            old: join,
            new: leave.clone(),
        }];
        let tombstone = [Change::Removed {
            old: leave,
            reason: RemovalReason::Expired,
        }];
        group.bench_with_input(BenchmarkId::new("join_then_leave", size), &size, |b, _| {
            b.iter(|| {
                let joined = model.handle_sticky_changes(black_box(&join_change));
                let left = model.handle_sticky_changes(black_box(&leave_change));
                // The leave event itself expires later; it holds no membership.
                let gone = model.handle_sticky_changes(black_box(&tombstone));
                assert_eq!((joined.len(), left.len(), gone.len()), (1, 1, 0));
                black_box((joined, left));
            });
        });
    }
    group.finish();
}

fn workload_path() -> PathBuf {
    let dir = std::env::var_os("STICKY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench"));
    dir.join("sticky-large.jsonl")
}

/// The baseline: parse every line into a `serde_json::Value`, and drop it.
fn baseline(lines: &[&str]) {
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        black_box(value);
    }
}

/// Runs each `large` workload function once, outside criterion, for instruction counts:
/// `MEMBERSHIP_BENCH_ONCE=1 valgrind --tool=callgrind <bench binary>`, then compare the
/// inclusive counts of `baseline`, `parse_and_map` and `end_to_end`.
fn once() {
    let Ok(text) = std::fs::read_to_string(workload_path()) else {
        eprintln!("no workload at {}", workload_path().display());
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let base = Instant::now();
    baseline(&lines);
    let map = parse_and_map(&lines, base);
    let (map2, model) = end_to_end(&lines, base);
    eprintln!(
        "map entries {}, participants {}",
        map.len(),
        participants(&map2, &model)
    );
}

/// Parses every line and feeds the map only (to tell the model's share); returns the map.
fn parse_and_map(lines: &[&str], base: Instant) -> StickyMap {
    let mut map = StickyMap::new(Limits::default());
    for (n, line) in lines.iter().enumerate() {
        let receipt = Receipt::new(base + Duration::from_millis(n as u64), NOW_MS + n as u64);
        let Ok(batch) = parse_sticky_batch(line, receipt) else {
            continue;
        };
        for room in batch.rooms {
            for event in room.events {
                if let Ok(Parsed::Sticky(event)) = event {
                    black_box(map.handle_event(event, receipt.instant));
                }
            }
        }
    }
    map
}

/// Parses every line, feeds the map and the model; returns both (a client keeps them: their
/// teardown is not part of ingesting).
fn end_to_end(lines: &[&str], base: Instant) -> (StickyMap, RtcMembership) {
    let mut map = StickyMap::new(Limits::default());
    let mut model = RtcMembership::new();
    let mut session_changes: Vec<SessionChange> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        // Each line is served a little later; the TTL counts from its receipt.
        let receipt = Receipt::new(base + Duration::from_millis(n as u64), NOW_MS + n as u64);
        let Ok(batch) = parse_sticky_batch(line, receipt) else {
            continue;
        };
        let mut changes = Vec::new();
        for room in batch.rooms {
            for event in room.events {
                match event {
                    Ok(Parsed::Sticky(event)) => {
                        changes.extend(map.handle_event(event, receipt.instant))
                    }
                    Ok(Parsed::Redaction(Redaction {
                        redacts: event_id, ..
                    })) => {
                        changes.extend(map.handle_redaction(
                            &room.room_id,
                            &event_id,
                            receipt.instant,
                        ));
                    }
                    Ok(_) | Err(_) => {}
                }
            }
        }
        session_changes.extend(model.handle_sticky_changes(&changes));
        // Answer the model's questions about senders, as a driver would from room state.
        while let Some(query) = model.poll_member_query() {
            session_changes.extend(model.handle_room_member(&query.room_id, &query.user_id, true));
        }
        while model.poll_diagnostic().is_some() {}
        black_box(session_changes.len());
        session_changes.clear();
    }
    (map, model)
}

/// The number of participants in all sessions.
fn participants(map: &StickyMap, model: &RtcMembership) -> usize {
    map.rooms()
        .map(|room_id| {
            model
                .sessions(room_id)
                .map(|session| session.len())
                .sum::<usize>()
        })
        .sum()
}

fn large(c: &mut Criterion) {
    let path = workload_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "skipping large/*: no workload at {} (generate it with gen_workload.py --preset large, \
             or set STICKY_BENCH_DIR)",
            path.display()
        );
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let base = Instant::now();
    // The workload's end state: 10 000 members, of whom 1 000 left.
    let (map, model) = end_to_end(&lines, base);
    assert_eq!(participants(&map, &model), 9_000, "unexpected end state");
    drop((map, model));

    let mut group = c.benchmark_group("large");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("serde_json_value_baseline", |b| b.iter(|| baseline(&lines)));
    group.bench_function("parse_map", |b| {
        b.iter_with_large_drop(|| parse_and_map(&lines, base))
    });
    group.bench_function("parse_map_model", |b| {
        b.iter_with_large_drop(|| end_to_end(&lines, base))
    });
    group.finish();
}

fn main() {
    if std::env::var_os("MEMBERSHIP_BENCH_ONCE").is_some() {
        once();
        return;
    }
    // What `criterion_main!` does, without the undocumented `pub fn` its macros generate.
    let mut criterion = Criterion::default().configure_from_args();
    incremental(&mut criterion);
    large(&mut criterion);
    criterion.final_summary();
}
