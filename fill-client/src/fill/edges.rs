//! The fill's range sources behind a trait: the production one over [`Remotes`] (HTTP and
//! object storage), and, for tests, sources in memory that lie, truncate, stall or lack
//! files, so the driver itself runs against misbehaving sources without sockets.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use crate::net::{Body, NetError, Remotes};

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
