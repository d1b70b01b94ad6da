//! Fuzz target over the parser and the map.
//!
//! The input is split at newlines. Each line is parsed both as a sliding-sync extension
//! response and as a single event; what parses is fed to one map, with the virtual clock moved
//! forward by the line's first byte (in seconds). After every step the target checks that the
//! changes replayed onto a view give the map's visible state, that no candidate outlives its
//! deadline, and at the end that a snapshot restores to the same visible state.
#![no_main]

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use libfuzzer_sys::fuzz_target;
use matrix_sticky_events::{
    Change, Limits, Parsed, Receipt, Redaction, StickyEvent, StickyMap, parse_event,
    parse_sticky_batch,
};
use ruma_common::OwnedRoomId;

const WALL: u64 = 1_795_660_000_000;

/// A visible entry's identity: its map key, or (unkeyed) its event ID.
type ViewKey = (Option<(String, String, String, String)>, String);
type View = BTreeMap<ViewKey, Arc<StickyEvent>>;

fn view_key(event: &StickyEvent) -> ViewKey {
    match &event.sticky_key {
        Some(key) => (
            Some((
                event.meta.room_id.to_string(),
                event.meta.sender.to_string(),
                event.event_type.clone(),
                key.clone(),
            )),
            String::new(),
        ),
        None => (None, event.meta.event_id.to_string()),
    }
}

fn apply(view: &mut View, changes: &[Change]) {
    for change in changes {
        match change {
            Change::Added(new) => assert!(view.insert(view_key(new), Arc::clone(new)).is_none()),
            Change::Replaced { old, new } => {
                let previous = view
                    .insert(view_key(new), Arc::clone(new))
                    .expect("replaced a visible entry");
                assert!(Arc::ptr_eq(&previous, old));
            }
            Change::Removed { old, .. } => {
                let previous = view
                    .remove(&view_key(old))
                    .expect("removed a visible entry");
                assert!(Arc::ptr_eq(&previous, old));
            }
        }
    }
}

fn check(map: &StickyMap, view: &View, now: Instant) {
    let mut visible: Vec<String> = map.iter().map(|e| e.meta.event_id.to_string()).collect();
    let mut replayed: Vec<String> = view.values().map(|e| e.meta.event_id.to_string()).collect();
    visible.sort();
    replayed.sort();
    assert_eq!(visible, replayed);
    assert_eq!(map.len(), view.len());
    assert!(map.candidates().all(|e| e.meta.expires_at > now));
}

fuzz_target!(|data: &[u8]| {
    let base = Instant::now();
    let mut elapsed = 0u64;
    // Small caps, so that eviction is exercised too.
    let mut map = StickyMap::new(Limits {
        per_sender: 8,
        per_room: 16,
        per_room_bytes: 16_384,
        remembered_redactions: 8,
    });
    let mut view = View::new();
    for line in data.split(|&b| b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        elapsed += u64::from(line.first().copied().unwrap_or(0) % 16) * 1_000;
        let now = base + Duration::from_millis(elapsed);
        let receipt = Receipt::new(now, WALL + elapsed);
        let room = OwnedRoomId::try_from("!fuzz:example.org").expect("room id");

        let mut parsed = Vec::new();
        if let Ok(batch) = parse_sticky_batch(text, receipt) {
            for room in batch.rooms {
                for event in room.events.into_iter().flatten() {
                    parsed.push((room.room_id.clone(), event));
                }
            }
        }
        if let Ok(event) = parse_event(text, &room, receipt) {
            parsed.push((room.clone(), event));
        }
        for (room_id, event) in parsed {
            let changes = match event {
                Parsed::Sticky(event) => map.handle_event(event, now),
                Parsed::Redaction(Redaction {
                    redacts: event_id, ..
                }) => map.handle_redaction(&room_id, &event_id, now),
                Parsed::Encrypted(envelope) => {
                    // Pretend it decrypted to an empty content of another type.
                    match envelope.into_decrypted(r#"{"type":"fuzz.decrypted","content":{}}"#, None)
                    {
                        Ok(event) => map.handle_event(event, now),
                        Err(_) => Vec::new(),
                    }
                }
            };
            apply(&mut view, &changes);
            check(&map, &view, now);
        }
        if line.first() == Some(&b'#') {
            // Forget the room now and then.
            let changes = map.forget_room(&room);
            apply(&mut view, &changes);
            check(&map, &view, now);
        }
    }
    // The map expires entries only when called: bring it to `now` before comparing it with a
    // restored copy (which drops what is past its deadline).
    let now = base + Duration::from_millis(elapsed);
    let changes = map.handle_timeout(now);
    apply(&mut view, &changes);
    check(&map, &view, now);
    let snapshot = map.snapshot(now, WALL + elapsed);
    let restored = StickyMap::from_snapshot(map.limits(), &snapshot, now, WALL + elapsed)
        .expect("own snapshot");
    let mut a: Vec<String> = map.iter().map(|e| e.meta.event_id.to_string()).collect();
    let mut b: Vec<String> = restored
        .iter()
        .map(|e| e.meta.event_id.to_string())
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Drain every deadline.
    while let Some(deadline) = map.next_deadline() {
        let changes = map.handle_timeout(deadline);
        apply(&mut view, &changes);
        check(&map, &view, deadline);
    }
    assert!(view.is_empty());
});
