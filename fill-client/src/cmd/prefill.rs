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
    if !(1..=256).contains(&args.max_connections) {
        bail!(
            "--max-connections {} is not between 1 and 256",
            args.max_connections
        );
    }
    let station = match (&args.report_to, &args.station_token) {
        (Some(url), Some(token)) => Some(crate::station::Station::new(
            url,
            token,
            &args.serials,
            args.stores.len(),
        )?),
        _ if !args.serials.is_empty() => bail!("--serial goes with --report-to"),
        _ => None,
    };
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
    let spec = crate::sources::single(&args.source, args.max_connections)?;
    let rt = runtime(true)?;
    let totals: Vec<u64> = deltas.iter().map(|d| d.delta.bytes_to_fetch).collect();
    if let Some(st) = &station {
        // Before any byte: the control plane must know each appliance and agree it is
        // being pre-filled.
        rt.block_on(st.progress(0, &totals))
            .map_err(|e| anyhow::anyhow!("the control plane refused the pre-fill: {e}"))?;
    }
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
        verify_threads: usize::from(args.verify_threads),
    };
    let most = deltas
        .iter()
        .map(|d| d.delta.bytes_to_fetch)
        .max()
        .unwrap_or(0);
    let bar = crate::fill::Progress::new(most, "pre-filling", &sources);
    let started = crate::planning::now()?;
    let report = crate::common::until_interrupted(&rt, async {
        let fill = crate::fill::run(job, &writer, &bar);
        let Some(st) = &station else {
            return fill.await;
        };
        // Progress while it runs, each report on its own task (a slow control plane never
        // holds the fill up; one out of reach does not stop it).
        tokio::pin!(fill);
        let mut sending: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
        let mut said: Option<String> = None;
        loop {
            tokio::select! {
                r = &mut fill => break r,
                () = tokio::time::sleep(crate::station::EVERY) => {
                    if let Some(h) = sending.take_if(|h| h.is_finished()) {
                        match h.await {
                            Ok(Err(e)) if said.as_ref() != Some(&e) => {
                                tracing::warn!("cannot report progress: {e}");
                                said = Some(e);
                            }
                            Ok(Err(_)) => {}
                            _ => said = None,
                        }
                    }
                    if sending.is_none() {
                        let done = bar.counted().iter().sum::<u64>();
                        let (st, totals) = (st.clone(), totals.clone());
                        sending = Some(tokio::spawn(async move { st.progress(done, &totals).await }));
                    }
                }
            }
        }
    });
    bar.finish_and_clear();
    for (s, d) in stores.iter().zip(&deltas) {
        crate::fill::FillReport::record(s, started, d.delta.bytes_to_fetch, &report);
    }
    let report = report?;
    if let Some(st) = &station {
        let catalogs: Vec<Vec<u8>> = stores
            .iter()
            .map(|s| Ok(s.catalog()?.bytes().to_vec()))
            .collect::<Result<_>>()?;
        rt.block_on(st.finish(&catalogs, &totals)).map_err(|e| {
            anyhow::anyhow!(
                "the pre-fill is done but the control plane did not take its last report: {e} \
                 (run the same command again: it finds nothing to fetch and reports again)"
            )
        })?;
    }
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
