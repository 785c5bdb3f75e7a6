//! fill-server reporting to the fleet's control plane (`[control]`): the control plane
//! (fill-control, in process, on SQLite) learns the appliance's version, BGP session and
//! checks from its reports alone, starts its burn-in when its BGP session is established,
//! and the appliance follows: its own lifecycle moves to burn-in and its burn-in command
//! runs; a drain asked on the control plane drains the appliance, and comes back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fill_core::lifecycle::State;
use fill_store::store::Store;

use crate::http::{config, start};

fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = serde_json::to_vec(body).unwrap();
    let mut c = TcpStream::connect(addr).unwrap();
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
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap_or_default();
    (status, json)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A BIRD 2 daemon on loopback with one BGP session (`isp` on the appliance's side,
/// `partner` on the router's), multihop over `lo`; the router announces two prefixes.
/// Stopped when dropped. Debian's `bird2` (.ci/run installs it).
struct Bird {
    pid_file: std::path::PathBuf,
    socket: std::path::PathBuf,
}

impl Bird {
    fn start(
        dir: &std::path::Path,
        name: &str,
        (ip, port): (&str, u16),
        (peer, peer_port): (&str, u16),
        announces: bool,
    ) -> Self {
        let (asn, peer_asn, proto) = if announces {
            (64501, 64500, "partner")
        } else {
            (64500, 64501, "isp")
        };
        let statics = if announces {
            "protocol static { ipv4; route 198.51.100.0/24 blackhole; route 203.0.113.0/24 blackhole; }\n"
        } else {
            ""
        };
        let (import, export) = if announces {
            ("none", "all")
        } else {
            ("all", "none")
        };
        let conf = dir.join(format!("{name}.bird.conf"));
        std::fs::write(
            &conf,
            format!(
                "router id {ip};\nprotocol device {{}}\nprotocol direct {{ ipv4; interface \"lo\"; }}\n{statics}\
                 protocol bgp {proto} {{\n  local {ip} port {port} as {asn};\n  neighbor {peer} port {peer_port} as {peer_asn};\n\
                 multihop;\n  ipv4 {{ import {import}; export {export}; }};\n}}\n"
            ),
        )
        .unwrap();
        let (socket, pid_file) = (
            dir.join(format!("{name}.ctl")),
            dir.join(format!("{name}.pid")),
        );
        let status = std::process::Command::new("bird")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(&pid_file)
            .status()
            .expect("the BGP test needs BIRD 2: apt-get install bird2 (.ci/run does)");
        assert!(
            status.success(),
            "bird did not start with {}",
            conf.display()
        );
        Self { pid_file, socket }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// A control plane on SQLite in `dir`, with an ops user and a partner user; its address, the
/// runtime serving it, and both tokens.
fn control_plane(dir: &std::path::Path) -> (SocketAddr, tokio::runtime::Runtime, String, String) {
    use fill_control::{api, auth, db::Db};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite:{}", dir.join("control.db").display());
    let (db, listener) = rt.block_on(async {
        let db = Db::open(&url).await.unwrap();
        for (email, role, partner) in [
            ("ops@f.test", "ops", None),
            ("eng@isp.test", "partner", Some("isp")),
        ] {
            auth::add_user(
                &db,
                email,
                role,
                partner,
                "a long test password",
                api::wall_clock(),
            )
            .await
            .unwrap();
        }
        (db, api::bind("127.0.0.1:0").await.unwrap())
    });
    let addr = listener.local_addr().unwrap();
    let pricing = fill_control::waiting::Pricing {
        cost_per_gib: 0.02,
        currency: "USD".into(),
        churn_per_day: 0.01,
    };
    let watch = fill_control::watch::Settings {
        every: Duration::from_millis(100),
        silence: 900,
        upgrade_timeout: 60,
        pricing: pricing.clone(),
    };
    rt.spawn(fill_control::watch::run(db.clone(), watch, api::wall_clock));
    rt.spawn(api::serve(
        listener,
        Arc::new(api::App {
            db,
            clock: api::wall_clock,
            silence: 900,
            public_url: "http://portal.test".into(),
            pricing,
            metrics: fill_control::metrics::Metrics::new(),
            metrics_token: None,
            fleet_order: Default::default(),
        }),
    ));
    let login = |email: &str| {
        let (s, v) = call(
            addr,
            "POST",
            "/api/login",
            None,
            &serde_json::json!({"email": email, "password": "a long test password"}),
        );
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_owned()
    };
    let (ops, partner) = (login("ops@f.test"), login("eng@isp.test"));
    (addr, rt, ops, partner)
}

/// A site (`survey`: its site, zone and window) with one appliance allocated, shipped,
/// delivered and installed on the control plane, and `store` recording the same; the
/// appliance's token.
fn installed(
    (cp, ops, partner): (SocketAddr, &str, &str),
    mut survey: serde_json::Value,
    serial: &str,
    store: &Store,
) -> String {
    for (k, v) in serde_json::json!({
        "shipping_address": ["x"],
        "contacts": [{"name": "E", "email": "eng@isp.test", "role": "engineering"}],
        "network": {"asn": 64500, "ipv4": ["192.0.2.0/24"], "bgp_neighbors": ["192.0.2.1"]}})
    .as_object()
    .unwrap()
    {
        survey[k] = v.clone();
    }
    let (s, d) = call(cp, "POST", "/api/surveys", Some(partner), &survey);
    assert_eq!(s, 201, "{d}");
    let (s, a) = call(
        cp,
        "POST",
        &format!(
            "/api/deployments/{}/appliances",
            d["deployment"].as_str().unwrap()
        ),
        Some(ops),
        &serde_json::json!({"serial": serial, "hardware": "storage", "capacity": "1TB", "catalog": "eu"}),
    );
    assert_eq!(s, 201, "{a}");
    for (who, body) in [
        (ops, serde_json::json!({"to": "prefilling"})),
        (
            ops,
            serde_json::json!({"to": "in_transit", "carrier": "UPS", "tracking": "1Z999"}),
        ),
        (partner, serde_json::json!({"to": "delivered"})),
        (partner, serde_json::json!({"to": "installed"})),
    ] {
        let path = format!("/api/appliances/{serial}/transitions");
        let (s, r) = call(cp, "POST", &path, Some(who), &body);
        assert_eq!(s, 200, "{r}");
    }
    for to in [
        State::Allocated,
        State::Prefilling,
        State::InTransit,
        State::Delivered,
        State::Installed,
    ] {
        store.transition(to, 1, "test").unwrap();
    }
    a["token"].as_str().unwrap().to_owned()
}

#[test]
fn burn_in_starts_from_the_report_of_an_installed_appliance_with_bgp_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (cp, _rt, ops, partner) = control_plane(tmp.path());
    // A deployment, an appliance allocated, shipped, delivered and installed, as the
    // appliance's store says too.
    let store = Store::new(tmp.path().join("app")).unwrap();
    let token = installed(
        (cp, &ops, &partner),
        serde_json::json!({"site": "FRA-3", "tz": "Europe/Berlin"}),
        "oca-1",
        &store,
    );
    std::fs::write(tmp.path().join("token"), token).unwrap();
    // Its BGP speaker, a real BIRD 2 on loopback, whose neighbour (the partner's router,
    // another BIRD) is not up yet.
    let ports = (free_port(), free_port());
    let speaker = Bird::start(
        tmp.path(),
        "appliance",
        ("127.0.0.1", ports.0),
        ("127.0.0.2", ports.1),
        false,
    );
    let started = tmp.path().join("burn-in-started");
    let toml = format!(
        "[control]\nurl = \"http://{cp}\"\nserial = \"oca-1\"\ntoken_file = \"{}\"\ninterval = \"200ms\"\n\
         bgp_command = [\"birdc\", \"-s\", \"{}\", \"show\", \"protocols\", \"all\", \"isp\"]\non_burn_in = [\"touch\", \"{}\"]\n",
        tmp.path().join("token").display(),
        speaker.socket.display(),
        started.display()
    );
    let file: fill_store::config::ConfigFile = toml::from_str(&toml).unwrap();
    let mut cfg = config(store.root());
    cfg.control = file.control.map(|c| c.resolve(tmp.path()).unwrap());
    let _server = start(cfg);
    let view = |key: &str| -> serde_json::Value {
        let (s, v) = call(
            cp,
            "GET",
            "/api/appliances/oca-1",
            Some(&ops),
            &serde_json::json!(null),
        );
        assert_eq!(s, 200, "{v}");
        v[key].clone()
    };
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !ok() {
            assert!(t.elapsed() < Duration::from_secs(20), "never: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // It reports: its version and BGP state arrive; with BGP down nothing starts.
    wait_for("a report", &|| {
        view("bgp")
            .as_str()
            .is_some_and(|s| ["active", "connect", "idle"].contains(&s))
    });
    assert_eq!(view("version"), env!("CARGO_PKG_VERSION"));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(view("state"), "installed");
    assert!(!started.exists());
    // The partner's router comes up: the session is established, the control plane starts
    // burn-in, and the appliance follows.
    let _router = Bird::start(
        tmp.path(),
        "router",
        ("127.0.0.2", ports.1),
        ("127.0.0.1", ports.0),
        true,
    );
    wait_for("burn-in on the control plane", &|| {
        view("state") == "burn_in"
    });
    wait_for("burn-in on the appliance", &|| {
        store.lifecycle_events().unwrap().last().map(|e| e.to) == Some(State::BurnIn)
    });
    wait_for("the burn-in command", &|| started.exists());
    // What BIRD received from the router: its two prefixes.
    wait_for("two prefixes", &|| view("bgp_prefixes") == 2);
    let events = view("events");
    let last = &events.as_array().unwrap()[5];
    assert_eq!(
        (last["to"].as_str(), last["actor"].as_str()),
        (Some("burn_in"), Some("control-plane"))
    );
    // Its checks (run by its own lifecycle loop during burn-in) reach the control plane.
    wait_for("check results", &|| {
        !view("checks").as_array().unwrap().is_empty()
    });
    // The partner drains it from the control plane: the appliance drains, and once it
    // reports drained, so is it on the control plane.
    let local = || store.lifecycle_events().unwrap().last().map(|e| e.to);
    let (s, r) = call(
        cp,
        "POST",
        "/api/appliances/oca-1/transitions",
        Some(&partner),
        &serde_json::json!({"to": "draining"}),
    );
    assert_eq!(s, 200, "{r}");
    wait_for("drained on the appliance", &|| {
        local() == Some(State::Drained)
    });
    wait_for("drained on the control plane", &|| {
        view("state") == "drained"
    });
    // Undrained there, it serves again.
    let (s, r) = call(
        cp,
        "POST",
        "/api/appliances/oca-1/transitions",
        Some(&partner),
        &serde_json::json!({"to": "burn_in"}),
    );
    assert_eq!(s, 200, "{r}");
    wait_for("undrained on the appliance", &|| {
        local() == Some(State::BurnIn)
    });
}

/// Polls `ok` every 50 ms for at most 20 s.
fn wait_for(what: &str, ok: &dyn Fn() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A rolling upgrade of a real fill-server: the control plane drains it, it enters
/// maintenance and runs its upgrade command with the version, reports the version its
/// version command then prints, runs its checks again at once (its check interval is an
/// hour) and goes live; the rollout is done.
#[test]
fn a_rollout_upgrades_a_live_fill_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (cp, _rt, ops, partner) = control_plane(tmp.path());
    let h = (fill_control::api::wall_clock() / 3600) % 24;
    // An appliance holding its whole target (its checks pass), installed.
    let (_, store, _) = crate::lifecycle::appliance(tmp.path(), 3);
    let token = installed(
        (cp, &ops, &partner),
        serde_json::json!({"site": "OSL-1", "tz": "UTC",
                           "offpeak": format!("{h:02}:00-{:02}:00", (h + 2) % 24)}),
        "oca-u",
        &store,
    );
    std::fs::write(tmp.path().join("token"), token).unwrap();
    let bgp = tmp.path().join("birdc.sh");
    std::fs::write(
        &bgp,
        "printf 'isp BGP --- up 12:00 x\\n  BGP state:          Established\\n'\n",
    )
    .unwrap();
    // What is installed, and the maintenance action that installs a version.
    let installed = tmp.path().join("installed-version");
    std::fs::write(&installed, "1.0.0\n").unwrap();
    let upgrade = tmp.path().join("upgrade.sh");
    std::fs::write(
        &upgrade,
        format!("printf '%s\\n' \"$1\" > {}\n", installed.display()),
    )
    .unwrap();
    let toml = format!(
        "[control]\nurl = \"http://{cp}\"\nserial = \"oca-u\"\ntoken_file = \"{}\"\ninterval = \"200ms\"\n\
         bgp_command = [\"sh\", \"{}\"]\nversion_command = [\"cat\", \"{}\"]\n\
         upgrade_command = [\"sh\", \"{}\"]\n",
        tmp.path().join("token").display(),
        bgp.display(),
        installed.display(),
        upgrade.display(),
    );
    let file: fill_store::config::ConfigFile = toml::from_str(&toml).unwrap();
    let mut cfg = config(store.root());
    cfg.control = file.control.map(|c| c.resolve(tmp.path()).unwrap());
    cfg.lifecycle = fill_store::config::Settings {
        check_interval: Duration::from_secs(3600),
        ..crate::lifecycle::every_block()
    };
    let _server = start(cfg);
    let view = || -> serde_json::Value {
        let (s, v) = call(
            cp,
            "GET",
            "/api/appliances/oca-u",
            Some(&ops),
            &serde_json::json!(null),
        );
        assert_eq!(s, 200, "{v}");
        v
    };
    // Burn-in from its report, its checks run at once, live.
    wait_for("live on the control plane", &|| view()["state"] == "live");
    assert_eq!(view()["version"], "1.0.0");
    let (s, r) = call(
        cp,
        "POST",
        "/api/rollouts",
        Some(&ops),
        &serde_json::json!({"version": "1.1.0", "appliances": ["oca-u"]}),
    );
    assert_eq!(s, 201, "{r}");
    let id = r["rollout"].as_str().unwrap().to_owned();
    let phase = || {
        let (_, v) = call(
            cp,
            "GET",
            &format!("/api/rollouts/{id}"),
            Some(&ops),
            &serde_json::json!(null),
        );
        v["upgrades"][0]["phase"].as_str().unwrap().to_owned()
    };
    wait_for("the upgrade done", &|| phase() == "done");
    let v = view();
    assert_eq!(v["version"], "1.1.0", "{v}");
    assert_eq!(v["state"], "live");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "1.1.0\n");
    // The appliance's own record of it.
    let local: Vec<State> = store
        .lifecycle_events()
        .unwrap()
        .iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(
        local[local.len() - 5..],
        [
            State::Draining,
            State::Drained,
            State::Maintenance,
            State::BurnIn,
            State::Live
        ],
        "{local:?}"
    );
}
