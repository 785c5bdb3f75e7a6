//! The fill's driver: runs [`fill_core::fill::Fill`], the sans-IO machine that makes every
//! decision of a fill, over real sockets, files and time.
//!
//! The driver only carries out the machine's actions and tells it what happened:
//! [`run`] builds the machine's spec from the stores' deltas, then loops: drain the
//! actions (each runs as a task: evictions, preparations and records on blocking threads,
//! outboards and ranged requests over [`crate::remotes::Remotes`], block writes and syncs
//! through the [`Writer`]), wait for the next event or the machine's timer, hand it over.
//! Every task answers with one event (a request also with one per block written), so the
//! machine always learns how each action ended; a task that panics stops the fill.
//!
//! What stays here, because it is about resources rather than decisions: a request reads
//! its body straight into aligned buffers of up to four blocks, verifies each block against
//! the outboard the machine gave it, paces itself under its source's cap
//! ([`fill_core::fill::Pacer`]), and submits the verified blocks' writes while it reads on,
//! consecutive blocks as one write (a short tail block alone), with at most [`MAX_WRITES`]
//! blocks being written per store. The machine still hears `Written` per block.

pub mod edges;
mod progress;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use fill_core::ContentId;
use fill_core::catalog::Catalog;
use fill_core::delta::{Delta, OlderVersion};
use fill_core::fill::{Fill, FillConfig, FillSpec, PlannedPiece, StoreDelta, Time};
use fill_core::source::{Source, escalation};
use fill_store::store::Store;
use serde::Serialize;

pub use progress::Progress;

use crate::sources::Holdings;
use crate::write::Writer;

/// Block writes in flight per store filled (each holds its block's buffer until written): a
/// request reads on while its blocks are written, and stops only when the disk is this far
/// behind.
pub const MAX_WRITES: usize = 32;

/// Per-source figures of a fill.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceReport {
    /// Source name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Verified bytes taken from it.
    pub bytes: u64,
    /// Money for those bytes.
    pub cost: f64,
    /// Requests made.
    pub requests: u64,
    /// Requests that failed (transport or protocol) and were retried elsewhere.
    pub failed_requests: u64,
    /// Blocks that failed verification.
    pub bad_blocks: u32,
    /// Quarantined for the rest of the run.
    pub quarantined: bool,
    /// Why its catalog could not be had, if so.
    pub unreachable: Option<String>,
    /// Of `bytes`, those a site plan meant to come from another appliance of the site.
    pub excess_bytes: u64,
}

impl SourceReport {
    /// A source's line in a plan (nothing fetched yet).
    pub fn planned(source: &Source, bytes: u64, cost: f64) -> Self {
        Self {
            name: source.name.clone(),
            kind: source.kind.name().to_owned(),
            bytes,
            cost,
            ..Self::default()
        }
    }
}

/// What a fill did.
#[derive(Debug, Clone, Serialize)]
pub struct FillReport {
    /// Per source, in the order of the sources file.
    pub sources: Vec<SourceReport>,
    /// Verified bytes fetched.
    pub bytes_fetched: u64,
    /// Verified bytes copied from older versions the store held instead of fetched.
    pub bytes_copied: u64,
    /// Money spent.
    pub total_cost: f64,
    /// Files completed (moved into `content/`).
    pub files_completed: u64,
    /// Files evicted.
    pub files_evicted: u64,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// Verified bytes per second.
    pub throughput_bytes_per_sec: f64,
    /// Requests retried on another source.
    pub retries: u64,
    /// How blocks were written.
    pub write_backend: String,
}

impl FillReport {
    /// Records how a fill of `store` that began at `started_at` (unix seconds) to fetch
    /// `bytes_to_fetch` ended, as the store's last fill (fill-server's metrics and status
    /// page read it). A store that cannot take the record only costs a warning.
    pub fn record(
        store: &Store,
        started_at: i64,
        bytes_to_fetch: u64,
        result: &Result<FillReport>,
    ) {
        use fill_store::last_fill::{FillOutcome, LastFill, SourceFigures};
        let finished_at = crate::planning::now().unwrap_or(started_at);
        let (outcome, error) = match result {
            Ok(_) => (FillOutcome::Ok, None),
            Err(e) if e.downcast_ref::<crate::common::Interrupted>().is_some() => {
                (FillOutcome::Interrupted, None)
            }
            Err(e) => (FillOutcome::Failed, Some(format!("{e:#}"))),
        };
        let ok = result.as_ref().ok();
        let record = LastFill {
            format: String::new(),
            outcome,
            started_at,
            finished_at,
            last_success_at: None,
            bytes_to_fetch,
            bytes_fetched: ok.map_or(0, |r| r.bytes_fetched),
            cost: ok.map_or(0.0, |r| r.total_cost),
            sources: ok
                .map(|r| {
                    r.sources
                        .iter()
                        .map(|s| SourceFigures {
                            name: s.name.clone(),
                            kind: s.kind.clone(),
                            bytes: s.bytes,
                            cost: s.cost,
                            quarantined: s.quarantined,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            error,
        };
        if let Err(e) = store.record_last_fill(record) {
            tracing::warn!("cannot record the fill in {}: {e}", store.root().display());
        }
    }

    /// The report of a dry run: the plan's bytes and costs per source, nothing fetched.
    pub fn dry_run(sources: Vec<SourceReport>) -> Self {
        Self {
            total_cost: sources.iter().map(|r| r.cost).sum(),
            bytes_fetched: 0,
            bytes_copied: 0,
            sources,
            files_completed: 0,
            files_evicted: 0,
            duration_secs: 0.0,
            throughput_bytes_per_sec: 0.0,
            retries: 0,
            write_backend: "none (dry run)".into(),
        }
    }
}

/// One store to fill and its delta.
#[derive(Debug)]
pub struct StoreJob<'a, S = Store> {
    /// The store (its lock held by the caller).
    pub store: &'a S,
    /// Its delta against the target.
    pub delta: &'a Delta,
    /// `delta.evict[i]`'s id.
    pub evict_ids: &'a [ContentId],
    /// Older versions held of files the delta fetches whole: each is kept back from the
    /// evictions until its new file has copied the blocks they share.
    pub older: &'a [OlderVersion],
}

impl<'a, S> StoreJob<'a, S> {
    /// `store` with the delta computed for it.
    pub fn of(store: &'a S, sd: &'a crate::common::StoreDelta) -> Self {
        Self {
            store,
            delta: &sd.delta,
            evict_ids: &sd.evict_ids,
            older: &sd.older,
        }
    }
}

/// What a fill works from: one store for `fill run`, several for `fill prefill`.
#[derive(Debug)]
pub struct FillJob<'a, S = Store> {
    /// The stores to fill.
    pub stores: &'a [StoreJob<'a, S>],
    /// The target catalog.
    pub target: &'a Catalog<'a>,
    /// The sources.
    pub sources: &'a [Source],
    /// `holdings[i]` is what `sources[i]` holds.
    pub holdings: &'a [Holdings],
    /// How long a source may stay silent before its range moves elsewhere.
    pub timeout: Duration,
    /// How each source is reached (object storage for `s3://` and `file://` sources).
    pub remotes: &'a crate::remotes::Remotes,
    /// A plan's pieces per file (`fill run --strategy optimal`): each block goes first to its
    /// planned source, waiting for that source's window; escalation takes over when it fails.
    pub routes: Option<&'a crate::planning::Routes>,
    /// A site fill's relays ([`Relays`]).
    pub relays: Option<&'a Relays>,
    /// Threads verifying blocks read ahead (`--verify-threads`); 0: each block is verified
    /// as it is read.
    pub verify_threads: usize,
}

/// What a site fill follows inside the site.
#[derive(Debug)]
pub struct Relays {
    /// Per file, the site peers (source indices) to take it from in turn and those whose
    /// blocks of it are watched ([`fill_core::fill::FileSpec::relay`] and `watch`).
    pub files: HashMap<ContentId, (Vec<usize>, Vec<usize>)>,
    /// How long a file waits for the peer it follows to make progress.
    pub patience: Duration,
}

/// The machine's spec for a job: the stores' deltas, the sources and their holdings, the
/// plan's routes.
fn spec_of<S>(job: &FillJob<'_, S>) -> FillSpec {
    let deltas: Vec<StoreDelta<'_>> = job
        .stores
        .iter()
        .map(|s| StoreDelta {
            delta: s.delta,
            evict_ids: s.evict_ids,
            older: s.older,
        })
        .collect();
    let planned = |entry: u32| -> Vec<PlannedPiece> {
        job.routes
            .and_then(|r| r.get(&entry))
            .map(|pieces| {
                pieces
                    .iter()
                    .map(|&(offset, end, source)| PlannedPiece {
                        offset,
                        end,
                        source,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut spec = FillSpec::new(
        job.target,
        &deltas,
        job.sources.to_vec(),
        |s, id| job.holdings[s].holds(id),
        planned,
    );
    if let Some(relays) = job.relays {
        for f in &mut spec.files {
            if let Some((relay, watch)) = relays.files.get(&f.id) {
                f.relay.clone_from(relay);
                f.watch.clone_from(watch);
            }
        }
    }
    spec
}

/// The wall clock, as the machine reads windows in it.
fn wall_now() -> Time {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Time::from_micros(us)
}

/// Runs a fill. Files go in popularity order; each is fetched once and written to every
/// store that needs it.
pub async fn run(job: FillJob<'_>, writer: &Writer, progress: &Progress) -> Result<FillReport> {
    let sources = edges::RemoteSources {
        remotes: job
            .remotes
            .with_net(crate::net::Net::with_timeout(job.timeout)),
        urls: job.sources.iter().map(|s| s.url.clone()).collect(),
    };
    run_with(job, sources, writer, progress).await
}

/// How often a running fill's progress is shown.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// What the fill's task has to show: bytes per source so far, lines to say.
struct Told {
    bytes: Vec<u64>,
    said: Vec<String>,
}

/// Aborts a task when dropped: a fill dropped (ctrl-c) stops as a kill would.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the machine: carries out its actions and feeds it its tasks' events until it
/// finishes.
async fn drive<R: edges::RangeSource, W: edges::BlockWriter, S: edges::StoreState>(
    mut fill: Fill,
    mut driver: tasks::Driver<R, W, S>,
    told: Arc<Mutex<Told>>,
) -> Result<Fill> {
    loop {
        while let Some(action) = fill.poll_action() {
            driver.execute(action, fill.spec());
        }
        if !driver.said.is_empty() {
            let mut t = told.lock().unwrap_or_else(|p| p.into_inner());
            t.said.append(&mut driver.said);
        }
        if fill.is_finished() {
            return Ok(fill);
        }
        let deadline = fill.poll_timeout().map(|t| {
            let wait = t.since(wall_now());
            tokio::time::Instant::now() + wait
        });
        if driver.tasks.is_empty() && deadline.is_none() && driver.events.is_empty() {
            // Every action answers with an event; nothing in flight and nothing timed means
            // an answer was lost.
            bail!("the fill stalled: no task in flight and nothing to wait for");
        }
        tokio::select! {
            event = driver.events.recv() => {
                let Some(event) = event else { bail!("the fill's tasks are gone") };
                fill.handle(event, wall_now());
                while let Ok(event) = driver.events.try_recv() {
                    fill.handle(event, wall_now());
                }
            }
            Some(joined) = driver.tasks.join_next(), if !driver.tasks.is_empty() => {
                joined.map_err(|e| anyhow!("a fill task failed: {e}"))?;
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                fill.handle_timeout(wall_now());
            }
        }
        let mut t = told.lock().unwrap_or_else(|p| p.into_inner());
        for (s, st) in fill.stats().sources.iter().enumerate() {
            t.bytes[s] = st.bytes;
        }
    }
}

/// [`run`] with its bytes from `sources`, its writes through `writer` and its stores'
/// state in `S` (all three in memory, in tests).
pub async fn run_with<R: edges::RangeSource, W: edges::BlockWriter, S: edges::StoreState>(
    job: FillJob<'_, S>,
    sources: R,
    writer: &W,
    progress: &Progress,
) -> Result<FillReport> {
    let started = Instant::now();
    let spec = spec_of(&job);
    let stores: Vec<S> = job.stores.iter().map(|s| s.store.clone()).collect();
    let driver = tasks::Driver::new(&job, stores, writer.clone(), sources);
    let config = FillConfig {
        relay_patience: job
            .relays
            .map_or(FillConfig::STANDARD.relay_patience, |r| r.patience),
        ..FillConfig::STANDARD
    };
    let fill = Fill::new(spec, config, wall_now());
    // The machine and its driver run as a task on the runtime's workers, beside the tasks
    // that answer it, so an event crosses no thread; this future only shows progress.
    let told = Arc::new(Mutex::new(Told {
        bytes: vec![0; job.sources.len()],
        said: Vec::new(),
    }));
    let task = tokio::spawn(drive(fill, driver, told.clone()));
    let _abort = AbortOnDrop(task.abort_handle());
    let mut shown = vec![0u64; job.sources.len()];
    let mut show = || {
        let mut t = told.lock().unwrap_or_else(|p| p.into_inner());
        for line in t.said.drain(..) {
            progress.say(&line);
        }
        for (s, &bytes) in t.bytes.iter().enumerate() {
            if bytes > shown[s] {
                progress.inc(s, bytes - shown[s]);
                shown[s] = bytes;
            }
        }
    };
    tokio::pin!(task);
    let mut tick = tokio::time::interval(PROGRESS_TICK);
    let fill = loop {
        tokio::select! {
            joined = &mut task => break joined.map_err(|e| anyhow!("the fill failed: {e}"))??,
            _ = tick.tick() => show(),
        }
    };
    show();
    let stats = match fill.outcome() {
        Some(Ok(stats)) => stats.clone(),
        Some(Err(e)) => return Err(anyhow!(e.clone())),
        None => bail!("the fill ended without an outcome"),
    };
    let report = job
        .sources
        .iter()
        .zip(job.holdings)
        .zip(&stats.sources)
        .map(|((s, h), st)| SourceReport {
            name: s.name.clone(),
            kind: s.kind.name().to_owned(),
            bytes: st.bytes,
            cost: s.cost(st.bytes),
            requests: st.requests,
            failed_requests: st.failed_requests,
            bad_blocks: st.bad_blocks,
            quarantined: st.quarantined,
            unreachable: unreachable(h),
            excess_bytes: st.excess_bytes,
        })
        .collect::<Vec<_>>();
    let secs = started.elapsed().as_secs_f64();
    Ok(FillReport {
        total_cost: report.iter().map(|r| r.cost).sum(),
        sources: report,
        bytes_fetched: stats.bytes_fetched,
        bytes_copied: stats.bytes_copied,
        files_completed: stats.files_completed,
        files_evicted: stats.files_evicted,
        duration_secs: secs,
        throughput_bytes_per_sec: if secs > 0.0 {
            stats.bytes_fetched as f64 / secs
        } else {
            0.0
        },
        retries: stats.retries,
        write_backend: writer.description(),
    })
}

fn unreachable(h: &Holdings) -> Option<String> {
    match h {
        Holdings::Unreachable(why) => Some(why.clone()),
        _ => None,
    }
}

/// The plan without fetching: which source would serve each file under escalation.
pub fn dry_run(
    target: &Catalog<'_>,
    delta: &Delta,
    sources: &[Source],
    holdings: &[Holdings],
) -> Result<Vec<SourceReport>> {
    let mut per: HashMap<usize, u64> = HashMap::new();
    for f in &delta.fetch {
        let id = target.id(f.entry as usize);
        let order = escalation(sources, |i| holdings[i].holds(&id));
        let Some(&first) = order.first() else {
            bail!("no source holds {id} ({})", target.name(f.entry as usize));
        };
        *per.entry(first).or_default() += f.length;
    }
    Ok(sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let bytes = per.get(&i).copied().unwrap_or(0);
            SourceReport {
                name: s.name.clone(),
                kind: s.kind.name().to_owned(),
                bytes,
                cost: s.cost(bytes),
                unreachable: unreachable(&holdings[i]),
                ..Default::default()
            }
        })
        .collect())
}
