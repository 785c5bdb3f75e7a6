//! Read-only memory maps: the one place in this crate that needs `unsafe`.

#![allow(unsafe_code)]

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use crate::store::StoreError;

/// A file's bytes: mapped, or owned when the file is empty or was decompressed.
#[derive(Debug)]
pub enum Mapped {
    /// A read-only mapping of a whole file.
    Map(memmap2::Mmap),
    /// Bytes in memory.
    Owned(Vec<u8>),
}

impl Mapped {
    /// Maps a whole file read-only.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |op| {
            move |source| StoreError::Io {
                op,
                path: path.to_owned(),
                source,
            }
        };
        let file = File::open(path).map_err(err("open"))?;
        let meta = file.metadata().map_err(err("stat"))?;
        if !meta.is_file() {
            return Err(StoreError::Io {
                op: "open",
                path: path.to_owned(),
                source: std::io::Error::other("not a regular file"),
            });
        }
        if meta.len() == 0 {
            return Ok(Self::Owned(Vec::new()));
        }
        // SAFETY: the store never modifies a file under `content/`, `outboard/` or the catalog
        // in place: they are written to a temporary file and renamed, so the mapped inode does
        // not change while mapped. Files from outside the store (imports, catalogs given on the
        // command line) could be truncated by another process, which would fault; that is the
        // documented cost of reading them without copying.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(err("map"))?;
        Ok(Self::Map(map))
    }
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Map(m) => m,
            Self::Owned(v) => v,
        }
    }
}
