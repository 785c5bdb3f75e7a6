//! Rolling off-peak upgrades. Ops schedule a software version for a set of appliances (a
//! rollout); each appliance's upgrade goes, one phase at a time:
//!
//! `pending` → `draining` (the appliance: live → draining) → `upgrading` (drained →
//! maintenance; it is told the version, runs its maintenance action, and must then report
//! that version) → `burn_in` (maintenance → burn_in; its checks run again) → `done` (live).
//!
//! An upgrade starts only inside its site's off-peak window (local time in the site's IANA
//! zone) and only while fewer than the rollout's `max_out` appliances of the site are out
//! (draining, drained, in maintenance, or in an upgrade's burn-in). A phase that fails (the
//! appliance reports its upgrade failed) or outlasts the timeout fails the upgrade: the
//! site's other pending upgrades of that rollout stop, and ops are alerted. Emails go out at
//! start and end.
//!
//! Exactly once with several instances: a phase moves with `UPDATE … WHERE phase = <the one
//! read>` in the transaction that records the appliance's step; starting an upgrade first
//! locks the deployment's row (`turn`), so two instances cannot both take a site's last slot.

use anyhow::Context as _;
use fill_core::lifecycle::State;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::auth::Caller;
use crate::db::Db;
use crate::ledger::{self, Appliance, Refusal, Tx, invalid, printable};
use crate::notify::{self, Step};

/// The most appliances one rollout names.
pub const MAX_APPLIANCES: usize = 10_000;

/// A phase of one appliance's upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for its turn and its site's off-peak window.
    Pending,
    /// Taken out: draining.
    Draining,
    /// Drained and in maintenance: installing the version.
    Upgrading,
    /// Runs the version: its checks run again.
    BurnIn,
    /// Live on the version.
    Done,
    /// Failed (see its detail); the site's rollout stopped.
    Failed,
    /// Not started: another appliance of the site failed.
    Stopped,
}

impl Phase {
    /// Its name in the database.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Draining => "draining",
            Self::Upgrading => "upgrading",
            Self::BurnIn => "burn_in",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> Result<Self, Refusal> {
        [
            Self::Pending,
            Self::Draining,
            Self::Upgrading,
            Self::BurnIn,
            Self::Done,
            Self::Failed,
            Self::Stopped,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| Refusal::Failed(anyhow::anyhow!("unknown upgrade phase {s:?}")))
    }

    /// Whether the appliance is out of service for it.
    pub fn is_out(self) -> bool {
        matches!(self, Self::Draining | Self::Upgrading | Self::BurnIn)
    }
}

/// What ops schedule (`POST /api/rollouts`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutAsk {
    /// The software version the appliances must report after.
    pub version: String,
    /// The appliances, in the order each site takes them.
    pub appliances: Vec<String>,
    /// How many appliances of a site may be out at once (default 1).
    #[serde(default)]
    pub max_out: Option<u32>,
}

/// Schedules a rollout; its id. Appliances already on the version are `done` at once.
pub async fn schedule(
    db: &Db,
    caller: &Caller,
    ask: &RolloutAsk,
    now: i64,
) -> Result<String, Refusal> {
    if !matches!(caller, Caller::Ops { .. }) {
        return Err(Refusal::Forbidden("only ops schedule upgrades".into()));
    }
    printable("version", &ask.version, 100)?;
    if ask.appliances.is_empty() || ask.appliances.len() > MAX_APPLIANCES {
        return Err(invalid(format!("appliances: 1 to {MAX_APPLIANCES}")));
    }
    let max_out = ask.max_out.unwrap_or(1);
    if !(1..=64).contains(&max_out) {
        return Err(invalid("max_out: 1 to 64"));
    }
    let id = format!("rollout-{}", &crate::auth::random_hex()?[..16]);
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO rollouts (id, version, max_out, actor, created) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(&ask.version)
    .bind(i64::from(max_out))
    .bind(caller.actor())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for (position, serial) in ask.appliances.iter().enumerate() {
        let row = sqlx::query("SELECT deployment, version FROM appliances WHERE serial = $1")
            .bind(serial)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| invalid(format!("no appliance {serial}")))?;
        let busy = sqlx::query(
            "SELECT rollout FROM upgrades WHERE appliance = $1 AND phase IN ('pending', 'draining', 'upgrading', 'burn_in')",
        )
        .bind(serial)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = busy {
            return Err(Refusal::Conflict(format!(
                "{serial} is in rollout {} already",
                r.try_get::<String, _>("rollout")?
            )));
        }
        let on_it = row.try_get::<Option<String>, _>("version")?.as_deref() == Some(&ask.version);
        let (phase, detail) = if on_it {
            (Phase::Done, format!("already on {}", ask.version))
        } else {
            (Phase::Pending, String::new())
        };
        let put = sqlx::query(
            "INSERT INTO upgrades (rollout, appliance, deployment, position, phase, since, started, finished, detail) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7)",
        )
        .bind(&id)
        .bind(serial)
        .bind(row.try_get::<String, _>("deployment")?)
        .bind(position as i64)
        .bind(phase.name())
        .bind(now)
        .bind(detail)
        .execute(&mut *tx)
        .await;
        if let Err(e) = put {
            return Err(if crate::db::is_conflict(&e) {
                invalid(format!("{serial} is named twice"))
            } else {
                e.into()
            });
        }
    }
    tx.commit().await?;
    Ok(id)
}

/// An appliance's upgrade in progress.
#[derive(Debug, Clone)]
pub struct Active {
    /// The rollout.
    pub rollout: String,
    /// The version it goes to.
    pub version: String,
    /// Its phase (out: draining, upgrading or burn-in).
    pub phase: Phase,
    /// Since when (unix seconds).
    pub since: i64,
}

/// The appliance's upgrade in progress, if any.
pub async fn active(tx: &mut Tx<'_>, serial: &str) -> Result<Option<Active>, Refusal> {
    let row = sqlx::query(
        "SELECT u.rollout, r.version, u.phase, u.since FROM upgrades u JOIN rollouts r ON r.id = u.rollout \
         WHERE u.appliance = $1 AND u.phase IN ('draining', 'upgrading', 'burn_in')",
    )
    .bind(serial)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(Active {
            rollout: r.try_get("rollout")?,
            version: r.try_get("version")?,
            phase: Phase::parse(&r.try_get::<String, _>("phase")?)?,
            since: r.try_get("since")?,
        })
    })
    .transpose()
}

/// Moves an upgrade from phase `from` to `to` (once: `false` if another instance moved it).
async fn set_phase(
    tx: &mut Tx<'_>,
    rollout: &str,
    serial: &str,
    (from, to): (Phase, Phase),
    detail: &str,
    now: i64,
) -> Result<bool, Refusal> {
    let started = if from == Phase::Pending {
        Some(now)
    } else {
        None
    };
    let finished = if matches!(to, Phase::Done | Phase::Failed | Phase::Stopped) {
        Some(now)
    } else {
        None
    };
    let moved = sqlx::query(
        "UPDATE upgrades SET phase = $1, since = $2, started = COALESCE($3, started), finished = $4, detail = $5 \
         WHERE rollout = $6 AND appliance = $7 AND phase = $8",
    )
    .bind(to.name())
    .bind(now)
    .bind(started)
    .bind(finished)
    .bind(detail)
    .bind(rollout)
    .bind(serial)
    .bind(from.name())
    .execute(&mut **tx)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// What a report of an appliance in an upgrade is answered, beyond the usual.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Told {
    /// Install this version (the maintenance action), then report it.
    pub upgrade: Option<String>,
    /// Start burn-in (the version is installed).
    pub start_burn_in: bool,
}

/// In a report's transaction, after its usual steps: the appliance's upgrade moves on. `a`
/// is the appliance as those steps left it; `version` what it reports running; `failed` the
/// version and error of its last failed upgrade, if it says one failed.
pub async fn advance(
    tx: &mut Tx<'_>,
    a: &mut Appliance,
    up: &Active,
    version: &str,
    failed: Option<(&str, &str)>,
    now: i64,
) -> Result<Told, Refusal> {
    let mut told = Told::default();
    let to = match up.phase {
        Phase::Draining if a.state == State::Drained => Phase::Upgrading,
        Phase::Upgrading if version == up.version && a.state == State::Maintenance => Phase::BurnIn,
        Phase::Upgrading => {
            match failed.filter(|(v, _)| *v == up.version) {
                Some((_, error)) => {
                    let why = format!("the appliance could not install {}: {error}", up.version);
                    fail(tx, up, a, &why, now).await?;
                }
                None => told.upgrade = Some(up.version.clone()),
            }
            return Ok(told);
        }
        Phase::BurnIn if a.state == State::Live => Phase::Done,
        _ => return Ok(told),
    };
    let detail = if to == Phase::Done {
        format!("live on {version}")
    } else {
        String::new()
    };
    if !set_phase(tx, &up.rollout, &a.serial, (up.phase, to), &detail, now).await? {
        // Another instance moved it first.
        return Ok(told);
    }
    match to {
        Phase::Upgrading => {
            let why = format!("upgrade to {} (rollout {})", up.version, up.rollout);
            ledger::step(tx, a, State::Maintenance, CONTROL, &why, None, now).await?;
            told.upgrade = Some(up.version.clone());
        }
        Phase::BurnIn => {
            let why = format!("runs {}: turn-up checks again", up.version);
            ledger::step(tx, a, State::BurnIn, CONTROL, &why, None, now).await?;
            told.start_burn_in = true;
        }
        _ => {
            let ctx = notify::Context {
                site: a.site.clone(),
                serial: Some(a.serial.clone()),
                detail: format!("Version {}, rollout {}.", up.version, up.rollout),
            };
            let key = format!("{}/upgrade/{}/done", a.serial, up.rollout);
            let step = Step::UpgradeFinished;
            ledger::queue(tx, &a.deployment, Some(&a.serial), &key, step, &ctx, now).await?;
        }
    }
    Ok(told)
}

/// The actor of the control plane's own steps.
const CONTROL: &str = "control-plane";

/// Fails an upgrade: the site's other pending upgrades of the rollout stop; ops hear why.
async fn fail(
    tx: &mut Tx<'_>,
    up: &Active,
    a: &Appliance,
    why: &str,
    now: i64,
) -> Result<(), Refusal> {
    if !set_phase(
        tx,
        &up.rollout,
        &a.serial,
        (up.phase, Phase::Failed),
        why,
        now,
    )
    .await?
    {
        return Ok(());
    }
    sqlx::query(
        "UPDATE upgrades SET phase = 'stopped', since = $1, finished = $1, detail = $2 \
         WHERE rollout = $3 AND deployment = $4 AND phase = 'pending'",
    )
    .bind(now)
    .bind(format!("stopped: the upgrade of {} failed", a.serial))
    .bind(&up.rollout)
    .bind(&a.deployment)
    .execute(&mut **tx)
    .await?;
    let ctx = notify::Context {
        site: a.site.clone(),
        serial: Some(a.serial.clone()),
        detail: format!(
            "Rollout {} to {}, phase {}: {why}\nThe appliance is in state {}.",
            up.rollout,
            up.version,
            up.phase.name(),
            a.state
        ),
    };
    let key = format!("{}/upgrade/{}/failed", a.serial, up.rollout);
    ledger::queue_ops(
        tx,
        &a.deployment,
        Some(&a.serial),
        &key,
        Step::AlertUpgradeFailed,
        &ctx,
        now,
    )
    .await
}

/// Whether `now` (unix seconds) falls in the window `HH:MM-HH:MM` (local time in `tz`; a
/// window may cross midnight).
pub fn in_window(now: i64, tz: &str, window: &str) -> anyhow::Result<bool> {
    let zone = jiff::tz::TimeZone::get(tz).with_context(|| format!("time zone {tz:?}"))?;
    let local = jiff::Timestamp::from_second(now)
        .context("the clock")?
        .to_zoned(zone);
    let minutes = |hm: &str| -> anyhow::Result<i32> {
        let (h, m) = hm
            .split_once(':')
            .with_context(|| format!("window {window:?}"))?;
        Ok(h.parse::<i32>()? * 60 + m.parse::<i32>()?)
    };
    let (a, b) = window
        .split_once('-')
        .with_context(|| format!("window {window:?}"))?;
    let (a, b) = (minutes(a)?, minutes(b)?);
    let t = i32::from(local.hour()) * 60 + i32::from(local.minute());
    Ok(if a < b {
        a <= t && t < b
    } else {
        t >= a || t < b
    })
}

/// What a tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ticked {
    /// Upgrades started.
    pub started: usize,
    /// Upgrades failed for taking too long.
    pub timed_out: usize,
}

/// Fails upgrades whose phase outlasted `timeout` seconds, and starts the pending ones whose
/// site is in its off-peak window and has a slot.
pub async fn tick(db: &Db, now: i64, timeout: i64) -> Result<Ticked, Refusal> {
    let mut done = Ticked::default();
    let late = sqlx::query(
        "SELECT u.appliance, u.rollout, r.version, u.phase, u.since FROM upgrades u JOIN rollouts r ON r.id = u.rollout \
         WHERE u.phase IN ('draining', 'upgrading', 'burn_in') AND u.since < $1",
    )
    .bind(now - timeout)
    .fetch_all(&db.pool)
    .await?;
    for r in late {
        let serial: String = r.try_get("appliance")?;
        let up = Active {
            rollout: r.try_get("rollout")?,
            version: r.try_get("version")?,
            phase: Phase::parse(&r.try_get::<String, _>("phase")?)?,
            since: r.try_get("since")?,
        };
        let mut tx = db.pool.begin().await?;
        let Some(a) = ledger::load(&mut *tx, &serial).await? else {
            continue;
        };
        let why = format!(
            "phase {} took longer than {}",
            up.phase.name(),
            fill_core::duration::human_secs(timeout)
        );
        fail(&mut tx, &up, &a, &why, now).await?;
        tx.commit().await?;
        done.timed_out += 1;
    }
    let sites = sqlx::query(
        "SELECT DISTINCT u.deployment, u.rollout FROM upgrades u WHERE u.phase = 'pending' ORDER BY u.deployment, u.rollout",
    )
    .fetch_all(&db.pool)
    .await?;
    for s in sites {
        let (deployment, rollout): (String, String) =
            (s.try_get("deployment")?, s.try_get("rollout")?);
        done.started += start_next(db, &deployment, &rollout, now).await?;
    }
    Ok(done)
}

/// Starts the next pending upgrades of `rollout` at `deployment` while the site has slots
/// and is in its off-peak window; how many started.
async fn start_next(db: &Db, deployment: &str, rollout: &str, now: i64) -> Result<usize, Refusal> {
    let mut tx = db.pool.begin().await?;
    // The lock: instances starting upgrades at one site take turns from here on.
    let site = sqlx::query("UPDATE deployments SET turn = turn + 1 WHERE id = $1")
        .bind(deployment)
        .execute(&mut *tx)
        .await?;
    if site.rows_affected() != 1 {
        return Ok(0);
    }
    let d = sqlx::query("SELECT site, tz, offpeak FROM deployments WHERE id = $1")
        .bind(deployment)
        .fetch_one(&mut *tx)
        .await?;
    let (tz, offpeak): (String, String) = (d.try_get("tz")?, d.try_get("offpeak")?);
    match in_window(now, &tz, &offpeak) {
        Ok(true) => {}
        Ok(false) => return Ok(0),
        Err(e) => {
            tracing::warn!("deployment {deployment}: {e:#}: no upgrade starts there");
            return Ok(0);
        }
    }
    let r = sqlx::query("SELECT version, max_out FROM rollouts WHERE id = $1")
        .bind(rollout)
        .fetch_one(&mut *tx)
        .await?;
    let (version, max_out): (String, i64) = (r.try_get("version")?, r.try_get("max_out")?);
    let out: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM appliances a WHERE a.deployment = $1 AND (a.state IN ('draining', 'drained', 'maintenance') \
         OR EXISTS (SELECT 1 FROM upgrades u WHERE u.appliance = a.serial AND u.phase IN ('draining', 'upgrading', 'burn_in')))",
    )
    .bind(deployment)
    .fetch_one(&mut *tx)
    .await?
    .try_get("n")?;
    if out >= max_out {
        return Ok(0);
    }
    // Only a live appliance is taken out: one not serving waits for its turn until it is.
    let next = sqlx::query(
        "SELECT u.appliance FROM upgrades u JOIN appliances a ON a.serial = u.appliance \
         WHERE u.rollout = $1 AND u.deployment = $2 AND u.phase = 'pending' AND a.state = 'live' \
         ORDER BY u.position LIMIT $3",
    )
    .bind(rollout)
    .bind(deployment)
    .bind(max_out - out)
    .fetch_all(&mut *tx)
    .await?;
    let mut started = 0;
    for n in next {
        let serial: String = n.try_get("appliance")?;
        let Some(mut a) = ledger::load(&mut *tx, &serial).await? else {
            continue;
        };
        if !set_phase(
            &mut tx,
            rollout,
            &serial,
            (Phase::Pending, Phase::Draining),
            "",
            now,
        )
        .await?
        {
            continue;
        }
        let why = format!("upgrade to {version} (rollout {rollout}), off-peak {offpeak} {tz}");
        ledger::step(&mut tx, &mut a, State::Draining, CONTROL, &why, None, now).await?;
        let ctx = notify::Context {
            site: a.site.clone(),
            serial: Some(serial.clone()),
            detail: format!("Version {version}, rollout {rollout}."),
        };
        let key = format!("{serial}/upgrade/{rollout}/start");
        let step = Step::UpgradeStarted;
        ledger::queue(&mut tx, deployment, Some(&serial), &key, step, &ctx, now).await?;
        started += 1;
    }
    tx.commit().await?;
    Ok(started)
}

/// A rollout as ops see it (`GET /api/rollouts/{id}`).
#[derive(Debug, Serialize)]
pub struct RolloutView {
    /// Its id.
    pub id: String,
    /// The version.
    pub version: String,
    /// Appliances of a site out at once, at most.
    pub max_out: i64,
    /// Who scheduled it.
    pub actor: String,
    /// When (unix seconds).
    pub created: i64,
    /// How many upgrades are in each phase.
    pub phases: std::collections::BTreeMap<String, u64>,
    /// Each appliance's upgrade, by site and order.
    pub upgrades: Vec<UpgradeView>,
}

/// One appliance's upgrade.
#[derive(Debug, Serialize)]
pub struct UpgradeView {
    /// The appliance.
    pub serial: String,
    /// Its site.
    pub site: String,
    /// Its phase.
    pub phase: String,
    /// When it entered the phase.
    pub since: i64,
    /// When it was taken out.
    pub started: Option<i64>,
    /// When it ended.
    pub finished: Option<i64>,
    /// Why it failed or stopped, or what it ended on.
    pub detail: String,
}

/// A rollout, for ops (anyone else: not found).
pub async fn rollout(db: &Db, caller: &Caller, id: &str) -> Result<RolloutView, Refusal> {
    let hidden = || Refusal::NotFound(format!("no rollout {id}"));
    if !matches!(caller, Caller::Ops { .. }) {
        return Err(hidden());
    }
    let r = sqlx::query("SELECT id, version, max_out, actor, created FROM rollouts WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(hidden)?;
    let upgrades = sqlx::query(
        "SELECT u.appliance, d.site, u.phase, u.since, u.started, u.finished, u.detail FROM upgrades u \
         JOIN deployments d ON d.id = u.deployment WHERE u.rollout = $1 ORDER BY d.site, u.position",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?
    .into_iter()
    .map(|u| {
        Ok(UpgradeView {
            serial: u.try_get("appliance")?,
            site: u.try_get("site")?,
            phase: u.try_get("phase")?,
            since: u.try_get("since")?,
            started: u.try_get("started")?,
            finished: u.try_get("finished")?,
            detail: u.try_get("detail")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let mut phases = std::collections::BTreeMap::new();
    for u in &upgrades {
        *phases.entry(u.phase.clone()).or_insert(0) += 1;
    }
    Ok(RolloutView {
        id: r.try_get("id")?,
        version: r.try_get("version")?,
        max_out: r.try_get("max_out")?,
        actor: r.try_get("actor")?,
        created: r.try_get("created")?,
        phases,
        upgrades,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_local_time_across_midnight_and_dst() {
        // 2026-07-01 01:30 UTC is 03:30 in Berlin (summer, UTC+2).
        let summer = 1_782_869_400;
        assert!(in_window(summer, "Europe/Berlin", "02:00-06:00").unwrap());
        assert!(!in_window(summer, "UTC", "02:00-06:00").unwrap());
        // 2026-01-15 01:30 UTC is 02:30 in Berlin (winter, UTC+1).
        let winter = 1_768_440_600;
        assert!(in_window(winter, "Europe/Berlin", "02:00-06:00").unwrap());
        assert!(!in_window(winter, "Europe/Berlin", "03:00-06:00").unwrap());
        // A window across midnight.
        assert!(in_window(winter, "UTC", "22:00-02:00").unwrap());
        assert!(!in_window(winter, "UTC", "02:00-22:00").unwrap());
        assert!(in_window(winter, "Mars/Olympus", "02:00-06:00").is_err());
    }
}
