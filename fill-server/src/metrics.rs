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
//! `endpoint` is one of [`ENDPOINTS`] (content, outboard, catalog, status, metrics, healthz,
//! admin, the relay's three, refused, other), so a hostile client cannot grow the label set.
//!
//! The appliance, read at each scrape from its status ([`Metrics::scrape`]):
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `fill_appliance_state` | state | 1 for the lifecycle state it is in, 0 for every other |
//! | `fill_appliance_serving` | | 1 while content requests are answered |
//! | `fill_appliance_check_passed` | check | 1 if the last run of that turn-up check passed, else 0 |
//! | `fill_appliance_checks_last_run_timestamp_seconds` | | when the checks last ran |
//! | `fill_appliance_fill_bytes` | | target bytes the store holds (complete files and verified blocks) |
//! | `fill_appliance_target_bytes` | | bytes of the target |
//! | `fill_appliance_offload_ratio` | | share of the target's demand held |
//! | `fill_last_fill_end_timestamp_seconds` | | when the store's last fill ended |
//! | `fill_last_fill_success_timestamp_seconds` | | when its last successful fill ended |
//! | `fill_last_fill_outcome` | outcome | 1 for how the last fill ended (ok, failed, interrupted) |
//! | `fill_last_fill_source_bytes` | source, kind | verified bytes the last fill took from each source |
//! | `fill_last_fill_source_cost` | source, kind | what they cost |
//! | `fill_last_fill_source_quarantined` | source, kind | 1 if the source was quarantined during it |
//!
//! Source names come from the sources file the fill ran with; at most 64 sources and 64
//! characters of each name are exported. Alert rules: docs/alerts/fill.rules.yml.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

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

/// The endpoints requests are counted under.
pub const ENDPOINTS: [&str; 12] = [
    "content",
    "outboard",
    "catalog",
    "status",
    "metrics",
    "healthz",
    "admin",
    "relay_content",
    "relay_outboard",
    "relay_map",
    "refused",
    "other",
];

/// A lifecycle state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// Its name.
    pub state: &'static str,
}

/// A turn-up check.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// Its name.
    pub check: &'static str,
}

/// How a fill ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// ok, failed, interrupted.
    pub outcome: &'static str,
}

/// A source of the last fill.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Its name.
    pub source: String,
    /// peer, tier, origin.
    pub kind: String,
}

/// A float gauge.
type FloatGauge = Gauge<f64, AtomicU64>;

/// The appliance's figures, set from its status at each scrape.
#[derive(Debug, Default)]
struct ApplianceMetrics {
    state: Family<StateLabels, Gauge>,
    serving: Gauge,
    check_passed: Family<CheckLabels, Gauge>,
    checked_at: Gauge,
    fill_bytes: Gauge,
    target_bytes: Gauge,
    offload: FloatGauge,
    last_end: Gauge,
    last_success: Gauge,
    outcome: Family<OutcomeLabels, Gauge>,
    source_bytes: Family<SourceLabels, Gauge>,
    source_cost: Family<SourceLabels, FloatGauge>,
    source_quarantined: Family<SourceLabels, Gauge>,
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
    appliance: ApplianceMetrics,
    /// One scrape at a time sets the appliance's figures and encodes them.
    scraping: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let appliance = ApplianceMetrics::default();
        appliance.register(&mut root);
        let registry = root.sub_registry_with_prefix("fill_http");
        let requests = Family::<RequestLabels, Counter>::default();
        let body_bytes = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let in_flight = Gauge::default();
        let errors = Family::<EndpointLabels, Counter>::default();
        // Every endpoint's error count exists from the start, at 0: an alert on its rate has
        // a series to read before the first failure.
        for endpoint in ENDPOINTS {
            let _ = errors.get_or_create(&EndpointLabels { endpoint });
        }
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
            registry: root,
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
            appliance,
            scraping: std::sync::Mutex::new(()),
        }
    }

    /// `GET /metrics`: the appliance's figures from `st`, then everything, encoded.
    pub fn scrape(&self, st: &crate::status_page::Status) -> String {
        let _one = self.scraping.lock().unwrap_or_else(|p| p.into_inner());
        self.observe(st);
        self.encode()
    }

    /// Sets the appliance's figures from its status (at each scrape).
    fn observe(&self, st: &crate::status_page::Status) {
        let a = &self.appliance;
        for s in &st.states {
            a.state
                .get_or_create(&StateLabels { state: s.name() })
                .set(i64::from(*s == st.state));
        }
        a.serving.set(i64::from(st.serving));
        a.check_passed.clear();
        for c in &st.checks {
            a.check_passed
                .get_or_create(&CheckLabels { check: c.name })
                .set(i64::from(c.passed));
        }
        a.checked_at.set(st.checked_at.unwrap_or(0));
        if let Some(p) = &st.progress {
            a.fill_bytes.set(clamp(p.complete_bytes));
            a.target_bytes.set(clamp(p.target_bytes));
            a.offload.set(p.offload);
        }
        a.outcome.clear();
        a.source_bytes.clear();
        a.source_cost.clear();
        a.source_quarantined.clear();
        if let Some(f) = &st.last_fill {
            a.last_end.set(f.finished_at);
            a.last_success.set(f.last_success_at.unwrap_or(0));
            for o in [
                fill_store::last_fill::FillOutcome::Ok,
                fill_store::last_fill::FillOutcome::Failed,
                fill_store::last_fill::FillOutcome::Interrupted,
            ] {
                a.outcome
                    .get_or_create(&OutcomeLabels { outcome: o.name() })
                    .set(i64::from(o == f.outcome));
            }
            for s in f.sources.iter().take(64) {
                let labels = SourceLabels {
                    source: s.name.chars().take(64).collect(),
                    kind: s.kind.chars().take(16).collect(),
                };
                a.source_bytes.get_or_create(&labels).set(clamp(s.bytes));
                a.source_cost.get_or_create(&labels).set(s.cost);
                a.source_quarantined
                    .get_or_create(&labels)
                    .set(i64::from(s.quarantined));
            }
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

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ApplianceMetrics {
    fn register(&self, root: &mut Registry) {
        let r = root.sub_registry_with_prefix("fill_appliance");
        r.register(
            "state",
            "1 for the lifecycle state it is in",
            self.state.clone(),
        );
        r.register("serving", "1 while content is served", self.serving.clone());
        r.register(
            "check_passed",
            "1 if the last run of the turn-up check passed",
            self.check_passed.clone(),
        );
        r.register(
            "checks_last_run_timestamp_seconds",
            "When the turn-up checks last ran (0: never)",
            self.checked_at.clone(),
        );
        r.register(
            "fill_bytes",
            "Target bytes the store holds",
            self.fill_bytes.clone(),
        );
        r.register(
            "target_bytes",
            "Bytes of the target",
            self.target_bytes.clone(),
        );
        r.register(
            "offload_ratio",
            "Share of the target's demand held",
            self.offload.clone(),
        );
        let r = root.sub_registry_with_prefix("fill_last_fill");
        r.register(
            "end_timestamp_seconds",
            "When the store's last fill ended (0: none recorded)",
            self.last_end.clone(),
        );
        r.register(
            "success_timestamp_seconds",
            "When the store's last successful fill ended (0: none)",
            self.last_success.clone(),
        );
        r.register(
            "outcome",
            "1 for how the last fill ended",
            self.outcome.clone(),
        );
        r.register(
            "source_bytes",
            "Verified bytes the last fill took from the source",
            self.source_bytes.clone(),
        );
        r.register(
            "source_cost",
            "Money the last fill spent on the source",
            self.source_cost.clone(),
        );
        r.register(
            "source_quarantined",
            "1 if the source was quarantined during the last fill",
            self.source_quarantined.clone(),
        );
    }
}
