//! `rtc ingest` on generated workloads (the standard small one, and with hostile lines).
use std::path::Path;

use serde_json::Value;

use crate::support::{generate, run, scratch_dir, text};

/// Runs `rtc ingest FILE` and returns its one JSON line.
async fn ingest(file: &Path) -> Value {
    let output = run([Path::new("ingest").as_os_str(), file.as_os_str()]).await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {stdout}");
    serde_json::from_str(lines[0]).expect("a JSON object")
}

#[tokio::test]
async fn the_small_workload_ends_with_200_live_memberships() {
    let dir = scratch_dir("ingest-small");
    let file = dir.join("sticky-small.jsonl");
    generate(&file, &["--preset", "small"]);

    let report = ingest(&file).await;
    assert_eq!(report["batches"], 8, "{report}");
    assert_eq!(report["events"], 800, "{report}");
    assert_eq!(report["rejected_events"], 0, "{report}");
    assert_eq!(report["live_memberships"], 200, "{report}");
    assert_eq!(report["sticky_entries"], 200, "{report}");
    assert_eq!(report["active_calls"], 10, "{report}");
    assert!(
        report["elapsed_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{report}"
    );
    assert!(
        report["events_per_sec"]
            .as_f64()
            .is_some_and(|rate| rate > 0.0),
        "{report}"
    );
    assert!(
        report["peak_rss_kb"].as_u64().is_some_and(|kb| kb > 0),
        "{report}"
    );
}

/// Variants that add memberships the offline path has no room state to refuse: a valid
/// member in a room seen nowhere else, a well-formed sender who never joined, and valid
/// members of other rooms re-homed into one room (offline, every sender counts as joined).
const ADD_MEMBERS: [&str; 3] = ["unknown_room", "sender_unknown_user", "oversized_batch"];

/// Variants whose event is a valid sticky event under an existing member's key, but not a
/// valid membership: it becomes the key's winner, and the member is hidden (`protocol.md`
/// §5.5: junk under a member's key means the member is absent).
const HIDE_MEMBER: [&str; 6] = [
    "member_user_id_not_sender",
    "member_missing",
    "member_not_object",
    "slot_application_mismatch",
    "slot_id_without_hash",
    "deep_nesting_64",
];

#[tokio::test]
async fn hostile_lines_neither_crash_nor_touch_other_members() {
    let dir = scratch_dir("ingest-malformed");
    let file = dir.join("sticky-small-bad.jsonl");
    let manifest = dir.join("bad.names");
    generate(
        &file,
        &[
            "--preset",
            "small",
            "--malformed",
            "79",
            "--malformed-manifest",
            manifest.to_str().unwrap(),
        ],
    );

    // The whole file, as generated: every line is read, nothing crashes.
    let report = ingest(&file).await;
    assert_eq!(report["batches"], 8 + 79, "{report}");
    assert!(
        report["rejected_events"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    assert!(
        report["diagnostics"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );

    // Without the lines that add members, the 200 members are all there but for those whose
    // own key got an invalid winner: no hostile line reaches another member.
    let names: Vec<String> = std::fs::read_to_string(&manifest)
        .expect("manifest")
        .lines()
        .map(ToOwned::to_owned)
        .collect();
    assert_eq!(names.len(), 79);
    let all = std::fs::read_to_string(&file).expect("workload");
    let mut lines = all.lines();
    let mut kept: Vec<&str> = lines.by_ref().take(8).collect();
    kept.extend(
        lines
            .zip(&names)
            .filter(|(_, name)| !ADD_MEMBERS.contains(&name.as_str()))
            .map(|(line, _)| line),
    );
    let filtered = dir.join("sticky-small-bad-filtered.jsonl");
    std::fs::write(&filtered, kept.join("\n") + "\n").expect("write");
    let hidden = names
        .iter()
        .filter(|name| HIDE_MEMBER.contains(&name.as_str()))
        .count();
    assert_eq!(
        hidden,
        HIDE_MEMBER.len(),
        "the cycle has each hiding variant once"
    );

    let report = ingest(&filtered).await;
    // A later valid refresh in the hostile cycle may bring a hidden member back.
    let live = report["live_memberships"].as_u64().expect("a count");
    assert!((200 - hidden as u64..=200).contains(&live), "{report}");
    assert_eq!(report["active_calls"], 10, "{report}");
}
