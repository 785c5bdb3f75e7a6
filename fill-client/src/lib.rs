//! The `fill` command: the operator's CLI for every job.
//!
//! - [`cli`]: the arguments, as clap parses them;
//! - `cmd`: the commands, one module per family (store, catalog, delta, plan, run, prefill,
//!   appliance, simulate, demo, site), glue over `fill-core` and `fill-store`;
//! - `common`: what several commands share (runtime, progress, a store's delta);
//! - `catalog_io`: CSV and JSON import and export of catalogs;
//! - `fill`: the fill engine (fetch, verify, write, fail over, resume);
//! - `net`: the HTTP client side of the protocol ([`response`]: its reading of an answer's
//!   head, pure); `sources`: the sources file and holdings; `station`: a pre-fill
//!   station's reports to the fleet's control plane;
//! - `write`: block writers (io_uring O_DIRECT, positioned writes), the only `unsafe`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

/// `print!` to stdout, returning what went wrong instead of panicking: a closed pipe
/// (`fill store list | head -1`) comes back as an error `main` ends quietly on.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!($crate::stdout(), $($arg)*)
    }};
}

/// `println!` the same way as [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::stdout(), $($arg)*)
    }};
}

mod catalog_io;
pub mod cli;
mod cmd;
mod common;
mod fill;
mod net;
mod object;
mod planning;
mod remotes;
pub mod response;
mod server_process;
mod site;
mod site_plan;
mod sources;
mod station;
mod write;

/// The site file's reading, for the fuzz targets (`fuzz/`).
pub use site::{SiteFile, parse_site};

/// A command's outcome when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything fine.
    Ok,
    /// The command ran, and found bad data (exit code 3).
    BadData,
    /// The turn-up checks ran, and at least one failed (exit code 4).
    NotReady,
}

/// Parses the arguments, runs the command, maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if cli.log.quiet > 0 {
        common::QUIET.store(true, Ordering::Relaxed);
    }
    if let Err(e) = cli.log.init("warn", None) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match cmd::run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::BadData) => ExitCode::from(3),
        Ok(Outcome::NotReady) => ExitCode::from(4),
        // A closed pipe (`fill ... | head`) is the reader's choice, not an error.
        Err(_) if STDOUT_CLOSED.load(Ordering::Relaxed) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<common::Interrupted>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(5)
        }
        Err(e) => {
            // Errors quote what came from outside (names, a peer's words): escaped.
            eprintln!("error: {}", fill_core::text::Escaped(&format!("{e:#}")));
            // A path given as a store that is not one is a bad argument (exit 2).
            let bad_argument = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<fill_store::store::StoreError>(),
                    Some(
                        fill_store::store::StoreError::NotAStore { .. }
                            | fill_store::store::StoreError::NotADirectory(_)
                    )
                )
            });
            if bad_argument {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Set when stdout's reader went away: `main` then ends quietly, whatever error followed
/// (and only then: a socket's broken pipe is a failure like any other).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Stdout, locked, noting a closed pipe. Every command writes its output through it.
pub(crate) fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

/// See [`stdout`].
#[derive(Debug)]
pub(crate) struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    fn note<T>(r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Self::note(self.0.write(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Self::note(self.0.flush())
    }
}
