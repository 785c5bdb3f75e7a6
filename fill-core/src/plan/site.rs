//! Site-level plans: several appliances in one site, with overlapping deltas and shared
//! external sources.
//!
//! Each range crosses a costly link at most once: the site's unique external ranges (needed
//! by some appliance, held by none) are planned together by the single-appliance optimiser
//! against the shared sources and the site's uplink; each piece *lands* on one appliance that
//! needs it (the one with the most ingress left in that slot); every other appliance that
//! needs it copies it from there, free, from the next slot on, within the sender's in-site
//! bandwidth and the receiver's ingress. Ranges some appliance already holds are copied from
//! it from the first slot. Copies that do not fit before the deadline run after it, and the
//! plan says so (`late_bytes`): the deadline then does not allow a single crossing, and the
//! operator can choose to fetch those bytes twice.

use std::collections::BTreeMap;

use super::{Demand, Plan, PlanError, Problem, Slot, Strategy};
use crate::source::Source;

/// One appliance of a site.
#[derive(Debug, Clone, Copy)]
pub struct SiteAppliance<'a> {
    /// Its ranges to fetch, most important first. `entry` is a site-wide file index, `class`
    /// indexes [`SiteProblem::classes`].
    pub demands: &'a [Demand],
    /// Site file indices it already holds complete, sorted.
    pub holds: &'a [u32],
    /// What it can receive, bits per second (landing and copies together).
    pub ingress_bps: Option<u64>,
}

/// A site to plan.
#[derive(Debug, Clone, Copy)]
pub struct SiteProblem<'a> {
    /// External sources, shared by the site.
    pub sources: &'a [Source],
    /// Holder sets over `sources`, as for [`Problem::classes`].
    pub classes: &'a [Vec<usize>],
    /// The appliances.
    pub appliances: &'a [SiteAppliance<'a>],
    /// Unix seconds.
    pub start: i64,
    /// Seconds from `start`.
    pub horizon: i64,
    /// The site's external link, bits per second; `None`: the appliances' ingress together.
    pub uplink_bps: Option<u64>,
    /// What one appliance can send to the others in the site, bits per second.
    pub peer_bps: u64,
    /// Slot length for the copies (and the external plan's slots are cut at it too).
    pub step: i64,
}

/// A copy inside the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy {
    /// Appliance sending.
    pub from: u32,
    /// Appliance receiving.
    pub to: u32,
    /// Site file index.
    pub entry: u32,
    /// Byte offset.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
    /// Index into [`SitePlan::slots`].
    pub slot: u32,
}

/// A landing: a piece of the external plan received by one appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landing {
    /// Appliance receiving.
    pub appliance: u32,
    /// Site file index.
    pub entry: u32,
    /// Byte offset.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
    /// External source.
    pub source: u32,
    /// Index into [`SitePlan::slots`].
    pub slot: u32,
}

/// Per appliance.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ApplianceUse {
    /// Bytes it receives from external sources.
    pub external_bytes: u64,
    /// Bytes it receives from other appliances.
    pub peer_bytes: u64,
    /// Bytes it sends to other appliances.
    pub sent_bytes: u64,
    /// Unix seconds when its last byte is expected.
    pub finish: i64,
}

/// A site plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SitePlan {
    /// The external plan of the site's unique ranges.
    pub external: Plan,
    /// The unique external ranges (the external plan's demands).
    pub unique: Vec<Demand>,
    /// Slots of the whole site plan (the external plan's, then `step`-long ones after it
    /// when copies run late).
    pub slots: Vec<Slot>,
    /// Who receives each external piece.
    pub landings: Vec<Landing>,
    /// Copies inside the site.
    pub copies: Vec<Copy>,
    /// Per appliance.
    pub per_appliance: Vec<ApplianceUse>,
    /// Bytes of copies scheduled after the deadline.
    pub late_bytes: u64,
    /// Unix seconds when the last byte anywhere is expected.
    pub finish: i64,
}

/// A range of a site file: (entry, offset, length).
type RangeKey = (u32, u64, u64);

/// Where a piece can be copied from: (appliance, offset, length, first slot it is there).
type Held = (u32, u64, u64, usize);

fn bytes_in(bps: Option<u64>, slot: &Slot) -> u64 {
    bps.map_or(u64::MAX, |b| super::bytes_at(b, slot.secs()))
}

/// Plans a site.
pub fn plan_site(p: &SiteProblem<'_>) -> Result<SitePlan, PlanError> {
    if p.appliances.is_empty() {
        return Err(PlanError::Bad("a site needs at least one appliance".into()));
    }
    // The unique ranges: first by the best position any appliance gives them.
    let mut first: BTreeMap<(u32, u64, u64), (usize, u32)> = BTreeMap::new();
    let mut needing: BTreeMap<(u32, u64, u64), Vec<u32>> = BTreeMap::new();
    for (a, app) in p.appliances.iter().enumerate() {
        for (pos, d) in app.demands.iter().enumerate() {
            let key = (d.entry, d.offset, d.length);
            let e = first.entry(key).or_insert((pos, d.class));
            e.0 = e.0.min(pos);
            needing.entry(key).or_default().push(a as u32);
        }
    }
    let holders = |entry: u32| -> Vec<u32> {
        (0..p.appliances.len() as u32)
            .filter(|&a| p.appliances[a as usize].holds.binary_search(&entry).is_ok())
            .collect()
    };
    let mut order: Vec<((u32, u64, u64), usize, u32)> =
        first.iter().map(|(&k, &(pos, c))| (k, pos, c)).collect();
    order.sort_by_key(|&(k, pos, _)| (pos, k));
    let unique: Vec<Demand> = order
        .iter()
        .filter(|(k, _, _)| holders(k.0).is_empty())
        .map(|&((entry, offset, length), _, class)| Demand {
            entry,
            offset,
            length,
            class,
        })
        .collect();
    let uplink = match p.uplink_bps {
        Some(u) => Some(u),
        None => p
            .appliances
            .iter()
            .map(|a| a.ingress_bps)
            .try_fold(0u64, |acc, i| i.map(|i| acc.saturating_add(i))),
    };
    // The external plan leaves the last step of the horizon to the copies of what lands last.
    let external_horizon = if p.horizon > 2 * p.step.max(1) {
        p.horizon - p.step.max(1)
    } else {
        p.horizon
    };
    let external = super::plan_with_step(
        &Problem {
            sources: p.sources,
            classes: p.classes,
            demands: &unique,
            start: p.start,
            horizon: external_horizon,
            ingress_bps: uplink,
        },
        Strategy::Optimal,
        p.step,
    )?;
    // Slots: the external plan's, extended by `step` slots when copies need them.
    let mut slots = external.slots.clone();
    let deadline = p.start + p.horizon;
    while slots.last().is_some_and(|s| s.end < deadline) {
        let last = slots.last().map_or(p.start, |s| s.end);
        slots.push(Slot {
            start: last,
            end: (last + p.step.max(1)).min(deadline),
        });
    }
    let n = p.appliances.len();
    let mut ingress_left: Vec<Vec<u64>> = (0..n)
        .map(|a| {
            slots
                .iter()
                .map(|s| bytes_in(p.appliances[a].ingress_bps, s))
                .collect()
        })
        .collect();
    let mut send_left: Vec<Vec<u64>> = (0..n)
        .map(|_| {
            slots
                .iter()
                .map(|s| bytes_in(Some(p.peer_bps), s))
                .collect()
        })
        .collect();
    let extend =
        |slots: &mut Vec<Slot>, ingress_left: &mut Vec<Vec<u64>>, send_left: &mut Vec<Vec<u64>>| {
            let last = slots.last().map_or(p.start, |s| s.end);
            let s = Slot {
                start: last,
                end: last + p.step.max(3600),
            };
            slots.push(s);
            for (a, v) in ingress_left.iter_mut().enumerate() {
                v.push(bytes_in(p.appliances[a].ingress_bps, &s));
            }
            for v in send_left.iter_mut() {
                v.push(bytes_in(Some(p.peer_bps), &s));
            }
        };
    // Copies may run past the deadline, but not forever (an ingress of a few bits per second).
    let max_slots = slots.len() + (super::MAX_HORIZON_DAYS * 86_400 / p.step.max(3600)) as usize;
    let never = |bytes: u64| PlanError::Never {
        bytes,
        days: super::MAX_HORIZON_DAYS,
    };
    // Landings: each external piece on the needing appliances with the most ingress left in
    // its slot; what does not fit waits for the next slots on the same appliances.
    let mut landings = Vec::new();
    let mut sources_of: BTreeMap<RangeKey, Vec<Held>> = BTreeMap::new();
    for a in &external.assignments {
        let d = unique[a.demand as usize];
        let who = &needing[&(d.entry, d.offset, d.length)];
        let (mut offset, mut rest, mut t) = (a.offset, a.length, a.slot as usize);
        while rest > 0 {
            if t >= slots.len() {
                if slots.len() >= max_slots {
                    return Err(never(rest));
                }
                extend(&mut slots, &mut ingress_left, &mut send_left);
            }
            let best = who
                .iter()
                .copied()
                .max_by_key(|&w| (ingress_left[w as usize][t], std::cmp::Reverse(w)));
            let Some(w) = best else { break };
            let take = rest.min(ingress_left[w as usize][t]);
            if take == 0 {
                t += 1;
                continue;
            }
            ingress_left[w as usize][t] -= take;
            sources_of
                .entry((d.entry, d.offset, d.length))
                .or_default()
                .push((w, offset, take, t + 1));
            landings.push(Landing {
                appliance: w,
                entry: d.entry,
                offset,
                length: take,
                source: a.source,
                slot: t as u32,
            });
            offset += take;
            rest -= take;
        }
    }
    // Copies: every other needing appliance takes each landed piece from its lander, from the
    // next slot on; ranges held in the site are copied from their holder from slot 0.
    let mut copies = Vec::new();
    // First slots that may have room: ingress and sending only shrink, so these only move on.
    let mut first_in = vec![0usize; n];
    let mut first_out = vec![0usize; n];
    // Bytes each appliance has been given to send so far: held files go out from the holder
    // with the least, so one well-stocked appliance does not carry the site alone.
    let mut sending = vec![0u64; n];
    for &(key, _, _) in &order {
        let who = &needing[&key];
        let held_by = holders(key.0);
        for &to in who {
            let pieces: Vec<Held> = match held_by.iter().min_by_key(|&&h| (sending[h as usize], h))
            {
                Some(&h) => vec![(h, key.1, key.2, 0)],
                None => sources_of.get(&key).cloned().unwrap_or_default(),
            };
            for &(from, off, len, ready) in &pieces {
                if from != to {
                    sending[from as usize] += len;
                }
                if from == to {
                    continue;
                }
                let (to_i, from_i) = (to as usize, from as usize);
                let (mut offset, mut rest) = (off, len);
                let mut t = ready;
                while rest > 0 {
                    while first_in[to_i] < slots.len() && ingress_left[to_i][first_in[to_i]] == 0 {
                        first_in[to_i] += 1;
                    }
                    while first_out[from_i] < slots.len()
                        && send_left[from_i][first_out[from_i]] == 0
                    {
                        first_out[from_i] += 1;
                    }
                    t = t.max(first_in[to_i]).max(first_out[from_i]);
                    if t >= slots.len() {
                        if slots.len() >= max_slots {
                            return Err(never(rest));
                        }
                        extend(&mut slots, &mut ingress_left, &mut send_left);
                    }
                    let take = rest.min(ingress_left[to_i][t]).min(send_left[from_i][t]);
                    if take == 0 {
                        t += 1;
                        continue;
                    }
                    ingress_left[to as usize][t] -= take;
                    send_left[from as usize][t] -= take;
                    copies.push(Copy {
                        from,
                        to,
                        entry: key.0,
                        offset,
                        length: take,
                        slot: t as u32,
                    });
                    offset += take;
                    rest -= take;
                }
            }
        }
    }
    let mut per_appliance = vec![
        ApplianceUse {
            finish: p.start,
            ..ApplianceUse::default()
        };
        n
    ];
    let end_of = |slot: u32| slots[slot as usize].end;
    for l in &landings {
        let u = &mut per_appliance[l.appliance as usize];
        u.external_bytes += l.length;
        u.finish = u.finish.max(end_of(l.slot));
    }
    let mut late_bytes = 0;
    for c in &copies {
        per_appliance[c.to as usize].peer_bytes += c.length;
        per_appliance[c.from as usize].sent_bytes += c.length;
        let u = &mut per_appliance[c.to as usize];
        u.finish = u.finish.max(end_of(c.slot));
        if end_of(c.slot) > deadline {
            late_bytes += c.length;
        }
    }
    let finish = per_appliance
        .iter()
        .map(|u| u.finish)
        .max()
        .unwrap_or(p.start);
    Ok(SitePlan {
        external,
        unique,
        slots,
        landings,
        copies,
        per_appliance,
        late_bytes,
        finish,
    })
}

/// Each appliance planning by itself, as the site's appliances do without a joint plan: the
/// same sources, whose bandwidth they share (each gets an equal part of it), and no copies
/// inside the site. The comparison `--explain` and the docs make.
pub fn plan_alone(p: &SiteProblem<'_>) -> Result<Vec<Plan>, PlanError> {
    let n = p.appliances.len().max(1) as u64;
    let shared: Vec<Source> = p
        .sources
        .iter()
        .map(|s| Source {
            bandwidth_bps: (s.bandwidth_bps / n).max(1),
            ..s.clone()
        })
        .collect();
    p.appliances
        .iter()
        .map(|a| {
            super::plan_with_step(
                &Problem {
                    sources: &shared,
                    classes: p.classes,
                    demands: a.demands,
                    start: p.start,
                    horizon: p.horizon,
                    ingress_bps: a.ingress_bps,
                },
                Strategy::Optimal,
                p.step,
            )
        })
        .collect()
}

/// Slot index lookups for tests and callers: capacity left is not exposed; this recomputes
/// bytes per (appliance, slot) received.
pub fn received_per_slot(plan: &SitePlan, appliances: usize) -> Vec<Vec<u64>> {
    let mut r = vec![vec![0u64; plan.slots.len()]; appliances];
    for l in &plan.landings {
        r[l.appliance as usize][l.slot as usize] += l.length;
    }
    for c in &plan.copies {
        r[c.to as usize][c.slot as usize] += c.length;
    }
    r
}
