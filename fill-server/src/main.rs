//! The `fill-server` binary: serves a store over HTTP until SIGTERM or ctrl-c.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fill_server::http;
use fill_store::config::ConfigFile;

/// Serves a fill store to peers and appliances over HTTP/1.1.
///
/// GET/HEAD /content/<id> and /outboard/<id> (with single byte ranges), /catalog (zstd when
/// accepted), /metrics (Prometheus), /healthz, /status (the appliance's page) and /status.json;
/// POST /admin/* with a bearer token (drain, undrain, maintenance, checks). On an appliance
/// (a store with lifecycle events) it runs the turn-up checks and goes live when they pass.
/// The protocol is specified in docs/protocol.md. Stops on SIGTERM or ctrl-c, letting
/// in-flight requests finish.
#[derive(Debug, Parser)]
#[command(name = "fill-server", version, max_term_width = 100)]
struct Args {
    /// The store directory to serve (overrides `store` in the config).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:7878 (overrides `listen` in the config).
    #[arg(long)]
    listen: Option<String>,
    /// TOML configuration file (every field documented in docs/protocol.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Logging: -v/-q, --log-file, --log-format (over the config's log_format).
    #[command(flatten)]
    log: fill_store::logging::LogArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let env_token = std::env::var("FILL_ADMIN_TOKEN").ok();
    let config = file.resolve(args.listen.as_deref(), args.store.as_deref(), env_token)?;
    args.log.init("info", Some(config.log_format))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let store = config.store.clone();
        let (listener, state) = http::bind(config).await?;
        let addr = http::local_addr(&listener);
        eprintln!(
            "fill-server: serving {} on http://{}",
            store.display(),
            addr.map_or_else(|| "?".into(), |a| a.to_string())
        );
        http::serve(listener, state, shutdown_signal()).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    fill_store::signal::stop_requested().await;
    tracing::info!("signal received: shutting down");
}
