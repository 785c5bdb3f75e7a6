//! The store: a directory whose layout is the URL layout.
//!
//! ```text
//! DIR/
//!   content/<hex id>     complete, verified files only (what any static server may serve)
//!   outboard/<hex id>    their outboards
//!   catalog              the catalog of the complete files
//!   .fill/               private state: lock, tmp/ (staging), partial/ (files being filled)
//!     partial/<hex id>           preallocated data of a file being filled
//!     partial/<hex id>.outboard  its outboard
//!     partial/<hex id>.blocks    which of its blocks are verified (docs/store-format.md)
//!     state/events.jsonl         the appliance's lifecycle events, one JSON object a line
//!     state/write_errors.jsonl   writes that failed during fills (store-health check)
//!     state/target.catalog       the target the last fill worked towards (turn-up checks)
//!     state/maintenance.json     scheduled maintenance windows
//!     state/webhook.sent         how many events the webhook has been sent
//! ```
//!
//! Invariants: a file enters `content/` only by an atomic rename after it is verified and
//! synced, and its outboard is in place before it; the catalog is replaced by rename, never
//! rewritten in place, so a reader that mapped it keeps a consistent copy. A missing or empty
//! directory is an empty store. Paths inside the store come only from [`ContentId`]s (hex), so
//! no input can name a path outside it.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fill_core::catalog::{self, Catalog, CatalogBuilder, CatalogError, Entry, check_name};
use fill_core::lifecycle::MaintenanceWindow;
use fill_core::outboard::{BlockSize, Outboard, OutboardError};
use fill_core::{ContentId, PartialFile};

use crate::mapped::Mapped;

/// Most bytes a catalog may decompress to when read compressed (16 GiB).
pub const MAX_CATALOG_BYTES: u64 = 16 << 30;
/// The most a catalog received from a source (a peer's or tier's `/catalog`, a bucket's
/// `catalog`) may hold, compressed as received and decompressed (128 MiB, about 900,000
/// entries): a hostile source cannot make a fill hold more.
pub const MAX_REMOTE_CATALOG_BYTES: u64 = 128 << 20;
const BLOCKS_MAGIC: [u8; 8] = *b"FILLBLK\0";
const BLOCKS_VERSION: u32 = 1;
const BLOCKS_HEADER: usize = 32;

/// What went wrong with a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A local file system operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The store's catalog (or another catalog file) is not valid.
    #[error("catalog {}", path.display())]
    Catalog {
        /// The catalog file.
        path: PathBuf,
        /// What is wrong with it.
        source: CatalogError,
    },
    /// A state file of the store is corrupt.
    #[error("{}: {reason}", path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An outboard does not verify.
    #[error("outboard {}", path.display())]
    Outboard {
        /// The outboard file.
        path: PathBuf,
        /// Why it failed.
        source: OutboardError,
    },
    /// A lifecycle transition that is not allowed.
    #[error(transparent)]
    Lifecycle(fill_core::lifecycle::LifecycleError),
    /// The store path exists but is not a directory.
    #[error("store {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// Beginning a file would leave less than the reserve free.
    #[error(
        "no room for {name} ({}): {} free on the store's filesystem, and a fill keeps {} free (--reserve); free space, lower --capacity, or lower --reserve",
        fill_core::size::format_size(*size),
        fill_core::size::format_size(*free),
        fill_core::size::format_size(*reserve)
    )]
    NoRoom {
        /// The file's name.
        name: String,
        /// Its size.
        size: u64,
        /// Free bytes.
        free: u64,
        /// The reserve.
        reserve: u64,
    },
    /// The path given as a store is not one (a typo, most often): refused rather than
    /// read as an empty store.
    #[error("{} is not a store: {why}", path.display())]
    NotAStore {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        why: &'static str,
    },
    /// An input to import is not usable.
    #[error("cannot import {}: {reason}", path.display())]
    BadInput {
        /// The input path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// An error and its sources, joined by `: ` (what `{:#}` of anyhow prints), each said once:
/// a source whose words an outer error already carries is left out (hyper's `client error
/// (Connect)` alone does not say the connection was refused; repeated, it says it twice).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

impl From<crate::mapped::MapError> for StoreError {
    fn from(e: crate::mapped::MapError) -> Self {
        StoreError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Serialises the read-rewrite of catalogs within this process: a fill completes files on
/// one thread while the evictions due after its last fetch starts run on another. (Other
/// processes are kept out by the store lock.)
static CATALOG_EDIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn catalog_edit() -> std::sync::MutexGuard<'static, ()> {
    CATALOG_EDIT.lock().unwrap_or_else(|p| p.into_inner())
}

/// A store directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Bytes of the filesystem a fill keeps free ([`Store::with_reserve`]).
    reserve: u64,
}

/// A file partially filled: what the delta sees, plus the name it will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialState {
    /// Size, block size and verified blocks.
    pub file: PartialFile,
    /// The name from the target catalog.
    pub name: String,
}

/// Held while changing a store; other writers wait.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// One file imported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    /// Its id.
    pub id: ContentId,
    /// Its size.
    pub size: u64,
    /// The name it was given.
    pub name: String,
    /// False when the store already held this content (the existing name is kept).
    pub added: bool,
}

/// What a verification found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Complete files checked.
    pub checked: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Files that are bad, and why.
    pub bad: Vec<BadFile>,
    /// Partial files whose verified blocks no longer verify.
    pub bad_blocks: Vec<BadBlocks>,
    /// Files in `content/` that the catalog does not list.
    pub stray: Vec<String>,
    /// Files whose outboard was missing or corrupt and whose content still hashes to its
    /// id: the outboard was rebuilt from the content (when repairing; else they are in
    /// `bad`, saying so).
    pub rebuilt: Vec<BadFile>,
    /// Whether bad files were dropped, bad blocks cleared and outboards rebuilt.
    pub repaired: bool,
}

/// A bad complete file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BadFile {
    /// The file.
    pub id: ContentId,
    /// Its catalog name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

/// Bad blocks of a partial file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BadBlocks {
    /// The file.
    pub id: ContentId,
    /// Block indices marked verified that fail verification.
    pub blocks: Vec<u64>,
    /// When the whole partial file is unusable (outboard or state missing or corrupt).
    pub reason: Option<String>,
}

/// A catalog file held in memory (mapped).
#[derive(Debug)]
pub struct CatalogFile {
    bytes: Mapped,
    path: PathBuf,
}

impl CatalogFile {
    /// Reads a catalog file: mapped when raw, decompressed when zstd. Checks the header only.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let bytes = Mapped::open(path)?;
        let bytes = if catalog::wire::is_zstd(&bytes) {
            Mapped::Owned(
                catalog::wire::decompress(&bytes, MAX_CATALOG_BYTES).map_err(|source| {
                    StoreError::Catalog {
                        path: path.to_owned(),
                        source,
                    }
                })?,
            )
        } else {
            bytes
        };
        let me = Self {
            bytes,
            path: path.to_owned(),
        };
        catalog::CatalogView::open(&me.bytes).map_err(|source| me.err(source))?;
        Ok(me)
    }

    /// A catalog received as bytes (raw or zstd) from a source; `label` names it in
    /// errors. Checks the header only. At most [`MAX_REMOTE_CATALOG_BYTES`] decompressed.
    pub fn from_bytes(bytes: Vec<u8>, label: &str) -> Result<Self, StoreError> {
        let path = PathBuf::from(label);
        let bytes = if catalog::wire::is_zstd(&bytes) {
            catalog::wire::decompress(&bytes, MAX_REMOTE_CATALOG_BYTES).map_err(|source| {
                StoreError::Catalog {
                    path: path.clone(),
                    source,
                }
            })?
        } else {
            bytes
        };
        let me = Self {
            bytes: Mapped::Owned(bytes),
            path,
        };
        catalog::CatalogView::open(&me.bytes).map_err(|source| me.err(source))?;
        Ok(me)
    }

    /// An empty catalog.
    pub fn empty() -> Self {
        Self {
            bytes: Mapped::Owned(CatalogBuilder::new().finish().unwrap_or_default()),
            path: PathBuf::from("(empty)"),
        }
    }

    fn err(&self, source: CatalogError) -> StoreError {
        StoreError::Catalog {
            path: self.path.clone(),
            source,
        }
    }

    /// Validates every record.
    pub fn validate(&self) -> Result<Catalog<'_>, StoreError> {
        Catalog::parse(&self.bytes).map_err(|source| self.err(source))
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store {
    /// An existing store at `root`: a directory holding a store's files (`catalog`,
    /// `content/`, `outboard/` or `.fill/`), or an empty one (a new disk, where only
    /// `lost+found` may sit), which becomes a store when first written. Anything else,
    /// above all a path that does not exist, is refused: read as an empty store, a
    /// mistyped path would verify as all good and plan to fetch everything.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let not = |why| StoreError::NotAStore {
            path: root.clone(),
            why,
        };
        let rd = match fs::read_dir(&root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(not("no such directory"));
            }
            Err(_) if root.exists() && !root.is_dir() => {
                return Err(StoreError::NotADirectory(root));
            }
            Err(e) => return Err(io_err("list", &root)(e)),
        };
        let mut empty = true;
        for entry in rd {
            let entry = entry.map_err(io_err("list", &root))?;
            let name = entry.file_name();
            match name.to_str() {
                Some("catalog" | "content" | "outboard" | ".fill") => {
                    return Ok(Self { root, reserve: 0 });
                }
                Some("lost+found") => {}
                _ => empty = false,
            }
        }
        if empty {
            Ok(Self { root, reserve: 0 })
        } else {
            Err(not(
                "the directory holds other files and none of a store's (catalog, content/, outboard/, .fill/)",
            ))
        }
    }

    /// A store at `root`, existing or not (for what creates stores: `store import`, the
    /// demo). Nothing is created until something is written; a missing directory is an
    /// empty store.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        match fs::metadata(&root) {
            Ok(m) if !m.is_dir() => Err(StoreError::NotADirectory(root)),
            _ => Ok(Self { root, reserve: 0 }),
        }
    }

    /// The same store, keeping `bytes` of its filesystem free: a partial file is begun
    /// only when its preallocation leaves at least that much (none by default).
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        self.reserve = bytes;
        self
    }

    /// What a fill keeps free by default: 1 GiB or 1% of the store's filesystem, whichever
    /// is smaller.
    pub fn default_reserve(&self) -> Result<u64, StoreError> {
        let (_, total) = self.space()?;
        Ok((1u64 << 30).min(total / 100))
    }

    /// Free bytes (for an unprivileged writer) and total bytes of the store's filesystem.
    pub fn space(&self) -> Result<(u64, u64), StoreError> {
        // The store may not exist yet: its nearest existing ancestor's filesystem.
        let mut at = self.root.as_path();
        while !at.exists() {
            match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => {
                    at = Path::new(".");
                    break;
                }
            }
        }
        let st = rustix::fs::statvfs(at).map_err(|e| io_err("statvfs", at)(e.into()))?;
        Ok((
            st.f_bavail.saturating_mul(st.f_frsize),
            st.f_blocks.saturating_mul(st.f_frsize),
        ))
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `content/<hex id>`.
    pub fn content_path(&self, id: &ContentId) -> PathBuf {
        self.root.join("content").join(id.to_hex().as_str())
    }

    /// `outboard/<hex id>`.
    pub fn outboard_path(&self, id: &ContentId) -> PathBuf {
        self.root.join("outboard").join(id.to_hex().as_str())
    }

    /// `catalog`.
    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog")
    }

    fn state_dir(&self) -> PathBuf {
        self.root.join(".fill")
    }

    fn partial_dir(&self) -> PathBuf {
        self.state_dir().join("partial")
    }

    /// `.fill/state/events.jsonl`: the appliance's lifecycle events.
    pub fn events_path(&self) -> PathBuf {
        self.state_dir().join("state").join("events.jsonl")
    }

    /// The recorded lifecycle events, oldest first; none for a store that never had any (it
    /// then reports `live`). A last line cut short by a crash (no newline) is ignored; any
    /// other line that does not parse is an error naming it.
    pub fn lifecycle_events(&self) -> Result<Vec<fill_core::lifecycle::Event>, StoreError> {
        read_json_lines(&self.events_path())
    }

    /// `.fill/state/<name>`: the appliance's state files (docs/store-format.md).
    pub fn state_file(&self, name: &str) -> PathBuf {
        self.state_dir().join("state").join(name)
    }

    /// Replaces the state file `name` with `bytes`: synced, then renamed into place.
    pub fn write_state(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.state_file(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        write_atomic(self, &path, bytes)
    }

    /// Appends a lifecycle event and syncs it before returning. Prefer [`Store::transition`],
    /// which checks the transition against the recorded state under the events lock.
    pub fn record_event(&self, event: &fill_core::lifecycle::Event) -> Result<(), StoreError> {
        append_json_line(&self.events_path(), event)
    }

    /// Takes the lock that orders lifecycle changes (short: held to read, check and append).
    fn events_lock(&self) -> Result<StoreLock, StoreError> {
        let path = self.state_file("events.lock");
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        }
        lock_file(&path)
    }

    /// The recorded lifecycle, rebuilt from the events.
    pub fn lifecycle(&self) -> Result<fill_core::lifecycle::Lifecycle, StoreError> {
        let events = self.lifecycle_events()?;
        self.replay(&events)
    }

    fn replay(
        &self,
        events: &[fill_core::lifecycle::Event],
    ) -> Result<fill_core::lifecycle::Lifecycle, StoreError> {
        fill_core::lifecycle::Lifecycle::replay(events).map_err(|e| StoreError::CorruptState {
            path: self.events_path(),
            reason: e.to_string(),
        })
    }

    /// Moves the appliance to `to` if the recorded state allows it, and records the event.
    /// A store without events starts its lifecycle with `allocated` (or, being live, may
    /// drain). Returns the event recorded.
    pub fn transition(
        &self,
        to: fill_core::lifecycle::State,
        time: i64,
        reason: &str,
    ) -> Result<fill_core::lifecycle::Event, StoreError> {
        use fill_core::lifecycle::{Lifecycle, State};
        let _lock = self.events_lock()?;
        let events = self.lifecycle_events()?;
        let event = if events.is_empty() && to == State::Allocated {
            Lifecycle::start(time, reason).1
        } else {
            self.replay(&events)?
                .transition(to, time, reason)
                .map_err(StoreError::Lifecycle)?
        };
        self.record_event(&event)?;
        Ok(event)
    }

    /// Back to the state before the drain; the event recorded.
    pub fn undrain(
        &self,
        time: i64,
        reason: &str,
    ) -> Result<fill_core::lifecycle::Event, StoreError> {
        let _lock = self.events_lock()?;
        let events = self.lifecycle_events()?;
        let event = self
            .replay(&events)?
            .undrain(time, reason)
            .map_err(StoreError::Lifecycle)?;
        self.record_event(&event)?;
        Ok(event)
    }

    /// Records a failed write (`.fill/state/write_errors.jsonl`), for the store-health check.
    pub fn record_write_error(&self, record: &WriteErrorRecord) -> Result<(), StoreError> {
        append_json_line(&self.state_file("write_errors.jsonl"), record)
    }

    /// The failed writes recorded, oldest first.
    pub fn write_errors(&self) -> Result<Vec<WriteErrorRecord>, StoreError> {
        read_json_lines(&self.state_file("write_errors.jsonl"))
    }

    /// `.fill/state/target.catalog`: the target the last fill worked towards.
    pub fn target_path(&self) -> PathBuf {
        self.state_file("target.catalog")
    }

    /// Keeps a copy of the target catalog a fill works towards (for the turn-up checks).
    pub fn record_target(&self, catalog: &[u8]) -> Result<(), StoreError> {
        let path = self.target_path();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        }
        write_atomic(self, &path, catalog)
    }

    /// The scheduled maintenance windows (`.fill/state/maintenance.json`), by start.
    pub fn maintenance_windows(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        let path = self.state_file("maintenance.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::CorruptState {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Replaces the scheduled maintenance windows (sorted by start).
    pub fn set_maintenance_windows(
        &self,
        windows: &mut Vec<MaintenanceWindow>,
    ) -> Result<(), StoreError> {
        let _lock = self.events_lock()?;
        windows.sort_by_key(|w| w.start);
        let path = self.state_file("maintenance.json");
        let bytes = serde_json::to_vec_pretty(windows).map_err(|e| StoreError::CorruptState {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(self, &path, &bytes)
    }

    /// Creates the directories of the layout.
    pub fn create(&self) -> Result<(), StoreError> {
        for dir in [
            self.root.join("content"),
            self.root.join("outboard"),
            self.state_dir().join("tmp"),
            self.partial_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        Ok(())
    }

    /// Takes the store's writer lock, waiting for any other writer.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        self.create()?;
        lock_file(&self.state_dir().join("lock"))
    }

    /// The store's catalog (empty when the store has none yet). Header checked only.
    pub fn catalog(&self) -> Result<CatalogFile, StoreError> {
        let path = self.catalog_path();
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(CatalogFile::empty()),
            Err(e) => Err(io_err("stat", &path)(e)),
            Ok(_) => CatalogFile::open(&path),
        }
    }

    /// Reads and checks the outboard of a complete file.
    pub fn outboard(&self, id: &ContentId) -> Result<Outboard, StoreError> {
        let path = self.outboard_path(id);
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        Outboard::parse(&bytes, *id).map_err(|source| StoreError::Outboard { path, source })
    }

    /// Files being filled, sorted by id.
    pub fn partials(&self) -> Result<Vec<PartialState>, StoreError> {
        let dir = self.partial_dir();
        let rd = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(io_err("list", &dir))?,
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".blocks")) else {
                continue;
            };
            let Ok(id) = ContentId::parse(hex) else {
                continue;
            };
            out.push(self.read_partial(&id)?);
        }
        out.sort_by_key(|p| p.file.id);
        Ok(out)
    }

    fn partial_paths(&self, id: &ContentId) -> (PathBuf, PathBuf, PathBuf) {
        let hex = id.to_hex();
        let dir = self.partial_dir();
        (
            dir.join(hex.as_str()),
            dir.join(format!("{hex}.outboard")),
            dir.join(format!("{hex}.blocks")),
        )
    }

    fn read_partial(&self, id: &ContentId) -> Result<PartialState, StoreError> {
        let (_, _, path) = self.partial_paths(id);
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        decode_blocks(&bytes, *id).map_err(|reason| StoreError::CorruptState { path, reason })
    }

    /// Starts filling a file: writes its outboard and an empty verified-block map, and
    /// preallocates its data at full size. Idempotent for the same id.
    ///
    /// Nothing here is synced: until a block is recorded the store promises nothing about
    /// this file, and every later step makes what it needs durable. The first record syncs
    /// the map and the directory (so the data's and outboard's names too); completion syncs
    /// the outboard before moving it into `outboard/`. What a crash before the first record
    /// may leave (a map, outboard or data lost or torn) is settled by [`Store::recover`]
    /// and a resumed fill (which writes the outboard again when the stored one does not
    /// match the id).
    pub fn begin_partial(
        &self,
        outboard: &Outboard,
        name: &str,
    ) -> Result<PartialState, StoreError> {
        self.create()?;
        let id = outboard.id();
        let (data, ob, blocks) = self.partial_paths(&id);
        if let Ok(state) = self.read_partial(&id) {
            return Ok(state);
        }
        if self.reserve > 0 {
            let (free, _) = self.space()?;
            if free < outboard.size().saturating_add(self.reserve) {
                return Err(StoreError::NoRoom {
                    name: name.to_owned(),
                    size: outboard.size(),
                    free,
                    reserve: self.reserve,
                });
            }
        }
        write_replace(self, &ob, &outboard.to_bytes())?;
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&data)
            .map_err(io_err("create", &data))?;
        f.set_len(outboard.size())
            .map_err(io_err("preallocate", &data))?;
        // Reserve the blocks too where the file system can: space runs out here, not
        // mid-fill, and the file is laid out in one piece. A hint where unsupported.
        if outboard.size() > 0
            && let Err(e) = rustix::fs::fallocate(
                &f,
                rustix::fs::FallocateFlags::KEEP_SIZE,
                0,
                outboard.size(),
            )
            && e != rustix::io::Errno::OPNOTSUPP
        {
            return Err(io_err("preallocate", &data)(e.into()));
        }
        // The data's size needs no sync of its own either: `fdatasync` persists the size
        // needed to read the data it flushes, and no block is recorded before such a sync.
        let state = PartialState {
            file: PartialFile::empty(id, outboard.size(), outboard.block_size()),
            name: name.to_owned(),
        };
        write_replace(self, &blocks, &encode_blocks(&state))?;
        Ok(state)
    }

    /// Writes a partial file's outboard again when the stored one is missing or does not
    /// match its id (what a crash before the file's first record may leave).
    pub fn repair_partial_outboard(&self, outboard: &Outboard) -> Result<bool, StoreError> {
        if self.partial_outboard(&outboard.id()).is_ok() {
            return Ok(false);
        }
        let (_, ob, _) = self.partial_paths(&outboard.id());
        write_replace(self, &ob, &outboard.to_bytes())?;
        Ok(true)
    }

    /// Records which blocks of a partial file are verified (atomically: a crash leaves the old
    /// map or the new one). Call it only after the blocks are durable.
    pub fn save_partial(&self, state: &PartialState) -> Result<(), StoreError> {
        let (_, _, path) = self.partial_paths(&state.file.id);
        write_atomic(self, &path, &encode_blocks(state))
    }

    /// Path of a partial file's data (for writers).
    pub fn partial_data_path(&self, id: &ContentId) -> PathBuf {
        self.partial_paths(id).0
    }

    /// The interrupted fill of `id`, if the store holds one.
    pub fn partial(&self, id: &ContentId) -> Result<Option<PartialState>, StoreError> {
        let (_, _, path) = self.partial_paths(id);
        if !path.exists() {
            return Ok(None);
        }
        self.read_partial(id).map(Some)
    }

    /// The bytes of a partial file's outboard, as stored (not checked: the caller checks
    /// them against the id).
    pub fn partial_outboard_bytes(&self, id: &ContentId) -> Result<Vec<u8>, StoreError> {
        let (_, path, _) = self.partial_paths(id);
        fs::read(&path).map_err(io_err("read", &path))
    }

    /// The outboard of a partial file, checked against its id.
    pub fn partial_outboard(&self, id: &ContentId) -> Result<Outboard, StoreError> {
        let (_, path, _) = self.partial_paths(id);
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        Outboard::parse(&bytes, *id).map_err(|source| StoreError::Outboard { path, source })
    }

    /// Moves a partial file whose every block is verified into `content/` (outboard first)
    /// and adds it to the catalog. Call it only when every block is durable (as recorded
    /// blocks are). The caller holds the store lock.
    pub fn complete_partial(&self, state: &PartialState) -> Result<(), StoreError> {
        let id = state.file.id;
        let (data, ob, blocks) = self.partial_paths(&id);
        let missing = state.file.block_count() - state.file.verified_count();
        if missing > 0 {
            return Err(StoreError::CorruptState {
                path: blocks,
                reason: format!("cannot complete {id}: {missing} blocks are not verified"),
            });
        }
        // The data is durable already: every block is recorded, and a block is recorded only
        // after a sync that began after its write (`save_partial`'s contract); what a
        // `sync_all` would add here is timestamps. The outboard is not (`begin_partial`
        // does not sync it): it is, before its name moves into `outboard/`.
        let (content, outboard) = (self.content_path(&id), self.outboard_path(&id));
        // The outboard may already be in place: a completion interrupted after moving it.
        let synced = File::open(&ob).and_then(|f| f.sync_data());
        match synced.and_then(|()| fs::rename(&ob, &outboard)) {
            Ok(()) => sync_dir(&self.root.join("outboard"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.outboard(&id).is_ok() => {}
            Err(e) => return Err(io_err("rename into place", &outboard)(e)),
        }
        fs::rename(&data, &content).map_err(io_err("rename into place", &content))?;
        sync_dir(&self.root.join("content"))?;
        let _edit = catalog_edit();
        let file = self.catalog()?;
        let cat = file.validate()?;
        if cat.find(&id).is_none() {
            let entry = Entry {
                id,
                size: state.file.size,
                weight: 0.0,
                name: state.name.clone(),
            };
            self.rewrite_catalog(&cat, &HashSet::new(), vec![entry])?;
        }
        remove_if_present(&blocks)
    }

    /// Settles what an interrupted completion left (the caller holds the store lock): a block
    /// map whose file is already in the catalog is removed; a file already moved into
    /// `content/` but not yet listed is hashed again and listed if it matches its id, or
    /// removed (to be fetched again) if not; a block map whose data is gone is removed;
    /// content and outboards that nothing lists any more (an interrupted eviction or import)
    /// are removed. Returns how many files it settled.
    pub fn recover(&self) -> Result<u64, StoreError> {
        let file = self.catalog()?;
        let cat = file.validate()?;
        let mut adopt = Vec::new();
        // Partial files still being filled: their data is there, nothing lists them yet.
        let mut filling = Vec::new();
        let mut settled = self.sweep_partials()? + self.sweep_staging()?;
        for state in self.partials()? {
            let id = state.file.id;
            let (data, _, _) = self.partial_paths(&id);
            if cat.find(&id).is_some() {
                self.remove_partial(&id)?;
                settled += 1;
            } else if !data.exists() {
                let content = self.content_path(&id);
                if content.exists() && self.check_complete(&id, state.file.size).is_ok() {
                    adopt.push(Entry {
                        id,
                        size: state.file.size,
                        weight: 0.0,
                        name: state.name.clone(),
                    });
                } else {
                    remove_if_present(&content)?;
                    remove_if_present(&self.outboard_path(&id))?;
                    self.remove_partial(&id)?;
                    settled += 1;
                }
            } else {
                filling.push(id);
            }
        }
        if !adopt.is_empty() {
            self.rewrite_catalog(&cat, &HashSet::new(), adopt.clone())?;
            for e in &adopt {
                self.remove_partial(&e.id)?;
            }
            settled += adopt.len() as u64;
        }
        // What an interrupted eviction or import left: content and outboards that nothing
        // lists (an eviction edits the catalog before it removes the files; an import moves
        // a file into place before it lists it). A partial file's outboard may already be in
        // `outboard/` (a completion interrupted after moving it), so those stay.
        let mut keep: HashSet<ContentId> = cat.entries().map(|e| e.id).collect();
        keep.extend(adopt.iter().map(|e| e.id));
        keep.extend(filling);
        let mut orphans = HashSet::new();
        for dir in ["content", "outboard"] {
            let dir = self.root.join(dir);
            let rd = match fs::read_dir(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                r => r.map_err(io_err("list", &dir))?,
            };
            for entry in rd {
                let entry = entry.map_err(io_err("list", &dir))?;
                // Names that are not ids are not the store's: left alone.
                let Some(id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| ContentId::parse(n).ok())
                else {
                    continue;
                };
                if !keep.contains(&id) {
                    remove_if_present(&entry.path())?;
                    orphans.insert(id);
                }
            }
        }
        Ok(settled + orphans.len() as u64)
    }

    /// Staging files in `.fill/tmp/` left by processes that are gone (a kill between
    /// writing a file there and renaming it into place): names carry the writer's pid
    /// (`<pid>-<n>`, `uring-probe-<pid>`), and those of a live process stay. Other names
    /// are not the store's and stay. Returns how many it removed.
    fn sweep_staging(&self) -> Result<u64, StoreError> {
        let dir = self.state_dir().join("tmp");
        let proc = Path::new("/proc");
        if !proc.join("self").exists() {
            return Ok(0); // No way to tell a live writer from a dead one.
        }
        let rd = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            r => r.map_err(io_err("list", &dir))?,
        };
        let mut removed = 0;
        for entry in rd {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(staging_pid) else {
                continue;
            };
            if pid != std::process::id() && !proc.join(pid.to_string()).exists() {
                remove_if_present(&entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// What a crash before a file's first record may leave (`begin_partial` syncs
    /// nothing): a block map that does not decode (torn or emptied) holds nothing a fill
    /// can trust, so its partial file is removed and will be fetched again; data and
    /// outboards whose map is gone are removed. Names that are not the store's stay.
    /// Returns how many partial files it removed.
    fn sweep_partials(&self) -> Result<u64, StoreError> {
        let dir = self.partial_dir();
        let rd = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            r => r.map_err(io_err("list", &dir))?,
        };
        let (mut maps, mut others) = (HashSet::new(), HashSet::new());
        for entry in rd {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let (hex, map) = match name.strip_suffix(".blocks") {
                Some(hex) => (hex, true),
                None => (name.strip_suffix(".outboard").unwrap_or(name), false),
            };
            let Ok(id) = ContentId::parse(hex) else {
                continue;
            };
            if map {
                maps.insert(id)
            } else {
                others.insert(id)
            };
        }
        let mut removed = 0;
        for id in &maps {
            if let Err(e) = self.read_partial(id) {
                tracing::warn!("{e}: the partial file is removed and will be fetched again");
                self.remove_partial(id)?;
                removed += 1;
            }
        }
        for id in others.difference(&maps) {
            self.remove_partial(id)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Evicts files: each leaves the catalog first (so nothing lists what is about to go),
    /// then its content and outboard are removed; partial files are removed whole. The
    /// caller holds the store lock.
    pub fn evict(&self, ids: &[ContentId]) -> Result<(), StoreError> {
        {
            let _edit = catalog_edit();
            let file = self.catalog()?;
            let cat = file.validate()?;
            let listed: HashSet<ContentId> = ids
                .iter()
                .copied()
                .filter(|id| cat.find(id).is_some())
                .collect();
            if !listed.is_empty() {
                self.rewrite_catalog(&cat, &listed, Vec::new())?;
            }
        }
        for id in ids {
            remove_if_present(&self.content_path(id))?;
            remove_if_present(&self.outboard_path(id))?;
            self.remove_partial(id)?;
        }
        Ok(())
    }

    /// Imports files and directories (recursively): copies each into the store, computes its
    /// outboard and id, and adds it to the catalog. Idempotent: content already held is not
    /// copied again, and keeps its first name. A file's name is its path relative to the
    /// directory argument it was found under, or its file name when given directly.
    pub fn import(
        &self,
        inputs: &[PathBuf],
        block: BlockSize,
        progress: &(dyn Fn(&Imported) + Sync),
    ) -> Result<Vec<Imported>, StoreError> {
        // The inputs first: a missing one is refused before anything (the store's
        // directory included) is created.
        let mut files = Vec::new();
        for input in inputs {
            collect_inputs(input, &mut files)?;
        }
        let _lock = self.lock()?;
        let existing = self.catalog()?;
        let existing_cat = existing.validate()?;
        let mut seen: HashSet<ContentId> = HashSet::new();
        let mut out = Vec::with_capacity(files.len());
        let mut new_entries = Vec::new();
        for (path, name) in files {
            let (id, size) = self.import_one(&path, block)?;
            let added = existing_cat.find(&id).is_none() && seen.insert(id);
            let imported = Imported {
                id,
                size,
                name,
                added,
            };
            progress(&imported);
            if added {
                new_entries.push(Entry {
                    id,
                    size,
                    weight: 0.0,
                    name: imported.name.clone(),
                });
            }
            out.push(imported);
        }
        if !new_entries.is_empty() {
            self.rewrite_catalog(&existing_cat, &HashSet::new(), new_entries)?;
        }
        Ok(out)
    }

    fn import_one(&self, src: &Path, block: BlockSize) -> Result<(ContentId, u64), StoreError> {
        let tmp = self.tmp_path();
        fs::copy(src, &tmp).map_err(io_err("copy", src))?;
        let result = (|| {
            let mapped = Mapped::open(&tmp)?;
            let ob = Outboard::compute(&mapped, block);
            drop(mapped);
            let id = ob.id();
            let content = self.content_path(&id);
            let outboard = self.outboard_path(&id);
            if !outboard.exists() {
                write_atomic(self, &outboard, &ob.to_bytes())?;
            }
            if content.exists() {
                fs::remove_file(&tmp).map_err(io_err("remove", &tmp))?;
            } else {
                File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err("sync", &tmp))?;
                fs::rename(&tmp, &content).map_err(io_err("rename into place", &content))?;
                sync_dir(&self.root.join("content"))?;
            }
            Ok((id, ob.size()))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn tmp_path(&self) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        self.state_dir().join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Writes a new catalog: `old` without `drop`, plus `add`.
    fn rewrite_catalog(
        &self,
        old: &Catalog<'_>,
        drop: &HashSet<ContentId>,
        add: Vec<Entry>,
    ) -> Result<(), StoreError> {
        let mut b = CatalogBuilder::with_capacity(old.len() + add.len(), 0);
        let path = self.catalog_path();
        let bad = |source| StoreError::Catalog {
            path: path.clone(),
            source,
        };
        for i in 0..old.len() {
            if !drop.contains(&old.id(i)) {
                b.push(old.id(i), old.size(i), old.weight(i), old.name(i))
                    .map_err(bad)?;
            }
        }
        for e in add {
            b.push(e.id, e.size, e.weight, &e.name).map_err(bad)?;
        }
        let bytes = b.finish().map_err(bad)?;
        write_atomic(self, &path, &bytes)
    }

    /// Re-hashes every complete file against its id and outboard, and every verified block of
    /// every partial file. With `repair`, bad files leave the catalog (content and outboard
    /// removed) and bad blocks are marked missing, so the next fill fetches them again.
    pub fn verify(
        &self,
        repair: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<VerifyReport, StoreError> {
        let _lock = if repair { Some(self.lock()?) } else { None };
        let cat_file = self.catalog()?;
        let cat = cat_file.validate()?;
        let mut report = VerifyReport::default();
        let mut listed = HashSet::with_capacity(cat.len());
        for i in 0..cat.len() {
            let id = cat.id(i);
            listed.insert(id);
            report.checked += 1;
            if let Err(reason) = self.check_complete(&id, cat.size(i)) {
                let name = cat.name(i).to_owned();
                // Content that still hashes to its id is good: only its outboard is lost.
                match self.outboard_from_content(&id, cat.size(i)) {
                    Some(ob) if repair => {
                        let dir = self.root.join("outboard");
                        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                        write_atomic(self, &self.outboard_path(&id), &ob.to_bytes())?;
                        report.rebuilt.push(BadFile { id, name, reason });
                    }
                    Some(_) => report.bad.push(BadFile {
                        id,
                        name,
                        reason: format!(
                            "{reason} (the content matches its id: --repair rebuilds the outboard)"
                        ),
                    }),
                    None => report.bad.push(BadFile { id, name, reason }),
                }
            }
            report.bytes += cat.size(i);
            progress(cat.size(i));
        }
        let content_dir = self.root.join("content");
        if let Ok(rd) = fs::read_dir(&content_dir) {
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if ContentId::parse(&name).map_or(true, |id| !listed.contains(&id)) {
                    report.stray.push(name);
                }
            }
        }
        report.stray.sort();
        for mut state in self.partials()? {
            let (bad_blocks, reason) = self.check_partial(&state);
            if bad_blocks.is_empty() && reason.is_none() {
                continue;
            }
            if repair {
                if reason.is_some() {
                    self.remove_partial(&state.file.id)?;
                } else {
                    for &b in &bad_blocks {
                        state.file.set_verified(b, false);
                    }
                    self.save_partial(&state)?;
                }
            }
            report.bad_blocks.push(BadBlocks {
                id: state.file.id,
                blocks: bad_blocks,
                reason,
            });
        }
        if repair && !report.bad.is_empty() {
            let drop: HashSet<ContentId> = report.bad.iter().map(|b| b.id).collect();
            // Bad content goes first, so no static server keeps serving it; a crash before
            // the catalog is rewritten leaves entries whose content is missing, which the next
            // verify reports and drops. Content before outboard: never content without one.
            for id in &drop {
                remove_if_present(&self.content_path(id))?;
                remove_if_present(&self.outboard_path(id))?;
            }
            self.rewrite_catalog(&cat, &drop, Vec::new())?;
        }
        report.repaired = repair;
        Ok(report)
    }

    fn check_complete(&self, id: &ContentId, size: u64) -> Result<(), String> {
        let path = self.content_path(id);
        let data = Mapped::open(&path).map_err(|e| chain(&e))?;
        if data.len() as u64 != size {
            return Err(format!("size is {} bytes, catalog says {size}", data.len()));
        }
        let ob = self.outboard(id).map_err(|e| chain(&e))?;
        let actual = Outboard::compute(&data, ob.block_size());
        if actual.id() != *id {
            return Err(format!("content hashes to {}", actual.id()));
        }
        Ok(())
    }

    /// The outboard of a listed file rebuilt from its content, if the content is there,
    /// of its size, and hashes to its id (in the default block size).
    fn outboard_from_content(&self, id: &ContentId, size: u64) -> Option<Outboard> {
        let data = Mapped::open(&self.content_path(id)).ok()?;
        if data.len() as u64 != size {
            return None;
        }
        let ob = Outboard::compute(&data, BlockSize::DEFAULT);
        (ob.id() == *id).then_some(ob)
    }

    /// Bad verified blocks of a partial file, or why the whole file is unusable.
    fn check_partial(&self, state: &PartialState) -> (Vec<u64>, Option<String>) {
        let id = state.file.id;
        let (data, ob_path, _) = self.partial_paths(&id);
        let ob = match fs::read(&ob_path)
            .map_err(|e| e.to_string())
            .and_then(|b| Outboard::parse(&b, id).map_err(|e| e.to_string()))
        {
            Ok(ob) => ob,
            Err(e) => return (Vec::new(), Some(format!("outboard: {e}"))),
        };
        if ob.size() != state.file.size || ob.block_size() != state.file.block {
            return (
                Vec::new(),
                Some("outboard and block map disagree on size or block size".into()),
            );
        }
        let data = match Mapped::open(&data) {
            Ok(d) if d.len() as u64 == state.file.size => d,
            Ok(d) => {
                return (
                    Vec::new(),
                    Some(format!(
                        "data is {} bytes, expected {}",
                        d.len(),
                        state.file.size
                    )),
                );
            }
            Err(e) => return (Vec::new(), Some(chain(&e))),
        };
        let bad = (0..state.file.block_count())
            .filter(|&b| state.file.is_verified(b))
            .filter(|&b| {
                let (off, len) = ob.block_range(b);
                ob.verify_block(b, &data[off as usize..(off + len) as usize])
                    .is_err()
            })
            .collect();
        (bad, None)
    }

    fn remove_partial(&self, id: &ContentId) -> Result<(), StoreError> {
        let (data, outboard, blocks) = self.partial_paths(id);
        // The block map first: without it the other two are not a partial file any more.
        for path in [blocks, outboard, data] {
            remove_if_present(&path)?;
        }
        Ok(())
    }
}

/// Files to import under `input`, with their names.
fn collect_inputs(input: &Path, out: &mut Vec<(PathBuf, String)>) -> Result<(), StoreError> {
    let meta = fs::metadata(input).map_err(io_err("stat", input))?;
    if meta.is_file() {
        let name =
            input
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| StoreError::BadInput {
                    path: input.to_owned(),
                    reason: "file name is not UTF-8".into(),
                })?;
        out.push((input.to_owned(), checked_name(input, name)?));
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(StoreError::BadInput {
            path: input.to_owned(),
            reason: "not a regular file or directory".into(),
        });
    }
    let mut stack = vec![input.to_owned()];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(io_err("stat", &path))?;
            // Symlinks are not followed: they could loop or leave the tree.
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    for path in found {
        let rel = path.strip_prefix(input).unwrap_or(&path);
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::BadInput {
                path: path.clone(),
                reason: "path is not UTF-8".into(),
            })?
            .join("/");
        let name = checked_name(&path, &name)?;
        out.push((path, name));
    }
    Ok(())
}

fn checked_name(path: &Path, name: &str) -> Result<String, StoreError> {
    check_name(name.as_bytes())
        .map(str::to_owned)
        .map_err(|e| StoreError::BadInput {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// Removes a file; one that is already gone is fine.
fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
/// A write that failed during a fill.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriteErrorRecord {
    /// Unix seconds.
    pub time: i64,
    /// The file being written.
    pub id: ContentId,
    /// The error, as the OS gave it.
    pub error: String,
}

/// Takes an exclusive lock on `path` (created if missing), waiting for its holder.
fn lock_file(path: &Path) -> Result<StoreLock, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("open lock", path))?;
    file.lock().map_err(io_err("lock", path))?;
    Ok(StoreLock { _file: file })
}

/// Reads a JSON-lines file; none when it does not exist. A last line cut short by a crash
/// (no newline) is ignored; any other line that does not parse is an error naming it.
fn read_json_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| StoreError::CorruptState {
                path: path.to_owned(),
                reason: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// Appends one JSON line and syncs it. A last line a crash cut short is dropped first, so
/// the new one starts on a line of its own.
fn append_json_line<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    }
    let mut line = serde_json::to_string(value).map_err(|e| StoreError::CorruptState {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    line.push('\n');
    if let Ok(text) = fs::read(path)
        && !text.is_empty()
        && !text.ends_with(b"\n")
    {
        let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(keep as u64))
            .map_err(io_err("truncate", path))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("open", path))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("append to", path))
}

fn write_atomic(store: &Store, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    store.create()?;
    let tmp = store.tmp_path();
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Replaces `path` with `bytes` through a rename, so no reader sees half a file, but syncs
/// nothing: for files whose loss or tearing in a crash the store settles (see
/// `begin_partial`).
fn write_replace(store: &Store, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    store.create()?;
    let tmp = store.tmp_path();
    let result = fs::write(&tmp, bytes)
        .map_err(io_err("write", &tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err("rename into place", path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The pid in a staging file's name (`<pid>-<n>` from the store, `uring-probe-<pid>` from
/// the writer's probe).
fn staging_pid(name: &str) -> Option<u32> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(pid) = name.strip_prefix("uring-probe-") {
        return digits(pid).then(|| pid.parse().ok()).flatten();
    }
    let (pid, n) = name.split_once('-')?;
    (digits(pid) && digits(n))
        .then(|| pid.parse().ok())
        .flatten()
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

fn encode_blocks(state: &PartialState) -> Vec<u8> {
    let f = &state.file;
    let mut out = Vec::with_capacity(BLOCKS_HEADER + state.name.len() + 8 * f.verified.len());
    out.extend_from_slice(&BLOCKS_MAGIC);
    out.extend_from_slice(&BLOCKS_VERSION.to_le_bytes());
    out.extend_from_slice(&f.block.log2().to_le_bytes());
    out.extend_from_slice(&f.size.to_le_bytes());
    out.extend_from_slice(&(state.name.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(state.name.as_bytes());
    for w in &f.verified {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

fn decode_blocks(bytes: &[u8], id: ContentId) -> Result<PartialState, String> {
    if bytes.len() < BLOCKS_HEADER {
        return Err(format!(
            "block map truncated: {} bytes, header is {BLOCKS_HEADER}",
            bytes.len()
        ));
    }
    if bytes[..8] != BLOCKS_MAGIC {
        return Err("not a block map: bad magic bytes".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
    let version = u32_at(8);
    if version != BLOCKS_VERSION {
        return Err(format!("unsupported block map version {version}"));
    }
    let block = BlockSize::from_log2(u32_at(12)).map_err(|e| e.to_string())?;
    let size = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    let name_len = u32_at(24) as usize;
    if u32_at(28) != 0 {
        return Err("reserved bytes are not zero".into());
    }
    let words = block.count(size).div_ceil(64);
    let expected = BLOCKS_HEADER as u128 + name_len as u128 + 8 * u128::from(words);
    if bytes.len() as u128 != expected {
        return Err(format!(
            "block map is {} bytes, header implies {expected}",
            bytes.len()
        ));
    }
    let name_end = BLOCKS_HEADER + name_len;
    let name = check_name(&bytes[BLOCKS_HEADER..name_end]).map_err(|e| format!("bad name: {e}"))?;
    let verified = bytes[name_end..]
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .collect();
    let file = PartialFile {
        id,
        size,
        block,
        verified,
    };
    // Bits past the last block must be clear.
    let count = file.block_count();
    if (count..words * 64).any(|b| file.is_verified(b)) {
        return Err("bits set past the last block".into());
    }
    Ok(PartialState {
        file,
        name: name.to_owned(),
    })
}
