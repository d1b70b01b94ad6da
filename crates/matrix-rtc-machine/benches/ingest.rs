//! The whole receiving path of one client, on recorded side-connection pages: the one sticky
//! parser, then the `RtcMachine` (sticky map, membership model, published lists and their
//! diffs), against parsing the same JSON into `serde_json::Value` (the baseline), in the same
//! run.
//!
//! Workloads are read from `$STICKY_BENCH_DIR/sticky-{small,large}.jsonl`, by default
//! `<workspace>/target/bench`; a missing file skips its preset. Generate them with
//! `python3 scripts/bench/gen_workload.py --preset P --out target/bench/sticky-P.jsonl`.
use std::{hint::black_box, path::PathBuf, time::Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use matrix_rtc_machine::{MachineConfig, Outcome, PageFlags, RequestKind, RtcMachine};
use matrix_sticky_events::{Receipt, parse_sticky_batch};
use ruma_common::{owned_device_id, owned_user_id};

const PRESETS: [&str; 2] = ["small", "large"];

fn bench_dir() -> PathBuf {
    match std::env::var_os("STICKY_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench")),
    }
}

fn load(preset: &str) -> Option<Vec<String>> {
    let path = bench_dir().join(format!("sticky-{preset}.jsonl"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipping preset {preset}: {} not found", path.display());
        return None;
    };
    Some(text.lines().map(str::to_owned).collect())
}

/// Every page through a fresh machine, member queries answered "joined", updates drained.
fn ingest(lines: &[String]) -> usize {
    let config = MachineConfig::new(
        owned_user_id!("@bench:localhost"),
        owned_device_id!("BENCH"),
        "b",
    );
    let mut machine = RtcMachine::new(config);
    let now = Instant::now();
    let receipt = Receipt::new(now, 1_795_668_868_000);
    let mut updates = 0;
    for line in lines {
        let Ok(batch) = parse_sticky_batch(line, receipt) else {
            continue;
        };
        machine.handle_sticky_batch(batch, PageFlags::new(true, false), now);
        loop {
            let mut answered = false;
            while let Some(request) = machine.poll_request() {
                let outcome = match request.kind() {
                    RequestKind::QueryMember { .. } => Outcome::Member { joined: true },
                    _ => Outcome::MissingRoomKey,
                };
                machine.handle_response(request.id(), outcome, now);
                answered = true;
            }
            while let Some(update) = machine.poll_update() {
                black_box(&update);
                updates += 1;
            }
            if !answered {
                break;
            }
        }
    }
    black_box(machine.stats());
    updates
}

fn parse_only(lines: &[String]) -> usize {
    lines
        .iter()
        .map(|line| black_box(serde_json::from_str::<serde_json::Value>(line).map_or(0, |_| 1)))
        .sum()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args().sample_size(10);
    for preset in PRESETS {
        let Some(lines) = load(preset) else { continue };
        let bytes: u64 = lines.iter().map(|line| line.len() as u64).sum();
        let mut group = criterion.benchmark_group(format!("machine-ingest-{preset}"));
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function("serde_json::Value (baseline)", |b| {
            b.iter(|| parse_only(&lines))
        });
        group.bench_function("parse_sticky_batch + RtcMachine", |b| {
            b.iter(|| ingest(&lines))
        });
        group.finish();
        // A plain summary with the ratio, over a few rounds each.
        let time = |f: &dyn Fn() -> usize| {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let started = Instant::now();
                black_box(f());
                best = best.min(started.elapsed().as_secs_f64());
            }
            best
        };
        let baseline = time(&|| parse_only(&lines));
        let machine = time(&|| ingest(&lines));
        println!(
            "summary {preset}: baseline {:.1} ms, machine {:.1} ms, ratio {:.2}",
            baseline * 1e3,
            machine * 1e3,
            machine / baseline
        );
    }
    criterion.final_summary();
}
