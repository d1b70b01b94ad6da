//! Snapshots: absolute wall-clock deadlines, restore after time passed, merging, tombstones,
//! the format before tombstones.
use std::time::Duration;

use matrix_sticky_events::{
    Change, EventOrigin, Limits, RemovalReason, Snapshot, SnapshotError, StickyEvent, StickyMap,
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

#[test]
fn tombstones_survive_a_restore_and_keep_their_key_removed() {
    let clock = Clock::new();
    let now = clock.at(0);
    let mut map = StickyMap::default();
    let join = make(&clock, 0, "join", ALICE, Some("m"), -60_000, HOUR);
    let rejoin = make(&clock, 0, "rejoin", ALICE, Some("m"), -1_000, 40_000);
    let _ = map.handle_events([join.clone(), rejoin.clone()], now);
    let _ = map.handle_redaction(&room_a(), &owned_event_id!("$rejoin"), now);
    assert!(map.is_empty());
    let snapshot = map.snapshot(now, T0_WALL);
    let stored = serde_json::to_value(&snapshot).expect("json");
    let tombstone = stored["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["event_id"] == "$rejoin")
        .expect("the tombstone is stored");
    assert_eq!(tombstone["content"], "{}");
    assert_eq!(tombstone["redacted_key"], "m");
    // Ordinary candidates carry no `redacted_key`.
    assert!(
        stored["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["event_id"] != "$rejoin")
            .all(|e| e.get("redacted_key").is_none())
    );

    // Restored, the key stays removed: the tombstone is back with its rank and deadline, the
    // redaction is still remembered, and neither event can bring a value back.
    let later = Clock::new();
    let mut restored =
        StickyMap::from_snapshot(Limits::default(), &snapshot, later.at(0), T0_WALL + 1_000)
            .expect("valid");
    assert!(restored.is_empty());
    assert_eq!(restored.candidate_count(), 2);
    let key = rejoin.map_key().expect("keyed");
    let winner = restored.winner(&key).expect("the tombstone");
    assert_eq!(winner.meta.event_id, "$rejoin");
    assert!(winner.key_only);
    assert_eq!(winner.content.get(), "{}");
    assert_eq!(winner.meta.expires_at, later.at(39_000));
    assert!(restored.is_redacted(&room_a(), &owned_event_id!("$rejoin")));
    assert!(restored.handle_event(join, later.at(0)).is_empty());
    assert!(
        restored
            .handle_event(rejoin.clone(), later.at(0))
            .is_empty()
    );
    assert!(restored.get(&key).is_none());
    // The same without the remembered redaction (forgotten, or a map that remembers none): the
    // tombstone alone keeps the key removed.
    let mut bare = stored.clone();
    bare["redactions"] = json!([]);
    let bare: Snapshot = serde_json::from_value(bare).expect("same shape");
    let mut restored = StickyMap::from_snapshot(
        Limits {
            remembered_redactions: 0,
            ..Limits::default()
        },
        &bare,
        later.at(0),
        T0_WALL + 1_000,
    )
    .expect("valid");
    assert!(
        restored
            .handle_event(rejoin.clone(), later.at(0))
            .is_empty()
    );
    assert!(restored.get(&key).is_none());
    // Merged into a live map that holds the unredacted event, the tombstone redacts it.
    let mut live = StickyMap::default();
    let _ = live.handle_event(rejoin, now);
    let changes = live.restore(&bare, now, T0_WALL).expect("valid");
    assert!(
        changes.iter().any(|c| matches!(c, Change::Removed { old, reason: RemovalReason::Redacted } if old.meta.event_id == "$rejoin"))
    );
    assert!(live.get(&key).is_none());
    // A tombstone whose content is not `{}` is a corrupted entry, skipped like any other.
    let mut tampered = stored;
    for event in tampered["events"].as_array_mut().expect("events") {
        if event["event_id"] == "$rejoin" {
            event["content"] = json!(r#"{"body":"back"}"#);
        }
    }
    let tampered: Snapshot = serde_json::from_value(tampered).expect("same shape");
    let restored =
        StickyMap::from_snapshot(Limits::default(), &tampered, later.at(0), T0_WALL + 1_000)
            .expect("valid");
    assert!(!restored.contains_event(&owned_event_id!("$rejoin")));
}

#[test]
fn snapshots_written_before_tombstones_still_read() {
    // The format as written before tombstones existed: no `redacted_key` anywhere.
    let stored = json!({
        "version": 1,
        "events": [
            {
                "room_id": "!a:example.org", "event_id": "$old", "sender": ALICE,
                "origin_server_ts": T0_WALL - 5_000, "duration_ms": HOUR,
                "expires_wall_ms": T0_WALL + 10_000, "event_type": "org.example.sticky",
                "content": r#"{"body":"old","msc4354_sticky_key":"k"}"#,
            },
            {
                "room_id": "!a:example.org", "event_id": "$gone", "sender": ALICE,
                "origin_server_ts": T0_WALL - 1_000, "duration_ms": HOUR,
                "expires_wall_ms": T0_WALL + 20_000, "event_type": "org.example.sticky",
                "content": r#"{"msc4354_sticky_key":"g"}"#, "encrypted": "DEV",
            },
        ],
        "redactions": [
            { "room_id": "!a:example.org", "event_id": "$was", "forget_wall_ms": T0_WALL + HOUR },
        ],
    });
    let snapshot: Snapshot = serde_json::from_value(stored).expect("old shape");
    let clock = Clock::new();
    let map = StickyMap::from_snapshot(Limits::default(), &snapshot, clock.at(0), T0_WALL)
        .expect("valid");
    assert_eq!(map.candidate_count(), 2);
    assert_eq!(map.len(), 1);
    assert!(map.is_redacted(&room_a(), &owned_event_id!("$was")));
    let marker = map
        .candidates()
        .find(|e| e.meta.event_id == "$gone")
        .expect("restored");
    assert!(marker.key_only);
    assert_eq!(marker.sticky_key.as_deref(), Some("g"));
    assert_eq!(
        marker.origin,
        EventOrigin::Encrypted {
            sender_device: Some(OwnedDeviceId::from("DEV"))
        }
    );
    // Written again, it has the same shape (no tombstone, so no `redacted_key`).
    let again = serde_json::to_value(map.snapshot(clock.at(0), T0_WALL)).expect("json");
    assert!(
        again["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e.get("redacted_key").is_none())
    );
}
