//! A `fill-server` process on loopback, for `fill demo`: the real binary, as an appliance
//! and its peers run it (the client does not link the server).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};

/// A running `fill-server`, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
}

/// The `fill-server` binary: `$FILL_SERVER`, else the one beside this `fill`.
pub fn server_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FILL_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot find the running fill binary")?;
    let bin = exe.with_file_name("fill-server");
    if !bin.exists() {
        bail!(
            "{} is missing: the demo runs the real fill-server beside fill (build both with \
             `cargo build --release`, or name it with FILL_SERVER=PATH)",
            bin.display()
        );
    }
    Ok(bin)
}

impl ServerProcess {
    /// Starts `fill-server --store STORE` on a free loopback port and waits until it says
    /// where it listens.
    pub fn start(store: &Path) -> Result<Self> {
        let bin = server_binary()?;
        let mut child = Command::new(&bin)
            .arg("--store")
            .arg(store)
            .args(["--listen", "127.0.0.1:0"])
            .env("FILL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr);
        let mut line = String::new();
        lines
            .read_line(&mut line)
            .context("fill-server said nothing")?;
        let Some(addr) = line
            .trim()
            .rsplit("http://")
            .next()
            .filter(|a| a.starts_with("127."))
        else {
            let _ = child.kill();
            bail!("fill-server did not start: {}", line.trim());
        };
        let url = format!("http://{addr}");
        // The rest of its stderr (warnings) is drained so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Ok(Self { child, url })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
