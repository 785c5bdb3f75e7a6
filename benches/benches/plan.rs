//! The planner at scale: `FILL_BENCH_RANGES` ranges (default 1,000,000) over 50 sources and
//! 14 daily slots, and the same with the peers open only 02:00-14:00 (42 slots).

use criterion::{Criterion, criterion_group, criterion_main};
use fill_core::plan::{self, Problem, Strategy};
use fill_core::source::Window;

fn ranges() -> usize {
    std::env::var("FILL_BENCH_RANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn bench(c: &mut Criterion) {
    let n = ranges();
    let (sources, classes, demands) = fill_benches::plan_region(n, 50);
    let total: u64 = demands.iter().map(|d| d.length).sum();
    eprintln!(
        "{} ranges, {} classes, {:.1} TB to fetch",
        demands.len(),
        classes.len(),
        total as f64 / 1e12
    );
    let start = 1_780_012_800; // a UTC midnight
    let problem = Problem {
        sources: &sources,
        classes: &classes,
        demands: &demands,
        start,
        horizon: 14 * 86_400,
        ingress_bps: Some(200_000_000_000),
    };
    let p = plan::plan(&problem, Strategy::Optimal).expect("plan");
    let e = plan::plan(&problem, Strategy::Escalation).expect("plan");
    eprintln!(
        "{} slots; optimal {:.2}, escalation {:.2}; shortfall {:?}",
        p.slots.len(),
        p.total_cost,
        e.total_cost,
        p.shortfall.as_ref().map(|s| s.bytes)
    );
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.bench_function("optimal_1M_50x14", |b| {
        b.iter(|| plan::plan(&problem, Strategy::Optimal).expect("plan"))
    });
    g.bench_function("escalation_1M_50x14", |b| {
        b.iter(|| plan::plan(&problem, Strategy::Escalation).expect("plan"))
    });
    let mut windowed = sources.clone();
    for s in windowed.iter_mut().filter(|s| s.cost_per_gib == 0.0) {
        s.window = Some(Window::parse("02:00-14:00", 0).expect("window"));
    }
    let problem_w = Problem {
        sources: &windowed,
        ..problem
    };
    g.bench_function("optimal_1M_50x42_windows", |b| {
        b.iter(|| plan::plan(&problem_w, Strategy::Optimal).expect("plan"))
    });
    g.bench_function("classify_1M_50", |b| {
        b.iter(|| fill_benches::plan_region(n, 50))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
