//! `fill-store`: the store on disk, which `fill-server` serves and `fill` fills, and what
//! the appliance's two programs share about it.
//!
//! - [`store`]: the store directory (`content/`, `outboard/`, `catalog`, `.fill/`): import,
//!   list, verify and repair, recover, evict, partial files and their block maps, the
//!   appliance journal (lifecycle events, write errors, maintenance windows).
//! - [`bounded`]: reading files from outside within a stated limit.
//! - [`mapped`]: read-only memory maps, the crate's only `unsafe`.
//! - [`sources`]: the sources file (TOML) the fill reads and the sources check asks.
//! - [`config`]: the appliance's configuration file (`fill-server --config`, and
//!   `fill appliance checks --config`).
//! - [`lifecycle`]: the turn-up checks measured on a real store (fill, offload, store
//!   health, sources) and the webhook delivery of recorded events; the states and verdicts
//!   themselves are `fill_core::lifecycle`'s.
//!
//! Nothing here serves HTTP or parses command lines: the binaries do.

pub mod bounded;
pub mod config;
pub mod control;
pub mod last_fill;
pub mod lifecycle;
pub mod logging;
pub mod mapped;
pub mod signal;
pub mod sources;
pub mod store;

/// `m`'s guard, also when a thread panicked holding it: the binaries' mutexes guard tables
/// and counters that stay usable, and one panicked task must not take every other down.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
