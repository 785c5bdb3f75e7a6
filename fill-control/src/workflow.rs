//! The deployment workflow on the database: a partner's site survey opens a deployment;
//! ops allocate appliances to it; each step of an appliance is an event (time, actor,
//! reason) validated against the lifecycle's rules (`fill_core::lifecycle`), recorded once
//! (the `(appliance, seq)` key: two instances racing for a step cannot both record it), with
//! its emails put in the outbox in the same transaction. Appliances report in; an installed
//! one reporting its BGP session established starts burn-in; a burn-in whose checks all
//! pass goes live.

use std::net::IpAddr;

use anyhow::{Context, Result};
use fill_core::lifecycle::{Lifecycle, State};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::auth::Caller;
use crate::db::Db;
use crate::notify::{self, Step};

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

fn invalid(why: impl Into<String>) -> Refusal {
    Refusal::Invalid(why.into())
}

/// A contact of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Their name.
    pub name: String,
    /// Their email.
    pub email: String,
    /// `engineering`, `noc`, `shipping` or `customs`.
    pub role: String,
}

/// The network configuration of a site.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The partner's AS number.
    pub asn: u32,
    /// IPv4 prefixes the appliances serve (`a.b.c.d/len`).
    #[serde(default)]
    pub ipv4: Vec<String>,
    /// IPv6 prefixes.
    #[serde(default)]
    pub ipv6: Vec<String>,
    /// The BGP neighbours' addresses.
    pub bgp_neighbors: Vec<String>,
}

/// A site survey (`POST /api/surveys`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Survey {
    /// The site's name (unique per partner).
    pub site: String,
    /// Where to ship: address lines, as the carrier prints them.
    pub shipping_address: Vec<String>,
    /// Contacts by role (at least one engineering contact).
    pub contacts: Vec<Contact>,
    /// The network.
    pub network: Network,
    /// The site's time zone (IANA name, as `Europe/Paris`).
    pub tz: String,
    /// The off-peak window for upgrades, local time (default `02:00-06:00`).
    #[serde(default)]
    pub offpeak: Option<String>,
}

/// A prefix as `addr/len`, checked.
fn check_prefix(p: &str, v6: bool) -> Result<(), Refusal> {
    let bad = || {
        invalid(format!(
            "{p:?} is not an IPv{} prefix",
            if v6 { 6 } else { 4 }
        ))
    };
    let (addr, len) = p.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    match addr {
        IpAddr::V4(_) if !v6 && len <= 32 => Ok(()),
        IpAddr::V6(_) if v6 && len <= 128 => Ok(()),
        _ => Err(bad()),
    }
}

fn printable(what: &str, s: &str, max: usize) -> Result<(), Refusal> {
    if s.trim().is_empty() || s.len() > max || s.chars().any(fill_core::text::is_unprintable) {
        return Err(invalid(format!(
            "{what}: 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

/// `HH:MM-HH:MM`.
fn check_window(w: &str) -> Result<(), Refusal> {
    let hm = |s: &str| {
        s.split_once(':').is_some_and(|(h, m)| {
            h.len() == 2
                && m.len() == 2
                && h.parse::<u8>().is_ok_and(|h| h < 24)
                && m.parse::<u8>().is_ok_and(|m| m < 60)
        })
    };
    match w.split_once('-') {
        Some((a, b)) if hm(a) && hm(b) && a != b => Ok(()),
        _ => Err(invalid(format!("offpeak {w:?}: write HH:MM-HH:MM"))),
    }
}

impl Survey {
    /// Checks every field; the first problem, named.
    pub fn check(&self) -> Result<(), Refusal> {
        if !crate::text::is_name(&self.site) {
            return Err(invalid("site: 1 to 64 letters, digits, '-', '_' or '.'"));
        }
        if self.shipping_address.is_empty() || self.shipping_address.len() > 8 {
            return Err(invalid("shipping_address: 1 to 8 lines"));
        }
        for line in &self.shipping_address {
            printable("shipping_address", line, 200)?;
        }
        if self.contacts.is_empty() || self.contacts.len() > 50 {
            return Err(invalid("contacts: 1 to 50"));
        }
        for c in &self.contacts {
            printable("contact name", &c.name, 200)?;
            crate::text::check_email(&c.email).map_err(|e| invalid(format!("contact: {e}")))?;
            if !notify::ROLES.contains(&c.role.as_str()) {
                return Err(invalid(format!(
                    "contact role {:?}: one of engineering, noc, shipping, customs",
                    c.role
                )));
            }
        }
        if !self.contacts.iter().any(|c| c.role == "engineering") {
            return Err(invalid("contacts: at least one engineering contact"));
        }
        let n = &self.network;
        // 0, AS_TRANS and the last of each range are reserved (RFC 7607, 6793, 7300).
        if [0, 23456, 65535, u32::MAX].contains(&n.asn) {
            return Err(invalid(format!("asn {}: a reserved AS number", n.asn)));
        }
        if n.ipv4.is_empty() && n.ipv6.is_empty() {
            return Err(invalid("network: at least one IPv4 or IPv6 prefix"));
        }
        if n.ipv4.len() + n.ipv6.len() > 1000 {
            return Err(invalid("network: at most 1000 prefixes"));
        }
        for p in &n.ipv4 {
            check_prefix(p, false)?;
        }
        for p in &n.ipv6 {
            check_prefix(p, true)?;
        }
        if n.bgp_neighbors.is_empty() || n.bgp_neighbors.len() > 16 {
            return Err(invalid("network: 1 to 16 BGP neighbours"));
        }
        for a in &n.bgp_neighbors {
            a.parse::<IpAddr>()
                .map_err(|_| invalid(format!("BGP neighbour {a:?} is not an IP address")))?;
        }
        printable("tz", &self.tz, 64)?;
        if !self
            .tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
        {
            return Err(invalid(format!("tz {:?}: an IANA zone name", self.tz)));
        }
        if let Some(w) = &self.offpeak {
            check_window(w)?;
        }
        Ok(())
    }
}

/// `POST /api/surveys`: a partner's survey opens a deployment; its contacts hear it was
/// received. Returns the deployment's id.
pub async fn submit_survey(
    db: &Db,
    caller: &Caller,
    s: &Survey,
    now: i64,
) -> Result<String, Refusal> {
    let Caller::Partner { partner, .. } = caller else {
        return Err(Refusal::Forbidden(
            "a site survey comes from a partner".into(),
        ));
    };
    s.check()?;
    let id = format!("dep-{}", &crate::auth::random_hex()?[..16]);
    let mut tx = db.pool.begin().await?;
    let put = sqlx::query(
        "INSERT INTO deployments (id, partner, site, survey, tz, offpeak, created) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(partner)
    .bind(&s.site)
    .bind(serde_json::to_string(s).context("survey")?)
    .bind(&s.tz)
    .bind(s.offpeak.as_deref().unwrap_or("02:00-06:00"))
    .bind(now)
    .execute(&mut *tx)
    .await;
    if let Err(e) = put {
        return Err(if crate::db::is_conflict(&e) {
            Refusal::Conflict(format!("site {} has a survey already", s.site))
        } else {
            e.into()
        });
    }
    for c in &s.contacts {
        sqlx::query(
            "INSERT INTO contacts (deployment, email, name, role) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(&c.email)
        .bind(&c.name)
        .bind(&c.role)
        .execute(&mut *tx)
        .await?;
    }
    let ctx = notify::Context {
        site: s.site.clone(),
        serial: None,
        detail: format!("Deployment {id}, {} contacts.", s.contacts.len()),
    };
    queue(
        &mut tx,
        &id,
        None,
        &format!("{id}/survey"),
        Step::SurveyReceived,
        &ctx,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Puts a step's email to each contact of the deployment with a role the step is for. `key`
/// makes each email's id: the same step queued twice is one email.
async fn queue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
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
    let mut sent_to: Vec<String> = Vec::new();
    let (subject, body) = notify::render(step, ctx);
    for r in rows {
        let (email, role): (String, String) = (r.try_get("email")?, r.try_get("role")?);
        if !step.roles().contains(&role.as_str()) || sent_to.contains(&email) {
            continue;
        }
        sqlx::query(
            "INSERT INTO emails (id, deployment, appliance, kind, recipient, subject, body, created, attempts, next_try, claimed_until, sent, last_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 0, NULL, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(format!("{key}/{email}"))
        .bind(deployment)
        .bind(serial)
        .bind(step.kind())
        .bind(&email)
        .bind(&subject)
        .bind(&body)
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        sent_to.push(email);
    }
    Ok(())
}

/// What ops allocate (`POST /api/deployments/{id}/appliances`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// The appliance's serial.
    pub serial: String,
    /// `storage`, `global` or `flash`.
    pub hardware: String,
    /// Its capacity, with a unit (`40TB`).
    pub capacity: String,
    /// The region catalog it is pre-filled with (a name or URL the stations know).
    pub catalog: String,
}

/// Allocates an appliance to a deployment; returns its token (shown once), which it
/// reports with.
pub async fn allocate(
    db: &Db,
    caller: &Caller,
    deployment: &str,
    a: &Allocation,
    now: i64,
) -> Result<String, Refusal> {
    if !matches!(caller, Caller::Ops { .. }) {
        return Err(forbidden_or_hidden(db, caller, deployment).await);
    }
    if !crate::text::is_name(&a.serial) {
        return Err(invalid("serial: 1 to 64 letters, digits, '-', '_' or '.'"));
    }
    if !["storage", "global", "flash"].contains(&a.hardware.as_str()) {
        return Err(invalid("hardware: storage, global or flash"));
    }
    let capacity =
        fill_core::size::parse_size(&a.capacity).map_err(|e| invalid(format!("capacity: {e}")))?;
    printable("catalog", &a.catalog, 500)?;
    let mut tx = db.pool.begin().await?;
    let site = deployment_site(&mut tx, deployment).await?;
    let put = sqlx::query(
        "INSERT INTO appliances (serial, deployment, hardware, capacity, catalog, state, seq, created) VALUES ($1, $2, $3, $4, $5, 'allocated', 1, $6)",
    )
    .bind(&a.serial)
    .bind(deployment)
    .bind(&a.hardware)
    .bind(capacity as i64)
    .bind(&a.catalog)
    .bind(now)
    .execute(&mut *tx)
    .await;
    if let Err(e) = put {
        return Err(if crate::db::is_conflict(&e) {
            Refusal::Conflict(format!("appliance {} exists already", a.serial))
        } else {
            e.into()
        });
    }
    sqlx::query(
        "INSERT INTO events (appliance, seq, time, from_state, to_state, actor, reason) VALUES ($1, 1, $2, 'allocated', 'allocated', $3, $4)",
    )
    .bind(&a.serial)
    .bind(now)
    .bind(caller.actor())
    .bind(format!("allocated to {deployment} ({site})"))
    .execute(&mut *tx)
    .await?;
    let token = crate::auth::issue(
        &mut *tx,
        "appliance",
        &a.serial,
        now,
        crate::auth::APPLIANCE_TOKEN_SECS,
    )
    .await?;
    tx.commit().await?;
    Ok(token)
}

async fn deployment_site(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    deployment: &str,
) -> Result<String, Refusal> {
    sqlx::query("SELECT site FROM deployments WHERE id = $1")
        .bind(deployment)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get::<String, _>("site"))
        .transpose()?
        .ok_or_else(|| Refusal::NotFound(format!("no deployment {deployment}")))
}

/// A partner asking about what is not theirs learns nothing: 404, as for what does not exist.
async fn forbidden_or_hidden(db: &Db, caller: &Caller, deployment: &str) -> Refusal {
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
struct Appliance {
    serial: String,
    deployment: String,
    partner: String,
    site: String,
    state: State,
    seq: i64,
    before_drain: Option<State>,
}

/// The appliance, if the caller may see it (ops: any; a partner: its own; an appliance:
/// itself). Anything else is `NotFound`.
async fn visible<'c, E>(exec: E, caller: &Caller, serial: &str) -> Result<Appliance, Refusal>
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
    let hidden = || Refusal::NotFound(format!("no appliance {serial}"));
    let row = row.ok_or_else(hidden)?;
    let a = Appliance {
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
    };
    if !may_see(caller, &a.partner, &a.serial) {
        return Err(hidden());
    }
    Ok(a)
}

/// Whether the caller may see an appliance of `partner`: ops any, a partner its own, an
/// appliance itself.
fn may_see(caller: &Caller, partner: &str, serial: &str) -> bool {
    match caller {
        Caller::Ops { .. } => true,
        Caller::Partner { partner: own, .. } => own == partner,
        Caller::Appliance { serial: own } => own == serial,
    }
}

/// A step asked for (`POST /api/appliances/{serial}/transitions`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionAsk {
    /// The state to go to.
    pub to: String,
    /// Why (kept in the event).
    #[serde(default)]
    pub reason: String,
    /// With `in_transit`: the carrier.
    #[serde(default)]
    pub carrier: Option<String>,
    /// With `in_transit`: the tracking number.
    #[serde(default)]
    pub tracking: Option<String>,
}

/// Who may ask for which step: ops any; a partner the steps on its side (delivered,
/// installed, draining, and back from a drain).
fn may_ask(caller: &Caller, from: State, to: State) -> bool {
    match caller {
        Caller::Ops { .. } => true,
        Caller::Partner { .. } => {
            matches!(to, State::Delivered | State::Installed | State::Draining)
                || matches!(from, State::Draining | State::Drained)
        }
        Caller::Appliance { .. } => false,
    }
}

/// Records one step of an appliance, if its state allows it and the caller may ask it.
pub async fn transition(
    db: &Db,
    caller: &Caller,
    serial: &str,
    ask: &TransitionAsk,
    now: i64,
) -> Result<State, Refusal> {
    let to: State = ask.to.parse().map_err(|e| invalid(format!("{e}")))?;
    if ask.reason.len() > 500 || ask.reason.chars().any(fill_core::text::is_unprintable) {
        return Err(invalid(
            "reason: at most 500 bytes without control characters",
        ));
    }
    let mut tx = db.pool.begin().await?;
    let a = visible(&mut *tx, caller, serial).await?;
    if !may_ask(caller, a.state, to) {
        return Err(Refusal::Forbidden(format!(
            "{} cannot move {serial} to {to}",
            caller.actor()
        )));
    }
    let mut extra = String::new();
    if to == State::InTransit {
        let (Some(carrier), Some(tracking)) = (&ask.carrier, &ask.tracking) else {
            return Err(invalid("in_transit needs carrier and tracking"));
        };
        printable("carrier", carrier, 100)?;
        printable("tracking", tracking, 100)?;
        sqlx::query("UPDATE appliances SET carrier = $1, tracking = $2 WHERE serial = $3")
            .bind(carrier)
            .bind(tracking)
            .bind(serial)
            .execute(&mut *tx)
            .await?;
        extra = format!("Carrier {carrier}, tracking number {tracking}.");
    }
    let reason = if ask.reason.is_empty() {
        format!("asked by {}", caller.actor())
    } else {
        ask.reason.clone()
    };
    step(&mut tx, &a, to, &caller.actor(), &reason, &extra, now).await?;
    tx.commit().await?;
    Ok(to)
}

/// Appends the event `a.state → to` (checked against the lifecycle) as event `a.seq + 1`,
/// moves the appliance, and queues the step's emails. A conflict (another instance recorded
/// that seq first) is a `Conflict`.
async fn step(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    a: &Appliance,
    to: State,
    actor: &str,
    reason: &str,
    extra: &str,
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
        "UPDATE appliances SET state = $1, seq = $2, before_drain = $3 WHERE serial = $4 AND seq = $5",
    )
    .bind(to.name())
    .bind(seq)
    .bind(life.before_drain().map(State::name))
    .bind(&a.serial)
    .bind(a.seq)
    .execute(&mut **tx)
    .await?;
    if moved.rows_affected() != 1 {
        return Err(Refusal::Conflict(format!("{} changed meanwhile", a.serial)));
    }
    if let Some(step) = Step::of_transition(a.state, to) {
        let ctx = notify::Context {
            site: a.site.clone(),
            serial: Some(a.serial.clone()),
            detail: extra.to_owned(),
        };
        let key = format!("{}/{seq}", a.serial);
        queue(tx, &a.deployment, Some(&a.serial), &key, step, &ctx, now).await?;
    }
    Ok(())
}

/// One turn-up check as an appliance reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportedCheck {
    /// Its name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    #[serde(default)]
    pub detail: String,
}

/// The appliance's BGP session, as its speaker says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bgp {
    /// `established`, or another state of the session (`idle`, `connect`, `active`…).
    pub session: String,
    /// Prefixes received.
    #[serde(default)]
    pub prefixes: u64,
}

/// What an appliance reports (`POST /api/appliances/{serial}/report`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Its software version.
    pub version: String,
    /// Its BGP session.
    pub bgp: Option<Bgp>,
    /// When its last checks ran (unix seconds), and their results.
    #[serde(default)]
    pub checked_at: Option<i64>,
    /// The results.
    #[serde(default)]
    pub checks: Vec<ReportedCheck>,
    /// Its fill's progress, as its status says (kept as given).
    #[serde(default)]
    pub progress: Option<serde_json::Value>,
    /// Its own lifecycle state (`drained` completes a drain the control plane asked for).
    #[serde(default)]
    pub state: Option<String>,
}

/// What the control plane tells a reporting appliance.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Answer {
    /// The state the control plane holds for it.
    pub state: String,
    /// Start the burn-in fill now.
    pub start_burn_in: bool,
    /// Drain: stop taking new sessions, finish those in flight, then report `drained`.
    pub drain: bool,
}

/// Takes a report: keeps it, records new check results (and emails them during burn-in),
/// starts burn-in for an installed appliance whose BGP session is established, and puts a
/// burn-in whose checks all pass live.
pub async fn report(
    db: &Db,
    caller: &Caller,
    serial: &str,
    r: &Report,
    now: i64,
) -> Result<Answer, Refusal> {
    if !matches!(caller, Caller::Appliance { .. }) {
        return Err(Refusal::Forbidden(
            "reports come from the appliance's own token".into(),
        ));
    }
    printable("version", &r.version, 100)?;
    if let Some(st) = &r.state {
        st.parse::<State>()
            .map_err(|e| invalid(format!("state: {e}")))?;
    }
    if r.checks.len() > 32 {
        return Err(invalid("at most 32 checks"));
    }
    for c in &r.checks {
        printable("check name", &c.name, 64)?;
        if c.detail.len() > 2000 {
            return Err(invalid("check detail: at most 2000 bytes"));
        }
    }
    let mut tx = db.pool.begin().await?;
    let a = visible(&mut *tx, caller, serial).await?;
    sqlx::query(
        "UPDATE appliances SET last_report = $1, report = $2, version = $3, bgp = $4 WHERE serial = $5",
    )
    .bind(now)
    .bind(serde_json::to_string(r).context("report")?)
    .bind(&r.version)
    .bind(r.bgp.as_ref().map(|b| b.session.clone()))
    .bind(serial)
    .execute(&mut *tx)
    .await?;
    let mut start_burn_in = false;
    let bgp_up = r.bgp.as_ref().is_some_and(|b| b.session == "established");
    // The appliance as each step leaves it.
    let mut now_at = a.clone();
    if a.state == State::Installed && bgp_up {
        step(
            &mut tx,
            &now_at,
            State::BurnIn,
            "control-plane",
            "reported in with its BGP session established",
            "",
            now,
        )
        .await?;
        start_burn_in = true;
        now_at.state = State::BurnIn;
        now_at.seq += 1;
    } else if a.state == State::BurnIn && bgp_up {
        // Told again until its own state says it fills: a lost answer costs nothing.
        start_burn_in = true;
    }
    if let Some(at) = r.checked_at.filter(|_| !r.checks.is_empty()) {
        let new = sqlx::query("SELECT name FROM checks WHERE appliance = $1 AND time = $2")
            .bind(serial)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?
            .is_none();
        if new {
            for c in &r.checks {
                sqlx::query(
                    "INSERT INTO checks (appliance, time, name, passed, detail) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(serial)
                .bind(at)
                .bind(&c.name)
                .bind(i64::from(c.passed))
                .bind(&c.detail)
                .execute(&mut *tx)
                .await?;
            }
            let all_pass = r.checks.iter().all(|c| c.passed);
            let state = now_at.state;
            if matches!(state, State::BurnIn | State::Live) {
                let ctx = notify::Context {
                    site: a.site.clone(),
                    serial: Some(serial.to_owned()),
                    detail: notify::check_lines(
                        r.checks
                            .iter()
                            .map(|c| (c.name.as_str(), c.passed, c.detail.as_str())),
                    ),
                };
                let kind = if all_pass {
                    Step::ChecksPassed
                } else {
                    Step::ChecksFailed
                };
                // During burn-in every run is news; once live, only a failing one.
                if state == State::BurnIn || !all_pass {
                    queue(
                        &mut tx,
                        &a.deployment,
                        Some(serial),
                        &format!("{serial}/checks/{at}"),
                        kind,
                        &ctx,
                        now,
                    )
                    .await?;
                }
            }
            if now_at.state == State::BurnIn && all_pass && bgp_up {
                step(
                    &mut tx,
                    &now_at,
                    State::Live,
                    "control-plane",
                    "every turn-up check passed",
                    "",
                    now,
                )
                .await?;
                now_at.state = State::Live;
                now_at.seq += 1;
            }
        }
    }
    // A drain asked here completes when the appliance says it is drained.
    if now_at.state == State::Draining && r.state.as_deref() == Some(State::Drained.name()) {
        step(
            &mut tx,
            &now_at,
            State::Drained,
            "control-plane",
            "the appliance reports it drained",
            "",
            now,
        )
        .await?;
        now_at.state = State::Drained;
        now_at.seq += 1;
    }
    tx.commit().await?;
    Ok(Answer {
        state: now_at.state.name().to_owned(),
        start_burn_in: start_burn_in && now_at.state == State::BurnIn,
        drain: matches!(now_at.state, State::Draining | State::Drained),
    })
}

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
    (now, silence): (i64, i64),
    serial: &str,
) -> Result<ApplianceView, Refusal> {
    let r = sqlx::query(
        "SELECT a.serial, a.deployment, d.partner, d.site, a.hardware, a.capacity, a.catalog, a.state, a.carrier, a.tracking, a.last_report, a.version, a.bgp \
         FROM appliances a JOIN deployments d ON d.id = a.deployment WHERE a.serial = $1",
    )
    .bind(serial)
    .fetch_optional(&db.pool)
    .await?
    .filter(|r| {
        r.try_get::<String, _>("partner")
            .is_ok_and(|p| may_see(caller, &p, serial))
    })
    .ok_or_else(|| Refusal::NotFound(format!("no appliance {serial}")))?;
    let events = sqlx::query("SELECT seq, time, from_state, to_state, actor, reason FROM events WHERE appliance = $1 ORDER BY seq")
        .bind(serial)
        .fetch_all(&db.pool)
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
    .fetch_all(&db.pool)
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
        .fetch_all(&db.pool)
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
            .fetch_all(&db.pool)
            .await?
        }
        Caller::Partner { partner, .. } => {
            sqlx::query(&format!(
                "{base} WHERE a.serial > $1 AND d.partner = $2 ORDER BY a.serial LIMIT $3"
            ))
            .bind(after)
            .bind(partner)
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
        Caller::Appliance { serial } => {
            sqlx::query(&format!(
                "{base} WHERE a.serial = $1 AND a.serial > $2 LIMIT $3"
            ))
            .bind(serial)
            .bind(after)
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
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
