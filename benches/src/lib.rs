//! Seeded inputs shared by the benchmarks in `benches/benches/`.

use fill_core::ContentId;
use fill_core::catalog::CatalogBuilder;

/// splitmix64, seeded: the same inputs on every run.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

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
