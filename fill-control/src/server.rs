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
    /// How often the control plane looks at rollouts and silences (default `10s`).
    pub tick: Option<String>,
    /// How long one phase of an upgrade (drain, install, burn-in) may last before the
    /// upgrade fails (default `6h`).
    pub upgrade_timeout: Option<String>,
}

/// The most a config file may weigh.
const MAX_CONFIG: u64 = 1 << 20;

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self> {
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
        toml::from_str(&text).with_context(|| format!("bad config {}", path.display()))
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
    /// How the watch runs, from the config.
    pub fn watch(&self) -> Result<watch::Settings> {
        Ok(watch::Settings {
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
    let watch = config.watch()?;
    let silence = watch.silence;
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
