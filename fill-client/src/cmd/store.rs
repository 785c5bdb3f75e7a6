//! `fill store ...`: import, list, verify, publish.

use std::path::Path;

use anyhow::{Context, Result, bail};
use fill_core::outboard::BlockSize;
use fill_core::size::format_size;
use fill_core::text::Escaped;
use fill_store::store::{Store, VerifyReport};
use serde::Serialize;

use crate::Outcome;
use crate::cli::StoreCommand;
use crate::common::{Meter, Unit, open_store, print_json, runtime};

pub(crate) fn store(cmd: StoreCommand) -> Result<Outcome> {
    match cmd {
        StoreCommand::Import {
            store,
            block_size,
            json,
            paths,
        } => {
            let bytes = block_size.0;
            let block = BlockSize::from_bytes(bytes).context("bad --block-size")?;
            // The one command that may create its store.
            let s = Store::new(&store)?;
            let total: u64 = paths.iter().map(|p| dir_size(p)).sum();
            let bar = Meter::new(total, "importing", Unit::Bytes);
            let imported = s
                .import(&paths, block, &|i| bar.inc(i.size))
                .with_context(|| format!("import into {} failed", store.display()))?;
            bar.finish_and_clear();
            if json {
                print_json(&imported)?;
            } else {
                let added = imported.iter().filter(|i| i.added).count();
                let bytes: u64 = imported.iter().filter(|i| i.added).map(|i| i.size).sum();
                outln!(
                    "imported {} files into {}: {added} added ({}), {} already held",
                    imported.len(),
                    store.display(),
                    format_size(bytes),
                    imported.len() - added
                )?;
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
                    outln!(
                        "{}  {:>12}  {:<22}  {}",
                        e.id,
                        e.size,
                        state,
                        Escaped(&e.name)
                    )?;
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
            let bar = Meter::new(total, "publishing", Unit::Bytes);
            let rt = runtime(true)?;
            let r = rt.block_on(crate::object::publish(&s, &to, verify, &|n| bar.inc(n)))?;
            bar.finish_and_clear();
            if json {
                print_json(&r)?;
            } else {
                outln!(
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
                )?;
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
            let bar = Meter::new(total, "verifying", Unit::Bytes);
            let report = s.verify(repair, &|n| bar.inc(n)).context("verify failed")?;
            bar.finish_and_clear();
            if json {
                print_json(&report)?;
            } else {
                print_verify(&report)?;
            }
            Ok(
                if report.bad.is_empty()
                    && report.bad_blocks.is_empty()
                    && report.rebuilt.is_empty()
                {
                    Outcome::Ok
                } else {
                    Outcome::BadData
                },
            )
        }
    }
}

pub(crate) fn dir_size(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) if m.is_file() => m.len(),
        _ => 0,
    }
}

pub(crate) fn print_verify(r: &VerifyReport) -> std::io::Result<()> {
    for b in &r.bad {
        outln!(
            "BAD  {}  {}: {}",
            b.id,
            Escaped(&b.name),
            Escaped(&b.reason)
        )?;
    }
    for b in &r.bad_blocks {
        match &b.reason {
            Some(reason) => outln!("BAD  {}  (partial): {reason}", b.id)?,
            None => outln!(
                "BAD  {}  (partial): blocks {:?} fail verification",
                b.id,
                b.blocks
            )?,
        }
    }
    for b in &r.rebuilt {
        outln!(
            "REBUILT  {}  {}: outboard rebuilt from the content ({})",
            b.id,
            Escaped(&b.name),
            Escaped(&b.reason)
        )?;
    }
    for s in &r.stray {
        outln!(
            "stray content/{} (not in the catalog; left alone)",
            Escaped(s)
        )?;
    }
    let verdict = if r.bad.is_empty() && r.bad_blocks.is_empty() && r.rebuilt.is_empty() {
        "all good".to_owned()
    } else if r.repaired {
        format!(
            "{} bad files dropped, {} partial files repaired, {} outboards rebuilt",
            r.bad.len(),
            r.bad_blocks.len(),
            r.rebuilt.len()
        )
    } else {
        format!(
            "{} bad files, {} partial files with bad blocks (run with --repair to drop them)",
            r.bad.len(),
            r.bad_blocks.len()
        )
    };
    outln!(
        "verified {} files, {}: {verdict}",
        r.checked,
        format_size(r.bytes)
    )?;
    Ok(())
}

/// One line of `fill store list --json`.
#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    id: fill_core::ContentId,
    size: u64,
    name: String,
    partial: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    partial_info: Option<PartialInfo>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PartialInfo {
    block_size: u64,
    blocks: u64,
    verified_blocks: u64,
    /// Verified byte ranges, `[offset, length]`.
    verified: Vec<(u64, u64)>,
}

pub(crate) fn list_store(s: &Store) -> Result<Vec<Listed>> {
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
