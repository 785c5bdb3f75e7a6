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
