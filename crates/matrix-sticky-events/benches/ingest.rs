//! Ingest benchmark: the standard sticky workloads through `parse_sticky_batch` and the map,
//! against parsing the same JSON into `serde_json::Value` (the baseline), in the same run.
//!
//! Workloads are read from `$STICKY_BENCH_DIR/sticky-{small,large,huge}.jsonl`, by default
//! `<workspace>/target/bench`; a missing file skips its preset. Generate them with
//! `python3 scripts/bench/gen_workload.py --preset P --out target/bench/sticky-P.jsonl`.
//!
//! Besides criterion's report, the run prints a summary per preset: events per second of both,
//! their ratio, and the heap bytes per live entry, measured with a counting global allocator.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use criterion::{Criterion, SamplingMode, Throughput};
use matrix_sticky_events::{Limits, Parsed, Receipt, StickyMap, parse_sticky_batch};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY (for both impls below): every call is forwarded unchanged to the system allocator;
// only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PRESETS: [&str; 3] = ["small", "large", "huge"];

fn bench_dir() -> PathBuf {
    match std::env::var_os("STICKY_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench")),
    }
}

/// A workload: its lines and its number of events.
struct Workload {
    lines: Vec<String>,
    events: u64,
}

fn load(preset: &str) -> Option<Workload> {
    let path = bench_dir().join(format!("sticky-{preset}.jsonl"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!(
            "skipping preset {preset}: {} not found (see benches/ingest.rs)",
            path.display()
        );
        return None;
    };
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let receipt = Receipt::new(Instant::now(), 0);
    let events = lines
        .iter()
        .map(|line| parse_sticky_batch(line, receipt).map_or(0, |batch| batch.event_count() as u64))
        .sum();
    Some(Workload { lines, events })
}

/// The baseline: parse every line into a `serde_json::Value`.
fn baseline(workload: &Workload) {
    for line in &workload.lines {
        black_box(serde_json::from_str::<serde_json::Value>(line).ok());
    }
}

/// Only our parsing, without the map.
fn parse_only(workload: &Workload) {
    let receipt = Receipt::new(Instant::now(), 1_795_660_000_000);
    for line in &workload.lines {
        black_box(parse_sticky_batch(line, receipt).ok());
    }
}

/// Ours: parse every line and feed every event to a fresh map; returns the map.
fn ingest(workload: &Workload) -> StickyMap {
    let now = Instant::now();
    // The workloads' events carry their remaining lifetime, so the wall clock only matters for
    // the fallback; use the time of the workloads.
    let receipt = Receipt::new(now, 1_795_660_000_000);
    let mut map = StickyMap::new(Limits::default());
    for line in &workload.lines {
        let Ok(batch) = parse_sticky_batch(line, receipt) else {
            continue;
        };
        for room in batch.rooms {
            let events = room.events.into_iter().filter_map(|event| match event {
                Ok(Parsed::Sticky(event)) => Some(event),
                _ => None,
            });
            black_box(map.handle_events(events, now));
        }
    }
    map
}

/// Median wall time of `runs` runs of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[runs / 2]
}

fn bench(c: &mut Criterion) {
    let mut summary = vec![];
    for preset in PRESETS {
        let Some(workload) = load(preset) else {
            continue;
        };
        let mut group = c.benchmark_group(format!("ingest/{preset}"));
        group.throughput(Throughput::Elements(workload.events));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(match preset {
            "small" => 3,
            "large" => 8,
            _ => 20,
        }));
        group.bench_function("serde_json_value", |b| b.iter(|| baseline(&workload)));
        // The map is long-lived in an application: its final drop is not part of ingesting.
        group.bench_function("parse_and_map", |b| {
            b.iter_with_large_drop(|| ingest(&workload))
        });
        group.finish();

        // Our own summary, measured the same way for both, one after the other.
        let runs = match preset {
            "small" => 31,
            "large" => 7,
            _ => 3,
        };
        let base = median(runs, || baseline(&workload));
        let mut maps = Vec::with_capacity(runs);
        let ours = median(runs, || maps.push(black_box(ingest(&workload))));
        drop(maps);
        let parse = median(runs, || parse_only(&workload));
        let before = ALLOCATED.load(Ordering::Relaxed);
        let map = ingest(&workload);
        let heap = ALLOCATED.load(Ordering::Relaxed).saturating_sub(before);
        summary.push(Row {
            preset,
            events: workload.events,
            ours,
            base,
            parse,
            heap,
            live: map.len(),
            candidates: map.candidate_count(),
        });
    }

    println!();
    println!(
        "| preset | events | parse + map (events/s) | serde_json::Value (events/s) | time ratio ours/baseline | parse only (events/s) | heap bytes per live entry | per candidate |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in summary {
        let rate = |d: Duration| row.events as f64 / d.as_secs_f64();
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {} ({} live) | {} ({} candidates) |",
            row.preset,
            row.events,
            rate(row.ours),
            rate(row.base),
            row.ours.as_secs_f64() / row.base.as_secs_f64(),
            rate(row.parse),
            row.heap / row.live.max(1),
            row.live,
            row.heap / row.candidates.max(1),
            row.candidates,
        );
    }
}

/// One line of the summary.
struct Row {
    preset: &'static str,
    events: u64,
    ours: Duration,
    base: Duration,
    parse: Duration,
    heap: usize,
    live: usize,
    candidates: usize,
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
