//! The sources file (TOML): the places an appliance fills from. Read by the client to
//! fill, and by the server to check that each source answers (turn-up checks).
//!
//! ```toml
//! [[source]]
//! name = "peer-a"                 # unique
//! kind = "peer"                   # peer | tier | origin
//! url = "http://10.0.0.2:7878"    # base URL of a store served over HTTP
//! cost_per_gib = 0.0              # money per 2^30 bytes
//! bandwidth = "10Gbps"            # bits per second, SI units
//! window = "02:00-14:00"          # optional daily window; absent = always open
//! tz = "Europe/Paris"             # optional zone of the window: IANA name or UTC offset (default UTC)
//! catalog = "peer-a.catalog"      # optional: what it holds, without asking it
//! max_connections = 4             # optional, default 4
//!
//! [[source]]
//! name = "bucket"
//! kind = "origin"
//! url = "s3://fill-content/region-eu"  # object storage: s3://bucket/prefix or file:///path
//! region = "eu-west-1"            # optional (else AWS_REGION)
//! endpoint = "http://127.0.0.1:9000"  # optional: an S3-compatible server (else AWS_ENDPOINT_URL)
//! allow_http = true               # optional: plain HTTP to the endpoint (else AWS_ALLOW_HTTP)
//! cost_per_gib = 0.02
//! bandwidth = "5Gbps"
//! ```
//!
//! Without `catalog`, the client asks `GET {url}/catalog`; an `origin` without one holds
//! everything.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fill_core::source::{Source, SourceKind, Window, Zone, parse_bandwidth};
use serde::Deserialize;

/// The file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default)]
    source: Vec<SourceToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceToml {
    name: String,
    kind: SourceKind,
    url: String,
    cost_per_gib: f64,
    bandwidth: String,
    window: Option<String>,
    tz: Option<String>,
    catalog: Option<PathBuf>,
    max_connections: Option<u32>,
    region: Option<String>,
    endpoint: Option<String>,
    allow_http: Option<bool>,
}

/// A source and where its holdings come from.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The checked source.
    pub source: Source,
    /// A catalog file given in the config (relative paths are relative to the config file).
    pub catalog: Option<PathBuf>,
    /// Object-storage settings (`s3://` sources).
    pub object: ObjectKeys,
}

/// `region`, `endpoint`, `allow_http` of an object-storage source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectKeys {
    /// AWS region.
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible server.
    pub endpoint: Option<String>,
    /// Plain HTTP allowed to the endpoint.
    pub allow_http: Option<bool>,
}

/// Reads and checks a sources file. Errors name the source and the field.
pub fn load(path: &Path) -> Result<Vec<SourceSpec>> {
    let text = crate::bounded::read_text(path, crate::bounded::MAX_CONFIG_BYTES)
        .with_context(|| format!("cannot read sources {}", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("sources {}", path.display()))
}

/// Parses sources TOML; `base` resolves relative catalog paths.
pub fn parse(text: &str, base: &Path) -> Result<Vec<SourceSpec>> {
    let file: SourcesFile =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    if file.source.is_empty() {
        bail!("no [[source]] entries");
    }
    let mut out: Vec<SourceSpec> = Vec::new();
    for (i, s) in file.source.into_iter().enumerate() {
        let at = format!("source {} ({:?})", i + 1, s.name);
        if s.name.trim().is_empty() {
            bail!("{at}: name is empty");
        }
        // Names are printed in reports and logs: none may carry a terminal's controls.
        if s.name.chars().any(fill_core::text::is_unprintable) {
            bail!("{at}: name has control characters");
        }
        if out.iter().any(|o| o.source.name == s.name) {
            bail!("{at}: name {:?} is used twice", s.name);
        }
        let url = check_source_url(&s.url).with_context(|| at.clone())?;
        let object = url.starts_with("s3://") || url.starts_with("file://");
        if !url.starts_with("s3://")
            && (s.region.is_some() || s.endpoint.is_some() || s.allow_http.is_some())
        {
            bail!("{at}: region, endpoint and allow_http are for s3:// sources");
        }
        if object && s.catalog.is_some() {
            bail!("{at}: an object-storage source's catalog is read from the bucket");
        }
        if let Some(e) = &s.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            bail!("{at}: endpoint {e:?} must be an http:// or https:// URL");
        }
        if !(s.cost_per_gib.is_finite() && s.cost_per_gib >= 0.0) {
            bail!(
                "{at}: cost_per_gib {} must be a number >= 0",
                s.cost_per_gib
            );
        }
        let bandwidth_bps =
            parse_bandwidth(&s.bandwidth).with_context(|| format!("{at}: bandwidth"))?;
        let zone = match &s.tz {
            Some(tz) => Zone::parse(tz).with_context(|| format!("{at}: tz"))?,
            None => Zone::UTC,
        };
        if s.tz.is_some() && s.window.is_none() {
            bail!("{at}: tz is set but there is no window");
        }
        let window = s
            .window
            .as_deref()
            .map(|w| Window::parse(w, zone))
            .transpose()
            .with_context(|| format!("{at}: window"))?;
        let max_connections = s.max_connections.unwrap_or(4);
        if !(1..=256).contains(&max_connections) {
            bail!("{at}: max_connections {max_connections} is not between 1 and 256");
        }
        out.push(SourceSpec {
            source: Source {
                name: s.name,
                kind: s.kind,
                url,
                cost_per_gib: s.cost_per_gib,
                bandwidth_bps,
                window,
                max_connections,
            },
            catalog: s
                .catalog
                .map(|c| if c.is_absolute() { c } else { base.join(c) }),
            object: ObjectKeys {
                region: s.region,
                endpoint: s.endpoint,
                allow_http: s.allow_http,
            },
        });
    }
    Ok(out)
}

/// A source's URL: an HTTP store ([`check_url`]), or object storage: `s3://bucket[/prefix]`
/// or `file:///absolute/path` (no trailing slash kept).
pub fn check_source_url(url: &str) -> Result<String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() || rest.contains(['?', '#', ' ']) {
            bail!("url {url:?} is not like s3://bucket/prefix");
        }
        return Ok(url.trim_end_matches('/').to_owned());
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') || path.split('/').any(|p| p == "..") {
            bail!("url {url:?} is not like file:///absolute/path");
        }
        return Ok(url.trim_end_matches('/').to_owned());
    }
    check_url(url).map_err(|_| {
        anyhow::anyhow!(
            "url {url:?} must start with http:// (TLS is terminated in front of fill-server), \
             s3:// or file://"
        )
    })
}

/// A base URL, checked: `http://host[:port][/path]`, no query, no trailing slash.
pub fn check_url(url: &str) -> Result<String> {
    let trimmed = url.trim_end_matches('/').to_owned();
    let Some(rest) = trimmed.strip_prefix("http://") else {
        bail!("url {url:?} must start with http:// (TLS is terminated in front of fill-server)");
    };
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        bail!("url {url:?} is not a base URL like http://host:port");
    }
    Ok(trimmed)
}

/// The one source of `fill prefill`: a store served at `url` (HTTP, or object storage with
/// its settings from the AWS environment), free, unmetered.
pub fn single(url: &str, max_connections: u32) -> Result<SourceSpec> {
    Ok(SourceSpec {
        source: Source {
            name: "source".into(),
            kind: SourceKind::Origin,
            url: check_source_url(url).context("--source")?,
            cost_per_gib: 0.0,
            bandwidth_bps: 1_000_000_000_000,
            window: None,
            max_connections,
        },
        catalog: None,
        object: ObjectKeys::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", parse(text, Path::new("/cfg")).unwrap_err())
    }

    const GOOD: &str = r#"
[[source]]
name = "peer"
kind = "peer"
url = "http://127.0.0.1:7001/"
cost_per_gib = 0
bandwidth = "10Gbps"
catalog = "peer.cat"

[[source]]
name = "origin"
kind = "origin"
url = "http://127.0.0.1:7002"
cost_per_gib = 0.02
bandwidth = "1.2Gbps"
window = "02:00-14:00"
tz = "+01:00"
max_connections = 8
"#;

    #[test]
    fn parses() {
        let s = parse(GOOD, Path::new("/cfg")).unwrap();
        assert_eq!(s[0].source.url, "http://127.0.0.1:7001");
        assert_eq!(s[0].catalog.as_deref(), Some(Path::new("/cfg/peer.cat")));
        assert_eq!(s[1].source.bandwidth_bps, 1_200_000_000);
        assert_eq!(s[1].source.window.as_ref().unwrap().zone, Zone::Offset(60));
        assert_eq!(s[1].source.max_connections, 8);
        // An IANA name: the window keeps its local hours across daylight saving.
        let named = parse(
            &GOOD.replace("\"+01:00\"", "\"Europe/Paris\""),
            Path::new("/"),
        )
        .unwrap();
        let w = named[1].source.window.as_ref().unwrap();
        assert_eq!(w.zone.name(), "Europe/Paris");
        assert!(w.is_open(fill_core::duration::parse_rfc3339("2027-07-01T00:30:00Z").unwrap()));
    }

    #[test]
    fn errors_name_source_and_field() {
        assert_eq!(
            err(&GOOD.replace("10Gbps", "fast")),
            "source 1 (\"peer\"): bandwidth: bad bandwidth \"fast\": expected bits per second with a unit, like 160Mbps or 1.2Gbps"
        );
        assert_eq!(
            err(&GOOD.replace("http://127.0.0.1:7002", "https://origin")),
            "source 2 (\"origin\"): url \"https://origin\" must start with http:// (TLS is terminated in front of fill-server), s3:// or file://"
        );
        assert_eq!(
            err(&GOOD.replace("\"origin\"\nkind", "\"peer\"\nkind")),
            "source 2 (\"peer\"): name \"peer\" is used twice"
        );
        assert_eq!(
            err(&GOOD.replace("02:00-14:00", "2pm")),
            "source 2 (\"origin\"): window: bad window \"2pm\": expected HH:MM-HH:MM, like 02:00-14:00"
        );
        assert_eq!(
            err(&GOOD.replace("cost_per_gib = 0.02", "cost_per_gib = -1")),
            "source 2 (\"origin\"): cost_per_gib -1 must be a number >= 0"
        );
        assert!(
            err(&GOOD.replace("kind = \"peer\"", "kind = \"friend\""))
                .contains("unknown variant `friend`")
        );
        assert_eq!(
            err(&GOOD.replace("\"+01:00\"", "\"Europe/Pariss\"")),
            "source 2 (\"origin\"): tz: bad tz \"Europe/Pariss\": expected an IANA time zone like Europe/Paris or America/New_York, or a UTC offset like +02:00"
        );
        assert_eq!(err(""), "no [[source]] entries");
    }
}
