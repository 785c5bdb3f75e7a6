//! HTTP client side of the protocol (docs/protocol.md): small bodies (catalogs, outboards)
//! and ranged content, with strict checks of what a source answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// A ranged response body being read: straight from an HTTP source's socket, or from an
/// object store's stream of chunks.
pub enum Body {
    /// From an HTTP source.
    Http(RangeBody),
    /// From object storage, with what is left of the last chunk.
    Stream {
        chunks: futures_util::stream::BoxStream<'static, Result<Bytes, NetError>>,
        left: Bytes,
    },
}

impl Body {
    /// Reads the next bytes of the body into `out`; 0 at its end.
    pub async fn read(&mut self, out: &mut [u8]) -> Result<usize, NetError> {
        use futures_util::StreamExt;
        match self {
            Self::Http(body) => body.read(out).await,
            Self::Stream { chunks, left } => {
                while left.is_empty() {
                    match chunks.next().await {
                        None => return Ok(0),
                        Some(chunk) => *left = chunk?,
                    }
                }
                let n = out.len().min(left.len());
                out[..n].copy_from_slice(&left.split_to(n));
                Ok(n)
            }
        }
    }

    /// Whether bytes already arrived beyond what was read (a body longer than asked).
    pub fn has_more(&self) -> bool {
        match self {
            Self::Http(body) => body.remaining > 0,
            Self::Stream { left, .. } => !left.is_empty(),
        }
    }
}

/// How long a whole small body (a catalog, an outboard) may take, however steadily it
/// trickles in.
pub const SMALL_BODY_TIME: Duration = Duration::from_secs(120);

/// A pooled keep-alive HTTP/1.1 client: hyper for small bodies, our own connections for
/// ranged content.
#[derive(Debug, Clone)]
pub struct Net {
    client: Client<HttpConnector, Empty<Bytes>>,
    ranges: Arc<RangePool>,
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
        Self {
            client,
            ranges: Arc::default(),
            timeout,
        }
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
            Ok(Err(e)) => Err(NetError::Transport(format!(
                "{uri}: {}",
                fill_store::store::chain(&e)
            ))),
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
        // A body that trickles in (a byte before each stall timeout) ends here too.
        let deadline = tokio::time::Instant::now() + SMALL_BODY_TIME;
        loop {
            let frame = tokio::time::timeout(self.timeout, body.frame());
            match tokio::time::timeout_at(deadline, frame).await {
                Err(_) => {
                    return Err(NetError::Transport(format!(
                        "{url}: not complete within {} s",
                        SMALL_BODY_TIME.as_secs()
                    )));
                }
                Ok(r) => match r {
                    Err(_) => return Err(NetError::Transport(format!("{url}: stalled"))),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(NetError::Transport(format!("{url}: {e}"))),
                    Ok(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            // Checked before it grows: never more than `limit` in memory.
                            if (out.len() + data.len()) as u64 > limit {
                                return Err(NetError::Lied(format!(
                                    "{url}: body larger than the limit of {limit} bytes"
                                )));
                            }
                            out.extend_from_slice(&data);
                        }
                    }
                },
            }
        }
        Ok(Bytes::from(out))
    }

    /// Starts a ranged GET of bytes `offset..offset + len` of a file of `size` bytes, and
    /// checks the head: `206` with exactly that `Content-Range` and length (or `200` with the
    /// whole file when the whole file was asked for).
    ///
    /// Not through hyper: the body is read straight from the socket into the caller's
    /// buffers (see [`RangeBody`]), over keep-alive connections of our own pool. A pooled
    /// connection the source has closed meanwhile is replaced once.
    pub async fn get_range(
        &self,
        url: &str,
        offset: u64,
        len: u64,
        size: u64,
    ) -> Result<RangeBody, NetError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| NetError::Transport(format!("{url}: {e}")))?;
        let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(NetError::Transport(format!(
                "{url}: only http:// URLs are read this way"
            )));
        };
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let authority = authority.as_str().to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let last = offset + len - 1;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nRange: bytes={offset}-{last}\r\n\
             User-Agent: fill/{}\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        loop {
            let (mut stream, reused) = match self.ranges.take(&authority) {
                Some(s) => (s, true),
                None => (self.connect(url, &addr).await?, false),
            };
            let head =
                match tokio::time::timeout(self.timeout, exchange(&mut stream, request.as_bytes()))
                    .await
                {
                    Err(_) => {
                        return Err(NetError::Transport(format!(
                            "{url}: no answer within {:?}",
                            self.timeout
                        )));
                    }
                    // A kept-alive connection the source closed while it sat in the pool.
                    Ok(Err(Exchange::Closed(_))) if reused => continue,
                    Ok(Err(Exchange::Closed(e) | Exchange::Io(e))) => {
                        return Err(NetError::Transport(format!("{url}: {e}")));
                    }
                    Ok(Err(Exchange::Malformed(why))) => {
                        return Err(NetError::Lied(format!("{url}: {why}")));
                    }
                    Ok(Ok(head)) => head,
                };
            match crate::response::check_range(&head, offset, len, size) {
                Ok(()) => {}
                Err(crate::response::Refusal::NotFound) => return Err(NetError::NotFound),
                Err(crate::response::Refusal::Lied(why)) => {
                    return Err(NetError::Lied(format!("{url}: {why}")));
                }
            }
            // Without a length the body runs to the end of the connection: not reusable.
            let reuse = (head.keep_alive && head.length.is_some())
                .then(|| (self.ranges.clone(), authority.clone()));
            return Ok(RangeBody {
                stream: Some(stream),
                early: head.early,
                early_at: 0,
                remaining: len,
                url: url.to_owned(),
                reuse,
            });
        }
    }

    /// A new connection to `addr` (`host:port`) for `url`.
    async fn connect(&self, url: &str, addr: &str) -> Result<TcpStream, NetError> {
        let stream = match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(NetError::Transport(format!(
                    "{url}: cannot connect within {:?}",
                    self.timeout
                )));
            }
            Ok(Err(e)) => return Err(NetError::Transport(format!("{url}: {e}"))),
            Ok(Ok(s)) => s,
        };
        stream
            .set_nodelay(true)
            .map_err(|e| NetError::Transport(format!("{url}: {e}")))?;
        Ok(stream)
    }
}

/// Keep-alive connections for ranged reads, idle, per `host:port`.
#[derive(Debug, Default)]
struct RangePool {
    idle: std::sync::Mutex<HashMap<String, Vec<TcpStream>>>,
}

/// Idle connections kept per source.
const IDLE_PER_SOURCE: usize = 64;

impl RangePool {
    fn take(&self, authority: &str) -> Option<TcpStream> {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(authority)
            .and_then(Vec::pop)
    }

    fn give(&self, authority: String, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(authority).or_default();
        if list.len() < IDLE_PER_SOURCE {
            list.push(stream);
        }
    }
}

/// The body of a ranged answer, read from the socket straight into the caller's buffer:
/// only what arrived with the head is copied. Once the whole body is read, a keep-alive
/// connection goes back to the pool; dropped before that, the connection closes.
pub struct RangeBody {
    stream: Option<TcpStream>,
    /// Body bytes that came in the same reads as the head.
    early: Vec<u8>,
    early_at: usize,
    /// Body bytes not yet read.
    remaining: u64,
    url: String,
    /// Where the connection goes back once the body is read, when it may.
    reuse: Option<(Arc<RangePool>, String)>,
}

impl RangeBody {
    /// Reads the next bytes of the body into `out` (at most what is left); 0 at its end.
    pub async fn read(&mut self, out: &mut [u8]) -> Result<usize, NetError> {
        let want = out
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = if self.early_at < self.early.len() {
            let n = want.min(self.early.len() - self.early_at);
            out[..n].copy_from_slice(&self.early[self.early_at..self.early_at + n]);
            self.early_at += n;
            n
        } else {
            let Some(stream) = self.stream.as_mut() else {
                return Ok(0);
            };
            match stream.read(&mut out[..want]).await {
                Ok(0) => {
                    return Err(NetError::Transport(format!(
                        "{}: connection closed {} bytes before the end of the body",
                        self.url, self.remaining
                    )));
                }
                Ok(n) => n,
                Err(e) => return Err(NetError::Transport(format!("{}: {e}", self.url))),
            }
        };
        self.remaining -= n as u64;
        // Back to the pool only with nothing more to read: bytes past the body, or the
        // source closing, would spoil the next request on it.
        if self.remaining == 0
            && self.early_at == self.early.len()
            && let (Some((pool, authority)), Some(stream)) = (self.reuse.take(), self.stream.take())
            && matches!(stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        {
            pool.give(authority, stream);
        }
        Ok(n)
    }
}

/// A response head ([`crate::response::Head`]) and the body bytes read with it.
struct Head {
    head: crate::response::Head,
    /// Body bytes read with the head.
    early: Vec<u8>,
}

impl std::ops::Deref for Head {
    type Target = crate::response::Head;
    fn deref(&self) -> &Self::Target {
        &self.head
    }
}

enum Exchange {
    /// The connection closed (or reset) before any byte of an answer.
    Closed(std::io::Error),
    Io(std::io::Error),
    Malformed(String),
}

/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;

/// Sends `request` and reads the answer's head.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<Head, Exchange> {
    let closed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted => Exchange::Closed(e),
        _ => Exchange::Io(e),
    };
    stream.write_all(request).await.map_err(closed)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= MAX_HEAD {
                return Err(Exchange::Malformed(format!(
                    "a response head over {MAX_HEAD} bytes"
                )));
            }
            buf.reserve(buf.len());
        }
        let n = stream.read_buf(&mut buf).await.map_err(|e| {
            if buf.is_empty() {
                closed(e)
            } else {
                Exchange::Io(e)
            }
        })?;
        if n == 0 {
            let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            return Err(if buf.is_empty() {
                Exchange::Closed(eof)
            } else {
                Exchange::Malformed("the connection closed inside the response head".into())
            });
        }
        let (head, at) = match crate::response::parse_head(&buf) {
            Ok(None) => continue,
            Ok(Some(parsed)) => parsed,
            Err(why) => return Err(Exchange::Malformed(why)),
        };
        let early = buf.split_off(at);
        return Ok(Head { head, early });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A scripted source on loopback: for each connection it accepts, it answers each
    /// request (a head ending in a blank line) with the next of that connection's answers,
    /// then closes. Returns the base URL and how many connections it accepted.
    async fn scripted(conns: Vec<Vec<Vec<u8>>>) -> (String, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut accepted = 0;
            for answers in conns {
                let Ok(Ok((mut s, _))) =
                    tokio::time::timeout(Duration::from_secs(2), listener.accept()).await
                else {
                    break;
                };
                accepted += 1;
                for answer in answers {
                    let mut req = Vec::new();
                    while !req.ends_with(b"\r\n\r\n") {
                        let mut b = [0u8; 1];
                        if s.read(&mut b).await.unwrap_or(0) == 0 {
                            break;
                        }
                        req.push(b[0]);
                    }
                    assert!(req.starts_with(b"GET /content/x HTTP/1.1\r\n"));
                    let _ = s.write_all(&answer).await;
                }
                // Close a little later, once the client has pooled the connection.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            accepted
        });
        (url, task)
    }

    fn partial(range: &str, body: &[u8], extra_headers: &str) -> Vec<u8> {
        let mut a = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: {range}\r\n\
             Content-Length: {}\r\n{extra_headers}\r\n",
            body.len()
        )
        .into_bytes();
        a.extend_from_slice(body);
        a
    }

    async fn read_all(body: &mut RangeBody) -> Result<Vec<u8>, NetError> {
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            let n = body.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn net() -> Net {
        Net::with_timeout(Duration::from_secs(2))
    }

    /// Reads bytes 0-4, then (after `pause`) 5-9 of a 10-byte file through one client from
    /// a source answering each of its connections with `conns`; returns how many connections
    /// the source accepted.
    async fn two_ranges(conns: Vec<Vec<Vec<u8>>>, pause: Duration) -> usize {
        let (url, server) = scripted(conns).await;
        let net = net();
        let url = format!("{url}/content/x");
        let mut a = net.get_range(&url, 0, 5, 10).await.unwrap();
        assert_eq!(read_all(&mut a).await.unwrap(), b"01234");
        tokio::time::sleep(pause).await;
        let mut b = net.get_range(&url, 5, 5, 10).await.unwrap();
        assert_eq!(read_all(&mut b).await.unwrap(), b"56789");
        server.await.unwrap()
    }

    #[tokio::test]
    async fn ranges_reuse_a_kept_alive_connection() {
        let one = vec![
            partial("bytes 0-4/10", b"01234", ""),
            partial("bytes 5-9/10", b"56789", ""),
        ];
        assert_eq!(two_ranges(vec![one], Duration::ZERO).await, 1);
    }

    #[tokio::test]
    async fn a_pooled_connection_the_source_closed_is_replaced() {
        // The first connection answers once and closes while pooled; the second range must
        // find it closed and go through a new connection without an error.
        let conns = vec![
            vec![partial("bytes 0-4/10", b"01234", "")],
            vec![partial("bytes 5-9/10", b"56789", "")],
        ];
        assert_eq!(two_ranges(conns, Duration::from_millis(50)).await, 2);
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_the_close() {
        let answer = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-5/10\r\n\
                       Connection: close\r\n\r\n2345"
            .to_vec();
        let (url, _server) = scripted(vec![vec![answer]]).await;
        let mut body = net()
            .get_range(&format!("{url}/content/x"), 2, 4, 10)
            .await
            .unwrap();
        assert_eq!(read_all(&mut body).await.unwrap(), b"2345");
    }

    #[tokio::test]
    async fn wrong_heads_are_lies_and_short_bodies_transport_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                partial("bytes 0-4/11", b"01234", ""),
                "Content-Range \"bytes 0-4/11\", asked for \"bytes 0-4/10\"",
            ),
            (
                partial("bytes 0-4/10", b"0123", ""),
                "Content-Length Some(4), asked for 5",
            ),
            (
                b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4/10\r\n\
                  Transfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n0\r\n\r\n"
                    .to_vec(),
                "a chunked body for a range",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789".to_vec(),
                "answered 200 to a range request",
            ),
            (
                b"HTTP/1.1 206 Partial Content\r\nContent-Length: five\r\n\r\n".to_vec(),
                "Content-Length \"five\" is not a number",
            ),
            (
                b"HTTP/1.1 2O6 Oops\r\n\r\n".to_vec(),
                "a malformed response head",
            ),
        ];
        for (answer, why) in cases {
            let (url, _server) = scripted(vec![vec![answer]]).await;
            match net().get_range(&format!("{url}/content/x"), 0, 5, 10).await {
                Err(NetError::Lied(msg)) => assert!(msg.contains(why), "{msg:?} lacks {why:?}"),
                Err(e) => panic!("expected a lie ({why}), got {e}"),
                Ok(_) => panic!("expected a lie ({why}), got a body"),
            }
        }
        // The right head, then the connection closes two bytes short.
        let mut short = partial("bytes 0-4/10", b"01234", "");
        short.truncate(short.len() - 2);
        let (url, _server) = scripted(vec![vec![short]]).await;
        let mut body = net()
            .get_range(&format!("{url}/content/x"), 0, 5, 10)
            .await
            .unwrap();
        match read_all(&mut body).await {
            Err(NetError::Transport(msg)) => {
                assert!(msg.contains("closed 2 bytes before the end"), "{msg}")
            }
            other => panic!("expected a transport error, got {:?}", other.map(|_| ())),
        }
        let (url, _server) = scripted(vec![vec![b"HTTP/1.1 404 Not Found\r\n\r\n".to_vec()]]).await;
        assert!(matches!(
            net().get_range(&format!("{url}/content/x"), 0, 5, 10).await,
            Err(NetError::NotFound)
        ));
    }

    #[tokio::test]
    async fn bytes_past_the_body_keep_the_connection_out_of_the_pool() {
        let mut answer = partial("bytes 0-4/10", b"01234", "");
        answer.extend_from_slice(b"garbage");
        let conns = vec![vec![answer], vec![partial("bytes 5-9/10", b"56789", "")]];
        // Reused, the second range would have read "garbage" as its head.
        assert_eq!(two_ranges(conns, Duration::ZERO).await, 2);
    }
}
