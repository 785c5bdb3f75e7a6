//! The portal over HTTP: sign-in and its cookie, isolation between partners on every page
//! and form, form tokens, the sign-in throttle, escaping, sign-out, and the survey form.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::workflow::{deploy, report};
use crate::{Control, Http};

/// A whole answer: status, head, body.
#[derive(Debug)]
struct Page {
    status: u16,
    head: String,
    body: String,
}

fn send(c: &Control, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Page {
    let mut s = TcpStream::connect(c.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(k) = cookie {
        req += &format!("Cookie: other=1; fill_session={k}\r\n");
    }
    if let Some(f) = form {
        req += &format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            f.len()
        );
    }
    req += "\r\n";
    req += form.unwrap_or("");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Page {
        status: head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in through the form; the session cookie's value and its whole header.
fn sign_in(c: &Control, email: &str, password: &str) -> Result<(String, String), Page> {
    let p = send(
        c,
        "POST",
        "/login",
        None,
        Some(&format!("email={}&password={}", enc(email), enc(password))),
    );
    if p.status != 303 {
        return Err(p);
    }
    let set = p
        .head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .expect("a session cookie")
        .to_owned();
    let value = set
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("fill_session=")
        .unwrap()
        .to_owned();
    Ok((value, set))
}

/// The form token a page carries.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    page[at..at + 32].to_owned()
}

#[test]
fn partners_see_and_touch_only_their_own_through_the_portal() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    c.user("ops@fleet.test", "ops", None);
    c.user("eng@isp.test", "partner", Some("isp-a"));
    c.user("eng@other.test", "partner", Some("isp-b"));
    let (ops, partner) = (c.login("ops@fleet.test"), c.login("eng@isp.test"));
    let http = Http(c.addr);
    let (serial, token) = deploy(&c, &ops, &partner, "FRA-7", 1).remove(0);
    let path = format!("/api/appliances/{serial}/report");
    http.post(&path, Some(&token), &report("established", None, true));
    http.post(&path, Some(&token), &report("established", Some(100), true));

    // Without a session every page leads to the sign-in.
    let p = send(&c, "GET", "/", None, None);
    assert_eq!(p.status, 303);
    assert!(
        p.head.to_lowercase().contains("location: /login"),
        "{}",
        p.head
    );
    assert_eq!(send(&c, "GET", "/login", None, None).status, 200);

    // The session cookie's flags.
    let (a, set) = sign_in(&c, "eng@isp.test", "a long test password").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain http: no Secure flag ({set})"
    );
    let (b, _) = sign_in(&c, "eng@other.test", "a long test password").unwrap();

    // A sees its appliance; B sees nothing of A's, by any URL or form.
    let home = send(&c, "GET", "/", Some(&a), None);
    assert_eq!(home.status, 200);
    assert!(home.body.contains(&serial), "{}", home.body);
    let theirs = send(&c, "GET", "/", Some(&b), None);
    assert!(!theirs.body.contains(&serial));
    let b_csrf = csrf(&theirs.body);
    for (method, url, form) in [
        ("GET", format!("/appliances/{serial}"), None),
        ("GET", format!("/appliances/{serial}/drain"), None),
        (
            "POST",
            format!("/appliances/{serial}/drain"),
            Some(format!("csrf={b_csrf}&reason=x")),
        ),
        (
            "POST",
            format!("/appliances/{serial}/undrain"),
            Some(format!("csrf={b_csrf}")),
        ),
    ] {
        let p = send(&c, method, &url, Some(&b), form.as_deref());
        assert_eq!(p.status, 404, "{method} {url}: {}", p.body);
        assert!(
            p.body.contains(&format!("no appliance {serial}")),
            "{}",
            p.body
        );
    }
    // A's page: the tracking diagram with the current step marked, the overview.
    let page = send(&c, "GET", &format!("/appliances/{serial}"), Some(&a), None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("aria-current=\"step\""), "{}", page.body);
    assert!(page.body.contains("▶ Live"), "{}", page.body);
    assert!(page.body.contains(&format!("JD0146{serial}")));
    // Content-Security-Policy on every page.
    assert!(
        page.head
            .to_lowercase()
            .contains("content-security-policy: default-src 'none'")
    );

    // A drain: refused without the form token, or with another session's, then done.
    let a_csrf = csrf(
        &send(
            &c,
            "GET",
            &format!("/appliances/{serial}/drain"),
            Some(&a),
            None,
        )
        .body,
    );
    assert_ne!(a_csrf, b_csrf);
    let drain = format!("/appliances/{serial}/drain");
    let reason = "<script>alert(1)</script> swap";
    for form in [
        format!("reason={}", enc(reason)),
        format!("csrf={b_csrf}&reason={}", enc(reason)),
        format!("csrf=&reason={}", enc(reason)),
    ] {
        assert_eq!(
            send(&c, "POST", &drain, Some(&a), Some(&form)).status,
            403,
            "{form}"
        );
    }
    let (_, v) = http.get(&format!("/api/appliances/{serial}"), Some(&ops));
    assert_eq!(v["state"], "live", "nothing moved yet");
    let done = send(
        &c,
        "POST",
        &drain,
        Some(&a),
        Some(&format!("csrf={a_csrf}&reason={}", enc(reason))),
    );
    assert_eq!(done.status, 303, "{}", done.body);
    let (_, v) = http.get(&format!("/api/appliances/{serial}"), Some(&ops));
    assert_eq!(v["state"], "draining");
    // What people typed is text on the page, never markup.
    let page = send(&c, "GET", &format!("/appliances/{serial}"), Some(&a), None);
    assert!(
        page.body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; swap"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    // And back in service.
    let back = send(
        &c,
        "POST",
        &format!("/appliances/{serial}/undrain"),
        Some(&a),
        Some(&format!("csrf={a_csrf}")),
    );
    assert_eq!(back.status, 303, "{}", back.body);
    let (_, v) = http.get(&format!("/api/appliances/{serial}"), Some(&ops));
    assert_eq!(v["state"], "live");

    // Sign-out ends the session: its cookie is cleared and no longer lets anyone in.
    let out = send(
        &c,
        "POST",
        "/logout",
        Some(&b),
        Some(&format!("csrf={b_csrf}")),
    );
    assert_eq!(out.status, 303);
    assert!(out.head.contains("Max-Age=0"), "{}", out.head);
    assert_eq!(send(&c, "GET", "/", Some(&b), None).status, 303);
    assert_eq!(http.get("/api/appliances", Some(&b)).0, 401);
}

#[test]
fn sign_ins_are_throttled_per_email() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    c.user("eng@isp.test", "partner", Some("isp-a"));
    c.user("noc@isp.test", "partner", Some("isp-a"));
    for k in 0..fill_control::auth::MAX_FAILURES {
        let p = sign_in(&c, "eng@isp.test", &format!("wrong password {k}")).unwrap_err();
        assert_eq!(p.status, 401, "{}", p.body);
        assert!(p.body.contains("Wrong email or password"));
    }
    // The right password no longer helps, through the form or the API, for a while.
    let p = sign_in(&c, "ENG@isp.test", "a long test password").unwrap_err();
    assert_eq!(p.status, 429, "{}", p.body);
    assert!(p.body.contains("Too many failed sign-ins"), "{}", p.body);
    assert!(
        p.head.to_lowercase().contains("retry-after: "),
        "{}",
        p.head
    );
    let (s, _) = Http(c.addr).post(
        "/api/login",
        None,
        &json!({"email": "eng@isp.test", "password": "a long test password"}),
    );
    assert_eq!(s, 429);
    // Another email is not held back.
    assert!(sign_in(&c, "noc@isp.test", "a long test password").is_ok());
}

#[test]
fn a_partner_submits_a_survey_through_the_form() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    c.user("eng@isp.test", "partner", Some("isp-a"));
    c.user("ops@fleet.test", "ops", None);
    let (a, _) = sign_in(&c, "eng@isp.test", "a long test password").unwrap();
    let form_page = send(&c, "GET", "/survey", Some(&a), None);
    assert_eq!(form_page.status, 200);
    for label in [
        "Site name",
        "Time zone",
        "AS number",
        "BGP neighbour addresses",
        "Contact 1 name",
    ] {
        assert!(form_page.body.contains(label), "{label}");
    }
    let token = csrf(&form_page.body);
    let fields = |asn: &str| {
        [
            ("csrf", token.as_str()),
            ("site", "LYS-2"),
            ("tz", "Europe/Paris"),
            ("offpeak", "01:00-05:00"),
            ("address", "ISP\r\n1 rue du Port\r\nLyon"),
            ("cname0", "<b>Eng</b>"),
            ("cemail0", "eng@isp.test"),
            ("crole0", "engineering"),
            ("cname1", "NOC"),
            ("cemail1", "noc@isp.test"),
            ("crole1", "noc"),
            ("asn", asn),
            ("ipv4", "192.0.2.0/24"),
            ("neighbors", "192.0.2.1"),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
    };
    // A wrong AS number: refused, saying why, with what was typed kept (escaped).
    let bad = send(&c, "POST", "/survey", Some(&a), Some(&fields("AS-x")));
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("AS number"), "{}", bad.body);
    assert!(
        bad.body.contains("value=\"&lt;b&gt;Eng&lt;/b&gt;\""),
        "{}",
        bad.body
    );
    let reserved = send(&c, "POST", "/survey", Some(&a), Some(&fields("23456")));
    assert_eq!(reserved.status, 422);
    assert!(
        reserved.body.contains("reserved AS number"),
        "{}",
        reserved.body
    );
    let ok = send(&c, "POST", "/survey", Some(&a), Some(&fields("64500")));
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert!(
        ok.body.contains("Site LYS-2 is deployment dep-"),
        "{}",
        ok.body
    );
    // Ops do not submit surveys.
    let (o, _) = sign_in(&c, "ops@fleet.test", "a long test password").unwrap();
    assert_eq!(send(&c, "GET", "/survey", Some(&o), None).status, 403);
}

#[test]
fn ops_allocate_and_ship_and_the_partner_marks_delivery_through_the_portal() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    c.user("ops@fleet.test", "ops", None);
    c.user("eng@isp.test", "partner", Some("isp-a"));
    c.user("eng@other.test", "partner", Some("isp-b"));
    let partner = c.login("eng@isp.test");
    let (s, d) = Http(c.addr).post(
        "/api/surveys",
        Some(&partner),
        &crate::workflow::survey("OSL-4"),
    );
    assert_eq!(s, 201, "{d}");
    let dep = d["deployment"].as_str().unwrap().to_owned();
    let (o, _) = sign_in(&c, "ops@fleet.test", "a long test password").unwrap();
    let (a, _) = sign_in(&c, "eng@isp.test", "a long test password").unwrap();
    let (b, _) = sign_in(&c, "eng@other.test", "a long test password").unwrap();
    // The site's page: its partner and ops see it; the other partner does not.
    let site = send(&c, "GET", &format!("/deployments/{dep}"), Some(&o), None);
    assert_eq!(site.status, 200);
    assert!(site.body.contains("Allocate an appliance"));
    let mine = send(&c, "GET", &format!("/deployments/{dep}"), Some(&a), None);
    assert_eq!(mine.status, 200);
    assert!(
        !mine.body.contains("Allocate an appliance"),
        "partners do not allocate"
    );
    assert!(
        send(&c, "GET", "/", Some(&a), None).body.contains("OSL-4"),
        "listed among its sites"
    );
    assert_eq!(
        send(&c, "GET", &format!("/deployments/{dep}"), Some(&b), None).status,
        404
    );
    // Allocation through the form: the token shown once.
    let o_csrf = csrf(&site.body);
    let form = format!("csrf={o_csrf}&serial=osl-4-a&hardware=flash&capacity=2TB&catalog=eu");
    let done = send(
        &c,
        "POST",
        &format!("/deployments/{dep}/allocate"),
        Some(&o),
        Some(&form),
    );
    assert_eq!(done.status, 201, "{}", done.body);
    assert!(done.body.contains("fct_"), "{}", done.body);
    // A capacity without a unit is refused, saying so, on the site's page.
    let form = format!("csrf={o_csrf}&serial=osl-4-b&hardware=flash&capacity=2&catalog=eu");
    let bad = send(
        &c,
        "POST",
        &format!("/deployments/{dep}/allocate"),
        Some(&o),
        Some(&form),
    );
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("no unit"), "{}", bad.body);
    // Partners cannot allocate, on their own site (403) or another's (404).
    let a_csrf = csrf(&mine.body);
    let form = format!("csrf={a_csrf}&serial=x1&hardware=flash&capacity=2TB&catalog=eu");
    assert_eq!(
        send(
            &c,
            "POST",
            &format!("/deployments/{dep}/allocate"),
            Some(&a),
            Some(&form)
        )
        .status,
        403
    );
    let b_csrf = csrf(&send(&c, "GET", "/", Some(&b), None).body);
    let form = format!("csrf={b_csrf}&serial=x2&hardware=flash&capacity=2TB&catalog=eu");
    assert_eq!(
        send(
            &c,
            "POST",
            &format!("/deployments/{dep}/allocate"),
            Some(&b),
            Some(&form)
        )
        .status,
        404
    );
    // Steps: ops pre-fill and ship (with the tracking number), the partner may not ship,
    // and marks the delivery.
    let step = |who: &str, token: &str, body: &str| {
        send(
            &c,
            "POST",
            "/appliances/osl-4-a/step",
            Some(who),
            Some(&format!("csrf={token}&{body}")),
        )
        .status
    };
    assert_eq!(step(&o, &o_csrf, "to=prefilling"), 303);
    assert_eq!(
        step(&a, &a_csrf, "to=in_transit&carrier=UPS&tracking=1Z9"),
        403
    );
    assert_eq!(
        step(&o, &o_csrf, "to=in_transit&carrier=&tracking="),
        422,
        "shipping needs a tracking number"
    );
    assert_eq!(
        step(
            &o,
            &o_csrf,
            "to=in_transit&carrier=UPS&tracking=1Z999AA10123456784"
        ),
        303
    );
    let page = send(&c, "GET", "/appliances/osl-4-a", Some(&a), None);
    assert!(
        page.body.contains("UPS 1Z999AA10123456784"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<option value=\"delivered\">"),
        "{}",
        page.body
    );
    assert_eq!(step(&b, &b_csrf, "to=delivered"), 404);
    assert_eq!(step(&a, &a_csrf, "to=delivered"), 303);
    let (_, v) = Http(c.addr).get("/api/appliances/osl-4-a", Some(&partner));
    assert_eq!(v["state"], "delivered");
    // A rollout's page is for ops.
    let ops = c.login("ops@fleet.test");
    let (s, r) = Http(c.addr).post(
        "/api/rollouts",
        Some(&ops),
        &json!({"version": "9.9.9", "appliances": ["osl-4-a"]}),
    );
    assert_eq!(s, 201, "{r}");
    let id = r["rollout"].as_str().unwrap();
    let view = send(&c, "GET", &format!("/rollouts/{id}"), Some(&o), None);
    assert_eq!(view.status, 200);
    assert!(
        view.body.contains("osl-4-a") && view.body.contains("pending"),
        "{}",
        view.body
    );
    assert_eq!(
        send(&c, "GET", &format!("/rollouts/{id}"), Some(&a), None).status,
        404
    );
}

#[test]
fn an_invitation_sets_the_first_password_and_signs_in() {
    use sqlx::Row;
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    c.user("eng@isp.test", "partner", Some("isp-a"));
    let partner = c.login("eng@isp.test");
    let mut s = crate::workflow::survey("BRU-1");
    s["contacts"][1]["name"] = json!("<script>alert('noc')</script>");
    let (st, d) = Http(c.addr).post("/api/surveys", Some(&partner), &s);
    assert_eq!(st, 201, "{d}");
    let body: String =
        c.rt.block_on(
            sqlx::query(
                "SELECT body FROM emails WHERE kind = 'invitation' AND recipient = 'noc@isp.test'",
            )
            .fetch_one(&c.db.pool),
        )
        .unwrap()
        .get("body");
    let at = body.find("/invite/").unwrap() + 8;
    let code = &body[at..at + 32];
    let path = format!("/invite/{code}");
    let page = send(&c, "GET", &path, None, None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Choose your password"));
    assert!(
        page.head
            .to_lowercase()
            .contains("referrer-policy: no-referrer"),
        "{}",
        page.head
    );
    assert_eq!(send(&c, "GET", "/invite/nothex", None, None).status, 404);
    let differ = send(
        &c,
        "POST",
        &path,
        None,
        Some("password=a+long+password+one&again=a+long+password+two"),
    );
    assert_eq!(differ.status, 422);
    assert!(differ.body.contains("differ"));
    let short = send(&c, "POST", &path, None, Some("password=short&again=short"));
    assert_eq!(short.status, 422);
    let ok = send(
        &c,
        "POST",
        &path,
        None,
        Some("password=the+noc%27s+password&again=the+noc%27s+password"),
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    let cookie = ok
        .head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .starts_with("set-cookie: fill_session=")
                .then(|| l[25..].split(';').next().unwrap().to_owned())
        })
        .expect("signed in");
    let home = send(&c, "GET", "/", Some(&cookie), None);
    assert_eq!(home.status, 200);
    assert!(home.body.contains("BRU-1"), "{}", home.body);
    // Once only.
    assert_eq!(
        send(
            &c,
            "POST",
            &path,
            None,
            Some("password=another+long+one&again=another+long+one")
        )
        .status,
        404
    );
    // The contact's name is text on the site's page.
    let dep = d["deployment"].as_str().unwrap();
    let site = send(
        &c,
        "GET",
        &format!("/deployments/{dep}"),
        Some(&cookie),
        None,
    );
    assert!(
        site.body
            .contains("&lt;script&gt;alert('noc')&lt;/script&gt;"),
        "{}",
        site.body
    );
    assert!(!site.body.contains("<script>alert"));
}

#[test]
fn the_fleet_shows_what_needs_attention_first() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    let (ops, partner) = c.ops_and_partner();
    let http = Http(c.addr);
    let apps = deploy(&c, &ops, &partner, "VNO-1", 3);
    for (k, (serial, token)) in apps.iter().enumerate() {
        let path = format!("/api/appliances/{serial}/report");
        http.post(&path, Some(token), &report("established", None, true));
        http.post(&path, Some(token), &report("established", Some(100), true));
        if k == 2 {
            // Live, then a run with failures.
            let mut r = report("established", Some(200), false);
            r["state"] = json!("live");
            http.post(&path, Some(token), &r);
        }
    }
    let (o, _) = sign_in(&c, "ops@fleet.test", "a long test password").unwrap();
    let home = send(&c, "GET", "/", Some(&o), None).body;
    let first_row = home
        .split("<tbody>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(first_row.contains(&apps[2].0), "{first_row}");
    assert!(first_row.contains("failing checks"), "{first_row}");
    let second_row = home
        .split("<tbody>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .nth(1)
        .unwrap();
    assert!(
        second_row.contains(&apps[0].0) && second_row.contains('—'),
        "{second_row}"
    );
}
