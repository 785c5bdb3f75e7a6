//! The appliance lifecycle in the server: turn-up checks on real stores, going live by
//! itself, events across restarts and to a webhook, drain under load, maintenance windows,
//! and the status page in headless Chromium.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fill_core::lifecycle::State;
use fill_store::config::ServerConfig;
use fill_store::config::Settings;
use fill_store::lifecycle::{local_checks, sources_check};
use fill_store::store::{Store, WriteErrorRecord};

use crate::http::{config, get, raw, start, store_with_files};

const TOKEN: &str = "0123456789abcdef-test";

/// A target of three files in `dir/target` (a store), and the appliance store `dir/app`
/// holding the first `held` of them, with the target recorded as a fill would.
pub(crate) fn appliance(dir: &Path, held: usize) -> (Store, Store, Vec<(String, Vec<u8>)>) {
    let files = store_with_files(&dir.join("t"), &[3 << 20, 2 << 20, 1 << 20]);
    let target = Store::new(dir.join("t/store")).unwrap();
    let app = Store::new(dir.join("app")).unwrap();
    let src = dir.join("held");
    std::fs::create_dir_all(&src).unwrap();
    for (i, (_, data)) in files.iter().enumerate().take(held) {
        std::fs::write(src.join(format!("f{i}")), data).unwrap();
    }
    app.create().unwrap();
    if held > 0 {
        app.import(&[src], Default::default(), &|_| {}).unwrap();
    }
    app.record_target(target.catalog().unwrap().bytes())
        .unwrap();
    (target, app, files)
}

/// Records an appliance's way from allocation to burn-in.
fn to_burn_in(app: &Store, time: i64, reason: &str) {
    for s in [
        State::Allocated,
        State::Prefilling,
        State::InTransit,
        State::Delivered,
        State::Installed,
        State::BurnIn,
    ] {
        app.transition(s, time, reason).unwrap();
    }
}

pub(crate) fn every_block() -> Settings {
    Settings {
        sample_blocks: 1_000_000,
        min_free: 0,
        ..Settings::default()
    }
}

fn check<'a>(
    checks: &'a [fill_core::lifecycle::Check],
    name: &str,
) -> &'a fill_core::lifecycle::Check {
    checks.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn checks_measure_real_stores() {
    let dir = tempfile::tempdir().unwrap();
    // Half filled: the first file (3 of 6 MiB).
    let (_, app, files) = appliance(dir.path(), 1);
    let (checks, progress) = local_checks(&app, &every_block(), 1);
    let fill = check(&checks, "fill");
    assert!(!fill.passed);
    assert_eq!(
        fill.detail,
        "50.0% of the target's bytes are complete (3 MiB of 6 MiB): the fill is not done"
    );
    let p = progress.unwrap();
    assert_eq!((p.complete_files, p.target_files), (1, 3));
    // The target has no weights: its files weigh their bytes.
    assert_eq!(
        check(&checks, "offload").detail,
        "holds 50.0% of the target's demand (weight), below the 90% needed"
    );
    assert!(check(&checks, "store_health").passed, "{checks:?}");

    // Complete: every check passes.
    let (_, app, _) = appliance(&dir.path().join("full"), 3);
    let (checks, _) = local_checks(&app, &every_block(), 1);
    assert!(checks.iter().all(|c| c.passed), "{checks:?}");
    assert_eq!(checks.len(), 3);

    // A block flipped under the store: the health check names it, the fill check fails.
    let (id, data) = &files[0];
    let path = app.root().join("content").join(id);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes, data);
    bytes[(1 << 20) + 17] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let (checks, _) = local_checks(&app, &every_block(), 1);
    let health = check(&checks, "store_health");
    assert!(!health.passed);
    assert!(
        health.detail.contains(&format!(
            "1 of 6 sampled blocks fail verification (block 1 of {id})"
        )),
        "{}",
        health.detail
    );
    assert!(!check(&checks, "fill").passed);
    std::fs::write(&path, data).unwrap();

    // A failed write since burn-in began fails the health check; one before it does not.
    let t0 = 1_000;
    app.transition(State::Allocated, t0, "").unwrap();
    app.record_write_error(&WriteErrorRecord {
        time: t0,
        id: id.parse().unwrap(),
        error: "Input/output error (os error 5)".into(),
    })
    .unwrap();
    for (i, s) in [
        State::Prefilling,
        State::InTransit,
        State::Delivered,
        State::Installed,
        State::BurnIn,
    ]
    .into_iter()
    .enumerate()
    {
        app.transition(s, t0 + 10 + i as i64, "").unwrap();
    }
    let (checks, _) = local_checks(&app, &every_block(), 1);
    assert!(check(&checks, "store_health").passed, "{checks:?}");
    app.record_write_error(&WriteErrorRecord {
        time: t0 + 100,
        id: id.parse().unwrap(),
        error: "No space left on device (os error 28)".into(),
    })
    .unwrap();
    let (checks, _) = local_checks(&app, &every_block(), 1);
    let health = check(&checks, "store_health");
    assert!(!health.passed);
    assert!(
        health
            .detail
            .starts_with("1 writes failed since burn-in began (last: "),
        "{}",
        health.detail
    );

    // Free space below the minimum.
    let greedy = Settings {
        min_free: u64::MAX,
        ..every_block()
    };
    let (checks, _) = local_checks(&Store::new(dir.path().join("t/store")).unwrap(), &greedy, 1);
    assert!(
        check(&checks, "store_health")
            .detail
            .contains("below the 18.45 EB needed"),
        "{checks:?}"
    );

    // No target recorded: the fill check says how to give one.
    let bare = Store::new(dir.path().join("bare")).unwrap();
    let (checks, _) = local_checks(&bare, &every_block(), 1);
    assert!(
        check(&checks, "fill")
            .detail
            .starts_with("no target catalog at "),
        "{checks:?}"
    );
}

#[test]
fn sources_check_names_what_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (target, _, _) = appliance(dir.path(), 0);
    let srv = start(config(target.root()));
    // A port nothing listens on: bind, note, close.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sources = dir.path().join("sources.toml");
    let write = |extra: &str| {
        std::fs::write(
            &sources,
            format!(
                "[[source]]\nname = \"origin\"\nkind = \"origin\"\nurl = \"http://{}\"\n\
                 cost_per_gib = 0.02\nbandwidth = \"1Gbps\"\n{extra}",
                srv.addr
            ),
        )
        .unwrap();
    };
    write("");
    let settings = Settings {
        sources: Some(sources.clone()),
        ..Settings::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(sources_check(&settings));
    assert!(c.passed, "{c:?}");
    assert_eq!(c.detail, "all 1 sources answer their catalog");
    write(&format!(
        "[[source]]\nname = \"peer-b\"\nkind = \"peer\"\nurl = \"http://{closed}\"\n\
         cost_per_gib = 0\nbandwidth = \"10Gbps\"\n"
    ));
    let c = rt.block_on(sources_check(&settings));
    assert!(!c.passed);
    assert!(
        c.detail.starts_with(&format!(
            "1 of 2 sources do not answer: peer-b (http://{closed}/catalog): "
        )),
        "{}",
        c.detail
    );
}

fn status(addr: SocketAddr) -> serde_json::Value {
    let r = get(addr, "/status.json", "");
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).unwrap()
}

/// Waits (at most 20 s) until the server reports `state`.
fn wait_for(addr: SocketAddr, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(addr);
        if s["state"] == state {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after 20 s waiting for {state}: {s:#}",
            s["state"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lifecycle_config(store: &Path, settings: Settings) -> ServerConfig {
    let mut c = config(store);
    c.admin_token = Some(TOKEN.into());
    c.lifecycle = settings;
    c
}

fn post(addr: SocketAddr, path: &str) -> crate::http::Reply {
    raw(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

/// Bodies POSTed to it, in order: a webhook receiver on loopback.
fn webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { break };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Head, then Content-Length bytes of body.
            let body = loop {
                let Ok(n) = c.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            if let Some(body) = body {
                if let Ok(v) = serde_json::from_slice(&body) {
                    seen.lock().unwrap().push(v);
                }
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    (url, got)
}

#[test]
fn burn_in_goes_live_and_events_survive_restarts_and_reach_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (_, app, _) = appliance(dir.path(), 3);
    to_burn_in(&app, 1_000, "test");
    let (url, got) = webhook();
    let settings = Settings {
        check_interval: Duration::from_millis(200),
        webhook: Some(url),
        ..every_block()
    };
    {
        let srv = start(lifecycle_config(app.root(), settings.clone()));
        let s = wait_for(srv.addr, "live");
        let names: Vec<&str> = s["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["fill", "offload", "store_health", "sources"]);
        assert!(
            s["checks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["passed"] == true)
        );
        let last = s["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            (&last["from"], &last["to"], &last["reason"]),
            (
                &serde_json::json!("burn_in"),
                &serde_json::json!("live"),
                &serde_json::json!("turn-up checks passed")
            )
        );
        assert_eq!(s["progress"]["share"], 1.0);
    }
    // A restart: same state, same events, no event twice at the webhook.
    let srv = start(lifecycle_config(app.root(), settings));
    let s = status(srv.addr);
    assert_eq!(s["state"], "live");
    assert_eq!(s["events"].as_array().unwrap().len(), 7);
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < 7 {
        assert!(
            Instant::now() < deadline,
            "webhook got {:?}",
            got.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let got = got.lock().unwrap();
    let tos: Vec<&str> = got.iter().map(|e| e["to"].as_str().unwrap()).collect();
    assert_eq!(
        tos,
        [
            "allocated",
            "prefilling",
            "in_transit",
            "delivered",
            "installed",
            "burn_in",
            "live"
        ]
    );
    assert_eq!(app.lifecycle().unwrap().state(), State::Live);
}

/// Sends a GET for a whole file and reads only the head and `take` body bytes.
fn start_slow_read(addr: SocketAddr, path: &str, take: usize) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = vec![0u8; take];
    s.read_exact(&mut buf).unwrap();
    (s, buf)
}

#[test]
fn drain_under_load_finishes_what_is_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let files = store_with_files(dir.path(), &[48 << 20]);
    let store = dir.path().join("store");
    let srv = start(lifecycle_config(
        &store,
        Settings {
            check_interval: Duration::from_secs(3600),
            ..every_block()
        },
    ));
    let (id, data) = &files[0];
    let path = format!("/content/{id}");
    // Eight readers, each with 256 KiB of its 48 MiB read: in flight.
    let readers: Vec<_> = (0..8)
        .map(|_| start_slow_read(srv.addr, &path, 256 << 10))
        .collect();
    let r = post(srv.addr, "/admin/drain?reason=rack+move");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let event: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (&event["from"], &event["to"]),
        (&"live".into(), &"draining".into())
    );
    assert_eq!(event["reason"], "rack move");

    // New requests: 503 with Retry-After; health says so too; status still answers.
    let refused = get(srv.addr, &path, "");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("300"));
    assert_eq!(get(srv.addr, "/catalog", "").status, 503);
    assert_eq!(get(srv.addr, "/healthz", "").status, 503);
    let s = status(srv.addr);
    assert_eq!(s["state"], "draining");
    assert!(s["in_flight"].as_u64().unwrap() >= 8, "{s}");

    // The readers finish, intact.
    for (mut s, head) in readers {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        let mut all = head;
        all.extend_from_slice(&rest);
        let body = &all[all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        assert_eq!(body.len(), data.len());
        assert_eq!(blake3::hash(body).to_hex().as_str(), id);
    }
    let s = wait_for(srv.addr, "drained");
    assert_eq!(s["before_drain"], "live");
    assert_eq!(get(srv.addr, &path, "").status, 503);

    // Undrain: back to live, served again.
    let r = post(srv.addr, "/admin/undrain");
    assert_eq!(r.status, 200);
    assert_eq!(status(srv.addr)["state"], "live");
    let ok = get(srv.addr, &path, "Range: bytes=0-9\r\n");
    assert_eq!((ok.status, &ok.body[..]), (206, &data[..10]));
    // Undrain again: refused, with the reason.
    let r = post(srv.addr, "/admin/undrain");
    assert_eq!(r.status, 409);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "cannot go from live to live: undrain applies only while draining or drained\n"
    );
}

#[test]
fn a_maintenance_window_drains_then_enters_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let (_, app, _) = appliance(dir.path(), 3);
    let srv = start(lifecycle_config(
        app.root(),
        Settings {
            check_interval: Duration::from_secs(3600),
            ..every_block()
        },
    ));
    // Bad windows are refused with the reason.
    let r = post(srv.addr, "/admin/maintenance?duration=2h");
    assert_eq!(r.status, 400);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "duration \"2h\" is not between 3h and 30d (a maintenance window)\n"
    );
    let r = post(srv.addr, "/admin/maintenance?duration=6h&start=soon");
    assert_eq!(r.status, 400);
    let r = post(srv.addr, "/admin/drain?reason=a%0Ab");
    assert_eq!(r.status, 400);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "reason: at most 500 characters, no control characters\n"
    );
    assert_eq!(status(srv.addr)["state"], "live");
    // One starting now.
    let r = post(
        srv.addr,
        "/admin/maintenance?duration=6h&reason=disk%20swap",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let s = wait_for(srv.addr, "maintenance");
    let reasons: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].starts_with("maintenance window "), "{reasons:?}");
    assert!(reasons[0].ends_with(" for 6h: disk swap"), "{reasons:?}");
    assert_eq!(reasons[1], "no request in flight");
    assert_eq!(s["maintenance"][0]["reason"], "disk swap");
    let refused = get(srv.addr, "/catalog", "");
    assert_eq!(refused.status, 503);
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((6 * 3600 - 60..=6 * 3600).contains(&retry), "{retry}");
}

// ---- The status page in a real browser ----

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(name))
                    .find(|p| p.is_file())
            })
        })
        .expect("the status page test needs Chromium: apt-get install chromium (.ci/run does)")
}

/// Runs headless Chromium with `args` (at most 90 s); its standard output.
fn run_chromium(profile: &Path, args: &[String]) -> Vec<u8> {
    let mut child = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// Pixels of the screenshot: (width, height, RGB triples).
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let px = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, px)
}

/// What a person expects of a screenshot: a page, not blank, with the current state's
/// highlight (the page's blue, #0b5cad) big enough to see.
fn looks_right(path: &Path, what: &str) {
    let (w, h, px) = decode_png(path);
    assert!(w >= 300 && h >= 300, "{what}: {w}x{h}");
    let background = px.iter().filter(|p| **p == [0xf4, 0xf6, 0xf8]).count();
    let white = px.iter().filter(|p| **p == [255, 255, 255]).count();
    let ink = px
        .iter()
        .filter(|p| p.iter().map(|&c| u32::from(c)).sum::<u32>() < 300)
        .count();
    let highlight = px
        .iter()
        .filter(|p| {
            p[0].abs_diff(0x0b) < 12 && p[1].abs_diff(0x5c) < 12 && p[2].abs_diff(0xad) < 12
        })
        .count();
    let n = px.len();
    assert!(
        background > n / 20,
        "{what}: the page background is missing"
    );
    assert!(white > n / 10, "{what}: no cards");
    assert!(ink > n / 500, "{what}: no text ({ink} dark pixels)");
    assert!(
        highlight > 2000,
        "{what}: the current state is not highlighted ({highlight} pixels of #0b5cad)"
    );
}

#[test]
fn the_status_page_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let shots = std::env::var_os("FILL_STATUS_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let profile = dir.path().join("profile");
    for (state, held) in [("burn_in", 1), ("live", 3), ("drained", 3)] {
        let (_, app, _) = appliance(&dir.path().join(state), held);
        to_burn_in(&app, 1_795_000_000, "site FRA-3");
        let srv = start(lifecycle_config(
            app.root(),
            Settings {
                check_interval: Duration::from_millis(200),
                ..every_block()
            },
        ));
        match state {
            "burn_in" => {
                // Half filled: the checks ran, and keep it in burn-in.
                let deadline = Instant::now() + Duration::from_secs(20);
                while status(srv.addr)["checks"].as_array().unwrap().is_empty() {
                    assert!(Instant::now() < deadline);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            "live" => {
                wait_for(srv.addr, "live");
            }
            _ => {
                wait_for(srv.addr, "live");
                assert_eq!(
                    post(srv.addr, "/admin/drain?reason=maintenance").status,
                    200
                );
                wait_for(srv.addr, "drained");
            }
        }
        let s = status(srv.addr);
        assert_eq!(s["state"], state);
        let url = format!("http://{}/status", srv.addr);
        let dom =
            String::from_utf8(run_chromium(&profile, &["--dump-dom".into(), url.clone()])).unwrap();
        assert!(
            dom.contains(&format!(
                "<span class=\"tag s-{state}\" id=\"state\">{state}</span>"
            )),
            "{state}: the state is not shown: {dom}"
        );
        assert!(
            dom.contains(&format!(
                "<li class=\"current{}\" data-state=\"{state}\" aria-current=\"step\">{state}</li>",
                if state == "drained" { " side" } else { "" }
            )),
            "{state}: not highlighted in the diagram: {dom}"
        );
        for c in s["checks"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            let class = if c["passed"] == true { "pass" } else { "fail" };
            assert!(
                dom.contains(&format!("<tr class=\"{class}\" data-check=\"{name}\">")),
                "{state}: check {name} ({class}) missing: {dom}"
            );
        }
        if state == "burn_in" {
            assert!(dom.contains("✘ FAIL"), "{dom}");
            assert!(dom.contains("50.0% of the target's bytes"), "{dom}");
        }
        for (size, suffix) in [("1280,1000", ""), ("390,844", "-phone")] {
            let shot = shots.join(format!("status-{state}{suffix}.png"));
            run_chromium(
                &profile,
                &[
                    format!("--screenshot={}", shot.display()),
                    format!("--window-size={size}"),
                    url.clone(),
                ],
            );
            looks_right(&shot, &format!("{state}{suffix}"));
        }
    }
}
