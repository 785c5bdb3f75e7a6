//! The fleet's ledger: what every part of the workflow records the same way. An
//! appliance's step is an event (time, actor, reason) validated against the lifecycle's
//! rules (`fill_core::lifecycle`), recorded once (the `(appliance, seq)` key: two instances
//! racing for a step cannot both record it), with its emails put in the outbox in the same
//! transaction (each email's id derives from what caused it, so it is queued once). Who may
//! see an appliance is decided here too: ops any, a partner its own, an appliance itself;
//! anything else looks absent.

use fill_core::lifecycle::{Lifecycle, State};
use sqlx::Row;

use crate::auth::Caller;
use crate::db::Db;
use crate::notify::{self, Step};

/// A transaction on the fleet's database.
pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Why a workflow request is refused: what the API answers.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not there, or not the caller's to see (the two look the same).
    #[error("{0}")]
    NotFound(String),
    /// The caller may see it but not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request is wrong: what is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The state does not allow it (another instance may have done it first).
    #[error("{0}")]
    Conflict(String),
    /// The database or the host failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Self {
        Self::Failed(e.into())
    }
}

pub fn invalid(why: impl Into<String>) -> Refusal {
    Refusal::Invalid(why.into())
}

pub fn printable(what: &str, s: &str, max: usize) -> Result<(), Refusal> {
    if s.trim().is_empty() || s.len() > max || s.chars().any(fill_core::text::is_unprintable) {
        return Err(invalid(format!(
            "{what}: 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

/// Puts a step's email to each contact of the deployment with a role the step is for. `key`
/// makes each email's id: the same step queued twice is one email.
pub async fn queue(
    tx: &mut Tx<'_>,
    deployment: &str,
    serial: Option<&str>,
    key: &str,
    step: Step,
    ctx: &notify::Context,
    now: i64,
) -> Result<(), Refusal> {
    let rows = sqlx::query("SELECT email, role FROM contacts WHERE deployment = $1 ORDER BY email")
        .bind(deployment)
        .fetch_all(&mut **tx)
        .await?;
    let mut to: Vec<String> = Vec::new();
    for r in rows {
        let (email, role): (String, String) = (r.try_get("email")?, r.try_get("role")?);
        if step.roles().contains(&role.as_str()) && !to.contains(&email) {
            to.push(email);
        }
    }
    let mail = Outgoing {
        deployment,
        serial,
        key,
        step,
        ctx,
    };
    mail.put(tx, &to, now).await
}

/// Puts an alert's email to every ops user.
pub async fn queue_ops(
    tx: &mut Tx<'_>,
    deployment: &str,
    serial: Option<&str>,
    key: &str,
    step: Step,
    ctx: &notify::Context,
    now: i64,
) -> Result<(), Refusal> {
    let to: Vec<String> = sqlx::query("SELECT email FROM users WHERE role = 'ops' ORDER BY email")
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get("email"))
        .collect::<Result<_, _>>()?;
    if to.is_empty() {
        tracing::warn!("no ops user to alert: {}", notify::render(step, ctx).0);
    }
    let mail = Outgoing {
        deployment,
        serial,
        key,
        step,
        ctx,
    };
    mail.put(tx, &to, now).await
}

/// Whether an email caused by `key` is in the outbox already (to anyone).
pub async fn queued(db: &Db, key: &str) -> Result<bool, Refusal> {
    Ok(
        sqlx::query("SELECT id FROM emails WHERE id LIKE $1 LIMIT 1")
            .bind(format!("{key}/%"))
            .fetch_optional(&db.pool)
            .await?
            .is_some(),
    )
}

/// An email to queue: what it is about and what caused it (`key`, which makes its id).
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The deployment it is about.
    pub deployment: &'a str,
    /// The appliance, if it is about one.
    pub serial: Option<&'a str>,
    /// What caused it: with the recipient, its id.
    pub key: &'a str,
    /// The step.
    pub step: Step,
    /// What it says.
    pub ctx: &'a notify::Context,
}

impl Outgoing<'_> {
    /// Queues it to each of `to`, once (an id already queued is left alone).
    pub async fn put(&self, tx: &mut Tx<'_>, to: &[String], now: i64) -> Result<(), Refusal> {
        let (subject, body) = notify::render(self.step, self.ctx);
        for email in to {
            sqlx::query(
                "INSERT INTO emails (id, deployment, appliance, kind, recipient, subject, body, created, attempts, next_try, claimed_until, sent, last_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 0, NULL, NULL) ON CONFLICT DO NOTHING",
            )
            .bind(format!("{}/{email}", self.key))
            .bind(self.deployment)
            .bind(self.serial)
            .bind(self.step.kind())
            .bind(email)
            .bind(&subject)
            .bind(&body)
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// The site of a deployment.
pub async fn deployment_site(tx: &mut Tx<'_>, deployment: &str) -> Result<String, Refusal> {
    sqlx::query("SELECT site FROM deployments WHERE id = $1")
        .bind(deployment)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get::<String, _>("site"))
        .transpose()?
        .ok_or_else(|| Refusal::NotFound(format!("no deployment {deployment}")))
}

/// A partner asking about what is not theirs learns nothing: 404, as for what does not exist.
pub async fn forbidden_or_hidden(db: &Db, caller: &Caller, deployment: &str) -> Refusal {
    if let Caller::Partner { partner, .. } = caller {
        let own = sqlx::query("SELECT id FROM deployments WHERE id = $1 AND partner = $2")
            .bind(deployment)
            .bind(partner)
            .fetch_optional(&db.pool)
            .await;
        if let Ok(Some(_)) = own {
            return Refusal::Forbidden("only ops do this".into());
        }
    }
    Refusal::NotFound(format!("no deployment {deployment}"))
}

/// An appliance as its row says, with its deployment's partner and site.
#[derive(Debug, Clone)]
pub struct Appliance {
    /// Serial.
    pub serial: String,
    /// Its deployment's id.
    pub deployment: String,
    /// The deployment's partner.
    pub partner: String,
    /// The deployment's site.
    pub site: String,
    /// Its state.
    pub state: State,
    /// How many events it has.
    pub seq: i64,
    /// The state a drain started from.
    pub before_drain: Option<State>,
}

/// The appliance, if the caller may see it (ops: any; a partner: its own; an appliance:
/// itself). Anything else is `NotFound`.
pub async fn visible<'c, E>(exec: E, caller: &Caller, serial: &str) -> Result<Appliance, Refusal>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    match load(exec, serial).await? {
        Some(a) if may_see(caller, &a.partner, &a.serial) => Ok(a),
        _ => Err(Refusal::NotFound(format!("no appliance {serial}"))),
    }
}

/// The appliance's row, for the control plane's own steps (no caller to check).
pub async fn load<'c, E>(exec: E, serial: &str) -> Result<Option<Appliance>, Refusal>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT a.serial, a.deployment, a.state, a.seq, a.before_drain, d.partner, d.site \
         FROM appliances a JOIN deployments d ON d.id = a.deployment WHERE a.serial = $1",
    )
    .bind(serial)
    .fetch_optional(exec)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Appliance {
        serial: row.try_get("serial")?,
        deployment: row.try_get("deployment")?,
        partner: row.try_get("partner")?,
        site: row.try_get("site")?,
        state: row
            .try_get::<String, _>("state")?
            .parse()
            .map_err(|e| Refusal::Failed(anyhow::anyhow!("{e}")))?,
        seq: row.try_get("seq")?,
        before_drain: row
            .try_get::<Option<String>, _>("before_drain")?
            .and_then(|s| s.parse().ok()),
    }))
}

/// Whether the caller may see an appliance of `partner`: ops any, a partner its own, an
/// appliance itself.
pub fn may_see(caller: &Caller, partner: &str, serial: &str) -> bool {
    match caller {
        Caller::Ops { .. } => true,
        Caller::Partner { partner: own, .. } => own == partner,
        Caller::Appliance { serial: own } => own == serial,
        // A station acts on appliances being pre-filled, and reads nothing.
        Caller::Station { .. } => false,
    }
}

/// Appends the event `a.state → to` (checked against the lifecycle) as event `a.seq + 1`,
/// moves the appliance (`a` too), and, with `email`, queues the step's emails with that
/// detail. A conflict (another instance recorded that seq first) is a `Conflict`.
pub async fn step(
    tx: &mut Tx<'_>,
    a: &mut Appliance,
    to: State,
    actor: &str,
    reason: &str,
    email: Option<&str>,
    now: i64,
) -> Result<(), Refusal> {
    let mut life = Lifecycle::resume(a.state, a.before_drain);
    let event = life
        .transition(to, now, reason)
        .map_err(|e| Refusal::Conflict(format!("{}: {e}", a.serial)))?;
    let seq = a.seq + 1;
    let put = sqlx::query(
        "INSERT INTO events (appliance, seq, time, from_state, to_state, actor, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&a.serial)
    .bind(seq)
    .bind(now)
    .bind(event.from.name())
    .bind(event.to.name())
    .bind(actor)
    .bind(reason)
    .execute(&mut **tx)
    .await;
    if let Err(e) = put {
        return Err(if crate::db::is_conflict(&e) {
            Refusal::Conflict(format!("{} changed meanwhile", a.serial))
        } else {
            e.into()
        });
    }
    let moved = sqlx::query(
        "UPDATE appliances SET state = $1, seq = $2, before_drain = $3, state_since = $4 WHERE serial = $5 AND seq = $6",
    )
    .bind(to.name())
    .bind(seq)
    .bind(life.before_drain().map(State::name))
    .bind(now)
    .bind(&a.serial)
    .bind(a.seq)
    .execute(&mut **tx)
    .await?;
    if moved.rows_affected() != 1 {
        return Err(Refusal::Conflict(format!("{} changed meanwhile", a.serial)));
    }
    let from = a.state;
    a.state = to;
    a.seq = seq;
    a.before_drain = life.before_drain();
    if let (Some(step), Some(detail)) = (Step::of_transition(from, to), email) {
        let ctx = notify::Context {
            site: a.site.clone(),
            serial: Some(a.serial.clone()),
            detail: detail.to_owned(),
        };
        let key = format!("{}/{seq}", a.serial);
        queue(tx, &a.deployment, Some(&a.serial), &key, step, &ctx, now).await?;
    }
    Ok(())
}
