//! `rtc demo` end to end: it installs (if needed) and starts Synapse itself.
use crate::support::{rtc, text};

#[tokio::test]
async fn the_demo_tells_its_story_and_exits_0() {
    // The first run may install Synapse (about 20 s); the story itself takes about 20 s.
    let output = tokio::time::timeout(std::time::Duration::from_secs(600), rtc(["demo"]).output())
        .await
        .expect("the demo finished in time")
        .expect("the demo ran");
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    for expected in [
        "the watcher shows alice in the call",
        "the watcher shows bob in the call",
        "the watcher shows carol in the call",
        "the watcher shows bob gone",
        "her delayed leave fired",
        "the call has ended",
        "everything the demo started (children, Synapse) is stopped",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // Three participants at once, in the table.
    assert!(stdout.contains("(3 participants)"), "{stdout}");
}
