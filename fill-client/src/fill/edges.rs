//! The fill's range sources behind a trait: the production one over [`Remotes`] (HTTP and
//! object storage), and, for tests, sources in memory that lie, truncate, stall or lack
//! files, so the driver itself runs against misbehaving sources without sockets.

use std::future::Future;
use std::time::Duration;

use std::path::Path;

use anyhow::Result;
use bytes::Bytes;

use crate::net::{Body, NetError};
use crate::remotes::Remotes;
use crate::write::{AlignedBuf, WriteFile, Writer};

/// Where verified blocks are written: io_uring with O_DIRECT or positioned writes in
/// production ([`Writer`]); in memory, with faults and crashes, in tests.
pub trait BlockWriter: Clone + Send + Sync + 'static {
    /// A file open for writing.
    type File: Send + Sync + 'static;
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

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    impl MemWriter {
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
            anyhow::ensure!(path.exists(), "{} does not exist", path.display());
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
