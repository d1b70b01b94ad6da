//! The command line: subcommands and their arguments.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use matrix_sdk::ruma::OwnedRoomOrAliasId;

/// Longest sticky duration a server honours (MSC4354): one hour.
const MAX_STICKY_MS: u64 = 3_600_000;
/// Longest delayed-leave delay we accept on the command line: one day.
const MAX_DELAY_MS: u64 = 86_400_000;

/// MatrixRTC calls from the command line: watch, join, leave, replay, demo.
#[derive(Debug, Parser)]
#[command(name = "rtc", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show every active call and its participants live, and the events that were rejected.
    Watch(WatchArgs),
    /// Join a call and stay in it until Ctrl-C (then leave cleanly). If the process is
    /// killed instead, the server sends our delayed leave after --delay-ms.
    Join(JoinArgs),
    /// End this device's membership of a call, without joining: fires our pending delayed
    /// leave, or sends a leave for the membership the call shows for this device.
    Leave(LeaveArgs),
    /// Replay a JSON Lines workload (one sticky-events extension response per line)
    /// through the offline receiving path and print one JSON line of figures.
    Ingest(IngestArgs),
    /// Start a local Synapse and run a scripted story: three participants join, one leaves,
    /// one crashes and is removed by its delayed leave.
    Demo(DemoArgs),
}

/// How to log in: a password, or an access token from an earlier login.
#[derive(Debug, Clone, Args)]
pub(crate) struct LoginArgs {
    /// Base URL of the homeserver's client API, e.g. `https://matrix.example.org`.
    #[arg(long, value_name = "URL", value_parser = parse_homeserver)]
    pub(crate) homeserver: String,
    /// The user: a full Matrix ID (`@alice:example.org`), or a localpart with --password.
    #[arg(long, value_name = "ID")]
    pub(crate) user: String,
    /// Log in with this password (creates a new device).
    #[arg(
        long,
        value_name = "PASSWORD",
        required_unless_present = "access_token",
        conflicts_with = "access_token"
    )]
    pub(crate) password: Option<String>,
    /// Use this access token instead of logging in.
    #[arg(long, value_name = "TOKEN")]
    pub(crate) access_token: Option<String>,
    /// The device of --access-token (asked from the server when omitted).
    #[arg(long, value_name = "DEVICE", requires = "access_token")]
    pub(crate) device_id: Option<String>,
    /// Keep the client's state and encryption keys in SQLite databases in this directory
    /// (created if missing), so that a later run as the same device reads encrypted calls
    /// again. One directory per device: use it with --access-token and --device-id. Default:
    /// everything in memory, gone at exit.
    #[arg(long, value_name = "DIR")]
    pub(crate) store: Option<PathBuf>,
    /// Encrypt the --store databases with this passphrase.
    #[arg(
        long,
        value_name = "PASSPHRASE",
        env = "RTC_STORE_PASSPHRASE",
        hide_env_values = true,
        requires = "store"
    )]
    pub(crate) store_passphrase: Option<String>,
}

/// `rtc watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// How to log in.
    #[command(flatten)]
    pub(crate) login: LoginArgs,
    /// Show only this room (an ID or an alias); repeat for more rooms. Default: every room.
    #[arg(long = "room", value_name = "ROOM", value_parser = parse_room)]
    pub(crate) rooms: Vec<OwnedRoomOrAliasId>,
    /// Print one JSON object per change on stdout instead of the live table (no ANSI).
    #[arg(long)]
    pub(crate) plain: bool,
}

/// `rtc join`.
#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// How to log in.
    #[command(flatten)]
    pub(crate) login: LoginArgs,
    /// The room (an ID or an alias). We must already be joined to it.
    #[arg(value_name = "ROOM", value_parser = parse_room)]
    pub(crate) room: OwnedRoomOrAliasId,
    /// The call's slot (`{application}#{name}`).
    #[arg(long, value_name = "SLOT", default_value = "m.call#ROOM", value_parser = parse_slot)]
    pub(crate) slot: String,
    /// Delay of our delayed leave (the dead-man switch), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_DELAY_MS))]
    pub(crate) delay_ms: u64,
    /// Sticky duration of our member events, in milliseconds (at most one hour).
    #[arg(long, value_name = "MS", default_value_t = MAX_STICKY_MS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_STICKY_MS))]
    pub(crate) sticky_ms: u64,
    /// Publish on this LiveKit JWT service instead of the one the homeserver advertises.
    #[arg(long, value_name = "URL")]
    pub(crate) livekit_url: Option<String>,
    /// Once joined, get LiveKit credentials for our membership and print the SFU URL, our
    /// LiveKit identity, the LiveKit room, the expiry and the JWT. The JWT is a bearer secret:
    /// it is printed only with this flag.
    #[arg(long)]
    pub(crate) print_credentials: bool,
}

/// `rtc leave`.
#[derive(Debug, Args)]
pub(crate) struct LeaveArgs {
    /// How to log in. Use the access token and device of the membership to end.
    #[command(flatten)]
    pub(crate) login: LoginArgs,
    /// The room (an ID or an alias).
    #[arg(value_name = "ROOM", value_parser = parse_room)]
    pub(crate) room: OwnedRoomOrAliasId,
    /// The call's slot (`{application}#{name}`).
    #[arg(long, value_name = "SLOT", default_value = "m.call#ROOM", value_parser = parse_slot)]
    pub(crate) slot: String,
}

/// `rtc ingest`.
#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// The workload: JSON Lines, one sticky-events extension response per line.
    #[arg(value_name = "FILE.jsonl")]
    pub(crate) file: PathBuf,
}

/// `rtc demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Delay of each participant's delayed leave, in milliseconds: how long the crashed
    /// participant stays visible.
    #[arg(long, value_name = "MS", default_value_t = 4_000,
          value_parser = clap::value_parser!(u64).range(1_000..=60_000))]
    pub(crate) delay_ms: u64,
}

fn parse_homeserver(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or("the homeserver URL must start with http:// or https://")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("the homeserver URL has no host".to_owned());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn parse_room(value: &str) -> Result<OwnedRoomOrAliasId, String> {
    OwnedRoomOrAliasId::try_from(value)
        .map_err(|error| format!("not a room ID (`!id`) or alias (`#alias:server`): {error}"))
}

fn parse_slot(value: &str) -> Result<String, String> {
    match value.split_once(matrix_rtc_membership::wire::SLOT_SEPARATOR) {
        Some((application, name)) if !application.is_empty() && !name.is_empty() => {
            Ok(value.to_owned())
        }
        _ => Err("a slot looks like `{application}#{name}`, e.g. `m.call#ROOM`".to_owned()),
    }
}
