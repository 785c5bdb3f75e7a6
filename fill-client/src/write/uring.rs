//! The io_uring backend: one ring shared by the fill's tasks, submitted to from whichever
//! tokio worker has a verified batch, and reaped by a task woken through an eventfd.
//!
//! No thread of its own: a write costs one `io_uring_enter` on the submitting worker and
//! its completion one wake of the reaper, where a ring on its own thread costs a
//! cross-thread wake each way (docs/benchmarks.md, "CPU per verified GB"). Block buffers
//! come from an [`Arena`] registered with the ring, so a write is `WRITE_FIXED`: the kernel
//! does not pin the buffer's pages again for every write.
//!
//! Invariant: what an entry points to (its buffer, its descriptor) is kept in the ring's
//! table of operations until the entry's completion is reaped, and the ring is never torn
//! down with operations in flight (dropping it waits for them).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use fill_store::lock;

use io_uring::{IoUring, opcode, squeue, types};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::{ALIGN, AlignedBuf};

/// Submission queue entries; the completion queue has twice as many. The fill keeps at
/// most its write slots and a sync per file in flight, well under this; more would wait
/// for room in the queue, not fail.
const ENTRIES: u32 = 1024;

/// Aligned memory cut into equal chunks, handed out as [`AlignedBuf`]s and taken back
/// most-recently-freed first, so the chunks in use stay few and warm in the cache: a
/// socket read into memory the cache has lost costs the kernel's copy half again.
pub struct Arena {
    base: NonNull<u8>,
    chunk: usize,
    count: usize,
    free: Mutex<Vec<u16>>,
}

// SAFETY: the arena owns its allocation; chunks are handed out exclusively through `free`.
unsafe impl Send for Arena {}
// SAFETY: as above; the free list is behind a mutex.
unsafe impl Sync for Arena {}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Arena({} x {})", self.count, self.chunk)
    }
}

impl Arena {
    /// `count` chunks of `chunk` bytes (a multiple of 4096).
    pub fn new(chunk: usize, count: u16) -> Arc<Self> {
        let chunk = chunk.max(ALIGN).next_multiple_of(ALIGN);
        let count = usize::from(count.max(1));
        let layout = Self::layout(chunk, count);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        Arc::new(Self {
            base,
            chunk,
            count,
            // Popped from the end: chunk 0 first.
            free: Mutex::new((0..count as u16).rev().collect()),
        })
    }

    fn layout(chunk: usize, count: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(chunk * count, ALIGN)
            .unwrap_or_else(|_| std::alloc::Layout::new::<u8>())
    }

    /// Bytes per chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// A free chunk, empty, if there is one.
    pub fn take(self: &Arc<Self>) -> Option<AlignedBuf> {
        let index = lock(&self.free).pop()?;
        // SAFETY: `index < count`, so the chunk lies inside the allocation.
        let ptr = unsafe { self.base.add(usize::from(index) * self.chunk) };
        Some(AlignedBuf::from_arena(ptr, self.chunk, self.clone(), index))
    }

    /// Takes a chunk back (its buffer is being dropped).
    pub(super) fn give(&self, index: u16) {
        lock(&self.free).push(index);
    }

    /// The chunks, for registration with a ring.
    fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.count)
            .map(|i| libc::iovec {
                // SAFETY: inside the allocation (`i < count`).
                iov_base: unsafe { self.base.as_ptr().add(i * self.chunk) }.cast(),
                iov_len: self.chunk,
            })
            .collect()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; every chunk's buffer holds an `Arc`
        // to the arena, so none is alive.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), Self::layout(self.chunk, self.count)) };
    }
}

/// An operation in flight: what its entry points to, kept until it completes.
struct Op {
    buf: Option<AlignedBuf>,
    _fd: Arc<OwnedFd>,
    done: oneshot::Sender<std::io::Result<u32>>,
}

struct State {
    ring: IoUring,
    /// Operations in flight, indexed by their entries' user data.
    ops: Vec<Option<Op>>,
    /// Free indices of `ops`.
    free: Vec<usize>,
}

impl State {
    /// Completions in the queue, taken off it (delivered by the caller, outside the lock).
    fn reap(&mut self, out: &mut Vec<(Op, i32)>) {
        let State { ring, ops, free } = self;
        for cqe in ring.completion() {
            let at = cqe.user_data() as usize;
            if let Some(op) = ops.get_mut(at).and_then(Option::take) {
                free.push(at);
                out.push((op, cqe.result()));
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.ops.len() - self.free.len()
    }
}

impl Drop for State {
    /// Waits for every operation in flight before their buffers are freed; if the ring
    /// fails meanwhile, the buffers are leaked rather than freed under the kernel.
    fn drop(&mut self) {
        let mut done = Vec::new();
        while self.in_flight() > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
            self.reap(&mut done);
        }
        for op in self.ops.drain(..).flatten() {
            std::mem::forget(op);
        }
    }
}

struct Shared {
    state: Mutex<State>,
    arena: Arc<Arena>,
    /// Whether the arena's chunks are registered with the ring (WRITE_FIXED).
    registered: bool,
}

impl Shared {
    /// Delivers the completions in the queue.
    fn complete(&self) {
        let mut done = Vec::new();
        {
            let mut st = lock(&self.state);
            st.reap(&mut done);
            // Entries a submission left queued (the kernel said EBUSY while completions were
            // backed up) go now that the queue has room: nothing else may submit again.
            if !st.ring.submission().is_empty() {
                let _ = st.ring.submit();
            }
        }
        for (op, result) in done {
            if let Some(buf) = op.buf {
                buf.recycle();
            }
            let result =
                u32::try_from(result).map_err(|_| std::io::Error::from_raw_os_error(-result));
            let _ = op.done.send(result);
        }
    }

    /// Queues an entry for `op` and submits it.
    fn submit(&self, entry: squeue::Entry, op: Op) -> std::io::Result<()> {
        let mut st = lock(&self.state);
        let at = match st.free.pop() {
            Some(at) => at,
            None => {
                st.ops.push(None);
                st.ops.len() - 1
            }
        };
        st.ops[at] = Some(op);
        let entry = entry.user_data(at as u64);
        // SAFETY: what the entry points to (buffer, descriptor) is kept in `ops[at]` until
        // its completion is reaped, and the ring is not dropped before (State::drop).
        while unsafe { st.ring.submission().push(&entry) }.is_err() {
            // The queue is full: hand what is queued to the kernel, waiting for a
            // completion when even that finds no room.
            st.ring.submit_and_wait(1)?;
        }
        loop {
            match st.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Completions are backed up: the entry stays queued, and goes with the next
                // submission or the reaper's.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(()),
                // The entry may still reach the kernel: its op stays kept; its waiter is told.
                Err(e) => return Err(e),
            }
        }
    }
}

/// The ring and what waits on it. Dropping it stops the reaper; the ring itself goes once
/// its last operation completes.
pub struct Ring {
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ring({:?}, registered: {})",
            self.shared.arena, self.shared.registered
        )
    }
}

impl Ring {
    /// A ring whose completions wake a reaper task on the current tokio runtime, with
    /// `arena`'s chunks registered when the kernel allows (it may refuse to pin that much
    /// memory for an unprivileged user: then writes are plain `WRITE`s).
    pub fn new(arena: Arc<Arena>) -> std::io::Result<(Self, Option<std::io::Error>)> {
        let ring = IoUring::builder()
            .setup_cqsize(2 * ENTRIES)
            .build(ENTRIES)?;
        // SAFETY: eventfd takes no pointers; the descriptor is checked before it is owned.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor, owned by nothing else.
        let efd = unsafe { OwnedFd::from_raw_fd(raw) };
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        let iovecs = arena.iovecs();
        // SAFETY: the chunks stay allocated for the ring's life: the arena is held by
        // `Shared`, which outlives the ring's state.
        let refused = unsafe { ring.submitter().register_buffers(&iovecs) }.err();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ring,
                ops: Vec::new(),
                free: Vec::new(),
            }),
            arena,
            registered: refused.is_none(),
        });
        // SAFETY: the OwnedFd is the AsyncFd's own: open, and the same, for its whole life.
        let efd = unsafe { AsyncFd::register_with_interest(efd, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        let (stop_tx, stop) = oneshot::channel();
        tokio::spawn(reap(shared.clone(), efd, stop));
        Ok((
            Self {
                shared,
                _stop: stop_tx,
            },
            refused,
        ))
    }

    /// The arena block buffers come from.
    pub fn arena(&self) -> &Arc<Arena> {
        &self.shared.arena
    }

    /// Submits a write of `buf` at `offset`; the receiver gets the bytes written.
    pub fn write(
        &self,
        fd: &Arc<OwnedFd>,
        offset: u64,
        buf: AlignedBuf,
    ) -> std::io::Result<oneshot::Receiver<std::io::Result<u32>>> {
        let len =
            u32::try_from(buf.len()).map_err(|_| std::io::Error::other("write over 4 GiB"))?;
        let target = types::Fd(fd.as_raw_fd());
        let ptr = buf.as_slice().as_ptr();
        let fixed = buf
            .arena_index(&self.shared.arena)
            .filter(|_| self.shared.registered);
        let entry = match fixed {
            Some(index) => opcode::WriteFixed::new(target, ptr, len, index)
                .offset(offset)
                .build(),
            None => opcode::Write::new(target, ptr, len).offset(offset).build(),
        };
        let (done, rx) = oneshot::channel();
        let op = Op {
            buf: Some(buf),
            _fd: fd.clone(),
            done,
        };
        self.shared.submit(entry, op).map(|()| rx)
    }

    /// Submits an `fdatasync` of the file.
    pub fn sync(
        &self,
        fd: &Arc<OwnedFd>,
    ) -> std::io::Result<oneshot::Receiver<std::io::Result<u32>>> {
        let entry = opcode::Fsync::new(types::Fd(fd.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        let (done, rx) = oneshot::channel();
        let op = Op {
            buf: None,
            _fd: fd.clone(),
            done,
        };
        self.shared.submit(entry, op).map(|()| rx)
    }
}

/// Delivers completions whenever the ring signals its eventfd, until the ring's owner is
/// dropped. Operations still in flight then complete when the state goes (State::drop).
async fn reap(shared: Arc<Shared>, efd: AsyncFd<OwnedFd>, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            ready = efd.readable() => match ready {
                Ok(mut guard) => {
                    let mut count = [0u8; 8];
                    // SAFETY: reads 8 bytes into an 8-byte array; a non-blocking eventfd.
                    while unsafe { libc::read(efd.as_raw_fd(), count.as_mut_ptr().cast(), 8) } == 8 {}
                    guard.clear_ready();
                }
                Err(e) => {
                    tracing::error!("io_uring completions cannot be waited for: {e}");
                    return;
                }
            },
            _ = &mut stop => return,
        }
        shared.complete();
    }
}
