//! What an appliance tells its fleet's control plane (`[control]` in the server's config;
//! docs/control-api.md, "report"): its software version, its BGP session as its speaker
//! (BIRD 2, through `birdc`) says, its last turn-up checks and its fill's progress; and what
//! the control plane answers (start the burn-in fill).
//!
//! ```toml
//! [control]
//! url = "http://127.0.0.1:8443"         # the control plane (plain HTTP: a local TLS proxy)
//! serial = "FRA-3-oca-0"                 # this appliance's serial
//! token_file = "/etc/fill/control.token" # the token allocation gave it (fct_…)
//! interval = "60s"                       # how often it reports (default 60s)
//! bgp_command = ["birdc", "-r", "show", "protocols", "all", "isp"]  # optional
//! on_burn_in = ["systemctl", "start", "fill-burn-in"]  # optional: run once when told
//! upgrade_command = ["/usr/local/sbin/fill-upgrade"]    # optional: given the version
//! version_command = ["cat", "/etc/fill/version"]        # optional: what is installed
//! upgrade_timeout = "30m"                                # default 30m
//! ```
//!
//! A rolling upgrade (docs/control-api.md, "Rollouts"): the control plane drains the
//! appliance, then answers `upgrade: VERSION`; the appliance enters maintenance and runs
//! `upgrade_command VERSION` (its maintenance action); the version it reports afterwards is
//! what `version_command` prints (or, without one, the running binary's), which must be the
//! new one; the control plane then starts burn-in, and the checks run again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// `[control]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlFile {
    /// The control plane's base URL (`http://` or `https://`).
    pub url: String,
    /// This appliance's serial.
    pub serial: String,
    /// A file holding the appliance's token.
    pub token_file: PathBuf,
    /// How often it reports (default `60s`).
    pub interval: Option<String>,
    /// The command that prints the BGP session (`birdc … show protocols all NAME`).
    pub bgp_command: Option<Vec<String>>,
    /// The command started once when the control plane says to start burn-in.
    pub on_burn_in: Option<Vec<String>>,
    /// The maintenance action of an upgrade: run with the version as its last argument.
    pub upgrade_command: Option<Vec<String>>,
    /// The command printing the installed software version (its first line).
    pub version_command: Option<Vec<String>>,
    /// How long the upgrade command may run (default `30m`).
    pub upgrade_timeout: Option<String>,
}

/// What is wrong in `[control]`: the field and why (the config names it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: {field}: {reason}")]
pub struct Invalid {
    /// The field, e.g. `control.url`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// `[control]`, checked.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Base URL, no trailing slash.
    pub url: String,
    /// Serial.
    pub serial: String,
    /// The token.
    pub token: String,
    /// Report period.
    pub interval: Duration,
    /// BGP command.
    pub bgp_command: Option<Vec<String>>,
    /// Burn-in command.
    pub on_burn_in: Option<Vec<String>>,
    /// Upgrade command.
    pub upgrade_command: Option<Vec<String>>,
    /// Version command.
    pub version_command: Option<Vec<String>>,
    /// How long the upgrade command may run.
    pub upgrade_timeout: Duration,
}

impl ControlFile {
    /// Checks the section; reads the token file (relative paths from `base`).
    pub fn resolve(self, base: &Path) -> Result<ControlSettings, Invalid> {
        let invalid = |field, reason: String| Invalid { field, reason };
        let url = self.url.trim_end_matches('/').to_owned();
        if url.starts_with("https://") {
            return Err(invalid(
                "control.url",
                format!(
                    "{url:?}: the appliance speaks plain http:// (reach a TLS control plane through a local TLS proxy)"
                ),
            ));
        }
        if !url.starts_with("http://") || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "control.url",
                format!("{url:?} is not an http:// URL"),
            ));
        }
        if !fill_core::text::is_name(&self.serial) {
            return Err(invalid(
                "control.serial",
                "1 to 64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        let path = base.join(&self.token_file);
        let token = read_token(&path).map_err(|e| invalid("control.token_file", e))?;
        let duration = |field, v: Option<String>, default| match v {
            None => Ok(default),
            Some(v) => match fill_core::duration::parse_duration(&v) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(invalid(field, "must be more than zero".into())),
                Err(e) => Err(invalid(field, e.to_string())),
            },
        };
        let interval = duration("control.interval", self.interval, Duration::from_secs(60))?;
        let upgrade_timeout = duration(
            "control.upgrade_timeout",
            self.upgrade_timeout,
            Duration::from_secs(30 * 60),
        )?;
        for (field, cmd) in [
            ("control.bgp_command", &self.bgp_command),
            ("control.on_burn_in", &self.on_burn_in),
            ("control.upgrade_command", &self.upgrade_command),
            ("control.version_command", &self.version_command),
        ] {
            if cmd.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(invalid(field, "give the program and its arguments".into()));
            }
        }
        Ok(ControlSettings {
            url,
            serial: self.serial,
            token,
            interval,
            bgp_command: self.bgp_command,
            on_burn_in: self.on_burn_in,
            upgrade_command: self.upgrade_command,
            version_command: self.version_command,
            upgrade_timeout,
        })
    }
}

/// Reads a control-plane token (`fct_…`, at most 4 KiB) from a file.
pub fn read_token(path: &Path) -> Result<String, String> {
    let token = crate::bounded::read_text(path, 4096)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .trim()
        .to_owned();
    if !token.starts_with("fct_")
        || token
            .bytes()
            .any(|b| !b.is_ascii_alphanumeric() && b != b'_')
    {
        return Err(format!(
            "{} does not hold a control-plane token (fct_…)",
            path.display()
        ));
    }
    Ok(token)
}

/// The BGP session as the speaker says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bgp {
    /// `established`, or the state it is in (lower case: `idle`, `connect`, `active`…).
    pub session: String,
    /// Routes received (imported).
    pub prefixes: u64,
}

/// Reads `birdc show protocols all NAME`: the `BGP state:` line and the routes imported
/// (summed over the channels). `None` when the text is not one BGP protocol's.
pub fn parse_birdc(text: &str) -> Option<Bgp> {
    let mut session = None;
    let mut prefixes = 0u64;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("BGP state:") {
            session = Some(v.trim().to_ascii_lowercase());
        } else if let Some(v) = line.strip_prefix("Routes:") {
            // "Routes:         12 imported, 0 exported, 12 preferred"
            prefixes += v
                .split(',')
                .find_map(|p| p.trim().strip_suffix(" imported"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    session.map(|session| Bgp { session, prefixes })
}

/// What a command did: whether it exited with success, its standard output and the end of
/// its standard error (each at most 1 MiB read).
#[derive(Debug, Clone)]
pub struct Ran {
    /// Exited with status 0.
    pub success: bool,
    /// What it printed.
    pub stdout: String,
    /// The last line of what it printed on its standard error.
    pub stderr_tail: String,
}

/// Runs `cmd` (program and arguments) for at most `timeout`, killing it then; blocking.
pub fn run_command(cmd: &[String], timeout: Duration) -> Result<Ran, String> {
    use std::io::Read;
    let (program, args) = cmd.split_first().ok_or("no command")?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Read both pipes while it runs, so a chatty command cannot fill one and stall.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let read_out = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.take(1 << 20).read_to_string(&mut text);
        }
        text
    });
    let read_err = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.take(1 << 20).read_to_string(&mut text);
        }
        text
    });
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {}",
                    fill_core::duration::human_secs(timeout.as_secs() as i64)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let stdout = read_out.join().unwrap_or_default();
    let stderr = read_err.join().unwrap_or_default();
    Ok(Ran {
        success: status.success(),
        stdout,
        stderr_tail: stderr.lines().last().unwrap_or("").trim().to_owned(),
    })
}

/// Runs the BGP command (at most 5 s) and reads what it prints.
pub async fn bgp_status(cmd: &[String]) -> Result<Bgp, String> {
    let cmd = cmd.to_vec();
    let ran = tokio::task::spawn_blocking(move || run_command(&cmd, Duration::from_secs(5)))
        .await
        .map_err(|e| e.to_string())??;
    parse_birdc(&ran.stdout)
        .ok_or_else(|| "the BGP command printed no `BGP state:` line".to_owned())
}

/// The installed version as `cmd` prints it (its first line; at most 5 s).
pub async fn installed_version(cmd: &[String]) -> Result<String, String> {
    let cmd = cmd.to_vec();
    let ran = tokio::task::spawn_blocking(move || run_command(&cmd, Duration::from_secs(5)))
        .await
        .map_err(|e| e.to_string())??;
    let v = ran.stdout.lines().next().unwrap_or("").trim();
    if !ran.success || v.is_empty() || v.len() > 100 || v.chars().any(char::is_control) {
        return Err(format!(
            "the version command printed no version (exit {}): {}",
            if ran.success { "0" } else { "non-zero" },
            ran.stderr_tail
        ));
    }
    Ok(v.to_owned())
}

/// Runs the upgrade command with `version` as its last argument (at most `timeout`).
pub async fn run_upgrade(cmd: &[String], version: &str, timeout: Duration) -> Result<(), String> {
    let mut cmd = cmd.to_vec();
    cmd.push(version.to_owned());
    let ran = tokio::task::spawn_blocking(move || run_command(&cmd, timeout))
        .await
        .map_err(|e| e.to_string())??;
    if ran.success {
        Ok(())
    } else {
        Err(format!(
            "the upgrade command failed: {}",
            if ran.stderr_tail.is_empty() {
                "no message"
            } else {
                &ran.stderr_tail
            }
        ))
    }
}

/// What the control plane answered a report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Answer {
    /// The state it holds for the appliance.
    pub state: String,
    /// Start the burn-in fill.
    pub start_burn_in: bool,
    /// Drain (and stay drained while it says so).
    #[serde(default)]
    pub drain: bool,
    /// Install this software version (the maintenance action), then report it.
    #[serde(default)]
    pub upgrade: Option<String>,
}

/// Posts a report (JSON) to `{url}/api/appliances/{serial}/report`; the answer.
pub async fn post_report(c: &ControlSettings, body: Bytes) -> Result<Answer, String> {
    let url = format!("{}/api/appliances/{}/report", c.url, c.serial);
    let answer = call(
        hyper::Method::POST,
        &url,
        &c.token,
        "application/json",
        body,
    )
    .await?;
    serde_json::from_slice::<Answer>(&answer).map_err(|e| format!("{url}: not an answer: {e}"))
}

/// One request to the control plane with a bearer token (at most 10 s, or a minute for a
/// body over 1 MiB); the answer's body (at most 64 KiB), or what went wrong (a refusal
/// with the control plane's words).
pub async fn call(
    method: hyper::Method,
    url: &str,
    token: &str,
    content_type: &str,
    body: Bytes,
) -> Result<Bytes, String> {
    use http_body_util::BodyExt;
    let timeout = if body.len() > 1 << 20 {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(10)
    };
    let client = crate::lifecycle::client(timeout);
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(http_body_util::Full::new(body))
        .map_err(|e| format!("{url}: {e}"))?;
    let answer = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| crate::store::chain(&e))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), 64 << 10)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        Ok(body)
    };
    match tokio::time::timeout(timeout, answer).await {
        Err(_) => Err(format!("{url}: no answer within {timeout:?}")),
        Ok(r) => r.map_err(|e| format!("{url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birdc_output_is_read() {
        let text = "BIRD 2.0.12 ready.\n\
            Name       Proto      Table      State  Since         Info\n\
            isp        BGP        ---        up     12:00:01.123  Established\n\
            \x20 BGP state:          Established\n\
            \x20   Neighbor address: 127.0.0.2\n\
            \x20 Channel ipv4\n\
            \x20   Routes:         12 imported, 0 exported, 12 preferred\n\
            \x20 Channel ipv6\n\
            \x20   Routes:         3 imported, 1 exported, 3 preferred\n";
        assert_eq!(
            parse_birdc(text),
            Some(Bgp {
                session: "established".into(),
                prefixes: 15
            })
        );
        let down = "isp BGP --- start 12:00 Active\n  BGP state:          Active\n";
        assert_eq!(parse_birdc(down).unwrap().session, "active");
        assert_eq!(parse_birdc("syntax error"), None);
    }

    #[test]
    fn commands_report_what_went_wrong() {
        let sh = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(
                installed_version(&sh("echo 2.1.0; echo more")).await,
                Ok("2.1.0".to_owned())
            );
            assert!(installed_version(&sh("true")).await.is_err());
            // The version is the command's last argument.
            let t = Duration::from_secs(5);
            assert_eq!(
                run_upgrade(&sh("test \"$0\" = 3.0"), "3.0", t).await,
                Ok(())
            );
            let e = run_upgrade(&sh("echo disk full >&2; exit 3"), "3.0", t)
                .await
                .unwrap_err();
            assert!(e.contains("disk full"), "{e}");
            let e = run_upgrade(&sh("sleep 5"), "3.0", Duration::from_millis(200))
                .await
                .unwrap_err();
            assert!(e.contains("did not finish"), "{e}");
            let e = run_upgrade(&["/nonexistent/upgrade".to_owned()], "3.0", t)
                .await
                .unwrap_err();
            assert!(e.contains("cannot run"), "{e}");
        });
    }

    #[test]
    fn the_section_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "fct_abc123\n").unwrap();
        std::fs::write(dir.path().join("bad"), "hello there\n").unwrap();
        let f = |url: &str, serial: &str, token: &str| ControlFile {
            url: url.into(),
            serial: serial.into(),
            token_file: token.into(),
            interval: None,
            bgp_command: None,
            on_burn_in: None,
            upgrade_command: None,
            version_command: None,
            upgrade_timeout: None,
        };
        let ok = f("http://127.0.0.1:8080/", "FRA-3-oca-0", "t")
            .resolve(dir.path())
            .unwrap();
        assert_eq!(
            (ok.url.as_str(), ok.token.as_str()),
            ("http://127.0.0.1:8080", "fct_abc123")
        );
        for (c, why) in [
            (f("ftp://x", "s", "t"), "control.url"),
            (f("https://x", "s", "t"), "TLS proxy"),
            (f("http://x", "a/b", "t"), "control.serial"),
            (f("http://x", "s", "bad"), "control.token_file"),
            (f("http://x", "s", "missing"), "control.token_file"),
        ] {
            let e = c.resolve(dir.path()).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
