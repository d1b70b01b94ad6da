//! Our own membership through the machine: updates of its content.
use matrix_rtc_machine::{ContentUpdate, RequestKind, UpdateFailure};
use matrix_rtc_membership::{CallIntent, OwnMembershipConfig, Transport};

use super::support::{Harness, room_call};

#[test]
fn an_update_goes_out_as_a_refresh_of_the_same_member() {
    let mut h = Harness::new();
    assert_eq!(
        h.machine
            .update(&room_call(), ContentUpdate::default(), h.now),
        Err(UpdateFailure::NotInCall)
    );
    h.join_with(
        "m1",
        "https://lk-a.example.org",
        OwnMembershipConfig::default(),
    )
    .expect("joins");
    let update = ContentUpdate::default()
        .with_transport(Transport::livekit("https://lk-b.example.org"))
        .with_call_intent(CallIntent::Audio);
    h.machine
        .update(&room_call(), update, h.now)
        .expect("updates");
    h.settle();
    assert_eq!(
        h.sent_joins(),
        [
            ("m1".to_owned(), "https://lk-a.example.org".to_owned()),
            ("m1".to_owned(), "https://lk-b.example.org".to_owned())
        ]
    );
    let refresh = h
        .performed
        .iter()
        .rev()
        .find_map(|kind| match kind {
            RequestKind::SendSticky { content, .. } => Some(content.clone()),
            _ => None,
        })
        .expect("a refresh");
    assert_eq!(refresh["application"]["m.call.intent"], "audio");
    // Still one delayed leave: the update did not re-arm it.
    let schedules = h
        .performed
        .iter()
        .filter(|kind| matches!(kind, RequestKind::ScheduleDelayedSticky { .. }))
        .count();
    assert_eq!(schedules, 1);
}
