//! The fill's range sources behind a trait: the production one over [`Remotes`] (HTTP and
//! object storage), and, for tests, sources in memory that lie, truncate, stall or lack
//! files, so the driver itself runs against misbehaving sources without sockets.

use std::future::Future;
use std::time::Duration;

use std::path::Path;

use anyhow::Result;
use bytes::Bytes;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use anyhow::Context;
use fill_core::ContentId;
use fill_core::fill::{Prepared, prepare};
use fill_core::outboard::Outboard;
use fill_store::store::{PartialState, Store, WriteErrorRecord};

use crate::net::{Body, NetError};
use crate::remotes::Remotes;
use crate::write::{AlignedBuf, WriteFile, Writer};

/// Where verified blocks are written: io_uring with O_DIRECT or positioned writes in
/// production ([`Writer`]); in memory, with faults and crashes, in tests.
pub trait BlockWriter: Clone + Send + Sync + 'static {
    /// A file open for writing.
    type File: Send + Sync + 'static;
    /// An empty buffer for at least `cap` bytes of blocks to write.
    fn buffer(&self, cap: usize) -> AlignedBuf {
        AlignedBuf::with_capacity(cap)
    }
    /// Opens a (preallocated) file for writing blocks.
    fn open(&self, path: &Path) -> impl Future<Output = Result<Self::File>> + Send;
    /// Writes `buf` at `offset`: submitted now, the future says when it completed.
    fn write(
        &self,
        file: &Self::File,
        offset: u64,
        buf: AlignedBuf,
    ) -> impl Future<Output = Result<()>> + Send + 'static;
    /// Makes every write to `file` completed so far durable.
    fn sync(&self, file: &Self::File) -> impl Future<Output = Result<()>> + Send;
    /// Done with `file`.
    fn close(&self, file: &Self::File);
    /// What writes, for the report.
    fn description(&self) -> String;
}

impl BlockWriter for Writer {
    type File = WriteFile;

    fn buffer(&self, cap: usize) -> AlignedBuf {
        Writer::buffer(self, cap)
    }

    async fn open(&self, path: &Path) -> Result<WriteFile> {
        Writer::open(self, path).await
    }

    fn write(
        &self,
        file: &WriteFile,
        offset: u64,
        buf: AlignedBuf,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        Writer::write(self, file, offset, buf)
    }

    async fn sync(&self, file: &WriteFile) -> Result<()> {
        Writer::sync(self, file).await
    }

    fn close(&self, file: &WriteFile) {
        Writer::close(self, file);
    }

    fn description(&self) -> String {
        self.description.to_string()
    }
}

/// What the fill does to a store besides writing blocks: evictions, preparing a file
/// (resumed or begun, older versions copied), recording block maps, completing files, and
/// the write-error journal. The disk [`Store`] in production; in memory in tests. Calls
/// block: the driver makes them on blocking threads.
pub trait StoreState: Clone + Send + Sync + 'static {
    /// Evicts files (catalog first, then their data).
    fn evict(&self, ids: &[ContentId]) -> Result<()>;
    /// The stored bytes of a partial file's outboard (checked by the machine).
    fn partial_outboard_bytes(&self, id: &ContentId) -> Result<Vec<u8>>;
    /// Resumes a file's interrupted fill (recorded blocks verified again) or begins one
    /// (preallocated, an empty block map), then copies what `older` shares with it.
    fn prepare(
        &self,
        ob: &Outboard,
        name: &str,
        resume: bool,
        older: Option<ContentId>,
    ) -> Result<Prepared>;
    /// Where the writer writes a partial file's data.
    fn partial_data_path(&self, id: &ContentId) -> PathBuf;
    /// Records a file's block map (its blocks are durable).
    fn record(&self, state: &PartialState) -> Result<()>;
    /// Moves a file whose every block is durable and verified into the store's content.
    fn complete(&self, state: &PartialState) -> Result<()>;
    /// Keeps a failed write for the store-health check.
    fn record_write_error(&self, record: &WriteErrorRecord) -> Result<()>;
}

impl StoreState for Store {
    fn evict(&self, ids: &[ContentId]) -> Result<()> {
        Store::evict(self, ids).map_err(Into::into)
    }

    fn partial_outboard_bytes(&self, id: &ContentId) -> Result<Vec<u8>> {
        Store::partial_outboard_bytes(self, id).map_err(Into::into)
    }

    fn prepare(
        &self,
        ob: &Outboard,
        name: &str,
        resume: bool,
        older: Option<ContentId>,
    ) -> Result<Prepared> {
        prepare_blocking(self, ob, name, resume, older)
    }

    fn partial_data_path(&self, id: &ContentId) -> PathBuf {
        Store::partial_data_path(self, id)
    }

    fn record(&self, state: &PartialState) -> Result<()> {
        self.save_partial(state).map_err(Into::into)
    }

    fn complete(&self, state: &PartialState) -> Result<()> {
        self.complete_partial(state)
            .with_context(|| format!("cannot complete {}", state.file.id))
    }

    fn record_write_error(&self, record: &WriteErrorRecord) -> Result<()> {
        Store::record_write_error(self, record).map_err(Into::into)
    }
}

fn prepare_blocking(
    store: &Store,
    ob: &Outboard,
    name: &str,
    resume: bool,
    older: Option<ContentId>,
) -> Result<Prepared> {
    let id = ob.id();
    if resume && let Some(mut state) = store.partial(&id)? {
        if state.file.size == ob.size() && state.file.block == ob.block_size() {
            // The stored outboard is not synced before the first record: a crash may have
            // lost it (the machine then took the outboard from a source).
            store.repair_partial_outboard(ob)?;
            let path = store.partial_data_path(&id);
            let data = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let dropped = prepare::reverify(ob, &mut state.file, |off, buf| {
                data.read_exact_at(buf, off).is_ok()
            });
            if dropped > 0 {
                tracing::warn!(
                    "{id}: {dropped} blocks recorded as verified did not verify; fetching them again"
                );
                store.save_partial(&state)?;
            }
            return Ok(Prepared {
                map: state.file,
                copied: 0,
            });
        }
        // Filled with another block size: begun again.
        store
            .evict(&[id])
            .context("cannot remove a mismatched partial file")?;
    }
    let mut state = store.begin_partial(ob, name)?;
    let copied = match older {
        Some(old) => copy_shared(store, ob, &old, &mut state)?,
        None => 0,
    };
    Ok(Prepared {
        map: state.file,
        copied,
    })
}

/// Copies into a new partial file the blocks its older version shares with it (see
/// [`prepare::copy_shared`]), then syncs and records them.
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
    if ob.shared_blocks(&old_ob).is_empty() {
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
    let copied = prepare::copy_shared(
        ob,
        &old_ob,
        &mut state.file,
        |off, buf| src.read_exact_at(buf, off).is_ok(),
        |off, bytes| {
            dst.write_all_at(bytes, off)
                .with_context(|| format!("cannot write {}", to.display()))
        },
    )?;
    if copied > 0 {
        dst.sync_data()
            .with_context(|| format!("cannot sync {}", to.display()))?;
        store.save_partial(state)?;
    }
    Ok(copied)
}

/// A ranged response body being read.
pub trait RangeBody: Send {
    /// Reads the next bytes into `out`; 0 at the end of the body.
    fn read(&mut self, out: &mut [u8]) -> impl Future<Output = Result<usize, NetError>> + Send;
    /// Whether bytes arrived beyond what was asked (a body longer than the range).
    fn has_more(&self) -> bool;
}

/// Where a fill's bytes come from: source `source` (an index of the fill's sources) at a
/// path relative to its base (`outboard/<id>`, `content/<id>`).
pub trait RangeSource: Send + Sync + 'static {
    /// What a ranged request reads.
    type Body: RangeBody;
    /// A whole small body (an outboard), at most `limit` bytes.
    fn get_small(
        &self,
        source: usize,
        rel: &str,
        limit: u64,
    ) -> impl Future<Output = Result<Bytes, NetError>> + Send;
    /// `len` bytes at `offset` of a file of `size` bytes, checked (status, range, length).
    fn get_range(
        &self,
        source: usize,
        rel: &str,
        offset: u64,
        len: u64,
        size: u64,
    ) -> impl Future<Output = Result<Self::Body, NetError>> + Send;
    /// How long a source may stay silent before the request is given up.
    fn timeout(&self) -> Duration;
    /// A source's address, for messages.
    fn url(&self, source: usize) -> &str;
}

impl RangeBody for Body {
    async fn read(&mut self, out: &mut [u8]) -> Result<usize, NetError> {
        Body::read(self, out).await
    }

    fn has_more(&self) -> bool {
        Body::has_more(self)
    }
}

/// The production sources: each reached over HTTP or object storage ([`Remotes`]).
#[derive(Debug)]
pub struct RemoteSources {
    /// How each source is reached.
    pub remotes: Remotes,
    /// Each source's base URL.
    pub urls: Vec<String>,
}

impl RangeSource for RemoteSources {
    type Body = Body;

    async fn get_small(&self, source: usize, rel: &str, limit: u64) -> Result<Bytes, NetError> {
        self.remotes
            .get_small(source, &self.urls[source], rel, false, limit)
            .await
    }

    async fn get_range(
        &self,
        source: usize,
        rel: &str,
        offset: u64,
        len: u64,
        size: u64,
    ) -> Result<Body, NetError> {
        self.remotes
            .get_range(source, &self.urls[source], rel, offset, len, size)
            .await
    }

    fn timeout(&self) -> Duration {
        self.remotes.timeout()
    }

    fn url(&self, source: usize) -> &str {
        &self.urls[source]
    }
}

#[cfg(test)]
pub mod mem {
    //! Sources in memory, for the driver's tests.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use fill_store::lock;

    /// How a source in memory misbehaves.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Misbehaviour {
        /// Serves what it holds, as it is.
        Honest,
        /// Flips one byte of every body it sends.
        FlipsBytes,
        /// Ends every body after `n` bytes.
        Truncates(usize),
        /// Sends `n` bytes of every body, then nothing, forever.
        Stalls(usize),
    }

    /// One source: files by id (data and outboard bytes) and how it behaves.
    #[derive(Debug)]
    pub struct MemSource {
        /// Its name in messages.
        pub url: String,
        /// `content/<id>` and `outboard/<id>` it can serve.
        pub files: HashMap<String, Bytes>,
        /// How it misbehaves.
        pub behaviour: Misbehaviour,
        /// Ranged requests it answered.
        pub requests: Mutex<u64>,
    }

    impl MemSource {
        /// A source holding `files` (data), with their outboards at `block` bytes.
        pub fn new(url: &str, files: &[&[u8]], behaviour: Misbehaviour) -> Self {
            let block = fill_core::BlockSize::DEFAULT;
            let mut map = HashMap::new();
            for f in files {
                let ob = fill_core::Outboard::compute(f, block);
                map.insert(format!("content/{}", ob.id()), Bytes::copy_from_slice(f));
                map.insert(format!("outboard/{}", ob.id()), Bytes::from(ob.to_bytes()));
            }
            Self {
                url: url.into(),
                files: map,
                behaviour,
                requests: Mutex::new(0),
            }
        }
    }

    /// A writer in memory with faults: a write completes into memory (the page cache), a
    /// sync applies what completed to the file and makes it durable; the `fail_write`-th
    /// write fails with `write_error`, the `fail_sync`-th sync with EIO; after `crash`, what
    /// was not synced is gone and every call fails, as after a power cut.
    #[derive(Debug, Clone, Default)]
    pub struct MemWriter {
        state: std::sync::Arc<Mutex<WriterState>>,
        /// Where syncs land: a disk in memory, or (none) the real files.
        disk: Option<MemDisk>,
    }

    #[derive(Debug, Default)]
    struct WriterState {
        writes: u64,
        syncs: u64,
        fail_write: Option<(u64, &'static str)>,
        fail_sync: Option<u64>,
        crash_after_writes: Option<u64>,
        crashed: bool,
    }

    /// A file of the writer in memory: its path and the writes not yet synced.
    #[derive(Debug)]
    pub struct MemFile {
        path: std::path::PathBuf,
        pending: Mutex<Vec<(u64, Vec<u8>)>>,
    }

    impl MemWriter {
        /// A writer whose syncs land on `disk` (a [`MemStore`]'s) instead of real files.
        pub fn on(disk: &MemDisk) -> Self {
            Self {
                disk: Some(disk.clone()),
                ..Self::default()
            }
        }

        /// The `n`-th write (from 1) fails with `error` (as the OS words it).
        pub fn fail_write(&self, n: u64, error: &'static str) {
            lock(&self.state).fail_write = Some((n, error));
        }

        /// The `n`-th sync (from 1) fails with EIO.
        pub fn fail_sync(&self, n: u64) {
            lock(&self.state).fail_sync = Some(n);
        }

        /// Crashes once `n` writes have completed: unsynced writes are lost, and every
        /// later call fails.
        pub fn crash_after_writes(&self, n: u64) {
            lock(&self.state).crash_after_writes = Some(n);
        }
    }

    impl BlockWriter for MemWriter {
        type File = MemFile;

        async fn open(&self, path: &Path) -> Result<MemFile> {
            anyhow::ensure!(!lock(&self.state).crashed, "crashed");
            let exists = match &self.disk {
                Some(d) => lock(&d.0).contains_key(path),
                None => path.exists(),
            };
            anyhow::ensure!(exists, "{} does not exist", path.display());
            Ok(MemFile {
                path: path.to_owned(),
                pending: Mutex::new(Vec::new()),
            })
        }

        fn write(
            &self,
            file: &MemFile,
            offset: u64,
            buf: AlignedBuf,
        ) -> impl Future<Output = Result<()>> + Send + 'static {
            let result = {
                let mut st = lock(&self.state);
                st.writes += 1;
                if st.crash_after_writes.is_some_and(|n| st.writes > n) {
                    st.crashed = true;
                }
                match st.fail_write {
                    _ if st.crashed => Err(anyhow::anyhow!("crashed")),
                    Some((n, e)) if n == st.writes => Err(anyhow::anyhow!("{e}")),
                    _ => {
                        lock(&file.pending).push((offset, buf.as_slice().to_vec()));
                        Ok(())
                    }
                }
            };
            async move { result }
        }

        async fn sync(&self, file: &MemFile) -> Result<()> {
            use std::os::unix::fs::FileExt;
            {
                let mut st = lock(&self.state);
                anyhow::ensure!(!st.crashed, "crashed");
                st.syncs += 1;
                if st.fail_sync == Some(st.syncs) {
                    anyhow::bail!("Input/output error (os error 5)");
                }
            }
            let writes = std::mem::take(&mut *lock(&file.pending));
            if let Some(disk) = &self.disk {
                let mut files = lock(&disk.0);
                let data = files
                    .get_mut(&file.path)
                    .ok_or_else(|| anyhow::anyhow!("{} is gone", file.path.display()))?;
                for (offset, bytes) in writes {
                    let end = offset as usize + bytes.len();
                    anyhow::ensure!(end <= data.len(), "write past the end of the file");
                    data[offset as usize..end].copy_from_slice(&bytes);
                }
                return Ok(());
            }
            let f = std::fs::OpenOptions::new().write(true).open(&file.path)?;
            for (offset, bytes) in writes {
                f.write_all_at(&bytes, offset)?;
            }
            f.sync_data()?;
            Ok(())
        }

        fn close(&self, _file: &MemFile) {}

        fn description(&self) -> String {
            "in memory (tests)".into()
        }
    }

    /// A disk in memory: each file's durable bytes, by path.
    #[derive(Debug, Clone, Default)]
    pub struct MemDisk(std::sync::Arc<Mutex<HashMap<std::path::PathBuf, Vec<u8>>>>);

    /// A store in memory, on a [`MemDisk`] it shares with a [`MemWriter::on`] it: block maps
    /// and completions are atomic; a record or completion whose blocks' durable bytes do not
    /// verify is refused (so a test sees any block recorded before it was durable).
    #[derive(Debug, Clone, Default)]
    pub struct MemStore {
        /// The disk its partial files' data lives on.
        pub disk: MemDisk,
        state: std::sync::Arc<Mutex<MemState>>,
    }

    #[derive(Debug, Default)]
    struct MemState {
        content: std::collections::BTreeMap<ContentId, (String, Vec<u8>)>,
        partials: std::collections::BTreeMap<ContentId, (Outboard, PartialState)>,
        write_errors: Vec<WriteErrorRecord>,
    }

    impl MemStore {
        /// What it holds, as the delta reads it: a catalog of its complete files, its
        /// partial files sorted by id.
        pub fn inventory(&self) -> (Vec<u8>, Vec<fill_core::PartialFile>) {
            let st = lock(&self.state);
            let mut b = fill_core::CatalogBuilder::new();
            for (id, (name, data)) in &st.content {
                let _ = b.push(*id, data.len() as u64, 0.0, name);
            }
            let partial = st.partials.values().map(|(_, p)| p.file.clone()).collect();
            (b.finish().unwrap_or_default(), partial)
        }

        /// A complete file's bytes.
        pub fn content(&self, id: &ContentId) -> Option<Vec<u8>> {
            lock(&self.state).content.get(id).map(|c| c.1.clone())
        }

        /// The write errors kept.
        pub fn write_errors(&self) -> usize {
            lock(&self.state).write_errors.len()
        }

        /// Each recorded block of `state` verifies from the durable bytes.
        fn check_durable(&self, ob: &Outboard, state: &PartialState) -> Result<()> {
            let path = self.partial_data_path(&state.file.id);
            let files = lock(&self.disk.0);
            let data = files.get(&path).ok_or_else(|| anyhow::anyhow!("no data"))?;
            for b in (0..state.file.block_count()).filter(|&b| state.file.is_verified(b)) {
                let (off, len) = ob.block_range(b);
                let bytes = &data[off as usize..(off + len) as usize];
                anyhow::ensure!(
                    ob.verify_block(b, bytes).is_ok(),
                    "block {b} of {} recorded before its bytes were durable",
                    state.file.id
                );
            }
            Ok(())
        }
    }

    impl StoreState for MemStore {
        fn evict(&self, ids: &[ContentId]) -> Result<()> {
            let mut st = lock(&self.state);
            for id in ids {
                st.content.remove(id);
                st.partials.remove(id);
                lock(&self.disk.0).remove(&self.partial_data_path(id));
            }
            Ok(())
        }

        fn partial_outboard_bytes(&self, id: &ContentId) -> Result<Vec<u8>> {
            let st = lock(&self.state);
            let (ob, _) = st
                .partials
                .get(id)
                .ok_or_else(|| anyhow::anyhow!("no partial {id}"))?;
            Ok(ob.to_bytes())
        }

        fn prepare(
            &self,
            ob: &Outboard,
            name: &str,
            resume: bool,
            older: Option<ContentId>,
        ) -> Result<Prepared> {
            let id = ob.id();
            let path = self.partial_data_path(&id);
            let mut st = lock(&self.state);
            if resume && let Some((_, state)) = st.partials.get_mut(&id) {
                let files = lock(&self.disk.0);
                let data = files.get(&path).ok_or_else(|| anyhow::anyhow!("no data"))?;
                prepare::reverify(ob, &mut state.file, |off, buf| {
                    buf.copy_from_slice(&data[off as usize..off as usize + buf.len()]);
                    true
                });
                return Ok(Prepared {
                    map: state.file.clone(),
                    copied: 0,
                });
            }
            let mut state = PartialState {
                file: fill_core::PartialFile::empty(id, ob.size(), ob.block_size()),
                name: name.to_owned(),
            };
            let mut data = vec![0u8; ob.size() as usize];
            let old = older.and_then(|o| st.content.get(&o).map(|c| c.1.clone()));
            let old_ob = old.as_ref().map(|d| Outboard::compute(d, ob.block_size()));
            let copied = match (old, old_ob) {
                (Some(old), Some(old_ob)) => prepare::copy_shared(
                    ob,
                    &old_ob,
                    &mut state.file,
                    |off, buf| match old.get(off as usize..off as usize + buf.len()) {
                        Some(b) => {
                            buf.copy_from_slice(b);
                            true
                        }
                        None => false,
                    },
                    |off, bytes| {
                        data[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
                        Ok::<_, anyhow::Error>(())
                    },
                )?,
                _ => 0,
            };
            lock(&self.disk.0).insert(path, data);
            st.partials.insert(id, (ob.clone(), state.clone()));
            Ok(Prepared {
                map: state.file,
                copied,
            })
        }

        fn partial_data_path(&self, id: &ContentId) -> std::path::PathBuf {
            std::path::PathBuf::from(format!("mem/partial/{id}"))
        }

        fn record(&self, state: &PartialState) -> Result<()> {
            let ob = {
                let st = lock(&self.state);
                let (ob, _) = st
                    .partials
                    .get(&state.file.id)
                    .ok_or_else(|| anyhow::anyhow!("no partial {}", state.file.id))?;
                ob.clone()
            };
            self.check_durable(&ob, state)?;
            let mut st = lock(&self.state);
            if let Some(p) = st.partials.get_mut(&state.file.id) {
                p.1 = state.clone();
            }
            Ok(())
        }

        fn complete(&self, state: &PartialState) -> Result<()> {
            let id = state.file.id;
            anyhow::ensure!(
                state.file.verified_count() == state.file.block_count(),
                "cannot complete {id}: blocks missing"
            );
            self.record(state)?;
            let path = self.partial_data_path(&id);
            let data = lock(&self.disk.0)
                .remove(&path)
                .ok_or_else(|| anyhow::anyhow!("no data"))?;
            anyhow::ensure!(ContentId::of(&data) == id, "{id}: bytes are not its id");
            let mut st = lock(&self.state);
            st.partials.remove(&id);
            st.content.insert(id, (state.name.clone(), data));
            Ok(())
        }

        fn record_write_error(&self, record: &WriteErrorRecord) -> Result<()> {
            lock(&self.state).write_errors.push(record.clone());
            Ok(())
        }
    }

    /// The sources of a fill, in the order of its sources.
    #[derive(Debug)]
    pub struct MemSources {
        /// The sources.
        pub sources: Vec<MemSource>,
        /// The silence after which a request is given up.
        pub timeout: Duration,
    }

    /// A body in memory.
    #[derive(Debug)]
    pub struct MemBody {
        data: Bytes,
        /// Bytes after which it stalls, if it does.
        stall_at: Option<usize>,
    }

    impl RangeBody for MemBody {
        async fn read(&mut self, out: &mut [u8]) -> Result<usize, NetError> {
            if self.stall_at == Some(0) {
                std::future::pending::<()>().await;
            }
            let mut n = out.len().min(self.data.len());
            if let Some(left) = self.stall_at.as_mut() {
                n = n.min(*left);
                *left -= n;
            }
            out[..n].copy_from_slice(&self.data.split_to(n));
            Ok(n)
        }

        fn has_more(&self) -> bool {
            false
        }
    }

    impl RangeSource for MemSources {
        type Body = MemBody;

        async fn get_small(&self, source: usize, rel: &str, limit: u64) -> Result<Bytes, NetError> {
            let s = &self.sources[source];
            match s.files.get(rel) {
                Some(b) if b.len() as u64 <= limit => Ok(b.clone()),
                Some(_) => Err(NetError::Lied(format!("{rel}: longer than {limit} bytes"))),
                None => Err(NetError::NotFound),
            }
        }

        async fn get_range(
            &self,
            source: usize,
            rel: &str,
            offset: u64,
            len: u64,
            size: u64,
        ) -> Result<MemBody, NetError> {
            let s = &self.sources[source];
            *s.requests.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            let Some(file) = s.files.get(rel) else {
                return Err(NetError::NotFound);
            };
            if file.len() as u64 != size || offset + len > size {
                return Err(NetError::Lied(format!("{rel}: not {size} bytes")));
            }
            let mut body = file
                .slice(offset as usize..(offset + len) as usize)
                .to_vec();
            let mut stall_at = None;
            match s.behaviour {
                Misbehaviour::Honest => {}
                Misbehaviour::FlipsBytes => body[len as usize / 2] ^= 0x10,
                Misbehaviour::Truncates(n) => body.truncate(n),
                Misbehaviour::Stalls(n) => stall_at = Some(n),
            }
            Ok(MemBody {
                data: Bytes::from(body),
                stall_at,
            })
        }

        fn timeout(&self) -> Duration {
            self.timeout
        }

        fn url(&self, source: usize) -> &str {
            &self.sources[source].url
        }
    }
}
