//! The `fill` domain, pure and deterministic.
//!
//! This crate does no I/O: no file system, no network, no clock, no unseeded randomness. Bytes,
//! times and seeds come in as values. That is what lets the server, the client and the
//! simulator share the same code.
//!
//! - [`id`]: [`ContentId`], the BLAKE3 hash of a file, exactly what `b3sum` prints.
//! - [`outboard`]: per-block chaining values that verify any block against the id.
//! - [`catalog`]: the binary catalog format, validated once, then read in place.
//! - [`delta`]: target + inventory + capacity → fetch, evict, keep.
//! - [`size`]: byte sizes as people write them; [`duration`]: durations likewise.
//! - [`source`]: fill sources (bandwidth, windows, costs) and the escalation policy.
//! - [`plan`]: minimum-cost plans over sources, slots, windows and an ingress cap.
//! - [`rng`]: splitmix64, the seeded generator every seeded thing uses.
//! - [`blockmap`]: which blocks of a file still filling a site peer holds, as it serves it.
//! - [`fill`]: the fill as a sans-IO state machine (events in, actions out), and a seeded
//!   simulator that runs it against stores and sources that lie, fail and crash.
//! - [`lifecycle`]: an appliance's states, allowed transitions, events and turn-up checks.
//! - [`sim`]: what install delay costs: a seeded catalog churn model run through the real
//!   delta and planner.
//!
//! Data flows: bytes of a catalog → [`catalog::CatalogView::open`] (header) →
//! [`catalog::CatalogView::validate`] → [`catalog::Catalog`] → [`delta::compute`] with an
//! [`delta::Inventory`] → [`delta::Delta`].

pub mod blockmap;
pub mod catalog;
pub mod delta;
pub mod duration;
pub mod fill;
pub mod id;
pub mod lifecycle;
pub mod outboard;
pub mod plan;
pub mod rng;
pub mod sim;
pub mod size;
pub mod source;
pub mod text;

pub use catalog::{Catalog, CatalogBuilder, CatalogError, CatalogView, Entry};
pub use delta::{Delta, DeltaError, Inventory, PartialFile};
pub use id::ContentId;
pub use outboard::{BlockSize, Outboard};
