//! `rtc watch`'s table output with ids chosen to attack a terminal, sent for real: a room
//! member's membership whose member id and device id carry an escape sequence, CR/LF, NUL and
//! a right-to-left override. Nothing of it may reach the output raw; the ids appear escaped.
use rtc_test_homeserver::{Method, TestHomeserver, encode_path_segment, unique_id};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::{
    support::{EVENTUALLY, room, token_login},
    watch::spawn,
};

/// What the hostile member puts in its ids.
const HOSTILE: &str = "\u{1b}[2J\r\nFORGED ROW\0\u{202e}";

#[tokio::test]
async fn the_table_escapes_control_and_bidi_characters_of_member_ids() {
    let server = TestHomeserver::start().await.expect("synapse starts");
    let watcher = server
        .register_user("cli-term-watcher")
        .await
        .expect("user");
    let member = server.register_user("cli-term-member").await.expect("user");
    let room = room(&server, &watcher, &[&member], false).await;

    // Table mode (no `--plain`); stdout is a pipe, so the table is printed after each change.
    let mut args = vec!["watch".to_owned(), "--room".to_owned(), room.clone()];
    args.extend(token_login(&server, &watcher));
    let mut watch = spawn(&args);
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let mut output = Vec::new();
    // The watcher says whom it watches as once its driver runs.
    read_until(&mut lines, &mut output, "the ready line", |line| {
        line.contains("watching as")
    })
    .await;

    let member_id = format!("m{}{HOSTILE}", unique_id("x"));
    let content = json!({
        "slot_id": "m.call#ROOM",
        "application": { "type": "m.call" },
        "member": { "id": member_id, "user_id": member.user_id, "device_id": format!("DEV{HOSTILE}") },
        "transports": {
            "published": [{ "type": "livekit", "livekit_service_url": format!("https://lk.invalid/{HOSTILE}") }],
            "can_subscribe": ["livekit"]
        },
        "versions": [],
        "msc4354_sticky_key": member_id,
        "sticky_key": member_id,
    });
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/org.matrix.msc4143.rtc.member/{}?org.matrix.msc4354.sticky_duration_ms=600000",
        encode_path_segment(&room),
        unique_id("txn"),
    );
    let (status, answer) = server
        .request(
            Method::PUT,
            &path,
            Some(&member.access_token),
            Some(&content),
        )
        .await
        .expect("send");
    assert_eq!(status, 200, "{answer}");

    // Shown as a participant (or, should a rule reject it, as a rejected event): either way
    // the ids reach the output, and only escaped.
    read_until(
        &mut lines,
        &mut output,
        "the hostile member's row",
        |line| line.contains("FORGED ROW"),
    )
    .await;
    watch.kill().await.expect("stop the watcher");

    let all = output.join("\n");
    for raw in ['\u{1b}', '\r', '\0', '\u{202e}'] {
        assert!(
            !all.contains(raw),
            "a raw {raw:?} reached the terminal:\n{all}"
        );
    }
    assert!(all.contains("\\u{1b}[2J\\u{d}\\u{a}FORGED ROW"), "{all}");
    // No line starts with the forged text: the LF did not start a row of its own.
    assert!(
        output
            .iter()
            .all(|line| !line.trim_start().starts_with("FORGED ROW")),
        "{all}"
    );
}

/// Reads lines into `output` until one satisfies `pick`, within [`EVENTUALLY`].
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    output: &mut Vec<String>,
    what: &str,
    pick: impl Fn(&str) -> bool,
) {
    let found = tokio::time::timeout(EVENTUALLY, async {
        while let Some(line) = lines.next_line().await.expect("watcher output") {
            let done = pick(&line);
            output.push(line);
            if done {
                return;
            }
        }
        panic!(
            "the watcher's output ended before {what}:\n{}",
            output.join("\n")
        );
    })
    .await;
    assert!(
        found.is_ok(),
        "timed out waiting for {what}:\n{}",
        output.join("\n")
    );
}
