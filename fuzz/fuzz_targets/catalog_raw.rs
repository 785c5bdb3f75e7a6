//! Any bytes as a raw catalog: a value or an error, and a value's accessors never fail.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cat) = fill_core::Catalog::parse(data) {
        let mut total = 0u64;
        for i in 0..cat.len() {
            total = total.wrapping_add(cat.size(i));
            let _ = (cat.id(i), cat.name(i), cat.weight(i));
        }
        assert_eq!(total, cat.total_size());
        let _ = cat.by_rank_with_meta().count();
    }
});
