//! The architecture invariant of docs/ARCHITECTURE.md, checked: fill-core does no I/O, reads
//! no clock and uses no unseeded randomness, so the simulator can run the production code.

use std::fs;
use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "SystemTime",
    "Instant",
    "thread_rng",
    "from_entropy",
    "OsRng",
    "tokio",
    "hyper",
    "println!",
    "eprintln!",
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn fill_core_does_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    assert!(files.len() >= 5, "found the sources");
    let mut found = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("read source");
        // Unit tests may do what they like; the invariant is about the library.
        let lib = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in lib.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "fill-core must stay pure:\n{}",
        found.join("\n")
    );
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("read manifest");
    let deps = manifest
        .split("[dev-dependencies]")
        .next()
        .unwrap_or_default();
    for dep in ["tokio", "hyper", "memmap2", "rand"] {
        assert!(!deps.contains(dep), "fill-core must not depend on {dep}");
    }
}
