//! The driver's receiving path, offline, on what Synapse really sent.
use std::time::Instant;

use matrix_sdk::ruma::room_id;
use matrix_sdk_rtc::{CallId, Limits, OfflineIngest, Receipt};
use serde_json::Value;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/synapse-1.163.2"
);

fn extension_of(file: &str) -> String {
    let path = format!("{FIXTURES}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let response: Value = serde_json::from_str(&text).expect("fixture is JSON");
    response["extensions"]["org.matrix.msc4354.sticky_events"].to_string()
}

#[test]
fn captured_sliding_sync_pages_build_the_calls() {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/index.json")).unwrap())
            .unwrap();
    // Pin "now" to the capture: the TTLs in the pages are relative to it.
    let captured_at_ms = index["captured_at_ms"].as_u64().expect("capture time");
    let receipt = Receipt {
        instant: Instant::now(),
        wall_ms: captured_at_ms,
    };

    let mut ingest = OfflineIngest::new(Limits::default());
    let mut events = 0;
    for page in [
        "sss_sticky_first_page.json",
        "sss_sticky_second_page.json",
        "sss_sticky_third_page_multi_room.json",
    ] {
        events += ingest
            .ingest_response(&extension_of(page), receipt)
            .expect("a response object")
            .events;
    }
    assert_eq!(events, 10);

    // Room A: alice's desktop is in the call; her phone left; the redacted member and the
    // delayed-leave flow's member are gone; room B: bob.
    let room_a = room_id!("!uAdLFUAkPuCxWiUTM7YyOLWCbGlHQYg2CH8LCHau8fM");
    let room_b = room_id!("!q0dE-rUu9RVWaceSdAq5vcpMQVLwIer1tMZyEu-R8sM");
    let a = ingest.call(&CallId::room_call(room_a)).participants();
    let members: Vec<_> = a
        .iter()
        .map(|p| (p.user_id.as_str(), p.member_id.as_str()))
        .collect();
    assert!(
        members.contains(&("@alice:localhost", "0c6d1d5e-7b1f-4b7e-9a52-3f1e2d4c5b6a")),
        "{members:?}"
    );
    assert!(
        !members
            .iter()
            .any(|(_, id)| *id == "5d7e8f90-1a2b-4c3d-8e4f-a5b6c7d8e9f0"),
        "redacted member shown"
    );
    assert!(
        !members
            .iter()
            .any(|(_, id)| *id == "d31a7e00-0000-4000-8000-00000000d31a"),
        "fired leave ignored"
    );
    let b = ingest.call(&CallId::room_call(room_b)).participants();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].user_id.as_str(), "@bob:localhost");
    assert_eq!(ingest.live_participants(), a.len() + b.len());
    let mut both = vec![CallId::room_call(room_a), CallId::room_call(room_b)];
    both.sort();
    assert_eq!(ingest.active_calls(), both);
}

#[test]
fn a_response_that_is_not_an_object_is_an_error_and_changes_nothing() {
    let mut ingest = OfflineIngest::new(Limits::default());
    let receipt = Receipt {
        instant: Instant::now(),
        wall_ms: 1_795_668_542_182,
    };
    assert!(ingest.ingest_response("[1, 2]", receipt).is_err());
    assert!(ingest.ingest_response("not json", receipt).is_err());
    assert_eq!(ingest.live_participants(), 0);
    assert_eq!(ingest.sticky_entries(), 0);
}
