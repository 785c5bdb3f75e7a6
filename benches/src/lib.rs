//! Seeded inputs shared by the benchmarks in `benches/benches/`.

use fill_core::ContentId;
use fill_core::catalog::CatalogBuilder;

/// The seeded generator of every benchmark input (splitmix64).
pub use fill_core::rng::SplitMix64 as Rng;

/// The id of synthetic file number `k`.
pub fn synthetic_id(k: u64) -> ContentId {
    ContentId::of(&k.to_le_bytes())
}

/// Size of synthetic file `k`: log-uniform from 4 KiB to 400 MiB, a function of `k` so that
/// every catalog that lists `k` agrees on it.
pub fn synthetic_size(k: u64) -> u64 {
    let u = Rng(k ^ 0x5EED).unit();
    let (lo, hi) = ((4096f64).ln(), (400.0 * 1048576.0f64).ln());
    (lo + u * (hi - lo)).exp() as u64
}

/// A catalog of files `range`, weights Zipf-like from `seed`, media-like names.
pub fn synthetic_catalog(range: std::ops::Range<u64>, seed: u64) -> Vec<u8> {
    let n = (range.end - range.start) as usize;
    let mut b = CatalogBuilder::with_capacity(n, n * 36);
    let mut rng = Rng(seed);
    for k in range {
        let rank = 1 + rng.next_u64() % n as u64;
        let weight = 1.0 / (rank as f64).powf(0.9);
        let name = format!("titles/t{:08}/video_1080p_{k}.mp4", k / 4);
        b.push(synthetic_id(k), synthetic_size(k), weight, &name)
            .expect("synthetic entries are valid");
    }
    b.finish().expect("synthetic catalog builds")
}

/// Deterministic incompressible bytes.
pub fn synthetic_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_keyed(blake3::hash(&seed.to_le_bytes()).as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// A region for the planner benchmark: `sources` sources (an origin that holds everything,
/// tiers that hold a popularity prefix each, and peers in groups that hold one of eight older
/// catalog generations), and `ranges` ranges in popularity order, sizes from
/// [`synthetic_size`]. Bandwidths are set against the volume over 14 days: each peer can
/// carry 1% of it, each tier 3%, so the free and cheap sources cannot carry everything and
/// the optimiser has real choices. Returns (sources, classes, demands).
pub fn plan_region(
    ranges: usize,
    sources: usize,
) -> (
    Vec<fill_core::source::Source>,
    Vec<Vec<usize>>,
    Vec<fill_core::plan::Demand>,
) {
    use fill_core::source::{Source, SourceKind};
    let sizes: Vec<u64> = (0..ranges as u64).map(synthetic_size).collect();
    let total: u64 = sizes.iter().sum();
    // Bits per second that carry `share` of the volume in 14 days.
    let bps = |share: f64| ((total as f64 * share * 8.0 / (14.0 * 86_400.0)) as u64).max(1);
    let tiers = (sources / 5).max(1);
    let peers = sources.saturating_sub(1 + tiers);
    let mut list = vec![Source {
        name: "origin".into(),
        kind: SourceKind::Origin,
        url: "http://127.0.0.1:1".into(),
        cost_per_gib: 0.02,
        bandwidth_bps: bps(2.0),
        window: None,
        max_connections: 8,
    }];
    for t in 0..tiers {
        list.push(Source {
            name: format!("tier{t:02}"),
            kind: SourceKind::Tier,
            url: "http://127.0.0.1:1".into(),
            cost_per_gib: 0.002 + 0.001 * t as f64,
            bandwidth_bps: bps(0.03),
            window: None,
            max_connections: 8,
        });
    }
    for p in 0..peers {
        list.push(Source {
            name: format!("peer{p:02}"),
            kind: SourceKind::Peer,
            url: "http://127.0.0.1:1".into(),
            cost_per_gib: 0.0,
            bandwidth_bps: bps(0.01),
            window: None,
            max_connections: 8,
        });
    }
    // Tier t holds the most popular (t + 1) / (tiers + 1) of the ranges; peer p holds the
    // files of generation p % 8, each file in a generation with probability 1/2.
    let holds = |s: usize, entry: u32| -> bool {
        let rank = entry as usize;
        match s {
            0 => true,
            s if s <= tiers => rank * (tiers + 1) < s * ranges,
            s => {
                let generation = (s - 1 - tiers) % 8;
                Rng(u64::from(entry) ^ 0xA11CE).next_u64() >> generation & 1 == 1
            }
        }
    };
    let spans = (0..ranges as u32).map(|k| (k, 0, sizes[k as usize]));
    let (classes, demands) = fill_core::plan::classify(list.len(), spans, holds);
    (list, classes, demands)
}
