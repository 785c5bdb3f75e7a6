//! `fill delta`, and the delta table and JSON that other commands print too.

use anyhow::Result;
use fill_core::catalog::Catalog;
use fill_core::delta::{Delta, EvictReason};
use fill_core::size::format_size;
use serde::Serialize;

use crate::Outcome;
use crate::cli::DeltaArgs;
use crate::common::{StoreDelta, compute_delta, open_catalog, open_store, print_json};

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
pub(crate) struct EvictionJson {
    id: fill_core::ContentId,
    size: u64,
    before_fetch: u64,
    reason: EvictReason,
}

#[derive(Debug, Serialize)]
pub(crate) struct FetchJson {
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

pub(crate) fn delta_cmd(args: &DeltaArgs) -> Result<Outcome> {
    let capacity = args.capacity.0;
    let target_file = open_catalog(&args.target)?;
    let target = target_file.validate()?;
    let s = open_store(&args.store)?;
    let sd = compute_delta(&target, &s, capacity)?;
    if args.json {
        print_json(&DeltaReport::new(&target, &sd, capacity))?;
    } else {
        out!("{}", delta_table(&target, &sd.delta, capacity))?;
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
