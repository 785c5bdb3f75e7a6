//! The pre-fill reported by a station, and the price of waiting: the real delta of what a
//! delivered appliance holds against its region's current target, what each day adds, and
//! the daily reminder the site's engineering contacts receive.

use fill_core::catalog::{CatalogBuilder, wire};
use fill_core::id::ContentId;
use serde_json::json;

use crate::harness::Smtp;
use crate::workflow::survey;
use crate::{Control, Http};

/// A catalog of files `(seed, size)`, most popular first.
fn catalog(files: &[(u32, u64)]) -> Vec<u8> {
    let mut b = CatalogBuilder::new();
    for (rank, &(seed, size)) in files.iter().enumerate() {
        let id = ContentId::of(&seed.to_le_bytes());
        b.push(
            id,
            size,
            1.0 / (rank as f64 + 1.0),
            &format!("title-{seed}"),
        )
        .unwrap();
    }
    b.finish().unwrap()
}

fn id_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn put(http: &Http, path: &str, token: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let (s, text) = http.raw(&req);
    (s, serde_json::from_str(&text).unwrap_or_default())
}

#[test]
fn a_delivered_appliance_shows_and_emails_the_price_of_waiting() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path());
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    let (ops, partner) = c.ops_and_partner();
    let station =
        c.rt.block_on(fill_control::auth::issue(
            &c.db.pool,
            "station",
            "factory-1",
            fill_control::api::wall_clock(),
            3600,
        ))
        .unwrap();
    let http = Http(c.addr);
    let (s, d) = http.post("/api/surveys", Some(&partner), &survey("VIE-1"));
    assert_eq!(s, 201, "{d}");
    let dep = d["deployment"].as_str().unwrap();
    let (s, a) = http.post(
        &format!("/api/deployments/{dep}/appliances"),
        Some(&ops),
        &json!({"serial": "vie-1", "hardware": "storage", "capacity": "1TB", "catalog": "eu-central"}),
    );
    assert_eq!(s, 201, "{a}");
    // The station's first report starts the pre-fill.
    const GIB: u64 = 1 << 30;
    let (s, r) = http.post(
        "/api/appliances/vie-1/prefill",
        Some(&station),
        &json!({"done_bytes": 0, "total_bytes": 10 * GIB}),
    );
    assert_eq!((s, &r["state"]), (200, &json!("prefilling")), "{r}");
    // What it held when done: ten 1 GiB files. The region has since dropped two and
    // gained three of 2 GiB.
    let held = catalog(&(0..10).map(|k| (k, GIB)).collect::<Vec<_>>());
    let mut now: Vec<(u32, u64)> = (100..103).map(|k| (k, 2 * GIB)).collect();
    now.extend((0..8).map(|k| (k, GIB)));
    let target = catalog(&now);
    // Catalogs are checked: the id is the BLAKE3 of the file; a partner sends none.
    let held_id = id_of(&held);
    let path = format!("/api/catalogs/{held_id}");
    assert_eq!(put(&http, &path, &partner, &held).0, 403);
    assert_eq!(put(&http, &path, &station, &target).0, 422);
    assert_eq!(put(&http, "/api/catalogs/../x", &station, &held).0, 404);
    let bogus = b"FILLCAT\0 not a catalog at all".to_vec();
    assert_eq!(
        put(
            &http,
            &format!("/api/catalogs/{}", id_of(&bogus)),
            &station,
            &bogus
        )
        .0,
        422
    );
    let (s, k) = put(&http, &path, &station, &wire::compress(&held, 3));
    assert_eq!(s, 200, "{k}");
    assert_eq!(
        (k["entries"].as_u64(), k["bytes"].as_u64()),
        (Some(10), Some(10 * GIB))
    );
    let (s, r) = http.post(
        "/api/appliances/vie-1/prefill",
        Some(&station),
        &json!({"done_bytes": 10 * GIB, "total_bytes": 10 * GIB, "catalog": held_id}),
    );
    assert_eq!(s, 200, "{r}");
    // The station reads nothing, and cannot report once the appliance has shipped.
    assert_eq!(http.get("/api/appliances/vie-1", Some(&station)).0, 404);
    let step = |who: &str, body: serde_json::Value| {
        let (s, r) = http.post("/api/appliances/vie-1/transitions", Some(who), &body);
        assert_eq!(s, 200, "{r}");
    };
    step(
        &ops,
        json!({"to": "in_transit", "carrier": "DHL", "tracking": "JD1"}),
    );
    let late = http.post(
        "/api/appliances/vie-1/prefill",
        Some(&station),
        &json!({"done_bytes": 1, "total_bytes": 1}),
    );
    assert_eq!(late.0, 409, "{}", late.1);
    step(&partner, json!({"to": "delivered"}));
    // No target for its region yet: no price.
    let (_, v) = http.get("/api/appliances/vie-1", Some(&partner));
    assert_eq!(v["waiting"], json!(null), "{v}");
    assert_eq!(v["prefill"]["done"], true);
    let target_id = id_of(&target);
    assert_eq!(
        put(&http, &format!("/api/catalogs/{target_id}"), &ops, &target).0,
        200
    );
    let region = |who: &str| {
        let mut req = serde_json::to_vec(&json!({"catalog": target_id})).unwrap();
        let mut head = format!(
            "PUT /api/regions/eu-central HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {who}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            req.len()
        )
        .into_bytes();
        head.append(&mut req);
        http.raw(&head).0
    };
    assert_eq!(region(&partner), 403);
    assert_eq!(region(&ops), 200);
    let (_, v) = http.get("/api/appliances/vie-1", Some(&partner));
    let w = &v["waiting"];
    // The real delta: the three new files, 6 GiB, at 1.00 EUR a GiB; a day adds 1% of the
    // 10 GiB it holds.
    assert_eq!(w["bytes_now"], 6 * GIB, "{v}");
    assert_eq!(w["cost_now"], 6.0);
    assert_eq!(w["bytes_per_day"], GIB / 10);
    assert!((w["cost_per_day"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    assert_eq!(w["currency"], "EUR");
    // Two days later, the daily reminder (once).
    c.rt.block_on(
        sqlx::query(
            "UPDATE events SET time = time - 2 * 86400 - 60 WHERE appliance = 'vie-1' AND to_state = 'delivered'",
        )
        .execute(&c.db.pool),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.send_mail(&smtp);
    let reminders: Vec<(String, String)> = smtp
        .messages()
        .into_iter()
        .filter(|m| m.1 == "Waiting to be installed: appliance vie-1 at VIE-1")
        .map(|m| (m.0, m.2))
        .collect();
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert_eq!(reminders[0].0, "eng@isp.test");
    // Quoted-printable: soft line breaks undone.
    let body = &reminders[0].1.replace("=\r\n", "").replace("=\n", "");
    assert!(body.contains("Delivered 2 days ago"), "{body}");
    assert!(body.contains("needs 6 GiB (6.00 EUR)"), "{body}");
    assert!(body.contains("Each further day adds about"), "{body}");
    // Installed: no price any more.
    step(&partner, json!({"to": "installed"}));
    let (_, v) = http.get("/api/appliances/vie-1", Some(&partner));
    assert_eq!(v["waiting"], json!(null));
}
