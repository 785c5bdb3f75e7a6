//! A pre-fill station reporting to the control plane (`fill prefill --report-to`): the real
//! `fill-control` binary on SQLite, its station token from `fill-control station add`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::fill_e2e::{assert_filled, region};
use crate::{ServerProcess, fill, p, spawn_listening};

fn control_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_fill")).with_file_name("fill-control")
}

/// `fill-control serve` on a free loopback port; killed on drop.
struct ControlProcess {
    child: std::process::Child,
    addr: SocketAddr,
}

impl ControlProcess {
    fn start(db: &str) -> Self {
        let (child, addr) = spawn_listening(
            &control_bin(),
            &["serve", "--db", db, "--listen", "127.0.0.1:0"],
        );
        Self { child, addr }
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let mut c = TcpStream::connect(self.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        c.write_all(&body).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        let json = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap_or_default();
        (status, json)
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `fill-control ARGS` with `stdin`; its stdout.
fn control(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(control_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "fill-control {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn prefill_reports_each_appliance_to_the_control_plane() {
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", tmp.path().join("control.db").display());
    for (email, role, partner) in [
        ("ops@fleet.test", "ops", None),
        ("eng@isp.test", "partner", Some("isp")),
    ] {
        let mut args = vec!["user", "add", "--db", &db, "--email", email, "--role", role];
        if let Some(p) = partner {
            args.extend(["--partner", p]);
        }
        args.push("--password-stdin");
        control(&args, "a long test password\n");
    }
    let token = control(&["station", "add", "--db", &db, "--name", "factory-1"], "");
    let token_file = tmp.path().join("station.token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let cp = ControlProcess::start(&db);
    let login = |email: &str| {
        let (s, v) = cp.call(
            "POST",
            "/api/login",
            None,
            &json!({"email": email, "password": "a long test password"}),
        );
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_owned()
    };
    let (ops, partner) = (login("ops@fleet.test"), login("eng@isp.test"));
    let (s, d) = cp.call(
        "POST",
        "/api/surveys",
        Some(&partner),
        &json!({"site": "PRG-1", "shipping_address": ["x"],
                "contacts": [{"name": "E", "email": "eng@isp.test", "role": "engineering"}],
                "network": {"asn": 64500, "ipv4": ["192.0.2.0/24"], "bgp_neighbors": ["192.0.2.1"]},
                "tz": "Europe/Prague"}),
    );
    assert_eq!(s, 201, "{d}");
    for serial in ["prg-a", "prg-b"] {
        let (s, a) = cp.call(
            "POST",
            &format!(
                "/api/deployments/{}/appliances",
                d["deployment"].as_str().unwrap()
            ),
            Some(&ops),
            &json!({"serial": serial, "hardware": "storage", "capacity": "1TB", "catalog": "eu"}),
        );
        assert_eq!(s, 201, "{a}");
    }
    let r = region(tmp.path(), 4);
    let origin = ServerProcess::start(&tmp.path().join("origin"));
    let stores: Vec<PathBuf> = ["a", "b"].iter().map(|n| tmp.path().join(n)).collect();
    for s in &stores {
        std::fs::create_dir(s).unwrap();
    }
    let url = format!("http://{}", origin.addr);
    let cp_url = format!("http://{}", cp.addr);
    let base = |serials: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = ["prefill", "--target", p(&r.target), "--source", &url]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend([
            "--report-to".into(),
            cp_url.clone(),
            "--station-token".into(),
        ]);
        a.push(p(&token_file).into());
        for s in &stores {
            a.extend(["--store".into(), p(s).into()]);
        }
        for s in serials {
            a.extend(["--serial".into(), s.to_string()]);
        }
        a
    };
    let run = |args: &[String]| fill(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // A serial the control plane does not know: refused before any byte is fetched.
    let refused = run(&base(&["prg-a", "prg-zz"]));
    assert_ne!(refused.code(), 0);
    assert!(
        refused
            .stderr()
            .contains("the control plane refused the pre-fill")
            && refused.stderr().contains("no appliance prg-zz"),
        "{}",
        refused.stderr()
    );
    let fetched = std::fs::read_dir(stores[0].join("content")).map_or(0, |d| d.count());
    assert_eq!(
        fetched, 0,
        "nothing fetched before the control plane agreed"
    );
    // One serial for two stores.
    let short = run(&base(&["prg-a"]));
    assert!(
        short.stderr().contains("one --serial per --store"),
        "{}",
        short.stderr()
    );
    run(&base(&["prg-a", "prg-b"])).ok();
    for s in &stores {
        assert_filled(&r, s);
    }
    for (serial, store) in ["prg-a", "prg-b"].iter().zip(&stores) {
        let (s, v) = cp.call(
            "GET",
            &format!("/api/appliances/{serial}"),
            Some(&ops),
            &json!(null),
        );
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["state"], "prefilling", "{v}");
        assert_eq!(v["prefill"]["done"], true, "{v}");
        assert_eq!(v["prefill"]["station"], "factory-1");
        assert_eq!(v["events"][1]["actor"], "station:factory-1");
        // The catalog it holds is the store's own, by id.
        let held = std::fs::read(store.join("catalog")).unwrap();
        let id = blake3::hash(&held).to_hex().to_string();
        let got = v["prefill_catalog"].as_str().map(str::to_owned);
        assert_eq!(got.as_deref(), Some(id.as_str()), "{v}");
    }
}
