//! The HTTP server over loopback: every status, hostile clients, curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use fill_core::outboard::BlockSize;
use fill_server::http;
use fill_store::config::{ConfigFile, SendfileMode, ServerConfig};
use fill_store::store::Store;

pub(crate) type TestServer = http::BackgroundServer;

pub(crate) fn config(store: &Path) -> ServerConfig {
    let mut c = ConfigFile::default()
        .resolve(Some("127.0.0.1:0"), Some(store), None)
        .unwrap();
    c.shutdown_grace = Duration::from_secs(2);
    c
}

pub(crate) fn start(cfg: ServerConfig) -> TestServer {
    http::BackgroundServer::start(cfg).expect("server started")
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw request bytes on a fresh connection (the request should say
/// `Connection: close`) and reads the whole answer.
pub(crate) fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_reply(&out)
}

pub(crate) fn parse_reply(out: &[u8]) -> Reply {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(out)));
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: out[end + 4..].to_vec(),
    }
}

pub(crate) fn get(addr: SocketAddr, path: &str, extra: &str) -> Reply {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    )
}

/// A store with a few files; returns (store dir, [(id, bytes)]).
pub(crate) fn store_with_files(dir: &Path, sizes: &[usize]) -> Vec<(String, Vec<u8>)> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut files = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let mut data = vec![0u8; size];
        blake3::Hasher::new_keyed(&[i as u8 + 1; 32])
            .finalize_xof()
            .fill(&mut data);
        std::fs::write(src.join(format!("f{i}")), &data).unwrap();
        files.push((blake3::hash(&data).to_hex().to_string(), data));
    }
    Store::new(dir.join("store"))
        .unwrap()
        .import(&[src], BlockSize::DEFAULT, &|_| {})
        .unwrap();
    files
}

#[test]
fn every_status_copying() {
    every_status(SendfileMode::Never);
}

/// The same answers when bodies leave by sendfile(2) (on loopback only when forced).
#[test]
fn every_status_sendfile() {
    every_status(SendfileMode::Always);
}

fn every_status(mode: SendfileMode) {
    let tmp = tempfile::tempdir().unwrap();
    let files = store_with_files(tmp.path(), &[3 << 20, 0, 1000]);
    let mut cfg = config(&tmp.path().join("store"));
    cfg.sendfile = mode;
    let srv = start(cfg);
    let a = srv.addr;
    let (id, data) = &files[0];
    let len = data.len();

    let whole = get(a, &format!("/content/{id}"), "");
    assert_eq!(whole.status, 200);
    assert_eq!(&whole.body, data);
    assert_eq!(whole.header("etag"), Some(format!("\"{id}\"").as_str()));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        whole.header("content-length"),
        Some(len.to_string().as_str())
    );

    for (range, first, last) in [
        ("bytes=0-99", 0, 99),
        ("bytes=1048576-", 1 << 20, len - 1),
        ("bytes=-10", len - 10, len - 1),
        ("bytes=100-99999999999", 100, len - 1),
        ("bytes=5-9", 5, 9),
    ] {
        let r = get(a, &format!("/content/{id}"), &format!("Range: {range}\r\n"));
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/{len}").as_str())
        );
        assert_eq!(&r.body[..], &data[first..=last], "{range}");
    }
    for range in [
        "bytes=99999999-",
        "bytes=-0",
        "bytes=18446744073709551616-",
        "bytes=99999999999999999999999-99999999999999999999999",
    ] {
        let r = get(a, &format!("/content/{id}"), &format!("Range: {range}\r\n"));
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
    }
    // Several ranges, other units, nonsense: ignored (RFC 9110 allows it): the whole body.
    for range in [
        "bytes=0-1,5-9",
        "items=0-1",
        "bytes=abc",
        "bytes=9-5",
        "bytes = 5-9",
    ] {
        let r = get(a, &format!("/content/{id}"), &format!("Range: {range}\r\n"));
        assert_eq!((r.status, r.body.len()), (200, len), "{range}");
    }
    // If-Range with another validator: whole body; If-None-Match with ours: 304.
    let r = get(
        a,
        &format!("/content/{id}"),
        "Range: bytes=0-9\r\nIf-Range: \"other\"\r\n",
    );
    assert_eq!(r.status, 200);
    let r = get(
        a,
        &format!("/content/{id}"),
        &format!("If-None-Match: \"{id}\"\r\n"),
    );
    assert_eq!((r.status, r.body.len()), (304, 0));

    // HEAD: the head, no body.
    let head = raw(
        a,
        format!("HEAD /content/{id} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );

    // The empty file: 200 with nothing; any range is unsatisfiable.
    let (empty, _) = &files[1];
    assert_eq!(get(a, &format!("/content/{empty}"), "").status, 200);
    assert_eq!(
        get(a, &format!("/content/{empty}"), "Range: bytes=0-\r\n").status,
        416
    );

    // Outboards are served the same way, and verify the content.
    let ob = get(a, &format!("/outboard/{id}"), "");
    assert_eq!(ob.status, 200);
    let parsed =
        fill_core::Outboard::parse(&ob.body, fill_core::ContentId::parse(id).unwrap()).unwrap();
    assert_eq!(parsed.size(), len as u64);
    assert_eq!(
        ob.header("etag"),
        Some(format!("\"{id}.outboard\"").as_str())
    );

    // Malformed and unknown ids.
    assert_eq!(get(a, "/content/xyz", "").status, 400);
    assert_eq!(
        get(a, &format!("/content/{}", id.to_uppercase()), "").status,
        400
    );
    let unknown = blake3::hash(b"not here").to_hex();
    assert_eq!(get(a, &format!("/content/{unknown}"), "").status, 404);
    assert_eq!(get(a, &format!("/outboard/{unknown}"), "").status, 404);
    assert_eq!(get(a, "/nothing", "").status, 404);

    // Methods.
    let post = raw(a, format!("POST /content/{id} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // Catalog, raw and zstd.
    let cat = get(a, "/catalog", "");
    assert_eq!(cat.status, 200);
    let parsed = fill_core::Catalog::parse(&cat.body).unwrap();
    assert_eq!(parsed.len(), 3);
    let z = get(a, "/catalog", "Accept-Encoding: gzip, zstd\r\n");
    assert_eq!(z.header("content-encoding"), Some("zstd"));
    assert_eq!(
        fill_core::catalog::wire::decompress(&z.body, 1 << 20).unwrap(),
        cat.body
    );
    assert_ne!(z.header("etag"), cat.header("etag"));
    let refused = get(a, "/catalog", "Accept-Encoding: zstd;q=0\r\n");
    assert_eq!(refused.header("content-encoding"), None);

    // Bodies left by sendfile(2) exactly when asked to.
    let sent = metric(&srv, "fill_http_sendfile_bytes_total");
    match mode {
        SendfileMode::Always => assert!(sent >= 8 * len as u64, "sendfile sent only {sent} bytes"),
        _ => assert_eq!(sent, 0),
    }

    // Health and metrics.
    assert_eq!(get(a, "/healthz", "").body, b"ok\n");
    let m = String::from_utf8(get(a, "/metrics", "").body).unwrap();
    for name in [
        "fill_http_requests_total{endpoint=\"content\",status=\"206\"} 5",
        "fill_http_requests_total{endpoint=\"content\",status=\"416\"}",
        "fill_http_response_body_bytes_total",
        "fill_http_request_duration_seconds_bucket",
        "fill_http_requests_in_flight",
        "fill_http_connections_open",
    ] {
        assert!(m.contains(name), "metrics lack {name}:\n{m}");
    }
}

#[test]
fn admin_needs_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let off = start(config(tmp.path()));
    let post = |a, path: &str, auth: &str| {
        raw(a, format!("POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
    };
    assert_eq!(post(off.addr, "/admin/ping", "").status, 403);
    drop(off);
    let mut cfg = config(tmp.path());
    cfg.admin_token = Some("correct-horse-battery-staple".into());
    let on = start(cfg);
    let a = on.addr;
    let r = post(a, "/admin/ping", "");
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    assert_eq!(
        post(
            a,
            "/admin/ping",
            "Authorization: Bearer wrong-token-wrong-token\r\n"
        )
        .status,
        401
    );
    assert_eq!(
        post(a, "/admin/ping", "Authorization: Basic Y29ycmVjdA==\r\n").status,
        401
    );
    let ok = post(
        a,
        "/admin/ping",
        "Authorization: Bearer correct-horse-battery-staple\r\n",
    );
    assert_eq!((ok.status, ok.body.as_slice()), (200, &b"pong\n"[..]));
    assert_eq!(
        post(
            a,
            "/admin/nope",
            "Authorization: Bearer correct-horse-battery-staple\r\n"
        )
        .status,
        404
    );
    // Unknown admin paths without the token learn nothing.
    assert_eq!(post(a, "/admin/nope", "").status, 401);
}

#[test]
fn hostile_paths_and_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let files = store_with_files(tmp.path(), &[5000]);
    std::fs::write(tmp.path().join("secret"), b"top secret").unwrap();
    let srv = start(config(&tmp.path().join("store")));
    let a = srv.addr;
    let id = &files[0].0;
    for path in [
        "/content/../catalog".to_owned(),
        "/content/..%2fcatalog".to_owned(),
        "/content/%2e%2e/%2e%2e/secret".to_owned(),
        "/content/..%2F..%2Fsecret".to_owned(),
        "/../secret".to_owned(),
        "/content/%00".to_owned(),
        format!("/content/{id}/../../secret"),
        format!("/content/{id}%00"),
        format!("/content/{}", "a".repeat(5000)),
        "/content/".to_owned(),
    ] {
        let r = get(a, &path, "");
        assert!(matches!(r.status, 400 | 404), "{path}: {}", r.status);
        assert!(
            !r.body.windows(10).any(|w| w == b"top secret"),
            "{path} leaked"
        );
    }
    // A head larger than the limit: refused, and the server goes on.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "x".repeat(100_000)
    );
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(huge.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.is_empty() || String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out[..out.len().min(200)])
    );
    // Garbage instead of HTTP.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"\x16\x03\x01\x02\x00 definitely not http\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 400"));
    assert_eq!(get(a, "/healthz", "").status, 200, "still serving");
}

/// A connection to `addr` from the loopback address `from` (127.0.0.0/8 is all loopback:
/// each address is another client to the server).
pub(crate) fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((from, 0))).unwrap();
        let c = s.connect(addr).await.expect("connect");
        let c = c.into_std().unwrap();
        c.set_nonblocking(false).unwrap();
        c
    })
}

fn get_from(from: [u8; 4], addr: SocketAddr, path: &str) -> Reply {
    let mut s = connect_from(from, addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_reply(&out)
}

#[test]
fn idle_connections_are_closed_and_others_served() {
    let tmp = tempfile::tempdir().unwrap();
    store_with_files(tmp.path(), &[1000]);
    let mut cfg = config(&tmp.path().join("store"));
    cfg.idle_timeout = Duration::from_millis(2500);
    cfg.header_read_timeout = Duration::from_millis(2500);
    let srv = start(cfg);
    let a = srv.addr;
    // 1,000 silent connections from 8 addresses, 125 each (within each one's limit).
    let idle: Vec<TcpStream> = (0..1000)
        .map(|i| connect_from([127, 0, 1, 10 + (i % 8) as u8], a))
        .collect();
    // Others are still served while 1,000 connections sit silent.
    let t = Instant::now();
    assert_eq!(get(a, "/healthz", "").status, 200);
    // Well before the timeout: not held up behind the silent ones.
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_millis(5000));
    let closed = idle.iter().filter(|&s| is_closed(s)).count();
    assert_eq!(closed, 1000, "idle connections left open");
    assert_eq!(get(a, "/healthz", "").status, 200);
}

/// One address holding its limit (`max_connections_per_client`): its next connection is
/// closed at once, and another address is served at once.
#[test]
fn one_address_cannot_hold_every_connection() {
    let tmp = tempfile::tempdir().unwrap();
    store_with_files(tmp.path(), &[1000]);
    let mut cfg = config(&tmp.path().join("store"));
    cfg.max_connections = 64;
    cfg.max_connections_per_client = 16;
    let srv = start(cfg);
    let a = srv.addr;
    let greedy = [127, 0, 2, 1];
    let held: Vec<TcpStream> = (0..16).map(|_| connect_from(greedy, a)).collect();
    // The server has accepted them all once a request behind them is answered.
    assert_eq!(get_from([127, 0, 2, 2], a, "/healthz").status, 200);
    let more = connect_from(greedy, a);
    assert!(
        is_closed(&more),
        "the 17th connection of one address was served"
    );
    assert_eq!(
        metric(&srv, "fill_http_connections_refused_per_client_total"),
        1
    );
    let t = Instant::now();
    assert_eq!(get_from([127, 0, 2, 3], a, "/healthz").status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    // Its places come back as its connections close.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = std::panic::catch_unwind(|| get_from(greedy, a, "/healthz").status);
        if r.ok() == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the address never got its places back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A counter's value from the server's metrics.
fn metric(srv: &TestServer, name: &str) -> u64 {
    let m = srv.state.metrics.encode();
    m.lines()
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{m}"))
}

/// Whether the server closed this connection: EOF (perhaps after a 408 it wrote) or a reset,
/// rather than a read that times out on an open socket.
fn is_closed(mut s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_and_vanishing_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let files = store_with_files(tmp.path(), &[32 << 20]);
    let mut cfg = config(&tmp.path().join("store"));
    cfg.idle_timeout = Duration::from_millis(1500);
    let srv = start(cfg);
    let a = srv.addr;
    let (id, data) = &files[0];
    let request = format!("GET /content/{id} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");

    // A client that reads very slowly gets correct bytes while others are served.
    let slow = {
        let request = request.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            for _ in 0..100 {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                std::thread::sleep(Duration::from_millis(5));
            }
            got
        })
    };
    // One that disconnects mid-body, and one that stops reading altogether.
    for _ in 0..5 {
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut buf = vec![0u8; 100_000];
        let _ = s.read(&mut buf);
    }
    let mut stalled = TcpStream::connect(a).unwrap();
    stalled.write_all(request.as_bytes()).unwrap();
    for _ in 0..5 {
        let r = get(a, &format!("/content/{id}"), "Range: bytes=0-1048575\r\n");
        assert_eq!(r.body, &data[..1 << 20]);
    }
    let got = slow.join().unwrap();
    let reply = parse_reply(&got);
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], &data[..reply.body.len()]);

    // The stalled reader is cut off by the idle timeout.
    std::thread::sleep(Duration::from_millis(3000));
    let idle_closed = metric(&srv, "fill_http_connections_idle_closed_total");
    assert!(idle_closed >= 1, "stalled reader not closed");
    drop(stalled);
    assert_eq!(get(a, "/healthz", "").status, 200);
}

/// Any standard client works: curl fetches ranges and whole files.
#[test]
fn curl_fetches_ranges() {
    let have_curl = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_curl {
        assert!(std::env::var_os("CI").is_none(), "CI must install curl");
        eprintln!("curl not installed: skipping the curl comparison");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let files = store_with_files(tmp.path(), &[(2 << 20) + 123]);
    let mut cfg = config(&tmp.path().join("store"));
    cfg.sendfile = SendfileMode::Always;
    let srv = start(cfg);
    let (id, data) = &files[0];
    let url = format!("http://{}/content/{id}", srv.addr);
    for (range, lo, hi) in [
        ("0-0", 0, 0),
        ("1000-1048575", 1000, 1048575),
        ("2000000-", 2000000, data.len() - 1),
    ] {
        let out = std::process::Command::new("curl")
            .args(["-sf", "-r", range, &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "curl -r {range}");
        assert_eq!(&out.stdout[..], &data[lo..=hi], "curl -r {range}");
    }
    let out = std::process::Command::new("curl")
        .args(["-sf", &url])
        .output()
        .unwrap();
    assert_eq!(&out.stdout, data);
}

/// The binary: bad config is refused with the field named; SIGTERM lets an in-flight
/// response finish, then the server exits 0 and stops accepting.
#[test]
fn binary_config_errors_and_graceful_sigterm() {
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_fill-server");
    let tmp = tempfile::tempdir().unwrap();
    let files = store_with_files(tmp.path(), &[16 << 20]);
    let store = tmp.path().join("store");

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nidle_timeout = \"30\"\n").unwrap();
    let out = Command::new(bin)
        .args([
            "--store",
            store.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: config: limits.idle_timeout: bad duration \"30\": expected a number and a unit (ms, s, m, h, d), like 10s, 48h or 1h30m"
    );
    let out = Command::new(bin)
        .args(["--store", store.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: config: listen: missing: give --listen ADDR or `listen` in the config"
    );

    let (mut child, addr, mut stderr) = spawn_server(&store, &[]);

    // Start a large response and read only part of it before the signal.
    let (id, data) = &files[0];
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!("GET /content/{id} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut got = vec![0u8; 65536];
    let n = s.read(&mut got).unwrap();
    got.truncate(n);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once the listener is closed.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still accepting"
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    got.extend_from_slice(&rest);
    let reply = parse_reply(&got);
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body, data, "the in-flight response finished intact");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    // Logs into a pipe are plain text: no colour codes.
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a redirected log: {log:?}"
    );
}

/// Only what the store's catalog lists is served: not a stray in `content/`, not a
/// symbolic link (to a system file, say) planted under an id, not an outboard without
/// its file.
#[test]
fn only_listed_files_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let files = store_with_files(tmp.path(), &[5000]);
    let store = tmp.path().join("store");
    let stray = blake3::hash(b"a stray").to_hex().to_string();
    std::fs::write(store.join("content").join(&stray), b"a stray").unwrap();
    let link = blake3::hash(b"/etc/passwd").to_hex().to_string();
    std::os::unix::fs::symlink("/etc/passwd", store.join("content").join(&link)).unwrap();
    std::fs::copy(
        store.join("outboard").join(&files[0].0),
        store.join("outboard").join(&stray),
    )
    .unwrap();
    let srv = start(config(&store));
    let a = srv.addr;
    assert_eq!(get(a, &format!("/content/{}", files[0].0), "").status, 200);
    for path in [
        format!("/content/{stray}"),
        format!("/content/{link}"),
        format!("/outboard/{stray}"),
    ] {
        let r = get(a, &path, "");
        assert_eq!(r.status, 404, "{path}");
        assert!(String::from_utf8_lossy(&r.body).contains("is not in this store"));
    }
    // A listed id whose file was replaced by a link is not followed either.
    let id = &files[0].0;
    let content = store.join("content").join(id);
    std::fs::remove_file(&content).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &content).unwrap();
    let r = get(a, &format!("/content/{id}"), "");
    assert_eq!(r.status, 404);
    assert!(!String::from_utf8_lossy(&r.body).contains("root:"));
}

/// A bit-rotted file: the block re-verified when the file is first mapped fails, the
/// file is withdrawn (404 under its old ETag no more), counted in the metrics and
/// reported by the checks; the scrub finds rot in a file already mapped.
#[test]
fn a_rotted_file_is_withdrawn_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    // One block each (1 MiB default), so whichever block is drawn is the rotted one.
    let files = store_with_files(tmp.path(), &[4000, 6000]);
    let store = tmp.path().join("store");
    let (rot, scrubbed) = (&files[0].0, &files[1].0);
    let flip = |id: &str| {
        // Rotted in place, as a disk does it: no new inode, no rename.
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(store.join("content").join(id))
            .unwrap();
        let mtime = f.metadata().unwrap().modified().unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 100).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], 100).unwrap();
        // A disk's rot leaves the times alone: the server's cached map still looks good.
        f.set_modified(mtime).unwrap();
    };
    let mut cfg = config(&store);
    cfg.lifecycle.check_interval = Duration::from_secs(3600);
    let srv = start(cfg);
    let a = srv.addr;
    // Served (and mapped) while good; then both rot.
    assert_eq!(get(a, &format!("/content/{scrubbed}"), "").status, 200);
    flip(rot);
    flip(scrubbed);
    let r = get(a, &format!("/content/{rot}"), "");
    assert_eq!(r.status, 404);
    assert!(
        String::from_utf8_lossy(&r.body).contains("is withdrawn: block 0 does not verify"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(metric(&srv, "fill_http_content_withdrawn"), 1);
    // The one already mapped is still served from the map cache, rot and all, until the
    // scrub (a block a tick, 1 s) re-verifies it: bounded wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(a, &format!("/content/{scrubbed}"), "").status == 200 {
        assert!(Instant::now() < deadline, "the scrub never found the rot");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric(&srv, "fill_http_content_withdrawn"), 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(srv.state.run_checks());
    let served = report
        .checks
        .iter()
        .find(|c| c.name == "served_content")
        .expect("a served_content check");
    assert!(!served.passed);
    assert!(
        served.detail.contains("2 files withdrawn"),
        "{}",
        served.detail
    );
    assert!(served.detail.contains("fill store verify --repair"));
}

/// A store catalog that does not validate is refused (503), not served; so is content,
/// since nothing says what is verified.
#[test]
fn a_corrupt_store_catalog_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let files = store_with_files(tmp.path(), &[1000]);
    let store = tmp.path().join("store");
    let cat = store.join("catalog");
    let mut bytes = std::fs::read(&cat).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff; // inside the names: no longer UTF-8 or not the same name
    bytes.truncate(n - 1);
    std::fs::write(&cat, &bytes).unwrap();
    let srv = start(config(&store));
    for path in ["/catalog".to_owned(), format!("/content/{}", files[0].0)] {
        let r = get(srv.addr, &path, "");
        assert_eq!(r.status, 503, "{path}");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(body.contains("the store's catalog is refused"), "{body}");
    }
}

/// The fill-server binary serving `store` on a free loopback port, with `args` after; its
/// address, read from the line it logs; the rest of its log.
fn spawn_server(
    store: &Path,
    args: &[&str],
) -> (
    std::process::Child,
    SocketAddr,
    std::io::BufReader<std::process::ChildStderr>,
) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fill-server"))
        .args([
            "--store",
            store.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .env("FILL_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("http://") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no address line");
    }
    let addr: SocketAddr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .expect(&line);
    (child, addr, stderr)
}

/// Any bytes as a request: an HTTP answer (a 4xx for what is not a request of ours) or a
/// closed connection, within the header timeout; the server serves on after all of them,
/// within bounded memory.
#[test]
fn any_request_bytes_get_an_answer_or_a_close() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let tmp = tempfile::tempdir().unwrap();
    let files = store_with_files(tmp.path(), &[3000]);
    // The server in a process of its own, so its peak memory is its alone, not that of
    // the tests running beside this one.
    let conf = tmp.path().join("server.toml");
    std::fs::write(&conf, "[limits]\nheader_read_timeout = \"500ms\"\n").unwrap();
    let (mut child, a, mut log) = spawn_server(
        &tmp.path().join("store"),
        &["--config", conf.to_str().unwrap()],
    );
    // Its log drained, so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    let valid = format!(
        "GET /content/{} HTTP/1.1\r\nHost: t\r\nRange: bytes=0-99\r\nConnection: close\r\n\r\n",
        files[0].0
    );
    let requests = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        (
            0..valid.len(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map({
                let valid = valid.clone();
                move |(at, junk)| {
                    let mut r = valid.as_bytes()[..at].to_vec();
                    r.extend_from_slice(&junk);
                    r.extend_from_slice(b"\r\n\r\n");
                    r
                }
            }),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&requests, |req| {
            let mut s = TcpStream::connect(a).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(&req);
            let t = Instant::now();
            let mut out = Vec::new();
            let r = s.read_to_end(&mut out);
            prop_assert!(t.elapsed() < Duration::from_secs(4), "no answer nor close");
            if r.is_ok() && !out.is_empty() {
                prop_assert!(
                    out.starts_with(b"HTTP/1.1 "),
                    "{:?}",
                    String::from_utf8_lossy(&out)
                );
                let code: u16 = String::from_utf8_lossy(&out[9..12]).parse().unwrap_or(0);
                prop_assert!((100..600).contains(&code));
                prop_assert!(
                    code < 500,
                    "a server error for {:?}",
                    String::from_utf8_lossy(&req)
                );
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(get(a, "/healthz", "").status, 200);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let hwm: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(hwm < 64 << 10, "the server's peak RSS {hwm} kB");
}
