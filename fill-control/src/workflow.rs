//! The deployment workflow: a partner's site survey opens a deployment; ops allocate
//! appliances to it; people move them along (shipped, delivered, installed, drained), each
//! step recorded by the ledger (`ledger::step`). Appliances report in; an installed one
//! reporting its BGP session established starts burn-in; a burn-in whose checks all pass
//! goes live.

use std::net::IpAddr;

use anyhow::Context;
use fill_core::lifecycle::State;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::db::Db;
use crate::ledger::{
    Appliance, Refusal, Tx, deployment_site, forbidden_or_hidden, invalid, printable, queue,
    queue_ops, step, visible,
};
use crate::notify::{self, Step};
use crate::upgrade::{self, Phase};

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
        if jiff::tz::TimeZone::get(&self.tz).is_err() {
            return Err(invalid(format!(
                "tz {:?}: not an IANA time zone (as Europe/Paris or UTC)",
                self.tz
            )));
        }
        if let Some(w) = &self.offpeak {
            check_window(w)?;
        }
        Ok(())
    }
}

/// `POST /api/surveys`: a partner's survey opens a deployment; its contacts hear it was
/// received, and those without an account are invited (links on `base`, the control
/// plane's public URL). Returns the deployment's id.
pub async fn submit_survey(
    db: &Db,
    caller: &Caller,
    s: &Survey,
    (base, now): (&str, i64),
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
    let mut emails: Vec<&str> = s.contacts.iter().map(|c| c.email.as_str()).collect();
    emails.sort_unstable();
    emails.dedup();
    let about = (id.as_str(), s.site.as_str(), partner.as_str());
    crate::invite::invite_contacts(&mut tx, about, &emails, base, now).await?;
    tx.commit().await?;
    Ok(id)
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
        "INSERT INTO appliances (serial, deployment, hardware, capacity, catalog, state, seq, created, state_since) VALUES ($1, $2, $3, $4, $5, 'allocated', 1, $6, $7)",
    )
    .bind(&a.serial)
    .bind(deployment)
    .bind(&a.hardware)
    .bind(capacity as i64)
    .bind(&a.catalog)
    .bind(now)
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
        Caller::Appliance { .. } | Caller::Station { .. } => false,
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
    let mut a = visible(&mut *tx, caller, serial).await?;
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
    step(
        &mut tx,
        &mut a,
        to,
        &caller.actor(),
        &reason,
        Some(&extra),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(to)
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

/// An upgrade the appliance could not install.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpgradeFailed {
    /// The version it was told to install.
    pub version: String,
    /// What went wrong.
    pub error: String,
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
    /// The last upgrade it was told to install and could not.
    #[serde(default)]
    pub upgrade_failed: Option<UpgradeFailed>,
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
    /// Install this software version (the maintenance action), then report it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<String>,
}

impl Report {
    /// Checks what is bounded.
    fn check(&self) -> Result<(), Refusal> {
        printable("version", &self.version, 100)?;
        if let Some(st) = &self.state {
            st.parse::<State>()
                .map_err(|e| invalid(format!("state: {e}")))?;
        }
        if self.checks.len() > 32 {
            return Err(invalid("at most 32 checks"));
        }
        for c in &self.checks {
            printable("check name", &c.name, 64)?;
            if c.detail.len() > 2000 {
                return Err(invalid("check detail: at most 2000 bytes"));
            }
        }
        if let Some(f) = &self.upgrade_failed {
            printable("upgrade_failed.version", &f.version, 100)?;
            if f.error.len() > 2000 {
                return Err(invalid("upgrade_failed.error: at most 2000 bytes"));
            }
        }
        Ok(())
    }
}

/// Takes a report: keeps it, records new check results (emails them during burn-in; a
/// failing one of a live appliance alerts ops), starts burn-in for an installed appliance
/// whose BGP session is established, puts a burn-in whose checks all pass live, completes
/// a drain the appliance says is done, and moves its upgrade along (`upgrade::advance`).
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
    r.check()?;
    let mut tx = db.pool.begin().await?;
    // The appliance as each step leaves it.
    let mut a = visible(&mut *tx, caller, serial).await?;
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
    let up = upgrade::active(&mut tx, serial).await?;
    let mut start_burn_in = false;
    let bgp_up = r.bgp.as_ref().is_some_and(|b| b.session == "established");
    if a.state == State::Installed && bgp_up {
        let why = "reported in with its BGP session established";
        step(&mut tx, &mut a, State::BurnIn, CONTROL, why, Some(""), now).await?;
        start_burn_in = true;
    } else if a.state == State::BurnIn && bgp_up {
        // Told again until its own state says it fills: a lost answer costs nothing.
        start_burn_in = true;
    }
    if let Some(at) = r.checked_at.filter(|_| !r.checks.is_empty()) {
        // An upgraded appliance goes live on checks run after it came back, not before (as
        // far as two clocks can tell).
        let fresh = up
            .as_ref()
            .is_none_or(|u| u.phase != Phase::BurnIn || at + CLOCK_SKEW >= u.since);
        // Burn-in ends on checks the appliance ran in burn-in (its own state says so), not
        // on a run from before it was told to start.
        let in_burn_in = matches!(r.state.as_deref(), Some("burn_in" | "live"));
        if record_checks(&mut tx, &a, r, at, now).await? && fresh && in_burn_in {
            let all_pass = r.checks.iter().all(|c| c.passed);
            if a.state == State::BurnIn && all_pass && bgp_up {
                let why = "every turn-up check passed";
                let email = if up.is_some() { None } else { Some("") };
                step(&mut tx, &mut a, State::Live, CONTROL, why, email, now).await?;
            }
        }
    }
    // A drain asked here completes when the appliance says it is drained.
    if a.state == State::Draining && r.state.as_deref() == Some(State::Drained.name()) {
        let why = "the appliance reports it drained";
        let email = if up.is_some() { None } else { Some("") };
        step(&mut tx, &mut a, State::Drained, CONTROL, why, email, now).await?;
    }
    let mut told = upgrade::Told::default();
    if let Some(up) = &up {
        let failed = r
            .upgrade_failed
            .as_ref()
            .map(|f| (f.version.as_str(), f.error.as_str()));
        told = upgrade::advance(&mut tx, &mut a, up, &r.version, failed, now).await?;
    }
    tx.commit().await?;
    Ok(Answer {
        state: a.state.name().to_owned(),
        start_burn_in: (start_burn_in || told.start_burn_in) && a.state == State::BurnIn,
        drain: matches!(a.state, State::Draining | State::Drained),
        upgrade: told.upgrade,
    })
}

/// The actor of the control plane's own steps.
const CONTROL: &str = "control-plane";

/// How far an appliance's clock may be behind the control plane's, seconds.
const CLOCK_SKEW: i64 = 300;

/// Records a run of checks (once: `false` if this run was recorded already), emails it
/// during burn-in, and alerts ops when one fails on a live appliance.
async fn record_checks(
    tx: &mut Tx<'_>,
    a: &Appliance,
    r: &Report,
    at: i64,
    now: i64,
) -> Result<bool, Refusal> {
    let serial = a.serial.as_str();
    let seen = sqlx::query("SELECT name FROM checks WHERE appliance = $1 AND time = $2")
        .bind(serial)
        .bind(at)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if seen {
        return Ok(false);
    }
    for c in &r.checks {
        sqlx::query(
            "INSERT INTO checks (appliance, time, name, passed, detail) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(serial)
        .bind(at)
        .bind(&c.name)
        .bind(i64::from(c.passed))
        .bind(&c.detail)
        .execute(&mut **tx)
        .await?;
    }
    let all_pass = r.checks.iter().all(|c| c.passed);
    let failing = r.checks.iter().filter(|c| !c.passed).count() as i64;
    sqlx::query("UPDATE appliances SET failing = $1 WHERE serial = $2")
        .bind(failing)
        .bind(serial)
        .execute(&mut **tx)
        .await?;
    let ctx = notify::Context {
        site: a.site.clone(),
        serial: Some(serial.to_owned()),
        detail: notify::check_lines(
            r.checks
                .iter()
                .map(|c| (c.name.as_str(), c.passed, c.detail.as_str())),
        ),
    };
    let key = format!("{serial}/checks/{at}");
    // During burn-in every run is news to the partner; once live, only a failing one, and
    // ops hear of it too.
    match (a.state, all_pass) {
        (State::BurnIn, true) => {
            queue(
                tx,
                &a.deployment,
                Some(serial),
                &key,
                Step::ChecksPassed,
                &ctx,
                now,
            )
            .await?;
        }
        (State::BurnIn | State::Live, false) => {
            queue(
                tx,
                &a.deployment,
                Some(serial),
                &key,
                Step::ChecksFailed,
                &ctx,
                now,
            )
            .await?;
        }
        _ => {}
    }
    if a.state == State::Live && !all_pass {
        let key = format!("{key}/ops");
        let step = Step::AlertCheckFailed;
        queue_ops(tx, &a.deployment, Some(serial), &key, step, &ctx, now).await?;
    }
    Ok(true)
}
