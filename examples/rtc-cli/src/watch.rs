//! `rtc watch`: every active call and its participants, live; and what was rejected, and why.
//!
//! [`Watcher`] is also the in-process watcher of `rtc demo`.
mod format;

use std::{
    collections::{HashSet, VecDeque},
    io::{IsTerminal as _, Write as _},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use anyhow::Result;
use futures_util::{FutureExt as _, Stream, StreamExt as _};
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use matrix_sdk_rtc::{Diagnostic, MissingFeature, Participant, RtcClient, SessionChange};
use tokio::{sync::mpsc, time::Instant};

use crate::{cli::WatchArgs, connect::Connected, signal};

/// Lines kept in the log pane and in the rejected-events pane.
const LOG_LINES: usize = 16;
const REJECTED_LINES: usize = 6;

/// `rtc watch`.
pub(crate) async fn run(args: WatchArgs) -> Result<()> {
    let needed = [MissingFeature::StickyEvents, MissingFeature::SlidingSync];
    let mut connected = Connected::login(&args.login, &needed).await?;
    let mut rooms = HashSet::new();
    for room in &args.rooms {
        rooms.insert(connected.room_id(room).await?);
    }
    let mode = if args.plain {
        Mode::Plain
    } else {
        Mode::Table {
            tty: std::io::stdout().is_terminal(),
        }
    };
    let title = format!(
        "rtc watch: {} ({}) on {}",
        connected.user_id, connected.device_id, connected.homeserver
    );
    let mut watcher = Watcher::new(connected.rtc.clone(), mode, title, rooms);
    connected.start().await?;
    watcher.ready(&connected);

    tokio::select! {
        outcome = watcher.run_until(None, |_| false) => { outcome?; }
        interrupted = signal::interrupted() => interrupted?,
    }
    connected.shutdown();
    Ok(())
}

/// How the watcher shows what happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One JSON object per change on stdout.
    Plain,
    /// The table of calls with a log pane: redrawn in place on a terminal, printed after
    /// each change otherwise.
    Table {
        /// Whether stdout is a terminal (redraw with ANSI escapes).
        tty: bool,
    },
}

type BoxedStream<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// Follows the session changes and diagnostics of one [`RtcClient`] and shows them.
pub(crate) struct Watcher {
    rtc: RtcClient,
    mode: Mode,
    title: String,
    /// Only these rooms (all when empty).
    rooms: HashSet<OwnedRoomId>,
    changes: BoxedStream<SessionChange>,
    diagnostics: BoxedStream<Diagnostic>,
    /// Extra lines for the log pane (the demo's narration and its children's output).
    narration: Option<mpsc::UnboundedReceiver<String>>,
    log: VecDeque<String>,
    rejected: VecDeque<String>,
    rejected_total: usize,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("mode", &self.mode)
            .field("title", &self.title)
            .field("rooms", &self.rooms)
            .field("rejected_total", &self.rejected_total)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Subscribes to `rtc`'s changes: call it before [`RtcClient::start`] so that nothing
    /// is missed.
    pub(crate) fn new(
        rtc: RtcClient,
        mode: Mode,
        title: String,
        rooms: HashSet<OwnedRoomId>,
    ) -> Self {
        Self {
            changes: Box::pin(rtc.subscribe_session_changes()),
            diagnostics: Box::pin(rtc.subscribe_diagnostics()),
            rtc,
            mode,
            title,
            rooms,
            narration: None,
            log: VecDeque::new(),
            rejected: VecDeque::new(),
            rejected_total: 0,
        }
    }

    /// A channel whose lines go to the log pane (between changes, in arrival order).
    pub(crate) fn narration_channel(&mut self) -> mpsc::UnboundedSender<String> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.narration = Some(receiver);
        sender
    }

    /// Announces that the driver runs: a `ready` object in plain mode, the table otherwise.
    pub(crate) fn ready(&mut self, connected: &Connected) {
        match self.mode {
            Mode::Plain => {
                let mut rooms: Vec<_> = self.rooms.iter().map(ToString::to_string).collect();
                rooms.sort();
                print_line(&serde_json::json!({
                    "event": "ready",
                    "ts": format::now_ms(),
                    "homeserver": connected.homeserver,
                    "user_id": connected.user_id,
                    "device_id": connected.device_id,
                    "rooms": rooms,
                }));
            }
            Mode::Table { .. } => self.show_log_line(format!(
                "watching as {} ({})",
                connected.user_id, connected.device_id
            )),
        }
    }

    /// Adds a line to the log pane (printed at once in plain text when not on a terminal;
    /// to stderr in plain mode, which keeps stdout pure JSON).
    pub(crate) fn show_log_line(&mut self, line: String) {
        let line = format!("{} {line}", format::clock());
        match self.mode {
            Mode::Plain => eprintln!("{line}"),
            Mode::Table { tty: false } => println!("{line}"),
            Mode::Table { tty: true } => {
                self.log.push_back(line);
                while self.log.len() > LOG_LINES {
                    self.log.pop_front();
                }
                self.redraw();
            }
        }
    }

    /// The participants of the room call of `room_id` now.
    pub(crate) fn room_call_participants(&self, room_id: &RoomId) -> Vec<Arc<Participant>> {
        self.rtc
            .room_call(room_id)
            .participants()
            .into_iter()
            .collect()
    }

    /// Shows what arrives until `done` holds (checked first, then after every update) or
    /// until `deadline`. Returns whether `done` held.
    pub(crate) async fn run_until(
        &mut self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<bool> {
        if done(self) {
            self.drain();
            return Ok(true);
        }
        let timeout = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                Some(change) = self.changes.next() => self.on_change(&change),
                Some(diagnostic) = self.diagnostics.next() => self.on_diagnostic(&diagnostic),
                Some(line) = next_line(&mut self.narration) => self.show_log_line(line),
                _ = tick.tick() => {
                    // Keeps "joined since" and "expires in" current.
                    if self.mode == (Mode::Table { tty: true }) {
                        self.redraw();
                    }
                    continue;
                }
                () = &mut timeout => return Ok(false),
            }
            if done(self) {
                self.drain();
                return Ok(true);
            }
        }
    }

    /// Shows the changes and diagnostics that are already waiting (a condition often holds
    /// before the rest of its batch has been shown).
    fn drain(&mut self) {
        loop {
            if let Some(Some(change)) = self.changes.next().now_or_never() {
                self.on_change(&change);
            } else if let Some(Some(diagnostic)) = self.diagnostics.next().now_or_never() {
                self.on_diagnostic(&diagnostic);
            } else {
                return;
            }
        }
    }

    fn shows(&self, room_id: &RoomId) -> bool {
        self.rooms.is_empty() || self.rooms.contains(room_id)
    }

    fn on_change(&mut self, change: &SessionChange) {
        let room_id = match change {
            SessionChange::SessionStarted { room_id, .. }
            | SessionChange::SessionEnded { room_id, .. } => room_id,
            SessionChange::Joined(participant)
            | SessionChange::Updated {
                new: participant, ..
            }
            | SessionChange::Left { participant, .. } => &participant.room_id,
            _ => return,
        };
        if !self.shows(room_id) {
            return;
        }
        match self.mode {
            Mode::Plain => {
                if let Some(object) = format::change_json(change) {
                    print_line(&object);
                }
            }
            Mode::Table { tty } => {
                let Some(line) = format::change_line(change) else {
                    return;
                };
                self.show_log_line(line);
                if !tty {
                    println!("{}", self.table());
                }
            }
        }
    }

    fn on_diagnostic(&mut self, diagnostic: &Diagnostic) {
        let Some(room_id) = format::diagnostic_room(diagnostic) else {
            return;
        };
        if !self.shows(room_id) {
            return;
        }
        match self.mode {
            Mode::Plain => print_line(&format::diagnostic_json(diagnostic)),
            Mode::Table { tty } => {
                let line = format!(
                    "{} {}",
                    format::clock(),
                    format::diagnostic_line(diagnostic)
                );
                self.rejected_total += 1;
                if tty {
                    self.rejected.push_back(line);
                    while self.rejected.len() > REJECTED_LINES {
                        self.rejected.pop_front();
                    }
                    self.redraw();
                } else {
                    println!("rejected: {line}");
                }
            }
        }
    }

    /// The calls shown, with their participants, as text.
    fn table(&self) -> String {
        let mut calls: Vec<_> = self
            .rtc
            .active_calls()
            .into_iter()
            .filter(|(room_id, _)| self.shows(room_id))
            .collect();
        calls.sort();
        let mut out = String::new();
        if calls.is_empty() {
            out.push_str("  (no active call)\n");
        }
        for (room_id, slot_id) in calls {
            let Ok(call) = self.rtc.call(&room_id, &slot_id) else {
                continue;
            };
            let participants: Vec<_> = call.participants().into_iter().collect();
            out.push_str(&format::call_table(&room_id, &slot_id, &participants));
        }
        out
    }

    fn redraw(&self) {
        let mut screen = String::new();
        // Home, clear the screen.
        screen.push_str("\x1b[H\x1b[2J");
        screen.push_str(&format!(
            "\x1b[1m{}\x1b[0m   {}\n\n",
            self.title,
            format::clock()
        ));
        screen.push_str(&self.table());
        screen.push_str("\n\x1b[1mLog\x1b[0m\n");
        for line in &self.log {
            screen.push_str(&format!("  {line}\n"));
        }
        screen.push_str(&format!(
            "\n\x1b[1mRejected events\x1b[0m ({} in all)\n",
            self.rejected_total
        ));
        for line in &self.rejected {
            screen.push_str(&format!("  {line}\n"));
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(screen.as_bytes());
        let _ = stdout.flush();
    }
}

async fn next_line(receiver: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

fn print_line(value: &serde_json::Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}
