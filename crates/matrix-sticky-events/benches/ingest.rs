//! Ingest benchmark: the standard sticky workloads through `parse_sticky_batch` and the map,
//! against parsing the same JSON into `serde_json::Value` (the baseline), in the same run.
//!
//! Workloads are read from `$STICKY_BENCH_DIR/sticky-{small,large,huge}.jsonl`, by default
//! `<workspace>/target/bench`; a missing file skips its preset. Generate them with
//! `python3 shared/bench/gen_workload.py --preset P --out target/bench/sticky-P.jsonl`.
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
        group.bench_function("parse_and_map", |b| b.iter(|| black_box(ingest(&workload))));
        group.finish();

        // Our own summary, measured the same way for both, one after the other.
        let runs = match preset {
            "small" => 31,
            "large" => 7,
            _ => 3,
        };
        let ours = median(runs, || drop(black_box(ingest(&workload))));
        let base = median(runs, || baseline(&workload));
        let before = ALLOCATED.load(Ordering::Relaxed);
        let map = ingest(&workload);
        let heap = ALLOCATED.load(Ordering::Relaxed).saturating_sub(before);
        summary.push((
            preset,
            workload.events,
            ours,
            base,
            heap,
            map.len(),
            map.candidate_count(),
        ));
    }

    println!();
    println!(
        "| preset | events | ours (events/s) | serde_json::Value (events/s) | time ratio ours/baseline | heap bytes per live entry | per candidate |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (preset, events, ours, base, heap, live, candidates) in summary {
        let rate = |d: Duration| events as f64 / d.as_secs_f64();
        println!(
            "| {preset} | {events} | {:.0} | {:.0} | {:.2} | {} ({live} live) | {} ({candidates} candidates) |",
            rate(ours),
            rate(base),
            ours.as_secs_f64() / base.as_secs_f64(),
            heap / live.max(1),
            heap / candidates.max(1),
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
