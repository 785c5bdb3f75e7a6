//! `fill catalog ...`: build, show, export.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use fill_core::catalog::{self, CatalogBuilder};
use fill_core::size::format_size;
use serde::Serialize;

use crate::cli::{CatalogCommand, ExportFormat};
use crate::common::{open_catalog, open_store, print_json};
use crate::{Outcome, catalog_io};

pub(crate) fn catalog(cmd: CatalogCommand) -> Result<Outcome> {
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
            outln!(
                "wrote {} ({count} entries, {}{})",
                out.display(),
                format_size(written.len() as u64),
                if zst { ", zstd" } else { "" }
            )?;
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
                outln!(
                    "catalog   {} (format version {})",
                    summary.path,
                    summary.version
                )?;
                outln!("entries   {}", summary.entries)?;
                outln!(
                    "size      {} ({} bytes)",
                    format_size(summary.total_size),
                    summary.total_size
                )?;
                outln!("weight    {}", summary.total_weight)?;
                if !summary.top.is_empty() {
                    outln!(
                        "\n{:>5}  {:<64}  {:>12}  {:>10}  name",
                        "rank",
                        "id",
                        "size",
                        "weight"
                    )?;
                    for (rank, e) in summary.top.iter().enumerate() {
                        outln!(
                            "{:>5}  {}  {:>12}  {:>10.4}  {}",
                            rank + 1,
                            e.id,
                            e.size,
                            e.weight,
                            fill_core::text::Escaped(&e.name)
                        )?;
                    }
                    if cat.len() > limit {
                        outln!("  ... {} more (--limit N to see more)", cat.len() - limit)?;
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
                None => Box::new(BufWriter::new(crate::stdout())),
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
pub(crate) struct CatalogSummary {
    path: String,
    version: u32,
    entries: u64,
    total_size: u64,
    total_weight: f64,
    top: Vec<catalog::Entry>,
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
