//! The machine's actions, carried out: each a task that answers with an event.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use fill_core::ContentId;
use fill_core::blockmap::BlockMap;
use fill_core::fill::{
    Action, Event, FillSpec, Notice, OutboardFrom, Pacer, Prepared, Request, RequestFailure, Time,
};
use fill_core::outboard::Outboard;
use fill_store::lock;
use fill_store::store::{PartialState, WriteErrorRecord};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::edges::{BlockWriter, RangeBody, RangeSource, StoreState};
use super::{FillJob, MAX_WRITES};
use crate::net::NetError;
use crate::write::AlignedBuf;

/// How a pacer's burst is sized: 50 ms worth of a source's bandwidth.
const PACER_BURST: std::time::Duration = std::time::Duration::from_millis(50);

/// Files a preparation task opened, keyed by (file, store), waiting to be adopted.
type Opened<F> = Arc<Mutex<VecDeque<((usize, usize), F)>>>;

/// What the tasks share: the stores, the sources, the writer, the files open for writing.
pub(super) struct Driver<R, W: BlockWriter, S> {
    ctx: Arc<Ctx<R, W, S>>,
    /// Files open for writing, per (file, store).
    open: HashMap<(usize, usize), Arc<W::File>>,
    /// Opened by preparation tasks, taken into `open` when their `Prepared` is executed on.
    opened: Opened<W::File>,
    tx: mpsc::UnboundedSender<Event>,
    /// Events from the tasks.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Every task: joined by the loop, so a panic stops the fill instead of losing an answer.
    pub tasks: JoinSet<()>,
    /// Per file watched, the tasks polling site peers' block maps (they answer no action:
    /// they run until the file is unwatched or the fill ends).
    watchers: HashMap<usize, Vec<tokio::task::AbortHandle>>,
    /// Each source's window, for saying in local time when a wait ends.
    windows: Vec<Option<fill_core::source::Window>>,
    /// Per source waited for, the opening already announced: a wait is said once, not at
    /// every file and tick that meets it.
    announced: HashMap<usize, i64>,
    /// What to tell the operator, taken by the loop and shown between the progress bars.
    pub said: Vec<String>,
}

impl<R, W: BlockWriter, S> Drop for Driver<R, W, S> {
    fn drop(&mut self) {
        for handles in self.watchers.values() {
            for h in handles {
                h.abort();
            }
        }
    }
}

/// How often a watched site peer's block map is asked for.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

struct Ctx<R, W, S> {
    stores: Vec<S>,
    names: Vec<String>,
    sources: R,
    writer: W,
    pacers: Vec<Mutex<Pacer>>,
    /// The pacers' clock: monotonic, unlike the wall clock the machine reads windows in.
    epoch: Instant,
    writes: Arc<Semaphore>,
    /// Where blocks read ahead are verified; none: each block is verified as it is read,
    /// on the reading task.
    verifier: Option<rayon::ThreadPool>,
}

impl<R, W, S> Ctx<R, W, S> {
    fn pace_now(&self) -> Time {
        Time::from_micros(self.epoch.elapsed().as_micros() as i64)
    }
}

impl<R: RangeSource, W: BlockWriter, S: StoreState> Driver<R, W, S> {
    pub(super) fn new(job: &FillJob<'_, S>, stores: Vec<S>, writer: W, sources: R) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let n_stores = stores.len();
        let verifier = (job.verify_threads > 0)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(job.verify_threads)
                    .thread_name(|i| format!("fill-verify-{i}"))
                    .build()
                    .inspect_err(|e| {
                        tracing::warn!("no verify threads ({e}): blocks verify as they are read");
                    })
                    .ok()
            })
            .flatten();
        let ctx = Ctx {
            stores,
            names: job.sources.iter().map(|s| s.name.clone()).collect(),
            sources,
            writer,
            pacers: job
                .sources
                .iter()
                .map(|s| Mutex::new(Pacer::new(s.bandwidth_bps, PACER_BURST)))
                .collect(),
            epoch: Instant::now(),
            writes: Arc::new(Semaphore::new(MAX_WRITES * n_stores.max(1))),
            verifier,
        };
        Self {
            ctx: Arc::new(ctx),
            open: HashMap::new(),
            opened: Arc::new(Mutex::new(VecDeque::new())),
            tx,
            events,
            tasks: JoinSet::new(),
            watchers: HashMap::new(),
            windows: job.sources.iter().map(|s| s.window.clone()).collect(),
            announced: HashMap::new(),
            said: Vec::new(),
        }
    }

    /// Carries out one action of the machine.
    pub(super) fn execute(&mut self, action: Action, spec: &FillSpec) {
        self.adopt_opened();
        let (ctx, tx) = (self.ctx.clone(), self.tx.clone());
        match action {
            Action::Evict { id, store, ids } => {
                self.tasks.spawn(async move {
                    let st = ctx.stores[store].clone();
                    let result = blocking(move || st.evict(&ids)).await;
                    let _ = tx.send(Event::Evicted {
                        id,
                        result: result.map_err(|e| format!("{e:#}")),
                    });
                });
            }
            Action::FetchOutboard {
                file,
                from,
                id,
                limit,
            } => {
                self.tasks.spawn(async move {
                    let result = fetch_outboard(&ctx, from, id, limit).await;
                    let _ = tx.send(Event::OutboardFetched { file, from, result });
                });
            }
            Action::Prepare {
                file,
                store,
                outboard,
                resume,
                older,
            } => {
                let name = spec.files[file].name.clone();
                self.prepare(file, store, outboard, resume, older, name);
            }
            Action::Request(req) => {
                let data: Vec<Option<Arc<W::File>>> = (0..self.ctx.stores.len())
                    .map(|s| self.open.get(&(req.file, s)).cloned())
                    .collect();
                let id = spec.files[req.file].id;
                self.tasks
                    .spawn(async move { fetch_range(ctx, req, id, data, tx).await });
            }
            Action::Sync {
                commit,
                file,
                store,
            } => {
                let data = self.open.get(&(file, store)).cloned();
                self.tasks.spawn(async move {
                    let result = match data {
                        Some(d) => ctx.writer.sync(&d).await.map_err(|e| format!("{e:#}")),
                        None => Err("the file is not open".into()),
                    };
                    let _ = tx.send(Event::Synced { commit, result });
                });
            }
            Action::Record {
                commit,
                file,
                store,
                map,
            }
            | Action::Complete {
                commit,
                file,
                store,
                map,
            } => {
                let state = PartialState {
                    file: map,
                    name: spec.files[file].name.clone(),
                };
                self.record(commit, file, store, state);
            }
            Action::Watch {
                file,
                id,
                block,
                sources,
            } => {
                let size = spec.files[file].size;
                let handles = sources
                    .into_iter()
                    .map(|source| {
                        let (ctx, tx) = (self.ctx.clone(), self.tx.clone());
                        tokio::spawn(watch(ctx, file, (id, size, block), source, tx)).abort_handle()
                    })
                    .collect();
                if let Some(old) = self.watchers.insert(file, handles) {
                    old.iter().for_each(|h| h.abort());
                }
            }
            Action::Unwatch { file } => {
                for h in self.watchers.remove(&file).unwrap_or_default() {
                    h.abort();
                }
            }
            Action::Notice(n) => self.notice(n, spec),
        }
    }

    /// Prepares a file in a store on a task; the file it opens for writing is adopted by the
    /// next `execute`.
    fn prepare(
        &mut self,
        file: usize,
        store: usize,
        outboard: Arc<Outboard>,
        resume: bool,
        older: Option<ContentId>,
        name: String,
    ) {
        let (ctx, tx, opened) = (self.ctx.clone(), self.tx.clone(), self.opened.clone());
        self.tasks.spawn(async move {
            let result = prepare_file(&ctx, store, &outboard, &name, resume, older).await;
            let result = match result {
                Ok((prepared, data)) => {
                    lock(&opened).push_back(((file, store), data));
                    Ok(prepared)
                }
                Err(e) => Err(format!("{e:#}")),
            };
            let _ = tx.send(Event::Prepared {
                file,
                store,
                result,
            });
        });
    }

    /// Records a file's block map in a store, or completes the file (every block set: its
    /// write handle is closed and it moves into `content/`), on a blocking thread.
    fn record(&mut self, commit: u64, file: usize, store: usize, state: PartialState) {
        let complete = state.file.verified_count() == state.file.block_count();
        let data = complete.then(|| self.open.remove(&(file, store))).flatten();
        let (ctx, tx) = (self.ctx.clone(), self.tx.clone());
        self.tasks.spawn(async move {
            if let Some(d) = &data {
                ctx.writer.close(d);
            }
            let st = ctx.stores[store].clone();
            let result = blocking(move || {
                if complete {
                    st.complete(&state)
                } else {
                    st.record(&state)
                }
            })
            .await;
            let _ = tx.send(Event::Recorded {
                commit,
                result: result.map_err(|e| format!("{e:#}")),
            });
        });
    }

    /// Files the preparation tasks opened, kept for the requests and syncs that follow.
    fn adopt_opened(&mut self) {
        let mut opened = lock(&self.opened);
        while let Some((key, data)) = opened.pop_front() {
            self.open.insert(key, Arc::new(data));
        }
    }

    fn notice(&mut self, n: Notice, spec: &FillSpec) {
        let name = |s: usize| &self.ctx.names[s];
        match n {
            Notice::Waiting {
                source,
                file,
                until,
            } => {
                tracing::debug!(
                    source = %name(source),
                    "every source that holds {} is outside its window",
                    spec.files[file].id
                );
                let at = until.micros().div_euclid(1_000_000);
                if self.announced.insert(source, at) != Some(at) {
                    let left = until.since(super::wall_now()).as_secs() as i64;
                    let line = waiting_line(name(source), self.windows[source].as_ref(), at, left);
                    tracing::info!(source = %name(source), "{line}");
                    self.said.push(line);
                }
            }
            Notice::Failed {
                source,
                why,
                moving_on,
            } => tracing::warn!(
                source = %name(source),
                "{why}: {}",
                if moving_on { "moving to the next source" } else { "retrying" }
            ),
            Notice::BadBlock {
                source,
                file,
                block,
            } => tracing::warn!(
                source = %name(source),
                "block {block} of {} failed verification",
                spec.files[file].id
            ),
            Notice::Quarantined { source } => {
                tracing::warn!(source = %name(source), "quarantined for this run");
            }
            Notice::PassedOver { source, file } => tracing::warn!(
                source = %name(source),
                "made no progress on {} for the relay patience: taking it from elsewhere",
                spec.files[file].id
            ),
        }
    }
}

/// `origin is outside its window (02:00-14:00 Europe/Paris): waiting until 02:00
/// Europe/Paris (2026-12-08T01:00:00Z), in 3h 12m`.
fn waiting_line(
    name: &str,
    window: Option<&fill_core::source::Window>,
    at: i64,
    left: i64,
) -> String {
    let utc = fill_core::duration::format_rfc3339(at);
    let left = fill_core::duration::human_secs(left);
    match window {
        Some(w) => format!(
            "{name} is outside its window ({w}): waiting until {} ({utc}), in {left}",
            w.zone.local_hhmm(at),
        ),
        None => format!("waiting for {name} until {utc}, in {left}"),
    }
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("a blocking task failed: {e}"))?
}

/// Polls one site peer's block map of a file (`map/<id>` under its base URL) and tells the
/// machine what it holds whenever that grows, until the file is complete there (then the
/// peer simply holds the file) or the watch is dropped. A peer that does not answer, or
/// answers something that is not a map of this file, holds nothing new.
async fn watch<R: RangeSource, W, S>(
    ctx: Arc<Ctx<R, W, S>>,
    file: usize,
    (id, size, block): (ContentId, u64, fill_core::outboard::BlockSize),
    source: usize,
    tx: mpsc::UnboundedSender<Event>,
) {
    let limit = BlockMap::encoded_len(size, block);
    let rel = format!("map/{id}");
    let mut held = 0;
    loop {
        match ctx.sources.get_small(source, &rel, limit).await {
            Ok(bytes) => match BlockMap::parse(&bytes) {
                Ok(map) if map.size == size && map.block == block => {
                    if map.complete {
                        let _ = tx.send(Event::HoldingsChanged {
                            source,
                            file,
                            holds: true,
                        });
                        return;
                    }
                    if map.held() > held {
                        held = map.held();
                        let blocks = map.words;
                        let _ = tx.send(Event::BlocksHeld {
                            source,
                            file,
                            blocks,
                        });
                    }
                }
                Ok(map) => tracing::debug!(
                    source = %ctx.names[source],
                    "block map of {id} is of {} bytes in blocks of {}, not {size} in {}",
                    map.size,
                    map.block.bytes(),
                    block.bytes()
                ),
                Err(e) => tracing::debug!(source = %ctx.names[source], "{id}: {e}"),
            },
            Err(e) => tracing::trace!(source = %ctx.names[source], "block map of {id}: {e}"),
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

async fn fetch_outboard<R: RangeSource, W, S: StoreState>(
    ctx: &Ctx<R, W, S>,
    from: OutboardFrom,
    id: ContentId,
    limit: u64,
) -> std::result::Result<Vec<u8>, String> {
    match from {
        OutboardFrom::Store(s) => {
            let st = ctx.stores[s].clone();
            blocking(move || st.partial_outboard_bytes(&id))
                .await
                .map_err(|e| format!("{e:#}"))
        }
        OutboardFrom::Source(s) => ctx
            .sources
            .get_small(s, &format!("outboard/{id}"), limit)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string()),
    }
}

/// Prepares a file in a store: its interrupted fill resumed (recorded blocks verified
/// again) or a new one begun (and the blocks an older version shares copied in), then
/// opened for writing.
async fn prepare_file<R, W: BlockWriter, S: StoreState>(
    ctx: &Ctx<R, W, S>,
    store: usize,
    ob: &Arc<Outboard>,
    name: &str,
    resume: bool,
    older: Option<ContentId>,
) -> Result<(Prepared, W::File)> {
    let st = ctx.stores[store].clone();
    let (ob2, name) = (ob.clone(), name.to_owned());
    let prepared = blocking(move || st.prepare(&ob2, &name, resume, older)).await?;
    let path = ctx.stores[store].partial_data_path(&ob.id());
    let data = ctx
        .writer
        .open(&path)
        .await
        .with_context(|| format!("cannot open the partial data of {}", ob.id()))?;
    Ok((prepared, data))
}

/// One ranged request: reads the body into aligned block buffers, verifies each block,
/// submits its writes while it reads on, answers `RequestEnded` once the body is read
/// (giving its connection back), then waits for its writes, each answering `Written`.
async fn fetch_range<R: RangeSource, W: BlockWriter, S: StoreState>(
    ctx: Arc<Ctx<R, W, S>>,
    req: Request,
    id: ContentId,
    data: Vec<Option<Arc<W::File>>>,
    tx: mpsc::UnboundedSender<Event>,
) {
    let mut f = Fetch {
        ctx: &ctx,
        req: &req,
        id,
        files: &data,
        tx: &tx,
        writes: Vec::new(),
    };
    let (verified, result) = read_body(&mut f).await;
    let _ = tx.send(Event::RequestEnded {
        request: req.id,
        verified,
        result,
    });
    for w in f.writes {
        let _ = w.await;
    }
}

/// One request being read: what its reading and its writes need.
struct Fetch<'a, R, W: BlockWriter, S> {
    ctx: &'a Arc<Ctx<R, W, S>>,
    req: &'a Request,
    id: ContentId,
    /// The file open for writing in each store.
    files: &'a [Option<Arc<W::File>>],
    tx: &'a mpsc::UnboundedSender<Event>,
    /// The tasks completing its submitted writes.
    writes: Vec<tokio::task::JoinHandle<()>>,
}

/// Verified blocks written together: a request's consecutive blocks for the same stores
/// go to the disk as one write of up to this many, so the io_uring thread is woken, and
/// answers, once per batch rather than once per block.
const WRITE_BATCH: u64 = 4;

/// Reads and verifies a request's blocks; returns how many verified and why it stopped.
/// Verified blocks are submitted in batches of consecutive blocks ([`WRITE_BATCH`]); a
/// request that stops early submits those it verified before saying why.
async fn read_body<R: RangeSource, W: BlockWriter, S: StoreState>(
    f: &mut Fetch<'_, R, W, S>,
) -> (u64, std::result::Result<(), RequestFailure>) {
    let (ctx, req, id) = (f.ctx, f.req, f.id);
    let ob = &req.outboard;
    let rel = format!("content/{id}");
    let url = format!("{}/{rel}", ctx.sources.url(req.source));
    let mut body = match ctx
        .sources
        .get_range(req.source, &rel, req.offset, req.len, ob.size())
        .await
    {
        Ok(b) => b,
        Err(e) => return (0, Err(failure(&url, e))),
    };
    if let Some(pool) = &ctx.verifier {
        return read_ahead(f, &mut body, &url, pool).await;
    }
    // Every batch buffer has the same capacity, so the pool hands them back.
    let batch_cap = (WRITE_BATCH * ob.block_size().bytes()) as usize;
    let mut batch = Batch {
        buf: ctx.writer.buffer(batch_cap),
        first: req.first_block,
        blocks: 0,
    };
    let mut k = 0u64;
    let stopped = loop {
        if k == req.blocks {
            break Ok(());
        }
        let block = req.first_block + k;
        let block_len = ob.block_range(block).1 as usize;
        // A block for other stores than the batch's, no room left, or a short tail block
        // (written on its own: O_DIRECT takes only whole pages, and a batch with a short
        // tail would go through the page cache whole): the batch goes first.
        let short = !block_len.is_multiple_of(crate::write::ALIGN);
        let flush = batch.blocks > 0
            && (req.writes[k as usize] != req.writes[(batch.first - req.first_block) as usize]
                || batch.blocks == WRITE_BATCH
                || short);
        if flush && let Err(e) = batch.submit(f, batch_cap).await {
            break Err(e);
        }
        let start = batch.buf.len();
        if let Err(e) =
            read_block(ctx, req.source, &mut body, &mut batch.buf, block_len, &url).await
        {
            break Err(e);
        }
        if ob
            .verify_block(block, &batch.buf.as_slice()[start..start + block_len])
            .is_err()
        {
            break Err(RequestFailure::BadBlock);
        }
        if batch.blocks == 0 {
            batch.first = block;
        }
        batch.blocks += 1;
        k += 1;
        if short && let Err(e) = batch.submit(f, batch_cap).await {
            break Err(e);
        }
        if k == req.blocks && body.has_more() {
            let why = format!("{url}: body longer than asked");
            break Err(RequestFailure::Lied(why));
        }
    };
    // What verified is written, however the request ended (an unverified tail in the
    // buffer is not part of the batch: the write covers the batch's blocks only).
    let result = match batch.submit(f, batch_cap).await {
        Err(e) if stopped.is_ok() => Err(e),
        _ => stopped,
    };
    batch.buf.recycle();
    (k, result)
}

/// Verified blocks of a request not yet submitted, in one buffer.
struct Batch {
    buf: AlignedBuf,
    /// The first block in `buf`.
    first: u64,
    /// Verified blocks in `buf`.
    blocks: u64,
}

impl Batch {
    /// Submits the batch's blocks (waiting for write slots, one per block and store) and
    /// starts the next batch in a fresh buffer of `next_cap` bytes.
    async fn submit<R: RangeSource, W: BlockWriter, S: StoreState>(
        &mut self,
        f: &mut Fetch<'_, R, W, S>,
        next_cap: usize,
    ) -> std::result::Result<(), RequestFailure> {
        if self.blocks == 0 {
            return Ok(());
        }
        let ob = &f.req.outboard;
        let (start, _) = ob.block_range(self.first);
        let last = ob.block_range(self.first + self.blocks - 1);
        let len = (last.0 + last.1 - start) as usize;
        let mut full = std::mem::replace(&mut self.buf, f.ctx.writer.buffer(next_cap));
        // Bytes read past the batch's blocks (the next block, begun) move to the new buffer.
        if full.len() > len {
            self.buf.extend_from_slice(&full.as_slice()[len..]);
            full.truncate(len);
        }
        write_blocks(f, (self.first, self.blocks), full).await?;
        self.first += self.blocks;
        self.blocks = 0;
        Ok(())
    }
}

/// Waits for write slots (one per block and store: only when the disks are MAX_WRITES
/// blocks behind), then submits verified consecutive blocks (`blocks`: the first and how
/// many, exactly the bytes of `buf`).
async fn write_blocks<R: RangeSource, W: BlockWriter, S: StoreState>(
    f: &mut Fetch<'_, R, W, S>,
    blocks: (u64, u64),
    buf: AlignedBuf,
) -> std::result::Result<(), RequestFailure> {
    let (ctx, req) = (f.ctx, f.req);
    let stores = &req.writes[(blocks.0 - req.first_block) as usize];
    let slots = (stores.len().max(1) as u64 * blocks.1) as u32;
    let Ok(permit) = ctx.writes.clone().acquire_many_owned(slots).await else {
        return Err(RequestFailure::Transport("write slots closed".into()));
    };
    let written = submit_blocks(f, blocks, buf, stores, permit);
    f.writes.push(written);
    Ok(())
}

/// Reads `len` more bytes of `body` into `buf`, paced under the source's cap, or says why
/// it could not (a stall, an early end, a transport error).
async fn read_block<R: RangeSource, W, S>(
    ctx: &Ctx<R, W, S>,
    source: usize,
    body: &mut impl RangeBody,
    buf: &mut AlignedBuf,
    len: usize,
    url: &str,
) -> std::result::Result<(), RequestFailure> {
    let timeout = ctx.sources.timeout();
    let end = buf.len() + len;
    while buf.len() < end {
        let have = buf.len();
        let room = &mut buf.spare_mut()[..end - have];
        let n = match tokio::time::timeout(timeout, body.read(room)).await {
            Err(_) => {
                let why = format!("{url}: stalled for {timeout:?}");
                return Err(RequestFailure::Transport(why));
            }
            Ok(Ok(0)) => return Err(RequestFailure::Lied(format!("{url}: body ended early"))),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(failure(url, e)),
        };
        buf.advance(n);
        let wait = lock(&ctx.pacers[source]).take(n as u64, ctx.pace_now());
        if let Some(until) = wait {
            tokio::time::sleep(until.since(ctx.pace_now())).await;
        }
    }
    Ok(())
}

/// A block read ahead of its verification: the pool answers with its buffer and whether
/// it verified.
type Verdict = oneshot::Receiver<(AlignedBuf, bool)>;

/// [`read_body`] for one stream faster than a core can hash: each block, once read, is
/// verified on the verify pool while the next ones are read (up to two blocks per pool
/// thread ahead); verdicts are taken in block order and each verified block is written then, so
/// writes keep the stream's order. A block that fails verification stops the request
/// there; the blocks before it are written, as on the reading task.
async fn read_ahead<R: RangeSource, W: BlockWriter, S: StoreState>(
    f: &mut Fetch<'_, R, W, S>,
    body: &mut R::Body,
    url: &str,
    pool: &rayon::ThreadPool,
) -> (u64, std::result::Result<(), RequestFailure>) {
    let (ctx, req) = (f.ctx, f.req);
    let ob = &req.outboard;
    // Two blocks per thread: one verifying, one read and waiting its turn.
    let depth = 2 * pool.current_num_threads();
    let mut ahead: VecDeque<(u64, Verdict)> = VecDeque::new();
    let mut read = 0u64;
    let mut verified = 0u64;
    let mut stopped = Ok(());
    loop {
        // The oldest verdict, when the pipeline is full or nothing more is to be read.
        let done_reading = read == req.blocks || stopped.is_err();
        if ahead.len() >= depth || (done_reading && !ahead.is_empty()) {
            let Some((block, verdict)) = ahead.pop_front() else {
                break;
            };
            match verdict.await {
                Ok((buf, true)) => {
                    if let Err(e) = write_blocks(f, (block, 1), buf).await {
                        stopped = Err(e);
                        break;
                    }
                    verified += 1;
                }
                Ok((buf, false)) => {
                    buf.recycle();
                    stopped = Err(RequestFailure::BadBlock);
                    break;
                }
                Err(_) => {
                    stopped = Err(RequestFailure::Transport("the verify pool is gone".into()));
                    break;
                }
            }
            continue;
        }
        if done_reading {
            break;
        }
        let block = req.first_block + read;
        let len = ob.block_range(block).1 as usize;
        let mut buf = ctx.writer.buffer(len);
        if let Err(e) = read_block(ctx, req.source, body, &mut buf, len, url).await {
            buf.recycle();
            stopped = Err(e);
            continue;
        }
        read += 1;
        if read == req.blocks && body.has_more() {
            stopped = Err(RequestFailure::Lied(format!(
                "{url}: body longer than asked"
            )));
        }
        let (tx, rx) = oneshot::channel();
        let ob = ob.clone();
        pool.spawn(move || {
            let ok = ob.verify_block(block, buf.as_slice()).is_ok();
            let _ = tx.send((buf, ok));
        });
        ahead.push_back((block, rx));
    }
    // Blocks read but not written (after a bad block): their buffers come back as the
    // pool drops its answers.
    drop(ahead);
    (verified, stopped)
}

fn failure(url: &str, e: NetError) -> RequestFailure {
    match e {
        NetError::Lied(why) => RequestFailure::Lied(why),
        NetError::NotFound => RequestFailure::NotFound,
        NetError::Refused(why) => RequestFailure::Refused(format!("{url}: {why}")),
        NetError::Transport(why) => RequestFailure::Transport(format!("{url}: {why}")),
    }
}

/// Submits verified blocks' writes (`blocks`: the first and how many, consecutive, in
/// `data`) to every store that lacks them (a copy per extra store: an O_DIRECT write
/// consumes its buffer). The task answers `Written` per block and store and gives the write
/// slots back as the writes complete, not when the request gets round to it.
fn submit_blocks<R: RangeSource, W: BlockWriter, S: StoreState>(
    f: &Fetch<'_, R, W, S>,
    blocks: (u64, u64),
    data: AlignedBuf,
    stores: &[usize],
    permit: OwnedSemaphorePermit,
) -> tokio::task::JoinHandle<()> {
    let (ctx, req, id, files, tx) = (f.ctx, f.req, f.id, f.files, f.tx);
    let (first, count) = blocks;
    let (offset, _) = req.outboard.block_range(first);
    let mut data = Some(data);
    let mut pending = Vec::with_capacity(stores.len());
    for (k, &s) in stores.iter().enumerate() {
        let buf = if k + 1 == stores.len() {
            data.take()
        } else {
            data.as_ref().map(|d| {
                let mut copy = ctx.writer.buffer(d.len());
                copy.extend_from_slice(d.as_slice());
                copy
            })
        };
        let (Some(buf), Some(Some(file))) = (buf, files.get(s)) else {
            pending.push((s, None));
            continue;
        };
        pending.push((s, Some(ctx.writer.write(file, offset, buf))));
    }
    if let Some(unused) = data {
        unused.recycle();
    }
    let (ctx, tx, file) = (ctx.clone(), tx.clone(), req.file);
    tokio::spawn(async move {
        let _permit = permit;
        for (store, write) in pending {
            let result = match write {
                Some(w) => w.await,
                None => Err(anyhow!("the file is not open in store {store}")),
            };
            if let Err(e) = &result {
                // Kept for the store-health check: a disk that failed a write is suspect.
                let record = WriteErrorRecord {
                    time: super::wall_now().unix_secs(),
                    id,
                    error: format!("{e:#}"),
                };
                if let Err(log) = ctx.stores[store].record_write_error(&record) {
                    tracing::warn!("cannot record the write error: {log}");
                }
            }
            let result = result.map_err(|e| format!("{e:#}"));
            for block in first..first + count {
                let _ = tx.send(Event::Written {
                    file,
                    block,
                    store,
                    result: result.clone(),
                });
            }
        }
    })
}
