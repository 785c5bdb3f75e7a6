//! The HTTP server: a store's paths over HTTP/1.1 (docs/protocol.md).
//!
//! [`bind`] validates the store and opens the listener; [`serve`] accepts connections until
//! its shutdown future completes, then stops accepting and lets in-flight requests finish
//! within the grace period. Each connection is a hyper HTTP/1.1 connection with a header
//! read timeout (slowloris), a head size limit, and an idle timeout enforced here: a
//! connection on which no byte is read or written for `idle_timeout` is closed, whether it
//! never sent a request or stopped reading its response. At most `max_connections` are
//! served at once; the rest wait in the kernel's backlog; at most
//! `max_connections_per_client` from one address, past which its connections are closed
//! at once. Only what the store's catalog lists is served ([`crate::served`]).
//!
//! Bodies are slices of read-only memory maps of the store's files ([`crate::mapped`]), so
//! a response is never copied into the heap; when hyper writes such a slice, the socket
//! wrapper recognises it and sends the same bytes from the file with `sendfile(2)`, so they
//! are not copied through this process at all.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fill_core::ContentId;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::{EndpointLabels, Metrics, RequestLabels};
use crate::served::{Listing, Withdrawn, verify_one_block};
use crate::status_page::Status;
use fill_store::config::ServerConfig;
use fill_store::mapped::{self, FileStamp};
use fill_store::store::Store;

/// Largest frame a body hands hyper at a time. hyper asks for the next one only when what
/// it holds is nearly written, so a body is dropped (and its request stops counting as in
/// flight) with at most this much plus the socket's buffer still to send.
const CHUNK: usize = 1 << 20;

/// A response body: one contiguous run of bytes (a slice of a mapped file, or a short
/// message), handed out in frames of at most [`CHUNK`] bytes. It carries its request's
/// place among those in flight, released when hyper drops it (sent, or connection gone).
#[derive(Debug, Default)]
pub struct Body {
    rest: Bytes,
    in_flight: Option<InFlight>,
}

impl Body {
    /// A body of `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        Self {
            rest: bytes,
            in_flight: None,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = this.rest.len().min(CHUNK);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(this.rest.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// Requests being answered: counted from arrival until their body is dropped.
#[derive(Debug)]
pub struct Requests {
    active: AtomicU64,
    gauge: prometheus_client::metrics::gauge::Gauge,
    /// Woken when the count reaches zero (a drain waits for it).
    idle: tokio::sync::Notify,
}

/// One request's place in [`Requests`].
#[derive(Debug)]
pub struct InFlight(Arc<Requests>);

impl Requests {
    fn enter(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.gauge.inc();
        InFlight(self.clone())
    }

    /// Requests being answered now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::SeqCst)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.gauge.dec();
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_one();
        }
    }
}

/// Mapped files kept open between requests, at most this many.
const MAP_CACHE: usize = 4096;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    store: Store,
    config: ServerConfig,
    /// The server's metrics.
    pub metrics: Metrics,
    maps: Mutex<MapCache>,
    catalog: Mutex<Option<CachedCatalog>>,
    token: Option<blake3::Hash>,
    /// Requests being answered (a drain waits for none).
    pub requests: Arc<Requests>,
    /// The appliance's lifecycle as last read from the store, and the last checks.
    life: Mutex<Life>,
    /// Content requests are refused (draining, drained, maintenance, retired).
    refusing: AtomicBool,
    /// Seconds for `Retry-After` while refusing.
    retry_after: AtomicU64,
    /// Wakes the lifecycle loop (a drain started, a request finished, checks asked for).
    wake: tokio::sync::Notify,
    /// The checks are to run at the lifecycle loop's next turn (burn-in started).
    recheck: AtomicBool,
    /// Listed files withdrawn for failing re-verification.
    withdrawn: Withdrawn,
    /// The scrub's walk: which listed file, and which of its blocks, next.
    picks: AtomicU64,
    /// The host's name, for the status page.
    host: String,
}

#[derive(Debug, Default)]
struct Life {
    lifecycle: fill_core::lifecycle::Lifecycle,
    events: Vec<fill_core::lifecycle::Event>,
    windows: Vec<fill_core::lifecycle::MaintenanceWindow>,
    report: Option<fill_store::lifecycle::Report>,
    /// Why the lifecycle could not be read, if it could not.
    error: Option<String>,
}

#[derive(Debug, Default)]
struct MapCache {
    tick: u64,
    entries: HashMap<(Kind, ContentId), (Bytes, FileStamp, u64)>,
}

#[derive(Debug)]
struct CachedCatalog {
    stamp: Option<FileStamp>,
    raw: Bytes,
    zstd: Option<Bytes>,
    etag: HeaderValue,
    /// What it lists, or why it is refused (it does not validate).
    listing: Result<Arc<Listing>, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Content,
    Outboard,
}

/// Opens the listener for `config`. Errors name the address.
pub async fn bind(config: ServerConfig) -> anyhow::Result<(TcpListener, Arc<AppState>)> {
    use anyhow::Context as _;
    let store = Store::open(&config.store)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let token = config
        .admin_token
        .as_deref()
        .map(|t| blake3::hash(t.as_bytes()));
    let metrics = Metrics::new();
    let requests = Arc::new(Requests {
        active: AtomicU64::new(0),
        gauge: metrics.in_flight.clone(),
        idle: tokio::sync::Notify::new(),
    });
    let state = AppState {
        store,
        config,
        metrics,
        maps: Mutex::new(MapCache::default()),
        catalog: Mutex::new(None),
        token,
        requests,
        life: Mutex::new(Life::default()),
        refusing: AtomicBool::new(false),
        retry_after: AtomicU64::new(0),
        wake: tokio::sync::Notify::new(),
        recheck: AtomicBool::new(false),
        withdrawn: Withdrawn::default(),
        picks: AtomicU64::new(0),
        host: host_name(),
    };
    state.refresh_life();
    Ok((listener, Arc::new(state)))
}

/// This host's name (`/proc/sys/kernel/hostname`), or `unknown`.
fn host_name() -> String {
    fill_store::bounded::read_text(std::path::Path::new("/proc/sys/kernel/hostname"), 256)
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && !h.chars().any(fill_core::text::is_unprintable))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Serves connections until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(state.config.max_connections));
    let per_client: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let life = tokio::spawn(lifecycle_loop(state.clone()));
    let control = state
        .config
        .control
        .clone()
        .map(|c| tokio::spawn(crate::control::control_loop(state.clone(), c)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // One address may hold only its share: past it, the connection is closed at once
        // (with the permit), so everyone else is still served.
        let Some(client) = PerClient::enter(
            &per_client,
            peer.ip().to_canonical(),
            state.config.max_connections_per_client,
        ) else {
            state.metrics.refused_per_client.inc();
            tracing::debug!(%peer, "connection refused: its address holds its limit");
            continue;
        };
        let _ = stream.set_nodelay(true);
        state.metrics.connections_total.inc();
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
            sendfile: state.config.sendfile.for_peer(&peer),
            sendfile_bytes: state.metrics.sendfile_bytes.clone(),
        });
        let st = state.clone();
        let svc = hyper::service::service_fn(move |req| {
            let st = st.clone();
            async move { Ok::<_, Infallible>(handle(&st, req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(state.config.header_read_timeout)
            .max_buf_size(state.config.max_header_bytes)
            .serve_connection(io, svc);
        let conn = graceful.watch(conn);
        let st = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _client = client;
            st.metrics.connections_open.inc();
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, "connection ended: {e}");
                },
                () = activity.idle(st.config.idle_timeout) => {
                    st.metrics.idle_closed.inc();
                    tracing::debug!(%peer, "connection idle: closed");
                }
            }
            st.metrics.connections_open.dec();
        });
    }
    drop(listener);
    life.abort();
    if let Some(c) = control {
        c.abort();
    }
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(state.config.shutdown_grace) => {
            tracing::warn!("shutdown grace period over: closing the remaining connections");
        }
    }
}

/// A connection's place in its address's count; the count drops with it.
#[derive(Debug)]
struct PerClient {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerClient {
    /// A place for one more connection from `ip`, if it holds fewer than `max`.
    fn enter(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PerClient {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

fn clock_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// When a connection last moved a byte.
#[derive(Debug)]
struct Activity(AtomicU64);

impl Activity {
    fn new() -> Self {
        Self(AtomicU64::new(clock_ms()))
    }
    fn touch(&self) {
        self.0.store(clock_ms(), Ordering::Relaxed);
    }
    /// Completes once no byte has moved for `timeout`.
    async fn idle(&self, timeout: Duration) {
        let limit = timeout.as_millis() as u64;
        loop {
            let quiet = clock_ms().saturating_sub(self.0.load(Ordering::Relaxed));
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(Duration::from_millis(limit - quiet)).await;
        }
    }
}

/// A socket that records when bytes move.
#[derive(Debug)]
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// Send slices of mapped files with `sendfile(2)` (config `sendfile`).
    sendfile: bool,
    /// Counts the bytes sent that way.
    sendfile_bytes: prometheus_client::metrics::counter::Counter,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl Tracked {
    /// The mapped file behind `bytes`, when they should go out with `sendfile(2)`.
    fn mapped(&self, bytes: &[u8]) -> Option<(Arc<std::fs::File>, u64)> {
        if self.sendfile {
            mapped::file_region(bytes)
        } else {
            None
        }
    }

    /// Sends `len` bytes of `file` from `offset` with `sendfile(2)`: the kernel moves them from
    /// the page cache to the socket without a copy through this process.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.inner.poll_write_ready(cx))?;
            let mut at = offset;
            let sent = self.inner.try_io(tokio::io::Interest::WRITABLE, || {
                rustix::fs::sendfile(&self.inner, file, Some(&mut at), len)
                    .map_err(std::io::Error::from)
            });
            match sent {
                Ok(n) => {
                    if n > 0 {
                        self.activity.touch();
                        self.sendfile_bytes.inc_by(n as u64);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some((file, offset)) = self.mapped(buf) {
            return self.poll_sendfile(cx, &file, offset, buf.len());
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    /// Heads and short bodies are written (vectored) as usual; a slice of a mapped store file
    /// goes out with `sendfile(2)`. Each call writes a prefix of `bufs`, as the trait allows.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs
            .iter()
            .position(|b| !b.is_empty())
            .unwrap_or(bufs.len());
        if let Some(b) = bufs.get(first)
            && let Some((file, offset)) = self.mapped(b)
        {
            return self.poll_sendfile(cx, &file, offset, b.len());
        }
        let plain = first
            + bufs[first..]
                .iter()
                .take_while(|b| self.mapped(b).is_none())
                .count();
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs[..plain]);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Answers one request and records its metrics.
async fn handle(st: &Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let in_flight = st.requests.enter();
    let path = req.uri().path();
    let (endpoint, mut resp) = if path == "/admin/checks" {
        ("admin", admin_checks(st, &req).await)
    } else if let Some(rest) = path.strip_prefix("/partial/content/") {
        ("relay_content", serve_relay(st, rest, &req).await)
    } else {
        route(st, &req)
    };
    let status = resp.status().as_u16();
    let labels = RequestLabels { endpoint, status };
    st.metrics.requests.get_or_create(&labels).inc();
    if req.method() != Method::HEAD {
        let bytes = resp.body().size_hint().exact().unwrap_or(0);
        st.metrics.body_bytes.get_or_create(&labels).inc_by(bytes);
    }
    if resp.status().is_server_error() {
        st.metrics
            .errors
            .get_or_create(&EndpointLabels { endpoint })
            .inc();
    }
    st.metrics
        .latency
        .get_or_create(&EndpointLabels { endpoint })
        .observe(start.elapsed().as_secs_f64());
    resp.body_mut().in_flight = Some(in_flight);
    resp
}

fn route(st: &AppState, req: &Request<Incoming>) -> (&'static str, Response<Body>) {
    let path = req.uri().path();
    let method = req.method();
    let get_or_head = method == Method::GET || method == Method::HEAD;
    let content = ["/content/", "/outboard/", "/partial/"]
        .iter()
        .any(|p| path.starts_with(p))
        || path == "/catalog";
    if content && st.refusing.load(Ordering::SeqCst) {
        return ("refused", st.unavailable());
    }
    if let Some(rest) = path.strip_prefix("/content/") {
        return (
            "content",
            guard_get(get_or_head, || serve_blob(st, Kind::Content, rest, req)),
        );
    }
    if let Some(rest) = path.strip_prefix("/outboard/") {
        return (
            "outboard",
            guard_get(get_or_head, || serve_blob(st, Kind::Outboard, rest, req)),
        );
    }
    if let Some(rest) = path.strip_prefix("/partial/outboard/") {
        return (
            "relay_outboard",
            guard_get(get_or_head, || serve_relay_outboard(st, rest, req)),
        );
    }
    if let Some(rest) = path.strip_prefix("/partial/map/") {
        return (
            "relay_map",
            guard_get(get_or_head, || serve_relay_map(st, rest, req)),
        );
    }
    if let Some(rest) = path.strip_prefix("/admin/") {
        return ("admin", admin(st, rest, req));
    }
    match path {
        "/catalog" | "/partial/catalog" => {
            ("catalog", guard_get(get_or_head, || serve_catalog(st, req)))
        }
        "/metrics" => (
            "metrics",
            guard_get(get_or_head, || {
                let mut r = text(StatusCode::OK, st.metrics.scrape(&st.status()));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                head_only(method, r)
            }),
        ),
        "/healthz" => (
            "healthz",
            guard_get(get_or_head, || {
                if st.refusing.load(Ordering::SeqCst) {
                    head_only(method, st.unavailable())
                } else {
                    head_only(method, text(StatusCode::OK, "ok\n".into()))
                }
            }),
        ),
        "/status.json" => (
            "status",
            guard_get(get_or_head, || {
                head_only(method, no_store(json(StatusCode::OK, &st.status())))
            }),
        ),
        "/status" => (
            "status",
            guard_get(get_or_head, || {
                let page = crate::status_page::render(&st.status());
                let mut r = Response::new(Body::new(Bytes::from(page)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                head_only(method, no_store(r))
            }),
        ),
        _ => ("other", text(StatusCode::NOT_FOUND, "not found\n".into())),
    }
}

fn guard_get(allowed: bool, f: impl FnOnce() -> Response<Body>) -> Response<Body> {
    if allowed {
        f()
    } else {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET or HEAD\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// For HEAD: the same head with its Content-Length, and no body.
fn head_only(method: &Method, mut r: Response<Body>) -> Response<Body> {
    if method == Method::HEAD {
        let len = r.body().size_hint().exact().unwrap_or(0);
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        *r.body_mut() = Body::default();
    }
    r
}

fn internal(what: &str, e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!("{what}: {e}");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {what}\n"),
    )
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable range: send the whole body (no header, another unit, several ranges, or a
    /// malformed one, all of which RFC 9110 lets a server ignore).
    Whole,
    /// Bytes `first..=last`.
    Part(u64, u64),
    /// Nothing in the body matches: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (`a-b`, `a-`, `-n`) against a body of `len` bytes.
pub fn parse_range(value: &[u8], len: u64) -> RangeAsk {
    let Ok(value) = std::str::from_utf8(value) else {
        return RangeAsk::Whole;
    };
    let value = value.trim();
    let Some(spec) = value
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case("bytes="))
        .map(|_| &value[6..])
    else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    // Digits that overflow u64 are a position past any body: unsatisfiable, not malformed.
    let num = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    match (digits(a), digits(b), a.is_empty(), b.is_empty()) {
        (true, true, _, _) => {
            let (first, last) = (num(a), num(b));
            if first > last {
                RangeAsk::Whole
            } else if first >= len {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(first, last.min(len - 1))
            }
        }
        (true, false, _, true) => {
            let first = num(a);
            if first >= len {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(first, len - 1)
            }
        }
        (false, true, true, _) => {
            let n = num(b);
            if n == 0 || len == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(len - n.min(len), len - 1)
            }
        }
        _ => RangeAsk::Whole,
    }
}

fn serve_blob(st: &AppState, kind: Kind, rest: &str, req: &Request<Incoming>) -> Response<Body> {
    let id = match ContentId::parse(rest) {
        Ok(id) => id,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("malformed id: {e}\n")),
    };
    // Only what the catalog lists: a stray, or a file still being filled, is not served.
    let listing = match st.listing() {
        Ok(Ok(l)) => l,
        Ok(Err(why)) => return refused_catalog(&why),
        Err(e) => return internal("cannot read the catalog", &e),
    };
    let not_here = || {
        text(
            StatusCode::NOT_FOUND,
            format!("{id} is not in this store\n"),
        )
    };
    let Some(size) = listing.size(&id) else {
        return not_here();
    };
    let path = match kind {
        Kind::Content => st.store.content_path(&id),
        Kind::Outboard => st.store.outboard_path(&id),
    };
    let content_stamp = || mapped::stamp(&st.store.content_path(&id)).ok().flatten();
    if let Some(why) = st.withdrawn.why(&id, content_stamp) {
        return text(StatusCode::NOT_FOUND, format!("{id} is withdrawn: {why}\n"));
    }
    let (body, fresh) = match st.mapped(kind, id, &path) {
        Ok(Some(b)) => b,
        Ok(None) => return not_here(),
        Err(e) => return internal("cannot read the store", &e),
    };
    if kind == Kind::Content && (fresh || body.len() as u64 != size) {
        // First served since mapped: the size the catalog says, and the first block asked
        // for re-verified (its pages are read to be sent anyway).
        let first = match req.headers().get(header::RANGE) {
            Some(v) => match parse_range(v.as_bytes(), body.len() as u64) {
                RangeAsk::Part(first, _) => first,
                _ => 0,
            },
            None => 0,
        };
        if body.len() as u64 == size {
            st.metrics.reverified.inc();
        }
        let check = verify_one_block(&st.store, &id, &body, size, |ob| {
            first / ob.block_size().bytes()
        });
        if let Err(why) = check {
            st.withdraw(id, why.clone());
            return text(StatusCode::NOT_FOUND, format!("{id} is withdrawn: {why}\n"));
        }
    }
    let etag = match kind {
        Kind::Content => format!("\"{id}\""),
        Kind::Outboard => format!("\"{id}.outboard\""),
    };
    let mut resp = ranged(req.method(), req.headers(), body, &etag_value(&etag));
    // Content never changes under its id.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    resp
}

/// Whether the store's catalog lists `id` (`Err`: the answer when it cannot say).
fn is_listed(st: &AppState, id: &ContentId) -> Result<bool, Box<Response<Body>>> {
    match st.listing() {
        Ok(Ok(l)) => Ok(l.size(id).is_some()),
        Ok(Err(why)) => Err(Box::new(refused_catalog(&why))),
        Err(e) => Err(Box::new(internal("cannot read the catalog", &e))),
    }
}

/// How long a relay request for a file that just left `.fill/partial/` waits for the
/// catalog to list it: a completion moves the data into `content/` before it rewrites the
/// catalog, and for that moment the file is in neither.
const COMPLETION_WAIT: Duration = Duration::from_secs(2);

/// Whether a file not (or no longer) partial is listed, waiting up to [`COMPLETION_WAIT`]
/// while a completion has begun (its outboard or data already in place) and the catalog
/// does not list it yet.
async fn listed_once_complete(st: &AppState, id: &ContentId) -> Result<bool, Box<Response<Body>>> {
    let deadline = Instant::now() + COMPLETION_WAIT;
    loop {
        if is_listed(st, id)? {
            return Ok(true);
        }
        let completing = st.store.content_path(id).exists() || st.store.outboard_path(id).exists();
        if Instant::now() >= deadline || !completing {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn not_held(id: &ContentId) -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        format!("{id} is neither in this store nor being filled\n"),
    )
}

/// `GET /partial/content/<id>`: a listed file as at `/content/`; of a file still filling,
/// the recorded blocks, re-verified (docs/protocol.md, "Relay").
async fn serve_relay(st: &Arc<AppState>, rest: &str, req: &Request<Incoming>) -> Response<Body> {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return guard_get(false, Response::default);
    }
    if st.refusing.load(Ordering::SeqCst) {
        return st.unavailable();
    }
    let id = match ContentId::parse(rest) {
        Ok(id) => id,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("malformed id: {e}\n")),
    };
    match is_listed(st, &id) {
        Ok(true) => return serve_blob(st, Kind::Content, rest, req),
        Ok(false) => {}
        Err(r) => return *r,
    }
    let size = match crate::relay::partial_size(&st.store, &id) {
        Ok(Some(size)) => size,
        Ok(None) => {
            return match listed_once_complete(st, &id).await {
                Ok(true) => serve_blob(st, Kind::Content, rest, req),
                Ok(false) => not_held(&id),
                Err(r) => *r,
            };
        }
        Err(why) => return internal("cannot read a block map", &why),
    };
    let (first, last, whole) = match req.headers().get(header::RANGE) {
        None if size > 0 => (0, size - 1, true),
        None => (0, 0, true),
        Some(v) => match parse_range(v.as_bytes(), size) {
            RangeAsk::Part(a, b) => (a, b, a == 0 && b + 1 == size),
            RangeAsk::Whole if size > 0 => (0, size - 1, true),
            _ => {
                return Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                    .body(Body::default())
                    .unwrap_or_default();
            }
        },
    };
    let store = st.store.clone();
    let read =
        tokio::task::spawn_blocking(move || crate::relay::read_held(&store, &id, first, last))
            .await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(crate::relay::RelayError::NotHeld(why))) => {
            return text(StatusCode::NOT_FOUND, format!("{why}\n"));
        }
        Ok(Err(crate::relay::RelayError::Gone)) => {
            // Completed since: served whole now, once it is listed.
            return match listed_once_complete(st, &id).await {
                Ok(true) => serve_blob(st, Kind::Content, rest, req),
                Ok(false) => not_held(&id),
                Err(r) => *r,
            };
        }
        Ok(Err(crate::relay::RelayError::Bad(why))) => {
            tracing::warn!("not relayed: {why}");
            return text(StatusCode::NOT_FOUND, format!("{why}\n"));
        }
        Ok(Err(crate::relay::RelayError::Io(e))) => return internal("cannot read the store", &e),
        Err(e) => return internal("a relay read failed", &e),
    };
    let mut b = Response::builder()
        .header(header::ETAG, etag_value(&format!("\"{id}\"")))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_LENGTH, bytes.len());
    b = if whole && req.headers().get(header::RANGE).is_none() {
        b.status(StatusCode::OK)
    } else {
        b.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        )
    };
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        bytes
    };
    b.body(Body::new(body)).unwrap_or_default()
}

/// `GET /partial/outboard/<id>`: a listed file's outboard, or that of a file still filling.
fn serve_relay_outboard(st: &AppState, rest: &str, req: &Request<Incoming>) -> Response<Body> {
    let id = match ContentId::parse(rest) {
        Ok(id) => id,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("malformed id: {e}\n")),
    };
    match is_listed(st, &id) {
        Ok(true) => return serve_blob(st, Kind::Outboard, rest, req),
        Ok(false) => {}
        Err(r) => return *r,
    }
    match st.store.partial_outboard(&id) {
        Ok(ob) => {
            let etag = etag_value(&format!("\"{id}.outboard\""));
            no_store(ranged(
                req.method(),
                req.headers(),
                Bytes::from(ob.to_bytes()),
                &etag,
            ))
        }
        Err(_) => not_held(&id),
    }
}

/// `GET /partial/map/<id>`: which blocks of the file the store holds.
fn serve_relay_map(st: &AppState, rest: &str, req: &Request<Incoming>) -> Response<Body> {
    let id = match ContentId::parse(rest) {
        Ok(id) => id,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("malformed id: {e}\n")),
    };
    let listed = match is_listed(st, &id) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    match crate::relay::map_of(&st.store, &id, listed) {
        Ok(Some(map)) => {
            let bytes = Bytes::from(map.to_bytes());
            let mut r = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::new(if req.method() == Method::HEAD {
                    Bytes::new()
                } else {
                    bytes
                }))
                .unwrap_or_default();
            r = no_store(r);
            r
        }
        Ok(None) => not_held(&id),
        Err(why) => internal("cannot read a block map", &why),
    }
}

/// The answer to any request that needs the catalog, when the store's catalog does not
/// validate: refused, not served.
fn refused_catalog(why: &str) -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the store's catalog is refused: {why} (run `fill store verify` on the store)\n"),
    )
}

/// A 200, 206, 304 or 416 answer for `body`, following the request's conditional and
/// `Range` headers.
fn ranged(method: &Method, headers: &HeaderMap, body: Bytes, etag: &HeaderValue) -> Response<Body> {
    let len = body.len() as u64;
    let mut builder = Response::builder()
        .header(header::ETAG, etag.clone())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| {
        v.as_bytes() == b"*"
            || v.as_bytes()
                .split(|&c| c == b',')
                .any(|t| t.trim_ascii() == etag.as_bytes())
    }) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::default())
            .unwrap_or_default();
    }
    // If-Range with another validator: the client's copy is stale, send everything.
    let if_range_ok = headers.get(header::IF_RANGE).is_none_or(|v| v == etag);
    let ask = match headers.get(header::RANGE) {
        Some(v) if if_range_ok => parse_range(v.as_bytes(), len),
        _ => RangeAsk::Whole,
    };
    let (status, part) = match ask {
        RangeAsk::Whole => (StatusCode::OK, body),
        RangeAsk::Part(first, last) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}"));
            (
                StatusCode::PARTIAL_CONTENT,
                body.slice(first as usize..=last as usize),
            )
        }
        RangeAsk::Unsatisfiable => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes */{len}"));
            (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
        }
    };
    builder = builder.header(header::CONTENT_LENGTH, part.len());
    let part = if method == Method::HEAD {
        Bytes::new()
    } else {
        mapped::prefetch(&part);
        part
    };
    builder
        .status(status)
        .body(Body::new(part))
        .unwrap_or_default()
}

impl AppState {
    /// The store's file as mapped bytes, from the cache when the file is unchanged.
    /// With whether it was mapped just now (not from the cache).
    fn mapped(
        &self,
        kind: Kind,
        id: ContentId,
        path: &Path,
    ) -> std::io::Result<Option<(Bytes, bool)>> {
        let now = mapped::stamp(path)?;
        let key = (kind, id);
        {
            let mut cache = self.maps.lock().unwrap_or_else(|p| p.into_inner());
            cache.tick += 1;
            let tick = cache.tick;
            match (cache.entries.get_mut(&key), now) {
                (Some((bytes, stamp, used)), Some(now)) if *stamp == now => {
                    *used = tick;
                    return Ok(Some((bytes.clone(), false)));
                }
                (Some(_), _) => {
                    cache.entries.remove(&key);
                }
                (None, _) => {}
            }
            if now.is_none() {
                return Ok(None);
            }
        }
        let Some((bytes, stamp)) = mapped::map_bytes(path)? else {
            return Ok(None);
        };
        let mut cache = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if cache.entries.len() >= MAP_CACHE {
            // Evict the least recently used; a scan of a few thousand entries, rarely.
            if let Some(old) = cache.entries.iter().min_by_key(|e| e.1.2).map(|e| *e.0) {
                cache.entries.remove(&old);
            }
        }
        let tick = cache.tick;
        cache.entries.insert(key, (bytes.clone(), stamp, tick));
        Ok(Some((bytes, true)))
    }

    /// Withdraws a listed file that failed re-verification: 404 until it is replaced.
    fn withdraw(&self, id: ContentId, why: String) {
        let stamp = mapped::stamp(&self.store.content_path(&id)).ok().flatten();
        let n = self.withdrawn.withdraw(id, stamp, why);
        self.metrics.withdrawn.set(n as i64);
        let mut cache = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        cache.entries.remove(&(Kind::Content, id));
    }

    /// One step of the scrub: re-verifies one block of the next listed file.
    pub fn scrub_step(&self) {
        let Ok(Ok(listing)) = self.listing() else {
            return;
        };
        let n = self.picks.fetch_add(1, Ordering::Relaxed);
        let Some(id) = listing.nth(n) else { return };
        let path = self.store.content_path(&id);
        if self
            .withdrawn
            .why(&id, || mapped::stamp(&path).ok().flatten())
            .is_some()
        {
            return;
        }
        // Mapped outside the cache: the scrub must not push out what clients read.
        let Ok(Some((data, _))) = mapped::map_bytes(&path) else {
            return;
        };
        self.metrics.reverified.inc();
        // Each pass over the listing takes another block of each file.
        let pick = (n / listing.len().max(1) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let Some(size) = listing.size(&id) else {
            return;
        };
        let check = verify_one_block(&self.store, &id, &data, size, |ob| {
            pick % ob.block_count().max(1)
        });
        if let Err(why) = check {
            self.withdraw(id, why);
        }
    }

    /// Files withdrawn for failing re-verification, and why.
    pub fn withdrawn(&self) -> Vec<(ContentId, String)> {
        self.withdrawn.list()
    }

    /// The store's catalog as cached (read again when the file changes), given to `f`.
    fn with_catalog<T>(&self, f: impl FnOnce(&mut CachedCatalog) -> T) -> std::io::Result<T> {
        let path: PathBuf = self.store.catalog_path();
        let now = mapped::stamp(&path)?;
        let mut cached = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = match cached.take() {
            Some(c) if c.stamp == now => c,
            _ => {
                let raw = match mapped::map_bytes(&path)? {
                    Some((bytes, _)) => bytes,
                    // No catalog yet: an empty store.
                    None => Bytes::from(
                        fill_core::CatalogBuilder::new()
                            .finish()
                            .unwrap_or_default(),
                    ),
                };
                let hash = blake3::hash(&raw).to_hex();
                let listing = Listing::parse(&raw).map(Arc::new);
                if let Err(why) = &listing {
                    tracing::error!("the store's catalog is refused: {why}");
                }
                CachedCatalog {
                    stamp: now,
                    raw,
                    zstd: None,
                    etag: etag_value(&format!("\"catalog-{}\"", &hash[..32])),
                    listing,
                }
            }
        };
        Ok(f(cached.insert(fresh)))
    }

    /// What the store's catalog lists, or why it is refused.
    fn listing(&self) -> std::io::Result<Result<Arc<Listing>, String>> {
        self.with_catalog(|c| c.listing.clone())
    }

    /// The store's catalog, raw or zstd-compressed, with its validator; why it is refused
    /// when it does not validate. Compressed once per version, on first demand.
    fn catalog_body(&self, zstd: bool) -> std::io::Result<Result<(Bytes, HeaderValue), String>> {
        self.with_catalog(|c| {
            if let Err(why) = &c.listing {
                return Err(why.clone());
            }
            if !zstd {
                return Ok((c.raw.clone(), c.etag.clone()));
            }
            let z = c
                .zstd
                .get_or_insert_with(|| Bytes::from(fill_core::catalog::wire::compress(&c.raw, 3)))
                .clone();
            let etag = etag_value(&format!(
                "{}-zstd\"",
                c.etag
                    .to_str()
                    .unwrap_or("\"catalog\"")
                    .trim_end_matches('"')
            ));
            Ok((z, etag))
        })
    }
}

fn etag_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

fn accepts_zstd(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().unwrap_or("").split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            name.eq_ignore_ascii_case("zstd") && !refused
        })
    })
}

fn serve_catalog(st: &AppState, req: &Request<Incoming>) -> Response<Body> {
    let zstd = accepts_zstd(req.headers());
    let (bytes, etag) = match st.catalog_body(zstd) {
        Ok(Ok(c)) => c,
        Ok(Err(why)) => return refused_catalog(&why),
        Err(e) => return internal("cannot read the catalog", &e),
    };
    let mut resp = ranged(req.method(), req.headers(), bytes, &etag);
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if zstd {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
    }
    resp
}

/// The bearer token and the method of an admin request; the answer when they are wrong.
fn admin_guard(st: &AppState, req: &Request<Incoming>) -> Option<Response<Body>> {
    let Some(token) = st.token else {
        return Some(text(
            StatusCode::FORBIDDEN,
            "admin is off: set admin_token in the config or FILL_ADMIN_TOKEN\n".into(),
        ));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare hashes: blake3::Hash equality is constant-time.
    if given.is_none_or(|g| blake3::hash(g.trim().as_bytes()) != token) {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token\n".into(),
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Some(r);
    }
    if req.method() != Method::POST {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "admin endpoints take POST\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Some(r);
    }
    None
}

fn admin(st: &AppState, rest: &str, req: &Request<Incoming>) -> Response<Body> {
    if let Some(r) = admin_guard(st, req) {
        return r;
    }
    let now = unix_now();
    let changed = |r: Result<fill_core::lifecycle::Event, fill_store::store::StoreError>| match r {
        Ok(event) => {
            st.refresh_life();
            st.wake.notify_one();
            json(StatusCode::OK, &event)
        }
        Err(fill_store::store::StoreError::Lifecycle(e)) => {
            text(StatusCode::CONFLICT, format!("{e}\n"))
        }
        Err(e) => internal("cannot record the event", &fill_store::store::chain(&e)),
    };
    if let Some(reason) = query(req, "reason")
        && (reason.chars().count() > 500 || reason.chars().any(char::is_control))
    {
        return text(
            StatusCode::BAD_REQUEST,
            "reason: at most 500 characters, no control characters\n".into(),
        );
    }
    match rest {
        "ping" => text(StatusCode::OK, "pong\n".into()),
        "drain" => {
            let reason = query(req, "reason").unwrap_or_else(|| "drain asked by admin".into());
            let r = st
                .store
                .transition(fill_core::lifecycle::State::Draining, now, &reason);
            changed(r)
        }
        "undrain" => {
            let reason = query(req, "reason").unwrap_or_else(|| "undrain asked by admin".into());
            changed(st.store.undrain(now, &reason))
        }
        "maintenance" => schedule_maintenance(st, req, now),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint {rest:?}\n"),
        ),
    }
}

/// `POST /admin/maintenance?start=RFC3339&duration=6h&reason=...`: schedules a window.
fn schedule_maintenance(st: &AppState, req: &Request<Incoming>, now: i64) -> Response<Body> {
    let bad = |m: String| text(StatusCode::BAD_REQUEST, m + "\n");
    let start = match query(req, "start") {
        None => now,
        Some(t) => match fill_core::duration::parse_rfc3339(&t) {
            Ok(t) => t,
            Err(e) => return bad(format!("start: {e}")),
        },
    };
    let Some(duration) = query(req, "duration") else {
        return bad("duration is missing: e.g. ?duration=6h (3h to 30d)".into());
    };
    let window = match fill_core::lifecycle::MaintenanceWindow::new(
        start,
        &duration,
        &query(req, "reason").unwrap_or_else(|| "maintenance".into()),
    ) {
        Ok(w) => w,
        Err(e) => return bad(e),
    };
    let result = st.store.maintenance_windows().and_then(|mut all| {
        all.push(window.clone());
        st.store.set_maintenance_windows(&mut all)
    });
    match result {
        Ok(()) => {
            st.refresh_life();
            st.wake.notify_one();
            json(StatusCode::OK, &window)
        }
        Err(e) => internal("cannot record the window", &fill_store::store::chain(&e)),
    }
}

/// `POST /admin/checks`: runs the turn-up checks now; the report.
async fn admin_checks(st: &Arc<AppState>, req: &Request<Incoming>) -> Response<Body> {
    if let Some(r) = admin_guard(st, req) {
        return r;
    }
    let report = st.run_checks().await;
    json(StatusCode::OK, &report)
}

/// A query parameter, percent-decoded (`+` is a space).
fn query(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k).as_deref() == Some(name)).then(|| percent_decode(v))?
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Body::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The same answer, marked as never to be cached (a status changes under its URL).
fn no_store(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl AppState {
    /// Re-reads the lifecycle from the store, and whether to refuse content.
    pub fn refresh_life(&self) {
        let read = self.store.lifecycle_events().and_then(|events| {
            let windows = self.store.maintenance_windows()?;
            Ok((events, windows))
        });
        let mut life = self.life.lock().unwrap_or_else(|p| p.into_inner());
        match read
            .map_err(|e| fill_store::store::chain(&e))
            .and_then(|(events, windows)| {
                let l =
                    fill_core::lifecycle::Lifecycle::replay(&events).map_err(|e| e.to_string())?;
                Ok((l, events, windows))
            }) {
            Ok((l, events, windows)) => {
                life.lifecycle = l;
                life.events = events;
                life.windows = windows;
                life.error = None;
            }
            Err(e) => {
                if life.error.as_ref() != Some(&e) {
                    tracing::error!("cannot read the lifecycle: {e}");
                }
                life.error = Some(e);
            }
        }
        use fill_core::lifecycle::State;
        let refusing = matches!(
            life.lifecycle.state(),
            State::Draining | State::Drained | State::Maintenance | State::Retired
        );
        let now = unix_now();
        let retry = life
            .windows
            .iter()
            .find(|w| w.contains(now))
            .map(|w| (w.end() - now).max(1) as u64)
            .unwrap_or(self.config.lifecycle.retry_after.as_secs().max(1));
        self.retry_after.store(retry, Ordering::SeqCst);
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    /// 503 with `Retry-After`: the appliance is drained or draining.
    fn unavailable(&self) -> Response<Body> {
        let state = self
            .life
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lifecycle
            .state();
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this appliance is {state}: content is not served\n"),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after.load(Ordering::SeqCst)),
        );
        r
    }

    /// The appliance's status now.
    pub fn status(&self) -> Status {
        let life = self.life.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix_now();
        let report = life.report.clone();
        Status {
            appliance: self.config.control.as_ref().map(|c| c.serial.clone()),
            host: self.host.clone(),
            version: crate::control::VERSION,
            store: self.store.root().display().to_string(),
            state: life.lifecycle.state(),
            before_drain: life.lifecycle.before_drain(),
            serving: !self.refusing.load(Ordering::SeqCst),
            states: fill_core::lifecycle::STATES.to_vec(),
            checks: report
                .as_ref()
                .map(|r| r.checks.clone())
                .unwrap_or_default(),
            checked_at: report.as_ref().map(|r| r.checked_at),
            progress: report.and_then(|r| r.progress),
            in_flight: self.requests.active(),
            maintenance: life
                .windows
                .iter()
                .filter(|w| w.end() > now)
                .cloned()
                .collect(),
            events: life.events[life.events.len().saturating_sub(20)..].to_vec(),
            error: life.error.clone(),
            site_fill: self.site_fill(),
            last_fill: self.store.last_fill(),
        }
    }

    /// What the last site fill wrote in the store's state, if it is JSON of at most 64 KiB.
    fn site_fill(&self) -> Option<serde_json::Value> {
        let path = self.store.state_file("site-fill.json");
        let text = fill_store::bounded::read_text(&path, 64 << 10).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Runs the turn-up checks, keeps the report, and goes live when they all pass during
    /// burn-in (with `auto_live`).
    pub async fn run_checks(&self) -> fill_store::lifecycle::Report {
        // Each run's time (whole seconds) is its identity to the control plane: a run in
        // the same second as the one before waits for the next second.
        let last = self
            .life
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report
            .as_ref()
            .map(|r| r.checked_at);
        if let Some(last) = last.filter(|l| *l >= unix_now()) {
            let wait = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(last as u64 + 1);
            if let Ok(d) = wait.duration_since(std::time::SystemTime::now()) {
                tokio::time::sleep(d).await;
            }
        }
        let now = unix_now().max(last.map_or(0, |l| l + 1));
        let mut report =
            fill_store::lifecycle::run_checks(&self.store, &self.config.lifecycle, now).await;
        let withdrawn = self.withdrawn();
        if !withdrawn.is_empty() {
            let shown: Vec<String> = withdrawn
                .iter()
                .take(3)
                .map(|(id, why)| format!("{id}: {why}"))
                .collect();
            report.checks.push(fill_core::lifecycle::Check {
                name: "served_content",
                passed: false,
                detail: format!(
                    "{} files withdrawn (404) for failing re-verification ({}{}): run `fill store \
                     verify --repair`, then fill again",
                    withdrawn.len(),
                    shown.join("; "),
                    if withdrawn.len() > 3 { "; ..." } else { "" }
                ),
            });
        }
        let state = {
            let mut life = self.life.lock().unwrap_or_else(|p| p.into_inner());
            life.report = Some(report.clone());
            life.lifecycle.state()
        };
        if state == fill_core::lifecycle::State::BurnIn
            && self.config.lifecycle.auto_live
            && report.all_passed()
        {
            match self.store.transition(
                fill_core::lifecycle::State::Live,
                now,
                "turn-up checks passed",
            ) {
                Ok(_) => tracing::info!("turn-up checks passed: live"),
                Err(e) => tracing::warn!("cannot go live: {}", fill_store::store::chain(&e)),
            }
            self.refresh_life();
        }
        report
    }
}

impl crate::control::Appliance for AppState {
    fn status(&self) -> Status {
        AppState::status(self)
    }
    fn store(&self) -> &fill_store::store::Store {
        &self.store
    }
    fn refresh(&self) {
        self.refresh_life();
    }
    fn recheck(&self) {
        self.recheck.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// The lifecycle's own moves, until the server stops: checks every `check_interval` (and
/// at start) on an appliance (a store with recorded events), going live when they pass during burn-in; a scheduled maintenance drains the
/// appliance, waits for the requests in flight, and enters maintenance until the window
/// ends; events are delivered to the webhook.
async fn lifecycle_loop(st: Arc<AppState>) {
    let interval = st.config.lifecycle.check_interval;
    let tick = interval.min(Duration::from_secs(1));
    let mut next_check = Instant::now();
    let mut webhook_error: Option<String> = None;
    let mut step_error: Option<String> = None;
    loop {
        st.refresh_life();
        // One read of the lifecycle: the next move, whether this store is an appliance (a
        // store with no lifecycle, an origin or a tier, is checked only when asked, POST
        // /admin/checks), and whether a drain waits for the requests in flight.
        let (step, appliance, draining) = {
            let life = st.life.lock().unwrap_or_else(|p| p.into_inner());
            (
                fill_core::lifecycle::next_step(
                    &life.events,
                    &life.windows,
                    unix_now(),
                    st.requests.active(),
                ),
                !life.events.is_empty(),
                life.lifecycle.state() == fill_core::lifecycle::State::Draining,
            )
        };
        if let Some((to, reason)) = step {
            match st.store.transition(to, unix_now(), &reason) {
                Ok(e) => {
                    tracing::info!("{} -> {}: {}", e.from, e.to, e.reason);
                    step_error = None;
                    continue;
                }
                Err(e) => {
                    // Tried again after the tick; said once.
                    let e = format!("cannot go to {to}: {}", fill_store::store::chain(&e));
                    if step_error.as_ref() != Some(&e) {
                        tracing::error!("{e}");
                    }
                    step_error = Some(e);
                }
            }
        }
        // The scrub: one block of the next listed file re-verified each tick.
        let scrub = st.clone();
        let _ = tokio::task::spawn_blocking(move || scrub.scrub_step()).await;
        let asked = st.recheck.swap(false, Ordering::AcqRel);
        if appliance && (asked || Instant::now() >= next_check) {
            st.run_checks().await;
            next_check = Instant::now() + interval;
        }
        if let Some(url) = &st.config.lifecycle.webhook {
            match fill_store::lifecycle::deliver_webhook(&st.store, url).await {
                Ok(_) => webhook_error = None,
                Err(e) => {
                    if webhook_error.as_ref() != Some(&e) {
                        tracing::warn!("{e} (retrying)");
                    }
                    webhook_error = Some(e);
                }
            }
        }
        // The last request in flight finishing matters only to a drain; listening to it
        // always would wake this loop after every request of an idle-between-requests load.
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = st.wake.notified() => {}
            () = st.requests.idle.notified(), if draining => {}
        }
    }
}

/// The address a server bound to (for logs and tests).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

/// A server on its own thread and runtime, stopped (gracefully) when dropped: for embedding
/// a source in another program, such as a test of a client.
#[derive(Debug)]
pub struct BackgroundServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (metrics).
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds and starts serving `config` on a new thread.
    pub fn start(config: ServerConfig) -> anyhow::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fill-server".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(anyhow::Error::from(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    match bind(config).await {
                        Ok((listener, state)) => {
                            let addr = listener.local_addr().map_err(anyhow::Error::from);
                            let _ = tx.send(addr.map(|a| (a, state.clone())));
                            serve(listener, state, async {
                                let _ = stopped.await;
                            })
                            .await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        let (addr, state) = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| anyhow::anyhow!("the server thread did not start"))??;
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
