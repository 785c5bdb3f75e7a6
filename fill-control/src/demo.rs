//! `fill-control demo`: a fleet on loopback in a temp dir, driven from site survey to live.
//! The control plane runs in this process on SQLite, with an SMTP sink receiving its
//! emails; an origin and three appliances are real `fill-server` processes; the station's
//! pre-fill and each appliance's burn-in fill are real `fill` runs (both binaries are
//! looked for beside this one). Each step is printed as the control plane records it, then
//! every email the sink received.
//!
//! The sink is not an SMTP server: it accepts every message on loopback and keeps its
//! recipient and subject, nothing else (about 60 lines, for the demo only; the tests use a
//! real one, aiosmtpd).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fill_core::lifecycle::State;
use fill_store::store::Store;
use sqlx::Row;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::auth::{self, Caller};
use crate::db::Db;
use crate::{api, server, waiting, workflow};

/// Files of the demo's region, and how many of them the pre-fill has.
const FILES: usize = 12;
const PREFILLED: usize = 10;
/// Bytes of each file.
const FILE_BYTES: usize = 4 << 20;
/// The appliances.
const SERIALS: [&str; 3] = ["demo-oca-1", "demo-oca-2", "demo-oca-3"];
/// How long the demo may take before it gives up.
const LIMIT: Duration = Duration::from_secs(120);

/// Processes killed when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A binary installed beside this one.
fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().context("where fill-control is")?;
    let bin = me.with_file_name(name);
    if !bin.exists() {
        bail!(
            "the demo runs {name}, which is not beside {} (build the workspace: cargo build --workspace)",
            me.display()
        );
    }
    Ok(bin)
}

/// Starts `fill-server` on a free loopback port; its address.
fn fill_server(bin: &Path, args: &[&str], children: &mut Children) -> Result<String> {
    use std::io::BufRead;
    let mut child = Command::new(bin)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("FILL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut lines = std::io::BufReader::new(child.stderr.take().context("stderr")?);
    children.0.push(child);
    let mut line = String::new();
    lines.read_line(&mut line)?;
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .filter(|a| a.parse::<std::net::SocketAddr>().is_ok())
        .with_context(|| format!("fill-server did not say where it listens: {line:?}"))?
        .to_owned();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    Ok(format!("http://{addr}"))
}

/// The sink: (recipients, subject) of each message received.
type Inbox = Arc<Mutex<Vec<(String, String)>>>;

async fn sink(listener: tokio::net::TcpListener, inbox: Inbox) {
    while let Ok((stream, _)) = listener.accept().await {
        let inbox = inbox.clone();
        tokio::spawn(async move {
            let _ = session(stream, inbox).await;
        });
    }
}

async fn session(stream: tokio::net::TcpStream, inbox: Inbox) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r.take(16 << 20));
    w.write_all(b"220 fill-demo-sink\r\n").await?;
    let (mut to, mut line) = (Vec::new(), String::new());
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        let answer: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
            b"250 fill-demo-sink\r\n"
        } else if cmd.starts_with("MAIL FROM") || cmd == "RSET" || cmd == "NOOP" {
            to.clear();
            b"250 ok\r\n"
        } else if cmd.starts_with("RCPT TO:") {
            to.push(
                line.trim_end()[8..]
                    .trim_matches(['<', '>', ' '])
                    .to_owned(),
            );
            b"250 ok\r\n"
        } else if cmd == "DATA" {
            w.write_all(b"354 go on\r\n").await?;
            let mut subject = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let l = line.trim_end();
                if l == "." {
                    break;
                }
                if let Some(s) = l.strip_prefix("Subject: ").filter(|_| subject.is_empty()) {
                    subject = s.to_owned();
                }
            }
            inbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((to.join(", "), subject));
            b"250 kept\r\n"
        } else if cmd == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 not here\r\n"
        };
        w.write_all(answer).await?;
    }
}

/// The content bytes `fill-server` at `base` has served (its `/metrics`).
fn served(base: &str) -> Result<u64> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        c,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    c.take(16 << 20).read_to_string(&mut text)?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("fill_http_response_body_bytes_total{"))
        .filter(|l| l.contains("endpoint=\"content\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// The demo's data: an origin store with every file, and the region's catalog before
/// (`PREFILLED` files: what the station pre-fills) and after (all: today's target).
fn region(dir: &Path) -> Result<(PathBuf, Vec<u8>, Vec<u8>)> {
    let origin = dir.join("origin");
    let store = Store::new(&origin)?;
    let mut rng = fill_core::rng::SplitMix64(7);
    let mut catalogs = Vec::new();
    for (batch, range) in [(0, 0..PREFILLED), (1, PREFILLED..FILES)] {
        let src = dir.join(format!("titles-{batch}"));
        std::fs::create_dir_all(&src)?;
        for k in range {
            let bytes: Vec<u8> = (0..FILE_BYTES / 8)
                .flat_map(|_| rng.next_u64().to_le_bytes())
                .collect();
            std::fs::write(src.join(format!("title-{k:02}.mp4")), bytes)?;
        }
        store
            .import(&[src], Default::default(), &|_| {})
            .context("importing the demo's titles")?;
        catalogs.push(store.catalog()?.bytes().to_vec());
    }
    let after = catalogs.pop().context("two catalogs")?;
    let before = catalogs.pop().context("two catalogs")?;
    Ok((origin, before, after))
}

/// Runs the demo in `dir`.
pub fn run(dir: &Path) -> Result<()> {
    let started = Instant::now();
    let (fill, fill_server_bin) = (sibling("fill")?, sibling("fill-server")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut children = Children(Vec::new());
    let inbox: Inbox = Arc::default();
    let (db, cp) = rt.block_on(async {
        let smtp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let smtp_port = smtp.local_addr()?.port();
        tokio::spawn(sink(smtp, inbox.clone()));
        let db = Db::open(&format!("sqlite:{}", dir.join("control.db").display())).await?;
        let listener = api::bind("127.0.0.1:0").await?;
        let cp = format!("http://{}", listener.local_addr()?);
        let config: server::Config = toml::from_str(&format!(
            "mail_interval = 1\ntick = \"200ms\"\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nfrom = \"fleet@demo.test\"\n"
        ))?;
        let serving = db.clone();
        tokio::spawn(async move {
            if let Err(e) = server::run(serving, listener, config).await {
                eprintln!("fill-control demo: the control plane stopped: {e:#}");
            }
        });
        anyhow::Ok((db, cp))
    })?;
    println!(
        "fill-control demo: a fleet on loopback in {}",
        dir.display()
    );
    println!(
        "  control plane  {cp} (SQLite {})",
        dir.join("control.db").display()
    );
    let (origin_dir, before, after) = region(dir)?;
    let origin = fill_server(
        &fill_server_bin,
        &["--store", &origin_dir.to_string_lossy()],
        &mut children,
    )?;
    println!(
        "  origin         {origin} ({FILES} titles, {} MiB each)",
        FILE_BYTES >> 20
    );
    let now = api::wall_clock;
    let ops = Caller::Ops {
        email: "ops@fleet.demo".into(),
    };
    let partner = Caller::Partner {
        email: "eng@isp.demo".into(),
        partner: "isp-demo".into(),
    };
    rt.block_on(auth::add_user(
        &db,
        "eng@isp.demo",
        "partner",
        Some("isp-demo"),
        "demo password, not secret",
        now(),
    ))?;
    rt.block_on(auth::add_user(
        &db,
        "ops@fleet.demo",
        "ops",
        None,
        "demo password, not secret",
        now(),
    ))?;
    let step = |n: u32, what: &str| {
        println!("{:>5.1}s {n:>2}. {what}", started.elapsed().as_secs_f64());
    };
    // 1. The survey.
    let survey: workflow::Survey = serde_json::from_value(serde_json::json!({
        "site": "DEMO-1",
        "shipping_address": ["ISP Demo", "1 Loopback Road", "127.0.0.1"],
        "contacts": [
            {"name": "Eng", "email": "eng@isp.demo", "role": "engineering"},
            {"name": "NOC", "email": "noc@isp.demo", "role": "noc"},
            {"name": "Shipping", "email": "ship@isp.demo", "role": "shipping"}
        ],
        "network": {"asn": 64500, "ipv4": ["192.0.2.0/24"], "bgp_neighbors": ["192.0.2.1"]},
        "tz": "UTC"
    }))?;
    let dep = rt
        .block_on(workflow::submit_survey(
            &db,
            &partner,
            &survey,
            (&cp, now()),
        ))
        .map_err(|e| anyhow::anyhow!("survey: {e}"))?;
    step(
        1,
        &format!(
            "isp-demo submits the survey of site DEMO-1: deployment {dep}; noc@ and ship@ are invited"
        ),
    );
    // 2. Allocation.
    let mut tokens = Vec::new();
    for serial in SERIALS {
        let a = workflow::Allocation {
            serial: serial.into(),
            hardware: "storage".into(),
            capacity: "1TB".into(),
            catalog: "eu-demo".into(),
        };
        let token = rt
            .block_on(workflow::allocate(&db, &ops, &dep, &a, now()))
            .map_err(|e| anyhow::anyhow!("allocate: {e}"))?;
        tokens.push(token);
    }
    step(
        2,
        &format!(
            "ops allocate {} (storage, 1 TB, region eu-demo)",
            SERIALS.join(", ")
        ),
    );
    // 3. The station's pre-fill, reported.
    let station = rt.block_on(auth::issue(&db.pool, "station", "factory-1", now(), 3600))?;
    let station_file = dir.join("station.token");
    std::fs::write(&station_file, &station)?;
    let before_file = dir.join("region-before.catalog");
    std::fs::write(&before_file, &before)?;
    let after_file = dir.join("region-today.catalog");
    std::fs::write(&after_file, &after)?;
    let stores: Vec<PathBuf> = SERIALS.iter().map(|s| dir.join(s)).collect();
    let mut prefill = Command::new(&fill);
    prefill
        .args(["prefill", "--target"])
        .arg(&before_file)
        .args(["--source", &origin]);
    prefill
        .args(["--report-to", &cp, "--station-token"])
        .arg(&station_file);
    for (serial, store) in SERIALS.iter().zip(&stores) {
        std::fs::create_dir_all(store)?;
        prefill.arg("--store").arg(store).args(["--serial", serial]);
    }
    let out = prefill.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "the pre-fill failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let prefilled = served(&origin)?;
    step(
        3,
        &format!(
            "station factory-1 pre-fills all three ({PREFILLED} titles, {} from the origin once for all) with `fill prefill --report-to`",
            fill_core::size::format_size(prefilled)
        ),
    );
    // 4, 5. Shipped, delivered; meanwhile the region's catalog moved on.
    for serial in SERIALS {
        let ship = workflow::TransitionAsk {
            to: "in_transit".into(),
            reason: String::new(),
            carrier: Some("DHL".into()),
            tracking: Some(format!("JD0146{}", &serial[9..])),
        };
        rt.block_on(workflow::transition(&db, &ops, serial, &ship, now()))
            .map_err(|e| anyhow::anyhow!("ship: {e}"))?;
    }
    step(4, "ops ship them with DHL, tracking numbers JD01461..3");
    for serial in SERIALS {
        let ask = workflow::TransitionAsk {
            to: "delivered".into(),
            reason: String::new(),
            carrier: None,
            tracking: None,
        };
        rt.block_on(workflow::transition(&db, &partner, serial, &ask, now()))
            .map_err(|e| anyhow::anyhow!("deliver: {e}"))?;
    }
    let today = blake3::hash(&after).to_hex().to_string();
    rt.block_on(async {
        waiting::put_catalog(&db, &ops, &today, bytes::Bytes::from(after.clone()), now()).await?;
        let t = waiting::RegionTarget {
            catalog: today.clone(),
        };
        waiting::set_region(&db, &ops, "eu-demo", &t, now()).await
    })
    .map_err(|e| anyhow::anyhow!("region: {e}"))?;
    let pricing = server::Config::default().waiting.pricing()?;
    let price = rt
        .block_on(waiting::price(&db, SERIALS[0], &pricing))
        .map_err(|e| anyhow::anyhow!("price: {e}"))?
        .context("no price")?;
    step(
        5,
        &format!(
            "delivered; the region gained {} titles meanwhile: each burn-in now needs {} ({:.6} {}), \
         and each day uninstalled adds {} by the churn model",
            FILES - PREFILLED,
            fill_core::size::format_size(price.bytes_now),
            price.cost_now,
            price.currency,
            fill_core::size::format_size(price.bytes_per_day),
        ),
    );
    // 6. Installed: each appliance's fill-server reports in, BGP up.
    let bgp = dir.join("birdc-standin.sh");
    std::fs::write(
        &bgp,
        "printf 'demo BGP --- up 12:00 Established\\n  BGP state: Established\\n'\n",
    )?;
    let sources = dir.join("sources.toml");
    std::fs::write(
        &sources,
        format!(
            "[[source]]\nname = \"origin\"\nkind = \"origin\"\nurl = \"{origin}\"\ncost_per_gib = 0.02\nbandwidth = \"10Gbps\"\n"
        ),
    )?;
    for ((serial, store_dir), token) in SERIALS.iter().zip(&stores).zip(&tokens) {
        let ask = workflow::TransitionAsk {
            to: "installed".into(),
            reason: "racked".into(),
            carrier: None,
            tracking: None,
        };
        rt.block_on(workflow::transition(&db, &partner, serial, &ask, now()))
            .map_err(|e| anyhow::anyhow!("install: {e}"))?;
        // The appliance's own record, and the target it learns at install.
        let store = Store::new(store_dir)?;
        for s in [
            State::Allocated,
            State::Prefilling,
            State::InTransit,
            State::Delivered,
            State::Installed,
        ] {
            store.transition(s, now(), "demo")?;
        }
        store.record_target(&after)?;
        let token_file = dir.join(format!("{serial}.token"));
        std::fs::write(&token_file, token)?;
        let burn_in = format!(
            "{} run --target {} --sources {} --store {} --capacity 1TB > {} 2>&1",
            fill.display(),
            after_file.display(),
            sources.display(),
            store_dir.display(),
            dir.join(format!("{serial}-burn-in.log")).display()
        );
        let config = dir.join(format!("{serial}.toml"));
        std::fs::write(
            &config,
            format!(
                "[lifecycle]\ncheck_interval = \"1s\"\nmin_free = \"0B\"\n\n\
                 [control]\nurl = \"{cp}\"\nserial = \"{serial}\"\ntoken_file = \"{}\"\ninterval = \"500ms\"\n\
                 bgp_command = [\"sh\", \"{}\"]\non_burn_in = [\"sh\", \"-c\", {}]\n",
                token_file.display(),
                bgp.display(),
                toml::Value::String(burn_in)
            ),
        )?;
        let config = config.to_string_lossy().into_owned();
        let store_arg = store_dir.to_string_lossy().into_owned();
        fill_server(
            &fill_server_bin,
            &["--store", &store_arg, "--config", &config],
            &mut children,
        )?;
    }
    step(
        6,
        "installed: each appliance's fill-server reports in with its BGP session up (a birdc stand-in)",
    );
    // Each step as the control plane records it, until all are live.
    let mut shown = std::collections::HashSet::new();
    let mut n = 6;
    loop {
        let rows = rt.block_on(
            sqlx::query(
                "SELECT appliance, seq, to_state, actor, reason FROM events \
                 WHERE to_state IN ('burn_in', 'live') ORDER BY time, appliance, seq",
            )
            .fetch_all(&db.pool),
        )?;
        for r in rows {
            let (serial, seq): (String, i64) = (r.try_get("appliance")?, r.try_get("seq")?);
            if !shown.insert((serial.clone(), seq)) {
                continue;
            }
            let (to, actor, reason): (String, String, String) = (
                r.try_get("to_state")?,
                r.try_get("actor")?,
                r.try_get("reason")?,
            );
            n += 1;
            step(n, &format!("{serial} → {to} ({actor}: {reason})"));
        }
        let live: i64 = rt
            .block_on(
                sqlx::query("SELECT COUNT(*) AS n FROM appliances WHERE state = 'live'")
                    .fetch_one(&db.pool),
            )?
            .try_get("n")?;
        if live == SERIALS.len() as i64 {
            break;
        }
        if started.elapsed() > LIMIT {
            bail!(
                "not every appliance was live after {LIMIT:?} (logs in {})",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "{:>5.1}s all {} appliances live; their burn-in fills took {} from the origin (the price said {} each)",
        started.elapsed().as_secs_f64(),
        SERIALS.len(),
        fill_core::size::format_size(served(&origin)? - prefilled),
        fill_core::size::format_size(price.bytes_now)
    );
    // The outbox drains every second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = rt
            .block_on(
                sqlx::query("SELECT COUNT(*) AS n FROM emails WHERE sent IS NULL")
                    .fetch_one(&db.pool),
            )?
            .try_get("n")?;
        if left == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = inbox.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!("\nemails the SMTP sink received ({}):", got.len());
    for (to, subject) in &got {
        println!("  {to:<16} {subject}");
    }
    drop(children);
    Ok(())
}
