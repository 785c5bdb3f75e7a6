//! What callers read: an appliance's page (its tracking states with times, checks, emails,
//! pre-fill, upgrades, and while it waits uninstalled the price of waiting) and the list of
//! what a caller may see, with the `silent` flag.

use serde::Serialize;
use sqlx::Row;

use crate::auth::Caller;
use crate::db::Db;
use crate::ledger::{Refusal, may_see};
use crate::waiting::{self, Price, Pricing};

/// An appliance's page (`GET /api/appliances/{serial}`).
#[derive(Debug, Serialize)]
pub struct ApplianceView {
    /// Serial.
    pub serial: String,
    /// Deployment id.
    pub deployment: String,
    /// Partner.
    pub partner: String,
    /// Site.
    pub site: String,
    /// Hardware type.
    pub hardware: String,
    /// Capacity, bytes.
    pub capacity: i64,
    /// Region catalog.
    pub catalog: String,
    /// Current state.
    pub state: String,
    /// Carrier and tracking number, once shipped.
    pub carrier: Option<String>,
    /// Tracking number.
    pub tracking: Option<String>,
    /// Last report (unix seconds), version, BGP session.
    pub last_report: Option<i64>,
    /// Software version it reported.
    pub version: Option<String>,
    /// BGP session state it reported.
    pub bgp: Option<String>,
    /// Installed or later, and no report for longer than the silence allowed.
    pub silent: bool,
    /// The tracking states with their times: every event, oldest first.
    pub events: Vec<EventView>,
    /// The latest check results.
    pub checks: Vec<CheckView>,
    /// The emails sent or queued about it.
    pub emails: Vec<EmailView>,
    /// Its pre-fill, as the station last reported it.
    pub prefill: Option<serde_json::Value>,
    /// Prefixes its BGP session received, as it last reported.
    pub bgp_prefixes: Option<u64>,
    /// Its fill's progress, as it last reported (its status page's).
    pub progress: Option<serde_json::Value>,
    /// While draining or drained: the state a drain returns to.
    pub before_drain: Option<String>,
    /// The catalog of what its pre-fill left it holding (its id).
    pub prefill_catalog: Option<String>,
    /// Delivered and not installed: what its burn-in needs now and what each day adds.
    pub waiting: Option<Price>,
    /// Its upgrades, oldest first.
    pub upgrades: Vec<UpgradeLine>,
}

/// One of an appliance's upgrades.
#[derive(Debug, Serialize)]
pub struct UpgradeLine {
    /// The rollout.
    pub rollout: String,
    /// The version.
    pub version: String,
    /// The phase.
    pub phase: String,
    /// Taken out (unix seconds).
    pub started: Option<i64>,
    /// Ended.
    pub finished: Option<i64>,
    /// Why it failed or stopped, or what it ended on.
    pub detail: String,
}

/// An event.
#[derive(Debug, Serialize)]
pub struct EventView {
    /// Its number.
    pub seq: i64,
    /// Unix seconds.
    pub time: i64,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// A check result.
#[derive(Debug, Serialize)]
pub struct CheckView {
    /// When it ran.
    pub time: i64,
    /// Name.
    pub name: String,
    /// Passed.
    pub passed: bool,
    /// What it found.
    pub detail: String,
}

/// An email.
#[derive(Debug, Serialize)]
pub struct EmailView {
    /// To whom.
    pub recipient: String,
    /// Which step.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Queued (unix seconds).
    pub created: i64,
    /// Sent (unix seconds), once it was.
    pub sent: Option<i64>,
    /// Tries so far.
    pub attempts: i64,
}

/// The appliance's page, if the caller may see it.
pub async fn appliance(
    db: &Db,
    caller: &Caller,
    (now, silence, pricing): (i64, i64, &Pricing),
    serial: &str,
) -> Result<ApplianceView, Refusal> {
    let r = sqlx::query(
        "SELECT a.serial, a.deployment, d.partner, d.site, a.hardware, a.capacity, a.catalog, a.state, a.carrier, a.tracking, a.last_report, a.version, a.bgp, a.prefill, a.prefill_catalog, a.report, a.before_drain \
         FROM appliances a JOIN deployments d ON d.id = a.deployment WHERE a.serial = $1",
    )
    .bind(serial)
    .fetch_optional(&db.read)
    .await?
    .filter(|r| {
        r.try_get::<String, _>("partner")
            .is_ok_and(|p| may_see(caller, &p, serial))
    })
    .ok_or_else(|| Refusal::NotFound(format!("no appliance {serial}")))?;
    let events = sqlx::query("SELECT seq, time, from_state, to_state, actor, reason FROM events WHERE appliance = $1 ORDER BY seq")
        .bind(serial)
        .fetch_all(&db.read)
        .await?
        .into_iter()
        .map(|e| {
            Ok(EventView {
                seq: e.try_get("seq")?,
                time: e.try_get("time")?,
                from: e.try_get("from_state")?,
                to: e.try_get("to_state")?,
                actor: e.try_get("actor")?,
                reason: e.try_get("reason")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let checks = sqlx::query(
        "SELECT time, name, passed, detail FROM checks WHERE appliance = $1 AND time = (SELECT MAX(time) FROM checks WHERE appliance = $2) ORDER BY name",
    )
    .bind(serial)
    .bind(serial)
    .fetch_all(&db.read)
    .await?
    .into_iter()
    .map(|c| {
        Ok(CheckView {
            time: c.try_get("time")?,
            name: c.try_get("name")?,
            passed: c.try_get::<i64, _>("passed")? != 0,
            detail: c.try_get("detail")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let emails = sqlx::query("SELECT recipient, kind, subject, created, sent, attempts FROM emails WHERE appliance = $1 ORDER BY created, id")
        .bind(serial)
        .fetch_all(&db.read)
        .await?
        .into_iter()
        .map(|m| {
            Ok(EmailView {
                recipient: m.try_get("recipient")?,
                kind: m.try_get("kind")?,
                subject: m.try_get("subject")?,
                created: m.try_get("created")?,
                sent: m.try_get("sent")?,
                attempts: m.try_get("attempts")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let upgrades = sqlx::query(
        "SELECT u.rollout, r.version, u.phase, u.started, u.finished, u.detail FROM upgrades u \
         JOIN rollouts r ON r.id = u.rollout WHERE u.appliance = $1 ORDER BY r.created, u.rollout",
    )
    .bind(serial)
    .fetch_all(&db.read)
    .await?
    .into_iter()
    .map(|u| {
        Ok(UpgradeLine {
            rollout: u.try_get("rollout")?,
            version: u.try_get("version")?,
            phase: u.try_get("phase")?,
            started: u.try_get("started")?,
            finished: u.try_get("finished")?,
            detail: u.try_get("detail")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let state: String = r.try_get("state")?;
    let waiting = if state == "delivered" {
        waiting::price(db, serial, pricing).await?
    } else {
        None
    };
    let report = r
        .try_get::<Option<String>, _>("report")?
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let prefill = r
        .try_get::<Option<String>, _>("prefill")?
        .and_then(|p| serde_json::from_str(&p).ok());
    Ok(ApplianceView {
        serial: r.try_get("serial")?,
        deployment: r.try_get("deployment")?,
        partner: r.try_get("partner")?,
        site: r.try_get("site")?,
        hardware: r.try_get("hardware")?,
        capacity: r.try_get("capacity")?,
        catalog: r.try_get("catalog")?,
        state: r.try_get("state")?,
        carrier: r.try_get("carrier")?,
        tracking: r.try_get("tracking")?,
        last_report: r.try_get("last_report")?,
        version: r.try_get("version")?,
        bgp: r.try_get("bgp")?,
        silent: is_silent(
            &r.try_get::<String, _>("state")?,
            r.try_get("last_report")?,
            now,
            silence,
        ),
        events,
        checks,
        emails,
        prefill,
        prefill_catalog: r.try_get("prefill_catalog")?,
        bgp_prefixes: report.as_ref().and_then(|v| v["bgp"]["prefixes"].as_u64()),
        progress: report
            .as_ref()
            .map(|v| v["progress"].clone())
            .filter(|p| !p.is_null()),
        before_drain: r.try_get("before_drain")?,
        waiting,
        upgrades,
    })
}

/// A line of `GET /api/appliances`.
#[derive(Debug, Serialize)]
pub struct ApplianceLine {
    /// Serial.
    pub serial: String,
    /// Partner.
    pub partner: String,
    /// Site.
    pub site: String,
    /// State.
    pub state: String,
    /// Last report (unix seconds).
    pub last_report: Option<i64>,
    /// Installed or later, and no report for longer than the silence allowed.
    pub silent: bool,
}

/// Whether an appliance in `state` that last reported at `last_report` has been silent for
/// longer than `silence` seconds at `now`: one installed or later should be reporting.
pub fn is_silent(state: &str, last_report: Option<i64>, now: i64, silence: i64) -> bool {
    let reporting = matches!(
        state,
        "installed" | "burn_in" | "live" | "draining" | "drained"
    );
    reporting && last_report.is_none_or(|t| now - t > silence)
}

/// What the caller may see, by serial (at most `limit`, after `after`).
pub async fn appliances(
    db: &Db,
    caller: &Caller,
    (now, silence): (i64, i64),
    after: &str,
    limit: i64,
) -> Result<Vec<ApplianceLine>, Refusal> {
    let base = "SELECT a.serial, d.partner, d.site, a.state, a.last_report FROM appliances a JOIN deployments d ON d.id = a.deployment";
    let rows = match caller {
        Caller::Ops { .. } => {
            sqlx::query(&format!(
                "{base} WHERE a.serial > $1 ORDER BY a.serial LIMIT $2"
            ))
            .bind(after)
            .bind(limit)
            .fetch_all(&db.read)
            .await?
        }
        Caller::Partner { partner, .. } => {
            sqlx::query(&format!(
                "{base} WHERE a.serial > $1 AND d.partner = $2 ORDER BY a.serial LIMIT $3"
            ))
            .bind(after)
            .bind(partner)
            .bind(limit)
            .fetch_all(&db.read)
            .await?
        }
        Caller::Appliance { serial } => {
            sqlx::query(&format!(
                "{base} WHERE a.serial = $1 AND a.serial > $2 LIMIT $3"
            ))
            .bind(serial)
            .bind(after)
            .bind(limit)
            .fetch_all(&db.read)
            .await?
        }
        Caller::Station { .. } => Vec::new(),
    };
    rows.into_iter()
        .map(|r| {
            let (state, last_report): (String, Option<i64>) =
                (r.try_get("state")?, r.try_get("last_report")?);
            Ok(ApplianceLine {
                serial: r.try_get("serial")?,
                partner: r.try_get("partner")?,
                site: r.try_get("site")?,
                silent: is_silent(&state, last_report, now, silence),
                state,
                last_report,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(Into::into)
}

/// A line of the portal's fleet page: an appliance and why it needs attention, if it does.
#[derive(Debug, Serialize)]
pub struct FleetLine {
    /// Serial.
    pub serial: String,
    /// Partner.
    pub partner: String,
    /// Site.
    pub site: String,
    /// State.
    pub state: String,
    /// Since when (unix seconds), if known.
    pub state_since: Option<i64>,
    /// Last report (unix seconds).
    pub last_report: Option<i64>,
    /// Failing checks in its latest run.
    pub failing: i64,
    /// Why it needs attention, most pressing first (empty: it does not).
    pub attention: Vec<&'static str>,
}

/// A page of the fleet.
#[derive(Debug, Serialize)]
pub struct FleetPage {
    /// The lines, most in need of attention first, then by serial.
    pub lines: Vec<FleetLine>,
    /// How many appliances the caller may see in all.
    pub total: i64,
}

/// How long an upgrade's phase may last before the fleet page calls it stuck.
pub const STUCK_SECS: i64 = 3600;

/// Days a delivered appliance may wait before it needs attention.
pub const WAITING_DAYS: i64 = 3;

/// How long the fleet's order by attention is reused before it is computed again.
pub const FLEET_ORDER_SECS: u64 = 2;

/// The fleet's order by attention, per scope (a partner, or every partner for ops), kept
/// for [`FLEET_ORDER_SECS`]: computing it reads every appliance's row (about 10 ms for
/// 20,000 on SQLite), and a page needs only its 100 (docs/benchmarks.md, "The portal").
#[derive(Debug, Default)]
pub struct FleetOrder {
    kept: std::sync::Arc<tokio::sync::Mutex<std::collections::HashMap<String, Kept>>>,
}

/// An order and when it was computed.
type Kept = (std::time::Instant, std::sync::Arc<Vec<(String, i64)>>);

/// Every appliance of the scope (`partner`, or '' for all) with its attention score, most
/// pressing first, then by serial.
async fn order(
    db: &Db,
    partner: &str,
    (now, silence): (i64, i64),
) -> Result<Vec<(String, i64)>, Refusal> {
    sqlx::query(
        "SELECT a.serial, \
         (CASE WHEN a.failing > 0 AND a.state IN ('burn_in', 'live') THEN 8 ELSE 0 END) \
         + (CASE WHEN a.state IN ('installed', 'burn_in', 'live', 'draining', 'drained') \
                 AND (a.last_report IS NULL OR a.last_report < $2) THEN 4 ELSE 0 END) \
         + (CASE WHEN a.serial IN (SELECT u.appliance FROM upgrades u WHERE u.phase = 'failed' \
                 OR (u.phase IN ('draining', 'upgrading', 'burn_in') AND u.since < $3)) THEN 2 ELSE 0 END) \
         + (CASE WHEN a.state = 'delivered' AND a.state_since < $4 THEN 1 ELSE 0 END) AS attention \
         FROM appliances a \
         WHERE ($1 = '' OR a.deployment IN (SELECT d.id FROM deployments d WHERE d.partner = $1)) \
         ORDER BY attention DESC, a.serial",
    )
    .bind(partner)
    .bind(now - silence)
    .bind(now - STUCK_SECS)
    .bind(now - WAITING_DAYS * 86400)
    .fetch_all(&db.read)
    .await?
    .into_iter()
    .map(|r| Ok((r.try_get("serial")?, r.try_get("attention")?)))
    .collect::<Result<Vec<_>, sqlx::Error>>()
    .map_err(Into::into)
}

/// A page (`per` lines after `offset`) of what the caller may see, sorted by attention:
/// failing checks, silent, an upgrade failed or in one phase for over [`STUCK_SECS`],
/// delivered and not installed for [`WAITING_DAYS`], then the rest. The order is about
/// [`FLEET_ORDER_SECS`] old at most (`kept`: an older one is shown once more while the
/// next is computed); each line is read as it is now.
pub async fn fleet(
    db: &Db,
    kept: &FleetOrder,
    caller: &Caller,
    (now, silence): (i64, i64),
    offset: i64,
    per: i64,
) -> Result<FleetPage, Refusal> {
    let partner = match caller {
        Caller::Ops { .. } => String::new(),
        Caller::Partner { partner, .. } => partner.clone(),
        Caller::Appliance { .. } | Caller::Station { .. } => {
            return Ok(FleetPage {
                lines: Vec::new(),
                total: 0,
            });
        }
    };
    // A fresh order is used as it is; an old one is used while a task computes the next
    // (no page waits for it); only a scope never seen waits for its first.
    let store = kept.kept.clone();
    let known = {
        let mut map = store.lock().await;
        match map.get_mut(&partner) {
            Some((at, o)) if at.elapsed().as_secs() < FLEET_ORDER_SECS => Some(o.clone()),
            Some((at, o)) => {
                // Marked fresh now, so that one task refreshes it.
                *at = std::time::Instant::now();
                let (db, store, scope) = (db.clone(), store.clone(), partner.clone());
                tokio::spawn(async move {
                    match order(&db, &scope, (now, silence)).await {
                        Ok(next) => {
                            let next = std::sync::Arc::new(next);
                            store
                                .lock()
                                .await
                                .insert(scope, (std::time::Instant::now(), next));
                        }
                        Err(e) => tracing::warn!("the fleet's order: {e}"),
                    }
                });
                Some(o.clone())
            }
            None => None,
        }
    };
    let ordered = match known {
        Some(o) => o,
        None => {
            let o = std::sync::Arc::new(order(db, &partner, (now, silence)).await?);
            store
                .lock()
                .await
                .insert(partner.clone(), (std::time::Instant::now(), o.clone()));
            o
        }
    };
    let start = (offset.max(0) as usize).min(ordered.len());
    let slice = &ordered[start..(start + per.max(0) as usize).min(ordered.len())];
    let mut lines = Vec::with_capacity(slice.len());
    if !slice.is_empty() {
        let marks: Vec<String> = (1..=slice.len()).map(|k| format!("${k}")).collect();
        let sql = format!(
            "SELECT a.serial, d.partner, d.site, a.state, a.state_since, a.last_report, a.failing \
             FROM appliances a JOIN deployments d ON d.id = a.deployment WHERE a.serial IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (serial, _) in slice {
            q = q.bind(serial);
        }
        let rows = q.fetch_all(&db.read).await?;
        for (serial, score) in slice {
            let Some(r) = rows
                .iter()
                .find(|r| r.try_get::<String, _>("serial").is_ok_and(|s| s == *serial))
            else {
                continue;
            };
            let attention = [
                (8, "failing checks"),
                (4, "silent"),
                (2, "upgrade failed or stuck"),
                (1, "waiting to be installed"),
            ]
            .into_iter()
            .filter(|(bit, _)| score & bit != 0)
            .map(|(_, why)| why)
            .collect();
            lines.push(FleetLine {
                serial: serial.clone(),
                partner: r.try_get("partner")?,
                site: r.try_get("site")?,
                state: r.try_get("state")?,
                state_since: r.try_get("state_since")?,
                last_report: r.try_get("last_report")?,
                failing: r.try_get("failing")?,
                attention,
            });
        }
    }
    Ok(FleetPage {
        lines,
        total: ordered.len() as i64,
    })
}

/// A deployment (a site), as its page shows it.
#[derive(Debug, Serialize)]
pub struct DeploymentView {
    /// Its id.
    pub id: String,
    /// The partner.
    pub partner: String,
    /// The site.
    pub site: String,
    /// The site's zone.
    pub tz: String,
    /// Its off-peak window.
    pub offpeak: String,
    /// When the survey came (unix seconds).
    pub created: i64,
    /// Its contacts: name, email, role.
    pub contacts: Vec<(String, String, String)>,
    /// Its appliances: serial and state.
    pub appliances: Vec<(String, String)>,
}

/// The deployments the caller may see (a partner its own; ops every one), newest first,
/// at most `limit`: id, site, partner, appliances.
pub async fn deployments(
    db: &Db,
    caller: &Caller,
    limit: i64,
) -> Result<Vec<(String, String, String, i64)>, Refusal> {
    let partner = match caller {
        Caller::Ops { .. } => String::new(),
        Caller::Partner { partner, .. } => partner.clone(),
        _ => return Ok(Vec::new()),
    };
    sqlx::query(
        "SELECT d.id, d.site, d.partner, (SELECT COUNT(*) FROM appliances a WHERE a.deployment = d.id) AS n \
         FROM deployments d WHERE ($1 = '' OR d.partner = $1) ORDER BY d.created DESC, d.id LIMIT $2",
    )
    .bind(partner)
    .bind(limit)
    .fetch_all(&db.read)
    .await?
    .into_iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("site")?, r.try_get("partner")?, r.try_get("n")?)))
    .collect::<Result<Vec<_>, sqlx::Error>>()
    .map_err(Into::into)
}

/// A deployment's page, if the caller may see it (anything else: not found).
pub async fn deployment(db: &Db, caller: &Caller, id: &str) -> Result<DeploymentView, Refusal> {
    let hidden = || Refusal::NotFound(format!("no deployment {id}"));
    let r = sqlx::query(
        "SELECT id, partner, site, tz, offpeak, created FROM deployments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&db.read)
    .await?
    .ok_or_else(hidden)?;
    let partner: String = r.try_get("partner")?;
    let visible = match caller {
        Caller::Ops { .. } => true,
        Caller::Partner { partner: own, .. } => *own == partner,
        _ => false,
    };
    if !visible {
        return Err(hidden());
    }
    let contacts = sqlx::query(
        "SELECT name, email, role FROM contacts WHERE deployment = $1 ORDER BY role, email",
    )
    .bind(id)
    .fetch_all(&db.read)
    .await?
    .into_iter()
    .map(|c| Ok((c.try_get("name")?, c.try_get("email")?, c.try_get("role")?)))
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let appliances =
        sqlx::query("SELECT serial, state FROM appliances WHERE deployment = $1 ORDER BY serial")
            .bind(id)
            .fetch_all(&db.read)
            .await?
            .into_iter()
            .map(|a| Ok((a.try_get("serial")?, a.try_get("state")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(DeploymentView {
        id: r.try_get("id")?,
        partner,
        site: r.try_get("site")?,
        tz: r.try_get("tz")?,
        offpeak: r.try_get("offpeak")?,
        created: r.try_get("created")?,
        contacts,
        appliances,
    })
}
