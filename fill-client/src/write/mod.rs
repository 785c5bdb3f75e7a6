//! Block writers: io_uring with `O_DIRECT` on a ring the fill's tasks share ([`uring`]),
//! or positioned writes (`pwrite`) when io_uring or `O_DIRECT` is refused.
//!
//! [`Writer::start`] probes io_uring and `O_DIRECT` in the store's staging directory and
//! says which backend it chose and why. With io_uring, block buffers come from an arena
//! registered with the ring ([`Writer::buffer`]); the fill runs up to 16 requests, each
//! writing as blocks verify, and keeps as many writes in flight as its write slots allow.
//! `O_DIRECT` needs offsets and lengths aligned to 4096 bytes: a short tail block, or a store
//! with blocks under 4 KiB, goes through the ordinary descriptor instead.
//!
//! This module and [`uring`] hold the client's only `unsafe`: aligned allocation, the
//! buffers' memory, and the ring's entries that point into it.

#![allow(unsafe_code)]

mod uring;

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use tokio::sync::oneshot;

use uring::{Arena, Ring};

/// Alignment of `O_DIRECT` buffers, offsets and lengths.
pub const ALIGN: usize = 4096;

/// A heap buffer whose start is 4096-aligned and whose capacity is a multiple of 4096.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    /// The arena chunk it is, or none for a buffer of its own.
    home: Option<(Arc<Arena>, u16)>,
}

// SAFETY: the buffer owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read, like &Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({}/{})", self.len, self.cap)
    }
}

/// Freed buffers kept for reuse: a fill allocates one per block, and fresh large
/// allocations cost page faults and zeroing (a fifth of the client's time before the pool).
static POOL: std::sync::Mutex<Vec<AlignedBuf>> = std::sync::Mutex::new(Vec::new());
/// Bytes of buffers the pool keeps at most: what a fill has in flight (its write slots and
/// a batch per request, docs/benchmarks.md).
const POOL_MAX_BYTES: usize = 128 << 20;

impl AlignedBuf {
    /// An empty buffer with room for at least `cap` bytes (at least one page).
    pub fn with_capacity(cap: usize) -> Self {
        let cap = cap.max(1).next_multiple_of(ALIGN);
        {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = pool.iter().rposition(|b| b.cap == cap) {
                let mut b = pool.remove(at);
                b.len = 0;
                return b;
            }
        }
        let layout = Layout::from_size_align(cap, ALIGN).unwrap_or_else(|_| Layout::new::<u8>());
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        Self {
            ptr,
            len: 0,
            cap,
            home: None,
        }
    }

    /// A chunk of an arena, as a buffer (see [`Arena::take`]).
    fn from_arena(ptr: NonNull<u8>, cap: usize, arena: Arc<Arena>, index: u16) -> Self {
        Self {
            ptr,
            len: 0,
            cap,
            home: Some((arena, index)),
        }
    }

    /// The buffer's chunk index when it is a chunk of `arena`.
    fn arena_index(&self, arena: &Arc<Arena>) -> Option<u16> {
        match &self.home {
            Some((home, index)) if Arc::ptr_eq(home, arena) => Some(*index),
            _ => None,
        }
    }

    /// Gives the buffer back for reuse: a chunk to its arena, a buffer of its own to a
    /// pool.
    pub fn recycle(self) {
        if self.home.is_some() {
            return; // Dropping gives the chunk back.
        }
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if pool.iter().map(|b| b.cap).sum::<usize>() + self.cap <= POOL_MAX_BYTES {
            pool.push(self);
        }
    }

    /// Appends bytes; the caller keeps within the capacity (it sizes buffers by block).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let n = data.len().min(self.cap - self.len);
        // SAFETY: `len + n <= cap`, the regions cannot overlap (we own ours exclusively).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), n) };
        self.len += n;
    }

    /// The room after the bytes written so far, to read into (then [`Self::advance`]).
    pub fn spare_mut(&mut self) -> &mut [u8] {
        // SAFETY: the whole capacity is initialised (zeroed at allocation, or bytes of an
        // earlier use of a pooled buffer) and exclusively ours.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len), self.cap - self.len)
        }
    }

    /// Counts `n` more bytes, written through [`Self::spare_mut`], as part of the buffer.
    pub fn advance(&mut self, n: usize) {
        self.len += n.min(self.cap - self.len);
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised (the whole capacity is).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Keeps the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Some((arena, index)) = &self.home {
            arena.give(*index);
            return;
        }
        let layout =
            Layout::from_size_align(self.cap, ALIGN).unwrap_or_else(|_| Layout::new::<u8>());
        // SAFETY: allocated in `with_capacity` with this very layout.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

/// A submitted write, not yet known to be complete.
enum Pending {
    /// The bytes written, or why not; the length asked.
    Uring(oneshot::Receiver<std::io::Result<u32>>, usize),
    Plain(tokio::task::JoinHandle<std::io::Result<()>>),
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring with O_DIRECT when the probe passes, else positioned writes.
    Auto,
    /// io_uring with O_DIRECT, or fail.
    Uring,
    /// Positioned writes.
    Pwrite,
}

/// Bytes per arena chunk: a write batch of the default 1 MiB blocks (fill::tasks).
const ARENA_CHUNK: usize = 4 << 20;
/// Arena chunks: one per request reading (up to 16) and the writes in flight. Fewer
/// would keep more of them warm; more would be taken rarely (docs/benchmarks.md).
const ARENA_CHUNKS: u16 = 16;

/// A file opened for writing blocks.
#[derive(Debug)]
pub struct WriteFile {
    /// The ordinary descriptor: positioned writes, and unaligned writes with io_uring.
    plain: std::fs::File,
    /// The O_DIRECT descriptor, with io_uring.
    direct: Option<Arc<OwnedFd>>,
}

/// The chosen writer.
#[derive(Debug, Clone)]
pub struct Writer {
    uring: Option<Arc<Ring>>,
    /// What was chosen and why, for the report.
    pub description: Arc<String>,
}

fn o_direct() -> i32 {
    rustix::fs::OFlags::DIRECT.bits() as i32
}

impl Writer {
    /// Chooses a backend, probing io_uring and O_DIRECT with a file in `probe_dir`. Must
    /// be called inside the tokio runtime the fill runs on: the ring's completions are
    /// reaped by a task on it.
    pub async fn start(backend: Backend, probe_dir: &Path) -> Result<Self> {
        if backend == Backend::Pwrite {
            return Ok(Self::pwrite(
                "pwrite (positioned writes; chosen with --writer pwrite)".into(),
            ));
        }
        match Self::start_uring(probe_dir).await {
            Ok(w) => Ok(w),
            Err(e) if backend == Backend::Auto => {
                tracing::warn!(
                    "io_uring with O_DIRECT unavailable ({e:#}): falling back to positioned writes"
                );
                Ok(Self::pwrite(format!(
                    "pwrite (io_uring with O_DIRECT refused: {e:#})"
                )))
            }
            Err(e) => Err(e.context("--writer uring: io_uring with O_DIRECT is not available")),
        }
    }

    fn pwrite(description: String) -> Self {
        Self {
            uring: None,
            description: Arc::new(description),
        }
    }

    async fn start_uring(probe_dir: &Path) -> Result<Self> {
        let arena = Arena::new(ARENA_CHUNK, ARENA_CHUNKS);
        let (ring, refused) = Ring::new(arena).context("io_uring setup")?;
        let buffers = format!(
            "{} buffers of {}",
            ARENA_CHUNKS,
            fill_core::size::format_size(ARENA_CHUNK as u64)
        );
        let description = match refused {
            None => format!("io_uring, O_DIRECT, {buffers} registered"),
            Some(e) => {
                tracing::debug!("the ring's buffers are not registered: {e}");
                format!("io_uring, O_DIRECT, {buffers} (not registered: {e})")
            }
        };
        let w = Self {
            uring: Some(Arc::new(ring)),
            description: Arc::new(description),
        };
        // Probe: an aligned O_DIRECT write and a sync in the store's own file system.
        let probe = probe_dir.join(format!("uring-probe-{}", std::process::id()));
        let result = async {
            std::fs::File::create(&probe).context("create the probe file")?;
            let f = w.open(&probe).await?;
            let mut buf = w.buffer(ALIGN);
            buf.extend_from_slice(&[0u8; ALIGN]);
            w.write(&f, 0, buf).await?;
            w.sync(&f).await?;
            w.close(&f);
            anyhow::Ok(())
        }
        .await;
        let _ = std::fs::remove_file(&probe);
        result.map(|()| w)
    }

    /// An empty buffer for at least `cap` bytes of blocks: a chunk of the ring's arena when
    /// one is free and large enough, else one of its own.
    pub fn buffer(&self, cap: usize) -> AlignedBuf {
        self.uring
            .as_ref()
            .filter(|r| cap <= r.arena().chunk())
            .and_then(|r| r.arena().take())
            .unwrap_or_else(|| AlignedBuf::with_capacity(cap))
    }

    /// Opens a file for writing blocks.
    pub async fn open(&self, path: &Path) -> Result<WriteFile> {
        let plain = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let direct = if self.uring.is_some() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(o_direct())
                .open(path)
                .with_context(|| format!("cannot open {} with O_DIRECT", path.display()))?;
            Some(Arc::new(OwnedFd::from(f)))
        } else {
            None
        };
        Ok(WriteFile { plain, direct })
    }

    /// Writes `buf` at `offset`: through io_uring with O_DIRECT when both are aligned, else
    /// with a positioned write. The write is submitted now; the returned future says when it
    /// completed, so a caller can keep several in flight while it reads on.
    pub fn write(
        &self,
        file: &WriteFile,
        offset: u64,
        buf: AlignedBuf,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let aligned = offset.is_multiple_of(ALIGN as u64) && buf.len().is_multiple_of(ALIGN);
        let submitted: Result<Pending> = match (&self.uring, &file.direct) {
            (Some(ring), Some(fd)) if aligned => {
                let len = buf.len();
                ring.write(fd, offset, buf)
                    .map(|rx| Pending::Uring(rx, len))
                    .context("io_uring submission")
            }
            _ => file
                .plain
                .try_clone()
                .context("cannot duplicate a descriptor")
                .map(|plain| {
                    Pending::Plain(tokio::task::spawn_blocking(move || {
                        let r = plain.write_all_at(buf.as_slice(), offset);
                        buf.recycle();
                        r
                    }))
                }),
        };
        async move {
            match submitted? {
                Pending::Uring(rx, len) => {
                    let n = rx
                        .await
                        .map_err(|_| anyhow!("the io_uring writer is gone"))?
                        .with_context(|| format!("O_DIRECT write at {offset}"))?;
                    // A short O_DIRECT write (a full disk, mostly) is a failed write: the
                    // blocks are not recorded and are fetched again.
                    if n as usize != len {
                        return Err(anyhow!(
                            "O_DIRECT write at {offset}: {n} of {len} bytes written"
                        ));
                    }
                    Ok(())
                }
                Pending::Plain(task) => task
                    .await
                    .map_err(|e| anyhow!("write task failed: {e}"))?
                    .with_context(|| format!("write at {offset}")),
            }
        }
    }

    /// Makes every write so far durable. One sync covers both descriptors: `fdatasync`
    /// acts on the file (its inode and page cache), not on the descriptor it is called
    /// through, so the io_uring sync also writes back an unaligned tail written through the
    /// ordinary descriptor.
    pub async fn sync(&self, file: &WriteFile) -> Result<()> {
        if let (Some(ring), Some(fd)) = (&self.uring, &file.direct) {
            let rx = ring.sync(fd).context("io_uring submission")?;
            return rx
                .await
                .map_err(|_| anyhow!("the io_uring writer is gone"))?
                .map(drop)
                .context("sync (io_uring)");
        }
        let plain = file
            .plain
            .try_clone()
            .context("cannot duplicate a descriptor")?;
        tokio::task::spawn_blocking(move || plain.sync_data())
            .await
            .map_err(|e| anyhow!("sync task failed: {e}"))?
            .context("sync")
    }

    /// Done with `file`: its descriptors close when the last write in flight on it ends.
    pub fn close(&self, file: &WriteFile) {
        let _ = file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers() {
        let mut b = AlignedBuf::with_capacity(5000);
        assert_eq!(b.cap, 8192);
        assert_eq!(b.ptr.as_ptr() as usize % ALIGN, 0);
        b.extend_from_slice(b"hello");
        b.extend_from_slice(&[7; 10_000]);
        assert_eq!(b.len(), 8192, "never past the capacity");
        assert_eq!(&b.as_slice()[..5], b"hello");
    }

    #[test]
    fn both_backends_write_what_they_are_given() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            for backend in [Backend::Auto, Backend::Pwrite] {
                let w = Writer::start(backend, dir.path()).await.unwrap();
                let path = dir.path().join("f");
                std::fs::write(&path, vec![0u8; 3 * ALIGN + 100]).unwrap();
                let f = w.open(&path).await.unwrap();
                let mut a = AlignedBuf::with_capacity(2 * ALIGN);
                a.extend_from_slice(&[1u8; 2 * ALIGN]);
                w.write(&f, ALIGN as u64, a).await.unwrap();
                let mut tail = AlignedBuf::with_capacity(100);
                tail.extend_from_slice(&[2u8; 100]);
                w.write(&f, 3 * ALIGN as u64, tail).await.unwrap();
                w.sync(&f).await.unwrap();
                w.close(&f);
                let got = std::fs::read(&path).unwrap();
                assert_eq!(got.len(), 3 * ALIGN + 100, "{}", w.description);
                assert!(got[..ALIGN].iter().all(|&b| b == 0));
                assert!(got[ALIGN..3 * ALIGN].iter().all(|&b| b == 1));
                assert!(got[3 * ALIGN..].iter().all(|&b| b == 2));
            }
        });
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// An io_uring writer probed in a temp dir, and a zeroed file of `len` bytes there.
    async fn uring_and_file(len: usize) -> (tempfile::TempDir, Writer, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::start(Backend::Uring, dir.path()).await.unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; len]).unwrap();
        (dir, w, path)
    }

    /// A pattern that tells where in the file each byte belongs.
    fn pattern(offset: usize, len: usize) -> Vec<u8> {
        (offset..offset + len)
            .map(|i| (i / ALIGN * 7 + i % 251) as u8)
            .collect()
    }

    #[test]
    fn the_ring_keeps_many_writes_in_flight_from_arena_chunks_and_buffers_of_their_own() {
        runtime().block_on(async {
            let piece = 256 << 10;
            // More writes than the arena has chunks: the rest go from buffers of their own.
            let pieces = 2 * usize::from(ARENA_CHUNKS) + 5;
            let (_dir, w, path) = uring_and_file(pieces * piece).await;
            assert!(w.description.contains("io_uring"), "{}", w.description);
            let f = w.open(&path).await.unwrap();
            // Every buffer taken before any is written: the arena runs dry.
            let ring = w.uring.as_ref().unwrap();
            let bufs: Vec<_> = (0..pieces).map(|_| w.buffer(piece)).collect();
            let from_arena = bufs
                .iter()
                .filter(|b| b.arena_index(ring.arena()).is_some())
                .count();
            assert_eq!(
                from_arena,
                usize::from(ARENA_CHUNKS),
                "every chunk, then own buffers"
            );
            let writes: Vec<_> = bufs
                .into_iter()
                .enumerate()
                .map(|(k, mut buf)| {
                    buf.extend_from_slice(&pattern(k * piece, piece));
                    w.write(&f, (k * piece) as u64, buf)
                })
                .collect();
            for write in writes {
                tokio::time::timeout(std::time::Duration::from_secs(20), write)
                    .await
                    .expect("a write never completed")
                    .unwrap();
            }
            w.sync(&f).await.unwrap();
            let got = std::fs::read(&path).unwrap();
            assert!(
                got == pattern(0, pieces * piece),
                "the file differs from what was written"
            );
            // Every chunk is back once its write completed.
            let again: Vec<_> = (0..ARENA_CHUNKS).map(|_| w.buffer(piece)).collect();
            assert!(again.iter().all(|b| b.arena_index(ring.arena()).is_some()));
        });
    }

    #[test]
    fn arena_chunks_come_back_most_recently_freed_first() {
        let arena = Arena::new(ALIGN, 4);
        let a = arena.take().unwrap();
        let b = arena.take().unwrap();
        let (ia, ib) = (
            a.arena_index(&arena).unwrap(),
            b.arena_index(&arena).unwrap(),
        );
        assert_ne!(ia, ib);
        drop(a);
        drop(b);
        let c = arena.take().unwrap();
        assert_eq!(
            c.arena_index(&arena),
            Some(ib),
            "the last freed, still warm"
        );
        let rest: Vec<_> = std::iter::from_fn(|| arena.take()).collect();
        assert_eq!(rest.len(), 3, "four chunks in all");
        assert!(arena.take().is_none());
        let other = Arena::new(ALIGN, 1);
        assert_eq!(
            c.arena_index(&other),
            None,
            "a chunk of another arena is not fixed there"
        );
    }

    #[test]
    fn a_failed_ring_write_is_an_error_naming_the_offset() {
        runtime().block_on(async {
            let (_dir, w, path) = uring_and_file(2 * ALIGN).await;
            // An O_DIRECT descriptor opened for reading only: the kernel refuses the write.
            let ro = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(o_direct())
                .open(&path)
                .unwrap();
            let f = WriteFile {
                plain: std::fs::File::open(&path).unwrap(),
                direct: Some(Arc::new(OwnedFd::from(ro))),
            };
            let mut buf = w.buffer(ALIGN);
            buf.extend_from_slice(&[9u8; ALIGN]);
            let e = w.write(&f, ALIGN as u64, buf).await.unwrap_err();
            let text = format!("{e:#}");
            assert!(text.contains("O_DIRECT write at 4096"), "{text}");
            assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; 2 * ALIGN]);
        });
    }

    #[test]
    fn a_writer_dropped_with_writes_in_flight_neither_hangs_nor_frees_their_buffers_early() {
        runtime().block_on(async {
            let len = 8 << 20;
            let (_dir, w, path) = uring_and_file(len).await;
            let f = w.open(&path).await.unwrap();
            let writes: Vec<_> = (0..len / (1 << 20))
                .map(|k| {
                    let mut buf = w.buffer(1 << 20);
                    buf.extend_from_slice(&pattern(k << 20, 1 << 20));
                    w.write(&f, (k << 20) as u64, buf)
                })
                .collect();
            drop(w);
            for write in writes {
                // Completed, or told the writer is gone: either way, promptly.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(20), write)
                    .await
                    .expect("a write's waiter hung after the writer was dropped");
            }
            drop(f);
            // Whatever reached the disk is what was written, never bytes of a reused buffer.
            let got = std::fs::read(&path).unwrap();
            let want = pattern(0, len);
            for (k, (g, w)) in got.chunks(ALIGN).zip(want.chunks(ALIGN)).enumerate() {
                assert!(
                    g == w || g.iter().all(|&b| b == 0),
                    "page {k} holds neither"
                );
            }
        });
    }
}
