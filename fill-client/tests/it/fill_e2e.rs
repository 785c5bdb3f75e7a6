//! `fill run` end to end over loopback against fill-server: lying, truncating and dead
//! sources, a loud failure on bad origin data, resume after kill -9, rate caps.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fill_core::outboard::BlockSize;
use fill_store::store::Store;

use crate::{ServerProcess, data, fill, p};

/// A fill-server process for `store` on a free loopback port, killed on drop.
fn serve(store: &Path) -> ServerProcess {
    ServerProcess::start(store)
}

pub(crate) struct Region {
    pub(crate) dir: PathBuf,
    /// (name, bytes) of the target files.
    pub(crate) files: Vec<(String, Vec<u8>)>,
    pub(crate) target: PathBuf,
}

/// A target of `n` files of a few MiB (1 MiB blocks), imported into `origin`.
pub(crate) fn region(dir: &Path, n: usize) -> Region {
    region_with(dir, n, BlockSize::DEFAULT)
}

/// The same with blocks of `block`.
fn region_with(dir: &Path, n: usize, block: BlockSize) -> Region {
    let src = dir.join("target");
    fs::create_dir_all(&src).unwrap();
    let mut files = Vec::new();
    for i in 0..n {
        let size = (i % 4 + 1) * (1 << 20) + i * 1000;
        let bytes = data(size, 100 + i as u64);
        let name = format!("f{i}.mp4");
        fs::write(src.join(&name), &bytes).unwrap();
        files.push((name, bytes));
    }
    let origin = dir.join("origin");
    Store::new(&origin)
        .unwrap()
        .import(std::slice::from_ref(&src), block, &|_| {})
        .unwrap();
    let mut pop = String::from("name,weight\n");
    for (i, (name, _)) in files.iter().enumerate() {
        pop += &format!("{name},{}\n", n - i);
    }
    fs::write(dir.join("pop.csv"), pop).unwrap();
    let target = dir.join("target.cat");
    fill(&[
        "catalog",
        "build",
        "--store",
        p(&origin),
        "--popularity",
        p(&dir.join("pop.csv")),
        "--out",
        p(&target),
    ])
    .ok();
    Region {
        dir: dir.to_owned(),
        files,
        target,
    }
}

pub(crate) fn sources(path: &Path, list: &[(&str, &str, SocketAddr, f64, &str)]) {
    let mut t = String::new();
    for (name, kind, addr, cost, bw) in list {
        t += &format!(
            "[[source]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"http://{addr}\"\ncost_per_gib = {cost}\nbandwidth = \"{bw}\"\n\n"
        );
    }
    fs::write(path, t).unwrap();
}

/// A fill-server for `dir/origin`, and `dir/sources.toml` naming it as the only source.
fn origin_only(dir: &Path) -> (ServerProcess, PathBuf) {
    let srv = serve(&dir.join("origin"));
    let src = dir.join("sources.toml");
    sources(&src, &[("origin", "origin", srv.addr, 0.02, "10Gbps")]);
    (srv, src)
}

/// An appliance store at `dir/appliance` holding `files` (imported under their file names
/// when given as files).
fn appliance_holding(dir: &Path, files: &[PathBuf]) -> PathBuf {
    let appliance = dir.join("appliance");
    std::fs::create_dir_all(&appliance).unwrap(); // a new, empty disk
    Store::new(&appliance)
        .unwrap()
        .import(files, BlockSize::DEFAULT, &|_| {})
        .unwrap();
    appliance
}

/// `fill run --json` of `appliance` to the region's target; it must succeed.
fn run_json(r: &Region, appliance: &Path, src: &Path, capacity: &str) -> serde_json::Value {
    fill(&[
        "run",
        "--target",
        p(&r.target),
        "--store",
        p(appliance),
        "--sources",
        p(src),
        "--capacity",
        capacity,
        "--json",
    ])
    .ok()
    .json()
}

/// The ids of `files`, sorted.
fn ids_of<'a>(files: impl IntoIterator<Item = &'a (String, Vec<u8>)>) -> Vec<String> {
    let mut ids: Vec<String> = files
        .into_iter()
        .map(|(_, b)| blake3::hash(b).to_hex().to_string())
        .collect();
    ids.sort();
    ids
}

/// The names in a store's `content/`, sorted.
fn content_of(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.join("content"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every target file is in the appliance, byte for byte, and the delta is empty.
pub(crate) fn assert_filled(r: &Region, appliance: &Path) {
    for (name, bytes) in &r.files {
        let id = blake3::hash(bytes).to_hex().to_string();
        let held = fs::read(appliance.join("content").join(&id))
            .unwrap_or_else(|_| panic!("{name} missing"));
        assert!(held == *bytes, "{name} differs");
    }
    let d = delta(r, appliance, "1TB");
    assert_eq!(d["bytes_to_fetch"], 0);
    fill(&["store", "verify", "--store", p(appliance)]).ok();
}

/// `fill delta --json` of the appliance against the region's target.
fn delta(r: &Region, appliance: &Path, capacity: &str) -> serde_json::Value {
    fill(&[
        "delta",
        "--target",
        p(&r.target),
        "--store",
        p(appliance),
        "--capacity",
        capacity,
        "--json",
    ])
    .ok()
    .json()
}

fn corrupt(store: &Path, bytes: &[u8], at: usize) {
    let id = blake3::hash(bytes).to_hex().to_string();
    let path = store.join("content").join(id);
    let mut b = fs::read(&path).unwrap();
    b[at] ^= 0x40;
    // Replace, not rewrite in place: the server may have the old file mapped.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, &b).unwrap();
    fs::rename(&tmp, &path).unwrap();
}

#[test]
fn lying_truncating_and_dead_sources_are_routed_around() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 8);
    // A free peer holding everything but file 4, and it lies: bit flips in three files.
    let peer = tmp.path().join("peer");
    let id_of = |i: usize| fill_core::ContentId::of(&r.files[i].1);
    let peer_store = Store::new(&peer).unwrap();
    peer_store
        .import(&[tmp.path().join("target")], BlockSize::DEFAULT, &|_| {})
        .unwrap();
    peer_store.evict(&[id_of(4)]).unwrap();
    for (i, at) in [(1, 5), (2, 1 << 20), (3, (2 << 20) + 7)] {
        corrupt(&peer, &r.files[i].1, at);
    }
    // Another free peer, holding only file 4, truncated: its own, so the first peer's
    // quarantine cannot keep it from being asked.
    let short_peer = tmp.path().join("short-peer");
    let short_store = Store::new(&short_peer).unwrap();
    short_store
        .import(&[tmp.path().join("target")], BlockSize::DEFAULT, &|_| {})
        .unwrap();
    let others: Vec<_> = (0..r.files.len()).filter(|&i| i != 4).map(id_of).collect();
    short_store.evict(&others).unwrap();
    let f4 = short_peer.join("content").join(id_of(4).to_string());
    let short = fs::read(&f4).unwrap()[..1000].to_vec();
    fs::write(f4.with_extension("tmp"), short).unwrap();
    fs::rename(f4.with_extension("tmp"), &f4).unwrap();
    // The lying peer does not check what it serves (fill-server would withdraw a file
    // whose re-verified block fails, and answer 404 rather than lie).
    let peer_addr = hostile(&peer, Fault::Verbatim);
    let short_srv = serve(&short_peer);
    let origin_srv = serve(&tmp.path().join("origin"));
    // A dead tier: nothing listens there.
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let src = tmp.path().join("sources.toml");
    sources(
        &src,
        &[
            ("peer", "peer", peer_addr, 0.0, "10Gbps"),
            ("short-peer", "peer", short_srv.addr, 0.0, "10Gbps"),
            ("tier", "tier", dead, 0.001, "10Gbps"),
            ("origin", "origin", origin_srv.addr, 0.02, "10Gbps"),
        ],
    );
    let appliance = tmp.path().join("appliance");
    std::fs::create_dir_all(&appliance).unwrap(); // a new, empty disk
    let out = fill(&[
        "run",
        "--target",
        p(&r.target),
        "--store",
        p(&appliance),
        "--sources",
        p(&src),
        "--capacity",
        "1TB",
        "--json",
    ])
    .ok()
    .json();
    let by = |name: &str| {
        out["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let (peer_r, tier_r, origin_r) = (by("peer"), by("tier"), by("origin"));
    let short_r = by("short-peer");
    assert_eq!(peer_r["bad_blocks"], 3, "{out}");
    assert_eq!(peer_r["quarantined"], true);
    assert!(
        short_r["failed_requests"].as_u64().unwrap() >= 1,
        "the truncated file: {out}"
    );
    assert_eq!(
        short_r["quarantined"], false,
        "a short body is not a lie about bytes"
    );
    assert!(tier_r["unreachable"].is_string());
    assert!(origin_r["bytes"].as_u64().unwrap() > 0);
    let total: u64 = r.files.iter().map(|f| f.1.len() as u64).sum();
    assert_eq!(out["bytes_fetched"], total);
    // The default writer: io_uring with O_DIRECT, or a fallback that says why.
    let backend = out["write_backend"].as_str().unwrap();
    assert!(
        backend.starts_with("io_uring, O_DIRECT") || backend.contains("refused"),
        "{backend}"
    );
    assert_filled(&r, &appliance);
    let _ = r.dir;
}

/// A bit-rotted file at the origin: fill-server re-verifies a block of a file when it
/// first maps it, withdraws the file (404), and the fill fails naming it; an origin that
/// does not check (a plain static server) sends the bad bytes, and the fill stops at the
/// first bad block, blaming the origin. Nothing unverified is recorded either way.
#[test]
fn bad_data_from_the_origin_fails_loudly() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 3);
    let origin = tmp.path().join("origin");
    corrupt(&origin, &r.files[0].1, 10);
    let id = blake3::hash(&r.files[0].1).to_hex();
    let run_from = |src: &Path, appliance: &Path| {
        fs::create_dir_all(appliance).unwrap(); // a new, empty disk
        fill(&[
            "run",
            "--target",
            p(&r.target),
            "--store",
            p(appliance),
            "--sources",
            p(src),
            "--capacity",
            "1TB",
        ])
    };
    let (origin_srv, src) = origin_only(tmp.path());
    let appliance = tmp.path().join("appliance");
    let run = run_from(&src, &appliance);
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.stderr().trim(),
        format!("error: every source failed blocks 0..1 of {id} (f0.mp4)")
    );
    let answer = http_get(origin_srv.addr, &format!("/content/{id}"));
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        answer.contains("is withdrawn: block 0 does not verify"),
        "{answer}"
    );

    let verbatim = hostile(&origin, Fault::Verbatim);
    let src = tmp.path().join("verbatim.toml");
    sources(&src, &[("origin", "origin", verbatim, 0.02, "10Gbps")]);
    let appliance2 = tmp.path().join("appliance2");
    let run = run_from(&src, &appliance2);
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.stderr().trim(),
        format!(
            "error: origin origin sent bad data for {id} block 0: the catalog or the origin is wrong"
        )
    );
    for appliance in [&appliance, &appliance2] {
        let listed = fill(&["store", "list", "--store", p(appliance), "--json"])
            .ok()
            .json();
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["id"] != id.as_str() || e["partial"] == true)
        );
    }
}

/// Many connections to one source and small blocks: the requests in flight together want
/// far more block writes than the run keeps in flight. Each write gives its slot back as it
/// completes, so the fill finishes (it once deadlocked here: requests held slots of finished
/// writes while waiting for more). The rate cap keeps all sixteen requests in flight at
/// once. Bounded: killed after 60 s.
#[test]
fn more_requests_than_write_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region_with(tmp.path(), 8, BlockSize::from_bytes(64 << 10).unwrap());
    let origin_srv = serve(&tmp.path().join("origin"));
    let src = tmp.path().join("sources.toml");
    fs::write(
        &src,
        format!(
            "[[source]]\nname = \"origin\"\nkind = \"origin\"\nurl = \"http://{}\"\n\
             cost_per_gib = 0.02\nbandwidth = \"400Mbps\"\nmax_connections = 16\n",
            origin_srv.addr
        ),
    )
    .unwrap();
    let appliance = tmp.path().join("appliance");
    std::fs::create_dir_all(&appliance).unwrap(); // a new, empty disk
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fill"))
        .args([
            "run",
            "--target",
            p(&r.target),
            "--store",
            p(&appliance),
            "--sources",
            p(&src),
            "--capacity",
            "1TB",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = status.expect("the fill did not finish within 60 s");
    assert!(status.success(), "the fill failed: {status}");
    assert_filled(&r, &appliance);
}

/// A full appliance: files not in the target and a file that no longer fits make room for
/// the new ones as the delta schedules (here one eviction before each fetch), the files not
/// in the target from the start. The result is exactly the placed files, with nothing left
/// to fetch or evict.
#[test]
fn evictions_make_room_for_the_new_files() {
    let tmp = tempfile::tempdir().unwrap();
    // f0..f7 of 1, 2, 3, 4, 1, 2, 3, 4 MiB (plus i * 1000 bytes), most popular first.
    let r = region(tmp.path(), 8);
    let (_origin_srv, src) = origin_only(tmp.path());
    let retired = tmp.path().join("retired");
    fs::create_dir_all(&retired).unwrap();
    fs::write(retired.join("r1.mp4"), data(1 << 20, 901)).unwrap();
    fs::write(retired.join("r2.mp4"), data(2 << 20, 902)).unwrap();
    // Held: r1, r2, f0..f3, f7: 17 MiB + 7000 bytes.
    let mut held = vec![retired.join("r1.mp4"), retired.join("r2.mp4")];
    for i in [0, 1, 2, 3, 7] {
        held.push(tmp.path().join("target").join(&r.files[i].0));
    }
    let appliance = appliance_holding(tmp.path(), &held);
    // 18 MiB places f0..f6; f7 no longer fits. Fetching f4, f5 and f6 needs room each time:
    // r1, then r2, then f7 go, one before each.
    let capacity = format!("{}B", 18u64 << 20);
    let planned = delta(&r, &appliance, &capacity);
    let before: Vec<u64> = planned["evict_schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["before_fetch"].as_u64().unwrap())
        .collect();
    assert_eq!(before, [0, 1, 2], "{planned}");
    let out = run_json(&r, &appliance, &src, &capacity);
    assert_eq!(out["files_evicted"], 3, "{out}");
    assert_eq!(out["files_completed"], 3, "{out}");
    assert_eq!(content_of(&appliance), ids_of(&r.files[..7]));
    for (name, bytes) in &r.files[..7] {
        let id = blake3::hash(bytes).to_hex().to_string();
        assert!(
            fs::read(appliance.join("content").join(id)).unwrap() == *bytes,
            "{name} differs"
        );
    }
    let after = delta(&r, &appliance, &capacity);
    assert_eq!(after["bytes_to_fetch"], 0, "{after}");
    assert_eq!(after["evict"].as_array().unwrap().len(), 0, "{after}");
    fill(&["store", "verify", "--store", p(&appliance)]).ok();
}

/// An older version of a region's f2 (3 MiB + 2000 bytes): block 1 rewritten and a shorter
/// tail; blocks 0 and 2 as in `f2`.
fn older_f2(f2: &[u8]) -> Vec<u8> {
    let mut old = f2[..3 << 20].to_vec();
    old[(1 << 20)..(1 << 20) + 10].fill(0xEE);
    old.extend_from_slice(&data(500, 7));
    old
}

/// A fill cut after copying from an older version, before evicting it: the rerun resumes the
/// new file (its copied blocks verified again, not copied twice), fetches only the rest, and
/// evicts the older version as any retired file.
#[test]
fn cut_after_copying_from_an_older_version() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 3);
    let (_origin_srv, src) = origin_only(tmp.path());
    let old = tmp.path().join("old");
    fs::create_dir_all(&old).unwrap();
    let f2 = &r.files[2].1;
    fs::write(old.join("f2.mp4"), older_f2(f2)).unwrap();
    let mut held = vec![old.join("f2.mp4")];
    for i in [0, 1] {
        held.push(tmp.path().join("target").join(&r.files[i].0));
    }
    let appliance = appliance_holding(tmp.path(), &held);
    // What the cut run left: the new f2 begun, blocks 0 and 2 copied, synced and recorded.
    let store = Store::new(&appliance).unwrap();
    let ob = fill_core::outboard::Outboard::compute(f2, BlockSize::DEFAULT);
    let mut state = store.begin_partial(&ob, "f2.mp4").unwrap();
    let mut data_file = fs::OpenOptions::new()
        .write(true)
        .open(store.partial_data_path(&ob.id()))
        .unwrap();
    for b in [0u64, 2] {
        use std::io::{Seek, SeekFrom, Write};
        let (offset, len) = ob.block_range(b);
        data_file.seek(SeekFrom::Start(offset)).unwrap();
        data_file
            .write_all(&f2[offset as usize..(offset + len) as usize])
            .unwrap();
        state.file.set_verified(b, true);
    }
    data_file.sync_all().unwrap();
    store.save_partial(&state).unwrap();

    let out = run_json(&r, &appliance, &src, "1GB");
    assert_eq!(out["bytes_fetched"], f2.len() as u64 - (2 << 20), "{out}");
    assert_eq!(out["bytes_copied"], 0, "{out}");
    assert_eq!(out["files_evicted"], 1, "{out}");
    assert_filled(&r, &appliance);
    assert_eq!(content_of(&appliance), ids_of(&r.files));
}

/// An appliance holding an older version of a file (same name, other content) copies the
/// blocks the two share at the same offsets instead of fetching them, then evicts it; an
/// older version that shares nothing is only evicted.
#[test]
fn older_versions_give_their_shared_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    // f0..f3 of 1, 2, 3, 4 MiB (plus i * 1000 bytes), 1 MiB blocks.
    let r = region(tmp.path(), 4);
    let (_origin_srv, src) = origin_only(tmp.path());
    let old = tmp.path().join("old");
    fs::create_dir_all(&old).unwrap();
    let f2 = &r.files[2].1;
    fs::write(old.join("f2.mp4"), older_f2(f2)).unwrap();
    // f3's: one byte inserted at the start shifts every block.
    let mut old_f3 = vec![0u8];
    old_f3.extend_from_slice(&r.files[3].1);
    fs::write(old.join("f3.mp4"), &old_f3).unwrap();
    let mut held = vec![old.join("f2.mp4"), old.join("f3.mp4")];
    for i in [0, 1] {
        held.push(tmp.path().join("target").join(&r.files[i].0));
    }
    let appliance = appliance_holding(tmp.path(), &held);
    let out = run_json(&r, &appliance, &src, "1GB");
    let whole = (f2.len() + r.files[3].1.len()) as u64;
    assert_eq!(out["bytes_fetched"], whole - (2 << 20), "{out}");
    assert_eq!(out["bytes_copied"], 2 << 20, "{out}");
    assert_eq!(out["files_evicted"], 2, "{out}");
    assert_eq!(out["files_completed"], 2, "{out}");
    assert_filled(&r, &appliance);
    assert_eq!(
        content_of(&appliance),
        ids_of(&r.files),
        "the older versions are gone"
    );
}

/// What a store has recorded: complete files, and verified blocks of partial ones.
pub(crate) fn recorded_bytes(store: &Path) -> u64 {
    let listed = fill(&["store", "list", "--store", p(store), "--json"]);
    if listed.code() != 0 {
        return 0;
    }
    listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            if e["partial"] == true {
                e["verified"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v[1].as_u64().unwrap())
                    .sum()
            } else {
                e["size"].as_u64().unwrap()
            }
        })
        .sum()
}

/// kill -9 in the middle of a rate-capped fill, then the same command again: it finishes,
/// fetching exactly what was not yet recorded; the cap holds.
#[test]
fn resume_after_kill_and_rate_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 8);
    let origin_srv = serve(&tmp.path().join("origin"));
    let src = tmp.path().join("sources.toml");
    // 80 Mbit/s = 10 MB/s for the source, all connections together: the ~21 MB fill takes
    // about two seconds.
    sources(
        &src,
        &[("origin", "origin", origin_srv.addr, 0.02, "80Mbps")],
    );
    let appliance = tmp.path().join("appliance");
    std::fs::create_dir_all(&appliance).unwrap(); // a new, empty disk
    let args = [
        "run",
        "--target",
        p(&r.target),
        "--store",
        p(&appliance),
        "--sources",
        p(&src),
        "--capacity",
        "1TB",
        "--json",
        "--writer",
        "pwrite",
    ];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fill"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has recorded something (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorded_bytes(&appliance) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let recorded = recorded_bytes(&appliance);
    assert!(recorded > 0, "nothing recorded within 20 s");
    let total: u64 = r.files.iter().map(|f| f.1.len() as u64).sum();
    assert!(
        recorded < total,
        "the kill came after the fill finished; slow the source down"
    );
    let t = Instant::now();
    let out = fill(&args).ok().json();
    let secs = t.elapsed().as_secs_f64();
    assert!(out["write_backend"].as_str().unwrap().starts_with("pwrite"));
    assert_eq!(
        out["bytes_fetched"].as_u64().unwrap(),
        total - recorded,
        "refetched recorded bytes: {out}"
    );
    assert_filled(&r, &appliance);
    // 10 MB/s, with bursts of 50 ms worth; a margin for timer slack.
    let remaining = (total - recorded) as f64;
    let floor = remaining / 10e6 * 0.95 - 0.1;
    assert!(
        secs >= floor,
        "{remaining} bytes in {secs:.2} s beats the cap (floor {floor:.2} s)"
    );
}

/// kill -9 at up to 20 seeded random moments of one fill (each run is killed 0 to 400 ms after
/// it first records something, so every run moves the fill on), resuming each time: what is recorded
/// never shrinks (nothing recorded is lost or refetched), every restart re-verifies what is on
/// disk, and the last run fetches exactly what is still unrecorded. The result is the target,
/// byte for byte.
#[test]
fn twenty_seeded_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 8);
    let origin_srv = serve(&tmp.path().join("origin"));
    let src = tmp.path().join("sources.toml");
    // 10 MB/s: the ~21 MB fill spans several killed runs.
    sources(
        &src,
        &[("origin", "origin", origin_srv.addr, 0.02, "80Mbps")],
    );
    let appliance = tmp.path().join("appliance");
    std::fs::create_dir_all(&appliance).unwrap(); // a new, empty disk
    let args = [
        "run",
        "--target",
        p(&r.target),
        "--store",
        p(&appliance),
        "--sources",
        p(&src),
        "--capacity",
        "1TB",
        "--json",
    ];
    let total: u64 = r.files.iter().map(|f| f.1.len() as u64).sum();
    let mut rng = fill_core::rng::SplitMix64(0x5EED);
    let mut next = || rng.next_u64();
    let mut recorded = 0;
    let mut kills = 0;
    let mut mid_fill = false;
    for _ in 0..20 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fill"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let the run record something first (bounded), so every run moves the fill on
        // however slow the machine; then kill it a seeded moment later.
        let deadline = Instant::now() + Duration::from_secs(20);
        while recorded_bytes(&appliance) <= recorded
            && Instant::now() < deadline
            && child.try_wait().ok().flatten().is_none()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(next() % 400));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        kills += 1;
        let now = recorded_bytes(&appliance);
        assert!(
            now >= recorded,
            "recorded bytes went from {recorded} to {now} after kill {kills}"
        );
        recorded = now;
        mid_fill |= recorded > 0 && recorded < total;
        if recorded == total {
            break;
        }
    }
    assert!(
        mid_fill,
        "no kill landed mid-fill (after {kills} kills, {recorded} of {total} bytes)"
    );
    let out = fill(&args).ok().json();
    assert_eq!(out["bytes_fetched"].as_u64().unwrap(), total - recorded);
    assert_filled(&r, &appliance);
}

/// Factory pre-fill: four stores from one source, each block fetched once and written to all
/// that need it; one store already holds part of the target.
#[test]
fn prefill_many_stores_fetches_each_block_once() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 6);
    let origin_srv = serve(&tmp.path().join("origin"));
    let stores: Vec<PathBuf> = (0..4)
        .map(|i| tmp.path().join(format!("appliance{i}")))
        .inspect(|d| fs::create_dir(d).unwrap()) // new, empty disks
        .collect();
    // Store 3 already holds the first two files.
    let half = tmp.path().join("half");
    fs::create_dir_all(&half).unwrap();
    for (name, bytes) in &r.files[..2] {
        fs::write(half.join(name), bytes).unwrap();
    }
    fill(&["store", "import", "--store", p(&stores[3]), p(&half)]).ok();
    let url = format!("http://{}", origin_srv.addr);
    let mut args = vec![
        "prefill",
        "--target",
        p(&r.target),
        "--source",
        &url,
        "--json",
    ];
    for s in &stores {
        args.extend(["--store", p(s)]);
    }
    let out = fill(&args).ok().json();
    let total: u64 = r.files.iter().map(|f| f.1.len() as u64).sum();
    assert_eq!(
        out["bytes_fetched"].as_u64().unwrap(),
        total,
        "each block fetched once: {out}"
    );
    assert_eq!(out["files_completed"].as_u64().unwrap(), 6 * 3 + 4);
    for s in &stores {
        assert_filled(&r, s);
    }
    // Nothing left: a second run fetches nothing.
    let again = fill(&args).ok().json();
    assert_eq!(again["bytes_fetched"], 0);
    // The same store twice is refused.
    let run = fill(&[
        "prefill",
        "--target",
        p(&r.target),
        "--source",
        &url,
        "--store",
        p(&stores[0]),
        "--store",
        p(&stores[0]),
    ]);
    assert_eq!(
        run.stderr().trim(),
        format!("error: store {} is given twice", stores[0].display())
    );
    let run = fill(&[
        "prefill",
        "--target",
        p(&r.target),
        "--source",
        "ftp://x",
        "--store",
        p(&stores[0]),
    ]);
    assert_eq!(
        run.stderr().trim(),
        "error: --source: url \"ftp://x\" must start with http:// (TLS is terminated in front of fill-server), s3:// or file://"
    );
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 206 with a Content-Range one byte off.
    WrongRange,
    /// Half the body, then silence longer than the client's timeout.
    Stall,
    /// Half the body, then the connection closes.
    Die,
    /// Every byte as it is on disk, verified or not (a static server that checks nothing).
    Verbatim,
}

/// A hand-written HTTP source that serves `store` honestly except for content ranges, where
/// it commits `fault`. One request per connection; stops with the test process.
fn hostile(store: &Path, fault: Fault) -> SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let store = store.to_owned();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(10_000) {
            let Ok(mut conn) = conn else { continue };
            let store = store.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let mut range = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        let (a, b) = v.trim().split_once('-').unwrap();
                        range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
                    }
                }
                let file = match path.as_str() {
                    "/catalog" => store.join("catalog"),
                    p => store.join(p.trim_start_matches('/')),
                };
                let Ok(bytes) = fs::read(&file) else {
                    let _ = conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                };
                let Some((a, b)) = range.filter(|_| path.starts_with("/content/")) else {
                    let _ = conn.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            bytes.len()
                        )
                        .as_bytes(),
                    );
                    let _ = conn.write_all(&bytes);
                    return;
                };
                let body = &bytes[a..=b];
                let shown = match fault {
                    Fault::WrongRange => format!("bytes {}-{}/{}", a + 1, b + 1, bytes.len()),
                    _ => format!("bytes {a}-{b}/{}", bytes.len()),
                };
                let _ = conn.write_all(
                    format!("HTTP/1.1 206 Partial Content\r\nContent-Range: {shown}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                        .as_bytes(),
                );
                match fault {
                    Fault::WrongRange | Fault::Verbatim => {
                        let _ = conn.write_all(body);
                    }
                    Fault::Stall => {
                        let _ = conn.write_all(&body[..body.len() / 2]);
                        std::thread::sleep(Duration::from_secs(3));
                    }
                    Fault::Die => {
                        let _ = conn.write_all(&body[..body.len() / 2]);
                    }
                }
            });
        }
    });
    addr
}

/// Sources that stall, die mid-body or send a wrong Content-Range: every range they fail is
/// fetched elsewhere, and the content is right.
#[test]
fn stalling_dying_and_misranging_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 4);
    let origin_dir = tmp.path().join("origin");
    let origin_srv = serve(&origin_dir);
    for fault in [Fault::WrongRange, Fault::Stall, Fault::Die] {
        let bad = hostile(&origin_dir, fault);
        let src = tmp.path().join("sources.toml");
        sources(
            &src,
            &[
                ("bad-peer", "peer", bad, 0.0, "10Gbps"),
                ("origin", "origin", origin_srv.addr, 0.02, "10Gbps"),
            ],
        );
        let appliance = tmp.path().join(format!("appliance-{fault:?}"));
        std::fs::create_dir_all(&appliance).unwrap(); // a new, empty disk
        let out = fill(&[
            "run",
            "--target",
            p(&r.target),
            "--store",
            p(&appliance),
            "--sources",
            p(&src),
            "--capacity",
            "1TB",
            "--timeout",
            "500ms",
            "--json",
        ])
        .ok()
        .json();
        let peer = out["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "bad-peer")
            .unwrap()
            .clone();
        assert!(
            peer["failed_requests"].as_u64().unwrap() >= 1,
            "{fault:?}: {out}"
        );
        assert_eq!(peer["bad_blocks"], 0, "{fault:?}");
        assert_filled(&r, &appliance);
    }
}

/// A store holding the region's files `which`, served on loopback.
pub(crate) fn partial_store(tmp: &Path, r: &Region, name: &str, which: &[usize]) -> PathBuf {
    let dir = tmp.join(format!("{name}-files"));
    fs::create_dir_all(&dir).unwrap();
    for &i in which {
        fs::write(dir.join(&r.files[i].0), &r.files[i].1).unwrap();
    }
    let store = tmp.join(name);
    Store::new(&store)
        .unwrap()
        .import(&[dir], BlockSize::DEFAULT, &|_| {})
        .unwrap();
    store
}

/// `fill plan` finds the plan escalation misses (the popular files from the cheap tier, so
/// the free but slow peer can carry what only it and the origin hold), and `fill run
/// --strategy optimal` follows it byte for byte.
#[test]
fn optimal_plan_is_cheaper_than_escalation_and_the_run_follows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 6);
    let peer = partial_store(tmp.path(), &r, "peer", &[0, 1, 2, 3, 4, 5]);
    let tier = partial_store(tmp.path(), &r, "tier", &[0, 1, 2]);
    let (peer_srv, tier_srv) = (serve(&peer), serve(&tier));
    let origin_srv = serve(&tmp.path().join("origin"));
    let src = tmp.path().join("sources.toml");
    // The peer carries 8 MB in the 4 s deadline: not all 13 MiB.
    sources(
        &src,
        &[
            ("peer", "peer", peer_srv.addr, 0.0, "16Mbps"),
            ("tier", "tier", tier_srv.addr, 0.001, "1Gbps"),
            ("origin", "origin", origin_srv.addr, 0.02, "1Gbps"),
        ],
    );
    let appliance = tmp.path().join("appliance");
    std::fs::create_dir_all(&appliance).unwrap(); // a new, empty disk
    let common = [
        "--target",
        p(&r.target),
        "--store",
        p(&appliance),
        "--sources",
        p(&src),
        "--capacity",
        "1TB",
        "--deadline",
        "4s",
    ];
    let plan = fill(&[&["plan", "--json"][..], &common].concat())
        .ok()
        .json();
    let size = |which: &[usize]| -> u64 { which.iter().map(|&i| r.files[i].1.len() as u64).sum() };
    let bytes_of = |j: &serde_json::Value, key: &str, name: &str| {
        j[key]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["bytes"]
            .as_u64()
            .unwrap()
    };
    let all = size(&[0, 1, 2, 3, 4, 5]);
    assert_eq!(plan["meets_deadline"], true, "{plan}");
    // The peer to its capacity (2 MB/s for 4 s), the rest from the tier: files 3-5, which
    // only the peer and the origin hold, all from the peer.
    assert_eq!(bytes_of(&plan, "per_source", "peer"), 8_000_000, "{plan}");
    assert_eq!(
        bytes_of(&plan, "per_source", "tier"),
        all - 8_000_000,
        "{plan}"
    );
    assert_eq!(bytes_of(&plan, "per_source", "origin"), 0, "{plan}");
    assert!(size(&[3, 4, 5]) < 8_000_000 && size(&[0, 1, 2]) > all - 8_000_000);
    let (cost, esc) = (
        plan["total_cost"].as_f64().unwrap(),
        plan["escalation_cost"].as_f64().unwrap(),
    );
    assert!(cost * 5.0 < esc, "optimal {cost} vs escalation {esc}");
    // Every piece of the plan names a real file, source and slot.
    let pieces: u64 = plan["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["length"].as_u64().unwrap())
        .sum();
    assert_eq!(pieces, all);
    let explained = fill(&[&["plan", "--explain"][..], &common].concat()).ok();
    assert!(
        explained.stdout().contains("What binds:"),
        "{}",
        explained.stdout()
    );
    assert!(
        explained.stdout().contains("peer is used to its bandwidth"),
        "{}",
        explained.stdout()
    );

    let run = fill(&[&["run", "--strategy", "optimal", "--json"][..], &common].concat())
        .ok()
        .json();
    assert_eq!(run["strategy"], "optimal");
    // Requests are whole blocks: where the plan splits inside a block, the block comes from
    // the piece that holds its first byte, so each source may differ by up to a block.
    for name in ["peer", "tier"] {
        let (planned, got) = (
            bytes_of(&plan, "per_source", name),
            bytes_of(&run, "sources", name),
        );
        assert!(
            planned.abs_diff(got) <= 1 << 20,
            "{name}: planned {planned}, fetched {got}: {run}"
        );
    }
    assert_eq!(bytes_of(&run, "sources", "origin"), 0, "{run}");
    assert_filled(&r, &appliance);
}

/// `fill plan --site`: three appliances, two holding part of the target already. Ranges no
/// appliance holds cross the external link once; the rest are copied inside the site.
#[test]
fn site_plan_fetches_each_range_from_outside_once() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 6);
    let a1 = tmp.path().join("a1");
    fs::create_dir(&a1).unwrap(); // a new, empty disk
    let a2 = partial_store(tmp.path(), &r, "a2", &[0, 1]);
    let a3 = partial_store(tmp.path(), &r, "a3", &[2]);
    // The origin holds everything without being asked (no catalog key, kind origin).
    fs::write(
        tmp.path().join("sources.toml"),
        "[[source]]\nname = \"origin\"\nkind = \"origin\"\nurl = \"http://127.0.0.1:9\"\ncost_per_gib = 0.02\nbandwidth = \"1Gbps\"\n",
    )
    .unwrap();
    let site = tmp.path().join("site.toml");
    let mut text = format!(
        "sources = \"sources.toml\"\ntarget = \"{}\"\npeer_bandwidth = \"1Gbps\"\n",
        p(&r.target)
    );
    for (name, store) in [("a1", &a1), ("a2", &a2), ("a3", &a3)] {
        text += &format!(
            "\n[[appliance]]\nname = \"{name}\"\nstore = \"{}\"\ncapacity = \"1TB\"\ningress = \"1Gbps\"\n",
            p(store)
        );
    }
    fs::write(&site, text).unwrap();
    let out = fill(&[
        "plan",
        "--site",
        p(&site),
        "--json",
        "--start",
        "2026-11-28T00:00:00Z",
    ])
    .ok()
    .json();
    let size = |which: &[usize]| -> u64 { which.iter().map(|&i| r.files[i].1.len() as u64).sum() };
    assert_eq!(out["external_bytes"], size(&[3, 4, 5]), "{out}");
    assert_eq!(out["origin_bytes"], size(&[3, 4, 5]));
    // a1 needs all six, a2 all but 0 and 1, a3 all but 2.
    let alone = size(&[0, 1, 2, 3, 4, 5]) + size(&[2, 3, 4, 5]) + size(&[0, 1, 3, 4, 5]);
    assert_eq!(out["alone"]["external_bytes"], alone, "{out}");
    // Everything else moves inside the site: what each needs minus what lands on it.
    let landed: u64 = out["appliances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["external_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(landed, size(&[3, 4, 5]));
    assert_eq!(out["peer_bytes"].as_u64().unwrap(), alone - landed, "{out}");
    assert_eq!(out["late_bytes"], 0);
    let explained = fill(&["plan", "--site", p(&site), "--explain"]).ok();
    assert!(
        explained
            .stdout()
            .contains("Each appliance planning alone would fetch"),
        "{}",
        explained.stdout()
    );
    // A site file with a mistake names it.
    fs::write(
        &site,
        "sources = \"sources.toml\"\npeer_bandwidth = \"fast\"\n",
    )
    .unwrap();
    let bad = fill(&["plan", "--site", p(&site)]);
    assert!(!bad.out.status.success());
    assert!(
        String::from_utf8_lossy(&bad.out.stderr).contains("peer_bandwidth"),
        "{}",
        String::from_utf8_lossy(&bad.out.stderr)
    );
}

/// Against real `fill-server` processes: the free peer is killed (SIGKILL) in the middle of
/// the fill; the fill moves its ranges to the origin and every file matches its id.
#[test]
fn a_peer_server_process_killed_mid_fill() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 8);
    let peer = tmp.path().join("peer");
    Store::new(&peer)
        .unwrap()
        .import(&[tmp.path().join("target")], BlockSize::DEFAULT, &|_| {})
        .unwrap();
    let mut peer_srv = ServerProcess::start(&peer);
    let origin_srv = ServerProcess::start(&tmp.path().join("origin"));
    let src = tmp.path().join("sources.toml");
    // The peer at 5 MB/s: the ~21 MB fill is still running when it dies.
    sources(
        &src,
        &[
            ("peer", "peer", peer_srv.addr, 0.0, "40Mbps"),
            ("origin", "origin", origin_srv.addr, 0.02, "10Gbps"),
        ],
    );
    let appliance = tmp.path().join("appliance");
    std::fs::create_dir_all(&appliance).unwrap(); // a new, empty disk
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_fill"))
        .args([
            "run",
            "--target",
            p(&r.target),
            "--store",
            p(&appliance),
            "--sources",
            p(&src),
            "--capacity",
            "1TB",
            "--timeout",
            "2s",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while recorded_bytes(&appliance) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the fill never recorded a block"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    peer_srv.kill();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "fill failed after the peer died");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by = |name: &str| {
        report["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let (peer_r, origin_r) = (by("peer"), by("origin"));
    let total: u64 = r.files.iter().map(|f| f.1.len() as u64).sum();
    assert!(peer_r["bytes"].as_u64().unwrap() > 0, "{report}");
    assert!(peer_r["bytes"].as_u64().unwrap() < total, "{report}");
    assert!(origin_r["bytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["bytes_fetched"], total, "{report}");
    assert_filled(&r, &appliance);
    drop(origin_srv);
}

#[test]
fn burn_in_fill_checks_then_live_on_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 6);
    let origin = serve(&tmp.path().join("origin"));
    let src = tmp.path().join("sources.toml");
    sources(&src, &[("origin", "origin", origin.addr, 0.02, "1Gbps")]);
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap(); // a new, empty disk
    for to in [
        "allocated",
        "prefilling",
        "in_transit",
        "delivered",
        "installed",
        "burn_in",
    ] {
        fill(&["appliance", "event", "--store", p(&app), to]).ok();
    }
    // Before any fill: no target known, the checks fail (exit 4) and say what to do.
    let before = fill(&["appliance", "checks", "--store", p(&app)]);
    assert_eq!(before.code(), 4, "{}", before.stderr());
    assert!(
        before
            .stdout()
            .starts_with("FAIL  fill          no target catalog at "),
        "{}",
        before.stdout()
    );
    fill(&[
        "run",
        "--target",
        p(&r.target),
        "--store",
        p(&app),
        "--sources",
        p(&src),
        "--capacity",
        "1TB",
    ])
    .ok();
    let cfg = tmp.path().join("server.toml");
    fs::write(
        &cfg,
        "[lifecycle]\nsources = \"sources.toml\"\ncheck_interval = \"200ms\"\nmin_free = \"1MiB\"\n",
    )
    .unwrap();
    let checks = fill(&[
        "appliance",
        "checks",
        "--store",
        p(&app),
        "--config",
        p(&cfg),
        "--json",
    ])
    .ok()
    .json();
    let names: Vec<(&str, bool)> = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["passed"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("fill", true),
            ("offload", true),
            ("store_health", true),
            ("sources", true)
        ],
        "{checks:#}"
    );
    assert_eq!(checks["progress"]["complete_files"], 6);

    // The appliance's server goes live by itself; `fill appliance status --server` shows it.
    let srv = ServerProcess::start_with(&app, &["--config", p(&cfg)]);
    let url = format!("http://{}", srv.addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = fill(&["appliance", "status", "--server", &url, "--json"])
            .ok()
            .json();
        if s["state"] == "live" {
            break;
        }
        assert!(Instant::now() < deadline, "not live: {s:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = fill(&["appliance", "status", "--server", &url])
        .ok()
        .stdout();
    assert!(text.contains("\nstate: live\nfill: 100.0% of "), "{text}");
    assert!(text.starts_with("appliance: "), "{text}");
    assert!(text.contains("last fill: ok at "), "{text}");
    // What to alert on, in its metrics: the state, each check, the fill, the last fill's
    // bytes and cost per source, when it last succeeded.
    let m = http_get(srv.addr, "/metrics");
    for line in [
        "fill_appliance_state{state=\"live\"} 1",
        "fill_appliance_state{state=\"burn_in\"} 0",
        "fill_appliance_check_passed{check=\"offload\"} 1",
        "fill_appliance_serving 1",
        "fill_last_fill_outcome{outcome=\"ok\"} 1",
        "fill_last_fill_outcome{outcome=\"failed\"} 0",
    ] {
        assert!(m.contains(line), "no {line:?} in\n{m}");
    }
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{m}"))
    };
    assert!(value("fill_last_fill_success_timestamp_seconds") > 1.7e9);
    assert!(value("fill_appliance_checks_last_run_timestamp_seconds") > 1.7e9);
    assert_eq!(
        value("fill_appliance_fill_bytes"),
        value("fill_appliance_target_bytes")
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("fill_last_fill_source_bytes{") && !l.ends_with(" 0")),
        "{m}"
    );
    // Every metric the shipped alert rules name is one the server exports.
    let rules = include_str!("../../../docs/alerts/fill.rules.yml");
    let mut named = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("fill_") && word.len() > 5 {
            named += 1;
            // A family with no sample yet has only its TYPE line (counters without _total).
            let family = word.strip_suffix("_total").unwrap_or(word);
            assert!(
                m.contains(&format!("\n{word}")) || m.contains(&format!("\n# TYPE {family} ")),
                "the alert rules name {word}, which /metrics does not export"
            );
        }
    }
    assert!(named >= 10, "{named}");
    assert!(
        text.contains("burn_in -> live  turn-up checks passed"),
        "{text}"
    );

    // Maintenance windows from the command line: bounds are checked.
    let short = fill(&[
        "appliance",
        "maintenance",
        "--store",
        p(&app),
        "--duration",
        "2h",
    ]);
    // A bad argument, refused by the parser: exit 2.
    assert_eq!(short.code(), 2);
    assert!(
        short.stderr().contains("is not between 3h and 30d"),
        "{}",
        short.stderr()
    );
    fill(&[
        "appliance",
        "maintenance",
        "--store",
        p(&app),
        "--start",
        "2099-01-01T02:00:00Z",
        "--duration",
        "6h",
        "--reason",
        "disk swap",
    ])
    .ok();
    let s = fill(&["appliance", "status", "--store", p(&app), "--json"])
        .ok()
        .json();
    assert_eq!(s["maintenance"][0]["reason"], "disk swap");
    assert_eq!(s["maintenance"][0]["duration"], 6 * 3600);
}

/// A peer that answers `/catalog` with `answer(conn)` (writing the whole response), on
/// a few connections; stops with the test process.
fn catalog_peer(answer: fn(&mut std::net::TcpStream)) -> SocketAddr {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(8) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                answer(&mut conn);
            });
        }
    });
    addr
}

/// Fills from a peer answering `/catalog` as `answer` does and an honest origin; the
/// peer must end unreachable saying `why`, and the fill complete from the origin.
fn fill_beside_a_catalog_peer(answer: fn(&mut std::net::TcpStream), why: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 3);
    let origin = serve(&tmp.path().join("origin"));
    let src = tmp.path().join("sources.toml");
    sources(
        &src,
        &[
            ("hostile", "peer", catalog_peer(answer), 0.0, "10Gbps"),
            ("origin", "origin", origin.addr, 0.02, "10Gbps"),
        ],
    );
    let appliance = tmp.path().join("appliance");
    fs::create_dir(&appliance).unwrap();
    let out = run_json(&r, &appliance, &src, "1TB");
    let peer = out["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "hostile")
        .unwrap()
        .clone();
    let said = peer["unreachable"].as_str().unwrap_or_default();
    assert!(said.contains(why), "{out}");
    assert_filled(&r, &appliance);
}

/// A peer whose `/catalog` never ends: the fill stops reading it at the remote-catalog
/// limit, counts the peer unreachable, and fills from the origin.
#[test]
fn a_peer_with_an_endless_catalog_is_cut_off_at_the_limit() {
    fill_beside_a_catalog_peer(
        |conn| {
            use std::io::Write;
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunk = format!("10000\r\n{}\r\n", "\0".repeat(0x10000));
            // Bounded: at most 1 GiB of chunks.
            for _ in 0..(1 << 14) {
                if conn.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
            }
        },
        "body larger than the limit of 134217728 bytes",
    );
}

/// A peer whose `/catalog` is a zstd bomb (a few KB declaring 64 MiB, under the
/// remote-catalog limit): refused before it is decompressed.
#[test]
fn a_peer_sending_a_zstd_bomb_catalog_is_refused() {
    fill_beside_a_catalog_peer(
        |conn| {
            use std::io::Write;
            let mut raw = fill_core::CatalogBuilder::new().finish().unwrap();
            raw.resize(64 << 20, 0);
            let bomb = fill_core::catalog::wire::compress(&raw, 3);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\nContent-Length: {}\r\n\r\n",
                bomb.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&bomb);
        },
        "refused as a decompression bomb",
    );
}

/// One GET over a fresh connection: the whole answer, head and body, as text.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
