//! Reporting to the fleet's control plane (`[control]` in the config): every `interval`, the
//! appliance's software version, BGP session, last turn-up checks and fill progress go to
//! `POST {url}/api/appliances/{serial}/report`; when the control plane answers that burn-in
//! starts, an `installed` appliance (or one back from an upgrade's maintenance) moves to
//! `burn_in`, runs its checks, and runs `on_burn_in` once (its fill). Told to drain, it
//! drains; told to upgrade, a drained appliance enters maintenance and runs its upgrade
//! command, and reports what it then runs (or why the upgrade failed). The HTTP server
//! (`http`) runs this loop beside its lifecycle loop, through [`Appliance`].

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
    /// Runs the turn-up checks soon (rather than at the next interval).
    fn recheck(&self);
}

/// The software version reported.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The report's body.
fn report(
    status: &Status,
    bgp: Option<&fill_store::control::Bgp>,
    upgrade: &Upgrade,
) -> serde_json::Value {
    let checked_at = status.checked_at;
    let failed = upgrade
        .failed
        .as_ref()
        .map(|(version, error)| serde_json::json!({"version": version, "error": error}));
    serde_json::json!({
        "version": upgrade.version,
        "bgp": bgp,
        "checked_at": checked_at,
        "checks": status.checks,
        "progress": status.progress,
        "state": status.state.name(),
        "upgrade_failed": failed,
    })
}

/// What the loop knows of upgrades.
#[derive(Debug, Default)]
struct Upgrade {
    /// The version it runs, as reported.
    version: String,
    /// The version whose upgrade command ran (or runs) in this process.
    tried: Option<String>,
    /// The upgrade command running.
    running: Option<tokio::task::JoinHandle<Result<(), String>>>,
    /// The last upgrade that failed: version and why.
    failed: Option<(String, String)>,
}

impl Upgrade {
    /// The installed version: what the version command prints, or this binary's.
    async fn read_version(&mut self, c: &ControlSettings) {
        self.version = match &c.version_command {
            None => VERSION.to_owned(),
            Some(cmd) => match fill_store::control::installed_version(cmd).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("{e}; reporting {VERSION}");
                    VERSION.to_owned()
                }
            },
        };
    }

    /// Told to install `version`: a drained appliance enters maintenance; one in
    /// maintenance runs the upgrade command (once per version in this process).
    fn follow<A: Appliance>(&mut self, st: &A, c: &ControlSettings, version: &str, state: State) {
        if state == State::Drained {
            let why = format!("upgrade to {version} asked by the control plane");
            if let Err(e) = st.store().transition(State::Maintenance, unix_now(), &why) {
                tracing::warn!("cannot enter maintenance: {}", fill_store::store::chain(&e));
                return;
            }
            st.refresh();
        } else if state != State::Maintenance {
            return;
        }
        if self.tried.as_deref() == Some(version) || self.version == version {
            return;
        }
        self.tried = Some(version.to_owned());
        self.failed = None;
        let Some(cmd) = c.upgrade_command.clone() else {
            self.failed = Some((
                version.to_owned(),
                "no [control] upgrade_command is configured".into(),
            ));
            return;
        };
        tracing::info!("upgrading to {version}: {}", cmd.join(" "));
        let (version, timeout) = (version.to_owned(), c.upgrade_timeout);
        self.running = Some(tokio::spawn(async move {
            fill_store::control::run_upgrade(&cmd, &version, timeout).await
        }));
    }

    /// When the upgrade command has ended: the version now installed, or why it failed.
    async fn settle(&mut self, c: &ControlSettings) {
        if !self.running.as_ref().is_some_and(|h| h.is_finished()) {
            return;
        }
        let Some(handle) = self.running.take() else {
            return;
        };
        let tried = self.tried.clone().unwrap_or_default();
        let outcome = handle
            .await
            .unwrap_or_else(|e| Err(format!("the upgrade task failed: {e}")));
        self.read_version(c).await;
        let failed = match outcome {
            Err(e) => Some(e),
            Ok(()) if self.version != tried => Some(format!(
                "the upgrade command succeeded but the installed version is {}",
                self.version
            )),
            Ok(()) => None,
        };
        match &failed {
            Some(e) => tracing::error!("upgrade to {tried} failed: {e}"),
            None => tracing::info!("upgraded to {tried}"),
        }
        self.failed = failed.map(|e| (tried, e));
    }
}

/// Reports until the task is aborted; failures are logged once each (the next report tries
/// again).
pub async fn control_loop<A: Appliance>(st: Arc<A>, c: ControlSettings) {
    let mut burn_in_started = false;
    // Whether this loop drained the appliance (only such a drain is undone here).
    let mut drained_here = false;
    let mut last_error: Option<String> = None;
    let mut upgrade = Upgrade::default();
    upgrade.read_version(&c).await;
    loop {
        upgrade.settle(&c).await;
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
        let body = Bytes::from(report(&status, bgp.as_ref(), &upgrade).to_string());
        match post_report(&c, body).await {
            Ok(answer) => {
                if last_error.take().is_some() {
                    tracing::info!("reporting to the control plane again");
                }
                let mut state = status.state;
                if let Some(v) = &answer.upgrade {
                    upgrade.follow(&*st, &c, v, state);
                    state = st.status().state;
                }
                if answer.start_burn_in {
                    start_burn_in(&*st, &c, state, &mut burn_in_started);
                    if state == State::Maintenance {
                        // Back from an upgrade: a later drain is a new one.
                        drained_here = false;
                    }
                    state = st.status().state;
                }
                follow_drain(&*st, answer.drain, state, &mut drained_here);
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

/// The control plane says burn-in starts: an installed appliance (or one in an upgrade's
/// maintenance) moves to burn-in and runs its checks, and the burn-in command runs (once
/// per server run).
fn start_burn_in<A: Appliance>(st: &A, c: &ControlSettings, state: State, started: &mut bool) {
    if matches!(state, State::Installed | State::Maintenance) {
        let why = if state == State::Installed {
            "the control plane started burn-in"
        } else {
            "upgraded: the control plane started burn-in"
        };
        match st.store().transition(State::BurnIn, unix_now(), why) {
            Ok(_) => tracing::info!("{why}"),
            Err(e) => tracing::warn!("cannot start burn-in: {}", fill_store::store::chain(&e)),
        }
        st.refresh();
        st.recheck();
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
