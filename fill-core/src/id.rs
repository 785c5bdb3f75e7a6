//! Content ids: the BLAKE3 hash of a file, exactly what `b3sum` prints.
//!
//! On the wire and in paths an id is 64 lowercase hex characters. Anything else (upper case,
//! other lengths, separators, whitespace) is rejected where the id is parsed, so every
//! [`ContentId`] in the program is a valid 32-byte hash.

use std::fmt;
use std::str::FromStr;

/// The BLAKE3 hash of a file's bytes; its name in every store and on every wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentId([u8; 32]);

/// Bytewise order of two ids, comparing the first eight bytes as one word: ids are hashes,
/// so that word almost always decides, and a `memcmp` call per comparison is avoided where
/// catalogs compare ids by the million.
#[inline]
pub fn cmp_id_bytes(a: &[u8; 32], b: &[u8; 32]) -> std::cmp::Ordering {
    let (x, y) = (u64::from_be_bytes(first8(a)), u64::from_be_bytes(first8(b)));
    if x != y {
        x.cmp(&y)
    } else {
        a[8..].cmp(&b[8..])
    }
}

#[inline]
fn first8(a: &[u8; 32]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&a[..8]);
    w
}

impl Ord for ContentId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_id_bytes(&self.0, &other.0)
    }
}

impl PartialOrd for ContentId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a string is not a content id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string is not 64 characters long.
    #[error("content id must be 64 lowercase hex characters, got {0} characters")]
    Length(usize),
    /// A character is not in `0-9a-f`.
    #[error("content id has a character that is not lowercase hex at position {position}")]
    NotHex {
        /// Zero-based character position.
        position: usize,
    },
}

impl ContentId {
    /// The id of the given bytes (what `b3sum` prints for a file holding them).
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// Wraps raw hash bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw hash bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 lowercase hex characters.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(IdError::Length(s.chars().count()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(IdError::NotHex { position: 2 * i })?;
            let lo = hex_val(pair[1]).ok_or(IdError::NotHex {
                position: 2 * i + 1,
            })?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// The 64-character lowercase hex form, without allocating.
    pub fn to_hex(&self) -> HexId {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, byte) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(byte >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
        }
        HexId(out)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The hex form of an id, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexId([u8; 64]);

impl HexId {
    /// The 64 hex characters.
    pub fn as_str(&self) -> &str {
        // Always ASCII hex by construction.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.to_hex())
    }
}

impl FromStr for ContentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl serde::Serialize for ContentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.to_hex().as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ContentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_order_is_byte_order() {
        let ids: Vec<[u8; 32]> = (0u32..300)
            .map(|i| {
                let mut b = *ContentId::of(&i.to_le_bytes()).as_bytes();
                // Force ties in the first word for some pairs.
                if i % 3 == 0 {
                    b[..8].fill(7);
                }
                b
            })
            .collect();
        for a in &ids {
            for b in &ids {
                assert_eq!(cmp_id_bytes(a, b), a.cmp(b));
            }
        }
    }

    #[test]
    fn round_trips_and_matches_blake3() {
        let id = ContentId::of(b"hello");
        let hex = id.to_string();
        assert_eq!(hex, blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(ContentId::parse(&hex), Ok(id));
    }

    #[test]
    fn rejects_everything_but_64_lowercase_hex() {
        let good = ContentId::of(b"x").to_string();
        assert_eq!(
            ContentId::parse(&"A".repeat(64)).unwrap_err().to_string(),
            "content id has a character that is not lowercase hex at position 0"
        );
        assert_eq!(ContentId::parse(&good[..63]), Err(IdError::Length(63)));
        assert_eq!(
            ContentId::parse(&format!("{good}0")),
            Err(IdError::Length(65))
        );
        assert_eq!(ContentId::parse(""), Err(IdError::Length(0)));
        let mut spaced = good.clone();
        spaced.replace_range(10..11, " ");
        assert_eq!(
            ContentId::parse(&spaced),
            Err(IdError::NotHex { position: 10 })
        );
        let dotted = format!("../{}", &good[3..]);
        assert_eq!(
            ContentId::parse(&dotted),
            Err(IdError::NotHex { position: 0 })
        );
        // Multi-byte characters count as characters in the message, and never panic.
        let uni = "é".repeat(32);
        assert_eq!(ContentId::parse(&uni), Err(IdError::NotHex { position: 0 }));
        assert_eq!(ContentId::parse("é"), Err(IdError::Length(1)));
    }
}
