//! Same inputs in the same order give the same outputs: two machines on one clock are fed
//! one script (others' joins, leaves and a redaction through both paths, our join, its
//! heartbeats and refreshes, an update, our leave, expiry) and must ask for the same requests
//! and publish the same updates, in the same order.
use std::time::Duration;

use matrix_rtc_machine::ContentUpdate;
use matrix_rtc_membership::{OwnMembershipConfig, Transport};

use super::support::{Harness, T0_MS, alice, join, leave, power_levels, redaction, room_call};

const BOB: &str = "@bob:example.org";

fn script(h: &mut Harness) {
    h.timeline(&power_levels(&[("@mod:example.org", 50)]));
    h.page(
        &[
            join(
                alice(),
                "ALICE",
                "a1",
                "$a1",
                "m.call#ROOM",
                T0_MS,
                3_000_000,
            ),
            join(BOB, "BOB", "b1", "$b1", "m.call#ROOM", T0_MS + 5, 3_000_000),
        ],
        false,
    );
    h.page(&[], true);
    let timings = OwnMembershipConfig {
        delay_ms: 3_000,
        restart_interval_ms: 1_000,
        sticky_duration_ms: 20_000,
        ..OwnMembershipConfig::default()
    };
    h.join_with("me1", "https://lk.example.org", timings)
        .expect("we join");
    h.advance(Duration::from_secs(12));
    h.machine
        .update(
            &room_call(),
            ContentUpdate::default().with_transport(Transport::livekit("https://lk2.example.org")),
            h.now,
        )
        .expect("update");
    h.settle();
    h.timeline(&leave(BOB, "b1", "$b2", T0_MS + 12_000, 3_600_000));
    h.timeline(&redaction("@mod:example.org", "$a1", "$r1", T0_MS + 13_000));
    h.advance(Duration::from_secs(15));
    h.machine.leave(&room_call(), h.now);
    h.settle();
    h.advance(Duration::from_secs(3_700));
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let mut first = Harness::new();
    let mut second = Harness::new();
    // One clock for both: their instants are the same.
    second.start = first.start;
    second.now = first.now;
    script(&mut first);
    script(&mut second);

    assert!(
        first.performed.len() > 10 && first.updates.len() > 10,
        "the script exercises the machine: {} requests, {} updates",
        first.performed.len(),
        first.updates.len()
    );
    assert_eq!(
        format!("{:?}", first.performed),
        format!("{:?}", second.performed)
    );
    assert_eq!(
        format!("{:?}", first.updates),
        format!("{:?}", second.updates)
    );
}
