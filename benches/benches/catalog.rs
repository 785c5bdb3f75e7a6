//! Catalog and delta at scale: 10M-entry catalogs.
//!
//! - `catalog/open_mapped_10M`: map a 10M-entry catalog file and check its header;
//! - `catalog/validate_10M`: validate every record (order, duplicates, sizes, names, rank);
//! - `delta/10M_vs_10M`: delta of a 10M-entry target against a 10M-entry inventory that
//!   overlaps it by half, capacity half the target's bytes.
//!
//! `FILL_BENCH_ENTRIES` overrides 10M (for a quick run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fill_benches::synthetic_catalog;
use fill_core::catalog::{Catalog, CatalogView};
use fill_core::delta::{self, Inventory};
use fill_store::mapped::Mapped;

fn entries() -> u64 {
    std::env::var("FILL_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn benches(c: &mut Criterion) {
    let n = entries();
    let label = if n == 10_000_000 {
        "10M".to_owned()
    } else {
        n.to_string()
    };
    eprintln!("building two seeded catalogs of {n} entries...");
    let target_bytes = synthetic_catalog(0..n, 1);
    let inventory_bytes = synthetic_catalog(n / 2..n + n / 2, 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("target.catalog");
    std::fs::write(&path, &target_bytes).expect("write catalog");
    eprintln!("catalog file: {} bytes", target_bytes.len());

    let mut g = c.benchmark_group("catalog");
    g.sample_size(20);
    g.bench_function(format!("open_mapped_{label}"), |b| {
        b.iter(|| {
            let m = Mapped::open(&path).expect("map");
            let view = CatalogView::open(&m).expect("header");
            black_box(view.len())
        })
    });
    let mapped = Mapped::open(&path).expect("map");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function(format!("validate_{label}"), |b| {
        b.iter(|| {
            let cat = CatalogView::open(&mapped)
                .and_then(CatalogView::validate)
                .expect("valid");
            black_box(cat.len())
        })
    });
    g.finish();

    let target = Catalog::parse(&mapped).expect("valid target");
    let inventory = Catalog::parse(&inventory_bytes).expect("valid inventory");
    let capacity = target.total_size() / 2;
    let inv = Inventory {
        complete: inventory,
        partial: &[],
    };
    let d = delta::compute(&target, &inv, capacity).expect("delta");
    eprintln!(
        "delta: {} fetch ranges, {} evictions, {} kept",
        d.fetch.len(),
        d.evict.len(),
        d.keep.len()
    );
    let mut g = c.benchmark_group("delta");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.bench_function(format!("{label}_vs_{label}"), |b| {
        b.iter(|| black_box(delta::compute(&target, &inv, capacity).expect("delta")))
    });
    g.finish();
}

criterion_group!(catalog, benches);
criterion_main!(catalog);
