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

#[cfg(test)]
mod tests {
    use super::*;

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
