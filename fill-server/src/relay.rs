//! The relay: what a site peer may take of a file this store is still filling
//! (docs/protocol.md, "Relay"). Only blocks the fill recorded (verified and durable) are
//! read, and each is verified again against the file's outboard before it leaves; a peer
//! learns which blocks there are from the file's block map ([`fill_core::blockmap`]).
//!
//! Pure store reads: the HTTP answers are the `http` module's (it imports this one).

use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use bytes::Bytes;
use fill_core::ContentId;
use fill_core::blockmap::BlockMap;
use fill_store::store::Store;

/// The most a relay answer carries: it is read into memory to be verified.
pub const MAX_RELAY_BYTES: u64 = 64 << 20;

/// Why blocks cannot be relayed.
#[derive(Debug)]
pub enum RelayError {
    /// The store is not filling the file, or has not recorded those blocks yet.
    NotHeld(String),
    /// The file completed (or went) since its map was read: ask the store's content.
    Gone,
    /// A recorded block does not verify, or the state is unreadable.
    Bad(String),
    /// A local read failed.
    Io(io::Error),
}

/// The block map of `id`: every block set when the store holds it whole (`listed`), the
/// recorded ones when it is filling it; `None` when neither.
pub fn map_of(store: &Store, id: &ContentId, listed: bool) -> Result<Option<BlockMap>, String> {
    if listed {
        let ob = store.outboard(id).map_err(|e| e.to_string())?;
        let count = ob.block_count();
        let mut words = vec![u64::MAX; count.div_ceil(64) as usize];
        if count % 64 != 0
            && let Some(last) = words.last_mut()
        {
            *last = (1u64 << (count % 64)) - 1;
        }
        return Ok(Some(BlockMap {
            size: ob.size(),
            block: ob.block_size(),
            complete: true,
            words,
        }));
    }
    let Some(state) = store.partial(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    Ok(Some(BlockMap {
        size: state.file.size,
        block: state.file.block,
        complete: false,
        words: state.file.verified,
    }))
}

/// The size of a file the store is filling, if it is.
pub fn partial_size(store: &Store, id: &ContentId) -> Result<Option<u64>, String> {
    Ok(store
        .partial(id)
        .map_err(|e| e.to_string())?
        .map(|s| s.file.size))
}

/// Bytes `first..=last` of a file the store is filling, when every block they touch is
/// recorded; each block verified again before it is returned.
pub fn read_held(
    store: &Store,
    id: &ContentId,
    first: u64,
    last: u64,
) -> Result<Bytes, RelayError> {
    let state = match store.partial(id) {
        Ok(Some(s)) => s,
        Ok(None) => return Err(RelayError::Gone),
        Err(e) => return Err(RelayError::Bad(e.to_string())),
    };
    let file = &state.file;
    if last < first || last >= file.size {
        return Err(RelayError::NotHeld(format!(
            "bytes {first}-{last} are outside {id} ({} bytes)",
            file.size
        )));
    }
    if last - first + 1 > MAX_RELAY_BYTES {
        return Err(RelayError::NotHeld(format!(
            "ask for at most {MAX_RELAY_BYTES} bytes of a file still filling"
        )));
    }
    let bs = file.block.bytes();
    let (b0, b1) = (first / bs, last / bs);
    if let Some(b) = (b0..=b1).find(|&b| !file.is_verified(b)) {
        return Err(RelayError::NotHeld(format!(
            "block {b} of {id} is not held here yet"
        )));
    }
    let ob = match store.partial_outboard(id) {
        Ok(ob) => ob,
        // A completion moves the outboard into `outboard/` first, while the block map is
        // still there: the file is on its way into `content/`.
        Err(_) if store.outboard_path(id).exists() => return Err(RelayError::Gone),
        Err(e) => return Err(RelayError::Bad(fill_store::store::chain(&e))),
    };
    if ob.size() != file.size || ob.block_size() != file.block {
        return Err(RelayError::Bad(format!(
            "{id}: the outboard does not match the block map"
        )));
    }
    let path = store.partial_data_path(id);
    let data = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(RelayError::Gone),
        Err(e) => return Err(RelayError::Io(e)),
    };
    let start = b0 * bs;
    let end = ((b1 + 1) * bs).min(file.size);
    let mut buf = vec![0u8; (end - start) as usize];
    data.read_exact_at(&mut buf, start)
        .map_err(RelayError::Io)?;
    for b in b0..=b1 {
        let (off, len) = ob.block_range(b);
        let at = (off - start) as usize;
        if let Err(e) = ob.verify_block(b, &buf[at..at + len as usize]) {
            return Err(RelayError::Bad(format!(
                "recorded block {b} of {id} does not verify: {e}"
            )));
        }
    }
    let from = (first - start) as usize;
    Ok(Bytes::from(buf).slice(from..=(last - start) as usize))
}
