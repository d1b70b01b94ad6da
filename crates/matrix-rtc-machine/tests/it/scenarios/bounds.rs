//! Bounds a hostile room member cannot turn against others.
use std::time::Duration;

use matrix_rtc_machine::{Cap, Diagnostic, Outcome, ParkedLimits};
use matrix_sticky_events::Limits;

use super::support::{Harness, T0_MS, alice, envelope, join, room};

/// Invented slot ids: each creates a call, but they count against the sender's cap of the
/// sticky map, and a call with no participants is dropped (the old driver kept every call,
/// and a 256-slot broadcast channel with it, for ever).
#[test]
fn invented_slots_are_bounded_by_the_senders_cap_and_freed_when_they_end() {
    let limits = Limits {
        per_sender: 64,
        ..Limits::default()
    };
    let mut h = Harness::with(|config| config.sticky_limits = limits);
    h.timeline(&join(
        alice(),
        "DEVA",
        "a1",
        "$real",
        "m.call#ROOM",
        T0_MS,
        3_600_000,
    ));
    let mallory = "@mallory:example.org";
    for i in 0..2_000u64 {
        let event = join(
            mallory,
            "DEVM",
            &format!("m{i}"),
            &format!("$m{i}"),
            &format!("m.call#slot{i}"),
            T0_MS + i,
            60_000,
        );
        h.timeline(&event);
        let stats = h.machine.stats();
        assert!(stats.active_calls <= 64 + 1, "{stats:?}");
        assert!(stats.sticky_candidates <= 64 + 1, "{stats:?}");
    }
    assert_eq!(h.members(), ["a1"], "the real participant stays");
    assert!(h.diagnostics.iter().any(|d| matches!(
        d,
        Diagnostic::Capped { cap: Cap::StickyMap, sender, .. } if sender == mallory
    )));
    // Once the invented calls expire, nothing of them is left.
    h.advance(Duration::from_secs(61));
    let stats = h.machine.stats();
    assert_eq!(stats.active_calls, 1, "{stats:?}");
    assert_eq!(h.members(), ["a1"]);
}

/// 10,100 undecryptable envelopes from one member do not push out another member's
/// envelope: the flooder only ever evicts its own (the old driver held 10,000 for everybody
/// and then dropped new ones, hiding every new caller).
#[test]
fn a_flood_of_undecryptable_envelopes_evicts_only_the_flooders_own() {
    let mut h = Harness::with(|config| config.parked_limits = ParkedLimits::default());
    let mallory = "@mallory:example.org";
    for i in 0..10_100u64 {
        h.timeline(&envelope(
            mallory,
            &format!("$x{i}"),
            "fake-session",
            T0_MS + i,
            3_600_000,
        ));
        assert!(h.machine.stats().parked <= ParkedLimits::DEFAULT.per_sender);
    }
    // Bob's real join arrives encrypted; its key comes a little later.
    h.timeline(&envelope(
        "@bob:example.org",
        "$bob",
        "bob-session",
        T0_MS,
        3_600_000,
    ));
    let bob_join = serde_json::json!({
        "type": "org.matrix.msc4143.rtc.member",
        "content": join("@bob:example.org", "DEVB", "b1", "$bob", "m.call#ROOM", T0_MS, 3_600_000)["content"],
    })
    .to_string();
    h.decrypt = Box::new(move |raw| {
        if raw.contains("bob-session") {
            Outcome::Decrypted {
                event: bob_join.clone(),
                sender_device: None,
            }
        } else {
            Outcome::MissingRoomKey
        }
    });
    h.machine
        .handle_room_keys([(room(), "bob-session".to_owned())], h.now);
    h.settle();
    assert_eq!(h.members(), ["b1"]);
    assert!(h.diagnostics.iter().any(|d| matches!(
        d,
        Diagnostic::Capped { cap: Cap::ParkedPerSender, sender, dropped, .. }
            if sender == mallory && *dropped >= 1_000
    )));
    // Nobody but Mallory lost anything.
    assert!(!h.diagnostics.iter().any(|d| matches!(
        d,
        Diagnostic::Capped { sender, .. } if sender != mallory
    )));
}

/// The per-room cap: the sender holding the most loses one, never a member with a few.
#[test]
fn over_the_room_cap_the_heaviest_sender_loses_an_envelope() {
    let limits = ParkedLimits::new(1_000, 100, 10_000);
    let mut h = Harness::with(|config| config.parked_limits = limits);
    h.timeline(&envelope(
        "@bob:example.org",
        "$bob",
        "s-bob",
        T0_MS,
        3_600_000,
    ));
    for i in 0..300u64 {
        let sender = format!("@m{}:example.org", i % 3);
        h.timeline(&envelope(
            &sender,
            &format!("$x{i}"),
            "fake",
            T0_MS + i,
            3_600_000,
        ));
        assert!(h.machine.stats().parked <= 100);
    }
    assert!(!h.diagnostics.iter().any(|d| matches!(
        d,
        Diagnostic::Capped { sender, .. } if sender == "@bob:example.org"
    )));
}
