//! `rtc ingest`: a recorded workload through the driver's offline receiving path.
use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use matrix_sdk_rtc::{Limits, OfflineIngest, Receipt};
use serde_json::json;

use crate::cli::IngestArgs;

/// Feeds every line of the file to [`OfflineIngest`] (receipt: the moment the line is read)
/// and prints one JSON line of figures.
pub(crate) fn run(args: &IngestArgs) -> Result<()> {
    let path = &args.file;
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut ingest = OfflineIngest::new(Limits::default());
    let mut line = Vec::new();
    let (mut batches, mut rejected_batches, mut events, mut rejected_events) = (0u64, 0, 0, 0);
    let mut diagnostics = 0usize;

    let started = Instant::now();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            batches += 1;
            rejected_batches += 1;
            continue;
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        batches += 1;
        match ingest.ingest_response(text, receipt_now()) {
            Ok(stats) => {
                events += stats.events as u64;
                rejected_events += stats.rejected as u64;
            }
            Err(_) => rejected_batches += 1,
        }
        // Count and drop them as we go: the diagnostics of a hostile file must not pile up.
        diagnostics += ingest.take_diagnostics().len();
    }
    let elapsed = started.elapsed();

    let elapsed_ms = elapsed.as_secs_f64() * 1_000.0;
    let events_per_sec = if elapsed.is_zero() {
        0.0
    } else {
        events as f64 / elapsed.as_secs_f64()
    };
    let report = json!({
        "file": path.display().to_string(),
        "batches": batches,
        "rejected_batches": rejected_batches,
        "events": events,
        "rejected_events": rejected_events,
        "diagnostics": diagnostics,
        "elapsed_ms": (elapsed_ms * 1_000.0).round() / 1_000.0,
        "events_per_sec": events_per_sec.round(),
        "live_memberships": ingest.live_participants(),
        "active_calls": ingest.active_calls().len(),
        "sticky_entries": ingest.sticky_entries(),
        "peak_rss_kb": peak_rss_kb(),
    });
    println!("{report}");
    Ok(())
}

fn receipt_now() -> Receipt {
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    Receipt {
        instant: Instant::now(),
        wall_ms,
    }
}

/// The process's peak resident set size (`VmHWM` in `/proc/self/status`), in KiB; `None`
/// where that file is not available.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}
