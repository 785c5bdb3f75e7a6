//! Outboards: what a client needs to verify any block of a file against its content id.
//!
//! A file is cut into blocks of a power-of-two size (1 KiB to 16 MiB, default 1 MiB). Because a
//! block is a whole number of BLAKE3 chunks and starts at a multiple of its own size, each block
//! is a complete subtree of the BLAKE3 tree, and its chaining value (CV) is well defined. The
//! outboard stores every block's CV; merging them the way BLAKE3 builds its tree gives the root,
//! which must equal the content id. So a verifier:
//!
//! 1. parses the outboard and rebuilds the root from the CVs ([`Outboard::parse`]): a single
//!    flipped bit anywhere makes it fail;
//! 2. then checks each block as it arrives against its CV ([`Outboard::verify_block`]).
//!
//! A file of at most one block has a single entry, which is the root hash itself.
//! The byte layout is specified in `docs/outboard-format.md`.

use blake3::hazmat::{self, HasherExt, Mode};
use rayon::prelude::*;

use crate::id::ContentId;

/// First eight bytes of every outboard.
pub const MAGIC: [u8; 8] = *b"FILLOBD\0";
/// The outboard format version this code reads and writes.
pub const VERSION: u32 = 1;
/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 32;
const CV_LEN: usize = 32;
const HEADER_CHECK_CONTEXT: &str = "fill outboard v1 header check";

/// A block size: a power of two from 1 KiB to 16 MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockSize(u8);

impl BlockSize {
    /// Smallest block: one BLAKE3 chunk.
    pub const MIN: BlockSize = BlockSize(10);
    /// Largest block: a block is held in memory while it is verified, so it stays small.
    pub const MAX: BlockSize = BlockSize(24);
    /// 1 MiB, the default.
    pub const DEFAULT: BlockSize = BlockSize(20);

    /// A block size from its size in bytes.
    pub fn from_bytes(bytes: u64) -> Result<Self, OutboardError> {
        if !bytes.is_power_of_two() {
            return Err(OutboardError::BadBlockSize(bytes));
        }
        Self::from_log2(bytes.trailing_zeros()).map_err(|_| OutboardError::BadBlockSize(bytes))
    }

    /// A block size from its base-2 logarithm.
    pub fn from_log2(log2: u32) -> Result<Self, OutboardError> {
        if (u32::from(Self::MIN.0)..=u32::from(Self::MAX.0)).contains(&log2) {
            Ok(Self(log2 as u8))
        } else {
            Err(OutboardError::BadBlockSize(
                1u64.checked_shl(log2).unwrap_or(0),
            ))
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.0
    }

    /// The base-2 logarithm of the size.
    pub const fn log2(self) -> u32 {
        self.0 as u32
    }

    /// How many blocks a file of `size` bytes has (at least one, even when empty).
    pub const fn count(self, size: u64) -> u64 {
        if size == 0 {
            1
        } else {
            size.div_ceil(self.bytes())
        }
    }

    /// Offset and length of block `index` in a file of `size` bytes.
    pub fn range(self, size: u64, index: u64) -> (u64, u64) {
        let offset = index.saturating_mul(self.bytes()).min(size);
        (offset, (size - offset).min(self.bytes()))
    }
}

impl Default for BlockSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why an outboard or a block did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboardError {
    /// The block size is not a power of two between 1 KiB and 16 MiB.
    #[error("block size {0} is not a power of two between 1 KiB and 16 MiB")]
    BadBlockSize(u64),
    /// The outboard is shorter than its header says it must be.
    #[error("outboard truncated: {actual} bytes, expected {expected}")]
    Truncated {
        /// Bytes present.
        actual: u64,
        /// Bytes the header implies.
        expected: u64,
    },
    /// The outboard is longer than its header says it must be.
    #[error("outboard has {extra} trailing bytes after {expected} expected")]
    TrailingBytes {
        /// Bytes past the end.
        extra: u64,
        /// Bytes the header implies.
        expected: u64,
    },
    /// The first eight bytes are not the outboard magic.
    #[error("not an outboard: bad magic bytes")]
    BadMagic,
    /// A version this code does not read.
    #[error("unsupported outboard version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    /// The header's check value does not match the header and the id.
    #[error("outboard header check failed: header corrupt or for another id")]
    HeaderCheck,
    /// The block CVs do not combine into the content id.
    #[error("outboard does not match content id {id}: its block hashes combine into {actual}")]
    RootMismatch {
        /// The id the outboard should prove.
        id: ContentId,
        /// What the outboard's CVs combine into.
        actual: ContentId,
    },
}

/// Why a block did not verify against a verified outboard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The block index is past the end of the file.
    #[error("block {index} is out of range: the file has {count} blocks")]
    OutOfRange {
        /// Requested block.
        index: u64,
        /// Blocks in the file.
        count: u64,
    },
    /// The block has the wrong number of bytes.
    #[error("block {index} has {actual} bytes, expected {expected}")]
    WrongLength {
        /// The block.
        index: u64,
        /// Bytes given.
        actual: u64,
        /// Bytes it must have.
        expected: u64,
    },
    /// The block's hash does not match the outboard: the data is corrupt.
    #[error("block {index} failed verification: its hash does not match the outboard")]
    Mismatch {
        /// The block.
        index: u64,
    },
}

/// A verified outboard: block CVs that are known to combine into `id`.
#[derive(Clone, PartialEq, Eq)]
pub struct Outboard {
    id: ContentId,
    size: u64,
    block: BlockSize,
    cvs: Vec<[u8; CV_LEN]>,
}

impl std::fmt::Debug for Outboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outboard")
            .field("id", &self.id)
            .field("size", &self.size)
            .field("block", &self.block.bytes())
            .field("blocks", &self.cvs.len())
            .finish()
    }
}

impl Outboard {
    /// Hashes `data` block by block (in parallel) and returns its outboard, whose id is
    /// exactly `blake3::hash(data)`.
    pub fn compute(data: &[u8], block: BlockSize) -> Self {
        let size = data.len() as u64;
        let count = block.count(size);
        let bs = block.bytes() as usize;
        let cvs: Vec<[u8; CV_LEN]> = if count == 1 {
            vec![*blake3::hash(data).as_bytes()]
        } else {
            data.par_chunks(bs)
                .with_min_len(4)
                .enumerate()
                .map(|(i, chunk)| block_cv(chunk, i as u64 * bs as u64))
                .collect()
        };
        let id = root_of(&cvs);
        Self {
            id,
            size,
            block,
            cvs,
        }
    }

    /// Parses an outboard and checks it against `id`: the header, its length, and that the
    /// block CVs combine into `id`. Only then can blocks be verified with it.
    pub fn parse(bytes: &[u8], id: ContentId) -> Result<Self, OutboardError> {
        if bytes.len() < HEADER_LEN {
            return Err(OutboardError::Truncated {
                actual: bytes.len() as u64,
                expected: HEADER_LEN as u64,
            });
        }
        if bytes[0..8] != MAGIC {
            return Err(OutboardError::BadMagic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
        if version != VERSION {
            return Err(OutboardError::UnsupportedVersion(version));
        }
        if bytes[24..32] != header_check(&bytes[..24], &id) {
            return Err(OutboardError::HeaderCheck);
        }
        let block = BlockSize::from_log2(u32::from_le_bytes(
            bytes[12..16].try_into().unwrap_or_default(),
        ))?;
        let size = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
        let count = block.count(size);
        // count ≤ 2^54, so this cannot overflow u128.
        let expected = HEADER_LEN as u128 + u128::from(count) * CV_LEN as u128;
        let actual = bytes.len() as u128;
        if actual < expected {
            return Err(OutboardError::Truncated {
                actual: actual as u64,
                expected: u64::try_from(expected).unwrap_or(u64::MAX),
            });
        }
        if actual > expected {
            return Err(OutboardError::TrailingBytes {
                extra: (actual - expected) as u64,
                expected: expected as u64,
            });
        }
        let cvs: Vec<[u8; CV_LEN]> = bytes[HEADER_LEN..]
            .chunks_exact(CV_LEN)
            .map(|c| c.try_into().unwrap_or([0; CV_LEN]))
            .collect();
        let actual_root = root_of(&cvs);
        if actual_root != id {
            return Err(OutboardError::RootMismatch {
                id,
                actual: actual_root,
            });
        }
        Ok(Self {
            id,
            size,
            block,
            cvs,
        })
    }

    /// The serialized outboard (see `docs/outboard-format.md`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.cvs.len() * CV_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.block.log2().to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        let check = header_check(&out, &self.id);
        out.extend_from_slice(&check);
        for cv in &self.cvs {
            out.extend_from_slice(cv);
        }
        out
    }

    /// The content id this outboard proves.
    pub fn id(&self) -> ContentId {
        self.id
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The block size.
    pub fn block_size(&self) -> BlockSize {
        self.block
    }

    /// Number of blocks (at least one).
    pub fn block_count(&self) -> u64 {
        self.cvs.len() as u64
    }

    /// Offset and length of block `index`.
    pub fn block_range(&self, index: u64) -> (u64, u64) {
        self.block.range(self.size, index)
    }

    /// Blocks this file shares with `other` at the same offsets: the same block size, offset,
    /// length and block hash (a block's hash covers its offset, so a shifted block differs).
    /// None for a one-block file, whose only hash is its id.
    pub fn shared_blocks(&self, other: &Outboard) -> Vec<u64> {
        if self.block != other.block || self.cvs.len() < 2 || other.cvs.len() < 2 {
            return Vec::new();
        }
        (0..self.block_count().min(other.block_count()))
            .filter(|&i| {
                self.block_range(i) == other.block_range(i)
                    && self.cvs[i as usize] == other.cvs[i as usize]
            })
            .collect()
    }

    /// Checks one block's bytes against the outboard.
    pub fn verify_block(&self, index: u64, data: &[u8]) -> Result<(), BlockError> {
        let count = self.block_count();
        if index >= count {
            return Err(BlockError::OutOfRange { index, count });
        }
        let (offset, expected) = self.block_range(index);
        if data.len() as u64 != expected {
            return Err(BlockError::WrongLength {
                index,
                actual: data.len() as u64,
                expected,
            });
        }
        let cv = if count == 1 {
            *blake3::hash(data).as_bytes()
        } else {
            block_cv(data, offset)
        };
        // Index is in range: checked above.
        if cv == self.cvs[index as usize] {
            Ok(())
        } else {
            Err(BlockError::Mismatch { index })
        }
    }
}

/// The non-root chaining value of the block starting at `offset`.
fn block_cv(data: &[u8], offset: u64) -> [u8; CV_LEN] {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    hasher.update(data);
    hasher.finalize_non_root()
}

fn header_check(header: &[u8], id: &ContentId) -> [u8; 8] {
    let mut hasher = blake3::Hasher::new_derive_key(HEADER_CHECK_CONTEXT);
    hasher.update(header);
    hasher.update(id.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    out
}

/// Combines block CVs into the root exactly as BLAKE3 builds its tree: the left subtree
/// always holds the largest power of two of blocks that is smaller than the whole.
fn root_of(cvs: &[[u8; CV_LEN]]) -> ContentId {
    match cvs {
        [] => ContentId::of(&[]),
        [only] => ContentId::from_bytes(*only),
        _ => {
            let split = left_len(cvs.len());
            let left = subtree(&cvs[..split]);
            let right = subtree(&cvs[split..]);
            ContentId::from_bytes(
                *hazmat::merge_subtrees_root(&left, &right, Mode::Hash).as_bytes(),
            )
        }
    }
}

fn subtree(cvs: &[[u8; CV_LEN]]) -> [u8; CV_LEN] {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let split = left_len(cvs.len());
    let left = subtree(&cvs[..split]);
    let right = subtree(&cvs[split..]);
    hazmat::merge_subtrees_non_root(&left, &right, Mode::Hash)
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn left_len(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize, seed: u64) -> Vec<u8> {
        // xorshift: cheap, seeded, incompressible enough for hashing tests.
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn shared_blocks_are_those_at_the_same_offset_with_the_same_bytes() {
        let block = BlockSize::from_bytes(1024).unwrap();
        let old = data(8 * 1024 + 100, 7);
        let old_ob = Outboard::compute(&old, block);
        // Block 2 rewritten, and the last (partial) block grown.
        let mut new = old[..8 * 1024].to_vec();
        new[2048..3072].fill(0xAB);
        new.extend_from_slice(&data(1000, 8));
        let shared = Outboard::compute(&new, block).shared_blocks(&old_ob);
        assert_eq!(shared, vec![0, 1, 3, 4, 5, 6, 7]);
        // One byte inserted in block 4 shifts everything after it.
        let mut shifted = old[..4100].to_vec();
        shifted.push(1);
        shifted.extend_from_slice(&old[4100..]);
        let shared = Outboard::compute(&shifted, block).shared_blocks(&old_ob);
        assert_eq!(shared, vec![0, 1, 2, 3]);
        // Another block size, or a one-block file: nothing.
        let other = Outboard::compute(&old, BlockSize::from_bytes(2048).unwrap());
        assert!(old_ob.shared_blocks(&other).is_empty());
        let small = Outboard::compute(&old[..1000], block);
        assert!(
            small
                .shared_blocks(&Outboard::compute(&old[..1000], block))
                .is_empty()
        );
    }

    fn check(len: usize, block: BlockSize) {
        let d = data(len, len as u64);
        let ob = Outboard::compute(&d, block);
        assert_eq!(ob.id().as_bytes(), blake3::hash(&d).as_bytes(), "len {len}");
        let bytes = ob.to_bytes();
        let parsed = Outboard::parse(&bytes, ob.id()).expect("own outboard parses");
        assert_eq!(parsed, ob);
        for i in 0..parsed.block_count() {
            let (off, n) = parsed.block_range(i);
            parsed
                .verify_block(i, &d[off as usize..(off + n) as usize])
                .expect("own block verifies");
        }
    }

    #[test]
    fn matches_blake3_at_the_edges() {
        let kb = BlockSize::MIN;
        let b4 = BlockSize::from_bytes(4096).unwrap();
        for len in [
            0,
            1,
            1023,
            1024,
            1025,
            2048,
            4095,
            4096,
            4097,
            3 * 4096 + 5,
            17 * 4096,
        ] {
            check(len, kb);
            check(len, b4);
            check(len, BlockSize::DEFAULT);
        }
        let mib = 1 << 20;
        for len in [mib - 1, mib, mib + 1, 5 * mib + 3, 9 * mib] {
            check(len, BlockSize::DEFAULT);
        }
    }

    #[test]
    fn left_len_is_largest_power_of_two_below() {
        assert_eq!(left_len(2), 1);
        assert_eq!(left_len(3), 2);
        assert_eq!(left_len(4), 2);
        assert_eq!(left_len(5), 4);
        assert_eq!(left_len(9), 8);
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let block = BlockSize::MIN;
        let d = data(5 * 1024 + 100, 7);
        let ob = Outboard::compute(&d, block);
        let bytes = ob.to_bytes();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Outboard::parse(&bad, ob.id()).is_err(),
                "outboard bit {bit} not caught"
            );
        }
        for bit in 0..d.len() * 8 {
            let mut bad = d.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let index = (bit / 8) as u64 / block.bytes();
            let (off, n) = ob.block_range(index);
            assert_eq!(
                ob.verify_block(index, &bad[off as usize..(off + n) as usize]),
                Err(BlockError::Mismatch { index }),
                "data bit {bit} not caught"
            );
        }
    }

    #[test]
    fn single_block_files_flip_bits_caught() {
        let d = data(700, 3);
        let ob = Outboard::compute(&d, BlockSize::DEFAULT);
        let bytes = ob.to_bytes();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Outboard::parse(&bad, ob.id()).is_err(),
                "outboard bit {bit} not caught"
            );
        }
        for bit in 0..d.len() * 8 {
            let mut bad = d.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(ob.verify_block(0, &bad).is_err());
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let d = data(4000, 1);
        let ob = Outboard::compute(&d, BlockSize::MIN);
        let bytes = ob.to_bytes();
        let msg = |b: &[u8]| Outboard::parse(b, ob.id()).unwrap_err().to_string();
        assert_eq!(
            msg(&bytes[..10]),
            "outboard truncated: 10 bytes, expected 32"
        );
        assert_eq!(
            msg(&bytes[..bytes.len() - 1]),
            "outboard truncated: 159 bytes, expected 160"
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            msg(&long),
            "outboard has 1 trailing bytes after 160 expected"
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(msg(&magic), "not an outboard: bad magic bytes");
        let mut version = bytes.clone();
        version[8] = 9;
        assert_eq!(
            msg(&version),
            "unsupported outboard version 9 (this build reads version 1)"
        );
        let other = ContentId::of(b"other");
        assert_eq!(
            Outboard::parse(&bytes, other).unwrap_err().to_string(),
            "outboard header check failed: header corrupt or for another id"
        );
        let mut cv = bytes.clone();
        cv[HEADER_LEN] ^= 1;
        assert!(msg(&cv).starts_with(&format!("outboard does not match content id {}", ob.id())));
        assert_eq!(
            ob.verify_block(4, &d[..10]).unwrap_err().to_string(),
            "block 4 is out of range: the file has 4 blocks"
        );
        assert_eq!(
            ob.verify_block(3, &d[..10]).unwrap_err().to_string(),
            "block 3 has 10 bytes, expected 928"
        );
        assert_eq!(
            BlockSize::from_bytes(3000).unwrap_err().to_string(),
            "block size 3000 is not a power of two between 1 KiB and 16 MiB"
        );
        assert!(BlockSize::from_bytes(512).is_err());
        assert!(BlockSize::from_bytes(1 << 25).is_err());
        assert!(BlockSize::from_log2(64).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_sizes_match_blake3(len in 0usize..300_000, log2 in 10u32..14) {
            check(len, BlockSize::from_log2(log2).unwrap());
        }

        #[test]
        fn arbitrary_outboard_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Outboard::parse(&bytes, ContentId::of(b"x"));
        }
    }
}
