//! `fill bench dataset`: a seeded, media-like dataset for benchmarks (what `fill bench
//! dataset --help` says), written by this crate so no benchmark needs a file from outside
//! the repository.
//!
//! Bytes come from BLAKE3's extendable output keyed by (seed, file, version): a segment of
//! a file is a range of one such stream, so a patched file shares its unpatched ranges
//! with the original exactly, and nothing else shares anything.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use fill_core::rng::SplitMix64;
use fill_core::size::format_size;
use serde::Serialize;

use crate::Outcome;
use crate::cli::BenchCommand;
use crate::common::print_json;

const MIB: u64 = 1 << 20;

/// What was written.
#[derive(Debug, Default, Serialize)]
struct Written {
    target_files: u64,
    target_bytes: u64,
    identical: u64,
    reencoded: u64,
    patched: u64,
    missing: u64,
    retired: u64,
    stale_bytes: u64,
}

pub(crate) fn bench(cmd: BenchCommand) -> Result<Outcome> {
    match cmd {
        BenchCommand::Dataset {
            root,
            total_gib,
            seed,
            json,
        } => {
            if !(total_gib > 0.0 && total_gib <= 4096.0) {
                bail!("--total-gib {total_gib} is not between 0 and 4096");
            }
            let w = dataset(&root, (total_gib * (1u64 << 30) as f64) as u64, seed)?;
            if json {
                print_json(&w)?;
            } else {
                outln!(
                    "{}: target {} files, {}; stale {}: {} identical, {} re-encoded, {} patched, {} missing, {} retired; popularity.csv",
                    root.display(),
                    w.target_files,
                    format_size(w.target_bytes),
                    format_size(w.stale_bytes),
                    w.identical,
                    w.reencoded,
                    w.patched,
                    w.missing,
                    w.retired
                )?;
            }
            Ok(Outcome::Ok)
        }
    }
}

/// A range of the stream of (seed, file, version), from `at`, `len` bytes.
#[derive(Debug, Clone, Copy)]
struct Segment {
    file: u64,
    version: u64,
    at: u64,
    len: u64,
}

fn write_segments(path: &Path, seed: u64, segments: &[Segment]) -> Result<u64> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(4 * MIB as usize, f);
    let mut buf = vec![0u8; 4 * MIB as usize];
    let mut total = 0;
    for s in segments {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&s.file.to_le_bytes());
        key[16..24].copy_from_slice(&s.version.to_le_bytes());
        let mut stream = blake3::Hasher::new_keyed(&key).finalize_xof();
        stream.set_position(s.at);
        let mut left = s.len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            stream.fill(&mut buf[..n]);
            out.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", path.display()))?;
            left -= n as u64;
        }
        total += s.len;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(total)
}

/// A file's size: renditions (85%) log-normal around 90 MiB (sigma 0.6) within 20..400 MiB,
/// sidecars log-uniform in 4 KiB..2 MiB.
fn draw_size(rng: &mut SplitMix64) -> (u64, bool) {
    if rng.chance(85) {
        // Box-Muller from two uniforms.
        let (u1, u2) = (rng.unit().max(1e-12), rng.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let mib = (90f64.ln() + 0.6 * z).exp().clamp(20.0, 400.0);
        ((mib * MIB as f64) as u64, true)
    } else {
        let (lo, hi) = ((4u64 << 10) as f64, (2 * MIB) as f64);
        ((lo * (hi / lo).powf(rng.unit())) as u64, false)
    }
}

fn dataset(root: &Path, total: u64, seed: u64) -> Result<Written> {
    if root.join("target").exists() || root.join("stale").exists() {
        bail!(
            "{} holds a dataset already (target/ or stale/): remove it or choose another --root",
            root.display()
        );
    }
    let mut rng = SplitMix64(seed ^ 0xDA7A_5E7D_0000_0001);
    let mut w = Written::default();
    let mut names = Vec::new();
    let mut file = 0u64;
    while w.target_bytes < total {
        let (size, rendition) = draw_size(&mut rng);
        let title = file / 6;
        let name = if rendition {
            format!(
                "titles/t{title:04}/video_{}.mp4",
                ["480p", "720p", "1080p", "2160p"][(file % 4) as usize]
            )
        } else {
            format!(
                "titles/t{title:04}/{}",
                ["subs_en.dfxp", "artwork.jpg", "manifest.xml"][(file % 3) as usize]
            )
        };
        let name = format!("{name}-{file}");
        let base = [Segment {
            file,
            version: 0,
            at: 0,
            len: size,
        }];
        write_segments(&root.join("target").join(&name), seed, &base)?;
        w.target_files += 1;
        w.target_bytes += size;
        let stale = root.join("stale").join(&name);
        match rng.below(100) {
            0..70 => {
                fs::create_dir_all(stale.parent().unwrap_or(root))?;
                fs::copy(root.join("target").join(&name), &stale)
                    .with_context(|| format!("cannot write {}", stale.display()))?;
                w.identical += 1;
                w.stale_bytes += size;
            }
            70..75 => {
                // Re-encoded: other bytes throughout, the size within 10%.
                let len = (size as f64 * (0.9 + 0.2 * rng.unit())) as u64;
                let seg = [Segment {
                    file,
                    version: 1,
                    at: 0,
                    len,
                }];
                w.stale_bytes += write_segments(&stale, seed, &seg)?;
                w.reencoded += 1;
            }
            75..80 if size > 8 * MIB => {
                w.stale_bytes += write_segments(&stale, seed, &patched(file, size, &mut rng))?;
                w.patched += 1;
            }
            _ => w.missing += 1,
        }
        names.push(name);
        file += 1;
    }
    // Retired: files the stale copy holds and the target no longer lists (~10% by count).
    for r in 0..(w.target_files / 10).max(1) {
        let (size, _) = draw_size(&mut rng);
        let seg = [Segment {
            file: u64::MAX - r,
            version: 0,
            at: 0,
            len: size,
        }];
        let path = root.join("stale").join(format!("retired/r{r:04}.mp4"));
        w.stale_bytes += write_segments(&path, seed, &seg)?;
        w.retired += 1;
    }
    // Popularity: Zipf(0.9) over a seeded order of the target's files.
    let mut order: Vec<usize> = (0..names.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut csv = String::from("name,weight\n");
    for (rank, &i) in order.iter().enumerate() {
        csv += &format!("{},{:.6}\n", names[i], 1.0 / ((rank + 1) as f64).powf(0.9));
    }
    fs::create_dir_all(root)?;
    fs::write(root.join("popularity.csv"), csv)
        .with_context(|| format!("cannot write {}", root.join("popularity.csv").display()))?;
    Ok(w)
}

/// An older version that shares most blocks with the current one: its first 2 MiB (a
/// container header) other bytes, two 1 MiB blocks replaced, 12,345 bytes inserted in the
/// middle (everything after shifted), 4 MiB appended.
fn patched(file: u64, size: u64, rng: &mut SplitMix64) -> Vec<Segment> {
    let cur = |at, len| Segment {
        file,
        version: 0,
        at,
        len,
    };
    let old = |at, len| Segment {
        file,
        version: 1,
        at,
        len,
    };
    let mid = size / 2;
    // Two blocks to replace, one in each half, past the header.
    let b1 = 2 * MIB + rng.below((mid - 3 * MIB) / MIB) * MIB;
    let b2 = mid + rng.below((size - mid - MIB) / MIB) * MIB;
    vec![
        old(0, 2 * MIB),
        cur(2 * MIB, b1 - 2 * MIB),
        old(b1, MIB),
        cur(b1 + MIB, mid - b1 - MIB),
        old(size, 12_345),
        cur(mid, b2 - mid),
        old(b2, MIB),
        cur(b2 + MIB, size - b2 - MIB),
        old(size + 12_345, 4 * MIB),
    ]
}
