//! End-to-end latency against a local Synapse (not a test: it measures, it asserts nothing).
//!
//! * join: from the moment A asks to join until B's participant stream shows A;
//! * crash: from the moment A's client is killed until B sees A leave (the delayed leave
//!   fires after at most its delay, then one sync round trip).
//!
//! Run with `cargo bench -p matrix-sdk-rtc --bench latency` (set `RTC_LATENCY_RUNS`, default
//! 10). It prints the median and the 95th percentile of each.
#![allow(missing_docs, unreachable_pub)]
// A measurement binary, not an API.
// matrix-sdk's sync future is deep: proving it `Send` for `tokio::spawn` needs more room.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use matrix_sdk_rtc::{JoinOptions, LeftReason, SessionChange};
use rtc_test_homeserver::TestHomeserver;

#[path = "../tests/it/calls/support.rs"]
#[allow(dead_code)] // The bench uses only part of the test support.
mod support;
use support::{Peer, fast_timings, has_user, next_matching, shared_room, wait_for_participants};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: n={} median={:.1} ms p95={:.1} ms min={:.1} ms max={:.1} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.95).as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}

async fn one_run(hs: &TestHomeserver) -> (Duration, Duration) {
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = shared_room(hs, &alice, &[&bob]).await;
    let (a, b) = tokio::join!(Peer::start(hs, &alice), Peer::start(hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);

    let asked = Instant::now();
    let (joined, seen) = tokio::join!(
        a_call.join(JoinOptions::default().with_timings(fast_timings())),
        wait_for_participants(&b_call, "alice", |p| has_user(p, &alice.user_id)),
    );
    joined.expect("alice joins");
    drop(seen);
    let join_latency = asked.elapsed();

    let mut changes = b.rtc.subscribe_session_changes();
    let crashed = Instant::now();
    a.crash();
    next_matching(
        &mut changes,
        "alice's delayed leave",
        |change| match change {
            SessionChange::Left {
                participant,
                reason: LeftReason::LeaveEvent | LeftReason::DelayedLeaveFired,
            } if participant.user_id.as_str() == alice.user_id => Some(()),
            _ => None,
        },
    )
    .await;
    (join_latency, crashed.elapsed())
}

fn main() {
    let runs: usize = std::env::var("RTC_LATENCY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let hs = TestHomeserver::start().await.expect("synapse starts");
        let mut joins = Vec::new();
        let mut crashes = Vec::new();
        for run in 0..runs {
            let (join, crash) = one_run(&hs).await;
            println!("run {run}: join seen after {join:?}, crash seen after {crash:?}");
            joins.push(join);
            crashes.push(crash);
        }
        println!("delayed-leave delay: {} ms", fast_timings().delay_ms);
        report("join -> seen by B", joins);
        report("crash -> leave seen by B", crashes);
    });
}
