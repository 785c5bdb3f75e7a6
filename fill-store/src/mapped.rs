//! Read-only memory maps: the one place in this crate that needs `unsafe`.

#![allow(unsafe_code)]

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A file that could not be mapped: what was being done, on which path, the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}", path.display())]
pub struct MapError {
    /// What was being done (open, stat, map).
    pub op: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

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
    pub fn open(path: &Path) -> Result<Self, MapError> {
        let err = |op| {
            move |source| MapError {
                op,
                path: path.to_owned(),
                source,
            }
        };
        let file = File::open(path).map_err(err("open"))?;
        let meta = file.metadata().map_err(err("stat"))?;
        if !meta.is_file() {
            return Err(MapError {
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

/// What identifies a version of a file: if any of these change, a cached mapping is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

/// The stamp of the file at `path`, or `None` when it does not exist.
pub fn stamp(path: &Path) -> std::io::Result<Option<FileStamp>> {
    // A symbolic link is not the store's file, whatever it points at.
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(FileStamp::of(&m))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A mapped file that remembers its descriptor. While it lives, its address range is
/// registered, so a socket writer handed a slice of it can send the same bytes from the file
/// with `sendfile(2)` instead of copying them ([`file_region`]).
struct MappedFile {
    map: memmap2::Mmap,
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        let start = self.map.as_ptr() as usize;
        regions()
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&start);
    }
}

/// Live mappings: start address → (length, the mapped file).
type Regions = std::sync::RwLock<std::collections::BTreeMap<usize, (usize, std::sync::Arc<File>)>>;

fn regions() -> &'static Regions {
    static REGIONS: std::sync::OnceLock<Regions> = std::sync::OnceLock::new();
    REGIONS.get_or_init(Default::default)
}

/// When `bytes` lie inside a live mapping made by [`map_bytes`]: the mapped file and the
/// offset of the first byte in it.
pub fn file_region(bytes: &[u8]) -> Option<(std::sync::Arc<File>, u64)> {
    let (ptr, len) = (bytes.as_ptr() as usize, bytes.len());
    let map = regions().read().unwrap_or_else(|p| p.into_inner());
    let (&start, (map_len, file)) = map.range(..=ptr).next_back()?;
    (ptr + len <= start + map_len).then(|| (file.clone(), (ptr - start) as u64))
}

/// The most [`prefetch`] asks the kernel to read ahead for one body.
const PREFETCH_MAX: usize = 16 << 20;

/// Asks the kernel to start reading `bytes` (the first [`PREFETCH_MAX`] of them) into the page
/// cache when they lie in a mapping made by [`map_bytes`]. Without it, a cold body is read by
/// page faults as the response is copied out: one synchronous read-around of 128 KiB at a
/// time, on a runtime worker thread. With it, the reads for the whole range are queued at once
/// and the copy finds the pages arriving. A hint: failure is ignored.
pub fn prefetch(bytes: &[u8]) {
    let Some((file, offset)) = file_region(bytes) else {
        return;
    };
    let len = bytes.len().min(PREFETCH_MAX) as u64;
    if let Some(len) = std::num::NonZeroU64::new(len) {
        let _ = rustix::fs::fadvise(&*file, offset, Some(len), rustix::fs::Advice::WillNeed);
    }
}

/// Maps a whole file as shareable [`bytes::Bytes`] (slices of it are zero-copy response
/// bodies), with the stamp of the file that was mapped. `None` when the file does not exist.
pub fn map_bytes(path: &Path) -> std::io::Result<Option<(bytes::Bytes, FileStamp)>> {
    use std::os::unix::fs::OpenOptionsExt;
    // Never through a symbolic link: a link at `content/<id>` to a system file is not
    // content, and opening it is refused (ELOOP), as a missing file is.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // Stamp the opened file, not the path, so the mapping and its stamp always agree.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let stamp = FileStamp::of(&meta);
    if meta.len() == 0 {
        return Ok(Some((bytes::Bytes::new(), stamp)));
    }
    // SAFETY: only files under `content/`, `outboard/` and the catalog are mapped here; the
    // store never changes them in place (they are renamed into place and unlinked, never
    // truncated or rewritten), so the mapping stays valid for as long as it lives.
    let map = unsafe { memmap2::Mmap::map(&file) }?;
    let start = map.as_ptr() as usize;
    regions()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(start, (map.len(), std::sync::Arc::new(file)));
    Ok(Some((bytes::Bytes::from_owner(MappedFile { map }), stamp)))
}
