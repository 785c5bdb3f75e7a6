//! The `fill` command: the operator's CLI for every job.
//!
//! - [`cli`]: the arguments, as clap parses them;
//! - `cmd`: the commands, one module per family (store, catalog, delta, plan, run, prefill,
//!   appliance, simulate, demo, site), glue over `fill-core` and `fill-store`;
//! - `common`: what several commands share (runtime, progress, a store's delta);
//! - `catalog_io`: CSV and JSON import and export of catalogs;
//! - `fill`: the fill engine (fetch, verify, write, fail over, resume);
//! - `net`: the HTTP client side of the protocol; `sources`: the sources file and holdings;
//! - `write`: block writers (io_uring O_DIRECT, positioned writes), the only `unsafe`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

mod catalog_io;
pub mod cli;
mod cmd;
mod common;
mod fill;
mod net;
mod object;
mod planning;
mod remotes;
mod server_process;
mod sources;
mod write;

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
    init_logging();
    match cmd::run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::BadData) => ExitCode::from(3),
        Ok(Outcome::NotReady) => ExitCode::from(4),
        // A closed pipe (`fill ... | head`) is the reader's choice, not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FILL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
