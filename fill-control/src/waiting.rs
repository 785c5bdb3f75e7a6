//! The price of waiting. A station reports each appliance's pre-fill (its progress, then
//! the catalog of what the appliance holds); ops give each region its current target
//! catalog. For an appliance delivered but not installed, the control plane runs the real
//! delta (`fill_core::delta`) of what it holds against its region's current target: the
//! bytes its burn-in now needs and their money, and what each further day adds by the
//! simulator's churn model (`fill_core::sim::churn_per_day`, a share of what it holds). A
//! reminder says it to the site's engineering contacts once a day while it waits.
//!
//! Catalogs are kept by id (the BLAKE3 of the uncompressed file, what `b3sum` prints),
//! zstd-compressed, once however many appliances hold the same.

use fill_core::catalog::{Catalog, wire};
use fill_core::delta::{self, Inventory};
use fill_core::lifecycle::State;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::auth::Caller;
use crate::db::Db;
use crate::ledger::{self, Refusal, invalid};
use crate::notify::{self, Step};

/// The most a catalog upload may weigh (as sent, raw or zstd).
pub const MAX_UPLOAD: usize = 64 << 20;
/// The most a catalog may weigh uncompressed.
pub const MAX_CATALOG: u64 = 1 << 30;

/// How waiting is priced.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    /// Money per GiB the burn-in fetches (its sources' price; the origin's by default).
    pub cost_per_gib: f64,
    /// The money's unit, as shown (`USD`).
    pub currency: String,
    /// The churn model's bytes a day of waiting adds, as a share of what an appliance holds.
    pub churn_per_day: f64,
}

/// A catalog the control plane keeps.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogInfo {
    /// Its id.
    pub id: String,
    /// Entries.
    pub entries: u64,
    /// Bytes of content it lists.
    pub bytes: u64,
}

fn check_id(id: &str) -> Result<(), Refusal> {
    if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(invalid(format!(
            "catalog id {:?}: 64 lower-case hex digits (b3sum of the file)",
            id.chars().take(80).collect::<String>()
        )))
    }
}

/// `PUT /api/catalogs/{id}` (a station or ops): keeps a catalog, raw or zstd, after
/// checking it is one and that its BLAKE3 is `id`. Keeping one kept already changes
/// nothing.
pub async fn put_catalog(
    db: &Db,
    caller: &Caller,
    id: &str,
    body: bytes::Bytes,
    now: i64,
) -> Result<CatalogInfo, Refusal> {
    if !matches!(caller, Caller::Ops { .. } | Caller::Station { .. }) {
        return Err(Refusal::Forbidden(
            "catalogs come from ops and stations".into(),
        ));
    }
    check_id(id)?;
    let want = id.to_owned();
    let checked = tokio::task::spawn_blocking(move || -> Result<_, Refusal> {
        let zstd = wire::is_zstd(&body);
        let raw = if zstd {
            wire::decompress(&body, MAX_CATALOG).map_err(|e| invalid(format!("catalog: {e}")))?
        } else {
            body.to_vec()
        };
        let got = blake3::hash(&raw).to_hex().to_string();
        if got != want {
            return Err(invalid(format!(
                "the catalog's BLAKE3 is {got}, not {want}"
            )));
        }
        let cat = Catalog::parse(&raw).map_err(|e| invalid(format!("catalog: {e}")))?;
        let (entries, total) = (cat.len() as u64, cat.total_size());
        let data = if zstd {
            body.to_vec()
        } else {
            wire::compress(&raw, 3)
        };
        Ok((entries, total, data))
    })
    .await
    .map_err(|e| Refusal::Failed(anyhow::anyhow!("catalog check: {e}")))??;
    let (entries, bytes, data) = checked;
    sqlx::query(
        "INSERT INTO catalogs (id, data, entries, bytes, created) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(data)
    .bind(entries as i64)
    .bind(bytes as i64)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(CatalogInfo {
        id: id.to_owned(),
        entries,
        bytes,
    })
}

/// `PUT /api/regions/{name}` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionTarget {
    /// The region's current target: a catalog kept already.
    pub catalog: String,
}

/// `PUT /api/regions/{name}` (ops): the region's current target.
pub async fn set_region(
    db: &Db,
    caller: &Caller,
    name: &str,
    t: &RegionTarget,
    now: i64,
) -> Result<(), Refusal> {
    if !matches!(caller, Caller::Ops { .. }) {
        return Err(Refusal::Forbidden("only ops set a region's target".into()));
    }
    if !crate::text::is_name(name) {
        return Err(invalid("region: 1 to 64 letters, digits, '-', '_' or '.'"));
    }
    check_id(&t.catalog)?;
    let known = sqlx::query("SELECT id FROM catalogs WHERE id = $1")
        .bind(&t.catalog)
        .fetch_optional(&db.pool)
        .await?
        .is_some();
    if !known {
        return Err(invalid(format!(
            "no catalog {}: PUT it to /api/catalogs/{} first",
            t.catalog, t.catalog
        )));
    }
    sqlx::query(
        "INSERT INTO regions (name, catalog, updated) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET catalog = excluded.catalog, updated = excluded.updated",
    )
    .bind(name)
    .bind(&t.catalog)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// What a station reports of a pre-fill (`POST /api/appliances/{serial}/prefill`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefillReport {
    /// Bytes written so far.
    pub done_bytes: u64,
    /// Bytes the pre-fill writes in all.
    pub total_bytes: u64,
    /// Once done: the catalog of what the appliance holds (kept already).
    #[serde(default)]
    pub catalog: Option<String>,
}

/// Takes a station's pre-fill report: the first moves an allocated appliance to
/// `prefilling` (its contacts hear shipping is being prepared); each is kept; the last
/// names the catalog the appliance holds.
pub async fn prefill(
    db: &Db,
    caller: &Caller,
    serial: &str,
    r: &PrefillReport,
    now: i64,
) -> Result<State, Refusal> {
    let Caller::Station { name } = caller else {
        return Err(Refusal::Forbidden(
            "pre-fill reports come from a station's token".into(),
        ));
    };
    if r.done_bytes > r.total_bytes {
        return Err(invalid("done_bytes is more than total_bytes"));
    }
    if let Some(c) = &r.catalog {
        check_id(c)?;
    }
    let mut tx = db.pool.begin().await?;
    let mut a = ledger::load(&mut *tx, serial)
        .await?
        .ok_or_else(|| Refusal::NotFound(format!("no appliance {serial}")))?;
    match a.state {
        State::Allocated => {
            let why = format!("pre-fill started at station {name}");
            ledger::step(
                &mut tx,
                &mut a,
                State::Prefilling,
                &caller.actor(),
                &why,
                Some(""),
                now,
            )
            .await?;
        }
        State::Prefilling => {}
        other => {
            return Err(Refusal::Conflict(format!(
                "{serial} is {other}: its pre-fill is over"
            )));
        }
    }
    if let Some(c) = &r.catalog {
        let known = sqlx::query("SELECT id FROM catalogs WHERE id = $1")
            .bind(c)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !known {
            return Err(invalid(format!(
                "no catalog {c}: PUT it to /api/catalogs/{c} first"
            )));
        }
    }
    let progress = serde_json::json!({
        "station": name,
        "time": now,
        "done_bytes": r.done_bytes,
        "total_bytes": r.total_bytes,
        "done": r.catalog.is_some(),
    });
    sqlx::query(
        "UPDATE appliances SET prefill = $1, prefill_catalog = COALESCE($2, prefill_catalog) WHERE serial = $3",
    )
    .bind(progress.to_string())
    .bind(r.catalog.as_deref())
    .bind(serial)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(a.state)
}

/// What an appliance's wait costs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Price {
    /// Its region.
    pub region: String,
    /// The region's current target.
    pub target_catalog: String,
    /// What the appliance holds.
    pub prefill_catalog: String,
    /// Bytes its burn-in needs now (the real delta).
    pub bytes_now: u64,
    /// Their money.
    pub cost_now: f64,
    /// Bytes each further day adds (the churn model).
    pub bytes_per_day: u64,
    /// Their money.
    pub cost_per_day: f64,
    /// The money's unit.
    pub currency: String,
}

/// What waiting costs `serial` now, if its pre-fill's catalog and its region's target are
/// known (`None` otherwise).
pub async fn price(db: &Db, serial: &str, p: &Pricing) -> Result<Option<Price>, Refusal> {
    let row = sqlx::query(
        "SELECT a.capacity, a.catalog AS region, a.prefill_catalog, r.catalog AS target FROM appliances a \
         JOIN regions r ON r.name = a.catalog WHERE a.serial = $1 AND a.prefill_catalog IS NOT NULL",
    )
    .bind(serial)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (capacity, region, held_id, target_id): (i64, String, String, String) = (
        row.try_get("capacity")?,
        row.try_get("region")?,
        row.try_get("prefill_catalog")?,
        row.try_get("target")?,
    );
    let data = |id: String| async move {
        sqlx::query("SELECT data FROM catalogs WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await?
            .try_get::<Vec<u8>, _>("data")
    };
    let (held, target) = (data(held_id.clone()).await?, data(target_id.clone()).await?);
    let capacity = capacity.max(0) as u64;
    let churn = p.churn_per_day;
    let (bytes_now, bytes_per_day) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let held = wire::decompress(&held, MAX_CATALOG)?;
        let target = wire::decompress(&target, MAX_CATALOG)?;
        let (held, target) = (Catalog::parse(&held)?, Catalog::parse(&target)?);
        let inv = Inventory {
            complete: held,
            partial: &[],
        };
        let d = delta::compute(&target, &inv, capacity)?;
        let holds = held.total_size().min(capacity);
        Ok((d.bytes_to_fetch, (holds as f64 * churn).round() as u64))
    })
    .await
    .map_err(|e| Refusal::Failed(anyhow::anyhow!("delta: {e}")))??;
    let money = |b: u64| b as f64 / (1u64 << 30) as f64 * p.cost_per_gib;
    Ok(Some(Price {
        region,
        target_catalog: target_id,
        prefill_catalog: held_id,
        bytes_now,
        cost_now: money(bytes_now),
        bytes_per_day,
        cost_per_day: money(bytes_per_day),
        currency: p.currency.clone(),
    }))
}

/// The price as an email's lines.
pub fn lines(p: &Price, days: i64) -> String {
    use fill_core::size::format_size;
    format!(
        "Delivered {days} day{} ago and not installed yet.\n\
         Its burn-in now needs {} ({:.2} {}) to reach the region's current catalog.\n\
         Each further day adds about {} ({:.2} {}).",
        if days == 1 { "" } else { "s" },
        format_size(p.bytes_now),
        p.cost_now,
        p.currency,
        format_size(p.bytes_per_day),
        p.cost_per_day,
        p.currency
    )
}

/// Queues today's reminder for each appliance delivered at least a day ago and not yet
/// installed (once a day each: the email's id carries the day); how many were queued.
pub async fn remind(db: &Db, p: &Pricing, now: i64) -> Result<usize, Refusal> {
    let rows = sqlx::query(
        "SELECT a.serial, a.deployment, d.site, \
         (SELECT MAX(e.time) FROM events e WHERE e.appliance = a.serial AND e.to_state = 'delivered') AS delivered \
         FROM appliances a JOIN deployments d ON d.id = a.deployment WHERE a.state = 'delivered'",
    )
    .fetch_all(&db.pool)
    .await?;
    let mut queued = 0;
    for r in rows {
        let (serial, deployment, site): (String, String, String) = (
            r.try_get("serial")?,
            r.try_get("deployment")?,
            r.try_get("site")?,
        );
        let Some(delivered) = r.try_get::<Option<i64>, _>("delivered")? else {
            continue;
        };
        let days = (now - delivered) / 86400;
        if days < 1 {
            continue;
        }
        let key = format!("{serial}/waiting/{days}");
        if ledger::queued(db, &key).await? {
            continue;
        }
        let detail = match price(db, &serial, p).await? {
            Some(price) => lines(&price, days),
            None => format!(
                "Delivered {days} days ago and not installed yet. (Its region's target or its \
                 pre-fill is unknown to the control plane: no price.)"
            ),
        };
        let ctx = notify::Context {
            site,
            serial: Some(serial.clone()),
            detail,
        };
        let mut tx = db.pool.begin().await?;
        let step = Step::WaitingReminder;
        ledger::queue(&mut tx, &deployment, Some(&serial), &key, step, &ctx, now).await?;
        tx.commit().await?;
        queued += 1;
    }
    Ok(queued)
}
