//! What several commands share: the runtime, progress bars, JSON output, opening a store,
//! and a store's delta against a target. It imports no command.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};
use fill_core::PartialFile;
use fill_core::catalog::Catalog;
use fill_core::delta::{self, Delta, Inventory};
use fill_store::store::{CatalogFile, Store};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub(crate) fn open_store(dir: &Path) -> Result<Store> {
    Ok(Store::open(dir)?)
}

/// A store to fill, keeping `reserve` free on its filesystem (`--reserve`), by default
/// 1 GiB or 1% of the filesystem, whichever is smaller.
pub(crate) fn open_store_to_fill(dir: &Path, reserve: Option<crate::cli::Size>) -> Result<Store> {
    let s = open_store(dir)?;
    let reserve = match reserve {
        Some(r) => r.0,
        None => s.default_reserve()?,
    };
    Ok(s.with_reserve(reserve))
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

pub(crate) fn print_json(value: &impl Serialize) -> Result<()> {
    let mut out = BufWriter::new(crate::stdout());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
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
pub(crate) fn store_delta(
    target: &Catalog<'_>,
    inv: &Inventory<'_>,
    capacity: u64,
) -> Result<StoreDelta> {
    let delta = delta::compute(target, inv, capacity)?;
    let evict_ids = delta.evict.iter().map(|e| e.id(target, inv)).collect();
    let older = delta::older_versions(target, inv, &delta);
    Ok(StoreDelta {
        delta,
        evict_ids,
        older,
    })
}

pub(crate) fn open_catalog(path: &Path) -> Result<CatalogFile> {
    Ok(CatalogFile::open(path)?)
}
