//! `fill run`: the fill of one store, and its report table.

use std::io::Write as _;

use anyhow::{Context, Result};
use fill_core::size::format_size;
use fill_core::text::Escaped;
use serde::Serialize;

use crate::cli::{RunArgs, Strategy, WriterChoice};
use crate::common::{compute_delta, open_catalog, open_store_to_fill, print_json, runtime};

use super::delta::delta_table;
use crate::Outcome;

/// What `fill run --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct RunJson<'a> {
    dry_run: bool,
    strategy: &'static str,
    bytes_to_fetch: u64,
    offload_before: f64,
    offload_after: f64,
    #[serde(flatten)]
    report: &'a crate::fill::FillReport,
}

pub(crate) fn run_cmd(args: &RunArgs) -> Result<Outcome> {
    let deadline = args.deadline.0;
    let ingress_bps = args.ingress.map(|r| r.0);
    // clap requires these without --site.
    let (Some(target_path), Some(sources_path), Some(store_path), Some(capacity)) =
        (&args.target, &args.sources, &args.store, args.capacity)
    else {
        anyhow::bail!("--target, --store, --sources and --capacity are required without --site");
    };
    let capacity = capacity.0;
    let target_file = open_catalog(target_path)?;
    let target = target_file.validate()?;
    let specs = crate::sources::load(sources_path)?;
    let s = open_store_to_fill(store_path, args.reserve)?;
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
    crate::sources::say_unreachable(&specs, &holdings);
    // What the fill is about to do, before it starts (it may take hours).
    if !args.json {
        out!("{}", delta_table(&target, &sd.delta, capacity))?;
        crate::stdout().flush()?;
    }
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
        let writer = ready_to_write(&rt, &s, &target_file, args.writer)?;
        let bar = crate::fill::Progress::new(sd.delta.bytes_to_fetch, "filling", &sources);
        let stores = [crate::fill::StoreJob::of(&s, &sd)];
        let job = crate::fill::FillJob {
            stores: &stores,
            target: &target,
            sources: &sources,
            holdings: &holdings,
            timeout: args.timeout.0,
            remotes: &remotes,
            routes: routes.as_ref(),
            relays: None,
            verify_threads: usize::from(args.verify_threads),
        };
        let started = crate::planning::now()?;
        let r = crate::common::until_interrupted(&rt, crate::fill::run(job, &writer, &bar));
        bar.finish_and_clear();
        crate::fill::FillReport::record(&s, started, sd.delta.bytes_to_fetch, &r);
        r?
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
        out!("{}", run_table(&report, args.dry_run))?;
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
            // What a peer said comes from outside: printed escaped.
            (Some(why), _) => format!("unreachable: {}", Escaped(why)),
            (None, true) => "quarantined".into(),
            _ => String::new(),
        };
        s += &format!(
            "{:<14} {:<7} {:>12} {:>10.4} {:>9} {:>7} {:>4}  {note}\n",
            Escaped(&src.name),
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

/// Makes the store ready for a fill towards `target`: created, the target recorded (the
/// turn-up checks measure the store against it), and its block writer started.
pub(crate) fn ready_to_write(
    rt: &tokio::runtime::Runtime,
    s: &fill_store::store::Store,
    target: &fill_store::store::CatalogFile,
    choice: WriterChoice,
) -> Result<crate::write::Writer> {
    s.create()?;
    s.record_target(target.bytes())
        .context("cannot record the target in the store")?;
    rt.block_on(crate::write::Writer::start(
        backend(choice),
        &s.root().join(".fill/tmp"),
    ))
}

pub(crate) fn backend(choice: WriterChoice) -> crate::write::Backend {
    match choice {
        WriterChoice::Auto => crate::write::Backend::Auto,
        WriterChoice::Uring => crate::write::Backend::Uring,
        WriterChoice::Pwrite => crate::write::Backend::Pwrite,
    }
}
