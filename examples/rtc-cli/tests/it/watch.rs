//! `rtc watch --plain` against a local Synapse, with `rtc join` and `rtc leave`.
use std::{process::Stdio, time::Duration};

use rtc_test_homeserver::TestHomeserver;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    process::{Child, ChildStdout},
};

use crate::support::{EVENTUALLY, room, rtc, run, text, token_login};

/// Reads JSON lines from the watcher until one satisfies `pick`.
pub(crate) async fn next_matching(
    lines: &mut Lines<BufReader<ChildStdout>>,
    what: &str,
    pick: impl Fn(&Value) -> bool,
) -> Value {
    let found = tokio::time::timeout(EVENTUALLY, async {
        while let Some(line) = lines.next_line().await.expect("watcher output") {
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
            assert!(
                value["event"].is_string(),
                "every object names its event: {line}"
            );
            if pick(&value) {
                return value;
            }
        }
        panic!("the watcher's output ended before {what}");
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub(crate) fn spawn(args: &[String]) -> Child {
    rtc(args)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("rtc starts")
}

#[tokio::test]
async fn plain_watch_reports_a_join_and_the_leave_of_a_killed_member() {
    let server = TestHomeserver::start().await.expect("synapse starts");
    let watcher = server.register_user("cli-watcher").await.expect("user");
    let member = server.register_user("cli-member").await.expect("user");
    let room = room(&server, &watcher, &[&member], false).await;

    let mut watch_args = vec![
        "watch".to_owned(),
        "--plain".to_owned(),
        "--room".to_owned(),
        room.clone(),
    ];
    watch_args.extend(token_login(&server, &watcher));
    let mut watch = spawn(&watch_args);
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let ready = next_matching(&mut lines, "the ready line", |v| v["event"] == "ready").await;
    assert_eq!(ready["user_id"], watcher.user_id.as_str());
    assert_eq!(ready["rooms"][0], room.as_str());

    // A long delayed leave: the member must leave through `rtc leave`, long before it fires.
    let mut join_args = vec![
        "join".to_owned(),
        room.clone(),
        "--delay-ms".to_owned(),
        "120000".to_owned(),
    ];
    join_args.extend(token_login(&server, &member));
    let mut join = spawn(&join_args);

    let started = next_matching(&mut lines, "call_started", |v| v["event"] == "call_started").await;
    assert_eq!(started["room_id"], room.as_str());
    assert_eq!(started["slot_id"], "m.call#ROOM");
    let joined = next_matching(&mut lines, "the member's join", |v| {
        v["event"] == "joined" && v["user_id"] == member.user_id.as_str()
    })
    .await;
    assert_eq!(joined["device_id"], member.device_id.as_str());
    assert_eq!(joined["room_id"], room.as_str());
    assert_eq!(joined["format"], "js-sdk");
    assert!(joined["transport"].is_string(), "{joined}");
    let member_id = joined["member_id"].as_str().expect("member id").to_owned();

    // The member crashes; `rtc leave` with its device ends the membership it left behind.
    join.kill().await.expect("killed");
    let mut leave_args = vec!["leave".to_owned(), room.clone()];
    leave_args.extend(token_login(&server, &member));
    let leave = run(&leave_args).await;
    let leave_out = text(&leave.stdout);
    assert_eq!(
        leave.status.code(),
        Some(0),
        "{leave_out}{}",
        text(&leave.stderr)
    );
    assert!(
        leave_out.contains(&format!(
            "member {member_id}: fired our pending delayed leave"
        )),
        "{leave_out}"
    );
    assert!(
        leave_out.contains("left: the call no longer shows this device"),
        "{leave_out}"
    );

    let left = next_matching(&mut lines, "the member's leave", |v| {
        v["event"] == "left" && v["user_id"] == member.user_id.as_str()
    })
    .await;
    assert_eq!(left["member_id"], member_id.as_str());
    assert_eq!(left["reason"], "leave_event");
    next_matching(&mut lines, "call_ended", |v| v["event"] == "call_ended").await;

    // Nothing left to leave now.
    let again = run(&leave_args).await;
    let again_out = text(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{again_out}");
    assert!(again_out.contains("nothing to leave"), "{again_out}");

    watch.kill().await.expect("watcher killed");
    let _ = tokio::time::timeout(Duration::from_secs(5), watch.wait()).await;
}
