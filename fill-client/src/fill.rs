//! The fill: runs deltas against sources, verifying every block before it is written and
//! recorded, failing over on errors and bad data, resumable after any crash.
//!
//! Flow: files not in the target are evicted from the start, on a blocking thread (they
//! lead each delta's eviction list), except older versions of files fetched whole (same
//! name, evicted only after the last fetch in the delta's schedule). For each file any store
//! needs, in popularity order, the evictions due before it are applied in each store; then
//! it is opened beside the fetches (up to 8 files at once): its outboard comes from a store
//! that was filling it or from the first source that holds the file (checked against the id
//! and the target's size); its data is preallocated in each store's `.fill/partial/` (a
//! resumed file's recorded blocks are read back and verified first); the blocks an older
//! version shares with it (same offset and block hash) are copied from that version, each
//! verified again, synced and recorded, and the older version is evicted. The blocks some
//! store lacks are cut into jobs of a few blocks; each job is one ranged GET to the cheapest
//! open source that holds the file and has not failed that job. Blocks are verified as they
//! stream in and written to every store that lacks them, while the request reads on (at most
//! 32 block writes in flight per store; a request gives its connection back once its body is
//! read, not once its writes are done); a group commit, a task beside the fetches, syncs them
//! and only then records them in the block maps. A complete file moves into `content/` and
//! the catalog. The evictions due after the last fetch run on a blocking thread once the last
//! file has started opening. A source that sends 3 bad blocks is quarantined for the run; bad
//! data from an origin stops the run (the catalog or the origin is wrong); a failed transfer
//! is retried at the same source, then elsewhere.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fill_core::ContentId;
use fill_core::catalog::Catalog;
use fill_core::delta::{Delta, EvictReason, OlderVersion};
use fill_core::outboard::Outboard;
use fill_core::source::{Source, SourceKind, choose, escalation};
use fill_server::store::{PartialState, Store};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::net::{Net, NetError};
use crate::sources::Holdings;
use crate::write::{AlignedBuf, WriteFile, Writer};

/// Blocks per ranged request.
const BLOCKS_PER_JOB: u64 = 4;
/// Requests in flight across all sources.
const MAX_IN_FLIGHT: usize = 16;
/// Files open (being filled) at once.
const MAX_OPEN_FILES: usize = 8;
/// Block writes in flight per store filled (each holds its block's buffer until written): a
/// request reads on while its blocks are written, and stops only when the disk is this far
/// behind.
const MAX_WRITES: usize = 32;
/// Group commit: written blocks are synced and recorded once this many bytes wait...
const COMMIT_BYTES: u64 = 64 << 20;
/// ...or this long after the last commit, or when a file has all its blocks written.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Attempts of a range at one source when transfers fail (not when the source lies).
const TRANSPORT_TRIES: u32 = 3;
/// Bad blocks after which a source is quarantined for the run.
const QUARANTINE_AFTER: u32 = 3;

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
}

impl SourceReport {
    /// A source's line in a plan (nothing fetched yet).
    pub fn planned(source: &Source, bytes: u64, cost: f64) -> Self {
        Self {
            name: source.name.clone(),
            kind: source.kind.name().to_owned(),
            bytes,
            cost,
            requests: 0,
            failed_requests: 0,
            bad_blocks: 0,
            quarantined: false,
            unreachable: None,
        }
    }
}

impl FillReport {
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

/// One file being filled, into one or more stores.
#[derive(Debug)]
struct FileWork {
    id: ContentId,
    outboard: Outboard,
    writer: Writer,
    candidates: Vec<usize>,
    /// The plan's pieces of this file: (offset, end, source), by offset; empty without a plan.
    planned: Vec<(u64, u64, usize)>,
    /// One per store that needs the file: each verified block is written to every one that
    /// lacks it, so it crosses the network once.
    targets: Vec<FileTarget>,
}

impl FileWork {
    /// The planned source of a block: the plan's piece holding its first byte.
    fn planned_at(&self, block: u64) -> Option<usize> {
        let offset = self.outboard.block_range(block).0;
        self.planned
            .iter()
            .find(|p| p.0 <= offset && offset < p.1)
            .map(|p| p.2)
    }
}

#[derive(Debug)]
struct FileTarget {
    /// The store: where the file's blocks are recorded and the file completes, and where
    /// a failed write is recorded.
    dir: Store,
    data: WriteFile,
    /// Blocks this store lacked when the file was opened (bitmap words).
    needs: Vec<u64>,
}

impl FileTarget {
    fn needs(&self, block: u64) -> bool {
        self.needs
            .get((block / 64) as usize)
            .is_some_and(|w| w & (1 << (block % 64)) != 0)
    }
}

/// A run of blocks to fetch, and the sources that already failed it.
#[derive(Debug, Clone)]
struct Job {
    file: usize,
    first_block: u64,
    blocks: u64,
    excluded: Vec<usize>,
    /// Transport failures at the current source (a connection that died may be retried).
    transport_failures: u32,
}

/// What a job brought back.
#[derive(Debug)]
struct JobDone {
    job: Job,
    source: usize,
    /// Blocks verified and written, not yet synced (from `first_block` on, in order).
    verified: u64,
    bytes: u64,
    failure: Option<Failure>,
}

#[derive(Debug)]
enum Failure {
    /// The request failed; the source may be fine.
    Transport(String),
    /// The source answered wrongly (protocol).
    Protocol(String),
    /// A block did not verify.
    BadBlock(u64),
    /// A local failure: stops the run.
    Local(anyhow::Error),
}

/// One store to fill and its delta.
#[derive(Debug, Clone, Copy)]
pub struct StoreJob<'a> {
    /// The store (its lock held by the caller).
    pub store: &'a Store,
    /// Its delta against the target.
    pub delta: &'a Delta,
    /// `delta.evict[i]`'s id.
    pub evict_ids: &'a [ContentId],
    /// Older versions held of files the delta fetches whole: each is kept back from the
    /// evictions until its new file has copied the blocks they share.
    pub older: &'a [OlderVersion],
}

/// What a fill works from: one store for `fill run`, several for `fill prefill`.
#[derive(Debug, Clone, Copy)]
pub struct FillJob<'a> {
    /// The stores to fill.
    pub stores: &'a [StoreJob<'a>],
    /// The target catalog.
    pub target: &'a Catalog<'a>,
    /// The sources.
    pub sources: &'a [Source],
    /// `holdings[i]` is what `sources[i]` holds.
    pub holdings: &'a [Holdings],
    /// How long a source may stay silent before its range moves elsewhere.
    pub timeout: Duration,
    /// How each source is reached (object storage for `s3://` and `file://` sources).
    pub remotes: &'a crate::net::Remotes,
    /// A plan's pieces per file (`fill run --strategy optimal`): each block goes first to its
    /// planned source, waiting for that source's window; escalation takes over when it fails.
    pub routes: Option<&'a crate::planning::Routes>,
}

/// Runs a fill. Files go in popularity order; each is fetched once and written to every
/// store that needs it.
pub async fn run(job: FillJob<'_>, writer: &Writer, progress: &Progress) -> Result<FillReport> {
    let FillJob {
        stores,
        target,
        sources,
        holdings,
        timeout,
        remotes,
        routes,
    } = job;
    let started = Instant::now();
    let mut report: Vec<SourceReport> = sources
        .iter()
        .zip(holdings)
        .map(|(s, h)| SourceReport {
            name: s.name.clone(),
            kind: s.kind.name().to_owned(),
            unreachable: match h {
                Holdings::Unreachable(why) => Some(why.clone()),
                _ => None,
            },
            ..Default::default()
        })
        .collect();
    let mut fetchers = Fetchers {
        sources,
        per_source: sources
            .iter()
            .map(|s| Arc::new(Semaphore::new(s.max_connections as usize)))
            .collect(),
        limiters: sources
            .iter()
            .map(|s| Arc::new(RateLimiter::new(s.bandwidth_bps)))
            .collect(),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        writes: Arc::new(Semaphore::new(MAX_WRITES * stores.len().max(1))),
        remotes: remotes.with_net(Net::with_timeout(timeout)),
        quarantined: vec![false; sources.len()],
    };

    // Per store: the index of each file's first fetch range (its eviction schedule counts in
    // those), and the next eviction due.
    let first_fetch: Vec<HashMap<u32, u64>> = stores
        .iter()
        .map(|s| {
            let mut m = HashMap::new();
            for (k, f) in s.delta.fetch.iter().enumerate() {
                m.entry(f.entry).or_insert(k as u64);
            }
            // Partial files with every block recorded have nothing to fetch, but still
            // have to be completed; they need no new space.
            for &e in &s.delta.resume {
                m.entry(e).or_insert(0);
            }
            m
        })
        .collect();
    // Older versions of new files stay until their new file opens and copies the blocks
    // they share (the delta never needed their room).
    let older: Vec<HashMap<u32, ContentId>> = stores
        .iter()
        .map(|sj| {
            sj.older
                .iter()
                .map(|o| (o.entry, sj.evict_ids[o.eviction]))
                .collect()
        })
        .collect();
    // Files not in the target are evicted from the start, on a blocking thread: nothing in
    // the target needs them, and removing large files takes a while (more so with online
    // discard). They lead each delta's eviction list, so its order holds: an eviction due
    // before a fetch waits for them first (older versions excepted). The rest go when the
    // delta says.
    let mut early: Vec<Option<tokio::task::JoinHandle<Result<u64>>>> = Vec::new();
    let mut next_evict = Vec::new();
    for sj in stores {
        let n = sj
            .delta
            .evict
            .iter()
            .take_while(|e| e.reason == EvictReason::NotInTarget)
            .count();
        let held_back: HashSet<usize> = sj.older.iter().map(|o| o.eviction).collect();
        let ids: Vec<ContentId> = (0..n)
            .filter(|k| !held_back.contains(k))
            .map(|k| sj.evict_ids[k])
            .collect();
        early.push((!ids.is_empty()).then(|| evict_aside(sj.store.clone(), ids)));
        next_evict.push(n);
    }
    // Files any store needs, in popularity order (each delta's fetch order is rank order).
    let mut pending_files: VecDeque<usize> = target
        .by_rank()
        .filter(|&e| first_fetch.iter().any(|m| m.contains_key(&(e as u32))))
        .collect();
    // Files whose fill was interrupted, per store.
    let mut resumable: Vec<HashMap<ContentId, PartialState>> = stores
        .iter()
        .map(|s| {
            Ok(s.store
                .partials()?
                .into_iter()
                .map(|p| (p.file.id, p))
                .collect())
        })
        .collect::<Result<_>>()?;

    let mut files: Vec<Arc<FileWork>> = Vec::new();
    // Per file, per target: the block map, blocks written but not yet synced, done.
    let mut states: Vec<Vec<PartialState>> = Vec::new();
    let mut unsynced: Vec<Vec<Vec<u64>>> = Vec::new();
    let mut done: Vec<Vec<bool>> = Vec::new();
    let mut unsynced_bytes = 0u64;
    let mut last_commit = Instant::now();
    let mut open_files = 0usize;
    let mut set: JoinSet<JobDone> = JoinSet::new();
    let (mut fetched, mut retries, mut completed, mut evicted) = (0u64, 0u64, 0u64, 0u64);
    let mut copied = 0u64;
    let mut trailing: Option<tokio::task::JoinHandle<Result<u64>>> = None;
    // Commits in flight, each answering (file, target, whether it completed the file).
    let mut commits: JoinSet<Result<(usize, usize, bool)>> = JoinSet::new();
    let mut committing: Vec<Vec<bool>> = Vec::new();

    // Files open concurrently, off the coordinator: fetching an outboard and preallocating
    // (with its syncs, slow while the fill's writes stream) would otherwise hold up the
    // handling of finished requests and commits. They start in priority order.
    let opener = Opener {
        stores,
        target,
        sources,
        remotes: fetchers.remotes.clone(),
        writer,
    };
    let mut opening = FuturesUnordered::new();

    loop {
        // Start opening files while there is room, applying the evictions due before each
        // first (before its space is allocated).
        while open_files < MAX_OPEN_FILES {
            let Some(entry) = pending_files.pop_front() else {
                break;
            };
            let id = target.id(entry);
            let needing: Vec<usize> = (0..stores.len())
                .filter(|&s| first_fetch[s].contains_key(&(entry as u32)))
                .collect();
            for &s in &needing {
                let k = first_fetch[s][&(entry as u32)];
                let sj = &stores[s];
                let first_due = sj.delta.evict.first().is_some_and(|e| e.before_fetch <= k);
                if let Some(task) = early[s].take_if(|_| first_due) {
                    evicted += joined(task).await?;
                }
                let due: Vec<ContentId> = (next_evict[s]..sj.delta.evict.len())
                    .take_while(|&e| sj.delta.evict[e].before_fetch <= k)
                    .map(|e| sj.evict_ids[e])
                    .collect();
                if !due.is_empty() {
                    sj.store.evict(&due).context("eviction failed")?;
                    next_evict[s] += due.len();
                    evicted += due.len() as u64;
                }
            }
            let candidates = escalation(sources, |i| holdings[i].holds(&id));
            if candidates.is_empty() {
                bail!("no source holds {id} ({})", target.name(entry));
            }
            let resumed = needing.iter().map(|&s| resumable[s].remove(&id)).collect();
            let seeds = needing
                .iter()
                .map(|&s| older[s].get(&(entry as u32)).copied())
                .collect();
            let quarantined = fetchers.quarantined.clone();
            opening.push(opener.open(entry, needing, resumed, seeds, candidates, quarantined));
            open_files += 1;
        }

        // Once every file has started opening, the evictions due after the last fetch starts
        // run beside the fill's tail instead of after it.
        if pending_files.is_empty() && trailing.is_none() {
            let rest: Vec<(Store, Vec<ContentId>)> = stores
                .iter()
                .zip(&next_evict)
                .map(|(sj, &next)| (sj.store.clone(), sj.evict_ids[next..].to_vec()))
                .filter(|(_, ids)| !ids.is_empty())
                .collect();
            // After the files not in the target, to keep the delta's order.
            let before: Vec<_> = early.iter_mut().filter_map(Option::take).collect();
            trailing = Some(tokio::spawn(async move {
                let mut n = 0;
                for task in before {
                    n += joined(task).await?;
                }
                for (store, ids) in rest {
                    n += joined(evict_aside(store, ids)).await?;
                }
                Ok(n)
            }));
        }
        // Wait for a fetch to end or a commit to land; with neither in flight, commit what
        // is left, and stop when nothing is.
        let outcome = if set.is_empty() && commits.is_empty() && opening.is_empty() {
            None
        } else {
            tokio::select! {
                Some(o) = opening.next(), if !opening.is_empty() => {
                    let o: Opened = o?;
                    evicted += o.evicted;
                    copied += o.copied;
                    let index = files.len();
                    let block_count = o.outboard.block_count();
                    files.push(Arc::new(FileWork {
                        id: target.id(o.entry),
                        outboard: o.outboard,
                        writer: writer.clone(),
                        candidates: o.candidates,
                        planned: routes
                            .and_then(|r| r.get(&(o.entry as u32)))
                            .cloned()
                            .unwrap_or_default(),
                        targets: o.targets,
                    }));
                    unsynced.push(vec![Vec::new(); o.states.len()]);
                    committing.push(vec![false; o.states.len()]);
                    done.push(vec![false; o.states.len()]);
                    states.push(o.states);
                    // Targets already complete (a resumed file with every block verified).
                    for t in 0..states[index].len() {
                        if states[index][t].file.verified_count() == block_count {
                            finish_target(&files[index], t, &states[index][t])?;
                            done[index][t] = true;
                            completed += 1;
                        }
                    }
                    if done[index].iter().all(|&d| d) {
                        open_files -= 1;
                    } else {
                        spawn_jobs(&fetchers, &mut set, &files, index)?;
                    }
                    None
                }
                Some(o) = set.join_next(), if !set.is_empty() => Some(o),
                Some(c) = commits.join_next(), if !commits.is_empty() => {
                    let (f, t, complete) = c.map_err(|e| anyhow!("a commit task failed: {e}"))??;
                    committing[f][t] = false;
                    if complete {
                        done[f][t] = true;
                        completed += 1;
                        if done[f].iter().all(|&d| d) {
                            open_files -= 1;
                        }
                    }
                    None
                }
                else => None,
            }
        };
        if let Some(outcome) = outcome {
            let outcome = outcome.map_err(|e| anyhow!("a fetch task failed: {e}"))?;
            let src = outcome.source;
            let fi = outcome.job.file;
            let file = files[fi].clone();
            report[src].requests += 1;
            if outcome.verified > 0 {
                // Written and verified, not yet durable: recorded at the next group commit.
                for (t, target_t) in file.targets.iter().enumerate() {
                    for b in outcome.job.first_block..outcome.job.first_block + outcome.verified {
                        if target_t.needs(b) {
                            unsynced[fi][t].push(b);
                            unsynced_bytes += file.outboard.block_range(b).1;
                        }
                    }
                }
                report[src].bytes += outcome.bytes;
                fetched += outcome.bytes;
                progress.inc(src, outcome.bytes);
            }
            let rest = outcome.job.blocks - outcome.verified;
            if let Some(failure) = outcome.failure {
                // A lie moves the range at once; a failed transfer is tried again at the same
                // source a few times first (a connection can drop), then moves.
                let mut move_on = true;
                match failure {
                    Failure::Local(e) => return Err(e),
                    Failure::Transport(why) => {
                        report[src].failed_requests += 1;
                        move_on = outcome.job.transport_failures + 1 >= TRANSPORT_TRIES;
                        tracing::warn!(
                            source = %sources[src].name,
                            "{why}: {}",
                            if move_on { "moving to the next source" } else { "retrying" }
                        );
                    }
                    Failure::Protocol(why) => {
                        tracing::warn!(source = %sources[src].name, "{why}: moving to the next source");
                        report[src].failed_requests += 1;
                    }
                    Failure::BadBlock(b) => {
                        report[src].bad_blocks += 1;
                        if sources[src].kind == SourceKind::Origin {
                            bail!(
                                "origin {} sent bad data for {} block {b}: the catalog or the origin is wrong",
                                sources[src].name,
                                file.id
                            );
                        }
                        tracing::warn!(source = %sources[src].name, "block {b} of {} failed verification", file.id);
                        if report[src].bad_blocks >= QUARANTINE_AFTER && !fetchers.quarantined[src]
                        {
                            fetchers.quarantined[src] = true;
                            report[src].quarantined = true;
                            tracing::warn!(source = %sources[src].name, "quarantined for this run");
                        }
                    }
                }
                if rest > 0 {
                    retries += 1;
                    let mut job = outcome.job.clone();
                    job.first_block += outcome.verified;
                    job.blocks = rest;
                    if move_on {
                        job.excluded.push(src);
                        job.transport_failures = 0;
                    } else {
                        job.transport_failures += 1;
                    }
                    fetchers.spawn(&mut set, job, &files)?;
                }
            }
        }
        // Group commit: sync and record when a target has all its blocks written, when
        // enough bytes wait, or when the last commit is old. A commit runs beside the fill
        // (syncs wait behind the stream of writes, and recording a complete file syncs
        // directories and the catalog), one at a time per file and target.
        let idle = set.is_empty() && commits.is_empty() && opening.is_empty();
        let due =
            idle || unsynced_bytes >= COMMIT_BYTES || last_commit.elapsed() >= COMMIT_INTERVAL;
        let mut started_commit = false;
        for f in 0..files.len() {
            for t in 0..unsynced[f].len() {
                if unsynced[f][t].is_empty() || committing[f][t] {
                    continue;
                }
                let state = &mut states[f][t];
                let all_written = state.file.verified_count() + unsynced[f][t].len() as u64
                    == state.file.block_count();
                if !(due || all_written) {
                    continue;
                }
                // The coordinator's map runs ahead of the disk's: what it lists is written
                // and will be recorded once this commit has synced it.
                for b in std::mem::take(&mut unsynced[f][t]) {
                    state.file.set_verified(b, true);
                    unsynced_bytes -= files[f].outboard.block_range(b).1;
                }
                let complete = state.file.verified_count() == state.file.block_count();
                let (file, state) = (files[f].clone(), state.clone());
                committing[f][t] = true;
                started_commit = true;
                commits.spawn(async move {
                    file.writer
                        .sync(&file.targets[t].data)
                        .await
                        .with_context(|| format!("cannot sync {}", file.id))?;
                    // A complete file goes straight into the store (its block map is about
                    // to go); a crash before that refetches at most this commit's blocks.
                    tokio::task::spawn_blocking(move || {
                        if complete {
                            finish_target(&file, t, &state)
                        } else {
                            file.targets[t].dir.save_partial(&state).map_err(Into::into)
                        }
                    })
                    .await
                    .map_err(|e| anyhow!("a commit task failed: {e}"))??;
                    Ok((f, t, complete))
                });
            }
        }
        if due {
            last_commit = Instant::now();
        }
        if idle && !started_commit {
            break;
        }
    }
    for task in early.into_iter().flatten().chain(trailing) {
        evicted += joined(task).await?;
    }
    for (r, s) in report.iter_mut().zip(sources) {
        r.cost = s.cost(r.bytes);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(FillReport {
        total_cost: report.iter().map(|r| r.cost).sum(),
        sources: report,
        bytes_fetched: fetched,
        bytes_copied: copied,
        files_completed: completed,
        files_evicted: evicted,
        duration_secs: secs,
        throughput_bytes_per_sec: if secs > 0.0 {
            fetched as f64 / secs
        } else {
            0.0
        },
        retries,
        write_backend: writer.description.to_string(),
    })
}

/// Copies into a new partial file the blocks its older version `old` holds at the same
/// offsets with the same hash, instead of fetching them: each read back and verified against
/// the new outboard (the old copy may have rotted since it was checked), then synced and
/// recorded. A block that fails is simply fetched. Returns how many bytes it copied.
fn copy_shared(
    store: &Store,
    ob: &Outboard,
    old: &ContentId,
    state: &mut PartialState,
) -> Result<u64> {
    // An older version whose outboard is unreadable is only evicted.
    let Ok(old_ob) = store.outboard(old) else {
        return Ok(0);
    };
    let shared = ob.shared_blocks(&old_ob);
    if shared.is_empty() {
        return Ok(0);
    }
    let from = store.content_path(old);
    let to = store.partial_data_path(&ob.id());
    let src =
        std::fs::File::open(&from).with_context(|| format!("cannot open {}", from.display()))?;
    let dst = std::fs::OpenOptions::new()
        .write(true)
        .open(&to)
        .with_context(|| format!("cannot open {}", to.display()))?;
    let mut buf = vec![0u8; ob.block_size().bytes() as usize];
    let mut copied = 0;
    for b in shared {
        let (offset, len) = ob.block_range(b);
        let block = &mut buf[..len as usize];
        if src.read_exact_at(block, offset).is_err() || ob.verify_block(b, block).is_err() {
            continue;
        }
        dst.write_all_at(block, offset)
            .with_context(|| format!("cannot write {}", to.display()))?;
        state.file.set_verified(b, true);
        copied += len;
    }
    if copied > 0 {
        dst.sync_data()
            .with_context(|| format!("cannot sync {}", to.display()))?;
        store.save_partial(state)?;
    }
    Ok(copied)
}

/// Evicts `ids` from `store` on a blocking thread; the task answers how many.
fn evict_aside(store: Store, ids: Vec<ContentId>) -> tokio::task::JoinHandle<Result<u64>> {
    tokio::task::spawn_blocking(move || {
        store.evict(&ids).context("eviction failed")?;
        Ok(ids.len() as u64)
    })
}

/// The files an eviction task removed.
async fn joined(task: tokio::task::JoinHandle<Result<u64>>) -> Result<u64> {
    task.await
        .map_err(|e| anyhow!("the eviction task failed: {e}"))?
}

/// Moves a target's complete (and synced) file into its store.
fn finish_target(file: &FileWork, t: usize, state: &PartialState) -> Result<()> {
    let ft = &file.targets[t];
    file.writer.close(&ft.data);
    ft.dir
        .complete_partial(state)
        .with_context(|| format!("cannot complete {}", state.file.id))
}

/// A resumed partial file's recorded blocks, read back and verified again: what is on
/// disk is not trusted, and a block whose bytes no longer match is fetched again.
fn reverify(store: &Store, ob: &Outboard, mut state: PartialState) -> Result<PartialState> {
    let id = state.file.id;
    let path = store.partial_data_path(&id);
    let data =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = Vec::new();
    let mut dropped = 0;
    for b in 0..state.file.block_count() {
        if !state.file.is_verified(b) {
            continue;
        }
        let (off, len) = ob.block_range(b);
        buf.resize(len as usize, 0);
        let ok = data.read_exact_at(&mut buf, off).is_ok() && ob.verify_block(b, &buf).is_ok();
        if !ok {
            state.file.set_verified(b, false);
            dropped += 1;
        }
    }
    if dropped > 0 {
        tracing::warn!(
            "{id}: {dropped} blocks recorded as verified did not verify; fetching them again"
        );
        store.save_partial(&state)?;
    }
    Ok(state)
}

/// Cuts the blocks some store still lacks into jobs of contiguous runs, and starts them.
fn spawn_jobs(
    fetchers: &Fetchers<'_>,
    set: &mut JoinSet<JobDone>,
    files: &[Arc<FileWork>],
    index: usize,
) -> Result<()> {
    let file = &files[index];
    let missing: Vec<u64> = (0..file.outboard.block_count())
        .filter(|&b| file.targets.iter().any(|t| t.needs(b)))
        .collect();
    let mut i = 0;
    while i < missing.len() {
        let mut n = 1;
        // A request stays within one planned source's piece.
        while i + (n as usize) < missing.len()
            && n < BLOCKS_PER_JOB
            && missing[i + n as usize] == missing[i] + n
            && file.planned_at(missing[i] + n) == file.planned_at(missing[i])
        {
            n += 1;
        }
        let job = Job {
            file: index,
            first_block: missing[i],
            blocks: n,
            excluded: Vec::new(),
            transport_failures: 0,
        };
        fetchers.spawn(set, job, files)?;
        i += n as usize;
    }
    Ok(())
}

/// A file ready to fill: its outboard checked, its data preallocated (or its recorded blocks
/// verified again) and open in every store that needs it.
struct Opened {
    entry: usize,
    outboard: Outboard,
    candidates: Vec<usize>,
    targets: Vec<FileTarget>,
    states: Vec<PartialState>,
    /// Older versions evicted once copied from.
    evicted: u64,
    /// Bytes copied from them.
    copied: u64,
}

/// Opens files for the fill: what every opening shares.
struct Opener<'a> {
    stores: &'a [StoreJob<'a>],
    target: &'a Catalog<'a>,
    sources: &'a [Source],
    remotes: crate::net::Remotes,
    writer: &'a Writer,
}

impl Opener<'_> {
    /// Opens target entry `entry` in the stores `needing` it (`resumed[i]`: the interrupted
    /// fill of it in `needing[i]`, if any; `seeds[i]`: an older version held there, copied
    /// from and then evicted), its outboard from a store that was filling it or from the
    /// first of `candidates` that serves a valid one.
    async fn open(
        &self,
        entry: usize,
        needing: Vec<usize>,
        resumed: Vec<Option<PartialState>>,
        seeds: Vec<Option<ContentId>>,
        candidates: Vec<usize>,
        quarantined: Vec<bool>,
    ) -> Result<Opened> {
        let id = self.target.id(entry);
        let outboard = self
            .outboard(&needing, &candidates, &quarantined, entry)
            .await?;
        let mut targets = Vec::new();
        let mut states = Vec::new();
        let (mut evicted, mut copied) = (0, 0);
        for ((&s, resumed), seed) in needing.iter().zip(resumed).zip(seeds) {
            let store = self.stores[s].store.clone();
            let (ob, name) = (outboard.clone(), self.target.name(entry).to_owned());
            evicted += u64::from(seed.is_some());
            let (mut state, from_old) = tokio::task::spawn_blocking(move || {
                let mut from_old = 0;
                let state = match resumed {
                    Some(state)
                        if state.file.size == ob.size() && state.file.block == ob.block_size() =>
                    {
                        reverify(&store, &ob, state)?
                    }
                    _ => {
                        let mut state = store.begin_partial(&ob, &name)?;
                        if let Some(old) = &seed {
                            from_old = copy_shared(&store, &ob, old, &mut state)?;
                        }
                        state
                    }
                };
                if let Some(old) = seed {
                    store.evict(&[old]).context("eviction failed")?;
                }
                Ok::<_, anyhow::Error>((state, from_old))
            })
            .await
            .map_err(|e| anyhow!("opening {id} failed: {e}"))??;
            copied += from_old;
            if state.file.size == 0 {
                // Nothing to fetch: the one empty block verifies against the outboard as is.
                outboard
                    .verify_block(0, &[])
                    .map_err(|e| anyhow!("empty file {id}: {e}"))?;
                state.file.set_verified(0, true);
            }
            let store = self.stores[s].store;
            let data = self
                .writer
                .open(&store.partial_data_path(&id))
                .await
                .with_context(|| format!("cannot open the partial data of {id}"))?;
            let needs = (0..state.file.block_count()).fold(
                vec![0u64; state.file.block_count().div_ceil(64) as usize],
                |mut w, b| {
                    if !state.file.is_verified(b) {
                        w[(b / 64) as usize] |= 1 << (b % 64);
                    }
                    w
                },
            );
            targets.push(FileTarget {
                dir: store.clone(),
                data,
                needs,
            });
            states.push(state);
        }
        Ok(Opened {
            entry,
            outboard,
            candidates,
            targets,
            states,
            evicted,
            copied,
        })
    }

    /// A file's verified outboard: from a store that was filling it (checked against the id
    /// and the target's size), else from the first source that serves a valid one.
    async fn outboard(
        &self,
        needing: &[usize],
        candidates: &[usize],
        quarantined: &[bool],
        entry: usize,
    ) -> Result<Outboard> {
        let (target, sources) = (self.target, self.sources);
        let id = target.id(entry);
        let size = target.size(entry);
        for &s in needing {
            if let Ok(ob) = self.stores[s].store.partial_outboard(&id)
                && ob.size() == size
            {
                return Ok(ob);
            }
        }
        let mut why = Vec::new();
        for &s in candidates.iter().filter(|&&s| !quarantined[s]) {
            // 32 bytes per 1 KiB block at most, plus the header.
            let limit = 32 + 32 * size.div_ceil(1024).max(1);
            let rel = format!("outboard/{id}");
            match self
                .remotes
                .get_small(s, &sources[s].url, &rel, false, limit)
                .await
            {
                Ok(bytes) => match Outboard::parse(&bytes, id) {
                    Ok(ob) if ob.size() == size => return Ok(ob),
                    Ok(ob) => why.push(format!(
                        "{}: outboard says {} bytes, target says {size}",
                        sources[s].name,
                        ob.size()
                    )),
                    Err(e) => why.push(format!("{}: {e}", sources[s].name)),
                },
                Err(e) => why.push(format!("{}: {e}", sources[s].name)),
            }
        }
        bail!(
            "no valid outboard for {id} ({}): {}",
            target.name(entry),
            why.join("; ")
        )
    }
}

/// What every fetch of a run shares: the sources, their connection slots and rate limiters,
/// the global request limit, the HTTP client, and which sources are quarantined.
struct Fetchers<'a> {
    sources: &'a [Source],
    per_source: Vec<Arc<Semaphore>>,
    limiters: Vec<Arc<RateLimiter>>,
    in_flight: Arc<Semaphore>,
    writes: Arc<Semaphore>,
    remotes: crate::net::Remotes,
    quarantined: Vec<bool>,
}

impl Fetchers<'_> {
    /// Starts a job at the cheapest usable source (waiting for its window if need be).
    fn spawn(&self, set: &mut JoinSet<JobDone>, job: Job, files: &[Arc<FileWork>]) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let (sources, quarantined) = (self.sources, &self.quarantined);
        let file = files[job.file].clone();
        let usable = |s: usize| !quarantined[s] && !job.excluded.contains(&s);
        // The plan's source for the job's first byte, while it is usable; else escalation.
        let planned = file
            .planned_at(job.first_block)
            .filter(|&s| usable(s))
            .map(|s| {
                (
                    s,
                    sources[s].window.map_or(0, |w| w.seconds_until_open(now)),
                )
            });
        let Some((source, wait_secs)) =
            planned.or_else(|| choose(sources, &file.candidates, usable, now))
        else {
            bail!(
                "every source failed blocks {}..{} of {}",
                job.first_block,
                job.first_block + job.blocks,
                file.id
            );
        };
        if wait_secs > 0 {
            tracing::info!(
                source = %sources[source].name,
                "every source that holds {} is outside its window: waiting {wait_secs} s",
                file.id
            );
        }
        let base = sources[source].url.clone();
        let (slot, limit, remotes) = (
            self.per_source[source].clone(),
            self.in_flight.clone(),
            self.remotes.clone(),
        );
        let pacer = self.limiters[source].clone();
        let writes = self.writes.clone();
        set.spawn(async move {
            tokio::time::sleep(Duration::from_secs(wait_secs.max(0) as u64)).await;
            let claims = Claims {
                reading: [slot.acquire_owned().await, limit.acquire_owned().await],
                writes,
            };
            fetch_job(&remotes, &base, &file, job, source, &pacer, claims).await
        });
        Ok(())
    }
}

/// What a request holds: its source's connection slot and a request slot while its body is
/// read, and the run's bound on block writes in flight.
struct Claims {
    reading: [Result<OwnedSemaphorePermit, AcquireError>; 2],
    writes: Arc<Semaphore>,
}

/// One ranged GET: verifies each block as it completes, writes it, and reports how many
/// blocks from the start of the job are written and verified (the caller syncs them before
/// recording them). The request gives its slots back once its body is read, before its
/// last writes complete: the next request of its source need not wait for the disk.
async fn fetch_job(
    remotes: &crate::net::Remotes,
    base: &str,
    file: &Arc<FileWork>,
    job: Job,
    source: usize,
    pacer: &RateLimiter,
    claims: Claims,
) -> JobDone {
    let ob = &file.outboard;
    let (offset, _) = ob.block_range(job.first_block);
    let last = job.first_block + job.blocks - 1;
    let (last_off, last_len) = ob.block_range(last);
    let len = last_off + last_len - offset;
    let mut done = JobDone {
        job,
        source,
        verified: 0,
        bytes: 0,
        failure: None,
    };
    let rel = format!("content/{}", file.id);
    let url = format!("{base}/{rel}");
    let url = url.as_str();
    let mut body = match remotes
        .get_range(source, base, &rel, offset, len, ob.size())
        .await
    {
        Ok(b) => b,
        Err(NetError::Lied(why)) => {
            done.failure = Some(Failure::Protocol(why));
            return done;
        }
        Err(e) => {
            done.failure = Some(Failure::Transport(format!("{url}: {e}")));
            return done;
        }
    };
    let mut block = done.job.first_block;
    let mut buf = AlignedBuf::with_capacity(ob.block_range(block).1 as usize);
    // Writes submitted and not yet complete, oldest first: the body is read on while the
    // disk writes, and `done` counts a block only once its write (and every earlier) is done.
    let mut writes = VecDeque::new();
    let result: Result<(), Failure> = async {
        while block <= last {
            let block_len = ob.block_range(block).1 as usize;
            let have = buf.len();
            let room = &mut buf.spare_mut()[..block_len - have];
            let n = match tokio::time::timeout(remotes.timeout(), body.read(room)).await {
                Err(_) => {
                    return Err(Failure::Transport(format!(
                        "{url}: stalled for {:?}",
                        remotes.timeout()
                    )));
                }
                Ok(Ok(0)) => return Err(Failure::Protocol(format!("{url}: body ended early"))),
                Ok(Err(NetError::Lied(why))) => return Err(Failure::Protocol(why)),
                Ok(Err(e)) => return Err(Failure::Transport(format!("{url}: {e}"))),
                Ok(Ok(n)) => n,
            };
            buf.advance(n);
            pacer.take(n as u64).await;
            if buf.len() == block_len {
                if ob.verify_block(block, buf.as_slice()).is_err() {
                    return Err(Failure::BadBlock(block));
                }
                let next_cap = if block < last {
                    ob.block_range(block + 1).1 as usize
                } else {
                    0
                };
                // Waits here only when the disks are MAX_WRITES blocks behind (a slot per copy).
                let copies = file.targets.iter().filter(|t| t.needs(block)).count();
                let permit = claims
                    .writes
                    .clone()
                    .acquire_many_owned(copies.max(1) as u32)
                    .await
                    .map_err(|e| Failure::Local(anyhow!("write slots: {e}")))?;
                let full = std::mem::replace(&mut buf, AlignedBuf::with_capacity(next_cap));
                writes.push_back(submit_block(file, block, full, permit));
                block += 1;
                if block > last && body.has_more() {
                    return Err(Failure::Protocol(format!("{url}: body longer than asked")));
                }
            }
        }
        Ok(())
    }
    .await;
    drop(claims.reading);
    // Whatever verified before a failure is kept.
    while let Some(w) = writes.pop_front() {
        if let Err(e) = complete_write(w.await, &mut done) {
            done.failure = Some(Failure::Local(e));
            return done;
        }
    }
    if let Err(f) = result {
        done.failure = Some(f);
    }
    done
}

/// Counts a block whose writes completed.
fn complete_write(written: Result<u64>, done: &mut JobDone) -> Result<()> {
    let len = written?;
    done.verified += 1;
    done.bytes += len;
    Ok(())
}

/// Submits a verified block's writes to every target that lacks it (a copy per extra
/// target: an O_DIRECT write consumes its buffer). The returned future completes when every
/// write has, with the block's length; the write slots come back as the writes complete.
fn submit_block(
    file: &Arc<FileWork>,
    block: u64,
    data: AlignedBuf,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = Result<u64>> + Send + 'static {
    let (offset, len) = file.outboard.block_range(block);
    let needing: Vec<usize> = (0..file.targets.len())
        .filter(|&t| file.targets[t].needs(block))
        .collect();
    let mut data = Some(data);
    let mut writes = Vec::with_capacity(needing.len());
    for (k, &t) in needing.iter().enumerate() {
        let buf = if k + 1 == needing.len() {
            data.take()
        } else {
            data.as_ref().map(|d| {
                let mut copy = AlignedBuf::with_capacity(d.len());
                copy.extend_from_slice(d.as_slice());
                copy
            })
        };
        let Some(buf) = buf else { break };
        writes.push((t, file.writer.write(&file.targets[t].data, offset, buf)));
    }
    if let Some(unused) = data {
        unused.recycle();
    }
    let file = file.clone();
    // A task of its own, so the write slots come back when the writes complete, not when
    // the request gets round to awaiting them (it awaits them only once its body is read:
    // requests holding slots for finished writes while waiting for more would deadlock).
    let done = tokio::spawn(async move {
        let _permit = permit;
        for (t, write) in writes {
            if let Err(e) = write.await {
                // Kept for the store-health check: a disk that failed a write is suspect.
                let record = fill_server::store::WriteErrorRecord {
                    time: crate::planning::now().unwrap_or(0),
                    id: file.id,
                    error: format!("{e:#}"),
                };
                if let Err(log) = file.targets[t].dir.record_write_error(&record) {
                    tracing::warn!("cannot record the write error: {log}");
                }
                return Err(e.context(format!("cannot write block {block} of {}", file.id)));
            }
        }
        Ok(len)
    });
    async move {
        done.await
            .map_err(|e| anyhow!("a write task failed: {e}"))?
    }
}

/// Keeps a source under its bandwidth, across all its connections: a token bucket in its
/// virtual-time form (GCRA), allowing bursts of 50 ms worth of bytes.
#[derive(Debug)]
pub struct RateLimiter {
    secs_per_byte: f64,
    burst: Duration,
    /// When the bytes taken so far will have been "paid for".
    paid_until: std::sync::Mutex<Instant>,
}

impl RateLimiter {
    /// A limiter for `bits_per_sec`.
    pub fn new(bits_per_sec: u64) -> Self {
        Self {
            secs_per_byte: 8.0 / bits_per_sec.max(1) as f64,
            burst: Duration::from_millis(50),
            paid_until: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Accounts for `bytes` received, waiting first if the source is ahead of its cap.
    pub async fn take(&self, bytes: u64) {
        let wait = {
            let mut paid = self.paid_until.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = (*paid).max(now);
            *paid = start + Duration::from_secs_f64(bytes as f64 * self.secs_per_byte);
            paid.saturating_duration_since(now + self.burst)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
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
                unreachable: match &holdings[i] {
                    Holdings::Unreachable(why) => Some(why.clone()),
                    _ => None,
                },
                ..Default::default()
            }
        })
        .collect())
}

/// Progress of a fill: on a terminal, a bar for the whole fill (bytes, rate, ETA) and one per
/// source (bytes, rate); elsewhere a plain log line every few seconds.
#[derive(Debug)]
pub struct Progress {
    total: indicatif::ProgressBar,
    per_source: Vec<indicatif::ProgressBar>,
    _multi: Option<indicatif::MultiProgress>,
    plain: std::sync::Mutex<Option<PlainProgress>>,
}

/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct PlainProgress {
    started: Instant,
    last_line: Instant,
    done: u64,
    total: u64,
}

impl Progress {
    /// Bars for `bytes` from `sources` (drawn only when stderr is a terminal).
    pub fn new(bytes: u64, what: &str, sources: &[Source]) -> Self {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Self {
                total: indicatif::ProgressBar::hidden(),
                per_source: sources
                    .iter()
                    .map(|_| indicatif::ProgressBar::hidden())
                    .collect(),
                _multi: None,
                plain: std::sync::Mutex::new(Some(PlainProgress {
                    started: Instant::now(),
                    last_line: Instant::now(),
                    done: 0,
                    total: bytes,
                })),
            };
        }
        let multi = indicatif::MultiProgress::new();
        let style = |t: &str| {
            indicatif::ProgressStyle::with_template(t)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ")
        };
        let total = multi.add(indicatif::ProgressBar::new(bytes));
        total.set_style(style(
            "{msg:<12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ));
        total.set_message(what.to_owned());
        let per_source = sources
            .iter()
            .map(|s| {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style("  {msg:<10} {bytes} {bytes_per_sec}"));
                bar.set_message(s.name.clone());
                bar
            })
            .collect();
        Self {
            total,
            per_source,
            _multi: Some(multi),
            plain: std::sync::Mutex::new(None),
        }
    }

    fn inc(&self, source: usize, bytes: u64) {
        self.total.inc(bytes);
        if let Some(bar) = self.per_source.get(source) {
            bar.inc(bytes);
        }
        let mut plain = self.plain.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = plain.as_mut() {
            p.done += bytes;
            if p.last_line.elapsed() >= PLAIN_EVERY {
                p.last_line = Instant::now();
                let rate = p.done as f64 / p.started.elapsed().as_secs_f64().max(0.001);
                let eta = p.total.saturating_sub(p.done) as f64 / rate.max(1.0);
                eprintln!(
                    "fill: {} of {} ({:.0}%), {}/s, eta {eta:.0} s",
                    fill_core::size::format_size(p.done),
                    fill_core::size::format_size(p.total),
                    100.0 * p.done as f64 / p.total.max(1) as f64,
                    fill_core::size::format_size(rate as u64),
                );
            }
        }
    }

    /// Clears the bars.
    pub fn finish_and_clear(&self) {
        for bar in &self.per_source {
            bar.finish_and_clear();
        }
        self.total.finish_and_clear();
    }
}
