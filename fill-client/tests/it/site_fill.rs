//! `fill run --site` end to end: three appliances, each a real `fill-server` and a real
//! `fill run --site` process, filling together from one origin over loopback. What crosses
//! the costly link is counted at the origin (its `/metrics`), not taken from the reports.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fill_e2e::{
    Region, assert_filled, http_get, partial_store, recorded_bytes, region, sources,
};
use crate::{ServerProcess, fill, p};

/// One appliance of the test site: its store and its fill-server.
struct App {
    name: String,
    store: PathBuf,
    server: ServerProcess,
}

/// A site of appliances holding `holdings` (indices into the region's files), an origin
/// capped at `origin_rate`, and the site file; `url_of` may put something in front of an
/// appliance's fill-server (the liar's proxy).
struct Site {
    origin: ServerProcess,
    apps: Vec<App>,
    file: PathBuf,
}

fn site(
    tmp: &Path,
    r: &Region,
    holdings: &[&[usize]],
    origin_rate: &str,
    url_of: impl Fn(usize, SocketAddr) -> SocketAddr,
) -> Site {
    let origin = ServerProcess::start(&tmp.join("origin"));
    sources(
        &tmp.join("sources.toml"),
        &[("origin", "origin", origin.addr, 0.02, origin_rate)],
    );
    let mut text = format!(
        "sources = \"sources.toml\"\ntarget = \"{}\"\npeer_bandwidth = \"1Gbps\"\n",
        p(&r.target)
    );
    let mut apps = Vec::new();
    for (k, held) in holdings.iter().enumerate() {
        let name = format!("a{}", k + 1);
        let store = if held.is_empty() {
            let s = tmp.join(&name);
            fs::create_dir_all(&s).unwrap(); // a new, empty disk
            s
        } else {
            partial_store(tmp, r, &name, held)
        };
        let server = ServerProcess::start(&store);
        text += &format!(
            "\n[[appliance]]\nname = \"{name}\"\nurl = \"http://{}\"\nstore = \"{}\"\ncapacity = \"1TB\"\n",
            url_of(k, server.addr),
            p(&store)
        );
        apps.push(App {
            name,
            store,
            server,
        });
    }
    let file = tmp.join("site.toml");
    fs::write(&file, text).unwrap();
    Site { origin, apps, file }
}

/// Bytes of the region's files no appliance holds: what must cross the costly link.
fn no_one_held(r: &Region, holdings: &[&[usize]]) -> u64 {
    (0..r.files.len())
        .filter(|i| !holdings.iter().any(|h| h.contains(i)))
        .map(|i| r.files[i].1.len() as u64)
        .sum()
}

/// Body bytes a fill-server sent of content and outboards, from its own `/metrics`.
fn served_bytes(addr: SocketAddr) -> u64 {
    let answer = http_get(addr, "/metrics");
    let (_, metrics) = answer.split_once("\r\n\r\n").unwrap();
    metrics
        .lines()
        .filter(|l| l.starts_with("fill_http_response_body_bytes_total{"))
        .filter(|l| l.contains("endpoint=\"content\"") || l.contains("endpoint=\"outboard\""))
        .map(|l| {
            let v = l.rsplit(' ').next().unwrap();
            v.parse::<f64>().unwrap_or_else(|_| panic!("{l}")) as u64
        })
        .sum()
}

/// `fill run --site SITE --appliance NAME --json ARGS...`, started; its stderr goes to a
/// file beside the store (read when it fails).
fn start_run(site: &Path, app: &App, args: &[&str]) -> Child {
    let log = fs::File::create(app.store.with_extension("log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_fill"))
        .args(["run", "--site", p(site), "--appliance", &app.name, "--json"])
        .args(args)
        .env("FILL_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits for a run (at most `secs`); it must succeed; its JSON report.
fn finish(child: Child, app: &App, secs: u64) -> serde_json::Value {
    let pid = child.id();
    let started = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if started.elapsed() > Duration::from_secs(secs) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!(
                "the site fill of {} took over {secs} s:\n{}",
                app.name,
                fs::read_to_string(app.store.with_extension("log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = waiter.join().unwrap();
    assert!(
        out.status.success(),
        "the site fill of {} failed ({:?}):\n{}\n{}",
        app.name,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        fs::read_to_string(app.store.with_extension("log")).unwrap_or_default()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Every appliance's `fill run --site`, started at once; their reports.
fn fill_together(s: &Site) -> Vec<serde_json::Value> {
    let runs: Vec<Child> = s.apps.iter().map(|a| start_run(&s.file, a, &[])).collect();
    runs.into_iter()
        .zip(&s.apps)
        .map(|(c, a)| finish(c, a, 120))
        .collect()
}

/// A source's line in a run report.
fn source<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {report}"))
}

/// Three appliances with different stale holdings fill together: each ends holding its
/// target, the origin serves each byte no appliance held about once, and the rest is
/// copied inside the site; `fill site status` adds it up.
#[test]
fn a_site_fills_together_each_new_byte_crossing_once() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 12);
    let holdings: [&[usize]; 3] = [&[], &[0, 1, 2], &[3, 4]];
    // 10 MB/s from the origin: a landed file is still arriving while the others follow it.
    let s = site(tmp.path(), &r, &holdings, "80Mbps", |_, a| a);
    let reports = fill_together(&s);
    for a in &s.apps {
        assert_filled(&r, &a.store);
    }
    let outside = no_one_held(&r, &holdings);
    let served = served_bytes(s.origin.addr);
    assert!(
        served as f64 <= 1.02 * outside as f64,
        "the origin served {served} bytes; no appliance held {outside}: {reports:#?}"
    );
    // What the reports say agrees with what the origin counted, and the rest came inside.
    let sum = |k: &str| -> u64 { reports.iter().map(|r| r["site"][k].as_u64().unwrap()).sum() };
    let content_from_origin: u64 = reports
        .iter()
        .map(|r| source(r, "origin")["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(sum("external_bytes"), content_from_origin);
    assert!(
        content_from_origin <= served,
        "{content_from_origin} > {served}"
    );
    assert_eq!(sum("excess_bytes"), 0, "{reports:#?}");
    let needed: u64 = reports
        .iter()
        .map(|r| r["site"]["bytes_to_fetch"].as_u64().unwrap())
        .sum();
    assert_eq!(sum("inside_bytes") + sum("external_bytes"), needed);
    assert!(sum("inside_bytes") > 0);
    // The site's report, read from the fill-servers.
    let status = fill(&["site", "status", "--site", p(&s.file), "--json"])
        .ok()
        .json();
    for a in status["appliances"].as_array().unwrap() {
        assert_eq!(a["fill"]["state"], "done", "{status}");
        assert_eq!(a["fill"]["lacks_bytes"], 0, "{status}");
    }
    assert_eq!(status["external_bytes"], sum("external_bytes"), "{status}");
    assert_eq!(status["inside_bytes"], sum("inside_bytes"), "{status}");
    let human = fill(&["site", "status", "--site", p(&s.file)]).ok();
    assert!(
        human.stdout().contains("site:") && human.stdout().contains("a3"),
        "{}",
        human.stdout()
    );
}

/// kill -9 of one appliance's fill and fill-server in the middle: the others pass it over
/// after the relay patience and complete; restarted, it completes too, and the origin
/// serves at most what no one held plus what the killed appliance was to land.
#[test]
fn an_appliance_killed_mid_site_fill_is_passed_over_then_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 12);
    let holdings: [&[usize]; 3] = [&[], &[0, 1], &[5]];
    // 5 MB/s from the origin: the fill lasts seconds, long enough to be cut.
    let mut s = site(tmp.path(), &r, &holdings, "40Mbps", |_, a| a);
    let plan = tmp.path().join("plan.json");
    fill(&["plan", "--site", p(&s.file), "--out", p(&plan)]).ok();
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&plan).unwrap()).unwrap();
    let planned: Vec<u64> = doc["planned_external"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    // The victim: the appliance that lands the most.
    let victim = (0..3).max_by_key(|&k| planned[k]).unwrap();
    assert!(planned[victim] > 0, "{doc}");
    let args = [
        "--plan",
        p(&plan),
        "--relay-patience",
        "2s",
        "--timeout",
        "2s",
    ];
    let mut runs: Vec<Option<Child>> = s
        .apps
        .iter()
        .map(|a| Some(start_run(&s.file, a, &args)))
        .collect();
    let started = Instant::now();
    while recorded_bytes(&s.apps[victim].store) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the victim never recorded a block"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut killed = runs[victim].take().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let addr = s.apps[victim].server.addr;
    s.apps[victim].server.kill();
    let mut excess = 0;
    for (k, run) in runs.into_iter().enumerate() {
        if let Some(child) = run {
            let report = finish(child, &s.apps[k], 180);
            assert_filled(&r, &s.apps[k].store);
            assert_eq!(report["site"]["state"], "done");
            excess += report["site"]["excess_bytes"].as_u64().unwrap();
        }
    }
    // What the victim did not land came from outside, and the others said so.
    assert!(excess > 0, "no excess reported after the lander died");
    // Restarted at its address, it resumes its part and completes from the others.
    s.apps[victim].server = ServerProcess::start_at(&s.apps[victim].store, &addr.to_string(), &[]);
    let again = finish(
        start_run(&s.file, &s.apps[victim], &args),
        &s.apps[victim],
        120,
    );
    assert_filled(&r, &s.apps[victim].store);
    assert_eq!(again["site"]["excess_bytes"], 0, "{again}");
    let served = served_bytes(s.origin.addr);
    let bound = no_one_held(&r, &holdings) + planned[victim];
    assert!(
        served as f64 <= 1.02 * bound as f64,
        "the origin served {served} bytes; bound {bound} (planned {planned:?}, victim {victim})"
    );
}

/// A proxy in front of `upstream` that flips a byte in every body it relays from
/// `/partial/content/`: an appliance whose relay lies. One request per connection; it
/// serves at most 10,000 connections and stops with the test process.
fn lying_proxy(upstream: SocketAddr) -> SocketAddr {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(10_000) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 {
                        return;
                    }
                    if h == "\r\n" {
                        break;
                    }
                    if !h.to_ascii_lowercase().starts_with("connection:") {
                        head += &h;
                    }
                }
                let lies = head
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|path| path.starts_with("/partial/content/"));
                let Ok(mut up) = std::net::TcpStream::connect(upstream) else {
                    return;
                };
                let _ = up.set_read_timeout(Some(Duration::from_secs(10)));
                if up
                    .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
                    .is_err()
                {
                    return;
                }
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer);
                if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let body = at + 4;
                    if lies && answer.starts_with(b"HTTP/1.1 2") && answer.len() > body {
                        let mid = body + (answer.len() - body) / 2;
                        answer[mid] ^= 0x20;
                    }
                }
                let _ = conn.write_all(&answer);
            });
        }
    });
    addr
}

/// One appliance's relay flips bytes: the others keep nothing unverified, quarantine it,
/// and still end holding their targets; it fills honestly itself.
#[test]
fn a_lying_appliance_is_quarantined_by_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let r = region(tmp.path(), 10);
    // The liar (a1) holds half the target: the plan copies that half from it.
    let holdings: [&[usize]; 3] = [&[0, 1, 2, 3, 4], &[], &[]];
    let s = site(tmp.path(), &r, &holdings, "10Gbps", |k, a| {
        if k == 0 { lying_proxy(a) } else { a }
    });
    let reports = fill_together(&s);
    for (a, report) in s.apps.iter().zip(&reports) {
        assert_filled(&r, &a.store);
        if a.name != "a1" {
            let liar = source(report, "a1");
            assert_eq!(liar["quarantined"], true, "{}: {report}", a.name);
            assert!(liar["bad_blocks"].as_u64().unwrap() >= 3, "{report}");
        }
    }
}
