//! `rtc watch --plain` stays true when it falls behind: a watcher whose output nobody reads
//! for a while (its stdout pipe fills, so it stops reading its streams) misses more changes
//! and diagnostics than the library buffers. When it catches up, it says so (`resync`, with
//! how many it missed), shows the member who left meanwhile as `left` with reason `resync`,
//! and every member who joined meanwhile as `joined`: what it printed adds up to the call as
//! it is. It also says how many diagnostics it did not show (`diagnostics_missed`).
use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use futures_util::{StreamExt as _, stream};
use rtc_test_homeserver::{Method, TestHomeserver, TestUser, encode_path_segment, unique_id};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::{
    support::{EVENTUALLY, room, token_login},
    watch::{next_matching, spawn},
};

/// Flooding users, and memberships each sends: together well over the 1024 items the
/// library keeps for a slow reader (the watcher prints about a hundred before its pipe is
/// full), and each sender within its 256 sticky events per room.
const FLOODERS: usize = 6;
const MEMBERS_EACH: usize = 240;
/// Sends in flight at once.
const PARALLEL: usize = 16;
/// How long after the witness the slow watcher's library has surely received everything too.
const WITNESS_MARGIN: Duration = Duration::from_secs(3);
/// The member who joins before the watcher falls behind and leaves while it is behind.
const THE_MEMBER: (&str, &str) = ("the-member", "MEMBERDEV");

/// What a membership event sent by [`send_member`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A valid join.
    Join,
    /// A join that counts but is flagged (its `rtc_transports` is not an array): one
    /// session change and one diagnostic.
    FlaggedJoin,
    /// The leave of the member.
    Leave,
}

/// Sends a sticky js-sdk membership event of `member_id` as `user`.
async fn send_member(
    server: &TestHomeserver,
    user: &TestUser,
    room: &str,
    (member_id, device_id): (&str, &str),
    kind: Kind,
) {
    let transports = match kind {
        Kind::FlaggedJoin => json!("not an array"),
        _ => json!([{ "type": "livekit", "livekit_service_url": "https://lk.invalid" }]),
    };
    let content = if kind == Kind::Leave {
        json!({ "slot_id": "m.call#ROOM", "msc4354_sticky_key": member_id, "sticky_key": member_id })
    } else {
        json!({
            "application": { "type": "m.call" },
            "slot_id": "m.call#ROOM",
            "member": { "id": member_id, "user_id": user.user_id, "device_id": device_id },
            "msc4354_sticky_key": member_id,
            "sticky_key": member_id,
            "rtc_transports": transports,
            "versions": [],
        })
    };
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/org.matrix.msc4143.rtc.member/{}?org.matrix.msc4354.sticky_duration_ms=600000",
        encode_path_segment(room),
        unique_id("txn"),
    );
    let (status, answer) = server
        .request(Method::PUT, &path, Some(&user.access_token), Some(&content))
        .await
        .expect("the send reached Synapse");
    assert_eq!(status, 200, "{answer}");
}

/// `(user, device, member)` of a participant object.
fn member_of(object: &Value) -> (String, String, String) {
    let field = |name: &str| object[name].as_str().expect(name).to_owned();
    (field("user_id"), field("device_id"), field("member_id"))
}

#[tokio::test]
async fn a_watcher_that_fell_behind_says_so_and_its_output_adds_up() {
    let server = TestHomeserver::start().await.expect("synapse starts");
    let watcher = server.register_user("flood-watcher").await.expect("user");
    let member = server.register_user("flood-member").await.expect("user");
    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        flooders.push(server.register_user("flooder").await.expect("user"));
    }
    let others: Vec<&TestUser> = std::iter::once(&member).chain(&flooders).collect();
    let room = room(&server, &watcher, &others, false).await;

    // The watcher under test, and a second one we read all along: once it shows the member's
    // leave, the library has seen everything.
    let mut args = vec![
        "watch".to_owned(),
        "--plain".to_owned(),
        "--room".to_owned(),
        room.clone(),
    ];
    // Two processes, so two devices: one device must never have two crypto stores.
    let witness_device = server
        .login(&watcher, "WITNESS")
        .await
        .expect("second device");
    let mut witness_args = args.clone();
    args.extend(token_login(&server, &watcher));
    witness_args.extend(token_login(&server, &witness_device));
    let mut slow = spawn(&args);
    let mut slow_lines = BufReader::new(slow.stdout.take().expect("stdout")).lines();
    let mut witness = spawn(&witness_args);
    let mut witness_lines = BufReader::new(witness.stdout.take().expect("stdout")).lines();
    for lines in [&mut slow_lines, &mut witness_lines] {
        next_matching(lines, "the ready line", |v| v["event"] == "ready").await;
    }

    // The member joins, and the slow watcher shows it.
    send_member(&server, &member, &room, THE_MEMBER, Kind::Join).await;
    for lines in [&mut slow_lines, &mut witness_lines] {
        next_matching(lines, "the member's join", |v| {
            v["event"] == "joined" && v["member_id"] == THE_MEMBER.0
        })
        .await;
    }

    // From now on nobody reads the slow watcher; the witness is read all along. The flood,
    // then the member's leave.
    let witness_saw_the_leave = tokio::spawn(async move {
        next_matching(&mut witness_lines, "the member's leave", |v| {
            v["event"] == "left" && v["member_id"] == THE_MEMBER.0
        })
        .await
    });
    let flood_started = Instant::now();
    let sends = flooders.iter().flat_map(|flooder| {
        (0..MEMBERS_EACH).map(move |n| (flooder, format!("{}-{n}", flooder.device_id)))
    });
    stream::iter(sends)
        .for_each_concurrent(PARALLEL, |(flooder, member_id)| {
            let (server, room) = (&server, &room);
            async move {
                let member = (member_id.as_str(), flooder.device_id.as_str());
                send_member(server, flooder, room, member, Kind::FlaggedJoin).await;
            }
        })
        .await;
    send_member(&server, &member, &room, THE_MEMBER, Kind::Leave).await;
    eprintln!(
        "flood: {} memberships sent in {:?}",
        FLOODERS * MEMBERS_EACH,
        flood_started.elapsed()
    );
    witness_saw_the_leave
        .await
        .expect("the witness saw the leave");
    // The slow watcher's library receives on its own connection: give it as long again.
    tokio::time::sleep(WITNESS_MARGIN).await;

    // Now read the slow watcher: a resync, the member's leave, and in all the whole call.
    let mut shown: HashSet<(String, String, String)> = HashSet::new();
    shown.insert((
        member.user_id.clone(),
        THE_MEMBER.1.to_owned(),
        THE_MEMBER.0.to_owned(),
    ));
    // The watcher may fall behind more than once (its library keeps receiving while it
    // prints what it missed).
    let mut resyncs = Vec::new();
    let mut diagnostics_missed = Vec::new();
    let mut member_left = None;
    let expected = FLOODERS * MEMBERS_EACH;
    let caught_up = tokio::time::timeout(EVENTUALLY, async {
        while let Some(line) = slow_lines.next_line().await.expect("watcher output") {
            let object: Value = serde_json::from_str(&line).expect("JSON");
            match object["event"].as_str() {
                Some("resync") => {
                    resyncs.push(object);
                }
                Some("diagnostics_missed") => diagnostics_missed.push(object),
                Some("joined") => {
                    shown.insert(member_of(&object));
                }
                Some("left") => {
                    shown.remove(&member_of(&object));
                    if object["member_id"] == THE_MEMBER.0 {
                        assert!(!resyncs.is_empty(), "a resync comes first: {line}");
                        member_left = Some(object);
                    }
                }
                _ => {}
            }
            if member_left.is_some() && !diagnostics_missed.is_empty() && shown.len() == expected {
                return;
            }
        }
        panic!("the slow watcher's output ended");
    })
    .await;
    assert!(
        caught_up.is_ok(),
        "the slow watcher shows {} of {expected} members (member left: {member_left:?}, \
         diagnostics missed: {diagnostics_missed:?})",
        shown.len()
    );
    assert!(!resyncs.is_empty(), "the slow watcher said it fell behind");
    for resync in &resyncs {
        assert!(resync["missed"].as_u64().is_some_and(|n| n > 0), "{resync}");
        assert_eq!(resync["active_calls"], 1, "{resync}");
    }
    for missed in &diagnostics_missed {
        assert!(missed["missed"].as_u64().is_some_and(|n| n > 0), "{missed}");
    }
    let left = member_left.expect("the member's leave");
    assert_eq!(left["reason"], "resync", "{left}");
    assert_eq!(left["user_id"], member.user_id.as_str(), "{left}");
    assert!(
        !shown.iter().any(|(user, _, _)| *user == member.user_id),
        "the member is gone"
    );
    let total =
        |items: &[Value]| -> u64 { items.iter().filter_map(|v| v["missed"].as_u64()).sum() };
    eprintln!(
        "the slow watcher missed {} changes ({} resyncs) and {} diagnostics, and caught up {:?} \
         after the flood began",
        total(&resyncs),
        resyncs.len(),
        total(&diagnostics_missed),
        flood_started.elapsed()
    );

    for mut child in [slow, witness] {
        child.kill().await.expect("watcher killed");
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
}
