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
        s.window =
            Some(Window::parse("02:00-14:00", fill_core::source::Zone::UTC).expect("window"));
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

/// A site: `apps` appliances whose deltas are seeded two-thirds subsets of one region of
/// `files` files (so each needs about `files × 2/3`), 50 shared sources, 14 days, 1-hour
/// slots for the copies, 10 Gbps of in-site bandwidth per appliance.
fn site_bench(c: &mut Criterion) {
    use fill_core::plan::site::{self, SiteAppliance, SiteProblem};
    let files = std::env::var("FILL_BENCH_SITE_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000);
    let (sources, classes, all) = fill_benches::plan_region(files, 50);
    let deltas = |apps: usize| -> Vec<Vec<fill_core::plan::Demand>> {
        (0..apps)
            .map(|a| {
                all.iter()
                    .copied()
                    .filter(|d| {
                        !fill_benches::Rng(u64::from(d.entry) << 8 | a as u64)
                            .next_u64()
                            .is_multiple_of(3)
                    })
                    .collect()
            })
            .collect()
    };
    for apps in [10usize, 20] {
        let demands = deltas(apps);
        let holds: Vec<Vec<u32>> = vec![Vec::new(); apps];
        let appliances: Vec<SiteAppliance<'_>> = (0..apps)
            .map(|a| SiteAppliance {
                demands: &demands[a],
                holds: &holds[a],
                ingress_bps: Some(40_000_000_000),
            })
            .collect();
        let problem = SiteProblem {
            sources: &sources,
            classes: &classes,
            appliances: &appliances,
            start: 1_780_012_800,
            horizon: 14 * 86_400,
            uplink_bps: None,
            peer_bps: 10_000_000_000,
            step: 3600,
        };
        let plan = site::plan_site(&problem).expect("site plan");
        let alone = site::plan_alone(&problem).expect("alone");
        let origin = |p: &fill_core::plan::Plan| -> u64 {
            p.per_source
                .iter()
                .zip(&sources)
                .filter(|(_, s)| s.kind == fill_core::source::SourceKind::Origin)
                .map(|(u, _)| u.bytes)
                .sum()
        };
        eprintln!(
            "site of {apps}: {} ranges in all, {} unique; origin bytes {:.2} TB site-level vs {:.2} TB alone; cost {:.2} vs {:.2}; late copies {} bytes",
            demands.iter().map(Vec::len).sum::<usize>(),
            plan.unique.len(),
            origin(&plan.external) as f64 / 1e12,
            alone.iter().map(origin).sum::<u64>() as f64 / 1e12,
            plan.external.total_cost,
            alone.iter().map(|p| p.total_cost).sum::<f64>(),
            plan.late_bytes
        );
        let mut g = c.benchmark_group("site");
        g.sample_size(10);
        g.bench_function(format!("{apps}_appliances_{}k_files", files / 1000), |b| {
            b.iter(|| site::plan_site(&problem).expect("site plan"))
        });
        g.finish();
    }
}

criterion_group!(benches, bench, site_bench);
criterion_main!(benches);
