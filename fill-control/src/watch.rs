//! What the control plane does on its own, every tick, whichever instance ticks: rolling
//! upgrades move on (`upgrade::tick`), ops are alerted of each appliance that stopped
//! reporting (once per silence: the alert's id carries the last report's time), and each
//! appliance waiting uninstalled gets its daily reminder with the price of waiting
//! (`waiting::remind`). Every instance may tick; what each does is recorded once (see
//! `ledger`).

use std::time::Duration;

use sqlx::Row;

use crate::db::Db;
use crate::ledger::{self, Refusal};
use crate::notify::{self, Step};
use crate::{upgrade, waiting};

/// How the watch runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Between ticks.
    pub every: Duration,
    /// How long a reporting appliance may be silent, seconds.
    pub silence: i64,
    /// How long an upgrade's phase may last, seconds.
    pub upgrade_timeout: i64,
    /// How waiting is priced.
    pub pricing: waiting::Pricing,
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The upgrades'.
    pub upgrades: upgrade::Ticked,
    /// Appliances newly found silent (alerted).
    pub silent: usize,
    /// Reminders queued for appliances waiting to be installed.
    pub reminders: usize,
}

/// One tick at `now`.
pub async fn tick(db: &Db, s: &Settings, now: i64) -> Result<Tick, Refusal> {
    Ok(Tick {
        upgrades: upgrade::tick(db, now, s.upgrade_timeout).await?,
        silent: alert_silent(db, now, s.silence).await?,
        reminders: waiting::remind(db, &s.pricing, now).await?,
    })
}

/// Alerts ops, once per silence, of each appliance that reported before and has not for
/// longer than `silence` seconds while it should (installed and on).
async fn alert_silent(db: &Db, now: i64, silence: i64) -> Result<usize, Refusal> {
    let rows = sqlx::query(
        "SELECT a.serial, a.deployment, a.state, a.last_report, d.site FROM appliances a JOIN deployments d ON d.id = a.deployment \
         WHERE a.state IN ('installed', 'burn_in', 'live', 'draining', 'drained', 'maintenance') \
         AND a.last_report IS NOT NULL AND a.last_report < $1",
    )
    .bind(now - silence)
    .fetch_all(&db.pool)
    .await?;
    let mut alerted = 0;
    for r in rows {
        let (serial, deployment, state, last, site): (String, String, String, i64, String) = (
            r.try_get("serial")?,
            r.try_get("deployment")?,
            r.try_get("state")?,
            r.try_get("last_report")?,
            r.try_get("site")?,
        );
        let key = format!("{serial}/silent/{last}");
        if ledger::queued(db, &key).await? {
            continue;
        }
        let ctx = notify::Context {
            site,
            serial: Some(serial.clone()),
            detail: format!(
                "State {state}; last report {} ago ({}).",
                fill_core::duration::human_secs(now - last),
                fill_core::duration::format_rfc3339(last)
            ),
        };
        let mut tx = db.pool.begin().await?;
        let step = Step::AlertSilent;
        ledger::queue_ops(&mut tx, &deployment, Some(&serial), &key, step, &ctx, now).await?;
        tx.commit().await?;
        alerted += 1;
    }
    Ok(alerted)
}

/// Ticks every `s.every` until the future is dropped; failures are logged.
pub async fn run(db: Db, s: Settings, clock: fn() -> i64) {
    loop {
        match tick(&db, &s, clock()).await {
            Ok(t) if t != Tick::default() => tracing::info!("{t:?}"),
            Ok(_) => {}
            Err(e) => tracing::warn!("watch: {e}"),
        }
        tokio::time::sleep(s.every).await;
    }
}
