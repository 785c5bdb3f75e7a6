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
        "state": status.state.name(),
    })
}

/// Reports until the task is aborted; failures are logged once each (the next report tries
/// again).
pub async fn control_loop<A: Appliance>(st: Arc<A>, c: ControlSettings) {
    let mut burn_in_started = false;
    // Whether this loop drained the appliance (only such a drain is undone here).
    let mut drained_here = false;
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
                follow_drain(&*st, answer.drain, status.state, &mut drained_here);
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

/// The control plane asks for a drain: a serving appliance drains (its lifecycle loop then
/// finishes the requests in flight and records `drained`, which the next report says).
/// When the control plane no longer asks, a drain it asked for is undone.
fn follow_drain<A: Appliance>(st: &A, drain: bool, state: State, drained_here: &mut bool) {
    let moved = if drain && state.serves() {
        st.store()
            .transition(
                State::Draining,
                unix_now(),
                "drain asked by the control plane",
            )
            .map(|_| *drained_here = true)
    } else if !drain && *drained_here && matches!(state, State::Draining | State::Drained) {
        st.store()
            .undrain(unix_now(), "undrain asked by the control plane")
            .map(|_| *drained_here = false)
    } else {
        return;
    };
    match moved {
        Ok(()) => tracing::info!(
            "{} by the control plane",
            if drain { "draining" } else { "undrained" }
        ),
        Err(e) => tracing::warn!(
            "cannot follow the control plane's drain: {}",
            fill_store::store::chain(&e)
        ),
    }
    st.refresh();
}
