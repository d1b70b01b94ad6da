//! `rtc`: a command-line MatrixRTC client built on the public API of `matrix-sdk-rtc`.
//!
//! - `rtc watch`: a live table of every active call and its participants, plus the events
//!   that were rejected and why (`--plain`: one JSON object per change, for scripts);
//! - `rtc join` / `rtc leave`: take part in a call (with the server-side dead-man switch) or
//!   end this device's membership;
//! - `rtc ingest`: replay a recorded workload through the offline receiving path and report
//!   throughput and memory;
//! - `rtc demo`: a local Synapse and a scripted story (join, leave, crash) in one terminal.
//!
//! Exit codes: 0 on success, 2 for usage errors (from clap), 1 for every other error.
// matrix-sdk's sync future is deep: proving it `Send` for `tokio::spawn` needs more room.
#![recursion_limit = "256"]

mod cli;
mod connect;
mod demo;
mod ingest;
mod membership;
mod requests;
mod signal;
mod watch;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // Usage errors print clap's message and exit with code 2 here.
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    // Background tasks (sync loops, child readers) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Watch(args) => watch::run(args).await,
        Command::Join(args) => membership::join(args).await,
        Command::Leave(args) => membership::leave(args).await,
        Command::Ingest(args) => ingest::run(&args),
        Command::Demo(args) => demo::run(args).await,
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: errors of our own crates only, so that the table and
/// the JSON lines on stdout stay readable).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("rtc=error,matrix_sdk_rtc=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
