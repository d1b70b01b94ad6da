//! Test-only: runs one binding test suite (Python, Kotlin, Swift) against a real local Synapse.
//!
//! ```text
//! ffi-test-runner COMMAND [ARGS...]
//! ```
//!
//! Starts a Synapse (`rtc-test-homeserver`), registers two users A and B, creates a room of A
//! that B has joined, sends into it one membership event that must be rejected (A claims to be
//! someone else: the suite checks that its diagnostic arrives). At the same time it starts a
//! second Synapse *without* delayed events (MSC4140), registers a user C there and creates a
//! room of C's own (the suite checks that a join there works and reports no dead-man switch).
//! Then it runs `COMMAND` with the environment below, echoes its standard output, and stops
//! both servers when it ends.
//!
//! | variable | value |
//! | --- | --- |
//! | `RTC_TEST_HOMESERVER_URL` | the homeserver's base URL |
//! | `RTC_TEST_ROOM_ID` | the shared room |
//! | `RTC_TEST_SLOT_ID` | the slot to use (the room call) |
//! | `RTC_TEST_A_USER_ID`, `RTC_TEST_A_DEVICE_ID`, `RTC_TEST_A_ACCESS_TOKEN` | user A |
//! | `RTC_TEST_B_USER_ID`, `RTC_TEST_B_DEVICE_ID`, `RTC_TEST_B_ACCESS_TOKEN` | user B |
//! | `RTC_TEST_NODELAY_HOMESERVER_URL` | the second homeserver's base URL: no delayed events |
//! | `RTC_TEST_NODELAY_ROOM_ID` | C's room on the second homeserver |
//! | `RTC_TEST_C_USER_ID`, `RTC_TEST_C_DEVICE_ID`, `RTC_TEST_C_ACCESS_TOKEN` | user C, on the second homeserver |
//! | `RTC_TEST_STORE_DIR` | an empty folder for the clients' stores (deleted afterwards) |
//! | `RTC_TEST_BAD_EVENT_ID` | the event that must be reported as a diagnostic |
//! | `RTC_TEST_LIVEKIT_SERVICE_URL` | the LiveKit JWT service the homeserver advertises (a stand-in, see below) |
//! | `RTC_TEST_LIVEKIT_SFU_URL` | the SFU URL that service hands out |
//! | `RTC_TEST_LIVEKIT_API_SECRET` | the secret its JWTs are signed with (HS256) |
//!
//! The homeserver advertises `rtc_test_homeserver::JwtService`, a *stand-in* for a LiveKit JWT
//! service (lk-jwt-service cannot be installed here): it follows lk-jwt-service's documented
//! requests and answers, checks OpenID tokens against the Synapse, and mints real LiveKit JWTs.
//!
//! The suite must print `N passed, N failed` alone on a line. The runner exits with the
//! suite's status, and fails if the suite exits 0 without that line or with failures in it.
//! `RTC_TEST_TIMEOUT_SECS` (default 600) bounds the suite's run; it is killed after that.
use std::{
    path::Path,
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use rtc_test_homeserver::{
    CreateRoomOptions, HomeserverConfig, Method, TestHomeserver, TestUser, encode_path_segment,
    unique_id,
};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

/// The slot the suites use: the room call.
const SLOT_ID: &str = "m.call#ROOM";
/// Type of the membership event sent to provoke a diagnostic (js-sdk's sticky member event).
const MEMBER_EVENT_TYPE: &str = "org.matrix.msc4143.rtc.member";
/// Query parameter making a send sticky (MSC4354), with a duration in ms.
const STICKY_DURATION_PARAM: &str = "org.matrix.msc4354.sticky_duration_ms";
/// Default bound on one suite's run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> ExitCode {
    let command: Vec<String> = std::env::args().skip(1).collect();
    if command.is_empty() || command[0] == "--help" {
        eprintln!("usage: ffi-test-runner COMMAND [ARGS...]");
        return ExitCode::from(2);
    }
    match run(&command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ffi-test-runner: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What the suite printed and how it ended.
struct Outcome {
    success: bool,
    summary: Option<(u64, u64)>,
}

async fn run(command: &[String]) -> Result<ExitCode, String> {
    let started = Instant::now();
    // Both servers start at once: the second one adds little to the run.
    let (primary, nodelay) = tokio::join!(
        TestHomeserver::start_with_jwt_service(HomeserverConfig::default()),
        TestHomeserver::start_with(
            HomeserverConfig::default()
                .with_label("ffi-nodelay")
                .with_delayed_events(false)
        ),
    );
    let (hs, jwt) = primary
        .map_err(|error| format!("synapse or the jwt service stand-in does not start: {error}"))?;
    let nodelay = nodelay
        .map_err(|error| format!("the synapse without delayed events does not start: {error}"))?;
    let carol = nodelay.register_user("ffi-c").await.map_err(describe)?;
    let nodelay_room_id = nodelay
        .create_room(&carol, CreateRoomOptions::default())
        .await
        .map_err(describe)?;
    let alice = hs.register_user("ffi-a").await.map_err(describe)?;
    let bob = hs.register_user("ffi-b").await.map_err(describe)?;
    let options = CreateRoomOptions {
        invite: vec![bob.user_id.clone()],
        ..CreateRoomOptions::default()
    };
    let room_id = hs.create_room(&alice, options).await.map_err(describe)?;
    hs.join_room(&bob, &room_id).await.map_err(describe)?;
    let bad_event_id = send_bad_membership(&hs, &alice, &room_id).await?;
    eprintln!(
        "ffi-test-runner: homeservers, users and rooms ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let store_dir = std::env::temp_dir().join(unique_id("ffi-test-stores"));
    std::fs::create_dir_all(&store_dir)
        .map_err(|error| format!("cannot create {}: {error}", store_dir.display()))?;
    let timeout = std::env::var("RTC_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);

    let mut child = Command::new(&command[0]);
    child
        .args(&command[1..])
        .env("RTC_TEST_HOMESERVER_URL", hs.base_url())
        .env("RTC_TEST_ROOM_ID", &room_id)
        .env("RTC_TEST_SLOT_ID", SLOT_ID)
        .env("RTC_TEST_STORE_DIR", &store_dir)
        .env("RTC_TEST_BAD_EVENT_ID", &bad_event_id)
        .env("RTC_TEST_LIVEKIT_SERVICE_URL", jwt.url())
        .env("RTC_TEST_LIVEKIT_SFU_URL", jwt.sfu_url())
        .env("RTC_TEST_LIVEKIT_API_SECRET", jwt.api_secret())
        .env("RTC_TEST_NODELAY_HOMESERVER_URL", nodelay.base_url())
        .env("RTC_TEST_NODELAY_ROOM_ID", &nodelay_room_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (prefix, user) in [("A", &alice), ("B", &bob), ("C", &carol)] {
        child
            .env(format!("RTC_TEST_{prefix}_USER_ID"), &user.user_id)
            .env(format!("RTC_TEST_{prefix}_DEVICE_ID"), &user.device_id)
            .env(
                format!("RTC_TEST_{prefix}_ACCESS_TOKEN"),
                &user.access_token,
            );
    }
    let outcome = tokio::time::timeout(timeout, run_child(child, command)).await;
    remove_dir(&store_dir);
    drop(hs);
    drop(jwt);
    drop(nodelay);

    let outcome = match outcome {
        Ok(outcome) => outcome?,
        Err(_) => return Err(format!("the suite did not end within {timeout:?}")),
    };
    match (outcome.success, outcome.summary) {
        (true, Some((_, 0))) => Ok(ExitCode::SUCCESS),
        (true, Some((_, failed))) => {
            Err(format!("the suite exited 0 but reported {failed} failed"))
        }
        (true, None) => Err("the suite exited 0 without an `N passed, N failed` line".to_owned()),
        (false, _) => Ok(ExitCode::FAILURE),
    }
}

/// Runs the suite, echoing its standard output and remembering its summary line.
async fn run_child(mut child: Command, command: &[String]) -> Result<Outcome, String> {
    let mut child = child
        .spawn()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| "the suite's stdout is not piped".to_owned())?;
    let mut lines = BufReader::new(stdout).lines();
    let mut summary = None;
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|error| format!("reading the suite's output: {error}"))?
    {
        println!("{line}");
        if let Some(counts) = parse_summary(&line) {
            summary = Some(counts);
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|error| format!("waiting for the suite: {error}"))?;
    Ok(Outcome {
        success: status.success(),
        summary,
    })
}

/// `N passed, N failed` alone on a line (optionally after one `word:`), as counts.
fn parse_summary(line: &str) -> Option<(u64, u64)> {
    let line = line.trim();
    let line = match line.split_once(": ") {
        Some((label, rest)) if !label.contains(' ') => rest,
        _ => line,
    };
    let (passed, failed) = line.split_once(", ")?;
    let passed = passed.strip_suffix(" passed")?.parse().ok()?;
    let failed = failed.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

/// Sends, as `user`, a sticky membership that claims another user: every client must reject
/// it and report it as a diagnostic. Returns its event ID.
async fn send_bad_membership(
    hs: &TestHomeserver,
    user: &TestUser,
    room_id: &str,
) -> Result<String, String> {
    let member_id = unique_id("ffi-bad-claim");
    let content = json!({
        "application": { "type": "m.call" },
        "slot_id": SLOT_ID,
        "member": {
            "id": member_id,
            "user_id": "@someone-else:localhost",
            "device_id": "NOTMINE",
        },
        "msc4354_sticky_key": member_id,
        "sticky_key": member_id,
        "rtc_transports": [{ "type": "livekit", "livekit_service_url": "https://lk.invalid" }],
        "versions": [],
    });
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/{MEMBER_EVENT_TYPE}/{}?{STICKY_DURATION_PARAM}=600000",
        encode_path_segment(room_id),
        unique_id("txn"),
    );
    let (status, answer) = hs
        .request(Method::PUT, &path, Some(&user.access_token), Some(&content))
        .await
        .map_err(describe)?;
    answer
        .get("event_id")
        .and_then(|id| id.as_str())
        .filter(|_| status == 200)
        .map(ToOwned::to_owned)
        .ok_or_else(|| format!("sending the bad membership failed ({status}): {answer}"))
}

fn remove_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        eprintln!("ffi-test-runner: cannot remove {}: {error}", dir.display());
    }
}

fn describe(error: rtc_test_homeserver::Error) -> String {
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::parse_summary;

    #[test]
    fn summary_lines_are_recognised() {
        assert_eq!(parse_summary("7 passed, 0 failed"), Some((7, 0)));
        assert_eq!(parse_summary("kotlin: 6 passed, 1 failed"), Some((6, 1)));
        assert_eq!(parse_summary("  3 passed, 2 failed  "), Some((3, 2)));
        assert_eq!(parse_summary("test 3 passed, 2 failed"), None);
        assert_eq!(parse_summary("3 passed"), None);
        assert_eq!(parse_summary("x passed, 0 failed"), None);
    }
}
