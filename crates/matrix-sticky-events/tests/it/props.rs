//! Property tests: convergence under any order with duplicates and redactions (also across a
//! snapshot and restore), agreement with an independent model of the rules (a redacted keyed
//! candidate is a tombstone, never a way back to an older value), no entry visible after its
//! deadline, change lists that replay to the visible state, caps that hold.
//!
//! Case counts are fixed (see each `ProptestConfig`) so the suite stays well under 20 s in
//! debug builds.
use std::collections::{BTreeMap, HashMap, HashSet};

use matrix_sticky_events::{Limits, MapKey, StickyEvent, StickyMap};
use proptest::prelude::*;
use ruma_common::OwnedEventId;
use serde_json::{Value, json};

use crate::support::{
    Clock, HOUR, T0_WALL, ViewKey, ids_of, replay, room, sticky, view_key, view_of,
};

/// One event of a scenario.
#[derive(Debug, Clone)]
struct Spec {
    room: u8,
    sender: u8,
    kind: u8,
    key: Option<u8>,
    key_only: bool,
    ots_back: u64,
    duration: u64,
    ttl: u64,
    id_prefix: &'static str,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            0..2u8,
            0..2u8,
            0..2u8,
            prop::option::weighted(0.8, 0..3u8),
            prop::bool::weighted(0.2),
        ),
        (
            0..20u64,
            prop::sample::select(vec![1_000u64, 60_000, 600_000, HOUR, 2 * HOUR]),
        ),
        (
            1_000..HOUR,
            prop::sample::select(vec!["A", "a", "Z", "_", "-", "0"]),
        ),
    )
        .prop_map(
            |((room, sender, kind, key, key_only), (ots_back, duration), (ttl, id_prefix))| Spec {
                room,
                sender,
                kind,
                key,
                key_only,
                ots_back: ots_back * 1_000,
                duration,
                ttl,
                id_prefix,
            },
        )
}

/// Build the events of a scenario, all received at the origin of `clock` (so their deadlines do
/// not depend on when they are delivered).
fn build(clock: &Clock, specs: &[Spec]) -> Vec<StickyEvent> {
    specs
        .iter()
        .enumerate()
        .map(|(n, spec)| {
            let mut content = json!({});
            if let Some(key) = spec.key {
                content["msc4354_sticky_key"] = json!(format!("k{key}"));
            }
            if !spec.key_only || spec.key.is_none() {
                content["body"] = json!(n);
            }
            let event: Value = json!({
                "type": format!("org.example.t{}", spec.kind),
                "event_id": format!("${}{n}", spec.id_prefix),
                "sender": format!("@u{}:example.org", spec.sender),
                "origin_server_ts": T0_WALL - spec.ots_back,
                "msc4354_sticky": { "duration_ms": spec.duration },
                "content": content,
                "unsigned": { "msc4354_sticky_duration_ttl_ms": spec.ttl },
            });
            let mut parsed = sticky(&event, clock.receipt(0));
            if spec.room == 1 {
                parsed.meta.room_id = room("!b:example.org");
            }
            parsed
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Insert(usize),
    Redact(usize),
    /// A redaction naming the event, but in the other room: it must not touch the event.
    RedactElsewhere(usize),
    RedactUnknown(usize),
}

/// A scenario: events, and the operations delivering them (each event once or twice, some
/// redacted once or twice, some "redacted" in the wrong room, plus redactions of unknown
/// events).
fn scenario() -> impl Strategy<Value = (Vec<Spec>, Vec<Op>)> {
    let item = (
        spec(),
        1..=2usize,
        prop::sample::select(vec![0usize, 0, 0, 1, 1, 2]),
        prop::bool::weighted(0.1),
    );
    prop::collection::vec(item, 1..24).prop_flat_map(|items| {
        let mut ops = vec![];
        let mut specs = vec![];
        for (n, (spec, copies, redactions, elsewhere)) in items.into_iter().enumerate() {
            specs.push(spec);
            ops.extend(std::iter::repeat_n(Op::Insert(n), copies));
            ops.extend(std::iter::repeat_n(Op::Redact(n), redactions));
            if elsewhere {
                ops.push(Op::RedactElsewhere(n));
            }
        }
        (Just(specs), Just(ops), 0..3usize).prop_map(|(specs, mut ops, unknown)| {
            ops.extend((0..unknown).map(Op::RedactUnknown));
            (specs, ops)
        })
    })
}

fn event_id_of(events: &[StickyEvent], op: Op) -> OwnedEventId {
    match op {
        Op::Insert(n) | Op::Redact(n) | Op::RedactElsewhere(n) => events[n].meta.event_id.clone(),
        Op::RedactUnknown(n) => format!("$unknown{n}").try_into().expect("event id"),
    }
}

/// Apply `ops` at the given times, checking the invariants after every step; returns the map.
fn run(
    map: &mut StickyMap,
    clock: &Clock,
    events: &[StickyEvent],
    ops: &[Op],
    times: &[u64],
) -> Result<(), TestCaseError> {
    let mut view = BTreeMap::new();
    for event in map.iter() {
        view.insert(view_key(event), event.clone());
    }
    let mut redacted = HashSet::new();
    for (op, &time) in ops.iter().zip(times) {
        let now = clock.at(time);
        let changes = match *op {
            Op::Insert(n) => map.handle_event(events[n].clone(), now),
            Op::Redact(n) => {
                let target = &events[n].meta;
                redacted.insert(target.event_id.clone());
                map.handle_redaction(&target.room_id, &target.event_id, now)
            }
            Op::RedactElsewhere(n) => {
                let target = &events[n].meta;
                let elsewhere = if target.room_id == "!a:example.org" {
                    room("!b:example.org")
                } else {
                    room("!a:example.org")
                };
                map.handle_redaction(&elsewhere, &target.event_id, now)
            }
            Op::RedactUnknown(_) => {
                map.handle_redaction(&room("!a:example.org"), &event_id_of(events, *op), now)
            }
        };
        replay(&mut view, &changes);
        prop_assert_eq!(
            ids_of(&view),
            view_of(map),
            "replayed changes differ from the map"
        );
        prop_assert_eq!(map.len(), view.len());
        prop_assert!(
            map.candidates().all(|e| e.meta.expires_at > now),
            "a candidate outlived its deadline"
        );
        prop_assert!(map.next_deadline().is_none_or(|d| d > now));
        // A redacted candidate is a tombstone (keyed, key-only, content `{}`), and whatever is
        // visible is its key's winner: no older value behind a tombstone ever shows.
        for candidate in map.candidates() {
            if redacted.contains(&candidate.meta.event_id) {
                prop_assert!(
                    candidate.sticky_key.is_some()
                        && candidate.key_only
                        && candidate.content.get() == "{}",
                    "a redacted candidate that is not a tombstone"
                );
            }
        }
        for visible in map.iter() {
            if let Some(key) = visible.map_key() {
                prop_assert!(
                    map.winner(&key)
                        .is_some_and(|w| std::sync::Arc::ptr_eq(w, visible)),
                    "a visible entry that is not its key's winner"
                );
            }
        }
    }
    Ok(())
}

/// The view the rules give at `end` for these deliveries, computed from the specs alone: the
/// live events are those whose deadline is after `end`; per key the highest
/// `(origin_server_ts + min(duration, 1 h), event ID)` wins, and shows a value unless it is
/// key-only or redacted; an unkeyed event shows unless redacted.
fn model(
    specs: &[Spec],
    events: &[StickyEvent],
    ops: &[Op],
    end: u64,
) -> BTreeMap<ViewKey, String> {
    let redacted: HashSet<usize> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Redact(n) => Some(*n),
            _ => None,
        })
        .collect();
    let mut winners: BTreeMap<MapKey, (u64, Vec<u8>, usize)> = BTreeMap::new();
    let mut view = BTreeMap::new();
    for (n, (spec, event)) in specs.iter().zip(events).enumerate() {
        if spec.ttl <= end {
            continue;
        }
        let id = event.meta.event_id.to_string();
        let Some(key) = event.map_key() else {
            if !redacted.contains(&n) {
                view.insert(ViewKey::Unkeyed(id.clone()), id);
            }
            continue;
        };
        let rank = (
            T0_WALL - spec.ots_back + spec.duration.min(HOUR),
            id.as_bytes().to_vec(),
            n,
        );
        let best = winners.entry(key).or_insert_with(|| rank.clone());
        if (rank.0, &rank.1) > (best.0, &best.1) {
            *best = rank;
        }
    }
    for (key, (_, _, n)) in winners {
        if !redacted.contains(&n) && !events[n].key_only {
            view.insert(ViewKey::Keyed(key), events[n].meta.event_id.to_string());
        }
    }
    view
}

fn events_of(map: &StickyMap, clock: &Clock) -> Value {
    serde_json::to_value(map.snapshot(clock.at(0), T0_WALL)).expect("json")["events"].clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any two orders of the same deliveries (duplicates and redactions included), at any
    /// times, with or without a snapshot and restore in between, leave the same map: the one
    /// the rules give.
    #[test]
    fn convergence(
        (specs, ops, order_a, order_b, mut times, cut) in scenario().prop_flat_map(|(specs, ops)| {
            let len = ops.len();
            (
                Just(specs),
                Just(ops.clone()),
                Just(ops.clone()).prop_shuffle(),
                Just(ops).prop_shuffle(),
                prop::collection::vec(0..1_800_000u64, len),
                0..=len,
            )
        })
    ) {
        times.sort_unstable();
        let clock = Clock::new();
        let events = build(&clock, &specs);
        let end = clock.at(1_800_000);
        let mut maps = vec![];
        for order in [&ops, &order_a, &order_b] {
            let mut map = StickyMap::default();
            run(&mut map, &clock, &events, order, &times)?;
            let _ = map.handle_timeout(end);
            maps.push(map);
        }
        // All at once, at the origin, then expired to the same end.
        let mut at_once = StickyMap::default();
        run(&mut at_once, &clock, &events, &ops, &vec![0; ops.len()])?;
        let _ = at_once.handle_timeout(end);
        maps.push(at_once);
        // Order A, persisted after `cut` deliveries and restored on a new map (same clocks).
        let mut first = StickyMap::default();
        run(&mut first, &clock, &events, &order_a[..cut], &times[..cut])?;
        let now = clock.at(times[..cut].last().copied().unwrap_or(0));
        let snapshot = first.snapshot(now, T0_WALL + times[..cut].last().copied().unwrap_or(0));
        let mut second = StickyMap::from_snapshot(
            Limits::default(),
            &snapshot,
            now,
            T0_WALL + times[..cut].last().copied().unwrap_or(0),
        )
        .expect("own snapshot");
        prop_assert_eq!(view_of(&second), view_of(&first));
        run(&mut second, &clock, &events, &order_a[cut..], &times[cut..])?;
        let _ = second.handle_timeout(end);
        maps.push(second);
        let reference = events_of(&maps[0], &clock);
        for map in &maps[1..] {
            prop_assert_eq!(&events_of(map, &clock), &reference);
            prop_assert_eq!(view_of(map), view_of(&maps[0]));
        }
        prop_assert_eq!(view_of(&maps[0]), model(&specs, &events, &ops, 1_800_000));
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// With tiny caps, the invariants hold and the caps are never exceeded.
    #[test]
    fn caps_hold((specs, ops) in scenario(), per_sender in 1..4usize, per_room in 1..6usize) {
        let clock = Clock::new();
        let events = build(&clock, &specs);
        let mut map = StickyMap::new(Limits { per_sender, per_room, ..Limits::default() });
        let times: Vec<u64> = (0..ops.len() as u64).map(|n| n * 1_000).collect();
        run(&mut map, &clock, &events, &ops, &times)?;
        let mut per_room_count: HashMap<String, usize> = HashMap::new();
        let mut per_sender_count: HashMap<(String, String), usize> = HashMap::new();
        for event in map.candidates() {
            *per_room_count.entry(event.meta.room_id.to_string()).or_default() += 1;
            *per_sender_count.entry((event.meta.room_id.to_string(), event.meta.sender.to_string())).or_default() += 1;
        }
        prop_assert!(per_room_count.values().all(|&n| n <= per_room));
        prop_assert!(per_sender_count.values().all(|&n| n <= per_sender));
        // Draining every deadline empties the map, one timer step at a time.
        let mut view = BTreeMap::new();
        for event in map.iter() {
            view.insert(view_key(event), event.clone());
        }
        while let Some(deadline) = map.next_deadline() {
            let changes = map.handle_timeout(deadline);
            replay(&mut view, &changes);
            prop_assert_eq!(ids_of(&view), view_of(&map));
        }
        prop_assert_eq!(map.candidate_count(), 0);
        prop_assert!(view.is_empty());
    }
}
