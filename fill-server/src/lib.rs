//! `fill-server`: owns the on-disk store and (soon) serves it over HTTP.
//!
//! - [`store`]: the store directory (`content/`, `outboard/`, `catalog`, `.fill/`): import,
//!   list, verify, partial-file state.
//! - [`mapped`]: read-only memory maps, the crate's only `unsafe`.

pub mod mapped;
pub mod store;
