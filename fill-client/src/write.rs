//! Block writers: io_uring with `O_DIRECT` through tokio-uring on a writer thread, or
//! positioned writes (`pwrite`) when io_uring or `O_DIRECT` is refused.
//!
//! [`Writer::start`] probes io_uring and `O_DIRECT` in the store's staging directory and
//! says which backend it chose and why. The io_uring backend runs a tokio-uring runtime on
//! its own thread; the fill's tasks send it writes of [`AlignedBuf`]s and it keeps as many in
//! flight as they send (the fill runs up to 16 requests, each writing as blocks verify).
//! `O_DIRECT` needs offsets and lengths aligned to 4096 bytes: a short tail block, or a store
//! with blocks under 4 KiB, goes through the ordinary descriptor instead.
//!
//! This module holds the client's only `unsafe`: the aligned allocation and its `IoBuf`
//! implementation.

#![allow(unsafe_code)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::HashMap;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use tokio::sync::{mpsc, oneshot};

/// Alignment of `O_DIRECT` buffers, offsets and lengths.
pub const ALIGN: usize = 4096;

/// A heap buffer whose start is 4096-aligned and whose capacity is a multiple of 4096.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
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
            if let Some(at) = pool.iter().position(|b| b.cap == cap) {
                let mut b = pool.swap_remove(at);
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
        Self { ptr, len: 0, cap }
    }

    /// Gives the buffer back for reuse.
    pub fn recycle(self) {
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
        let layout =
            Layout::from_size_align(self.cap, ALIGN).unwrap_or_else(|_| Layout::new::<u8>());
        // SAFETY: allocated in `with_capacity` with this very layout.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

// SAFETY: the pointer is stable for the buffer's life (it never reallocates), the first
// `len` bytes are initialised and `cap` bytes are allocated.
unsafe impl tokio_uring::buf::IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.cap
    }
}

/// A submitted write, not yet known to be complete.
enum Pending {
    Uring(oneshot::Receiver<std::io::Result<()>>),
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

enum Cmd {
    Open {
        path: PathBuf,
        reply: oneshot::Sender<std::io::Result<u64>>,
    },
    Write {
        file: u64,
        offset: u64,
        buf: AlignedBuf,
        reply: oneshot::Sender<std::io::Result<()>>,
    },
    Sync {
        file: u64,
        reply: oneshot::Sender<std::io::Result<()>>,
    },
    Close {
        file: u64,
    },
}

/// A file opened for writing blocks.
#[derive(Debug)]
pub struct WriteFile {
    /// The ordinary descriptor: positioned writes, and unaligned writes with io_uring.
    plain: std::fs::File,
    /// The io_uring writer's handle for the O_DIRECT descriptor.
    direct: Option<u64>,
}

/// The chosen writer.
#[derive(Debug, Clone)]
pub struct Writer {
    uring: Option<mpsc::UnboundedSender<CmdBox>>,
    /// What was chosen and why, for the report.
    pub description: Arc<String>,
}

/// Commands cross threads boxed (they own buffers).
pub struct CmdBox(Cmd);

impl std::fmt::Debug for CmdBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CmdBox")
    }
}

fn o_direct() -> i32 {
    rustix::fs::OFlags::DIRECT.bits() as i32
}

impl Writer {
    /// Chooses a backend, probing io_uring and O_DIRECT with a file in `probe_dir`.
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
        let (tx, mut rx) = mpsc::unbounded_channel::<CmdBox>();
        let (ready_tx, ready_rx) = oneshot::channel::<std::io::Result<()>>();
        std::thread::Builder::new()
            .name("fill-uring".into())
            .spawn(move || {
                let rt = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                rt.block_on(async move {
                    let mut files: HashMap<u64, Rc<tokio_uring::fs::File>> = HashMap::new();
                    let mut next = 0u64;
                    while let Some(CmdBox(cmd)) = rx.recv().await {
                        match cmd {
                            Cmd::Open { path, reply } => {
                                let opened = tokio_uring::fs::OpenOptions::new()
                                    .write(true)
                                    .custom_flags(o_direct())
                                    .open(&path)
                                    .await;
                                let _ = reply.send(opened.map(|f| {
                                    next += 1;
                                    files.insert(next, Rc::new(f));
                                    next
                                }));
                            }
                            Cmd::Write {
                                file,
                                offset,
                                buf,
                                reply,
                            } => match files.get(&file).cloned() {
                                Some(f) => {
                                    tokio_uring::spawn(async move {
                                        let (r, buf) = f.write_all_at(buf, offset).await;
                                        buf.recycle();
                                        let _ = reply.send(r);
                                    });
                                }
                                None => {
                                    let _ = reply.send(Err(std::io::Error::other("file not open")));
                                }
                            },
                            Cmd::Sync { file, reply } => match files.get(&file).cloned() {
                                Some(f) => {
                                    tokio_uring::spawn(async move {
                                        let _ = reply.send(f.sync_data().await);
                                    });
                                }
                                None => {
                                    let _ = reply.send(Err(std::io::Error::other("file not open")));
                                }
                            },
                            Cmd::Close { file } => {
                                files.remove(&file);
                            }
                        }
                    }
                });
            })
            .context("cannot start the io_uring thread")?;
        ready_rx
            .await
            .map_err(|_| anyhow!("the io_uring thread died"))?
            .context("io_uring setup")?;
        let w = Self {
            uring: Some(tx),
            description: Arc::new("io_uring, O_DIRECT (tokio-uring)".into()),
        };
        // Probe: an aligned O_DIRECT write and a sync in the store's own file system.
        let probe = probe_dir.join(format!("uring-probe-{}", std::process::id()));
        let result = async {
            std::fs::File::create(&probe).context("create the probe file")?;
            let f = w.open(&probe).await?;
            let mut buf = AlignedBuf::with_capacity(ALIGN);
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

    fn send(&self, cmd: Cmd) -> Result<()> {
        let tx = self
            .uring
            .as_ref()
            .ok_or_else(|| anyhow!("no io_uring writer"))?;
        tx.send(CmdBox(cmd))
            .map_err(|_| anyhow!("the io_uring thread is gone"))
    }

    /// Opens a file for writing blocks.
    pub async fn open(&self, path: &Path) -> Result<WriteFile> {
        let plain = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let direct = if self.uring.is_some() {
            let (reply, rx) = oneshot::channel();
            self.send(Cmd::Open {
                path: path.to_owned(),
                reply,
            })?;
            let id = rx
                .await
                .map_err(|_| anyhow!("the io_uring thread is gone"))?
                .with_context(|| format!("cannot open {} with O_DIRECT", path.display()))?;
            Some(id)
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
        let submitted: Result<Pending> = match file.direct {
            Some(id) if aligned => {
                let (reply, rx) = oneshot::channel();
                self.send(Cmd::Write {
                    file: id,
                    offset,
                    buf,
                    reply,
                })
                .map(|()| Pending::Uring(rx))
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
                Pending::Uring(rx) => rx
                    .await
                    .map_err(|_| anyhow!("the io_uring thread is gone"))?
                    .with_context(|| format!("O_DIRECT write at {offset}")),
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
        if let Some(id) = file.direct {
            let (reply, rx) = oneshot::channel();
            self.send(Cmd::Sync { file: id, reply })?;
            return rx
                .await
                .map_err(|_| anyhow!("the io_uring thread is gone"))?
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

    /// Closes the O_DIRECT descriptor (the ordinary one closes when the file is dropped).
    pub fn close(&self, file: &WriteFile) {
        if let Some(id) = file.direct {
            let _ = self.send(Cmd::Close { file: id });
        }
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
}
