//! The block map a fill-server answers at `GET /partial/map/<id>` (docs/protocol.md,
//! "Relay"): which blocks of a file it is still filling are verified and durable, so a site
//! peer can take them before the file is complete.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "FILLMAP1"
//! 8       8     file size, bytes (u64 LE)
//! 16      4     block size, bytes (u32 LE; a power of two, 1 KiB ..= 16 MiB)
//! 20      4     flags (u32 LE): bit 0 set = complete (every block, the file is served
//!               whole at content/<id>); every other bit zero
//! 24      8·w   w = ceil(blocks / 64) words (u64 LE): block i held = bit i % 64 of word i / 64;
//!               bits past the last block zero
//! ```

use crate::outboard::BlockSize;

/// The magic of a block map.
pub const MAGIC: &[u8; 8] = b"FILLMAP1";

const HEADER: usize = 24;
const COMPLETE: u32 = 1;

/// A file's block map as a peer serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    /// The file's size.
    pub size: u64,
    /// Its block size.
    pub block: BlockSize,
    /// Every block held: the file is complete.
    pub complete: bool,
    /// Block `i` held = bit `i % 64` of word `i / 64`.
    pub words: Vec<u64>,
}

/// Why bytes are not a block map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad block map: {0}")]
pub struct BlockMapError(String);

impl BlockMap {
    /// The encoded length of a map of a file of `size` bytes in blocks of `block`.
    pub fn encoded_len(size: u64, block: BlockSize) -> u64 {
        HEADER as u64 + 8 * block.count(size).div_ceil(64)
    }

    /// The map's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 8 * self.words.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&(self.block.bytes() as u32).to_le_bytes());
        out.extend_from_slice(&u32::from(self.complete).to_le_bytes());
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Parses and checks a map: magic, block size, flags, exactly the words the size
    /// needs, no bit past the last block, and a complete map with every bit set.
    pub fn parse(bytes: &[u8]) -> Result<Self, BlockMapError> {
        let bad = |why: &str| Err(BlockMapError(why.to_owned()));
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return bad("no FILLMAP1 header");
        }
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
        let size = u64_at(8);
        let Ok(block) = BlockSize::from_bytes(u64::from(u32_at(16))) else {
            return bad("block size is not a power of two between 1 KiB and 16 MiB");
        };
        let flags = u32_at(20);
        if flags & !COMPLETE != 0 {
            return bad("unknown flags");
        }
        let blocks = block.count(size);
        let words = blocks.div_ceil(64);
        if (bytes.len() - HEADER) as u64 != words * 8 {
            return bad("length does not match the file's size");
        }
        let words: Vec<u64> = (0..words as usize)
            .map(|k| u64_at(HEADER + 8 * k))
            .collect();
        let tail = blocks % 64;
        if tail != 0 && words.last().is_some_and(|w| w >> tail != 0) {
            return bad("bits set past the last block");
        }
        let map = Self {
            size,
            block,
            complete: flags & COMPLETE != 0,
            words,
        };
        if map.complete && map.held() != blocks {
            return bad("complete, but not every block is held");
        }
        Ok(map)
    }

    /// How many blocks are held.
    pub fn held(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(size: u64, bits: &[u64], complete: bool) -> BlockMap {
        let block = BlockSize::from_bytes(1024).unwrap();
        let mut words = vec![0; block.count(size).div_ceil(64) as usize];
        for &b in bits {
            words[(b / 64) as usize] |= 1 << (b % 64);
        }
        BlockMap {
            size,
            block,
            complete,
            words,
        }
    }

    #[test]
    fn round_trips_and_lays_out_as_documented() {
        let m = map(70 * 1024 + 5, &[0, 3, 64, 70], false);
        let bytes = m.to_bytes();
        assert_eq!(&bytes[..8], b"FILLMAP1");
        assert_eq!(bytes.len() as u64, BlockMap::encoded_len(m.size, m.block));
        assert_eq!(bytes.len(), 24 + 16);
        assert_eq!(u32::from_le_bytes(bytes[16..20].try_into().unwrap()), 1024);
        assert_eq!(bytes[24], 0b1001);
        assert_eq!(BlockMap::parse(&bytes), Ok(m.clone()));
        assert_eq!(m.held(), 4);
    }

    #[test]
    fn refuses_what_is_not_a_map() {
        let good = map(3 * 1024, &[0, 1, 2], true).to_bytes();
        assert!(BlockMap::parse(&good).is_ok());
        for (k, bytes) in [
            (
                0,
                b"FILLMAP0"
                    .iter()
                    .chain(&good[8..])
                    .copied()
                    .collect::<Vec<u8>>(),
            ),
            (1, good[..good.len() - 1].to_vec()),
            (2, [&good[..], &[0u8; 8]].concat()),
            (3, map(3 * 1024, &[0, 1], true).to_bytes()),
            (4, {
                let mut b = good.clone();
                b[24] = 0b1111; // block 3 of 3
                b
            }),
            (5, {
                let mut b = good.clone();
                b[20] = 2;
                b
            }),
            (6, {
                let mut b = good.clone();
                b[16..20].copy_from_slice(&1000u32.to_le_bytes());
                b
            }),
        ] {
            assert!(BlockMap::parse(&bytes).is_err(), "case {k} parsed");
        }
    }
}
