//! What every request handler shares (the API's and the portal's): the database, the
//! clock, and the settings requests need.

use crate::db::Db;

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    /// The database.
    pub db: Db,
    /// The clock (unix seconds): the wall clock, or a test's.
    pub clock: fn() -> i64,
    /// How long an installed appliance may go without reporting before it is flagged
    /// `silent`, seconds.
    pub silence: i64,
    /// The control plane's public base URL, for links in emails (invitations).
    pub public_url: String,
    /// How waiting is priced.
    pub pricing: crate::waiting::Pricing,
    /// The metrics.
    pub metrics: crate::metrics::Metrics,
    /// The bearer token `GET /metrics` needs; without one `/metrics` is off.
    pub metrics_token: Option<String>,
    /// The fleet page's order by attention, kept a moment.
    pub fleet_order: crate::views::FleetOrder,
}

/// The wall clock, unix seconds.
pub fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
