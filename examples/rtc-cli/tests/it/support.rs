//! Running the built binary.
use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use rtc_test_homeserver::{CreateRoomOptions, TestHomeserver, TestUser};
use tokio::process::Command;

/// The `rtc` binary under test.
pub(crate) const RTC: &str = env!("CARGO_BIN_EXE_rtc");

/// The workload generator (in the repository's scripts/bench).
pub(crate) const GENERATOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/bench/gen_workload.py"
);

/// How long any step against the local Synapse may take. Generous: CI machines are shared.
pub(crate) const EVENTUALLY: Duration = Duration::from_secs(60);

/// `rtc` with `args`, stdin closed, output captured, killed if the test drops it.
pub(crate) fn rtc<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(RTC);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `rtc` to completion (at most [`EVENTUALLY`]).
pub(crate) async fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    tokio::time::timeout(EVENTUALLY, rtc(args).output())
        .await
        .expect("rtc finished in time")
        .expect("rtc ran")
}

/// The login flags for `user` on `server`, with its access token and device.
pub(crate) fn token_login(server: &TestHomeserver, user: &TestUser) -> Vec<String> {
    vec![
        "--homeserver".into(),
        server.base_url().into(),
        "--user".into(),
        user.user_id.clone(),
        "--access-token".into(),
        user.access_token.clone(),
        "--device-id".into(),
        user.device_id.clone(),
    ]
}

/// A room of `creator` that every one of `others` joined, encrypted or not.
pub(crate) async fn room(
    server: &TestHomeserver,
    creator: &TestUser,
    others: &[&TestUser],
    encrypted: bool,
) -> String {
    let options = CreateRoomOptions {
        encrypted,
        invite: others.iter().map(|user| user.user_id.clone()).collect(),
        ..CreateRoomOptions::default()
    };
    let room = server.create_room(creator, options).await.expect("room");
    for user in others {
        server.join_room(user, &room).await.expect("joined");
    }
    room
}

/// A fresh directory under the target dir for generated files.
pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rtc-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs the workload generator with `args`, writing to `out`.
pub(crate) fn generate(out: &Path, args: &[&str]) {
    let status = std::process::Command::new("python3")
        .arg(GENERATOR)
        .args(args)
        .arg("--out")
        .arg(out)
        .stderr(Stdio::null())
        .status()
        .expect("python3 runs the generator");
    assert!(status.success(), "the generator failed: {status}");
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
