//! The catalog: a versioned binary list of `(content id, size, popularity weight, name)`.
//!
//! Built for millions of entries: [`CatalogView::open`] checks only the fixed header and the
//! file length (constant time, so a memory-mapped file opens instantly), and
//! [`CatalogView::validate`] checks every record once (in parallel) and returns a
//! [`Catalog`] whose accessors cannot fail. Records are sorted by id so lookups are binary
//! searches and merges are linear walks; a rank section lists the records by popularity
//! (weight descending, ties by id ascending) so placement never sorts.
//! The byte layout is specified in `docs/catalog-format.md`; [`wire`] compresses a catalog with
//! zstd for transport.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::id::{ContentId, cmp_id_bytes};

/// First eight bytes of every catalog.
pub const MAGIC: [u8; 8] = *b"FILLCAT\0";
/// The format version this code reads and writes.
pub const VERSION: u32 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Bytes per record across the fixed-size sections: id 32, size and weight 16, name end 8,
/// rank entry 20 (record index, and a copy of its size and weight so the rank walk reads
/// memory in order).
pub const RECORD_LEN: usize = 76;
const RANK_ENTRY: usize = 20;
/// Longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 4096;
/// Most entries a catalog may hold (rank entries are 32-bit).
pub const MAX_ENTRIES: u64 = u32::MAX as u64;

/// Entries checked per parallel task during validation.
const VALIDATE_CHUNK: usize = 1 << 16;

/// One catalog entry, as people import and export it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The content id.
    pub id: ContentId,
    /// Size in bytes.
    pub size: u64,
    /// Popularity weight: finite and not negative; higher is more popular.
    pub weight: f64,
    /// A name for people (a relative path such as `titles/t00001/video.mp4`).
    pub name: String,
}

/// What is wrong with a catalog, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The file has no bytes at all.
    #[error("catalog is empty (0 bytes): not a catalog")]
    Empty,
    /// The file is shorter than its header says.
    #[error("catalog truncated: {actual} bytes, header implies {expected}")]
    Truncated {
        /// Bytes present.
        actual: u64,
        /// Bytes the header implies.
        expected: u64,
    },
    /// The file is longer than its header says.
    #[error("catalog has {extra} trailing bytes after the {expected} its header implies")]
    TrailingBytes {
        /// Bytes past the end.
        extra: u64,
        /// Bytes the header implies.
        expected: u64,
    },
    /// The first eight bytes are not the catalog magic.
    #[error("not a catalog: bad magic bytes (expected \"FILLCAT\\0\")")]
    BadMagic,
    /// A version this code does not read.
    #[error("unsupported catalog version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    /// A reserved header field is not zero.
    #[error("catalog header: reserved bytes at offset {offset} are not zero")]
    Reserved {
        /// Byte offset of the field.
        offset: usize,
    },
    /// More entries than the format allows.
    #[error("catalog has {0} entries, more than the format allows ({MAX_ENTRIES})")]
    TooManyEntries(u64),
    /// Two entries have the same id.
    #[error("entry {index}: duplicate id {id}")]
    DuplicateId {
        /// Index of the second occurrence.
        index: u64,
        /// The id.
        id: ContentId,
    },
    /// Ids are not in ascending order.
    #[error("entry {index}: ids not sorted ({id} comes after a larger id)")]
    Unsorted {
        /// Index of the first out-of-order entry.
        index: u64,
        /// Its id.
        id: ContentId,
    },
    /// The sizes add up past 2^64 − 1.
    #[error("entry {index}: sizes overflow: the total passes 2^64-1 bytes")]
    SizeOverflow {
        /// Index of the entry whose size overflows the running total.
        index: u64,
    },
    /// A weight is negative, NaN or infinite.
    #[error("entry {index}: weight {weight} is not a finite number >= 0")]
    BadWeight {
        /// The entry.
        index: u64,
        /// The weight.
        weight: f64,
    },
    /// A name breaks the naming rules.
    #[error("entry {index}: bad name: {reason}")]
    BadName {
        /// The entry.
        index: u64,
        /// Which rule it breaks.
        reason: NameError,
    },
    /// The name offsets are inconsistent.
    #[error(
        "entry {index}: name end offset {end} is out of order or past the names section ({names_len} bytes)"
    )]
    BadNameOffset {
        /// The entry.
        index: u64,
        /// Its end offset.
        end: u64,
        /// Length of the names section.
        names_len: u64,
    },
    /// The rank section is not the popularity order of the records.
    #[error("rank position {position}: {reason}")]
    BadRank {
        /// Position in the rank section.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// A compressed catalog did not decompress.
    #[error("compressed catalog: {0}")]
    Decompress(String),
}

/// Why a name is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty names are not allowed.
    #[error("name is empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("name is {0} bytes, longer than {MAX_NAME_LEN}")]
    TooLong(usize),
    /// Not UTF-8.
    #[error("name is not valid UTF-8")]
    NotUtf8,
    /// Holds a NUL byte.
    #[error("name contains a NUL byte")]
    Nul,
    /// Holds another control character.
    #[error("name contains control character {0:#04x}")]
    Control(u8),
    /// Has a `..` component.
    #[error("name contains a '..' component")]
    DotDot,
    /// Starts with `/`.
    #[error("name is an absolute path")]
    Absolute,
}

/// Checks a name against the naming rules: 1 to 4096 bytes of UTF-8, no NUL or other control
/// character, not absolute, no `..` component.
pub fn check_name(name: &[u8]) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(&c) = name.iter().find(|&&c| c < 0x20 || c == 0x7f) {
        return Err(if c == 0 {
            NameError::Nul
        } else {
            NameError::Control(c)
        });
    }
    let s = std::str::from_utf8(name).map_err(|_| NameError::NotUtf8)?;
    if s.starts_with('/') {
        return Err(NameError::Absolute);
    }
    if s.split(['/', '\\']).any(|part| part == "..") {
        return Err(NameError::DotDot);
    }
    Ok(s)
}

fn check_weight(index: u64, weight: f64) -> Result<(), CatalogError> {
    if weight.is_finite() && !weight.is_sign_negative() {
        Ok(())
    } else {
        Err(CatalogError::BadWeight { index, weight })
    }
}

/// Popularity order: weight descending, then id ascending.
fn rank_cmp(wa: f64, ida: &[u8; 32], wb: f64, idb: &[u8; 32]) -> Ordering {
    wb.total_cmp(&wa).then_with(|| cmp_id_bytes(ida, idb))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

/// A catalog whose header and length have been checked, but not its records.
#[derive(Clone, Copy)]
pub struct CatalogView<'a> {
    bytes: &'a [u8],
    count: usize,
    names_len: usize,
}

impl std::fmt::Debug for CatalogView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogView")
            .field("entries", &self.count)
            .field("names_len", &self.names_len)
            .finish()
    }
}

impl<'a> CatalogView<'a> {
    /// Checks the header and the total length. Constant time.
    pub fn open(bytes: &'a [u8]) -> Result<Self, CatalogError> {
        if bytes.is_empty() {
            return Err(CatalogError::Empty);
        }
        if bytes.len() < HEADER_LEN {
            if bytes.len() >= 8 && bytes[..8] != MAGIC {
                return Err(CatalogError::BadMagic);
            }
            return Err(CatalogError::Truncated {
                actual: bytes.len() as u64,
                expected: HEADER_LEN as u64,
            });
        }
        if bytes[..8] != MAGIC {
            return Err(CatalogError::BadMagic);
        }
        let version = le_u32(bytes, 8);
        if version != VERSION {
            return Err(CatalogError::UnsupportedVersion(version));
        }
        if le_u32(bytes, 12) != 0 {
            return Err(CatalogError::Reserved { offset: 12 });
        }
        if let Some(pos) = bytes[32..HEADER_LEN].iter().position(|&b| b != 0) {
            return Err(CatalogError::Reserved { offset: 32 + pos });
        }
        let count = le_u64(bytes, 16);
        if count > MAX_ENTRIES {
            return Err(CatalogError::TooManyEntries(count));
        }
        let names_len = le_u64(bytes, 24);
        let expected = implied_len(count, names_len);
        let actual = bytes.len() as u128;
        if actual < expected {
            return Err(CatalogError::Truncated {
                actual: actual as u64,
                expected: u64::try_from(expected).unwrap_or(u64::MAX),
            });
        }
        if actual > expected {
            return Err(CatalogError::TrailingBytes {
                extra: (actual - expected) as u64,
                expected: expected as u64,
            });
        }
        // Both fit in usize: the whole file is in memory.
        Ok(Self {
            bytes,
            count: count as usize,
            names_len: names_len as usize,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn ids_at(&self) -> usize {
        HEADER_LEN
    }
    fn meta_at(&self) -> usize {
        HEADER_LEN + 32 * self.count
    }
    fn ends_at(&self) -> usize {
        HEADER_LEN + 48 * self.count
    }
    fn rank_at(&self) -> usize {
        HEADER_LEN + 56 * self.count
    }
    fn names_at(&self) -> usize {
        HEADER_LEN + RECORD_LEN * self.count
    }

    fn id_bytes(&self, i: usize) -> &'a [u8; 32] {
        let at = self.ids_at() + 32 * i;
        self.bytes[at..at + 32].try_into().unwrap_or(&[0; 32])
    }
    fn size(&self, i: usize) -> u64 {
        le_u64(self.bytes, self.meta_at() + 16 * i)
    }
    fn weight(&self, i: usize) -> f64 {
        f64::from_bits(le_u64(self.bytes, self.meta_at() + 16 * i + 8))
    }
    fn name_end(&self, i: usize) -> u64 {
        le_u64(self.bytes, self.ends_at() + 8 * i)
    }
    fn rank_entry(&self, pos: usize) -> u32 {
        le_u32(self.bytes, self.rank_at() + RANK_ENTRY * pos)
    }
    /// Record index, size and weight bits of rank position `pos`.
    fn rank_meta(&self, pos: usize) -> (usize, u64, u64) {
        let at = self.rank_at() + RANK_ENTRY * pos;
        (
            le_u32(self.bytes, at) as usize,
            le_u64(self.bytes, at + 4),
            le_u64(self.bytes, at + 12),
        )
    }
    /// Whether the rank entry's copy of size and weight matches record `r`.
    fn rank_copy_matches(&self, r: usize, size: u64, weight_bits: u64) -> bool {
        self.size(r) == size && self.weight(r).to_bits() == weight_bits
    }

    /// Checks every record: ids sorted and unique, sizes summing within u64, weights finite and
    /// not negative, names well-formed, the rank section the exact popularity order.
    /// Reports the first problem in file order.
    pub fn validate(self) -> Result<Catalog<'a>, CatalogError> {
        let n = self.count;
        let chunks: Vec<(usize, usize)> = (0..n)
            .step_by(VALIDATE_CHUNK)
            .map(|lo| (lo, (lo + VALIDATE_CHUNK).min(n)))
            .collect();
        // Records: each chunk reports its first error and its size total; chunk order keeps the
        // reported error the first in the file.
        let results: Vec<Result<u128, CatalogError>> = chunks
            .par_iter()
            .map(|&(lo, hi)| self.check_records(lo, hi))
            .collect();
        let mut total: u128 = 0;
        for (r, &(lo, hi)) in results.into_iter().zip(&chunks) {
            let chunk_total = r?;
            if total + chunk_total > u128::from(u64::MAX) {
                let mut running = total;
                for i in lo..hi {
                    running += u128::from(self.size(i));
                    if running > u128::from(u64::MAX) {
                        return Err(CatalogError::SizeOverflow { index: i as u64 });
                    }
                }
            }
            total += chunk_total;
        }
        if n > 0 && self.name_end(n - 1) != self.names_len as u64 {
            return Err(CatalogError::BadNameOffset {
                index: (n - 1) as u64,
                end: self.name_end(n - 1),
                names_len: self.names_len as u64,
            });
        }
        if n == 0 && self.names_len != 0 {
            return Err(CatalogError::TrailingBytes {
                extra: self.names_len as u64,
                expected: HEADER_LEN as u64,
            });
        }
        self.check_rank()?;
        Ok(Catalog {
            view: self,
            total_size: total as u64,
        })
    }

    /// Checks records `lo..hi`; returns the sum of their sizes. A fast pass checks the whole
    /// range at once (names as one UTF-8 run); only when it finds something does the exact
    /// pass run, entry by entry, to name the first problem.
    fn check_records(&self, lo: usize, hi: usize) -> Result<u128, CatalogError> {
        match self.records_ok(lo, hi) {
            Some(total) => Ok(total),
            None => self.first_record_error(lo, hi),
        }
    }

    /// The fast pass: `Some(total size)` when every record in `lo..hi` is certainly valid.
    fn records_ok(&self, lo: usize, hi: usize) -> Option<u128> {
        let first_start = if lo == 0 { 0 } else { self.name_end(lo - 1) };
        let names_len = self.names_len as u64;
        let names = &self.bytes[self.names_at()..];
        let mut total = 0u128;
        let mut ok = true;
        let mut start = first_start;
        for i in lo..hi {
            if i > 0 {
                ok &= cmp_id_bytes(self.id_bytes(i - 1), self.id_bytes(i)) == Ordering::Less;
            }
            total += u128::from(self.size(i));
            let w = le_u64(self.bytes, self.meta_at() + 16 * i + 8);
            // Sign bit clear and exponent not all ones: finite and not negative.
            ok &= w >> 63 == 0 && (w >> 52) & 0x7ff != 0x7ff;
            let end = self.name_end(i);
            ok &= end > start && end - start <= MAX_NAME_LEN as u64 && end <= names_len;
            if !ok {
                return None;
            }
            // A name starts at a character boundary, and not with '/'.
            let c = names[start as usize];
            ok &= !(0x80..0xc0).contains(&c) && c != b'/';
            start = end;
        }
        if !ok {
            return None;
        }
        let run = &names[first_start as usize..start as usize];
        let clean = run
            .iter()
            .fold(true, |acc, &c| acc & (c >= 0x20) & (c != 0x7f));
        // Any ".." sends the range to the exact pass, which knows component boundaries.
        let dots = run.windows(2).any(|w| w == b"..");
        (clean && !dots && std::str::from_utf8(run).is_ok()).then_some(total)
    }

    /// The exact pass: checks records `lo..hi` one by one and reports the first problem.
    fn first_record_error(&self, lo: usize, hi: usize) -> Result<u128, CatalogError> {
        let mut total = 0u128;
        let names = &self.bytes[self.names_at()..];
        let mut start = if lo == 0 { 0 } else { self.name_end(lo - 1) };
        for i in lo..hi {
            let idx = i as u64;
            let id = self.id_bytes(i);
            if i > 0 {
                match cmp_id_bytes(self.id_bytes(i - 1), id) {
                    Ordering::Less => {}
                    Ordering::Equal => {
                        return Err(CatalogError::DuplicateId {
                            index: idx,
                            id: ContentId::from_bytes(*id),
                        });
                    }
                    Ordering::Greater => {
                        return Err(CatalogError::Unsorted {
                            index: idx,
                            id: ContentId::from_bytes(*id),
                        });
                    }
                }
            }
            total += u128::from(self.size(i));
            check_weight(idx, self.weight(i))?;
            let end = self.name_end(i);
            if end < start || end > self.names_len as u64 {
                return Err(CatalogError::BadNameOffset {
                    index: idx,
                    end,
                    names_len: self.names_len as u64,
                });
            }
            check_name(&names[start as usize..end as usize])
                .map_err(|reason| CatalogError::BadName { index: idx, reason })?;
            start = end;
        }
        Ok(total)
    }

    /// Checks that the rank section is a permutation in popularity order. Runs after the
    /// records are validated, so record index order is id order and ties need no id reads.
    /// The parallel pass only says yes or no (each task marks its own bitmap, and the bitmaps
    /// must not overlap); on no, a sequential pass finds the first bad position, so the
    /// message does not depend on thread timing.
    fn check_rank(&self) -> Result<(), CatalogError> {
        let n = self.count;
        let words = n.div_ceil(64);
        let tasks = rayon::current_num_threads().max(1);
        let per_task = n.div_ceil(tasks).max(1);
        let marks: Vec<Option<Vec<u64>>> = (0..n)
            .step_by(per_task)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|lo| {
                let hi = (lo + per_task).min(n);
                let mut seen = vec![0u64; words];
                let mut prev = (lo > 0).then(|| self.rank_entry(lo - 1) as usize);
                let mut prev_w =
                    prev.map_or(f64::INFINITY, |p| if p < n { self.weight(p) } else { 0.0 });
                for pos in lo..hi {
                    let (r, size, w_bits) = self.rank_meta(pos);
                    if r >= n
                        || seen[r / 64] & (1 << (r % 64)) != 0
                        || !self.rank_copy_matches(r, size, w_bits)
                    {
                        return None;
                    }
                    seen[r / 64] |= 1 << (r % 64);
                    let w = f64::from_bits(w_bits);
                    let in_order = match prev {
                        None => true,
                        Some(p) => prev_w > w || (prev_w == w && p < r),
                    };
                    if !in_order {
                        return None;
                    }
                    (prev, prev_w) = (Some(r), w);
                }
                Some(seen)
            })
            .collect();
        let mut all = vec![0u64; words];
        for m in &marks {
            let Some(m) = m else {
                return Err(self.first_rank_error());
            };
            for (a, b) in all.iter_mut().zip(m) {
                if *a & *b != 0 {
                    return Err(self.first_rank_error());
                }
                *a |= *b;
            }
        }
        Ok(())
    }

    /// Whether record `b` may follow record `a` in the rank (`b` out of range counts as in
    /// order here; it is reported at its own position).
    fn rank_in_order(&self, a: usize, b: usize) -> bool {
        b >= self.count
            || rank_cmp(
                self.weight(a),
                self.id_bytes(a),
                self.weight(b),
                self.id_bytes(b),
            ) == Ordering::Less
    }

    fn first_rank_error(&self) -> CatalogError {
        let n = self.count;
        let mut seen = vec![0u64; n.div_ceil(64)];
        let mut prev: Option<usize> = None;
        for pos in 0..n {
            let (r, size, w_bits) = self.rank_meta(pos);
            let reason = if r >= n {
                format!("record index {r} is out of range ({n} entries)")
            } else if seen[r / 64] & (1 << (r % 64)) != 0 {
                format!("record index {r} appears twice")
            } else if !self.rank_copy_matches(r, size, w_bits) {
                format!("size or weight differs from record {r}'s")
            } else if prev.is_some_and(|p| !self.rank_in_order(p, r)) {
                format!(
                    "record {r} is ranked after record {} but is not less popular \
                     (rank must be weight descending, then id ascending)",
                    prev.unwrap_or_default()
                )
            } else {
                seen[r / 64] |= 1 << (r % 64);
                prev = Some(r);
                continue;
            };
            return CatalogError::BadRank {
                position: pos as u64,
                reason,
            };
        }
        CatalogError::BadRank {
            position: 0,
            reason: "rank section is inconsistent".into(),
        }
    }
}

/// A fully validated catalog: every accessor is infallible.
#[derive(Clone, Copy)]
pub struct Catalog<'a> {
    view: CatalogView<'a>,
    total_size: u64,
}

impl std::fmt::Debug for Catalog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("entries", &self.view.count)
            .field("total_size", &self.total_size)
            .finish()
    }
}

impl<'a> Catalog<'a> {
    /// Opens and fully validates a catalog held in memory.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CatalogError> {
        CatalogView::open(bytes)?.validate()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.view.count
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.view.count == 0
    }

    /// Sum of all sizes (validated not to overflow).
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Sum of all weights.
    pub fn total_weight(&self) -> f64 {
        (0..self.len()).map(|i| self.weight(i)).sum()
    }

    /// The id of entry `i` (entries are sorted by id).
    pub fn id(&self, i: usize) -> ContentId {
        ContentId::from_bytes(*self.view.id_bytes(i))
    }

    /// The raw id bytes of entry `i`.
    pub fn id_bytes(&self, i: usize) -> &'a [u8; 32] {
        self.view.id_bytes(i)
    }

    /// Size in bytes of entry `i`.
    pub fn size(&self, i: usize) -> u64 {
        self.view.size(i)
    }

    /// Popularity weight of entry `i`.
    pub fn weight(&self, i: usize) -> f64 {
        self.view.weight(i)
    }

    /// Name of entry `i`.
    pub fn name(&self, i: usize) -> &'a str {
        let start = if i == 0 {
            0
        } else {
            self.view.name_end(i - 1) as usize
        };
        let end = self.view.name_end(i) as usize;
        let names = &self.view.bytes[self.view.names_at()..];
        // Validated: each name is UTF-8 on its own.
        std::str::from_utf8(&names[start..end]).unwrap_or_default()
    }

    /// Entry `i` as an owned value.
    pub fn entry(&self, i: usize) -> Entry {
        Entry {
            id: self.id(i),
            size: self.size(i),
            weight: self.weight(i),
            name: self.name(i).to_owned(),
        }
    }

    /// The record index at popularity rank `pos` (0 = most popular).
    pub fn ranked(&self, pos: usize) -> usize {
        self.view.rank_entry(pos) as usize
    }

    /// Record indices from most to least popular (weight descending, ties by id ascending).
    pub fn by_rank(&self) -> impl ExactSizeIterator<Item = usize> + 'a {
        let view = self.view;
        (0..view.count).map(move |pos| view.rank_entry(pos) as usize)
    }

    /// `(record index, size, weight)` from most to least popular, read in file order (the
    /// rank section carries the sizes and weights, so this walk never jumps around memory).
    pub fn by_rank_with_meta(&self) -> impl ExactSizeIterator<Item = (usize, u64, f64)> + 'a {
        let view = self.view;
        (0..view.count).map(move |pos| {
            let (r, size, w) = view.rank_meta(pos);
            (r, size, f64::from_bits(w))
        })
    }

    /// The index of `id`, by binary search.
    pub fn find(&self, id: &ContentId) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match cmp_id_bytes(self.view.id_bytes(mid), id.as_bytes()) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// All entries in id order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = Entry> + '_ {
        (0..self.len()).map(|i| self.entry(i))
    }
}

/// Builds a catalog from entries in any order.
#[derive(Debug, Default)]
pub struct CatalogBuilder {
    records: Vec<Record>,
    names: String,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    id: [u8; 32],
    size: u64,
    weight: f64,
    name_start: usize,
    name_len: usize,
}

impl CatalogBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `entries` entries and `name_bytes` bytes of names.
    pub fn with_capacity(entries: usize, name_bytes: usize) -> Self {
        Self {
            records: Vec::with_capacity(entries),
            names: String::with_capacity(name_bytes),
        }
    }

    /// Number of entries added so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds an entry; the weight and the name are checked now (errors name the entry by the
    /// order it was added in, from 0).
    pub fn push(
        &mut self,
        id: ContentId,
        size: u64,
        weight: f64,
        name: &str,
    ) -> Result<(), CatalogError> {
        let index = self.records.len() as u64;
        check_weight(index, weight)?;
        check_name(name.as_bytes()).map_err(|reason| CatalogError::BadName { index, reason })?;
        let name_start = self.names.len();
        self.names.push_str(name);
        self.records.push(Record {
            id: *id.as_bytes(),
            size,
            // -0.0 and 0.0 are the same weight; store one of them.
            weight: weight + 0.0,
            name_start,
            name_len: name.len(),
        });
        Ok(())
    }

    /// Sorts, checks for duplicate ids and overflowing sizes, ranks and serializes.
    pub fn finish(mut self) -> Result<Vec<u8>, CatalogError> {
        let n = self.records.len();
        if n as u64 > MAX_ENTRIES {
            return Err(CatalogError::TooManyEntries(n as u64));
        }
        self.records
            .par_sort_unstable_by(|a, b| cmp_id_bytes(&a.id, &b.id));
        let mut total: u64 = 0;
        for (i, r) in self.records.iter().enumerate() {
            if i > 0 && self.records[i - 1].id == r.id {
                return Err(CatalogError::DuplicateId {
                    index: i as u64,
                    id: ContentId::from_bytes(r.id),
                });
            }
            total = total
                .checked_add(r.size)
                .ok_or(CatalogError::SizeOverflow { index: i as u64 })?;
        }
        let mut rank: Vec<u32> = (0..n as u32).collect();
        let recs = &self.records;
        rank.par_sort_unstable_by(|&a, &b| {
            let (a, b) = (&recs[a as usize], &recs[b as usize]);
            rank_cmp(a.weight, &a.id, b.weight, &b.id)
        });
        let names_len: usize = recs.iter().map(|r| r.name_len).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + RECORD_LEN * n + names_len);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        out.extend_from_slice(&(names_len as u64).to_le_bytes());
        out.resize(HEADER_LEN, 0);
        for r in recs {
            out.extend_from_slice(&r.id);
        }
        for r in recs {
            out.extend_from_slice(&r.size.to_le_bytes());
            out.extend_from_slice(&r.weight.to_bits().to_le_bytes());
        }
        let mut end = 0u64;
        for r in recs {
            end += r.name_len as u64;
            out.extend_from_slice(&end.to_le_bytes());
        }
        for &r in &rank {
            out.extend_from_slice(&r.to_le_bytes());
            out.extend_from_slice(&recs[r as usize].size.to_le_bytes());
            out.extend_from_slice(&recs[r as usize].weight.to_bits().to_le_bytes());
        }
        for r in recs {
            out.extend_from_slice(&self.names.as_bytes()[r.name_start..r.name_start + r.name_len]);
        }
        Ok(out)
    }
}

/// The length a catalog of `count` entries and `names_len` bytes of names has (in u128:
/// a hostile header cannot overflow it).
fn implied_len(count: u64, names_len: u64) -> u128 {
    HEADER_LEN as u128 + u128::from(count) * RECORD_LEN as u128 + u128::from(names_len)
}

/// zstd compression for catalogs that travel.
pub mod wire {
    use std::io::Read;

    use super::CatalogError;

    /// The four bytes every zstd frame starts with.
    pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

    /// Whether `bytes` look like a zstd frame.
    pub fn is_zstd(bytes: &[u8]) -> bool {
        bytes.starts_with(&ZSTD_MAGIC)
    }

    /// Compresses a catalog for transport.
    pub fn compress(catalog: &[u8], level: i32) -> Vec<u8> {
        // Compressing an in-memory slice into a Vec cannot fail for I/O reasons.
        zstd::bulk::compress(catalog, level).unwrap_or_default()
    }

    /// How many times its compressed size a catalog may declare: every entry carries a
    /// 32-byte id, random and incompressible, in at most 76 + 4096 bytes, so no real
    /// catalog comes near; a bomb (a few KB claiming gigabytes) is refused before any
    /// decompression.
    pub const MAX_RATIO: u64 = 256;

    /// Decompresses a catalog, within bounded memory and time whatever the bytes are:
    /// exactly one zstd frame, which must declare its decompressed size; that size must be
    /// at most `limit`, at most [`MAX_RATIO`] times the compressed size, and exactly what
    /// the catalog's header implies from its entry count and names; the output is
    /// streamed into a buffer of that size, and anything past it is refused.
    pub fn decompress(bytes: &[u8], limit: u64) -> Result<Vec<u8>, CatalogError> {
        let bad = |why: String| CatalogError::Decompress(why);
        let frame = zstd::zstd_safe::find_frame_compressed_size(bytes)
            .map_err(|_| bad("not a whole zstd frame".into()))?;
        if frame != bytes.len() {
            return Err(bad(format!(
                "{} bytes after the zstd frame (one frame expected)",
                bytes.len() - frame
            )));
        }
        let declared = match zstd::zstd_safe::get_frame_content_size(bytes) {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(bad(
                    "the zstd frame does not declare its size (compress the file, not a pipe: `zstd FILE`)"
                        .into(),
                ));
            }
            Err(_) => return Err(bad("bad zstd frame header".into())),
        };
        if declared > limit {
            return Err(bad(format!(
                "declares {declared} bytes, more than the limit of {limit}"
            )));
        }
        let ratio_cap = (bytes.len() as u64).saturating_mul(MAX_RATIO);
        if declared > ratio_cap.max(super::HEADER_LEN as u64) {
            return Err(bad(format!(
                "declares {declared} bytes from {} compressed, more than {MAX_RATIO} times as many: refused as a decompression bomb",
                bytes.len()
            )));
        }
        let mut decoder = zstd::stream::Decoder::new(bytes).map_err(|e| bad(e.to_string()))?;
        let header_len = (super::HEADER_LEN as u64).min(declared) as usize;
        let mut out = vec![0u8; header_len];
        decoder
            .read_exact(&mut out)
            .map_err(|e| bad(format!("header: {e}")))?;
        if out.len() == super::HEADER_LEN && out[..8] == super::MAGIC {
            let count = super::le_u64(&out, 16);
            let implied = super::implied_len(count, super::le_u64(&out, 24));
            if implied != u128::from(declared) {
                return Err(bad(format!(
                    "declares {declared} bytes, but its header implies {implied} ({count} entries)"
                )));
            }
        }
        // The declared size is bounded above: the buffer is allocated once.
        out.reserve_exact(declared as usize - header_len);
        decoder
            .take(declared - header_len as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| bad(e.to_string()))?;
        if out.len() as u64 > declared {
            return Err(bad(format!(
                "decompresses to more than the {declared} bytes it declares"
            )));
        }
        if (out.len() as u64) < declared {
            return Err(bad(format!(
                "decompresses to {} bytes, not the {declared} it declares",
                out.len()
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u32) -> ContentId {
        ContentId::of(&n.to_le_bytes())
    }

    fn sample() -> Vec<u8> {
        let mut b = CatalogBuilder::new();
        for (i, w) in [3.0, 1.0, 3.0, 0.0, 7.5].into_iter().enumerate() {
            b.push(
                id(i as u32),
                1000 + i as u64,
                w,
                &format!("titles/t{i}/video.mp4"),
            )
            .unwrap();
        }
        b.finish().unwrap()
    }

    fn err(bytes: &[u8]) -> String {
        Catalog::parse(bytes).unwrap_err().to_string()
    }

    /// Byte offset of a section in a catalog of `n` entries.
    fn at(n: usize, section: &str) -> usize {
        HEADER_LEN
            + n * match section {
                "ids" => 0,
                "meta" => 32,
                "ends" => 48,
                "rank" => 56,
                "names" => 76,
                _ => unreachable!(),
            }
    }

    #[test]
    fn round_trip_sorted_and_ranked() {
        let bytes = sample();
        let cat = Catalog::parse(&bytes).unwrap();
        assert_eq!(cat.len(), 5);
        assert_eq!(cat.total_size(), 5010);
        for i in 1..cat.len() {
            assert!(cat.id(i - 1) < cat.id(i));
        }
        let ranked: Vec<f64> = cat.by_rank().map(|i| cat.weight(i)).collect();
        assert_eq!(ranked, vec![7.5, 3.0, 3.0, 1.0, 0.0]);
        // Ties by id ascending.
        let tied: Vec<ContentId> = cat
            .by_rank()
            .filter(|&i| cat.weight(i) == 3.0)
            .map(|i| cat.id(i))
            .collect();
        assert!(tied[0] < tied[1]);
        for i in 0..5u32 {
            let at = cat.find(&id(i)).unwrap();
            assert_eq!(cat.name(at), format!("titles/t{i}/video.mp4"));
            assert_eq!(cat.size(at), 1000 + u64::from(i));
        }
        assert_eq!(cat.find(&id(99)), None);
        let empty = CatalogBuilder::new().finish().unwrap();
        assert_eq!(empty.len(), HEADER_LEN);
        assert!(Catalog::parse(&empty).unwrap().is_empty());
    }

    #[test]
    fn hostile_headers() {
        let good = sample();
        assert_eq!(err(&[]), "catalog is empty (0 bytes): not a catalog");
        assert_eq!(
            err(&good[..20]),
            "catalog truncated: 20 bytes, header implies 64"
        );
        assert_eq!(
            err(b"GIF89a\0\0 and more"),
            "not a catalog: bad magic bytes (expected \"FILLCAT\\0\")"
        );
        let mut magic = good.clone();
        magic[0] = b'X';
        assert_eq!(
            err(&magic),
            "not a catalog: bad magic bytes (expected \"FILLCAT\\0\")"
        );
        let mut version = good.clone();
        version[8] = 2;
        assert_eq!(
            err(&version),
            "unsupported catalog version 2 (this build reads version 1)"
        );
        let mut flags = good.clone();
        flags[12] = 1;
        assert_eq!(
            err(&flags),
            "catalog header: reserved bytes at offset 12 are not zero"
        );
        let mut reserved = good.clone();
        reserved[40] = 1;
        assert_eq!(
            err(&reserved),
            "catalog header: reserved bytes at offset 40 are not zero"
        );
        let len = good.len();
        assert_eq!(
            err(&good[..len - 1]),
            format!("catalog truncated: {} bytes, header implies {len}", len - 1)
        );
        let mut long = good.clone();
        long.extend_from_slice(b"xx");
        assert_eq!(
            err(&long),
            format!("catalog has 2 trailing bytes after the {len} its header implies")
        );
        let mut huge = good.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            err(&huge),
            format!(
                "catalog has {} entries, more than the format allows (4294967295)",
                u64::MAX
            )
        );
        let mut big = good.clone();
        big[16..24].copy_from_slice(&(1u64 << 31).to_le_bytes());
        assert!(err(&big).starts_with("catalog truncated"));
        let mut names = good.clone();
        names[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&names).starts_with("catalog truncated"));
    }

    #[test]
    fn hostile_records() {
        let good = sample();
        let n = 5;
        // Duplicate: entry 1 gets entry 0's id.
        let mut dup = good.clone();
        let id0: [u8; 32] = dup[at(n, "ids")..at(n, "ids") + 32].try_into().unwrap();
        dup[at(n, "ids") + 32..at(n, "ids") + 64].copy_from_slice(&id0);
        assert_eq!(
            err(&dup),
            format!("entry 1: duplicate id {}", ContentId::from_bytes(id0))
        );
        // Unsorted: swap ids 2 and 3.
        let mut uns = good.clone();
        let (a, b) = (at(n, "ids") + 64, at(n, "ids") + 96);
        let id2: [u8; 32] = uns[a..a + 32].try_into().unwrap();
        let id3: [u8; 32] = uns[b..b + 32].try_into().unwrap();
        uns[a..a + 32].copy_from_slice(&id3);
        uns[b..b + 32].copy_from_slice(&id2);
        assert_eq!(
            err(&uns),
            format!(
                "entry 3: ids not sorted ({} comes after a larger id)",
                ContentId::from_bytes(id2)
            )
        );
        // Sizes that overflow u64 when summed.
        let mut ovf = good.clone();
        for i in [1, 3] {
            let m = at(n, "meta") + 16 * i;
            ovf[m..m + 8].copy_from_slice(&(u64::MAX / 2 + 1).to_le_bytes());
        }
        assert_eq!(
            err(&ovf),
            "entry 3: sizes overflow: the total passes 2^64-1 bytes"
        );
        // NaN and negative weights.
        for (w, shown) in [
            (f64::NAN, "NaN"),
            (-1.0, "-1"),
            (f64::INFINITY, "inf"),
            (-0.0, "-0"),
        ] {
            let mut bad = good.clone();
            let m = at(n, "meta") + 16 * 2 + 8;
            bad[m..m + 8].copy_from_slice(&w.to_bits().to_le_bytes());
            assert_eq!(
                err(&bad),
                format!("entry 2: weight {shown} is not a finite number >= 0")
            );
        }
        // Names: replace bytes of entry 0's name ("titles/t0/video.mp4", 19 bytes).
        let name_err = |patch: &[u8]| {
            let mut bad = good.clone();
            let s = at(n, "names");
            bad[s..s + patch.len()].copy_from_slice(patch);
            err(&bad)
        };
        // Entry 0 is not necessarily name "t0": names follow id order. Patch whatever is first.
        assert_eq!(
            name_err(b"a\0"),
            "entry 0: bad name: name contains a NUL byte"
        );
        assert_eq!(
            name_err(b"../"),
            "entry 0: bad name: name contains a '..' component"
        );
        assert_eq!(
            name_err(b"x/../"),
            "entry 0: bad name: name contains a '..' component"
        );
        assert_eq!(
            name_err(b"/etc"),
            "entry 0: bad name: name is an absolute path"
        );
        assert_eq!(
            name_err(b"\n"),
            "entry 0: bad name: name contains control character 0x0a"
        );
        assert_eq!(
            name_err(&[0xff, 0xfe]),
            "entry 0: bad name: name is not valid UTF-8"
        );
        // Name offsets: entry 1 ends before entry 0 does.
        let mut ends = good.clone();
        let e = at(n, "ends") + 8;
        ends[e..e + 8].copy_from_slice(&3u64.to_le_bytes());
        assert_eq!(
            err(&ends),
            "entry 1: name end offset 3 is out of order or past the names section (95 bytes)"
        );
        let mut past = good.clone();
        let e = at(n, "ends") + 8 * 4;
        past[e..e + 8].copy_from_slice(&96u64.to_le_bytes());
        assert_eq!(
            err(&past),
            "entry 4: name end offset 96 is out of order or past the names section (95 bytes)"
        );
        let mut short = good.clone();
        short[e..e + 8].copy_from_slice(&94u64.to_le_bytes());
        assert_eq!(
            err(&short),
            "entry 4: name end offset 94 is out of order or past the names section (95 bytes)"
        );
        // Empty names: entry 1 ends where entry 0 ends.
        let mut empty = good.clone();
        let end0 = empty[at(n, "ends")..at(n, "ends") + 8].to_vec();
        empty[at(n, "ends") + 8..at(n, "ends") + 16].copy_from_slice(&end0);
        assert_eq!(err(&empty), "entry 1: bad name: name is empty");
    }

    #[test]
    fn hostile_rank() {
        let good = sample();
        let n = 5;
        let entry = |pos: usize| at(n, "rank") + RANK_ENTRY * pos;
        let swap = |bytes: &mut Vec<u8>, a: usize, b: usize| {
            let (ea, eb) = (
                bytes[entry(a)..entry(a) + 20].to_vec(),
                bytes[entry(b)..entry(b) + 20].to_vec(),
            );
            bytes[entry(a)..entry(a) + 20].copy_from_slice(&eb);
            bytes[entry(b)..entry(b) + 20].copy_from_slice(&ea);
        };
        let mut swapped = good.clone();
        swap(&mut swapped, 0, 1);
        assert!(
            err(&swapped).starts_with("rank position 1: record ")
                && err(&swapped).ends_with(
                    "is not less popular (rank must be weight descending, then id ascending)"
                ),
            "{}",
            err(&swapped)
        );
        let mut out = good.clone();
        out[entry(2)..entry(2) + 4].copy_from_slice(&77u32.to_le_bytes());
        assert_eq!(
            err(&out),
            "rank position 2: record index 77 is out of range (5 entries)"
        );
        let mut twice = good.clone();
        let first = twice[entry(0)..entry(0) + 20].to_vec();
        twice[entry(4)..entry(4) + 20].copy_from_slice(&first);
        let twice_id = u32::from_le_bytes(first[..4].try_into().unwrap());
        assert_eq!(
            err(&twice),
            format!("rank position 4: record index {twice_id} appears twice")
        );
        let mut copy = good.clone();
        copy[entry(3) + 4] ^= 1;
        let r3 = u32::from_le_bytes(good[entry(3)..entry(3) + 4].try_into().unwrap());
        assert_eq!(
            err(&copy),
            format!("rank position 3: size or weight differs from record {r3}'s")
        );
        // The rank walk with sizes and weights agrees with the records.
        let cat = Catalog::parse(&good).unwrap();
        for (r, size, w) in cat.by_rank_with_meta() {
            assert_eq!((size, w), (cat.size(r), cat.weight(r)));
        }
    }

    #[test]
    fn builder_rejects_bad_entries() {
        let mut b = CatalogBuilder::new();
        b.push(id(1), 1, 1.0, "a").unwrap();
        assert_eq!(
            b.push(id(2), 1, f64::NAN, "b").unwrap_err().to_string(),
            "entry 1: weight NaN is not a finite number >= 0"
        );
        assert_eq!(
            b.push(id(2), 1, 1.0, "a/../b").unwrap_err().to_string(),
            "entry 1: bad name: name contains a '..' component"
        );
        assert_eq!(
            b.push(id(2), 1, 1.0, &"x".repeat(5000))
                .unwrap_err()
                .to_string(),
            "entry 1: bad name: name is 5000 bytes, longer than 4096"
        );
        b.push(id(1), 2, 1.0, "again").unwrap();
        assert_eq!(
            b.finish().unwrap_err().to_string(),
            format!("entry 1: duplicate id {}", id(1))
        );
        let mut o = CatalogBuilder::new();
        o.push(id(1), u64::MAX, 1.0, "a").unwrap();
        o.push(id(2), 1, 1.0, "b").unwrap();
        assert!(
            o.finish()
                .unwrap_err()
                .to_string()
                .ends_with("sizes overflow: the total passes 2^64-1 bytes")
        );
    }

    #[test]
    fn wire_round_trip_and_limit() {
        let good = sample();
        let z = wire::compress(&good, 3);
        assert!(wire::is_zstd(&z));
        assert_eq!(wire::decompress(&z, 1 << 20).unwrap(), good);
        assert_eq!(
            wire::decompress(&z, 10).unwrap_err().to_string(),
            format!(
                "compressed catalog: declares {} bytes, more than the limit of 10",
                good.len()
            )
        );
        assert!(wire::decompress(&z[..z.len() / 2], 1 << 20).is_err());
        assert!(wire::decompress(b"not zstd", 1 << 20).is_err());
        let mut two = z.clone();
        two.extend_from_slice(&z);
        let e = wire::decompress(&two, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("after the zstd frame"), "{e}");
    }

    /// A few KB that expand to 1 GiB (what a hostile peer or file could send) are refused
    /// before decompressing, whether the frame declares its size, lies about it, or
    /// declares none.
    #[test]
    fn a_decompression_bomb_is_refused_unexpanded() {
        let zeros = vec![0u8; 64 << 20];
        let mut bomb = wire::compress(&zeros, 19);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let e = wire::decompress(&bomb, 16 << 30).unwrap_err().to_string();
        assert!(e.contains("decompression bomb"), "{e}");

        // Declaring nothing: refused at once.
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut enc, &sample()).unwrap();
        let undeclared = enc.finish().unwrap();
        let e = wire::decompress(&undeclared, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not declare its size"), "{e}");

        // A header whose entry count disagrees with the declared size.
        let mut big = sample();
        big[16..24].copy_from_slice(&1_000_000u64.to_le_bytes());
        let e = wire::decompress(&wire::compress(&big, 3), 1 << 30)
            .unwrap_err()
            .to_string();
        assert!(e.contains("its header implies"), "{e}");

        // A frame that declares less than it holds stops at the declared size.
        bomb = wire::compress(&sample(), 3);
        assert!(wire::decompress(&bomb, 1 << 20).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Catalog::parse(&bytes);
        }

        #[test]
        fn mutated_catalogs_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut bytes = sample();
            for (at, v) in edits {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            if let Ok(view) = CatalogView::open(&bytes) {
                // The fast pass never accepts what the exact pass rejects.
                if view.records_ok(0, view.len()).is_some() {
                    prop_assert!(view.first_record_error(0, view.len()).is_ok());
                }
            }
            if let Ok(cat) = Catalog::parse(&bytes) {
                // Whatever validates is fully usable.
                for i in cat.by_rank() {
                    let _ = (cat.name(i), cat.size(i), cat.find(&cat.id(i)));
                }
            }
        }

        #[test]
        fn builder_output_always_validates(entries in proptest::collection::vec((any::<u32>(), 0u64..1 << 40, 0u32..5, "[a-z]{1,8}"), 0..40)) {
            let mut b = CatalogBuilder::new();
            let mut seen = std::collections::BTreeSet::new();
            for (k, size, w, name) in &entries {
                if seen.insert(*k) {
                    b.push(id(*k), *size, f64::from(*w), name).unwrap();
                }
            }
            let bytes = b.finish().unwrap();
            let cat = Catalog::parse(&bytes).unwrap();
            prop_assert_eq!(cat.len(), seen.len());
        }
    }
}
