//! What a fill works from: the files to fill (in popularity order), the stores that need
//! each, the evictions each store owes and when, and the sources. Built from the stores'
//! deltas by [`FillSpec::new`], the same way for the real fill and for the simulator.

use std::collections::{HashMap, HashSet};

use crate::catalog::Catalog;
use crate::delta::{Delta, EvictReason, OlderVersion};
use crate::id::ContentId;
use crate::source::Source;

/// A fill's input, resolved: indices into `files`, `stores` and `sources` name everything
/// the machine's events and actions speak of.
#[derive(Debug, Clone)]
pub struct FillSpec {
    /// The sources, in the order of the sources file.
    pub sources: Vec<Source>,
    /// The stores filled (one for `fill run`, several for `fill prefill`).
    pub stores: Vec<StoreSpec>,
    /// The files some store needs, most popular first.
    pub files: Vec<FileSpec>,
}

/// One store's evictions.
#[derive(Debug, Clone, Default)]
pub struct StoreSpec {
    /// In the delta's order, without the older versions held back for their new files.
    pub evictions: Vec<PlannedEviction>,
    /// How many leading evictions (files not in the target) go at once, beside the fill.
    pub early: usize,
}

/// One eviction and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedEviction {
    /// The file evicted.
    pub id: ContentId,
    /// Due before the store's fetch range number `before_fetch` starts.
    pub before_fetch: u64,
}

/// One file to fill.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Its id.
    pub id: ContentId,
    /// Its size in the target.
    pub size: u64,
    /// Its name in the target (for messages and for the store's catalog).
    pub name: String,
    /// `holders[s]`: whether source `s` holds it (changes with
    /// [`crate::fill::Event::HoldingsChanged`]).
    pub holders: Vec<bool>,
    /// A plan's pieces of the file, by offset (empty without a plan): each block goes first
    /// to the planned source of its first byte.
    pub planned: Vec<PlannedPiece>,
    /// The stores that need it.
    pub stores: Vec<FileNeed>,
    /// Site peers (source indices) to take it from, in order, when a site plan says it
    /// comes from inside the site: the first is followed while it makes progress on the
    /// file, then the next; once none is left, it comes from wherever is cheapest. Empty
    /// outside a site fill (and for the appliance that lands it).
    pub relay: Vec<usize>,
    /// Site peers whose blocks of the file are watched while it fills (those in `relay`
    /// and the others that fill it): a block one of them holds is taken from it.
    pub watch: Vec<usize>,
}

/// A piece of a file a plan gives to one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedPiece {
    /// First byte.
    pub offset: u64,
    /// One past the last byte.
    pub end: u64,
    /// The source.
    pub source: usize,
}

/// What one store needs of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileNeed {
    /// The store.
    pub store: usize,
    /// The index of the file's first fetch range in this store's delta (its evictions are
    /// scheduled in those): the evictions due before it go before the file is prepared.
    pub first_fetch: u64,
    /// The store holds an interrupted fill of it.
    pub resume: bool,
    /// An older version the store holds: its shared blocks are copied, then it is evicted.
    pub older: Option<ContentId>,
}

/// One store's delta, as [`FillSpec::new`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct StoreDelta<'a> {
    /// The delta against the target.
    pub delta: &'a Delta,
    /// `delta.evict[i]`'s id.
    pub evict_ids: &'a [ContentId],
    /// Older versions held of files the delta fetches whole.
    pub older: &'a [OlderVersion],
}

impl FillSpec {
    /// The spec of a fill of `stores` to `target` from `sources`, where `holds(s, id)` says
    /// whether source `s` holds `id` and `planned(entry)` gives a plan's pieces of a target
    /// entry (empty without a plan).
    pub fn new(
        target: &Catalog<'_>,
        stores: &[StoreDelta<'_>],
        sources: Vec<Source>,
        holds: impl Fn(usize, &ContentId) -> bool,
        planned: impl Fn(u32) -> Vec<PlannedPiece>,
    ) -> Self {
        let mut needs: HashMap<u32, Vec<FileNeed>> = HashMap::new();
        let mut store_specs = Vec::with_capacity(stores.len());
        for (s, sd) in stores.iter().enumerate() {
            let resumed: HashSet<u32> = sd.delta.resume.iter().copied().collect();
            let older: HashMap<u32, ContentId> = sd
                .older
                .iter()
                .map(|o| (o.entry, sd.evict_ids[o.eviction]))
                .collect();
            let mut first: HashMap<u32, u64> = HashMap::new();
            for (k, f) in sd.delta.fetch.iter().enumerate() {
                first.entry(f.entry).or_insert(k as u64);
            }
            // Partial files with every block recorded have nothing to fetch but still have
            // to be completed; they need no new space.
            for &e in &sd.delta.resume {
                first.entry(e).or_insert(0);
            }
            for (entry, first_fetch) in first {
                needs.entry(entry).or_default().push(FileNeed {
                    store: s,
                    first_fetch,
                    resume: resumed.contains(&entry),
                    older: older.get(&entry).copied(),
                });
            }
            let held_back: HashSet<usize> = sd.older.iter().map(|o| o.eviction).collect();
            let leading = sd
                .delta
                .evict
                .iter()
                .take_while(|e| e.reason == EvictReason::NotInTarget)
                .count();
            let evictions: Vec<PlannedEviction> = sd
                .delta
                .evict
                .iter()
                .enumerate()
                .filter(|(k, _)| !held_back.contains(k))
                .map(|(k, e)| PlannedEviction {
                    id: sd.evict_ids[k],
                    before_fetch: e.before_fetch,
                })
                .collect();
            let early = leading - held_back.iter().filter(|&&k| k < leading).count();
            store_specs.push(StoreSpec { evictions, early });
        }
        let files = target
            .by_rank()
            .filter_map(|e| {
                let mut stores = needs.remove(&(e as u32))?;
                stores.sort_by_key(|n| n.store);
                let id = target.id(e);
                Some(FileSpec {
                    id,
                    size: target.size(e),
                    name: target.name(e).to_owned(),
                    holders: (0..sources.len()).map(|s| holds(s, &id)).collect(),
                    planned: planned(e as u32),
                    stores,
                    relay: Vec::new(),
                    watch: Vec::new(),
                })
            })
            .collect();
        Self {
            sources,
            stores: store_specs,
            files,
        }
    }
}
