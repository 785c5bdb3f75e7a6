//! One function per command.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use fill_core::PartialFile;
use fill_core::catalog::{self, Catalog, CatalogBuilder};
use fill_core::delta::{self, Delta, EvictReason, Inventory};
use fill_core::outboard::BlockSize;
use fill_core::size::{format_size, parse_size};
use fill_store::store::{CatalogFile, Store, VerifyReport};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cli::{
    ApplianceCommand, CatalogCommand, Cli, Command, DeltaArgs, ExportFormat, PlanArgs, PrefillArgs,
    RunArgs, StoreCommand, Strategy, WriterChoice,
};
use crate::{Outcome, catalog_io, demo};

/// Runs a parsed command.
pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Store(cmd) => store(cmd),
        Command::Catalog(cmd) => catalog(cmd),
        Command::Delta(args) => delta_cmd(&args),
        Command::Run(args) => run_cmd(&args),
        Command::Prefill(args) => prefill_cmd(&args),
        Command::Plan(args) => plan_cmd(&args),
        Command::Appliance(cmd) => appliance(cmd),
        Command::Status { server, json } => status_cmd(&server, json),
        Command::Simulate(args) => crate::simulate::run(&args),
    }
}

/// `fill appliance status --json` (docs/json.md).
#[derive(Serialize)]
struct StatusJson<'a> {
    state: fill_core::lifecycle::State,
    before_drain: Option<fill_core::lifecycle::State>,
    events: &'a [fill_core::lifecycle::Event],
    maintenance: &'a [fill_core::lifecycle::MaintenanceWindow],
}

fn appliance(cmd: ApplianceCommand) -> Result<Outcome> {
    use fill_core::lifecycle::{Lifecycle, State};
    match cmd {
        ApplianceCommand::Status { store, json } => {
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
                println!("state: {}", l.state());
                if events.is_empty() {
                    println!("(no lifecycle recorded: a store serving as origin or tier is live)");
                }
                for e in recent {
                    println!("{}", event_line(e));
                }
                for w in &windows {
                    println!(
                        "maintenance from {} for {}: {}",
                        fill_core::duration::format_rfc3339(w.start),
                        fill_core::duration::human_secs(w.duration),
                        w.reason
                    );
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
                println!("{} -> {}", event.from, event.to);
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
                Some(t) => fill_core::duration::parse_rfc3339(&t).context("bad --start")?,
                None => crate::planning::now()?,
            };
            let window = fill_core::lifecycle::MaintenanceWindow::new(start, &duration, &reason)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut all = s.maintenance_windows()?;
            all.push(window.clone());
            s.set_maintenance_windows(&mut all)?;
            println!(
                "maintenance from {} for {}: {}",
                fill_core::duration::format_rfc3339(window.start),
                fill_core::duration::human_secs(window.duration),
                window.reason
            );
        }
    }
    Ok(Outcome::Ok)
}

fn checks_cmd(store: &Path, config: Option<&Path>, json: bool) -> Result<Outcome> {
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
        print!(
            "{}",
            checks_table(
                report
                    .checks
                    .iter()
                    .map(|c| (c.name, c.passed, c.detail.as_str()))
            )
        );
        if let Some(p) = &report.progress {
            println!(
                "fill {:.1}% ({} of {}), offload {:.1}%",
                p.share * 100.0,
                format_size(p.complete_bytes),
                format_size(p.target_bytes),
                p.offload * 100.0
            );
        }
    }
    Ok(if report.all_passed() {
        Outcome::Ok
    } else {
        Outcome::NotReady
    })
}

/// One line per check: `pass`/`FAIL`, its name, its detail.
fn checks_table<'a>(checks: impl Iterator<Item = (&'a str, bool, &'a str)>) -> String {
    let mut out = String::new();
    for (name, passed, detail) in checks {
        let verdict = if passed { "pass" } else { "FAIL" };
        out.push_str(&format!("{verdict:<5} {name:<13} {detail}\n"));
    }
    out
}

/// An event as one line: time, from -> to, reason.
fn event_line(e: &fill_core::lifecycle::Event) -> String {
    format!(
        "{}  {} -> {}  {}",
        fill_core::duration::format_rfc3339(e.time),
        e.from,
        e.to,
        e.reason
    )
}

/// `fill status --server URL`.
fn status_cmd(server: &str, json: bool) -> Result<Outcome> {
    let base = crate::sources::check_url(server).context("--server")?;
    let rt = runtime(false)?;
    let url = format!("{base}/status.json");
    let body = rt
        .block_on(crate::net::Net::new().get_small(&url, false, 16 << 20))
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    if json {
        std::io::stdout().write_all(&body)?;
        return Ok(Outcome::Ok);
    }
    let v: StatusView =
        serde_json::from_slice(&body).with_context(|| format!("{url}: not a status"))?;
    println!(
        "state: {}{}",
        v.state,
        if v.serving {
            ""
        } else {
            " (not serving content)"
        }
    );
    if let Some(p) = &v.progress {
        println!(
            "fill: {:.1}% of {} ({} of {} files); offload {:.1}% (needs {:.0}%)",
            p.share * 100.0,
            format_size(p.target_bytes),
            p.complete_files,
            p.target_files,
            p.offload * 100.0,
            p.offload_threshold * 100.0
        );
    }
    print!(
        "{}",
        checks_table(
            v.checks
                .iter()
                .map(|c| (c.name.as_str(), c.passed, c.detail.as_str()))
        )
    );
    for e in &v.events {
        println!("{}", event_line(e));
    }
    Ok(Outcome::Ok)
}

/// What `fill status` reads of `/status.json`.
#[derive(Debug, serde::Deserialize)]
struct StatusView {
    state: String,
    serving: bool,
    #[serde(default)]
    checks: Vec<CheckView>,
    progress: Option<ProgressView>,
    #[serde(default)]
    events: Vec<fill_core::lifecycle::Event>,
}

#[derive(Debug, serde::Deserialize)]
struct CheckView {
    name: String,
    passed: bool,
    detail: String,
}

#[derive(Debug, serde::Deserialize)]
struct ProgressView {
    target_files: u64,
    target_bytes: u64,
    complete_files: u64,
    share: f64,
    offload: f64,
    offload_threshold: f64,
}

fn core_strategy(s: Strategy) -> fill_core::plan::Strategy {
    match s {
        Strategy::Optimal => fill_core::plan::Strategy::Optimal,
        Strategy::Escalation => fill_core::plan::Strategy::Escalation,
    }
}

fn parse_deadline(text: &str) -> Result<i64> {
    let d = fill_core::duration::parse_duration(text).context("bad --deadline")?;
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if secs < 1 {
        bail!("bad --deadline {text:?}: at least one second");
    }
    Ok(secs)
}

fn parse_ingress(text: Option<&str>) -> Result<Option<u64>> {
    text.map(|t| fill_core::source::parse_bandwidth(t).context("bad --ingress"))
        .transpose()
}

fn plan_cmd(args: &PlanArgs) -> Result<Outcome> {
    let deadline = parse_deadline(&args.deadline)?;
    let ingress_bps = parse_ingress(args.ingress.as_deref())?;
    let start = match &args.start {
        Some(t) => fill_core::duration::parse_rfc3339(t).context("bad --start")?,
        None => crate::planning::now()?,
    };
    if let Some(site) = &args.site {
        let planned = crate::site::plan_site(site, crate::site::Horizon { start, deadline })?;
        if args.json {
            print_json(&crate::site::to_json(&planned))?;
        } else {
            print!("{}", crate::site::table(&planned, args.explain));
        }
        return Ok(Outcome::Ok);
    }
    // clap requires these without --site.
    let (Some(target_path), Some(sources_path), Some(capacity)) =
        (&args.target, &args.sources, &args.capacity)
    else {
        bail!("--target, --store, --sources and --capacity are required without --site");
    };
    let capacity = parse_size(capacity).context("bad --capacity")?;
    let target_file = open_catalog(target_path)?;
    let target = target_file.validate()?;
    let specs = crate::sources::load(sources_path)?;
    let rt = runtime(false)?;
    let (_, holdings) = crate::sources::reach(&specs, &rt)?;
    let sources: Vec<fill_core::source::Source> = specs.iter().map(|s| s.source.clone()).collect();
    let sd = match (&args.store, &args.inventory) {
        (Some(store), _) => compute_delta(&target, &open_store(store)?, capacity)?,
        (None, Some(inv)) => delta_from_inventory(&target, &open_catalog(inv)?, capacity)?,
        (None, None) => bail!("give --store or --inventory"),
    };
    let input = crate::planning::PlanInput {
        target: &target,
        delta: &sd.delta,
        sources: &sources,
        holdings: &holdings,
        start,
        deadline,
        ingress_bps,
    };
    let planned = crate::planning::make(&input, core_strategy(args.strategy))?;
    let escalation = match args.strategy {
        Strategy::Optimal if args.explain || args.json => {
            Some(crate::planning::make(&input, fill_core::plan::Strategy::Escalation)?.plan)
        }
        _ => None,
    };
    if args.json {
        print_json(&crate::planning::to_json(
            &input,
            &planned,
            escalation.as_ref().map(|e| e.total_cost),
        ))?;
    } else if args.explain {
        print!(
            "{}",
            crate::planning::explain(&input, &planned, escalation.as_ref())
        );
    } else {
        print!("{}", plan_table(&input, &planned));
    }
    Ok(Outcome::Ok)
}

/// The short human form of a plan: per source, then the total and the finish.
fn plan_table(input: &crate::planning::PlanInput<'_>, p: &crate::planning::Planned) -> String {
    use fill_core::duration::format_rfc3339;
    let plan = &p.plan;
    let mut s = format!(
        "{:<14} {:<7} {:>12} {:>10} {:>12}\n",
        "source", "kind", "bytes", "cost", "available"
    );
    for (u, src) in plan.per_source.iter().zip(input.sources) {
        s += &format!(
            "{:<14} {:<7} {:>12} {:>10.4} {:>12}\n",
            src.name,
            src.kind.name(),
            format_size(u.bytes),
            u.cost,
            format_size(u.available)
        );
    }
    s += &format!(
        "plan: {} for {:.4}, {} slots, finish {}{}\n",
        format_size(plan.bytes),
        plan.total_cost,
        plan.slots.len(),
        format_rfc3339(plan.finish),
        match &plan.shortfall {
            None => " (meets the deadline)".to_owned(),
            Some(short) => format!(
                " (misses the deadline: {} short by then; see --explain)",
                format_size(short.bytes)
            ),
        }
    );
    s
}

fn open_store(dir: &Path) -> Result<Store> {
    Store::new(dir).with_context(|| format!("cannot use store {}", dir.display()))
}

/// A progress bar on a terminal, nothing otherwise.
/// A tokio runtime for one command: on several threads (`multi`, for fills) or on this one.
pub(crate) fn runtime(multi: bool) -> Result<tokio::runtime::Runtime> {
    let mut b = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn progress_bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

fn print_json(value: &impl Serialize) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn store(cmd: StoreCommand) -> Result<Outcome> {
    match cmd {
        StoreCommand::Import {
            store,
            block_size,
            json,
            paths,
        } => {
            let bytes = parse_size(&block_size).context("bad --block-size")?;
            let block = BlockSize::from_bytes(bytes).context("bad --block-size")?;
            let s = open_store(&store)?;
            let total: u64 = paths.iter().map(|p| dir_size(p)).sum();
            let bar = progress_bar(total, "importing");
            let imported = s
                .import(&paths, block, &|i| bar.inc(i.size))
                .with_context(|| format!("import into {} failed", store.display()))?;
            bar.finish_and_clear();
            if json {
                print_json(&imported)?;
            } else {
                let added = imported.iter().filter(|i| i.added).count();
                let bytes: u64 = imported.iter().filter(|i| i.added).map(|i| i.size).sum();
                println!(
                    "imported {} files into {}: {added} added ({}), {} already held",
                    imported.len(),
                    store.display(),
                    format_size(bytes),
                    imported.len() - added
                );
            }
            Ok(Outcome::Ok)
        }
        StoreCommand::List { store, json } => {
            let s = open_store(&store)?;
            let listing = list_store(&s)?;
            if json {
                print_json(&listing)?;
            } else {
                for e in &listing {
                    let state = match &e.partial_info {
                        None => "complete".to_owned(),
                        Some(p) => format!("partial {}/{} blocks", p.verified_blocks, p.blocks),
                    };
                    println!("{}  {:>12}  {:<22}  {}", e.id, e.size, state, e.name);
                }
                let complete = listing.iter().filter(|e| !e.partial).count();
                eprintln!("{complete} complete, {} partial", listing.len() - complete);
            }
            Ok(Outcome::Ok)
        }
        StoreCommand::Publish {
            store,
            to,
            verify,
            json,
        } => {
            let s = open_store(&store)?;
            let to = fill_store::sources::check_source_url(&to).context("--to")?;
            if !crate::object::is_object_url(&to) {
                bail!(
                    "--to {to:?}: publish writes to object storage (s3://bucket/prefix or file:///path)"
                );
            }
            let total = s.catalog()?.validate()?.total_size();
            let bar = progress_bar(total, "publishing");
            let rt = runtime(true)?;
            let r = rt.block_on(crate::object::publish(&s, &to, verify, &|n| bar.inc(n)))?;
            bar.finish_and_clear();
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "published {} files to {}: {} objects uploaded ({}), {} already there ({}){}",
                    r.files,
                    r.to,
                    r.uploaded,
                    format_size(r.uploaded_bytes),
                    r.skipped,
                    format_size(r.skipped_bytes),
                    if verify {
                        format!(", {} files verified", r.verified)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(Outcome::Ok)
        }
        StoreCommand::Verify {
            store,
            json,
            repair,
        } => {
            let s = open_store(&store)?;
            let total = s.catalog()?.validate()?.total_size();
            let bar = progress_bar(total, "verifying");
            let report = s.verify(repair, &|n| bar.inc(n)).context("verify failed")?;
            bar.finish_and_clear();
            if json {
                print_json(&report)?;
            } else {
                print_verify(&report);
            }
            Ok(if report.bad.is_empty() && report.bad_blocks.is_empty() {
                Outcome::Ok
            } else {
                Outcome::BadData
            })
        }
    }
}

fn dir_size(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) if m.is_file() => m.len(),
        _ => 0,
    }
}

fn print_verify(r: &VerifyReport) {
    for b in &r.bad {
        println!("BAD  {}  {}: {}", b.id, b.name, b.reason);
    }
    for b in &r.bad_blocks {
        match &b.reason {
            Some(reason) => println!("BAD  {}  (partial): {reason}", b.id),
            None => println!(
                "BAD  {}  (partial): blocks {:?} fail verification",
                b.id, b.blocks
            ),
        }
    }
    for s in &r.stray {
        println!("stray content/{s} (not in the catalog; left alone)");
    }
    let verdict = if r.bad.is_empty() && r.bad_blocks.is_empty() {
        "all good".to_owned()
    } else if r.repaired {
        format!(
            "{} bad files dropped, {} partial files repaired",
            r.bad.len(),
            r.bad_blocks.len()
        )
    } else {
        format!(
            "{} bad files, {} partial files with bad blocks (run with --repair to drop them)",
            r.bad.len(),
            r.bad_blocks.len()
        )
    };
    println!(
        "verified {} files, {}: {verdict}",
        r.checked,
        format_size(r.bytes)
    );
}

/// One line of `fill store list --json`.
#[derive(Debug, Serialize)]
struct Listed {
    id: fill_core::ContentId,
    size: u64,
    name: String,
    partial: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    partial_info: Option<PartialInfo>,
}

#[derive(Debug, Serialize)]
struct PartialInfo {
    block_size: u64,
    blocks: u64,
    verified_blocks: u64,
    /// Verified byte ranges, `[offset, length]`.
    verified: Vec<(u64, u64)>,
}

fn list_store(s: &Store) -> Result<Vec<Listed>> {
    let file = s.catalog()?;
    let cat = file.validate()?;
    let mut out: Vec<Listed> = (0..cat.len())
        .map(|i| Listed {
            id: cat.id(i),
            size: cat.size(i),
            name: cat.name(i).to_owned(),
            partial: false,
            partial_info: None,
        })
        .collect();
    for p in s.partials()? {
        out.push(Listed {
            id: p.file.id,
            size: p.file.size,
            name: p.name.clone(),
            partial: true,
            partial_info: Some(PartialInfo {
                block_size: p.file.block.bytes(),
                blocks: p.file.block_count(),
                verified_blocks: p.file.verified_count(),
                verified: p.file.verified_ranges(),
            }),
        });
    }
    Ok(out)
}

fn catalog(cmd: CatalogCommand) -> Result<Outcome> {
    match cmd {
        CatalogCommand::Build {
            csv,
            json,
            store,
            popularity,
            out,
        } => {
            let builder = if let Some(path) = csv {
                let f =
                    File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
                catalog_io::read_csv(f).with_context(|| format!("{}", path.display()))?
            } else if let Some(path) = json {
                let f =
                    File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
                catalog_io::read_json(f).with_context(|| format!("{}", path.display()))?
            } else if let (Some(store), Some(pop)) = (store, popularity) {
                from_store(&store, &pop, true)?
            } else {
                bail!("give --csv, --json, or --store with --popularity");
            };
            let count = builder.len();
            let bytes = builder.finish().context("cannot build the catalog")?;
            let zst = out.extension().is_some_and(|e| e == "zst");
            let written = if zst {
                catalog::wire::compress(&bytes, 9)
            } else {
                bytes
            };
            std::fs::write(&out, &written)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "wrote {} ({count} entries, {}{})",
                out.display(),
                format_size(written.len() as u64),
                if zst { ", zstd" } else { "" }
            );
            Ok(Outcome::Ok)
        }
        CatalogCommand::Show {
            catalog,
            limit,
            json,
        } => {
            let file = open_catalog(&catalog)?;
            let cat = file.validate()?;
            let top: Vec<catalog::Entry> =
                cat.by_rank().take(limit).map(|i| cat.entry(i)).collect();
            let summary = CatalogSummary {
                path: catalog.display().to_string(),
                version: catalog::VERSION,
                entries: cat.len() as u64,
                total_size: cat.total_size(),
                total_weight: cat.total_weight(),
                top,
            };
            if json {
                print_json(&summary)?;
            } else {
                println!(
                    "catalog   {} (format version {})",
                    summary.path, summary.version
                );
                println!("entries   {}", summary.entries);
                println!(
                    "size      {} ({} bytes)",
                    format_size(summary.total_size),
                    summary.total_size
                );
                println!("weight    {}", summary.total_weight);
                if !summary.top.is_empty() {
                    println!(
                        "\n{:>5}  {:<64}  {:>12}  {:>10}  name",
                        "rank", "id", "size", "weight"
                    );
                    for (rank, e) in summary.top.iter().enumerate() {
                        println!(
                            "{:>5}  {}  {:>12}  {:>10.4}  {}",
                            rank + 1,
                            e.id,
                            e.size,
                            e.weight,
                            e.name
                        );
                    }
                    if cat.len() > limit {
                        println!("  ... {} more (--limit N to see more)", cat.len() - limit);
                    }
                }
            }
            Ok(Outcome::Ok)
        }
        CatalogCommand::Export {
            catalog,
            format,
            out,
        } => {
            let file = open_catalog(&catalog)?;
            let cat = file.validate()?;
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(BufWriter::new(
                    File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(BufWriter::new(std::io::stdout().lock())),
            };
            match format {
                ExportFormat::Csv => catalog_io::write_csv(&cat, &mut sink)?,
                ExportFormat::Json => catalog_io::write_json(&cat, &mut sink)?,
            }
            sink.flush()?;
            Ok(Outcome::Ok)
        }
    }
}

#[derive(Debug, Serialize)]
struct CatalogSummary {
    path: String,
    version: u32,
    entries: u64,
    total_size: u64,
    total_weight: f64,
    top: Vec<catalog::Entry>,
}

fn open_catalog(path: &Path) -> Result<CatalogFile> {
    Ok(CatalogFile::open(path)?)
}

/// Entries of a store's catalog with weights from a popularity CSV (`name,weight`).
pub fn from_store(store: &Path, popularity: &Path, notes: bool) -> Result<CatalogBuilder> {
    let s = open_store(store)?;
    let file = s.catalog()?;
    let cat = file.validate()?;
    let f =
        File::open(popularity).with_context(|| format!("cannot open {}", popularity.display()))?;
    let weights =
        catalog_io::read_popularity(f).with_context(|| format!("{}", popularity.display()))?;
    let mut b = CatalogBuilder::with_capacity(cat.len(), 0);
    let mut used = HashSet::new();
    let mut unweighted = 0;
    for i in 0..cat.len() {
        let name = cat.name(i);
        let w = match weights.get(name) {
            Some(&w) => {
                used.insert(name);
                w
            }
            None => {
                unweighted += 1;
                0.0
            }
        };
        b.push(cat.id(i), cat.size(i), w, name)
            .with_context(|| format!("{}: name {name:?}", popularity.display()))?;
    }
    if notes && unweighted > 0 {
        eprintln!(
            "note: {unweighted} files of the store have no weight in {} (weight 0)",
            popularity.display()
        );
    }
    let unknown = weights.len() - used.len();
    if notes && unknown > 0 {
        eprintln!(
            "note: {unknown} names in {} are not in the store (ignored)",
            popularity.display()
        );
    }
    Ok(b)
}

/// The delta as `fill delta --json` prints it (docs/json.md, "fill delta --json").
#[derive(Debug, Serialize)]
pub struct DeltaReport {
    capacity: u64,
    target_files: u64,
    target_bytes: u64,
    placed_files: u64,
    placed_bytes: u64,
    bytes_held_before: u64,
    bytes_to_fetch: u64,
    bytes_to_evict: u64,
    peak_usage: u64,
    offload_before: f64,
    offload_after: f64,
    fetch: Vec<FetchJson>,
    evict: Vec<fill_core::ContentId>,
    evict_schedule: Vec<EvictionJson>,
    keep: Vec<fill_core::ContentId>,
    resume: Vec<fill_core::ContentId>,
}

#[derive(Debug, Serialize)]
struct EvictionJson {
    id: fill_core::ContentId,
    size: u64,
    before_fetch: u64,
    reason: EvictReason,
}

#[derive(Debug, Serialize)]
struct FetchJson {
    id: fill_core::ContentId,
    offset: u64,
    length: u64,
}

impl DeltaReport {
    /// The report for a delta over `target`.
    pub fn new(target: &Catalog<'_>, sd: &StoreDelta, capacity: u64) -> Self {
        let d = &sd.delta;
        Self {
            capacity,
            target_files: target.len() as u64,
            target_bytes: target.total_size(),
            placed_files: d.placed_files,
            placed_bytes: d.placed_bytes,
            bytes_held_before: d.bytes_held_before,
            bytes_to_fetch: d.bytes_to_fetch,
            bytes_to_evict: d.bytes_to_evict,
            peak_usage: d.peak_usage,
            offload_before: d.offload_before,
            offload_after: d.offload_after,
            fetch: d
                .fetch
                .iter()
                .map(|f| FetchJson {
                    id: target.id(f.entry as usize),
                    offset: f.offset,
                    length: f.length,
                })
                .collect(),
            evict: sd.evict_ids.clone(),
            evict_schedule: d
                .evict
                .iter()
                .zip(&sd.evict_ids)
                .map(|(e, &id)| EvictionJson {
                    id,
                    size: e.size,
                    before_fetch: e.before_fetch,
                    reason: e.reason,
                })
                .collect(),
            keep: d.keep.iter().map(|&k| target.id(k as usize)).collect(),
            resume: d.resume.iter().map(|&k| target.id(k as usize)).collect(),
        }
    }
}

/// A delta, with the ids of the files it evicts resolved while the inventory is open.
#[derive(Debug)]
pub struct StoreDelta {
    /// The delta.
    pub delta: Delta,
    /// `delta.evict[i]`'s id.
    pub evict_ids: Vec<fill_core::ContentId>,
    /// Older versions held of files fetched whole, to copy their shared blocks from.
    pub older: Vec<delta::OlderVersion>,
}

/// Computes the delta of an appliance known by a catalog of what it holds (no partial files).
pub fn delta_from_inventory(
    target: &Catalog<'_>,
    inventory: &CatalogFile,
    capacity: u64,
) -> Result<StoreDelta> {
    let inv = Inventory {
        complete: inventory.validate()?,
        partial: &[],
    };
    store_delta(target, &inv, capacity)
}

/// Computes the delta of a store against a target.
pub fn compute_delta(target: &Catalog<'_>, s: &Store, capacity: u64) -> Result<StoreDelta> {
    let inv_file = s.catalog()?;
    let inv = inv_file.validate()?;
    let partial: Vec<PartialFile> = s.partials()?.into_iter().map(|p| p.file).collect();
    let inv = Inventory {
        complete: inv,
        partial: &partial,
    };
    store_delta(target, &inv, capacity)
}

/// The delta of `inv` against `target`, with the ids it evicts and its older versions.
fn store_delta(target: &Catalog<'_>, inv: &Inventory<'_>, capacity: u64) -> Result<StoreDelta> {
    let delta = delta::compute(target, inv, capacity)?;
    let evict_ids = delta.evict.iter().map(|e| e.id(target, inv)).collect();
    let older = delta::older_versions(target, inv, &delta);
    Ok(StoreDelta {
        delta,
        evict_ids,
        older,
    })
}

fn delta_cmd(args: &DeltaArgs) -> Result<Outcome> {
    let capacity = parse_size(&args.capacity).context("bad --capacity")?;
    let target_file = open_catalog(&args.target)?;
    let target = target_file.validate()?;
    let s = open_store(&args.store)?;
    let sd = compute_delta(&target, &s, capacity)?;
    if args.json {
        print_json(&DeltaReport::new(&target, &sd, capacity))?;
    } else {
        print!("{}", delta_table(&target, &sd.delta, capacity));
    }
    Ok(Outcome::Ok)
}

/// The short human summary of a delta.
pub fn delta_table(target: &Catalog<'_>, d: &Delta, capacity: u64) -> String {
    let new_files = d
        .fetch
        .iter()
        .filter(|f| f.offset == 0 && f.length == target.size(f.entry as usize))
        .count();
    let not_in_target = d
        .evict
        .iter()
        .filter(|e| e.reason == EvictReason::NotInTarget)
        .count();
    let row = |what: &str, files: String, bytes: u64, note: String| {
        format!("{what:<8} {files:>9}  {:>12}  {note}\n", format_size(bytes))
    };
    let mut s = String::new();
    s += &row(
        "target",
        format!("{} files", target.len()),
        target.total_size(),
        String::new(),
    );
    s += &row(
        "placed",
        format!("{} files", d.placed_files),
        d.placed_bytes,
        format!("capacity {}", format_size(capacity)),
    );
    s += &row(
        "held",
        String::new(),
        d.bytes_held_before,
        "before the fill".into(),
    );
    let kept: u64 = d.keep.iter().map(|&k| target.size(k as usize)).sum();
    s += &row(
        "keep",
        format!("{} files", d.keep.len()),
        kept,
        String::new(),
    );
    s += &row(
        "fetch",
        format!("{} ranges", d.fetch.len()),
        d.bytes_to_fetch,
        format!(
            "{new_files} new files, {} partial files resumed",
            d.resume.len()
        ),
    );
    s += &row(
        "evict",
        format!("{} files", d.evict.len()),
        d.bytes_to_evict,
        format!(
            "{not_in_target} not in target, {} no longer fit",
            d.evict.len() - not_in_target
        ),
    );
    s += &format!(
        "offload  {:.1}% -> {:.1}% of the target's weight\n",
        100.0 * d.offload_before,
        100.0 * d.offload_after
    );
    s
}

/// What `fill run --json` prints.
#[derive(Debug, Serialize)]
struct RunJson<'a> {
    dry_run: bool,
    strategy: &'static str,
    bytes_to_fetch: u64,
    offload_before: f64,
    offload_after: f64,
    #[serde(flatten)]
    report: &'a crate::fill::FillReport,
}

fn run_cmd(args: &RunArgs) -> Result<Outcome> {
    let deadline = parse_deadline(&args.deadline)?;
    let ingress_bps = parse_ingress(args.ingress.as_deref())?;
    let capacity = parse_size(&args.capacity).context("bad --capacity")?;
    let target_file = open_catalog(&args.target)?;
    let target = target_file.validate()?;
    let specs = crate::sources::load(&args.sources)?;
    let s = open_store(&args.store)?;
    let _lock = s.lock().context("cannot lock the store")?;
    let settled = s.recover().context("cannot settle an interrupted fill")?;
    if settled > 0 {
        tracing::info!(
            "settled {settled} files an interrupted fill, eviction or import left behind"
        );
    }
    let rt = runtime(true)?;
    let (remotes, holdings) = crate::sources::reach(&specs, &rt)?;
    let sources: Vec<fill_core::source::Source> = specs.iter().map(|s| s.source.clone()).collect();
    let sd = compute_delta(&target, &s, capacity)?;
    let planned = match args.strategy {
        Strategy::Escalation => None,
        Strategy::Optimal => {
            let input = crate::planning::PlanInput {
                target: &target,
                delta: &sd.delta,
                sources: &sources,
                holdings: &holdings,
                start: crate::planning::now()?,
                deadline,
                ingress_bps,
            };
            let p = crate::planning::make(&input, fill_core::plan::Strategy::Optimal)?;
            if let Some(short) = &p.plan.shortfall {
                tracing::warn!(
                    "the plan misses the deadline: {} cannot arrive in time (see fill plan --explain)",
                    format_size(short.bytes)
                );
            }
            Some(p)
        }
    };
    let routes = planned.as_ref().map(crate::planning::routes);
    let report = if args.dry_run {
        // The plan without fetching: the planner's bytes per source, or escalation's.
        let per = match &planned {
            Some(p) => p
                .plan
                .per_source
                .iter()
                .zip(&sources)
                .map(|(u, src)| crate::fill::SourceReport::planned(src, u.bytes, u.cost))
                .collect(),
            None => crate::fill::dry_run(&target, &sd.delta, &sources, &holdings)?,
        };
        crate::fill::FillReport::dry_run(per)
    } else {
        s.create()?;
        // The turn-up checks measure the store against the target it fills towards.
        s.record_target(target_file.bytes())
            .context("cannot record the target in the store")?;
        let writer = rt.block_on(crate::write::Writer::start(
            backend(args.writer),
            &s.root().join(".fill/tmp"),
        ))?;
        let bar = crate::fill::Progress::new(sd.delta.bytes_to_fetch, "filling", &sources);
        let stores = [crate::fill::StoreJob {
            store: &s,
            delta: &sd.delta,
            evict_ids: &sd.evict_ids,
            older: &sd.older,
        }];
        let job = crate::fill::FillJob {
            stores: &stores,
            target: &target,
            sources: &sources,
            holdings: &holdings,
            timeout: parse_timeout(&args.timeout)?,
            remotes: &remotes,
            routes: routes.as_ref(),
        };
        let r = rt.block_on(crate::fill::run(job, &writer, &bar))?;
        bar.finish_and_clear();
        r
    };
    if args.json {
        print_json(&RunJson {
            dry_run: args.dry_run,
            strategy: match args.strategy {
                Strategy::Optimal => "optimal",
                Strategy::Escalation => "escalation",
            },
            bytes_to_fetch: sd.delta.bytes_to_fetch,
            offload_before: sd.delta.offload_before,
            offload_after: sd.delta.offload_after,
            report: &report,
        })?;
    } else {
        print!("{}", delta_table(&target, &sd.delta, capacity));
        print!("{}", run_table(&report, args.dry_run));
    }
    Ok(Outcome::Ok)
}

/// The human report of a fill (or of its plan).
pub fn run_table(r: &crate::fill::FillReport, dry_run: bool) -> String {
    let mut s = String::new();
    s += &format!(
        "\n{:<14} {:<7} {:>12} {:>10} {:>9} {:>7} {:>4}  note\n",
        "source",
        "kind",
        if dry_run { "plan bytes" } else { "bytes" },
        "cost",
        "requests",
        "failed",
        "bad"
    );
    for src in &r.sources {
        let note = match (&src.unreachable, src.quarantined) {
            (Some(why), _) => format!("unreachable: {why}"),
            (None, true) => "quarantined".into(),
            _ => String::new(),
        };
        s += &format!(
            "{:<14} {:<7} {:>12} {:>10.4} {:>9} {:>7} {:>4}  {note}\n",
            src.name,
            src.kind,
            format_size(src.bytes),
            src.cost,
            src.requests,
            src.failed_requests,
            src.bad_blocks
        );
    }
    if dry_run {
        s += &format!(
            "plan: total cost {:.4} (dry run: nothing fetched)\n",
            r.total_cost
        );
    } else {
        s += &format!(
            "filled {}{} in {:.2} s ({}/s), {} files completed, {} evicted, {} retries, cost {:.4}; writes: {}\n",
            format_size(r.bytes_fetched),
            if r.bytes_copied > 0 {
                format!(
                    " (and {} copied from older versions)",
                    format_size(r.bytes_copied)
                )
            } else {
                String::new()
            },
            r.duration_secs,
            format_size(r.throughput_bytes_per_sec as u64),
            r.files_completed,
            r.files_evicted,
            r.retries,
            r.total_cost,
            r.write_backend
        );
    }
    s
}

fn parse_timeout(text: &str) -> Result<std::time::Duration> {
    let d = fill_core::duration::parse_duration(text).context("bad --timeout")?;
    if d.is_zero() {
        bail!("bad --timeout: must be more than zero");
    }
    Ok(d)
}

fn backend(choice: WriterChoice) -> crate::write::Backend {
    match choice {
        WriterChoice::Auto => crate::write::Backend::Auto,
        WriterChoice::Uring => crate::write::Backend::Uring,
        WriterChoice::Pwrite => crate::write::Backend::Pwrite,
    }
}

/// What `fill prefill --json` prints.
#[derive(Debug, Serialize)]
struct PrefillJson<'a> {
    stores: Vec<PrefillStore>,
    #[serde(flatten)]
    report: &'a crate::fill::FillReport,
}

#[derive(Debug, Serialize)]
struct PrefillStore {
    store: String,
    bytes_to_fetch: u64,
    offload_after: f64,
}

fn prefill_cmd(args: &PrefillArgs) -> Result<Outcome> {
    let target_file = open_catalog(&args.target)?;
    let target = target_file.validate()?;
    let capacity = match &args.capacity {
        Some(c) => parse_size(c).context("bad --capacity")?,
        None => target.total_size(),
    };
    if !(1..=256).contains(&args.connections) {
        bail!(
            "--connections {} is not between 1 and 256",
            args.connections
        );
    }
    let mut seen = HashSet::new();
    for dir in &args.stores {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        if !seen.insert(key) {
            bail!("store {} is given twice", dir.display());
        }
    }
    let stores: Vec<Store> = args
        .stores
        .iter()
        .map(|d| open_store(d))
        .collect::<Result<_>>()?;
    let _locks = stores
        .iter()
        .map(|s| {
            s.lock()
                .with_context(|| format!("cannot lock {}", s.root().display()))
        })
        .collect::<Result<Vec<_>>>()?;
    for s in &stores {
        s.recover().with_context(|| {
            format!(
                "cannot settle an interrupted fill in {}",
                s.root().display()
            )
        })?;
        s.record_target(target_file.bytes())
            .context("cannot record the target in the store")?;
    }
    let deltas: Vec<StoreDelta> = stores
        .iter()
        .map(|s| compute_delta(&target, s, capacity))
        .collect::<Result<_>>()?;
    let spec = crate::sources::single(&args.source, args.connections)?;
    let rt = runtime(true)?;
    let (remotes, holdings) = crate::sources::reach(std::slice::from_ref(&spec), &rt)?;
    let writer = rt.block_on(crate::write::Writer::start(
        backend(args.writer),
        &stores[0].root().join(".fill/tmp"),
    ))?;
    let store_jobs: Vec<crate::fill::StoreJob<'_>> = stores
        .iter()
        .zip(&deltas)
        .map(|(store, sd)| crate::fill::StoreJob {
            store,
            delta: &sd.delta,
            evict_ids: &sd.evict_ids,
            older: &sd.older,
        })
        .collect();
    let sources = [spec.source];
    let job = crate::fill::FillJob {
        stores: &store_jobs,
        target: &target,
        sources: &sources,
        holdings: &holdings,
        timeout: parse_timeout(&args.timeout)?,
        remotes: &remotes,
        routes: None,
    };
    let most = deltas
        .iter()
        .map(|d| d.delta.bytes_to_fetch)
        .max()
        .unwrap_or(0);
    let bar = crate::fill::Progress::new(most, "pre-filling", &sources);
    let report = rt.block_on(crate::fill::run(job, &writer, &bar))?;
    bar.finish_and_clear();
    let per_store: Vec<PrefillStore> = stores
        .iter()
        .zip(&deltas)
        .map(|(s, d)| PrefillStore {
            store: s.root().display().to_string(),
            bytes_to_fetch: d.delta.bytes_to_fetch,
            offload_after: d.delta.offload_after,
        })
        .collect();
    if args.json {
        print_json(&PrefillJson {
            stores: per_store,
            report: &report,
        })?;
    } else {
        for s in &per_store {
            println!(
                "{}: {} to fill, offload after {:.1}%",
                s.store,
                format_size(s.bytes_to_fetch),
                100.0 * s.offload_after
            );
        }
        print!("{}", run_table(&report, false));
    }
    Ok(Outcome::Ok)
}
