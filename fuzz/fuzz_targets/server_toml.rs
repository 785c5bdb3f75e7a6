//! Any text as fill-server's config: a validated config or an error naming the field.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("/nonexistent/server.toml");
        if let Ok(file) = fill_store::config::ConfigFile::parse(text, path) {
            let _ = file.resolve(None, None, None);
        }
    }
});
