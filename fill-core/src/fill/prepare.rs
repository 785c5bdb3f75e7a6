//! What preparing a file does with its blocks, with the reads and writes given as closures,
//! so the store on disk and the simulator's store in memory run the same logic.

use crate::delta::PartialFile;
use crate::outboard::Outboard;

/// A resumed file's recorded blocks, read back and verified again: what is on disk is not
/// trusted, and a block whose bytes no longer match is cleared (to be fetched again).
/// `read(offset, buf)` fills `buf` from the file's data, false when it cannot. Returns how
/// many blocks it cleared.
pub fn reverify(
    ob: &Outboard,
    map: &mut PartialFile,
    mut read: impl FnMut(u64, &mut [u8]) -> bool,
) -> u64 {
    let mut buf = Vec::new();
    let mut dropped = 0;
    for b in 0..map.block_count() {
        if !map.is_verified(b) {
            continue;
        }
        let (offset, len) = ob.block_range(b);
        buf.resize(len as usize, 0);
        if !(read(offset, &mut buf) && ob.verify_block(b, &buf).is_ok()) {
            map.set_verified(b, false);
            dropped += 1;
        }
    }
    dropped
}

/// Copies into a new file the blocks its older version holds at the same offsets with the
/// same hash (see [`Outboard::shared_blocks`]) instead of fetching them, each read back
/// with `read_old(offset, buf)` and verified against the new outboard (the old copy may
/// have rotted), written with `write(offset, bytes)` and set in `map`. A block that cannot
/// be read or does not verify is simply left to fetch. The caller makes the writes durable
/// before it records `map`. Returns how many bytes it copied.
pub fn copy_shared<E>(
    ob: &Outboard,
    old: &Outboard,
    map: &mut PartialFile,
    mut read_old: impl FnMut(u64, &mut [u8]) -> bool,
    mut write: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let mut buf = vec![0u8; ob.block_size().bytes() as usize];
    let mut copied = 0;
    for b in ob.shared_blocks(old) {
        let (offset, len) = ob.block_range(b);
        let block = &mut buf[..len as usize];
        if !read_old(offset, block) || ob.verify_block(b, block).is_err() {
            continue;
        }
        write(offset, block)?;
        map.set_verified(b, true);
        copied += len;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outboard::BlockSize;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    #[test]
    fn reverify_clears_only_blocks_that_changed() {
        let bs = BlockSize::from_bytes(1024).unwrap();
        let mut d = data(5000, 1);
        let ob = Outboard::compute(&d, bs);
        let mut map = PartialFile::empty(ob.id(), ob.size(), bs);
        for b in [0, 2, 4] {
            map.set_verified(b, true);
        }
        d[2048 + 7] ^= 1;
        let dropped = reverify(&ob, &mut map, |off, buf| {
            buf.copy_from_slice(&d[off as usize..off as usize + buf.len()]);
            true
        });
        assert_eq!(dropped, 1);
        assert!(map.is_verified(0) && !map.is_verified(2) && map.is_verified(4));
        // An unreadable block is cleared too.
        let dropped = reverify(&ob, &mut map, |_, _| false);
        assert_eq!((dropped, map.verified_count()), (2, 0));
    }

    #[test]
    fn copy_shared_copies_what_verifies() {
        let bs = BlockSize::from_bytes(1024).unwrap();
        let old = data(4096, 2);
        let mut new = old.clone();
        new[1024] ^= 0xff; // block 1 differs
        let (ob_old, ob_new) = (Outboard::compute(&old, bs), Outboard::compute(&new, bs));
        let mut map = PartialFile::empty(ob_new.id(), ob_new.size(), bs);
        let mut out = vec![0u8; 4096];
        let mut rotted = old.clone();
        rotted[3 * 1024] ^= 1; // block 3 rotted since the old file was checked
        let copied = copy_shared(
            &ob_new,
            &ob_old,
            &mut map,
            |off, buf| {
                buf.copy_from_slice(&rotted[off as usize..off as usize + buf.len()]);
                true
            },
            |off, bytes| {
                out[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
                Ok::<_, ()>(())
            },
        )
        .unwrap();
        assert_eq!(copied, 2048);
        assert!(map.is_verified(0) && !map.is_verified(1) && map.is_verified(2));
        assert!(!map.is_verified(3));
        assert_eq!(&out[..1024], &new[..1024]);
        assert_eq!(&out[2048..3072], &new[2048..3072]);
    }
}
