//! `fill-control serve`: the API and the outbox's sender in one process, on one database.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::api::{self, App};
use crate::db::Db;
use crate::mail::{self, SmtpConfig};

/// The control plane's config file (`--config`, TOML).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where emails go out; without it they stay queued (and listed per appliance).
    pub smtp: Option<SmtpConfig>,
    /// How often the outbox is looked at, seconds (default 2).
    pub mail_interval: Option<u64>,
    /// How long an installed appliance may go without reporting before it is flagged
    /// `silent` (default `15m`).
    pub silence: Option<String>,
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

/// Serves the API on `listener` and sends the outbox, until the future is dropped.
pub async fn run(db: Db, listener: tokio::net::TcpListener, config: Config) -> Result<()> {
    let silence = match &config.silence {
        None => 15 * 60,
        Some(s) => fill_core::duration::parse_duration(s)
            .with_context(|| format!("bad silence {s:?}"))?
            .as_secs() as i64,
    };
    let app = Arc::new(App {
        db: db.clone(),
        clock: api::wall_clock,
        silence,
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
