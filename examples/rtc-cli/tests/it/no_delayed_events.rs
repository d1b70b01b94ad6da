//! `rtc join` on a homeserver without delayed events (MSC4140): the join works without a
//! dead-man switch, the status line says so, and Ctrl-C still leaves cleanly.
use std::time::Duration;

use rtc_test_homeserver::{HomeserverConfig, TestHomeserver};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::support::{EVENTUALLY, room, rtc, text, token_login};

/// The status line `rtc join` prints once connected without a dead-man switch.
const NO_DEAD_MAN_SWITCH: &str =
    "status: connected (no dead-man switch: a crash leaves a ghost until our join expires)";
/// The status line of a join with an armed dead-man switch (never on this server).
const ARMED: &str = "status: connected (dead-man switch armed)";

/// Reads `rtc join`'s output lines into `seen` until one satisfies `pick`; panics with the
/// output (and stderr, if the process ended) when none does within [`EVENTUALLY`].
async fn next_line(
    join: &mut Child,
    lines: &mut Lines<BufReader<ChildStdout>>,
    seen: &mut Vec<String>,
    what: &str,
    pick: impl Fn(&str) -> bool,
) {
    let found = tokio::time::timeout(EVENTUALLY, async {
        while let Some(line) = lines.next_line().await.expect("rtc join's output") {
            let picked = pick(&line);
            seen.push(line);
            if picked {
                return true;
            }
        }
        false
    })
    .await;
    match found {
        Ok(true) => {}
        Ok(false) => {
            let mut stderr = Vec::new();
            if let Some(mut pipe) = join.stderr.take() {
                let _ = pipe.read_to_end(&mut stderr).await;
            }
            panic!(
                "rtc join's output ended before {what}:\n{}\nstderr:\n{}",
                seen.join("\n"),
                text(&stderr)
            );
        }
        Err(_) => panic!("timed out waiting for {what}:\n{}", seen.join("\n")),
    }
}

/// Sends SIGINT (what Ctrl-C sends) to `child`: `rtc join` then leaves the call.
fn interrupt(child: &Child) {
    let pid = child.id().expect("rtc join is still running");
    let pid = libc::pid_t::try_from(pid).expect("a process id");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; `pid` is a child we
    // spawned and have not reaped yet, so it cannot name another process.
    let status = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(status, 0, "SIGINT: {}", std::io::Error::last_os_error());
}

#[tokio::test]
async fn join_without_delayed_events_says_there_is_no_dead_man_switch() {
    let config = HomeserverConfig::default().with_delayed_events(false);
    let server = TestHomeserver::start_with(config)
        .await
        .expect("synapse starts");
    let member = server.register_user("cli-nodelay").await.expect("user");
    let room = room(&server, &member, &[], false).await;

    let mut args = vec!["join".to_owned(), room.clone()];
    args.extend(token_login(&server, &member));
    let mut join = rtc(&args).spawn().expect("rtc starts");
    let mut lines = BufReader::new(join.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();

    next_line(
        &mut join,
        &mut lines,
        &mut seen,
        "the status without a dead-man switch",
        |line| line == NO_DEAD_MAN_SWITCH,
    )
    .await;
    // The join went out: sync shows our own membership.
    next_line(
        &mut join,
        &mut lines,
        &mut seen,
        "our own entry in the call",
        |line| line.starts_with("visible in the call as member "),
    )
    .await;
    assert!(
        seen.iter()
            .any(|line| line == "joined; Ctrl-C leaves the call"),
        "{seen:#?}"
    );
    let announced = seen
        .iter()
        .find(|line| line.starts_with("joining "))
        .expect("the joining line");
    assert!(!announced.contains("delayed leave after"), "{announced}");

    // Ctrl-C: a plain leave (there is no delayed leave to fire), then the process exits 0.
    interrupt(&join);
    next_line(&mut join, &mut lines, &mut seen, "the leave", |line| {
        line == "left"
    })
    .await;
    let status = tokio::time::timeout(Duration::from_secs(30), join.wait())
        .await
        .expect("rtc join exits after its leave")
        .expect("rtc join's status");
    while let Ok(Some(line)) = lines.next_line().await {
        seen.push(line);
    }
    assert_eq!(status.code(), Some(0), "{seen:#?}");
    assert!(
        !seen.iter().any(|line| line == ARMED),
        "a dead-man switch was reported: {seen:#?}"
    );
    // It said which device it was, and that its keys lived in memory only.
    let mut stderr = Vec::new();
    if let Some(mut pipe) = join.stderr.take() {
        pipe.read_to_end(&mut stderr).await.expect("stderr");
    }
    let stderr = text(&stderr);
    let device = format!(
        "device {} of {}, store in memory",
        member.device_id, member.user_id
    );
    assert!(stderr.contains(&device), "{stderr}");
    eprintln!(
        "rtc join without delayed events printed:\n{}",
        seen.join("\n")
    );
}
