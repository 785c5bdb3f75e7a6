//! What install delay costs: a seeded model of a region's catalog churning day by day, and
//! appliances pre-filled on their ship day and installed days later, filled by the real
//! delta ([`crate::delta::compute`]) and planner ([`crate::plan`]).
//!
//! **Catalog.** Titles, each with a fixed ladder of renditions (files). A title's launch
//! popularity is Zipf-like (`1 / rank^s`, its rank drawn uniformly among `titles`), and
//! decays with a half-life towards a floor; its size is log-normal and split across the
//! ladder. Each day brings new titles; files are re-encoded (a new id, the same size) at a
//! daily rate; titles past their minimum license age retire at a daily rate. The region's
//! target on day `d` is every file of every title alive on `d`, weighted by popularity
//! (the control plane sizes it to the appliance class; [`Model::peak_target_bytes`] tells
//! when it does not fit).
//!
//! **An install.** An appliance is pre-filled on ship day `S` with the target of that day,
//! installed on day `S + D` at `install_time`, and from then fills towards the target of
//! its install day inside the nightly window, under its ingress cap, from the sources that
//! hold each file (peers and tiers hold titles by launch popularity; an origin holds
//! everything): the real delta, classes, and one plan over the windows until everything is
//! there. Days are counted on the appliance's local calendar, the install day being day 1:
//! `days_to_complete` is the day its last byte arrives, `days_to_live` the day the held
//! share of the target's weight reaches the offload threshold (0 when it already does at
//! install, or when there is nothing to fetch).
//!
//! **Laws** (tested): zero churn gives an empty delta at any delay; for one seed, bytes and
//! cost never decrease with the delay (the delay-`D2` delta holds every file of the
//! delay-`D1` one or a newer encode of it, of the same size and holders; a minimum cost never
//! decreases when demand grows); every file on a free peer means no origin bytes; the same
//! seed gives the same results. Pure: no I/O, no clock, randomness from the seed only.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ContentId;
use crate::catalog::{Catalog, CatalogBuilder, CatalogView};
use crate::delta::{self, Inventory};
use crate::plan::{self, Problem, Strategy};
use crate::rng::SplitMix64;
use crate::source::{Source, SourceKind, Window, parse_bandwidth, parse_tz};

/// Monday 2027-01-04 00:00 UTC: day 0 of every simulation (times are synthetic).
pub const EPOCH: i64 = 1_798_675_200;

/// A simulation's configuration, as written (TOML). Every field has a default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// The currency of every price in the model (`cost_per_gib`), a label for people.
    pub currency: String,
    /// The region's catalog and its churn.
    pub catalog: CatalogConfig,
    /// The appliance class.
    pub appliance: ApplianceConfig,
    /// How burn-in fills run.
    pub fill: FillConfig,
    /// The sources an appliance fills from.
    pub source: Vec<SourceConfig>,
    /// Fleet mode.
    pub fleet: FleetConfig,
}

/// `[catalog]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Titles alive on day 0.
    pub titles: u32,
    /// Each rendition's share of a title's bytes (the ladder; one file each).
    pub rendition_bytes: Vec<f64>,
    /// Each rendition's share of a title's plays.
    pub rendition_plays: Vec<f64>,
    /// Median bytes of a title (all renditions), e.g. `4.5GB`.
    pub title_size_median: String,
    /// Log-normal σ of title sizes.
    pub title_size_sigma: f64,
    /// Zipf exponent of launch popularity over title rank.
    pub zipf_exponent: f64,
    /// Ages of the titles alive on day 0 are uniform up to this many days.
    pub max_age_days: u32,
    /// New titles a day (the fraction is drawn: 2.5 gives 2 or 3).
    pub new_titles_per_day: f64,
    /// Popularity half-life in days (0: no decay).
    pub half_life_days: f64,
    /// Share of launch popularity a title keeps however old (the long tail).
    pub popularity_floor: f64,
    /// Chance a file is re-encoded on a given day (a new id, the same size).
    pub reencode_per_day: f64,
    /// Chance a title past `license_min_days` retires on a given day.
    pub retire_per_day: f64,
    /// Titles never retire younger than this.
    pub license_min_days: u32,
}

/// `[appliance]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApplianceConfig {
    /// Storage, e.g. `120TB`.
    pub capacity: String,
    /// Ingress cap, e.g. `1.2Gbps`.
    pub ingress: String,
}

/// `[fill]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FillConfig {
    /// Daily fill window, local time.
    pub window: String,
    /// Local time minus UTC, e.g. `+01:00`.
    pub tz: String,
    /// Local time of day installs finish, `HH:MM`.
    pub install_time: String,
    /// Offload share of the turn-up checks.
    pub offload_threshold: f64,
    /// Days the plan may use (extended when they are not enough).
    pub deadline_days: u32,
    /// `optimal` or `escalation`.
    pub strategy: Strategy,
}

/// One `[[source]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name.
    pub name: String,
    /// `peer`, `tier` or `origin`.
    pub kind: SourceKind,
    /// Money per 2^30 bytes.
    pub cost_per_gib: f64,
    /// Bits per second, e.g. `10Gbps`.
    pub bandwidth: String,
    /// Share of titles it holds, the most popular at launch first (1: all of them).
    #[serde(default = "one")]
    pub holds: f64,
}

fn one() -> f64 {
    1.0
}

/// `[fleet]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Appliances.
    pub appliances: u32,
    /// Appliances per site (a site's appliances ship and install together).
    pub per_site: u32,
    /// Sites ship on a day drawn uniformly in `0..=ship_spread_days`.
    pub ship_spread_days: u32,
    /// Shortest install delay, days.
    pub delay_min: u32,
    /// Longest install delay, days.
    pub delay_max: u32,
    /// What one appliance can send to another in its site.
    pub peer_bandwidth: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            currency: "USD".into(),
            catalog: CatalogConfig::default(),
            appliance: ApplianceConfig::default(),
            fill: FillConfig::default(),
            source: vec![
                SourceConfig {
                    name: "site-peers".into(),
                    kind: SourceKind::Peer,
                    cost_per_gib: 0.0,
                    bandwidth: "10Gbps".into(),
                    holds: 0.5,
                },
                SourceConfig {
                    name: "regional-tier".into(),
                    kind: SourceKind::Tier,
                    cost_per_gib: 0.005,
                    bandwidth: "2Gbps".into(),
                    holds: 0.9,
                },
                SourceConfig {
                    name: "origin".into(),
                    kind: SourceKind::Origin,
                    cost_per_gib: 0.02,
                    bandwidth: "10Gbps".into(),
                    holds: 1.0,
                },
            ],
            fleet: FleetConfig::default(),
        }
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            titles: 20_000,
            rendition_bytes: vec![0.40, 0.27, 0.17, 0.10, 0.06],
            rendition_plays: vec![0.35, 0.30, 0.20, 0.10, 0.05],
            title_size_median: "4GB".into(),
            title_size_sigma: 0.5,
            zipf_exponent: 0.8,
            max_age_days: 1095,
            new_titles_per_day: 40.0,
            half_life_days: 14.0,
            popularity_floor: 0.1,
            reencode_per_day: 0.008,
            retire_per_day: 0.001,
            license_min_days: 180,
        }
    }
}

impl Default for ApplianceConfig {
    fn default() -> Self {
        Self {
            capacity: "120TB".into(),
            ingress: "1.2Gbps".into(),
        }
    }
}

impl Default for FillConfig {
    fn default() -> Self {
        Self {
            window: "02:00-14:00".into(),
            tz: "+00:00".into(),
            install_time: "10:00".into(),
            offload_threshold: 0.9,
            deadline_days: 30,
            strategy: Strategy::Optimal,
        }
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            appliances: 1000,
            per_site: 4,
            ship_spread_days: 6,
            delay_min: 0,
            delay_max: 60,
            peer_bandwidth: "10Gbps".into(),
        }
    }
}

/// What is wrong with a configuration, or a run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A value is out of range or malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, e.g. `catalog.titles`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The real code refused a generated input (a bug in the model).
    #[error("{0}")]
    Run(String),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SimError {
    SimError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A validated model.
#[derive(Debug, Clone)]
pub struct Model {
    /// The configuration it came from.
    pub config: SimConfig,
    title_median: f64,
    /// Appliance capacity, bytes.
    pub capacity: u64,
    /// Appliance ingress, bits per second.
    pub ingress_bps: u64,
    /// The sources, their windows set to the fill window.
    pub sources: Vec<Source>,
    holds: Vec<f64>,
    tz_min: i16,
    install_secs: i64,
    peer_bps: u64,
}

impl SimConfig {
    /// Checks every field; errors name the field.
    pub fn validate(self) -> Result<Model, SimError> {
        if self.currency.is_empty()
            || self.currency.chars().count() > 8
            || self
                .currency
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid(
                "currency",
                "1 to 8 characters without spaces, like USD, EUR or $",
            ));
        }
        let c = &self.catalog;
        if !(1..=2_000_000).contains(&c.titles) {
            return Err(invalid("catalog.titles", "must be between 1 and 2000000"));
        }
        let ladder = c.rendition_bytes.len();
        if ladder == 0 || ladder > 32 || c.rendition_plays.len() != ladder {
            return Err(invalid(
                "catalog.rendition_bytes",
                "1 to 32 shares, as many as catalog.rendition_plays",
            ));
        }
        for (field, shares) in [
            ("catalog.rendition_bytes", &c.rendition_bytes),
            ("catalog.rendition_plays", &c.rendition_plays),
        ] {
            if shares.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(invalid(field, "every share must be a number > 0"));
            }
        }
        let title_median = crate::size::parse_size(&c.title_size_median)
            .map_err(|e| invalid("catalog.title_size_median", e.to_string()))?
            as f64;
        if title_median < 1.0 {
            return Err(invalid("catalog.title_size_median", "must be > 0"));
        }
        let unit = |field, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(invalid(field, format!("{v} is not between 0 and 1")))
            }
        };
        unit("catalog.popularity_floor", c.popularity_floor)?;
        unit("catalog.reencode_per_day", c.reencode_per_day)?;
        unit("catalog.retire_per_day", c.retire_per_day)?;
        unit("fill.offload_threshold", self.fill.offload_threshold)?;
        for (field, v, max) in [
            ("catalog.title_size_sigma", c.title_size_sigma, 4.0),
            ("catalog.zipf_exponent", c.zipf_exponent, 4.0),
            (
                "catalog.new_titles_per_day",
                c.new_titles_per_day,
                100_000.0,
            ),
            ("catalog.half_life_days", c.half_life_days, 100_000.0),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return Err(invalid(field, format!("{v} is not between 0 and {max}")));
            }
        }
        let capacity = crate::size::parse_size(&self.appliance.capacity)
            .map_err(|e| invalid("appliance.capacity", e.to_string()))?;
        let ingress_bps = parse_bandwidth(&self.appliance.ingress)
            .map_err(|e| invalid("appliance.ingress", e.to_string()))?;
        let tz_min = parse_tz(&self.fill.tz).map_err(|e| invalid("fill.tz", e.to_string()))?;
        let window = Window::parse(&self.fill.window, crate::source::Zone::Offset(tz_min))
            .map_err(|e| invalid("fill.window", e.to_string()))?;
        let install_secs = parse_hhmm(&self.fill.install_time).ok_or_else(|| {
            invalid(
                "fill.install_time",
                format!("{:?} is not HH:MM", self.fill.install_time),
            )
        })?;
        if !(1..=400).contains(&self.fill.deadline_days) {
            return Err(invalid("fill.deadline_days", "must be between 1 and 400"));
        }
        if self.source.is_empty() {
            return Err(invalid("source", "at least one [[source]]"));
        }
        let mut sources = Vec::new();
        let mut holds = Vec::new();
        for s in &self.source {
            if sources.iter().any(|o: &Source| o.name == s.name) || s.name.is_empty() {
                return Err(invalid(
                    "source.name",
                    format!("{:?} is empty or used twice", s.name),
                ));
            }
            if !(s.cost_per_gib.is_finite() && s.cost_per_gib >= 0.0) {
                return Err(invalid("source.cost_per_gib", "must be a number >= 0"));
            }
            if !(s.holds > 0.0 && s.holds <= 1.0) {
                return Err(invalid(
                    "source.holds",
                    format!("{} is not in (0, 1]", s.holds),
                ));
            }
            sources.push(Source {
                name: s.name.clone(),
                kind: s.kind,
                url: String::new(),
                cost_per_gib: s.cost_per_gib,
                bandwidth_bps: parse_bandwidth(&s.bandwidth)
                    .map_err(|e| invalid("source.bandwidth", e.to_string()))?,
                window: Some(window.clone()),
                max_connections: 1,
            });
            holds.push(s.holds);
        }
        if !holds.iter().any(|&h| h >= 1.0) {
            return Err(invalid(
                "source.holds",
                "some source must hold every title (holds = 1), as an origin does",
            ));
        }
        let f = &self.fleet;
        if f.appliances == 0 || f.per_site == 0 || f.delay_min > f.delay_max {
            return Err(invalid(
                "fleet",
                "appliances and per_site must be > 0, delay_min <= delay_max",
            ));
        }
        if f.delay_max > 3650 || f.ship_spread_days > 3650 {
            return Err(invalid("fleet", "delays and spreads are at most 3650 days"));
        }
        let peer_bps = parse_bandwidth(&f.peer_bandwidth)
            .map_err(|e| invalid("fleet.peer_bandwidth", e.to_string()))?;
        Ok(Model {
            title_median,
            capacity,
            ingress_bps,
            sources,
            holds,
            tz_min,
            install_secs,
            peer_bps,
            config: self,
        })
    }
}

fn parse_hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 3600 + m * 60)
}

/// One title of the universe.
#[derive(Debug, Clone)]
struct Title {
    born: i32,
    /// First day it is gone (`i32::MAX`: never within the simulation).
    retired: i32,
    /// Launch popularity.
    p0: f64,
    /// Its launch rank as a share of the titles, in [0, 1): what peers and tiers hold by.
    rank: f64,
    /// Bytes of all its renditions.
    bytes: f64,
}

/// Every title and every re-encode from day 0 to `last_day`: the region's whole history,
/// drawn once from the seed.
#[derive(Debug, Clone)]
pub struct Universe {
    titles: Vec<Title>,
    /// Per file (title × ladder + rendition): days it is re-encoded, ascending.
    reencodes: Vec<Vec<i32>>,
    ladder: usize,
    /// The last day the universe covers.
    pub last_day: i32,
}

impl Model {
    /// Draws the universe up to `last_day`. Every title and every file draws from its own
    /// stream of the seed, so a longer history starts with the shorter one: the same seed
    /// gives the same day `d` whatever the last day simulated.
    pub fn universe(&self, last_day: i32) -> Universe {
        let c = &self.config.catalog;
        let seed = self.config.seed;
        let ladder = c.rendition_bytes.len();
        let mut titles = Vec::new();
        let draw_title = |rng: &mut SplitMix64, born: i32| {
            let u = rng.unit();
            let rank = 1.0 + (u * f64::from(c.titles)).floor();
            let p0 = rank.powf(-c.zipf_exponent);
            let bytes = self.title_median * (c.title_size_sigma * normal(rng)).exp();
            // Memoryless: from the later of day 0 and the license's end.
            let from = (born + c.license_min_days as i32).max(0);
            let retired = from.saturating_add(geometric(rng, c.retire_per_day));
            Title {
                born,
                retired,
                p0,
                rank: u,
                bytes,
            }
        };
        for i in 0..c.titles {
            let mut rng = stream(seed, 1, u64::from(i));
            let born = -(rng.below(u64::from(c.max_age_days) + 1) as i32);
            titles.push(draw_title(&mut rng, born));
        }
        for day in 1..=last_day.max(0) {
            let mut rng = stream(seed, 2, day as u64);
            let whole = c.new_titles_per_day.floor();
            let n = whole as u64 + u64::from(rng.unit() < c.new_titles_per_day - whole);
            for _ in 0..n {
                titles.push(draw_title(&mut rng, day));
            }
        }
        let mut reencodes = Vec::with_capacity(titles.len() * ladder);
        for (t, title) in titles.iter().enumerate() {
            for r in 0..ladder {
                let mut rng = stream(seed, 3, (t * ladder + r) as u64);
                let mut days = Vec::new();
                let mut d = title.born.max(0);
                loop {
                    d = d.saturating_add(geometric(&mut rng, c.reencode_per_day));
                    if d > last_day {
                        break;
                    }
                    days.push(d);
                }
                reencodes.push(days);
            }
        }
        Universe {
            titles,
            reencodes,
            ladder,
            last_day,
        }
    }

    /// The region's target catalog on `day`, and for each of its entries (in catalog order)
    /// the title it belongs to.
    pub fn target(&self, u: &Universe, day: i32) -> Result<(Vec<u8>, Vec<u32>), SimError> {
        let c = &self.config.catalog;
        let mut recs: Vec<([u8; 32], u64, f64, u32, u32)> = Vec::new();
        for (t, title) in u.titles.iter().enumerate() {
            if title.born > day || title.retired <= day {
                continue;
            }
            let age = f64::from(day - title.born);
            let decay = if c.half_life_days > 0.0 {
                (-age / c.half_life_days * std::f64::consts::LN_2).exp()
            } else {
                1.0
            };
            let pop = title.p0 * (c.popularity_floor + (1.0 - c.popularity_floor) * decay);
            for r in 0..u.ladder {
                let file = t * u.ladder + r;
                let version = u.reencodes[file].partition_point(|&d| d <= day) as u32;
                let size = (title.bytes * c.rendition_bytes[r]).round().max(1.0) as u64;
                recs.push((
                    file_id(self.config.seed, file as u64, version),
                    size,
                    pop * c.rendition_plays[r],
                    t as u32,
                    (r as u32) << 24 | version.min(0xff_ffff),
                ));
            }
        }
        recs.sort_unstable_by_key(|r| r.0);
        let mut b = CatalogBuilder::with_capacity(recs.len(), recs.len() * 20);
        let mut name = String::new();
        for (id, size, weight, t, rv) in &recs {
            use std::fmt::Write as _;
            name.clear();
            let _ = write!(name, "t{t:07}/r{}.v{}.mp4", rv >> 24, rv & 0xff_ffff);
            b.push(ContentId::from_bytes(*id), *size, *weight, &name)
                .map_err(|e| SimError::Run(e.to_string()))?;
        }
        let bytes = b.finish().map_err(|e| SimError::Run(e.to_string()))?;
        Ok((bytes, recs.iter().map(|r| r.3).collect()))
    }

    /// The largest target (bytes) from `first` to `last` day: above the capacity, the
    /// appliance cannot hold the whole target and the laws need not hold.
    pub fn peak_target_bytes(&self, u: &Universe, first: i32, last: i32) -> u64 {
        let c = &self.config.catalog;
        let size = |t: &Title| -> u64 {
            c.rendition_bytes
                .iter()
                .map(|s| (t.bytes * s).round().max(1.0) as u64)
                .sum()
        };
        (first..=last)
            .step_by(((last - first) / 64).max(1) as usize)
            .chain([last])
            .map(|d| {
                u.titles
                    .iter()
                    .filter(|t| t.born <= d && t.retired > d)
                    .map(size)
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0)
    }

    /// Unix seconds of local midnight starting `day`.
    fn local_midnight(&self, day: i32) -> i64 {
        EPOCH + i64::from(day) * 86_400 - i64::from(self.tz_min) * 60
    }

    /// The local calendar day of unix time `t`.
    fn local_day(&self, t: i64) -> i64 {
        (t - EPOCH + i64::from(self.tz_min) * 60).div_euclid(86_400)
    }
}

/// A target (or a pre-fill: the target of a ship day), validated once and shared.
#[derive(Debug)]
pub struct Day {
    /// The day.
    pub day: i32,
    bytes: Vec<u8>,
    titles: Vec<u32>,
}

impl Day {
    /// Builds the target of `day`.
    pub fn new(m: &Model, u: &Universe, day: i32) -> Result<Self, SimError> {
        let (bytes, titles) = m.target(u, day)?;
        let d = Self { day, bytes, titles };
        d.catalog()?;
        Ok(d)
    }

    /// Its catalog.
    pub fn catalog(&self) -> Result<Catalog<'_>, SimError> {
        CatalogView::open(&self.bytes)
            .and_then(|v| v.validate())
            .map_err(|e| SimError::Run(e.to_string()))
    }

    /// Files.
    pub fn files(&self) -> usize {
        self.titles.len()
    }
}

/// What one install costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Day the appliance shipped, pre-filled.
    pub ship_day: i32,
    /// Days from shipping to install.
    pub delay_days: u32,
    /// Bytes it received to reach the install day's target (from sources and, with site
    /// planning, from the appliances installed with it).
    pub bytes_fetched: u64,
    /// From peers (live appliances of the site, a source).
    pub bytes_peer: u64,
    /// From tiers.
    pub bytes_tier: u64,
    /// From the origin.
    pub bytes_origin: u64,
    /// Copied from an appliance installed with it (site planning only).
    pub bytes_in_site: u64,
    /// Money.
    pub cost: f64,
    /// Local day (the install day is 1) the offload threshold is reached; 0 when it holds
    /// at install.
    pub days_to_live: u32,
    /// Local day the last byte arrives; 0 when there is nothing to fetch.
    pub days_to_complete: u32,
    /// Held share of the target's weight at install.
    pub offload_at_install: f64,
}

/// The delta of an install and its planning problem, before planning.
struct Prepared<'a> {
    target: Catalog<'a>,
    delta: delta::Delta,
    classes: Vec<Vec<usize>>,
    demands: Vec<plan::Demand>,
    start: i64,
    outcome: Outcome,
}

fn prepare<'a>(
    m: &Model,
    u: &Universe,
    held: &Day,
    target: &'a Day,
) -> Result<Prepared<'a>, SimError> {
    let tc = target.catalog()?;
    let inv = Inventory {
        complete: held.catalog()?,
        partial: &[],
    };
    let d = delta::compute(&tc, &inv, m.capacity).map_err(|e| SimError::Run(e.to_string()))?;
    let ranks: Vec<f64> = target
        .titles
        .iter()
        .map(|&t| u.titles[t as usize].rank)
        .collect();
    let (classes, demands) = plan::classify(
        m.sources.len(),
        d.fetch.iter().map(|f| (f.entry, f.offset, f.length)),
        |s, entry| ranks[entry as usize] < m.holds[s],
    );
    let outcome = Outcome {
        ship_day: held.day,
        delay_days: (target.day - held.day).max(0) as u32,
        bytes_fetched: 0,
        bytes_peer: 0,
        bytes_tier: 0,
        bytes_origin: 0,
        bytes_in_site: 0,
        cost: 0.0,
        days_to_live: 0,
        days_to_complete: 0,
        offload_at_install: d.offload_before,
    };
    Ok(Prepared {
        target: tc,
        delta: d,
        classes,
        demands,
        start: m.local_midnight(target.day) + m.install_secs,
        outcome,
    })
}

impl Prepared<'_> {
    fn problem<'b>(&'b self, m: &'b Model) -> Problem<'b> {
        Problem {
            sources: &m.sources,
            classes: &self.classes,
            demands: &self.demands,
            start: self.start,
            horizon: i64::from(m.config.fill.deadline_days) * 86_400,
            ingress_bps: Some(m.ingress_bps),
        }
    }

    /// The local day (install day = 1) of unix time `t`, an end of a slot.
    fn day_of(&self, m: &Model, t: i64) -> u32 {
        (m.local_day(t - 1) - m.local_day(self.start) + 1).max(1) as u32
    }

    /// The day the offload threshold is reached, given when each fetched file is whole
    /// (`(unix time, target entry)`, any order).
    fn live_day(&self, m: &Model, mut done_at: Vec<(i64, u32)>, complete: u32) -> u32 {
        done_at.sort_unstable();
        let demand = crate::lifecycle::Demand::of(&self.target);
        let total = demand.total();
        let need = m.config.fill.offload_threshold * total;
        let mut held = self.delta.offload_before * total;
        if total <= 0.0 || held >= need {
            return 0;
        }
        for (t, e) in done_at {
            let e = e as usize;
            held += demand.weight(self.target.size(e), self.target.weight(e));
            if held >= need * (1.0 - 1e-12) {
                return self.day_of(m, t);
            }
        }
        complete
    }

    fn add_bytes(out: &mut Outcome, m: &Model, per_source: &[plan::SourceUse], share: u64) {
        for (u, s) in per_source.iter().zip(&m.sources) {
            let b = u.bytes / share;
            match s.kind {
                SourceKind::Peer => out.bytes_peer += b,
                SourceKind::Tier => out.bytes_tier += b,
                SourceKind::Origin => out.bytes_origin += b,
            }
        }
    }
}

/// When each file is whole: the latest end among its pieces' slots.
fn whole_at(pieces: impl Iterator<Item = (u32, i64)>) -> Vec<(i64, u32)> {
    let mut latest: std::collections::HashMap<u32, i64> = std::collections::HashMap::new();
    for (entry, end) in pieces {
        let t = latest.entry(entry).or_insert(end);
        *t = (*t).max(end);
    }
    latest.into_iter().map(|(e, t)| (t, e)).collect()
}

/// Fills one appliance pre-filled with `held` (its ship day's target), installed on
/// `target.day`: the real delta and plan.
pub fn install(m: &Model, u: &Universe, held: &Day, target: &Day) -> Result<Outcome, SimError> {
    let p = prepare(m, u, held, target)?;
    let mut out = p.outcome.clone();
    if p.demands.is_empty() {
        return Ok(out);
    }
    let plan = plan::plan(&p.problem(m), m.config.fill.strategy)
        .map_err(|e| SimError::Run(e.to_string()))?;
    Prepared::add_bytes(&mut out, m, &plan.per_source, 1);
    out.bytes_fetched = plan.bytes;
    out.cost = plan.total_cost;
    out.days_to_complete = p.day_of(m, plan.finish);
    let done = whole_at(plan.assignments.iter().map(|a| {
        (
            p.demands[a.demand as usize].entry,
            plan.slots[a.slot as usize].end,
        )
    }));
    out.days_to_live = p.live_day(m, done, out.days_to_complete);
    Ok(out)
}

/// Fills `n` appliances of one site, shipped and installed together, with one site plan:
/// each range crosses the site's link once and the others copy it inside the site. The
/// outcome is per appliance: bytes and money shared equally, days those of the last one.
pub fn install_site(
    m: &Model,
    u: &Universe,
    held: &Day,
    target: &Day,
    n: u32,
) -> Result<Outcome, SimError> {
    let p = prepare(m, u, held, target)?;
    let mut out = p.outcome.clone();
    if p.demands.is_empty() {
        return Ok(out);
    }
    let apps: Vec<plan::site::SiteAppliance<'_>> = (0..n.max(1))
        .map(|_| plan::site::SiteAppliance {
            demands: &p.demands,
            holds: &[],
            ingress_bps: Some(m.ingress_bps),
        })
        .collect();
    let pr = p.problem(m);
    let sp = plan::site::SiteProblem {
        sources: pr.sources,
        classes: pr.classes,
        appliances: &apps,
        start: pr.start,
        horizon: pr.horizon,
        uplink_bps: None,
        peer_bps: m.peer_bps,
        step: 3600,
    };
    let plan = plan::site::plan_site(&sp).map_err(|e| SimError::Run(e.to_string()))?;
    let n = u64::from(n.max(1));
    Prepared::add_bytes(&mut out, m, &plan.external.per_source, n);
    out.bytes_in_site = plan.per_appliance.iter().map(|a| a.peer_bytes).sum::<u64>() / n;
    out.bytes_fetched = out.bytes_peer + out.bytes_tier + out.bytes_origin + out.bytes_in_site;
    out.cost = plan.external.total_cost / n as f64;
    out.days_to_complete = plan
        .per_appliance
        .iter()
        .map(|a| p.day_of(m, a.finish))
        .max()
        .unwrap_or(0);
    let mut live = 0;
    for a in 0..n as u32 {
        let pieces = plan
            .landings
            .iter()
            .filter(|l| l.appliance == a)
            .map(|l| (l.entry, plan.slots[l.slot as usize].end))
            .chain(
                plan.copies
                    .iter()
                    .filter(|c| c.to == a)
                    .map(|c| (c.entry, plan.slots[c.slot as usize].end)),
            );
        live = live.max(p.live_day(m, whole_at(pieces), out.days_to_complete));
    }
    out.days_to_live = live;
    Ok(out)
}

/// One appliance of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Its number.
    pub appliance: u32,
    /// Its site.
    pub site: u32,
    /// Appliances in its site.
    pub site_size: u32,
    /// Day it ships.
    pub ship_day: i32,
    /// Days until it is installed.
    pub delay_days: u32,
}

/// Draws a fleet: sites of `per_site` appliances (the last may be smaller), each shipping
/// on a day in `0..=ship_spread_days` and installed after a delay drawn uniformly from
/// `delay_min..=delay_max`, or from `delays` (real delays, e.g. from a CSV) when given.
pub fn draw_fleet(m: &Model, delays: Option<&[u32]>) -> Vec<Member> {
    let f = &m.config.fleet;
    let mut rng = SplitMix64(m.config.seed ^ 0xf1ee_7000);
    let mut out = Vec::with_capacity(f.appliances as usize);
    let sites = f.appliances.div_ceil(f.per_site);
    for site in 0..sites {
        let ship = rng.below(u64::from(f.ship_spread_days) + 1) as i32;
        let delay = match delays {
            Some(list) if !list.is_empty() => list[rng.below(list.len() as u64) as usize],
            _ => f.delay_min + rng.below(u64::from(f.delay_max - f.delay_min) + 1) as u32,
        };
        let first = site * f.per_site;
        let size = f.per_site.min(f.appliances - first);
        for a in first..first + size {
            out.push(Member {
                appliance: a,
                site,
                site_size: size,
                ship_day: ship,
                delay_days: delay,
            });
        }
    }
    out
}

/// One appliance's outcome in a fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetRow {
    /// Who.
    pub member: Member,
    /// Planned by itself.
    pub alone: Outcome,
    /// Planned with its site (when asked for).
    pub site: Option<Outcome>,
}

/// A distinct fleet case: ship day, delay, site size (0 without site plans).
type Case = (i32, u32, u32);

/// Runs a fleet. Appliances with the same ship day and delay have the same outcome (sites of
/// the same size likewise), so each distinct case runs once; cases run in parallel, grouped
/// by install day so each target is built once.
pub fn fleet(
    m: &Model,
    members: &[Member],
    site_planning: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<FleetRow>, SimError> {
    use std::collections::{BTreeMap, BTreeSet};
    let cases: BTreeSet<Case> = members
        .iter()
        .map(|a| {
            (
                a.ship_day,
                a.delay_days,
                if site_planning { a.site_size } else { 0 },
            )
        })
        .collect();
    let last = cases.iter().map(|c| c.0 + c.1 as i32).max().unwrap_or(0);
    let u = m.universe(last);
    let ship_days: BTreeSet<i32> = cases.iter().map(|c| c.0).collect();
    let held: BTreeMap<i32, Day> = ship_days
        .par_iter()
        .map(|&d| Day::new(m, &u, d).map(|day| (d, day)))
        .collect::<Result<_, _>>()?;
    let mut by_install: BTreeMap<i32, Vec<Case>> = BTreeMap::new();
    for &c in &cases {
        by_install.entry(c.0 + c.1 as i32).or_default().push(c);
    }
    let groups: Vec<(i32, Vec<Case>)> = by_install.into_iter().collect();
    type Results = Vec<(Case, (Outcome, Option<Outcome>))>;
    let results: Vec<Results> = groups
        .par_iter()
        .map(|(day, group)| -> Result<Results, SimError> {
            let target = Day::new(m, &u, *day)?;
            group
                .par_iter()
                .map(|&(ship, delay, n)| {
                    let h = held
                        .get(&ship)
                        .ok_or_else(|| SimError::Run(format!("no pre-fill for day {ship}")))?;
                    let alone = install(m, &u, h, &target)?;
                    let site = if n > 0 {
                        Some(install_site(m, &u, h, &target, n)?)
                    } else {
                        None
                    };
                    progress(1);
                    Ok(((ship, delay, n), (alone, site)))
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let table: BTreeMap<Case, (Outcome, Option<Outcome>)> = results.into_iter().flatten().collect();
    members
        .iter()
        .map(|a| {
            let key = (
                a.ship_day,
                a.delay_days,
                if site_planning { a.site_size } else { 0 },
            );
            let (alone, site) = table
                .get(&key)
                .cloned()
                .ok_or_else(|| SimError::Run(format!("no outcome for case {key:?}")))?;
            Ok(FleetRow {
                member: *a,
                alone,
                site,
            })
        })
        .collect()
}

/// Distinct cases a fleet run computes (for progress bars).
pub fn fleet_cases(members: &[Member], site_planning: bool) -> u64 {
    members
        .iter()
        .map(|a| {
            (
                a.ship_day,
                a.delay_days,
                if site_planning { a.site_size } else { 0 },
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64
}

/// An independent stream of the seed for one thing (`what` says which kind, `index` which).
fn stream(seed: u64, what: u64, index: u64) -> SplitMix64 {
    let mut mix = SplitMix64(seed ^ what.wrapping_mul(0xA24B_AED4_963E_E407));
    let base = mix.next_u64();
    let mut r = SplitMix64(base ^ index.wrapping_mul(0x9FB2_1C65_1E98_DF25));
    r.next_u64();
    r
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.unit().max(f64::MIN_POSITIVE);
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Days until an event of daily chance `p` (at least 1; `i32::MAX` when `p` is 0).
fn geometric(rng: &mut SplitMix64, p: f64) -> i32 {
    if p <= 0.0 {
        return i32::MAX;
    }
    if p >= 1.0 {
        return 1;
    }
    let u = rng.unit().max(f64::MIN_POSITIVE);
    let d = (u.ln() / (1.0 - p).ln()).ceil();
    if d >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        (d as i32).max(1)
    }
}

/// A file's id in the simulation: 32 bytes from (seed, file, version).
fn file_id(seed: u64, file: u64, version: u32) -> [u8; 32] {
    let mut r = SplitMix64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ file.rotate_left(20) ^ u64::from(version),
    );
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&r.next_u64().to_le_bytes());
    }
    out
}

/// The model's churn: the bytes an appliance pre-filled on day 0 lacks of the target of
/// day `days`, per day, as a share of what it holds (its day-0 target, up to its capacity).
/// What each further day an appliance waits uninstalled adds, by the model, for an
/// appliance holding `h` bytes: `h` times this.
pub fn churn_per_day(m: &Model, days: u32) -> Result<f64, SimError> {
    let days = days.max(1);
    let u = m.universe(days as i32);
    let held = Day::new(m, &u, 0)?;
    let target = Day::new(m, &u, days as i32)?;
    let inv = Inventory {
        complete: held.catalog()?,
        partial: &[],
    };
    let d = delta::compute(&target.catalog()?, &inv, m.capacity)
        .map_err(|e| SimError::Run(e.to_string()))?;
    let holds = held.catalog()?.total_size().min(m.capacity).max(1);
    Ok(d.bytes_to_fetch as f64 / f64::from(days) / holds as f64)
}

/// One row per delay: one appliance shipped on day 0, installed `delay` days later.
pub fn sweep(
    m: &Model,
    delays: &[u32],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Outcome>, SimError> {
    let last = delays.iter().copied().max().unwrap_or(0) as i32;
    let u = m.universe(last);
    let held = Day::new(m, &u, 0)?;
    delays
        .par_iter()
        .map(|&delay| {
            let r = if delay == 0 {
                install(m, &u, &held, &held)
            } else {
                let target = Day::new(m, &u, delay as i32)?;
                install(m, &u, &held, &target)
            };
            progress(1);
            r
        })
        .collect()
}
