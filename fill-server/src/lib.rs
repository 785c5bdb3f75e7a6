//! `fill-server`: serves a store (`fill_store`) over HTTP.
//!
//! - [`control`]: reporting to the fleet's control plane (`[control]`).
//! - [`http`]: the hyper server (docs/protocol.md), and the lifecycle loop it runs.
//! - [`metrics`]: Prometheus metrics.
//! - [`relay`]: the recorded, re-verified blocks of files still filling, for site peers.
//! - [`served`]: what may be served: listed files whose re-verified blocks match.
//! - [`status_page`]: the appliance's `/status` page.

pub mod control;
pub mod http;
pub mod metrics;
pub mod relay;
pub mod served;
pub mod status_page;
