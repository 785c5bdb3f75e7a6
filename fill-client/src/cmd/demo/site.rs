//! `fill demo --site`: three appliances of one site, each with its own fill-server and its
//! own stale holdings, fill together from one origin, as an operator would run them: the
//! real `fill plan --site`, three `fill run --site` processes started at once, and
//! `fill site status`. What crossed the costly link is read from the origin's own metrics.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use fill_core::outboard::BlockSize;
use fill_core::rng::SplitMix64 as Rng;
use fill_core::size::format_size;
use fill_store::store::Store;
use serde::Serialize;

use super::{content, log_uniform, write};
use crate::Outcome;
use crate::cli::DemoArgs;
use crate::server_process::ServerProcess;

/// The appliances, and the share of the target each was pre-filled with before it shipped.
const APPLIANCES: [(&str, f64); 3] = [("oca-01", 0.6), ("oca-02", 0.3), ("oca-03", 0.0)];

/// How long the demo waits for the site fill.
const MOST: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize)]
struct SiteDemoReport {
    dir: String,
    target_files: u32,
    target_bytes: u64,
    /// Bytes of the target that no appliance held: what must cross the costly link.
    no_one_held_bytes: u64,
    /// What the origin's fill-server counted sending (content and outboards).
    origin_served_bytes: u64,
    /// `fill plan --site --json`.
    plan: serde_json::Value,
    /// Each appliance's `fill run --site --json`.
    appliances: Vec<serde_json::Value>,
    /// `fill site status --json` after the fill.
    status: serde_json::Value,
}

/// Runs `fill ARGS` (this binary) and returns its stdout; a failure names the command.
fn fill(args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the running fill binary")?;
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run fill {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "fill {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json(text: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).with_context(|| format!("{what} did not print JSON"))
}

pub(super) fn run(args: &DemoArgs, dir: &Path) -> Result<Outcome> {
    let say = |s: &str| -> std::io::Result<()> {
        if !args.json {
            outln!("{s}")?;
        }
        Ok(())
    };
    let root = dir.join("site");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("cannot clear {}", root.display()))?;
    }
    say(&format!(
        "fill demo --site: a site of {} appliances in {}",
        APPLIANCES.len(),
        root.display()
    ))?;

    // 1. The region's target, and what each appliance was pre-filled with.
    let mut rng = Rng(args.seed);
    let target_dir = root.join("region/target");
    let mut popularity = String::from("name,weight\n");
    let mut held: Vec<Vec<PathBuf>> = vec![Vec::new(); APPLIANCES.len()];
    let (mut target_bytes, mut no_one_held) = (0u64, 0u64);
    for i in 0..args.files {
        let name = format!(
            "titles/t{:04}/video_{}.mp4",
            i / 3,
            ["1080p", "720p", "480p"][i as usize % 3]
        );
        let size = log_uniform(&mut rng, 256.0 * 1024.0, 3.0 * 1048576.0);
        let path = target_dir.join(&name);
        write(&path, &content(args.seed, &format!("{name} site"), size))?;
        let _ = writeln!(popularity, "{name},{:.6}", 1.0 / f64::from(i + 1).powf(0.9));
        target_bytes += size;
        let mut anyone = false;
        for (a, (_, share)) in APPLIANCES.iter().enumerate() {
            if rng.unit() < *share {
                held[a].push(path.clone());
                anyone = true;
            }
        }
        if !anyone {
            no_one_held += size;
        }
    }
    let pop_path = root.join("region/popularity.csv");
    write(&pop_path, popularity.as_bytes())?;
    let block = BlockSize::DEFAULT;
    Store::new(root.join("origin"))?
        .import(std::slice::from_ref(&target_dir), block, &|_| {})
        .context("import into the origin")?;
    let mut stores = Vec::new();
    for ((name, _), files) in APPLIANCES.iter().zip(&held) {
        let dir = root.join(name);
        fs::create_dir_all(&dir)?;
        Store::new(&dir)?
            .import(files, block, &|_| {})
            .with_context(|| format!("import into {name}"))?;
        say(&format!(
            "  {name}: pre-filled with {} of {} target files",
            files.len(),
            args.files
        ))?;
        stores.push(dir);
    }
    let target_path = root.join("target.catalog");
    let builder = super::super::catalog::from_store(&root.join("origin"), &pop_path, false)?;
    fs::write(
        &target_path,
        builder.finish().context("build the target catalog")?,
    )
    .with_context(|| format!("cannot write {}", target_path.display()))?;
    say(&format!(
        "  target: {} files, {}; {} of it on no appliance: that much must cross the costly link",
        args.files,
        format_size(target_bytes),
        format_size(no_one_held)
    ))?;

    // 2. Each appliance's fill-server, the origin's, and the site file naming them.
    let origin = ServerProcess::start(&root.join("origin"))?;
    let servers = stores
        .iter()
        .map(|s| ServerProcess::start(s))
        .collect::<Result<Vec<_>>>()?;
    fs::write(
        root.join("sources.toml"),
        format!(
            "[[source]]\nname = \"origin\"\nkind = \"origin\"\nurl = \"{}\"\ncost_per_gib = 0.02\nbandwidth = \"400Mbps\"\n",
            origin.url
        ),
    )?;
    let mut site = String::from(
        "sources = \"sources.toml\"\ntarget = \"target.catalog\"\npeer_bandwidth = \"10Gbps\"\n",
    );
    for ((name, _), srv) in APPLIANCES.iter().zip(&servers) {
        let _ = write!(
            site,
            "\n[[appliance]]\nname = \"{name}\"\nurl = \"{}\"\nstore = \"{name}\"\ncapacity = \"1TB\"\n",
            srv.url
        );
    }
    let site_path = root.join("site.toml");
    fs::write(&site_path, site)?;
    let site_arg = site_path.to_str().context("the demo's path is not UTF-8")?;
    say(&format!(
        "  servers: origin {} (400 Mbit/s, 0.02/GiB), {} (fill-server on loopback); site file {}",
        origin.url,
        APPLIANCES
            .iter()
            .zip(&servers)
            .map(|((n, _), s)| format!("{n} {}", s.url))
            .collect::<Vec<_>>()
            .join(", "),
        site_path.display()
    ))?;

    // 3. The site plan, then every appliance's part of it, at once.
    let plan = json(
        &fill(&["plan", "--site", site_arg, "--json"])?,
        "fill plan --site",
    )?;
    if !args.json {
        outln!("\n$ fill plan --site {site_arg} --explain")?;
        out!("{}", fill(&["plan", "--site", site_arg, "--explain"])?)?;
        outln!("\n$ fill run --site {site_arg} --appliance NAME   (on each appliance, at once)")?;
    }
    let exe = std::env::current_exe().context("cannot find the running fill binary")?;
    let mut runs = Vec::new();
    for (name, _) in APPLIANCES {
        let log = fs::File::create(root.join(format!("{name}.log")))?;
        let child = Command::new(&exe)
            .args(["run", "--site", site_arg, "--appliance", name, "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the fill of {name}"))?;
        runs.push((name, child));
    }
    let started = Instant::now();
    let mut reports = Vec::new();
    for (name, mut child) in runs {
        while child.try_wait()?.is_none() {
            if started.elapsed() > MOST {
                let _ = child.kill();
                bail!("the site fill of {name} took over {} s", MOST.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "the site fill of {name} failed: {}",
                fs::read_to_string(root.join(format!("{name}.log"))).unwrap_or_default()
            );
        }
        reports.push(json(
            &String::from_utf8_lossy(&out.stdout),
            "fill run --site",
        )?);
    }
    let wall = started.elapsed();

    // 4. What the origin counted, the site's report, and every file checked.
    let origin_served = served_bytes(&origin.url)?;
    let status = json(
        &fill(&["site", "status", "--site", site_arg, "--json"])?,
        "fill site status",
    )?;
    for (dir, (name, _)) in stores.iter().zip(APPLIANCES) {
        let store = Store::open(dir)?;
        let r = store.verify(false, &|_| {})?;
        ensure!(
            r.bad.is_empty() && r.bad_blocks.is_empty() && r.checked == u64::from(args.files),
            "{name} does not hold its target: {} files checked, {} bad",
            r.checked,
            r.bad.len()
        );
    }
    if args.json {
        let report = SiteDemoReport {
            dir: root.display().to_string(),
            target_files: args.files,
            target_bytes,
            no_one_held_bytes: no_one_held,
            origin_served_bytes: origin_served,
            plan,
            appliances: reports,
            status,
        };
        serde_json::to_writer_pretty(crate::stdout(), &report)?;
        outln!()?;
        return Ok(Outcome::Ok);
    }
    for r in &reports {
        let s = &r["site"];
        let get = |k: &str| s[k].as_u64().unwrap_or(0);
        outln!(
            "  {:<8} {} from outside (plan {}), {} copied from the other appliances, in {:.1} s",
            s["appliance"].as_str().unwrap_or("?"),
            format_size(get("external_bytes")),
            format_size(get("planned_external_bytes")),
            format_size(get("inside_bytes")),
            r["duration_secs"].as_f64().unwrap_or(0.0)
        )?;
    }
    outln!("\n$ fill site status --site {site_arg}")?;
    out!("{}", fill(&["site", "status", "--site", site_arg])?)?;
    let alone = plan["alone"]["external_bytes"].as_u64().unwrap_or(0);
    outln!(
        "\nthe origin served {} (its own metrics) for {} that no appliance held ({:.3}x); \
         alone, the three would have fetched {}. Every appliance holds its {} target files, \
         each verified against its BLAKE3 id; the site filled in {:.1} s.",
        format_size(origin_served),
        format_size(no_one_held),
        origin_served as f64 / no_one_held.max(1) as f64,
        format_size(alone),
        args.files,
        wall.as_secs_f64()
    )?;
    Ok(Outcome::Ok)
}

/// Bytes of content and outboards a fill-server counted sending (its `/metrics`).
fn served_bytes(url: &str) -> Result<u64> {
    let rt = crate::common::runtime(false)?;
    let full = format!("{url}/metrics");
    let body = rt
        .block_on(crate::net::Net::new().get_small(&full, false, 4 << 20))
        .with_context(|| full.clone())?;
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .filter(|l| l.starts_with("fill_http_response_body_bytes_total{"))
        .filter(|l| l.contains("endpoint=\"content\"") || l.contains("endpoint=\"outboard\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum())
}
