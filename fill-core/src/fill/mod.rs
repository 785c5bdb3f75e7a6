//! The fill as a sans-IO state machine: every decision a fill makes, with no I/O and no
//! clock, in the shape of quinn-proto's connection.
//!
//! A driver (the `fill` client over sockets and io_uring, or the seeded simulator in
//! [`sim`]) owns files, sockets and time. It feeds [`Fill`] [`Event`]s (an outboard fetched,
//! a file prepared, a request ended, a block written, a sync or a record done, holdings
//! changed) and the time, and carries out the [`Action`]s it drains with
//! [`Fill::poll_action`] (evict, fetch an outboard, prepare a file, request a range, sync,
//! record, complete), waking at [`Fill::poll_timeout`] to call [`Fill::handle_timeout`].
//!
//! What the machine decides, exactly as the fill always has:
//! - files in popularity order, at most [`FillConfig::max_open_files`] open at once; the
//!   evictions due before a file's first fetch complete before it is prepared; files not in
//!   the target are evicted from the start; the rest once every file has started;
//! - a file's outboard from a store that was filling it, else from the first source (in
//!   escalation order, quarantined ones skipped) that serves one matching the id and size;
//! - the blocks some store lacks cut into requests of a few contiguous blocks (within one
//!   planned piece); each goes to its planned source while usable, else to the cheapest
//!   usable source that holds the file, waiting for its window when every one is closed;
//!   at most `max_connections` per source and [`FillConfig::max_requests`] in all;
//! - a failed transfer is retried at the same source [`FillConfig::transport_tries`] times,
//!   then elsewhere; a lie (protocol, 404, bad block) moves on at once; a source that sent
//!   [`FillConfig::quarantine_after`] bad blocks is quarantined; a bad block from an origin
//!   stops the fill;
//! - group commit: written blocks are synced, and only then recorded, once
//!   [`FillConfig::commit_bytes`] wait, or [`FillConfig::commit_interval`] after the last
//!   commit, or when a store has all of a file's blocks written, or when nothing else is in
//!   flight; one commit at a time per file and store; a file whose blocks are all recorded
//!   completes;
//! - no new request starts while [`FillConfig::window_bytes`] are asked for, written or
//!   committing and not yet recorded: what a crash can make the fill fetch again is at
//!   most that window and one request.
//!
//! Invariants (the simulator checks them over thousands of seeds): a block is recorded only
//! after a sync that began after its write completed; nothing is requested that every store
//! already holds; a source is quarantined only for bad blocks it sent.

mod pace;
pub mod prepare;
pub mod sim;
mod spec;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub use pace::Pacer;
pub use spec::{
    FileNeed, FileSpec, FillSpec, PlannedEviction, PlannedPiece, StoreDelta, StoreSpec,
};

use crate::delta::PartialFile;
use crate::id::ContentId;
use crate::outboard::Outboard;
use crate::source::{SourceKind, choose, escalation};

/// A point in time: microseconds since the Unix epoch (windows are read in it). Given to the
/// machine, never read by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(i64);

impl Time {
    /// From microseconds since the epoch.
    pub const fn from_micros(us: i64) -> Self {
        Self(us)
    }

    /// From seconds since the epoch.
    pub const fn from_unix_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// How long after `earlier` this is (zero when it is not after).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

/// The machine's limits and thresholds. No `Default`: the driver says which it runs with
/// ([`FillConfig::STANDARD`] for real fills).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillConfig {
    /// Blocks per ranged request.
    pub blocks_per_request: u64,
    /// Requests in flight across all sources.
    pub max_requests: usize,
    /// Files open (being filled) at once.
    pub max_open_files: usize,
    /// Group commit: written blocks are synced and recorded once this many bytes wait...
    pub commit_bytes: u64,
    /// ...or this long after the last commit.
    pub commit_interval: Duration,
    /// Bytes (per store that needs them) asked for, written or committing and not yet
    /// recorded, past which no new request starts: the bound on what a crash can make
    /// the fill fetch again (this and one request more).
    pub window_bytes: u64,
    /// Attempts of a range at one source when transfers fail (not when the source lies).
    pub transport_tries: u32,
    /// Bad blocks after which a source is quarantined for the fill.
    pub quarantine_after: u32,
    /// How long a file followed from a site peer ([`FileSpec::relay`]) waits for that peer
    /// to make progress on it (its first block, or another) before the fill passes it over.
    pub relay_patience: Duration,
}

impl FillConfig {
    /// What `fill run` and `fill prefill` use.
    pub const STANDARD: FillConfig = FillConfig {
        blocks_per_request: 4,
        max_requests: 16,
        max_open_files: 8,
        commit_bytes: 64 << 20,
        commit_interval: Duration::from_millis(500),
        window_bytes: 256 << 20,
        transport_tries: 3,
        quarantine_after: 3,
        relay_patience: Duration::from_secs(30),
    };
}

/// Where an outboard is fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboardFrom {
    /// A store that was filling the file (its partial outboard).
    Store(usize),
    /// A source, at `outboard/<id>`.
    Source(usize),
}

/// A ranged request to make.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its id, named again in [`Event::RequestEnded`].
    pub id: u64,
    /// The file (an index of [`FillSpec::files`]).
    pub file: usize,
    /// The file's verified outboard: each block is verified against it as it arrives.
    pub outboard: Arc<Outboard>,
    /// The source asked.
    pub source: usize,
    /// First block.
    pub first_block: u64,
    /// Number of blocks.
    pub blocks: u64,
    /// Byte range: offset...
    pub offset: u64,
    /// ...and length.
    pub len: u64,
    /// Per block of the request, the stores to write it to once it verified.
    pub writes: Vec<Vec<usize>>,
}

/// What the driver does next.
#[derive(Debug, Clone)]
pub enum Action {
    /// Evict these files from the store; answer [`Event::Evicted`]. The store's listed
    /// evictions go one batch at a time, in order; an older version goes beside them once
    /// its new file has copied from it.
    Evict {
        /// The eviction, named again in [`Event::Evicted`].
        id: u64,
        /// The store.
        store: usize,
        /// The files, in order.
        ids: Vec<ContentId>,
    },
    /// Fetch a file's outboard (at most `limit` bytes); answer [`Event::OutboardFetched`].
    FetchOutboard {
        /// The file.
        file: usize,
        /// From where.
        from: OutboardFrom,
        /// Its id.
        id: ContentId,
        /// Longest valid outboard for the file's size.
        limit: u64,
    },
    /// Prepare a file in a store: resume its interrupted fill (recorded blocks read back and
    /// verified again) or begin one (preallocated, an empty block map), then copy the blocks
    /// `older` shares with it (see [`prepare`]); answer [`Event::Prepared`].
    Prepare {
        /// The file.
        file: usize,
        /// The store.
        store: usize,
        /// Its outboard.
        outboard: Arc<Outboard>,
        /// The store holds an interrupted fill of it.
        resume: bool,
        /// An older version to copy shared blocks from.
        older: Option<ContentId>,
    },
    /// Make a ranged request; answer [`Event::Written`] per block and store written, and
    /// [`Event::RequestEnded`] once the body is read or the request failed.
    Request(Request),
    /// Make the writes to a file in a store durable; answer [`Event::Synced`].
    Sync {
        /// The commit.
        commit: u64,
        /// The file.
        file: usize,
        /// The store.
        store: usize,
    },
    /// Record a file's block map in a store (its blocks are durable); answer
    /// [`Event::Recorded`].
    Record {
        /// The commit.
        commit: u64,
        /// The file.
        file: usize,
        /// The store.
        store: usize,
        /// The map to record.
        map: PartialFile,
    },
    /// Move a file whose every block is durable and verified into the store's content and
    /// catalog; answer [`Event::Recorded`].
    Complete {
        /// The commit.
        commit: u64,
        /// The file.
        file: usize,
        /// The store.
        store: usize,
        /// Its map (every block set).
        map: PartialFile,
    },
    /// Tell the machine, with [`Event::BlocksHeld`], which verified and durable blocks of
    /// a file these sources (site peers still filling it) hold, whenever that grows, until
    /// [`Action::Unwatch`] for the file.
    Watch {
        /// The file.
        file: usize,
        /// Its id.
        id: ContentId,
        /// Its outboard's block size: a map in another is not about these blocks.
        block: crate::outboard::BlockSize,
        /// The sources to watch.
        sources: Vec<usize>,
    },
    /// Stop watching a file: every store holds it.
    Unwatch {
        /// The file.
        file: usize,
    },
    /// Something an operator should hear about.
    Notice(Notice),
}

/// What the machine tells the operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Every usable source of a file is outside its window: the fill waits for `source`.
    Waiting {
        /// The source waited for.
        source: usize,
        /// The file.
        file: usize,
        /// When its window opens.
        until: Time,
    },
    /// A transfer failed and is tried again at the same source, or moves on.
    Failed {
        /// The source.
        source: usize,
        /// What went wrong.
        why: String,
        /// Whether the range moves to another source.
        moving_on: bool,
    },
    /// A block did not verify.
    BadBlock {
        /// The source that sent it.
        source: usize,
        /// The file.
        file: usize,
        /// The block.
        block: u64,
    },
    /// A source is quarantined for the rest of the fill.
    Quarantined {
        /// The source.
        source: usize,
    },
    /// A site peer the fill was following for a file made no progress on it for
    /// [`FillConfig::relay_patience`]: the fill takes the file from elsewhere.
    PassedOver {
        /// The peer.
        source: usize,
        /// The file.
        file: usize,
    },
}

/// Why a request ended before its last block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFailure {
    /// The transfer failed (connection, timeout, stall); the source may be fine.
    Transport(String),
    /// The source answered wrongly (status, length, range, extra bytes).
    Lied(String),
    /// The source does not have the file.
    NotFound,
    /// The source refuses us (credentials).
    Refused(String),
    /// The block after the verified ones did not verify.
    BadBlock,
}

/// What a prepared file holds in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Its recorded (verified and durable) blocks.
    pub map: PartialFile,
    /// Bytes copied from an older version.
    pub copied: u64,
}

/// What happened, for the machine.
#[derive(Debug, Clone)]
pub enum Event {
    /// An outboard fetch ended.
    OutboardFetched {
        /// The file.
        file: usize,
        /// From where.
        from: OutboardFrom,
        /// Its bytes, or why not.
        result: Result<Vec<u8>, String>,
    },
    /// A file was prepared in a store.
    Prepared {
        /// The file.
        file: usize,
        /// The store.
        store: usize,
        /// What it holds, or the local failure.
        result: Result<Prepared, String>,
    },
    /// An eviction ended.
    Evicted {
        /// The eviction.
        id: u64,
        /// `Err`: the local failure.
        result: Result<(), String>,
    },
    /// A verified block's write to a store completed.
    Written {
        /// The file.
        file: usize,
        /// The block.
        block: u64,
        /// The store.
        store: usize,
        /// `Err`: the local failure (ENOSPC, EIO, ...).
        result: Result<(), String>,
    },
    /// A request ended: its first `verified` blocks verified (and their writes were
    /// submitted); `result` says why it stopped if not all did.
    RequestEnded {
        /// The request.
        request: u64,
        /// Blocks from its first that verified.
        verified: u64,
        /// `Ok` when every block verified.
        result: Result<(), RequestFailure>,
    },
    /// A commit's sync ended.
    Synced {
        /// The commit.
        commit: u64,
        /// `Err`: the local failure.
        result: Result<(), String>,
    },
    /// A commit's record (or completion) ended.
    Recorded {
        /// The commit.
        commit: u64,
        /// `Err`: the local failure.
        result: Result<(), String>,
    },
    /// A source (a site peer still filling the file) holds these verified and durable
    /// blocks of it: `blocks` is a bitmap, block `i` in bit `i % 64` of word `i / 64`.
    /// Blocks once held stay held (a peer's record is never taken back); what the event
    /// does not set is not cleared.
    BlocksHeld {
        /// The source.
        source: usize,
        /// The file.
        file: usize,
        /// The bitmap.
        blocks: Vec<u64>,
    },
    /// A source now holds a file, or no longer does.
    HoldingsChanged {
        /// The source.
        source: usize,
        /// The file.
        file: usize,
        /// Whether it holds it.
        holds: bool,
    },
}

/// Why a fill stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FillError {
    /// No source holds a file the target needs.
    #[error("no source holds {id} ({name})")]
    NoSource {
        /// The file.
        id: ContentId,
        /// Its name.
        name: String,
    },
    /// No source served a valid outboard.
    #[error("no valid outboard for {id} ({name}): {why}")]
    NoOutboard {
        /// The file.
        id: ContentId,
        /// Its name.
        name: String,
        /// What each source answered.
        why: String,
    },
    /// Every source that holds the file failed these blocks.
    #[error("every source failed blocks {first}..{end} of {id} ({name})")]
    Exhausted {
        /// The file.
        id: ContentId,
        /// Its name.
        name: String,
        /// First block.
        first: u64,
        /// One past the last.
        end: u64,
    },
    /// An origin sent a block that does not verify: the catalog or the origin is wrong.
    #[error(
        "origin {source_name} sent bad data for {id} block {block}: the catalog or the origin is wrong"
    )]
    OriginLied {
        /// The origin.
        source_name: String,
        /// The file.
        id: ContentId,
        /// The block.
        block: u64,
    },
    /// A local failure: a write, sync, record, preparation or eviction.
    #[error("{what}: {error}")]
    Local {
        /// What failed, naming the file and block where there is one.
        what: String,
        /// The failure.
        error: String,
    },
}

/// Per-source figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Verified bytes taken from it.
    pub bytes: u64,
    /// Requests made (ended).
    pub requests: u64,
    /// Requests that failed (transport or protocol).
    pub failed_requests: u64,
    /// Blocks that failed verification.
    pub bad_blocks: u32,
    /// Quarantined for the rest of the fill.
    pub quarantined: bool,
    /// Of `bytes`, those of files the plan meant to come from a site peer
    /// ([`FileSpec::relay`]) taken from a source that is not a peer: the plan's excess.
    pub excess_bytes: u64,
}

/// What a fill did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillStats {
    /// Per source, in the order of the spec.
    pub sources: Vec<SourceStats>,
    /// Verified bytes fetched.
    pub bytes_fetched: u64,
    /// Verified bytes copied from older versions.
    pub bytes_copied: u64,
    /// Files completed in a store.
    pub files_completed: u64,
    /// Files evicted.
    pub files_evicted: u64,
    /// Ranges retried after a failure.
    pub retries: u64,
    /// Verified bytes of files the plan meant to come from a site peer taken from a source
    /// that is not a peer (the sum of the sources' `excess_bytes`).
    pub excess_bytes: u64,
}

/// A block's state in one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// Recorded: verified and durable (or not needed).
    Held,
    /// Still needed.
    Needed,
    /// Asked for by a request in flight.
    Fetching,
    /// Verified, its write submitted.
    Writing,
    /// Written, waiting for a commit.
    Written,
    /// In a commit.
    Committing,
}

/// A file in one store that needs it.
#[derive(Debug)]
struct Target {
    store: usize,
    /// Evictions of the store (in its list) that must be done before the file is prepared.
    evictions_before: usize,
    prepare_sent: bool,
    prepared: bool,
    blocks: Vec<Block>,
    /// How many of `blocks` are `Held` (kept, not counted at every commit check).
    held: usize,
    /// The recorded map.
    map: Option<PartialFile>,
    /// Written blocks awaiting a commit, in the order they were written.
    written: Vec<u64>,
    committing: bool,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started.
    Pending,
    /// Fetching the outboard, preparing, filling.
    Open,
    /// Every store holds it.
    Done,
}

#[derive(Debug)]
struct FileRun {
    phase: Phase,
    outboard: Option<Arc<Outboard>>,
    outboard_asking: bool,
    /// Stores and sources asked for the outboard so far.
    outboard_tried: Vec<OutboardFrom>,
    outboard_why: Vec<String>,
    targets: Vec<Target>,
    /// Escalation order over the sources that hold it.
    candidates: Vec<usize>,
    /// Blocks each watched source holds (bitmaps, as in [`Event::BlocksHeld`]), by source.
    peer_blocks: BTreeMap<usize, Vec<u64>>,
    /// Position in the spec's `relay` of the peer followed now (its length: none left).
    relay_at: usize,
    /// Since when the peer followed now is waited for: when it became the one followed, or
    /// when it last made progress on the file.
    relay_since: Time,
    /// An `Action::Watch` is out for it.
    watching: bool,
}

/// A job's source while it waits for the site peer it follows.
const FOLLOWING: usize = usize::MAX - 1;

fn bit(words: &[u64], i: u64) -> bool {
    words
        .get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

#[derive(Debug, Clone)]
struct Job {
    file: usize,
    first: u64,
    blocks: u64,
    excluded: Vec<usize>,
    transport_failures: u32,
    source: usize,
    ready_at: Time,
}

#[derive(Debug)]
struct Commit {
    file: usize,
    target: usize,
    blocks: Vec<u64>,
    complete: bool,
    map: PartialFile,
}

#[derive(Debug, Default)]
struct StoreRun {
    /// Evictions of the list issued, and completed.
    issued: usize,
    done: usize,
    /// Batches of the list waiting: ids, and the list position reached once done.
    queue: VecDeque<(Vec<ContentId>, usize)>,
    /// A batch of the list is out.
    busy: bool,
}

/// An eviction out: its store, how many files, and the list position it reaches (none for
/// an older version, which is not in the list).
#[derive(Debug)]
struct EvictionOut {
    store: usize,
    files: usize,
    upto: Option<usize>,
}

/// A fill in progress: see the module documentation.
#[derive(Debug)]
pub struct Fill {
    spec: FillSpec,
    config: FillConfig,
    files: Vec<FileRun>,
    stores: Vec<StoreRun>,
    /// Next file to open.
    next_file: usize,
    /// Files open (being prepared or filled), in the order they opened.
    open: Vec<usize>,
    queue: VecDeque<Job>,
    requests: BTreeMap<u64, Job>,
    per_source: Vec<u32>,
    quarantined: Vec<bool>,
    commits: BTreeMap<u64, Commit>,
    evictions: BTreeMap<u64, EvictionOut>,
    next_id: u64,
    /// Block writes submitted, not yet completed.
    writing: u64,
    unsynced_bytes: u64,
    /// Bytes (per store) requested, written or committing and not yet recorded.
    window: u64,
    last_commit: Time,
    /// The latest time given.
    now: Time,
    last_wait_notice: Vec<Option<Time>>,
    actions: VecDeque<Action>,
    stats: FillStats,
    error: Option<FillError>,
    finished: bool,
}

impl Fill {
    /// A fill of `spec`, starting at `now`. The first actions (the early evictions, the
    /// first files' outboards) are ready at once.
    pub fn new(spec: FillSpec, config: FillConfig, now: Time) -> Self {
        let n_sources = spec.sources.len();
        let files = spec
            .files
            .iter()
            .map(|f| FileRun {
                phase: Phase::Pending,
                outboard: None,
                outboard_asking: false,
                outboard_tried: Vec::new(),
                outboard_why: Vec::new(),
                targets: Vec::new(),
                candidates: escalation(&spec.sources, |s| f.holders[s]),
                peer_blocks: BTreeMap::new(),
                relay_at: 0,
                relay_since: now,
                watching: false,
            })
            .collect();
        let stores = spec.stores.iter().map(|_| StoreRun::default()).collect();
        let mut fill = Self {
            files,
            stores,
            next_file: 0,
            open: Vec::new(),
            queue: VecDeque::new(),
            requests: BTreeMap::new(),
            per_source: vec![0; n_sources],
            quarantined: vec![false; n_sources],
            commits: BTreeMap::new(),
            evictions: BTreeMap::new(),
            next_id: 0,
            writing: 0,
            unsynced_bytes: 0,
            window: 0,
            last_commit: now,
            now,
            last_wait_notice: vec![None; n_sources],
            actions: VecDeque::new(),
            stats: FillStats {
                sources: vec![SourceStats::default(); n_sources],
                ..FillStats::default()
            },
            error: None,
            finished: false,
            config,
            spec,
        };
        for s in 0..fill.stores.len() {
            let early = fill.spec.stores[s].early;
            fill.evict_upto(s, early);
        }
        fill.step(now);
        fill
    }

    /// The spec the fill runs.
    pub fn spec(&self) -> &FillSpec {
        &self.spec
    }

    /// The figures so far.
    pub fn stats(&self) -> &FillStats {
        &self.stats
    }

    /// The next action to carry out. None once the fill is finished or failed.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.error.is_some() {
            return None;
        }
        self.actions.pop_front()
    }

    /// When to call [`Fill::handle_timeout`] next, if anything waits on time.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.is_finished() {
            return None;
        }
        // Jobs waiting for a window; those waiting for a connection wake when a request ends.
        let jobs = self
            .queue
            .iter()
            .map(|j| j.ready_at)
            .filter(|&t| t > self.now)
            .min();
        let commit =
            (self.unsynced_bytes > 0).then(|| self.last_commit.plus(self.config.commit_interval));
        jobs.into_iter().chain(commit).min()
    }

    /// Time passed: starts what was waiting for it.
    pub fn handle_timeout(&mut self, now: Time) {
        self.step(now);
    }

    /// Whether the fill is over: every file held by every store that needs it and every
    /// eviction done, or stopped by an error.
    pub fn is_finished(&self) -> bool {
        self.finished || self.error.is_some()
    }

    /// How the fill ended: `None` while it runs.
    pub fn outcome(&self) -> Option<Result<&FillStats, &FillError>> {
        if let Some(e) = &self.error {
            return Some(Err(e));
        }
        self.finished.then_some(Ok(&self.stats))
    }

    /// Takes in what happened.
    pub fn handle(&mut self, event: Event, now: Time) {
        if self.is_finished() {
            return;
        }
        match event {
            Event::OutboardFetched { file, from, result } => self.on_outboard(file, from, result),
            Event::Prepared {
                file,
                store,
                result,
            } => self.on_prepared(file, store, result),
            Event::Evicted { id, result } => self.on_evicted(id, result),
            Event::Written {
                file,
                block,
                store,
                result,
            } => self.on_written(file, block, store, result),
            Event::RequestEnded {
                request,
                verified,
                result,
            } => self.on_request_ended(request, verified, result, now),
            Event::Synced { commit, result } => self.on_synced(commit, result),
            Event::Recorded { commit, result } => self.on_recorded(commit, result),
            Event::BlocksHeld {
                source,
                file,
                blocks,
            } => self.on_blocks_held(source, file, blocks, now),
            Event::HoldingsChanged {
                source,
                file,
                holds,
            } => {
                if let Some(f) = self.spec.files.get_mut(file) {
                    if let Some(h) = f.holders.get_mut(source) {
                        *h = holds;
                    }
                    let holders = &f.holders;
                    let run = &mut self.files[file];
                    run.candidates = escalation(&self.spec.sources, |s| holders[s]);
                    if holds && f.relay.get(run.relay_at) == Some(&source) {
                        run.relay_since = now;
                    }
                }
            }
        }
        self.step(now);
    }

    fn fail(&mut self, error: FillError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    fn local(&mut self, what: String, error: String) {
        self.fail(FillError::Local { what, error });
    }

    /// Everything the machine can start now.
    fn step(&mut self, now: Time) {
        if self.is_finished() {
            return;
        }
        self.now = now;
        if now < self.last_commit {
            // The clock went back: the commit interval counts from here.
            self.last_commit = now;
        }
        self.open_files_now();
        self.dispatch(now);
        self.commit(now);
        if self.error.is_none()
            && self.next_file == self.files.len()
            && self.open.is_empty()
            && self.requests.is_empty()
            && self.queue.is_empty()
            && self.commits.is_empty()
            && self.stores.iter().all(|s| !s.busy && s.queue.is_empty())
            && self.evictions.is_empty()
        {
            self.finished = true;
        }
    }

    // ---- evictions ----

    /// Queues the store's evictions up to list position `upto`.
    fn evict_upto(&mut self, store: usize, upto: usize) {
        let list = &self.spec.stores[store].evictions;
        let run = &mut self.stores[store];
        let upto = upto.min(list.len());
        if upto > run.issued {
            let ids = list[run.issued..upto].iter().map(|e| e.id).collect();
            run.queue.push_back((ids, upto));
            run.issued = upto;
        }
        self.pump_evictions(store);
    }

    fn pump_evictions(&mut self, store: usize) {
        let run = &mut self.stores[store];
        if run.busy {
            return;
        }
        if let Some((ids, upto)) = run.queue.pop_front() {
            run.busy = true;
            self.send_eviction(store, ids, Some(upto));
        }
    }

    fn send_eviction(&mut self, store: usize, ids: Vec<ContentId>, upto: Option<usize>) {
        let id = self.next_id;
        self.next_id += 1;
        let files = ids.len();
        self.evictions
            .insert(id, EvictionOut { store, files, upto });
        self.actions.push_back(Action::Evict { id, store, ids });
    }

    fn on_evicted(&mut self, id: u64, result: Result<(), String>) {
        let Some(out) = self.evictions.remove(&id) else {
            return;
        };
        if let Err(e) = result {
            return self.local("eviction failed".into(), e);
        }
        self.stats.files_evicted += out.files as u64;
        let store = out.store;
        if let Some(upto) = out.upto {
            self.stores[store].busy = false;
            self.stores[store].done = upto;
            // Files waiting for this room can be prepared now.
            for f in self.open.clone() {
                self.prepare_ready(f);
            }
        }
        self.pump_evictions(store);
    }

    /// How many of the store's listed evictions must be done before a file whose first fetch
    /// is `first_fetch` is prepared: the leading ones when the first is due, and those due
    /// after them.
    fn evictions_before(&self, store: usize, first_fetch: u64) -> usize {
        let spec = &self.spec.stores[store];
        let list = &spec.evictions;
        let due_after_early = list[spec.early..]
            .iter()
            .take_while(|e| e.before_fetch <= first_fetch)
            .count();
        if due_after_early > 0 {
            spec.early + due_after_early
        } else if list.first().is_some_and(|e| e.before_fetch <= first_fetch) {
            spec.early
        } else {
            0
        }
    }

    // ---- opening ----

    fn open_files_now(&mut self) {
        while self.open.len() < self.config.max_open_files && self.next_file < self.files.len() {
            let f = self.next_file;
            self.next_file += 1;
            self.open.push(f);
            let needs = self.spec.files[f].stores.clone();
            let mut targets = Vec::with_capacity(needs.len());
            for n in &needs {
                let before = self.evictions_before(n.store, n.first_fetch);
                self.evict_upto(n.store, before);
                targets.push(Target {
                    store: n.store,
                    evictions_before: before,
                    prepare_sent: false,
                    prepared: false,
                    blocks: Vec::new(),
                    held: 0,
                    map: None,
                    written: Vec::new(),
                    committing: false,
                    done: false,
                });
            }
            let file = &mut self.files[f];
            file.phase = Phase::Open;
            file.targets = targets;
            if file.candidates.is_empty() {
                let spec = &self.spec.files[f];
                let (id, name) = (spec.id, spec.name.clone());
                return self.fail(FillError::NoSource { id, name });
            }
            self.next_outboard(f);
        }
        if self.next_file == self.files.len() {
            // Every file has started: the evictions due after the last fetch go now.
            for s in 0..self.stores.len() {
                let len = self.spec.stores[s].evictions.len();
                self.evict_upto(s, len);
            }
        }
    }

    /// Asks the next place for a file's outboard: the stores that were filling it, then its
    /// sources in escalation order.
    fn next_outboard(&mut self, f: usize) {
        let spec = &self.spec.files[f];
        let file = &self.files[f];
        let from = spec
            .stores
            .iter()
            .filter(|n| n.resume)
            .map(|n| OutboardFrom::Store(n.store))
            .chain(
                // A site peer that lands or follows the file has its outboard from the start.
                spec.watch
                    .iter()
                    .chain(&file.candidates)
                    .filter(|&&s| !self.quarantined[s])
                    .map(|&s| OutboardFrom::Source(s)),
            )
            .find(|from| !file.outboard_tried.contains(from));
        let Some(from) = from else {
            let why = file.outboard_why.join("; ");
            let (id, name) = (spec.id, spec.name.clone());
            return self.fail(FillError::NoOutboard { id, name, why });
        };
        // 32 bytes per 1 KiB block at most, plus the header.
        let limit = 32 + 32 * spec.size.div_ceil(1024).max(1);
        let id = spec.id;
        let file = &mut self.files[f];
        file.outboard_tried.push(from);
        file.outboard_asking = true;
        self.actions.push_back(Action::FetchOutboard {
            file: f,
            from,
            id,
            limit,
        });
    }

    fn on_outboard(&mut self, f: usize, from: OutboardFrom, result: Result<Vec<u8>, String>) {
        let Some(file) = self.files.get_mut(f) else {
            return;
        };
        if !file.outboard_asking || file.outboard_tried.last() != Some(&from) {
            return;
        }
        file.outboard_asking = false;
        let spec = &self.spec.files[f];
        let parsed = result.and_then(|bytes| {
            let ob = Outboard::parse(&bytes, spec.id).map_err(|e| e.to_string())?;
            if ob.size() != spec.size {
                return Err(format!(
                    "outboard says {} bytes, target says {}",
                    ob.size(),
                    spec.size
                ));
            }
            Ok(ob)
        });
        match parsed {
            Ok(ob) => {
                let ob = Arc::new(ob);
                for t in &mut file.targets {
                    t.blocks = vec![Block::Needed; ob.block_count() as usize];
                }
                file.outboard = Some(ob);
                self.prepare_ready(f);
            }
            Err(e) => {
                // A store's own copy that does not serve is simply not used.
                if let OutboardFrom::Source(s) = from {
                    let name = &self.spec.sources[s].name;
                    file.outboard_why.push(format!("{name}: {e}"));
                }
                self.next_outboard(f);
            }
        }
    }

    /// Prepares the file in each store whose evictions before it are done.
    fn prepare_ready(&mut self, f: usize) {
        let Some(ob) = self.files[f].outboard.clone() else {
            return;
        };
        for t in 0..self.files[f].targets.len() {
            let target = &self.files[f].targets[t];
            let store = target.store;
            if target.prepare_sent || self.stores[store].done < target.evictions_before {
                continue;
            }
            let need = self.spec.files[f].stores[t];
            self.files[f].targets[t].prepare_sent = true;
            self.actions.push_back(Action::Prepare {
                file: f,
                store,
                outboard: ob.clone(),
                resume: need.resume,
                older: need.older,
            });
        }
    }

    fn target_of(&self, f: usize, store: usize) -> Option<usize> {
        self.files
            .get(f)?
            .targets
            .iter()
            .position(|t| t.store == store)
    }

    fn on_prepared(&mut self, f: usize, store: usize, result: Result<Prepared, String>) {
        let Some(t) = self.target_of(f, store) else {
            return;
        };
        let id = self.spec.files[f].id;
        let prepared = match result {
            Ok(p) => p,
            Err(e) => return self.local(format!("cannot prepare {id}"), e),
        };
        let Some(ob) = self.files[f].outboard.clone() else {
            return;
        };
        let mut map = prepared.map;
        if map.size != ob.size() || map.block != ob.block_size() || map.id != id {
            return self.local(
                format!("cannot prepare {id}"),
                "the store's block map does not match the outboard".into(),
            );
        }
        if ob.size() == 0 {
            // Nothing to fetch: the one empty block verifies against the outboard as is.
            if let Err(e) = ob.verify_block(0, &[]) {
                return self.local(format!("empty file {id}"), e.to_string());
            }
            map.set_verified(0, true);
        }
        self.stats.bytes_copied += prepared.copied;
        let target = &mut self.files[f].targets[t];
        for (b, state) in target.blocks.iter_mut().enumerate() {
            if map.is_verified(b as u64) {
                *state = Block::Held;
                target.held += 1;
            }
        }
        target.map = Some(map);
        target.prepared = true;
        if let Some(old) = self.spec.files[f].stores[t].older {
            // Copied from: it goes now, beside the store's listed evictions (the delta never
            // counted on its room, so it waits for none of them).
            self.send_eviction(store, vec![old], None);
        }
        if self.files[f].targets.iter().all(|t| t.prepared) {
            self.start_filling(f);
        }
    }

    /// A file prepared everywhere: stores that hold every block complete, the blocks some
    /// store lacks become requests, and the site peers it may come from are watched.
    fn start_filling(&mut self, f: usize) {
        let watch = self.spec.files[f].watch.clone();
        if !watch.is_empty()
            && let Some(block) = self.files[f].outboard.as_ref().map(|ob| ob.block_size())
        {
            let run = &mut self.files[f];
            run.watching = true;
            run.relay_since = self.now;
            self.actions.push_back(Action::Watch {
                file: f,
                id: self.spec.files[f].id,
                block,
                sources: watch,
            });
        }
        for t in 0..self.files[f].targets.len() {
            let target = &self.files[f].targets[t];
            if let Some(map) = &target.map
                && target.held == target.blocks.len()
            {
                let map = map.clone();
                self.start_record(f, t, Vec::new(), map, true);
            }
        }
        self.check_file_done(f);
        let Some(ob) = self.files[f].outboard.clone() else {
            return;
        };
        let missing: Vec<u64> = (0..ob.block_count())
            .filter(|&b| {
                self.files[f]
                    .targets
                    .iter()
                    .any(|t| t.blocks[b as usize] == Block::Needed)
            })
            .collect();
        let planned_at = |b: u64| self.planned_at(f, &ob, b);
        let mut jobs = Vec::new();
        let mut i = 0;
        while i < missing.len() {
            let mut n = 1;
            // A request stays within one planned source's piece.
            while i + (n as usize) < missing.len()
                && n < self.config.blocks_per_request
                && missing[i + n as usize] == missing[i] + n
                && planned_at(missing[i] + n) == planned_at(missing[i])
            {
                n += 1;
            }
            jobs.push((missing[i], n));
            i += n as usize;
        }
        for (first, blocks) in jobs {
            let job = Job {
                file: f,
                first,
                blocks,
                excluded: Vec::new(),
                transport_failures: 0,
                source: 0,
                ready_at: Time(0),
            };
            self.enqueue(job, None);
        }
    }

    /// The planned source of a block: the plan's piece holding its first byte.
    fn planned_at(&self, f: usize, ob: &Outboard, block: u64) -> Option<usize> {
        let offset = ob.block_range(block).0;
        self.spec.files[f]
            .planned
            .iter()
            .find(|p| p.offset <= offset && offset < p.end)
            .map(|p| p.source)
    }

    // ---- requests ----

    /// Picks a job's source (planned while usable, else the cheapest usable one, waiting
    /// for its window if all are closed) and queues it. `now` is None at creation, when the
    /// source is chosen at the next dispatch.
    fn enqueue(&mut self, mut job: Job, now: Option<Time>) {
        if let Some(now) = now
            && !self.assign(&mut job, now)
        {
            return;
        }
        if now.is_none() {
            job.source = usize::MAX;
        }
        self.queue.push_back(job);
    }

    /// Chooses `job`'s source at `now`; false (and the fill fails) when none is usable.
    fn assign(&mut self, job: &mut Job, now: Time) -> bool {
        let f = job.file;
        let secs = now.unix_secs();
        // A site peer that holds the blocks now costs nothing; one followed is waited for.
        if let Some(s) = self.peer_with_blocks(job, secs) {
            job.source = s;
            job.ready_at = now;
            return true;
        }
        if let Some(until) = self.follow(job, now) {
            job.source = FOLLOWING;
            job.ready_at = until;
            return true;
        }
        let spec = &self.spec.files[f];
        let usable =
            |s: usize| !self.quarantined[s] && !job.excluded.contains(&s) && spec.holders[s];
        let ob = self.files[f].outboard.clone();
        let planned = ob
            .and_then(|ob| self.planned_at(f, &ob, job.first))
            .filter(|&s| usable(s))
            .map(|s| {
                let wait = self.spec.sources[s]
                    .window
                    .as_ref()
                    .map_or(0, |w| w.seconds_until_open(secs));
                (s, wait)
            });
        let chosen =
            planned.or_else(|| choose(&self.spec.sources, &self.files[f].candidates, usable, secs));
        let Some((source, wait)) = chosen else {
            let (id, name) = (spec.id, spec.name.clone());
            let (first, end) = (job.first, job.first + job.blocks);
            self.fail(FillError::Exhausted {
                id,
                name,
                first,
                end,
            });
            return false;
        };
        job.source = source;
        job.ready_at = if wait > 0 {
            Time::from_unix_secs(secs + wait)
        } else {
            now
        };
        if wait > 0 && self.last_wait_notice[source] != Some(job.ready_at) {
            self.last_wait_notice[source] = Some(job.ready_at);
            self.actions.push_back(Action::Notice(Notice::Waiting {
                source,
                file: f,
                until: job.ready_at,
            }));
        }
        true
    }

    /// Starts queued jobs whose source has a free connection, oldest first.
    fn dispatch(&mut self, now: Time) {
        let secs = now.unix_secs();
        let mut i = 0;
        while i < self.queue.len()
            && self.requests.len() < self.config.max_requests
            && self.window < self.config.window_bytes
        {
            let job = &self.queue[i];
            // A source that can no longer be used, or whose window closed again after the
            // job was given to it (a clock jump), is chosen anew.
            // A job following a site peer is looked at again each time: the peer may hold
            // its blocks now, or have run out of patience.
            let stale = job.source == usize::MAX
                || job.source == FOLLOWING
                || self.quarantined[job.source]
                || !self.spec.files[job.file].holders[job.source]
                || (job.ready_at <= now && !self.spec.sources[job.source].is_open(secs));
            if stale {
                let mut job = job.clone();
                if !self.assign(&mut job, now) {
                    return;
                }
                self.queue[i] = job;
            }
            let s = self.queue[i].source;
            if s == FOLLOWING {
                i += 1;
                continue;
            }
            // Never outside its window, whatever the wait said.
            if !self.spec.sources[s].is_open(secs)
                || self.per_source[s] >= self.spec.sources[s].max_connections.max(1)
            {
                i += 1;
                continue;
            }
            if let Some(job) = self.queue.remove(i) {
                self.issue(job);
            }
        }
    }

    fn issue(&mut self, job: Job) {
        let f = job.file;
        let Some(ob) = self.files[f].outboard.clone() else {
            return;
        };
        let mut writes = Vec::with_capacity(job.blocks as usize);
        for b in job.first..job.first + job.blocks {
            let mut to = Vec::new();
            for t in &mut self.files[f].targets {
                if t.blocks[b as usize] == Block::Needed {
                    t.blocks[b as usize] = Block::Fetching;
                    to.push(t.store);
                    self.window += ob.block_range(b).1;
                }
            }
            writes.push(to);
        }
        let (offset, _) = ob.block_range(job.first);
        let (last_off, last_len) = ob.block_range(job.first + job.blocks - 1);
        let id = self.next_id;
        self.next_id += 1;
        self.per_source[job.source] += 1;
        let request = Request {
            id,
            file: f,
            outboard: ob,
            source: job.source,
            first_block: job.first,
            blocks: job.blocks,
            offset,
            len: last_off + last_len - offset,
            writes,
        };
        self.requests.insert(id, job);
        self.actions.push_back(Action::Request(request));
    }

    fn on_request_ended(
        &mut self,
        request: u64,
        verified: u64,
        result: Result<(), RequestFailure>,
        now: Time,
    ) {
        let Some(job) = self.requests.remove(&request) else {
            return;
        };
        let (f, src) = (job.file, job.source);
        self.per_source[src] -= 1;
        self.stats.sources[src].requests += 1;
        let verified = verified.min(job.blocks);
        let result = match result {
            Ok(()) if verified < job.blocks => Err(RequestFailure::Lied("body ended early".into())),
            r => r,
        };
        let Some(ob) = self.files[f].outboard.clone() else {
            return;
        };
        let mut bytes = 0;
        for b in job.first..job.first + job.blocks {
            let ok = b < job.first + verified;
            // A verified block's writes may have completed, and even been committed,
            // before the request ended: it counts once, whatever state it reached.
            if ok {
                bytes += ob.block_range(b).1;
            }
            for t in &mut self.files[f].targets {
                let state = &mut t.blocks[b as usize];
                if *state == Block::Fetching {
                    *state = if ok { Block::Writing } else { Block::Needed };
                    self.writing += u64::from(ok);
                    if !ok {
                        self.window -= ob.block_range(b).1;
                    }
                }
            }
        }
        self.stats.sources[src].bytes += bytes;
        self.stats.bytes_fetched += bytes;
        if !self.spec.files[f].relay.is_empty() && self.spec.sources[src].kind != SourceKind::Peer {
            self.stats.sources[src].excess_bytes += bytes;
            self.stats.excess_bytes += bytes;
        }
        if let Err(failure) = result {
            self.request_failed(job, verified, failure, now);
        }
    }

    /// A request stopped after `verified` blocks: the failure is counted, and the rest of
    /// its range tried again at the same source (a transfer that failed, a few times) or
    /// moved to another (a lie at once).
    fn request_failed(&mut self, job: Job, verified: u64, failure: RequestFailure, now: Time) {
        let (f, src) = (job.file, job.source);
        let spec = &self.spec.files[f];
        let source = &self.spec.sources[src];
        let mut move_on = true;
        match failure {
            RequestFailure::Transport(why) => {
                self.stats.sources[src].failed_requests += 1;
                move_on = job.transport_failures + 1 >= self.config.transport_tries;
                self.notice(Notice::Failed {
                    source: src,
                    why,
                    moving_on: move_on,
                });
            }
            RequestFailure::Lied(why) | RequestFailure::Refused(why) => {
                self.stats.sources[src].failed_requests += 1;
                self.notice(Notice::Failed {
                    source: src,
                    why,
                    moving_on: true,
                });
            }
            RequestFailure::NotFound => {
                self.stats.sources[src].failed_requests += 1;
                self.notice(Notice::Failed {
                    source: src,
                    why: format!("{} not found", spec.id),
                    moving_on: true,
                });
            }
            RequestFailure::BadBlock => {
                let block = job.first + verified;
                self.stats.sources[src].bad_blocks += 1;
                if source.kind == SourceKind::Origin {
                    let (source_name, id) = (source.name.clone(), spec.id);
                    return self.fail(FillError::OriginLied {
                        source_name,
                        id,
                        block,
                    });
                }
                self.notice(Notice::BadBlock {
                    source: src,
                    file: f,
                    block,
                });
                if self.stats.sources[src].bad_blocks >= self.config.quarantine_after
                    && !self.quarantined[src]
                {
                    self.quarantined[src] = true;
                    self.stats.sources[src].quarantined = true;
                    self.notice(Notice::Quarantined { source: src });
                }
            }
        }
        let rest = job.blocks - verified;
        if rest > 0 {
            self.stats.retries += 1;
            let mut job = job;
            job.first += verified;
            job.blocks = rest;
            if move_on {
                job.excluded.push(src);
                job.transport_failures = 0;
            } else {
                job.transport_failures += 1;
            }
            self.enqueue(job, Some(now));
        }
    }

    fn notice(&mut self, notice: Notice) {
        self.actions.push_back(Action::Notice(notice));
    }

    fn on_written(&mut self, f: usize, block: u64, store: usize, result: Result<(), String>) {
        let Some(t) = self.target_of(f, store) else {
            return;
        };
        if let Err(e) = result {
            let id = self.spec.files[f].id;
            return self.local(format!("cannot write block {block} of {id}"), e);
        }
        let Some(len) = self.files[f]
            .outboard
            .as_ref()
            .map(|ob| ob.block_range(block).1)
        else {
            return;
        };
        let target = &mut self.files[f].targets[t];
        let Some(state) = target.blocks.get_mut(block as usize) else {
            return;
        };
        match *state {
            Block::Writing => self.writing -= 1,
            Block::Fetching => {}
            _ => return,
        }
        *state = Block::Written;
        target.written.push(block);
        self.unsynced_bytes += len;
    }

    // ---- commits ----

    /// Group commit: for each file and store with written blocks and no commit in flight,
    /// when it has all its blocks written or a commit is due.
    fn commit(&mut self, now: Time) {
        let idle = self.requests.is_empty() && self.writing == 0;
        let due = idle
            || self.unsynced_bytes >= self.config.commit_bytes
            || now.since(self.last_commit) >= self.config.commit_interval;
        for k in 0..self.open.len() {
            let f = self.open[k];
            for t in 0..self.files[f].targets.len() {
                let target = &self.files[f].targets[t];
                if target.written.is_empty() || target.committing {
                    continue;
                }
                let Some(map) = &target.map else { continue };
                let all_written = target.held + target.written.len() == target.blocks.len();
                if !(due || all_written) {
                    continue;
                }
                let mut map = map.clone();
                let ob = self.files[f].outboard.clone();
                let target = &mut self.files[f].targets[t];
                let blocks = std::mem::take(&mut target.written);
                for &b in &blocks {
                    target.blocks[b as usize] = Block::Committing;
                    map.set_verified(b, true);
                    if let Some(ob) = &ob {
                        self.unsynced_bytes -= ob.block_range(b).1;
                    }
                }
                let (commit, store) = self.open_commit(f, t, blocks, all_written, map);
                // The simulator's proof that it catches a broken commit: with this feature
                // (never in a real build) blocks are recorded before they are durable.
                #[cfg(feature = "planted-bug-record-before-sync")]
                {
                    let _ = store;
                    let c = self.commits.remove(&commit).expect("just inserted");
                    self.start_record(c.file, c.target, c.blocks, c.map, c.complete);
                    continue;
                }
                #[allow(unreachable_code)]
                self.actions.push_back(Action::Sync {
                    commit,
                    file: f,
                    store,
                });
            }
        }
        if due {
            self.last_commit = now;
        }
    }

    /// Records (or completes) a file in a store; with `blocks` empty and `complete`, a file
    /// the store held whole when it was prepared.
    fn start_record(
        &mut self,
        f: usize,
        t: usize,
        blocks: Vec<u64>,
        map: PartialFile,
        complete: bool,
    ) {
        let (commit, store) = self.open_commit(f, t, blocks, complete, map.clone());
        self.actions.push_back(if complete {
            Action::Complete {
                commit,
                file: f,
                store,
                map,
            }
        } else {
            Action::Record {
                commit,
                file: f,
                store,
                map,
            }
        });
    }

    /// A commit of `blocks` (and `map`) for file `f` in its target `t`, which has none in
    /// flight until it lands: its id and the store.
    fn open_commit(
        &mut self,
        f: usize,
        t: usize,
        blocks: Vec<u64>,
        complete: bool,
        map: PartialFile,
    ) -> (u64, usize) {
        let commit = self.next_id;
        self.next_id += 1;
        let target = &mut self.files[f].targets[t];
        target.committing = true;
        let store = target.store;
        self.commits.insert(
            commit,
            Commit {
                file: f,
                target: t,
                blocks,
                complete,
                map,
            },
        );
        (commit, store)
    }

    fn on_synced(&mut self, commit: u64, result: Result<(), String>) {
        let Some(c) = self.commits.remove(&commit) else {
            return;
        };
        if let Err(e) = result {
            let id = self.spec.files[c.file].id;
            return self.local(format!("cannot sync {id}"), e);
        }
        self.start_record(c.file, c.target, c.blocks, c.map, c.complete);
    }

    fn on_recorded(&mut self, commit: u64, result: Result<(), String>) {
        let Some(c) = self.commits.remove(&commit) else {
            return;
        };
        let (f, t) = (c.file, c.target);
        if let Err(e) = result {
            let id = self.spec.files[f].id;
            let what = if c.complete {
                format!("cannot complete {id}")
            } else {
                format!("cannot record the blocks of {id}")
            };
            return self.local(what, e);
        }
        if let Some(ob) = &self.files[f].outboard {
            self.window -= c.blocks.iter().map(|&b| ob.block_range(b).1).sum::<u64>();
        }
        let target = &mut self.files[f].targets[t];
        target.held += c.blocks.len();
        for b in c.blocks {
            target.blocks[b as usize] = Block::Held;
        }
        target.map = Some(c.map);
        target.committing = false;
        if c.complete {
            target.done = true;
            self.stats.files_completed += 1;
            self.check_file_done(f);
        }
    }

    fn check_file_done(&mut self, f: usize) {
        let file = &mut self.files[f];
        if file.phase == Phase::Open && file.targets.iter().all(|t| t.done) {
            file.phase = Phase::Done;
            file.peer_blocks.clear();
            self.open.retain(|&o| o != f);
            if std::mem::take(&mut file.watching) {
                self.actions.push_back(Action::Unwatch { file: f });
            }
        }
    }

    // ---- site peers ----

    fn on_blocks_held(&mut self, source: usize, f: usize, blocks: Vec<u64>, now: Time) {
        let (Some(spec), Some(run)) = (self.spec.files.get(f), self.files.get_mut(f)) else {
            return;
        };
        if run.phase != Phase::Open || !spec.watch.contains(&source) {
            return;
        }
        let Some(count) = run.outboard.as_ref().map(|ob| ob.block_count()) else {
            return;
        };
        let words = count.div_ceil(64) as usize;
        let held = run
            .peer_blocks
            .entry(source)
            .or_insert_with(|| vec![0; words]);
        let mut grew = false;
        for (k, w) in blocks.into_iter().take(words).enumerate() {
            // Bits past the last block mean nothing.
            let w = if k + 1 == words && count % 64 != 0 {
                w & ((1u64 << (count % 64)) - 1)
            } else {
                w
            };
            grew |= w & !held[k] != 0;
            held[k] |= w;
        }
        if grew && spec.relay.get(run.relay_at) == Some(&source) {
            run.relay_since = now;
        }
    }

    /// A watched site peer, usable for `job`, that holds every block of it now.
    fn peer_with_blocks(&self, job: &Job, secs: i64) -> Option<usize> {
        let run = &self.files[job.file];
        self.spec.files[job.file]
            .watch
            .iter()
            .copied()
            .filter(|&s| {
                !self.quarantined[s]
                    && !job.excluded.contains(&s)
                    && self.spec.sources[s].is_open(secs)
            })
            .find(|s| {
                run.peer_blocks
                    .get(s)
                    .is_some_and(|held| (job.first..job.first + job.blocks).all(|b| bit(held, b)))
            })
    }

    /// Whether `job` waits for the site peer its file follows, and until when: the peer
    /// followed is passed over once it made no progress on the file for the patience (the
    /// next in the file's `relay` is followed then); a peer quarantined, or one that
    /// already failed this job, is not waited for.
    fn follow(&mut self, job: &Job, now: Time) -> Option<Time> {
        let f = job.file;
        let patience = self.config.relay_patience;
        loop {
            let run = &self.files[f];
            let &head = self.spec.files[f].relay.get(run.relay_at)?;
            if self.spec.files[f].holders[head] {
                // It holds the file whole now: routed as any holder, cheapest first.
                return None;
            }
            let until = run.relay_since.plus(patience);
            if self.quarantined[head] || now >= until {
                let run = &mut self.files[f];
                run.relay_at += 1;
                run.relay_since = now;
                if !self.quarantined[head] {
                    self.notice(Notice::PassedOver {
                        source: head,
                        file: f,
                    });
                }
                continue;
            }
            if job.excluded.contains(&head) {
                // This job moves on; the file still follows the peer.
                let rest = &self.spec.files[f].relay[run.relay_at + 1..];
                return rest
                    .iter()
                    .any(|s| !job.excluded.contains(s) && !self.quarantined[*s])
                    .then_some(until);
            }
            return Some(until);
        }
    }
}
