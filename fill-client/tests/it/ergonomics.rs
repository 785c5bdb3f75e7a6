//! What an operator sees: a waiting fill says what it waits for once, an unreachable source
//! is named before the fill, the delta comes first, ctrl-c exits 5 with the way to resume,
//! logs go where -v/-q/--log-file/--log-format say, progress lines appear off a terminal.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ServerProcess, data, fill, p};

/// An origin store of two files, its catalog as the target, an empty appliance.
fn region(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let files = dir.join("files");
    fs::create_dir_all(&files).unwrap();
    fs::write(files.join("a"), data(3 << 20, 1)).unwrap();
    fs::write(files.join("b"), data(1 << 20, 2)).unwrap();
    let origin = dir.join("origin");
    fill(&["store", "import", "--store", p(&origin), p(&files)]).ok();
    let app = dir.join("app");
    fs::create_dir_all(&app).unwrap();
    (origin, app)
}

#[test]
fn a_waiting_fill_says_so_once_and_ctrl_c_leaves_it_resumable() {
    let tmp = tempfile::tempdir().unwrap();
    let (origin, app) = region(tmp.path());
    let srv = ServerProcess::start(&origin);
    // The origin's window opens two hours from now (in a named zone), so the fill waits.
    let hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
        % 24;
    let window = format!("{:02}:00-{:02}:00", (hour + 2) % 24, (hour + 3) % 24);
    let sources = tmp.path().join("sources.toml");
    fs::write(
        &sources,
        format!(
            "[[source]]\nname = \"peer-a\"\nkind = \"peer\"\nurl = \"http://127.0.0.1:1\"\n\
             cost_per_gib = 0.0\nbandwidth = \"10Gbps\"\n\n\
             [[source]]\nname = \"origin\"\nkind = \"origin\"\nurl = \"http://{}\"\n\
             cost_per_gib = 0.02\nbandwidth = \"1Gbps\"\nwindow = \"{window}\"\ntz = \"Etc/UTC\"\n",
            srv.addr
        ),
    )
    .unwrap();
    let log = tmp.path().join("fill.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fill"))
        .args([
            "run",
            "--target",
            p(&origin.join("catalog")),
            "--store",
            p(&app),
            "--sources",
            p(&sources),
            "--capacity",
            "1TB",
            "--reserve",
            "1MB",
            "-v",
            "--log-file",
            p(&log),
            "--log-format",
            "json",
        ])
        .env_remove("FILL_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it wait (it says so at once), long enough for many of the machine's ticks.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read_to_string(&log).is_ok_and(|l| l.contains("waiting until")) {
        assert!(Instant::now() < deadline, "no wait said");
        assert!(child.try_wait().unwrap().is_none(), "the fill ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "ctrl-c did not stop the fill");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();

    // Interrupted, resumable: exit 5 and how to go on.
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(
        err.ends_with(
            "interrupted: every block verified and recorded so far is kept; run the same command again to resume\n"
        ),
        "{err}"
    );
    // The unreachable peer, named once, its error said once (the URL not repeated).
    assert_eq!(err.matches("is unreachable").count(), 1, "{err}");
    assert!(
        err.contains("peer \"peer-a\" is unreachable (http://127.0.0.1:1/catalog: "),
        "{err}"
    );
    assert_eq!(err.matches("127.0.0.1:1/catalog").count(), 1, "{err}");
    // The wait, once, with the window's local hours and when it opens.
    assert_eq!(err.matches("is outside its window").count(), 1, "{err}");
    let opens = format!("{:02}:00 Etc/UTC", (hour + 2) % 24);
    assert!(
        err.contains(&format!(
            "origin is outside its window ({window} Etc/UTC): waiting until {opens} ("
        )),
        "{err}"
    );
    // The delta came first, before the fill began.
    assert!(out.starts_with("target "), "{out}");
    assert!(out.contains("\nfetch "), "{out}");
    // The log file: JSON lines, the same two notes once each.
    let log = fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let said = |what: &str| {
        lines
            .iter()
            .filter(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(what))
            })
            .count()
    };
    assert_eq!(said("is unreachable"), 1, "{log}");
    assert_eq!(said("waiting until"), 1, "{log}");
    // The store records how the fill ended, for its server's status and metrics.
    let last: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(app.join(".fill/state/last-fill.json")).unwrap())
            .unwrap();
    assert_eq!(last["outcome"], "interrupted");
    assert_eq!(last["last_success_at"], serde_json::Value::Null);
}

#[test]
fn progress_lines_off_a_terminal_and_quiet_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    fs::create_dir_all(&files).unwrap();
    for i in 0..4 {
        fs::write(files.join(format!("f{i}")), data(1 << 20, i)).unwrap();
    }
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fill"));
        c.args(args).env_remove("FILL_LOG");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // Not a terminal (piped): a plain line at every update with FILL_PROGRESS_EVERY=0s.
    let store = tmp.path().join("s");
    let out = run(
        &["store", "import", "--store", p(&store), p(&files)],
        &[("FILL_PROGRESS_EVERY", "0s")],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("importing: ") && l.contains(" of 4 MiB (")),
        "{err}"
    );
    let out = run(
        &["store", "verify", "--store", p(&store)],
        &[("FILL_PROGRESS_EVERY", "0s")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("verifying: "));
    // -q: no progress, no notes.
    let out = run(
        &["-q", "store", "verify", "--store", p(&store)],
        &[("FILL_PROGRESS_EVERY", "0s")],
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // By default, a line every 5 s: a short job prints none.
    let out = run(&["store", "verify", "--store", p(&store)], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // Simulation counts delays, not bytes.
    let sim = tmp.path().join("sim");
    let cfg = tmp.path().join("tiny.toml");
    fs::write(&cfg, "[catalog]\ntitles = 200\n").unwrap();
    let out = run(
        &[
            "simulate",
            "--config",
            p(&cfg),
            "--delays",
            "0,1,2",
            "--out",
            p(&sim),
        ],
        &[("FILL_PROGRESS_EVERY", "0s")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("simulating: ") && err.contains(" of 3 delays ("),
        "{err}"
    );

    // A log file that cannot be opened is a bad argument, named.
    let out = run(
        &[
            "--log-file",
            "/nonexistent/dir/fill.log",
            "store",
            "list",
            "--store",
            p(&store),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot open log file /nonexistent/dir/fill.log")
    );
    // Status needs one of --store and --server.
    assert_eq!(fill(&["appliance", "status"]).code(), 2);
}
