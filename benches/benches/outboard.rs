//! Outboard computation against blake3's own multithreaded hashing, on the same 1 GiB
//! mapped file in the same run: `outboard/compute_1MiB_blocks` vs `outboard/blake3_update_rayon`.
//!
//! `FILL_BENCH_MIB` overrides the 1024 MiB file size.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fill_benches::synthetic_bytes;
use fill_core::outboard::{BlockSize, Outboard};
use fill_store::mapped::Mapped;

fn benches(c: &mut Criterion) {
    let mib: usize = std::env::var("FILL_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("file");
    std::fs::write(&path, synthetic_bytes(mib << 20, 9)).expect("write file");
    let data = Mapped::open(&path).expect("map");
    let expected = blake3::hash(&data);
    assert_eq!(
        Outboard::compute(&data, BlockSize::DEFAULT).id().as_bytes(),
        expected.as_bytes()
    );

    let mut g = c.benchmark_group("outboard");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20).measurement_time(Duration::from_secs(20));
    // Alternate the two in one group so both see the same machine state.
    g.bench_function("blake3_update_rayon", |b| {
        b.iter(|| black_box(blake3::Hasher::new().update_rayon(&data).finalize()))
    });
    g.bench_function("compute_1MiB_blocks", |b| {
        b.iter(|| black_box(Outboard::compute(&data, BlockSize::DEFAULT).id()))
    });
    g.finish();
}

criterion_group!(outboard, benches);
criterion_main!(outboard);
