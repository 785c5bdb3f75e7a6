//! The portal's pages with a fleet in the database: APPLIANCES allocated through the API
//! (the first LIVE of them taken to live by their reports, with events, checks and emails),
//! then an ops user signed in through the portal's form fetches REQUESTS fleet pages (a
//! random page of 100) and REQUESTS appliance pages (a random appliance), CONCURRENCY at a
//! time; prints the latency percentiles of each. Run by `benches/portal-load.sh`
//! (`cargo run --release -p fill-benches --example portal_load -- URL APPLIANCES REQUESTS
//! CONCURRENCY`), against a server it did not start.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Appliances taken to live (with events, checks and emails).
const LIVE: usize = 500;

async fn call(
    http: &Http,
    method: &str,
    url: &str,
    auth: Option<(&str, &str)>,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, hyper::HeaderMap, Bytes) {
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some((k, v)) = auth {
        req = req.header(k, v);
    }
    let (ctype, bytes) = body.unwrap_or(("application/json", Vec::new()));
    let req = req
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap();
    let resp = http.request(req).await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

async fn api(
    http: &Http,
    url: &str,
    token: Option<&str>,
    v: serde_json::Value,
) -> serde_json::Value {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let (s, _, b) = call(
        http,
        "POST",
        url,
        bearer.as_deref().map(|b| ("authorization", b)),
        Some(("application/json", serde_json::to_vec(&v).unwrap())),
    )
    .await;
    let answer: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
    assert!((200..300).contains(&s), "{url}: {s} {answer}");
    answer
}

fn arg(n: usize, default: &str) -> String {
    std::env::args()
        .nth(n)
        .unwrap_or_else(|| default.to_owned())
}

fn percentiles(mut l: Vec<f64>) -> String {
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    format!(
        "{} ok; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.len(),
        pct(0.50),
        pct(0.99),
        l[l.len() - 1]
    )
}

fn main() {
    let base = arg(1, "http://127.0.0.1:18702");
    let appliances: usize = arg(2, "20000").parse().unwrap();
    let requests: usize = arg(3, "2000").parse().unwrap();
    let concurrency: usize = arg(4, "8").parse().unwrap();
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
                let v = api(
                    &http,
                    &format!("{base}/api/login"),
                    None,
                    serde_json::json!({"email": email, "password": "a long bench password"}),
                )
                .await;
                v["token"].as_str().unwrap().to_owned()
            }
        };
        let (ops, partner) = (login("ops@bench.test").await, login("eng@bench.test").await);
        let started = Instant::now();
        let mut serials = Vec::with_capacity(appliances);
        let mut tokens = Vec::new();
        // Sites of 10 appliances.
        let mut dep = String::new();
        for k in 0..appliances {
            if k % 10 == 0 {
                let d = api(
                    &http,
                    &format!("{base}/api/surveys"),
                    Some(&partner),
                    serde_json::json!({
                        "site": format!("P{}-{}", std::process::id(), k / 10),
                        "shipping_address": ["Bench"],
                        "contacts": [{"name": "E", "email": "eng@bench.test", "role": "engineering"},
                                     {"name": "N", "email": "noc@bench.test", "role": "noc"}],
                        "network": {"asn": 64500, "ipv4": ["192.0.2.0/24"], "bgp_neighbors": ["192.0.2.1"]},
                        "tz": "UTC"
                    }),
                )
                .await;
                dep = d["deployment"].as_str().unwrap().to_owned();
            }
            let serial = format!("p{}-{k:06}", std::process::id());
            let a = api(
                &http,
                &format!("{base}/api/deployments/{dep}/appliances"),
                Some(&ops),
                serde_json::json!({"serial": serial, "hardware": "storage", "capacity": "40TB", "catalog": "bench"}),
            )
            .await;
            if k < LIVE {
                tokens.push((serial.clone(), a["token"].as_str().unwrap().to_owned()));
            }
            serials.push(serial);
        }
        for (serial, token) in &tokens {
            let step = format!("{base}/api/appliances/{serial}/transitions");
            for (who, to) in [(&ops, serde_json::json!({"to": "prefilling"})),
                (&ops, serde_json::json!({"to": "in_transit", "carrier": "DHL", "tracking": "JD0146"})),
                (&partner, serde_json::json!({"to": "delivered"})),
                (&partner, serde_json::json!({"to": "installed"}))] {
                api(&http, &step, Some(who), to).await;
            }
            let report = format!("{base}/api/appliances/{serial}/report");
            for (at, state) in [(None, "installed"), (Some(1_796_000_000), "burn_in")] {
                let mut r = serde_json::json!({"version": "1.2.0", "bgp": {"session": "established", "prefixes": 9}, "state": state});
                if let Some(at) = at {
                    r["checked_at"] = serde_json::json!(at);
                    r["checks"] = serde_json::json!([{"name": "fill", "passed": true, "detail": "done"},
                                                     {"name": "offload", "passed": true, "detail": ""}]);
                }
                api(&http, &report, Some(token), r).await;
            }
        }
        eprintln!(
            "{appliances} appliances ({} live) in {:.1} s",
            LIVE.min(appliances),
            started.elapsed().as_secs_f64()
        );
        // Signed in through the portal's form.
        let (s, headers, _) = call(
            &http,
            "POST",
            &format!("{base}/login"),
            None,
            Some(("application/x-www-form-urlencoded", b"email=ops%40bench.test&password=a+long+bench+password".to_vec())),
        )
        .await;
        assert_eq!(s, 303, "sign-in");
        let cookie = headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let pages = appliances.div_ceil(100);
        let serials = Arc::new(serials);
        for kind in ["fleet", "appliance"] {
            let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut workers = tokio::task::JoinSet::new();
            for w in 0..concurrency {
                let (http, base, cookie, serials, latencies, next) = (
                    http.clone(), base.clone(), cookie.clone(), serials.clone(), latencies.clone(), next.clone(),
                );
                workers.spawn(async move {
                    let mut rng = fill_core::rng::SplitMix64(w as u64 + 1);
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                        let url = if kind == "fleet" {
                            format!("{base}/?page={}", rng.below(pages as u64) + 1)
                        } else {
                            // Half of them among the live ones, which have the most to show.
                            let live = LIVE.min(serials.len()) as u64;
                            let k = if rng.chance(50) { rng.below(live) } else { rng.below(serials.len() as u64) };
                            format!("{base}/appliances/{}", serials[k as usize])
                        };
                        let sent = Instant::now();
                        let (s, _, body) = call(&http, "GET", &url, Some(("cookie", &cookie)), None).await;
                        assert_eq!(s, 200, "{url}");
                        assert!(body.len() > 1000, "{url}: a page");
                        latencies.lock().unwrap().push(sent.elapsed().as_secs_f64() * 1e3);
                    }
                });
            }
            while workers.join_next().await.is_some() {}
            let l = latencies.lock().unwrap().clone();
            println!("{kind} page: {}", percentiles(l));
        }
    });
}
