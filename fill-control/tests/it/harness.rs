//! What the tests run against: a control plane on loopback (in-process, on its own tokio
//! runtime), PostgreSQL started in a temp dir, an SMTP server (aiosmtpd) writing a Maildir,
//! and a small HTTP client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fill_control::api::{self, App};
use fill_control::db::Db;

/// How long the silence test's control plane lets an installed appliance go without
/// reporting (the others: 10 minutes, so no alert comes between a test's steps).
pub const SILENCE: i64 = 2;
/// The tests' control planes' metrics token.
pub const METRICS_TOKEN: &str = "metrics-token-for-tests";
/// How long the tests' control planes let one phase of an upgrade last.
pub const UPGRADE_TIMEOUT: i64 = 60;

/// The tests' price of waiting: 1.00 EUR a GiB, 1% of what an appliance holds a day.
pub fn pricing() -> fill_control::waiting::Pricing {
    fill_control::waiting::Pricing {
        cost_per_gib: 1.0,
        currency: "EUR".into(),
        churn_per_day: 0.01,
    }
}

/// A control-plane instance serving on a loopback port; stopped when dropped.
pub struct Control {
    pub addr: SocketAddr,
    pub db: Db,
    pub rt: tokio::runtime::Runtime,
}

impl Control {
    /// Opens `db_url` (applying the migrations) and serves the API.
    pub fn start(db_url: &str) -> Self {
        Self::start_with_silence(db_url, 600)
    }

    /// [`Control::start`], flagging appliances silent after `silence` seconds.
    pub fn start_with_silence(db_url: &str, silence: i64) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (db, listener) = rt.block_on(async {
            let db = Db::open(db_url).await.unwrap();
            (db, api::bind("127.0.0.1:0").await.unwrap())
        });
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(App {
            db: db.clone(),
            clock: api::wall_clock,
            silence,
            public_url: format!("http://{addr}"),
            pricing: pricing(),
            metrics: fill_control::metrics::Metrics::new(),
            metrics_token: Some(METRICS_TOKEN.into()),
            fleet_order: Default::default(),
        });
        rt.spawn(api::serve(listener, app));
        let watch = fill_control::watch::Settings {
            every: Duration::from_millis(100),
            silence,
            upgrade_timeout: UPGRADE_TIMEOUT,
            pricing: pricing(),
        };
        rt.spawn(fill_control::watch::run(db.clone(), watch, api::wall_clock));
        Self { addr, db, rt }
    }

    /// Creates a user.
    pub fn user(&self, email: &str, role: &str, partner: Option<&str>) {
        self.rt
            .block_on(fill_control::auth::add_user(
                &self.db,
                email,
                role,
                partner,
                "a long test password",
                api::wall_clock(),
            ))
            .unwrap();
    }

    /// The usual two users, ops@fleet.test and eng@isp.test (partner isp-a), logged in:
    /// their tokens.
    pub fn ops_and_partner(&self) -> (String, String) {
        self.user("ops@fleet.test", "ops", None);
        self.user("eng@isp.test", "partner", Some("isp-a"));
        (self.login("ops@fleet.test"), self.login("eng@isp.test"))
    }

    /// Logs in; the bearer token.
    pub fn login(&self, email: &str) -> String {
        let (status, body) = Http(self.addr).post(
            "/api/login",
            None,
            &serde_json::json!({"email": email, "password": "a long test password"}),
        );
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Sends what the outbox has due through `smtp`.
    pub fn send_mail(&self, smtp: &Smtp) -> usize {
        let sender = fill_control::mail::Sender::new(&smtp.config()).unwrap();
        self.rt
            .block_on(fill_control::mail::send_due(
                &self.db,
                &sender,
                api::wall_clock(),
                100,
            ))
            .unwrap()
    }
}

/// A tiny HTTP/1.1 client: one request per connection.
#[derive(Clone, Copy)]
pub struct Http(pub SocketAddr);

impl Http {
    /// Sends raw bytes; the status and the body.
    pub fn raw(&self, request: &[u8]) -> (u16, String) {
        let mut c = TcpStream::connect(self.0).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // A server may answer and close before it has read a refused body.
        let _ = c.write_all(request);
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_owned();
        (status, body)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        ctype: &str,
    ) -> (u16, serde_json::Value) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        if let Some(t) = token {
            req += &format!("Authorization: Bearer {t}\r\n");
        }
        let body = body.unwrap_or(b"");
        if method == "POST" {
            req += &format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        req += "\r\n";
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        let (status, text) = self.raw(&bytes);
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
        (status, json)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        self.send("GET", path, token, None, "")
    }

    pub fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let b = serde_json::to_vec(body).unwrap();
        self.send("POST", path, token, Some(&b), "application/json")
    }

    pub fn post_bytes(
        &self,
        path: &str,
        token: Option<&str>,
        body: &[u8],
        ctype: &str,
    ) -> (u16, serde_json::Value) {
        self.send("POST", path, token, Some(body), ctype)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real SMTP server (aiosmtpd) on loopback, writing what it receives into a Maildir.
pub struct Smtp {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
}

impl Smtp {
    pub fn start(dir: &Path) -> Self {
        let maildir = dir.join("maildir");
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the email tests need aiosmtpd: pip install aiosmtpd (.ci/run does)");
        let mut s = Self {
            child,
            port,
            maildir,
        };
        if let Ok(Some(status)) = s.child.try_wait() {
            panic!("aiosmtpd exited at once ({status}): pip install aiosmtpd (.ci/run does)");
        }
        wait_for_port(port, "aiosmtpd");
        s
    }

    pub fn config(&self) -> fill_control::mail::SmtpConfig {
        toml::from_str(&format!(
            "host = \"127.0.0.1\"\nport = {}\nfrom = \"fill@control.test\"\n",
            self.port
        ))
        .unwrap()
    }

    /// Every message received: (recipients, subject, whole text).
    pub fn messages(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for e in entries {
                let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
                let header = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                };
                out.push((header("To:"), header("Subject:"), text.clone()));
            }
        }
        out.sort();
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server in a temp dir on a loopback port (Debian's postgresql: initdb and
/// pg_ctl, run as the `postgres` user when the tests run as root); stopped when dropped.
pub struct Postgres {
    dir: PathBuf,
    pub url: String,
    as_postgres: bool,
}

fn pg_bin(name: &str) -> PathBuf {
    for v in ["17", "16", "15", "14", "13"] {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin/{name}"));
        if p.exists() {
            return p;
        }
    }
    panic!("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)");
}

impl Postgres {
    pub fn start(tmp: &Path) -> Self {
        let dir = tmp.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        let root = rustix_is_root();
        if root {
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(tmp)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let run = |bin: &str, args: &[&str]| {
            let mut c = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(pg_bin(bin));
                c
            } else {
                Command::new(pg_bin(bin))
            };
            let out = c.args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{bin} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let data = dir.join("data");
        let d = data.to_str().unwrap();
        run(
            "initdb",
            &["-D", d, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        let port = free_port();
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=100",
            dir.display()
        );
        let log = dir.join("log");
        run(
            "pg_ctl",
            &[
                "-D",
                d,
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        wait_for_port(port, "postgres");
        Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            as_postgres: root,
        }
    }
}

fn rustix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_bin("pg_ctl"));
            c
        } else {
            Command::new(pg_bin("pg_ctl"))
        };
        let _ = c
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
