//! `fill-control serve`: the API and the outbox's sender in one process, on one database.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::api::{self, App};
use crate::db::Db;
use crate::mail::{self, SmtpConfig};
use crate::watch;

/// The control plane's config file (`--config`, TOML).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where emails go out; without it they stay queued (and listed per appliance).
    pub smtp: Option<SmtpConfig>,
    /// How often the outbox is looked at, seconds (default 2).
    pub mail_interval: Option<u64>,
    /// How long an installed appliance may go without reporting before it is flagged
    /// `silent` and ops are alerted (default `15m`).
    pub silence: Option<String>,
    /// The control plane's public base URL, for links in emails (default: `http://` and
    /// the address it listens on).
    pub public_url: Option<String>,
    /// The bearer token `GET /metrics` needs (at least 16 characters); without one
    /// `/metrics` is off.
    pub metrics_token: Option<String>,
    /// How often the control plane looks at rollouts and silences (default `10s`).
    pub tick: Option<String>,
    /// How long one phase of an upgrade (drain, install, burn-in) may last before the
    /// upgrade fails (default `6h`).
    pub upgrade_timeout: Option<String>,
    /// How waiting is priced.
    #[serde(default)]
    pub waiting: WaitingConfig,
}

/// `[waiting]`: the price of waiting.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitingConfig {
    /// Money per GiB a burn-in fetches (default 0.02, the simulator's origin).
    pub cost_per_gib: Option<f64>,
    /// The money's unit (default `USD`).
    pub currency: Option<String>,
    /// Bytes a day of waiting adds, as a share of what an appliance holds; default: the
    /// simulator's churn model (`simulation`) says.
    pub churn_per_day: Option<f64>,
    /// The simulator's model (`fill simulate --config`'s TOML); default its defaults.
    pub simulation: Option<std::path::PathBuf>,
}

impl WaitingConfig {
    /// The pricing; runs the churn model when no `churn_per_day` is given (blocking).
    pub fn pricing(&self) -> Result<crate::waiting::Pricing> {
        let cost_per_gib = self.cost_per_gib.unwrap_or(0.02);
        if !(cost_per_gib.is_finite() && cost_per_gib >= 0.0) {
            anyhow::bail!("config: waiting.cost_per_gib must be a number ≥ 0");
        }
        let currency = self.currency.clone().unwrap_or_else(|| "USD".into());
        if currency.is_empty() || currency.len() > 8 || currency.chars().any(char::is_control) {
            anyhow::bail!("config: waiting.currency: 1 to 8 characters, as USD or EUR");
        }
        let churn_per_day = match self.churn_per_day {
            Some(c) if c.is_finite() && (0.0..=1.0).contains(&c) => c,
            Some(_) => anyhow::bail!("config: waiting.churn_per_day must be between 0 and 1"),
            None => {
                let sim: fill_core::sim::SimConfig = match &self.simulation {
                    None => Default::default(),
                    Some(p) => toml::from_str(&read_bounded(p)?)
                        .with_context(|| format!("bad simulation config {}", p.display()))?,
                };
                let model = sim.validate().context("config: waiting.simulation")?;
                fill_core::sim::churn_per_day(&model, 7).context("the churn model")?
            }
        };
        Ok(crate::waiting::Pricing {
            cost_per_gib,
            currency,
            churn_per_day,
        })
    }
}

/// The most a config file may weigh.
const MAX_CONFIG: u64 = 1 << 20;

/// A text file of at most 1 MiB.
fn read_bounded(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG {
        anyhow::bail!("{} is larger than the limit of 1 MiB", path.display());
    }
    Ok(text)
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self> {
        toml::from_str(&read_bounded(path)?)
            .with_context(|| format!("bad config {}", path.display()))
    }
}

/// A duration of the config, or its default.
fn duration(name: &str, value: Option<&str>, default: Duration) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(v) => match fill_core::duration::parse_duration(v) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => anyhow::bail!("config: {name}: must be more than zero"),
            Err(e) => Err(e).with_context(|| format!("config: {name} {v:?}")),
        },
    }
}

impl Config {
    /// How the watch runs, from the config (with the pricing, which may run the churn
    /// model: blocking).
    pub fn watch(&self) -> Result<watch::Settings> {
        Ok(watch::Settings {
            pricing: self.waiting.pricing()?,
            every: duration("tick", self.tick.as_deref(), Duration::from_secs(10))?,
            silence: duration(
                "silence",
                self.silence.as_deref(),
                Duration::from_secs(15 * 60),
            )?
            .as_secs() as i64,
            upgrade_timeout: duration(
                "upgrade_timeout",
                self.upgrade_timeout.as_deref(),
                Duration::from_secs(6 * 3600),
            )?
            .as_secs() as i64,
        })
    }
}

/// Serves the API on `listener`, sends the outbox and runs the watch, until the future is
/// dropped.
pub async fn run(db: Db, listener: tokio::net::TcpListener, config: Config) -> Result<()> {
    let watch = tokio::task::spawn_blocking({
        let config = config.clone();
        move || config.watch()
    })
    .await
    .context("the config")??;
    tracing::info!(
        "waiting priced at {} {} per GiB, churn {:.3}% of what an appliance holds a day",
        watch.pricing.cost_per_gib,
        watch.pricing.currency,
        watch.pricing.churn_per_day * 100.0
    );
    let silence = watch.silence;
    let pricing = watch.pricing.clone();
    if config
        .metrics_token
        .as_ref()
        .is_some_and(|t| t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        anyhow::bail!("config: metrics_token: at least 16 characters, no spaces");
    }
    let public_url = match &config.public_url {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            u.trim_end_matches('/').to_owned()
        }
        Some(u) => anyhow::bail!("config: public_url {u:?} is not an http(s) URL"),
        None => format!(
            "http://{}",
            listener.local_addr().context("no local address")?
        ),
    };
    tokio::spawn(watch::run(db.clone(), watch, api::wall_clock));
    let app = Arc::new(App {
        db: db.clone(),
        clock: api::wall_clock,
        silence,
        public_url,
        pricing,
        metrics: crate::metrics::Metrics::new(),
        metrics_token: config.metrics_token.clone(),
        fleet_order: Default::default(),
    });
    if let Some(smtp) = &config.smtp {
        let sender = mail::Sender::new(smtp)?;
        let every = Duration::from_secs(config.mail_interval.unwrap_or(2).clamp(1, 3600));
        tokio::spawn(async move {
            loop {
                if let Err(e) = mail::send_due(&db, &sender, api::wall_clock(), 50).await {
                    tracing::warn!("outbox: {e:#}");
                }
                tokio::time::sleep(every).await;
            }
        });
    }
    api::serve(listener, app).await
}
