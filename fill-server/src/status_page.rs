//! `GET /status`: the appliance's status as one self-contained HTML page (no script, no
//! asset from elsewhere), readable on a phone and a laptop, refreshing itself every 15 s.
//! The tracking diagram shows the states as a path with the current one highlighted and
//! named in text; then the turn-up checks, the fill's progress, maintenance windows and the
//! recent events. Element ids (`state`, `track`, `checks`, `progress`, `site-fill`, `events`) are stable:
//! the browser test reads them.

use std::fmt::Write as _;

use fill_core::duration::format_rfc3339;
use fill_core::lifecycle::State;

/// What `GET /status.json` answers (docs/json.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Which appliance: its serial (`[control] serial`), when it has one.
    pub appliance: Option<String>,
    /// The host it runs on.
    pub host: String,
    /// fill-server's version.
    pub version: &'static str,
    /// The store served.
    pub store: String,
    /// The current state.
    pub state: fill_core::lifecycle::State,
    /// While draining or drained: the state an undrain returns to.
    pub before_drain: Option<fill_core::lifecycle::State>,
    /// Whether content requests are answered.
    pub serving: bool,
    /// Every state, in the order of the tracking diagram.
    pub states: Vec<fill_core::lifecycle::State>,
    /// The last turn-up checks, `{name, passed, detail}`.
    pub checks: Vec<fill_core::lifecycle::Check>,
    /// When they ran (unix seconds, like every time here), if they have.
    pub checked_at: Option<i64>,
    /// The fill's progress towards the target.
    pub progress: Option<fill_store::lifecycle::Progress>,
    /// Requests being answered.
    pub in_flight: u64,
    /// Scheduled maintenance windows that have not ended.
    pub maintenance: Vec<fill_core::lifecycle::MaintenanceWindow>,
    /// The most recent events, oldest first (at most 20).
    pub events: Vec<fill_core::lifecycle::Event>,
    /// Why the lifecycle could not be read, when it could not.
    pub error: Option<String>,
    /// The figures of the last site fill (`fill run --site`) of this store, as it wrote
    /// them (`.fill/state/site-fill.json`), when there are any.
    pub site_fill: Option<serde_json::Value>,
    /// How the store's last fill ended (`.fill/state/last-fill.json`), if one was recorded.
    pub last_fill: Option<fill_store::last_fill::LastFill>,
}
use fill_core::size::format_size;

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font:16px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1b1f24;background:#f4f6f8}\
main{max-width:960px;margin:0 auto;padding:16px}\
h1{font-size:1.3rem;margin:0 0 4px}h2{font-size:1.05rem;margin:0 0 8px}\
section,header{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:14px;margin:0 0 14px}\
.now{font-size:1.6rem;font-weight:700}\
.now .tag{display:inline-block;padding:2px 12px;border-radius:6px;background:#0b5cad;color:#fff}\
.now .tag.s-live{background:#1a7f37}.now .tag.s-draining{background:#bc4c00}\
.now .tag.s-drained{background:#fff;color:#9a3412;border:3px dashed #bc4c00}\
.now .tag.s-maintenance{background:#6e40c9}.now .tag.s-retired{background:#57606a}\
.serving{color:#1a7f37;font-weight:600}.refusing{color:#b3261e;font-weight:600}\
ol.track{list-style:none;display:flex;flex-wrap:wrap;gap:6px;padding:0;margin:0}\
ol.track li{padding:6px 10px;border-radius:16px;border:2px solid #c3cbd3;color:#57606a;background:#fff;font-size:.9rem}\
ol.track li.done{border-color:#8fb8e3;color:#0b5cad;background:#eaf2fb}\
ol.track li.current{border-color:#0b5cad;background:#0b5cad;color:#fff;font-weight:700;transform:scale(1.08)}\
ol.track li.side{border-style:dashed}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:6px;border-top:1px solid #eaeef2;vertical-align:top}\
td.v{font-weight:700;white-space:nowrap}tr.pass td.v{color:#1a7f37}tr.fail td.v{color:#b3261e}\
.bar{height:18px;background:#eaeef2;border-radius:9px;overflow:hidden;margin:6px 0}\
.bar div{height:100%;background:#1a7f37}\
.muted{color:#57606a;font-size:.9rem}\
@media (max-width:560px){body{font-size:15px}.now{font-size:1.3rem}td,th{padding:4px}}";

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page for `status`.
pub fn render(status: &Status) -> String {
    let mut h = String::with_capacity(8192);
    let state = status.state.name();
    let who = esc(status.appliance.as_deref().unwrap_or(&status.store));
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"15\">\
         <title>{who}: {state}</title><style>{STYLE}</style></head><body><main>"
    );
    let _ = write!(
        h,
        "<header><h1 id=\"appliance\">Appliance {who}</h1><div class=\"muted\" id=\"host\">\
         on {} · fill-server {} · store {}</div><div class=\"now\">State: \
         <span class=\"tag s-{state}\" id=\"state\">{state}</span></div><div id=\"serving\" class=\"{}\">{}</div>",
        esc(&status.host),
        status.version,
        esc(&status.store),
        if status.serving {
            "serving"
        } else {
            "refusing"
        },
        if status.serving {
            "serving content"
        } else {
            "not serving content (503, Retry-After)"
        }
    );
    if let Some(b) = status.before_drain {
        let _ = write!(
            h,
            "<div class=\"muted\">undrain returns to {}</div>",
            b.name()
        );
    }
    if let Some(e) = &status.error {
        let _ = write!(
            h,
            "<div class=\"refusing\">lifecycle unreadable: {}</div>",
            esc(e)
        );
    }
    h.push_str("</header>");

    // The tracking diagram: the main path, then the side states.
    h.push_str("<section><h2>Lifecycle</h2><ol class=\"track\" id=\"track\">");
    let current = status
        .states
        .iter()
        .position(|s| *s == status.state)
        .unwrap_or(0);
    for (i, s) in status.states.iter().enumerate() {
        let mut class = if i == current {
            "current"
        } else if i < current {
            "done"
        } else {
            ""
        }
        .to_owned();
        if matches!(
            s,
            State::Draining | State::Drained | State::Maintenance | State::Retired
        ) {
            class.push_str(" side");
        }
        let aria = if i == current {
            " aria-current=\"step\""
        } else {
            ""
        };
        let _ = write!(
            h,
            "<li class=\"{}\" data-state=\"{}\"{aria}>{}</li>",
            class.trim(),
            s.name(),
            s.name()
        );
    }
    h.push_str("</ol></section>");

    // Checks.
    h.push_str("<section><h2>Turn-up checks</h2>");
    match &status.checked_at {
        Some(t) => {
            let passed = status.checks.iter().filter(|c| c.passed).count();
            let _ = write!(
                h,
                "<div class=\"muted\">{passed} of {} passed · checked {}</div>",
                status.checks.len(),
                format_rfc3339(*t)
            );
        }
        None => h.push_str("<div class=\"muted\">not run yet</div>"),
    }
    h.push_str("<table id=\"checks\">");
    for c in &status.checks {
        let (class, word) = if c.passed {
            ("pass", "✔ pass")
        } else {
            ("fail", "✘ FAIL")
        };
        let _ = write!(
            h,
            "<tr class=\"{class}\" data-check=\"{}\"><td class=\"v\">{word}</td><th>{}</th><td>{}</td></tr>",
            c.name,
            c.name,
            esc(&c.detail)
        );
    }
    h.push_str("</table></section>");

    // Fill progress.
    h.push_str("<section><h2>Fill</h2><div id=\"progress\">");
    match &status.progress {
        Some(p) => {
            let pct = (p.share * 100.0).clamp(0.0, 100.0);
            let _ = write!(
                h,
                "<div class=\"bar\" role=\"progressbar\" aria-valuemin=\"0\" aria-valuemax=\"100\" \
                 aria-valuenow=\"{pct:.1}\"><div style=\"width:{pct:.1}%\"></div></div>\
                 <div>{pct:.1}% of the target's bytes ({} of {}), {} of {} files complete</div>\
                 <div>offload: {:.1}% of the target's demand held (turn-up needs {:.0}%)</div>",
                format_size(p.complete_bytes),
                format_size(p.target_bytes),
                p.complete_files,
                p.target_files,
                p.offload * 100.0,
                p.offload_threshold * 100.0
            );
        }
        None => h.push_str("<div class=\"muted\">no target known yet</div>"),
    }
    let _ = write!(
        h,
        "<div class=\"muted\">{} in flight</div></div>",
        match status.in_flight {
            1 => "1 request".to_owned(),
            n => format!("{n} requests"),
        }
    );
    // The last site fill's figures, as `fill run --site` wrote them (docs/site-fill.md).
    if let Some(sf) = &status.site_fill {
        let bytes = |k: &str| format_size(sf.get(k).and_then(|v| v.as_u64()).unwrap_or(0));
        let state = sf
            .get("state")
            .and_then(|v| v.as_str())
            .unwrap_or("unknown");
        let _ = write!(
            h,
            "<div id=\"site-fill\">site fill {}: {} from outside (plan {}), {} copied from the \
             site's other appliances, excess {}, {} still lacking</div>",
            esc(state),
            bytes("external_bytes"),
            bytes("planned_external_bytes"),
            bytes("inside_bytes"),
            bytes("excess_bytes"),
            bytes("lacks_bytes")
        );
    }
    if let Some(f) = &status.last_fill {
        last_fill(&mut h, f);
    }
    h.push_str("</section>");

    // Maintenance.
    if !status.maintenance.is_empty() {
        h.push_str("<section><h2>Maintenance windows</h2><table id=\"maintenance\">");
        for w in &status.maintenance {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                format_rfc3339(w.start),
                fill_core::duration::human_secs(w.duration),
                esc(&w.reason)
            );
        }
        h.push_str("</table></section>");
    }

    // Events, newest first.
    h.push_str("<section><h2>Recent events</h2><table id=\"events\">");
    if status.events.is_empty() {
        h.push_str(
            "<tr><td class=\"muted\">no lifecycle recorded: a store serving as origin or tier \
             is live</td></tr>",
        );
    }
    for e in status.events.iter().rev() {
        let _ = write!(
            h,
            "<tr><td class=\"muted\">{}</td><td>{} → {}</td><td>{}</td></tr>",
            format_rfc3339(e.time),
            e.from.name(),
            e.to.name(),
            esc(&e.reason)
        );
    }
    h.push_str(
        "</table></section><footer class=\"muted\">the same as JSON: \
         <a href=\"/status.json\">/status.json</a> · refreshes every 15 s</footer></main></body></html>\n",
    );
    h
}

/// The store's last fill: how it ended, what it took from each source and what that cost.
fn last_fill(h: &mut String, f: &fill_store::last_fill::LastFill) {
    let _ = write!(
        h,
        "<div id=\"last-fill\"><h3>Last fill: {}</h3><div class=\"muted\">ended {}, {} of {} \
         fetched, cost {:.2}; last successful fill: {}</div>",
        f.outcome.name(),
        format_rfc3339(f.finished_at),
        format_size(f.bytes_fetched),
        format_size(f.bytes_to_fetch),
        f.cost,
        f.last_success_at.map_or("never".to_owned(), format_rfc3339)
    );
    if let Some(e) = &f.error {
        let _ = write!(h, "<div class=\"refusing\">{}</div>", esc(e));
    }
    if !f.sources.is_empty() {
        h.push_str(
            "<table><tr><th>source</th><th>kind</th><th>bytes</th><th>cost</th><th></th></tr>",
        );
        for s in &f.sources {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
                esc(&s.name),
                esc(&s.kind),
                format_size(s.bytes),
                s.cost,
                if s.quarantined { "quarantined" } else { "" }
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use fill_core::lifecycle::{Check, Event, STATES};

    fn status(state: State) -> Status {
        Status {
            appliance: Some("FRA-3-oca-<0>".into()),
            host: "oca0.example".into(),
            version: "9.9.9",
            store: "/srv/store".into(),
            site_fill: None,
            last_fill: None,
            state,
            before_drain: None,
            serving: true,
            states: STATES.to_vec(),
            checks: vec![Check {
                name: "fill",
                passed: false,
                detail: "50.0% <b>done</b>".into(),
            }],
            checked_at: Some(1_795_867_200),
            progress: None,
            in_flight: 0,
            maintenance: Vec::new(),
            events: vec![Event {
                time: 0,
                from: State::Installed,
                to: State::BurnIn,
                reason: "<script>alert(1)</script>".into(),
            }],
            error: None,
        }
    }

    #[test]
    fn highlights_the_current_state_and_escapes_text() {
        let page = render(&status(State::BurnIn));
        assert!(page.contains("<span class=\"tag s-burn_in\" id=\"state\">burn_in</span>"));
        // Which appliance, where, which version; its serial escaped.
        assert!(page.contains("<h1 id=\"appliance\">Appliance FRA-3-oca-&lt;0&gt;</h1>"));
        assert!(page.contains("on oca0.example · fill-server 9.9.9 · store /srv/store"));
        assert!(page.contains("checked 2026-11-28T12:00:00Z"));
        assert!(page.contains(
            "<li class=\"current\" data-state=\"burn_in\" aria-current=\"step\">burn_in</li>"
        ));
        assert!(page.contains("<li class=\"done\" data-state=\"installed\">"));
        assert!(page.contains("<li class=\"side\" data-state=\"drained\">"));
        assert!(!page.contains("<script>"), "event text is escaped");
        assert!(page.contains("&lt;b&gt;done&lt;/b&gt;"));
        assert!(page.contains("data-check=\"fill\""));
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("id=\"site-fill\""), "no site fill, no line");
    }

    #[test]
    fn shows_the_last_site_fill_escaped() {
        let mut st = status(State::BurnIn);
        st.site_fill = Some(serde_json::json!({
            "state": "<i>filling</i>", "external_bytes": 3_145_728u64,
            "planned_external_bytes": 2_097_152u64, "inside_bytes": 1024u64,
            "excess_bytes": 1_048_576u64, "lacks_bytes": 0u64
        }));
        let page = render(&st);
        assert!(
            page.contains(
                "<div id=\"site-fill\">site fill &lt;i&gt;filling&lt;/i&gt;: 3 MiB from outside \
                 (plan 2 MiB), 1 KiB copied from the site's other appliances, excess 1 MiB, \
                 0 B still lacking</div>"
            ),
            "{page}"
        );
    }

    #[test]
    fn drained_looks_unlike_live_and_the_last_fill_is_shown() {
        let live = render(&status(State::Live));
        let drained = render(&status(State::Drained));
        assert!(live.contains("class=\"tag s-live\""));
        assert!(drained.contains("class=\"tag s-drained\""));
        // Their styles differ: live is green, drained a dashed outline.
        assert!(STYLE.contains(".now .tag.s-live{background:#1a7f37}"));
        assert!(
            STYLE.contains(".now .tag.s-drained{background:#fff;color:#9a3412;border:3px dashed")
        );

        let mut st = status(State::BurnIn);
        st.last_fill = Some(fill_store::last_fill::LastFill {
            format: fill_store::last_fill::FORMAT.into(),
            outcome: fill_store::last_fill::FillOutcome::Failed,
            started_at: 1_795_867_000,
            finished_at: 1_795_867_200,
            last_success_at: None,
            bytes_to_fetch: 4_000_000_000,
            bytes_fetched: 1_500_000_000,
            cost: 0.25,
            sources: vec![fill_store::last_fill::SourceFigures {
                name: "<peer>".into(),
                kind: "peer".into(),
                bytes: 1_500_000_000,
                cost: 0.0,
                quarantined: true,
            }],
            error: Some("origin <x> refused".into()),
        });
        let page = render(&st);
        assert!(page.contains("<h3>Last fill: failed</h3>"), "{page}");
        assert!(page.contains("1.50 GB of 4 GB fetched, cost 0.25; last successful fill: never"));
        assert!(page.contains(
            "<td>&lt;peer&gt;</td><td>peer</td><td>1.50 GB</td><td>0.00</td><td>quarantined</td>"
        ));
        assert!(page.contains("origin &lt;x&gt; refused"));
    }
}
