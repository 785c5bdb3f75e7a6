//! A fleet from site survey to live, on SQLite and on PostgreSQL; two instances on one
//! PostgreSQL recording each step and sending each email once.

use serde_json::{Value, json};

use crate::harness::{Postgres, Smtp};
use crate::{Control, Http};

pub(crate) fn survey(site: &str) -> Value {
    json!({
        "site": site,
        "shipping_address": ["ISP Example GmbH", "Hafenstrasse 1", "60311 Frankfurt", "DE"],
        "contacts": [
            {"name": "Eng One", "email": "eng@isp.test", "role": "engineering"},
            {"name": "Noc", "email": "noc@isp.test", "role": "noc"},
            {"name": "Ship", "email": "ship@isp.test", "role": "shipping"}
        ],
        "network": {"asn": 64500, "ipv4": ["192.0.2.0/24"], "ipv6": ["2001:db8::/32"],
                    "bgp_neighbors": ["192.0.2.1", "2001:db8::1"]},
        "tz": "Europe/Berlin"
    })
}

/// Survey, allocation and shipping of `n` appliances by the API; their tokens.
pub(crate) fn deploy(
    c: &Control,
    ops: &str,
    partner: &str,
    site: &str,
    n: usize,
) -> Vec<(String, String)> {
    deploy_survey(c, ops, partner, &survey(site), n)
}

/// [`deploy`] with a survey of the test's own.
pub(crate) fn deploy_survey(
    c: &Control,
    ops: &str,
    partner: &str,
    survey: &Value,
    n: usize,
) -> Vec<(String, String)> {
    let http = Http(c.addr);
    let site = survey["site"].as_str().unwrap();
    let (s, d) = http.post("/api/surveys", Some(partner), survey);
    assert_eq!(s, 201, "{d}");
    let dep = d["deployment"].as_str().unwrap().to_owned();
    let mut out = Vec::new();
    for k in 0..n {
        let serial = format!("{site}-oca-{k}");
        let (s, a) = http.post(
            &format!("/api/deployments/{dep}/appliances"),
            Some(ops),
            &json!({"serial": serial, "hardware": "storage", "capacity": "40TB", "catalog": "region-eu"}),
        );
        assert_eq!(s, 201, "{a}");
        out.push((serial, a["token"].as_str().unwrap().to_owned()));
    }
    for (serial, _) in &out {
        let step = |who: &str, body: Value| {
            let (s, r) = http.post(
                &format!("/api/appliances/{serial}/transitions"),
                Some(who),
                &body,
            );
            assert_eq!(s, 200, "{body} → {r}");
        };
        step(ops, json!({"to": "prefilling"}));
        step(
            ops,
            json!({"to": "in_transit", "carrier": "DHL", "tracking": format!("JD0146{serial}")}),
        );
        step(partner, json!({"to": "delivered"}));
        step(
            partner,
            json!({"to": "installed", "reason": "racked in row 4"}),
        );
    }
    out
}

/// A report: with `checked_at`, from an appliance in burn-in with its checks run then.
pub(crate) fn report(bgp: &str, checked_at: Option<i64>, pass: bool) -> Value {
    let mut r = json!({"version": "1.2.0", "bgp": {"session": bgp, "prefixes": 12},
                       "state": if checked_at.is_some() { "burn_in" } else { "installed" }});
    if let Some(at) = checked_at {
        r["checked_at"] = json!(at);
        r["checks"] = json!([
            {"name": "fill", "passed": pass, "detail": if pass {"done"} else {"40% of the target"}},
            {"name": "offload", "passed": pass, "detail": ""},
            {"name": "store_health", "passed": true, "detail": ""},
            {"name": "sources", "passed": true, "detail": ""}
        ]);
    }
    r
}

fn survey_to_live(c: &Control, smtp: &Smtp) {
    let (ops, partner) = c.ops_and_partner();
    let http = Http(c.addr);
    let apps = deploy(c, &ops, &partner, "FRA-3", 3);
    for (serial, token) in &apps {
        let path = format!("/api/appliances/{serial}/report");
        // Reporting without its BGP session: nothing starts.
        let (s, a) = http.post(&path, Some(token), &report("active", None, false));
        assert_eq!(
            (s, a["state"].as_str(), a["start_burn_in"].as_bool()),
            (200, Some("installed"), Some(false)),
            "{a}"
        );
        // BGP established: burn-in starts by itself.
        let (_, a) = http.post(&path, Some(token), &report("established", None, false));
        assert_eq!(
            a,
            json!({"state": "burn_in", "start_burn_in": true, "drain": false})
        );
        // A failing run of the checks, then a passing one: live.
        let (_, a) = http.post(
            &path,
            Some(token),
            &report("established", Some(1000), false),
        );
        assert_eq!(a["state"], "burn_in");
        let (_, a) = http.post(&path, Some(token), &report("established", Some(2000), true));
        assert_eq!(
            a,
            json!({"state": "live", "start_burn_in": false, "drain": false})
        );
        let (s, view) = http.get(&format!("/api/appliances/{serial}"), Some(&partner));
        assert_eq!(s, 200, "{view}");
        let states: Vec<&str> = view["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["to"].as_str().unwrap())
            .collect();
        assert_eq!(
            states,
            [
                "allocated",
                "prefilling",
                "in_transit",
                "delivered",
                "installed",
                "burn_in",
                "live"
            ]
        );
        assert_eq!(view["events"][5]["actor"], "control-plane");
        assert_eq!(view["tracking"], format!("JD0146{serial}"));
        assert_eq!(view["checks"].as_array().unwrap().len(), 4);
        assert_eq!(view["version"], "1.2.0");
    }
    // The emails, as the SMTP server received them.
    let queued = c.send_mail(smtp);
    assert!(queued > 0);
    // A second round sends only what was queued meanwhile (ops alerts of appliances gone
    // silent, on a slow machine): nothing twice.
    let more = c.send_mail(smtp);
    let got = smtp.messages();
    assert_eq!(got.len(), queued + more);
    let mut seen = std::collections::BTreeSet::new();
    for m in &got {
        assert!(seen.insert((&m.0, &m.1)), "sent twice: {m:?}");
    }
    let to = |subject: &str| -> Vec<String> {
        got.iter()
            .filter(|m| m.1 == subject)
            .map(|m| m.0.clone())
            .collect()
    };
    assert_eq!(to("Site survey received for FRA-3").len(), 3);
    let (serial, _) = &apps[0];
    let shipped = got
        .iter()
        .find(|m| m.1 == format!("Shipped: appliance {serial} at FRA-3"))
        .unwrap();
    assert!(
        shipped
            .2
            .contains(&format!("tracking number JD0146{serial}")),
        "{}",
        shipped.2
    );
    let mut shipped_to = to(&format!("Shipped: appliance {serial} at FRA-3"));
    shipped_to.sort();
    assert_eq!(shipped_to, ["eng@isp.test", "ship@isp.test"]);
    let failed = got
        .iter()
        .find(|m| m.1 == format!("Turn-up check failed: appliance {serial} at FRA-3"))
        .unwrap();
    assert!(failed.2.contains("How to fix it"), "{}", failed.2);
    for subject in [
        format!("Burn-in started: appliance {serial} at FRA-3"),
        format!("Live: appliance {serial} at FRA-3"),
    ] {
        let mut r = to(&subject);
        r.sort();
        assert_eq!(r, ["eng@isp.test", "noc@isp.test"], "{subject}");
    }
    // The appliance's page lists its emails, sent.
    let (_, view) = http.get(&format!("/api/appliances/{serial}"), Some(&ops));
    let emails = view["emails"].as_array().unwrap();
    assert!(emails.len() >= 9, "{view}");
    assert!(emails.iter().all(|e| e["sent"].is_i64()), "{view}");
    // The metrics, for the holder of the metrics token only.
    let scrape = |token: &str| {
        http.raw(
            format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    assert_eq!(
        scrape(&ops).0,
        401,
        "a user's token is not the metrics token"
    );
    let (s, text) = scrape(crate::harness::METRICS_TOKEN);
    assert_eq!(s, 200, "{text}");
    for line in [
        "fill_control_appliances{state=\"live\"} 3",
        "fill_control_appliances{state=\"installed\"} 0",
        "fill_control_emails_unsent 0",
        "fill_control_upgrades{phase=\"pending\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let reports: u64 = text
        .lines()
        .filter(|l| l.starts_with("fill_control_requests_total{route=\"report\",status=\"200\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(reports, 12, "four reports from each of three appliances");
}

#[test]
fn survey_to_live_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path());
    let c = Control::start(&format!(
        "sqlite:{}",
        tmp.path().join("control.db").display()
    ));
    survey_to_live(&c, &smtp);
}

#[test]
fn survey_to_live_on_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Postgres::start(tmp.path());
    let smtp = Smtp::start(tmp.path());
    let c = Control::start(&pg.url);
    survey_to_live(&c, &smtp);
}

/// Ten reports with checks run at `checked_at`, sent at once, alternately to `a` and `b`;
/// their statuses.
fn race(a: &Control, b: &Control, path: &str, token: &str, checked_at: i64) -> Vec<u16> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..10)
            .map(|k| {
                let http = Http(if k % 2 == 0 { a.addr } else { b.addr });
                s.spawn(move || {
                    http.post(
                        path,
                        Some(token),
                        &report("established", Some(checked_at), true),
                    )
                    .0
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Two instances on one PostgreSQL, asked the same things at once: each transition is
/// recorded once, each email sent once.
#[test]
fn two_instances_on_postgres_do_each_step_once() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Postgres::start(tmp.path());
    let smtp = Smtp::start(tmp.path());
    let (a, b) = (Control::start(&pg.url), Control::start(&pg.url));
    a.user("ops@fleet.test", "ops", None);
    a.user("eng@isp.test", "partner", Some("isp-a"));
    let (ops, partner) = (a.login("ops@fleet.test"), b.login("eng@isp.test"));
    let apps = deploy(&b, &ops, &partner, "AMS-1", 3);
    for (serial, token) in &apps {
        let path = format!("/api/appliances/{serial}/report");
        // The same report to both instances at the same moment, ten times over: burn-in
        // starts, and its passing checks make it live, once each; a second round of
        // reports (new checks) records nothing more.
        for checked_at in [5000, 6000] {
            let answers = race(&a, &b, &path, token, checked_at);
            // Whoever lost a race is told so (409) or sees the state the winner left.
            assert!(
                answers.iter().all(|s| *s == 200 || *s == 409),
                "{answers:?}"
            );
            let (_, view) = Http(a.addr).get(&format!("/api/appliances/{serial}"), Some(&ops));
            let to: Vec<&str> = view["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["to"].as_str().unwrap())
                .collect();
            assert_eq!(to.iter().filter(|t| **t == "burn_in").count(), 1, "{view}");
            assert_eq!(to.iter().filter(|t| **t == "live").count(), 1, "{view}");
            assert_eq!(view["state"], "live");
        }
    }
    // Both senders at once: each email reaches the server once.
    let (sa, sb) = std::thread::scope(|s| {
        let ha = s.spawn(|| a.send_mail(&smtp));
        let hb = s.spawn(|| b.send_mail(&smtp));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let got = smtp.messages();
    assert_eq!(got.len(), sa + sb);
    let mut seen = std::collections::BTreeSet::new();
    for m in &got {
        assert!(
            seen.insert((m.0.clone(), m.1.clone())),
            "sent twice: {} {}",
            m.0,
            m.1
        );
    }
    for (serial, _) in &apps {
        let live = got
            .iter()
            .filter(|m| m.1 == format!("Live: appliance {serial} at AMS-1"))
            .count();
        assert_eq!(live, 2, "eng and noc, once each");
    }
}

/// A partner drains its live appliance: the answers to its reports say drain until it
/// reports drained; then it is drained, and the contacts hear the drain is done.
#[test]
fn a_drain_asked_by_the_partner_completes_when_the_appliance_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path());
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    let (ops, partner) = c.ops_and_partner();
    let (serial, token) = deploy(&c, &ops, &partner, "MUC-2", 1).remove(0);
    let http = Http(c.addr);
    let path = format!("/api/appliances/{serial}/report");
    let (_, a) = http.post(&path, Some(&token), &report("established", Some(10), true));
    assert_eq!(a["state"], "live", "{a}");
    let (s, r) = http.post(
        &format!("/api/appliances/{serial}/transitions"),
        Some(&partner),
        &json!({"to": "draining", "reason": "disk swap"}),
    );
    assert_eq!(s, 200, "{r}");
    // Still serving its last sessions: told to drain, again.
    let mut still = report("established", None, true);
    still["state"] = json!("draining");
    let (_, a) = http.post(&path, Some(&token), &still);
    assert_eq!(
        a,
        json!({"state": "draining", "start_burn_in": false, "drain": true})
    );
    still["state"] = json!("drained");
    let (_, a) = http.post(&path, Some(&token), &still);
    assert_eq!(
        a,
        json!({"state": "drained", "start_burn_in": false, "drain": true})
    );
    // A state that is no state is refused.
    still["state"] = json!("asleep");
    assert_eq!(http.post(&path, Some(&token), &still).0, 422);
    c.send_mail(&smtp);
    let drained: Vec<String> = smtp
        .messages()
        .into_iter()
        .filter(|m| m.1 == format!("Drained: appliance {serial} at MUC-2"))
        .map(|m| m.0)
        .collect();
    assert_eq!(drained.len(), 2, "noc and engineering: {drained:?}");
    // Back: the partner undrains it, and the answers stop asking for a drain.
    let (s, r) = http.post(
        &format!("/api/appliances/{serial}/transitions"),
        Some(&partner),
        &json!({"to": "live"}),
    );
    assert_eq!(s, 200, "{r}");
    let (_, a) = http.post(&path, Some(&token), &report("established", None, true));
    assert_eq!(a["drain"], false, "{a}");
}

/// An installed appliance that stops reporting is flagged `silent` once the silence allowed
/// has passed; one not yet installed never is.
#[test]
fn an_installed_appliance_that_stops_reporting_is_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start_with_silence(
        &format!("sqlite:{}", tmp.path().join("c.db").display()),
        crate::harness::SILENCE,
    );
    let (ops, partner) = c.ops_and_partner();
    let (serial, token) = deploy(&c, &ops, &partner, "BER-1", 1).remove(0);
    let http = Http(c.addr);
    // Installed and never reported: silent at once.
    let silent = |serial: &str| -> bool {
        let (_, v) = http.get(&format!("/api/appliances/{serial}"), Some(&ops));
        let (_, list) = http.get("/api/appliances", Some(&ops));
        let line = list
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["serial"] == serial)
            .unwrap()
            .clone();
        assert_eq!(line["silent"], v["silent"], "{line} vs {v}");
        v["silent"].as_bool().unwrap()
    };
    assert!(silent(&serial));
    let (s, _) = http.post(
        &format!("/api/appliances/{serial}/report"),
        Some(&token),
        &report("active", None, false),
    );
    assert_eq!(s, 200);
    assert!(!silent(&serial));
    std::thread::sleep(std::time::Duration::from_millis(
        (crate::harness::SILENCE as u64 + 1) * 1000 + 200,
    ));
    assert!(silent(&serial), "no report for longer than the silence");
    // Ops hear of it, once however long it lasts.
    let smtp = Smtp::start(tmp.path());
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.send_mail(&smtp);
    let alert = format!("ALERT silent: appliance {serial} at BER-1");
    let alerts: Vec<String> = smtp
        .messages()
        .into_iter()
        .filter(|m| m.1 == alert)
        .map(|m| m.0)
        .collect();
    assert_eq!(alerts, ["ops@fleet.test"]);
    // An appliance still being shipped is not expected to report.
    let (s, d) = http.post("/api/surveys", Some(&partner), &survey("BER-2"));
    assert_eq!(s, 201, "{d}");
    let (s, a) = http.post(
        &format!(
            "/api/deployments/{}/appliances",
            d["deployment"].as_str().unwrap()
        ),
        Some(&ops),
        &json!({"serial": "BER-2-x", "hardware": "flash", "capacity": "1TB", "catalog": "c"}),
    );
    assert_eq!(s, 201, "{a}");
    assert!(!silent("BER-2-x"));
}
