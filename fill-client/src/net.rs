//! HTTP client side of the protocol (docs/protocol.md): small bodies (catalogs, outboards)
//! and ranged content, with strict checks of what a source answers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Default time allowed to connect and get a response head, and between two pieces of a
/// body before the source counts as stalled.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request to a source failed. `Lied` means the source answered something wrong
/// (counts against it); `Transport` means the request did not get through.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Connection refused or reset, timeout, stall.
    #[error("{0}")]
    Transport(String),
    /// A wrong status, length or Content-Range.
    #[error("{0}")]
    Lied(String),
    /// The source does not have it (404).
    #[error("not found at the source")]
    NotFound,
    /// The source refuses our credentials: a configuration error, never retried.
    #[error("{0}")]
    Refused(String),
}

/// A response body being read: hyper's, or an object store's stream of chunks.
pub enum Body {
    /// From an HTTP source.
    Http(Incoming),
    /// From object storage.
    Stream(futures_util::stream::BoxStream<'static, Result<Bytes, NetError>>),
}

impl Body {
    /// The next piece of data; `None` at the end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, NetError>> {
        use futures_util::StreamExt;
        match self {
            Self::Http(body) => loop {
                match body.frame().await? {
                    Err(e) => return Some(Err(NetError::Transport(e.to_string()))),
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data() {
                            return Some(Ok(data));
                        }
                    }
                }
            },
            Self::Stream(s) => s.next().await,
        }
    }
}

/// How to reach each source of a run: HTTP through one pooled client, or object storage.
#[derive(Debug, Clone)]
pub struct Remotes {
    net: Net,
    objects: Vec<Option<std::sync::Arc<crate::object::ObjectSource>>>,
}

impl Remotes {
    /// Every source over HTTP.
    pub fn http(net: Net) -> Self {
        Self {
            net,
            objects: Vec::new(),
        }
    }

    /// The sources of `specs`: object storage for `s3://` and `file://` urls.
    pub fn open(specs: &[crate::sources::SourceSpec], net: Net) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let objects = specs
            .iter()
            .map(|s| {
                if crate::object::is_object_url(&s.source.url) {
                    let settings = crate::object::ObjectSettings {
                        region: s.object.region.clone(),
                        endpoint: s.object.endpoint.clone(),
                        allow_http: s.object.allow_http,
                    };
                    crate::object::ObjectSource::open(&s.source.url, &settings, net.timeout())
                        .map(|o| Some(std::sync::Arc::new(o)))
                        .with_context(|| format!("source {:?}", s.source.name))
                } else {
                    Ok(None)
                }
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { net, objects })
    }

    /// The same sources, with another HTTP client (another timeout).
    pub fn with_net(&self, net: Net) -> Self {
        Self {
            net,
            objects: self.objects.clone(),
        }
    }

    /// How long a source may stay silent.
    pub fn timeout(&self) -> Duration {
        self.net.timeout()
    }

    fn object(&self, source: usize) -> Option<&crate::object::ObjectSource> {
        self.objects.get(source).and_then(|o| o.as_deref())
    }

    /// A whole small body at `rel` (`catalog`, `outboard/<id>`) of source `source`, whose
    /// base URL is `base`.
    pub async fn get_small(
        &self,
        source: usize,
        base: &str,
        rel: &str,
        zstd: bool,
        limit: u64,
    ) -> Result<Bytes, NetError> {
        match self.object(source) {
            Some(o) => o.get_small(rel, limit).await,
            None => {
                self.net
                    .get_small(&format!("{base}/{rel}"), zstd, limit)
                    .await
            }
        }
    }

    /// Starts a ranged read of `rel` (`content/<id>`), checked as [`Net::get_range`] does.
    pub async fn get_range(
        &self,
        source: usize,
        base: &str,
        rel: &str,
        offset: u64,
        len: u64,
        size: u64,
    ) -> Result<Body, NetError> {
        match self.object(source) {
            Some(o) => {
                let fut = o.get_range(rel, offset, len, size);
                match tokio::time::timeout(self.net.timeout(), fut).await {
                    Err(_) => Err(NetError::Transport(format!(
                        "{base}/{rel}: no answer within {:?}",
                        self.net.timeout()
                    ))),
                    Ok(r) => r.map(Body::Stream),
                }
            }
            None => self
                .net
                .get_range(&format!("{base}/{rel}"), offset, len, size)
                .await
                .map(Body::Http),
        }
    }
}

/// A pooled keep-alive HTTP/1.1 client.
#[derive(Debug, Clone)]
pub struct Net {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

impl Net {
    /// A client with keep-alive pools per host and the default timeout.
    pub fn new() -> Self {
        Self::with_timeout(DEFAULT_TIMEOUT)
    }

    /// A client whose sources must answer, and keep sending, within `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self { client, timeout }
    }

    /// How long a source may stay silent.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn send(&self, req: Request<Empty<Bytes>>) -> Result<Response<Incoming>, NetError> {
        let uri = req.uri().clone();
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(NetError::Transport(format!(
                "{uri}: no answer within {:?}",
                self.timeout
            ))),
            Ok(Err(e)) => Err(NetError::Transport(format!("{uri}: {e}"))),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// GETs a whole small body, refusing more than `limit` bytes.
    pub async fn get_small(&self, url: &str, zstd: bool, limit: u64) -> Result<Bytes, NetError> {
        let mut req = Request::get(url);
        if zstd {
            req = req.header(header::ACCEPT_ENCODING, "zstd");
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| NetError::Transport(format!("{url}: {e}")))?;
        let resp = self.send(req).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(NetError::NotFound),
            s => return Err(NetError::Lied(format!("{url}: answered {s}"))),
        }
        let mut body = resp.into_body();
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout(self.timeout, body.frame()).await {
                Err(_) => return Err(NetError::Transport(format!("{url}: stalled"))),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(NetError::Transport(format!("{url}: {e}"))),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        out.extend_from_slice(&data);
                        if out.len() as u64 > limit {
                            return Err(NetError::Lied(format!(
                                "{url}: body larger than {limit} bytes"
                            )));
                        }
                    }
                }
            }
        }
        Ok(Bytes::from(out))
    }

    /// Starts a ranged GET of bytes `offset..offset + len` of a file of `size` bytes, and
    /// checks the head: `206` with exactly that `Content-Range` and length (or `200` with the
    /// whole file when the whole file was asked for).
    pub async fn get_range(
        &self,
        url: &str,
        offset: u64,
        len: u64,
        size: u64,
    ) -> Result<Incoming, NetError> {
        let last = offset + len - 1;
        let req = Request::get(url)
            .header(header::RANGE, format!("bytes={offset}-{last}"))
            .body(Empty::new())
            .map_err(|e| NetError::Transport(format!("{url}: {e}")))?;
        let resp = self.send(req).await?;
        let headers = resp.headers();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let expected = format!("bytes {offset}-{last}/{size}");
                let got = headers
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if got != expected {
                    return Err(NetError::Lied(format!(
                        "{url}: Content-Range {got:?}, asked for {expected:?}"
                    )));
                }
            }
            StatusCode::OK if offset == 0 && len == size => {}
            StatusCode::NOT_FOUND => return Err(NetError::NotFound),
            s => {
                return Err(NetError::Lied(format!(
                    "{url}: answered {s} to a range request"
                )));
            }
        }
        if length.is_some_and(|l| l != len) {
            return Err(NetError::Lied(format!(
                "{url}: Content-Length {length:?}, asked for {len}"
            )));
        }
        Ok(resp.into_body())
    }
}
