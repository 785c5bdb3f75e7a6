//! The portal's pages, rendered on the server with maud (checked at compile time; every
//! value inserted is HTML-escaped unless marked otherwise, and nothing here marks one).
//! Semantic HTML that works without script: states carry words and a shape, not colour
//! alone; times are written in UTC in the page and turned into the viewer's zone by a few
//! lines of script where it runs.

use maud::{DOCTYPE, Markup, html};

use crate::views::{ApplianceView, FleetPage};

/// Who is signed in, as the pages show it.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Their email.
    pub email: String,
    /// `ops`, or the partner's name.
    pub of: String,
    /// Whether they are ops.
    pub ops: bool,
    /// The form token of their session.
    pub csrf: String,
}

/// The pages' style sheet (`/static/portal.css`).
pub const STYLE: &str = "
body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#111;background:#fff}
header{display:flex;flex-wrap:wrap;gap:.5em 1.5em;align-items:center;padding:.6em 1em;background:#f2f2f2;border-bottom:1px solid #ccc}
header nav{display:flex;gap:1em;flex-wrap:wrap}
main{max-width:64em;margin:0 auto;padding:1em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35em .5em;border-bottom:1px solid #ddd;vertical-align:top}
.scroll{overflow-x:auto}
.state{white-space:nowrap;font-weight:600}
.bad{color:#a00}.ok{color:#060}.warn{color:#850}
ol.track{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em}
ol.track li{border:2px solid #999;border-radius:.3em;padding:.3em .6em}
ol.track li.done{border-color:#060}ol.track li.current{border-color:#036;border-width:4px;font-weight:700}
ol.track li.todo{color:#666;border-style:dashed}
form.inline{display:inline}
label{display:block;margin:.6em 0 .2em;font-weight:600}
input,select,textarea,button{font:inherit;padding:.35em;max-width:100%;box-sizing:border-box}
input[type=text],input[type=email],input[type=password],textarea{width:28em}
button{cursor:pointer}
.error{border:2px solid #a00;padding:.5em;margin:1em 0}
.notice{border:2px solid #060;padding:.5em;margin:1em 0}
fieldset{margin:1em 0}
@media (max-width:40em){input[type=text],input[type=email],input[type=password],textarea{width:100%}th,td{padding:.3em}}
";

/// Turns `<time datetime>` elements into the viewer's local time, where script runs
/// (`/static/portal.js`).
pub const LOCAL_TIMES: &str = "document.querySelectorAll('time[datetime]').forEach(function(t){var d=new Date(t.getAttribute('datetime'));if(!isNaN(d)){t.textContent=d.toLocaleString();}});";

/// A state as words and a shape.
pub fn state_badge(state: &str) -> Markup {
    let (shape, class) = match state {
        "live" => ("●", "ok"),
        "burn_in" | "installed" => ("◐", "warn"),
        "draining" | "drained" | "maintenance" => ("■", "warn"),
        "retired" => ("×", ""),
        _ => ("○", ""),
    };
    html! { span.state.(class) { (shape) " " (state.replace('_', "-")) } }
}

/// A unix time as a `<time>` in UTC (the script shows it in the viewer's zone).
pub fn when(t: Option<i64>) -> Markup {
    match t {
        None => html! { "never" },
        Some(t) => {
            let iso = fill_core::duration::format_rfc3339(t);
            html! { time datetime=(iso) { (iso.replace('T', " ").replace('Z', " UTC")) } }
        }
    }
}

/// The frame of every page.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fill fleet" }
                link rel="stylesheet" href="/static/portal.css";
            }
            body {
                header {
                    strong { "fill fleet" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            a href="/" { @if v.ops { "Fleet" } @else { "My appliances" } }
                            @if !v.ops { a href="/survey" { "New site survey" } }
                        }
                        span { (v.email) " (" (v.of) ")" }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
                script src="/static/portal.js" {}
            }
        }
    }
}

/// The sign-in page.
pub fn login(error: Option<&str>, email: &str) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                label for="email" { "Email" }
                input #email type="email" name="email" value=(email) required autocomplete="username";
                label for="password" { "Password" }
                input #password type="password" name="password" required autocomplete="current-password";
                p { button type="submit" { "Sign in" } }
            }
            p { "New here? The invitation email you received has a link to choose your password." }
        },
    )
}

/// The fleet (ops) or the partner's appliances, most in need of attention first.
pub fn fleet(v: &Viewer, f: &FleetPage, page_no: i64, per: i64, sites_list: Markup) -> Markup {
    let pages = (f.total + per - 1) / per;
    page(
        if v.ops { "Fleet" } else { "My appliances" },
        Some(v),
        html! {
            (sites_list)
            h2 { @if v.ops { "Appliances" } @else { "My appliances" } }
            p { (f.total) @if f.total == 1 { " appliance" } @else { " appliances" } "; those needing attention first." }
            div.scroll {
                table {
                    thead { tr { th { "Appliance" } th { "Site" } @if v.ops { th { "Partner" } } th { "State" } th { "Needs" } th { "Last report" } } }
                    tbody {
                        @for l in &f.lines {
                            tr {
                                td { a href={ "/appliances/" (l.serial) } { (l.serial) } }
                                td { (l.site) }
                                @if v.ops { td { (l.partner) } }
                                td { (state_badge(&l.state)) }
                                td {
                                    @if l.attention.is_empty() { "—" }
                                    @else { span.bad { "▲ " (l.attention.join(", ")) } }
                                }
                                td { (when(l.last_report)) }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav aria-label="Pages" {
                    @if page_no > 1 { a href={ "/?page=" (page_no - 1) } rel="prev" { "← Previous" } " " }
                    "Page " (page_no) " of " (pages)
                    @if page_no < pages { " " a href={ "/?page=" (page_no + 1) } rel="next" { "Next →" } }
                }
            }
        },
    )
}

/// The tracking diagram's steps: (state, words).
const TRACK: [(&str, &str); 7] = [
    ("allocated", "Allocated"),
    ("prefilling", "Pre-filling"),
    ("in_transit", "Shipped"),
    ("delivered", "Delivered"),
    ("installed", "Installed"),
    ("burn_in", "Burn-in"),
    ("live", "Live"),
];

/// An appliance's page: its tracking diagram, what needs fixing, its overview, emails and
/// the drain action.
pub fn appliance(v: &Viewer, a: &ApplianceView, fixes: &[(String, String, &str)]) -> Markup {
    let at = TRACK.iter().position(|(s, _)| *s == a.state);
    let reached = |k: usize| -> Option<i64> {
        a.events
            .iter()
            .rev()
            .find(|e| e.to == TRACK[k].0)
            .map(|e| e.time)
    };
    let drainable = matches!(a.state.as_str(), "live" | "burn_in");
    let undrainable =
        matches!(a.state.as_str(), "draining" | "drained") && a.before_drain.is_some();
    page(
        &format!("Appliance {}", a.serial),
        Some(v),
        html! {
            p { "Site " a href={ "/deployments/" (a.deployment) } { strong { (a.site) } } @if v.ops { ", partner " (a.partner) } ". State: " (state_badge(&a.state)) }
            @if a.silent { p.error role="alert" { "▲ Silent: no report since " (when(a.last_report)) "." } }
            section aria-labelledby="track" {
                h2 #track { "Tracking" }
                ol.track {
                    @for (k, (_, words)) in TRACK.iter().enumerate() {
                        @let class = match at {
                            Some(i) if k < i => "done",
                            Some(i) if k == i => "current",
                            // Off the way (drained, in maintenance): the steps it went through.
                            None if reached(k).is_some() => "done",
                            _ => "todo",
                        };
                        li.(class) aria-current=[(class == "current").then_some("step")] {
                            @match class { "done" => "✓ ", "current" => "▶ ", _ => "○ " }
                            (words)
                            @if k == 2 { @if let (Some(c), Some(t)) = (&a.carrier, &a.tracking) { br; small { (c) " " (t) } } }
                            @if let Some(t) = reached(k) { br; small { (when(Some(t))) } }
                        }
                    }
                }
                @if at.is_none() { p { "Now " (state_badge(&a.state)) " (off the way to live: a drain, maintenance or retirement)." } }
            }
            @if !fixes.is_empty() {
                section aria-labelledby="fix" {
                    h2 #fix.bad { "▲ Failing checks" }
                    ul {
                        @for (name, detail, fix) in fixes {
                            li { strong { (name) } @if !detail.is_empty() { ": " (detail) } br; "How to fix it: " (fix) }
                        }
                    }
                }
            }
            section aria-labelledby="overview" {
                h2 #overview { "Overview" }
                table {
                    tr { th scope="row" { "Hardware" } td { (a.hardware) ", " (fill_core::size::format_size(a.capacity.max(0) as u64)) } }
                    tr { th scope="row" { "Region catalog" } td { (a.catalog) } }
                    tr { th scope="row" { "Software version" } td { (a.version.as_deref().unwrap_or("not reported")) } }
                    tr { th scope="row" { "BGP" } td { (a.bgp.as_deref().unwrap_or("not reported")) @if let Some(p) = a.bgp_prefixes { ", " (p) " prefixes received" } } }
                    tr { th scope="row" { "Last report" } td { (when(a.last_report)) } }
                    @if let Some(p) = &a.progress {
                        tr { th scope="row" { "Fill" } td { (progress(p)) } }
                    }
                    @if let Some(p) = &a.prefill {
                        tr { th scope="row" { "Pre-fill" } td { (prefill(p)) } }
                    }
                    @if let Some(w) = &a.waiting {
                        tr { th scope="row" { "Price of waiting" } td {
                            "Its burn-in now needs " (fill_core::size::format_size(w.bytes_now)) " (" (format!("{:.2}", w.cost_now)) " " (w.currency) "); "
                            "each further day uninstalled adds about " (fill_core::size::format_size(w.bytes_per_day)) " (" (format!("{:.2}", w.cost_per_day)) " " (w.currency) ")."
                        } }
                    }
                }
                @if !a.checks.is_empty() {
                    h3 { "Latest turn-up checks" }
                    ul { @for c in &a.checks { li { @if c.passed { span.ok { "✓ passed" } } @else { span.bad { "✗ FAILED" } } " " (c.name) @if !c.detail.is_empty() { ": " (c.detail) } } } }
                }
            }
            (steps(v, &a.serial, &a.state))
            @if !a.upgrades.is_empty() {
                section aria-labelledby="upgrades" {
                    h2 #upgrades { "Upgrades" }
                    ul { @for u in &a.upgrades { li {
                        @if v.ops { a href={ "/rollouts/" (u.rollout) } { (u.version) } } @else { (u.version) }
                        ": " (u.phase) @if !u.detail.is_empty() { " — " (u.detail) }
                    } } }
                }
            }
            @if drainable || undrainable {
                section aria-labelledby="maint" {
                    h2 #maint { "Maintenance" }
                    @if drainable {
                        p { "Before maintenance, drain it: it stops taking new sessions and finishes those in flight." }
                        p { a href={ "/appliances/" (a.serial) "/drain" } { "Drain this appliance…" } }
                    }
                    @if undrainable {
                        form method="post" action={ "/appliances/" (a.serial) "/undrain" } {
                            input type="hidden" name="csrf" value=(v.csrf);
                            p { "It is " (a.state) ". " button type="submit" { "Put it back in service" } }
                        }
                    }
                }
            }
            section aria-labelledby="emails" {
                h2 #emails { "Emails (" (a.emails.len()) ")" }
                div.scroll { table {
                    thead { tr { th { "Queued" } th { "To" } th { "Subject" } th { "Sent" } } }
                    tbody { @for m in &a.emails { tr { td { (when(Some(m.created))) } td { (m.recipient) } td { (m.subject) } td { @if m.sent.is_some() { (when(m.sent)) } @else { "not yet (" (m.attempts) " tries)" } } } } }
                } }
            }
            section aria-labelledby="events" {
                h2 #events { "Events" }
                div.scroll { table {
                    thead { tr { th { "When" } th { "Step" } th { "Who" } th { "Why" } } }
                    tbody { @for e in a.events.iter().rev() { tr { td { (when(Some(e.time))) } td { (e.from) " → " (e.to) } td { (e.actor) } td { (e.reason) } } } }
                } }
            }
        },
    )
}

fn progress(p: &serde_json::Value) -> Markup {
    let share = p["share"].as_f64();
    let offload = p["offload"].as_f64();
    html! {
        @if let Some(s) = share { (format!("{:.1}", s * 100.0)) "% of the target's bytes" }
        @if let Some(o) = offload { ", offload " (format!("{:.1}", o * 100.0)) "%" }
        @if share.is_none() && offload.is_none() { "reported" }
    }
}

fn prefill(p: &serde_json::Value) -> Markup {
    let done = p["done_bytes"].as_u64().unwrap_or(0);
    let total = p["total_bytes"].as_u64().unwrap_or(0);
    html! {
        (fill_core::size::format_size(done)) " of " (fill_core::size::format_size(total))
        @if p["done"] == true { " — done" }
        @if let Some(s) = p["station"].as_str() { " at station " (s) }
    }
}

/// The drain confirmation.
pub fn confirm_drain(v: &Viewer, serial: &str, site: &str) -> Markup {
    page(
        &format!("Drain {serial}?"),
        Some(v),
        html! {
            p { "Appliance " strong { (serial) } " at " (site) " will stop taking new sessions, finish those in flight, and then serve nothing until it is put back in service. The other appliances of the site keep serving." }
            form method="post" action={ "/appliances/" (serial) "/drain" } {
                input type="hidden" name="csrf" value=(v.csrf);
                label for="reason" { "Why (kept with the event)" }
                input #reason type="text" name="reason" maxlength="500" placeholder="disk swap";
                p { button type="submit" { "Drain it" } " " a href={ "/appliances/" (serial) } { "Cancel" } }
            }
        },
    )
}

/// The survey form, with what was typed and why it was refused.
pub fn survey(v: &Viewer, error: Option<&str>, f: &SurveyForm) -> Markup {
    page(
        "New site survey",
        Some(v),
        html! {
            @if let Some(e) = error { p.error role="alert" { "Not sent: " (e) } }
            form method="post" action="/survey" {
                input type="hidden" name="csrf" value=(v.csrf);
                fieldset {
                    legend { "Site" }
                    label for="site" { "Site name (letters, digits, - _ .)" }
                    input #site type="text" name="site" value=(f.site) required maxlength="64";
                    label for="tz" { "Time zone (IANA, as Europe/Paris)" }
                    input #tz type="text" name="tz" value=(f.tz) required;
                    label for="offpeak" { "Off-peak window for upgrades, local time (HH:MM-HH:MM)" }
                    input #offpeak type="text" name="offpeak" value=(f.offpeak) placeholder="02:00-06:00";
                    label for="address" { "Shipping address (one line each)" }
                    textarea #address name="address" rows="4" required { (f.address) }
                }
                fieldset {
                    legend { "Contacts (at least one engineering)" }
                    @for k in 0..4 {
                        @let c = f.contacts.get(k).cloned().unwrap_or_default();
                        div {
                            label for={ "cname" (k) } { "Contact " (k + 1) " name" }
                            input id={ "cname" (k) } type="text" name={ "cname" (k) } value=(c.0);
                            label for={ "cemail" (k) } { "Email" }
                            input id={ "cemail" (k) } type="email" name={ "cemail" (k) } value=(c.1);
                            label for={ "crole" (k) } { "Role" }
                            select id={ "crole" (k) } name={ "crole" (k) } {
                                @for r in crate::notify::ROLES { option value=(r) selected[c.2 == r] { (r) } }
                            }
                        }
                    }
                }
                fieldset {
                    legend { "Network" }
                    label for="asn" { "AS number" }
                    input #asn type="text" name="asn" value=(f.asn) required inputmode="numeric";
                    label for="ipv4" { "IPv4 prefixes (one per line, a.b.c.d/len)" }
                    textarea #ipv4 name="ipv4" rows="3" { (f.ipv4) }
                    label for="ipv6" { "IPv6 prefixes (one per line)" }
                    textarea #ipv6 name="ipv6" rows="3" { (f.ipv6) }
                    label for="neighbors" { "BGP neighbour addresses (one per line)" }
                    textarea #neighbors name="neighbors" rows="2" required { (f.neighbors) }
                }
                p { button type="submit" { "Submit the survey" } }
            }
        },
    )
}

/// What the survey form holds, as typed.
#[derive(Debug, Clone, Default)]
pub struct SurveyForm {
    /// Site.
    pub site: String,
    /// Zone.
    pub tz: String,
    /// Window.
    pub offpeak: String,
    /// Address, lines.
    pub address: String,
    /// Contacts: name, email, role.
    pub contacts: Vec<(String, String, String)>,
    /// ASN.
    pub asn: String,
    /// Prefixes.
    pub ipv4: String,
    /// Prefixes.
    pub ipv6: String,
    /// Neighbours.
    pub neighbors: String,
}

/// A short page saying something (done, or refused).
pub fn message(v: Option<&Viewer>, title: &str, text: &str, ok: bool) -> Markup {
    page(
        title,
        v,
        html! {
            p.(if ok { "notice" } else { "error" }) role=(if ok { "status" } else { "alert" }) { (text) }
            p { a href="/" { "Back" } }
        },
    )
}

/// The partner's sites (or, for ops, the newest), above the appliances.
pub fn sites(list: &[(String, String, String, i64)], ops: bool) -> Markup {
    html! {
        section aria-labelledby="sites" {
            h2 #sites { @if ops { "Newest sites" } @else { "My sites" } }
            @if list.is_empty() { p { "None yet." } }
            @else {
                ul { @for (id, site, partner, n) in list {
                    li { a href={ "/deployments/" (id) } { (site) } @if ops { " (" (partner) ")" } ": " (n) @if *n == 1 { " appliance" } @else { " appliances" } }
                } }
            }
        }
    }
}

/// A deployment's page: the survey's facts, contacts, appliances; ops allocate here.
pub fn deployment(v: &Viewer, d: &crate::views::DeploymentView, error: Option<&str>) -> Markup {
    page(
        &format!("Site {}", d.site),
        Some(v),
        html! {
            p { "Deployment " code { (d.id) } ", partner " (d.partner) ", surveyed " (when(Some(d.created))) ". Zone " (d.tz) ", upgrades off-peak " (d.offpeak) " local time." }
            h2 { "Contacts" }
            ul { @for (name, email, role) in &d.contacts { li { (name) " <" (email) "> — " (role) } } }
            h2 { "Appliances" }
            @if d.appliances.is_empty() { p { "None allocated yet." } }
            ul { @for (serial, state) in &d.appliances { li { a href={ "/appliances/" (serial) } { (serial) } " " (state_badge(state)) } } }
            @if v.ops {
                h2 { "Allocate an appliance" }
                @if let Some(e) = error { p.error role="alert" { "Not allocated: " (e) } }
                form method="post" action={ "/deployments/" (d.id) "/allocate" } {
                    input type="hidden" name="csrf" value=(v.csrf);
                    label for="serial" { "Serial" }
                    input #serial type="text" name="serial" required maxlength="64";
                    label for="hardware" { "Hardware" }
                    select #hardware name="hardware" { option { "storage" } option { "global" } option { "flash" } }
                    label for="capacity" { "Capacity (with a unit: 40TB)" }
                    input #capacity type="text" name="capacity" required;
                    label for="catalog" { "Region catalog" }
                    input #catalog type="text" name="catalog" required;
                    p { button type="submit" { "Allocate" } }
                }
            }
        },
    )
}

/// The steps a viewer may ask of an appliance in `state`, as a form (ops: any next step
/// the lifecycle allows but a drain, which has its own; a partner: delivered, installed).
pub fn steps(v: &Viewer, serial: &str, state: &str) -> Markup {
    let next: Vec<&'static str> = state
        .parse::<fill_core::lifecycle::State>()
        .map(|s| {
            fill_core::lifecycle::next_states(s)
                .into_iter()
                .map(|n| n.name())
                .filter(|n| *n != "draining")
                .filter(|n| v.ops || matches!(*n, "delivered" | "installed"))
                .collect()
        })
        .unwrap_or_default();
    html! {
        @if !next.is_empty() {
            section aria-labelledby="steps" {
                h2 #steps { "Next step" }
                form method="post" action={ "/appliances/" (serial) "/step" } {
                    input type="hidden" name="csrf" value=(v.csrf);
                    label for="to" { "Move it to" }
                    select #to name="to" { @for n in &next { option value=(n) { (n.replace('_', " ")) } } }
                    @if next.contains(&"in_transit") {
                        label for="carrier" { "Carrier (when shipping)" }
                        input #carrier type="text" name="carrier" maxlength="100";
                        label for="tracking" { "Tracking number (when shipping)" }
                        input #tracking type="text" name="tracking" maxlength="100";
                    }
                    label for="why" { "Why (kept with the event)" }
                    input #why type="text" name="reason" maxlength="500";
                    p { button type="submit" { "Record the step" } }
                }
            }
        }
    }
}

/// A rollout, phase by phase (ops).
pub fn rollout(v: &Viewer, r: &crate::upgrade::RolloutView) -> Markup {
    page(
        &format!("Rollout {}", r.id),
        Some(v),
        html! {
            p { "Version " strong { (r.version) } ", at most " (r.max_out) " appliance" @if r.max_out != 1 { "s" } " of a site out at once; scheduled by " (r.actor) " " (when(Some(r.created))) "." }
            p { @for (phase, n) in &r.phases { (phase) ": " (n) ". " } }
            div.scroll { table {
                thead { tr { th { "Site" } th { "Appliance" } th { "Phase" } th { "Taken out" } th { "Ended" } th { "Detail" } } }
                tbody { @for u in &r.upgrades { tr {
                    td { (u.site) } td { a href={ "/appliances/" (u.serial) } { (u.serial) } }
                    td { @if u.phase == "failed" { span.bad { "✗ failed" } } @else if u.phase == "done" { span.ok { "✓ done" } } @else { (u.phase) } }
                    td { (when(u.started)) } td { (when(u.finished)) } td { (u.detail) }
                } } }
            } }
        },
    )
}

/// The token of an appliance just allocated, shown once.
pub fn allocated(v: &Viewer, serial: &str, token: &str) -> Markup {
    page(
        &format!("Appliance {serial} allocated"),
        Some(v),
        html! {
            p.notice role="status" { "Allocated. Its token (it reports with it; shown only now): " }
            pre { code { (token) } }
            p { a href={ "/appliances/" (serial) } { "Its page" } }
        },
    )
}

/// An invitation's page: the first password.
pub fn invitation(code: &str, error: Option<&str>) -> Markup {
    page(
        "Choose your password",
        None,
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            p { "At least 12 characters. This link works once, within 7 days of the invitation." }
            form method="post" action={ "/invite/" (code) } {
                label for="password" { "Password" }
                input #password type="password" name="password" minlength="12" required autocomplete="new-password";
                label for="again" { "Again" }
                input #again type="password" name="again" minlength="12" required autocomplete="new-password";
                p { button type="submit" { "Set my password and sign in" } }
            }
        },
    )
}
