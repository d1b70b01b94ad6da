//! Separate processes on a local Synapse: a member whose `rtc join` process is killed with
//! `SIGKILL` (no goodbye: only its delayed leave can end its membership), and a watcher whose
//! process is killed and started again on the same store, in unencrypted and encrypted rooms.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use rtc_test_homeserver::{TestHomeserver, TestUser};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    process::{Child, ChildStdout},
};

use crate::{
    support::{room, scratch_dir, token_login},
    watch::{next_matching, spawn},
};

/// How long past its delay a killed member may still be shown: the server fires the delayed
/// leave at most one delay after the member's last heartbeat, then one sync round trip
/// brings it to the watcher. Generous for shared CI machines; a ghost would stay for the
/// join's sticky duration (an hour).
const LEAVE_BOUND: Duration = Duration::from_secs(8);

/// A `rtc watch --plain` process for `room`, with its output once it is ready.
async fn start_watch(
    server: &TestHomeserver,
    watcher: &TestUser,
    room: &str,
    store: Option<&Path>,
) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut args = vec![
        "watch".to_owned(),
        "--plain".to_owned(),
        "--room".to_owned(),
        room.to_owned(),
    ];
    args.extend(token_login(server, watcher));
    if let Some(store) = store {
        args.extend(["--store".to_owned(), store.display().to_string()]);
    }
    let mut watch = spawn(&args);
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    next_matching(&mut lines, "the ready line", |v| v["event"] == "ready").await;
    (watch, lines)
}

/// A `rtc join` process for `member` with a delayed leave of `delay_ms`.
fn start_join(server: &TestHomeserver, member: &TestUser, room: &str, delay_ms: u64) -> Child {
    let mut args = vec![
        "join".to_owned(),
        room.to_owned(),
        "--delay-ms".to_owned(),
        delay_ms.to_string(),
    ];
    args.extend(token_login(server, member));
    spawn(&args)
}

/// The watcher's next `joined` object for `member`.
async fn joined(lines: &mut Lines<BufReader<ChildStdout>>, member: &TestUser) -> Value {
    next_matching(lines, "the member's join", |v| {
        v["event"] == "joined" && v["user_id"] == member.user_id.as_str()
    })
    .await
}

#[tokio::test]
async fn a_killed_member_process_is_gone_within_its_delay() {
    killed_member_leaves_within_its_delay(false).await;
}

#[tokio::test]
async fn a_killed_member_process_is_gone_within_its_delay_in_an_encrypted_room() {
    killed_member_leaves_within_its_delay(true).await;
}

async fn killed_member_leaves_within_its_delay(encrypted: bool) {
    const DELAY_MS: u64 = 4_000;
    let server = TestHomeserver::start().await.expect("synapse starts");
    let watcher = server.register_user("watcher").await.expect("user");
    let member = server.register_user("member").await.expect("user");
    let room = room(&server, &watcher, &[&member], encrypted).await;
    let (mut watch, mut lines) = start_watch(&server, &watcher, &room, None).await;

    let mut join = start_join(&server, &member, &room, DELAY_MS);
    let shown = joined(&mut lines, &member).await;
    let member_id = shown["member_id"].as_str().expect("member id").to_owned();
    assert_eq!(shown["device_id"], member.device_id.as_str());

    // SIGKILL: the process cannot leave; the server fires its delayed leave.
    let killed = Instant::now();
    join.kill().await.expect("killed");
    let left = next_matching(&mut lines, "the killed member's leave", |v| {
        v["event"] == "left" && v["user_id"] == member.user_id.as_str()
    })
    .await;
    let gone_after = killed.elapsed();
    assert_eq!(left["member_id"], member_id.as_str());
    assert_eq!(left["reason"], "leave_event", "{left}");
    let bound = Duration::from_millis(DELAY_MS) + LEAVE_BOUND;
    assert!(
        gone_after <= bound,
        "the killed member stayed {gone_after:?} (delay {DELAY_MS} ms)"
    );
    eprintln!(
        "SIGKILL (encrypted: {encrypted}): the watcher saw the member leave {gone_after:?} \
         after the kill, delay {DELAY_MS} ms"
    );
    next_matching(&mut lines, "call_ended", |v| v["event"] == "call_ended").await;
    watch.kill().await.expect("watcher killed");
}

#[tokio::test]
async fn a_restarted_watcher_process_sees_the_same_participants_in_an_encrypted_room() {
    let server = TestHomeserver::start().await.expect("synapse starts");
    let watcher = server.register_user("watcher").await.expect("user");
    let alice = server.register_user("alice").await.expect("user");
    let carol = server.register_user("carol").await.expect("user");
    let room = room(&server, &watcher, &[&alice, &carol], true).await;
    let store = scratch_dir("restarted-watcher").join("store");

    let (mut first, mut lines) = start_watch(&server, &watcher, &room, Some(&store)).await;
    // Long delays: nobody leaves while the watcher is away.
    let _alice_join = start_join(&server, &alice, &room, 120_000);
    let _carol_join = start_join(&server, &carol, &room, 120_000);
    let mut before = Vec::new();
    for _ in 0..2 {
        let shown = next_matching(&mut lines, "a member's join", |v| v["event"] == "joined").await;
        before.push(member_of(&shown));
    }
    before.sort();

    // The watcher's process is killed mid-call and started again on its store: a new
    // process with the same device and the keys it had received.
    first.kill().await.expect("killed");
    let restarted = Instant::now();
    let (mut second, mut lines) = start_watch(&server, &watcher, &room, Some(&store)).await;
    let mut after = Vec::new();
    for _ in 0..2 {
        let shown = next_matching(&mut lines, "a member's join after the restart", |v| {
            v["event"] == "joined"
        })
        .await;
        after.push(member_of(&shown));
    }
    after.sort();
    let seen_after = restarted.elapsed();
    assert_eq!(after, before, "the same participants after the restart");
    let users: Vec<&str> = after.iter().map(|(user, _, _)| user.as_str()).collect();
    assert!(
        users.contains(&alice.user_id.as_str()) && users.contains(&carol.user_id.as_str()),
        "{after:?}"
    );
    eprintln!("watcher restart: both participants shown again {seen_after:?} after the kill");
    second.kill().await.expect("watcher killed");
    let _ = tokio::time::timeout(Duration::from_secs(5), second.wait()).await;
}

/// `(user, device, member id)` of a `joined` object.
fn member_of(joined: &Value) -> (String, String, String) {
    let field = |name: &str| joined[name].as_str().expect(name).to_owned();
    (field("user_id"), field("device_id"), field("member_id"))
}
