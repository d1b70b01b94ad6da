//! Held-back changes while the side connection catches up are released by a caught-up page,
//! by the side connection failing, or at the hold limit: the app's view never freezes, and a
//! hold costs memory per member touched, not per change.
use std::time::Duration;

use matrix_rtc_membership::SessionChange;

use super::support::{HOUR_MS, Harness, T0_MS, alice, join, leave};

fn held_join(h: &mut Harness) {
    h.page(
        &[join(
            alice(),
            "DEVA",
            "a1",
            "$join",
            "m.call#ROOM",
            T0_MS,
            HOUR_MS,
        )],
        false,
    );
    assert!(h.members().is_empty(), "held while catching up");
}

#[test]
fn a_caught_up_page_releases_the_hold() {
    let mut h = Harness::new();
    held_join(&mut h);
    h.page(&[], true);
    assert_eq!(h.members(), ["a1"]);
}

/// The old driver released held changes only with a caught-up page: when the side
/// connection failed mid-catch-up, the app's view stopped changing.
#[test]
fn the_side_connection_failing_releases_the_hold() {
    let mut h = Harness::new();
    held_join(&mut h);
    h.machine.handle_side_connection_down(h.now);
    h.settle();
    assert_eq!(h.members(), ["a1"]);
}

#[test]
fn the_hold_limit_releases_the_hold_even_while_pages_keep_coming() {
    let mut h = Harness::with(|config| config.hold_limit = Duration::from_secs(3));
    held_join(&mut h);
    // Pages keep coming, never caught up; the first hold's limit still applies.
    for i in 0..10 {
        h.advance(Duration::from_millis(500));
        let event = join(
            alice(),
            &format!("DEV{i}"),
            &format!("m{i}"),
            &format!("$e{i}"),
            "m.call#ROOM",
            T0_MS,
            HOUR_MS,
        );
        h.page(&[event], false);
        if h.now - h.start >= Duration::from_secs(3) {
            break;
        }
    }
    assert!(!h.members().is_empty(), "released at the limit");
}

/// Many changes to the same members during a hold are reconciled into the net change: one
/// join per member that stayed, nothing for one who came and went.
#[test]
fn a_hold_publishes_the_net_change() {
    let mut h = Harness::new();
    let mut events = Vec::new();
    for i in 0..50u64 {
        events.push(join(
            alice(),
            "DEVA",
            "a1",
            &format!("$j{i}"),
            "m.call#ROOM",
            T0_MS + i,
            HOUR_MS,
        ));
    }
    events.push(join(
        "@bob:example.org",
        "DEVB",
        "b1",
        "$b",
        "m.call#ROOM",
        T0_MS,
        HOUR_MS,
    ));
    events.push(leave("@bob:example.org", "b1", "$bl", T0_MS + 10, HOUR_MS));
    h.page(&events, false);
    h.page(&[], true);
    assert_eq!(h.members(), ["a1"]);
    let joined: Vec<_> = h
        .changes
        .iter()
        .filter(|change| matches!(change, SessionChange::Joined(_)))
        .collect();
    assert_eq!(joined.len(), 1, "{:?}", h.changes);
    assert!(
        !h.changes
            .iter()
            .any(|change| matches!(change, SessionChange::Left { .. }))
    );
}
