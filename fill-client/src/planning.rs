//! `fill plan`, and the plan `fill run --strategy optimal` follows: the delta's ranges, the
//! sources' holdings and the clock, handed to `fill_core::plan`.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use fill_core::Catalog;
use fill_core::delta::Delta;
use fill_core::duration::format_rfc3339;
use fill_core::plan::{self, Binding, Plan, Problem, Strategy};
use fill_core::size::format_size;
use fill_core::source::Source;
use serde::Serialize;

use crate::sources::Holdings;

/// What a plan is made from, besides the delta.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The target catalog.
    pub target: &'a Catalog<'a>,
    /// The delta to plan.
    pub delta: &'a Delta,
    /// The sources.
    pub sources: &'a [Source],
    /// What each source holds.
    pub holdings: &'a [Holdings],
    /// Unix seconds.
    pub start: i64,
    /// Seconds from the start.
    pub deadline: i64,
    /// Ingress cap, bits per second.
    pub ingress_bps: Option<u64>,
}

/// A plan with the problem it answers.
#[derive(Debug)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// The ranges, in the delta's order (the plan's `demand` indices).
    pub demands: Vec<plan::Demand>,
}

/// Plans the delta with `strategy`.
pub fn make(input: &PlanInput<'_>, strategy: Strategy) -> Result<Planned> {
    let (classes, demands) = plan::classify(
        input.sources.len(),
        input
            .delta
            .fetch
            .iter()
            .map(|f| (f.entry, f.offset, f.length)),
        |s, entry| input.holdings[s].holds(&input.target.id(entry as usize)),
    );
    let problem = Problem {
        sources: input.sources,
        classes: &classes,
        demands: &demands,
        start: input.start,
        horizon: input.deadline,
        ingress_bps: input.ingress_bps,
    };
    let plan = plan::plan(&problem, strategy).map_err(plan_error)?;
    Ok(Planned { plan, demands })
}

/// A planner error in the user's terms.
pub fn plan_error(e: plan::PlanError) -> anyhow::Error {
    match e {
        plan::PlanError::Unheld { ranges, bytes } => anyhow::anyhow!(
            "{ranges} ranges ({}) are held by no source in the sources file; add an origin that holds everything",
            format_size(bytes)
        ),
        e => anyhow::anyhow!(e),
    }
}

/// Per file (target entry): the planned pieces as (offset, end, source), by offset.
pub type Routes = HashMap<u32, Vec<(u64, u64, usize)>>;

/// Where the plan sends each piece of each file.
pub fn routes(p: &Planned) -> Routes {
    let mut r: Routes = HashMap::new();
    for a in &p.plan.assignments {
        let entry = p.demands[a.demand as usize].entry;
        r.entry(entry)
            .or_default()
            .push((a.offset, a.offset + a.length, a.source as usize));
    }
    for v in r.values_mut() {
        v.sort_unstable();
    }
    r
}

/// `fill plan --json`: documented in docs/json.md.
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    /// "optimal" or "escalation".
    pub strategy: Strategy,
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub deadline: String,
    /// Bytes to fetch.
    pub bytes: u64,
    /// Money.
    pub total_cost: f64,
    /// RFC 3339: when the last byte is expected.
    pub finish: String,
    /// Unix seconds of `finish`.
    pub finish_unix: i64,
    /// Whether the plan finishes by the deadline.
    pub meets_deadline: bool,
    /// Per source.
    pub per_source: Vec<SourceJson<'a>>,
    /// The slots the assignments refer to.
    pub slots: Vec<SlotJson>,
    /// The pieces.
    pub assignments: Vec<AssignmentJson>,
    /// When the deadline cannot be met.
    pub shortfall: Option<ShortfallJson<'a>>,
    /// What escalation would cost for the same delta (absent for `--strategy escalation`).
    pub escalation_cost: Option<f64>,
}

/// A source's share.
#[derive(Debug, Serialize)]
pub struct SourceJson<'a> {
    /// Name.
    pub name: &'a str,
    /// peer, tier or origin.
    pub kind: fill_core::source::SourceKind,
    /// Bytes planned.
    pub bytes: u64,
    /// Their cost.
    pub cost: f64,
    /// Bytes it could deliver over the plan's slots.
    pub available: u64,
}

/// A slot.
#[derive(Debug, Serialize)]
pub struct SlotJson {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
}

/// A piece.
#[derive(Debug, Serialize)]
pub struct AssignmentJson {
    /// Content id.
    pub id: String,
    /// Byte offset in the file.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
    /// Source name.
    pub source: String,
    /// Index into `slots`.
    pub slot: u32,
}

/// Why the deadline is missed.
#[derive(Debug, Serialize)]
pub struct ShortfallJson<'a> {
    /// Bytes that cannot arrive by the deadline.
    pub bytes: u64,
    /// The binding constraints, in words.
    pub binding: Vec<String>,
    /// Source names, for scripts.
    pub binding_sources: Vec<&'a str>,
    /// Whether the ingress cap binds.
    pub ingress_binds: bool,
}

/// The JSON form of a plan.
pub fn to_json<'a>(
    input: &PlanInput<'a>,
    p: &Planned,
    escalation_cost: Option<f64>,
) -> PlanJson<'a> {
    let names: Vec<String> = input.sources.iter().map(|s| s.name.clone()).collect();
    let plan = &p.plan;
    PlanJson {
        strategy: plan.strategy,
        start: format_rfc3339(input.start),
        deadline: format_rfc3339(input.start + input.deadline),
        bytes: plan.bytes,
        total_cost: plan.total_cost,
        finish: format_rfc3339(plan.finish),
        finish_unix: plan.finish,
        meets_deadline: plan.shortfall.is_none(),
        per_source: per_source(input.sources, plan),
        slots: plan
            .slots
            .iter()
            .map(|s| SlotJson {
                start: format_rfc3339(s.start),
                end: format_rfc3339(s.end),
            })
            .collect(),
        assignments: plan
            .assignments
            .iter()
            .map(|a| AssignmentJson {
                id: input
                    .target
                    .id(p.demands[a.demand as usize].entry as usize)
                    .to_string(),
                offset: a.offset,
                length: a.length,
                source: names[a.source as usize].clone(),
                slot: a.slot,
            })
            .collect(),
        shortfall: shortfall(input.sources, plan),
        escalation_cost,
    }
}

fn per_source<'a>(sources: &'a [Source], plan: &Plan) -> Vec<SourceJson<'a>> {
    plan.per_source
        .iter()
        .zip(sources)
        .map(|(u, s)| SourceJson {
            name: &s.name,
            kind: s.kind,
            bytes: u.bytes,
            cost: u.cost,
            available: u.available,
        })
        .collect()
}

fn shortfall<'a>(sources: &'a [Source], plan: &Plan) -> Option<ShortfallJson<'a>> {
    plan.shortfall.as_ref().map(|short| ShortfallJson {
        bytes: short.bytes,
        binding: short
            .binding
            .iter()
            .map(|b| binding_words(b, sources))
            .collect(),
        binding_sources: short
            .binding
            .iter()
            .filter_map(|b| match b {
                Binding::Source { source, .. } | Binding::Closed { source } => {
                    Some(sources[*source].name.as_str())
                }
                Binding::Ingress { .. } => None,
            })
            .collect(),
        ingress_binds: short
            .binding
            .iter()
            .any(|b| matches!(b, Binding::Ingress { .. })),
    })
}

fn binding_words(b: &Binding, sources: &[Source]) -> String {
    match b {
        Binding::Source {
            source,
            bytes,
            slots,
        } => format!(
            "{} delivers all it can before the deadline: {} over {} slot{}",
            sources[*source].name,
            format_size(*bytes),
            slots,
            if *slots == 1 { "" } else { "s" }
        ),
        Binding::Closed { source } => format!(
            "{} holds needed files but its window does not open before the deadline",
            sources[*source].name
        ),
        Binding::Ingress { bytes, slots } => format!(
            "the appliance's ingress cap: {} over {} slot{}",
            format_size(*bytes),
            slots,
            if *slots == 1 { "" } else { "s" }
        ),
    }
}

/// `--explain`: the plan in plain words for an operator.
pub fn explain(input: &PlanInput<'_>, planned: &Planned, escalation: Option<&Plan>) -> String {
    let plan = &planned.plan;
    let sources = input.sources;
    let mut s = String::new();
    let files = {
        let mut e: Vec<u32> = planned.demands.iter().map(|d| d.entry).collect();
        e.dedup();
        e.len()
    };
    let _ = writeln!(
        s,
        "Plan ({}): {} in {} ranges of {} files, from {} with a deadline of {} ({}).",
        match plan.strategy {
            Strategy::Optimal => "minimum cost",
            Strategy::Escalation => "escalation",
        },
        format_size(plan.bytes),
        planned.demands.len(),
        files,
        format_rfc3339(input.start),
        format_rfc3339(input.start + input.deadline),
        fill_core::duration::human_secs(input.deadline)
    );
    match &plan.shortfall {
        None => {
            let _ = writeln!(
                s,
                "Expected to finish at {}, {} after the start: the deadline is met.",
                format_rfc3339(plan.finish),
                fill_core::duration::human_secs(plan.finish - input.start)
            );
        }
        Some(short) => {
            let _ = writeln!(
                s,
                "The deadline cannot be met: {} cannot arrive in time. What stops them:",
                format_size(short.bytes)
            );
            for b in &short.binding {
                let _ = writeln!(s, "  - {}", binding_words(b, sources));
            }
            let _ = writeln!(
                s,
                "The cheapest plan that finishes soonest ends at {}, {} after the start ({} late).",
                format_rfc3339(plan.finish),
                fill_core::duration::human_secs(plan.finish - input.start),
                fill_core::duration::human_secs(plan.finish - input.start - input.deadline)
            );
        }
    }
    let _ = writeln!(s, "\nCost by tier:");
    write_tiers(&mut s, plan, sources);
    let _ = writeln!(
        s,
        "  {:<7} {:>12}  {:>10.4}",
        "total",
        format_size(plan.bytes),
        plan.total_cost
    );
    let _ = writeln!(s, "\nBy source:");
    for (u, src) in plan.per_source.iter().zip(sources) {
        let use_pct = match (u.available, u.bytes) {
            (0, _) => "not open in the horizon".to_owned(),
            (_, 0) => "unused".to_owned(),
            (a, b) if b * 100 < a => "under 1% of what it can deliver".to_owned(),
            (a, b) => format!("{:.0}% of what it can deliver", b as f64 * 100.0 / a as f64),
        };
        let price = if src.cost_per_gib == 0.0 {
            "free".to_owned()
        } else {
            format!("{}/GiB", src.cost_per_gib)
        };
        let _ = writeln!(
            s,
            "  {:<12} {:>12}  {:>10.4}  {price}, {use_pct}",
            src.name,
            format_size(u.bytes),
            u.cost,
        );
    }
    // What binds: sources used to the full in some slot while costlier bytes were needed.
    // (A missed deadline has said what binds already.)
    if plan.shortfall.is_none() {
        what_binds(&mut s, plan, sources);
    }
    if let Some(e) = escalation {
        let _ = writeln!(
            s,
            "\nEscalation (cheapest holder with capacity left, in popularity order) for the same delta:"
        );
        let mut line = format!("  cost {:.4}", e.total_cost);
        if e.total_cost > 0.0 || plan.total_cost > 0.0 {
            let diff = e.total_cost - plan.total_cost;
            if diff > 1e-12 {
                let _ = write!(
                    line,
                    ", {:.4} more than this plan ({:.0}% saved)",
                    diff,
                    diff * 100.0 / e.total_cost
                );
            } else {
                line += ", the same as this plan";
            }
        }
        match (&e.shortfall, e.unplanned) {
            (_, u) if u > 0 => {
                let _ = write!(line, "; it strands {} it cannot place", format_size(u));
            }
            (Some(_), _) => {
                let _ = write!(
                    line,
                    "; it misses the deadline, finishing at {}",
                    format_rfc3339(e.finish)
                );
            }
            (None, _) => {
                let _ = write!(line, "; finishes at {}", format_rfc3339(e.finish));
            }
        }
        let _ = writeln!(s, "{line}.");
        write_tiers(&mut s, e, sources);
    }
    s
}

/// A plan's bytes and money by source kind, a line each.
fn write_tiers(s: &mut String, plan: &Plan, sources: &[Source]) {
    for (kind, bytes, cost) in plan::cost_by_kind(plan, sources) {
        let _ = writeln!(
            s,
            "  {:<7} {:>12}  {cost:>10.4}",
            kind.name(),
            format_size(bytes)
        );
    }
}

/// The "What binds" section of [`explain`].
fn what_binds(s: &mut String, plan: &Plan, sources: &[Source]) {
    let _ = writeln!(s, "\nWhat binds:");
    let dearest_used = plan
        .per_source
        .iter()
        .zip(sources)
        .filter(|(u, _)| u.bytes > 0)
        .map(|(_, src)| src.cost_per_gib)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut any = false;
    for (u, src) in plan.per_source.iter().zip(sources) {
        if u.saturated_slots > 0 && src.cost_per_gib < dearest_used {
            any = true;
            let _ = writeln!(
                s,
                "  - {} is used to its bandwidth in {} of its {} open slots; bytes it holds beyond that come from costlier sources.",
                src.name, u.saturated_slots, u.open_slots
            );
        }
    }
    // Bytes per slot, in one pass over the pieces.
    let mut per_slot = vec![0u64; plan.slots.len()];
    for a in &plan.assignments {
        per_slot[a.slot as usize] += a.length;
    }
    let full_ingress = plan
        .ingress_per_slot
        .iter()
        .zip(&per_slot)
        .filter(|(cap, used)| cap.is_some_and(|c| c > 0 && **used >= c))
        .count();
    if full_ingress > 0 {
        any = true;
        let _ = writeln!(
            s,
            "  - the ingress cap is full in {full_ingress} of {} slots.",
            plan.slots.len()
        );
    }
    if !any {
        let _ = writeln!(
            s,
            "  nothing: every byte comes from the cheapest source that holds it."
        );
    }
}

/// Context for errors about the clock.
pub fn now() -> Result<i64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .context("the system clock is before 1970")
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use fill_core::catalog::{CatalogBuilder, CatalogView};
    use fill_core::delta::Inventory;
    use fill_core::source::{SourceKind, Window, parse_bandwidth};
    use fill_core::{ContentId, delta};

    const GIB: u64 = 1 << 30;

    fn source(name: &str, kind: SourceKind, cost: f64, bw: &str, window: Option<&str>) -> Source {
        Source {
            name: name.into(),
            kind,
            url: "http://127.0.0.1:1".into(),
            cost_per_gib: cost,
            bandwidth_bps: parse_bandwidth(bw).unwrap(),
            window: window.map(|w| Window::parse(w, fill_core::source::Zone::UTC).unwrap()),
            max_connections: 4,
        }
    }

    /// A region: files `(size in GiB, weight)`, sources, and for each source the files it
    /// holds (`None`: everything). Returns the explanation of the optimal plan.
    fn explain_region(
        files: &[(u64, f64)],
        sources: &[Source],
        holds: &[Option<Vec<usize>>],
        deadline_h: i64,
        ingress: Option<&str>,
    ) -> String {
        let ids: Vec<ContentId> = (0..files.len())
            .map(|k| ContentId::of(format!("file {k}").as_bytes()))
            .collect();
        let mut b = CatalogBuilder::new();
        for (k, &(size, weight)) in files.iter().enumerate() {
            b.push(ids[k], size * GIB, weight, &format!("title-{k}/main.mp4"))
                .unwrap();
        }
        let bytes = b.finish().unwrap();
        let target = CatalogView::open(&bytes).unwrap().validate().unwrap();
        let empty_bytes = CatalogBuilder::new().finish().unwrap();
        let empty = CatalogView::open(&empty_bytes).unwrap().validate().unwrap();
        let inv = Inventory {
            complete: empty,
            partial: &[],
        };
        let delta = delta::compute(&target, &inv, u64::MAX / 4).unwrap();
        let holdings: Vec<Holdings> = holds
            .iter()
            .map(|h| match h {
                None => Holdings::All,
                Some(ks) => {
                    let mut v: Vec<ContentId> = ks.iter().map(|&k| ids[k]).collect();
                    v.sort();
                    Holdings::Ids(v)
                }
            })
            .collect();
        let input = PlanInput {
            target: &target,
            delta: &delta,
            sources,
            holdings: &holdings,
            start: fill_core::duration::parse_rfc3339("2026-11-28T00:00:00Z").unwrap(),
            deadline: deadline_h * 3600,
            ingress_bps: ingress.map(|i| parse_bandwidth(i).unwrap()),
        };
        let planned = make(&input, Strategy::Optimal).unwrap();
        let esc = make(&input, Strategy::Escalation).unwrap();
        explain(&input, &planned, Some(&esc.plan))
    }

    #[test]
    fn explain_a_site_with_a_night_peer() {
        let sources = [
            source(
                "peer-a",
                SourceKind::Peer,
                0.0,
                "100Mbps",
                Some("02:00-14:00"),
            ),
            source("tier-eu", SourceKind::Tier, 0.005, "200Mbps", None),
            source("origin", SourceKind::Origin, 0.02, "2Gbps", None),
        ];
        let files = [(400, 9.0), (300, 8.0), (300, 5.0), (200, 3.0), (100, 1.0)];
        let holds = [Some(vec![0, 2, 4]), Some(vec![0, 1, 2]), None];
        let text = explain_region(&files, &sources, &holds, 48, Some("1.2Gbps"));
        expect![[r#"
            Plan (minimum cost): 1.40 TB in 5 ranges of 5 files, from 2026-11-28T00:00:00Z with a deadline of 2026-11-30T00:00:00Z (2d).
            Expected to finish at 2026-11-29T09:05:20Z, 1d 9h 5m after the start: the deadline is met.

            Cost by tier:
              peer         800 GiB      0.0000
              tier         300 GiB      1.5000
              origin       200 GiB      4.0000
              total        1.40 TB      5.5000

            By source:
              peer-a            800 GiB      0.0000  free, 80% of what it can deliver
              tier-eu           300 GiB      1.5000  0.005/GiB, 7% of what it can deliver
              origin            200 GiB      4.0000  0.02/GiB, under 1% of what it can deliver

            What binds:
              - peer-a is used to its bandwidth in 1 of its 2 open slots; bytes it holds beyond that come from costlier sources.
              - tier-eu is used to its bandwidth in 1 of its 6 open slots; bytes it holds beyond that come from costlier sources.

            Escalation (cheapest holder with capacity left, in popularity order) for the same delta:
              cost 5.5000, the same as this plan; finishes at 2026-11-29T09:05:20Z.
              peer         800 GiB      0.0000
              tier         300 GiB      1.5000
              origin       200 GiB      4.0000
        "#]]
        .assert_eq(&text);
    }

    #[test]
    fn explain_a_missed_deadline() {
        let sources = [source("origin", SourceKind::Origin, 0.02, "1Gbps", None)];
        let files = [(4000, 2.0), (8000, 1.0)];
        let text = explain_region(&files, &sources, &[None], 24, None);
        expect![[r#"
            Plan (minimum cost): 12.88 TB in 2 ranges of 2 files, from 2026-11-28T00:00:00Z with a deadline of 2026-11-29T00:00:00Z (1d).
            The deadline cannot be met: 2.08 TB cannot arrive in time. What stops them:
              - origin delivers all it can before the deadline: 10.80 TB over 1 slot
            The cheapest plan that finishes soonest ends at 2026-11-29T04:38:00Z, 1d 4h 38m after the start (4h 38m late).

            Cost by tier:
              origin      12.88 TB    240.0000
              total       12.88 TB    240.0000

            By source:
              origin           12.88 TB    240.0000  0.02/GiB, 60% of what it can deliver

            Escalation (cheapest holder with capacity left, in popularity order) for the same delta:
              cost 240.0000, the same as this plan; it misses the deadline, finishing at 2026-11-29T04:38:00Z.
              origin      12.88 TB    240.0000
        "#]]
        .assert_eq(&text);
    }

    #[test]
    fn explain_a_contested_peer() {
        let sources = [
            source("peer-b", SourceKind::Peer, 0.0, "100Mbps", None),
            source("tier-eu", SourceKind::Tier, 0.005, "1Gbps", None),
            source("origin", SourceKind::Origin, 0.02, "1Gbps", None),
        ];
        // The popular file is on the peer and the tier; the next only on the peer and the
        // origin; the peer cannot carry both in 24 hours.
        let files = [(800, 2.0), (800, 1.0)];
        let holds = [Some(vec![0, 1]), Some(vec![0]), None];
        let text = explain_region(&files, &sources, &holds, 24, None);
        expect![[r#"
            Plan (minimum cost): 1.72 TB in 2 ranges of 2 files, from 2026-11-28T00:00:00Z with a deadline of 2026-11-29T00:00:00Z (1d).
            Expected to finish at 2026-11-29T00:00:00Z, 1d after the start: the deadline is met.

            Cost by tier:
              peer         1.08 TB      0.0000
              tier       637.99 GB      2.9709
              origin           0 B      0.0000
              total        1.72 TB      2.9709

            By source:
              peer-b            1.08 TB      0.0000  free, 100% of what it can deliver
              tier-eu         637.99 GB      2.9709  0.005/GiB, 6% of what it can deliver
              origin                0 B      0.0000  0.02/GiB, unused

            What binds:
              - peer-b is used to its bandwidth in 1 of its 1 open slots; bytes it holds beyond that come from costlier sources.

            Escalation (cheapest holder with capacity left, in popularity order) for the same delta:
              cost 11.8834, 8.9126 more than this plan (75% saved); finishes at 2026-11-29T00:00:00Z.
              peer         1.08 TB      0.0000
              tier             0 B      0.0000
              origin     637.99 GB     11.8834
        "#]]
        .assert_eq(&text);
    }
}
