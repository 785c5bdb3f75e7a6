//! What fill-server takes from a request line and headers: the path's id (after the
//! `/content/` or `/outboard/` prefix) and the `Range` header, against any body length.
#![no_main]
use fill_server::http::{RangeAsk, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[0] % 64);
    let rest = &data[8..];
    match parse_range(rest, len) {
        RangeAsk::Part(first, last) => assert!(first <= last && last < len),
        RangeAsk::Whole | RangeAsk::Unsatisfiable => {}
    }
    if let Ok(path) = std::str::from_utf8(rest) {
        for prefix in ["/content/", "/outboard/"] {
            if let Some(id) = path.strip_prefix(prefix) {
                if let Ok(id) = fill_core::ContentId::parse(id) {
                    assert_eq!(id.to_hex().as_str(), &path[prefix.len()..]);
                }
            }
        }
    }
});
