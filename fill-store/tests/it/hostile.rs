//! Any text as a configuration (the sources file, the server's config): a value or an error
//! naming what is wrong, never a panic, within bounded memory.

use std::path::Path;

use fill_store::config::ConfigFile;
use proptest::prelude::*;

const SOURCES: &str = "[[source]]\nname = \"peer\"\nkind = \"peer\"\nurl = \"http://127.0.0.1:7878\"\ncost_per_gib = 0.0\nbandwidth = \"10Gbps\"\nmax_connections = 8\nwindow = \"02:00-14:00\"\ntz = \"+01:00\"\n";
const SERVER: &str = "listen = \"127.0.0.1:7878\"\nstore = \"/srv/store\"\n[limits]\nmax_connections = 64\nmax_connections_per_client = 8\nidle_timeout = \"60s\"\n[lifecycle]\nmin_free = \"1GiB\"\ncheck_interval = \"5m\"\n";

/// `text` with `n` bytes replaced at `at` (kept UTF-8 where the edit breaks it).
fn mutate(text: &str, at: usize, with: &str) -> String {
    let mut s = text.to_owned();
    let mut i = at % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    let mut end = (i + with.len()).min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.replace_range(i..end, with);
    s
}

fn check(text: &str) {
    match fill_store::sources::parse(text, Path::new("/nonexistent")) {
        Ok(sources) => assert!(!sources.is_empty()),
        Err(e) => assert!(!format!("{e:#}").is_empty()),
    }
    let path = Path::new("/nonexistent/server.toml");
    match ConfigFile::parse(text, path) {
        Ok(file) => {
            if let Err(e) = file.resolve(None, None, None) {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_is_a_config_or_an_error(text in ".{0,400}") {
        check(&text);
    }

    #[test]
    fn mutated_configs_are_configs_or_errors(
        base in prop_oneof![Just(SOURCES), Just(SERVER)],
        at in 0usize..400,
        with in prop_oneof![
            Just("0".to_owned()), Just("\"".to_owned()), Just("]".to_owned()),
            Just("99999999999999999999".to_owned()), Just("-1".to_owned()),
            Just("\u{1b}".to_owned()), Just("1e309".to_owned()), ".{0,8}",
        ],
    ) {
        check(&mutate(base, at, &with));
    }
}

/// The cases above ran within the ceiling hostile input is held to (300 MiB peak, for the
/// whole test process).
#[test]
fn peak_memory_stays_under_the_ceiling() {
    for i in 0..200 {
        check(&SOURCES.repeat(i % 50 + 1));
        check(&"[[source]]\n".repeat(i * 50));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(hwm < 300 << 10, "peak RSS {hwm} kB");
}
