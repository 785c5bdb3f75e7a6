//! Object storage as a source, against a real S3 server: `s3s` + `s3s-fs` serving a temp
//! directory on 127.0.0.1:0, requests signed with a test key.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fill_core::outboard::BlockSize;
use fill_store::store::Store;

use crate::{Run, data, p};

const ACCESS_KEY: &str = "FILLTESTACCESSKEY";
const SECRET_KEY: &str = "fill-test-secret-key-0123456789";

/// An S3 server on its own thread, stopped on drop.
pub(crate) struct S3 {
    pub(crate) addr: SocketAddr,
    /// Where it keeps buckets (`root/<bucket>/<key>`).
    pub(crate) root: PathBuf,
    /// Requests answered.
    pub(crate) requests: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Counts requests, then hands them to the S3 service.
#[derive(Clone)]
struct Counting {
    inner: s3s::service::S3Service,
    requests: Arc<AtomicU64>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Counting {
    type Response = <s3s::service::S3Service as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Response;
    type Error = <s3s::service::S3Service as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Error;
    type Future = <s3s::service::S3Service as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Future;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        self.requests.fetch_add(1, Ordering::Relaxed);
        <s3s::service::S3Service as hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
        >>::call(&self.inner, req)
    }
}

impl S3 {
    /// Serves `root` (its subfolders are buckets); `buckets` are created first.
    pub(crate) fn start(root: &Path, buckets: &[&str]) -> Self {
        for b in buckets {
            fs::create_dir_all(root.join(b)).unwrap();
        }
        let requests = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (dir, count) = (root.to_owned(), requests.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&dir).unwrap();
                let mut b = s3s::service::S3ServiceBuilder::new(fs);
                b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = Counting {
                    inner: b.build(),
                    requests: count,
                };
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let mut stopped = std::pin::pin!(stopped);
                loop {
                    let (sock, _) = tokio::select! {
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                        _ = &mut stopped => break,
                    };
                    let svc = service.clone();
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                            .await;
                    });
                }
            });
        });
        let addr = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        Self {
            addr,
            root: root.to_owned(),
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The environment `fill` reads S3 settings from.
    pub(crate) fn env(&self, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", secret.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", format!("http://{}", self.addr)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `fill` with `env` added.
pub(crate) fn fill_env(args: &[&str], env: &[(&str, String)]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fill"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    Run {
        out: c.output().expect("run fill"),
    }
}

/// An origin store of `n` files (1 MiB blocks), whose catalog is the target; the files.
pub(crate) fn origin(dir: &Path, n: usize) -> (PathBuf, Vec<Vec<u8>>) {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut files = Vec::new();
    for i in 0..n {
        let bytes = data((i % 3 + 1) * (1 << 20) + i * 777, 300 + i as u64);
        fs::write(src.join(format!("f{i}.mp4")), &bytes).unwrap();
        files.push(bytes);
    }
    let store = dir.join("origin");
    Store::new(&store)
        .unwrap()
        .import(&[src], BlockSize::DEFAULT, &|_| {})
        .unwrap();
    (store, files)
}

fn assert_holds(app: &Path, files: &[Vec<u8>]) {
    for f in files {
        let id = blake3::hash(f).to_hex().to_string();
        let held = fs::read(app.join("content").join(&id)).expect("file filled");
        assert!(held == *f, "{id} differs");
    }
}

fn bucket_source(name: &str, kind: &str, url: &str, s3: &S3, cost: f64) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n\
         endpoint = \"http://{}\"\nallow_http = true\nregion = \"us-east-1\"\n\
         cost_per_gib = {cost}\nbandwidth = \"10Gbps\"\n\n",
        s3.addr
    )
}

fn run_args<'a>(target: &'a str, app: &'a str, sources: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--target",
        target,
        "--store",
        app,
        "--sources",
        sources,
        "--capacity",
        "1TB",
    ]
}

#[test]
fn publish_to_a_real_s3_server_then_fill_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(&tmp.path().join("s3"), &["fill"]);
    let env = s3.env(SECRET_KEY);
    let (origin, files) = origin(tmp.path(), 6);
    let url = "s3://fill/region-1";
    let first = fill_env(
        &[
            "store",
            "publish",
            "--store",
            p(&origin),
            "--to",
            url,
            "--verify",
            "--json",
        ],
        &env,
    )
    .ok()
    .json();
    assert_eq!(
        (&first["files"], &first["uploaded"], &first["verified"]),
        (&6.into(), &12.into(), &6.into())
    );
    // The bucket holds the store's layout, under the prefix.
    let id0 = blake3::hash(&files[0]).to_hex().to_string();
    assert_eq!(
        fs::read(s3.root.join("fill/region-1/content").join(&id0)).unwrap(),
        files[0]
    );
    // Publishing again skips what is there.
    let again = fill_env(
        &[
            "store",
            "publish",
            "--store",
            p(&origin),
            "--to",
            url,
            "--json",
        ],
        &env,
    )
    .ok()
    .json();
    assert_eq!(
        (&again["uploaded"], &again["skipped"]),
        (&0.into(), &12.into())
    );

    let sources = tmp.path().join("sources.toml");
    fs::write(&sources, bucket_source("bucket", "origin", url, &s3, 0.02)).unwrap();
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap(); // a new, empty disk
    let target = origin.join("catalog");
    let before = s3.requests.load(Ordering::Relaxed);
    let run = fill_env(&run_args(p(&target), p(&app), p(&sources)), &env).ok();
    assert!(run.stdout().contains("bucket"), "{}", run.stdout());
    assert_holds(&app, &files);
    assert!(s3.requests.load(Ordering::Relaxed) > before);

    // No credentials at all: said plainly, before any request (none to the bucket, none to
    // a metadata service).
    fs::create_dir_all(tmp.path().join("app2")).unwrap();
    let before = s3.requests.load(Ordering::Relaxed);
    let none: Vec<(&str, String)> = env
        .iter()
        .map(|(k, v)| match *k {
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => (*k, String::new()),
            _ => (*k, v.clone()),
        })
        .collect();
    let bad = fill_env(
        &run_args(p(&target), p(&tmp.path().join("app2")), p(&sources)),
        &none,
    );
    assert_eq!(bad.code(), 1, "{}", bad.stderr());
    assert!(
        bad.stderr().contains("source \"bucket\"")
            && bad
                .stderr()
                .contains("no credentials found: set AWS_ACCESS_KEY_ID"),
        "{}",
        bad.stderr()
    );
    assert_eq!(s3.requests.load(Ordering::Relaxed), before);

    // A wrong secret: a clear error naming the source.
    let bad = fill_env(
        &run_args(p(&target), p(&tmp.path().join("app2")), p(&sources)),
        &s3.env("not-the-secret"),
    );
    assert_eq!(bad.code(), 1);
    assert!(
        bad.stderr().contains("source \"bucket\"")
            && bad.stderr().contains("the credentials are refused"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn a_corrupted_bucket_object_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(&tmp.path().join("s3"), &["fill"]);
    let env = s3.env(SECRET_KEY);
    let (origin, files) = origin(tmp.path(), 4);
    fill_env(
        &[
            "store",
            "publish",
            "--store",
            p(&origin),
            "--to",
            "s3://fill/r",
        ],
        &env,
    )
    .ok();
    // Flip a byte of the largest file's second block, on disk under the server.
    let big = files.iter().max_by_key(|f| f.len()).unwrap();
    let id = blake3::hash(big).to_hex().to_string();
    let obj = s3.root.join("fill/r/content").join(&id);
    let mut bytes = fs::read(&obj).unwrap();
    bytes[(1 << 20) + 5] ^= 0x01;
    fs::write(&obj, &bytes).unwrap();
    let target = origin.join("catalog");

    // The bucket as a cheap tier, an HTTP origin behind it: fetched elsewhere.
    let srv = crate::ServerProcess::start(&origin);
    let sources = tmp.path().join("sources.toml");
    fs::write(
        &sources,
        bucket_source("bucket", "tier", "s3://fill/r", &s3, 0.001)
            + &format!(
                "[[source]]\nname = \"http-origin\"\nkind = \"origin\"\nurl = \"http://{}\"\n\
                 cost_per_gib = 0.05\nbandwidth = \"10Gbps\"\n",
                srv.addr
            ),
    )
    .unwrap();
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap(); // a new, empty disk
    let run = fill_env(
        &[&run_args(p(&target), p(&app), p(&sources))[..], &["--json"]].concat(),
        &env,
    )
    .ok();
    let report = run.json();
    let per: Vec<(String, u64)> = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["bad_blocks"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        per.contains(&("bucket".into(), 1)),
        "{}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    assert_holds(&app, &files);

    // The bucket as the only origin: the run fails loudly.
    fs::write(
        &sources,
        bucket_source("bucket", "origin", "s3://fill/r", &s3, 0.02),
    )
    .unwrap();
    fs::create_dir_all(tmp.path().join("app2")).unwrap();
    let bad = fill_env(
        &run_args(p(&target), p(&tmp.path().join("app2")), p(&sources)),
        &env,
    );
    assert_eq!(bad.code(), 1);
    assert!(
        bad.stderr()
            .contains(&format!("origin bucket sent bad data for {id} block 1")),
        "{}",
        bad.stderr()
    );
}

#[test]
fn a_file_url_is_an_origin_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (origin, files) = origin(tmp.path(), 3);
    let dir = tmp.path().join("published");
    let url = format!("file://{}", dir.display());
    fill_env(
        &[
            "store",
            "publish",
            "--store",
            p(&origin),
            "--to",
            &url,
            "--verify",
        ],
        &[],
    )
    .ok();
    let sources = tmp.path().join("sources.toml");
    fs::write(
        &sources,
        format!(
            "[[source]]\nname = \"local\"\nkind = \"origin\"\nurl = \"{url}\"\n\
             cost_per_gib = 0.01\nbandwidth = \"10Gbps\"\n"
        ),
    )
    .unwrap();
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap(); // a new, empty disk
    fill_env(
        &run_args(p(&origin.join("catalog")), p(&app), p(&sources)),
        &[],
    )
    .ok();
    assert_holds(&app, &files);
    // A factory station pre-fills from the same folder.
    let (s1, s2) = (tmp.path().join("s1"), tmp.path().join("s2"));
    for d in [&s1, &s2] {
        fs::create_dir(d).unwrap(); // new, empty disks
    }
    fill_env(
        &[
            "prefill",
            "--target",
            p(&origin.join("catalog")),
            "--source",
            &url,
            "--store",
            p(&s1),
            "--store",
            p(&s2),
        ],
        &[],
    )
    .ok();
    assert_holds(&s1, &files);
    assert_holds(&s2, &files);
    // Hostile settings are refused with the field named.
    fs::write(
        &sources,
        format!(
            "[[source]]\nname = \"local\"\nkind = \"origin\"\nurl = \"{url}\"\nregion = \"x\"\n\
             cost_per_gib = 0.01\nbandwidth = \"10Gbps\"\n"
        ),
    )
    .unwrap();
    let bad = fill_env(
        &run_args(p(&origin.join("catalog")), p(&app), p(&sources)),
        &[],
    );
    assert!(
        bad.stderr()
            .contains("region, endpoint and allow_http are for s3:// sources"),
        "{}",
        bad.stderr()
    );
}
