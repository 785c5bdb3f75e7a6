//! The site fill family: `fill run --site` (one appliance of a site filling with the
//! others) and `fill site status` (the site's fill, read from every fill-server).
//!
//! An appliance runs the site plan's part for itself: the ranges the plan lands on it come
//! from the external sources, as planned; the ranges it copies come from the other
//! appliances' fill-servers under `/partial/`, block by block as they land there
//! (docs/protocol.md, "Relay"), passing a lander that makes no progress over to the next
//! appliance ahead in the file's order and, when none is left, to outside — those bytes are
//! the plan's excess. Its figures go into the store's state (`site-fill.json`), which its
//! fill-server shows in `/status.json`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use fill_core::size::format_size;
use fill_core::source::{Source, SourceKind};
use fill_core::text::Escaped;
use fill_store::sources::SourceSpec;
use serde::{Deserialize, Serialize};

use crate::Outcome;
use crate::cli::{RunArgs, SiteCommand};
use crate::common::{compute_delta, open_catalog, open_store_to_fill, print_json, runtime};
use crate::site::{HeldFrom, Horizon};
use crate::site_plan::SitePlanDoc;

/// Connections one appliance opens to each other appliance of its site.
const PEER_CONNECTIONS: u32 = 8;

/// How often a site fill's figures are written while it runs.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The name of the site fill's figures in the store's state folder.
pub const SITE_FILL_FILE: &str = "site-fill.json";

/// One appliance's site fill figures (`site-fill.json`, and `fill run --site --json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SiteFillReport {
    /// The appliance.
    pub appliance: String,
    /// `filling`, `done` or `failed`.
    pub state: String,
    /// RFC 3339, when this was written.
    pub updated: String,
    /// Bytes its delta needed when the fill started.
    pub bytes_to_fetch: u64,
    /// Bytes it still lacks (its delta's bytes not yet fetched).
    pub lacks_bytes: u64,
    /// Bytes the site plan lands on it from outside.
    pub planned_external_bytes: u64,
    /// Money of those.
    pub planned_cost: f64,
    /// Bytes it took from outside the site (tiers, origins).
    pub external_bytes: u64,
    /// Bytes it copied from the other appliances.
    pub inside_bytes: u64,
    /// Of `external_bytes`, those the plan meant to come from inside the site.
    pub excess_bytes: u64,
    /// Money of those.
    pub excess_cost: f64,
    /// Money it spent.
    pub cost: f64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

pub(crate) fn site(cmd: SiteCommand) -> Result<Outcome> {
    match cmd {
        SiteCommand::Status { site, json } => status(&site, json),
    }
}

/// The appliances of a site file, each with its fill-server's URL.
fn with_urls(site: &crate::site::SiteFile, path: &Path) -> Result<Vec<(String, String)>> {
    site.appliances()
        .iter()
        .map(|a| match &a.url {
            Some(u) => Ok((a.name.clone(), u.clone())),
            None => bail!(
                "appliance {} in {} has no url: the site fill reaches each appliance through its fill-server",
                a.name,
                path.display()
            ),
        })
        .collect()
}

pub(crate) fn run_site(args: &RunArgs) -> Result<Outcome> {
    let (Some(site_path), Some(name)) = (&args.site, &args.appliance) else {
        bail!("--site needs --appliance");
    };
    let site = crate::site::read_site(site_path)?;
    let base = site_path.parent().unwrap_or(Path::new("."));
    let appliances = with_urls(&site, site_path)?;
    let names: Vec<String> = appliances.iter().map(|(n, _)| n.clone()).collect();
    let Some(me) = names.iter().position(|n| n == name) else {
        bail!(
            "no appliance {:?} in {}: it has {}",
            name,
            site_path.display(),
            names.join(", ")
        );
    };
    let entry = &site.appliances()[me];
    let store_path = match (&args.store, &entry.store) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => base.join(s),
        (None, None) => bail!("appliance {name} has no store in the site file: give --store"),
    };
    let doc = match &args.plan {
        Some(p) => {
            let text =
                fill_store::bounded::read_text(p, fill_store::store::MAX_REMOTE_CATALOG_BYTES)
                    .with_context(|| format!("cannot read {}", p.display()))?;
            SitePlanDoc::parse(&text, &names)
                .with_context(|| format!("bad plan {}", p.display()))?
        }
        None => {
            // The same start on every appliance that starts within the same step.
            let now = crate::planning::now()?;
            let start = now - now.rem_euclid(site.step());
            let horizon = Horizon {
                start,
                deadline: args.deadline.0,
            };
            let planned = crate::site::plan_site(site_path, horizon, HeldFrom::Servers)?;
            SitePlanDoc::new(
                planned.names(),
                planned.ids(),
                planned.sources(),
                planned.plan(),
                start,
            )
        }
    };
    // The external sources, then the other appliances as peers.
    let mut specs = crate::sources::load(&base.join(site.sources()))?;
    let external = specs.len();
    let mut peer_of: Vec<Option<usize>> = Vec::with_capacity(names.len());
    for (a, (peer, url)) in appliances.iter().enumerate() {
        if a == me {
            peer_of.push(None);
            continue;
        }
        if specs.iter().any(|s| &s.source.name == peer) {
            bail!("appliance {peer} has the name of a source: rename one of them");
        }
        peer_of.push(Some(specs.len()));
        specs.push(SourceSpec {
            source: Source {
                name: peer.clone(),
                kind: SourceKind::Peer,
                url: format!("{url}/partial"),
                cost_per_gib: 0.0,
                bandwidth_bps: site.peer_bps(),
                window: None,
                max_connections: PEER_CONNECTIONS,
            },
            catalog: None,
            object: Default::default(),
        });
    }
    let target_file = open_catalog(&base.join(&entry.target))?;
    let target = target_file.validate()?;
    let s = open_store_to_fill(&store_path, args.reserve)?;
    let _lock = s.lock().context("cannot lock the store")?;
    s.recover().context("cannot settle an interrupted fill")?;
    let rt = runtime(true)?;
    let (remotes, holdings) = crate::sources::reach(&specs, &rt)?;
    crate::sources::say_unreachable(&specs, &holdings);
    let sources: Vec<Source> = specs.iter().map(|s| s.source.clone()).collect();
    let sd = compute_delta(&target, &s, entry.capacity)?;
    let mut routes: crate::planning::Routes = HashMap::new();
    let mut relays = crate::fill::Relays {
        files: HashMap::new(),
        patience: args.relay_patience.0,
    };
    for (id, f) in doc.for_appliance(me as u32) {
        let Some(e) = target.find(&id) else { continue };
        // A file another appliance holds whole by now (a restarted appliance whose part
        // the others took over) is copied from it, not landed again as the plan said.
        let held_inside = peer_of.iter().flatten().any(|&k| holdings[k].holds(&id));
        for (offset, end, source) in f.landings.iter().filter(|_| !held_inside) {
            if let Some(k) = specs[..external]
                .iter()
                .position(|s| &s.source.name == source)
            {
                routes.entry(e as u32).or_default().push((*offset, *end, k));
            }
        }
        let peers = |v: &[u32]| -> Vec<usize> {
            v.iter()
                .filter_map(|&a| peer_of.get(a as usize).copied().flatten())
                .collect()
        };
        relays.files.insert(id, (peers(&f.relay), peers(&f.watch)));
    }
    for v in routes.values_mut() {
        v.sort_unstable();
    }
    let writer = super::run::ready_to_write(&rt, &s, &target_file, args.writer)?;
    let mut report = SiteFillReport {
        appliance: name.clone(),
        state: "filling".into(),
        bytes_to_fetch: sd.delta.bytes_to_fetch,
        lacks_bytes: sd.delta.bytes_to_fetch,
        planned_external_bytes: doc.planned_external[me],
        planned_cost: doc.planned_cost[me],
        ..SiteFillReport::default()
    };
    save(&s, &mut report);
    let bar = crate::fill::Progress::new(sd.delta.bytes_to_fetch, "filling", &sources);
    let stores = [crate::fill::StoreJob::of(&s, &sd)];
    let job = crate::fill::FillJob {
        stores: &stores,
        target: &target,
        sources: &sources,
        holdings: &holdings,
        timeout: args.timeout.0,
        remotes: &remotes,
        routes: Some(&routes),
        relays: Some(&relays),
        verify_threads: usize::from(args.verify_threads),
    };
    // While it fills, the figures in the store's state follow it every REPORT_EVERY, so
    // `fill site status` shows what each appliance still lacks.
    let done = std::sync::atomic::AtomicBool::new(false);
    let started = crate::planning::now()?;
    let result = std::thread::scope(|scope| {
        let (done, bar, s) = (&done, &bar, &s);
        let mut live = report.clone();
        scope.spawn(move || {
            let mut last = std::time::Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if last.elapsed() < REPORT_EVERY {
                    continue;
                }
                last = std::time::Instant::now();
                let counted = bar.counted();
                let (inside, outside) = split_at_site(external, &counted);
                live.inside_bytes = inside;
                live.external_bytes = outside;
                live.lacks_bytes = live.bytes_to_fetch.saturating_sub(inside + outside);
                save(s, &mut live);
            }
        });
        let result = crate::common::until_interrupted(&rt, crate::fill::run(job, &writer, bar));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    });
    bar.finish_and_clear();
    crate::fill::FillReport::record(&s, started, sd.delta.bytes_to_fetch, &result);
    let fill = match result {
        Ok(r) => r,
        Err(e) => {
            let interrupted = e.downcast_ref::<crate::common::Interrupted>().is_some();
            report.state = if interrupted { "interrupted" } else { "failed" }.into();
            report.error = Some(format!("{e:#}"));
            save(&s, &mut report);
            return Err(e);
        }
    };
    let bytes: Vec<u64> = fill.sources.iter().map(|r| r.bytes).collect();
    (report.inside_bytes, report.external_bytes) = split_at_site(external, &bytes);
    for (src, r) in sources.iter().zip(&fill.sources).take(external) {
        report.excess_bytes += r.excess_bytes;
        report.excess_cost += src.cost(r.excess_bytes);
    }
    report.cost = fill.total_cost;
    report.lacks_bytes = 0;
    report.state = "done".into();
    save(&s, &mut report);
    if args.json {
        #[derive(Serialize)]
        struct Json<'a> {
            site: &'a SiteFillReport,
            #[serde(flatten)]
            fill: &'a crate::fill::FillReport,
        }
        print_json(&Json {
            site: &report,
            fill: &fill,
        })?;
    } else {
        out!(
            "{}",
            super::delta::delta_table(&target, &sd.delta, entry.capacity)
        )?;
        out!("{}", super::run::run_table(&fill, false))?;
        out!("{}", appliance_line(&report))?;
    }
    Ok(Outcome::Ok)
}

/// Bytes per source split into (from the site's appliances, from outside): the sources
/// file's come first, then the appliances.
fn split_at_site(external: usize, bytes: &[u64]) -> (u64, u64) {
    let (outside, inside) = bytes.split_at(external.min(bytes.len()));
    (inside.iter().sum(), outside.iter().sum())
}

/// Writes the report into the store's state (what its fill-server shows); a failure to
/// write it is logged, not fatal: the fill is what matters.
fn save(s: &fill_store::store::Store, report: &mut SiteFillReport) {
    report.updated = fill_core::duration::format_rfc3339(crate::planning::now().unwrap_or(0));
    let path = s.state_file(SITE_FILL_FILE);
    let written = serde_json::to_vec_pretty(report)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        });
    if let Err(e) = written {
        tracing::warn!("cannot write {}: {e:#}", path.display());
    }
}

fn appliance_line(r: &SiteFillReport) -> String {
    format!(
        "site fill of {}: {} from outside (plan: {}), {} copied inside the site, excess {} ({:.4}), cost {:.4} (plan: {:.4})\n",
        Escaped(&r.appliance),
        format_size(r.external_bytes),
        format_size(r.planned_external_bytes),
        format_size(r.inside_bytes),
        format_size(r.excess_bytes),
        r.excess_cost,
        r.cost,
        r.planned_cost
    )
}

/// `fill site status --json`.
#[derive(Debug, Serialize)]
struct SiteStatus {
    /// Per appliance, in the site file's order.
    appliances: Vec<ApplianceStatus>,
    /// Sums over the appliances that answered.
    external_bytes: u64,
    planned_external_bytes: u64,
    inside_bytes: u64,
    excess_bytes: u64,
    excess_cost: f64,
    cost: f64,
    planned_cost: f64,
    lacks_bytes: u64,
}

#[derive(Debug, Serialize)]
struct ApplianceStatus {
    name: String,
    url: String,
    /// Its site fill's figures, when it ran one.
    fill: Option<SiteFillReport>,
    /// Why its fill-server could not be read.
    unreachable: Option<String>,
}

/// Most a status document may weigh.
const MAX_STATUS_BYTES: u64 = 4 << 20;

fn status(path: &Path, json: bool) -> Result<Outcome> {
    let site = crate::site::read_site(path)?;
    let appliances = with_urls(&site, path)?;
    let rt = runtime(false)?;
    let net = crate::net::Net::new();
    let mut out = SiteStatus {
        appliances: Vec::new(),
        external_bytes: 0,
        planned_external_bytes: 0,
        inside_bytes: 0,
        excess_bytes: 0,
        excess_cost: 0.0,
        cost: 0.0,
        planned_cost: 0.0,
        lacks_bytes: 0,
    };
    for (name, url) in appliances {
        let full = format!("{url}/status.json");
        let got = rt
            .block_on(net.get_small(&full, false, MAX_STATUS_BYTES))
            .map_err(|e| format!("{full}: {e}"))
            .and_then(|b| {
                let v: serde_json::Value =
                    serde_json::from_slice(&b).map_err(|e| format!("{full}: not JSON: {e}"))?;
                match v.get("site_fill") {
                    None | Some(serde_json::Value::Null) => Ok(None),
                    Some(f) => serde_json::from_value::<SiteFillReport>(f.clone())
                        .map(Some)
                        .map_err(|e| format!("{full}: bad site_fill: {e}")),
                }
            });
        let (fill, unreachable) = match got {
            Ok(f) => (f, None),
            Err(why) => (None, Some(why)),
        };
        if let Some(f) = &fill {
            out.external_bytes += f.external_bytes;
            out.planned_external_bytes += f.planned_external_bytes;
            out.inside_bytes += f.inside_bytes;
            out.excess_bytes += f.excess_bytes;
            out.excess_cost += f.excess_cost;
            out.cost += f.cost;
            out.planned_cost += f.planned_cost;
            out.lacks_bytes += f.lacks_bytes;
        }
        out.appliances.push(ApplianceStatus {
            name,
            url,
            fill,
            unreachable,
        });
    }
    if json {
        print_json(&out)?;
        return Ok(Outcome::Ok);
    }
    outln!(
        "{:<14} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "appliance",
        "fill",
        "outside",
        "planned",
        "inside",
        "excess",
        "lacks"
    )?;
    for a in &out.appliances {
        match (&a.fill, &a.unreachable) {
            (Some(f), _) => outln!(
                "{:<14} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
                Escaped(&a.name),
                Escaped(&f.state),
                format_size(f.external_bytes),
                format_size(f.planned_external_bytes),
                format_size(f.inside_bytes),
                format_size(f.excess_bytes),
                format_size(f.lacks_bytes)
            )?,
            (None, Some(why)) => outln!("{:<14} unreachable: {}", Escaped(&a.name), Escaped(why))?,
            (None, None) => outln!("{:<14} no site fill has run", Escaped(&a.name))?,
        }
    }
    outln!(
        "site: {} from outside (plan: {}), {} copied inside, excess {} ({:.4}); cost {:.4} (plan: {:.4}); still lacking {}",
        format_size(out.external_bytes),
        format_size(out.planned_external_bytes),
        format_size(out.inside_bytes),
        format_size(out.excess_bytes),
        out.excess_cost,
        out.cost,
        out.planned_cost,
        format_size(out.lacks_bytes)
    )?;
    Ok(Outcome::Ok)
}
