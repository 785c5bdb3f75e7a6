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

/// A fill stopped by ctrl-c or SIGTERM (exit code 5): what was verified and recorded stays,
/// and the same command resumes.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted: every block verified and recorded so far is kept; run the same command again to resume"
)]
pub struct Interrupted;

/// Runs `work` on `rt` until it ends or ctrl-c / SIGTERM arrives, which drops it (as a kill
/// would: in-flight blocks are lost, recorded ones kept) and gives [`Interrupted`].
pub(crate) fn until_interrupted<T>(
    rt: &tokio::runtime::Runtime,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    rt.block_on(async {
        tokio::select! {
            r = work => r,
            () = fill_store::signal::stop_requested() => Err(Interrupted.into()),
        }
    })
}

/// Set by `-q`: no progress bars or lines, no notes on stderr (errors still).
pub(crate) static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// Tells the operator something on stderr, once: above the bars of `multi` when they are
/// drawn; nothing with `-q`.
pub(crate) fn say(multi: Option<&indicatif::MultiProgress>, line: &str) {
    if quiet() {
        return;
    }
    let line = fill_core::text::Escaped(line).to_string();
    match multi {
        Some(m) if m.println(&line).is_ok() => {}
        _ => eprintln!("{line}"),
    }
}

/// What a [`Meter`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Bytes (sizes and rates in decimal units).
    Bytes,
    /// Things, named in the plural (`"delays"`, `"cases"`).
    Count(&'static str),
}

/// How often a plain progress line is written when stderr is not a terminal:
/// `FILL_PROGRESS_EVERY` (a duration, e.g. `30s`; default 5 s).
pub(crate) fn plain_every() -> std::time::Duration {
    let standard = std::time::Duration::from_secs(5);
    match std::env::var("FILL_PROGRESS_EVERY") {
        Ok(v) => fill_core::duration::parse_duration(&v).unwrap_or_else(|e| {
            tracing::warn!("FILL_PROGRESS_EVERY: {e}; a line every 5s");
            standard
        }),
        Err(_) => standard,
    }
}

/// Progress of a long job: a bar on a terminal; elsewhere (cron, CI, systemd) a plain line on
/// stderr every [`plain_every`], `importing: 1.20 GB of 4.00 GB (30%), 120.00 MB/s, eta 23 s`.
#[derive(Debug)]
pub(crate) struct Meter {
    bar: ProgressBar,
    plain: Option<std::sync::Mutex<PlainLine>>,
}

impl Meter {
    /// A meter of `total` units of work called `what` (`"importing"`).
    pub(crate) fn new(total: u64, what: &str, unit: Unit) -> Self {
        if quiet() {
            return Self {
                bar: ProgressBar::hidden(),
                plain: None,
            };
        }
        if !std::io::stderr().is_terminal() {
            return Self {
                bar: ProgressBar::hidden(),
                plain: Some(std::sync::Mutex::new(PlainLine::new(what, total, unit))),
            };
        }
        let counts = match unit {
            Unit::Bytes => {
                "{decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} eta {eta}".to_owned()
            }
            Unit::Count(noun) => format!("{{pos}}/{{len}} {noun} eta {{eta}}"),
        };
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(&format!("{{msg}} [{{bar:30}}] {counts}"))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        Self { bar, plain: None }
    }

    /// `n` more units done.
    pub(crate) fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(p) = &self.plain {
            p.lock().unwrap_or_else(|e| e.into_inner()).add(n);
        }
    }

    /// Clears the bar (a plain meter has nothing to clear).
    pub(crate) fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// A bar is cleared however its work ends.
impl Drop for Meter {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The plain progress line written every [`plain_every`] when stderr is not a terminal.
#[derive(Debug)]
pub(crate) struct PlainLine {
    what: String,
    unit: Unit,
    every: std::time::Duration,
    started: std::time::Instant,
    last_line: std::time::Instant,
    done: u64,
    total: u64,
}

impl PlainLine {
    pub(crate) fn new(what: &str, total: u64, unit: Unit) -> Self {
        let now = std::time::Instant::now();
        Self {
            what: what.to_owned(),
            unit,
            every: plain_every(),
            started: now,
            last_line: now,
            done: 0,
            total,
        }
    }

    /// Counts `n` more, writing a line when one is due.
    pub(crate) fn add(&mut self, n: u64) {
        self.done = self.done.saturating_add(n);
        if self.last_line.elapsed() < self.every {
            return;
        }
        self.last_line = std::time::Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let left = self.total.saturating_sub(self.done) as f64;
        let eta = fill_core::duration::human_secs((left / rate.max(1e-9)).min(1e9) as i64);
        let pct = 100.0 * self.done as f64 / self.total.max(1) as f64;
        let (done, total, rate) = match self.unit {
            Unit::Bytes => (
                fill_core::size::format_size(self.done),
                fill_core::size::format_size(self.total),
                fill_core::size::format_byte_rate(rate),
            ),
            Unit::Count(noun) => (
                self.done.to_string(),
                format!("{} {noun}", self.total),
                format!("{rate:.1}/s"),
            ),
        };
        eprintln!(
            "{}: {done} of {total} ({pct:.0}%), {rate}, eta {eta}",
            self.what
        );
    }
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
