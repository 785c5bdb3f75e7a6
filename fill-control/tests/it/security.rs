//! Who may see and do what: a partner only its own (anything else is a 404, as if it did
//! not exist), an appliance only its own reports, tokens that expire and are revoked, and
//! hostile bodies answered with a clear 4xx.

use serde_json::json;

use crate::workflow::{deploy, survey};
use crate::{Control, Http};

fn site() -> (tempfile::TempDir, Control) {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    c.user("ops@fleet.test", "ops", None);
    c.user("a@isp-a.test", "partner", Some("isp-a"));
    c.user("b@isp-b.test", "partner", Some("isp-b"));
    (tmp, c)
}

#[test]
fn a_partner_sees_and_touches_only_its_own() {
    let (_tmp, c) = site();
    let http = Http(c.addr);
    let (ops, a, b) = (
        c.login("ops@fleet.test"),
        c.login("a@isp-a.test"),
        c.login("b@isp-b.test"),
    );
    let apps = deploy(&c, &ops, &a, "FRA-3", 2);
    let (serial, token) = &apps[0];
    // B lists nothing of A's and gets 404 for A's appliance, exactly as for one that does
    // not exist.
    let (s, list) = http.get("/api/appliances", Some(&b));
    assert_eq!((s, list.as_array().unwrap().len()), (200, 0), "{list}");
    let (s, list) = http.get("/api/appliances", Some(&a));
    assert_eq!((s, list.as_array().unwrap().len()), (200, 2), "{list}");
    let (s_theirs, e_theirs) = http.get(&format!("/api/appliances/{serial}"), Some(&b));
    let (s_none, e_none) = http.get("/api/appliances/FRA-3-oca-9", Some(&b));
    assert_eq!((s_theirs, s_none), (404, 404));
    assert_eq!(
        e_theirs["error"]
            .as_str()
            .unwrap()
            .replace(serial.as_str(), "X"),
        e_none["error"]
            .as_str()
            .unwrap()
            .replace("FRA-3-oca-9", "X"),
        "the two 404s must not differ"
    );
    // Nor can B drain it, report for it, or allocate into A's deployment.
    let (s, _) = http.post(
        &format!("/api/appliances/{serial}/transitions"),
        Some(&b),
        &json!({"to": "draining"}),
    );
    assert_eq!(s, 404);
    let (_, view) = http.get(&format!("/api/appliances/{serial}"), Some(&ops));
    let dep = view["deployment"].as_str().unwrap().to_owned();
    let (s, _) = http.post(
        &format!("/api/deployments/{dep}/appliances"),
        Some(&b),
        &json!({"serial": "x1", "hardware": "flash", "capacity": "1TB", "catalog": "c"}),
    );
    assert_eq!(s, 404);
    // A partner cannot allocate even into its own deployment (ops do), nor ship.
    let (s, _) = http.post(
        &format!("/api/deployments/{dep}/appliances"),
        Some(&a),
        &json!({"serial": "x1", "hardware": "flash", "capacity": "1TB", "catalog": "c"}),
    );
    assert_eq!(s, 403);
    // An appliance's token reports for itself only, and is nothing else.
    let (other, _) = &apps[1];
    let report = json!({"version": "1", "bgp": {"session": "established"}});
    let (s, _) = http.post(
        &format!("/api/appliances/{other}/report"),
        Some(token),
        &report,
    );
    assert_eq!(s, 404);
    let (s, _) = http.post(
        &format!("/api/appliances/{serial}/report"),
        Some(&a),
        &report,
    );
    assert_eq!(s, 403, "a user's token does not report");
    let (s, _) = http.post(
        &format!("/api/appliances/{serial}/transitions"),
        Some(token),
        &json!({"to": "live"}),
    );
    assert_eq!(s, 403);
    let (s, _) = http.post("/api/surveys", Some(token), &survey("X"));
    assert_eq!(s, 403);
    let (s, r) = http.post(
        &format!("/api/appliances/{serial}/report"),
        Some(token),
        &report,
    );
    assert_eq!((s, &r["state"]), (200, &json!("burn_in")), "{r}");
}

#[test]
fn tokens_expire_and_are_revoked() {
    let (_tmp, c) = site();
    let http = Http(c.addr);
    let a = c.login("a@isp-a.test");
    assert_eq!(http.get("/api/appliances", Some(&a)).0, 200);
    assert_eq!(http.get("/api/appliances", None).0, 401);
    assert_eq!(http.get("/api/appliances", Some("fct_0000")).0, 401);
    // Logged out: the token is revoked.
    assert_eq!(http.post("/api/logout", Some(&a), &json!({})).0, 200);
    assert_eq!(http.get("/api/appliances", Some(&a)).0, 401);
    // A token past its expiry.
    let expired =
        c.rt.block_on(async {
            let id: String =
                sqlx::query_scalar("SELECT id FROM users WHERE email = 'a@isp-a.test'")
                    .fetch_one(&c.db.pool)
                    .await
                    .unwrap();
            fill_control::auth::issue(
                &c.db.pool,
                "user",
                &id,
                fill_control::api::wall_clock() - 100,
                50,
            )
            .await
        })
        .unwrap();
    assert_eq!(http.get("/api/appliances", Some(&expired)).0, 401);
    // Wrong passwords and unknown accounts look the same.
    let wrong = http.post(
        "/api/login",
        None,
        &json!({"email": "a@isp-a.test", "password": "nope nope nope"}),
    );
    let unknown = http.post(
        "/api/login",
        None,
        &json!({"email": "z@isp-a.test", "password": "nope nope nope"}),
    );
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.0, 401);
}

#[test]
fn hostile_bodies_get_a_clear_4xx() {
    let (_tmp, c) = site();
    let http = Http(c.addr);
    let a = c.login("a@isp-a.test");
    let post = |body: &[u8], ctype: &str| http.post_bytes("/api/surveys", Some(&a), body, ctype);
    let (s, e) = post(b"{\"site\": ", "application/json");
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("bad JSON"), "{e}");
    let (s, _) = post(b"{}", "text/plain");
    assert_eq!(s, 415);
    let mut big = b"{\"site\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 2 << 20));
    big.extend_from_slice(b"\"}");
    let (s, e) = post(&big, "application/json");
    assert_eq!(s, 413, "{e}");
    let mut extra = survey("S1");
    extra["admin"] = json!(true);
    let (s, e) = http.post("/api/surveys", Some(&a), &extra);
    assert_eq!(s, 400);
    assert!(
        e["error"].as_str().unwrap().contains("unknown field"),
        "{e}"
    );
    for (spoil, why) in [
        (json!({"site": "../etc"}), "site"),
        (json!({"tz": "Europe/Paris\n"}), "tz"),
        (json!({"tz": "Mars/Olympus_Mons"}), "IANA time zone"),
        (
            json!({"contacts": [{"name": "x", "email": "not-an-email", "role": "noc"}]}),
            "email",
        ),
        (
            json!({"contacts": [{"name": "x", "email": "a@b.test", "role": "noc"}]}),
            "engineering",
        ),
        (
            json!({"network": {"asn": 0, "ipv4": ["192.0.2.0/24"], "bgp_neighbors": ["192.0.2.1"]}}),
            "asn",
        ),
        (
            json!({"network": {"asn": 64500, "ipv4": ["192.0.2.0/33"], "bgp_neighbors": ["192.0.2.1"]}}),
            "prefix",
        ),
        (
            json!({"network": {"asn": 64500, "ipv4": ["192.0.2.0/24"], "bgp_neighbors": ["router"]}}),
            "neighbour",
        ),
        (json!({"offpeak": "25:00-06:00"}), "offpeak"),
    ] {
        let mut s = survey("S2");
        for (k, v) in spoil.as_object().unwrap() {
            s[k] = v.clone();
        }
        let (status, e) = http.post("/api/surveys", Some(&a), &s);
        assert_eq!(status, 422, "{spoil} → {e}");
        assert!(e["error"].as_str().unwrap().contains(why), "{spoil} → {e}");
    }
    // A transition the lifecycle forbids, or to no state, names why.
    let ops = c.login("ops@fleet.test");
    let apps = deploy(&c, &ops, &a, "FRA-9", 1);
    let (s, e) = http.post(
        &format!("/api/appliances/{}/transitions", apps[0].0),
        Some(&ops),
        &json!({"to": "allocated"}),
    );
    assert_eq!(s, 409);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("the next states are burn_in"),
        "{e}"
    );
    let (s, e) = http.post(
        &format!("/api/appliances/{}/transitions", apps[0].0),
        Some(&ops),
        &json!({"to": "flying"}),
    );
    assert_eq!(s, 422, "{e}");
    // Garbage on the wire gets an answer or a close, and the server still serves.
    let (s, _) = http.raw(b"GARBAGE\r\n\r\n");
    assert_eq!(s, 400);
    assert_eq!(http.get("/healthz", None).0, 200);
}

/// Every path and method of docs/control-api.openapi.json reaches its handler (whatever it
/// then answers to an empty body), and the document's security matches the API's: what it
/// says needs no token is answered without one.
#[test]
fn every_documented_route_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    c.user("ops@fleet.test", "ops", None);
    let ops = c.login("ops@fleet.test");
    let http = Http(c.addr);
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../docs/control-api.openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let generic = [
        "no such path (see docs/control-api.md)",
        "no such path or method (see docs/control-api.md)",
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 17);
    for (path, methods) in paths {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in methods.as_object().unwrap() {
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            // Logging out revokes the token it carries: a token of its own.
            let own = c.login("ops@fleet.test");
            let token = match (public, path.as_str()) {
                (true, _) => None,
                (false, "/api/logout") => Some(own.as_str()),
                (false, "/metrics") => Some(crate::harness::METRICS_TOKEN),
                (false, _) => Some(ops.as_str()),
            };
            let method = method.to_uppercase();
            let (status, text) = if method == "GET" {
                let mut req =
                    format!("GET {concrete} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
                if let Some(t) = token {
                    req += &format!("Authorization: Bearer {t}\r\n");
                }
                http.raw(format!("{req}\r\n").as_bytes())
            } else {
                let mut req = format!(
                    "{method} {concrete} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                );
                if let Some(t) = token {
                    req += &format!("Authorization: Bearer {t}\r\n");
                }
                http.raw(format!("{req}\r\n{{}}").as_bytes())
            };
            assert!(
                !generic.iter().any(|g| text.contains(g)),
                "{method} {path}: not served ({status} {text})"
            );
            assert_ne!(
                status, 401,
                "{method} {path}: documented without a token, refused: {text}"
            );
        }
    }
}
