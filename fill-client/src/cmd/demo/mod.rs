//! `fill demo`: the main job on a small synthetic region, start to end, in seconds.
//!
//! The region is seeded: a target of media-like files (renditions and sidecars), and a stale
//! appliance pre-filled weeks ago (most files identical, some re-encoded, some missing, some
//! retired). One missing file was being filled when the appliance shipped, so it is held
//! partially, with its first blocks verified.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fill_core::outboard::BlockSize;
use fill_core::size::format_size;
use fill_store::store::Store;
use serde::Serialize;

use fill_core::rng::SplitMix64 as Rng;

use super::delta::{DeltaReport, delta_table};
use crate::Outcome;
use crate::cli::DemoArgs;
use crate::common::compute_delta;

mod site;

/// Log-uniform in [lo, hi).
pub(super) fn log_uniform(rng: &mut Rng, lo: f64, hi: f64) -> u64 {
    (lo.ln() + rng.unit() * (hi.ln() - lo.ln())).exp() as u64
}

/// Deterministic, incompressible content for one version of one file.
pub(super) fn content(seed: u64, key: &str, size: u64) -> Vec<u8> {
    let k = blake3::hash(format!("fill demo {seed} {key}").as_bytes());
    let mut out = vec![0u8; size as usize];
    blake3::Hasher::new_keyed(k.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

#[derive(Debug, Serialize)]
struct DemoReport {
    dir: String,
    target_files: u32,
    identical: u32,
    reencoded: u32,
    missing: u32,
    retired: u32,
    capacity: u64,
    delta: DeltaReport,
    fill: crate::fill::FillReport,
    offload_after_fill: f64,
    verified_files: u64,
    verified_bytes: u64,
}

pub(super) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<Outcome> {
    let tmp;
    let dir: PathBuf = match &args.dir {
        Some(d) => {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("fill-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            tmp.path().to_owned()
        }
    };
    if args.site {
        return site::run(args, &dir);
    }
    let say = |s: &str| -> std::io::Result<()> {
        if !args.json {
            outln!("{s}")?;
        }
        Ok(())
    };
    let mut rng = Rng(args.seed);
    let (target_dir, stale_dir) = (dir.join("region/target"), dir.join("region/stale"));
    for d in [
        &target_dir,
        &stale_dir,
        &dir.join("origin"),
        &dir.join("peer"),
        &dir.join("appliance"),
    ] {
        if d.exists() {
            fs::remove_dir_all(d).with_context(|| format!("cannot clear {}", d.display()))?;
        }
    }
    say(&format!(
        "fill demo: a synthetic region in {}",
        dir.display()
    ))?;

    // 1. The region: a target catalog, and a stale appliance.
    let renditions = [
        "video_1080p.mp4",
        "video_720p.mp4",
        "video_480p.mp4",
        "audio_en.mp4",
    ];
    let sidecars = ["subs_en.dfxp", "boxart.jpg", "manifest.xml"];
    let (mut identical, mut reencoded, mut missing) = (0, 0, 0);
    let mut popularity = String::from("name,weight\n");
    let mut first_missing: Option<String> = None;
    let mut peer_names: Vec<String> = Vec::new();
    // Zipf(0.9) popularity over a seeded shuffle of the files.
    let mut ranks: Vec<u32> = (1..=args.files).collect();
    for k in (1..ranks.len()).rev() {
        ranks.swap(k, (rng.next_u64() % (k as u64 + 1)) as usize);
    }
    for i in 0..args.files {
        let title = i / 3;
        let sidecar = rng.unit() < 0.2;
        let name = if sidecar {
            format!(
                "titles/t{title:04}/{}-{i}",
                sidecars[(rng.next_u64() % 3) as usize]
            )
        } else {
            format!(
                "titles/t{title:04}/{}-{i}",
                renditions[(rng.next_u64() % 4) as usize]
            )
        };
        let size = if sidecar {
            log_uniform(&mut rng, 1024.0, 65536.0)
        } else {
            log_uniform(&mut rng, 256.0 * 1024.0, 3.0 * 1048576.0)
        };
        let data = content(args.seed, &format!("{name} v1"), size);
        write(&target_dir.join(&name), &data)?;
        if i % 3 == 0 {
            peer_names.push(name.clone());
        }
        let _ = writeln!(
            popularity,
            "{name},{:.6}",
            1.0 / f64::from(ranks[i as usize]).powf(0.9)
        );
        let role = rng.unit();
        if role < 0.70 {
            write(&stale_dir.join(&name), &data)?;
            identical += 1;
        } else if role < 0.80 {
            let old = (size as f64 * (0.9 + 0.2 * rng.unit())) as u64;
            write(
                &stale_dir.join(&name),
                &content(args.seed, &format!("{name} v0"), old),
            )?;
            reencoded += 1;
        } else {
            missing += 1;
            if first_missing.is_none() && !sidecar {
                first_missing = Some(name.clone());
            }
        }
    }
    let retired = (args.files / 10).max(1);
    for j in 0..retired {
        let name = format!("titles/r{j:04}/video_720p.mp4");
        let size = log_uniform(&mut rng, 256.0 * 1024.0, 2.0 * 1048576.0);
        write(
            &stale_dir.join(&name),
            &content(args.seed, &format!("{name} retired"), size),
        )?;
    }
    let pop_path = dir.join("region/popularity.csv");
    write(&pop_path, popularity.as_bytes())?;
    say(&format!(
        "  region: {} target files; appliance holds {identical} identical, {reencoded} re-encoded, \
         {missing} missing, {retired} retired",
        args.files
    ))?;

    // A peer in the same site holds a third of the target.
    let peer_files: Vec<PathBuf> = peer_names.iter().map(|n| target_dir.join(n)).collect();

    // 2. Stores: the origin holds the target; the appliance its stale copy.
    let origin = Store::new(dir.join("origin"))?;
    let appliance = Store::new(dir.join("appliance"))?;
    let block = BlockSize::DEFAULT;
    origin
        .import(std::slice::from_ref(&target_dir), block, &|_| {})
        .context("import into the origin")?;
    appliance
        .import(std::slice::from_ref(&stale_dir), block, &|_| {})
        .context("import into the appliance")?;
    let peer = Store::new(dir.join("peer"))?;
    peer.import(&peer_files, block, &|_| {})
        .context("import into the peer")?;
    say(
        "  imported: origin store (the target), peer store (a third of it), appliance store (the stale copy)",
    )?;

    // A fill was interrupted: the first blocks of one missing file are already verified.
    let origin_file = origin.catalog()?;
    let origin_cat = origin_file.validate()?;
    if let Some(name) = &first_missing
        && let Some(i) = (0..origin_cat.len()).find(|&i| origin_cat.name(i) == name)
    {
        let id = origin_cat.id(i);
        let ob = origin.outboard(&id)?;
        let data = fs::read(origin.content_path(&id))?;
        let mut state = appliance.begin_partial(&ob, name)?;
        let half = ob.block_count() / 2;
        let mut part = fs::read(appliance.partial_data_path(&id))?;
        for b in 0..half {
            let (off, len) = ob.block_range(b);
            let block_bytes = &data[off as usize..(off + len) as usize];
            ob.verify_block(b, block_bytes)?;
            part[off as usize..(off + len) as usize].copy_from_slice(block_bytes);
            state.file.set_verified(b, true);
        }
        fs::write(appliance.partial_data_path(&id), &part)?;
        appliance.save_partial(&state)?;
        say(&format!(
            "  interrupted fill: {half} of {} blocks of {name} already verified",
            ob.block_count()
        ))?;
    }

    // 3. The target catalog, ranked by popularity.
    let target_path = dir.join("target.catalog");
    let builder = super::catalog::from_store(&dir.join("origin"), &pop_path, false)?;
    let bytes = builder.finish().context("build the target catalog")?;
    fs::write(&target_path, bytes)
        .with_context(|| format!("cannot write {}", target_path.display()))?;
    let target_file = fill_store::store::CatalogFile::open(&target_path)?;
    let target = target_file.validate()?;

    // 4. The delta the burn-in fill must apply, with room for ~90% of the target.
    let capacity = target.total_size() / 10 * 9;
    let sd = compute_delta(&target, &appliance, capacity)?;
    let d = &sd.delta;
    say(&format!(
        "\ndelta for a {} appliance:",
        format_size(capacity)
    ))?;
    if !args.json {
        out!("{}", delta_table(&target, d, capacity))?;
        outln!("\nfirst fetches, most popular first:")?;
        for f in d.fetch.iter().take(5) {
            let e = f.entry as usize;
            outln!(
                "  {}  {:>9} at {:>9}  {}",
                &target.id(e).to_string()[..16],
                format_size(f.length),
                f.offset,
                target.name(e)
            )?;
        }
    }

    // 5. The burn-in fill: the origin and a peer served over loopback by fill-server.
    let sources_path = dir.join("sources.toml");
    let rt = crate::common::runtime(true)?;
    let (fill_report, after) = rt.block_on(async {
        let origin_srv = crate::server_process::ServerProcess::start(&dir.join("origin"))?;
        let peer_srv = crate::server_process::ServerProcess::start(&dir.join("peer"))?;
        let (origin_url, peer_url) = (&origin_srv.url, &peer_srv.url);
        let toml = format!(
            "[[source]]\nname = \"peer\"\nkind = \"peer\"\nurl = \"{peer_url}\"\ncost_per_gib = 0\nbandwidth = \"10Gbps\"\n\n\
             [[source]]\nname = \"origin\"\nkind = \"origin\"\nurl = \"{origin_url}\"\ncost_per_gib = 0.02\nbandwidth = \"1.2Gbps\"\n"
        );
        fs::write(&sources_path, toml).context("cannot write sources.toml")?;
        say(&format!("\nservers: origin {origin_url}, peer {peer_url} (fill-server on loopback)"))?;
        let specs = crate::sources::load(&sources_path)?;
        let remotes = crate::remotes::Remotes::http(crate::net::Net::new());
        let holdings = crate::sources::holdings(&specs, &remotes).await?;
        let sources: Vec<_> = specs.into_iter().map(|s| s.source).collect();
        let lock = appliance.lock()?;
        let writer = crate::write::Writer::start(crate::write::Backend::Auto, &dir.join("appliance/.fill/tmp")).await?;
        let bar = crate::fill::Progress::new(d.bytes_to_fetch, "filling", &sources);
        let stores = [crate::fill::StoreJob::of(&appliance, &sd)];
        let job = crate::fill::FillJob {
            stores: &stores,
            target: &target,
            sources: &sources,
            holdings: &holdings,
            timeout: crate::net::DEFAULT_TIMEOUT,
            remotes: &remotes,
            routes: None,
            relays: None,
            verify_threads: 0,
        };
        let report = crate::fill::run(job, &writer, &bar).await;
        bar.finish_and_clear();
        drop(lock);
        drop((origin_srv, peer_srv));
        let report = report?;
        let after = compute_delta(&target, &appliance, capacity)?;
        anyhow::Ok((report, after))
    })?;
    if !args.json {
        out!("{}", super::run::run_table(&fill_report, false))?;
    }
    anyhow::ensure!(
        after.delta.fetch.is_empty(),
        "the appliance still misses data after the fill"
    );

    // 6. Every stored byte re-verified against its id.
    let mut verified_files = 0;
    let mut verified_bytes = 0;
    for s in [&origin, &appliance] {
        let r = s.verify(false, &|_| {})?;
        anyhow::ensure!(
            r.bad.is_empty() && r.bad_blocks.is_empty(),
            "store {} failed verification",
            s.root().display()
        );
        verified_files += r.checked;
        verified_bytes += r.bytes;
    }
    say(&format!(
        "\nthe appliance holds its target: offload {:.1}%; verified {verified_files} stored files ({}) \
         against their BLAKE3 ids: all good",
        100.0 * after.delta.offload_before,
        format_size(verified_bytes)
    ))?;
    if args.dir.is_some() {
        say(&format!(
            "its servers are gone; serve {} and {} with fill-server on the ports in {} to run \
             `fill run --target {} --store {} --sources {} --capacity {capacity}` by hand",
            dir.join("origin").display(),
            dir.join("peer").display(),
            sources_path.display(),
            target_path.display(),
            dir.join("appliance").display(),
            sources_path.display()
        ))?;
    }
    if args.json {
        let report = DemoReport {
            dir: dir.display().to_string(),
            target_files: args.files,
            identical,
            reencoded,
            missing,
            retired,
            capacity,
            delta: DeltaReport::new(&target, &sd, capacity),
            fill: fill_report,
            offload_after_fill: after.delta.offload_before,
            verified_files,
            verified_bytes,
        };
        serde_json::to_writer_pretty(crate::stdout(), &report)?;
        outln!()?;
    }
    Ok(Outcome::Ok)
}
