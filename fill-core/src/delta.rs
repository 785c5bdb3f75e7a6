//! The delta: what an appliance must fetch, evict and keep to hold its target.
//!
//! Inputs: the target [`Catalog`], the appliance's [`Inventory`] (complete files from the
//! store's catalog, plus partially filled files with their verified blocks) and its capacity.
//!
//! Placement rule: walk the target from the highest weight to the lowest (ties by id
//! ascending: the catalog's rank order) and keep every file that still fits in the capacity,
//! skipping those that don't. Then:
//! - `fetch`: ranges of placed files not held, in rank order; a partial file only its missing
//!   block runs;
//! - `keep`: placed files held complete;
//! - `evict`: held files not placed: files absent from the target first (in id order), then
//!   target files that no longer fit (least popular first). Each eviction is scheduled before the
//!   first fetch that needs its space, so usage (held bytes, partial files at full size, plus
//!   files started) never passes the capacity.
//!
//! Both inputs are sorted by id, so matching them is one linear merge: no hash table.

use std::cmp::Ordering;

use crate::catalog::Catalog;
use rayon::prelude::*;

use crate::id::{ContentId, cmp_id_bytes};
use crate::outboard::BlockSize;

/// A partially filled file: its size and which blocks are verified on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialFile {
    /// The content id.
    pub id: ContentId,
    /// Full size in bytes (the file is preallocated at this size).
    pub size: u64,
    /// Block size of the verification bitmap.
    pub block: BlockSize,
    /// One bit per block, set when the block is verified and durable.
    pub verified: Vec<u64>,
}

impl PartialFile {
    /// A partial file with no verified block.
    pub fn empty(id: ContentId, size: u64, block: BlockSize) -> Self {
        let words = block.count(size).div_ceil(64) as usize;
        Self {
            id,
            size,
            block,
            verified: vec![0; words],
        }
    }

    /// Number of blocks.
    pub fn block_count(&self) -> u64 {
        self.block.count(self.size)
    }

    /// Whether block `i` is verified.
    pub fn is_verified(&self, i: u64) -> bool {
        self.verified
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Marks block `i` verified (or not).
    pub fn set_verified(&mut self, i: u64, yes: bool) {
        if let Some(w) = self.verified.get_mut((i / 64) as usize) {
            if yes {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// Number of verified blocks.
    pub fn verified_count(&self) -> u64 {
        (0..self.block_count())
            .filter(|&i| self.is_verified(i))
            .count() as u64
    }

    /// Runs of blocks not yet verified, as `(offset, length)` byte ranges in file order.
    pub fn missing_ranges(&self) -> Vec<(u64, u64)> {
        self.runs(false)
    }

    /// Runs of verified blocks, as `(offset, length)` byte ranges in file order.
    pub fn verified_ranges(&self) -> Vec<(u64, u64)> {
        self.runs(true)
    }

    /// Byte ranges of the runs of blocks whose verified bit is `verified`.
    fn runs(&self, verified: bool) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for i in (0..self.block_count()).filter(|&i| self.is_verified(i) == verified) {
            let (off, len) = self.block.range(self.size, i);
            match out.last_mut() {
                Some((o, l)) if *o + *l == off => *l += len,
                _ => out.push((off, len)),
            }
        }
        out
    }
}

/// What an appliance holds.
#[derive(Debug, Clone, Copy)]
pub struct Inventory<'a> {
    /// Complete, verified files (the store's catalog).
    pub complete: Catalog<'a>,
    /// Partially filled files, sorted by id, none of them also complete.
    pub partial: &'a [PartialFile],
}

/// One range to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FetchRange {
    /// Index of the file in the target catalog.
    pub entry: u32,
    /// Byte offset in the file.
    pub offset: u64,
    /// Bytes to fetch (0 only for an empty file, which is created).
    pub length: u64,
}

/// Why a file is evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictReason {
    /// The file is not in the target catalog.
    NotInTarget,
    /// The file is in the target but does not fit in the capacity.
    DoesNotFit,
}

/// Which held file an eviction names. Indices keep an eviction small (a delta may evict
/// millions of files); [`Eviction::id`] resolves the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictFile {
    /// Entry of `Inventory::complete`.
    Complete(u32),
    /// Entry of `Inventory::partial`.
    Partial(u32),
    /// Entry of the target (a held file that no longer fits).
    Target(u32),
}

/// One file to evict, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eviction {
    /// The file.
    pub file: EvictFile,
    /// Bytes it frees.
    pub size: u64,
    /// Evict before starting fetch range number `before_fetch` (`fetch.len()`: after all).
    pub before_fetch: u64,
    /// Why.
    pub reason: EvictReason,
}

impl Eviction {
    /// The evicted file's id.
    pub fn id(&self, target: &Catalog<'_>, inv: &Inventory<'_>) -> ContentId {
        match self.file {
            EvictFile::Complete(j) => inv.complete.id(j as usize),
            EvictFile::Partial(k) => inv.partial[k as usize].id,
            EvictFile::Target(t) => target.id(t as usize),
        }
    }
}

/// The delta between an inventory and its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// Ranges to fetch, most popular file first.
    pub fetch: Vec<FetchRange>,
    /// Files to evict, in the order to evict them.
    pub evict: Vec<Eviction>,
    /// Target indices of placed files held complete, most popular first.
    pub keep: Vec<u32>,
    /// Target indices of placed files held partially (their missing ranges are in `fetch`).
    pub resume: Vec<u32>,
    /// Files placed by the placement rule.
    pub placed_files: u64,
    /// Bytes placed by the placement rule.
    pub placed_bytes: u64,
    /// Sum of fetch lengths.
    pub bytes_to_fetch: u64,
    /// Sum of evicted sizes.
    pub bytes_to_evict: u64,
    /// Bytes held before (complete files plus partial files at full size).
    pub bytes_held_before: u64,
    /// Highest usage reached while applying the delta in order (never above the capacity
    /// unless the inventory starts above it, in which case evictions come first).
    pub peak_usage: u64,
    /// The held share of the target's demand before the fill ([`crate::lifecycle::Demand`]:
    /// weights, or bytes for a catalog without weights; partial files count as not held).
    pub offload_before: f64,
    /// The same after the fill.
    pub offload_after: f64,
}

/// Why a delta could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// The same id has different sizes in the target and the inventory.
    #[error("size mismatch for {id}: target says {target} bytes, inventory holds {held}")]
    SizeMismatch {
        /// The file.
        id: ContentId,
        /// Size in the target.
        target: u64,
        /// Size in the inventory.
        held: u64,
    },
    /// The inventory lists a file as both complete and partial, or partial files unsorted.
    #[error("inventory is inconsistent at {id}: {reason}")]
    Inventory {
        /// The file.
        id: ContentId,
        /// What is wrong.
        reason: &'static str,
    },
}

/// What the inventory holds of each target entry: two bitmaps over target indices (1.25 MB
/// for 10M entries, so the rank walk's lookups stay in cache) and the few partial files.
struct Held {
    complete: Vec<u64>,
    partial: Vec<u64>,
    /// `(target index, index in inventory.partial)`, sorted by target index.
    partial_at: Vec<(u32, u32)>,
}

impl Held {
    fn new(n: usize) -> Self {
        Self {
            complete: vec![0; n.div_ceil(64)],
            partial: vec![0; n.div_ceil(64)],
            partial_at: Vec::new(),
        }
    }
    fn bit(bits: &[u64], i: usize) -> bool {
        bits[i / 64] & (1 << (i % 64)) != 0
    }
    fn is_complete(&self, i: usize) -> bool {
        Self::bit(&self.complete, i)
    }
    fn is_held(&self, i: usize) -> bool {
        Self::bit(&self.complete, i) || Self::bit(&self.partial, i)
    }
    fn partial_index(&self, i: usize) -> Option<usize> {
        if !Self::bit(&self.partial, i) {
            return None;
        }
        let at = self
            .partial_at
            .binary_search_by_key(&(i as u32), |p| p.0)
            .ok()?;
        Some(self.partial_at[at].1 as usize)
    }
}

/// Target entries per parallel merge task (a multiple of 64: each task owns whole words of
/// the bitmap). Small in tests, so the property tests cross task boundaries.
const MERGE_CHUNK: usize = if cfg!(test) { 64 } else { 1 << 16 };

/// The bitmap of target entries held complete, and the inventory indices absent from the
/// target.
type Merged = (Vec<u64>, Vec<u32>);

/// Merges the target with the complete files: the bitmap of target entries held complete,
/// and the inventory indices of files absent from the target, in id order. Both lists are
/// sorted by id, so each task takes a target range and the inventory range between the same
/// ids (found by binary search), and the tasks run in parallel.
fn merge_complete(target: &Catalog<'_>, c: &Catalog<'_>) -> Result<Merged, DeltaError> {
    let n = target.len();
    if n == 0 {
        return Ok((Vec::new(), (0..c.len() as u32).collect()));
    }
    let lower_bound = |id: &[u8; 32]| {
        let (mut lo, mut hi) = (0, c.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if cmp_id_bytes(c.id_bytes(mid), id) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    };
    let parts: Vec<Result<Merged, DeltaError>> = (0..n)
        .step_by(MERGE_CHUNK)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|lo| {
            let hi = (lo + MERGE_CHUNK).min(n);
            let jlo = if lo == 0 {
                0
            } else {
                lower_bound(target.id_bytes(lo))
            };
            let jhi = if hi == n {
                c.len()
            } else {
                lower_bound(target.id_bytes(hi))
            };
            let mut bits = vec![0u64; (hi - lo).div_ceil(64)];
            let mut absent = Vec::new();
            let (mut i, mut j) = (lo, jlo);
            while j < jhi {
                let ord = if i < hi {
                    cmp_id_bytes(target.id_bytes(i), c.id_bytes(j))
                } else {
                    Ordering::Greater
                };
                match ord {
                    Ordering::Less => i += 1,
                    Ordering::Greater => {
                        absent.push(j as u32);
                        j += 1;
                    }
                    Ordering::Equal => {
                        if target.size(i) != c.size(j) {
                            return Err(DeltaError::SizeMismatch {
                                id: c.id(j),
                                target: target.size(i),
                                held: c.size(j),
                            });
                        }
                        bits[(i - lo) / 64] |= 1 << ((i - lo) % 64);
                        i += 1;
                        j += 1;
                    }
                }
            }
            Ok((bits, absent))
        })
        .collect();
    let mut bits = Vec::with_capacity(n.div_ceil(64));
    let mut absent = Vec::new();
    for part in parts {
        let (b, a) = part?;
        bits.extend_from_slice(&b);
        absent.extend_from_slice(&a);
    }
    Ok((bits, absent))
}

/// Computes the delta. Deterministic: the same inputs give the same delta.
pub fn compute(
    target: &Catalog<'_>,
    inv: &Inventory<'_>,
    capacity: u64,
) -> Result<Delta, DeltaError> {
    let n = target.len();
    for w in inv.partial.windows(2) {
        if w[0].id >= w[1].id {
            return Err(DeltaError::Inventory {
                id: w[1].id,
                reason: "partial files are not sorted by id or repeat",
            });
        }
    }
    let c = &inv.complete;
    let (complete_bits, absent) = merge_complete(target, c)?;
    let mut held = Held::new(n);
    held.complete = complete_bits;
    // Evictions of files absent from the target come first, in id order.
    let mut evict: Vec<Eviction> = Vec::with_capacity(absent.len() + inv.partial.len());
    evict.extend(absent.iter().map(|&j| Eviction {
        file: EvictFile::Complete(j),
        size: c.size(j as usize),
        before_fetch: 0,
        reason: EvictReason::NotInTarget,
    }));
    drop(absent);
    // Partial files: few, so binary search each.
    let mut partial_out = false;
    for (k, p) in inv.partial.iter().enumerate() {
        if c.find(&p.id).is_some() {
            return Err(DeltaError::Inventory {
                id: p.id,
                reason: "listed both as complete and as partial",
            });
        }
        match target.find(&p.id) {
            Some(t) => {
                if target.size(t) != p.size {
                    return Err(DeltaError::SizeMismatch {
                        id: p.id,
                        target: target.size(t),
                        held: p.size,
                    });
                }
                held.partial[t / 64] |= 1 << (t % 64);
                held.partial_at.push((t as u32, k as u32));
            }
            None => {
                evict.push(Eviction {
                    file: EvictFile::Partial(k as u32),
                    size: p.size,
                    before_fetch: 0,
                    reason: EvictReason::NotInTarget,
                });
                partial_out = true;
            }
        }
    }
    if partial_out {
        evict.sort_by_cached_key(|e| e.id(target, inv));
    }
    held.partial_at.sort_unstable();

    // Walk the target by rank: place, and sort what is held into keep / resume / evict.
    let mut d = Delta {
        fetch: Vec::with_capacity(n.saturating_sub(c.len()) + inv.partial.len()),
        evict: Vec::new(),
        keep: Vec::with_capacity(n.min(c.len())),
        resume: Vec::new(),
        placed_files: 0,
        placed_bytes: 0,
        bytes_to_fetch: 0,
        bytes_to_evict: 0,
        bytes_held_before: c.total_size() + inv.partial.iter().map(|p| p.size).sum::<u64>(),
        peak_usage: 0,
        offload_before: 0.0,
        offload_after: 0.0,
    };
    let mut does_not_fit: Vec<(u32, u64)> = Vec::new();
    let demand = crate::lifecycle::Demand::of(target);
    // Summed here, in the same order as the held shares, so a target held whole is 1.0
    // exactly.
    let (mut total_w, mut before_w, mut after_w) = (0.0f64, 0.0f64, 0.0f64);
    for (idx, size, w) in target.by_rank_with_meta() {
        let w = demand.weight(size, w);
        total_w += w;
        let entry = idx as u32;
        let complete = held.is_complete(idx);
        if complete {
            before_w += w;
        }
        // Sizes are validated to sum within u64, so this cannot overflow.
        if d.placed_bytes + size > capacity {
            if held.is_held(idx) {
                does_not_fit.push((entry, size));
            }
            continue;
        }
        d.placed_bytes += size;
        d.placed_files += 1;
        after_w += w;
        if complete {
            d.keep.push(entry);
        } else if let Some(k) = held.partial_index(idx) {
            d.resume.push(entry);
            for (offset, length) in inv.partial[k].missing_ranges() {
                d.fetch.push(FetchRange {
                    entry,
                    offset,
                    length,
                });
                d.bytes_to_fetch += length;
            }
        } else {
            d.fetch.push(FetchRange {
                entry,
                offset: 0,
                length: size,
            });
            d.bytes_to_fetch += size;
        }
    }
    d.offload_before = crate::lifecycle::offload_share(before_w, total_w);
    d.offload_after = crate::lifecycle::offload_share(after_w, total_w);

    // Then the files that no longer fit, least popular first.
    evict.extend(does_not_fit.iter().rev().map(|&(e, size)| Eviction {
        file: EvictFile::Target(e),
        size,
        before_fetch: 0,
        reason: EvictReason::DoesNotFit,
    }));
    d.bytes_to_evict = evict.iter().map(|e| e.size).sum();
    d.evict = evict;
    schedule_evictions(&mut d, &held, capacity);
    Ok(d)
}

/// Gives each eviction the fetch it must precede, evicting as late as possible: a file is
/// evicted only when the next new file would not fit otherwise. Placed bytes never pass the
/// capacity and every held file that is not placed is in the list, so evicting down always
/// makes room.
fn schedule_evictions(d: &mut Delta, held: &Held, capacity: u64) {
    let mut usage = d.bytes_held_before;
    let mut next = 0;
    let evict = &mut d.evict;
    let mut evict_down_to = |usage: &mut u64, limit: u64, at: u64| {
        while *usage > limit && next < evict.len() {
            evict[next].before_fetch = at;
            *usage -= evict[next].size;
            next += 1;
        }
    };
    // The inventory may start above the capacity (a smaller disk, a changed target).
    evict_down_to(&mut usage, capacity, 0);
    let mut peak = usage;
    for (k, f) in d.fetch.iter().enumerate() {
        if !held.is_held(f.entry as usize) {
            // A new file is allocated at its full size when its first range starts.
            evict_down_to(&mut usage, capacity.saturating_sub(f.length), k as u64);
            usage += f.length;
            peak = peak.max(usage);
        }
    }
    let end = d.fetch.len() as u64;
    for e in &mut evict[next..] {
        e.before_fetch = end;
    }
    d.peak_usage = peak;
}

/// An older version of a file the delta fetches whole: a complete held file it evicts as not
/// in the target, held under the new file's name. The fill copies the blocks the two share
/// (same offset, same block hash: see [`crate::outboard::Outboard::shared_blocks`]) instead of
/// fetching them, and evicts the older version once its new file is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OlderVersion {
    /// The new file: an entry of the target.
    pub entry: u32,
    /// The held file: an index into `Delta::evict`.
    pub eviction: usize,
}

/// The older versions `delta` lets a fill copy from (see [`OlderVersion`]). Only files the
/// delta never evicts to make room (evicted after the last fetch): the fill evicts retired
/// files from the start, and holding one back until its new file opens must not take room
/// another file was given. One per new file; a name held twice matches its first entry.
pub fn older_versions(
    target: &Catalog<'_>,
    inv: &Inventory<'_>,
    delta: &Delta,
) -> Vec<OlderVersion> {
    let resumed: std::collections::HashSet<u32> = delta.resume.iter().copied().collect();
    let mut new_by_name: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    for f in delta.fetch.iter().filter(|f| !resumed.contains(&f.entry)) {
        if target.size(f.entry as usize) > 0 {
            new_by_name
                .entry(target.name(f.entry as usize))
                .or_insert(f.entry);
        }
    }
    let end = delta.fetch.len() as u64;
    let mut out = Vec::new();
    for (k, e) in delta.evict.iter().enumerate() {
        if let (EvictReason::NotInTarget, EvictFile::Complete(i)) = (e.reason, e.file)
            && e.before_fetch == end
            && let Some(entry) = new_by_name.remove(inv.complete.name(i as usize))
        {
            out.push(OlderVersion { entry, eviction: k });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::catalog::CatalogBuilder;

    fn id(n: u16) -> ContentId {
        ContentId::of(&n.to_le_bytes())
    }

    fn build(entries: &[(u16, u64, f64)]) -> Vec<u8> {
        let mut b = CatalogBuilder::new();
        for &(k, size, w) in entries {
            b.push(id(k), size, w, &format!("f{k}")).unwrap();
        }
        b.finish().unwrap()
    }

    /// The placement rule, written the obvious way.
    fn naive_placement(target: &[(u16, u64, f64)], capacity: u64) -> BTreeSet<ContentId> {
        let mut order: Vec<_> = target.to_vec();
        order.sort_by(|a, b| b.2.total_cmp(&a.2).then(id(a.0).cmp(&id(b.0))));
        let mut used = 0;
        let mut placed = BTreeSet::new();
        for (k, size, _) in order {
            if used + size <= capacity {
                used += size;
                placed.insert(id(k));
            }
        }
        placed
    }

    #[derive(Debug, Clone)]
    struct Case {
        target: Vec<(u16, u64, f64)>,
        complete: Vec<(u16, u64, f64)>,
        partial: Vec<PartialFile>,
        capacity: u64,
    }

    const BLOCK: BlockSize = BlockSize::MIN;

    fn size_of(k: u16) -> u64 {
        // Sizes a function of the id, so target and inventory agree.
        u64::from(k % 13) * 700 + u64::from(k % 3)
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            proptest::collection::btree_map(0u16..1000, (0u8..4, 0u8..3), 0..300),
            0u64..200_000,
        )
            .prop_map(|(files, capacity)| {
                let mut c = Case {
                    target: vec![],
                    complete: vec![],
                    partial: vec![],
                    capacity,
                };
                for (k, (w, role)) in files {
                    let size = size_of(k);
                    let in_target = k < 750;
                    if in_target {
                        c.target.push((k, size, f64::from(w)));
                    }
                    match role {
                        1 => c.complete.push((k, size, 1.0)),
                        2 => {
                            let mut p = PartialFile::empty(id(k), size, BLOCK);
                            for b in 0..p.block_count() {
                                p.set_verified(b, (k as u64 + b).is_multiple_of(3));
                            }
                            c.partial.push(p);
                        }
                        _ => {}
                    }
                }
                c.partial.sort_by_key(|p| p.id);
                c
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn delta_laws(c in case()) {
            let tb = build(&c.target);
            let ib = build(&c.complete);
            let target = Catalog::parse(&tb).unwrap();
            let inv = Inventory { complete: Catalog::parse(&ib).unwrap(), partial: &c.partial };
            let d = compute(&target, &inv, c.capacity).unwrap();
            // Same input, same output.
            prop_assert_eq!(&d, &compute(&target, &inv, c.capacity).unwrap());

            // Apply it step by step: usage never passes the capacity once the evictions
            // scheduled up front are done.
            let mut held: BTreeSet<ContentId> = c.complete.iter().map(|e| id(e.0)).collect();
            held.extend(c.partial.iter().map(|p| p.id));
            let sizes: std::collections::HashMap<ContentId, u64> =
                (0..1000u16).map(|k| (id(k), size_of(k))).collect();
            let size = |x: &ContentId| -> u64 { sizes[x] };
            let mut usage: u64 = held.iter().map(size).sum();
            prop_assert_eq!(usage, d.bytes_held_before);
            let mut ev = d.evict.iter().peekable();
            let mut got: std::collections::BTreeMap<ContentId, Vec<(u64, u64)>> = Default::default();
            for k in 0..=d.fetch.len() as u64 {
                while let Some(e) = ev.next_if(|e| e.before_fetch == k) {
                    prop_assert!(held.remove(&e.id(&target, &inv)), "evicts what it does not hold");
                    usage -= e.size;
                }
                prop_assert!(usage <= c.capacity, "usage {} over capacity {} before fetch {}", usage, c.capacity, k);
                let Some(f) = d.fetch.get(k as usize) else { break };
                let fid = target.id(f.entry as usize);
                if held.insert(fid) {
                    usage += target.size(f.entry as usize);
                }
                prop_assert!(usage <= c.capacity, "usage {} over capacity {}", usage, c.capacity);
                got.entry(fid).or_default().push((f.offset, f.length));
            }
            prop_assert!(ev.next().is_none(), "evictions out of order");
            prop_assert!(d.peak_usage <= c.capacity);

            // What is held at the end is exactly the placement rule's set.
            prop_assert_eq!(&held, &naive_placement(&c.target, c.capacity));

            // Each fetched file gets exactly what it misses, and nothing else is fetched.
            let mut fetched = 0;
            for (fid, ranges) in &got {
                let full = size(fid);
                let expected = match c.partial.iter().find(|p| p.id == *fid) {
                    Some(p) => p.missing_ranges(),
                    None => vec![(0, full)],
                };
                prop_assert_eq!(ranges, &expected);
                fetched += ranges.iter().map(|r| r.1).sum::<u64>();
            }
            prop_assert_eq!(fetched, d.bytes_to_fetch);

            // Fetch order is rank order.
            let rank: Vec<usize> = target.by_rank().collect();
            let pos = |e: u32| rank.iter().position(|&r| r == e as usize).unwrap();
            prop_assert!(d.fetch.windows(2).all(|w| pos(w[0].entry) <= pos(w[1].entry)));

            // Files absent from the target are evicted before those that no longer fit.
            let first_fit = d.evict.iter().position(|e| e.reason == EvictReason::DoesNotFit).unwrap_or(d.evict.len());
            prop_assert!(d.evict[first_fit..].iter().all(|e| e.reason == EvictReason::DoesNotFit));
            prop_assert!((0.0..=1.0).contains(&d.offload_before) && (0.0..=1.0).contains(&d.offload_after));
        }
    }

    #[test]
    fn worked_example() {
        // Target: a (w 5, 400 B), b (w 3, 300 B), c (w 1, 200 B), d (w 1, 100 B).
        let target = build(&[(1, 400, 5.0), (2, 300, 3.0), (3, 200, 1.0), (4, 100, 1.0)]);
        // Held: b complete, x (not in target, 500 B), d partial with the block 0 verified.
        let inv = build(&[(2, 300, 1.0), (9, 500, 1.0)]);
        let mut p = PartialFile::empty(id(4), 100, BLOCK);
        p.set_verified(0, true);
        let partial = [p];
        let target = Catalog::parse(&target).unwrap();
        let inv = Inventory {
            complete: Catalog::parse(&inv).unwrap(),
            partial: &partial,
        };
        // Capacity 800: a(400)+b(300) = 700; c (200) does not fit; d (100) does.
        let d = compute(&target, &inv, 800).unwrap();
        let name = |e: u32| target.name(e as usize).to_owned();
        assert_eq!(
            d.fetch
                .iter()
                .map(|f| (name(f.entry), f.offset, f.length))
                .collect::<Vec<_>>(),
            vec![("f1".into(), 0, 400)]
        );
        assert_eq!(
            d.keep.iter().map(|&e| name(e)).collect::<Vec<_>>(),
            vec!["f2"]
        );
        assert_eq!(
            d.resume.iter().map(|&e| name(e)).collect::<Vec<_>>(),
            vec!["f4"]
        );
        // Block 0 (1 KiB) covers all 100 bytes of d: nothing left to fetch for it.
        assert_eq!(d.evict.len(), 1);
        assert_eq!(
            (
                d.evict[0].id(&target, &inv),
                d.evict[0].before_fetch,
                d.evict[0].reason
            ),
            (id(9), 0, EvictReason::NotInTarget)
        );
        assert_eq!(d.bytes_held_before, 900);
        assert_eq!(d.peak_usage, 800);
        assert!((d.offload_before - 0.3).abs() < 1e-12);
        assert!((d.offload_after - 0.9).abs() < 1e-12);
    }

    #[test]
    fn older_versions_pair_retired_files_with_new_ones_by_name() {
        let target = build(&[(1, 400, 5.0), (2, 300, 4.0), (3, 100, 3.0)]);
        let target = Catalog::parse(&target).unwrap();
        // Held: f2 as it is, and other contents under the names f1 and f3 (older versions);
        // f9 is retired with no successor.
        let mut b = CatalogBuilder::new();
        b.push(id(2), 300, 1.0, "f2").unwrap();
        b.push(id(11), 390, 1.0, "f1").unwrap();
        b.push(id(13), 90, 1.0, "f3").unwrap();
        b.push(id(9), 50, 1.0, "f9").unwrap();
        let held = b.finish().unwrap();
        let inv = Inventory {
            complete: Catalog::parse(&held).unwrap(),
            partial: &[],
        };
        let d = compute(&target, &inv, 10_000).unwrap();
        let mut pairs: Vec<(String, ContentId)> = older_versions(&target, &inv, &d)
            .iter()
            .map(|o| {
                (
                    target.name(o.entry as usize).to_owned(),
                    d.evict[o.eviction].id(&target, &inv),
                )
            })
            .collect();
        pairs.sort();
        assert_eq!(pairs, vec![("f1".into(), id(11)), ("f3".into(), id(13))]);
        // Where the retired files must go to make room, none is held back.
        let tight = compute(&target, &inv, 800).unwrap();
        assert!(
            tight
                .evict
                .iter()
                .all(|e| e.before_fetch < tight.fetch.len() as u64)
        );
        assert!(older_versions(&target, &inv, &tight).is_empty());
    }

    #[test]
    fn inconsistent_inventory_is_an_error() {
        let target = build(&[(1, 400, 5.0)]);
        let target = Catalog::parse(&target).unwrap();
        let inv = build(&[(1, 401, 1.0)]);
        let inv = Inventory {
            complete: Catalog::parse(&inv).unwrap(),
            partial: &[],
        };
        assert_eq!(
            compute(&target, &inv, 1000).unwrap_err().to_string(),
            format!(
                "size mismatch for {}: target says 400 bytes, inventory holds 401",
                id(1)
            )
        );
        let both = build(&[(1, 400, 1.0)]);
        let partial = [PartialFile::empty(id(1), 400, BLOCK)];
        let inv = Inventory {
            complete: Catalog::parse(&both).unwrap(),
            partial: &partial,
        };
        assert_eq!(
            compute(&target, &inv, 1000).unwrap_err().to_string(),
            format!(
                "inventory is inconsistent at {}: listed both as complete and as partial",
                id(1)
            )
        );
    }
}
