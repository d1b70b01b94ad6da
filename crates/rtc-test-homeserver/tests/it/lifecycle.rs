//! Start, users, rooms, sticky events, restart, stop and drop.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rtc_test_homeserver::{CreateRoomOptions, Method, TestHomeserver, encode_path_segment};
use serde_json::json;

use crate::{process_exists, send, whoami};

const STICKY: &str = "?org.matrix.msc4354.sticky_duration_ms=600000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_serves_users_rooms_and_sticky_events_across_a_restart() {
    let server = TestHomeserver::start().await.expect("start");
    let versions = server.versions().await.expect("versions");
    assert_eq!(
        versions["unstable_features"]["org.matrix.msc4354"], true,
        "{versions}"
    );
    assert_eq!(
        versions["unstable_features"]["org.matrix.msc4140"], true,
        "{versions}"
    );
    assert_eq!(
        versions["unstable_features"]["org.matrix.msc4143"], true,
        "{versions}"
    );

    // Two users with unique names, each with a working token.
    let alice = server.register_user("alice").await.expect("register alice");
    let bob = server.register_user("bob").await.expect("register bob");
    assert!(alice.user_id.starts_with("@alice-") && alice.user_id.ends_with(":localhost"));
    assert_ne!(alice.user_id, bob.user_id);
    let (status, me) = whoami(&server, &bob).await.expect("whoami");
    assert_eq!(
        (status, me["user_id"].as_str()),
        (200, Some(bob.user_id.as_str())),
        "{me}"
    );

    // A room with bob invited and joined.
    let options = CreateRoomOptions {
        invite: vec![bob.user_id.clone()],
        name: Some("call room".to_owned()),
        ..CreateRoomOptions::default()
    };
    let room_id = server
        .create_room(&alice, options)
        .await
        .expect("create room");
    server.join_room(&bob, &room_id).await.expect("join");
    let members_path = format!(
        "/_matrix/client/v3/rooms/{}/joined_members",
        encode_path_segment(&room_id)
    );
    let (status, members) = server
        .request(Method::GET, &members_path, Some(&alice.access_token), None)
        .await
        .expect("members");
    assert_eq!(status, 200, "{members}");
    assert!(members["joined"].get(&bob.user_id).is_some(), "{members}");

    // A sticky event from bob, read back by alice with its stickiness and TTL.
    let content = json!({ "msc4354_sticky_key": "k1", "hello": "world" });
    let (status, sent) = send(
        &server,
        &bob,
        &room_id,
        "org.example.sticky",
        STICKY,
        &content,
    )
    .await
    .expect("send");
    assert_eq!(status, 200, "{sent}");
    let event_id = sent["event_id"].as_str().expect("an event id").to_owned();
    let event_path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode_path_segment(&room_id),
        encode_path_segment(&event_id)
    );
    let (status, event) = server
        .request(Method::GET, &event_path, Some(&alice.access_token), None)
        .await
        .expect("get event");
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["msc4354_sticky"]["duration_ms"], 600_000, "{event}");
    let ttl = event["unsigned"]["msc4354_sticky_duration_ttl_ms"]
        .as_i64()
        .expect("a TTL");
    assert!(0 < ttl && ttl <= 600_000, "ttl {ttl}");

    // Restart: same port, new process, same database.
    let port = server.port();
    let old_pid = server.pid().expect("running");
    server.restart().await.expect("restart");
    assert_eq!(server.port(), port);
    let new_pid = server.pid().expect("running again");
    assert_ne!(new_pid, old_pid);
    assert!(!process_exists(old_pid), "the old synapse is gone");
    let (status, me) = whoami(&server, &alice).await.expect("whoami after restart");
    assert_eq!(
        (status, me["user_id"].as_str()),
        (200, Some(alice.user_id.as_str())),
        "{me}"
    );
    let (status, event) = server
        .request(Method::GET, &event_path, Some(&alice.access_token), None)
        .await
        .expect("get event after restart");
    assert_eq!(
        (status, event["event_id"].as_str()),
        (200, Some(event_id.as_str())),
        "{event}"
    );

    // A second device of bob, with the device id we chose.
    let phone = server.login(&bob, "BOBPHONE").await.expect("login");
    assert_eq!(
        (phone.user_id.as_str(), phone.device_id.as_str()),
        (bob.user_id.as_str(), "BOBPHONE")
    );
    assert_ne!(phone.access_token, bob.access_token);
    let (status, me) = whoami(&server, &phone).await.expect("whoami phone");
    assert_eq!(
        (status, me["device_id"].as_str()),
        (200, Some("BOBPHONE")),
        "{me}"
    );
    let (status, _) = send(
        &server,
        &phone,
        &room_id,
        "org.example.plain",
        "",
        &json!({}),
    )
    .await
    .expect("send from the phone");
    assert_eq!(status, 200);

    // Stop: the process is gone, the port closed, requests fail; stopping again is harmless.
    server.stop().await.expect("stop");
    assert_eq!(server.pid(), None);
    assert!(!process_exists(new_pid), "synapse is gone after stop");
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "port {port} closed"
    );
    assert!(whoami(&server, &alice).await.is_err());
    server.stop().await.expect("second stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_servers_are_independent_and_dropping_cleans_up() {
    let (first, second) = tokio::join!(TestHomeserver::start(), TestHomeserver::start());
    let (first, second) = (first.expect("first"), second.expect("second"));
    assert_ne!(first.port(), second.port());
    assert_ne!(first.run_dir(), second.run_dir());
    let user = first.register_user("carol").await.expect("register");
    // A token of one server means nothing to the other.
    let (status, _) = whoami(&second, &user).await.expect("whoami");
    assert_eq!(status, 401);

    let (pid, run_dir, port) = (
        first.pid().expect("running"),
        first.run_dir().to_owned(),
        first.port(),
    );
    assert!(run_dir.join("homeserver.yaml").is_file() && first.log_path().is_file());
    drop(first);
    assert!(!process_exists(pid), "synapse killed on drop");
    assert!(!run_dir.exists(), "run dir deleted after a passing test");
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "port {port} closed"
    );
    let (status, _) = whoami(
        &second,
        &second.register_user("dave").await.expect("register"),
    )
    .await
    .expect("the other server still works");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_keeps_the_run_dir_and_still_kills_synapse() {
    let server = TestHomeserver::start().await.expect("start");
    let (pid, run_dir, log) = (
        server.pid().expect("running"),
        server.run_dir().to_owned(),
        server.log_path(),
    );
    // Drop the server while a thread unwinds, as a failing test does.
    let outcome = std::thread::spawn(move || {
        let _server = server;
        panic!("deliberate panic: the harness must keep this run dir");
    })
    .join();
    assert!(outcome.is_err());
    assert!(
        !process_exists(pid),
        "synapse killed on drop during a panic"
    );
    assert!(log.is_file(), "log kept at {}", log.display());
    let log_text = std::fs::read_to_string(&log).expect("read log");
    assert!(log_text.contains("Synapse now listening"), "a real log");
    std::fs::remove_dir_all(&run_dir).expect("clean up the kept run dir");
}

/// Set in the copy of the test binary that [`synapse_dies_with_the_test_process`] starts.
const ORPHAN_CHILD_ENV_VAR: &str = "RTC_TEST_HOMESERVER_ORPHAN_CHILD";

/// Runs this very test again in a child process (which starts a server and blocks), kills that
/// process with SIGKILL, as a nextest timeout would, and checks Synapse went with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_dies_with_the_test_process() {
    const NAME: &str = "lifecycle::synapse_dies_with_the_test_process";
    if std::env::var_os(ORPHAN_CHILD_ENV_VAR).is_some() {
        let server = TestHomeserver::start().await.expect("start");
        println!("SYNAPSE_PID={}", server.pid().expect("running"));
        println!("RUN_DIR={}", server.run_dir().display());
        // Block until the parent kills us: stdin stays open and silent.
        let _ = std::io::stdin().read_line(&mut String::new());
        return;
    }

    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(ORPHAN_CHILD_ENV_VAR, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child test process");
    let stdout = child.stdout.take().expect("piped stdout");
    let (mut pid, mut run_dir) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        // libtest prints "test <name> ... " right before our first line.
        if let Some((_, value)) = line.split_once("SYNAPSE_PID=") {
            pid = value.trim().parse::<u32>().ok();
        } else if let Some(value) = line.strip_prefix("RUN_DIR=") {
            run_dir = Some(std::path::PathBuf::from(value));
            break;
        }
    }
    let pid = pid.expect("the child reported its synapse pid");
    assert!(process_exists(pid), "synapse runs while the child lives");

    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    // The kernel signals Synapse when the child ends; allow it a moment to die.
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_exists(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !process_exists(pid),
        "synapse {pid} outlived its test process"
    );
    if let Some(run_dir) = run_dir {
        std::fs::remove_dir_all(&run_dir).expect("clean up the child's run dir");
    }
}
