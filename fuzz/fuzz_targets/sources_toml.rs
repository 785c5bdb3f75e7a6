//! Any text as a sources file: sources or an error naming the field.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fill_store::sources::parse(text, std::path::Path::new("/nonexistent"));
    }
});
