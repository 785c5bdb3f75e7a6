//! Logging, the same for every binary: `-v`/`-q` (repeatable), `--log-file PATH`,
//! `--log-format text|json`, and `FILL_LOG` (a tracing filter such as `debug` or
//! `fill_client=debug,warn`) over them all. Colour only when the log goes to a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};

pub use crate::config::LogFormat;

/// The logging flags, flattened into each binary's arguments (global: they go anywhere on
/// the command line).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// More detail in the log: -v info, -vv debug, -vvv trace (FILL_LOG, when set, wins).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less: -q errors only (and no progress lines), -qq nothing.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Append the log to this file instead of standard error (never coloured).
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Log lines as text (default) or json (one object per line, for log shippers).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// Levels from quietest to loudest.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl LogArgs {
    /// The level these flags give from a binary's default (`"warn"` for the CLI, `"info"`
    /// for the servers).
    pub fn level(&self, default: &str) -> &'static str {
        let base = LEVELS.iter().position(|l| *l == default).unwrap_or(2) as i32;
        let i = (base + i32::from(self.verbose) - i32::from(self.quiet)).clamp(0, 5);
        LEVELS[i as usize]
    }

    /// Starts logging: these flags over `default` (the level) and `config_format` (a config
    /// file's `log_format`, which the flag overrides). A log file that cannot be opened is
    /// an error naming it.
    pub fn init(&self, default: &str, config_format: Option<LogFormat>) -> Result<()> {
        let filter = match std::env::var("FILL_LOG") {
            // The parse error's own words only: its source repeats them.
            Ok(v) if !v.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(v.trim())
                .map_err(|e| anyhow::anyhow!("FILL_LOG {v:?} is not a log filter: {e}"))?,
            _ => tracing_subscriber::EnvFilter::new(self.level(default)),
        };
        let format = self.log_format.or(config_format).unwrap_or_default();
        let (writer, ansi) = match &self.log_file {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open log file {}", path.display()))?;
                (
                    tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(
                        file,
                    )),
                    false,
                )
            }
            None => (
                tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
                std::io::stderr().is_terminal(),
            ),
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(ansi);
        // A second init in one process (tests) keeps the first: not an error.
        let _ = match format {
            LogFormat::Json => builder.json().try_init(),
            LogFormat::Text => builder.try_init(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_move_the_level_from_the_default() {
        let at = |verbose, quiet, default| {
            LogArgs {
                verbose,
                quiet,
                ..LogArgs::default()
            }
            .level(default)
        };
        assert_eq!(at(0, 0, "warn"), "warn");
        assert_eq!(at(1, 0, "warn"), "info");
        assert_eq!(at(2, 0, "warn"), "debug");
        assert_eq!(at(9, 0, "warn"), "trace");
        assert_eq!(at(0, 1, "warn"), "error");
        assert_eq!(at(0, 2, "warn"), "off");
        assert_eq!(at(0, 5, "info"), "off");
        assert_eq!(at(1, 0, "info"), "debug");
    }
}
