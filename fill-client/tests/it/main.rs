//! End-to-end tests of the `fill` binary, in temp dirs.

mod ergonomics;
mod fill_e2e;
mod hostile;
mod s3;
mod site_fill;
mod station;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A `fill-server` process (the real binary, which `cargo test --workspace` builds beside
/// `fill`: the client does not link the server) serving a store on a free loopback port;
/// killed with SIGKILL on drop.
pub(crate) struct ServerProcess {
    child: std::process::Child,
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    pub(crate) fn start(store: &Path) -> Self {
        Self::start_with(store, &[])
    }

    /// With more arguments (`--config FILE`).
    pub(crate) fn start_with(store: &Path, args: &[&str]) -> Self {
        Self::start_at(store, "127.0.0.1:0", args)
    }

    /// On a given address (a restarted appliance keeps its URL).
    pub(crate) fn start_at(store: &Path, listen: &str, args: &[&str]) -> Self {
        let bin = Path::new(env!("CARGO_BIN_EXE_fill")).with_file_name("fill-server");
        let mut all = vec!["--store", p(store), "--listen", listen];
        all.extend(args);
        let (child, addr) = spawn_listening(&bin, &all);
        Self { child, addr }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `bin` (a workspace binary beside `fill`: `cargo test --workspace` builds them all)
/// with `args`, reads where it listens from the first line of its stderr (`… http://ADDR`),
/// and drains the rest so it never blocks on a full pipe.
pub(crate) fn spawn_listening(bin: &Path, args: &[&str]) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace`, or `cargo build --workspace` first",
        bin.display()
    );
    let mut child = Command::new(bin)
        .args(args)
        .env("FILL_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{} did not say where it listens: {line:?}", bin.display()));
    std::thread::spawn(move || {
        let mut sink = String::new();
        while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    (child, addr)
}

pub(crate) struct Run {
    pub(crate) out: Output,
}

impl Run {
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub(crate) fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub(crate) fn ok(self) -> Self {
        assert_eq!(
            self.code(),
            0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout()))
    }
}

pub(crate) fn fill(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_fill"))
        .args(args)
        .output()
        .expect("run fill");
    Run { out }
}

pub(crate) fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub(crate) fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_keyed(blake3::hash(&seed.to_le_bytes()).as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Writes files of seeded sizes under `dir`; returns their relative names.
fn random_tree(dir: &Path, n: u64, seed: u64) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let size = [0, 1, 1023, 1024, 1025, 1 << 20, (1 << 20) + 1, 3 << 20][(i % 8) as usize]
            + (seed * 31 + i * 7919) as usize % 5000 * usize::from(i % 8 > 4);
        let name = format!("titles/t{}/file{i}.bin", i % 3);
        let path = dir.join(&name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data(size, seed + i)).unwrap();
        names.push(name);
    }
    names
}

/// Ids must be exactly what `b3sum` prints. CI installs b3sum (see README); where it is
/// missing outside CI, the ids are still checked against the blake3 crate.
#[test]
fn ids_match_b3sum() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let names = random_tree(&src, 16, 7);
    let store = tmp.path().join("store");
    let run = fill(&["store", "import", "--store", p(&store), "--json", p(&src)]).ok();
    let imported = run.json();
    let imported = imported.as_array().unwrap();
    assert_eq!(imported.len(), names.len());
    let b3sum = Command::new("b3sum")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !b3sum {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install b3sum (cargo install b3sum)"
        );
        eprintln!("b3sum not installed: comparing with the blake3 crate only");
    }
    for entry in imported {
        let name = entry["name"].as_str().unwrap();
        let id = entry["id"].as_str().unwrap();
        let path = src.join(name);
        assert_eq!(
            id,
            blake3::hash(&fs::read(&path).unwrap()).to_hex().as_str()
        );
        if b3sum {
            let out = Command::new("b3sum")
                .arg("--no-names")
                .arg(&path)
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id, "{name}");
            // The stored copy is named by the same id.
            let out = Command::new("b3sum")
                .arg("--no-names")
                .arg(store.join("content").join(id))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
        }
    }
}

#[test]
fn store_list_verify_repair() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_tree(&src, 6, 1);
    let store = tmp.path().join("store");
    fill(&["store", "import", "--store", p(&store), p(&src)]).ok();
    let listed = fill(&["store", "list", "--store", p(&store), "--json"])
        .ok()
        .json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 6);
    assert!(
        listed
            .iter()
            .all(|e| e["partial"] == false && e["id"].as_str().unwrap().len() == 64)
    );
    assert!(listed.iter().any(|e| e["name"] == "titles/t0/file0.bin"));

    let clean = fill(&["store", "verify", "--store", p(&store)]).ok();
    assert!(
        clean.stdout().contains("verified 6 files"),
        "{}",
        clean.stdout()
    );

    // Rot one file: verify exits 3 and names it; --repair drops it.
    let victim = listed
        .iter()
        .find(|e| e["size"].as_u64().unwrap() > 1000)
        .unwrap();
    let id = victim["id"].as_str().unwrap();
    let path = store.join("content").join(id);
    let mut bytes = fs::read(&path).unwrap();
    bytes[1000] ^= 1;
    fs::write(&path, bytes).unwrap();
    let bad = fill(&["store", "verify", "--store", p(&store), "--json"]);
    assert_eq!(bad.code(), 3);
    assert_eq!(bad.json()["bad"][0]["id"], id);
    let repaired = fill(&["store", "verify", "--store", p(&store), "--repair"]);
    assert_eq!(
        repaired.code(),
        3,
        "the run that finds bad data still says so"
    );
    assert!(
        repaired.stdout().contains("1 bad files dropped"),
        "{}",
        repaired.stdout()
    );
    fill(&["store", "verify", "--store", p(&store)]).ok();
    let after = fill(&["store", "list", "--store", p(&store), "--json"])
        .ok()
        .json();
    assert_eq!(after.as_array().unwrap().len(), 5);
}

#[test]
fn catalogs_build_show_export_and_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("target");
    let names = random_tree(&src, 8, 3);
    let origin = tmp.path().join("origin");
    fill(&["store", "import", "--store", p(&origin), p(&src)]).ok();
    // Popularity: file i gets weight 8 - i.
    let mut pop = String::from("name,weight\n");
    for (i, n) in names.iter().enumerate() {
        pop += &format!("{n},{}\n", 8 - i);
    }
    let pop_path = tmp.path().join("popularity.csv");
    fs::write(&pop_path, pop).unwrap();
    let target = tmp.path().join("target.cat.zst");
    fill(&[
        "catalog",
        "build",
        "--store",
        p(&origin),
        "--popularity",
        p(&pop_path),
        "--out",
        p(&target),
    ])
    .ok();
    assert_eq!(
        &fs::read(&target).unwrap()[..4],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "zstd on .zst"
    );

    let shown = fill(&["catalog", "show", p(&target), "--json", "--limit", "3"])
        .ok()
        .json();
    assert_eq!(shown["entries"], 8);
    assert_eq!(shown["top"][0]["name"], names[0]);
    assert_eq!(shown["top"][2]["weight"], 6.0);

    // Export to CSV, rebuild from it: the same catalog.
    let csv = tmp.path().join("t.csv");
    fill(&["catalog", "export", p(&target), "--out", p(&csv)]).ok();
    let rebuilt = tmp.path().join("rebuilt.cat");
    fill(&["catalog", "build", "--csv", p(&csv), "--out", p(&rebuilt)]).ok();
    let json = tmp.path().join("t.json");
    fill(&[
        "catalog",
        "export",
        p(&rebuilt),
        "--format",
        "json",
        "--out",
        p(&json),
    ])
    .ok();
    let from_json = tmp.path().join("from-json.cat");
    fill(&[
        "catalog",
        "build",
        "--json",
        p(&json),
        "--out",
        p(&from_json),
    ])
    .ok();
    assert_eq!(fs::read(&rebuilt).unwrap(), fs::read(&from_json).unwrap());
    let raw = fill_core::catalog::wire::decompress(&fs::read(&target).unwrap(), 1 << 20).unwrap();
    assert_eq!(raw, fs::read(&rebuilt).unwrap());

    // An appliance holding the first half: the delta fetches the rest, most popular first.
    let half = tmp.path().join("half");
    for n in &names[..4] {
        let dst = half.join(n);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(src.join(n), dst).unwrap();
    }
    let appliance = tmp.path().join("appliance");
    std::fs::create_dir_all(&appliance).unwrap(); // a new, empty disk
    fill(&["store", "import", "--store", p(&appliance), p(&half)]).ok();
    let d = fill(&[
        "delta",
        "--target",
        p(&target),
        "--store",
        p(&appliance),
        "--capacity",
        "1TB",
        "--json",
    ])
    .ok()
    .json();
    let total: u64 = names
        .iter()
        .map(|n| fs::metadata(src.join(n)).unwrap().len())
        .sum();
    let held: u64 = names[..4]
        .iter()
        .map(|n| fs::metadata(src.join(n)).unwrap().len())
        .sum();
    assert_eq!(d["bytes_to_fetch"].as_u64().unwrap(), total - held);
    assert_eq!(d["keep"].as_array().unwrap().len(), 4);
    assert_eq!(d["evict"].as_array().unwrap().len(), 0);
    let fetch = d["fetch"].as_array().unwrap();
    let id_of = |name: &str| {
        blake3::hash(&fs::read(src.join(name)).unwrap())
            .to_hex()
            .to_string()
    };
    assert_eq!(fetch[0]["id"], id_of(&names[4]));
    assert!(d["offload_before"].as_f64().unwrap() < d["offload_after"].as_f64().unwrap());
    assert_eq!(d["offload_after"], 1.0);
    let table = fill(&[
        "delta",
        "--target",
        p(&target),
        "--store",
        p(&appliance),
        "--capacity",
        "1TB",
    ])
    .ok();
    assert!(table.stdout().contains("offload"), "{}", table.stdout());
}

#[test]
fn bad_input_gets_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.cat");
    fs::write(
        &bad,
        b"PK\x03\x04 definitely a zip file, not a catalog at all, long enough to pass the header",
    )
    .unwrap();
    let run = fill(&["catalog", "show", p(&bad)]);
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.stderr().trim(),
        format!(
            "error: catalog {}: not a catalog: bad magic bytes (expected \"FILLCAT\\0\")",
            bad.display()
        )
    );
    let empty = tmp.path().join("empty.cat");
    fs::write(&empty, b"").unwrap();
    let run = fill(&[
        "delta",
        "--target",
        p(&empty),
        "--store",
        p(tmp.path()),
        "--capacity",
        "1TB",
    ]);
    assert_eq!(
        run.stderr().trim(),
        format!(
            "error: catalog {}: catalog is empty (0 bytes): not a catalog",
            empty.display()
        )
    );
    let run = fill(&[
        "delta",
        "--target",
        p(&empty),
        "--store",
        p(tmp.path()),
        "--capacity",
        "12 parsecs",
    ]);
    // Sizes, durations, rates and times are parsed once, by clap: a bad one is a usage
    // error (exit 2) naming the flag and the value.
    assert_eq!(run.code(), 2);
    assert_eq!(
        run.stderr().trim(),
        "error: invalid value '12 parsecs' for '--capacity <CAPACITY>': bad size \"12 parsecs\": unknown unit \"parsecs\" (use B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB)\n\nFor more information, try '--help'."
    );
    let common = [
        "--target",
        p(&empty),
        "--store",
        p(tmp.path()),
        "--capacity",
        "1GB",
    ];
    for (cmd, flag, value, says) in [
        ("run", "--deadline", "0s", "is less than a second"),
        ("run", "--timeout", "0s", "must be more than zero"),
        ("run", "--ingress", "fast", "bad bandwidth"),
        ("plan", "--start", "yesterday", "--start <START>"),
    ] {
        let sources = tmp.path().join("none.toml");
        let args = [
            &[cmd][..],
            &common,
            &["--sources", p(&sources), flag, value],
        ]
        .concat();
        let run = fill(&args);
        assert_eq!(run.code(), 2, "{flag} {value}: {}", run.stderr());
        assert!(
            run.stderr().contains(&format!("invalid value '{value}'"))
                && run.stderr().contains(says),
            "{flag} {value}: {}",
            run.stderr()
        );
    }
    let csv = tmp.path().join("bad.csv");
    fs::write(&csv, "id,size,weight,name\nnot-an-id,1,1,a\n").unwrap();
    let run = fill(&[
        "catalog",
        "build",
        "--csv",
        p(&csv),
        "--out",
        p(&tmp.path().join("x")),
    ]);
    assert_eq!(
        run.stderr().trim(),
        format!(
            "error: {}: line 2: bad id: content id must be 64 lowercase hex characters, got 9 characters",
            csv.display()
        )
    );
    let run = fill(&[
        "store",
        "import",
        "--store",
        p(&tmp.path().join("s")),
        "--block-size",
        "3000B",
        p(&csv),
    ]);
    assert_eq!(
        run.stderr().trim(),
        "error: bad --block-size: block size 3000 is not a power of two between 1 KiB and 16 MiB"
    );
    let run = fill(&["store", "list", "--store", p(&csv)]);
    assert_eq!(
        run.stderr().trim(),
        format!("error: store {} is not a directory", csv.display())
    );
    assert_eq!(run.code(), 2);
    // clap's own usage errors exit 2.
    assert_eq!(fill(&["delta"]).code(), 2);
    // The exit codes are listed where an operator looks first.
    let help = fill(&["--help"]).ok().stdout();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for code in [
        "2 bad arguments",
        "3 verification found bad data",
        "4 a turn-up check failed",
    ] {
        assert!(help.contains(code), "{help}");
    }
}

#[test]
fn demo_runs_and_keeps_its_promises() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("demo");
    let run = fill(&["demo", "--dir", p(&dir), "--files", "24", "--json"]).ok();
    let r = run.json();
    assert_eq!(r["target_files"], 24);
    let d = &r["delta"];
    assert!(d["bytes_to_fetch"].as_u64().unwrap() > 0);
    assert!(d["peak_usage"].as_u64().unwrap() <= d["capacity"].as_u64().unwrap());
    assert!(r["verified_files"].as_u64().unwrap() > 24);
    // The fill ran: every planned byte fetched, the appliance at its planned offload.
    assert_eq!(r["fill"]["bytes_fetched"], d["bytes_to_fetch"]);
    assert_eq!(r["offload_after_fill"], d["offload_after"]);
    // After the fill, `fill delta` on what the demo left behind has nothing to fetch.
    let again = fill(&[
        "delta",
        "--target",
        p(&dir.join("target.catalog")),
        "--store",
        p(&dir.join("appliance")),
        "--capacity",
        &format!("{}B", d["capacity"]),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(again["bytes_to_fetch"], 0);
    assert_eq!(again["offload_before"], d["offload_after"]);
    let human = fill(&["demo", "--files", "12"]).ok();
    assert!(human.stdout().contains("all good"), "{}", human.stdout());
}

/// `fill demo --site`: three appliances fill together; the origin (counting for itself)
/// serves what no appliance held, about once; the site report adds up.
#[test]
fn demo_site_fills_three_appliances_together() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("demo");
    let r = fill(&[
        "demo",
        "--site",
        "--dir",
        p(&dir),
        "--files",
        "24",
        "--json",
    ])
    .ok()
    .json();
    let (served, new) = (
        r["origin_served_bytes"].as_u64().unwrap(),
        r["no_one_held_bytes"].as_u64().unwrap(),
    );
    assert!(new > 0, "{r}");
    assert!(
        served as f64 <= 1.02 * new as f64,
        "{served} > 1.02 × {new}"
    );
    assert_eq!(r["plan"]["external_bytes"], new, "{r}");
    let apps = r["status"]["appliances"].as_array().unwrap();
    assert_eq!(apps.len(), 3);
    assert!(apps.iter().all(|a| a["fill"]["state"] == "done"), "{r}");
    assert_eq!(r["status"]["lacks_bytes"], 0);
    assert!(r["status"]["inside_bytes"].as_u64().unwrap() > 0);
    let human = fill(&["demo", "--site", "--files", "12"]).ok();
    assert!(
        human.stdout().contains("fill site status") && human.stdout().contains("the origin served"),
        "{}",
        human.stdout()
    );
}

/// `fill appliance`: a store without events is live; a lifecycle starts at allocated, moves
/// only along allowed transitions, survives restarts (every command is a new process), and
/// shrugs off a last line a crash cut short.
#[test]
fn appliance_lifecycle_events() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir(&store).unwrap(); // a new, empty disk
    let st = |args: &[&str]| fill(&[&["appliance"][..], args].concat());
    let status = || st(&["status", "--store", p(&store), "--json"]).ok().json();
    assert_eq!(status()["state"], "live");
    assert_eq!(status()["events"].as_array().unwrap().len(), 0);
    // No lifecycle yet: it must start at allocated.
    let e = st(&["event", "--store", p(&store), "prefilling"]);
    assert_eq!(e.code(), 1);
    assert!(e.stderr().contains("start it with"), "{}", e.stderr());
    for (to, reason) in [
        ("allocated", "site FRA-3"),
        ("prefilling", "station 7"),
        ("in_transit", "shipped"),
    ] {
        st(&["event", "--store", p(&store), to, "--reason", reason]).ok();
    }
    let s = status();
    assert_eq!(s["state"], "in_transit");
    let events = s["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["from"], "prefilling");
    assert_eq!(events[2]["to"], "in_transit");
    assert_eq!(events[2]["reason"], "shipped");
    // Forbidden, with what is allowed; unknown names are named.
    let bad = st(&["event", "--store", p(&store), "live"]);
    assert_eq!(bad.code(), 1);
    assert!(
        bad.stderr()
            .contains("cannot go from in_transit to live: from in_transit the next states are delivered, retired"),
        "{}",
        bad.stderr()
    );
    let unknown = st(&["event", "--store", p(&store), "shipped"]);
    assert!(
        unknown.stderr().contains("unknown state \"shipped\""),
        "{}",
        unknown.stderr()
    );
    // A crash in the middle of an append: the torn line is ignored, and the next event
    // starts on a line of its own.
    let path = store.join(".fill/state/events.jsonl");
    let mut text = fs::read_to_string(&path).unwrap();
    text += "{\"time\":17,\"from\":\"in_tr";
    fs::write(&path, &text).unwrap();
    assert_eq!(status()["state"], "in_transit");
    st(&["event", "--store", p(&store), "delivered"]).ok();
    assert_eq!(status()["state"], "delivered");
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 4);
}

/// A small model for the simulate tests: 2,000 titles (10,000 files).
const SMALL_SIM: &str = "seed = 9\n[catalog]\ntitles = 2000\nnew_titles_per_day = 4.0\n\
                         [appliance]\ncapacity = \"12TB\"\ningress = \"120Mbps\"\n";

fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

#[test]
fn simulate_default_sweep_and_identical_reruns() {
    let tmp = tempfile::tempdir().unwrap();
    // The README's command: no argument but --out.
    let out = tmp.path().join("default");
    let run = fill(&["simulate", "--out", p(&out)]).ok();
    assert!(run.stdout().contains("   3d "), "{}", run.stdout());
    let rows = csv_rows(&out.join("results.csv"));
    assert_eq!(rows.len(), 61);
    let day = |d: usize, col: &str| rows[d][col].parse::<f64>().unwrap();
    assert_eq!(day(0, "bytes_fetched"), 0.0);
    for d in 3..=7 {
        assert_eq!(day(d, "days_to_complete"), 2.0, "delay {d}");
    }
    for d in 1..=60 {
        assert!(day(d, "bytes_fetched") >= day(d - 1, "bytes_fetched"));
        assert!(day(d, "cost") >= day(d - 1, "cost"));
    }
    for chart in ["cost", "days", "bytes"] {
        let svg = fs::read_to_string(out.join(format!("{chart}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("install delay"),
            "{chart}"
        );
        let png = fs::read(out.join(format!("{chart}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{chart}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["mode"], "sweep");
    assert_eq!(json["sweep"].as_array().unwrap().len(), 61);

    // The same seed: byte-identical files.
    let cfg = tmp.path().join("small.toml");
    fs::write(&cfg, SMALL_SIM).unwrap();
    let dirs = [tmp.path().join("a"), tmp.path().join("b")];
    for d in &dirs {
        fill(&[
            "simulate",
            "--config",
            p(&cfg),
            "--delays",
            "0..12",
            "--out",
            p(d),
        ])
        .ok();
    }
    for f in [
        "results.csv",
        "results.json",
        "cost.svg",
        "cost.png",
        "days.svg",
        "days.png",
        "bytes.svg",
        "bytes.png",
    ] {
        assert!(
            fs::read(dirs[0].join(f)).unwrap() == fs::read(dirs[1].join(f)).unwrap(),
            "{f} differs between two runs with one seed"
        );
    }
    // Another seed: other numbers.
    let other = tmp.path().join("c");
    fill(&[
        "simulate",
        "--config",
        p(&cfg),
        "--delays",
        "0..12",
        "--seed",
        "10",
        "--out",
        p(&other),
    ])
    .ok();
    assert!(
        fs::read(dirs[0].join("results.csv")).unwrap()
            != fs::read(other.join("results.csv")).unwrap()
    );
}

#[test]
fn simulate_a_fleet_with_and_without_site_plans() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("small.toml");
    fs::write(&cfg, SMALL_SIM).unwrap();
    let out = tmp.path().join("fleet");
    let run = fill(&[
        "simulate",
        "--config",
        p(&cfg),
        "--appliances",
        "22",
        "--delays",
        "0..15",
        "--out",
        p(&out),
    ])
    .ok();
    assert!(
        run.stdout().contains("site-level planning saves"),
        "{}",
        run.stdout()
    );
    let rows = csv_rows(&out.join("results.csv"));
    assert_eq!(rows.len(), 22);
    assert!(
        rows.iter()
            .all(|r| r["delay_days"].parse::<u32>().unwrap() <= 15)
    );
    assert!(rows.iter().any(|r| r["bytes_in_site"] != "0"));
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("results.json")).unwrap()).unwrap();
    let (alone, site) = (&json["fleet_alone"], &json["fleet_site"]);
    assert_eq!(alone["appliances"], 22);
    assert!(site["cost"].as_f64().unwrap() < alone["cost"].as_f64().unwrap());

    // Site plans off; real delays from a CSV.
    let delays = tmp.path().join("delays.csv");
    fs::write(&delays, "site,delay_days\nA,4\nB,11\n").unwrap();
    let off = tmp.path().join("off");
    let run = fill(&[
        "simulate",
        "--config",
        p(&cfg),
        "--delays-csv",
        p(&delays),
        "--no-site-planning",
        "--appliances",
        "8",
        "--out",
        p(&off),
        "--json",
    ])
    .ok();
    let json = run.json();
    assert!(json["fleet_site"].is_null());
    for r in csv_rows(&off.join("results.csv")) {
        assert!(["4", "11"].contains(&r["delay_days"].as_str()), "{r:?}");
        assert_eq!(r["bytes_in_site"], "0");
    }

    // Bad input: clear errors.
    // A value that does not parse is a bad argument: exit 2, as the README says.
    for delays in ["9..2", "0-60"] {
        let bad = fill(&["simulate", "--delays", delays, "--out", p(&off)]);
        assert_eq!(bad.code(), 2, "{}", bad.stderr());
        assert!(
            bad.stderr()
                .contains(&format!("invalid value '{delays}' for '--delays <DELAYS>'")),
            "{}",
            bad.stderr()
        );
    }
    fs::write(&cfg, "[catalog]\ntitels = 5\n").unwrap();
    let bad = fill(&["simulate", "--config", p(&cfg), "--out", p(&off)]);
    assert!(
        bad.stderr().contains("unknown field `titels`"),
        "{}",
        bad.stderr()
    );
    fs::write(&delays, "delay_days\nsoon\n").unwrap();
    let bad = fill(&["simulate", "--delays-csv", p(&delays), "--out", p(&off)]);
    assert!(
        bad.stderr()
            .contains("row 2: \"soon\" is not a whole number of days"),
        "{}",
        bad.stderr()
    );
}

/// `fill bench dataset`: the same seed gives the same bytes; the stale copy is what its
/// summary says, and a fill of it fetches less than the target (its identical and patched
/// files are reused).
#[test]
fn bench_dataset_is_seeded_and_fills() {
    let tmp = tempfile::tempdir().unwrap();
    let make = |root: &Path, seed: &str, gib: &str| {
        fill(&[
            "bench",
            "dataset",
            "--root",
            p(root),
            "--total-gib",
            gib,
            "--seed",
            seed,
            "--json",
        ])
        .ok()
        .json()
    };
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let wa = make(&a, "7", "0.25");
    assert_eq!(make(&b, "7", "0.25"), wa);
    make(&c, "8", "0.25");
    let sums = |root: &Path| {
        let mut out = Vec::new();
        for dir in ["target", "stale"] {
            let mut files: Vec<PathBuf> = Vec::new();
            let mut stack = vec![root.join(dir)];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).unwrap() {
                    let path = e.unwrap().path();
                    if path.is_dir() {
                        stack.push(path)
                    } else {
                        files.push(path)
                    }
                }
            }
            files.sort();
            for f in files {
                let rel = f.strip_prefix(root).unwrap().to_owned();
                out.push((rel, blake3::hash(&fs::read(&f).unwrap())));
            }
        }
        out.push((
            "popularity.csv".into(),
            blake3::hash(&fs::read(root.join("popularity.csv")).unwrap()),
        ));
        out
    };
    assert_eq!(sums(&a), sums(&b), "one seed, one dataset");
    assert_ne!(sums(&a), sums(&c));
    let n = wa["target_files"].as_u64().unwrap();
    let parts = ["identical", "reencoded", "patched", "missing"];
    assert_eq!(
        parts.iter().map(|k| wa[k].as_u64().unwrap()).sum::<u64>(),
        n
    );
    let csv = fs::read_to_string(a.join("popularity.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, n + 1);

    // It works as a benchmark's region: a target catalog, a stale store, a delta.
    let (origin, stale) = (tmp.path().join("origin"), tmp.path().join("stale"));
    fill(&[
        "store",
        "import",
        "--store",
        p(&origin),
        p(&a.join("target")),
    ])
    .ok();
    fill(&["store", "import", "--store", p(&stale), p(&a.join("stale"))]).ok();
    let cat = tmp.path().join("target.cat");
    fill(&[
        "catalog",
        "build",
        "--store",
        p(&origin),
        "--popularity",
        p(&a.join("popularity.csv")),
        "--out",
        p(&cat),
    ])
    .ok();
    let d = fill(&[
        "delta",
        "--target",
        p(&cat),
        "--store",
        p(&stale),
        "--capacity",
        "1PB",
        "--json",
    ])
    .ok()
    .json();
    let total = wa["target_bytes"].as_u64().unwrap();
    let fetch = d["bytes_to_fetch"].as_u64().unwrap();
    assert!(fetch > 0 && fetch < total, "fetch {fetch} of {total}: {d}");
}

/// Completions and manual pages come from the same definitions as `--help`.
#[test]
fn completions_and_manual_pages_are_generated() {
    for (shell, mark) in [
        ("bash", "_fill()"),
        ("zsh", "#compdef fill"),
        ("fish", "complete -c fill"),
    ] {
        let out = fill(&["completions", shell]).ok().stdout();
        assert!(out.contains(mark), "{shell}: {out}");
        assert!(
            out.contains("prefill") && out.contains("capacity"),
            "{shell}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let said = fill(&["man", "--dir", p(&dir)]).ok().stdout();
    assert!(said.starts_with("wrote "), "{said}");
    let run = fs::read_to_string(dir.join("fill-run.1")).unwrap();
    assert!(
        run.starts_with(".ie") || run.contains(".TH fill-run"),
        "{run}"
    );
    assert!(run.contains("reserve"), "the page documents the flags");
    assert!(dir.join("fill.1").exists());
    assert_eq!(fill(&["completions", "tcsh"]).code(), 2);
}
