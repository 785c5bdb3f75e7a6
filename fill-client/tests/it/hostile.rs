//! What an attacker or an unlucky operator does to `fill`: every case ends in a clear
//! error (or quietly, for a closed pipe), and nothing is destroyed or created by a slip.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use fill_core::catalog::{CatalogBuilder, wire};

use crate::{fill, p};

/// Imports `n` small files of distinct bytes (names given by `name`) into a new store.
fn store_of(dir: &std::path::Path, n: usize, name: impl Fn(usize) -> String) -> std::path::PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..n {
        fs::write(src.join(name(i)), format!("file {i}")).unwrap();
    }
    let store = dir.join("store");
    fill(&["store", "import", "--store", p(&store), p(&src)]).ok();
    store
}

/// A sources file whose one origin listens nowhere (port 9 on loopback).
fn dead_origin(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("sources.toml");
    fs::write(
        &path,
        "[[source]]\nname = \"o\"\nkind = \"origin\"\nurl = \"http://127.0.0.1:9\"\ncost_per_gib = 0.02\nbandwidth = \"1Gbps\"\n",
    )
    .unwrap();
    path
}

/// The command exited with `code` and its stderr says `text`.
fn says(run: &crate::Run, code: i32, text: &str) {
    assert_eq!(run.code(), code, "{}", run.stderr());
    assert!(run.stderr().contains(text), "{}", run.stderr());
}

#[test]
fn a_size_without_a_unit_is_refused_before_anything_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_of(tmp.path(), 3, |i| format!("f{i}"));
    let before = fill(&["store", "list", "--store", p(&store), "--json"])
        .ok()
        .stdout();
    let sources = dead_origin(tmp.path());
    let run = fill(&[
        "run",
        "--target",
        p(&store.join("catalog")),
        "--store",
        p(&store),
        "--sources",
        p(&sources),
        "--capacity",
        "40",
    ]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("bad size \"40\": no unit (write 40B for bytes"),
        "{}",
        run.stderr()
    );
    let after = fill(&["store", "list", "--store", p(&store), "--json"])
        .ok()
        .stdout();
    assert_eq!(before, after, "the store was touched");
    for ok in ["40TB", "40TiB", "40GB", "40B"] {
        let d = fill(&[
            "delta",
            "--target",
            p(&store.join("catalog")),
            "--store",
            p(&store),
            "--capacity",
            ok,
            "--json",
        ]);
        assert_eq!(d.code(), 0, "{ok}: {}", d.stderr());
    }
}

#[test]
fn a_path_that_is_not_a_store_is_refused_and_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_of(tmp.path(), 2, |i| format!("f{i}"));
    let typo = tmp.path().join("stroe");
    let cat = store.join("catalog");
    let commands: [&[&str]; 5] = [
        &["store", "verify", "--store", p(&typo)],
        &["store", "list", "--store", p(&typo)],
        &["appliance", "status", "--store", p(&typo)],
        &["appliance", "checks", "--store", p(&typo)],
        &[
            "delta",
            "--target",
            p(&cat),
            "--store",
            p(&typo),
            "--capacity",
            "1TB",
        ],
    ];
    for args in commands {
        let run = fill(args);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        assert_eq!(
            run.stderr().trim(),
            format!(
                "error: {} is not a store: no such directory",
                typo.display()
            ),
            "{args:?}"
        );
        assert!(!typo.exists(), "{args:?} created the path");
    }
    // A directory of something else (a home directory, say) is not a store either.
    let home = tmp.path().join("home");
    fs::create_dir(&home).unwrap();
    fs::write(home.join("notes.txt"), "mine").unwrap();
    let run = fill(&["store", "verify", "--store", p(&home)]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr()
            .contains("is not a store: the directory holds other files")
    );
    // An empty directory is a new disk: an empty store, all good.
    let disk = tmp.path().join("disk");
    fs::create_dir(&disk).unwrap();
    fill(&["store", "verify", "--store", p(&disk)]).ok();
}

#[test]
fn store_import_with_a_missing_source_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let run = fill(&[
        "store",
        "import",
        "--store",
        p(&store),
        p(&tmp.path().join("no-such-dir")),
    ]);
    says(&run, 1, "no-such-dir");
    assert!(!store.exists(), "the store directory was created");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    // More output than a pipe holds (64 KiB), so the writes meet the closed pipe.
    let store = store_of(tmp.path(), 1500, |i| {
        format!("a-rather-long-file-name-{i:05}.bin")
    });
    for args in [
        vec!["store", "list", "--store", p(&store)],
        vec!["store", "list", "--store", p(&store), "--json"],
        vec!["catalog", "export", p(&store.join("catalog"))],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fill"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // `| head -1`: the reader is gone.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!first.is_empty());
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn verify_repair_rebuilds_a_lost_outboard_and_keeps_the_content() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_of(tmp.path(), 3, |i| format!("f{i}"));
    let listed = fill(&["store", "list", "--store", p(&store), "--json"])
        .ok()
        .json();
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    fs::remove_file(store.join("outboard").join(&id)).unwrap();
    let other = listed[1]["id"].as_str().unwrap().to_owned();
    fs::write(store.join("outboard").join(&other), b"torn").unwrap();

    let found = fill(&["store", "verify", "--store", p(&store)]);
    assert_eq!(found.code(), 3);
    assert!(
        found.stdout().contains("--repair rebuilds the outboard"),
        "{}",
        found.stdout()
    );
    let repaired = fill(&[
        "store",
        "verify",
        "--store",
        p(&store),
        "--repair",
        "--json",
    ]);
    assert_eq!(repaired.code(), 3, "the run that found bad data says so");
    let r = repaired.json();
    assert_eq!(r["bad"].as_array().unwrap().len(), 0, "{r}");
    let rebuilt: Vec<&str> = r["rebuilt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(rebuilt.len(), 2);
    assert!(rebuilt.contains(&id.as_str()) && rebuilt.contains(&other.as_str()));
    // Nothing dropped: all three files still listed, content in place, all good.
    let clean = fill(&["store", "verify", "--store", p(&store)]).ok();
    assert!(clean.stdout().contains("all good"), "{}", clean.stdout());
    assert!(store.join("content").join(&id).exists());
    let after = fill(&["store", "list", "--store", p(&store), "--json"])
        .ok()
        .json();
    assert_eq!(after.as_array().unwrap().len(), 3);
}

#[test]
fn control_characters_in_names_are_escaped_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // C1 controls and bidi overrides pass the catalog's name rules: printed escaped.
    let names = ["csi\u{9b}2J.bin", "rtl\u{202e}4pm.exe", "plain.bin"];
    let store = store_of(tmp.path(), 3, |i| names[i].to_owned());
    let out = fill(&["store", "list", "--store", p(&store)]).ok().stdout();
    assert!(out.contains("csi\\u{9b}2J.bin"), "{out}");
    assert!(out.contains("rtl\\u{202e}4pm.exe"), "{out}");
    assert!(
        !out.contains('\u{9b}') && !out.contains('\u{202e}'),
        "{out}"
    );
    // JSON keeps the exact name (JSON escapes controls itself).
    let json = fill(&["store", "list", "--store", p(&store), "--json"])
        .ok()
        .json();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == names[0])
    );

    // A source name with ESC or a newline: the sources file is refused, the error escaped.
    let sources = tmp.path().join("sources.toml");
    fs::write(
        &sources,
        "[[source]]\nname = \"evil\\u001b[2J\\nok\"\nkind = \"origin\"\nurl = \"http://127.0.0.1:9\"\ncost_per_gib = 0.02\nbandwidth = \"1Gbps\"\n",
    )
    .unwrap();
    let run = fill(&[
        "run",
        "--target",
        p(&store.join("catalog")),
        "--store",
        p(&store),
        "--sources",
        p(&sources),
        "--capacity",
        "1TB",
    ]);
    assert_eq!(run.code(), 1);
    let err = run.stderr();
    assert!(err.contains("name has control characters"), "{err}");
    assert!(
        !err.contains('\u{1b}') && err.trim().lines().count() == 1,
        "{err:?}"
    );
}

#[test]
fn a_decompression_bomb_is_refused_without_expanding_it() {
    let tmp = tempfile::tempdir().unwrap();
    // 256 MiB of zeros in a few KB: a catalog header at the front, so only the ratio
    // gives it away.
    let mut raw = CatalogBuilder::new().finish().unwrap();
    raw.resize(256 << 20, 0);
    let bomb = wire::compress(&raw, 19);
    assert!(bomb.len() < 64 << 10);
    let path = tmp.path().join("bomb.catalog");
    fs::write(&path, &bomb).unwrap();
    let run = fill(&["catalog", "show", p(&path)]);
    says(&run, 1, "decompression bomb");
}

#[test]
fn absurd_deadlines_and_endless_config_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_of(tmp.path(), 2, |i| format!("f{i}"));
    let cat = store.join("catalog");
    let sources = dead_origin(tmp.path());
    let plan = |deadline: &str, sources: &std::path::Path| {
        fill(&[
            "plan",
            "--target",
            p(&cat),
            "--store",
            p(&store),
            "--sources",
            p(sources),
            "--capacity",
            "1TB",
            "--deadline",
            deadline,
        ])
    };
    let run = plan("3650000d", &sources);
    says(&run, 2, "more than the limit of 366d");
    let run = plan("366d", &sources);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    // A sources file that never ends (a device, a pipe): read up to the limit, then refused.
    let run = plan("48h", std::path::Path::new("/dev/zero"));
    says(&run, 1, "larger than the limit of 1 MiB");
}

#[test]
fn a_fill_stops_before_the_reserve_and_leaves_nothing_preallocated() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = store_of(tmp.path(), 4, |i| format!("f{i}"));
    let disk = tmp.path().join("disk");
    fs::create_dir(&disk).unwrap();
    let prefill = |reserve: &str| {
        fill(&[
            "prefill",
            "--target",
            p(&origin.join("catalog")),
            "--source",
            &format!("file://{}", origin.display()),
            "--store",
            p(&disk),
            "--reserve",
            reserve,
        ])
    };
    // More than any disk here has: the first file is refused before it is begun.
    let run = prefill("1EB");
    says(
        &run,
        1,
        "free on the store's filesystem, and a fill keeps 1 EB free (--reserve)",
    );
    let partial = disk.join(".fill/partial");
    let left = fs::read_dir(&partial).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "partial files were preallocated");
    // Within the reserve, the same fill completes.
    prefill("1MiB").ok();
    let listed = fill(&["store", "list", "--store", p(&disk), "--json"])
        .ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 4);
}
