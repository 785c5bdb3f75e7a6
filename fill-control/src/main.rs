//! The `fill-control` binary: the fleet's control plane.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use fill_control::{api, auth, db::Db, server};

/// The fleet's control plane: surveys, deployments, appliances from allocation to live,
/// reports, emails, rolling upgrades, the price of waiting, and the partner portal. API:
/// docs/control-api.md. Portal: docs/portal.md. Database: docs/control-db.md.
///
/// --db sqlite:PATH (embedded; created on first start) or postgres://USER@HOST/DB (several
/// instances may share one). Migrations are applied at start.
#[derive(Debug, Parser)]
#[command(name = "fill-control", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Logging: -v/-q, --log-file, --log-format.
    #[command(flatten)]
    log: fill_store::logging::LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and the portal (open http://ADDR/ in a browser), run rollouts, alerts
    /// and reminders, and send queued emails when the config names an SMTP server.
    Serve {
        /// The database: sqlite:PATH or postgres://….
        #[arg(long)]
        db: String,
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: String,
        /// TOML config (docs/control-api.md, "Emails"): silence, tick, upgrade_timeout,
        /// public_url, metrics_token, [smtp] host/port/from/tls/user, [waiting]
        /// cost_per_gib/currency/churn_per_day/simulation.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage pre-fill stations.
    #[command(subcommand)]
    Station(StationCommand),
    /// A fleet on loopback, from site survey to live in under a minute: the control plane
    /// on SQLite with an SMTP sink, an origin and three appliances as real fill-servers,
    /// the station's pre-fill and the burn-in fills as real `fill` runs. Prints each step
    /// and the emails sent. Needs `fill` and `fill-server` beside `fill-control`.
    Demo {
        /// Work in this directory (created; kept afterwards) instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum StationCommand {
    /// Make a station's token (printed once, on standard output): `fill prefill
    /// --report-to URL --station-token FILE` reports each pre-fill with it.
    Add {
        /// The database.
        #[arg(long)]
        db: String,
        /// The station's name (as events and emails name it).
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Role {
    /// The fleet's operators: every deployment.
    Ops,
    /// A partner's user: that partner's deployments only.
    Partner,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password (at least 12 characters) is read from standard input.
    Add {
        /// The database.
        #[arg(long)]
        db: String,
        /// The user's email (their login).
        #[arg(long)]
        email: String,
        /// ops or partner.
        #[arg(long, value_enum)]
        role: Role,
        /// With --role partner: the partner (created if new).
        #[arg(long)]
        partner: Option<String>,
        /// Read the password from standard input (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.log.init("warn", None) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve { db, listen, config } => {
            let config = match config {
                Some(p) => server::Config::load(&p)?,
                None => server::Config::default(),
            };
            rt.block_on(async {
                let db = Db::open(&db).await?;
                let listener = api::bind(&listen).await?;
                eprintln!(
                    "fill-control: serving on http://{}",
                    listener.local_addr().context("no local address")?
                );
                tokio::select! {
                    r = server::run(db, listener, config) => r,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            })
        }
        Command::Demo { dir } => {
            drop(rt);
            match dir {
                Some(d) => {
                    std::fs::create_dir_all(&d)
                        .with_context(|| format!("cannot create {}", d.display()))?;
                    fill_control::demo::run(&d)
                }
                None => {
                    let tmp = std::env::temp_dir()
                        .join(format!("fill-control-demo-{}", std::process::id()));
                    std::fs::create_dir_all(&tmp)
                        .with_context(|| format!("cannot create {}", tmp.display()))?;
                    let r = fill_control::demo::run(&tmp);
                    let _ = std::fs::remove_dir_all(&tmp);
                    r
                }
            }
        }
        Command::Station(StationCommand::Add { db, name }) => {
            if !fill_control::text::is_name(&name) {
                anyhow::bail!("--name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'");
            }
            let token = rt.block_on(async {
                let db = Db::open(&db).await?;
                auth::issue(
                    &db.pool,
                    "station",
                    &name,
                    api::wall_clock(),
                    auth::STATION_TOKEN_SECS,
                )
                .await
            })?;
            println!("{token}");
            eprintln!("fill-control: station {name}: its token (valid a year) is above; keep it");
            Ok(())
        }
        Command::User(UserCommand::Add {
            db,
            email,
            role,
            partner,
            password_stdin: _,
        }) => {
            let mut input = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut input)
                .context("cannot read the password from standard input")?;
            let password = input.lines().next().unwrap_or("").to_owned();
            let role = match role {
                Role::Ops => "ops",
                Role::Partner => "partner",
            };
            rt.block_on(async {
                let db = Db::open(&db).await?;
                auth::add_user(
                    &db,
                    &email,
                    role,
                    partner.as_deref(),
                    &password,
                    api::wall_clock(),
                )
                .await
            })?;
            eprintln!("fill-control: user {email} ({role}) created");
            Ok(())
        }
    }
}
