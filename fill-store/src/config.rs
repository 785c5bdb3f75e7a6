//! Server configuration: a TOML file (every field optional, every field documented), command
//! line flags over it, validated once into a [`ServerConfig`].
//!
//! ```toml
//! listen = "127.0.0.1:7878"       # address to listen on
//! store = "/srv/fill/store"       # the store directory to serve
//! admin_token = "…"               # enables POST /admin/*; or env FILL_ADMIN_TOKEN
//! log_format = "text"             # "text" or "json"
//! sendfile = "auto"               # "auto", "always" or "never": file bodies by sendfile(2)
//!
//! [limits]
//! max_connections = 1024          # connections served at once; more wait in the backlog
//! max_connections_per_client = 128  # from one address at once; more are closed at once
//! header_read_timeout = "10s"     # a request's headers must arrive within this (slowloris)
//! idle_timeout = "60s"            # a connection with no byte read or written is closed
//! max_header_bytes = 16384        # request head larger than this is refused (>= 8192)
//! shutdown_grace = "10s"          # on SIGTERM/ctrl-c, in-flight requests get this long
//!
//! [lifecycle]                     # turn-up checks, drain, webhook (the `lifecycle` module)
//! check_interval = "5m"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fill_core::duration::parse_duration;
use fill_core::lifecycle::DEFAULT_OFFLOAD_THRESHOLD;
use serde::Deserialize;

/// The configuration file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address to listen on, e.g. `127.0.0.1:7878` or `[::1]:7878`.
    pub listen: Option<String>,
    /// The store directory to serve.
    pub store: Option<PathBuf>,
    /// Bearer token for `POST /admin/*` (at least 16 characters); without one admin is off.
    /// The environment variable `FILL_ADMIN_TOKEN` is used when this is absent.
    pub admin_token: Option<String>,
    /// `text` (default) or `json` log lines on standard error.
    pub log_format: Option<LogFormat>,
    /// When to send file bodies with `sendfile(2)` rather than copying them through the
    /// process: `auto` (default: for every peer but loopback ones), `always`, `never`.
    /// docs/benchmarks.md has what each costs.
    pub sendfile: Option<SendfileMode>,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsFile,
    /// The appliance's lifecycle: turn-up checks, webhook (docs/lifecycle.md).
    #[serde(default)]
    pub lifecycle: SettingsFile,
    /// Its fleet's control plane, to report to (`crate::control`).
    pub control: Option<crate::control::ControlFile>,
    /// The folder relative paths are taken from (the config file's).
    #[serde(skip)]
    pub base: PathBuf,
}

/// `[limits]`, as written. Durations are strings like `10s`, `500ms`, `2m`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Connections served at once (default 1024); more wait in the kernel's backlog.
    pub max_connections: Option<usize>,
    /// Connections served at once from one address (default 128, at most
    /// `max_connections`); more from it are closed at once, so one client cannot hold
    /// every slot.
    pub max_connections_per_client: Option<usize>,
    /// Time allowed for a request's headers to arrive (default `10s`).
    pub header_read_timeout: Option<String>,
    /// A connection with no byte read or written for this long is closed (default `60s`).
    pub idle_timeout: Option<String>,
    /// Largest request head accepted, in bytes (default 16384, at least 8192).
    pub max_header_bytes: Option<usize>,
    /// How long in-flight requests get to finish on shutdown (default `10s`).
    pub shutdown_grace: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// When file bodies go out with `sendfile(2)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendfileMode {
    /// For peers across a network, not for loopback ones: on loopback the receiving process
    /// copies every byte anyway, and page-backed packets make its copy slower than the copy
    /// `sendfile` saves here (measured in docs/benchmarks.md).
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never: bodies are copied through the process.
    Never,
}

impl SendfileMode {
    /// Whether to use `sendfile(2)` for a connection from `peer`.
    pub fn for_peer(self, peer: &SocketAddr) -> bool {
        match self {
            Self::Auto => !peer.ip().is_loopback(),
            Self::Always => true,
            Self::Never => false,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Store directory.
    pub store: PathBuf,
    /// Admin bearer token, if admin is on.
    pub admin_token: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// When to send bodies with `sendfile(2)`.
    pub sendfile: SendfileMode,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one address.
    pub max_connections_per_client: usize,
    /// Header read timeout.
    pub header_read_timeout: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Lifecycle settings.
    pub lifecycle: Settings,
    /// The control plane it reports to, if any.
    pub control: Option<crate::control::ControlSettings>,
}

/// What is wrong with the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, with line and column.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("config: {field}: {reason}")]
    Invalid {
        /// The field, e.g. `limits.idle_timeout`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigFile {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::bounded::read_text(path, crate::bounded::MAX_CONFIG_BYTES).map_err(
            |source| ConfigError::Read {
                path: path.to_owned(),
                source,
            },
        )?;
        let mut file = Self::parse(&text, path)?;
        file.base = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(file)
    }

    /// Parses configuration text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// Applies defaults and flags (`listen`, `store` from the command line win), and validates.
    /// `env_token` is `FILL_ADMIN_TOKEN`, used when the file has no `admin_token`.
    pub fn resolve(
        self,
        listen: Option<&str>,
        store: Option<&Path>,
        env_token: Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let invalid = |field, reason: String| ConfigError::Invalid { field, reason };
        let listen_text = listen.map(str::to_owned).or(self.listen).ok_or_else(|| {
            invalid(
                "listen",
                "missing: give --listen ADDR or `listen` in the config".into(),
            )
        })?;
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:7878 or [::1]:7878"),
            )
        })?;
        let store = store.map(Path::to_owned).or(self.store).ok_or_else(|| {
            invalid(
                "store",
                "missing: give --store DIR or `store` in the config".into(),
            )
        })?;
        if store.exists() && !store.is_dir() {
            return Err(invalid(
                "store",
                format!("{} is not a directory", store.display()),
            ));
        }
        let admin_token = self.admin_token.or(env_token).filter(|t| !t.is_empty());
        if let Some(t) = &admin_token {
            if t.len() < 16 {
                return Err(invalid(
                    "admin_token",
                    format!("too short ({} characters): use at least 16", t.len()),
                ));
            }
            if t.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
                return Err(invalid(
                    "admin_token",
                    "must be printable ASCII without spaces".into(),
                ));
            }
        }
        let duration =
            |field, value: Option<String>, default: Duration| -> Result<Duration, ConfigError> {
                match value {
                    None => Ok(default),
                    Some(v) => {
                        let d = parse_duration(&v).map_err(|e| invalid(field, e.to_string()))?;
                        if d.is_zero() {
                            return Err(invalid(field, "must be more than zero".into()));
                        }
                        Ok(d)
                    }
                }
            };
        let lifecycle = self.lifecycle.resolve(&self.base)?;
        let control = self
            .control
            .map(|c| c.resolve(&self.base))
            .transpose()
            .map_err(|e| ConfigError::Invalid {
                field: e.field,
                reason: e.reason,
            })?;
        let l = self.limits;
        let max_connections = l.max_connections.unwrap_or(1024);
        if !(1..=1_000_000).contains(&max_connections) {
            return Err(invalid(
                "limits.max_connections",
                format!("{max_connections} is not between 1 and 1000000"),
            ));
        }
        let max_connections_per_client = l
            .max_connections_per_client
            .unwrap_or(128)
            .min(max_connections);
        if max_connections_per_client == 0 {
            return Err(invalid(
                "limits.max_connections_per_client",
                "0 is not at least 1".into(),
            ));
        }
        let max_header_bytes = l.max_header_bytes.unwrap_or(16 * 1024);
        if !(8192..=1 << 20).contains(&max_header_bytes) {
            return Err(invalid(
                "limits.max_header_bytes",
                format!("{max_header_bytes} is not between 8192 and 1048576"),
            ));
        }
        Ok(ServerConfig {
            listen,
            store,
            admin_token,
            log_format: self.log_format.unwrap_or_default(),
            sendfile: self.sendfile.unwrap_or_default(),
            max_connections,
            max_connections_per_client,
            header_read_timeout: duration(
                "limits.header_read_timeout",
                l.header_read_timeout,
                Duration::from_secs(10),
            )?,
            idle_timeout: duration(
                "limits.idle_timeout",
                l.idle_timeout,
                Duration::from_secs(60),
            )?,
            max_header_bytes,
            shutdown_grace: duration(
                "limits.shutdown_grace",
                l.shutdown_grace,
                Duration::from_secs(10),
            )?,
            lifecycle,
            control,
        })
    }
}

/// `[lifecycle]` in the server's configuration, as written. Every field optional.
///
/// ```toml
/// [lifecycle]
/// target = "/srv/fill/target.catalog" # default: the copy `fill run` keeps in the store
/// sources = "/etc/fill/sources.toml"  # each must answer GET /catalog (the sources check)
/// check_interval = "5m"               # how often the checks run during burn_in
/// offload_threshold = 0.9             # held share of the target's weight needed to go live
/// min_free = "1GiB"                   # free space the store-health check needs
/// sample_blocks = 64                  # blocks re-verified by each store-health check
/// auto_live = true                    # go live by itself when every check passes
/// retry_after = "5m"                  # Retry-After of the 503s while drained
/// webhook = "http://10.0.0.9:8080/fill-events" # each event is POSTed here as JSON
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    /// The target catalog the fill check measures against.
    pub target: Option<PathBuf>,
    /// The sources file whose sources must answer.
    pub sources: Option<PathBuf>,
    /// How often the checks run during `burn_in` (default `5m`).
    pub check_interval: Option<String>,
    /// Held share of the target's weight needed (default 0.9).
    pub offload_threshold: Option<f64>,
    /// Free space the store needs (default `1GiB`).
    pub min_free: Option<String>,
    /// Blocks re-verified per check (default 64; every block when the store has fewer).
    pub sample_blocks: Option<u64>,
    /// Go live when every check passes (default true).
    pub auto_live: Option<bool>,
    /// `Retry-After` of 503s while draining or drained, when no maintenance window says
    /// longer (default `5m`).
    pub retry_after: Option<String>,
    /// Where events are POSTed (`http://` only).
    pub webhook: Option<String>,
}

/// The validated lifecycle settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The target catalog; `None`: the store's `.fill/state/target.catalog`.
    pub target: Option<PathBuf>,
    /// The sources file, if any.
    pub sources: Option<PathBuf>,
    /// Period of the checks during `burn_in`.
    pub check_interval: Duration,
    /// Offload share needed.
    pub offload_threshold: f64,
    /// Free bytes needed.
    pub min_free: u64,
    /// Blocks re-verified per check.
    pub sample_blocks: u64,
    /// Go live when every check passes.
    pub auto_live: bool,
    /// Default `Retry-After` while draining or drained.
    pub retry_after: Duration,
    /// Webhook URL.
    pub webhook: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            target: None,
            sources: None,
            check_interval: Duration::from_secs(300),
            offload_threshold: DEFAULT_OFFLOAD_THRESHOLD,
            min_free: 1 << 30,
            sample_blocks: 64,
            auto_live: true,
            retry_after: Duration::from_secs(300),
            webhook: None,
        }
    }
}

impl SettingsFile {
    /// Validates; relative paths are taken from `base` (the config file's folder).
    pub fn resolve(self, base: &Path) -> Result<Settings, ConfigError> {
        let invalid = |field, reason: String| ConfigError::Invalid { field, reason };
        let d = Settings::default();
        let duration = |field, v: Option<String>, default| match v {
            None => Ok(default),
            Some(v) => match fill_core::duration::parse_duration(&v) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(invalid(field, "must be more than zero".into())),
                Err(e) => Err(invalid(field, e.to_string())),
            },
        };
        let offload_threshold = self.offload_threshold.unwrap_or(d.offload_threshold);
        if !(0.0..=1.0).contains(&offload_threshold) {
            return Err(invalid(
                "lifecycle.offload_threshold",
                format!("{offload_threshold} is not between 0 and 1"),
            ));
        }
        let min_free = match self.min_free {
            None => d.min_free,
            Some(s) => fill_core::size::parse_size(&s)
                .map_err(|e| invalid("lifecycle.min_free", e.to_string()))?,
        };
        let sample_blocks = self.sample_blocks.unwrap_or(d.sample_blocks);
        if sample_blocks > 1_000_000 {
            return Err(invalid(
                "lifecycle.sample_blocks",
                format!("{sample_blocks} is more than 1000000"),
            ));
        }
        if let Some(url) = &self.webhook {
            crate::sources::check_url(url)
                .map_err(|e| invalid("lifecycle.webhook", format!("{e:#}")))?;
        }
        let path = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(Settings {
            target: self.target.map(path),
            sources: self.sources.map(path),
            check_interval: duration(
                "lifecycle.check_interval",
                self.check_interval,
                d.check_interval,
            )?,
            offload_threshold,
            min_free,
            sample_blocks,
            auto_live: self.auto_live.unwrap_or(true),
            retry_after: duration("lifecycle.retry_after", self.retry_after, d.retry_after)?,
            webhook: self.webhook.map(|w| w.trim_end_matches('/').to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<ServerConfig, String> {
        ConfigFile::parse(text, Path::new("test.toml"))
            .and_then(|f| f.resolve(None, None, None))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_values() {
        let c = resolve("listen = \"127.0.0.1:0\"\nstore = \"/nonexistent\"\n").unwrap();
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert!(c.admin_token.is_none());
        let c = resolve(
            "listen = \"[::1]:9\"\nstore = \"/x\"\nadmin_token = \"0123456789abcdef\"\nlog_format = \"json\"\n\
             [limits]\nmax_connections = 5\nidle_timeout = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.max_connections, c.idle_timeout, c.log_format),
            (5, Duration::from_secs(2), LogFormat::Json)
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            resolve("store = \"/x\"").unwrap_err(),
            "config: listen: missing: give --listen ADDR or `listen` in the config"
        );
        assert_eq!(
            resolve("listen = \"localhost\"\nstore = \"/x\"").unwrap_err(),
            "config: listen: \"localhost\" is not an address like 127.0.0.1:7878 or [::1]:7878"
        );
        assert_eq!(
            resolve("listen = \"127.0.0.1:1\"\nstore = \"/x\"\nadmin_token = \"short\"")
                .unwrap_err(),
            "config: admin_token: too short (5 characters): use at least 16"
        );
        assert_eq!(
            resolve("listen = \"127.0.0.1:1\"\nstore = \"/x\"\n[limits]\nidle_timeout = \"30\"")
                .unwrap_err(),
            "config: limits.idle_timeout: bad duration \"30\": expected a number and a unit (ms, s, m, h, d), like 10s, 48h or 1h30m"
        );
        assert_eq!(
            resolve("listen = \"127.0.0.1:1\"\nstore = \"/x\"\n[limits]\nmax_header_bytes = 100")
                .unwrap_err(),
            "config: limits.max_header_bytes: 100 is not between 8192 and 1048576"
        );
        let unknown =
            resolve("listen = \"127.0.0.1:1\"\nstore = \"/x\"\nlisten_port = 3").unwrap_err();
        assert!(
            unknown.starts_with("config test.toml: ")
                && unknown.contains("unknown field `listen_port`"),
            "{unknown}"
        );
    }
}
