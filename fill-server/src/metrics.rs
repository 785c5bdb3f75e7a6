//! Prometheus metrics (OpenMetrics text at `GET /metrics`).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `fill_http_requests_total` | endpoint, status | requests answered |
//! | `fill_http_response_body_bytes_total` | endpoint, status | body bytes sent |
//! | `fill_http_request_duration_seconds` | endpoint | time to build the response head |
//! | `fill_http_requests_in_flight` | | requests being answered |
//! | `fill_http_errors_total` | endpoint | 5xx answers (local failures) |
//! | `fill_http_connections_open` | | connections being served |
//! | `fill_http_connections_total` | | connections accepted |
//! | `fill_http_connections_idle_closed_total` | | connections closed by the idle timeout |
//! | `fill_http_sendfile_bytes_total` | | body bytes sent with `sendfile(2)` |
//! | `fill_http_content_withdrawn` | | listed files withdrawn (404) for failing re-verification |
//! | `fill_http_blocks_reverified_total` | | blocks of served files re-verified (on first map, and the scrub) |
//! | `fill_http_connections_refused_per_client_total` | | connections closed at once: their address held its limit |
//!
//! `endpoint` is one of `content`, `outboard`, `catalog`, `metrics`, `healthz`, `admin`,
//! `other`, so a hostile client cannot grow the label set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Which endpoint.
    pub endpoint: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of per-endpoint metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// Which endpoint.
    pub endpoint: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Body bytes sent.
    pub body_bytes: Family<RequestLabels, Counter>,
    /// Response latency.
    pub latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    /// Requests in flight.
    pub in_flight: Gauge,
    /// 5xx answers.
    pub errors: Family<EndpointLabels, Counter>,
    /// Open connections.
    pub connections_open: Gauge,
    /// Accepted connections.
    pub connections_total: Counter,
    /// Connections closed for idleness.
    pub idle_closed: Counter,
    /// Body bytes sent with sendfile(2).
    pub sendfile_bytes: Counter,
    /// Files withdrawn for failing re-verification.
    pub withdrawn: Gauge,
    /// Blocks re-verified.
    pub reverified: Counter,
    /// Connections refused because their address held its limit.
    pub refused_per_client: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fill_http");
        let requests = Family::<RequestLabels, Counter>::default();
        let body_bytes = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let in_flight = Gauge::default();
        let errors = Family::<EndpointLabels, Counter>::default();
        let connections_open = Gauge::default();
        let connections_total = Counter::default();
        let idle_closed = Counter::default();
        let sendfile_bytes = Counter::default();
        let withdrawn = Gauge::default();
        let reverified = Counter::default();
        let refused_per_client = Counter::default();
        registry.register(
            "content_withdrawn",
            "Listed files withdrawn (404) for failing re-verification",
            withdrawn.clone(),
        );
        registry.register(
            "blocks_reverified",
            "Blocks of served files re-verified",
            reverified.clone(),
        );
        registry.register(
            "connections_refused_per_client",
            "Connections closed at once because their address held its limit",
            refused_per_client.clone(),
        );
        registry.register("requests", "Requests answered", requests.clone());
        registry.register("response_body_bytes", "Body bytes sent", body_bytes.clone());
        registry.register(
            "request_duration_seconds",
            "Time to build the response head",
            latency.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being answered",
            in_flight.clone(),
        );
        registry.register("errors", "5xx answers (local failures)", errors.clone());
        registry.register(
            "connections_open",
            "Connections being served",
            connections_open.clone(),
        );
        registry.register(
            "connections",
            "Connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "connections_idle_closed",
            "Connections closed by the idle timeout",
            idle_closed.clone(),
        );
        registry.register(
            "sendfile_bytes",
            "Body bytes sent with sendfile(2)",
            sendfile_bytes.clone(),
        );
        Self {
            registry,
            requests,
            body_bytes,
            latency,
            in_flight,
            errors,
            connections_open,
            connections_total,
            idle_closed,
            sendfile_bytes,
            withdrawn,
            reverified,
            refused_per_client,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
