//! Fill from an S3 server (s3s + s3s-fs, in process, on loopback) vs from fill-server, on the
//! same data, in the same run: throughput and requests per fill. Run by
//! `benches/s3-vs-http.sh` (`cargo run --release -p fill-benches --example s3_vs_http -- MIB
//! ROUNDS`); the `fill` binary must be built (release) first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const ACCESS_KEY: &str = "BENCHACCESSKEY";
const SECRET_KEY: &str = "bench-secret-key-0123456789";

#[derive(Clone)]
struct Counting {
    inner: s3s::service::S3Service,
    requests: Arc<AtomicU64>,
}

type S3Req = hyper::Request<hyper::body::Incoming>;

impl hyper::service::Service<S3Req> for Counting {
    type Response = <s3s::service::S3Service as hyper::service::Service<S3Req>>::Response;
    type Error = <s3s::service::S3Service as hyper::service::Service<S3Req>>::Error;
    type Future = <s3s::service::S3Service as hyper::service::Service<S3Req>>::Future;
    fn call(&self, req: S3Req) -> Self::Future {
        self.requests.fetch_add(1, Ordering::Relaxed);
        <s3s::service::S3Service as hyper::service::Service<S3Req>>::call(&self.inner, req)
    }
}

fn start_s3(root: PathBuf, requests: Arc<AtomicU64>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs root");
            let mut b = s3s::service::S3ServiceBuilder::new(fs);
            b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            let svc = Counting {
                inner: b.build(),
                requests,
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let svc = svc.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().expect("s3 server started")
}

fn fill(bin: &Path, args: &[&str], env: &[(&str, String)]) {
    let mut c = if std::env::var_os("FILL_TIME").is_some() && args[0] == "run" {
        let mut t = Command::new("/usr/bin/time");
        t.args(["-f", "fill run: %e s wall, %U s user, %S s sys"])
            .arg(bin);
        t
    } else {
        Command::new(bin)
    };
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run fill");
    assert!(
        out.status.success(),
        "fill {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var_os("FILL_TIME").is_some() && args[0] == "run" {
        let err = String::from_utf8_lossy(&out.stderr);
        if let Some(line) = err.lines().find(|l| l.starts_with("fill run: ")) {
            eprintln!("  {line}");
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    // Concurrent requests to each source (the sources file's max_connections).
    let conns: u32 = std::env::args()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4);
    let bin =
        PathBuf::from(std::env::var("FILL_BIN").unwrap_or_else(|_| "target/release/fill".into()));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // The data: 8 files of MIB/8 MiB each, seeded.
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    for i in 0..8u64 {
        let mut data = vec![0u8; (mib / 8) << 20];
        blake3::Hasher::new_keyed(&[i as u8 + 1; 32])
            .finalize_xof()
            .fill(&mut data);
        std::fs::write(src.join(format!("f{i}.mp4")), &data).expect("write");
    }
    let origin = dir.join("origin");
    fill(
        &bin,
        &[
            "store",
            "import",
            "--store",
            origin.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
        &[],
    );
    let s3_requests = Arc::new(AtomicU64::new(0));
    let s3_root = dir.join("s3");
    std::fs::create_dir_all(s3_root.join("bench")).expect("bucket");
    let s3 = start_s3(s3_root, s3_requests.clone());
    let env = vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ENDPOINT_URL", format!("http://{s3}")),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    fill(
        &bin,
        &[
            "store",
            "publish",
            "--store",
            origin.to_str().unwrap(),
            "--to",
            "s3://bench/o",
        ],
        &env,
    );
    let cfg = fill_store::config::ConfigFile::default()
        .resolve(Some("127.0.0.1:0"), Some(&origin), None)
        .expect("config");
    let http = fill_server::http::BackgroundServer::start(cfg).expect("fill-server");
    let s3_sources = dir.join("s3.toml");
    std::fs::write(
        &s3_sources,
        format!(
            "[[source]]\nname = \"s3\"\nkind = \"origin\"\nurl = \"s3://bench/o\"\n\
             endpoint = \"http://{s3}\"\nallow_http = true\nregion = \"us-east-1\"\n\
             cost_per_gib = 0.02\nbandwidth = \"100Gbps\"\nmax_connections = {conns}\n"
        ),
    )
    .expect("sources");
    let http_sources = dir.join("http.toml");
    std::fs::write(
        &http_sources,
        format!(
            "[[source]]\nname = \"http\"\nkind = \"origin\"\nurl = \"http://{}\"\n\
             cost_per_gib = 0.02\nbandwidth = \"100Gbps\"\nmax_connections = {conns}\n",
            http.addr
        ),
    )
    .expect("sources");
    let target = origin.join("catalog");
    let bytes = (mib as f64) * 1048576.0;
    let (mut t_s3, mut t_http, mut r_s3, mut r_http) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let http_requests = || {
        let text = http.state.metrics.encode();
        text.lines()
            .filter(|l| l.starts_with("fill_http_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    for round in 0..rounds {
        for (name, sources) in [("s3", &s3_sources), ("http", &http_sources)] {
            let app = dir.join(format!("app-{name}-{round}"));
            let (before_s3, before_http) = (s3_requests.load(Ordering::Relaxed), http_requests());
            let t = Instant::now();
            fill(
                &bin,
                &[
                    "run",
                    "--target",
                    target.to_str().unwrap(),
                    "--store",
                    app.to_str().unwrap(),
                    "--sources",
                    sources.to_str().unwrap(),
                    "--capacity",
                    "1TB",
                ],
                &env,
            );
            let secs = t.elapsed().as_secs_f64();
            std::fs::remove_dir_all(&app).expect("clean");
            if name == "s3" {
                t_s3.push(secs);
                r_s3.push((s3_requests.load(Ordering::Relaxed) - before_s3) as f64);
            } else {
                t_http.push(secs);
                r_http.push(http_requests() - before_http);
            }
        }
    }
    let (s, h) = (median(t_s3.clone()), median(t_http.clone()));
    println!(
        "{mib} MiB in 8 files, {conns} connections per source, {rounds} rounds, medians (same run, page cache warm):"
    );
    println!(
        "  from S3 (s3s-fs)   {s:6.2} s  {:7.1} MiB/s  {:5.0} requests   runs {t_s3:.2?}",
        bytes / s / 1048576.0,
        median(r_s3)
    );
    println!(
        "  from fill-server   {h:6.2} s  {:7.1} MiB/s  {:5.0} requests   runs {t_http:.2?}",
        bytes / h / 1048576.0,
        median(r_http)
    );
    println!("  S3 throughput / fill-server throughput = {:.2}", h / s);
}
