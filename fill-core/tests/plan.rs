//! The planner against an independent optimum: on seeded random small instances, an LP over
//! every (range, source, slot) solved by `good_lp`'s pure-Rust simplex. The plan must cost the
//! same (within a block's cost per source), never exceed a capacity, cover every range
//! exactly, be no costlier than escalation, and be the same plan every time.

use fill_core::plan::{self, Plan, Problem, Strategy};
use fill_core::rng::SplitMix64 as Rng;
use fill_core::source::{Source, SourceKind, Window};
use good_lp::{Expression, ResolutionError, Solution, SolverModel, microlp, variable, variables};

const DAY: i64 = 86_400;
const MIB: u64 = 1 << 20;

struct Instance {
    sources: Vec<Source>,
    classes: Vec<Vec<usize>>,
    demands: Vec<plan::Demand>,
    start: i64,
    horizon: i64,
    ingress: Option<u64>,
}

impl Instance {
    fn problem(&self) -> Problem<'_> {
        Problem {
            sources: &self.sources,
            classes: &self.classes,
            demands: &self.demands,
            start: self.start,
            horizon: self.horizon,
            ingress_bps: self.ingress,
        }
    }
}

fn instance(seed: u64) -> Instance {
    let mut r = Rng(seed);
    let n_sources = 1 + r.below(5) as usize;
    let costs = [0.0, 0.0, 0.005, 0.01, 0.02, 0.05, 0.08];
    let sources: Vec<Source> = (0..n_sources)
        .map(|i| Source {
            name: format!("s{i}"),
            kind: [SourceKind::Peer, SourceKind::Tier, SourceKind::Origin][r.below(3) as usize],
            url: format!("http://127.0.0.1:{}", 1000 + i),
            cost_per_gib: costs[r.below(costs.len() as u64) as usize],
            // 8 kbps .. 320 kbps: 86 MB .. 3.5 GB a day, so many instances are tight.
            bandwidth_bps: 8_000 * (1 + r.below(40)),
            window: r.chance(50).then(|| {
                let a = r.below(24) as u16 * 60;
                let b = (a + 60 * (1 + r.below(20) as u16)) % 1440;
                Window {
                    start_min: a,
                    end_min: b,
                    zone: fill_core::source::Zone::Offset([0, 120, -300][r.below(3) as usize]),
                }
            }),
            max_connections: 4,
        })
        .collect();
    let n_classes = 1 + r.below(5) as usize;
    let classes: Vec<Vec<usize>> = (0..n_classes)
        .map(|_| {
            let mut c: Vec<usize> = (0..n_sources).filter(|_| r.chance(50)).collect();
            if c.is_empty() {
                c.push(r.below(n_sources as u64) as usize);
            }
            c
        })
        .collect();
    let n_demands = 1 + r.below(12) as usize;
    let demands = (0..n_demands)
        .map(|i| plan::Demand {
            entry: i as u32,
            offset: MIB * r.below(4),
            length: 1 + r.below(60 * MIB),
            class: r.below(n_classes as u64) as u32,
        })
        .collect();
    Instance {
        sources,
        classes,
        demands,
        start: 1_780_000_000 + r.below(DAY as u64) as i64,
        horizon: 3600 * (2 + r.below(40) as i64),
        ingress: r.chance(40).then(|| 8_000 * (20 + r.below(200))),
    }
}

/// Bytes a source can deliver in a slot, worked out here rather than by the planner.
fn cap(s: &Source, slot: &plan::Slot) -> f64 {
    let open = s.window.as_ref().is_none_or(|w| w.is_open(slot.start));
    if open {
        (s.bandwidth_bps as f64 * (slot.end - slot.start) as f64 / 8.0).floor()
    } else {
        0.0
    }
}

/// The LP's unit of bytes (MiB): byte-sized variables and per-byte costs near 1e-11 are
/// beyond a simplex's tolerances.
const UNIT: f64 = MIB as f64;

/// The minimum cost of delivering every range within `slots`, or `None` when impossible.
fn lp_optimum(inst: &Instance, slots: &[plan::Slot]) -> Option<f64> {
    let mut vars = variables!();
    let mut objective = Expression::from(0.0);
    // x[d][(s, t)]
    let mut x = Vec::new();
    for d in &inst.demands {
        let mut row = Vec::new();
        for &s in &inst.classes[d.class as usize] {
            for (t, slot) in slots.iter().enumerate() {
                if cap(&inst.sources[s], slot) > 0.0 {
                    let v = vars.add(variable().min(0.0));
                    objective += v * inst.sources[s].cost_per_gib;
                    row.push((s, t, v));
                }
            }
        }
        x.push(row);
    }
    let mut model = vars.minimise(objective).using(microlp);
    for (d, row) in inst.demands.iter().zip(&x) {
        let sum: Expression = row.iter().map(|&(_, _, v)| v).sum();
        model.add_constraint(sum.eq(d.length as f64 / UNIT));
    }
    for (s, src) in inst.sources.iter().enumerate() {
        for (t, slot) in slots.iter().enumerate() {
            let used: Vec<_> = x
                .iter()
                .flatten()
                .filter(|e| e.0 == s && e.1 == t)
                .map(|e| e.2)
                .collect();
            if !used.is_empty() {
                let sum: Expression = used.into_iter().sum();
                model.add_constraint(sum.leq(cap(src, slot) / UNIT));
            }
        }
    }
    if let Some(bps) = inst.ingress {
        for (t, slot) in slots.iter().enumerate() {
            let used: Vec<_> = x
                .iter()
                .flatten()
                .filter(|e| e.1 == t)
                .map(|e| e.2)
                .collect();
            if !used.is_empty() {
                let sum: Expression = used.into_iter().sum();
                model.add_constraint(
                    sum.leq((bps as f64 * (slot.end - slot.start) as f64 / 8.0).floor() / UNIT),
                );
            }
        }
    }
    match model.solve() {
        Ok(sol) => Some(
            x.iter()
                .flatten()
                .map(|&(s, _, v)| sol.value(v) * inst.sources[s].cost_per_gib / 1024.0)
                .sum(),
        ),
        Err(ResolutionError::Infeasible) => None,
        Err(e) => panic!("LP solver failed: {e}"),
    }
}

/// Every range covered exactly, by sources that hold it, open in the slot; no capacity
/// exceeded in any slot.
fn check_feasible(inst: &Instance, p: &Plan) {
    let mut next = vec![None; inst.demands.len()];
    for a in &p.assignments {
        let d = &inst.demands[a.demand as usize];
        let at = next[a.demand as usize].unwrap_or(d.offset);
        assert_eq!(a.offset, at, "pieces of range {} are contiguous", a.demand);
        assert!(a.length > 0);
        next[a.demand as usize] = Some(at + a.length);
        assert!(
            inst.classes[d.class as usize].contains(&(a.source as usize)),
            "source holds the file"
        );
        assert!(
            cap(&inst.sources[a.source as usize], &p.slots[a.slot as usize]) > 0.0,
            "source open in its slot"
        );
    }
    if p.unplanned == 0 {
        for (i, d) in inst.demands.iter().enumerate() {
            assert_eq!(
                next[i],
                Some(d.offset + d.length),
                "range {i} fully covered"
            );
        }
    }
    let mut per = std::collections::BTreeMap::<(u32, u32), u64>::new();
    let mut per_slot = std::collections::BTreeMap::<u32, u64>::new();
    for a in &p.assignments {
        *per.entry((a.source, a.slot)).or_default() += a.length;
        *per_slot.entry(a.slot).or_default() += a.length;
    }
    for (&(s, t), &b) in &per {
        assert!(
            b as f64 <= cap(&inst.sources[s as usize], &p.slots[t as usize]),
            "source {s} over capacity in slot {t}"
        );
    }
    if let Some(bps) = inst.ingress {
        for (&t, &b) in &per_slot {
            let slot = p.slots[t as usize];
            assert!(
                b as f64 <= (bps as f64 * (slot.end - slot.start) as f64 / 8.0).floor(),
                "ingress over cap in slot {t}"
            );
        }
    }
}

fn last_slot(p: &Plan) -> usize {
    p.assignments
        .iter()
        .map(|a| a.slot as usize)
        .max()
        .unwrap_or(0)
}

#[test]
fn plans_match_an_independent_optimum() {
    let (mut feasible, mut extended, mut cheaper_than_escalation, mut escalation_late) =
        (0, 0, 0, 0);
    for seed in 0..1000u64 {
        let inst = instance(seed);
        let p = plan::plan(&inst.problem(), Strategy::Optimal).expect("plan");
        assert_eq!(
            p,
            plan::plan(&inst.problem(), Strategy::Optimal).unwrap(),
            "seed {seed}: same input, same plan"
        );
        check_feasible(&inst, &p);
        assert_eq!(
            p.unplanned, 0,
            "seed {seed}: the optimiser places every byte"
        );
        // One block's cost per source, plus float noise.
        let tolerance: f64 = inst.sources.iter().map(|s| s.cost(MIB)).sum::<f64>() + 1e-9;
        let used = &p.slots[..=last_slot(&p)];
        match &p.shortfall {
            None => {
                feasible += 1;
                let horizon_slots = plan::slots(&inst.sources, inst.start, inst.horizon);
                let best =
                    lp_optimum(&inst, &horizon_slots).expect("LP agrees the deadline can be met");
                assert!(
                    (p.total_cost - best).abs() <= tolerance,
                    "seed {seed}: plan {} vs LP {best}",
                    p.total_cost
                );
                let esc = plan::plan(&inst.problem(), Strategy::Escalation).unwrap();
                check_feasible(&inst, &esc);
                if esc.shortfall.is_some() || esc.unplanned > 0 {
                    escalation_late += 1;
                } else {
                    assert!(
                        p.total_cost <= esc.total_cost + tolerance,
                        "seed {seed}: optimal {} > escalation {}",
                        p.total_cost,
                        esc.total_cost
                    );
                    if p.total_cost + tolerance < esc.total_cost {
                        cheaper_than_escalation += 1;
                    }
                }
            }
            Some(short) => {
                extended += 1;
                assert!(short.bytes > 0);
                assert!(
                    !short.binding.is_empty(),
                    "seed {seed}: a shortfall names what binds"
                );
                let horizon_slots = plan::slots(&inst.sources, inst.start, inst.horizon);
                assert!(
                    lp_optimum(&inst, &horizon_slots).is_none(),
                    "seed {seed}: LP agrees the deadline cannot be met"
                );
                // The soonest finish: one slot fewer cannot carry everything...
                if used.len() > 1 {
                    assert!(
                        lp_optimum(&inst, &used[..used.len() - 1]).is_none(),
                        "seed {seed}: finishes soonest"
                    );
                }
                // ...and within the slots it uses, it is the cheapest.
                let best = lp_optimum(&inst, used).expect("feasible within the plan's slots");
                assert!(
                    (p.total_cost - best).abs() <= tolerance,
                    "seed {seed}: plan {} vs LP {best}",
                    p.total_cost
                );
            }
        }
    }
    // The generator must exercise both cases and the optimiser must matter.
    assert!(
        feasible > 200 && extended > 50,
        "feasible {feasible}, extended {extended}"
    );
    // Where the deadline can be met, escalation either costs more or misses it in a fair share.
    eprintln!(
        "feasible {feasible}, extended {extended}, optimal cheaper than escalation {cheaper_than_escalation}, escalation late {escalation_late}"
    );
    assert!(
        cheaper_than_escalation + escalation_late >= 5,
        "optimal beat escalation {cheaper_than_escalation} + {escalation_late} times"
    );
}

fn source(name: &str, cost: f64, bps: u64) -> Source {
    Source {
        name: name.into(),
        kind: if cost == 0.0 {
            SourceKind::Peer
        } else {
            SourceKind::Tier
        },
        url: "http://127.0.0.1:1".into(),
        cost_per_gib: cost,
        bandwidth_bps: bps,
        window: None,
        max_connections: 4,
    }
}

/// The case escalation gets wrong: the popular file takes the free peer although it could
/// come from a cheap tier, and the next file, held only by the peer and the costly origin,
/// goes to the origin.
#[test]
fn optimal_keeps_the_free_peer_for_what_only_it_holds() {
    const GIB: u64 = 1 << 30;
    let sources = vec![
        source("peer", 0.0, 8 * MIB),     // 1 GiB in 1024 s
        source("tier", 0.01, 80 * MIB),   // 10 GiB in 1024 s
        source("origin", 0.05, 80 * MIB), // 10 GiB in 1024 s
    ];
    let classes = vec![vec![0, 1], vec![0, 2]];
    let demands = vec![
        plan::Demand {
            entry: 0,
            offset: 0,
            length: GIB,
            class: 0,
        },
        plan::Demand {
            entry: 1,
            offset: 0,
            length: GIB,
            class: 1,
        },
    ];
    let problem = Problem {
        sources: &sources,
        classes: &classes,
        demands: &demands,
        start: 1_780_000_000 - 1_780_000_000 % DAY,
        horizon: 1024,
        ingress_bps: None,
    };
    let opt = plan::plan(&problem, Strategy::Optimal).unwrap();
    let esc = plan::plan(&problem, Strategy::Escalation).unwrap();
    // Optimal: file 0 from the tier (0.01), file 1 from the peer (free).
    assert_eq!(
        opt.per_source.iter().map(|u| u.bytes).collect::<Vec<_>>(),
        [GIB, GIB, 0]
    );
    assert!((opt.total_cost - 0.01).abs() < 1e-12);
    // Escalation: file 0 from the peer, file 1 from the origin (0.05).
    assert_eq!(
        esc.per_source.iter().map(|u| u.bytes).collect::<Vec<_>>(),
        [GIB, 0, GIB]
    );
    assert!((esc.total_cost - 0.05).abs() < 1e-12);
    assert!(opt.shortfall.is_none() && esc.shortfall.is_none());
}

/// A deadline too short for the only source: the shortfall names the source's bandwidth, and
/// the plan finishes as soon as the source can deliver.
#[test]
fn short_deadline_names_the_binding_source_and_finishes_soonest() {
    const GIB: u64 = 1 << 30;
    let sources = vec![source("origin", 0.02, 8 * MIB)]; // 1 GiB in 1024 s
    let classes = vec![vec![0]];
    let demands = vec![plan::Demand {
        entry: 0,
        offset: 0,
        length: 3 * GIB,
        class: 0,
    }];
    let start = 1_780_000_000 - 1_780_000_000 % DAY;
    let problem = Problem {
        sources: &sources,
        classes: &classes,
        demands: &demands,
        start,
        horizon: 1024,
        ingress_bps: None,
    };
    let p = plan::plan(&problem, Strategy::Optimal).unwrap();
    let short = p.shortfall.as_ref().expect("misses the deadline");
    assert_eq!(short.bytes, 2 * GIB);
    assert_eq!(
        short.binding,
        vec![plan::Binding::Source {
            source: 0,
            bytes: GIB,
            slots: 1
        }]
    );
    assert_eq!(p.finish, start + 3 * 1024);
    assert_eq!(p.bytes, 3 * GIB);
}

/// A random site: appliances with overlapping deltas over one file table, shared sources.
struct SiteInstance {
    sources: Vec<Source>,
    classes: Vec<Vec<usize>>,
    demands: Vec<Vec<plan::Demand>>,
    holds: Vec<Vec<u32>>,
    ingress: Vec<Option<u64>>,
}

fn site_instance(seed: u64) -> SiteInstance {
    let mut r = Rng(seed ^ 0x5173);
    let base = instance(seed);
    let n_files = 4 + r.below(12) as u32;
    let n_app = 2 + r.below(4) as usize;
    let file_class: Vec<u32> = (0..n_files)
        .map(|_| r.below(base.classes.len() as u64) as u32)
        .collect();
    let file_size: Vec<u64> = (0..n_files).map(|_| 1 + r.below(20 * MIB)).collect();
    let mut holds = vec![Vec::new(); n_app];
    let mut demands = vec![Vec::new(); n_app];
    for f in 0..n_files {
        // Now and then a file one appliance already holds.
        let holder = r.chance(15).then(|| r.below(n_app as u64) as usize);
        if let Some(h) = holder {
            holds[h].push(f);
        }
        for (a, d) in demands.iter_mut().enumerate() {
            if Some(a) != holder && r.chance(70) {
                d.push(plan::Demand {
                    entry: f,
                    offset: 0,
                    length: file_size[f as usize],
                    class: file_class[f as usize],
                });
            }
        }
    }
    SiteInstance {
        sources: base.sources,
        classes: base.classes,
        demands,
        holds,
        ingress: (0..n_app)
            .map(|_| r.chance(60).then(|| 8_000 * (20 + r.below(400))))
            .collect(),
    }
}

/// Per file: the pieces an appliance received, (offset, length, slot).
type Received = std::collections::BTreeMap<u32, Vec<(u64, u64, usize)>>;

#[test]
fn site_plans_cross_each_costly_link_once_and_respect_every_capacity() {
    use fill_core::plan::site::{self, SiteAppliance, SiteProblem};
    let (mut cheaper, mut compared) = (0, 0);
    for seed in 0..300u64 {
        let inst = site_instance(seed);
        let apps: Vec<SiteAppliance<'_>> = (0..inst.demands.len())
            .map(|a| SiteAppliance {
                demands: &inst.demands[a],
                holds: &inst.holds[a],
                ingress_bps: inst.ingress[a],
            })
            .collect();
        let problem = SiteProblem {
            sources: &inst.sources,
            classes: &inst.classes,
            appliances: &apps,
            start: 1_780_000_000,
            horizon: 48 * 3600,
            uplink_bps: None,
            peer_bps: 8_000_000,
            step: 3600,
        };
        let p = site::plan_site(&problem).expect("site plan");
        assert_eq!(
            p,
            site::plan_site(&problem).unwrap(),
            "seed {seed}: deterministic"
        );
        // Each unique external range crosses the costly link once: landings cover it exactly.
        let landed: u64 = p.landings.iter().map(|l| l.length).sum();
        let unique: u64 = p.unique.iter().map(|d| d.length).sum();
        assert_eq!(landed, unique, "seed {seed}");
        assert_eq!(p.external.bytes, unique, "seed {seed}");
        // Every appliance gets every byte it needs, once, from a valid place and time.
        let mut have: Vec<Received> = vec![Default::default(); apps.len()];
        for l in &p.landings {
            let d = inst.demands[l.appliance as usize]
                .iter()
                .find(|d| d.entry == l.entry)
                .expect("lands only where needed");
            assert!(inst.classes[d.class as usize].contains(&(l.source as usize)));
            have[l.appliance as usize]
                .entry(l.entry)
                .or_default()
                .push((l.offset, l.length, l.slot as usize));
        }
        for c in &p.copies {
            assert_ne!(c.from, c.to);
            let held = inst.holds[c.from as usize].contains(&c.entry);
            let landed_before = have[c.from as usize].get(&c.entry).is_some_and(|v| {
                v.iter().any(|&(o, l, t)| {
                    o <= c.offset && c.offset + c.length <= o + l && t < c.slot as usize
                })
            });
            assert!(
                held || landed_before,
                "seed {seed}: copy from an appliance that has it: {c:?}"
            );
        }
        for c in &p.copies {
            have[c.to as usize].entry(c.entry).or_default().push((
                c.offset,
                c.length,
                c.slot as usize,
            ));
        }
        for (a, ds) in inst.demands.iter().enumerate() {
            for d in ds {
                let mut pieces = have[a].get(&d.entry).cloned().unwrap_or_default();
                pieces.sort_unstable();
                let mut at = d.offset;
                for (o, l, _) in pieces {
                    assert_eq!(
                        o, at,
                        "seed {seed}: appliance {a} file {} contiguous, once",
                        d.entry
                    );
                    at += l;
                }
                assert_eq!(
                    at,
                    d.offset + d.length,
                    "seed {seed}: appliance {a} file {} complete",
                    d.entry
                );
            }
        }
        // Capacities: each appliance's ingress and in-site sending, per slot.
        let received = site::received_per_slot(&p, apps.len());
        for (a, row) in received.iter().enumerate() {
            for (t, &b) in row.iter().enumerate() {
                if let Some(bps) = inst.ingress[a] {
                    let slot = p.slots[t];
                    assert!(
                        b as f64 <= (bps as f64 * (slot.end - slot.start) as f64 / 8.0).floor(),
                        "seed {seed}: ingress of {a} in slot {t}"
                    );
                }
            }
        }
        let mut sent = std::collections::BTreeMap::<(u32, u32), u64>::new();
        for c in &p.copies {
            *sent.entry((c.from, c.slot)).or_default() += c.length;
        }
        for (&(_, t), &b) in &sent {
            let slot = p.slots[t as usize];
            assert!(
                b as f64 <= (8e6 * (slot.end - slot.start) as f64 / 8.0).floor(),
                "seed {seed}: peer sending in slot {t}"
            );
        }
        // Against each appliance planning alone: never costlier.
        let alone = site::plan_alone(&problem).unwrap();
        let alone_cost: f64 = alone.iter().map(|p| p.total_cost).sum();
        assert!(
            p.external.total_cost <= alone_cost + 1e-9,
            "seed {seed}: site {} vs alone {alone_cost}",
            p.external.total_cost
        );
        compared += 1;
        if p.external.total_cost + 1e-9 < alone_cost {
            cheaper += 1;
        }
    }
    assert!(
        cheaper * 2 > compared,
        "site planning saved money in {cheaper} of {compared} sites"
    );
}
