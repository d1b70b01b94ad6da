//! `rtc watch`: every active call and its participants, live; and what was rejected, and why.
//!
//! [`Watcher`] is also the in-process watcher of `rtc demo`.
mod format;
mod shown;
mod terminal;

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
use matrix_sdk_rtc::{
    CallId, Diagnostic, DiagnosticEvent, MissingFeature, Participant, RtcClient, SessionChange,
    SessionUpdate,
};
use tokio::{sync::mpsc, time::Instant};

use self::shown::{Shown, Step};
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
    changes: BoxedStream<SessionUpdate>,
    diagnostics: BoxedStream<DiagnosticEvent>,
    /// The calls and participants the output has shown (of the rooms shown).
    shown: Shown,
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
            shown: Shown::default(),
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
        self.add_log_line(line);
        if self.mode == (Mode::Table { tty: true }) {
            self.redraw();
        }
    }

    /// [`show_log_line`](Self::show_log_line) without redrawing the terminal.
    fn add_log_line(&mut self, line: String) {
        // Change lines carry what room members sent: made safe for the terminal here, where
        // every log line passes (the plain JSON output escapes them by itself).
        let line = format!("{} {}", format::clock(), terminal::safe(&line));
        match self.mode {
            Mode::Plain => eprintln!("{line}"),
            Mode::Table { tty: false } => println!("{line}"),
            Mode::Table { tty: true } => {
                self.log.push_back(line);
                while self.log.len() > LOG_LINES {
                    self.log.pop_front();
                }
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
                Some(update) = self.changes.next() => self.on_update(update),
                Some(event) = self.diagnostics.next() => self.on_diagnostic_event(&event),
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
            if let Some(Some(update)) = self.changes.next().now_or_never() {
                self.on_update(update);
            } else if let Some(Some(event)) = self.diagnostics.next().now_or_never() {
                self.on_diagnostic_event(&event);
            } else {
                return;
            }
        }
    }

    fn shows(&self, room_id: &RoomId) -> bool {
        self.rooms.is_empty() || self.rooms.contains(room_id)
    }

    fn on_update(&mut self, update: SessionUpdate) {
        match update {
            SessionUpdate::Change(change) => self.on_change(&change),
            SessionUpdate::Resync { missed, calls } => {
                let calls: Vec<(CallId, Vec<Arc<Participant>>)> = calls
                    .into_iter()
                    .filter(|(call, _)| self.shows(call.room_id()))
                    .map(|(call, participants)| (call, participants.into_iter().collect()))
                    .collect();
                self.on_resync(missed, calls);
            }
            _ => {}
        }
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
        self.shown.apply(change);
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

    /// The watcher fell behind and missed `missed` changes: say so, then show what makes the
    /// output true again (who left and who joined meanwhile, the calls that ended and started).
    fn on_resync(&mut self, missed: u64, calls: Vec<(CallId, Vec<Arc<Participant>>)>) {
        let active = calls.len();
        let steps = self.shown.resync(calls);
        match self.mode {
            Mode::Plain => {
                print_line(&format::resync_json(missed, active));
                for step in &steps {
                    let object = match step {
                        Step::Change(change) => format::change_json(change),
                        Step::LeftOnResync(participant) => {
                            Some(format::left_on_resync_json(participant))
                        }
                    };
                    if let Some(object) = object {
                        print_line(&object);
                    }
                }
            }
            Mode::Table { tty } => {
                // One redraw (or one table) for the whole catch-up, however long.
                self.add_log_line(format::resync_line(missed, active));
                for step in &steps {
                    let line = match step {
                        Step::Change(change) => format::change_line(change),
                        Step::LeftOnResync(participant) => {
                            Some(format::left_on_resync_line(participant))
                        }
                    };
                    if let Some(line) = line {
                        self.add_log_line(line);
                    }
                }
                if tty {
                    self.redraw();
                } else {
                    println!("{}", self.table());
                }
            }
        }
    }

    fn on_diagnostic_event(&mut self, event: &DiagnosticEvent) {
        match event {
            DiagnosticEvent::Diagnostic(diagnostic) => self.on_diagnostic(diagnostic),
            DiagnosticEvent::Missed { missed } => {
                let Mode::Table { tty } = self.mode else {
                    print_line(&format::diagnostics_missed_json(*missed));
                    return;
                };
                let line = format!(
                    "{} {}",
                    format::clock(),
                    format::diagnostics_missed_line(*missed)
                );
                if tty {
                    self.push_rejected(line);
                } else {
                    println!("rejected: {line}");
                }
            }
            _ => {}
        }
    }

    fn on_diagnostic(&mut self, diagnostic: &Diagnostic) {
        // A defect of a whole response (no room) concerns every room.
        if let Some(room) = format::diagnostic_room(diagnostic)
            && !self.rooms.is_empty()
            && !self.rooms.iter().any(|shown| shown.as_str() == room)
        {
            return;
        }
        match self.mode {
            Mode::Plain => print_line(&format::diagnostic_json(diagnostic)),
            Mode::Table { tty } => {
                let line = format!(
                    "{} {}",
                    format::clock(),
                    terminal::safe(&format::diagnostic_line(diagnostic))
                );
                self.rejected_total += 1;
                if tty {
                    self.push_rejected(line);
                } else {
                    println!("rejected: {line}");
                }
            }
        }
    }

    fn push_rejected(&mut self, line: String) {
        self.rejected.push_back(line);
        while self.rejected.len() > REJECTED_LINES {
            self.rejected.pop_front();
        }
        self.redraw();
    }

    /// The calls shown, with their participants, as text.
    fn table(&self) -> String {
        let calls: Vec<CallId> = self
            .rtc
            .active_calls()
            .into_iter()
            .filter(|call| self.shows(call.room_id()))
            .collect();
        let mut out = String::new();
        if calls.is_empty() {
            out.push_str("  (no active call)\n");
        }
        for call in calls {
            let participants: Vec<_> = self.rtc.call(&call).participants().into_iter().collect();
            out.push_str(&format::call_table(&call, &participants));
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
