//! `fill-server`: owns the on-disk store and serves it over HTTP.
//!
//! - [`http`]: the hyper server (docs/protocol.md); [`config`]: its TOML configuration;
//!   [`metrics`]: Prometheus metrics.
//! - [`store`]: the store directory (`content/`, `outboard/`, `catalog`, `.fill/`): import,
//!   list, verify, partial-file state.
//! - [`mapped`]: read-only memory maps, the crate's only `unsafe`.

pub mod config;
pub mod http;
pub mod mapped;
pub mod metrics;
pub mod store;
