//! Rolling off-peak upgrades: a site of three upgraded one at a time (never two out, as
//! watched from outside all along), a site outside its off-peak window left alone, a
//! failed upgrade stopping its site's rollout and alerting ops; on SQLite, and with two
//! instances on one PostgreSQL.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Postgres, Smtp};
use crate::workflow::{deploy_survey, report, survey};
use crate::{Control, Http};

fn unix_now() -> i64 {
    fill_control::api::wall_clock()
}

/// A survey whose off-peak window (UTC) is now, or is not.
fn survey_at(site: &str, now_in_window: bool) -> Value {
    let h = (unix_now() / 3600) % 24;
    let (a, b) = if now_in_window {
        (h, (h + 2) % 24)
    } else {
        ((h + 3) % 24, (h + 4) % 24)
    };
    let mut s = survey(site);
    s["tz"] = json!("UTC");
    s["offpeak"] = json!(format!("{a:02}:00-{b:02}:00"));
    s
}

/// Deploys `n` appliances at a site and brings them live by their reports.
fn live_site(
    c: &Control,
    ops: &str,
    partner: &str,
    survey: &Value,
    n: usize,
) -> Vec<(String, String)> {
    let apps = deploy_survey(c, ops, partner, survey, n);
    let http = Http(c.addr);
    for (serial, token) in &apps {
        let path = format!("/api/appliances/{serial}/report");
        http.post(&path, Some(token), &report("established", None, true));
        let (_, a) = http.post(&path, Some(token), &report("established", Some(100), true));
        assert_eq!(a["state"], "live", "{a}");
    }
    apps
}

/// An appliance as fill-server behaves toward the control plane: it drains when told (at
/// once), installs the version it is told (or fails to), starts burn-in when told, and runs
/// its checks (all passing) then. Reports every 30 ms, to each instance in turn, until
/// `stop`.
fn fake_appliance(
    instances: &[SocketAddr],
    serial: &str,
    token: &str,
    fails: bool,
    stop: &AtomicBool,
) {
    let path = format!("/api/appliances/{serial}/report");
    let mut state = "live";
    let mut version = "1.2.0".to_owned();
    let mut failed: Option<Value> = None;
    let mut checked_at: Option<i64> = None;
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut r = report("established", None, true);
        r["version"] = json!(version);
        r["state"] = json!(state);
        if let Some(at) = checked_at {
            r["checked_at"] = json!(at);
            r["checks"] = report("established", Some(at), true)["checks"].clone();
        }
        if let Some(f) = &failed {
            r["upgrade_failed"] = f.clone();
        }
        let (s, a) = Http(instances[k % instances.len()]).post(&path, Some(token), &r);
        k += 1;
        if s == 409 {
            // Another instance recorded the step first: report again.
            continue;
        }
        assert_eq!(s, 200, "{serial}: {a}");
        if a["drain"] == true && matches!(state, "live" | "burn_in") {
            state = "draining";
        } else if state == "draining" {
            state = "drained";
        }
        if let Some(v) = a["upgrade"].as_str() {
            state = "maintenance";
            if fails {
                failed = Some(json!({"version": v, "error": "no space left on device"}));
            } else {
                version = v.to_owned();
            }
        }
        if a["start_burn_in"] == true && state == "maintenance" {
            state = "burn_in";
            checked_at = Some(unix_now());
        }
        if a["state"] == "live" && state == "burn_in" {
            state = "live";
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The rollout's view, as ops see it.
fn rollout(c: &Control, ops: &str, id: &str) -> Value {
    let (s, v) = Http(c.addr).get(&format!("/api/rollouts/{id}"), Some(ops));
    assert_eq!(s, 200, "{v}");
    v
}

fn phases_of(view: &Value, site: &str) -> Vec<String> {
    view["upgrades"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["site"] == site)
        .map(|u| u["phase"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs the fake appliances and a watcher counting the site's appliances out of service
/// (from the API, every 10 ms) until `done` says the rollout is over (at most 60 s); the
/// most seen out at once.
fn run_rollout(
    cs: &[&Control],
    ops: &str,
    apps: &[(String, String, bool)],
    site: &str,
    done: impl Fn() -> bool + Sync,
) -> usize {
    let instances: Vec<SocketAddr> = cs.iter().map(|c| c.addr).collect();
    let stop = AtomicBool::new(false);
    let most_out = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for (serial, token, fails) in apps {
            let (instances, stop) = (&instances, &stop);
            s.spawn(move || fake_appliance(instances, serial, token, *fails, stop));
        }
        s.spawn(|| {
            let http = Http(cs[0].addr);
            while !stop.load(Ordering::Relaxed) {
                let (_, list) = http.get("/api/appliances", Some(ops));
                let out = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|l| l["site"] == site && l["state"] != "live")
                    .count();
                most_out.fetch_max(out, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the rollout did not end within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    most_out.into_inner()
}

fn events_to(c: &Control, ops: &str, serial: &str) -> Vec<String> {
    let (_, v) = Http(c.addr).get(&format!("/api/appliances/{serial}"), Some(ops));
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap().to_owned())
        .collect()
}

/// A site of three upgraded one at a time inside its window, one of two outside its window
/// left alone; each upgrade's events and emails once.
fn rollout_over_a_site(cs: &[&Control], smtp: &Smtp) {
    let c = cs[0];
    let (ops, partner) = c.ops_and_partner();
    let site = live_site(c, &ops, &partner, &survey_at("AMS-1", true), 3);
    let asleep = live_site(c, &ops, &partner, &survey_at("AMS-2", false), 2);
    let serials: Vec<&str> = site.iter().chain(&asleep).map(|a| a.0.as_str()).collect();
    let (s, r) = Http(c.addr).post(
        "/api/rollouts",
        Some(&ops),
        &json!({"version": "2.0.0", "appliances": serials}),
    );
    assert_eq!(s, 201, "{r}");
    let id = r["rollout"].as_str().unwrap().to_owned();
    let apps: Vec<(String, String, bool)> = site
        .iter()
        .chain(&asleep)
        .map(|(s, t)| (s.clone(), t.clone(), false))
        .collect();
    let most_out = run_rollout(cs, &ops, &apps, "AMS-1", || {
        phases_of(&rollout(c, &ops, &id), "AMS-1") == ["done", "done", "done"]
    });
    assert_eq!(most_out, 1, "one appliance of the site out at a time");
    let view = rollout(c, &ops, &id);
    assert_eq!(phases_of(&view, "AMS-2"), ["pending", "pending"], "{view}");
    // One after the other: each taken out after the one before was back.
    let ups: Vec<&Value> = view["upgrades"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["site"] == "AMS-1")
        .collect();
    for w in ups.windows(2) {
        assert!(
            w[1]["started"].as_i64() >= w[0]["finished"].as_i64(),
            "{view}"
        );
    }
    for (serial, _) in &site {
        let to = events_to(c, &ops, serial);
        assert_eq!(
            to[to.len() - 5..],
            ["draining", "drained", "maintenance", "burn_in", "live"],
            "{serial}: {to:?}"
        );
        assert_eq!(to.iter().filter(|t| *t == "maintenance").count(), 1);
        let (_, v) = Http(c.addr).get(&format!("/api/appliances/{serial}"), Some(&ops));
        assert_eq!(v["version"], "2.0.0");
    }
    for (serial, _) in &asleep {
        let to = events_to(c, &ops, serial);
        assert!(!to.iter().any(|t| t == "draining"), "{serial}: {to:?}");
    }
    // The emails, once each, to engineering and NOC.
    for c in cs {
        c.send_mail(smtp);
    }
    let got = smtp.messages();
    for (serial, _) in &site {
        for subject in [
            format!("Upgrade started: appliance {serial} at AMS-1"),
            format!("Upgrade finished: appliance {serial} at AMS-1"),
        ] {
            let mut to: Vec<&str> = got
                .iter()
                .filter(|m| m.1 == subject)
                .map(|m| m.0.as_str())
                .collect();
            to.sort();
            assert_eq!(to, ["eng@isp.test", "noc@isp.test"], "{subject}");
        }
        // The upgrade's own drain and return are not announced as a drain and a turn-up.
        let drained = format!("Drained: appliance {serial} at AMS-1");
        assert!(!got.iter().any(|m| m.1 == drained));
        let live = format!("Live: appliance {serial} at AMS-1");
        assert_eq!(got.iter().filter(|m| m.1 == live).count(), 2);
    }
}

#[test]
fn a_rollout_takes_one_appliance_of_a_site_out_at_a_time_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path());
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    rollout_over_a_site(&[&c], &smtp);
}

#[test]
fn a_rollout_with_two_instances_on_postgres_does_each_step_once() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Postgres::start(tmp.path());
    let smtp = Smtp::start(tmp.path());
    let (a, b) = (Control::start(&pg.url), Control::start(&pg.url));
    rollout_over_a_site(&[&a, &b], &smtp);
}

/// The second appliance of a site cannot install the version: its upgrade fails, the
/// third is never taken out, and ops receive the alert with the appliance's error.
#[test]
fn a_failed_upgrade_stops_its_site_and_alerts_ops() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path());
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    let (ops, partner) = c.ops_and_partner();
    let site = live_site(&c, &ops, &partner, &survey_at("LIS-1", true), 3);
    let serials: Vec<&str> = site.iter().map(|a| a.0.as_str()).collect();
    let http = Http(c.addr);
    // Partners do not schedule upgrades.
    let ask = json!({"version": "2.0.0", "appliances": serials});
    assert_eq!(http.post("/api/rollouts", Some(&partner), &ask).0, 403);
    let (s, r) = http.post("/api/rollouts", Some(&ops), &ask);
    assert_eq!(s, 201, "{r}");
    let id = r["rollout"].as_str().unwrap().to_owned();
    // Scheduling the same appliances again while this runs is refused.
    assert_eq!(http.post("/api/rollouts", Some(&ops), &ask).0, 409);
    let apps: Vec<(String, String, bool)> = site
        .iter()
        .enumerate()
        .map(|(k, (s, t))| (s.clone(), t.clone(), k == 1))
        .collect();
    let most_out = run_rollout(&[&c], &ops, &apps, "LIS-1", || {
        phases_of(&rollout(&c, &ops, &id), "LIS-1") == ["done", "failed", "stopped"]
    });
    assert_eq!(most_out, 1);
    let view = rollout(&c, &ops, &id);
    let failed = &view["upgrades"][1];
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("no space left on device"),
        "{view}"
    );
    assert!(
        !events_to(&c, &ops, &site[2].0)
            .iter()
            .any(|t| t == "draining")
    );
    c.send_mail(&smtp);
    let alert = smtp
        .messages()
        .into_iter()
        .find(|m| m.1 == format!("ALERT upgrade failed: appliance {} at LIS-1", site[1].0))
        .expect("ops alerted");
    assert_eq!(alert.0, "ops@fleet.test");
    assert!(alert.2.contains("no space left on device"), "{}", alert.2);
}
