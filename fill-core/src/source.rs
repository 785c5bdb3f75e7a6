//! Fill sources and the escalation policy.
//!
//! A source is a store served over HTTP (`fill-server`, nginx, a bucket): a name, a kind
//! (peer, tier, origin), a base URL, a cost per GiB (2^30 bytes), a bandwidth cap in bits per
//! second, an optional daily window in local time (an IANA zone such as `Europe/Paris`, which
//! follows daylight saving, or a fixed UTC offset), and what it holds. This module
//! parses and checks their values; the client reads the TOML and fetches holdings.
//!
//! The escalation policy (the baseline the planner must beat): for each range, the sources
//! that hold the file and are inside their window, cheapest first (ties by name), then the
//! next.

/// What kind of source.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Another appliance in the same site (free, fast).
    Peer,
    /// A regional tier.
    Tier,
    /// The origin object store (costly transit). Without a catalog it holds everything.
    Origin,
}

impl SourceKind {
    /// The name, as in the sources file and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::Tier => "tier",
            Self::Origin => "origin",
        }
    }
}

/// Why a source value is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A bandwidth that does not parse.
    #[error("bad bandwidth {0:?}: expected bits per second with a unit, like 160Mbps or 1.2Gbps")]
    Bandwidth(String),
    /// A window that does not parse.
    #[error("bad window {0:?}: expected HH:MM-HH:MM, like 02:00-14:00")]
    Window(String),
    /// A UTC offset that does not parse.
    #[error("bad tz {0:?}: expected a UTC offset like +02:00, -05:30 or Z")]
    Tz(String),
    /// A time zone that is neither an offset nor a known IANA name.
    #[error(
        "bad tz {0:?}: expected an IANA time zone like Europe/Paris or America/New_York, or a UTC offset like +02:00"
    )]
    Zone(String),
}

/// Parses a bandwidth in bits per second: `160Mbps`, `1.2Gbps`, `10Gbit/s`, `500kbps`.
/// SI prefixes (k = 1000). The result is at least 1.
pub fn parse_bandwidth(input: &str) -> Result<u64, SourceError> {
    let bad = || SourceError::Bandwidth(input.to_owned());
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (num, unit) = (&s[..split], s[split..].trim());
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "bps" | "bit/s" => 1.0,
        "kbps" | "kbit/s" => 1e3,
        "mbps" | "mbit/s" => 1e6,
        "gbps" | "gbit/s" => 1e9,
        "tbps" | "tbit/s" => 1e12,
        _ => return Err(bad()),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bps = value * mult;
    if !(1.0..1e18).contains(&bps) {
        return Err(bad());
    }
    Ok(bps.round() as u64)
}

/// The time zone a window's hours are in.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    /// A fixed offset: local time minus UTC, in minutes.
    Offset(i16),
    /// An IANA zone (from the tz database built into the binary): its offset changes with
    /// daylight saving, and the window keeps its local hours across the change.
    Named {
        /// The IANA name, e.g. `Europe/Paris`.
        name: String,
        /// The zone's rules.
        tz: jiff::tz::TimeZone,
    },
}

impl Zone {
    /// UTC.
    pub const UTC: Zone = Zone::Offset(0);

    /// Parses a UTC offset (`+02:00`, `Z`) or an IANA name (`Europe/Paris`).
    pub fn parse(input: &str) -> Result<Self, SourceError> {
        let s = input.trim();
        if let Ok(min) = parse_tz(s) {
            return Ok(Self::Offset(min));
        }
        // Names are ASCII letters, digits and `/_-+`; anything else is not one (and is not
        // looked up).
        let plausible = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b));
        let tz = plausible
            .then(|| jiff::tz::TimeZone::get(s).ok())
            .flatten()
            .ok_or_else(|| SourceError::Zone(input.to_owned()))?;
        Ok(Self::Named {
            name: tz.iana_name().unwrap_or(s).to_owned(),
            tz,
        })
    }

    /// Local time minus UTC at `unix_secs`, in seconds.
    pub fn offset_secs(&self, unix_secs: i64) -> i64 {
        match self {
            Self::Offset(min) => i64::from(*min) * 60,
            Self::Named { tz, .. } => jiff::Timestamp::from_second(unix_secs)
                .map_or(0, |t| i64::from(tz.to_offset(t).seconds())),
        }
    }

    /// The instant local time `minute` (of the day) falls on `day`, the local calendar day
    /// `day` days after 1970-01-01. A local time a daylight-saving change skips is the first
    /// instant after the gap; one it repeats is its first occurrence.
    pub fn instant(&self, day: i64, minute: u16) -> i64 {
        let local = day * 86_400 + i64::from(minute) * 60;
        match self {
            Self::Offset(min) => local - i64::from(*min) * 60,
            Self::Named { tz, .. } => {
                let naive = jiff::Timestamp::from_second(local)
                    .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).datetime());
                naive
                    .and_then(|dt| tz.to_ambiguous_timestamp(dt).compatible())
                    .map_or(local, |t| t.as_second())
            }
        }
    }

    /// The local calendar day (days after 1970-01-01) at `unix_secs`.
    pub fn local_day(&self, unix_secs: i64) -> i64 {
        (unix_secs + self.offset_secs(unix_secs)).div_euclid(86_400)
    }

    /// `+01:00` or `Europe/Paris`, as written in a sources file.
    pub fn name(&self) -> String {
        match self {
            Self::Offset(min) => {
                let sign = if *min < 0 { '-' } else { '+' };
                format!("{sign}{}", hhmm(min.unsigned_abs()))
            }
            Self::Named { name, .. } => name.clone(),
        }
    }

    /// Local time at `unix_secs` for people: `02:00 Europe/Paris` or `02:00 +01:00`.
    pub fn local_hhmm(&self, unix_secs: i64) -> String {
        let m = (unix_secs + self.offset_secs(unix_secs)).rem_euclid(86_400) / 60;
        format!("{} {}", hhmm(m as u16), self.name())
    }
}

impl serde::Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// A daily window in local time. `start == end` means all day.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Window {
    /// Minutes after local midnight when it opens.
    pub start_min: u16,
    /// Minutes after local midnight when it closes (may be before `start_min`: overnight).
    pub end_min: u16,
    /// The zone of its hours.
    pub zone: Zone,
}

/// Minutes as `HH:MM`.
fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `02:00-14:00 Europe/Paris`, as a sources file gives it.
impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{} {}",
            hhmm(self.start_min),
            hhmm(self.end_min),
            self.zone.name()
        )
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 is the end of the day.
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

/// Parses a UTC offset: `Z`, `UTC`, `+02:00`, `-05:30`.
pub fn parse_tz(input: &str) -> Result<i16, SourceError> {
    let s = input.trim();
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let bad = || SourceError::Tz(input.to_owned());
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let minutes = parse_hhmm(rest).filter(|&m| m <= 14 * 60).ok_or_else(bad)?;
    Ok(sign * minutes as i16)
}

impl Window {
    /// Parses `HH:MM-HH:MM` in the given zone.
    pub fn parse(input: &str, zone: Zone) -> Result<Self, SourceError> {
        let bad = || SourceError::Window(input.to_owned());
        let (a, b) = input.split_once('-').ok_or_else(bad)?;
        let start_min = parse_hhmm(a).filter(|&m| m < 24 * 60).ok_or_else(bad)?;
        let end_min = parse_hhmm(b).ok_or_else(bad)? % (24 * 60);
        Ok(Self {
            start_min,
            end_min,
            zone,
        })
    }

    /// Local minute of the day at `unix_secs`.
    fn local_minute(&self, unix_secs: i64) -> u16 {
        let local = unix_secs + self.zone.offset_secs(unix_secs);
        (local.rem_euclid(86_400) / 60) as u16
    }

    /// Whether the window is open at `unix_secs`.
    pub fn is_open(&self, unix_secs: i64) -> bool {
        let m = self.local_minute(unix_secs);
        match self.start_min.cmp(&self.end_min) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => (self.start_min..self.end_min).contains(&m),
            std::cmp::Ordering::Greater => m >= self.start_min || m < self.end_min,
        }
    }

    /// Seconds from `unix_secs` until the window next opens (0 when open).
    pub fn seconds_until_open(&self, unix_secs: i64) -> i64 {
        if self.is_open(unix_secs) {
            return 0;
        }
        if let Zone::Offset(min) = self.zone {
            let local = unix_secs + i64::from(min) * 60;
            let start = i64::from(self.start_min) * 60;
            return (start - local.rem_euclid(86_400)).rem_euclid(86_400);
        }
        // The next local start that is an instant after now (a start a change skipped opens
        // at the end of the gap, still open by local minute).
        let today = self.zone.local_day(unix_secs);
        (today..today + 3)
            .map(|d| self.zone.instant(d, self.start_min))
            .find(|&t| t > unix_secs && self.is_open(t))
            .map_or(86_400, |t| t - unix_secs)
    }

    /// The instants the window opens and closes on local day `day` (days after 1970-01-01),
    /// for the planner's slot cuts.
    pub fn edges_on(&self, day: i64) -> [i64; 2] {
        [
            self.zone.instant(day, self.start_min),
            self.zone.instant(day, self.end_min),
        ]
    }
}

/// One source, checked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Source {
    /// Unique name.
    pub name: String,
    /// Kind.
    pub kind: SourceKind,
    /// Base URL (`http://host:port`, no trailing slash).
    pub url: String,
    /// Money per 2^30 bytes.
    pub cost_per_gib: f64,
    /// Bits per second.
    pub bandwidth_bps: u64,
    /// Daily window; `None` is always open.
    pub window: Option<Window>,
    /// Concurrent requests to this source.
    pub max_connections: u32,
}

impl Source {
    /// Money for `bytes` from this source.
    pub fn cost(&self, bytes: u64) -> f64 {
        bytes as f64 / (1u64 << 30) as f64 * self.cost_per_gib
    }

    /// Whether the source may be used at `unix_secs`.
    pub fn is_open(&self, unix_secs: i64) -> bool {
        self.window.as_ref().is_none_or(|w| w.is_open(unix_secs))
    }
}

/// The escalation order over `sources` for a file: those that hold it (`holds(i)`), cheapest
/// first, ties by name. Closed windows do not remove a source here; the caller decides
/// whether to wait for a window or move on.
pub fn escalation(sources: &[Source], holds: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sources.len()).filter(|&i| holds(i)).collect();
    order.sort_by(|&a, &b| {
        sources[a]
            .cost_per_gib
            .total_cmp(&sources[b].cost_per_gib)
            .then_with(|| sources[a].name.cmp(&sources[b].name))
    });
    order
}

/// Which of `order` (an escalation order) to use at `unix_secs`, among those `usable`: the
/// first whose window is open; when every usable one is closed, the one whose window opens
/// soonest (ties by order). Returns the source and how many seconds to wait for it.
pub fn choose(
    sources: &[Source],
    order: &[usize],
    usable: impl Fn(usize) -> bool,
    unix_secs: i64,
) -> Option<(usize, i64)> {
    let wait = |s: usize| {
        sources[s]
            .window
            .as_ref()
            .map_or(0, |w| w.seconds_until_open(unix_secs))
    };
    let candidates: Vec<usize> = order.iter().copied().filter(|&s| usable(s)).collect();
    if let Some(&open) = candidates.iter().find(|&&s| wait(s) == 0) {
        return Some((open, 0));
    }
    // `min_by_key` keeps the first of equal waits: escalation order breaks ties.
    candidates
        .into_iter()
        .map(|s| (s, wait(s)))
        .min_by_key(|&(_, w)| w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> i64 {
        crate::duration::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn a_named_zone_keeps_local_hours_across_daylight_saving() {
        let paris = Window::parse("02:00-14:00", Zone::parse("Europe/Paris").unwrap()).unwrap();
        // Winter (UTC+1): opens 01:00 UTC. Summer from 2027-03-28 (UTC+2): opens 00:00 UTC.
        assert!(!paris.is_open(at("2027-03-27T00:59:59Z")));
        assert!(paris.is_open(at("2027-03-27T01:00:00Z")));
        assert!(paris.is_open(at("2027-03-29T00:00:00Z")));
        assert!(!paris.is_open(at("2027-03-28T23:59:59Z")));
        assert!(!paris.is_open(at("2027-03-29T12:00:00Z")));
        // Waiting across the change: from 2027-03-28T18:00Z (20:00 local summer time),
        // the next opening is 02:00 local on the 29th = 00:00 UTC, 6 h away.
        assert_eq!(
            paris.seconds_until_open(at("2027-03-28T18:00:00Z")),
            6 * 3600
        );
        // The night of the change itself: 02:00 does not exist; the window opens when the
        // clock jumps to 03:00 (01:00 UTC), 2 h after 23:00 UTC.
        assert_eq!(
            paris.seconds_until_open(at("2027-03-27T23:00:00Z")),
            2 * 3600
        );
        // Autumn: back to UTC+1 on 2027-10-31; 02:00 local on November 1st is 01:00 UTC.
        assert_eq!(
            paris.seconds_until_open(at("2027-10-31T18:00:00Z")),
            7 * 3600
        );
        assert!(paris.is_open(at("2027-11-01T12:59:59Z")));
        assert!(!paris.is_open(at("2027-11-01T13:00:00Z")));
        assert_eq!(
            paris.zone.local_hhmm(at("2027-11-01T01:00:00Z")),
            "02:00 Europe/Paris"
        );

        // A fixed offset drifts an hour against local time: in summer it opens at 03:00.
        let fixed = Window::parse("02:00-14:00", Zone::parse("+01:00").unwrap()).unwrap();
        assert!(!fixed.is_open(at("2027-03-29T00:30:00Z")));
        assert!(paris.is_open(at("2027-03-29T00:30:00Z")));
    }

    #[test]
    fn slots_cut_at_a_named_zones_edges_on_both_sides_of_a_change() {
        let paris = Window::parse("02:00-14:00", Zone::parse("Europe/Paris").unwrap()).unwrap();
        let source = Source {
            name: "origin".into(),
            kind: SourceKind::Origin,
            url: "http://127.0.0.1:1".into(),
            cost_per_gib: 0.02,
            bandwidth_bps: 1_000_000_000,
            window: Some(paris),
            max_connections: 4,
        };
        let start = at("2027-03-27T00:00:00Z");
        let cuts: Vec<i64> = crate::plan::slots(std::slice::from_ref(&source), start, 3 * 86_400)
            .iter()
            .map(|s| s.start)
            .collect();
        for edge in [
            "2027-03-27T01:00:00Z",
            "2027-03-27T13:00:00Z",
            "2027-03-28T01:00:00Z",
            "2027-03-28T12:00:00Z",
            "2027-03-29T00:00:00Z",
            "2027-03-29T12:00:00Z",
        ] {
            assert!(cuts.contains(&at(edge)), "no cut at {edge}: {cuts:?}");
        }
        // Each slot is wholly open or wholly closed.
        for s in crate::plan::slots(std::slice::from_ref(&source), start, 3 * 86_400) {
            assert_eq!(source.is_open(s.start), source.is_open(s.end - 1), "{s:?}");
        }
    }

    #[test]
    fn zones_that_are_not_refused_by_name() {
        assert_eq!(Zone::parse("Z").unwrap(), Zone::UTC);
        assert_eq!(Zone::parse("-05:30").unwrap(), Zone::Offset(-330));
        assert_eq!(
            Zone::parse("America/New_York").unwrap().name(),
            "America/New_York"
        );
        for bad in [
            "Europe/Atlantis",
            "",
            "../../etc/passwd",
            "Paris\n",
            "+25:00",
        ] {
            let e = Zone::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("expected an IANA time zone like Europe/Paris"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn bandwidths() {
        assert_eq!(parse_bandwidth("160Mbps"), Ok(160_000_000));
        assert_eq!(parse_bandwidth("1.2Gbps"), Ok(1_200_000_000));
        assert_eq!(parse_bandwidth("10 Gbit/s"), Ok(10_000_000_000));
        assert_eq!(parse_bandwidth("500kbps"), Ok(500_000));
        for bad in ["", "fast", "10", "10GB", "-1Mbps", "0bps", "1e99Tbps"] {
            assert_eq!(
                parse_bandwidth(bad).unwrap_err().to_string(),
                format!(
                    "bad bandwidth {bad:?}: expected bits per second with a unit, like 160Mbps or 1.2Gbps"
                )
            );
        }
    }

    #[test]
    fn windows() {
        let w = Window::parse("02:00-14:00", Zone::UTC).unwrap();
        let day = 1_700_006_400; // 2023-11-15 00:00 UTC
        assert!(!w.is_open(day + 3600));
        assert!(w.is_open(day + 2 * 3600));
        assert!(w.is_open(day + 14 * 3600 - 1));
        assert!(!w.is_open(day + 14 * 3600));
        assert_eq!(w.seconds_until_open(day + 3600), 3600);
        assert_eq!(w.seconds_until_open(day + 15 * 3600), 11 * 3600);
        // Overnight, in UTC+2: 22:00-06:00 local is 20:00-04:00 UTC.
        let n = Window::parse("22:00-06:00", Zone::parse("+02:00").unwrap()).unwrap();
        assert!(n.is_open(day + 21 * 3600));
        assert!(n.is_open(day + 3 * 3600));
        assert!(!n.is_open(day + 5 * 3600));
        assert!(
            Window::parse("00:00-24:00", Zone::UTC)
                .unwrap()
                .is_open(day + 5)
        );
        for bad in ["2-14", "02:00", "25:00-01:00", "02:00-14:60", "aa:bb-cc:dd"] {
            assert_eq!(
                Window::parse(bad, Zone::UTC).unwrap_err().to_string(),
                format!("bad window {bad:?}: expected HH:MM-HH:MM, like 02:00-14:00")
            );
        }
        assert_eq!(parse_tz("-05:30"), Ok(-330));
        assert_eq!(parse_tz("Z"), Ok(0));
        assert!(parse_tz("+15:00").is_err());
        assert!(parse_tz("CET").is_err());
    }

    #[test]
    fn escalation_is_cheapest_first() {
        let src = |name: &str, cost: f64| Source {
            name: name.into(),
            kind: SourceKind::Peer,
            url: "http://x".into(),
            cost_per_gib: cost,
            bandwidth_bps: 1,
            window: None,
            max_connections: 1,
        };
        let sources = [
            src("origin", 0.05),
            src("peer-b", 0.0),
            src("tier", 0.01),
            src("peer-a", 0.0),
        ];
        assert_eq!(escalation(&sources, |_| true), vec![3, 1, 2, 0]);
        assert_eq!(escalation(&sources, |i| i != 3), vec![1, 2, 0]);
        // Windows: open ones in order; when all are closed, the one that opens soonest.
        let mut windowed = sources.to_vec();
        let day = 1_700_006_400; // 00:00 UTC
        windowed[3].window = Some(Window::parse("02:00-03:00", Zone::UTC).unwrap());
        windowed[1].window = Some(Window::parse("01:00-02:00", Zone::UTC).unwrap());
        let order = escalation(&windowed, |_| true);
        assert_eq!(
            choose(&windowed, &order, |_| true, day),
            Some((2, 0)),
            "tier is open"
        );
        assert_eq!(
            choose(&windowed, &order, |s| s == 3 || s == 1, day),
            Some((1, 3600))
        );
        assert_eq!(
            choose(&windowed, &order, |s| s == 3 || s == 1, day + 3600 + 5),
            Some((1, 0))
        );
        assert_eq!(choose(&windowed, &order, |_| false, day), None);
        assert!((sources[0].cost(3 << 30) - 0.15).abs() < 1e-12);
    }
}
