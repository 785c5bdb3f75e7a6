//! Appliances reporting to a `fill-control serve` process: APPLIANCES allocated through the
//! API, then reports sent open-loop at RATE per second for SECONDS, each from one of the
//! appliances in turn with its own token, over 64 keep-alive connections; prints the
//! sustained rate and the latency percentiles. Run by `benches/control-load.sh`
//! (`cargo run --release -p fill-benches --example control_load -- URL APPLIANCES RATE
//! SECONDS`), against a server it did not start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn post(
    http: &Http,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value), String> {
    let mut req = hyper::Request::post(url).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let resp = http.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
}

fn arg(n: usize, default: &str) -> String {
    std::env::args()
        .nth(n)
        .unwrap_or_else(|| default.to_owned())
}

fn main() {
    let base = arg(1, "http://127.0.0.1:18700");
    let appliances: usize = arg(2, "20000").parse().unwrap();
    let rate: u64 = arg(3, "1000").parse().unwrap();
    let seconds: u64 = arg(4, "30").parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let http: Http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build_http();
        let login = |email: &'static str| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let (s, v) = post(
                    &http,
                    &format!("{base}/api/login"),
                    None,
                    &serde_json::json!({"email": email, "password": "a long bench password"}),
                )
                .await
                .unwrap();
                assert_eq!(s, 200, "login {email}: {v}");
                v["token"].as_str().unwrap().to_owned()
            }
        };
        let (ops, partner) = (login("ops@bench.test").await, login("eng@bench.test").await);
        let (s, d) = post(
            &http,
            &format!("{base}/api/surveys"),
            Some(&partner),
            &serde_json::json!({
                "site": format!("BENCH-{}", std::process::id()),
                "shipping_address": ["Bench"],
                "contacts": [{"name": "E", "email": "eng@bench.test", "role": "engineering"}],
                "network": {"asn": 64500, "ipv4": ["192.0.2.0/24"], "bgp_neighbors": ["192.0.2.1"]},
                "tz": "UTC"
            }),
        )
        .await
        .unwrap();
        assert_eq!(s, 201, "{d}");
        let dep = d["deployment"].as_str().unwrap().to_owned();
        let started = Instant::now();
        let mut tokens = Vec::with_capacity(appliances);
        for k in 0..appliances {
            let serial = format!("b{}-{k:06}", std::process::id());
            let (s, a) = post(
                &http,
                &format!("{base}/api/deployments/{dep}/appliances"),
                Some(&ops),
                &serde_json::json!({"serial": serial, "hardware": "storage", "capacity": "40TB", "catalog": "bench"}),
            )
            .await
            .unwrap();
            assert_eq!(s, 201, "{a}");
            tokens.push((serial, a["token"].as_str().unwrap().to_owned()));
        }
        eprintln!(
            "allocated {appliances} appliances in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let tokens = Arc::new(tokens);
        let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let inflight = Arc::new(tokio::sync::Semaphore::new(256));
        let mut behind = 0u64;
        let total = rate * seconds;
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        let t0 = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            tokio::time::sleep_until(t0 + period * i as u32).await;
            let Ok(permit) = inflight.clone().try_acquire_owned() else {
                behind += 1;
                continue;
            };
            let (http, base, tokens, latencies, errors) = (
                http.clone(),
                base.clone(),
                tokens.clone(),
                latencies.clone(),
                errors.clone(),
            );
            tasks.spawn(async move {
                let (serial, token) = &tokens[i as usize % tokens.len()];
                let body = serde_json::json!({
                    "version": "1.2.0",
                    "bgp": {"session": "idle", "prefixes": 0},
                    "checked_at": 1_796_000_000,
                    "checks": [{"name": "fill", "passed": true, "detail": "done"}]
                });
                let sent = Instant::now();
                match post(&http, &format!("{base}/api/appliances/{serial}/report"), Some(token), &body).await {
                    Ok((200, _)) => latencies
                        .lock()
                        .unwrap()
                        .push(sent.elapsed().as_secs_f64() * 1e3),
                    _ => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let wall = t0.elapsed().as_secs_f64();
        let mut l = latencies.lock().unwrap().clone();
        l.sort_by(f64::total_cmp);
        let pct = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or(f64::NAN);
        println!(
            "{} reports ok in {wall:.1} s: {:.0}/s sustained (asked {rate}/s); errors {}, not sent (256 in flight) {behind}; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            l.len() as f64 / wall,
            errors.load(std::sync::atomic::Ordering::Relaxed),
            pct(0.50),
            pct(0.99),
            l.last().copied().unwrap_or(f64::NAN)
        );
    });
}
