//! `fill appliance ...`: status (of a store, or of a running fill-server), event, checks,
//! maintenance.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use fill_core::size::format_size;
use fill_core::text::Escaped;
use serde::Serialize;

use crate::Outcome;
use crate::cli::ApplianceCommand;
use crate::common::{open_store, print_json, runtime};

/// `fill appliance status --json` (docs/json.md).
#[derive(Serialize)]
pub(crate) struct StatusJson<'a> {
    state: fill_core::lifecycle::State,
    before_drain: Option<fill_core::lifecycle::State>,
    events: &'a [fill_core::lifecycle::Event],
    maintenance: &'a [fill_core::lifecycle::MaintenanceWindow],
}

pub(crate) fn appliance(cmd: ApplianceCommand) -> Result<Outcome> {
    use fill_core::lifecycle::{Lifecycle, State};
    match cmd {
        ApplianceCommand::Status {
            server: Some(server),
            json,
            ..
        } => return server_status(&server, json),
        ApplianceCommand::Status { store: None, .. } => bail!("--store or --server is needed"),
        ApplianceCommand::Status {
            store: Some(store),
            json,
            ..
        } => {
            let s = open_store(&store)?;
            let events = s.lifecycle_events()?;
            let l = Lifecycle::replay(&events)
                .with_context(|| format!("{}", s.events_path().display()))?;
            let recent = &events[events.len().saturating_sub(20)..];
            let now = crate::planning::now()?;
            let windows: Vec<_> = s
                .maintenance_windows()?
                .into_iter()
                .filter(|w| w.end() > now)
                .collect();
            if json {
                print_json(&StatusJson {
                    state: l.state(),
                    before_drain: l.before_drain(),
                    events: recent,
                    maintenance: &windows,
                })?;
            } else {
                outln!("state: {}", l.state())?;
                if events.is_empty() {
                    outln!("(no lifecycle recorded: a store serving as origin or tier is live)")?;
                }
                for e in recent {
                    outln!("{}", event_line(e))?;
                }
                for w in &windows {
                    outln!(
                        "maintenance from {} for {}: {}",
                        fill_core::duration::format_rfc3339(w.start),
                        fill_core::duration::human_secs(w.duration),
                        w.reason
                    )?;
                }
            }
        }
        ApplianceCommand::Event {
            store,
            state,
            reason,
            json,
        } => {
            let to: State = state.parse()?;
            let s = open_store(&store)?;
            if to != State::Allocated && s.lifecycle_events()?.is_empty() {
                bail!(
                    "{} has no lifecycle yet: start it with `fill appliance event --store {} allocated`",
                    store.display(),
                    store.display()
                );
            }
            let event = s.transition(to, crate::planning::now()?, &reason)?;
            if json {
                print_json(&event)?;
            } else {
                outln!("{} -> {}", event.from, event.to)?;
            }
        }
        ApplianceCommand::Checks {
            store,
            config,
            json,
        } => return checks_cmd(&store, config.as_deref(), json),
        ApplianceCommand::Maintenance {
            store,
            start,
            duration,
            reason,
        } => {
            let s = open_store(&store)?;
            let start = match start {
                Some(t) => t.0,
                None => crate::planning::now()?,
            };
            let window = fill_core::lifecycle::MaintenanceWindow::new(start, &duration.0, &reason)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut all = s.maintenance_windows()?;
            all.push(window.clone());
            s.set_maintenance_windows(&mut all)?;
            outln!(
                "maintenance from {} for {}: {}",
                fill_core::duration::format_rfc3339(window.start),
                fill_core::duration::human_secs(window.duration),
                window.reason
            )?;
        }
    }
    Ok(Outcome::Ok)
}

pub(crate) fn checks_cmd(store: &Path, config: Option<&Path>, json: bool) -> Result<Outcome> {
    let settings = match config {
        Some(path) => {
            let file = fill_store::config::ConfigFile::load(path)?;
            file.lifecycle
                .resolve(&file.base)
                .with_context(|| format!("config {}", path.display()))?
        }
        None => fill_store::config::Settings::default(),
    };
    let s = open_store(store)?;
    let rt = runtime(false)?;
    let report = rt.block_on(fill_store::lifecycle::run_checks(
        &s,
        &settings,
        crate::planning::now()?,
    ));
    if json {
        print_json(&report)?;
    } else {
        out!(
            "{}",
            checks_table(
                report
                    .checks
                    .iter()
                    .map(|c| (c.name, c.passed, c.detail.as_str()))
            )
        )?;
        if let Some(p) = &report.progress {
            outln!(
                "fill {:.1}% ({} of {}), offload {:.1}%",
                p.share * 100.0,
                format_size(p.complete_bytes),
                format_size(p.target_bytes),
                p.offload * 100.0
            )?;
        }
    }
    Ok(if report.all_passed() {
        Outcome::Ok
    } else {
        Outcome::NotReady
    })
}

/// One line per check: `pass`/`FAIL`, its name, its detail.
pub(crate) fn checks_table<'a>(checks: impl Iterator<Item = (&'a str, bool, &'a str)>) -> String {
    let mut out = String::new();
    for (name, passed, detail) in checks {
        let verdict = if passed { "pass" } else { "FAIL" };
        out.push_str(&format!("{verdict:<5} {name:<13} {detail}\n"));
    }
    out
}

/// An event as one line: time, from -> to, reason.
pub(crate) fn event_line(e: &fill_core::lifecycle::Event) -> String {
    format!(
        "{}  {} -> {}  {}",
        fill_core::duration::format_rfc3339(e.time),
        e.from,
        e.to,
        e.reason
    )
}

/// `fill appliance status --server URL`.
fn server_status(server: &str, json: bool) -> Result<Outcome> {
    let base = crate::sources::check_url(server).context("--server")?;
    let rt = runtime(false)?;
    let url = format!("{base}/status.json");
    let body = rt
        .block_on(crate::net::Net::new().get_small(&url, false, 16 << 20))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if json {
        crate::stdout().write_all(&body)?;
        return Ok(Outcome::Ok);
    }
    let v: StatusView =
        serde_json::from_slice(&body).with_context(|| format!("{url}: not a status"))?;
    outln!(
        "appliance: {} on {}, fill-server {}",
        Escaped(v.appliance.as_deref().unwrap_or(&v.store)),
        Escaped(&v.host),
        Escaped(&v.version)
    )?;
    outln!(
        "state: {}{}",
        v.state,
        if v.serving {
            ""
        } else {
            " (not serving content)"
        }
    )?;
    if let Some(p) = &v.progress {
        outln!(
            "fill: {:.1}% of {} ({} of {} files); offload {:.1}% (needs {:.0}%)",
            p.share * 100.0,
            format_size(p.target_bytes),
            p.complete_files,
            p.target_files,
            p.offload * 100.0,
            p.offload_threshold * 100.0
        )?;
    }
    out!(
        "{}",
        checks_table(
            v.checks
                .iter()
                .map(|c| (c.name.as_str(), c.passed, c.detail.as_str()))
        )
    )?;
    if let Some(f) = &v.last_fill {
        outln!(
            "last fill: {} at {}, {} fetched, cost {:.2}; last success {}",
            f.outcome.name(),
            fill_core::duration::format_rfc3339(f.finished_at),
            format_size(f.bytes_fetched),
            f.cost,
            f.last_success_at
                .map_or("never".to_owned(), fill_core::duration::format_rfc3339)
        )?;
    }
    for e in &v.events {
        outln!("{}", event_line(e))?;
    }
    Ok(Outcome::Ok)
}

/// What `fill appliance status --server` reads of `/status.json`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct StatusView {
    #[serde(default)]
    appliance: Option<String>,
    #[serde(default)]
    host: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    store: String,
    #[serde(default)]
    last_fill: Option<fill_store::last_fill::LastFill>,
    state: String,
    serving: bool,
    #[serde(default)]
    checks: Vec<CheckView>,
    progress: Option<ProgressView>,
    #[serde(default)]
    events: Vec<fill_core::lifecycle::Event>,
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct CheckView {
    name: String,
    passed: bool,
    detail: String,
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ProgressView {
    target_files: u64,
    target_bytes: u64,
    complete_files: u64,
    share: f64,
    offload: f64,
    offload_threshold: f64,
}
