//! Room rules: ignored senders, who may redact a membership, and how failed member queries are
//! asked again.
use std::time::Duration;

use matrix_rtc_machine::{Diagnostic, Outcome, RedactionRefusal, RequestKind};
use matrix_rtc_membership::{LeftReason, SessionChange};
use ruma_common::OwnedUserId;
use serde_json::json;

use super::support::{
    HOUR_MS, Harness, T0_MS, alice, join, millis, power_levels, redaction, room_call,
};

fn user(id: &str) -> OwnedUserId {
    OwnedUserId::try_from(id).expect("user id")
}

fn bob() -> &'static str {
    "@bob:example.org"
}

fn mallory() -> &'static str {
    "@mallory:example.org"
}

/// The reasons of the participants that left, in order.
fn left_reasons(h: &Harness) -> Vec<LeftReason> {
    h.changes
        .iter()
        .filter_map(|change| match change {
            SessionChange::Left { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// The refused redactions: (redactor, redacted event, reason).
fn refused(h: &Harness) -> Vec<(String, String, RedactionRefusal)> {
    h.diagnostics
        .iter()
        .filter_map(|diagnostic| match diagnostic {
            Diagnostic::RedactionRefused {
                redactor,
                redacts,
                reason,
                ..
            } => Some((redactor.to_string(), redacts.to_string(), *reason)),
            _ => None,
        })
        .collect()
}

fn alice_joins(h: &mut Harness) {
    h.timeline(&join(
        alice(),
        "DEVA",
        "a1",
        "$join",
        "m.call#ROOM",
        T0_MS,
        HOUR_MS,
    ));
}

#[test]
fn an_ignored_senders_memberships_are_hidden_and_come_back_when_unignored() {
    let mut h = Harness::new();
    alice_joins(&mut h);
    // Bob is ignored before his join arrives.
    h.machine.handle_ignored_users([user(bob())], h.now);
    h.settle();
    h.timeline(&join(
        bob(),
        "DEVB",
        "b1",
        "$bob",
        "m.call#ROOM",
        T0_MS,
        HOUR_MS,
    ));
    assert_eq!(h.members(), ["a1"]);

    // Alice is ignored too: she leaves the call as ignored.
    h.machine
        .handle_ignored_users([user(bob()), user(alice())], h.now);
    h.settle();
    assert!(h.members().is_empty(), "{:?}", h.members());
    assert_eq!(left_reasons(&h), [LeftReason::SenderIgnored]);
    assert!(!h.machine.is_active(&room_call()));

    // The same list again changes nothing.
    let updates = h.updates.len();
    h.machine
        .handle_ignored_users([user(alice()), user(bob())], h.now);
    h.settle();
    assert_eq!(h.updates.len(), updates);

    // Both unignored: both are back, oldest first.
    h.machine.handle_ignored_users([], h.now);
    h.settle();
    assert_eq!(h.members(), ["a1", "b1"]);
}

#[test]
fn ignoring_ourselves_hides_nothing() {
    let mut h = Harness::new();
    h.timeline(&join(
        "@me:example.org",
        "MYDEVICE",
        "m1",
        "$mine",
        "m.call#ROOM",
        T0_MS,
        HOUR_MS,
    ));
    assert_eq!(h.members(), ["m1"]);
    h.machine
        .handle_ignored_users([user("@me:example.org")], h.now);
    h.settle();
    assert_eq!(h.members(), ["m1"]);
}

#[test]
fn without_power_levels_only_the_senders_own_redaction_counts() {
    let mut h = Harness::new();
    alice_joins(&mut h);
    h.timeline(&redaction(mallory(), "$join", "$r1", T0_MS + 1_000));
    assert_eq!(
        h.members(),
        ["a1"],
        "another's redaction without power levels"
    );
    assert_eq!(
        refused(&h),
        [(
            mallory().to_owned(),
            "$join".to_owned(),
            RedactionRefusal::PowerLevelsUnknown
        )]
    );
    h.timeline(&redaction(alice(), "$join", "$r2", T0_MS + 2_000));
    assert!(h.members().is_empty(), "{:?}", h.members());
    assert_eq!(left_reasons(&h), [LeftReason::Redacted]);
}

#[test]
fn a_redaction_of_anothers_membership_needs_the_redact_level() {
    let mut h = Harness::new();
    h.timeline(&power_levels(&[("@mod:example.org", 50), (mallory(), 49)]));
    alice_joins(&mut h);
    h.timeline(&redaction(mallory(), "$join", "$r1", T0_MS + 1_000));
    assert_eq!(h.members(), ["a1"]);
    assert_eq!(
        refused(&h),
        [(
            mallory().to_owned(),
            "$join".to_owned(),
            RedactionRefusal::NoPower
        )]
    );
    // The refused redaction is not remembered: a replay of the join still counts.
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

    // The moderator's redaction counts.
    h.timeline(&redaction(
        "@mod:example.org",
        "$join",
        "$r2",
        T0_MS + 2_000,
    ));
    assert!(h.members().is_empty(), "{:?}", h.members());
    assert_eq!(left_reasons(&h), [LeftReason::Redacted]);
    assert_eq!(refused(&h).len(), 1);
}

#[test]
fn a_redacted_copy_counts_whoever_redacted_it() {
    let mut h = Harness::new();
    alice_joins(&mut h);
    // The homeserver serves the join redacted: it applied the redaction, so it counts.
    let copy = json!({
        "type": "org.matrix.msc4143.rtc.member",
        "event_id": "$join",
        "sender": alice(),
        "origin_server_ts": T0_MS,
        "content": {},
        "unsigned": { "redacted_because": {
            "type": "m.room.redaction", "event_id": "$r", "sender": mallory(),
            "content": { "redacts": "$join" },
        } },
    });
    h.page(&[copy], true);
    assert!(h.members().is_empty(), "{:?}", h.members());
    assert!(refused(&h).is_empty());
}

#[test]
fn a_redaction_seen_before_its_event_waits_for_the_events_sender() {
    // Another's redaction first, then the event: refused when the event shows its sender.
    let mut h = Harness::new();
    h.timeline(&redaction(mallory(), "$join", "$r1", T0_MS + 1_000));
    assert!(
        refused(&h).is_empty(),
        "the event's sender is not known yet"
    );
    alice_joins(&mut h);
    assert_eq!(h.members(), ["a1"]);
    assert_eq!(
        refused(&h),
        [(
            mallory().to_owned(),
            "$join".to_owned(),
            RedactionRefusal::PowerLevelsUnknown
        )]
    );

    // The sender's own redaction first, then the event: the event enters redacted, as in the
    // other order.
    let mut h = Harness::new();
    h.timeline(&redaction(alice(), "$join", "$r1", T0_MS + 1_000));
    alice_joins(&mut h);
    assert!(h.members().is_empty(), "{:?}", h.members());
    assert!(refused(&h).is_empty());

    // A moderator's redaction first: it counts at once.
    let mut h = Harness::new();
    h.timeline(&power_levels(&[("@mod:example.org", 100)]));
    h.timeline(&redaction(
        "@mod:example.org",
        "$join",
        "$r1",
        T0_MS + 1_000,
    ));
    alice_joins(&mut h);
    assert!(h.members().is_empty(), "{:?}", h.members());
}

#[test]
fn a_failed_member_query_is_asked_again_with_doubling_waits() {
    let mut h = Harness::new();
    h.auto_answer = false;
    alice_joins(&mut h);
    // Seconds since the start at which Alice's membership was asked for.
    let mut asked = Vec::new();
    for _ in 0..7 {
        let queries: Vec<_> = h
            .held
            .drain(..)
            .filter(|request| matches!(request.kind(), RequestKind::QueryMember { .. }))
            .collect();
        assert_eq!(queries.len(), 1, "one query at a time");
        asked.push(millis(h.now - h.start) / 1_000);
        h.machine
            .handle_response(queries[0].id(), Outcome::MemberUnknown, h.now);
        h.settle();
        assert!(h.held.is_empty(), "nothing asked before the wait");
        let next = h.machine.next_deadline().expect("a retry is due");
        h.advance(next - h.now);
    }
    // 5 s, then doubling up to the 60 s cap.
    assert_eq!(asked, [0, 5, 15, 35, 75, 135, 195]);
    assert!(h.members().is_empty(), "not shown while unknown");

    let query = h.held.pop().expect("asked again");
    h.machine
        .handle_response(query.id(), Outcome::Member { joined: true }, h.now);
    h.settle();
    assert_eq!(h.members(), ["a1"]);
    // Answered: nothing is asked any more.
    h.advance(Duration::from_secs(120));
    assert!(
        !h.held
            .iter()
            .any(|request| matches!(request.kind(), RequestKind::QueryMember { .. })),
        "{:?}",
        h.held
    );
}

#[test]
fn stored_power_levels_never_replace_those_from_sync() {
    let stored = |h: &mut Harness, users: &[(&str, i64)]| {
        let raw = power_levels(users).to_string();
        let receipt = h.receipt();
        h.machine
            .handle_stored_state(&super::support::room(), &raw, receipt, h.now);
        h.settle();
    };
    // Sync brought the moderator's promotion before the pump's (stale) read of the store.
    let mut h = Harness::new();
    h.timeline(&power_levels(&[("@mod:example.org", 50)]));
    stored(&mut h, &[]);
    alice_joins(&mut h);
    h.timeline(&redaction(
        "@mod:example.org",
        "$join",
        "$r1",
        T0_MS + 1_000,
    ));
    assert!(h.members().is_empty(), "{:?}", h.members());

    // The store's levels first, then a demotion through sync: sync's count.
    let mut h = Harness::new();
    stored(&mut h, &[("@mod:example.org", 50)]);
    h.timeline(&power_levels(&[]));
    alice_joins(&mut h);
    h.timeline(&redaction(
        "@mod:example.org",
        "$join",
        "$r1",
        T0_MS + 1_000,
    ));
    assert_eq!(h.members(), ["a1"]);
    assert_eq!(
        refused(&h),
        [(
            "@mod:example.org".to_owned(),
            "$join".to_owned(),
            RedactionRefusal::NoPower
        )]
    );

    // Stored levels alone count.
    let mut h = Harness::new();
    stored(&mut h, &[("@mod:example.org", 50)]);
    alice_joins(&mut h);
    h.timeline(&redaction(
        "@mod:example.org",
        "$join",
        "$r1",
        T0_MS + 1_000,
    ));
    assert!(h.members().is_empty(), "{:?}", h.members());
}
