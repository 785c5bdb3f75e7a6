//! Durations as people write them: `10s`, `500ms`, `48h`, `1h30m`, `2d`.
//!
//! Units: `ms`, `s`, `m` (minutes), `h`, `d`; components add up. A bare number is rejected:
//! a timeout of "30" is ambiguous.

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Not of the form NUMBER UNIT [NUMBER UNIT ...].
    #[error(
        "bad duration {0:?}: expected a number and a unit (ms, s, m, h, d), like 10s, 48h or 1h30m"
    )]
    Malformed(String),
    /// Too long to represent.
    #[error("bad duration {0:?}: too long")]
    Overflow(String),
}

/// Parses a duration.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Malformed(input.to_owned());
    let s = input.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow(input.to_owned()))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms_per: u64 = match rest[..unit_len].trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_ms = n
            .checked_mul(ms_per)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| DurationError::Overflow(input.to_owned()))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Why a time did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad time {0:?}: expected RFC 3339, like 2026-11-28T02:00:00Z or 2026-11-28T03:00:00+01:00"
)]
pub struct TimeError(pub String);

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses an RFC 3339 time (`2026-11-28T02:00:00Z`, `...+01:00`, fractional seconds
/// dropped) into Unix seconds.
pub fn parse_rfc3339(input: &str) -> Result<i64, TimeError> {
    let bad = || TimeError(input.to_owned());
    let s = input.trim();
    let num = |a: usize, b: usize| -> Result<i64, TimeError> {
        let part = s.get(a..b).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let sep = |at: usize, c: &[u8]| s.as_bytes().get(at).is_some_and(|b| c.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return Err(bad());
    }
    let (y, mo, d, h, mi, sec) = (
        num(0, 4)?,
        num(5, 7)?,
        num(8, 10)?,
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 60
    {
        return Err(bad());
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &frac[digits..];
    }
    let offset_min = if rest.eq_ignore_ascii_case("z") {
        0
    } else {
        i64::from(crate::source::parse_tz(rest).map_err(|_| bad())?)
    };
    Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_min * 60)
}

/// Formats Unix seconds as RFC 3339 in UTC: `2026-11-28T02:00:00Z`.
pub fn format_rfc3339(unix_secs: i64) -> String {
    let (days, secs) = (unix_secs.div_euclid(86_400), unix_secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `45s`, `12m`, `3h 5m`, `2d 4h`: a duration for people (events, plans, progress); the
/// one formatter every command uses.
pub fn human_secs(secs: i64) -> String {
    let secs = secs.max(0);
    if secs < 60 {
        return format!("{secs}s");
    }
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 || parts.is_empty() {
        parts.push(format!("{m}m"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-11-28T02:00:00Z"), Ok(1_795_831_200));
        assert_eq!(
            parse_rfc3339("2026-11-28T03:00:00+01:00"),
            Ok(1_795_831_200)
        );
        assert_eq!(
            parse_rfc3339("2026-11-27T21:00:00.250-05:00"),
            Ok(1_795_831_200)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00Z")
                .map(format_rfc3339)
                .as_deref(),
            Ok("2024-02-29T12:00:00Z")
        );
        for t in [-86_400 * 365, 0, 951_782_400, 1_795_831_200, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Ok(t));
        }
        for bad in [
            "",
            "2026-11-28",
            "2026-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T02:00:00",
            "2026-11-28T02:00:00+1",
            "2026-11-28T02:00:00.Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("48h"), Ok(Duration::from_secs(48 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects() {
        let msg = "bad duration \"30\": expected a number and a unit (ms, s, m, h, d), like 10s, 48h or 1h30m";
        assert_eq!(parse_duration("30").unwrap_err().to_string(), msg);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 years").is_err());
        assert!(parse_duration("-5s").is_err());
        assert_eq!(
            parse_duration("99999999999999999999d")
                .unwrap_err()
                .to_string(),
            "bad duration \"99999999999999999999d\": too long"
        );
        assert!(matches!(
            parse_duration("999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
    }
}
