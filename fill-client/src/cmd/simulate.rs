//! `fill simulate`: the cost of install delay, from `fill_core::sim` (the real delta and
//! planner on a seeded model), written as CSV, JSON and charts (SVG and PNG, plotters).

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use fill_core::sim::{self, FleetRow, Model, Outcome, SimConfig};
use fill_core::size::format_size;
use serde::Serialize;

use crate::cli::SimulateArgs;
use crate::common::{Meter, Unit};

/// The default model, as shipped in examples/simulate/default.toml.
pub const DEFAULT_CONFIG: &str = include_str!("../../../examples/simulate/default.toml");

/// The font the PNG charts are drawn with (a subset of DejaVu Sans; license beside it).
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");

/// Reads real install delays: a CSV with a `delay_days` column (whole days, >= 0).
fn read_delays_csv(path: &Path) -> Result<Vec<u32>> {
    let mut r = csv::Reader::from_path(path)
        .with_context(|| format!("cannot read delays {}", path.display()))?;
    let col = r
        .headers()
        .with_context(|| format!("delays {}", path.display()))?
        .iter()
        .position(|h| h.trim() == "delay_days")
        .with_context(|| format!("delays {}: no `delay_days` column", path.display()))?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("delays {}: row {}", path.display(), i + 2))?;
        let v = rec.get(col).unwrap_or("").trim();
        let d: u32 = v.parse().map_err(|_| {
            anyhow::anyhow!(
                "delays {}: row {}: {v:?} is not a whole number of days",
                path.display(),
                i + 2
            )
        })?;
        if d > 3650 {
            bail!(
                "delays {}: row {}: {d} days is more than 3650",
                path.display(),
                i + 2
            );
        }
        out.push(d);
    }
    if out.is_empty() {
        bail!("delays {}: no rows", path.display());
    }
    Ok(out)
}

/// The model: the default, or a file (every field optional), with `--seed` over it.
fn model(args: &SimulateArgs) -> Result<Model> {
    let (text, label) = match &args.config {
        Some(p) => (
            fill_store::bounded::read_text(p, fill_store::bounded::MAX_CONFIG_BYTES)
                .with_context(|| format!("cannot read config {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_CONFIG.to_owned(), "the default config".to_owned()),
    };
    let mut cfg: SimConfig = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{label}: {}", e.to_string().trim_end()))?;
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(c) = &args.currency {
        cfg.currency = c.clone();
    }
    if args.appliances.is_some() && args.delays.is_some() {
        let d = args
            .delays
            .as_ref()
            .map(|d| d.0.clone())
            .unwrap_or_default();
        cfg.fleet.delay_min = d[0];
        cfg.fleet.delay_max = *d.last().unwrap_or(&d[0]);
    }
    if let Some(n) = args.appliances {
        if n == 0 {
            bail!("--appliances must be at least 1");
        }
        cfg.fleet.appliances = n;
    }
    cfg.validate().with_context(|| label.clone())
}

/// One CSV row.
#[derive(Debug, Serialize)]
struct Row {
    #[serde(skip_serializing_if = "Option::is_none")]
    appliance: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ship_day: Option<i32>,
    delay_days: u32,
    bytes_fetched: u64,
    cost: String,
    days_to_live: u32,
    days_to_complete: u32,
    bytes_peer: u64,
    bytes_tier: u64,
    bytes_origin: u64,
    bytes_in_site: u64,
    offload_at_install: String,
}

impl Row {
    fn new(o: &Outcome, who: Option<&sim::Member>) -> Self {
        Self {
            appliance: who.map(|m| m.appliance),
            site: who.map(|m| m.site),
            ship_day: who.map(|m| m.ship_day),
            delay_days: o.delay_days,
            bytes_fetched: o.bytes_fetched,
            cost: format!("{:.4}", o.cost),
            days_to_live: o.days_to_live,
            days_to_complete: o.days_to_complete,
            bytes_peer: o.bytes_peer,
            bytes_tier: o.bytes_tier,
            bytes_origin: o.bytes_origin,
            bytes_in_site: o.bytes_in_site,
            offload_at_install: format!("{:.6}", o.offload_at_install),
        }
    }
}

/// Totals and percentiles of a fleet under one way of planning.
#[derive(Debug, Serialize)]
struct FleetSummary {
    appliances: usize,
    bytes_fetched: u64,
    bytes_peer: u64,
    bytes_tier: u64,
    bytes_origin: u64,
    bytes_in_site: u64,
    cost: f64,
    cost_p50: f64,
    cost_p90: f64,
    cost_p99: f64,
    days_to_live_p50: u32,
    days_to_live_p90: u32,
    days_to_live_p99: u32,
    days_to_complete_p50: u32,
    days_to_complete_p90: u32,
    days_to_complete_p99: u32,
}

/// The `p`-th percentile (nearest rank) of sorted values.
fn pct<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summarize<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> FleetSummary {
    let all: Vec<&Outcome> = outcomes.collect();
    let mut cost: Vec<f64> = all.iter().map(|o| o.cost).collect();
    cost.sort_by(f64::total_cmp);
    let mut live: Vec<u32> = all.iter().map(|o| o.days_to_live).collect();
    live.sort_unstable();
    let mut done: Vec<u32> = all.iter().map(|o| o.days_to_complete).collect();
    done.sort_unstable();
    let sum = |f: fn(&Outcome) -> u64| all.iter().map(|o| f(o)).sum::<u64>();
    FleetSummary {
        appliances: all.len(),
        bytes_fetched: sum(|o| o.bytes_fetched),
        bytes_peer: sum(|o| o.bytes_peer),
        bytes_tier: sum(|o| o.bytes_tier),
        bytes_origin: sum(|o| o.bytes_origin),
        bytes_in_site: sum(|o| o.bytes_in_site),
        cost: cost.iter().sum(),
        cost_p50: pct(&cost, 50.0),
        cost_p90: pct(&cost, 90.0),
        cost_p99: pct(&cost, 99.0),
        days_to_live_p50: pct(&live, 50.0),
        days_to_live_p90: pct(&live, 90.0),
        days_to_live_p99: pct(&live, 99.0),
        days_to_complete_p50: pct(&done, 50.0),
        days_to_complete_p90: pct(&done, 90.0),
        days_to_complete_p99: pct(&done, 99.0),
    }
}

/// results.json.
#[derive(Debug, Serialize)]
struct Results<'a> {
    mode: &'static str,
    config: &'a SimConfig,
    /// The largest target over the simulated days, and the capacity (above it, the laws in
    /// docs/simulation.md need not hold).
    peak_target_bytes: u64,
    capacity: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep: Option<&'a [Outcome]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<&'a [FleetRow]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet_alone: Option<FleetSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet_site: Option<FleetSummary>,
}

/// `fill simulate`.
pub fn run(args: &SimulateArgs) -> Result<crate::Outcome> {
    let m = model(args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let fleet_mode = args.appliances.is_some() || args.delays_csv.is_some();
    let (sweep_rows, fleet_rows, last_day) = if fleet_mode {
        let real = args
            .delays_csv
            .as_deref()
            .map(read_delays_csv)
            .transpose()?;
        let members = sim::draw_fleet(&m, real.as_deref());
        let site = !args.no_site_planning;
        let bar = Meter::new(
            sim::fleet_cases(&members, site),
            "simulating",
            Unit::Count("plans"),
        );
        let rows = sim::fleet(&m, &members, site, &|n| bar.inc(n))?;
        bar.finish_and_clear();
        let last = members
            .iter()
            .map(|a| a.ship_day + a.delay_days as i32)
            .max()
            .unwrap_or(0);
        (None, Some(rows), last)
    } else {
        let delays = match &args.delays {
            Some(d) => d.0.clone(),
            None => (0..=60).collect(),
        };
        let bar = Meter::new(delays.len() as u64, "simulating", Unit::Count("delays"));
        let rows = sim::sweep(&m, &delays, &|n| bar.inc(n))?;
        bar.finish_and_clear();
        let last = delays.last().copied().unwrap_or(0) as i32;
        (Some(rows), None, last)
    };
    let peak = {
        let u = m.universe(last_day);
        m.peak_target_bytes(&u, 0, last_day)
    };
    if peak > m.capacity {
        tracing::warn!(
            "the target reaches {} but the appliance holds {}: it cannot hold the whole target, \
             and bytes need not grow with the delay",
            format_size(peak),
            format_size(m.capacity)
        );
    }
    let site_on = !args.no_site_planning;
    // The outcome each row reports: with site planning when it ran.
    let chosen = |r: &FleetRow| -> Outcome { r.site.clone().unwrap_or_else(|| r.alone.clone()) };
    let results = Results {
        mode: if fleet_mode { "fleet" } else { "sweep" },
        config: &m.config,
        peak_target_bytes: peak,
        capacity: m.capacity,
        sweep: sweep_rows.as_deref(),
        fleet: fleet_rows.as_deref(),
        fleet_alone: fleet_rows
            .as_ref()
            .map(|rows| summarize(rows.iter().map(|r| &r.alone))),
        fleet_site: fleet_rows
            .as_ref()
            .filter(|_| site_on)
            .map(|rows| summarize(rows.iter().filter_map(|r| r.site.as_ref()))),
    };
    // CSV.
    let csv_path = args.out.join("results.csv");
    let mut w = csv::Writer::from_path(&csv_path)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let outcomes: Vec<Outcome> = match (&sweep_rows, &fleet_rows) {
        (Some(rows), _) => {
            for o in rows {
                w.serialize(Row::new(o, None))?;
            }
            rows.clone()
        }
        (None, Some(rows)) => {
            for r in rows {
                w.serialize(Row::new(&chosen(r), Some(&r.member)))?;
            }
            rows.iter().map(chosen).collect()
        }
        (None, None) => Vec::new(),
    };
    w.flush()?;
    // JSON.
    let json_path = args.out.join("results.json");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&json_path)
            .with_context(|| format!("cannot write {}", json_path.display()))?,
    );
    serde_json::to_writer_pretty(&mut f, &results)?;
    writeln!(f)?;
    f.flush()?;
    // Charts.
    let by_delay = per_delay_means(&outcomes);
    // With site plans, the same appliances planned alone: the comparison the charts show.
    let alone_by_delay = fleet_rows
        .as_ref()
        .filter(|_| site_on)
        .map(|rows| per_delay_means(&rows.iter().map(|r| r.alone.clone()).collect::<Vec<_>>()));
    let currency = &m.config.currency;
    charts(
        &args.out,
        &by_delay,
        alone_by_delay.as_deref(),
        fleet_mode,
        currency,
    )?;
    // Summary.
    if args.json {
        serde_json::to_writer_pretty(crate::stdout(), &results)?;
        outln!()?;
    } else if let Some(rows) = &sweep_rows {
        out!("{}", sweep_table(rows, currency))?;
        outln!("wrote {}", written(&args.out, false).join(", "))?;
    } else {
        out!(
            "{}",
            fleet_table(
                results.fleet_alone.as_ref(),
                results.fleet_site.as_ref(),
                m.config.fleet.per_site,
                currency
            )
        )?;
        outln!("{}", delay_cost_line(&outcomes, currency))?;
        outln!(
            "wrote {}",
            written(&args.out, alone_by_delay.is_some()).join(", ")
        )?;
    }
    Ok(crate::Outcome::Ok)
}

fn written(dir: &Path, saving: bool) -> Vec<String> {
    let mut files = vec!["results.csv".to_owned(), "results.json".to_owned()];
    for chart in CHARTS.iter().filter(|&&c| c != "saving" || saving) {
        files.push(format!("{chart}.svg"));
        files.push(format!("{chart}.png"));
    }
    files
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect()
}

/// The fleet's cost of install delay in one line: what these appliances' burn-in fills cost
/// (an appliance installed on its ship day fetches next to nothing), each on average, and per
/// appliance-day of delay. Given a year's real installs (`--delays-csv`), the year's cost.
fn delay_cost_line(outcomes: &[Outcome], currency: &str) -> String {
    let total: f64 = outcomes.iter().map(|o| o.cost).sum();
    let days: u64 = outcomes.iter().map(|o| u64::from(o.delay_days)).sum();
    let n = outcomes.len().max(1) as f64;
    format!(
        "install delay costs {total:.2} {currency} over these {} appliances: {:.2} {currency} each, \
         {:.2} {currency} per appliance-day of delay ({days} days in all)",
        outcomes.len(),
        total / n,
        if days > 0 { total / days as f64 } else { 0.0 },
    )
}

/// Means per delay (one value per delay in a sweep; fleet rows averaged).
#[derive(Debug, Clone, Default)]
struct Point {
    delay: u32,
    cost: f64,
    live: f64,
    complete: f64,
    peer: f64,
    tier: f64,
    origin: f64,
    in_site: f64,
}

fn per_delay_means(outcomes: &[Outcome]) -> Vec<Point> {
    let mut by: std::collections::BTreeMap<u32, (Point, u32)> = Default::default();
    for o in outcomes {
        let (p, n) = by.entry(o.delay_days).or_default();
        p.delay = o.delay_days;
        p.cost += o.cost;
        p.live += f64::from(o.days_to_live);
        p.complete += f64::from(o.days_to_complete);
        p.peer += o.bytes_peer as f64;
        p.tier += o.bytes_tier as f64;
        p.origin += o.bytes_origin as f64;
        p.in_site += o.bytes_in_site as f64;
        *n += 1;
    }
    by.into_values()
        .map(|(p, n)| {
            let n = f64::from(n);
            Point {
                delay: p.delay,
                cost: p.cost / n,
                live: p.live / n,
                complete: p.complete / n,
                peer: p.peer / n,
                tier: p.tier / n,
                origin: p.origin / n,
                in_site: p.in_site / n,
            }
        })
        .collect()
}

fn sweep_table(rows: &[Outcome], currency: &str) -> String {
    let mut out = format!(
        "{:>5}  {:>10}  {:>10}  {:>10}  {:>10}  {:>9}  {:>5}  {:>8}\n",
        "delay",
        "fetched",
        "peers",
        "tiers",
        "origin",
        format!("cost {currency}"),
        "live",
        "complete"
    );
    let show = [
        0u32, 1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90, 120, 180, 365,
    ];
    let pick: Vec<&Outcome> = if rows.len() <= 16 {
        rows.iter().collect()
    } else {
        rows.iter()
            .filter(|o| show.contains(&o.delay_days) || Some(*o) == rows.last())
            .collect()
    };
    for o in pick {
        out.push_str(&format!(
            "{:>4}d  {:>10}  {:>10}  {:>10}  {:>10}  {:>9.2}  {:>4}d  {:>7}d\n",
            o.delay_days,
            format_size(o.bytes_fetched),
            format_size(o.bytes_peer),
            format_size(o.bytes_tier),
            format_size(o.bytes_origin),
            o.cost,
            o.days_to_live,
            o.days_to_complete
        ));
    }
    out
}

fn fleet_table(
    alone: Option<&FleetSummary>,
    site: Option<&FleetSummary>,
    per_site: u32,
    currency: &str,
) -> String {
    let mut out = String::new();
    let line = |label: &str, s: &FleetSummary| {
        format!(
            "{label:<22} {:>10} fetched ({} peers, {} tiers, {} origin, {} in site)\n\
             {:<22} cost {:.2} {currency} total; per appliance p50 {:.2}, p90 {:.2}, p99 {:.2}\n\
             {:<22} days to live p50/p90/p99 {}/{}/{}; to complete {}/{}/{}\n",
            format_size(s.bytes_fetched),
            format_size(s.bytes_peer),
            format_size(s.bytes_tier),
            format_size(s.bytes_origin),
            format_size(s.bytes_in_site),
            "",
            s.cost,
            s.cost_p50,
            s.cost_p90,
            s.cost_p99,
            "",
            s.days_to_live_p50,
            s.days_to_live_p90,
            s.days_to_live_p99,
            s.days_to_complete_p50,
            s.days_to_complete_p90,
            s.days_to_complete_p99,
        )
    };
    if let Some(a) = alone {
        out.push_str(&format!("{} appliances\n", a.appliances));
        out.push_str(&line("each planned alone", a));
    }
    if let (Some(a), Some(s)) = (alone, site) {
        out.push_str(&line(&format!("site plans (of {per_site})"), s));
        if a.cost > 0.0 {
            out.push_str(&format!(
                "site-level planning saves {:.2} {currency} ({:.1}% of the cost), {} of costly transfer\n",
                a.cost - s.cost,
                (a.cost - s.cost) / a.cost * 100.0,
                format_size(
                    (a.bytes_tier + a.bytes_origin).saturating_sub(s.bytes_tier + s.bytes_origin)
                )
            ));
        }
    }
    out
}

/// The charts, each written as SVG and PNG; `saving` only for a fleet with site plans.
const CHARTS: [&str; 4] = ["cost", "days", "bytes", "saving"];

/// Writes the charts: cost (with site plans, beside planning alone), days, bytes by tier,
/// and what site plans save.
fn charts(
    dir: &Path,
    points: &[Point],
    alone: Option<&[Point]>,
    fleet: bool,
    currency: &str,
) -> Result<()> {
    use plotters::style::FontStyle;
    // Registering twice (a second run in one process) is harmless.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let what = if fleet {
        " (mean over the fleet's appliances)"
    } else {
        ""
    };
    for chart in CHARTS {
        let (title, y) = match chart {
            "cost" => (
                format!("Fill cost vs install delay{what}"),
                format!("cost ({currency})"),
            ),
            "days" => (
                format!("Days to live and to complete vs install delay{what}"),
                "days (install day = 1)".to_owned(),
            ),
            "bytes" => (
                format!("Bytes fetched by source tier vs install delay{what}"),
                "TB".to_owned(),
            ),
            _ => (
                "What planning each site's appliances together saves, per appliance".to_owned(),
                format!("saved ({currency})"),
            ),
        };
        if chart == "saving" && alone.is_none() {
            continue;
        }
        let d = Drawing {
            chart,
            title: &title,
            y_label: &y,
            points,
            alone,
        };
        let svg = dir.join(format!("{chart}.svg"));
        let png = dir.join(format!("{chart}.png"));
        d.draw(plotters::backend::SVGBackend::new(&svg, (960, 540)))
            .with_context(|| format!("cannot draw {}", svg.display()))?;
        d.draw(plotters::backend::BitMapBackend::new(&png, (960, 540)))
            .with_context(|| format!("cannot draw {}", png.display()))?;
    }
    Ok(())
}

/// A line of a chart: its label, colour, and (delay, value) points.
type Line = (String, plotters::style::RGBColor, Vec<(u32, f64)>);

/// One chart to draw.
struct Drawing<'a> {
    chart: &'a str,
    title: &'a str,
    y_label: &'a str,
    points: &'a [Point],
    alone: Option<&'a [Point]>,
}

impl Drawing<'_> {
    /// The lines of a line chart (none for the stacked bytes chart).
    fn lines(&self) -> Vec<Line> {
        use plotters::style::RGBColor;
        let blue = RGBColor(11, 92, 173);
        let green = RGBColor(26, 127, 55);
        let red = RGBColor(179, 38, 30);
        let of = |ps: &[Point], f: fn(&Point) -> f64| ps.iter().map(|p| (p.delay, f(p))).collect();
        match (self.chart, self.alone) {
            ("cost", None) => vec![(
                "cost of the burn-in fill".into(),
                blue,
                of(self.points, |p| p.cost),
            )],
            ("cost", Some(alone)) => vec![
                (
                    "each appliance planned alone".into(),
                    red,
                    of(alone, |p| p.cost),
                ),
                (
                    "planned with its site".into(),
                    blue,
                    of(self.points, |p| p.cost),
                ),
            ],
            ("days", _) => vec![
                (
                    "days to complete".into(),
                    blue,
                    of(self.points, |p| p.complete),
                ),
                (
                    "days to live (offload threshold)".into(),
                    green,
                    of(self.points, |p| p.live),
                ),
            ],
            ("saving", Some(alone)) => {
                let site: std::collections::BTreeMap<u32, f64> =
                    self.points.iter().map(|p| (p.delay, p.cost)).collect();
                let saved = alone
                    .iter()
                    .filter_map(|a| site.get(&a.delay).map(|s| (a.delay, a.cost - s)))
                    .collect();
                vec![("saved by site plans, per appliance".into(), green, saved)]
            }
            _ => Vec::new(),
        }
    }

    fn draw<B: plotters::backend::DrawingBackend>(&self, backend: B) -> Result<()>
    where
        B::ErrorType: 'static,
    {
        use plotters::prelude::*;
        let err = |e: DrawingAreaErrorKind<B::ErrorType>| anyhow::anyhow!("{e:?}");
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let points = self.points;
        let x_max = points.last().map_or(1, |p| p.delay).max(1);
        let tb = 1e12;
        let stacks: Vec<(u32, [f64; 4])> = points
            .iter()
            .map(|p| {
                let a = p.peer / tb;
                let b = a + p.in_site / tb;
                let c = b + p.tier / tb;
                (p.delay, [a, b, c, c + p.origin / tb])
            })
            .collect();
        let lines = self.lines();
        let y_max = if self.chart == "bytes" {
            stacks.iter().map(|s| s.1[3]).fold(0.0, f64::max)
        } else {
            lines
                .iter()
                .flat_map(|l| l.2.iter().map(|p| p.1))
                .fold(0.0, f64::max)
        };
        let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let mut c = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0u32..x_max, 0f64..y_max)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("install delay (days after shipping)")
            .y_desc(self.y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        // A marker on each simulated point, so a line between two delays reads as what it
        // is: a join, not a measurement.
        for (label, color, pts) in lines {
            c.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
        if self.chart == "bytes" {
            let orange = RGBColor(217, 119, 6);
            let red = RGBColor(179, 38, 30);
            let grey = RGBColor(120, 120, 120);
            let green = RGBColor(26, 127, 55);
            // Top layer first, so each lower one is drawn over it.
            let in_site = points.iter().any(|p| p.in_site > 0.0);
            let layers = [
                (3usize, red, "origin"),
                (2, orange, "tiers"),
                (1, grey, "copies inside the site (site plans)"),
                (0, green, "peers"),
            ];
            for (i, color, label) in layers {
                if i == 1 && !in_site {
                    continue;
                }
                c.draw_series(AreaSeries::new(
                    stacks.iter().map(|s| (s.0, s.1[i])),
                    0.0,
                    color.mix(0.85),
                ))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 18, y + 6)], color.filled())
                });
            }
            c.draw_series(
                stacks
                    .iter()
                    .map(|s| Circle::new((s.0, s.1[3]), 3, BLACK.filled())),
            )
            .map_err(err)?;
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_default_config_is_the_code_default() {
        let shipped: SimConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(
            serde_json::to_value(&shipped).unwrap(),
            serde_json::to_value(SimConfig::default()).unwrap()
        );
    }

    #[test]
    fn delays_parse() {
        let parse = |s: &str| s.parse::<crate::cli::Delays>().map(|d| d.0);
        assert_eq!(parse("0..3").unwrap(), [0, 1, 2, 3]);
        assert_eq!(parse("7, 3,3").unwrap(), [3, 7]);
        assert!(parse("3..1").is_err());
        assert!(parse("soon").is_err());
        assert!(parse("0..4000").is_err());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!((pct(&v, 50.0), pct(&v, 90.0), pct(&v, 99.0)), (50, 90, 99));
        assert_eq!(pct::<u32>(&[], 50.0), 0);
        assert_eq!(pct(&[7u32], 99.0), 7);
    }
}
