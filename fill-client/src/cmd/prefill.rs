//! `fill prefill`: one fill into several stores.

use std::collections::HashSet;

use anyhow::{Context, Result, bail};
use fill_core::size::format_size;
use fill_store::store::Store;
use serde::Serialize;

use crate::Outcome;
use crate::cli::PrefillArgs;
use crate::common::{
    StoreDelta, compute_delta, open_catalog, open_store_to_fill, print_json, runtime,
};

use super::run::{backend, run_table};

/// What `fill prefill --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct PrefillJson<'a> {
    stores: Vec<PrefillStore>,
    #[serde(flatten)]
    report: &'a crate::fill::FillReport,
}

#[derive(Debug, Serialize)]
pub(crate) struct PrefillStore {
    store: String,
    bytes_to_fetch: u64,
    offload_after: f64,
}

pub(crate) fn prefill_cmd(args: &PrefillArgs) -> Result<Outcome> {
    let target_file = open_catalog(&args.target)?;
    let target = target_file.validate()?;
    let capacity = match &args.capacity {
        Some(c) => c.0,
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
        .map(|d| open_store_to_fill(d, args.reserve))
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
        .map(|(store, sd)| crate::fill::StoreJob::of(store, sd))
        .collect();
    let sources = [spec.source];
    let job = crate::fill::FillJob {
        stores: &store_jobs,
        target: &target,
        sources: &sources,
        holdings: &holdings,
        timeout: args.timeout.0,
        remotes: &remotes,
        routes: None,
        relays: None,
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
            outln!(
                "{}: {} to fill, offload after {:.1}%",
                s.store,
                format_size(s.bytes_to_fetch),
                100.0 * s.offload_after
            )?;
        }
        out!("{}", run_table(&report, false))?;
    }
    Ok(Outcome::Ok)
}
