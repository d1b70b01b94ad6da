//! A random schedule, drawn from one seed: who takes part, the rooms, the server, the network,
//! the timings, the app commands and the faults over time windows, then a quiet tail.
//!
//! Every time here is in milliseconds since the start of the run.
use matrix_rtc_membership::OwnMembershipConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ruma_common::{OwnedDeviceId, OwnedRoomId, OwnedUserId};

/// How the simulated server treats delayed events (MSC4140).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DelayedMode {
    /// Supported (as Synapse does it).
    Supported,
    /// Advertised, but scheduling is refused (`RequestOutcome::Unsupported`, Synapse with the
    /// feature disallowed): the machine joins with `dead_man_switch: false`.
    Refused,
    /// Not advertised at all (`ServerCapabilities::delayed_events` false), and refused too.
    NotAdvertised,
}

impl DelayedMode {
    pub(crate) fn schedules(self) -> bool {
        self == Self::Supported
    }
}

/// One client: a device of a user, with its own clock offset.
#[derive(Debug, Clone)]
pub(crate) struct ClientPlan {
    pub(crate) user: usize,
    pub(crate) device: OwnedDeviceId,
    /// Its wall clock minus the server's, in ms.
    pub(crate) clock_offset_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct RoomPlan {
    pub(crate) id: OwnedRoomId,
    pub(crate) encrypted: bool,
}

/// Delivery parameters of one run (see `sim.rs` for the bound they give).
#[derive(Debug, Clone)]
pub(crate) struct NetPlan {
    /// One-way latency of a healthy link, uniformly in `min..=max` (ms).
    pub(crate) latency_min: u64,
    pub(crate) latency_max: u64,
    /// Probability that a timeline delivery of a sticky event is lost.
    pub(crate) timeline_loss: f64,
    /// Probability that a timeline delivery is duplicated (a second copy later).
    pub(crate) timeline_dup: f64,
    /// Events per side-connection page at most.
    pub(crate) page_limit: usize,
    /// Room keys reach other devices within this (ms).
    pub(crate) key_delay_max: u64,
    /// Probability that the room-key stream lags: the machine is told with
    /// `handle_room_keys_lagged` up to a second later instead of `handle_room_keys`.
    pub(crate) key_lag: f64,
    /// Event ids in creation order (`false`: hash-like ids in random order, so that ties of
    /// one millisecond may go either way).
    pub(crate) ordered_event_ids: bool,
    /// Serve sticky events without the remaining-lifetime field (the receivers then fall back
    /// to `origin_server_ts` and their own, offset, clocks).
    pub(crate) without_ttl: bool,
}

/// Something that happens to one client (or to the server) over a window of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client is cut off: its requests get no answer (or a network error at once with
    /// `refuse`), answers to it are lost, and nothing is delivered to it.
    Partition { refuse: bool },
    /// Every one-way trip of the client takes this long (ms).
    Slow { latency: u64 },
    /// The server performs the client's requests, but the answers are lost.
    LoseAnswers,
    /// The server answers every HTTP request with 503, doing nothing.
    ServerError,
    /// The server answers every HTTP request with 429, doing nothing.
    RateLimited { retry_after_ms: Option<u64> },
}

impl Fault {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Partition { refuse: false } => "partition",
            Self::Partition { refuse: true } => "refused",
            Self::Slow { .. } => "slow",
            Self::LoseAnswers => "lost-answers",
            Self::ServerError => "5xx",
            Self::RateLimited { .. } => "429",
        }
    }

    /// Whether it stops or slows what the client receives (its view may lag while it lasts).
    pub(crate) fn disturbs_delivery(self) -> bool {
        matches!(self, Self::Partition { .. } | Self::Slow { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// `None`: the server (every client).
    pub(crate) client: Option<usize>,
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) fault: Fault,
}

/// An app command or a world event at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The app joins the room call (with a fresh member id).
    Join { client: usize, room: usize },
    /// The app leaves the room call.
    Leave { client: usize, room: usize },
    /// The app changes its membership's transport (a refresh of the same member).
    Update { client: usize, room: usize },
    /// The process dies: the machine is dropped.
    Crash { client: usize },
    /// The process starts again from what it persisted; the app re-joins its interrupted
    /// calls (with new member ids) when `rejoin`.
    Restart { client: usize, rejoin: bool },
    /// The side connection drops and a fresh one replays every live event.
    SideRestart { client: usize },
    /// A user leaves the room (skipped while one of its devices is in a call there).
    RoomLeave { user: usize, room: usize },
    /// A user (re)joins the room.
    RoomJoin { user: usize, room: usize },
    /// A moderator redacts one live member event of the room (the `pick`-th, modulo).
    Redact { room: usize, pick: usize },
    /// The hostile member floods the room.
    Hostile { room: usize, count: usize },
}

impl Action {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Update { .. } => "update",
            Self::Crash { .. } => "crash",
            Self::Restart { .. } => "restart",
            Self::SideRestart { .. } => "side-restart",
            Self::RoomLeave { .. } => "room-leave",
            Self::RoomJoin { .. } => "room-join",
            Self::Redact { .. } => "redaction",
            Self::Hostile { .. } => "hostile-flood",
        }
    }
}

/// Everything one run does, drawn from its seed.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) users: Vec<OwnedUserId>,
    pub(crate) clients: Vec<ClientPlan>,
    pub(crate) rooms: Vec<RoomPlan>,
    /// A member flooding the rooms with invented slots and undecryptable envelopes.
    pub(crate) hostile: Option<OwnedUserId>,
    pub(crate) delayed: DelayedMode,
    pub(crate) timings: OwnMembershipConfig,
    pub(crate) hold_limit_ms: u64,
    pub(crate) net: NetPlan,
    /// Actions in time order.
    pub(crate) actions: Vec<(u64, Action)>,
    pub(crate) windows: Vec<Window>,
    /// No action or fault from here on.
    pub(crate) quiet_from: u64,
    /// The end of the run.
    pub(crate) end: u64,
}

/// The own-membership timings of every run: fast, with `D >= 3R` and a round trip well
/// within the request timeout.
fn timings(rng: &mut ChaCha8Rng, delayed: DelayedMode) -> OwnMembershipConfig {
    let sticky_duration_ms = if delayed == DelayedMode::Supported && rng.random_bool(0.6) {
        3_600_000
    } else {
        // Short lifetimes exercise expiry and refreshes; without a dead-man switch they also
        // bound how long a crashed client's ghost lasts.
        rng.random_range(20_000..=40_000)
    };
    OwnMembershipConfig {
        delay_ms: 3_000,
        restart_interval_ms: 1_000,
        request_timeout_ms: 1_000,
        network_retry_wait_ms: 500,
        rate_limit_default_wait_ms: 1_000,
        rate_limit_max_wait_ms: 3_000,
        exhausted_retry_wait_ms: 2_000,
        sticky_duration_ms,
        no_switch_sticky_duration_ms: sticky_duration_ms,
        sync_grace_ms: 2_000,
        new_devices_min_interval_ms: 1_000,
        ..OwnMembershipConfig::default()
    }
}

impl Plan {
    pub(crate) fn generate(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n_clients = rng.random_range(2..=5usize);
        let mut users: Vec<OwnedUserId> = Vec::new();
        let mut clients = Vec::new();
        for i in 0..n_clients {
            // Sometimes a second device of an existing user.
            let user = if !users.is_empty() && rng.random_bool(0.25) {
                rng.random_range(0..users.len())
            } else {
                users.push(
                    OwnedUserId::try_from(format!("@u{}:sim.test", users.len()))
                        .expect("valid user id"),
                );
                users.len() - 1
            };
            let clock_offset_ms = if rng.random_bool(0.5) {
                rng.random_range(-5_000..=5_000)
            } else {
                0
            };
            clients.push(ClientPlan {
                user,
                device: format!("DEV{i}").into(),
                clock_offset_ms,
            });
        }
        let n_rooms = if rng.random_bool(0.7) { 1 } else { 2 };
        let rooms = (0..n_rooms)
            .map(|i| RoomPlan {
                id: OwnedRoomId::try_from(format!("!r{i}:sim.test")).expect("valid room id"),
                encrypted: rng.random_bool(0.35),
            })
            .collect();
        let hostile = rng
            .random_bool(0.25)
            .then(|| OwnedUserId::try_from("@mallory:sim.test").expect("valid user id"));
        let delayed = match rng.random_range(0..100) {
            0..85 => DelayedMode::Supported,
            85..95 => DelayedMode::Refused,
            _ => DelayedMode::NotAdvertised,
        };
        let timings = timings(&mut rng, delayed);
        let latency_min = rng.random_range(1..=20);
        let latency_max = latency_min + rng.random_range(0..=280);
        let net = NetPlan {
            latency_min,
            latency_max,
            timeline_loss: [0.0, 0.05, 0.3][rng.random_range(0..3)],
            timeline_dup: [0.0, 0.1][rng.random_range(0..2)],
            page_limit: [5, 10, 20, 100][rng.random_range(0..4)],
            key_delay_max: rng.random_range(1..=500),
            key_lag: [0.0, 0.2][rng.random_range(0..2)],
            ordered_event_ids: rng.random_bool(0.7),
            without_ttl: rng.random_bool(0.1),
        };
        let hold_limit_ms = [300, 1_000][rng.random_range(0..2)];
        let active = rng.random_range(8_000..=25_000u64);

        let mut actions = Vec::new();
        let n_actions = rng.random_range(3..=14);
        let mut crashed = vec![false; n_clients];
        let mut times: Vec<u64> = (0..n_actions)
            .map(|_| rng.random_range(0..active))
            .collect();
        times.sort_unstable();
        for at in times {
            let client = rng.random_range(0..n_clients);
            let room = rng.random_range(0..n_rooms);
            let action = match rng.random_range(0..100) {
                0..37 => Action::Join { client, room },
                37..52 => Action::Leave { client, room },
                52..55 => Action::Update { client, room },
                55..65 if !crashed[client] => {
                    crashed[client] = true;
                    Action::Crash { client }
                }
                55..65 => {
                    crashed[client] = false;
                    Action::Restart {
                        client,
                        rejoin: rng.random_bool(0.6),
                    }
                }
                65..71 => Action::SideRestart { client },
                71..75 => Action::RoomLeave {
                    user: clients[client].user,
                    room,
                },
                75..80 => Action::RoomJoin {
                    user: clients[client].user,
                    room,
                },
                80..88 => Action::Redact {
                    room,
                    pick: rng.random_range(0..64),
                },
                _ if hostile.is_some() => Action::Hostile {
                    room,
                    count: rng.random_range(5..=120),
                },
                _ => Action::Join { client, room },
            };
            actions.push((at, action));
        }
        // Most crashed clients come back before the quiet tail.
        for (client, crashed) in crashed.iter().enumerate() {
            if *crashed && rng.random_bool(0.7) {
                let at = active + rng.random_range(0..2_000);
                actions.push((
                    at,
                    Action::Restart {
                        client,
                        rejoin: rng.random_bool(0.5),
                    },
                ));
            }
        }
        // Users who left a room come back to it.
        for (user, _) in users.iter().enumerate() {
            for room in 0..n_rooms {
                if actions
                    .iter()
                    .any(|(_, a)| *a == Action::RoomLeave { user, room })
                {
                    actions.push((active + 2_000, Action::RoomJoin { user, room }));
                }
            }
        }
        actions.sort_by_key(|(at, _)| *at);

        let mut windows = Vec::new();
        for _ in 0..rng.random_range(0..=3) {
            let from = rng.random_range(0..active);
            let to = from + rng.random_range(300..=5_000);
            let client = rng.random_range(0..n_clients);
            let (client, fault) = match rng.random_range(0..100) {
                0..30 => (
                    Some(client),
                    Fault::Partition {
                        refuse: rng.random_bool(0.3),
                    },
                ),
                30..50 => (
                    Some(client),
                    Fault::Slow {
                        latency: rng.random_range(300..=1_500),
                    },
                ),
                50..70 => (Some(client), Fault::LoseAnswers),
                70..85 => (None, Fault::ServerError),
                _ => (
                    None,
                    Fault::RateLimited {
                        retry_after_ms: rng.random_bool(0.5).then(|| rng.random_range(100..=2_000)),
                    },
                ),
            };
            windows.push(Window {
                client,
                from,
                to,
                fault,
            });
        }
        let quiet_from = actions
            .iter()
            .map(|(at, _)| *at)
            .chain(windows.iter().map(|w| w.to))
            .max()
            .unwrap_or(0)
            .max(active);
        let mut plan = Self {
            seed,
            users,
            clients,
            rooms,
            hostile,
            delayed,
            timings,
            hold_limit_ms,
            net,
            actions,
            windows,
            quiet_from,
            end: 0,
        };
        // The tail: every delayed leave fires, every retry and rate-limit wait runs out, and
        // every view converges.
        plan.end = quiet_from + 8_000 + plan.delivery_bound();
        plan
    }

    /// The one-way latency bound of a healthy link (ms).
    pub(crate) fn latency_bound(&self) -> u64 {
        self.net.latency_max
    }

    /// The largest number of sticky events one flood adds at once.
    pub(crate) fn max_burst(&self) -> usize {
        self.actions
            .iter()
            .map(|(_, a)| match a {
                Action::Hostile { count, .. } => *count,
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// The delivery bound (ms): how long after the server's truth changed a healthy,
    /// caught-up client's published list may still differ. See `sim.rs`.
    pub(crate) fn delivery_bound(&self) -> u64 {
        let l = self.latency_bound();
        // Pages of a flood ahead of the change on the side connection, plus the honest events
        // sent at about the same time (a page or two).
        let pages = self.max_burst().div_ceil(self.net.page_limit) as u64 + 2;
        // The side connection: a poll in flight (L), the pages ahead (2L each), the page with
        // the change (L); publication held back until a caught-up page or the hold limit;
        // a member query for a sender not known yet (a local answer within L).
        self.hold_limit_ms + 2 * l + pages * 2 * l + l + self.skew() + 20
    }

    /// How far a receiver's expiry may be off the server's (ms): nothing with the remaining
    /// lifetime; without it, receivers derive expiry from their own, offset, clocks.
    pub(crate) fn skew(&self) -> u64 {
        if self.net.without_ttl {
            self.clients
                .iter()
                .map(|c| c.clock_offset_ms.unsigned_abs())
                .max()
                .unwrap_or(0)
        } else {
            0
        }
    }
}
