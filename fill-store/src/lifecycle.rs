//! The appliance's turn-up checks and the I/O around its lifecycle (docs/lifecycle.md).
//!
//! The states and the check verdicts are pure (`fill_core::lifecycle`); this module measures
//! a real store against its target (fill, offload, store health), asks every configured
//! source for its catalog (sources), and delivers recorded events to a webhook. The server
//! runs the checks periodically during `burn_in` and on demand; `fill appliance checks` runs
//! the same code against a store directly.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use fill_core::lifecycle::{Check, State};
use fill_core::outboard::Outboard;
use fill_core::rng::SplitMix64;
use fill_core::size::format_size;
use fill_core::{Catalog, ContentId};
use serde::Serialize;

use crate::config::Settings;
use crate::store::{CatalogFile, Store, StoreError, chain};

/// How far the store is towards its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Files in the target.
    pub target_files: u64,
    /// Bytes in the target.
    pub target_bytes: u64,
    /// Target files complete in the store.
    pub complete_files: u64,
    /// Bytes of those files, plus the verified blocks of target files being filled.
    pub complete_bytes: u64,
    /// `complete_bytes ÷ target_bytes` (1 for an empty target).
    pub share: f64,
    /// Held share of the target's weight (its demand).
    pub offload: f64,
    /// The share the offload check needs.
    pub offload_threshold: f64,
}

/// One run of the checks.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Unix seconds.
    pub checked_at: i64,
    /// fill, offload, store_health, sources: in that order.
    pub checks: Vec<Check>,
    /// The fill's progress, when the target is known.
    pub progress: Option<Progress>,
}

impl Report {
    /// Whether every check passed.
    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Runs every check against `store`: the store's own in a blocking task, the sources over
/// the network. `now` seeds the block sample, so successive runs look at different blocks.
pub async fn run_checks(store: &Store, settings: &Settings, now: i64) -> Report {
    let (s, cfg) = (store.clone(), settings.clone());
    let local = tokio::task::spawn_blocking(move || local_checks(&s, &cfg, now)).await;
    let (mut checks, progress) = match local {
        Ok(x) => x,
        Err(e) => (
            vec![Check {
                name: "store_health",
                passed: false,
                detail: format!("the store checks did not finish: {e}"),
            }],
            None,
        ),
    };
    checks.push(sources_check(settings).await);
    Report {
        checked_at: now,
        checks,
        progress,
    }
}

/// The fill, offload and store-health checks, and the progress they measured.
pub fn local_checks(
    store: &Store,
    settings: &Settings,
    now: i64,
) -> (Vec<Check>, Option<Progress>) {
    let mut sample = SplitMix64(now as u64);
    // The store's catalog, read and validated once for both measures.
    let held_file = store.catalog().map_err(|e| chain(&e));
    let held = held_file
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|f| f.validate().map_err(|e| chain(&e)));
    let held = held.as_ref().map_err(Clone::clone);
    let health = health_facts(store, settings, held.clone(), &mut sample);
    let (fill, offload, progress) = match measure(store, settings, held) {
        Ok(p) => {
            let fill = fill_core::lifecycle::fill_check(
                p.complete_bytes,
                p.target_bytes,
                health.bad_blocks,
            );
            let offload =
                fill_core::lifecycle::offload_check(p.offload, 1.0, settings.offload_threshold);
            (fill, offload, Some(p))
        }
        Err(why) => {
            let fail = |name| Check {
                name,
                passed: false,
                detail: why.clone(),
            };
            (fail("fill"), fail("offload"), None)
        }
    };
    (vec![fill, offload, health.check], progress)
}

/// Where the target catalog is: the configured one, else the copy a fill left in the store.
fn target_path(store: &Store, settings: &Settings) -> PathBuf {
    settings
        .target
        .clone()
        .unwrap_or_else(|| store.target_path())
}

/// Measures the store (`held`: its validated catalog) against its target.
pub fn measure(
    store: &Store,
    settings: &Settings,
    held: Result<&Catalog<'_>, String>,
) -> Result<Progress, String> {
    let path = target_path(store, settings);
    if !path.exists() {
        return Err(format!(
            "no target catalog at {}: run `fill run --target CATALOG ...` on this store, or set \
             lifecycle.target in the server's config",
            path.display()
        ));
    }
    let target_file = CatalogFile::open(&path).map_err(|e| chain(&e))?;
    let target = target_file.validate().map_err(|e| chain(&e))?;
    let held = held?;
    let partial: std::collections::HashMap<ContentId, u64> = store
        .partials()
        .map_err(|e| chain(&e))?
        .into_iter()
        .map(|p| {
            let bytes = p.file.verified_ranges().iter().map(|r| r.1).sum();
            (p.file.id, bytes)
        })
        .collect();
    let demand = fill_core::lifecycle::Demand::of(&target);
    let weight = |i: usize| demand.weight(target.size(i), target.weight(i));
    let (mut complete_files, mut complete_bytes, mut held_weight) = (0u64, 0u64, 0f64);
    for i in 0..target.len() {
        let id = target.id(i);
        if held.find(&id).is_some() {
            complete_files += 1;
            complete_bytes += target.size(i);
            held_weight += weight(i);
        } else if let Some(&b) = partial.get(&id) {
            complete_bytes += b.min(target.size(i));
        }
    }
    let target_bytes = target.total_size();
    Ok(Progress {
        target_files: target.len() as u64,
        target_bytes,
        complete_files,
        complete_bytes,
        share: if target_bytes == 0 {
            1.0
        } else {
            complete_bytes as f64 / target_bytes as f64
        },
        offload: demand.share(held_weight),
        offload_threshold: settings.offload_threshold,
    })
}

struct Health {
    check: Check,
    bad_blocks: u64,
}

/// Free space, failed writes since burn-in began, and a sample of blocks re-verified.
fn health_facts(
    store: &Store,
    settings: &Settings,
    held: Result<&Catalog<'_>, String>,
    rng: &mut SplitMix64,
) -> Health {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    match store.space() {
        Ok((free, total)) => {
            let line = format!("{} free of {}", format_size(free), format_size(total));
            if free < settings.min_free {
                problems.push(format!(
                    "{line}, below the {} needed: free space or evict",
                    format_size(settings.min_free)
                ));
            } else {
                notes.push(line);
            }
        }
        Err(e) => problems.push(format!("cannot read free space: {}", chain(&e))),
    }
    match write_errors_since_burn_in(store) {
        Ok((0, _)) => notes.push("no write errors".into()),
        Ok((n, last)) => problems.push(format!(
            "{n} writes failed since burn-in began (last: {last}): check the disk (kernel log, \
             SMART) before going live"
        )),
        Err(e) => problems.push(e),
    }
    let mut bad_blocks = 0;
    match held.and_then(|cat| sample_blocks(store, cat, settings.sample_blocks, rng)) {
        Ok(s) if s.bad.is_empty() => notes.push(format!("{} sampled blocks verify", s.checked)),
        Ok(s) => {
            bad_blocks = s.bad.len() as u64;
            let shown: Vec<String> = s
                .bad
                .iter()
                .take(3)
                .map(|(id, b)| format!("block {b} of {id}"))
                .collect();
            problems.push(format!(
                "{} of {} sampled blocks fail verification ({}{}): run `fill store verify \
                 --repair` and fill again",
                s.bad.len(),
                s.checked,
                shown.join(", "),
                if s.bad.len() > 3 { ", ..." } else { "" }
            ));
        }
        Err(e) => problems.push(format!("cannot sample blocks: {e}")),
    }
    let passed = problems.is_empty();
    Health {
        check: Check {
            name: "store_health",
            passed,
            detail: if passed {
                notes.join("; ")
            } else {
                problems.join("; ")
            },
        },
        bad_blocks,
    }
}

/// Failed writes recorded since the last transition into `burn_in` (all, without one), and
/// the last one's error.
fn write_errors_since_burn_in(store: &Store) -> Result<(usize, String), String> {
    let since = store
        .lifecycle_events()
        .map_err(|e| chain(&e))?
        .iter()
        .rev()
        .find(|e| e.to == State::BurnIn)
        .map_or(i64::MIN, |e| e.time);
    let errors = store.write_errors().map_err(|e| chain(&e))?;
    let recent: Vec<_> = errors.iter().filter(|e| e.time >= since).collect();
    Ok((
        recent.len(),
        recent
            .last()
            .map(|e| format!("{}: {}", e.id, e.error))
            .unwrap_or_default(),
    ))
}

struct Sample {
    checked: u64,
    bad: Vec<(ContentId, u64)>,
}

/// Re-verifies `n` blocks of the store's complete files, drawn by byte (every block when
/// the store has no more than `n`).
fn sample_blocks(
    store: &Store,
    cat: &Catalog<'_>,
    n: u64,
    rng: &mut SplitMix64,
) -> Result<Sample, String> {
    use std::os::unix::fs::FileExt;
    let mut sample = Sample {
        checked: 0,
        bad: Vec::new(),
    };
    if cat.is_empty() || n == 0 {
        return Ok(sample);
    }
    // Which blocks: by file and block index.
    let mut picks: Vec<(usize, Option<u64>)> = Vec::new();
    let ends: Vec<u64> = (0..cat.len())
        .scan(0u64, |acc, i| {
            *acc += cat.size(i);
            Some(*acc)
        })
        .collect();
    let total = *ends.last().unwrap_or(&0);
    // Upper bound on the block count: with the smallest block size (1 KiB), every file.
    let max_blocks: u64 = (0..cat.len())
        .map(|i| cat.size(i).div_ceil(1024).max(1))
        .sum();
    if max_blocks <= n || total == 0 {
        picks.extend((0..cat.len()).map(|i| (i, None)));
    } else {
        for _ in 0..n {
            let at = rng.below(total);
            let i = ends.partition_point(|&e| e <= at);
            let start = ends[i] - cat.size(i);
            picks.push((i, Some(at - start)));
        }
        picks.sort_unstable();
        picks.dedup();
    }
    let mut current: Option<(usize, Outboard, std::fs::File)> = None;
    for (i, at) in picks {
        let id = cat.id(i);
        if current.as_ref().is_none_or(|c| c.0 != i) {
            let ob = match store.outboard(&id) {
                Ok(ob) => ob,
                Err(e) => {
                    sample.checked += 1;
                    sample.bad.push((id, 0));
                    tracing::warn!("sample: {}", chain(&e));
                    continue;
                }
            };
            let path = store.content_path(&id);
            let f = std::fs::File::open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            current = Some((i, ob, f));
        }
        let Some((_, ob, f)) = &current else {
            continue;
        };
        let blocks: Vec<u64> = match at {
            Some(offset) => vec![offset / ob.block_size().bytes()],
            None => (0..ob.block_count()).collect(),
        };
        for b in blocks {
            let (off, len) = ob.block_range(b);
            let mut buf = vec![0u8; len as usize];
            sample.checked += 1;
            let ok = f.read_exact_at(&mut buf, off).is_ok() && ob.verify_block(b, &buf).is_ok();
            if !ok {
                sample.bad.push((id, b));
            }
        }
    }
    Ok(sample)
}

/// Each configured source must answer `HEAD {url}/catalog` with 200, within 5 seconds.
pub async fn sources_check(settings: &Settings) -> Check {
    let name = "sources";
    let Some(path) = &settings.sources else {
        return Check {
            name,
            passed: true,
            detail: "no sources file configured (lifecycle.sources): nothing to reach".into(),
        };
    };
    let specs = match crate::sources::load(path) {
        Ok(s) => s,
        Err(e) => {
            return Check {
                name,
                passed: false,
                detail: format!("{e:#}"),
            };
        }
    };
    // Object storage needs credentials and a client the server does not carry.
    let not_probed: Vec<String> = specs
        .iter()
        .filter(|s| !s.source.url.starts_with("http://"))
        .map(|s| s.source.name.clone())
        .collect();
    let probes = specs
        .iter()
        .filter(|s| s.source.url.starts_with("http://"))
        .map(|s| {
            let (name, url) = (s.source.name.clone(), format!("{}/catalog", s.source.url));
            async move {
                let r = request(hyper::Method::HEAD, &url, None, Duration::from_secs(5)).await;
                (name, url, r)
            }
        });
    let mut failed = Vec::new();
    for (name, url, r) in futures_join_all(probes).await {
        match r {
            Ok(status) if status.is_success() => {}
            Ok(status) => failed.push(format!("{name} ({url}) answered {status}")),
            Err(e) => failed.push(format!("{name} ({url}): {e}")),
        }
    }
    let skipped = if not_probed.is_empty() {
        String::new()
    } else {
        format!(
            " ({} on object storage not probed: {})",
            not_probed.len(),
            not_probed.join(", ")
        )
    };
    if failed.is_empty() {
        Check {
            name,
            passed: true,
            detail: format!(
                "all {} sources answer their catalog{skipped}",
                specs.len() - not_probed.len()
            ),
        }
    } else {
        Check {
            name,
            passed: false,
            detail: format!(
                "{} of {} sources do not answer: {}",
                failed.len(),
                specs.len(),
                failed.join("; ")
            ),
        }
    }
}

/// Runs the futures concurrently (a few probes: no need for a crate).
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// An HTTP/1.1 client for short requests, connecting within `timeout`.
pub fn client(
    timeout: Duration,
) -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<Bytes>,
> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

/// One HTTP/1.1 request with a short body; its status.
pub async fn request(
    method: hyper::Method,
    url: &str,
    json: Option<Bytes>,
    timeout: Duration,
) -> Result<hyper::StatusCode, String> {
    let client = client(timeout);
    let mut req = hyper::Request::builder().method(method).uri(url);
    if json.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(http_body_util::Full::new(json.unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Err(chain(&e)),
        Ok(Ok(resp)) => Ok(resp.status()),
    }
}

/// Posts the events the webhook has not been sent yet, oldest first, and records how many
/// it has been sent (`.fill/state/webhook.sent`) after each: at-least-once delivery, in
/// order, across restarts. Stops at the first failure (tried again on the next call).
pub async fn deliver_webhook(store: &Store, url: &str) -> Result<usize, String> {
    let events = store.lifecycle_events().map_err(|e| chain(&e))?;
    let cursor_path = store.state_file("webhook.sent");
    let mut sent: usize = std::fs::read_to_string(&cursor_path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let mut delivered = 0;
    while sent < events.len() {
        let body = serde_json::to_vec(&events[sent]).map_err(|e| e.to_string())?;
        let status = request(
            hyper::Method::POST,
            url,
            Some(Bytes::from(body)),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| format!("webhook {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("webhook {url} answered {status}"));
        }
        sent += 1;
        delivered += 1;
        std::fs::write(&cursor_path, format!("{sent}\n"))
            .map_err(|e| format!("cannot write {}: {e}", cursor_path.display()))?;
    }
    Ok(delivered)
}

/// The maintenance window `now` is in, if any.
pub fn active_window(
    store: &Store,
    now: i64,
) -> Result<Option<fill_core::lifecycle::MaintenanceWindow>, StoreError> {
    Ok(store
        .maintenance_windows()?
        .into_iter()
        .find(|w| w.contains(now)))
}
