//! Reporting to the fleet's control plane (`[control]` in the config): every `interval`, the
//! appliance's software version, BGP session, last turn-up checks and fill progress go to
//! `POST {url}/api/appliances/{serial}/report`; when the control plane answers that burn-in
//! starts, an `installed` appliance moves to `burn_in` and runs `on_burn_in` once (its fill).
//! The HTTP server (`http`) runs this loop beside its lifecycle loop, through [`Appliance`].

use std::sync::Arc;

use bytes::Bytes;
use fill_core::lifecycle::State;
use fill_store::control::{ControlSettings, bgp_status, post_report};
use fill_store::store::Store;

use crate::status_page::Status;

/// What the loop needs of the running server.
pub trait Appliance: Send + Sync + 'static {
    /// The appliance's status (state, checks, progress).
    fn status(&self) -> Status;
    /// Its store.
    fn store(&self) -> &Store;
    /// Re-reads the lifecycle after a transition.
    fn refresh(&self);
}

/// The software version reported.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The report's body.
fn report(status: &Status, bgp: Option<&fill_store::control::Bgp>) -> serde_json::Value {
    let checked_at = status
        .checked_at
        .as_deref()
        .and_then(|t| fill_core::duration::parse_rfc3339(t).ok());
    serde_json::json!({
        "version": VERSION,
        "bgp": bgp,
        "checked_at": checked_at,
        "checks": status.checks,
        "progress": status.progress,
    })
}

/// Reports until the task is aborted; failures are logged once each (the next report tries
/// again).
pub async fn control_loop<A: Appliance>(st: Arc<A>, c: ControlSettings) {
    let mut burn_in_started = false;
    let mut last_error: Option<String> = None;
    loop {
        let bgp = match &c.bgp_command {
            None => None,
            Some(cmd) => match bgp_status(cmd).await {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!("BGP state unknown: {e}");
                    None
                }
            },
        };
        let status = st.status();
        let body = Bytes::from(report(&status, bgp.as_ref()).to_string());
        match post_report(&c, body).await {
            Ok(answer) => {
                if last_error.take().is_some() {
                    tracing::info!("reporting to the control plane again");
                }
                if answer.start_burn_in {
                    start_burn_in(&*st, &c, status.state, &mut burn_in_started);
                }
            }
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!("cannot report to the control plane: {e}");
                }
                last_error = Some(e);
            }
        }
        tokio::time::sleep(c.interval).await;
    }
}

/// The control plane says burn-in starts: an installed appliance moves to burn-in, and the
/// burn-in command runs (once per server run).
fn start_burn_in<A: Appliance>(st: &A, c: &ControlSettings, state: State, started: &mut bool) {
    if state == State::Installed {
        match st.store().transition(
            State::BurnIn,
            unix_now(),
            "the control plane started burn-in",
        ) {
            Ok(_) => tracing::info!("burn-in started by the control plane"),
            Err(e) => tracing::warn!("cannot start burn-in: {}", fill_store::store::chain(&e)),
        }
        st.refresh();
    }
    if let Some(cmd) = c.on_burn_in.as_ref().filter(|_| !*started)
        && let Some((program, args)) = cmd.split_first()
    {
        *started = true;
        match std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => tracing::info!("burn-in fill started: {program} (pid {})", child.id()),
            Err(e) => tracing::error!("cannot start the burn-in fill {program}: {e}"),
        }
    }
}
