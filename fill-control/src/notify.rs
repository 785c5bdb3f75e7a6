//! What each step of the workflow tells whom: the emails' subjects and bodies, the roles
//! they go to, and how to fix a failing turn-up check. Text only; the outbox and SMTP are
//! `mail`'s.

use std::fmt::Write as _;

use fill_core::lifecycle::State;

/// Contact roles.
pub const ROLES: [&str; 4] = ["engineering", "noc", "shipping", "customs"];

/// A step that sends email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A site survey was received.
    SurveyReceived,
    /// The appliance is being pre-filled: shipping is being prepared.
    ShippingPrepared,
    /// Shipped, with carrier and tracking number.
    Shipped,
    /// Delivered at the site.
    Delivered,
    /// Installed and reporting: burn-in started.
    BurnInStarted,
    /// A run of the turn-up checks passed.
    ChecksPassed,
    /// A run of the turn-up checks failed: each failure with its fix.
    ChecksFailed,
    /// Live.
    Live,
    /// Drained.
    Drained,
    /// A rolling upgrade took the appliance out (drain, then the new version).
    UpgradeStarted,
    /// The upgraded appliance passed its checks and is live again.
    UpgradeFinished,
    /// A contact's account was made: the one-time link that sets its password.
    Invitation,
    /// Once a day while a delivered appliance waits uninstalled: what waiting costs.
    WaitingReminder,
    /// To ops: an upgrade failed; the rollout stopped for the site.
    AlertUpgradeFailed,
    /// To ops: an appliance stopped reporting.
    AlertSilent,
    /// To ops: a live appliance's check failed.
    AlertCheckFailed,
}

impl Step {
    /// The step a transition announces, if any.
    pub fn of_transition(from: State, to: State) -> Option<Self> {
        match (from, to) {
            (_, State::Prefilling) => Some(Self::ShippingPrepared),
            (_, State::InTransit) => Some(Self::Shipped),
            (_, State::Delivered) => Some(Self::Delivered),
            (State::Installed, State::BurnIn) => Some(Self::BurnInStarted),
            (State::BurnIn, State::Live) => Some(Self::Live),
            (_, State::Drained) => Some(Self::Drained),
            _ => None,
        }
    }

    /// Its name in the outbox (`kind`).
    pub fn kind(self) -> &'static str {
        match self {
            Self::SurveyReceived => "survey_received",
            Self::ShippingPrepared => "shipping_prepared",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::BurnInStarted => "burn_in_started",
            Self::ChecksPassed => "checks_passed",
            Self::ChecksFailed => "checks_failed",
            Self::Live => "live",
            Self::Drained => "drained",
            Self::UpgradeStarted => "upgrade_started",
            Self::UpgradeFinished => "upgrade_finished",
            Self::Invitation => "invitation",
            Self::WaitingReminder => "waiting_reminder",
            Self::AlertUpgradeFailed => "alert_upgrade_failed",
            Self::AlertSilent => "alert_silent",
            Self::AlertCheckFailed => "alert_check_failed",
        }
    }

    /// The contact roles it goes to (none: it goes to ops, or to one person).
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Self::SurveyReceived => &["engineering", "noc", "shipping"],
            Self::ShippingPrepared => &["shipping", "customs"],
            Self::Shipped => &["shipping", "customs", "engineering"],
            Self::Delivered => &["shipping", "engineering"],
            Self::BurnInStarted | Self::ChecksPassed | Self::ChecksFailed | Self::Live => {
                &["engineering", "noc"]
            }
            Self::Drained | Self::UpgradeStarted | Self::UpgradeFinished => &["noc", "engineering"],
            Self::WaitingReminder => &["engineering"],
            Self::Invitation
            | Self::AlertUpgradeFailed
            | Self::AlertSilent
            | Self::AlertCheckFailed => &[],
        }
    }
}

/// What an email is about.
#[derive(Debug, Clone)]
pub struct Context {
    /// The site.
    pub site: String,
    /// The appliance, if the email is about one.
    pub serial: Option<String>,
    /// More: a tracking number, check results.
    pub detail: String,
}

/// How to fix a failing check, by its name.
pub fn fix(check: &str) -> &'static str {
    match check {
        "fill" => {
            "The burn-in fill has not completed. It runs inside the fill window; if it has \
             not progressed for a day, check that the appliance reaches its fill sources \
             (the sources check) and has free disk space (store_health)."
        }
        "offload" => {
            "The appliance holds too little of the region's demand. This follows the fill; \
             if the fill is complete, its capacity may be too small for the region's target: \
             contact operations."
        }
        "store_health" => {
            "The store reported disk errors, verification failures or too little free space. \
             Check the disks' health (SMART), then contact operations to re-verify the store."
        }
        "sources" => {
            "The appliance cannot reach one of its fill sources. Check the firewall and the \
             routes from the appliance's address to the sources on TCP port 80/443."
        }
        "served_content" => {
            "Files failed re-verification and are withdrawn. They will be fetched again by \
             the next fill; if it repeats, a disk is failing: check its health."
        }
        _ => "Contact operations with this message.",
    }
}

/// The check results (name, passed, detail) as lines, a failure with its fix.
pub fn check_lines<'a>(checks: impl IntoIterator<Item = (&'a str, bool, &'a str)>) -> String {
    let mut s = String::new();
    for (name, passed, detail) in checks {
        let _ = writeln!(
            s,
            "- {name}: {}{}",
            if passed { "passed" } else { "FAILED" },
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            }
        );
        if !passed {
            let _ = writeln!(s, "  How to fix it: {}", fix(name));
        }
    }
    s
}

/// The subject and body of a step's email.
pub fn render(step: Step, ctx: &Context) -> (String, String) {
    let what = match &ctx.serial {
        Some(serial) => format!("appliance {serial} at {}", ctx.site),
        None => format!("site {}", ctx.site),
    };
    let (subject, lead) = match step {
        Step::SurveyReceived => (
            format!("Site survey received for {}", ctx.site),
            "We received your site survey. Operations will allocate appliances to it.",
        ),
        Step::ShippingPrepared => (
            format!("Shipping prepared for {what}"),
            "The appliance is being filled with its region's catalog at our station and will ship soon.",
        ),
        Step::Shipped => (format!("Shipped: {what}"), "The appliance has shipped."),
        Step::Delivered => (
            format!("Delivered: {what}"),
            "The appliance was delivered. Please install it and bring up its BGP session; burn-in starts by itself once it reports in.",
        ),
        Step::BurnInStarted => (
            format!("Burn-in started: {what}"),
            "The appliance reported in with its BGP session up: its burn-in fill has started. Turn-up checks will run periodically; you will receive their results.",
        ),
        Step::ChecksPassed => (
            format!("Turn-up checks passed: {what}"),
            "Every turn-up check passed.",
        ),
        Step::ChecksFailed => (
            format!("Turn-up check failed: {what}"),
            "A turn-up check failed. Each failure below says how to fix it.",
        ),
        Step::Live => (
            format!("Live: {what}"),
            "Every turn-up check passed and offload is acceptable: the appliance is live and serving.",
        ),
        Step::Drained => (
            format!("Drained: {what}"),
            "The appliance is drained: it serves nothing and may be powered down for maintenance.",
        ),
        Step::UpgradeStarted => (
            format!("Upgrade started: {what}"),
            "A software upgrade started in the site's off-peak window: the appliance drains, \
             installs the new version, and runs its turn-up checks again before serving. The \
             other appliances of the site keep serving.",
        ),
        Step::UpgradeFinished => (
            format!("Upgrade finished: {what}"),
            "The appliance runs the new version, passed its turn-up checks, and is live again.",
        ),
        Step::Invitation => (
            format!("Your account for site {}", ctx.site),
            "You were named a contact of this site in its survey: an account was made for you \
             on the fleet's portal. Open the link below within 7 days to choose your password \
             (it works once).",
        ),
        Step::WaitingReminder => (
            format!("Waiting to be installed: {what}"),
            "The appliance was delivered and is not installed yet. Its content ages while it \
             waits: the region's catalog changes every day, and what the appliance lacks is \
             fetched at burn-in, at a cost. Please install it and bring up its BGP session.",
        ),
        Step::AlertUpgradeFailed => (
            format!("ALERT upgrade failed: {what}"),
            "An upgrade failed. The rollout is stopped for this site: no other appliance of \
             the site will be taken out until it is looked at. The appliance stays out of \
             service.",
        ),
        Step::AlertSilent => (
            format!("ALERT silent: {what}"),
            "The appliance stopped reporting to the control plane.",
        ),
        Step::AlertCheckFailed => (
            format!("ALERT check failed on a live appliance: {what}"),
            "A turn-up check failed on a live appliance.",
        ),
    };
    let mut body = format!("{lead}\n");
    if !ctx.detail.is_empty() {
        let _ = write!(body, "\n{}\n", ctx.detail.trim_end());
    }
    body.push_str("\n-- \nfill control plane\n");
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_carries_its_fix() {
        let lines = check_lines([
            ("fill", true, ""),
            ("sources", false, "origin: connection refused"),
        ]);
        assert!(lines.contains("- fill: passed\n"), "{lines}");
        assert!(lines.contains("- sources: FAILED (origin: connection refused)"));
        assert!(lines.contains("How to fix it: The appliance cannot reach"));
        let ctx = Context {
            site: "FRA-3".into(),
            serial: Some("oca-1".into()),
            detail: lines,
        };
        let (subject, body) = render(Step::ChecksFailed, &ctx);
        assert_eq!(subject, "Turn-up check failed: appliance oca-1 at FRA-3");
        assert!(body.contains("How to fix it"));
        assert_eq!(
            Step::of_transition(State::Installed, State::BurnIn),
            Some(Step::BurnInStarted)
        );
        assert_eq!(Step::of_transition(State::Live, State::Draining), None);
    }
}
