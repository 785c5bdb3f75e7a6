//! The portal in headless Chromium, driven over WebDriver (Debian's chromium-driver, with
//! fantoccini): a partner signs in, submits a survey, follows an appliance — a real
//! fill-server reporting — to live, reads its emails, drains it and sees it drained; ops see
//! the fleet. Each page is shot at desktop and phone widths (into `$FILL_PORTAL_SCREENSHOTS`
//! when set, as docs/portal/ was made).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use fill_core::lifecycle::State;
use fill_store::store::Store;
use serde_json::json;

use crate::harness::{Smtp, free_port};
use crate::{Control, Http};

/// Processes killed when dropped.
struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// chromedriver on a loopback port, and a WebDriver session of headless Chromium.
async fn browser(profile: &Path, kill: &mut Kill) -> Client {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "the browser test needs chromedriver: apt-get install chromium-driver (.ci/run does)",
        );
    kill.0.push(driver);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--hide-scrollbars", "--force-device-scale-factor=1",
                        format!("--user-data-dir={}", profile.display())]}),
    );
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session")
}

/// Shoots the page at desktop and phone widths into `dir` as NAME.png and NAME-phone.png;
/// each must be a PNG of a page that is not blank.
async fn shoot(b: &Client, dir: &Path, name: &str) {
    for (suffix, w, h) in [("", 1280, 900), ("-phone", 390, 844)] {
        b.set_window_size(w, h).await.unwrap();
        b.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        let png = b.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}{suffix}: not a PNG");
        assert!(
            png.len() > 8_000,
            "{name}{suffix}: {} bytes, a blank page?",
            png.len()
        );
        std::fs::write(dir.join(format!("{name}{suffix}.png")), png).unwrap();
    }
    b.set_window_size(1280, 900).await.unwrap();
}

async fn fill_in(b: &Client, css: &str, text: &str) {
    let e = b
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"));
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"))
        .click()
        .await
        .unwrap();
}

/// The page's text, once it has a body (a page still loading is waited for, 10 s).
async fn body(b: &Client) -> String {
    let started = Instant::now();
    loop {
        if let Ok(e) = b.find(Locator::Css("body")).await
            && let Ok(t) = e.text().await
        {
            return t;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page's text has `what` (a form's answer loading), 10 s.
async fn shows(b: &Client, what: &str) -> String {
    let started = Instant::now();
    loop {
        let t = body(b).await;
        if t.contains(what) {
            return t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never showed {what:?}:\n{t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads `url` until its text has `what` (at most 40 s).
async fn until(b: &Client, url: &str, what: &str) {
    let started = Instant::now();
    loop {
        b.goto(url).await.unwrap();
        if body(b).await.contains(what) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{url} never showed {what:?}:\n{}",
            body(b).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A fill-server for `serial`, its store holding its whole target, reporting to `cp`.
fn appliance(dir: &Path, cp: SocketAddr, serial: &str, token: &str, kill: &mut Kill) -> Store {
    let files = dir.join("titles");
    std::fs::create_dir_all(&files).unwrap();
    for k in 0..3u8 {
        std::fs::write(files.join(format!("title-{k}")), vec![k; 300_000]).unwrap();
    }
    let store = Store::new(dir.join("store")).unwrap();
    store.import(&[files], Default::default(), &|_| {}).unwrap();
    store
        .record_target(store.catalog().unwrap().bytes())
        .unwrap();
    for s in [
        State::Allocated,
        State::Prefilling,
        State::InTransit,
        State::Delivered,
        State::Installed,
    ] {
        store.transition(s, 1, "test").unwrap();
    }
    std::fs::write(dir.join("token"), token).unwrap();
    let bgp = dir.join("birdc.sh");
    std::fs::write(
        &bgp,
        "printf 'isp BGP --- up 12:00 x\\n  BGP state: Established\\n'\n",
    )
    .unwrap();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[lifecycle]\ncheck_interval = \"1s\"\nmin_free = \"0B\"\n\n[control]\nurl = \"http://{cp}\"\n\
             serial = \"{serial}\"\ntoken_file = \"{}\"\ninterval = \"300ms\"\nbgp_command = [\"sh\", \"{}\"]\n",
            dir.join("token").display(),
            bgp.display()
        ),
    )
    .unwrap();
    let bin: PathBuf = Path::new(env!("CARGO_BIN_EXE_fill-control")).with_file_name("fill-server");
    assert!(
        bin.exists(),
        "{} is missing: cargo test --workspace builds it",
        bin.display()
    );
    let child = Command::new(bin)
        .arg("--store")
        .arg(store.root())
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .env("FILL_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    kill.0.push(child);
    store
}

#[test]
fn a_partner_follows_an_appliance_to_live_and_drains_it_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let shots = std::env::var_os("FILL_PORTAL_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    let smtp = Smtp::start(tmp.path());
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    let (ops, partner) = c.ops_and_partner();
    let http = Http(c.addr);
    let base = format!("http://{}", c.addr);
    let mut kill = Kill(Vec::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = browser(&tmp.path().join("profile"), &mut kill).await;
        // Sign in.
        b.goto(&format!("{base}/login")).await.unwrap();
        shoot(&b, &shots, "login").await;
        fill_in(&b, "#email", "eng@isp.test").await;
        fill_in(&b, "#password", "a long test password").await;
        click(&b, "form[action='/login'] button").await;
        shows(&b, "My appliances").await;
        // The survey, through its form.
        click(&b, "a[href='/survey']").await;
        shows(&b, "New site survey").await;
        fill_in(&b, "#site", "AMS-9").await;
        fill_in(&b, "#tz", "Europe/Amsterdam").await;
        fill_in(
            &b,
            "#address",
            "ISP Example BV\nDamrak 1\n1012 LG Amsterdam",
        )
        .await;
        fill_in(&b, "#cname0", "Eng One").await;
        fill_in(&b, "#cemail0", "eng@isp.test").await;
        fill_in(&b, "#cname1", "NOC").await;
        fill_in(&b, "#cemail1", "noc@isp.test").await;
        b.find(Locator::Css("#crole1 option[value='noc']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        fill_in(&b, "#asn", "64500").await;
        fill_in(&b, "#ipv4", "192.0.2.0/24").await;
        fill_in(&b, "#neighbors", "192.0.2.1").await;
        shoot(&b, &shots, "survey").await;
        click(&b, "form[action='/survey'] button[type='submit']").await;
        let text = shows(&b, "Survey received").await;
        let dep = text
            .split_whitespace()
            .find(|w| w.starts_with("dep-"))
            .unwrap()
            .trim_end_matches('.')
            .to_owned();
        // Ops allocate and ship; the partner's side marks it delivered and installed.
        let (s, a) = http.post(
            &format!("/api/deployments/{dep}/appliances"),
            Some(&ops),
            &json!({"serial": "ams-9-a", "hardware": "flash", "capacity": "1TB", "catalog": "eu"}),
        );
        assert_eq!(s, 201, "{a}");
        for (who, body) in [
            (&ops, json!({"to": "prefilling"})),
            (
                &ops,
                json!({"to": "in_transit", "carrier": "DHL", "tracking": "JD0146000099"}),
            ),
            (&partner, json!({"to": "delivered"})),
            (&partner, json!({"to": "installed"})),
        ] {
            let (s, r) = http.post("/api/appliances/ams-9-a/transitions", Some(who), &body);
            assert_eq!(s, 200, "{r}");
        }
        let _store = appliance(
            tmp.path(),
            c.addr,
            "ams-9-a",
            a["token"].as_str().unwrap(),
            &mut kill,
        );
        // Followed on its page: burn-in from its report alone, then live.
        let page = format!("{base}/appliances/ams-9-a");
        // (The fleet's order is kept 2 s: the new appliance is listed within that.)
        until(&b, &format!("{base}/"), "ams-9-a").await;
        click(&b, "a[href='/appliances/ams-9-a']").await;
        shows(&b, "Appliance ams-9-a").await;
        until(&b, &page, "▶ Live").await;
        let current = b
            .find(Locator::Css("ol.track li[aria-current='step']"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(current.contains("Live"), "{current}");
        // Its emails, sent by then.
        // (The harness's own runtime sends them, from a thread of its own.)
        std::thread::scope(|s| s.spawn(|| c.send_mail(&smtp)).join().unwrap());
        b.goto(&page).await.unwrap();
        let text = body(&b).await;
        for subject in [
            "Shipped: appliance ams-9-a at AMS-9",
            "Burn-in started: appliance ams-9-a at AMS-9",
            "Live: appliance ams-9-a at AMS-9",
        ] {
            assert!(
                text.contains(subject),
                "no {subject:?} on the page:\n{text}"
            );
        }
        assert!(text.contains("JD0146000099"));
        shoot(&b, &shots, "appliance-live").await;
        // Drained before maintenance, with a confirmation.
        click(&b, "a[href='/appliances/ams-9-a/drain']").await;
        shows(&b, "Drain ams-9-a?").await;
        shoot(&b, &shots, "drain-confirm").await;
        fill_in(&b, "#reason", "disk swap").await;
        click(&b, "form[action='/appliances/ams-9-a/drain'] button").await;
        shows(&b, "■ draining").await;
        until(&b, &page, "■ drained").await;
        let text = body(&b).await;
        assert!(text.contains("disk swap"), "{text}");
        shoot(&b, &shots, "appliance-drained").await;
        // Ops see the fleet.
        click(&b, "form[action='/logout'] button").await;
        shows(&b, "Sign in").await;
        fill_in(&b, "#email", "ops@fleet.test").await;
        fill_in(&b, "#password", "a long test password").await;
        click(&b, "form[action='/login'] button").await;
        let text = shows(&b, "Fleet").await;
        assert!(text.contains("ams-9-a"), "{text}");
        shoot(&b, &shots, "fleet").await;
        b.close().await.unwrap();
    });
}
