//! Failing seeds kept as regression cases: `tests/sim-regressions.txt`, one seed per line
//! (after it, and on lines starting with `#`, anything is a comment). The normal run replays
//! them before its random schedules.

/// The kept seeds, in file order.
pub(crate) fn seeds() -> Vec<u64> {
    include_str!("../../sim-regressions.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let seed = line.split_whitespace().next().expect("not empty");
            seed.parse()
                .unwrap_or_else(|_| panic!("sim-regressions.txt: not a seed: {line:?}"))
        })
        .collect()
}
