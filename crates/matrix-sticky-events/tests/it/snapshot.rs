//! Snapshots: absolute wall-clock deadlines, restore after time passed, merging.
use std::time::Duration;

use matrix_sticky_events::{
    Change, EventOrigin, Limits, Snapshot, SnapshotError, StickyEvent, StickyMap,
};
use ruma_common::{OwnedDeviceId, owned_event_id};
use serde_json::json;

use crate::support::{Clock, HOUR, T0_WALL, event_json, make, room_a, set, sticky, view_of};

const ALICE: &str = "@alice:example.org";

fn populated(clock: &Clock) -> StickyMap {
    let mut map = StickyMap::default();
    let mut tombstone = event_json("t", ALICE, Some("gone"), -1_000);
    set(
        &mut tombstone,
        "/content",
        json!({ "msc4354_sticky_key": "gone" }),
    );
    set(
        &mut tombstone,
        "/unsigned",
        json!({ "msc4354_sticky_duration_ttl_ms": 30_000 }),
    );
    let mut encrypted = make(
        clock,
        0,
        "enc",
        "@carol:example.org",
        Some("c"),
        -1_000,
        40_000,
    );
    encrypted.origin = EventOrigin::Encrypted {
        sender_device: Some(OwnedDeviceId::from("CJ")),
    };
    let events: Vec<StickyEvent> = vec![
        make(clock, 0, "old", ALICE, Some("k"), -5_000, 10_000),
        make(clock, 0, "new", ALICE, Some("k"), -1_000, 50_000),
        make(clock, 0, "free", ALICE, None, -1_000, 20_000),
        sticky(&tombstone, clock.receipt(0)),
        encrypted,
    ];
    let _ = map.handle_events(events, clock.at(0));
    let _ = map.handle_redaction(&room_a(), &owned_event_id!("$unseen"), clock.at(0));
    map
}

#[test]
fn round_trip_through_json() {
    let clock = Clock::new();
    let map = populated(&clock);
    let snapshot = map.snapshot(clock.at(0), T0_WALL);
    assert_eq!(snapshot.len(), 5);
    let text = serde_json::to_string(&snapshot).expect("serializable");
    let stored: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        stored["events"][0]["expires_wall_ms"]
            .as_u64()
            .map(|w| w > T0_WALL),
        Some(true)
    );
    assert_eq!(
        stored["redactions"][0]["forget_wall_ms"].as_u64(),
        Some(T0_WALL + HOUR + 300_000),
        "redactions are stored with wall-clock times"
    );
    let back: Snapshot = serde_json::from_str(&text).expect("deserializable");
    assert_eq!(back, snapshot);

    // Restored on another clock, 5 s of wall time later.
    let later = Clock::new();
    let restored = StickyMap::from_snapshot(Limits::default(), &back, later.at(0), T0_WALL + 5_000)
        .expect("valid");
    assert_eq!(view_of(&restored), view_of(&map));
    assert_eq!(restored.candidate_count(), 5);
    // Deadlines re-derived: `expires_wall - now_wall` from the new monotonic now.
    assert_eq!(restored.next_deadline(), Some(later.at(5_000)));
    let encrypted = restored
        .candidates()
        .find(|e| e.meta.event_id == "$enc")
        .expect("restored");
    assert_eq!(
        encrypted.origin,
        EventOrigin::Encrypted {
            sender_device: Some(OwnedDeviceId::from("CJ"))
        }
    );
    assert_eq!(encrypted.meta.expires_at, later.at(35_000));
    assert!(restored.is_redacted(&room_a(), &owned_event_id!("$unseen")));
    // Snapshots of equal maps are equal.
    assert_eq!(
        restored.snapshot(later.at(0), T0_WALL + 5_000).len(),
        snapshot.len()
    );
}

#[test]
fn what_expired_meanwhile_is_dropped() {
    let clock = Clock::new();
    let map = populated(&clock);
    let snapshot = map.snapshot(clock.at(0), T0_WALL);
    // 25 s later: "old" (10 s) and "free" (20 s) expired while the app was not running.
    let later = Clock::new();
    let restored =
        StickyMap::from_snapshot(Limits::default(), &snapshot, later.at(0), T0_WALL + 25_000)
            .expect("valid");
    assert_eq!(restored.candidate_count(), 3);
    assert!(!restored.contains_event(&owned_event_id!("$old")));
    assert!(!restored.contains_event(&owned_event_id!("$free")));
    assert_eq!(restored.next_deadline(), Some(later.at(5_000)));
    // Long after: nothing left, but the redaction is still remembered for a while.
    let restored =
        StickyMap::from_snapshot(Limits::default(), &snapshot, later.at(0), T0_WALL + HOUR)
            .expect("valid");
    assert_eq!(restored.candidate_count(), 0);
    assert!(restored.is_redacted(&room_a(), &owned_event_id!("$unseen")));
    let restored = StickyMap::from_snapshot(
        Limits::default(),
        &snapshot,
        later.at(0),
        T0_WALL + HOUR + 300_000,
    )
    .expect("valid");
    assert!(!restored.is_redacted(&room_a(), &owned_event_id!("$unseen")));
}

#[test]
fn restore_merges_into_a_live_map() {
    let clock = Clock::new();
    let map = populated(&clock);
    let snapshot = map.snapshot(clock.at(0), T0_WALL);

    let mut live = StickyMap::default();
    let _ = live.handle_event(
        make(&clock, 0, "newest", ALICE, Some("k"), 0, HOUR),
        clock.at(0),
    );
    let changes = live
        .restore(&snapshot, clock.at(0), T0_WALL)
        .expect("valid");
    // "newest" still wins its key; the other entries appear.
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, Change::Added(_)))
            .count(),
        2
    );
    assert_eq!(live.len(), 3);
    // Restoring the same snapshot again changes nothing.
    assert!(
        live.restore(&snapshot, clock.at(0), T0_WALL)
            .expect("valid")
            .is_empty()
    );
    // A redaction in the snapshot applies to the live map too.
    let mut live = StickyMap::default();
    let unseen = make(&clock, 0, "unseen", ALICE, Some("u"), 0, HOUR);
    let _ = live.handle_event(unseen, clock.at(0));
    let changes = live
        .restore(&snapshot, clock.at(0), T0_WALL)
        .expect("valid");
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Removed { old, .. } if old.meta.event_id == "$unseen"))
    );
}

#[test]
fn insertion_order_does_not_change_the_snapshot() {
    let clock = Clock::new();
    let events: Vec<StickyEvent> = (0..20)
        .map(|n| {
            make(
                &clock,
                0,
                &format!("e{n}"),
                ALICE,
                Some(&format!("k{}", n % 3)),
                -(n * 100),
                10_000 + n.cast_unsigned(),
            )
        })
        .collect();
    let mut forward = StickyMap::default();
    let _ = forward.handle_events(events.clone(), clock.at(0));
    let mut backward = StickyMap::default();
    let _ = backward.handle_events(events.into_iter().rev(), clock.at(0));
    assert_eq!(
        forward.snapshot(clock.at(0), T0_WALL),
        backward.snapshot(clock.at(0), T0_WALL)
    );
}

#[test]
fn unknown_versions_and_bad_entries() {
    let clock = Clock::new();
    let map = populated(&clock);
    let mut stored = serde_json::to_value(map.snapshot(clock.at(0), T0_WALL)).expect("json");
    stored["version"] = json!(7);
    let future: Snapshot = serde_json::from_value(stored.clone()).expect("same shape");
    assert_eq!(
        StickyMap::from_snapshot(Limits::default(), &future, clock.at(0), T0_WALL).map(|m| m.len()),
        Err(SnapshotError::UnsupportedVersion(7))
    );
    // Corrupted entries are skipped, the rest restored.
    stored["version"] = json!(1);
    stored["events"][0]["content"] = json!("not json");
    stored["events"][1]["event_id"] = json!("no sigil");
    stored["events"][2]["duration_ms"] = json!(0);
    let damaged: Snapshot = serde_json::from_value(stored).expect("same shape");
    let restored =
        StickyMap::from_snapshot(Limits::default(), &damaged, clock.at(0), T0_WALL).expect("valid");
    assert_eq!(restored.candidate_count(), 2);
    // Deadlines from a snapshot never exceed one hour from now, even with a clock jump.
    let mut stored = serde_json::to_value(map.snapshot(clock.at(0), T0_WALL)).expect("json");
    stored["events"][0]["expires_wall_ms"] = json!(T0_WALL + 10 * HOUR);
    let jumped: Snapshot = serde_json::from_value(stored).expect("same shape");
    let restored =
        StickyMap::from_snapshot(Limits::default(), &jumped, clock.at(0), T0_WALL).expect("valid");
    assert!(
        restored
            .candidates()
            .all(|e| e.meta.expires_at <= clock.at(0) + Duration::from_millis(HOUR))
    );
}
