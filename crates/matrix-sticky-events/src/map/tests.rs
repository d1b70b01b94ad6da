//! Unit tests of the map internals: after any sequence of inserts, redactions, expiries,
//! forgotten rooms and restores under tiny caps, every counter and index agrees with the
//! candidates the map holds.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use proptest::prelude::*;
use ruma_common::{EventId, RoomId, UserId};
use serde_json::value::RawValue;

use super::{StickyMap, ranked::is_live};
use crate::{EventOrigin, Limits, StickyEvent, StickyMeta, Usage};

/// Check every counter and index of `map` against the candidates of its tree.
fn audit(map: &StickyMap) -> Result<(), TestCaseError> {
    let mut total = 0;
    let mut visible = 0;
    let mut earliest: Option<Instant> = None;
    for (room_id, room) in &map.rooms {
        prop_assert!(room.count > 0, "an empty room is kept");
        let mut room_usage = Usage::default();
        let mut senders = HashMap::new();
        for (id, sender) in &room.senders {
            prop_assert_eq!(id, &sender.id);
            let mut usage = Usage::default();
            for event in sender.iter() {
                prop_assert_eq!(&event.meta.room_id, room_id);
                prop_assert_eq!(event.meta.sender.as_str(), &**id);
                prop_assert!(is_live(&map.by_id, event), "a candidate missing by ID");
                usage.candidates += 1;
                usage.bytes += Limits::weight(event);
                earliest =
                    Some(earliest.map_or(event.meta.expires_at, |e| e.min(event.meta.expires_at)));
            }
            prop_assert!(usage.candidates > 0, "an empty sender is kept");
            prop_assert_eq!(sender.usage(), usage, "sender counters");
            room_usage.candidates += usage.candidates;
            room_usage.bytes += usage.bytes;
            senders.insert(Arc::clone(id), usage);
            for types in sender.types.values() {
                prop_assert!(!types.is_empty(), "an empty type is kept");
                for slot in types.keyed.values() {
                    prop_assert!(!slot.is_empty(), "an empty slot is kept");
                    let ranks = slot.candidates();
                    prop_assert!(
                        ranks
                            .windows(2)
                            .all(|pair| pair[0].meta.cmp_rank(&pair[1].meta).is_gt()),
                        "a slot out of order"
                    );
                    visible += usize::from(slot.visible().is_some());
                }
                visible += types.unkeyed.len();
            }
        }
        prop_assert_eq!(room.usage(), room_usage, "room counters");
        prop_assert!(room.by_usage.orders_agree(), "the two sender orders differ");
        let indexed: HashMap<Arc<str>, Usage> = room.by_usage.entries().into_iter().collect();
        prop_assert_eq!(indexed, senders, "the sender index");
        total += room_usage.candidates;
    }
    prop_assert_eq!(map.by_id.len(), total, "candidates by ID");
    prop_assert_eq!(map.visible, visible, "the visible count");
    prop_assert_eq!(map.next_deadline(), earliest, "the next deadline");
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    /// An event: (room, sender, key, rank offset, padding, deadline in s).
    Insert(u8, u8, Option<u8>, u8, u16, u8),
    /// Redact the event inserted at this position (or an unknown one).
    Redact(u8),
    /// Move time forward by this many seconds.
    Wait(u8),
    Forget(u8),
    /// Snapshot and restore into a fresh map.
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2u8, 0..4u8, prop::option::weighted(0.7, 0..3u8), any::<u8>(), 0..600u16, 1..60u8)
            .prop_map(|(room, sender, key, rank, pad, ttl)| Op::Insert(room, sender, key, rank, pad, ttl)),
        2 => any::<u8>().prop_map(Op::Redact),
        1 => (1..20u8).prop_map(Op::Wait),
        1 => (0..2u8).prop_map(Op::Forget),
        1 => Just(Op::Restore),
    ]
}

fn room_id(room: u8) -> ruma_common::OwnedRoomId {
    RoomId::parse(format!("!r{room}:example.org")).expect("room id")
}

fn event(n: usize, op: &Op, now: Instant, now_wall: u64) -> Option<StickyEvent> {
    let Op::Insert(room, sender, key, rank, pad, ttl) = *op else {
        return None;
    };
    let content = match key {
        // Every third keyed event is key-only, a deletion marker.
        Some(key) if n.is_multiple_of(3) => format!(r#"{{"sticky_key":"k{key}"}}"#),
        Some(key) => format!(
            r#"{{"sticky_key":"k{key}","pad":"{}"}}"#,
            "x".repeat(pad.into())
        ),
        None => format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad.into())),
    };
    let ttl = Duration::from_secs(ttl.into());
    Some(StickyEvent {
        meta: StickyMeta {
            room_id: room_id(room),
            event_id: EventId::parse(format!("$e{n}")).expect("event id"),
            sender: UserId::parse(format!("@u{sender}:example.org")).expect("user id"),
            origin_server_ts: 1_000_000 + u64::from(rank) * 1_000,
            duration_ms: 3_600_000,
            expires_at: now + ttl,
            expires_wall_ms: now_wall + u64::try_from(ttl.as_millis()).expect("small"),
        },
        event_type: "org.example.t".to_owned(),
        sticky_key: key.map(|key| format!("k{key}")),
        key_only: key.is_some() && n.is_multiple_of(3),
        content: RawValue::from_string(content).expect("json"),
        origin: EventOrigin::Plaintext,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn indexes_stay_consistent(
        ops in prop::collection::vec(op(), 1..80),
        per_sender in 1..6usize,
        per_room in 1..10usize,
        per_room_bytes in 400..4_000usize,
    ) {
        let limits = Limits { per_sender, per_room, per_room_bytes, remembered_redactions: 4 };
        let base = Instant::now();
        let mut elapsed = 0u64;
        let mut map = StickyMap::new(limits);
        for (n, op) in ops.iter().enumerate() {
            let now = base + Duration::from_secs(elapsed);
            let now_wall = 1_000_000 + elapsed * 1_000;
            match *op {
                Op::Insert(..) => {
                    let event = event(n, op, now, now_wall).expect("an insert");
                    let _ = map.handle_event(event, now);
                }
                Op::Redact(target) => {
                    let target = usize::from(target) % (ops.len() + 2);
                    let room = match ops.get(target) {
                        Some(Op::Insert(room, ..)) => *room,
                        _ => 0,
                    };
                    let event_id = EventId::parse(format!("$e{target}")).expect("event id");
                    let _ = map.handle_redaction(&room_id(room), &event_id, now);
                }
                Op::Wait(seconds) => {
                    elapsed += u64::from(seconds);
                    let _ = map.handle_timeout(base + Duration::from_secs(elapsed));
                }
                Op::Forget(room) => {
                    let _ = map.forget_room(&room_id(room));
                }
                Op::Restore => {
                    let snapshot = map.snapshot(now, now_wall);
                    let restored = StickyMap::from_snapshot(limits, &snapshot, now, now_wall)
                        .expect("own snapshot");
                    audit(&restored)?;
                    let mut a: Vec<_> = map.candidates().map(|e| (**e).clone()).collect();
                    let mut b: Vec<_> = restored.candidates().map(|e| (**e).clone()).collect();
                    a.sort_by(|x, y| x.meta.event_id.cmp(&y.meta.event_id));
                    b.sort_by(|x, y| x.meta.event_id.cmp(&y.meta.event_id));
                    prop_assert_eq!(a, b, "a restored map holds other candidates");
                    map = restored;
                }
            }
            audit(&map)?;
        }
    }
}
