//! Contacts invited: a survey's contacts without an account get one and an email with a
//! one-time link; the link's page and the API set the password once, within 7 days.

use serde_json::json;

use crate::harness::Smtp;
use crate::workflow::survey;
use crate::{Control, Http};

#[test]
fn a_surveys_contacts_are_invited_once_each() {
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path());
    let c = Control::start(&format!("sqlite:{}", tmp.path().join("c.db").display()));
    c.user("eng@isp.test", "partner", Some("isp-a"));
    // A contact who has an account with another partner keeps it, uninvited.
    c.user("shared@isp-b.test", "partner", Some("isp-b"));
    let partner = c.login("eng@isp.test");
    let http = Http(c.addr);
    let mut s = survey("FRA-9");
    s["contacts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "Shared", "email": "shared@isp-b.test", "role": "noc"}));
    let (st, d) = http.post("/api/surveys", Some(&partner), &s);
    assert_eq!(st, 201, "{d}");
    c.send_mail(&smtp);
    let invitations: Vec<(String, String)> = smtp
        .messages()
        .into_iter()
        .filter(|m| m.1 == "Your account for site FRA-9")
        .map(|m| (m.0, m.2))
        .collect();
    let to: Vec<&str> = invitations.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(to, ["noc@isp.test", "ship@isp.test"]);
    let link = |body: &str| -> String {
        let prefix = format!("http://{}/invite/", c.addr);
        let at = body.find(&prefix).expect("a link in the email");
        body[at + prefix.len()..at + prefix.len() + 32].to_owned()
    };
    let (noc_code, ship_code) = (link(&invitations[0].1), link(&invitations[1].1));
    // The link opens the page.
    let (st, page) = http.raw(
        format!("GET /invite/{noc_code} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(st, 200);
    assert!(page.contains("Choose your password"), "{page}");
    // No password yet: nothing logs in.
    let login = |email: &str, password: &str| {
        http.post(
            "/api/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .0
    };
    assert_eq!(login("noc@isp.test", ""), 401);
    let accept = |code: &str, password: &str| {
        http.post(
            "/api/invitations/accept",
            None,
            &json!({"code": code, "password": password}),
        )
    };
    assert_eq!(accept(&noc_code, "short").0, 422);
    let (st, ok) = accept(&noc_code, "the noc's own password");
    assert_eq!(st, 200, "{ok}");
    assert_eq!(ok["email"], "noc@isp.test");
    // The token is a partner's of isp-a: it sees isp-a's deployments.
    let (st, _) = http.get("/api/appliances", ok["token"].as_str());
    assert_eq!(st, 200);
    // Once only.
    assert_eq!(accept(&noc_code, "another long password").0, 404);
    assert_eq!(login("noc@isp.test", "the noc's own password"), 200);
    assert_eq!(login("noc@isp.test", "another long password"), 401);
    for bad in ["../../etc/passwd", "", &"f".repeat(32)] {
        assert_eq!(accept(bad, "a long enough password").0, 404, "{bad}");
    }
    assert_eq!(
        http.post_bytes(
            "/api/invitations/accept",
            None,
            b"{\"code\":",
            "application/json"
        )
        .0,
        400
    );
    // Eight days later the other invitation has expired.
    let later = fill_control::api::wall_clock() + 8 * 86400;
    let late = c.rt.block_on(fill_control::invite::accept(
        &c.db,
        &ship_code,
        "a long enough password",
        later,
    ));
    assert!(late.is_err());
    // The other partner's user was not made isp-a's.
    let (st, v) = http.get("/api/appliances", Some(&c.login("shared@isp-b.test")));
    assert_eq!((st, v), (200, json!([])));
}
