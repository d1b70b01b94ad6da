//! The ephemeral map: winners, superseded candidates, deletion markers, unkeyed entries,
//! duplicates, redactions (tombstones), expiry, forgetting a room, caps.
use std::{collections::BTreeMap, sync::Arc};

use matrix_sticky_events::{Change, Limits, MapKey, RemovalReason, StickyEvent, StickyMap};
use ruma_common::{owned_event_id, owned_user_id};
use serde_json::json;

use crate::support::{
    Clock, HOUR, eid, event_json, ids_of, make, replay, room, room_a, set, sticky, view_of,
};

const ALICE: &str = "@alice:example.org";
const BOB: &str = "@bob:example.org";

fn key(sender: &str, sticky_key: &str) -> MapKey {
    MapKey {
        room_id: room_a(),
        sender: sender.try_into().expect("user id"),
        event_type: "org.example.sticky".to_owned(),
        sticky_key: sticky_key.to_owned(),
    }
}

fn id(change: &Change) -> String {
    change.event().meta.event_id.to_string()
}

/// A key-only event (a deletion marker) for `key`.
fn tombstone(
    clock: &Clock,
    recv_ms: u64,
    id: &str,
    sender: &str,
    sticky_key: &str,
    ots: i64,
    ttl: u64,
) -> StickyEvent {
    let mut event = event_json(id, sender, Some(sticky_key), ots);
    set(
        &mut event,
        "/content",
        json!({ "msc4354_sticky_key": sticky_key }),
    );
    set(
        &mut event,
        "/unsigned",
        json!({ "msc4354_sticky_duration_ttl_ms": ttl }),
    );
    sticky(&event, clock.receipt(recv_ms))
}

#[test]
fn last_to_expire_wins_in_any_order() {
    let clock = Clock::new();
    let older = make(&clock, 0, "older", ALICE, Some("k"), -2_000, HOUR);
    let newer = make(&clock, 0, "newer", ALICE, Some("k"), -1_000, HOUR);
    let now = clock.at(0);

    let mut forward = StickyMap::default();
    let first = forward.handle_event(older.clone(), now);
    assert!(matches!(&first[..], [Change::Added(e)] if e.meta.event_id == "$older"));
    let second = forward.handle_event(newer.clone(), now);
    match &second[..] {
        [Change::Replaced { old, new }] => {
            assert_eq!(old.meta.event_id, "$older");
            assert_eq!(new.meta.event_id, "$newer");
        }
        other => panic!("unexpected {other:?}"),
    }

    let mut backward = StickyMap::default();
    assert_eq!(backward.handle_event(newer, now).len(), 1);
    assert!(
        backward.handle_event(older, now).is_empty(),
        "a lower-ranked event changes nothing visible"
    );
    for map in [&forward, &backward] {
        assert_eq!(
            map.get(&key(ALICE, "k"))
                .map(|e| e.meta.event_id.to_string()),
            Some("$newer".into())
        );
        assert_eq!(map.len(), 1);
        assert_eq!(map.candidate_count(), 2);
    }
}

#[test]
fn rank_is_origin_server_ts_plus_duration_then_event_id() {
    let clock = Clock::new();
    let now = clock.at(0);
    // A one-hour event sent earlier beats a ten-minute event sent later.
    let long = make(&clock, 0, "long", ALICE, Some("k"), -60_000, HOUR);
    let mut short = event_json("short", ALICE, Some("k"), -1_000);
    set(&mut short, "/msc4354_sticky/duration_ms", json!(600_000));
    let short = sticky(&short, clock.receipt(0));
    let mut map = StickyMap::default();
    let _ = map.handle_events([short, long], now);
    assert_eq!(
        map.get(&key(ALICE, "k"))
            .map(|e| e.meta.event_id.to_string()),
        Some("$long".into())
    );

    // Same rank: the higher event ID wins (byte order).
    let a = make(&clock, 0, "AAA", ALICE, Some("t"), -1_000, HOUR);
    let b = make(&clock, 0, "aaa", ALICE, Some("t"), -1_000, HOUR);
    let mut map = StickyMap::default();
    let _ = map.handle_events([b.clone(), a.clone()], now);
    assert_eq!(
        map.get(&key(ALICE, "t"))
            .map(|e| e.meta.event_id.to_string()),
        Some("$aaa".into())
    );
    let mut map = StickyMap::default();
    let _ = map.handle_events([a, b], now);
    assert_eq!(
        map.get(&key(ALICE, "t"))
            .map(|e| e.meta.event_id.to_string()),
        Some("$aaa".into())
    );
}

#[test]
fn the_sender_is_part_of_the_key() {
    let clock = Clock::new();
    let mut map = StickyMap::default();
    let changes = map.handle_events(
        [
            make(&clock, 0, "a", ALICE, Some("k"), -2_000, HOUR),
            make(&clock, 0, "b", BOB, Some("k"), -1_000, HOUR),
        ],
        clock.at(0),
    );
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|c| matches!(c, Change::Added(_))));
    assert_eq!(map.len(), 2);
    assert!(map.get(&key(ALICE, "k")).is_some());
    assert!(
        map.lookup(
            &room_a(),
            &owned_user_id!("@bob:example.org"),
            "org.example.sticky",
            "k"
        )
        .is_some()
    );
}

#[test]
fn a_redaction_leaves_a_tombstone_and_never_brings_an_older_candidate_back() {
    let clock = Clock::new();
    let now = clock.at(0);
    let mut map = StickyMap::default();
    let _ = map.handle_events(
        [
            make(&clock, 0, "one", ALICE, Some("k"), -3_000, HOUR),
            make(&clock, 0, "two", ALICE, Some("k"), -2_000, HOUR),
            make(&clock, 0, "three", ALICE, Some("k"), -1_000, 50_000),
        ],
        now,
    );
    let bytes = map.room_usage(&room_a()).bytes;
    // Redacting a superseded candidate changes nothing visible; it stays, as a tombstone.
    assert!(
        map.handle_redaction(&room_a(), &owned_event_id!("$two"), now)
            .is_empty()
    );
    assert_eq!(map.candidate_count(), 3);
    // Redacting the winner removes the key: no older candidate comes back.
    let changes = map.handle_redaction(&room_a(), &owned_event_id!("$three"), now);
    assert!(
        matches!(&changes[..], [Change::Removed { reason: RemovalReason::Redacted, old }] if old.meta.event_id == "$three")
    );
    assert!(map.get(&key(ALICE, "k")).is_none());
    assert!(map.is_empty());
    // The winner is the tombstone: same metadata, type, key and deadline, key-only, `{}`.
    let winner = map.winner(&key(ALICE, "k")).expect("a tombstone").clone();
    let original = make(&clock, 0, "three", ALICE, Some("k"), -1_000, 50_000);
    assert_eq!(winner.meta, original.meta);
    assert_eq!(winner.event_type, original.event_type);
    assert_eq!(winner.sticky_key.as_deref(), Some("k"));
    assert!(winner.key_only && !winner.is_visible());
    assert_eq!(winner.content.get(), "{}");
    assert_eq!(winner.origin, original.origin);
    // Tombstones weigh their content `{}`: the room's byte count went down by the difference.
    let two = make(&clock, 0, "two", ALICE, Some("k"), -2_000, HOUR);
    let shrunk = two.content.get().len() - 2 + original.content.get().len() - 2;
    assert_eq!(map.room_usage(&room_a()).bytes + shrunk, bytes);
    assert_eq!(map.room_usage(&room_a()).candidates, 3);
    // A second redaction of the same event changes nothing.
    assert!(
        map.handle_redaction(&room_a(), &owned_event_id!("$three"), now)
            .is_empty()
    );
    assert_eq!(map.room_usage(&room_a()).bytes + shrunk, bytes);
    // The tombstone keeps its deadline, and then the best live candidate left wins, as after
    // any deletion marker: here the tombstone of "two", so still nothing is visible.
    assert_eq!(map.next_deadline(), Some(clock.at(50_000)));
    assert!(map.handle_timeout(clock.at(50_000)).is_empty());
    assert_eq!(
        map.winner(&key(ALICE, "k"))
            .map(|e| e.meta.event_id.to_string()),
        Some("$two".into())
    );
    assert!(
        map.handle_redaction(&room_a(), &owned_event_id!("$one"), clock.at(50_000))
            .is_empty()
    );
    assert_eq!(map.candidate_count(), 2);
    assert!(map.is_empty());
    // A redaction in another room does not touch this one.
    let _ = map.handle_event(make(&clock, 0, "four", ALICE, Some("j"), -1_000, HOUR), now);
    assert!(
        map.handle_redaction(&room("!b:example.org"), &owned_event_id!("$four"), now)
            .is_empty()
    );
    assert_eq!(map.len(), 1);
}

/// The moderator case: join, leave, then the leave is cleaned up by a redaction. The old join
/// must not come back (MSC4354's addendum, MSC4143: a redacted membership reads as left).
#[test]
fn redacting_a_leave_does_not_bring_the_join_back() {
    let clock = Clock::new();
    let now = clock.at(0);
    for redact_first in [false, true] {
        let mut map = StickyMap::default();
        let mut view = BTreeMap::new();
        let join = make(&clock, 0, "join", ALICE, Some("m"), -60_000, HOUR);
        let leave = tombstone(&clock, 0, "leave", ALICE, "m", -1_000, HOUR);
        replay(&mut view, &map.handle_event(join.clone(), now));
        if redact_first {
            // The redaction arrives before the leave: the leave still goes in, as a tombstone.
            replay(
                &mut view,
                &map.handle_redaction(&room_a(), &owned_event_id!("$leave"), now),
            );
            let changes = map.handle_event(leave, now);
            assert!(
                matches!(&changes[..], [Change::Removed { reason: RemovalReason::Deleted, old }] if old.meta.event_id == "$join")
            );
            replay(&mut view, &changes);
        } else {
            replay(&mut view, &map.handle_event(leave, now));
            assert!(
                map.handle_redaction(&room_a(), &owned_event_id!("$leave"), now)
                    .is_empty()
            );
        }
        assert!(map.get(&key(ALICE, "m")).is_none(), "no ghost");
        let winner = map.winner(&key(ALICE, "m")).expect("the tombstone");
        assert_eq!(winner.meta.event_id, "$leave");
        assert_eq!(winner.content.get(), "{}");
        // The join again (a replay) changes nothing.
        assert!(map.handle_event(join, clock.at(1_000)).is_empty());
        // A later join wins over the tombstone as usual.
        let rejoin = make(&clock, 2_000, "rejoin", ALICE, Some("m"), 1_000, HOUR);
        let changes = map.handle_event(rejoin, clock.at(2_000));
        assert!(matches!(&changes[..], [Change::Added(new)] if new.meta.event_id == "$rejoin"));
        replay(&mut view, &changes);
        assert_eq!(ids_of(&view), view_of(&map));
    }
}

#[test]
fn candidates_expire_on_their_own_deadlines() {
    let clock = Clock::new();
    let mut map = StickyMap::default();
    // The lower-ranked candidate has the later local deadline.
    let low = make(&clock, 0, "low", ALICE, Some("k"), -5_000, 50_000);
    let high = make(&clock, 0, "high", ALICE, Some("k"), -1_000, 20_000);
    let _ = map.handle_events([low, high], clock.at(0));
    assert_eq!(map.next_deadline(), Some(clock.at(20_000)));
    assert!(map.handle_timeout(clock.at(19_999)).is_empty());

    let changes = map.handle_timeout(clock.at(20_000));
    assert!(matches!(&changes[..], [Change::Replaced { old, new }]
        if old.meta.event_id == "$high" && new.meta.event_id == "$low"));
    assert_eq!(map.next_deadline(), Some(clock.at(50_000)));
    // Calling again, early or late, is harmless.
    assert!(map.handle_timeout(clock.at(20_000)).is_empty());
    let changes = map.handle_timeout(clock.at(70_000));
    assert!(
        matches!(&changes[..], [Change::Removed { reason: RemovalReason::Expired, old }] if old.meta.event_id == "$low")
    );
    assert_eq!(map.next_deadline(), None);

    // A superseded candidate expiring first changes nothing visible.
    let mut map = StickyMap::default();
    let _ = map.handle_events(
        [
            make(&clock, 0, "old", ALICE, Some("k"), -5_000, 10_000),
            make(&clock, 0, "new", ALICE, Some("k"), -1_000, 30_000),
        ],
        clock.at(0),
    );
    assert!(map.handle_timeout(clock.at(10_000)).is_empty());
    assert_eq!(map.candidate_count(), 1);
}

#[test]
fn an_expired_event_is_not_inserted_and_every_call_expires_first() {
    let clock = Clock::new();
    let mut map = StickyMap::default();
    let event = make(&clock, 0, "e", ALICE, Some("k"), -1_000, 10_000);
    assert!(map.handle_event(event.clone(), clock.at(10_000)).is_empty());
    assert!(map.is_empty());

    let _ = map.handle_event(event, clock.at(0));
    let other = make(&clock, 20_000, "f", BOB, Some("k"), 19_000, 10_000);
    let changes = map.handle_event(other, clock.at(20_000));
    assert_eq!(changes.len(), 2);
    assert!(
        matches!(&changes[0], Change::Removed { reason: RemovalReason::Expired, old } if old.meta.event_id == "$e")
    );
    assert!(matches!(&changes[1], Change::Added(new) if new.meta.event_id == "$f"));
}

#[test]
fn key_only_content_is_a_deletion_marker() {
    let clock = Clock::new();
    let now = clock.at(0);
    let mut map = StickyMap::default();
    let _ = map.handle_event(
        make(&clock, 0, "join", ALICE, Some("k"), -3_000, 40_000),
        now,
    );
    let changes = map.handle_event(
        tombstone(&clock, 0, "leave", ALICE, "k", -2_000, 20_000),
        now,
    );
    assert!(
        matches!(&changes[..], [Change::Removed { reason: RemovalReason::Deleted, old }] if old.meta.event_id == "$join")
    );
    assert!(map.get(&key(ALICE, "k")).is_none(), "readers see nothing");
    assert_eq!(
        map.winner(&key(ALICE, "k"))
            .map(|e| e.meta.event_id.to_string()),
        Some("$leave".into())
    );
    assert!(map.is_empty());

    // An older event arriving late cannot bring the key back.
    assert!(
        map.handle_event(
            make(&clock, 0, "late", ALICE, Some("k"), -2_500, 40_000),
            now
        )
        .is_empty()
    );
    assert!(map.get(&key(ALICE, "k")).is_none());
    // A newer event wins over the marker.
    let changes = map.handle_event(
        make(&clock, 0, "rejoin", ALICE, Some("k"), -1_000, 10_000),
        now,
    );
    assert!(matches!(&changes[..], [Change::Added(new)] if new.meta.event_id == "$rejoin"));
    // When it expires, the marker wins again: readers see nothing.
    let changes = map.handle_timeout(clock.at(10_000));
    assert!(matches!(
        &changes[..],
        [Change::Removed {
            reason: RemovalReason::Expired,
            ..
        }]
    ));
    // When the marker expires, the best live candidate left comes back.
    let changes = map.handle_timeout(clock.at(20_000));
    assert!(matches!(&changes[..], [Change::Added(back)] if back.meta.event_id == "$late"));
    // A marker alone is not visible, arriving or leaving.
    let mut map = StickyMap::default();
    assert!(
        map.handle_event(tombstone(&clock, 0, "t", ALICE, "z", -1_000, 5_000), now)
            .is_empty()
    );
    assert_eq!(map.candidate_count(), 1);
    assert!(map.handle_timeout(clock.at(5_000)).is_empty());
    assert_eq!(map.candidate_count(), 0);
}

#[test]
fn unkeyed_events_live_on_their_own() {
    let clock = Clock::new();
    let mut map = StickyMap::default();
    let changes = map.handle_events(
        [
            make(&clock, 0, "u1", ALICE, None, -2_000, 10_000),
            make(&clock, 0, "u2", ALICE, None, -1_000, 20_000),
            make(&clock, 0, "k1", ALICE, Some("k"), -1_000, 20_000),
        ],
        clock.at(0),
    );
    assert_eq!(changes.len(), 3);
    assert_eq!(map.len(), 3);
    assert_eq!(map.room_entries(&room_a()).count(), 3);
    assert_eq!(map.room_entries(&room("!none:example.org")).count(), 0);
    let changes = map.handle_timeout(clock.at(10_000));
    assert!(
        matches!(&changes[..], [Change::Removed { reason: RemovalReason::Expired, old }] if old.meta.event_id == "$u1")
    );
    let changes = map.handle_redaction(&room_a(), &owned_event_id!("$u2"), clock.at(10_000));
    assert!(matches!(
        &changes[..],
        [Change::Removed {
            reason: RemovalReason::Redacted,
            ..
        }]
    ));
    assert_eq!(map.len(), 1);
}

#[test]
fn duplicates_are_no_ops() {
    let clock = Clock::new();
    let now = clock.at(0);
    let mut map = StickyMap::default();
    let event = make(&clock, 0, "dup", ALICE, Some("k"), -1_000, HOUR);
    assert_eq!(map.handle_event(event.clone(), now).len(), 1);
    assert!(map.handle_event(event, now).is_empty());
    // Same event ID, other content, later timestamp: still the same event.
    let forged = make(&clock, 0, "dup", BOB, Some("other"), 5_000, HOUR);
    assert!(map.handle_event(forged, now).is_empty());
    assert_eq!(map.candidate_count(), 1);
    assert!(map.contains_event(&owned_event_id!("$dup")));
    // Same event ID in another room: ignored too (event IDs are global).
    let mut elsewhere = event_json("dup", ALICE, Some("k"), -1_000);
    set(
        &mut elsewhere,
        "/unsigned",
        json!({ "msc4354_sticky_duration_ttl_ms": HOUR }),
    );
    let Ok(matrix_sticky_events::Parsed::Sticky(elsewhere)) = matrix_sticky_events::parse_event(
        &elsewhere.to_string(),
        &room("!b:example.org"),
        clock.receipt(0),
    ) else {
        panic!("expected a sticky event");
    };
    assert!(map.handle_event(elsewhere, now).is_empty());
}

#[test]
fn a_redaction_seen_first_makes_the_event_a_tombstone() {
    let clock = Clock::new();
    let mut map = StickyMap::default();
    assert!(
        map.handle_redaction(&room_a(), &owned_event_id!("$early"), clock.at(0))
            .is_empty()
    );
    assert!(map.is_redacted(&room_a(), &owned_event_id!("$early")));
    assert_eq!(map.remembered_redaction_count(), 1);
    // A keyed event goes in as its tombstone: nothing visible, but it holds its key.
    let event = make(&clock, 1_000, "early", ALICE, Some("k"), 0, HOUR);
    assert!(map.handle_event(event, clock.at(1_000)).is_empty());
    assert_eq!(map.candidate_count(), 1);
    let winner = map.winner(&key(ALICE, "k")).expect("a tombstone");
    assert!(winner.key_only);
    assert_eq!(winner.content.get(), "{}");
    // An older event of that key arriving later stays hidden behind it.
    let older = make(&clock, 1_000, "older", ALICE, Some("k"), -5_000, HOUR);
    assert!(map.handle_event(older, clock.at(1_000)).is_empty());
    // An unkeyed event redacted earlier is dropped.
    let _ = map.handle_redaction(&room_a(), &owned_event_id!("$free"), clock.at(1_000));
    let free = make(&clock, 1_000, "free", ALICE, None, 0, HOUR);
    assert!(map.handle_event(free, clock.at(1_000)).is_empty());
    assert!(!map.contains_event(&owned_event_id!("$free")));
    // Replays of a redacted event stay redacted too.
    let mut map = StickyMap::default();
    let event = make(&clock, 0, "x", ALICE, Some("k"), -1_000, HOUR);
    let _ = map.handle_event(event.clone(), clock.at(0));
    let _ = map.handle_redaction(&room_a(), &owned_event_id!("$x"), clock.at(0));
    assert!(map.handle_event(event, clock.at(1)).is_empty());
    assert!(map.is_empty());

    // Remembered for one hour plus a margin (5 min), then forgotten.
    let mut map = StickyMap::default();
    let _ = map.handle_redaction(&room_a(), &owned_event_id!("$late"), clock.at(0));
    let _ = map.handle_timeout(clock.at(HOUR + 300_000 - 1));
    assert!(map.is_redacted(&room_a(), &owned_event_id!("$late")));
    let _ = map.handle_timeout(clock.at(HOUR + 300_000));
    assert!(!map.is_redacted(&room_a(), &owned_event_id!("$late")));
    assert_eq!(map.remembered_redaction_count(), 0);
}

#[test]
fn remembered_redactions_are_bounded() {
    let clock = Clock::new();
    let limits = Limits {
        remembered_redactions: 3,
        ..Limits::default()
    };
    let mut map = StickyMap::new(limits);
    for n in 0..5 {
        let _ = map.handle_redaction(&room_a(), &eid(&format!("$r{n}")), clock.at(n));
    }
    assert_eq!(map.remembered_redaction_count(), 3);
    assert!(
        !map.is_redacted(&room_a(), &owned_event_id!("$r1")),
        "the oldest are forgotten first"
    );
    assert!(map.is_redacted(&room_a(), &owned_event_id!("$r4")));
}

#[test]
fn forgetting_a_room_drops_its_entries() {
    let clock = Clock::new();
    let now = clock.at(0);
    let mut map = StickyMap::default();
    let in_b = |id: &str, ttl| {
        let mut event = event_json(id, BOB, Some("k"), -1_000);
        set(
            &mut event,
            "/unsigned",
            json!({ "msc4354_sticky_duration_ttl_ms": ttl }),
        );
        match matrix_sticky_events::parse_event(
            &event.to_string(),
            &room("!b:example.org"),
            clock.receipt(0),
        ) {
            Ok(matrix_sticky_events::Parsed::Sticky(event)) => event,
            other => panic!("unexpected {other:?}"),
        }
    };
    let _ = map.handle_events(
        [
            make(&clock, 0, "a1", ALICE, Some("k"), -2_000, 5_000),
            make(&clock, 0, "a2", ALICE, Some("k"), -1_000, HOUR),
            make(&clock, 0, "a3", BOB, None, -1_000, HOUR),
            tombstone(&clock, 0, "a4", BOB, "gone", -1_000, HOUR),
            in_b("b1", 50_000),
        ],
        now,
    );
    assert_eq!(map.len(), 3);
    let mut changes = map.forget_room(&room_a());
    changes.sort_by_key(id);
    assert_eq!(changes.iter().map(id).collect::<Vec<_>>(), ["$a2", "$a3"]);
    assert!(changes.iter().all(|c| matches!(
        c,
        Change::Removed {
            reason: RemovalReason::RoomForgotten,
            ..
        }
    )));
    assert_eq!(map.len(), 1);
    assert_eq!(map.candidate_count(), 1);
    assert_eq!(map.rooms().count(), 1);
    assert_eq!(map.next_deadline(), Some(clock.at(50_000)));
    assert!(map.forget_room(&room_a()).is_empty());
}

#[test]
fn next_deadline_follows_removals() {
    let clock = Clock::new();
    let now = clock.at(0);
    let mut map = StickyMap::new(Limits {
        per_sender: 10_000,
        ..Limits::default()
    });
    let _ = map.handle_events(
        [
            make(&clock, 0, "a", ALICE, Some("a"), -1_000, 1_000),
            make(&clock, 0, "u", ALICE, None, -1_000, 1_500),
            make(&clock, 0, "b", ALICE, Some("b"), -1_000, 2_000),
        ],
        now,
    );
    assert_eq!(map.next_deadline(), Some(clock.at(1_000)));
    // A redacted keyed candidate stays, as a tombstone, until its own deadline.
    let _ = map.handle_redaction(&room_a(), &owned_event_id!("$a"), now);
    assert_eq!(map.next_deadline(), Some(clock.at(1_000)));
    let _ = map.handle_timeout(clock.at(1_000));
    assert_eq!(map.next_deadline(), Some(clock.at(1_500)));
    // A redacted unkeyed entry is gone at once.
    let now = clock.at(1_000);
    let _ = map.handle_redaction(&room_a(), &owned_event_id!("$u"), now);
    assert_eq!(map.next_deadline(), Some(clock.at(2_000)));

    // Heavy churn (insert, then redact) keeps the queue exact: unkeyed entries go at once,
    // keyed ones become tombstones with their deadlines.
    for n in 0..5_000u64 {
        let id = format!("churn{n}");
        let _ = map.handle_event(make(&clock, 0, &id, BOB, None, -1_000, 1_500 + n), now);
        let _ = map.handle_redaction(&room_a(), &eid(&format!("${id}")), now);
    }
    assert_eq!(map.next_deadline(), Some(clock.at(2_000)));
    assert_eq!(map.candidate_count(), 1);
    for n in 0..5_000u64 {
        let id = format!("keyed{n}");
        let _ = map.handle_event(make(&clock, 0, &id, BOB, Some(&id), -1_000, 3_000 + n), now);
        let _ = map.handle_redaction(&room_a(), &eid(&format!("${id}")), now);
    }
    assert_eq!(map.candidate_count(), 5_001);
    assert!(map.len() == 1, "only $b is visible");
    assert_eq!(map.next_deadline(), Some(clock.at(2_000)));
    let _ = map.handle_timeout(clock.at(2_000));
    assert_eq!(map.next_deadline(), Some(clock.at(3_000)));
    let _ = map.handle_timeout(clock.at(7_999));
    assert_eq!(map.next_deadline(), None);
    assert_eq!(map.candidate_count(), 0);
}

#[test]
fn the_per_sender_cap_evicts_the_lowest_ranked_first() {
    let clock = Clock::new();
    let now = clock.at(0);
    let limits = Limits {
        per_sender: 3,
        ..Limits::default()
    };
    let mut map = StickyMap::new(limits);
    let mut view = BTreeMap::new();
    // Two candidates of "k" (one superseded) and one of "j".
    for event in [
        make(&clock, 0, "k1", ALICE, Some("k"), -5_000, HOUR),
        make(&clock, 0, "k2", ALICE, Some("k"), -4_000, HOUR),
        make(&clock, 0, "j1", ALICE, Some("j"), -3_000, HOUR),
    ] {
        replay(&mut view, &map.handle_event(event, now));
    }
    // The superseded k1 is the lowest: it goes, invisibly.
    let changes = map.handle_event(make(&clock, 0, "i1", ALICE, Some("i"), -2_000, HOUR), now);
    replay(&mut view, &changes);
    assert_eq!(changes.iter().map(id).collect::<Vec<_>>(), ["$i1"]);
    assert!(!map.contains_event(&owned_event_id!("$k1")));
    // Next, the lowest is k2, the visible winner of "k": reported as evicted.
    let changes = map.handle_event(make(&clock, 0, "h1", ALICE, Some("h"), -1_000, HOUR), now);
    replay(&mut view, &changes);
    assert!(
        matches!(&changes[..], [Change::Added(_), Change::Removed { reason: RemovalReason::Evicted, old }]
        if old.meta.event_id == "$k2")
    );
    // An incoming event ranked below everything is not inserted at all.
    assert!(
        map.handle_event(make(&clock, 0, "old", ALICE, Some("z"), -60_000, HOUR), now)
            .is_empty()
    );
    // Other senders are not affected.
    replay(
        &mut view,
        &map.handle_event(make(&clock, 0, "b1", BOB, Some("k"), -60_000, HOUR), now),
    );
    assert_eq!(map.candidate_count(), 4);
    assert_eq!(ids_of(&view), view_of(&map));
}

#[test]
fn the_per_room_caps_cut_the_heaviest_sender() {
    const CAROL: &str = "@carol:example.org";
    let clock = Clock::new();
    let now = clock.at(0);
    let mut map = StickyMap::new(Limits {
        per_room: 3,
        ..Limits::default()
    });
    let _ = map.handle_event(make(&clock, 0, "a", ALICE, Some("k"), -9_000, HOUR), now);
    let _ = map.handle_event(make(&clock, 0, "b1", BOB, Some("k1"), -3_000, HOUR), now);
    let _ = map.handle_event(make(&clock, 0, "b2", BOB, Some("k2"), -2_000, HOUR), now);
    // Over the count cap: Bob holds the most candidates, his lowest goes, not Alice's older one.
    let changes = map.handle_event(make(&clock, 0, "c", CAROL, Some("k"), -1_000, HOUR), now);
    assert!(
        matches!(&changes[..], [Change::Added(_), Change::Removed { reason: RemovalReason::Evicted, old }]
        if old.meta.event_id == "$b1")
    );
    // Now one each: the tie goes by weight, then by the greater user ID. Carol and Alice weigh
    // the same (their IDs have the same length) and Carol's ID is greater: a new event of
    // Carol's ranking below her other one would be the first to go, so it is not inserted.
    assert!(
        map.handle_event(make(&clock, 0, "c0", CAROL, Some("j"), -5_000, HOUR), now)
            .is_empty()
    );
    assert!(!map.contains_event(&owned_event_id!("$c0")));
    // A newer one of hers gets in, and her older one goes.
    let changes = map.handle_event(make(&clock, 0, "c2", CAROL, Some("j"), 0, HOUR), now);
    assert!(
        matches!(&changes[..], [Change::Added(_), Change::Removed { reason: RemovalReason::Evicted, old }]
        if old.meta.event_id == "$c")
    );
    assert!(
        map.get(&key(ALICE, "k")).is_some(),
        "the oldest entry stays"
    );
    // Another room has its own budget.
    let mut other = event_json("d", ALICE, Some("k"), -5_000);
    set(
        &mut other,
        "/unsigned",
        json!({ "msc4354_sticky_duration_ttl_ms": HOUR }),
    );
    let Ok(matrix_sticky_events::Parsed::Sticky(other)) = matrix_sticky_events::parse_event(
        &other.to_string(),
        &room("!b:example.org"),
        clock.receipt(0),
    ) else {
        panic!("expected a sticky event");
    };
    assert_eq!(map.handle_event(other, now).len(), 1);
    assert_eq!(map.len(), 4);

    // The byte budget, one sender: room for about two small events; the lowest goes.
    let small = make(&clock, 0, "s1", ALICE, Some("s1"), -3_000, HOUR);
    let budget = 2 * Limits::weight(&small) + 10;
    let mut map = StickyMap::new(Limits {
        per_room_bytes: budget,
        ..Limits::default()
    });
    let _ = map.handle_event(small, now);
    let _ = map.handle_event(make(&clock, 0, "s2", ALICE, Some("s2"), -2_000, HOUR), now);
    let changes = map.handle_event(make(&clock, 0, "s3", ALICE, Some("s3"), -1_000, HOUR), now);
    assert!(
        matches!(&changes[..], [Change::Added(_), Change::Removed { reason: RemovalReason::Evicted, old }]
        if old.meta.event_id == "$s1")
    );
    // An event larger than the whole budget never gets in.
    let mut big = event_json("big", ALICE, Some("big"), 0);
    set(&mut big, "/content/pad", json!("x".repeat(budget)));
    assert!(
        map.handle_event(sticky(&big, clock.receipt(0)), now)
            .is_empty()
    );
    assert_eq!(map.candidate_count(), 2);
    // An event of a second sender, heavier than Alice's two: with it Bob would be the
    // heaviest sender and it his lowest-ranked candidate, so it is not inserted ...
    let alice = map.sender_usage(&room_a(), &owned_user_id!("@alice:example.org"));
    assert_eq!(alice.candidates, 2);
    let mut heavy = event_json("heavy", BOB, Some("h"), 5_000);
    set(&mut heavy, "/content/pad", json!(""));
    let unpadded = Limits::weight(&sticky(&heavy, clock.receipt(0)));
    set(
        &mut heavy,
        "/content/pad",
        json!("x".repeat(alice.bytes + 5 - unpadded)),
    );
    let heavy = sticky(&heavy, clock.receipt(0));
    assert_eq!(Limits::weight(&heavy), alice.bytes + 5);
    assert!(Limits::weight(&heavy) <= budget);
    assert!(map.handle_event(heavy, now).is_empty());
    // ... while a small one of his is, and Alice (the heaviest) pays.
    let changes = map.handle_event(make(&clock, 0, "b", BOB, Some("b"), -9_000, HOUR), now);
    assert!(
        matches!(&changes[..], [Change::Added(_), Change::Removed { reason: RemovalReason::Evicted, old }]
        if old.meta.event_id == "$s2")
    );
}

#[test]
fn changes_name_their_event() {
    let clock = Clock::new();
    let event = Arc::new(make(&clock, 0, "e", ALICE, Some("k"), -1_000, HOUR));
    let added = Change::Added(Arc::clone(&event));
    let removed = Change::Removed {
        old: Arc::clone(&event),
        reason: RemovalReason::Expired,
    };
    assert!(Arc::ptr_eq(added.event(), &event));
    assert!(Arc::ptr_eq(removed.event(), &event));
}
