//! What the server may serve: only complete files its store's catalog lists (never a
//! stray, never a symbolic link: [`fill_store::mapped::map_bytes`] refuses those), whose
//! re-verified blocks match their outboard. A file that fails is withdrawn (404) until it
//! is replaced; a catalog that does not validate is refused, not served.
//!
//! Blocks are re-verified when a file is first mapped (the first block the request asks
//! for, which is read to be sent anyway) and by a scrub that walks the listed files one
//! block a tick. Nothing here speaks HTTP.

use std::collections::HashMap;
use std::sync::Mutex;

use fill_core::{Catalog, ContentId, Outboard};
use fill_store::mapped::FileStamp;
use fill_store::store::{Store, chain};

/// The files a catalog lists, as (id, size) in id order (the catalog's own order, so a
/// lookup is a binary search and the scrub walks them in turn).
#[derive(Debug, Default)]
pub struct Listing {
    files: Vec<(ContentId, u64)>,
}

impl Listing {
    /// Validates a raw catalog whole and lists it; why not, naming what is wrong.
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        let cat = Catalog::parse(raw).map_err(|e| e.to_string())?;
        Ok(Self {
            files: (0..cat.len()).map(|i| (cat.id(i), cat.size(i))).collect(),
        })
    }

    /// The size of a listed file; `None` when the catalog does not list it.
    pub fn size(&self, id: &ContentId) -> Option<u64> {
        self.files
            .binary_search_by(|(f, _)| f.cmp(id))
            .ok()
            .map(|i| self.files[i].1)
    }

    /// The `n`th listed file (wrapping), for the scrub.
    pub fn nth(&self, n: u64) -> Option<ContentId> {
        (!self.files.is_empty()).then(|| self.files[(n % self.files.len() as u64) as usize].0)
    }

    /// How many files are listed.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Files withdrawn for failing re-verification, with the stamp of the file that failed
/// (a file replaced since, by a repair and a new fill, is tried again) and why.
#[derive(Debug, Default)]
pub struct Withdrawn {
    files: Mutex<HashMap<ContentId, (Option<FileStamp>, String)>>,
}

impl Withdrawn {
    /// Withdraws a file; returns how many are withdrawn.
    pub fn withdraw(&self, id: ContentId, stamp: Option<FileStamp>, why: String) -> usize {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if !files.contains_key(&id) {
            tracing::error!("{id} withdrawn: {why}");
        }
        files.insert(id, (stamp, why));
        files.len()
    }

    /// Why a file is withdrawn, if it is and has not been replaced since (`now` gives the
    /// stamp of the file at its path now, asked only for a withdrawn file); a replaced
    /// file is taken off the list.
    pub fn why(&self, id: &ContentId, now: impl FnOnce() -> Option<FileStamp>) -> Option<String> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (stamp, why) = files.get(id)?;
        if *stamp == now() {
            return Some(why.clone());
        }
        files.remove(id);
        None
    }

    /// Every withdrawn file and why, by id.
    pub fn list(&self) -> Vec<(ContentId, String)> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = files
            .iter()
            .map(|(id, (_, why))| (*id, why.clone()))
            .collect();
        out.sort();
        out
    }
}

/// Re-verifies a listed file's `data` (the content of `id`): its size against `listed`
/// (the catalog's), then one block against the store's outboard, the block `pick` chooses
/// given the outboard. Why not, when it does not verify (an outboard missing or corrupt
/// counts: ranges of the file could not be checked).
pub fn verify_one_block(
    store: &Store,
    id: &ContentId,
    data: &[u8],
    listed: u64,
    pick: impl FnOnce(&Outboard) -> u64,
) -> Result<(), String> {
    if data.len() as u64 != listed {
        return Err(format!("{} bytes, the catalog says {listed}", data.len()));
    }
    let ob = store.outboard(id).map_err(|e| chain(&e))?;
    if ob.size() != listed {
        return Err(format!("{listed} bytes, its outboard says {}", ob.size()));
    }
    let b = pick(&ob).min(ob.block_count().saturating_sub(1));
    let (off, len) = ob.block_range(b);
    let block = &data[off as usize..(off + len) as usize];
    ob.verify_block(b, block)
        .map_err(|e| format!("block {b} does not verify: {e}"))
}
