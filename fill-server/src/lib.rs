//! `fill-server`: owns the on-disk store and serves it over HTTP.
//!
//! - [`http`]: the hyper server (docs/protocol.md); [`config`]: its TOML configuration;
//!   [`metrics`]: Prometheus metrics.
//! - [`store`]: the store directory (`content/`, `outboard/`, `catalog`, `.fill/`): import,
//!   list, verify, partial-file state.
//! - [`mapped`]: read-only memory maps, the crate's only `unsafe`.
//! - [`sources`]: the sources file (TOML) the client fills from.

pub mod config;
pub mod http;
pub mod lifecycle;
pub mod mapped;
pub mod metrics;
pub mod sources;
pub mod status_page;
pub mod store;
