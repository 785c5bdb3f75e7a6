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
use crate::id::ContentId;
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
        (0..self.block_count()).filter(|&i| self.is_verified(i)).count() as u64
    }

    /// Runs of blocks not yet verified, as `(offset, length)` byte ranges in file order.
    pub fn missing_ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for i in 0..self.block_count() {
            if self.is_verified(i) {
                continue;
            }
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

/// One file to evict, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Eviction {
    /// The file.
    pub id: ContentId,
    /// Bytes it frees.
    pub size: u64,
    /// Evict before starting fetch range number `before_fetch` (`fetch.len()`: after all).
    pub before_fetch: u64,
    /// Why.
    pub reason: EvictReason,
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
    /// Held target weight ÷ total target weight before the fill (partial files count as not
    /// held; 1.0 for a target with no weight).
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    No,
    Complete,
    Partial(u32),
}

/// Computes the delta. Deterministic: the same inputs give the same delta.
pub fn compute(target: &Catalog<'_>, inv: &Inventory<'_>, capacity: u64) -> Result<Delta, DeltaError> {
    let n = target.len();
    for w in inv.partial.windows(2) {
        if w[0].id >= w[1].id {
            return Err(DeltaError::Inventory {
                id: w[1].id,
                reason: "partial files are not sorted by id or repeat",
            });
        }
    }
    let mut held = vec![Held::No; n];
    let mut not_in_target: Vec<Eviction> = Vec::new();

    // Merge the complete files with the target.
    let c = &inv.complete;
    let (mut i, mut j) = (0, 0);
    while j < c.len() {
        let ord = if i < n { target.id_bytes(i).cmp(c.id_bytes(j)) } else { Ordering::Greater };
        match ord {
            Ordering::Less => i += 1,
            Ordering::Greater => {
                not_in_target.push(Eviction {
                    id: c.id(j),
                    size: c.size(j),
                    before_fetch: 0,
                    reason: EvictReason::NotInTarget,
                });
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
                held[i] = Held::Complete;
                i += 1;
                j += 1;
            }
        }
    }
    // Partial files: few, so binary search each.
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
                held[t] = Held::Partial(k as u32);
            }
            None => not_in_target.push(Eviction {
                id: p.id,
                size: p.size,
                before_fetch: 0,
                reason: EvictReason::NotInTarget,
            }),
        }
    }
    not_in_target.sort_unstable_by(|a, b| a.id.cmp(&b.id));

    // Walk the target by rank: place, and sort what is held into keep / resume / evict.
    let mut d = Delta {
        fetch: Vec::new(),
        evict: Vec::new(),
        keep: Vec::new(),
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
    let mut does_not_fit: Vec<Eviction> = Vec::new();
    let (mut total_w, mut before_w, mut after_w) = (0.0f64, 0.0f64, 0.0f64);
    for idx in target.by_rank() {
        let (size, w) = (target.size(idx), target.weight(idx));
        total_w += w;
        if held[idx] == Held::Complete {
            before_w += w;
        }
        // Sizes are validated to sum within u64, so this cannot overflow.
        let fits = d.placed_bytes + size <= capacity;
        if fits {
            d.placed_bytes += size;
            d.placed_files += 1;
            after_w += w;
        }
        let entry = idx as u32;
        match (held[idx], fits) {
            (Held::Complete, true) => d.keep.push(entry),
            (Held::Partial(k), true) => {
                d.resume.push(entry);
                for (offset, length) in inv.partial[k as usize].missing_ranges() {
                    d.fetch.push(FetchRange { entry, offset, length });
                    d.bytes_to_fetch += length;
                }
            }
            (Held::No, true) => {
                d.fetch.push(FetchRange {
                    entry,
                    offset: 0,
                    length: size,
                });
                d.bytes_to_fetch += size;
            }
            (Held::Complete | Held::Partial(_), false) => does_not_fit.push(Eviction {
                id: target.id(idx),
                size,
                before_fetch: 0,
                reason: EvictReason::DoesNotFit,
            }),
            (Held::No, false) => {}
        }
    }
    let share = |w: f64| if total_w > 0.0 { w / total_w } else { 1.0 };
    d.offload_before = share(before_w);
    d.offload_after = share(after_w);

    // Least popular first among the files that no longer fit.
    does_not_fit.reverse();
    d.evict = not_in_target;
    d.evict.extend(does_not_fit);
    d.bytes_to_evict = d.evict.iter().map(|e| e.size).sum();
    schedule_evictions(&mut d, &held, capacity);
    Ok(d)
}

/// Gives each eviction the fetch it must precede, evicting as late as possible: a file is
/// evicted only when the next new file would not fit otherwise. Placed bytes never pass the
/// capacity and every held file that is not placed is in the list, so evicting down always
/// makes room.
fn schedule_evictions(d: &mut Delta, held: &[Held], capacity: u64) {
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
        if held[f.entry as usize] == Held::No {
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
