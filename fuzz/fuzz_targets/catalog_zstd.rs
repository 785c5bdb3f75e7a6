//! Any bytes as a compressed catalog: decompressed within its bounds, or refused; never
//! more than the limit in memory.
#![no_main]
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    // Also the frame magic in front, so the fuzzer starts inside zstd's parser.
    for bytes in [
        data.to_vec(),
        [&fill_core::catalog::wire::ZSTD_MAGIC[..], data].concat(),
    ] {
        if let Ok(raw) = fill_core::catalog::wire::decompress(&bytes, LIMIT) {
            assert!(raw.len() as u64 <= LIMIT);
            let _ = fill_core::Catalog::parse(&raw);
        }
    }
});
