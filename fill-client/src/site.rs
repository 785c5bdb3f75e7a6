//! The site file, and the joint plan of the appliances of one site (`fill plan --site`;
//! `fill run --site` runs it, see `cmd::site`).
//!
//! ```toml
//! sources = "sources.toml"        # the external sources, shared (relative to this file)
//! target = "region.catalog"       # the region's target catalog (an appliance may override)
//! peer_bandwidth = "10Gbps"       # what one appliance can send to the others in the site
//! uplink = "20Gbps"               # optional: the site's external link (default: the
//!                                 # appliances' ingress together, if all have one)
//! step = "1h"                     # optional: slot length for in-site copies (default 1h)
//!
//! [[appliance]]
//! name = "oca-01"
//! url = "http://10.0.0.11:7878"   # its fill-server (for `fill run --site`, `fill site status`)
//! store = "stores/oca-01"         # its store: holdings and partial files (not modified),
//! # inventory = "oca-01.catalog"  # or a catalog of what it holds
//! capacity = "40TB"
//! ingress = "10Gbps"              # optional
//! target = "other.catalog"        # optional
//! ```
//!
//! `fill plan --site` reads an appliance's holdings from its `store` or `inventory`, else
//! from its fill-server (`url`); `fill run --site` always from the fill-servers, so that
//! every appliance of the site, planning on its own, reaches the same plan.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fill_core::ContentId;
use fill_core::duration::format_rfc3339;
use fill_core::plan::site::{self, SiteAppliance, SitePlan, SiteProblem};
use fill_core::plan::{Demand, Plan};
use fill_core::size::{format_size, parse_size};
use fill_core::source::{Source, SourceKind, parse_bandwidth};
use fill_store::store::{CatalogFile, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteToml {
    sources: PathBuf,
    target: Option<PathBuf>,
    peer_bandwidth: String,
    uplink: Option<String>,
    step: Option<String>,
    #[serde(default)]
    appliance: Vec<ApplianceToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplianceToml {
    name: String,
    url: Option<String>,
    store: Option<PathBuf>,
    inventory: Option<PathBuf>,
    capacity: String,
    ingress: Option<String>,
    target: Option<PathBuf>,
}

/// When the plan starts and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct Horizon {
    /// Unix seconds.
    pub start: i64,
    /// Seconds.
    pub deadline: i64,
}

/// A site plan with what it was made from.
#[derive(Debug)]
pub struct Planned {
    names: Vec<String>,
    /// Site file index → id.
    ids: Vec<ContentId>,
    sources: Vec<Source>,
    plan: SitePlan,
    alone: Vec<Plan>,
    horizon: Horizon,
    step: i64,
    peer_bps: u64,
}

/// A site file, checked: every field parsed, every name printable, each appliance with a
/// target and exactly one of store and inventory. Paths are as written (relative to the
/// file's folder).
#[derive(Debug)]
pub struct SiteFile {
    sources: PathBuf,
    peer_bps: u64,
    uplink_bps: Option<u64>,
    step: i64,
    appliances: Vec<ApplianceEntry>,
}

/// One appliance of a site file.
#[derive(Debug)]
pub struct ApplianceEntry {
    /// Its name.
    pub name: String,
    /// Its fill-server's base URL (no trailing slash).
    pub url: Option<String>,
    /// Its target catalog (relative to the site file).
    pub target: PathBuf,
    /// Its store (relative to the site file).
    pub store: Option<PathBuf>,
    /// A catalog of what it holds (instead of its store).
    pub inventory: Option<PathBuf>,
    /// Its capacity.
    pub capacity: u64,
    /// What it can receive, bits per second.
    pub ingress: Option<u64>,
}

/// Where the planner reads what each appliance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldFrom {
    /// Its `store` or `inventory`, else its fill-server.
    Files,
    /// Its fill-server, whatever else the file gives.
    Servers,
}

impl SiteFile {
    /// The appliances, in the file's order.
    pub fn appliances(&self) -> &[ApplianceEntry] {
        &self.appliances
    }

    /// The sources file (relative to the site file).
    pub fn sources(&self) -> &Path {
        &self.sources
    }

    /// What one appliance can send to the others, bits per second.
    pub fn peer_bps(&self) -> u64 {
        self.peer_bps
    }

    /// The slot length of the site plan, seconds.
    pub fn step(&self) -> i64 {
        self.step
    }
}

/// Parses and checks a site file's text (no I/O: the fuzz targets call it).
pub fn parse_site(text: &str) -> Result<SiteFile> {
    let site: SiteToml =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    let peer_bps = parse_bandwidth(&site.peer_bandwidth).context("bad peer_bandwidth")?;
    let uplink_bps = site
        .uplink
        .as_deref()
        .map(parse_bandwidth)
        .transpose()
        .context("bad uplink")?;
    let step = match &site.step {
        Some(s) => fill_core::duration::parse_duration(s)
            .context("bad step")?
            .as_secs()
            .max(60) as i64,
        None => 3600,
    };
    if site.appliance.is_empty() {
        bail!("no [[appliance]]");
    }
    let mut appliances: Vec<ApplianceEntry> = Vec::new();
    for a in site.appliance {
        // Names are printed in reports: none may carry a terminal's controls.
        if a.name.trim().is_empty() || a.name.chars().any(fill_core::text::is_unprintable) {
            bail!(
                "appliance {:?}: a name must be non-empty, without control characters",
                a.name
            );
        }
        if appliances.iter().any(|b| b.name == a.name) {
            bail!("appliance {:?} appears twice", a.name);
        }
        let target = a
            .target
            .or_else(|| site.target.clone())
            .with_context(|| format!("appliance {}: no target (set target at the top)", a.name))?;
        let capacity = parse_size(&a.capacity)
            .with_context(|| format!("appliance {}: bad capacity", a.name))?;
        let ingress = a
            .ingress
            .as_deref()
            .map(parse_bandwidth)
            .transpose()
            .with_context(|| format!("appliance {}: bad ingress", a.name))?;
        if a.store.is_some() && a.inventory.is_some() {
            bail!("appliance {}: give store or inventory, not both", a.name);
        }
        let url = match a.url {
            Some(u) => {
                Some(check_url(&u).with_context(|| format!("appliance {}: bad url", a.name))?)
            }
            None => None,
        };
        if a.store.is_none() && a.inventory.is_none() && url.is_none() {
            bail!(
                "appliance {}: give its store, an inventory or its fill-server's url",
                a.name
            );
        }
        appliances.push(ApplianceEntry {
            name: a.name,
            url,
            target,
            store: a.store,
            inventory: a.inventory,
            capacity,
            ingress,
        });
    }
    Ok(SiteFile {
        sources: site.sources,
        peer_bps,
        uplink_bps,
        step,
        appliances,
    })
}

/// An appliance's fill-server URL, checked: `http://` or `https://`, a host, no trailing
/// slash kept, nothing a terminal would act on.
fn check_url(u: &str) -> Result<String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .context("it must start with http:// or https://")?;
    if rest.is_empty() || rest.starts_with('/') {
        bail!("no host in {u:?}");
    }
    if u.chars()
        .any(|c| c.is_whitespace() || fill_core::text::is_unprintable(c))
    {
        bail!("{u:?} has spaces or control characters");
    }
    Ok(u.trim_end_matches('/').to_owned())
}

/// Reads and checks a site file.
pub fn read_site(path: &Path) -> Result<SiteFile> {
    let text = fill_store::bounded::read_text(path, fill_store::bounded::MAX_CONFIG_BYTES)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse_site(&text).with_context(|| format!("bad site file {}", path.display()))
}

/// Reads the site file, computes each appliance's delta, and plans the site.
pub fn plan_site(path: &Path, horizon: Horizon, held_from: HeldFrom) -> Result<Planned> {
    let site = read_site(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rel = |p: &Path| base.join(p);
    let (peer_bps, uplink_bps, step) = (site.peer_bps, site.uplink_bps, site.step);
    let specs = crate::sources::load(&rel(&site.sources))?;
    let rt = crate::common::runtime(false)?;
    let (_, holdings) = crate::sources::reach(&specs, &rt)?;
    let sources: Vec<Source> = specs.iter().map(|s| s.source.clone()).collect();
    // The site's file table, by id, and each appliance's ranges in it.
    let mut files: BTreeMap<ContentId, u32> = BTreeMap::new();
    let mut ids: Vec<ContentId> = Vec::new();
    let mut per_app: Vec<Vec<(u32, u64, u64)>> = Vec::new();
    let mut held: Vec<Vec<ContentId>> = Vec::new();
    let mut ingress = Vec::new();
    let mut names = Vec::new();
    for a in &site.appliances {
        let target_path = rel(&a.target);
        let capacity = a.capacity;
        ingress.push(a.ingress);
        let target_file =
            CatalogFile::open(&target_path).with_context(|| format!("appliance {}", a.name))?;
        let target = target_file.validate()?;
        // What it holds: its store, or a catalog of its inventory.
        let (inv_file, sd) = match (&a.store, &a.inventory, &a.url) {
            (_, _, Some(url))
                if held_from == HeldFrom::Servers
                    || (a.store.is_none() && a.inventory.is_none()) =>
            {
                let inv = served_catalog(&rt, url)
                    .with_context(|| format!("appliance {}: cannot read what it holds", a.name))?;
                let sd = crate::common::delta_from_inventory(&target, &inv, capacity);
                (inv, sd)
            }
            (Some(dir), _, _) => {
                let store = Store::open(rel(dir))
                    .with_context(|| format!("appliance {}: cannot use its store", a.name))?;
                let inv = store
                    .catalog()
                    .with_context(|| format!("appliance {}: cannot use its store", a.name))?;
                (inv, crate::common::compute_delta(&target, &store, capacity))
            }
            (None, Some(cat), _) => {
                let inv = CatalogFile::open(&rel(cat))
                    .with_context(|| format!("appliance {}: inventory", a.name))?;
                let sd = crate::common::delta_from_inventory(&target, &inv, capacity);
                (inv, sd)
            }
            (None, None, _) => bail!("appliance {}: give its fill-server's url", a.name),
        };
        let sd = sd.with_context(|| format!("appliance {}", a.name))?;
        let mut ranges = Vec::with_capacity(sd.delta.fetch.len());
        for f in &sd.delta.fetch {
            let id = target.id(f.entry as usize);
            let next = ids.len() as u32;
            let idx = *files.entry(id).or_insert_with(|| {
                ids.push(id);
                next
            });
            ranges.push((idx, f.offset, f.length));
        }
        per_app.push(ranges);
        let inv = inv_file.validate()?;
        held.push((0..inv.len()).map(|i| inv.id(i)).collect());
        names.push(a.name.clone());
    }
    // Classes over the external sources, per site file.
    let mut class_of: BTreeMap<Vec<usize>, u32> = BTreeMap::new();
    let mut classes: Vec<Vec<usize>> = Vec::new();
    let file_class: Vec<u32> = ids
        .iter()
        .map(|id| {
            let holders: Vec<usize> = (0..sources.len())
                .filter(|&s| holdings[s].holds(id))
                .collect();
            let next = classes.len() as u32;
            *class_of.entry(holders.clone()).or_insert_with(|| {
                classes.push(holders);
                next
            })
        })
        .collect();
    let demands: Vec<Vec<Demand>> = per_app
        .iter()
        .map(|r| {
            r.iter()
                .map(|&(entry, offset, length)| Demand {
                    entry,
                    offset,
                    length,
                    class: file_class[entry as usize],
                })
                .collect()
        })
        .collect();
    let holds: Vec<Vec<u32>> = held
        .iter()
        .map(|h| {
            let mut v: Vec<u32> = h.iter().filter_map(|id| files.get(id).copied()).collect();
            v.sort_unstable();
            v
        })
        .collect();
    let apps: Vec<SiteAppliance<'_>> = (0..demands.len())
        .map(|a| SiteAppliance {
            demands: &demands[a],
            holds: &holds[a],
            ingress_bps: ingress[a],
        })
        .collect();
    let problem = SiteProblem {
        sources: &sources,
        classes: &classes,
        appliances: &apps,
        start: horizon.start,
        horizon: horizon.deadline,
        uplink_bps,
        peer_bps,
        step,
    };
    let plan = site::plan_site(&problem).map_err(crate::planning::plan_error)?;
    let alone = site::plan_alone(&problem).map_err(crate::planning::plan_error)?;
    Ok(Planned {
        names,
        ids,
        sources,
        plan,
        alone,
        horizon,
        step,
        peer_bps,
    })
}

/// The catalog an appliance's fill-server serves (what it holds whole).
fn served_catalog(rt: &tokio::runtime::Runtime, url: &str) -> Result<CatalogFile> {
    let full = format!("{url}/catalog");
    let net = crate::net::Net::new();
    let bytes = rt
        .block_on(net.get_small(&full, true, fill_store::store::MAX_REMOTE_CATALOG_BYTES))
        .with_context(|| full.clone())?;
    Ok(CatalogFile::from_bytes(Vec::from(bytes), &full)?)
}

impl Planned {
    /// The appliances' names, in the site file's order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Site file index → id.
    pub fn ids(&self) -> &[ContentId] {
        &self.ids
    }

    /// The external sources.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The plan.
    pub fn plan(&self) -> &SitePlan {
        &self.plan
    }
}

fn kind_bytes(plan: &Plan, sources: &[Source], kind: SourceKind) -> u64 {
    plan.per_source
        .iter()
        .zip(sources)
        .filter(|(_, s)| s.kind == kind)
        .map(|(u, _)| u.bytes)
        .sum()
}

/// `fill plan --site ... --json` (docs/json.md).
#[derive(Debug, Serialize)]
pub struct SiteJson<'a> {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub deadline: String,
    /// RFC 3339: when the last byte anywhere is expected.
    pub finish: String,
    /// Money of the site plan (external bytes only; in-site copies are free).
    pub total_cost: f64,
    /// Bytes that cross an external link (each range once).
    pub external_bytes: u64,
    /// Bytes from origin sources.
    pub origin_bytes: u64,
    /// Bytes copied inside the site.
    pub peer_bytes: u64,
    /// Bytes of copies scheduled after the deadline.
    pub late_bytes: u64,
    /// Per external source.
    pub per_source: Vec<SourceLine<'a>>,
    /// Per appliance.
    pub appliances: Vec<ApplianceLine<'a>>,
    /// Each appliance planning alone, for comparison.
    pub alone: AloneLine,
}

/// A source's share.
#[derive(Debug, Serialize)]
pub struct SourceLine<'a> {
    /// Name.
    pub name: &'a str,
    /// Bytes.
    pub bytes: u64,
    /// Money.
    pub cost: f64,
}

/// An appliance's share.
#[derive(Debug, Serialize)]
pub struct ApplianceLine<'a> {
    /// Name.
    pub name: &'a str,
    /// Bytes it receives from external sources.
    pub external_bytes: u64,
    /// Bytes it receives from other appliances.
    pub peer_bytes: u64,
    /// Bytes it sends to other appliances.
    pub sent_bytes: u64,
    /// RFC 3339.
    pub finish: String,
}

/// The appliances planning alone.
#[derive(Debug, Serialize)]
pub struct AloneLine {
    /// Their money together.
    pub total_cost: f64,
    /// Their external bytes together.
    pub external_bytes: u64,
    /// Their origin bytes together.
    pub origin_bytes: u64,
}

/// The JSON form.
pub fn to_json(p: &Planned) -> SiteJson<'_> {
    let plan = &p.plan;
    SiteJson {
        start: format_rfc3339(p.horizon.start),
        deadline: format_rfc3339(p.horizon.start + p.horizon.deadline),
        finish: format_rfc3339(plan.finish),
        total_cost: plan.external.total_cost,
        external_bytes: plan.external.bytes,
        origin_bytes: kind_bytes(&plan.external, &p.sources, SourceKind::Origin),
        peer_bytes: plan.copies.iter().map(|c| c.length).sum(),
        late_bytes: plan.late_bytes,
        per_source: plan
            .external
            .per_source
            .iter()
            .zip(&p.sources)
            .map(|(u, s)| SourceLine {
                name: &s.name,
                bytes: u.bytes,
                cost: u.cost,
            })
            .collect(),
        appliances: plan
            .per_appliance
            .iter()
            .zip(&p.names)
            .map(|(u, n)| ApplianceLine {
                name: n,
                external_bytes: u.external_bytes,
                peer_bytes: u.peer_bytes,
                sent_bytes: u.sent_bytes,
                finish: format_rfc3339(u.finish),
            })
            .collect(),
        alone: AloneLine {
            total_cost: p.alone.iter().map(|a| a.total_cost).sum(),
            external_bytes: p.alone.iter().map(|a| a.bytes).sum(),
            origin_bytes: p
                .alone
                .iter()
                .map(|a| kind_bytes(a, &p.sources, SourceKind::Origin))
                .sum(),
        },
    }
}

/// The human form (`--explain` adds the comparison in words).
pub fn table(p: &Planned, explain: bool) -> String {
    let j = to_json(p);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<14} {:>12} {:>12} {:>12}  finish",
        "appliance", "external", "from peers", "sent"
    );
    for a in &j.appliances {
        let _ = writeln!(
            s,
            "{:<14} {:>12} {:>12} {:>12}  {}",
            a.name,
            format_size(a.external_bytes),
            format_size(a.peer_bytes),
            format_size(a.sent_bytes),
            a.finish
        );
    }
    let _ = writeln!(s, "\n{:<14} {:>12} {:>10}", "source", "bytes", "cost");
    for src in &j.per_source {
        let _ = writeln!(
            s,
            "{:<14} {:>12} {:>10.4}",
            src.name,
            format_size(src.bytes),
            src.cost
        );
    }
    let _ = writeln!(
        s,
        "site plan: {} cross the external links once ({} from origins) for {:.4}; {} copied inside the site; finish {}{}",
        format_size(j.external_bytes),
        format_size(j.origin_bytes),
        j.total_cost,
        format_size(j.peer_bytes),
        j.finish,
        if j.late_bytes > 0 {
            format!(
                " ({} of copies after the deadline: fetching those twice would meet it)",
                format_size(j.late_bytes)
            )
        } else {
            String::new()
        }
    );
    if explain {
        let saved = j.alone.total_cost - j.total_cost;
        let _ = writeln!(
            s,
            "\nEach appliance planning alone would fetch {} ({} from origins) for {:.4}: the site plan fetches {} less from origins and costs {:.4} less{}.",
            format_size(j.alone.external_bytes),
            format_size(j.alone.origin_bytes),
            j.alone.total_cost,
            format_size(j.alone.origin_bytes.saturating_sub(j.origin_bytes)),
            saved,
            if j.alone.total_cost > 0.0 {
                format!(" ({:.0}%)", saved * 100.0 / j.alone.total_cost)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "Each range crosses a costly link once, lands on one appliance that needs it, and is copied to the others from the next slot ({} min slots), at most {} per sender.",
            p.step / 60,
            fill_core::size::format_bps(p.peer_bps as f64)
        );
    }
    s
}
