//! The planner: where each byte of a delta comes from, and when, at minimum money cost.
//!
//! **Model.** The horizon `[start, start + deadline)` is cut into slots at every UTC midnight
//! and at every edge of a source's window, so inside a slot each source is open or closed
//! throughout. A source delivers at most `bandwidth × open seconds / 8` bytes in a slot; the
//! appliance takes at most `ingress × seconds / 8` bytes in a slot. Each range to fetch
//! belongs to a *class*: the set of sources that hold its file. Ranges of one class are
//! interchangeable to the optimiser, so the network is small however many ranges there are:
//!
//! ```text
//! supply → class c ─(cost of s)→ source s ─(cap of s in slot t)→ slot t ─(ingress of t)→ sink
//!          (bytes of c)
//! ```
//!
//! **Objective**, lexicographic: least money (Σ bytes / 2^30 × cost_per_gib); among plans of
//! equal cost, the earliest last slot; then bytes as early as they can be (Σ bytes × slot).
//! A min-cost flow ([`flow`]) solves it exactly. Costs are compared in micro-units of money per
//! GiB (a `cost_per_gib` is rounded to 6 decimals for the optimiser; reported costs use the
//! exact value).
//!
//! **Assignment.** A source's bytes for a class are given to the class's slots earliest
//! first; within a class, ranges are placed in priority order (the delta's order: most
//! popular first) into its (slot, source) shares, earliest and cheapest first. A range is
//! split only where a share ends, exactly there: shares are byte amounts, so a split may fall
//! inside a block, and the fill then fetches that one block whole from the first piece's
//! source (at most a block per share moves between sources).
//!
//! **Infeasible deadlines.** When the horizon cannot carry every byte, the plan says how many
//! bytes are short and which constraints bind (the minimum cut: sources at capacity in their
//! open slots, the ingress cap), then gives the cheapest plan among those that finish
//! soonest, on a horizon extended until everything fits.

mod flow;
pub mod site;

use std::collections::BTreeMap;

use crate::source::{Source, SourceKind};

/// One range to fetch, in priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// The target catalog entry (file) it belongs to.
    pub entry: u32,
    /// Byte offset in the file.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
    /// Its class: index into [`Problem::classes`].
    pub class: u32,
}

/// Everything the planner needs.
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    /// The sources.
    pub sources: &'a [Source],
    /// For each class, the sources (indices) that hold its files.
    pub classes: &'a [Vec<usize>],
    /// Ranges to fetch, most important first.
    pub demands: &'a [Demand],
    /// Unix seconds when the plan starts.
    pub start: i64,
    /// Seconds from `start` the plan may use (the deadline).
    pub horizon: i64,
    /// The appliance's ingress cap in bits per second, if any.
    pub ingress_bps: Option<u64>,
}

/// How the plan is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Minimum cost (this module's optimiser).
    Optimal,
    /// The baseline: for each range in priority order, the cheapest source that holds it and
    /// has capacity left, earliest slot first; then the next.
    Escalation,
}

/// A span of time in which every source is open or closed throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Slot {
    /// Unix seconds, inclusive.
    pub start: i64,
    /// Unix seconds, exclusive.
    pub end: i64,
}

impl Slot {
    fn secs(&self) -> i64 {
        self.end - self.start
    }
}

/// A piece of a range, from one source in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// Index into [`Problem::demands`].
    pub demand: u32,
    /// Byte offset in the file.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
    /// Source index.
    pub source: u32,
    /// Slot index.
    pub slot: u32,
}

/// One source's share of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct SourceUse {
    /// Bytes planned from it.
    pub bytes: u64,
    /// Their cost.
    pub cost: f64,
    /// Bytes it could deliver within the horizon (bandwidth × open seconds).
    pub available: u64,
    /// Open slots in which the plan uses all of its capacity.
    pub saturated_slots: u32,
    /// Slots in which it is open.
    pub open_slots: u32,
}

/// A constraint that limits the plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Binding {
    /// A source delivers all it can in some slots.
    Source {
        /// Source index.
        source: usize,
        /// Bytes of its capacity on the cut.
        bytes: u64,
        /// Slots concerned.
        slots: u32,
    },
    /// A source that holds needed files is not open at all before the deadline.
    Closed {
        /// Source index.
        source: usize,
    },
    /// The appliance's ingress cap is full in some slots.
    Ingress {
        /// Bytes of ingress capacity on the cut.
        bytes: u64,
        /// Slots concerned.
        slots: u32,
    },
}

/// Why the deadline cannot be met.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Shortfall {
    /// Bytes that cannot arrive before the deadline.
    pub bytes: u64,
    /// The constraints that stop them (a minimum cut).
    pub binding: Vec<Binding>,
}

/// A plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// How it was made.
    pub strategy: Strategy,
    /// The slots of the horizon the plan uses (extended past the deadline when it cannot be
    /// met).
    pub slots: Vec<Slot>,
    /// The pieces, grouped by demand in priority order.
    pub assignments: Vec<Assignment>,
    /// Per source, in the problem's order.
    pub per_source: Vec<SourceUse>,
    /// Total money.
    pub total_cost: f64,
    /// Bytes planned.
    pub bytes: u64,
    /// Bytes the strategy could not place within the slots (escalation only: its greedy
    /// order can strand a file whose only holders were used up by others).
    pub unplanned: u64,
    /// Unix seconds when the last byte is expected.
    pub finish: i64,
    /// `None` when everything arrives before the deadline.
    pub shortfall: Option<Shortfall>,
    /// Bytes per slot that the ingress cap would take, if there is one.
    pub ingress_per_slot: Vec<Option<u64>>,
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Some ranges are held by no source.
    #[error("{ranges} ranges ({bytes} bytes) are held by no configured source")]
    Unheld {
        /// Ranges.
        ranges: u64,
        /// Bytes.
        bytes: u64,
    },
    /// The horizon is empty or negative.
    #[error("the deadline must be at least one second after the start")]
    Horizon,
    /// Even a year is not enough (a source that is never open, a zero ingress cap...).
    #[error("{bytes} bytes cannot be delivered even within {days} days")]
    Never {
        /// Bytes short at the longest horizon tried.
        bytes: u64,
        /// Days tried.
        days: i64,
    },
    /// The problem refers to a source or class that does not exist.
    #[error("bad problem: {0}")]
    Bad(String),
}

/// The longest horizon tried when looking for the soonest finish.
const MAX_HORIZON_DAYS: i64 = 400;

/// Groups ranges by the set of sources that hold them. `holds(source, entry)` says whether a
/// source holds a file. Returns the classes (each a sorted list of source indices) and the
/// demands, in the order of `ranges`.
pub fn classify(
    n_sources: usize,
    ranges: impl IntoIterator<Item = (u32, u64, u64)>,
    holds: impl Fn(usize, u32) -> bool,
) -> (Vec<Vec<usize>>, Vec<Demand>) {
    let words = n_sources.div_ceil(64).max(1);
    let mut ids: BTreeMap<Vec<u64>, u32> = BTreeMap::new();
    let mut classes = Vec::new();
    let mut demands = Vec::new();
    let mut key = vec![0u64; words];
    let mut last: Option<(u32, u32)> = None;
    for (entry, offset, length) in ranges {
        // Consecutive ranges of one file share a class: skip the lookups.
        let class = match last {
            Some((e, c)) if e == entry => c,
            _ => {
                key.fill(0);
                for s in 0..n_sources {
                    if holds(s, entry) {
                        key[s / 64] |= 1 << (s % 64);
                    }
                }
                let next = classes.len() as u32;
                let c = *ids.entry(key.clone()).or_insert_with(|| {
                    classes.push(
                        (0..n_sources)
                            .filter(|&s| key[s / 64] >> (s % 64) & 1 == 1)
                            .collect(),
                    );
                    next
                });
                last = Some((entry, c));
                c
            }
        };
        demands.push(Demand {
            entry,
            offset,
            length,
            class,
        });
    }
    (classes, demands)
}

/// The slots of `[start, start + horizon)`: cut at UTC midnights and window edges.
pub fn slots(sources: &[Source], start: i64, horizon: i64) -> Vec<Slot> {
    let end = start + horizon;
    let mut cuts = vec![start, end];
    let first_day = start.div_euclid(86_400) - 1;
    let last_day = end.div_euclid(86_400) + 1;
    for day in first_day..=last_day {
        cuts.push(day * 86_400);
    }
    // Window edges on each local day the horizon touches (a zone's day may start before or
    // after UTC's; a day's margin either side covers every offset).
    for w in sources.iter().filter_map(|s| s.window.as_ref()) {
        for day in first_day..=last_day {
            cuts.extend(w.edges_on(day));
        }
    }
    cuts.retain(|&c| (start..=end).contains(&c));
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| Slot {
            start: w[0],
            end: w[1],
        })
        .collect()
}

/// [`slots`], cut further every `step` seconds from `start` (no further cuts when `step` is
/// 0): finer slots for plans whose timing matters within a day.
pub fn slots_with_step(sources: &[Source], start: i64, horizon: i64, step: i64) -> Vec<Slot> {
    let coarse = slots(sources, start, horizon);
    if step <= 0 {
        return coarse;
    }
    let mut out = Vec::with_capacity(coarse.len());
    for s in coarse {
        let mut at = s.start;
        while at < s.end {
            let next = (start + ((at - start) / step + 1) * step).min(s.end);
            out.push(Slot {
                start: at,
                end: next,
            });
            at = next;
        }
    }
    out
}

/// Bytes a source can deliver in a slot.
fn source_cap(s: &Source, slot: &Slot) -> u64 {
    if s.is_open(slot.start) {
        bytes_at(s.bandwidth_bps, slot.secs())
    } else {
        0
    }
}

fn bytes_at(bps: u64, secs: i64) -> u64 {
    let b = u128::from(bps) * secs.max(0) as u128 / 8;
    b.min(u128::from(u64::MAX / 8)) as u64
}

/// Money per 2^30 bytes in micro-units, for the optimiser.
fn micro(cost_per_gib: f64) -> i128 {
    if cost_per_gib.is_finite() && cost_per_gib > 0.0 {
        (cost_per_gib * 1e6).round() as i128
    } else {
        0
    }
}

/// Makes a plan.
pub fn plan(p: &Problem<'_>, strategy: Strategy) -> Result<Plan, PlanError> {
    plan_with_step(p, strategy, 0)
}

/// Makes a plan whose slots are also cut every `step` seconds (see [`slots_with_step`]).
pub fn plan_with_step(p: &Problem<'_>, strategy: Strategy, step: i64) -> Result<Plan, PlanError> {
    check(p)?;
    if p.horizon < 1 {
        return Err(PlanError::Horizon);
    }
    let slots = slots_with_step(p.sources, p.start, p.horizon, step);
    let demand = class_demand(p);
    let solve = |slots: &[Slot], limit: usize| match strategy {
        Strategy::Optimal => optimal_shares(p, &demand, slots, limit),
        Strategy::Escalation => escalation_shares(p, slots, limit),
    };
    let total: u64 = demand.iter().sum();
    let first = solve(&slots, slots.len());
    if first.delivered == total {
        let mut best = first;
        if strategy == Strategy::Optimal {
            // The fewest slots that carry everything at the same cost. The time preference
            // in the costs usually finds it already: one solve without the last slot used
            // confirms that (the test is monotone in the number of slots), else search.
            let used = best.last_slot().map_or(0, |l| l + 1);
            let ok = |n: usize| {
                let s = solve(&slots, n);
                (s.delivered == total && s.money == best.money).then_some(s)
            };
            let mut hi = used;
            if used > 1
                && let Some(fewer) = ok(used - 1)
            {
                let (mut lo, mut found) = (1, (used - 1, fewer));
                let mut top = used - 1;
                while lo < top {
                    let mid = (lo + top) / 2;
                    match ok(mid) {
                        Some(s) => {
                            top = mid;
                            found = (mid, s);
                        }
                        None => lo = mid + 1,
                    }
                }
                hi = found.0;
                best = found.1;
            }
            debug_assert!(hi <= used);
        }
        return Ok(finish(p, strategy, slots, best, None));
    }
    // The deadline cannot be met: say why, then find the soonest finish.
    let shortfall = Shortfall {
        bytes: total - first.delivered,
        binding: first.binding.clone(),
    };
    let mut horizon = p.horizon;
    let long = loop {
        horizon = horizon.saturating_mul(2);
        let capped = horizon.min(MAX_HORIZON_DAYS * 86_400);
        // Fine slots over a long horizon make a large network: at most ~2,000 step cuts.
        let coarse = if step > 0 { step.max(capped / 2000) } else { 0 };
        let long_slots = slots_with_step(p.sources, p.start, capped, coarse);
        // Feasibility alone: any strategy's maximum delivery is the optimiser's.
        let s = optimal_shares(p, &demand, &long_slots, long_slots.len());
        if s.delivered == total {
            break long_slots;
        }
        if capped >= MAX_HORIZON_DAYS * 86_400 {
            return Err(PlanError::Never {
                bytes: total - s.delivered,
                days: MAX_HORIZON_DAYS,
            });
        }
    };
    // Fewest slots that carry everything, then the strategy's plan inside them.
    let (mut lo, mut hi) = (1, long.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if optimal_shares(p, &demand, &long, mid).delivered == total {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut best = solve(&long, hi);
    if best.delivered < total {
        // Escalation's greedy order may need more slots than the optimum does.
        let mut n = hi;
        while best.delivered < total && n < long.len() {
            n += 1;
            best = solve(&long, n);
        }
    }
    Ok(finish(p, strategy, long, best, Some(shortfall)))
}

fn check(p: &Problem<'_>) -> Result<(), PlanError> {
    for (i, c) in p.classes.iter().enumerate() {
        if let Some(&s) = c.iter().find(|&&s| s >= p.sources.len()) {
            return Err(PlanError::Bad(format!("class {i} names source {s}")));
        }
    }
    let (mut ranges, mut bytes) = (0, 0);
    for d in p.demands {
        match p.classes.get(d.class as usize) {
            None => return Err(PlanError::Bad(format!("no class {}", d.class))),
            Some(c) if c.is_empty() => {
                ranges += 1;
                bytes += d.length;
            }
            Some(_) => {}
        }
    }
    if ranges > 0 {
        return Err(PlanError::Unheld { ranges, bytes });
    }
    Ok(())
}

fn class_demand(p: &Problem<'_>) -> Vec<u64> {
    let mut d = vec![0u64; p.classes.len()];
    for r in p.demands {
        d[r.class as usize] += r.length;
    }
    d
}

/// What a solve decided: bytes per (class, source, slot), before ranges are placed.
#[derive(Debug, Clone)]
struct Shares {
    /// (class, source, slot, bytes), bytes > 0.
    parts: Vec<(u32, u32, u32, u64)>,
    delivered: u64,
    money: i128,
    binding: Vec<Binding>,
}

impl Shares {
    fn last_slot(&self) -> Option<usize> {
        self.parts.iter().map(|p| p.2 as usize).max()
    }
}

/// The optimiser over the first `limit` slots.
fn optimal_shares(p: &Problem<'_>, demand: &[u64], slots: &[Slot], limit: usize) -> Shares {
    let slots = &slots[..limit.min(slots.len())];
    let (nc, ns, nt) = (p.classes.len(), p.sources.len(), slots.len());
    let supply = 0;
    let class_node = |c: usize| 1 + c;
    let source_node = |s: usize| 1 + nc + s;
    let slot_node = |t: usize| 1 + nc + ns + t;
    let sink = 1 + nc + ns + nt;
    let mut g = flow::Graph::new(sink + 1);
    let total: u64 = demand.iter().sum();
    // Stage 1: money only (few distinct path costs, so few phases).
    let mut class_arcs = Vec::new();
    for (c, &d) in demand.iter().enumerate() {
        if d == 0 {
            continue;
        }
        g.add(supply, class_node(c), d as i64, 0);
        for &s in &p.classes[c] {
            let e = g.add(
                class_node(c),
                source_node(s),
                flow::INF,
                micro(p.sources[s].cost_per_gib),
            );
            class_arcs.push((c, s, e));
        }
    }
    let mut slot_arcs = Vec::new();
    for (s, src) in p.sources.iter().enumerate() {
        for (t, slot) in slots.iter().enumerate() {
            let cap = source_cap(src, slot);
            if cap > 0 {
                let e = g.add(source_node(s), slot_node(t), cap.min(total) as i64, 0);
                slot_arcs.push((s, t, e, cap));
            }
        }
    }
    let mut ingress_arcs = Vec::new();
    for (t, slot) in slots.iter().enumerate() {
        let cap = p
            .ingress_bps
            .map_or(flow::INF as u64, |bps| bytes_at(bps, slot.secs()));
        let e = g.add(slot_node(t), sink, cap.min(flow::INF as u64) as i64, 0);
        ingress_arcs.push((t, e, cap));
    }
    let delivered = g.min_cost_max_flow(supply, sink) as u64;
    // Stage 2: with each source's bytes fixed by stage 1 (which fixes the money), the
    // earliest schedule: supply → source (its bytes) → slot (its capacity, cost: the slot's
    // index) → sink (ingress). Stage 1's schedule shows one exists, so all bytes route.
    let mut per_source_bytes = vec![0u64; ns];
    for &(_, s, e) in &class_arcs {
        per_source_bytes[s] += g.flow(e) as u64;
    }
    let mut g2 = flow::Graph::new(ns + nt + 2);
    let (supply2, sink2) = (ns + nt, ns + nt + 1);
    for (s, &b) in per_source_bytes.iter().enumerate() {
        if b > 0 {
            g2.add(supply2, s, b as i64, 0);
        }
    }
    let mut slot_arcs2 = Vec::new();
    for &(s, t, _, cap) in &slot_arcs {
        if per_source_bytes[s] > 0 {
            let e = g2.add(s, ns + t, cap.min(total) as i64, t as i128);
            slot_arcs2.push((s, t, e));
        }
    }
    for &(t, _, cap) in &ingress_arcs {
        g2.add(ns + t, sink2, cap.min(flow::INF as u64) as i64, 0);
    }
    g2.min_cost_max_flow(supply2, sink2);
    // Per source: the classes' bytes, then its slots' bytes; pair them earliest first, the
    // class with the most important range first.
    let mut first_demand = vec![u32::MAX; nc];
    for (i, d) in p.demands.iter().enumerate().rev() {
        first_demand[d.class as usize] = i as u32;
    }
    let mut parts = Vec::new();
    let mut money = 0i128;
    for s in 0..ns {
        let mut classes: Vec<(u32, usize, u64)> = class_arcs
            .iter()
            .filter(|a| a.1 == s && g.flow(a.2) > 0)
            .map(|&(c, _, e)| (first_demand[c], c, g.flow(e) as u64))
            .collect();
        classes.sort_unstable();
        let mut slot_bytes: Vec<(usize, u64)> = slot_arcs2
            .iter()
            .filter(|a| a.0 == s && g2.flow(a.2) > 0)
            .map(|&(_, t, e)| (t, g2.flow(e) as u64))
            .collect();
        slot_bytes.sort_unstable();
        let mut k = 0;
        for (_, c, mut bytes) in classes {
            money += micro(p.sources[s].cost_per_gib) * i128::from(bytes);
            while bytes > 0 && k < slot_bytes.len() {
                let take = bytes.min(slot_bytes[k].1);
                parts.push((c as u32, s as u32, slot_bytes[k].0 as u32, take));
                bytes -= take;
                slot_bytes[k].1 -= take;
                if slot_bytes[k].1 == 0 {
                    k += 1;
                }
            }
        }
    }
    let binding = if delivered < total {
        let side = g.reachable(supply);
        let mut per_source: BTreeMap<usize, (u64, u32)> = BTreeMap::new();
        for &(s, t, _, cap) in &slot_arcs {
            if side[source_node(s)] && !side[slot_node(t)] {
                let e = per_source.entry(s).or_default();
                e.0 += cap;
                e.1 += 1;
            }
        }
        let mut binding: Vec<Binding> = Vec::new();
        for s in 0..ns {
            if let Some(&(bytes, slots)) = per_source.get(&s) {
                binding.push(Binding::Source {
                    source: s,
                    bytes,
                    slots,
                });
            } else if side[source_node(s)] && !slot_arcs.iter().any(|a| a.0 == s) {
                binding.push(Binding::Closed { source: s });
            }
        }
        let (mut bytes, mut n) = (0u64, 0u32);
        for &(t, _, cap) in &ingress_arcs {
            if side[slot_node(t)] {
                bytes = bytes.saturating_add(cap);
                n += 1;
            }
        }
        if n > 0 {
            binding.push(Binding::Ingress { bytes, slots: n });
        }
        binding
    } else {
        Vec::new()
    };
    Shares {
        parts,
        delivered,
        money,
        binding,
    }
}

/// The baseline over the first `limit` slots: each range in priority order takes the
/// cheapest holder (ties by name) with capacity left, earliest slot first, then the next.
fn escalation_shares(p: &Problem<'_>, slots: &[Slot], limit: usize) -> Shares {
    let slots = &slots[..limit.min(slots.len())];
    let mut left: Vec<Vec<u64>> = p
        .sources
        .iter()
        .map(|s| slots.iter().map(|t| source_cap(s, t)).collect())
        .collect();
    let mut ingress: Vec<u64> = slots
        .iter()
        .map(|t| {
            p.ingress_bps
                .map_or(u64::MAX, |bps| bytes_at(bps, t.secs()))
        })
        .collect();
    let orders: Vec<Vec<usize>> = p
        .classes
        .iter()
        .map(|c| crate::source::escalation(p.sources, |s| c.contains(&s)))
        .collect();
    let mut parts: Vec<(u32, u32, u32, u64)> = Vec::new();
    let (mut delivered, mut money) = (0u64, 0i128);
    // Per source, the first slot that may have capacity left (capacity only shrinks).
    let mut first = vec![0usize; p.sources.len()];
    for d in p.demands {
        let mut rest = d.length;
        for &s in &orders[d.class as usize] {
            while first[s] < slots.len() && left[s][first[s]] == 0 {
                first[s] += 1;
            }
            for t in first[s]..slots.len() {
                if rest == 0 {
                    break;
                }
                let take = rest.min(left[s][t]).min(ingress[t]);
                if take == 0 {
                    continue;
                }
                left[s][t] -= take;
                ingress[t] -= take;
                rest -= take;
                delivered += take;
                money += micro(p.sources[s].cost_per_gib) * i128::from(take);
                match parts.last_mut() {
                    Some(last) if (last.0, last.1, last.2) == (d.class, s as u32, t as u32) => {
                        last.3 += take
                    }
                    _ => parts.push((d.class, s as u32, t as u32, take)),
                }
            }
        }
    }
    Shares {
        parts,
        delivered,
        money,
        binding: Vec::new(),
    }
}

/// Places ranges into their class's shares and totals the plan.
fn finish(
    p: &Problem<'_>,
    strategy: Strategy,
    slots: Vec<Slot>,
    shares: Shares,
    shortfall: Option<Shortfall>,
) -> Plan {
    // Per class: its shares, earliest slot first, then cheapest source.
    let mut by_class: Vec<Vec<(u32, u32, u64)>> = vec![Vec::new(); p.classes.len()];
    for &(c, s, t, b) in &shares.parts {
        by_class[c as usize].push((t, s, b));
    }
    for v in &mut by_class {
        v.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(
                    p.sources[a.1 as usize]
                        .cost_per_gib
                        .total_cmp(&p.sources[b.1 as usize].cost_per_gib),
                )
                .then(a.1.cmp(&b.1))
        });
    }
    let mut cursor = vec![0usize; p.classes.len()];
    let mut assignments = Vec::with_capacity(p.demands.len());
    let mut unplanned = 0;
    for (i, d) in p.demands.iter().enumerate() {
        let c = d.class as usize;
        let shares = &mut by_class[c];
        let (mut offset, mut rest) = (d.offset, d.length);
        while rest > 0 {
            let Some(share) = shares.get_mut(cursor[c]) else {
                break;
            };
            let take = rest.min(share.2);
            assignments.push(Assignment {
                demand: i as u32,
                offset,
                length: take,
                source: share.1,
                slot: share.0,
            });
            offset += take;
            rest -= take;
            share.2 -= take;
            if share.2 == 0 {
                cursor[c] += 1;
            }
        }
        unplanned += rest;
    }
    let mut per_source: Vec<SourceUse> = p
        .sources
        .iter()
        .map(|s| SourceUse {
            available: slots
                .iter()
                .map(|t| source_cap(s, t))
                .fold(0u64, u64::saturating_add),
            open_slots: slots.iter().filter(|t| source_cap(s, t) > 0).count() as u32,
            ..SourceUse::default()
        })
        .collect();
    let mut per_slot_source: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for a in &assignments {
        per_source[a.source as usize].bytes += a.length;
        *per_slot_source.entry((a.slot, a.source)).or_default() += a.length;
    }
    for ((t, s), &b) in &per_slot_source {
        if b >= source_cap(&p.sources[*s as usize], &slots[*t as usize]) {
            per_source[*s as usize].saturated_slots += 1;
        }
    }
    for (u, s) in per_source.iter_mut().zip(p.sources) {
        u.cost = s.cost(u.bytes);
    }
    let bytes = per_source.iter().map(|u| u.bytes).sum();
    let total_cost = per_source.iter().map(|u| u.cost).sum();
    // Expected finish: the start of the last slot used plus the time its bytes take.
    let finish = match per_slot_source.keys().map(|k| k.0).max() {
        None => p.start,
        Some(last) => {
            let slot = slots[last as usize];
            let mut secs = 0f64;
            let mut in_slot = 0u64;
            for ((t, s), &b) in &per_slot_source {
                if *t == last {
                    in_slot += b;
                    secs = secs.max(b as f64 * 8.0 / p.sources[*s as usize].bandwidth_bps as f64);
                }
            }
            if let Some(bps) = p.ingress_bps {
                secs = secs.max(in_slot as f64 * 8.0 / bps.max(1) as f64);
            }
            (slot.start + secs.ceil() as i64).min(slot.end)
        }
    };
    let ingress_per_slot = slots
        .iter()
        .map(|t| p.ingress_bps.map(|bps| bytes_at(bps, t.secs())))
        .collect();
    Plan {
        strategy,
        slots,
        assignments,
        per_source,
        total_cost,
        bytes,
        unplanned,
        finish,
        shortfall,
        ingress_per_slot,
    }
}

/// Cost of a plan by source kind.
pub fn cost_by_kind(plan: &Plan, sources: &[Source]) -> Vec<(SourceKind, u64, f64)> {
    let mut by: BTreeMap<SourceKind, (u64, f64)> = BTreeMap::new();
    for (u, s) in plan.per_source.iter().zip(sources) {
        let e = by.entry(s.kind).or_default();
        e.0 += u.bytes;
        e.1 += u.cost;
    }
    by.into_iter().map(|(k, (b, c))| (k, b, c)).collect()
}
