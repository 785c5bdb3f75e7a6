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

/// Formats a size for people, in the unit it was given in: a whole number of a unit prints
/// as that (`40 TB` for `--capacity 40TB`, `1 GiB` for a reserve of 2^30 bytes, `40 TiB`),
/// anything else in decimal units with two decimals (`1.19 GB`). Input takes both kinds of
/// unit; output never mixes them for one value, and rates are decimal too
/// ([`format_byte_rate`], [`format_bps`]).
pub fn format_size(bytes: u64) -> String {
    const SI: [&str; 6] = ["EB", "PB", "TB", "GB", "MB", "kB"];
    const IEC: [&str; 6] = ["EiB", "PiB", "TiB", "GiB", "MiB", "KiB"];
    for (i, unit) in SI.iter().enumerate() {
        let scale = 1000u64.pow(6 - i as u32);
        if bytes >= scale && bytes.is_multiple_of(scale) && bytes / scale < 1000 {
            return format!("{} {unit}", bytes / scale);
        }
    }
    for (i, unit) in IEC.iter().enumerate() {
        let scale = 1u64 << (10 * (6 - i as u32));
        if bytes >= scale && bytes.is_multiple_of(scale) && bytes / scale < 1000 {
            return format!("{} {unit}", bytes / scale);
        }
    }
    scaled(
        bytes as f64,
        "B",
        &["B", "kB", "MB", "GB", "TB", "PB", "EB"],
    )
}

/// A byte rate for people: `120.00 MB/s`.
pub fn format_byte_rate(bytes_per_sec: f64) -> String {
    scaled(
        bytes_per_sec.max(0.0),
        "B/s",
        &["B/s", "kB/s", "MB/s", "GB/s", "TB/s", "PB/s", "EB/s"],
    )
}

/// A bit rate for people, as bandwidths are given (`10Gbps`): `9.28 Gbps`.
pub fn format_bps(bits_per_sec: f64) -> String {
    scaled(
        bits_per_sec.max(0.0),
        "bps",
        &["bps", "kbps", "Mbps", "Gbps", "Tbps", "Pbps", "Ebps"],
    )
}

fn scaled(value: f64, one: &str, units: &[&str]) -> String {
    if value < 1000.0 {
        return format!("{} {one}", value.round() as u64);
    }
    let mut value = value;
    let mut unit = 0;
    while value >= 999.995 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2} {}", units[unit])
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
        assert_eq!(format_size(1536), "1.54 kB");
        assert_eq!(format_size(999_999), "1.00 MB");
        assert_eq!(format_size(5 << 30), "5 GiB");
        assert_eq!(format_size(5 << 30 | 1), "5.37 GB");
        assert_eq!(format_size(1 << 20), "1 MiB");
        assert_eq!(format_size(1_024_000), "1.02 MB");
        // What a size is given as is what is printed back.
        for given in ["40T", "40TB", "40TiB", "512GiB", "4MB", "1.5TB"] {
            let back = format_size(parse_size(given).unwrap());
            assert_eq!(parse_size(&back), parse_size(given), "{given} -> {back}");
        }
        assert_eq!(format_size(parse_size("40T").unwrap()), "40 TB");
        assert_eq!(format_size(parse_size("1.5TB").unwrap()), "1.50 TB");
        assert_eq!(format_size(u64::MAX), "18.45 EB");
        assert_eq!(format_byte_rate(125e6), "125.00 MB/s");
        assert_eq!(format_bps(10e9), "10.00 Gbps");
        assert_eq!(format_bps(0.4), "0 bps");
    }
}
