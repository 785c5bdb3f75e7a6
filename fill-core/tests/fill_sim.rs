//! The fill machine under the seeded fault simulator (`fill_core::fill::sim`): every seed's
//! invariants hold, and every fault class fires. `FILL_SIM_SEEDS` (default 10,000) and
//! `FILL_SIM_FIRST` (default 0) choose the seeds; `scripts/simulate-faults.sh` runs many and
//! replays one.

use fill_core::fill::sim::{self, FaultCounts, SimReport, Violation};
use rayon::prelude::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeds that once broke an invariant, and what they caught. (They are kept even where
/// the generator has changed since: one more seed costs nothing.)
const REGRESSIONS: &[(u64, &str)] = &[
    (
        1,
        "a job waiting for a connection reported its past ready time as a timer: livelock",
    ),
    (19, "two empty files in one target (the same id)"),
    (
        45,
        "a file no honest source holds, already held by the store",
    ),
];

#[test]
fn regression_seeds() {
    for &(seed, what) in REGRESSIONS {
        if let Err(v) = sim::run(seed) {
            panic!("regression seed {seed} ({what}) fails again: {v}");
        }
    }
}

#[test]
fn fills_keep_their_invariants_under_faults() {
    let first = env("FILL_SIM_FIRST", 0);
    let seeds = env("FILL_SIM_SEEDS", 10_000);
    let results: Vec<Result<SimReport, Violation>> = (first..first + seeds)
        .into_par_iter()
        .map(sim::run)
        .collect();
    let (mut total, mut hit) = (FaultCounts::default(), FaultCounts::default());
    let (mut complete, mut failed_rightly, mut runs) = (0u64, 0u64, 0u64);
    // The widest window a crash met (bytes written, not recorded) against its bound, and
    // what reruns fetched again.
    let (mut widest, mut refetched) = ((0u64, 0u64), 0u64);
    let mut violations = Vec::new();
    for r in results {
        match r {
            Ok(r) => {
                total.add(&r.faults);
                hit.add_hit(&r.faults);
                runs += u64::from(r.runs);
                widest = widest.max(r.crash_window);
                refetched += r.refetched;
                if r.outcome == "complete" {
                    complete += 1;
                } else {
                    failed_rightly += 1;
                }
            }
            Err(v) => violations.push(v),
        }
    }
    eprintln!(
        "{seeds} seeds from {first}: {complete} complete, {failed_rightly} failed as they had to, {runs} fills run, {} broke an invariant",
        violations.len()
    );
    eprintln!(
        "  widest window at a crash: {} of a bound of {} bytes; {refetched} bytes fetched again after crashes",
        widest.0, widest.1
    );
    eprintln!("  {:<22} {:>8} {:>9}", "fault", "seeds", "times");
    for ((name, seeds), (_, times)) in hit.named().into_iter().zip(total.named()) {
        eprintln!("  {name:<22} {seeds:>8} {times:>9}");
    }
    if let Some(v) = violations.first() {
        let shown: Vec<String> = violations.iter().take(10).map(|v| v.to_string()).collect();
        panic!(
            "{} seeds broke an invariant:\n{}\nreplay the first: scripts/simulate-faults.sh --replay {}",
            violations.len(),
            shown.join("\n"),
            v.seed
        );
    }
    if seeds >= 10_000 {
        for (name, n) in total.named() {
            assert!(n > 0, "no seed exercised {name}");
        }
    }
}

/// `FILL_SIM_REPLAY=<seed>`: prints the seed's trace (the script's `--replay`).
#[test]
fn replay_a_seed() {
    let Ok(seed) = std::env::var("FILL_SIM_REPLAY") else {
        // Without a seed, the trace of one still reads: a run is logged from its start.
        let (result, trace) = sim::replay(7);
        assert!(result.is_ok());
        assert!(
            trace.first().is_some_and(|l| l.contains("run 0")),
            "{:?}",
            trace.first()
        );
        return;
    };
    let seed: u64 = seed.parse().expect("FILL_SIM_REPLAY is a seed");
    let (result, trace) = sim::replay(seed);
    for line in &trace {
        eprintln!("{line}");
    }
    match result {
        Ok(r) => eprintln!(
            "seed {seed}: {} after {} runs, {} steps",
            r.outcome, r.runs, r.steps
        ),
        Err(v) => panic!("{v}"),
    }
}
