//! `rtc demo`: a local Synapse and a scripted story, watched live in one terminal.
//!
//! Three participants join the room call (each an `rtc join` child process of this very
//! executable), one leaves cleanly (Ctrl-C), one crashes (SIGKILL) and disappears when its
//! delayed leave fires, the last one leaves and the call ends. The watcher runs in-process
//! and shows each change. Everything started here is stopped before returning.
use std::{collections::HashSet, io::IsTerminal as _, process::Stdio, time::Duration};

use anyhow::{Context as _, Result, bail, ensure};
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use rtc_test_homeserver::{CreateRoomOptions, HomeserverConfig, TestHomeserver, TestUser};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
    sync::mpsc,
    time::Instant,
};

use crate::{
    cli::{DemoArgs, LoginArgs},
    connect::Connected,
    signal,
    watch::{Mode, Watcher},
};

/// How long a join or a clean leave may take to show up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after its delayed leave is due a crashed participant may still show.
const CRASH_MARGIN: Duration = Duration::from_secs(10);
/// How long a child may take to exit after Ctrl-C.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// `rtc demo`.
pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let mut intro = Vec::new();
    say(
        &mut intro,
        "rtc demo: a local Synapse, three participants, a clean leave and a crash".to_owned(),
    );
    say(
        &mut intro,
        "step 1: starting a local Synapse (the first run installs it into .build/synapse-venv)"
            .to_owned(),
    );
    let server = TestHomeserver::start_with(HomeserverConfig::default().with_label("rtc-demo"))
        .await
        .context("starting the local Synapse failed")?;
    say(
        &mut intro,
        format!("        Synapse is up at {}", server.base_url()),
    );

    let outcome = tokio::select! {
        outcome = story(&server, &args, intro) => outcome,
        interrupted = signal::interrupted() => {
            interrupted?;
            Err(anyhow::anyhow!("interrupted"))
        }
    };
    // The children were stopped by `story` (or are killed on drop); now the server.
    server.stop().await.context("stopping Synapse")?;
    drop(server);
    match outcome {
        Ok(()) => {
            println!(
                "done in {:.1} s: every participant left, the call ended, and everything the \
                 demo started (children, Synapse) is stopped",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(error) => Err(error.context("the demo did not go as expected")),
    }
}

/// One participant: a child process running `rtc join`.
#[derive(Debug)]
struct Member {
    name: &'static str,
    user: TestUser,
    child: Option<Child>,
}

/// Prints a narration line before the watcher runs, and keeps it for the watcher's log pane
/// (a terminal is cleared when the table is first drawn).
fn say(intro: &mut Vec<String>, line: String) {
    println!("{line}");
    intro.push(line);
}

async fn story(server: &TestHomeserver, args: &DemoArgs, mut intro: Vec<String>) -> Result<()> {
    say(
        &mut intro,
        "step 2: registering the watcher, alice, bob and carol, and creating their room".to_owned(),
    );
    let watcher_user = server.register_user("watcher").await?;
    let mut members = Vec::new();
    for name in ["alice", "bob", "carol"] {
        members.push(Member {
            name,
            user: server.register_user(name).await?,
            child: None,
        });
    }
    let options = CreateRoomOptions {
        invite: members.iter().map(|m| m.user.user_id.clone()).collect(),
        name: Some("rtc demo".to_owned()),
        ..CreateRoomOptions::default()
    };
    let room = server.create_room(&watcher_user, options).await?;
    for member in &members {
        server.join_room(&member.user, &room).await?;
    }
    let room_id = OwnedRoomId::try_from(room.as_str()).context("the server's room id")?;
    say(&mut intro, format!("        room {room_id}"));
    say(
        &mut intro,
        "step 3: starting the watcher (in this process)".to_owned(),
    );
    let login = token_login(server, &watcher_user);
    let needed = [
        matrix_sdk_rtc::MissingFeature::StickyEvents,
        matrix_sdk_rtc::MissingFeature::SlidingSync,
    ];
    let mut connected = Connected::login(&login, &needed).await?;
    let mode = Mode::Table {
        tty: std::io::stdout().is_terminal(),
    };
    let title = format!("rtc demo: the room call of {room_id}");
    let mut watcher = Watcher::new(
        connected.rtc.clone(),
        mode,
        title,
        HashSet::from([room_id.clone()]),
    );
    let narration = watcher.narration_channel();
    if mode == (Mode::Table { tty: true }) {
        for line in intro {
            watcher.show_log_line(line);
        }
    }
    connected.start().await?;
    watcher.ready(&connected);

    let result = script(
        server,
        args,
        &room_id,
        &mut members,
        &mut watcher,
        &narration,
    )
    .await;
    // Whatever happened, no child outlives the demo.
    for member in &mut members {
        if let Some(mut child) = member.child.take() {
            let _ = child.kill().await;
        }
    }
    connected.shutdown();
    result
}

async fn script(
    server: &TestHomeserver,
    args: &DemoArgs,
    room_id: &RoomId,
    members: &mut [Member],
    watcher: &mut Watcher,
    narration: &mpsc::UnboundedSender<String>,
) -> Result<()> {
    let mut step = 4;
    for member in members.iter_mut() {
        let name = member.name;
        watcher.show_log_line(format!(
            "step {step}: {name} joins (an `rtc join` child process, delayed leave {} ms)",
            args.delay_ms
        ));
        member.child = Some(spawn_join(
            server,
            member,
            room_id,
            args.delay_ms,
            narration,
        )?);
        let user_id = member.user.user_id.clone();
        let seen = watcher
            .run_until(Some(Instant::now() + STEP_TIMEOUT), |w| {
                in_call(w, room_id, &user_id)
            })
            .await?;
        ensure!(
            seen,
            "{name} did not show up in the call within {STEP_TIMEOUT:?}"
        );
        watcher.show_log_line(format!("        the watcher shows {name} in the call"));
        step += 1;
    }

    // bob leaves cleanly.
    let bob = &mut members[1];
    watcher.show_log_line(format!(
        "step {step}: {} presses Ctrl-C: a clean leave",
        bob.name
    ));
    let child = bob.child.take().context("bob's process")?;
    interrupt_and_wait(child, bob.name, watcher).await?;
    let user_id = bob.user.user_id.clone();
    let gone = watcher
        .run_until(Some(Instant::now() + STEP_TIMEOUT), |w| {
            !in_call(w, room_id, &user_id)
        })
        .await?;
    ensure!(
        gone,
        "bob still shows in the call {STEP_TIMEOUT:?} after leaving"
    );
    watcher.show_log_line("        the watcher shows bob gone".to_owned());
    step += 1;

    // carol crashes.
    let carol = &mut members[2];
    watcher.show_log_line(format!(
        "step {step}: {}'s process is killed (SIGKILL): no leave is sent; her delayed leave \
         should fire within {} ms",
        carol.name, args.delay_ms
    ));
    let mut child = carol.child.take().context("carol's process")?;
    let killed_at = Instant::now();
    child.kill().await.context("killing carol's process")?;
    let user_id = carol.user.user_id.clone();
    let limit = Duration::from_millis(args.delay_ms) + CRASH_MARGIN;
    let gone = watcher
        .run_until(Some(killed_at + limit), |w| !in_call(w, room_id, &user_id))
        .await?;
    if !gone {
        bail!("carol still shows in the call {limit:?} after her process was killed");
    }
    watcher.show_log_line(format!(
        "        the watcher shows carol gone {:.1} s after the kill: her delayed leave fired",
        killed_at.elapsed().as_secs_f64()
    ));
    step += 1;

    // alice leaves; the call ends.
    let alice = &mut members[0];
    watcher.show_log_line(format!(
        "step {step}: {} presses Ctrl-C: the last participant leaves",
        alice.name
    ));
    let child = alice.child.take().context("alice's process")?;
    interrupt_and_wait(child, alice.name, watcher).await?;
    let ended = watcher
        .run_until(Some(Instant::now() + STEP_TIMEOUT), |w| {
            w.room_call_participants(room_id).is_empty()
        })
        .await?;
    ensure!(ended, "the call did not end within {STEP_TIMEOUT:?}");
    watcher.show_log_line("        the call has ended".to_owned());
    Ok(())
}

fn in_call(watcher: &Watcher, room_id: &RoomId, user_id: &str) -> bool {
    watcher
        .room_call_participants(room_id)
        .iter()
        .any(|p| p.user_id.as_str() == user_id)
}

/// Login arguments for an `rtc` run as `user`, with its access token and device.
fn token_login(server: &TestHomeserver, user: &TestUser) -> LoginArgs {
    LoginArgs {
        homeserver: server.base_url().to_owned(),
        user: user.user_id.clone(),
        password: None,
        access_token: Some(user.access_token.clone()),
        device_id: Some(user.device_id.clone()),
        store: None,
        store_passphrase: None,
    }
}

/// Starts `rtc join` for `member`; its output goes to the log pane, prefixed with its name.
fn spawn_join(
    server: &TestHomeserver,
    member: &Member,
    room_id: &RoomId,
    delay_ms: u64,
    narration: &mpsc::UnboundedSender<String>,
) -> Result<Child> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut child = Command::new(exe)
        .arg("join")
        .arg(room_id.as_str())
        .args(["--homeserver", server.base_url()])
        .args(["--user", &member.user.user_id])
        .args(["--access-token", &member.user.access_token])
        .args(["--device-id", &member.user.device_id])
        .args(["--delay-ms", &delay_ms.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting `rtc join` for {}", member.name))?;
    let name = member.name;
    if let Some(stdout) = child.stdout.take() {
        forward(
            BufReader::new(stdout),
            format!("[{name}]"),
            narration.clone(),
        );
    }
    if let Some(stderr) = child.stderr.take() {
        forward(
            BufReader::new(stderr),
            format!("[{name} stderr]"),
            narration.clone(),
        );
    }
    Ok(child)
}

fn forward(
    reader: BufReader<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    prefix: String,
    narration: mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut lines = reader.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if narration.send(format!("        {prefix} {line}")).is_err() {
                break;
            }
        }
    });
}

/// Sends Ctrl-C to `child` and waits (showing the watcher meanwhile) until it exits with 0.
async fn interrupt_and_wait(mut child: Child, name: &str, watcher: &mut Watcher) -> Result<()> {
    let pid = child
        .id()
        .with_context(|| format!("{name}'s process already exited"))?;
    signal::send_interrupt(pid)?;
    let deadline = Instant::now() + EXIT_TIMEOUT;
    tokio::select! {
        status = child.wait() => {
            let status = status.with_context(|| format!("waiting for {name}'s process"))?;
            ensure!(status.success(), "{name}'s process exited with {status} after Ctrl-C");
            Ok(())
        }
        // Keep the table live while the child leaves.
        shown = watcher.run_until(Some(deadline), |_| false) => {
            shown?;
            bail!("{name}'s process did not exit within {EXIT_TIMEOUT:?} of Ctrl-C");
        }
    }
}
