//! The fleet's database: SQLite (embedded, the default) or PostgreSQL, through sqlx's `Any`
//! driver, one portable schema (`migrations/`), applied at start. docs/control-db.md has the
//! tables and why sqlx.
//!
//! Every query is written once, with `$1`-style placeholders, which both engines take.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use anyhow::{Context, Result, bail};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, ConnectOptions};

/// The migrations, in order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "fleet", include_str!("../migrations/0001_fleet.sql")),
    (
        2,
        "rollouts invitations catalogs",
        include_str!("../migrations/0002_rollouts_invitations_catalogs.sql"),
    ),
    (3, "portal", include_str!("../migrations/0003_portal.sql")),
];

/// Which engine a database runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// An embedded SQLite file: one control-plane instance.
    Sqlite,
    /// A PostgreSQL server: any number of instances.
    Postgres,
}

/// The control plane's database.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool every write (and every read-then-write transaction) goes through.
    pub pool: AnyPool,
    /// The pool pages read through: on SQLite, four more connections that only read (WAL
    /// lets them read beside the writer, each seeing what was committed when it began);
    /// on PostgreSQL, the same pool.
    pub read: AnyPool,
    /// Its engine.
    pub engine: Engine,
}

#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<
        Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 'static>,
    > {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Parses `--db`: `sqlite:PATH` (created on first start) or `postgres://…`.
pub fn parse_url(url: &str) -> Result<(Engine, String)> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        if path.is_empty() {
            bail!("sqlite: needs a path, as in sqlite:/var/lib/fill/control.db");
        }
        if path.contains('?') {
            bail!("sqlite:{path}: give a plain path, without options");
        }
        return Ok((Engine::Sqlite, format!("sqlite://{path}?mode=rwc")));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Engine::Postgres, url.to_owned()));
    }
    bail!("--db must be sqlite:PATH or postgres://…, not {url:?}")
}

impl Db {
    /// Connects and applies the migrations not yet applied (under the engine's lock, so
    /// instances starting together apply each once).
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (engine, url) = parse_url(url)?;
        let options: AnyConnectOptions = url
            .parse::<AnyConnectOptions>()
            .context("bad --db")?
            .disable_statement_logging();
        let pool = match engine {
            // One connection: SQLite takes one writer at a time anyway, and a single
            // connection never meets another's lock. WAL lets readers of the file (a backup,
            // sqlite3) in beside it.
            Engine::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await
            }
            Engine::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .connect_with(options.clone())
                    .await
            }
        }
        .context("cannot open the database")?;
        Migrator::new(Embedded)
            .await
            .context("the embedded migrations")?
            .run(&pool)
            .await
            .context("cannot apply the migrations")?;
        let read = match engine {
            Engine::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA query_only = ON").await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
                .context("cannot open the database for reading")?,
            Engine::Postgres => pool.clone(),
        };
        Ok(Self { pool, read, engine })
    }
}

/// Whether an error is a unique or primary key violation (another instance got there first).
pub fn is_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.is_unique_violation(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            parse_url("sqlite:/tmp/x.db").unwrap(),
            (Engine::Sqlite, "sqlite:///tmp/x.db?mode=rwc".into())
        );
        assert_eq!(parse_url("postgres://u@h/db").unwrap().0, Engine::Postgres);
        for bad in ["sqlite:", "mysql://x", "x.db", "sqlite:/a?mode=ro"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
