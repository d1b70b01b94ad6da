//! End-to-end latency against a local Synapse (not a test: it measures, it asserts nothing),
//! in an unencrypted room (the baseline) and in an encrypted one, in the same run:
//!
//! * first join: from the moment A asks to join until A's `join` returns (acknowledged) and
//!   until B's participant stream shows A. In an encrypted room this includes A's first
//!   encrypted sends there: the megolm session is created and its key shared with B's device
//!   (one-time key claim, olm encryption, to-device send);
//! * later joins: A leaves, waits until B saw it, and joins again (three times): the sends
//!   reuse the megolm session;
//! * crash: from the moment A's client is killed until B sees A leave (the delayed leave
//!   fires after at most its delay, then one sync round trip).
//!
//! Run with `cargo bench -p matrix-sdk-rtc --bench latency` (set `RTC_LATENCY_RUNS`, default
//! 10). It prints the median and the 95th percentile of each, and the encrypted/unencrypted
//! ratio of the medians. With `RUST_LOG=warn,matrix_sdk_rtc::pump::perform=debug` it also
//! logs every encrypted send with its encryption and request times (`encrypt_ms`, `send_ms`).
#![allow(missing_docs, unreachable_pub)]
// A measurement binary, not an API.
// matrix-sdk's sync future is deep: proving it `Send` for `tokio::spawn` needs more room.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use matrix_sdk_rtc::{JoinOptions, LeftReason, RtcCall, SessionChange};
use rtc_test_homeserver::{TestHomeserver, TestUser};

#[path = "../tests/it/calls/support.rs"]
#[allow(dead_code)] // The bench uses only part of the test support.
mod support;
use support::{
    Peer, fast_timings, has_user, init_tracing, next_matching, room, session_change,
    wait_for_participants,
};

/// How many leave-and-join-again rounds follow the first join of a run.
const LATER_JOINS: usize = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    percentile(&sorted, 0.5)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn report(name: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    println!(
        "{name}: n={} median={:.1} ms p95={:.1} ms min={:.1} ms max={:.1} ms",
        sorted.len(),
        ms(percentile(&sorted, 0.5)),
        ms(percentile(&sorted, 0.95)),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1]),
    );
}

/// What one run measured.
#[derive(Default)]
struct Samples {
    first_ack: Vec<Duration>,
    first_seen: Vec<Duration>,
    later_ack: Vec<Duration>,
    later_seen: Vec<Duration>,
    crash: Vec<Duration>,
}

/// A joins; returns (acknowledged after, seen by B after).
async fn timed_join(a_call: &RtcCall, b_call: &RtcCall, alice: &TestUser) -> (Duration, Duration) {
    let asked = Instant::now();
    let acknowledged = async {
        a_call
            .join(JoinOptions::default().with_timings(fast_timings()))
            .await
            .expect("alice joins");
        asked.elapsed()
    };
    let seen = async {
        wait_for_participants(b_call, "alice", |p| has_user(p, &alice.user_id)).await;
        asked.elapsed()
    };
    tokio::join!(acknowledged, seen)
}

async fn one_run(hs: &TestHomeserver, encrypted: bool, samples: &mut Samples) {
    let (alice, bob) = (
        hs.register_user("alice").await.unwrap(),
        hs.register_user("bob").await.unwrap(),
    );
    let room_id = room(hs, &alice, &[&bob], encrypted).await;
    let (a, b) = tokio::join!(Peer::start(hs, &alice), Peer::start(hs, &bob));
    let (a_call, b_call) = (a.room_call(&room_id).await, b.room_call(&room_id).await);

    let (ack, seen) = timed_join(&a_call, &b_call, &alice).await;
    samples.first_ack.push(ack);
    samples.first_seen.push(seen);
    for _ in 0..LATER_JOINS {
        a_call.leave().await.expect("alice leaves");
        wait_for_participants(&b_call, "alice gone", |p| !has_user(p, &alice.user_id)).await;
        let (ack, seen) = timed_join(&a_call, &b_call, &alice).await;
        samples.later_ack.push(ack);
        samples.later_seen.push(seen);
    }

    let mut changes = b.rtc.subscribe_session_changes();
    let crashed = Instant::now();
    a.crash();
    next_matching(
        &mut changes,
        "alice's delayed leave",
        |update| match session_change(update) {
            SessionChange::Left {
                participant,
                reason: LeftReason::LeaveEvent | LeftReason::DelayedLeaveFired,
            } if participant.user_id.as_str() == alice.user_id => Some(()),
            _ => None,
        },
    )
    .await;
    samples.crash.push(crashed.elapsed());
}

fn main() {
    let runs: usize = std::env::var("RTC_LATENCY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    if std::env::var_os("RUST_LOG").is_some() {
        init_tracing();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let hs = TestHomeserver::start().await.expect("synapse starts");
        let (mut plain, mut encrypted) = (Samples::default(), Samples::default());
        // Interleaved, so that both see the same machine load.
        for run in 0..runs {
            one_run(&hs, false, &mut plain).await;
            one_run(&hs, true, &mut encrypted).await;
            println!("run {run} done");
        }
        println!(
            "delayed-leave delay: {} ms; {runs} runs, {LATER_JOINS} later joins each",
            fast_timings().delay_ms
        );
        for (name, samples) in [("unencrypted", &plain), ("encrypted", &encrypted)] {
            report(
                &format!("{name}: first join -> acknowledged"),
                &samples.first_ack,
            );
            report(
                &format!("{name}: first join -> seen by B"),
                &samples.first_seen,
            );
            report(
                &format!("{name}: later join -> acknowledged"),
                &samples.later_ack,
            );
            report(
                &format!("{name}: later join -> seen by B"),
                &samples.later_seen,
            );
            report(&format!("{name}: crash -> leave seen by B"), &samples.crash);
        }
        let ratio = |pick: fn(&Samples) -> &Vec<Duration>| {
            ms(median(pick(&encrypted))) / ms(median(pick(&plain)))
        };
        println!(
            "encrypted / unencrypted (medians): first join acknowledged {:.2}x, seen {:.2}x; \
             later join acknowledged {:.2}x, seen {:.2}x; crash {:.2}x",
            ratio(|s| &s.first_ack),
            ratio(|s| &s.first_seen),
            ratio(|s| &s.later_ack),
            ratio(|s| &s.later_seen),
            ratio(|s| &s.crash),
        );
    });
}
