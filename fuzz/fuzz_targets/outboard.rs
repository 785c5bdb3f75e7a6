//! Any bytes as an outboard (the first 32 as the id it must match): a value or an error;
//! a value verifies its blocks without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 32 {
        return;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&data[..32]);
    let id = fill_core::ContentId::from_bytes(id);
    if let Ok(ob) = fill_core::Outboard::parse(&data[32..], id) {
        let n = ob.block_count();
        for b in [0, n / 2, n.saturating_sub(1)] {
            let (_, len) = ob.block_range(b);
            let _ = ob.verify_block(b, &vec![0u8; len.min(1 << 24) as usize]);
        }
    }
});
