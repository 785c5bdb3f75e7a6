//! An appliance's lifecycle: its states, the transitions allowed between them, and the
//! events that record them. Pure: times come in as values; the store keeps the events.
//!
//! ```text
//! allocated → prefilling → in_transit → delivered → installed → burn_in → live
//!                                                                  ↑   ↓     ↓
//!                                                                  │ draining ← (drain)
//!                                                                  │   ↓
//!                                                    maintenance ← drained
//!                                                  (→ burn_in)       (undrain: back to the
//!                                                                     state before the drain)
//! any state but burn_in, live, draining → retired
//! ```

use std::fmt;
use std::str::FromStr;

/// Where an appliance is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Assigned to a site, nothing on it yet.
    Allocated,
    /// Being filled at the factory.
    Prefilling,
    /// Shipped.
    InTransit,
    /// At the site, not yet racked.
    Delivered,
    /// Racked and connected.
    Installed,
    /// Filling to the current target; turn-up checks run.
    BurnIn,
    /// Serving.
    Live,
    /// Finishing in-flight requests, refusing new ones.
    Draining,
    /// Serving nothing.
    Drained,
    /// Under maintenance.
    Maintenance,
    /// Out of service for good.
    Retired,
}

/// Every state, in the order of the tracking diagram.
pub const STATES: [State; 11] = [
    State::Allocated,
    State::Prefilling,
    State::InTransit,
    State::Delivered,
    State::Installed,
    State::BurnIn,
    State::Live,
    State::Draining,
    State::Drained,
    State::Maintenance,
    State::Retired,
];

impl State {
    /// The name, exactly as in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allocated => "allocated",
            Self::Prefilling => "prefilling",
            Self::InTransit => "in_transit",
            Self::Delivered => "delivered",
            Self::Installed => "installed",
            Self::BurnIn => "burn_in",
            Self::Live => "live",
            Self::Draining => "draining",
            Self::Drained => "drained",
            Self::Maintenance => "maintenance",
            Self::Retired => "retired",
        }
    }

    /// Whether content requests are served in this state.
    pub fn serves(self) -> bool {
        matches!(self, Self::BurnIn | Self::Live)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a lifecycle operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// Not a state name.
    #[error(
        "unknown state {0:?}: expected one of allocated, prefilling, in_transit, delivered, installed, burn_in, live, draining, drained, maintenance, retired"
    )]
    UnknownState(String),
    /// The transition is not allowed.
    #[error("cannot go from {from} to {to}: {why}")]
    Forbidden {
        /// Current state.
        from: State,
        /// Asked state.
        to: State,
        /// What is allowed instead.
        why: String,
    },
    /// A recorded event does not follow from the one before it.
    #[error("event {index} goes from {from} but the appliance was {was}")]
    Broken {
        /// Index of the event.
        index: usize,
        /// Its `from`.
        from: State,
        /// The state before it.
        was: State,
    },
}

impl FromStr for State {
    type Err = LifecycleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        STATES
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| LifecycleError::UnknownState(s.to_owned()))
    }
}

/// The states reachable from `from` in one step (undrain aside: see [`Lifecycle::undrain`]).
pub fn next_states(from: State) -> Vec<State> {
    use State::*;
    let mut v = match from {
        Allocated => vec![Prefilling],
        Prefilling => vec![InTransit],
        InTransit => vec![Delivered],
        Delivered => vec![Installed],
        Installed => vec![BurnIn],
        BurnIn => vec![Live, Draining],
        Live => vec![Draining],
        Draining => vec![Drained],
        Drained => vec![Maintenance],
        Maintenance => vec![BurnIn],
        Retired => vec![],
    };
    if !matches!(from, BurnIn | Live | Draining | Retired) {
        v.push(Retired);
    }
    v
}

/// One transition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Unix seconds.
    pub time: i64,
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Why, in words.
    pub reason: String,
}

/// An appliance's state, rebuilt from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    state: State,
    /// The state a drain started from, while draining or drained.
    before_drain: Option<State>,
}

impl Default for Lifecycle {
    /// A store with no recorded lifecycle (an origin, a tier) is live.
    fn default() -> Self {
        Self {
            state: State::Live,
            before_drain: None,
        }
    }
}

impl Lifecycle {
    /// Replays recorded events; each must start where the one before ended. No events: live.
    pub fn replay(events: &[Event]) -> Result<Self, LifecycleError> {
        let Some(first) = events.first() else {
            return Ok(Self::default());
        };
        let mut l = Self {
            state: first.from,
            before_drain: None,
        };
        for (index, e) in events.iter().enumerate() {
            if e.from != l.state {
                return Err(LifecycleError::Broken {
                    index,
                    from: e.from,
                    was: l.state,
                });
            }
            l.apply(e.to);
        }
        Ok(l)
    }

    /// The first event of a lifecycle: the appliance is allocated (`from` and `to` are both
    /// `allocated`). Only for an appliance with no recorded events.
    pub fn start(time: i64, reason: &str) -> (Self, Event) {
        let l = Self {
            state: State::Allocated,
            before_drain: None,
        };
        let e = Event {
            time,
            from: State::Allocated,
            to: State::Allocated,
            reason: reason.to_owned(),
        };
        (l, e)
    }

    /// A lifecycle at a state already recorded elsewhere (a database row holding the state
    /// and, while draining or drained, the state the drain started from).
    pub fn resume(state: State, before_drain: Option<State>) -> Self {
        Self {
            state,
            before_drain: before_drain
                .filter(|_| matches!(state, State::Draining | State::Drained)),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The state a drain started from, while draining or drained.
    pub fn before_drain(&self) -> Option<State> {
        self.before_drain
    }

    fn apply(&mut self, to: State) {
        if to == State::Draining && self.state != State::Draining {
            self.before_drain = Some(self.state);
        }
        if !matches!(to, State::Draining | State::Drained) {
            self.before_drain = None;
        }
        self.state = to;
    }

    /// A transition to `to`, if allowed: the event to record (and the state is updated).
    pub fn transition(
        &mut self,
        to: State,
        time: i64,
        reason: &str,
    ) -> Result<Event, LifecycleError> {
        let from = self.state;
        let undrain =
            matches!(from, State::Draining | State::Drained) && Some(to) == self.before_drain;
        if !undrain && !next_states(from).contains(&to) {
            let allowed: Vec<&str> = next_states(from).into_iter().map(State::name).collect();
            return Err(LifecycleError::Forbidden {
                from,
                to,
                why: if allowed.is_empty() {
                    format!("{from} is final")
                } else {
                    format!("from {from} the next states are {}", allowed.join(", "))
                },
            });
        }
        self.apply(to);
        Ok(Event {
            time,
            from,
            to,
            reason: reason.to_owned(),
        })
    }

    /// Back to the state before the drain (from draining or drained).
    pub fn undrain(&mut self, time: i64, reason: &str) -> Result<Event, LifecycleError> {
        match self.before_drain {
            Some(back) if matches!(self.state, State::Draining | State::Drained) => {
                self.transition(back, time, reason)
            }
            _ => Err(LifecycleError::Forbidden {
                from: self.state,
                to: State::Live,
                why: "undrain applies only while draining or drained".into(),
            }),
        }
    }
}

/// One turn-up check's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    /// Its name: fill, offload, store_health, sources (and served_content, when the server
    /// withdrew files).
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What an operator can act on.
    pub detail: String,
}

/// The offload share (held target weight ÷ total) that turn-up needs by default.
pub const DEFAULT_OFFLOAD_THRESHOLD: f64 = 0.9;

/// The fill check: every target byte complete, and no block failing verification.
pub fn fill_check(complete_bytes: u64, target_bytes: u64, bad_blocks: u64) -> Check {
    let share = if target_bytes == 0 {
        1.0
    } else {
        complete_bytes as f64 / target_bytes as f64
    };
    let passed = complete_bytes >= target_bytes && bad_blocks == 0;
    let detail = if bad_blocks > 0 {
        format!(
            "{bad_blocks} blocks fail verification: run `fill store verify --repair` and fill again"
        )
    } else if passed {
        format!(
            "all {} of the target are complete",
            crate::size::format_size(target_bytes)
        )
    } else {
        format!(
            "{:.1}% of the target's bytes are complete ({} of {}): the fill is not done",
            share * 100.0,
            crate::size::format_size(complete_bytes),
            crate::size::format_size(target_bytes)
        )
    };
    Check {
        name: "fill",
        passed,
        detail,
    }
}

/// A target's demand, the one definition of offload: each file weighs its popularity
/// weight, or its bytes when the catalog has no weights at all (every file 0), and offload
/// is the held share of the total (1.0 for an empty target).
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    by_bytes: bool,
    total: f64,
}

impl Demand {
    /// The demand of `target`.
    pub fn of(target: &crate::Catalog<'_>) -> Self {
        let by_bytes = target.total_weight() <= 0.0;
        let total = if by_bytes {
            target.total_size() as f64
        } else {
            target.total_weight()
        };
        Self { by_bytes, total }
    }

    /// The demand of a file of `size` bytes and popularity `weight`.
    pub fn weight(&self, size: u64, weight: f64) -> f64 {
        if self.by_bytes { size as f64 } else { weight }
    }

    /// The target's whole demand.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Offload: the share of the demand that `held` (a sum of [`Demand::weight`]s) serves.
    pub fn share(&self, held: f64) -> f64 {
        offload_share(held, self.total)
    }
}

/// `held ÷ total`, 1.0 when there is no demand at all.
pub fn offload_share(held: f64, total: f64) -> f64 {
    if total > 0.0 {
        (held / total).min(1.0)
    } else {
        1.0
    }
}

/// The offload check: the share of the target's weight held must reach `threshold`.
pub fn offload_check(held_weight: f64, total_weight: f64, threshold: f64) -> Check {
    let share = offload_share(held_weight, total_weight);
    let passed = share >= threshold;
    Check {
        name: "offload",
        passed,
        detail: format!(
            "holds {:.1}% of the target's demand (weight), {} the {:.0}% needed",
            share * 100.0,
            if passed { "at least" } else { "below" },
            threshold * 100.0
        ),
    }
}

/// A scheduled maintenance: the appliance drains at `start` and stays in maintenance until
/// `start + duration`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MaintenanceWindow {
    /// Unix seconds.
    pub start: i64,
    /// Seconds, from 3 hours to 30 days.
    pub duration: i64,
    /// Why, in words.
    pub reason: String,
}

impl MaintenanceWindow {
    /// Shortest window: 3 hours.
    pub const MIN: i64 = 3 * 3600;
    /// Longest window: 30 days.
    pub const MAX: i64 = 30 * 86400;

    /// A window from `start` for `duration` (like `6h`, `2d`: 3 hours to 30 days).
    pub fn new(start: i64, duration: &str, reason: &str) -> Result<Self, String> {
        let d = crate::duration::parse_duration(duration).map_err(|e| format!("duration: {e}"))?;
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        if !(Self::MIN..=Self::MAX).contains(&secs) {
            return Err(format!(
                "duration {duration:?} is not between 3h and 30d (a maintenance window)"
            ));
        }
        if reason.len() > 500 || reason.chars().any(char::is_control) {
            return Err("reason: at most 500 characters, no control characters".into());
        }
        Ok(Self {
            start,
            duration: secs,
            reason: reason.to_owned(),
        })
    }

    /// Unix seconds when it ends.
    pub fn end(&self) -> i64 {
        self.start.saturating_add(self.duration)
    }

    /// Whether `now` is inside it.
    pub fn contains(&self, now: i64) -> bool {
        self.start <= now && now < self.end()
    }
}

/// What the lifecycle loop should do next on its own, given the recorded events, the
/// scheduled windows, and whether requests are still in flight. Pure: the caller acts.
pub fn next_step(
    events: &[Event],
    windows: &[MaintenanceWindow],
    now: i64,
    in_flight: u64,
) -> Option<(State, String)> {
    let l = Lifecycle::replay(events).ok()?;
    let window = windows.iter().find(|w| w.contains(now));
    match l.state() {
        State::BurnIn | State::Live => window.map(|w| {
            (
                State::Draining,
                format!(
                    "maintenance window {} for {}: {}",
                    crate::duration::format_rfc3339(w.start),
                    crate::duration::human_secs(w.duration),
                    w.reason
                ),
            )
        }),
        State::Draining if in_flight == 0 => Some((State::Drained, "no request in flight".into())),
        State::Drained => window.map(|w| {
            (
                State::Maintenance,
                format!(
                    "maintenance window until {}",
                    crate::duration::format_rfc3339(w.end())
                ),
            )
        }),
        State::Maintenance => {
            // Only a maintenance the loop started (inside a window) ends on its own.
            let entered = events.last().filter(|e| e.to == State::Maintenance)?;
            let w = windows.iter().find(|w| w.contains(entered.time))?;
            (now >= w.end()).then(|| {
                (
                    State::BurnIn,
                    "maintenance window over: burn-in checks again".into(),
                )
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in STATES {
            assert_eq!(s.name().parse::<State>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.name())
            );
        }
        assert!(matches!(
            "Live".parse::<State>(),
            Err(LifecycleError::UnknownState(_))
        ));
    }

    #[test]
    fn the_happy_path_and_every_allowed_step() {
        let mut l = Lifecycle::replay(&[Event {
            time: 0,
            from: State::Allocated,
            to: State::Prefilling,
            reason: "factory".into(),
        }])
        .unwrap();
        let path = [
            State::InTransit,
            State::Delivered,
            State::Installed,
            State::BurnIn,
            State::Live,
            State::Draining,
            State::Drained,
            State::Maintenance,
            State::BurnIn,
        ];
        let mut events = Vec::new();
        for (t, to) in path.into_iter().enumerate() {
            events.push(l.transition(to, t as i64, "step").unwrap());
            assert_eq!(l.state(), to);
        }
        // Every allowed step is accepted from every state.
        for from in STATES {
            for to in next_states(from) {
                let mut l = Lifecycle {
                    state: from,
                    before_drain: None,
                };
                assert!(l.transition(to, 0, "").is_ok(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn forbidden_steps_say_what_is_allowed() {
        let mut l = Lifecycle::default();
        let e = l.transition(State::InTransit, 0, "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot go from live to in_transit: from live the next states are draining"
        );
        for (from, to) in [
            (State::Allocated, State::Live),
            (State::Live, State::Retired),
            (State::Retired, State::Allocated),
            (State::InTransit, State::BurnIn),
            (State::Drained, State::Live),
        ] {
            let mut l = Lifecycle {
                state: from,
                before_drain: None,
            };
            assert!(l.transition(to, 0, "").is_err(), "{from} -> {to}");
            assert_eq!(l.state(), from, "a refused step changes nothing");
        }
    }

    #[test]
    fn undrain_returns_to_the_state_before_the_drain() {
        for start in [State::Live, State::BurnIn] {
            let mut l = Lifecycle {
                state: start,
                before_drain: None,
            };
            l.transition(State::Draining, 1, "maintenance soon")
                .unwrap();
            l.transition(State::Drained, 2, "idle").unwrap();
            let e = l.undrain(3, "cancelled").unwrap();
            assert_eq!((e.from, e.to), (State::Drained, start));
            assert_eq!(l.before_drain(), None);
        }
        assert!(Lifecycle::default().undrain(0, "").is_err());
    }

    #[test]
    fn replay_checks_continuity() {
        let events = vec![
            Event {
                time: 1,
                from: State::Live,
                to: State::Draining,
                reason: String::new(),
            },
            Event {
                time: 2,
                from: State::Live,
                to: State::Draining,
                reason: String::new(),
            },
        ];
        assert_eq!(
            Lifecycle::replay(&events),
            Err(LifecycleError::Broken {
                index: 1,
                from: State::Live,
                was: State::Draining
            })
        );
        let l = Lifecycle::replay(&events[..1]).unwrap();
        assert_eq!(
            (l.state(), l.before_drain()),
            (State::Draining, Some(State::Live))
        );
    }

    #[test]
    fn checks_explain_themselves() {
        let half = fill_check(50, 100, 0);
        assert!(!half.passed);
        assert_eq!(
            half.detail,
            "50.0% of the target's bytes are complete (50 B of 100 B): the fill is not done"
        );
        assert!(fill_check(100, 100, 0).passed);
        assert!(!fill_check(100, 100, 2).passed);
        assert!(offload_check(0.95, 1.0, DEFAULT_OFFLOAD_THRESHOLD).passed);
        assert_eq!(
            offload_check(0.5, 1.0, 0.9).detail,
            "holds 50.0% of the target's demand (weight), below the 90% needed"
        );
    }
}

#[cfg(test)]
mod loop_tests {
    use super::*;

    fn events(path: &[State], time: i64) -> Vec<Event> {
        let mut l = Lifecycle::start(0, "").0;
        let mut out = vec![Lifecycle::start(0, "").1];
        for &s in path {
            out.push(l.transition(s, time, "").unwrap());
        }
        out
    }

    const TO_LIVE: [State; 6] = [
        State::Prefilling,
        State::InTransit,
        State::Delivered,
        State::Installed,
        State::BurnIn,
        State::Live,
    ];

    #[test]
    fn a_window_drains_waits_enters_maintenance_and_ends() {
        let w = MaintenanceWindow::new(1000, "3h", "swap").unwrap();
        let windows = [w.clone()];
        let mut e = events(&TO_LIVE, 10);
        // Before the window: nothing.
        assert_eq!(next_step(&e, &windows, 999, 0), None);
        let (to, why) = next_step(&e, &windows, 1000, 5).unwrap();
        assert_eq!(to, State::Draining);
        assert_eq!(why, "maintenance window 1970-01-01T00:16:40Z for 3h: swap");
        e.push(Event {
            time: 1000,
            from: State::Live,
            to: State::Draining,
            reason: why,
        });
        // Requests in flight: wait.
        assert_eq!(next_step(&e, &windows, 1001, 2), None);
        assert_eq!(next_step(&e, &windows, 1002, 0).unwrap().0, State::Drained);
        e.push(Event {
            time: 1002,
            from: State::Draining,
            to: State::Drained,
            reason: String::new(),
        });
        assert_eq!(
            next_step(&e, &windows, 1003, 0).unwrap().0,
            State::Maintenance
        );
        e.push(Event {
            time: 1003,
            from: State::Drained,
            to: State::Maintenance,
            reason: String::new(),
        });
        assert_eq!(next_step(&e, &windows, w.end() - 1, 0), None);
        assert_eq!(
            next_step(&e, &windows, w.end(), 0).unwrap().0,
            State::BurnIn
        );
    }

    #[test]
    fn a_maintenance_begun_by_hand_is_left_to_people() {
        let windows = [MaintenanceWindow::new(1000, "3h", "later").unwrap()];
        let mut path = TO_LIVE.to_vec();
        path.extend([State::Draining, State::Drained, State::Maintenance]);
        let e = events(&path, 10);
        assert_eq!(next_step(&e, &windows, 50_000, 0), None);
        // A drain by hand outside a window stays drained.
        let e = events(&path[..8], 10);
        assert_eq!(next_step(&e, &windows, 50_000, 0), None);
    }

    #[test]
    fn window_bounds() {
        assert!(MaintenanceWindow::new(0, "3h", "").is_ok());
        assert!(MaintenanceWindow::new(0, "30d", "").is_ok());
        assert_eq!(
            MaintenanceWindow::new(0, "31d", "").unwrap_err(),
            "duration \"31d\" is not between 3h and 30d (a maintenance window)"
        );
        assert!(MaintenanceWindow::new(0, "6h", "a\nb").is_err());
        assert_eq!(crate::duration::human_secs(2 * 86400 + 4 * 3600), "2d 4h");
        assert_eq!(crate::duration::human_secs(90), "1m");
    }
}
