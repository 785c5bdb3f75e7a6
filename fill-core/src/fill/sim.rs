//! A seeded, deterministic simulation of whole fills under faults, in the manner of
//! FoundationDB's and TigerBeetle's simulators: the production [`Fill`] machine, the real
//! delta, stores and sources in memory that lie, stall, fail and crash, a seeded scheduler
//! and a virtual clock. One seed is one run, exactly; [`run`] reports what it exercised or
//! the first invariant it saw broken.
//!
//! A seed draws a region (1–7 files of 1–4 KiB blocks, some empty), one or two stores (a
//! stale appliance, or a pre-fill station's pair) holding some files whole, some partly,
//! retired files and older versions, a capacity that may not fit the target, and 1–4
//! sources: one reliable source of everything (an origin or a tier, perhaps behind a
//! window), peers holding some files that may lie (flipped bytes, bad outboards) or fail
//! (wrong length or range, bytes after the body, stalls, resets, bodies that vanish, 404,
//! 503) and whose holdings change. Local faults: a write that fails with ENOSPC or EIO,
//! short writes, a sync or record that fails, crashes at any step (writes not synced are
//! lost, kept or torn), clock jumps. After a crash or a local failure the fill runs again
//! from what the stores durably hold, through the real delta, as an operator's rerun does.
//! Some seeds have a file no honest source holds (the fill must fail naming it), or an
//! origin that lies (the fill must stop).
//!
//! Invariants, checked as the run goes and at its end:
//! - a block is recorded, or a file completed, only when its durable bytes verify (so no
//!   unverified or unsynced byte is ever recorded or moved into content);
//! - recorded blocks never shrink across a crash: every recorded block reverifies;
//! - a recorded block is never fetched again, and what a crash makes the fill fetch again
//!   is at most what was in flight (written or requested, not recorded) when it crashed;
//!   what is written and not recorded never exceeds [`FillConfig::window_bytes`] and one
//!   request per store, so neither does what a crash makes the fill fetch again;
//! - no request asks for a block every store holds, or goes to a source outside its window;
//! - evictions never remove a file the delta keeps or fetches;
//! - quarantine only ever hits a source that sent bad blocks;
//! - after every run, each store's content is exactly its ids;
//! - a fill with an honest source for every block completes, and each store then holds
//!   exactly what its delta placed; a fill without one fails naming the file (and block);
//! - the machine never stalls: something is always in flight or timed until it finishes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use super::{
    Action, Event, Fill, FillConfig, FillError, FillSpec, OutboardFrom, Pacer, Prepared, Request,
    RequestFailure, StoreDelta, Time, prepare,
};
use crate::catalog::{Catalog, CatalogBuilder};
use crate::delta::{self, Inventory, PartialFile};
use crate::id::ContentId;
use crate::outboard::{BlockSize, Outboard};
use crate::rng::SplitMix64;
use crate::source::{Source, SourceKind, Window};

/// How many times each kind of fault fired in a run (or, summed, in many).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// A source flipped a byte of a block.
    pub flipped_byte: u64,
    /// A source served an outboard that does not match the id.
    pub bad_outboard: u64,
    /// A response of the wrong length.
    pub wrong_length: u64,
    /// A response for another range.
    pub wrong_range: u64,
    /// Bytes after the body.
    pub garbage_after: u64,
    /// A source stalled mid-body.
    pub stall: u64,
    /// A connection reset.
    pub reset: u64,
    /// A body that ended early.
    pub vanished: u64,
    /// 404 from a source that said it held the file.
    pub not_found: u64,
    /// 503.
    pub unavailable: u64,
    /// A source gained or lost a file during the fill.
    pub holdings_changed: u64,
    /// A write failed: no space.
    pub enospc: u64,
    /// A write failed: I/O error.
    pub eio: u64,
    /// A short write, completed by the writer.
    pub short_write: u64,
    /// A write not synced at a crash, torn.
    pub torn_write: u64,
    /// A write not synced at a crash, lost.
    pub lost_write: u64,
    /// A sync failed.
    pub sync_failed: u64,
    /// A record failed.
    pub record_failed: u64,
    /// A crash.
    pub crash: u64,
    /// The wall clock jumped.
    pub clock_jump: u64,
    /// A request waited for a window to open.
    pub window_wait: u64,
    /// A fill resumed a partial file.
    pub resumed: u64,
    /// A fill copied blocks from an older version.
    pub older_copied: u64,
    /// A source was quarantined.
    pub quarantined: u64,
    /// A seed where an origin lies.
    pub lying_origin: u64,
    /// A seed with a file no honest source holds.
    pub unservable: u64,
}

impl FaultCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &FaultCounts) {
        for (a, b) in self.fields_mut().into_iter().zip(other.fields()) {
            *a += b;
        }
    }

    /// Counts, per kind, one for `other` if it fired there at all: summed over seeds, how
    /// many seeds hit each kind.
    pub fn add_hit(&mut self, other: &FaultCounts) {
        for (a, b) in self.fields_mut().into_iter().zip(other.fields()) {
            *a += u64::from(b > 0);
        }
    }

    /// Each kind with its count, in a fixed order.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        NAMES.iter().copied().zip(self.fields()).collect()
    }

    fn fields(&self) -> [u64; 26] {
        [
            self.flipped_byte,
            self.bad_outboard,
            self.wrong_length,
            self.wrong_range,
            self.garbage_after,
            self.stall,
            self.reset,
            self.vanished,
            self.not_found,
            self.unavailable,
            self.holdings_changed,
            self.enospc,
            self.eio,
            self.short_write,
            self.torn_write,
            self.lost_write,
            self.sync_failed,
            self.record_failed,
            self.crash,
            self.clock_jump,
            self.window_wait,
            self.resumed,
            self.older_copied,
            self.quarantined,
            self.lying_origin,
            self.unservable,
        ]
    }

    fn fields_mut(&mut self) -> [&mut u64; 26] {
        [
            &mut self.flipped_byte,
            &mut self.bad_outboard,
            &mut self.wrong_length,
            &mut self.wrong_range,
            &mut self.garbage_after,
            &mut self.stall,
            &mut self.reset,
            &mut self.vanished,
            &mut self.not_found,
            &mut self.unavailable,
            &mut self.holdings_changed,
            &mut self.enospc,
            &mut self.eio,
            &mut self.short_write,
            &mut self.torn_write,
            &mut self.lost_write,
            &mut self.sync_failed,
            &mut self.record_failed,
            &mut self.crash,
            &mut self.clock_jump,
            &mut self.window_wait,
            &mut self.resumed,
            &mut self.older_copied,
            &mut self.quarantined,
            &mut self.lying_origin,
            &mut self.unservable,
        ]
    }
}

const NAMES: [&str; 26] = [
    "flipped byte",
    "bad outboard",
    "wrong length",
    "wrong range",
    "garbage after body",
    "stall",
    "reset",
    "body vanished",
    "404",
    "503",
    "holdings changed",
    "ENOSPC",
    "EIO",
    "short write",
    "torn write",
    "lost write",
    "sync failed",
    "record failed",
    "crash",
    "clock jump",
    "window wait",
    "resumed",
    "older version copied",
    "quarantined",
    "lying origin",
    "unservable file",
];

/// What one seed did.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Fills run (1 + reruns after crashes and local failures).
    pub runs: u32,
    /// Machine steps over all runs.
    pub steps: u64,
    /// How it ended: "complete", or the error it failed with as it had to.
    pub outcome: String,
    /// Faults that fired.
    pub faults: FaultCounts,
    /// The most bytes written and not recorded when a crash came (what the rerun may
    /// fetch again), and the bound [`FillConfig::window_bytes`] puts on it in this world.
    pub crash_window: (u64, u64),
    /// Bytes fetched again after crashes and local failures, over all reruns.
    pub refetched: u64,
}

/// An invariant broken: the seed, where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The seed (replay it with [`run`]).
    pub seed: u64,
    /// The run (0 first) and machine step where it was seen.
    pub run: u32,
    /// The step.
    pub step: u64,
    /// What was wrong.
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} (run {}, step {}): {}",
            self.seed, self.run, self.step, self.what
        )
    }
}

/// The machine's configuration in the simulator: small commits so they happen often.
pub const SIM_CONFIG: FillConfig = FillConfig {
    blocks_per_request: 3,
    max_requests: 6,
    max_open_files: 3,
    commit_bytes: 12 << 10,
    commit_interval: Duration::from_millis(40),
    window_bytes: 32 << 10,
    transport_tries: 3,
    quarantine_after: 3,
    relay_patience: Duration::from_secs(2),
};

/// Steps a run may take before it counts as stuck.
const MAX_STEPS: u64 = 200_000;
/// How long a stalled source takes to be given up on.
const STALL: Duration = Duration::from_secs(30);

/// Runs one seed. `Ok` says what it exercised; `Err` is the first invariant broken.
pub fn run(seed: u64) -> Result<SimReport, Violation> {
    run_seed(seed, None)
}

/// Runs one seed and returns, beside its result, a line per action, event and timer of
/// every run: what to read when a seed fails.
pub fn replay(seed: u64) -> (Result<SimReport, Violation>, Vec<String>) {
    let mut trace = Vec::new();
    let result = run_seed(seed, Some(&mut trace));
    (result, trace)
}

fn run_seed(seed: u64, trace: Option<&mut Vec<String>>) -> Result<SimReport, Violation> {
    let mut world = World::generate(seed);
    world.trace = trace;
    let mut report = SimReport {
        seed,
        runs: 0,
        steps: 0,
        outcome: String::new(),
        faults: FaultCounts::default(),
        crash_window: (0, 0),
        refetched: 0,
    };
    let max_runs = 2 + world.plan.crashes.len() as u32 + world.plan.local_faults();
    loop {
        let run_no = report.runs;
        report.runs += 1;
        let end = world.run_once(run_no).map_err(|what| Violation {
            seed,
            run: run_no,
            step: world.step,
            what,
        })?;
        report.steps += world.step;
        let step = world.step;
        let fail = |what: String| Violation {
            seed,
            run: run_no,
            step,
            what,
        };
        world.check_stores().map_err(fail)?;
        match end {
            RunEnd::Complete => {
                world.check_complete().map_err(fail)?;
                report.outcome = "complete".into();
                break;
            }
            RunEnd::Failed(e) => {
                if world.acceptable_failure(&e) {
                    report.outcome = e.to_string();
                    break;
                }
                if !world.plan.local_fault_fired {
                    return Err(fail(format!("the fill failed: {e}")));
                }
                // A local failure: the operator runs it again.
                world.plan.local_fault_fired = false;
                world.settle_after_exit();
            }
            RunEnd::Crashed => world.crash(),
        }
        if report.runs >= max_runs {
            return Err(fail(format!("still not done after {max_runs} runs")));
        }
    }
    report.faults = world.faults.clone();
    report.crash_window = world.crash_window;
    report.refetched = world.refetched;
    Ok(report)
}

/// How a run ended.
#[derive(Debug)]
enum RunEnd {
    Complete,
    Failed(FillError),
    Crashed,
}

/// A file of the universe: its bytes and outboard.
#[derive(Debug)]
struct SimFile {
    data: Vec<u8>,
    ob: Outboard,
    name: String,
}

/// A partial file in a store.
#[derive(Debug, Clone)]
struct Partial {
    name: String,
    ob: Outboard,
    durable: Vec<u8>,
    /// Writes completed but not synced: (offset, bytes).
    pending: Vec<(u64, Vec<u8>)>,
    /// The recorded map (durable).
    map: PartialFile,
}

#[derive(Debug, Clone, Default)]
struct SimStore {
    /// Complete files: id → name.
    content: BTreeMap<ContentId, String>,
    partials: BTreeMap<ContentId, Partial>,
    capacity: u64,
    /// What this run's delta keeps or fetches.
    placed: BTreeSet<ContentId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Never lies, never fails.
    Reliable,
    /// Transfers fail now and then; never lies about bytes.
    Flaky,
    /// Flips bytes and serves bad outboards now and then.
    Liar,
    /// Flips a byte of every block of `lie_about`, honest otherwise.
    Targeted,
}

#[derive(Debug)]
struct SimSource {
    source: Source,
    holds: BTreeSet<ContentId>,
    behaviour: Behaviour,
    lie_about: Option<ContentId>,
    pacer: Pacer,
    /// Bad blocks it sent.
    bad_sent: u64,
}

/// What the seed injects, and when.
#[derive(Debug, Default)]
struct FaultPlan {
    /// Crash at these steps of the runs (one per run, in order).
    crashes: Vec<u64>,
    /// The n-th write fails...
    write_fails_at: Option<u64>,
    /// ...with ENOSPC (else EIO).
    write_enospc: bool,
    /// The n-th sync fails.
    sync_fails_at: Option<u64>,
    /// The n-th record fails.
    record_fails_at: Option<u64>,
    short_writes: bool,
    /// Clock jumps: (step, seconds).
    clock_jumps: Vec<(u64, i64)>,
    /// Holdings changes: (step, source, file, holds).
    holdings: Vec<(u64, usize, ContentId, bool)>,
    writes: u64,
    syncs: u64,
    records: u64,
    local_fault_fired: bool,
}

impl FaultPlan {
    /// Counts one more call in `count`; true (once, and a local fault is then marked
    /// fired) when it is the call `at` names.
    fn fires(count: &mut u64, at: &mut Option<u64>, fired: &mut bool) -> bool {
        *count += 1;
        if *at == Some(*count) {
            *at = None;
            *fired = true;
            return true;
        }
        false
    }

    fn local_faults(&self) -> u32 {
        u32::from(self.write_fails_at.is_some())
            + u32::from(self.sync_fails_at.is_some())
            + u32::from(self.record_fails_at.is_some())
    }
}

/// Something the world will do at a time: complete an action or deliver a block.
#[derive(Debug, Clone)]
enum Pending {
    Evict {
        id: u64,
        store: usize,
        ids: Vec<ContentId>,
    },
    Outboard {
        file: usize,
        from: OutboardFrom,
    },
    Prepare {
        file: usize,
        store: usize,
        ob: Arc<Outboard>,
        resume: bool,
        older: Option<ContentId>,
    },
    /// The next block of a request arrives (or the request fails there).
    Block {
        request: u64,
    },
    Write {
        file: usize,
        block: u64,
        store: usize,
        data: Vec<u8>,
    },
    Sync {
        commit: u64,
        file: usize,
        store: usize,
        upto: usize,
    },
    Record {
        commit: u64,
        file: usize,
        store: usize,
        map: PartialFile,
        complete: bool,
    },
}

/// A request in flight: what it asks, how it is to go wrong, and how far it got.
#[derive(Debug)]
struct SimRequest {
    req: Request,
    /// Blocks delivered so far.
    delivered: u64,
    /// Fail before delivering block `at` (`blocks`: after the body) with this.
    fault: Option<(u64, ReqFault)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqFault {
    Flip,
    WrongLength,
    WrongRange,
    GarbageAfter,
    Stall,
    Reset,
    Vanish,
    NotFound,
    Unavailable,
}

struct World<'t> {
    trace: Option<&'t mut Vec<String>>,
    rng: SplitMix64,
    target_bytes: Vec<u8>,
    files: BTreeMap<ContentId, SimFile>,
    stores: Vec<SimStore>,
    sources: Vec<SimSource>,
    plan: FaultPlan,
    faults: FaultCounts,
    /// The virtual clock (monotonic) and the wall clock's offset from it.
    now: Time,
    wall_offset: i64,
    step: u64,
    queue: BinaryHeap<Reverse<(Time, u64, usize)>>,
    pending: BTreeMap<usize, Pending>,
    next_pending: usize,
    requests: BTreeMap<u64, SimRequest>,
    /// Blocks written and not yet recorded in this run, per store: what a crash may lose.
    in_flight: BTreeSet<(usize, ContentId, u64)>,
    /// Verified bytes each source delivered in this run, as the requests' ends report them.
    delivered: Vec<u64>,
    /// Blocks written in this run: each at most once.
    written: BTreeSet<(usize, ContentId, u64)>,
    /// Blocks written in earlier runs.
    written_before: BTreeSet<(usize, ContentId, u64)>,
    /// Of those, the ones in flight (written, not recorded) when the last run ended: the
    /// only ones it may fetch again.
    refetch_allowed: BTreeSet<(usize, ContentId, u64)>,
    /// The region's block size.
    block: BlockSize,
    /// See [`SimReport::crash_window`] and [`SimReport::refetched`].
    crash_window: (u64, u64),
    refetched: u64,
    /// Expected ending: a file that must make the fill fail when placed.
    doomed: Option<ContentId>,
    lying_origin: bool,
    spec_files: Vec<ContentId>,
}

impl<'t> World<'t> {
    fn generate(seed: u64) -> World<'t> {
        let mut rng = SplitMix64(seed ^ 0x5EED_F111_0000_0000);
        let region = draw_region(&mut rng);
        let mut stores = draw_stores(&mut rng, &region);
        let cast = draw_sources(&mut rng, &region, &mut stores);
        let plan = draw_faults(&mut rng, &region, &cast);
        let Region {
            block,
            files,
            target_bytes,
            ..
        } = region;
        let Cast {
            sources,
            doomed,
            lying_origin,
            faults,
            start,
            ..
        } = cast;
        World {
            trace: None,
            rng,
            target_bytes,
            files,
            stores,
            sources,
            plan,
            faults,
            now: start,
            wall_offset: 0,
            step: 0,
            queue: BinaryHeap::new(),
            pending: BTreeMap::new(),
            next_pending: 0,
            requests: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            delivered: Vec::new(),
            written: BTreeSet::new(),
            written_before: BTreeSet::new(),
            refetch_allowed: BTreeSet::new(),
            block,
            crash_window: (0, 0),
            refetched: 0,
            doomed,
            lying_origin,
            spec_files: Vec::new(),
        }
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        let (step, now) = (self.step, self.now.micros());
        if let Some(t) = self.trace.as_deref_mut() {
            t.push(format!("{step:>6} {now:>20} {}", line()));
        }
    }

    fn wall(&self) -> Time {
        Time::from_micros(self.now.micros().saturating_add(self.wall_offset))
    }

    /// The spec of a fill from what the stores durably hold, through the real delta.
    fn spec(&mut self) -> Result<FillSpec, String> {
        let target = Catalog::parse(&self.target_bytes).map_err(|e| e.to_string())?;
        let mut held = Vec::new();
        for st in &self.stores {
            let mut b = CatalogBuilder::new();
            for (id, name) in &st.content {
                b.push(*id, self.files[id].ob.size(), 0.0, name)
                    .map_err(|e| e.to_string())?;
            }
            let partial: Vec<PartialFile> = st.partials.values().map(|p| p.map.clone()).collect();
            held.push((b.finish().map_err(|e| e.to_string())?, partial));
        }
        let mut deltas = Vec::new();
        for ((bytes, partial), st) in held.iter().zip(&self.stores) {
            let complete = Catalog::parse(bytes).map_err(|e| e.to_string())?;
            let inv = Inventory { complete, partial };
            let d = delta::compute(&target, &inv, st.capacity).map_err(|e| e.to_string())?;
            let ids: Vec<ContentId> = d.evict.iter().map(|e| e.id(&target, &inv)).collect();
            let older = delta::older_versions(&target, &inv, &d);
            deltas.push((d, ids, older));
        }
        for (st, (d, _, _)) in self.stores.iter_mut().zip(&deltas) {
            st.placed = d
                .keep
                .iter()
                .chain(&d.resume)
                .chain(d.fetch.iter().map(|f| &f.entry))
                .map(|&e| target.id(e as usize))
                .collect();
        }
        let sd: Vec<StoreDelta<'_>> = deltas
            .iter()
            .map(|(d, ids, older)| StoreDelta {
                delta: d,
                evict_ids: ids,
                older,
            })
            .collect();
        let sources: Vec<Source> = self.sources.iter().map(|s| s.source.clone()).collect();
        let holds = |s: usize, id: &ContentId| self.sources[s].holds.contains(id);
        let spec = FillSpec::new(&target, &sd, sources, holds, |_| Vec::new());
        self.spec_files = spec.files.iter().map(|f| f.id).collect();
        Ok(spec)
    }

    /// One fill: until it completes, fails or crashes.
    fn run_once(&mut self, run_no: u32) -> Result<RunEnd, String> {
        let spec = self.spec()?;
        self.step = 0;
        self.queue.clear();
        self.pending.clear();
        self.requests.clear();
        self.in_flight.clear();
        self.written_before.append(&mut self.written);
        self.delivered = vec![0; self.sources.len()];
        let crash_at = self.plan.crashes.get(run_no as usize).copied();
        self.log(|| format!("run {run_no}: {} files to fill", spec.files.len()));
        let mut fill = Fill::new(spec, SIM_CONFIG, self.wall());
        loop {
            while let Some(action) = fill.poll_action() {
                self.log(|| format!("action {action:?}"));
                self.act(action)?;
            }
            if let Some(outcome) = fill.outcome() {
                let end = match outcome {
                    Ok(_) => RunEnd::Complete,
                    Err(e) => RunEnd::Failed(e.clone()),
                };
                self.check_quarantine(&fill)?;
                self.check_stats(&fill)?;
                return Ok(end);
            }
            self.step += 1;
            if self.step > MAX_STEPS {
                return Err(format!("no end after {MAX_STEPS} steps"));
            }
            if crash_at == Some(self.step) {
                self.check_quarantine(&fill)?;
                return Ok(RunEnd::Crashed);
            }
            self.inject(&mut fill);
            let timeout = fill
                .poll_timeout()
                .map(|t| Time::from_micros(t.micros().saturating_sub(self.wall_offset)));
            let next = self.queue.peek().map(|Reverse((t, _, _))| *t);
            match (next, timeout) {
                (Some(t), timeout) if timeout.is_none_or(|to| t <= to) => {
                    let _ = t;
                    let Some(Reverse((t, _, k))) = self.queue.pop() else {
                        continue;
                    };
                    self.now = self.now.max(t);
                    if let Some(p) = self.pending.remove(&k)
                        && let Some(event) = self.complete(p, &mut fill)?
                    {
                        self.log(|| format!("event {event:?}"));
                        fill.handle(event, self.wall());
                    }
                }
                (_, Some(to)) => {
                    // Nothing in flight before the machine's next timer.
                    self.now = self.now.max(to);
                    self.log(|| "timeout".into());
                    fill.handle_timeout(self.wall());
                }
                (_, None) => {
                    return Err("the fill stalled: nothing in flight, nothing timed".into());
                }
            }
        }
    }

    /// Faults that are not answers to an action: clock jumps, holdings changes.
    fn inject(&mut self, fill: &mut Fill) {
        let step = self.step;
        for (at, secs) in self.plan.clock_jumps.clone() {
            if at == step {
                self.wall_offset += secs * 1_000_000;
                self.faults.clock_jump += 1;
            }
        }
        for (at, s, id, holds) in self.plan.holdings.clone() {
            if at != step {
                continue;
            }
            let was = self.sources[s].holds.contains(&id);
            if was == holds {
                continue;
            }
            if holds {
                self.sources[s].holds.insert(id);
            } else {
                self.sources[s].holds.remove(&id);
            }
            self.faults.holdings_changed += 1;
            if let Some(file) = self.spec_files.iter().position(|f| *f == id) {
                fill.handle(
                    Event::HoldingsChanged {
                        source: s,
                        file,
                        holds,
                    },
                    self.wall(),
                );
            }
        }
    }

    fn schedule(&mut self, after: Duration, p: Pending) {
        let k = self.next_pending;
        self.next_pending += 1;
        self.pending.insert(k, p);
        let tie = self.rng.next_u64();
        self.queue.push(Reverse((self.now.plus(after), tie, k)));
    }

    fn latency(&mut self, lo_us: u64, hi_us: u64) -> Duration {
        Duration::from_micros(lo_us + self.rng.below(hi_us - lo_us))
    }

    /// Carries out an action: checks what it may check now, schedules its completion.
    fn act(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::Evict { id, store, ids } => {
                for id in &ids {
                    if self.stores[store].placed.contains(id) {
                        return Err(format!("evicts {id}, which the delta keeps or fetches"));
                    }
                }
                let d = self.latency(100, 3000);
                self.schedule(d, Pending::Evict { id, store, ids });
            }
            Action::FetchOutboard { file, from, .. } => {
                let d = self.latency(200, 20_000);
                self.schedule(d, Pending::Outboard { file, from });
            }
            Action::Prepare {
                file,
                store,
                outboard,
                resume,
                older,
            } => {
                let d = self.latency(200, 5000);
                self.schedule(
                    d,
                    Pending::Prepare {
                        file,
                        store,
                        ob: outboard,
                        resume,
                        older,
                    },
                );
            }
            Action::Request(req) => self.start_request(req)?,
            Action::Sync {
                commit,
                file,
                store,
            } => {
                let id = self.spec_files[file];
                let upto = self.stores[store]
                    .partials
                    .get(&id)
                    .map_or(0, |p| p.pending.len());
                let d = self.latency(100, 5000);
                self.schedule(
                    d,
                    Pending::Sync {
                        commit,
                        file,
                        store,
                        upto,
                    },
                );
            }
            Action::Record {
                commit,
                file,
                store,
                map,
            } => {
                let d = self.latency(100, 2000);
                self.schedule(
                    d,
                    Pending::Record {
                        commit,
                        file,
                        store,
                        map,
                        complete: false,
                    },
                );
            }
            Action::Complete {
                commit,
                file,
                store,
                map,
            } => {
                let d = self.latency(100, 3000);
                self.schedule(
                    d,
                    Pending::Record {
                        commit,
                        file,
                        store,
                        map,
                        complete: true,
                    },
                );
            }
            // The simulator's fills have no site peers: nothing asks to be watched.
            Action::Watch { file, .. } | Action::Unwatch { file } => {
                return Err(format!(
                    "asks to watch file {file}, which no site peer fills"
                ));
            }
            Action::Notice(n) => {
                if let super::Notice::Waiting { .. } = n {
                    self.faults.window_wait += 1;
                }
                if let super::Notice::Quarantined { .. } = n {
                    self.faults.quarantined += 1;
                }
            }
        }
        Ok(())
    }

    fn start_request(&mut self, req: Request) -> Result<(), String> {
        let id = self.spec_files[req.file];
        let src = &self.sources[req.source];
        if !src.source.is_open(self.wall().unix_secs()) {
            return Err(format!("request to {} outside its window", src.source.name));
        }
        for (k, to) in req.writes.iter().enumerate() {
            let b = req.first_block + k as u64;
            if to.is_empty() {
                return Err(format!(
                    "requests block {b} of {id}, which every store holds"
                ));
            }
            for &s in to {
                if self.recorded(s, &id, b) {
                    return Err(format!("requests block {b} of {id}, recorded in store {s}"));
                }
            }
        }
        let fault = self.draw_fault(&req);
        let request = req.id;
        self.requests.insert(
            request,
            SimRequest {
                req,
                delivered: 0,
                fault,
            },
        );
        let d = self.latency(500, 20_000);
        self.schedule(d, Pending::Block { request });
        Ok(())
    }

    /// How a request is to go wrong, from its source's behaviour.
    fn draw_fault(&mut self, req: &Request) -> Option<(u64, ReqFault)> {
        let id = self.spec_files[req.file];
        let src = &self.sources[req.source];
        if !src.holds.contains(&id) {
            return Some((0, ReqFault::NotFound));
        }
        let at = self.rng.below(req.blocks);
        match src.behaviour {
            Behaviour::Reliable => None,
            Behaviour::Targeted => (src.lie_about == Some(id)).then_some((at, ReqFault::Flip)),
            Behaviour::Liar => self.rng.chance(35).then_some((at, ReqFault::Flip)),
            Behaviour::Flaky => {
                if !self.rng.chance(30) {
                    return None;
                }
                let f = match self.rng.below(8) {
                    0 => ReqFault::WrongLength,
                    1 => ReqFault::WrongRange,
                    2 => ReqFault::GarbageAfter,
                    3 => ReqFault::Stall,
                    4 => ReqFault::Reset,
                    5 => ReqFault::Vanish,
                    6 => ReqFault::Unavailable,
                    _ => ReqFault::NotFound,
                };
                let at = match f {
                    ReqFault::WrongLength
                    | ReqFault::WrongRange
                    | ReqFault::Unavailable
                    | ReqFault::NotFound => 0,
                    ReqFault::GarbageAfter => req.blocks,
                    _ => at,
                };
                Some((at, f))
            }
        }
    }

    fn recorded(&self, store: usize, id: &ContentId, block: u64) -> bool {
        let st = &self.stores[store];
        st.content.contains_key(id)
            || st
                .partials
                .get(id)
                .is_some_and(|p| p.map.is_verified(block))
    }

    /// Completes a scheduled step: changes the world and answers the machine.
    fn complete(&mut self, p: Pending, fill: &mut Fill) -> Result<Option<Event>, String> {
        Ok(Some(match p {
            Pending::Evict { id, store, ids } => {
                let st = &mut self.stores[store];
                for file in &ids {
                    st.content.remove(file);
                    st.partials.remove(file);
                }
                Event::Evicted { id, result: Ok(()) }
            }
            Pending::Outboard { file, from } => self.complete_outboard(file, from)?,
            Pending::Prepare {
                file,
                store,
                ob,
                resume,
                older,
            } => {
                let result = self.prepare(file, store, &ob, resume, older)?;
                Event::Prepared {
                    file,
                    store,
                    result,
                }
            }
            Pending::Block { request } => return self.deliver(request, fill),
            Pending::Write {
                file,
                block,
                store,
                data,
            } => self.complete_write(file, block, store, data)?,
            Pending::Sync {
                commit,
                file,
                store,
                upto,
            } => self.complete_sync(commit, file, store, upto)?,
            Pending::Record {
                commit,
                file,
                store,
                map,
                complete,
            } => self.complete_record(commit, file, store, map, complete)?,
        }))
    }

    fn complete_outboard(&mut self, file: usize, from: OutboardFrom) -> Result<Event, String> {
        let id = self.spec_files[file];
        let result = match from {
            OutboardFrom::Store(s) => self.stores[s]
                .partials
                .get(&id)
                .map(|p| p.ob.to_bytes())
                .ok_or_else(|| "no partial outboard".to_owned()),
            OutboardFrom::Source(s) => {
                let liar = self.sources[s].behaviour == Behaviour::Liar;
                if !self.sources[s].holds.contains(&id) {
                    self.faults.not_found += 1;
                    Err("not found at the source".into())
                } else if liar && self.rng.chance(20) {
                    self.faults.bad_outboard += 1;
                    let mut b = self.files[&id].ob.to_bytes();
                    let last = b.len() - 1;
                    b[last] ^= 1;
                    Ok(b)
                } else {
                    Ok(self.files[&id].ob.to_bytes())
                }
            }
        };
        Ok(Event::OutboardFetched { file, from, result })
    }

    fn complete_write(
        &mut self,
        file: usize,
        block: u64,
        store: usize,
        data: Vec<u8>,
    ) -> Result<Event, String> {
        let id = self.spec_files[file];
        let plan = &mut self.plan;
        let enospc = plan.write_enospc;
        if FaultPlan::fires(
            &mut plan.writes,
            &mut plan.write_fails_at,
            &mut plan.local_fault_fired,
        ) {
            let why = if enospc {
                self.faults.enospc += 1;
                "No space left on device (os error 28)"
            } else {
                self.faults.eio += 1;
                "Input/output error (os error 5)"
            };
            return Ok(Event::Written {
                file,
                block,
                store,
                result: Err(why.into()),
            });
        }
        if self.plan.short_writes && self.rng.chance(20) {
            // The writer completes a short write with a second one.
            self.faults.short_write += 1;
        }
        if self.recorded(store, &id, block) {
            return Err(format!(
                "block {block} of {id} fetched again though recorded"
            ));
        }
        let key = (store, id, block);
        if !self.written.insert(key) {
            return Err(format!(
                "block {block} of {id} written twice to store {store} in one run"
            ));
        }
        if self.written_before.contains(&key) && !self.refetch_allowed.contains(&key) {
            return Err(format!(
                "block {block} of {id} fetched again, though it was not in flight when the last run ended"
            ));
        }
        let Some(p) = self.stores[store].partials.get_mut(&id) else {
            return Err(format!(
                "write to {id} in store {store}, which is not prepared"
            ));
        };
        let (off, len) = p.ob.block_range(block);
        p.pending.push((off, data));
        if self.written_before.contains(&key) {
            self.refetched += len;
        }
        self.in_flight.insert((store, id, block));
        let (window, bound) = (self.in_flight_bytes(), self.window_bound());
        if window > bound {
            return Err(format!(
                "{window} bytes written and not recorded, past the window's bound of {bound}"
            ));
        }
        Ok(Event::Written {
            file,
            block,
            store,
            result: Ok(()),
        })
    }

    fn complete_sync(
        &mut self,
        commit: u64,
        file: usize,
        store: usize,
        upto: usize,
    ) -> Result<Event, String> {
        let plan = &mut self.plan;
        if FaultPlan::fires(
            &mut plan.syncs,
            &mut plan.sync_fails_at,
            &mut plan.local_fault_fired,
        ) {
            self.faults.sync_failed += 1;
            return Ok(Event::Synced {
                commit,
                result: Err("Input/output error (os error 5)".into()),
            });
        }
        let id = self.spec_files[file];
        if let Some(p) = self.stores[store].partials.get_mut(&id) {
            let upto = upto.min(p.pending.len());
            for (off, data) in p.pending.drain(..upto) {
                let r = off as usize..off as usize + data.len();
                p.durable[r].copy_from_slice(&data);
            }
        }
        Ok(Event::Synced {
            commit,
            result: Ok(()),
        })
    }

    fn complete_record(
        &mut self,
        commit: u64,
        file: usize,
        store: usize,
        map: PartialFile,
        complete: bool,
    ) -> Result<Event, String> {
        let plan = &mut self.plan;
        if FaultPlan::fires(
            &mut plan.records,
            &mut plan.record_fails_at,
            &mut plan.local_fault_fired,
        ) {
            self.faults.record_failed += 1;
            return Ok(Event::Recorded {
                commit,
                result: Err("Input/output error (os error 5)".into()),
            });
        }
        self.record(file, store, map, complete)?;
        Ok(Event::Recorded {
            commit,
            result: Ok(()),
        })
    }

    /// Prepares a file in a store as the real store does: resume (reverify) or begin, then
    /// copy from an older version; durable and recorded when it answers.
    fn prepare(
        &mut self,
        file: usize,
        store: usize,
        ob: &Outboard,
        resume: bool,
        older: Option<ContentId>,
    ) -> Result<Result<Prepared, String>, String> {
        let id = self.spec_files[file];
        let old = older.and_then(|o| {
            self.stores[store]
                .content
                .contains_key(&o)
                .then(|| (self.files[&o].ob.clone(), self.files[&o].data.clone()))
        });
        let name = self.files[&id].name.clone();
        let st = &mut self.stores[store];
        let matches = |p: &Partial| p.map.size == ob.size() && p.map.block == ob.block_size();
        if resume && let Some(p) = st.partials.get_mut(&id).filter(|p| matches(p)) {
            let before = p.map.clone();
            let durable = &p.durable;
            let dropped = prepare::reverify(ob, &mut p.map, |off, buf| {
                buf.copy_from_slice(&durable[off as usize..off as usize + buf.len()]);
                true
            });
            if dropped > 0 {
                return Err(format!(
                    "{dropped} recorded blocks of {id} in store {store} no longer verify (recorded {} of {})",
                    before.verified_count(),
                    before.block_count()
                ));
            }
            self.faults.resumed += 1;
            return Ok(Ok(Prepared {
                map: p.map.clone(),
                copied: 0,
            }));
        }
        let p = st.partials.entry(id).or_insert_with(|| Partial {
            name,
            ob: ob.clone(),
            durable: vec![0xee; ob.size() as usize],
            pending: Vec::new(),
            map: PartialFile::empty(id, ob.size(), ob.block_size()),
        });
        let mut copied = 0;
        if let Some((old_ob, old_data)) = old {
            let durable = &mut p.durable;
            copied = prepare::copy_shared(
                ob,
                &old_ob,
                &mut p.map,
                |off, buf| {
                    let r = off as usize..off as usize + buf.len();
                    match old_data.get(r) {
                        Some(b) => {
                            buf.copy_from_slice(b);
                            true
                        }
                        None => false,
                    }
                },
                |off, bytes| {
                    durable[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
                    Ok::<_, String>(())
                },
            )?;
            if copied > 0 {
                self.faults.older_copied += 1;
            }
        }
        Ok(Ok(Prepared {
            map: p.map.clone(),
            copied,
        }))
    }

    /// The next block of a request arrives, or the request fails there.
    fn deliver(&mut self, request: u64, _fill: &mut Fill) -> Result<Option<Event>, String> {
        let Some(r) = self.requests.get(&request) else {
            return Ok(None);
        };
        let (k, fault) = (r.delivered, r.fault);
        let req = r.req.clone();
        let id = self.spec_files[req.file];
        let verified_bytes = |k: u64| -> u64 {
            (req.first_block..req.first_block + k)
                .map(|b| req.outboard.block_range(b).1)
                .sum()
        };
        let ended = |verified: u64, result: Result<(), RequestFailure>| Event::RequestEnded {
            request,
            verified,
            result,
        };
        if let Some((at, f)) = fault
            && at == k
            && f != ReqFault::Flip
        {
            self.requests.remove(&request);
            let result = match f {
                ReqFault::WrongLength => {
                    self.faults.wrong_length += 1;
                    RequestFailure::Lied("Content-Length does not match the range".into())
                }
                ReqFault::WrongRange => {
                    self.faults.wrong_range += 1;
                    RequestFailure::Lied("Content-Range is not the range asked".into())
                }
                ReqFault::GarbageAfter => {
                    self.faults.garbage_after += 1;
                    RequestFailure::Lied("body longer than asked".into())
                }
                ReqFault::Stall => {
                    self.faults.stall += 1;
                    // The stall timer runs out before the failure is seen.
                    self.now = self.now.plus(STALL);
                    RequestFailure::Transport(format!("stalled for {STALL:?}"))
                }
                ReqFault::Reset => {
                    self.faults.reset += 1;
                    RequestFailure::Transport("connection reset by peer".into())
                }
                ReqFault::Vanish => {
                    self.faults.vanished += 1;
                    RequestFailure::Lied("body ended early".into())
                }
                ReqFault::NotFound => {
                    self.faults.not_found += 1;
                    RequestFailure::NotFound
                }
                ReqFault::Unavailable => {
                    self.faults.unavailable += 1;
                    RequestFailure::Transport("503 Service Unavailable".into())
                }
                ReqFault::Flip => RequestFailure::BadBlock,
            };
            self.delivered[req.source] += verified_bytes(k);
            return Ok(Some(ended(k, Err(result))));
        }
        if k == req.blocks {
            self.requests.remove(&request);
            self.delivered[req.source] += verified_bytes(k);
            return Ok(Some(ended(k, Ok(()))));
        }
        let b = req.first_block + k;
        let (off, len) = req.outboard.block_range(b);
        let mut data = self.files[&id].data[off as usize..(off + len) as usize].to_vec();
        if fault == Some((k, ReqFault::Flip)) && !data.is_empty() {
            let at = self.rng.below(len) as usize;
            data[at] ^= 1 << self.rng.below(8);
            self.faults.flipped_byte += 1;
            self.sources[req.source].bad_sent += 1;
        }
        // The driver verifies each block as it arrives; a bad one ends the request.
        if req.outboard.verify_block(b, &data).is_err() {
            self.requests.remove(&request);
            self.delivered[req.source] += verified_bytes(k);
            return Ok(Some(ended(k, Err(RequestFailure::BadBlock))));
        }
        for &s in &req.writes[k as usize] {
            let d = self.latency(50, 2000);
            self.schedule(
                d,
                Pending::Write {
                    file: req.file,
                    block: b,
                    store: s,
                    data: data.clone(),
                },
            );
        }
        if let Some(r) = self.requests.get_mut(&request) {
            r.delivered += 1;
        }
        let now = self.now;
        let pace = self.sources[req.source].pacer.take(len, now);
        let transfer = Duration::from_micros(
            len * 8_000_000 / self.sources[req.source].source.bandwidth_bps.max(1),
        );
        let at = pace.unwrap_or(now).plus(transfer);
        let k = self.next_pending;
        self.next_pending += 1;
        self.pending.insert(k, Pending::Block { request });
        let tie = self.rng.next_u64();
        self.queue.push(Reverse((at, tie, k)));
        Ok(None)
    }

    /// Records a map (or completes a file): every block it names must verify from what is
    /// durable, and a completed file must be exactly its id.
    fn record(
        &mut self,
        file: usize,
        store: usize,
        map: PartialFile,
        complete: bool,
    ) -> Result<(), String> {
        let id = self.spec_files[file];
        let st = &mut self.stores[store];
        let Some(p) = st.partials.get_mut(&id) else {
            return Err(format!(
                "records {id} in store {store}, which it is not filling"
            ));
        };
        for b in 0..map.block_count() {
            if !map.is_verified(b) {
                continue;
            }
            let (off, len) = p.ob.block_range(b);
            let bytes = &p.durable[off as usize..(off + len) as usize];
            if p.ob.verify_block(b, bytes).is_err() {
                return Err(format!(
                    "records block {b} of {id} in store {store}, whose durable bytes do not verify"
                ));
            }
        }
        if map.verified_count() < p.map.verified_count()
            || (0..p.map.block_count()).any(|b| p.map.is_verified(b) && !map.is_verified(b))
        {
            return Err(format!("the recorded map of {id} in store {store} shrank"));
        }
        if complete {
            if map.verified_count() != map.block_count() {
                return Err(format!(
                    "completes {id} in store {store} with blocks missing"
                ));
            }
            if ContentId::of(&p.durable) != id {
                return Err(format!(
                    "completes {id} in store {store}, whose bytes are not its id"
                ));
            }
            let name = p.name.clone();
            st.partials.remove(&id);
            st.content.insert(id, name);
        } else {
            p.map = map;
        }
        let st = &self.stores[store];
        self.in_flight.retain(|(s, i, b)| {
            !(*s == store && *i == id && st.partials.get(&id).is_none_or(|p| p.map.is_verified(*b)))
        });
        Ok(())
    }

    /// Bytes written and not recorded, over all stores.
    fn in_flight_bytes(&self) -> u64 {
        self.in_flight
            .iter()
            .filter_map(|(s, id, b)| {
                let p = self.stores[*s].partials.get(id)?;
                Some(p.ob.block_range(*b).1)
            })
            .sum()
    }

    /// What the machine's window allows written and not recorded: the window, and one
    /// request more for each store (the last request started below the window).
    fn window_bound(&self) -> u64 {
        let block = self.block.bytes();
        SIM_CONFIG.window_bytes + SIM_CONFIG.blocks_per_request * block * self.stores.len() as u64
    }

    /// A crash: what was not synced is lost, kept or torn; nothing in flight survives.
    fn crash(&mut self) {
        self.faults.crash += 1;
        let window = self.in_flight_bytes();
        if window > self.crash_window.0 {
            self.crash_window = (window, self.window_bound());
        }
        self.refetch_allowed.append(&mut self.in_flight);
        for st in &mut self.stores {
            for p in st.partials.values_mut() {
                for (off, data) in std::mem::take(&mut p.pending) {
                    match self.rng.below(3) {
                        0 => self.faults.lost_write += 1,
                        1 => {
                            let r = off as usize..off as usize + data.len();
                            p.durable[r].copy_from_slice(&data);
                        }
                        _ => {
                            // A prefix of 512-byte sectors reached the disk.
                            self.faults.torn_write += 1;
                            let keep = (self.rng.below(data.len() as u64 / 512 + 1) * 512) as usize;
                            let keep = keep.min(data.len());
                            let r = off as usize..off as usize + keep;
                            p.durable[r].copy_from_slice(&data[..keep]);
                        }
                    }
                }
            }
        }
    }

    /// After a run stopped with a local error: the process exits, the page cache keeps what
    /// was written (not recorded: the next run does not trust it).
    fn settle_after_exit(&mut self) {
        self.refetch_allowed.append(&mut self.in_flight);
        for st in &mut self.stores {
            for p in st.partials.values_mut() {
                for (off, data) in std::mem::take(&mut p.pending) {
                    let r = off as usize..off as usize + data.len();
                    p.durable[r].copy_from_slice(&data);
                }
            }
        }
    }

    /// After every run: each store's content is exactly its ids, every recorded block of a
    /// partial file verifies.
    fn check_stores(&self) -> Result<(), String> {
        for (s, st) in self.stores.iter().enumerate() {
            for id in st.content.keys() {
                if !self.files.contains_key(id) || ContentId::of(&self.files[id].data) != *id {
                    return Err(format!("store {s} holds {id}, whose bytes are not its id"));
                }
            }
            for (id, p) in &st.partials {
                for b in 0..p.map.block_count() {
                    let (off, len) = p.ob.block_range(b);
                    if p.map.is_verified(b)
                        && p.ob
                            .verify_block(b, &p.durable[off as usize..(off + len) as usize])
                            .is_err()
                    {
                        return Err(format!(
                            "store {s}: recorded block {b} of {id} does not verify"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// After a complete fill: each store holds exactly what its delta placed, no more.
    fn check_complete(&self) -> Result<(), String> {
        if let Some(x) = self.doomed
            && self.stores.iter().any(|st| st.placed.contains(&x))
        {
            return Err(format!("completed though no honest source holds {x}"));
        }
        for (s, st) in self.stores.iter().enumerate() {
            let held: BTreeSet<ContentId> = st.content.keys().copied().collect();
            if held != st.placed {
                return Err(format!(
                    "store {s} holds {} files, its delta placed {} (missing {:?}, extra {:?})",
                    held.len(),
                    st.placed.len(),
                    st.placed.difference(&held).collect::<Vec<_>>(),
                    held.difference(&st.placed).collect::<Vec<_>>()
                ));
            }
            if !st.partials.is_empty() {
                return Err(format!(
                    "store {s} still has {} partial files",
                    st.partials.len()
                ));
            }
        }
        Ok(())
    }

    /// Whether the fill was right to fail so: it names the file no honest source holds, or
    /// the origin lied about the file it lies about.
    fn acceptable_failure(&self, e: &FillError) -> bool {
        match e {
            FillError::Exhausted { id, .. }
            | FillError::NoSource { id, .. }
            | FillError::NoOutboard { id, .. } => Some(*id) == self.doomed,
            FillError::OriginLied { id, .. } => {
                self.lying_origin && self.sources[0].lie_about == Some(*id)
            }
            FillError::Local { .. } => false,
        }
    }

    /// The machine's byte counts are the bytes its requests verified.
    fn check_stats(&self, fill: &Fill) -> Result<(), String> {
        let stats = fill.stats();
        for (s, st) in stats.sources.iter().enumerate() {
            if st.bytes != self.delivered[s] {
                return Err(format!(
                    "counts {} bytes from {}, its requests verified {}",
                    st.bytes, self.sources[s].source.name, self.delivered[s]
                ));
            }
        }
        let total: u64 = self.delivered.iter().sum();
        if stats.bytes_fetched != total {
            return Err(format!(
                "counts {} bytes fetched, requests verified {total}",
                stats.bytes_fetched
            ));
        }
        Ok(())
    }

    fn check_quarantine(&self, fill: &Fill) -> Result<(), String> {
        for (s, st) in fill.stats().sources.iter().enumerate() {
            if st.quarantined && self.sources[s].bad_sent == 0 {
                return Err(format!(
                    "{} quarantined though it never sent a bad block",
                    self.sources[s].source.name
                ));
            }
        }
        Ok(())
    }
}

/// What a seed draws first: the target's files (1–7, 1–4 KiB blocks, at most one empty),
/// retired files, and perhaps an older version of a target file (same name, one byte
/// changed).
struct Region {
    block: BlockSize,
    files: BTreeMap<ContentId, SimFile>,
    target_bytes: Vec<u8>,
    target_ids: Vec<ContentId>,
    total: u64,
    retired: Vec<ContentId>,
    older: Option<ContentId>,
}

fn draw_region(rng: &mut SplitMix64) -> Region {
    let block = BlockSize::from_bytes(1024 << rng.below(3)).unwrap_or(BlockSize::DEFAULT);
    let bs = block.bytes();
    let mut files = BTreeMap::new();
    let mut target = CatalogBuilder::new();
    let mut target_ids = Vec::new();
    let n = 1 + rng.below(7);
    let mut empty = false;
    for i in 0..n {
        // One empty file at most: two would be the same id.
        let size = if !empty && rng.chance(6) {
            empty = true;
            0
        } else {
            rng.below(10) * bs + rng.below(bs) + 1
        };
        let data = bytes(rng, size);
        let ob = Outboard::compute(&data, block);
        let name = format!("title-{i}.mp4");
        let weight = 1.0 + rng.below(100) as f64;
        let _ = target.push(ob.id(), size, weight, &name);
        target_ids.push(ob.id());
        files.insert(ob.id(), SimFile { data, ob, name });
    }
    let target_bytes = target.finish().unwrap_or_default();
    let total: u64 = target_ids.iter().map(|id| files[id].ob.size()).sum();
    // Retired files, and perhaps an older version of a target file (same name, one
    // block rewritten).
    let mut retired = Vec::new();
    for i in 0..rng.below(3) {
        let len = rng.below(4 * bs) + 1;
        let data = bytes(rng, len);
        let ob = Outboard::compute(&data, block);
        retired.push(ob.id());
        files.insert(
            ob.id(),
            SimFile {
                data,
                ob,
                name: format!("retired-{i}"),
            },
        );
    }
    let mut older = None;
    if rng.chance(40) {
        let multi: Vec<ContentId> = target_ids
            .iter()
            .copied()
            .filter(|id| files[id].ob.block_count() >= 2)
            .collect();
        if !multi.is_empty() {
            let of = multi[rng.below(multi.len() as u64) as usize];
            let mut data = files[&of].data.clone();
            let at = rng.below(data.len() as u64) as usize;
            data[at] ^= 0x5a;
            let ob = Outboard::compute(&data, block);
            let name = files[&of].name.clone();
            older = Some(ob.id());
            files.insert(ob.id(), SimFile { data, ob, name });
        }
    }
    Region {
        block,
        files,
        target_bytes,
        target_ids,
        total,
        retired,
        older,
    }
}

/// One store, or a station's two: files held whole, partly (half the blocks recorded, the
/// rest garbage), retired files, the older version; a capacity that may not fit the target.
fn draw_stores(rng: &mut SplitMix64, region: &Region) -> Vec<SimStore> {
    let (block, bs, files, total, older) = (
        region.block,
        region.block.bytes(),
        &region.files,
        region.total,
        region.older,
    );
    let (target_ids, retired) = (region.target_ids.clone(), region.retired.clone());
    // Stores.
    let n_stores = if rng.chance(20) { 2 } else { 1 };
    let mut stores = Vec::new();
    for s in 0..n_stores {
        let mut st = SimStore {
            capacity: if rng.chance(25) {
                total * (50 + rng.below(45)) / 100
            } else {
                total + rng.below(8 * bs)
            },
            ..SimStore::default()
        };
        for id in &target_ids {
            let f = &files[id];
            let r = rng.below(100);
            if r < 30 {
                st.content.insert(*id, f.name.clone());
            } else if r < 45 && f.ob.size() > 0 {
                let mut map = PartialFile::empty(*id, f.ob.size(), block);
                let mut durable = bytes(rng, f.ob.size());
                for b in 0..f.ob.block_count() {
                    if rng.chance(50) {
                        map.set_verified(b, true);
                        let (off, len) = f.ob.block_range(b);
                        let r = off as usize..(off + len) as usize;
                        durable[r.clone()].copy_from_slice(&f.data[r]);
                    }
                }
                st.partials.insert(
                    *id,
                    Partial {
                        name: f.name.clone(),
                        ob: f.ob.clone(),
                        durable,
                        pending: Vec::new(),
                        map,
                    },
                );
            }
        }
        for id in &retired {
            if rng.chance(70) {
                st.content.insert(*id, files[id].name.clone());
            }
        }
        if let Some(old) = older
            && s == 0
        {
            let of = target_ids
                .iter()
                .find(|t| files[*t].name == files[&old].name);
            if let Some(of) = of {
                st.content.remove(of);
                st.partials.remove(of);
            }
            st.content.insert(old, files[&old].name.clone());
        }
        stores.push(st);
    }
    stores
}

/// The sources and the seed's scenario: who holds what, who lies, which file is doomed.
struct Cast {
    sources: Vec<SimSource>,
    doomed: Option<ContentId>,
    lie_about: Option<ContentId>,
    lying_origin: bool,
    faults: FaultCounts,
    start: Time,
}

fn draw_sources(rng: &mut SplitMix64, region: &Region, stores: &mut [SimStore]) -> Cast {
    let (files, target_ids) = (&region.files, region.target_ids.clone());
    // Sources: a reliable one of everything (unless the seed has a doomed file), peers.
    let start = Time::from_unix_secs(1_800_000_000 + rng.below(86_400 * 365) as i64);
    let scenario = rng.below(100);
    let mut faults = FaultCounts::default();
    let mut doomed = None;
    let mut lying_origin = false;
    let mut sources = Vec::new();
    let reliable_kind = if rng.chance(60) {
        SourceKind::Origin
    } else {
        SourceKind::Tier
    };
    let window = rng
        .chance(25)
        .then(|| {
            let start_h = rng.below(24);
            let len = 1 + rng.below(12);
            Window::parse(
                &format!("{:02}:00-{:02}:00", start_h, (start_h + len) % 24),
                crate::source::Zone::Offset((rng.below(25) as i16 - 12) * 60),
            )
            .ok()
        })
        .flatten();
    let mut reliable_holds: BTreeSet<ContentId> = target_ids.iter().copied().collect();
    if scenario < 8 && !target_ids.is_empty() {
        let x = target_ids[rng.below(target_ids.len() as u64) as usize];
        if files[&x].ob.size() > 0 {
            doomed = Some(x);
            reliable_holds.remove(&x);
            faults.unservable += 1;
        }
    }
    // Nobody holds the doomed file: the fill has to fetch it.
    if let Some(x) = doomed {
        for st in stores.iter_mut() {
            st.content.remove(&x);
            st.partials.remove(&x);
        }
    }
    let lie_about = if (8..13).contains(&scenario) && reliable_kind == SourceKind::Origin {
        let x = target_ids[rng.below(target_ids.len() as u64) as usize];
        (files[&x].ob.size() > 0).then_some(x)
    } else {
        None
    };
    if lie_about.is_some() {
        lying_origin = true;
        faults.lying_origin += 1;
    }
    sources.push(SimSource {
        source: source(
            "reliable",
            reliable_kind,
            if reliable_kind == SourceKind::Origin {
                0.02
            } else {
                0.01
            },
            8_000_000 + rng.below(72_000_000),
            window,
            1 + rng.below(4) as u32,
        ),
        holds: reliable_holds,
        behaviour: if lie_about.is_some() {
            Behaviour::Targeted
        } else {
            Behaviour::Reliable
        },
        lie_about,
        pacer: Pacer::new(1, Duration::ZERO),
        bad_sent: 0,
    });
    for p in 0..rng.below(4) {
        let behaviour = match rng.below(10) {
            0..=2 => Behaviour::Liar,
            3..=7 => Behaviour::Flaky,
            _ => Behaviour::Reliable,
        };
        let mut holds: BTreeSet<ContentId> = target_ids
            .iter()
            .copied()
            .filter(|_| rng.chance(60))
            .collect();
        if let Some(x) = lie_about {
            // The lying origin is the only holder of the file it lies about.
            holds.remove(&x);
        }
        let behaviour = match doomed {
            Some(x) if holds.contains(&x) => Behaviour::Targeted,
            _ => behaviour,
        };
        sources.push(SimSource {
            source: source(
                &format!("peer-{p}"),
                SourceKind::Peer,
                0.0,
                8_000_000 + rng.below(72_000_000),
                None,
                1 + rng.below(4) as u32,
            ),
            holds,
            behaviour,
            lie_about: if behaviour == Behaviour::Targeted {
                doomed
            } else {
                None
            },
            pacer: Pacer::new(1, Duration::ZERO),
            bad_sent: 0,
        });
    }
    for s in &mut sources {
        s.pacer = Pacer::new(s.source.bandwidth_bps, Duration::from_millis(5));
    }
    Cast {
        sources,
        doomed,
        lie_about,
        lying_origin,
        faults,
        start,
    }
}

/// The local faults and events of the seed: crashes, failing writes, syncs and records,
/// short writes, clock jumps, holdings changes.
fn draw_faults(rng: &mut SplitMix64, region: &Region, cast: &Cast) -> FaultPlan {
    let (target_ids, doomed, lie_about) = (&region.target_ids, cast.doomed, cast.lie_about);
    let sources = &cast.sources;
    // Local faults.
    let mut plan = FaultPlan::default();
    if rng.chance(35) {
        for _ in 0..1 + rng.below(3) {
            plan.crashes.push(1 + rng.below(400));
        }
    }
    if rng.chance(12) {
        plan.write_fails_at = Some(1 + rng.below(40));
        plan.write_enospc = rng.chance(50);
    }
    if rng.chance(8) {
        plan.sync_fails_at = Some(1 + rng.below(10));
    }
    if rng.chance(8) {
        plan.record_fails_at = Some(1 + rng.below(10));
    }
    plan.short_writes = rng.chance(15);
    if rng.chance(15) {
        let secs = (1 + rng.below(12 * 3600)) as i64;
        let secs = if rng.chance(50) { secs } else { -secs };
        plan.clock_jumps.push((1 + rng.below(300), secs));
    }
    if rng.chance(25) && sources.len() > 1 {
        for _ in 0..1 + rng.below(3) {
            let s = 1 + rng.below(sources.len() as u64 - 1) as usize;
            let id = target_ids[rng.below(target_ids.len() as u64) as usize];
            if Some(id) == doomed || Some(id) == lie_about {
                continue;
            }
            plan.holdings
                .push((1 + rng.below(300), s, id, rng.chance(50)));
        }
    }
    plan
}

fn source(
    name: &str,
    kind: SourceKind,
    cost_per_gib: f64,
    bandwidth_bps: u64,
    window: Option<Window>,
    max_connections: u32,
) -> Source {
    Source {
        name: name.into(),
        kind,
        url: format!("sim://{name}"),
        cost_per_gib,
        bandwidth_bps,
        window,
        max_connections,
    }
}

fn bytes(rng: &mut SplitMix64, n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n as usize + 8);
    while (out.len() as u64) < n {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(n as usize);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_one_run() {
        for seed in 0..50 {
            let a = run(seed);
            let b = run(seed);
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert_eq!((a.runs, a.steps, &a.outcome), (b.runs, b.steps, &b.outcome));
                    assert_eq!(a.faults, b.faults);
                }
                (a, b) => assert_eq!(a.err(), b.err()),
            }
        }
    }
}
