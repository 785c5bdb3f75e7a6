//! Prometheus metrics (OpenMetrics text at `GET /metrics`, with `Authorization: Bearer
//! <metrics_token>` from the config; without a token configured, `/metrics` is off).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `fill_control_requests_total` | route, status | API requests answered by this instance |
//! | `fill_control_request_duration_seconds` | route | time to answer |
//! | `fill_control_appliances` | state | the fleet's appliances in each lifecycle state |
//! | `fill_control_appliances_silent` | | installed or later and silent past `silence` |
//! | `fill_control_emails_unsent` | | emails in the outbox not sent yet |
//! | `fill_control_emails_failing` | | of those, the ones a try failed (`last_error` set) |
//! | `fill_control_upgrades` | phase | upgrades of every rollout in each phase |
//!
//! `route` is one of a fixed set (`report`, `surveys`…, `other`), so no client can grow the
//! label set; the fleet's figures are read from the database at each scrape (every instance
//! shows the same).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::Row;

use crate::db::Db;
use crate::ledger::Refusal;

/// Labels of per-request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Which route.
    pub route: &'static str,
    /// HTTP status.
    pub status: u16,
}

/// Labels of per-route histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Which route.
    pub route: &'static str,
}

/// A state's count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The lifecycle state.
    pub state: &'static str,
}

/// A phase's count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The upgrade phase.
    pub phase: &'static str,
}

/// The phases an upgrade can be in.
const PHASES: [&str; 7] = [
    "pending",
    "draining",
    "upgrading",
    "burn_in",
    "done",
    "failed",
    "stopped",
];

fn latency_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// The control plane's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to answer.
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    appliances: Family<StateLabels, Gauge>,
    silent: Gauge,
    unsent: Gauge,
    failing: Gauge,
    upgrades: Family<PhaseLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fill_control");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let (appliances, upgrades) = (Family::default(), Family::default());
        let (silent, unsent, failing) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("requests", "API requests answered", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time to answer an API request",
            latency.clone(),
        );
        registry.register(
            "appliances",
            "Appliances in each lifecycle state",
            appliances.clone(),
        );
        registry.register(
            "appliances_silent",
            "Installed or later appliances silent past the silence allowed",
            silent.clone(),
        );
        registry.register(
            "emails_unsent",
            "Emails in the outbox not sent yet",
            unsent.clone(),
        );
        registry.register(
            "emails_failing",
            "Unsent emails a try failed for",
            failing.clone(),
        );
        registry.register(
            "upgrades",
            "Upgrades of every rollout in each phase",
            upgrades.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            appliances,
            silent,
            unsent,
            failing,
            upgrades,
        }
    }

    /// Reads the fleet's figures and encodes every metric.
    pub async fn render(&self, db: &Db, now: i64, silence: i64) -> Result<String, Refusal> {
        let count = |sql: &'static str| async move {
            sqlx::query(sql)
                .fetch_one(&db.pool)
                .await?
                .try_get::<i64, _>("n")
        };
        let by_state = sqlx::query("SELECT state, COUNT(*) AS n FROM appliances GROUP BY state")
            .fetch_all(&db.pool)
            .await?;
        for st in fill_core::lifecycle::STATES {
            let n = by_state
                .iter()
                .find(|r| {
                    r.try_get::<String, _>("state")
                        .is_ok_and(|s| s == st.name())
                })
                .map(|r| r.try_get::<i64, _>("n"))
                .transpose()?
                .unwrap_or(0);
            self.appliances
                .get_or_create(&StateLabels { state: st.name() })
                .set(n);
        }
        let silent = sqlx::query(
            "SELECT COUNT(*) AS n FROM appliances WHERE state IN ('installed', 'burn_in', 'live', 'draining', 'drained') \
             AND (last_report IS NULL OR last_report < $1)",
        )
        .bind(now - silence)
        .fetch_one(&db.pool)
        .await?
        .try_get::<i64, _>("n")?;
        self.silent.set(silent);
        self.unsent
            .set(count("SELECT COUNT(*) AS n FROM emails WHERE sent IS NULL").await?);
        self.failing.set(
            count("SELECT COUNT(*) AS n FROM emails WHERE sent IS NULL AND last_error IS NOT NULL")
                .await?,
        );
        let by_phase = sqlx::query("SELECT phase, COUNT(*) AS n FROM upgrades GROUP BY phase")
            .fetch_all(&db.pool)
            .await?;
        for phase in PHASES {
            let n = by_phase
                .iter()
                .find(|r| r.try_get::<String, _>("phase").is_ok_and(|p| p == phase))
                .map(|r| r.try_get::<i64, _>("n"))
                .transpose()?
                .unwrap_or(0);
            self.upgrades.get_or_create(&PhaseLabels { phase }).set(n);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| Refusal::Failed(anyhow::anyhow!("metrics: {e}")))?;
        Ok(out)
    }
}

/// The route label of a request path (a fixed set).
pub fn route(method: &hyper::Method, parts: &[&str]) -> &'static str {
    use hyper::Method as M;
    match (method, parts) {
        (_, ["healthz"]) => "healthz",
        (_, ["metrics"]) => "metrics",
        (_, ["invite", _]) => "invite_page",
        (_, ["api", "login"]) => "login",
        (_, ["api", "logout"]) => "logout",
        (_, ["api", "invitations", "accept"]) => "invitation",
        (_, ["api", "surveys"]) => "surveys",
        (_, ["api", "deployments", _, "appliances"]) => "allocate",
        (&M::GET, ["api", "appliances"]) => "appliances",
        (&M::GET, ["api", "appliances", _]) => "appliance",
        (_, ["api", "appliances", _, "transitions"]) => "transitions",
        (_, ["api", "appliances", _, "report"]) => "report",
        (_, ["api", "appliances", _, "prefill"]) => "prefill",
        (_, ["api", "catalogs", _]) => "catalogs",
        (_, ["api", "regions", _]) => "regions",
        (_, ["api", "rollouts", ..]) => "rollouts",
        (_, p) if crate::portal::is_portal(p) => "portal",
        _ => "other",
    }
}
