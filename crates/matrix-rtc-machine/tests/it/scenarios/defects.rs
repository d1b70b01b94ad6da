//! Each defect found in the old async driver, as a scenario of the machine.
use std::time::Duration;

use matrix_rtc_machine::{JoinFailure, Update};
use matrix_rtc_membership::{LeftReason, OwnMembershipConfig, OwnStatus, SessionChange};

use super::support::{
    HOUR_MS, Harness, T0_MS, alice, join, leave, member, power_levels, redaction, room_call,
};

fn short_lived() -> OwnMembershipConfig {
    OwnMembershipConfig {
        sticky_duration_ms: 20_000,
        delay_ms: 6_000,
        restart_interval_ms: 2_000,
        ..OwnMembershipConfig::default()
    }
}

/// A second `join()` on a call we are in is refused and changes nothing: the next refresh
/// publishes the content our dead-man switch covers (the old driver stored the new content
/// before the refusal, so the refresh went out under another member id with no delayed leave).
#[test]
fn a_refused_second_join_leaves_our_membership_as_it_was() {
    let mut h = Harness::new();
    h.join_with("first", "https://lk-a.example.org", short_lived())
        .expect("first join");
    assert_eq!(
        h.machine.own_status(&room_call()),
        OwnStatus::Connected {
            dead_man_switch: true
        }
    );
    let refused = h.join_with("second", "https://lk-b.example.org", short_lived());
    assert_eq!(refused, Err(JoinFailure::AlreadyJoined));
    // Past the refresh (50 % of the 20 s lifetime): every join sent is still the first one.
    h.advance(Duration::from_secs(25));
    let joins = h.sent_joins();
    assert!(
        joins.len() >= 2,
        "the join and at least one refresh: {joins:?}"
    );
    assert!(
        joins
            .iter()
            .all(|(id, url)| id == "first" && url == "https://lk-a.example.org"),
        "{joins:?}"
    );
    assert_eq!(h.machine.own_member_id(&room_call()), Some("first"));
    // The record to persist names the first member, with its delayed leave.
    let record = h
        .updates
        .iter()
        .rev()
        .find_map(|update| match update {
            Update::OwnCalls(record) => Some(record.clone()),
            _ => None,
        })
        .expect("a record");
    let records: Vec<_> = record.records().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].member_id, "first");
    assert!(records[0].delay_id.is_some());
}

/// A refresh held back while the side connection catches up, then the member leaving the
/// room: the participant stays gone once the hold is released (the old driver published the
/// room leave at once, bypassing the hold, and then the held refresh put them back).
#[test]
fn a_held_refresh_followed_by_a_room_leave_does_not_bring_the_participant_back() {
    let mut h = Harness::new();
    h.timeline(&join(
        alice(),
        "DEVA",
        "a1",
        "$join",
        "m.call#ROOM",
        T0_MS,
        HOUR_MS,
    ));
    assert_eq!(h.members(), ["a1"]);
    // A page that is not caught up carries Alice's refresh: held back.
    let refresh = join(
        alice(),
        "DEVA",
        "a1",
        "$refresh",
        "m.call#ROOM",
        T0_MS + 1_000,
        HOUR_MS,
    );
    h.page(&[refresh], false);
    assert_eq!(h.members(), ["a1"]);
    // Alice leaves the room (a state event of the app's sync) while the hold lasts.
    h.timeline(&member(alice(), "leave"));
    // The last page: caught up, the hold ends.
    h.page(&[], true);
    assert!(h.members().is_empty(), "{:?}", h.members());
    assert!(!h.machine.is_active(&room_call()));
    let lefts: Vec<_> = h
        .changes
        .iter()
        .filter(|change| matches!(change, SessionChange::Left { .. }))
        .collect();
    assert_eq!(lefts.len(), 1, "{:?}", h.changes);
    assert!(matches!(
        lefts[0],
        SessionChange::Left {
            reason: LeftReason::SenderLeftRoom,
            ..
        }
    ));
}

/// Join, leave, then a redaction of the leave: the old join must not come back (the old map
/// fell back to the next candidate, so a moderator's clean-up made ghosts for up to an hour).
/// The newest MSC4143 reads a redacted membership as left, and MSC4354's addendum makes a
/// redaction remove the key's entry.
#[test]
fn a_redacted_leave_does_not_bring_the_old_join_back() {
    let mut h = Harness::new();
    h.timeline(&power_levels(&[("@mod:example.org", 50)]));
    h.timeline(&join(
        alice(),
        "DEVA",
        "a1",
        "$join",
        "m.call#ROOM",
        T0_MS,
        HOUR_MS,
    ));
    h.timeline(&leave(alice(), "a1", "$leave", T0_MS + 1_000, HOUR_MS));
    assert!(h.members().is_empty());
    h.timeline(&redaction(
        "@mod:example.org",
        "$leave",
        "$redaction",
        T0_MS + 2_000,
    ));
    assert!(h.members().is_empty(), "{:?}", h.members());
    // Seen in the other order (redaction first, as a late replay might), the same.
    let mut h = Harness::new();
    h.timeline(&power_levels(&[("@mod:example.org", 50)]));
    h.timeline(&redaction(
        "@mod:example.org",
        "$leave",
        "$redaction",
        T0_MS + 2_000,
    ));
    h.timeline(&leave(alice(), "a1", "$leave", T0_MS + 1_000, HOUR_MS));
    h.timeline(&join(
        alice(),
        "DEVA",
        "a1",
        "$join",
        "m.call#ROOM",
        T0_MS,
        HOUR_MS,
    ));
    assert!(h.members().is_empty(), "{:?}", h.members());
}

/// A redacted join reads as left (how moderators kick), and a later join of the member counts.
#[test]
fn a_redacted_join_is_a_leave() {
    let mut h = Harness::new();
    h.timeline(&power_levels(&[("@mod:example.org", 50)]));
    h.timeline(&join(
        alice(),
        "DEVA",
        "a1",
        "$join",
        "m.call#ROOM",
        T0_MS,
        HOUR_MS,
    ));
    h.timeline(&redaction(
        "@mod:example.org",
        "$join",
        "$redaction",
        T0_MS + 1_000,
    ));
    assert!(h.members().is_empty());
    assert!(h.changes.iter().any(|change| matches!(
        change,
        SessionChange::Left {
            reason: LeftReason::Redacted,
            ..
        }
    )));
    h.timeline(&join(
        alice(),
        "DEVA",
        "a2",
        "$rejoin",
        "m.call#ROOM",
        T0_MS + 2_000,
        HOUR_MS,
    ));
    assert_eq!(h.members(), ["a2"]);
}
