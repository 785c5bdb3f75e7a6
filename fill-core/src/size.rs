//! Byte sizes as people write them: `40TB`, `512GiB`, `1.5 TB`, `1000000`.
//!
//! SI units (`KB`, `MB`, `GB`, `TB`, `PB`, `EB`) are powers of 1000; IEC units (`KiB` … `EiB`)
//! powers of 1024; `B` is bytes. Units are case-insensitive. A fraction is allowed if the
//! result is a whole number of bytes. A number without a unit is refused (is `40` bytes or
//! terabytes?), except `0`, the same in every unit. Every size flag and config key goes
//! through [`parse_size`].

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// Nothing was given.
    #[error("empty size")]
    Empty,
    /// The number part is malformed.
    #[error("bad size {0:?}: expected a number with an optional unit, like 40TB or 512GiB")]
    Malformed(String),
    /// The unit is not one of the known ones.
    #[error(
        "bad size {input:?}: unknown unit {unit:?} (use B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB)"
    )]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit part.
        unit: String,
    },
    /// Does not fit in 64 bits.
    #[error("bad size {0:?}: larger than 2^64-1 bytes")]
    Overflow(String),
    /// A fraction of a byte.
    #[error("bad size {0:?}: not a whole number of bytes")]
    Fractional(String),
    /// A number other than 0 without a unit.
    #[error("bad size {0:?}: no unit (write {0}B for bytes, or {0}GB, {0}GiB, {0}TB...)")]
    NoUnit(String),
}

/// Parses a size in bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    if split == 0 {
        return Err(SizeError::Malformed(input.to_owned()));
    }
    let (num, unit) = (&s[..split], s[split..].trim());
    let mult: u128 = match unit.to_ascii_lowercase().as_str() {
        "" if num.chars().all(|c| c == '0' || c == '_' || c == '.') => 1,
        "" => return Err(SizeError::NoUnit(s.to_owned())),
        "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "p" | "pb" => 1_000_000_000_000_000,
        "e" | "eb" => 1_000_000_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "pib" => 1 << 50,
        "eib" => 1 << 60,
        _ => {
            return Err(SizeError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    let num: String = num.chars().filter(|&c| c != '_').collect();
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num.as_str(), ""),
    };
    if (int.is_empty() && frac.is_empty())
        || frac.contains('.')
        || frac.len() > 18
        || int.len() > 20
    {
        return Err(SizeError::Malformed(input.to_owned()));
    }
    let overflow = || SizeError::Overflow(input.to_owned());
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse()
            .map_err(|_| SizeError::Malformed(input.to_owned()))?
    };
    let mut bytes = int.checked_mul(mult).ok_or_else(overflow)?;
    if !frac.is_empty() {
        let scale = 10u128.pow(frac.len() as u32);
        let f: u128 = frac
            .parse()
            .map_err(|_| SizeError::Malformed(input.to_owned()))?;
        let part = f.checked_mul(mult).ok_or_else(overflow)?;
        if part % scale != 0 {
            return Err(SizeError::Fractional(input.to_owned()));
        }
        bytes = bytes.checked_add(part / scale).ok_or_else(overflow)?;
    }
    u64::try_from(bytes).map_err(|_| overflow())
}

/// Formats a size for people, in IEC units with up to two decimals (`1.19 GiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("40TB"), Ok(40_000_000_000_000));
        assert_eq!(parse_size("512GiB"), Ok(512 << 30));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("1_000B"), Ok(1000));
        assert_eq!(parse_size("40 b"), Ok(40));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(
            parse_size("16eib"),
            Err(SizeError::Overflow("16eib".into()))
        );
        assert_eq!(parse_size("15EiB"), Ok(15 << 60));
        assert_eq!(parse_size(".5KB"), Ok(500));
    }

    #[test]
    fn a_number_without_a_unit_is_refused() {
        assert_eq!(
            parse_size("40").unwrap_err().to_string(),
            "bad size \"40\": no unit (write 40B for bytes, or 40GB, 40GiB, 40TB...)"
        );
        assert_eq!(parse_size(" 1.5 "), Err(SizeError::NoUnit("1.5".into())));
        assert_eq!(parse_size("0.0"), Ok(0));
        assert_eq!(parse_size("40TB"), Ok(40_000_000_000_000));
        assert_eq!(parse_size("40TiB"), Ok(40 << 40));
        assert_eq!(parse_size("40GB"), Ok(40_000_000_000));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(parse_size("").unwrap_err().to_string(), "empty size");
        assert_eq!(
            parse_size("12 parsecs").unwrap_err().to_string(),
            "bad size \"12 parsecs\": unknown unit \"parsecs\" (use B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB)"
        );
        assert_eq!(
            parse_size("1.0001KB").unwrap_err().to_string(),
            "bad size \"1.0001KB\": not a whole number of bytes"
        );
        assert_eq!(
            parse_size("-5GB").unwrap_err().to_string(),
            "bad size \"-5GB\": expected a number with an optional unit, like 40TB or 512GiB"
        );
        assert!(matches!(
            parse_size("1.2.3GB"),
            Err(SizeError::Malformed(_))
        ));
        assert!(matches!(parse_size("."), Err(SizeError::Malformed(_))));
        assert!(matches!(
            parse_size("99999999999999999999999B"),
            Err(SizeError::Malformed(_))
        ));
        assert!(matches!(
            parse_size("18446744073709551616B"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536), "1.50 KiB");
        assert_eq!(format_size(5 << 30), "5.00 GiB");
    }
}
