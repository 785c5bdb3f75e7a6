//! A site plan as the appliances of the site run it: `fill plan --site --out PLAN.json`
//! writes it, `fill run --site --plan PLAN.json` reads it (or computes the same one); its
//! fields are in docs/json.md ("The site plan file").
//!
//! Per file of the site it keeps the *order*: the appliance that lands it (or that holds it
//! already), then every other appliance that needs it, in the site file's order starting
//! after that one. A copy that cannot be had from the appliance the plan names is taken
//! from the next one in the order that is ahead, and an appliance whose turn comes lands it
//! itself, so each appliance, deciding alone, passes a dead or stuck lander over to the
//! same successor.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result, bail};
use fill_core::ContentId;
use serde::{Deserialize, Serialize};

/// The `format` a plan file carries.
pub const FORMAT: &str = "fill-site-plan/1";

/// Where a route's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum From {
    /// An external source, by name: the appliance lands the range.
    Source(String),
    /// Another appliance of the site, by index in `appliances`.
    Appliance(u32),
}

/// One range of one appliance's delta and where the plan takes it from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Index in `appliances`.
    pub appliance: u32,
    /// Index in `files`.
    pub file: u32,
    /// Byte offset.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
    /// From where.
    pub from: From,
}

/// A file of the site plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOrder {
    /// Its id (64 hex).
    pub id: String,
    /// Appliance indices: its lander (or holder) first, then the others that need it.
    pub order: Vec<u32>,
}

/// The plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitePlanDoc {
    /// [`FORMAT`].
    pub format: String,
    /// RFC 3339: the plan's start.
    pub start: String,
    /// The appliances, in the site file's order.
    pub appliances: Vec<String>,
    /// Bytes the plan takes from outside the site.
    pub external_bytes: u64,
    /// Money of those bytes.
    pub total_cost: f64,
    /// Per appliance (same order): bytes the plan has it land from outside.
    pub planned_external: Vec<u64>,
    /// Per appliance: money of those bytes.
    pub planned_cost: Vec<f64>,
    /// The files.
    pub files: Vec<FileOrder>,
    /// Every appliance's ranges.
    pub routes: Vec<Route>,
}

/// What one appliance does with one file of its delta.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MyFile {
    /// Appliances to take it from, in turn (empty: it lands the file).
    pub relay: Vec<u32>,
    /// Appliances whose blocks of it are watched.
    pub watch: Vec<u32>,
    /// Ranges it lands: (offset, end, external source name).
    pub landings: Vec<(u64, u64, String)>,
}

impl SitePlanDoc {
    /// The plan file of a computed site plan of appliances `names`, site files `ids`, over
    /// external `sources`.
    pub fn new(
        names: &[String],
        ids: &[ContentId],
        sources: &[fill_core::source::Source],
        plan: &fill_core::plan::site::SitePlan,
        start: i64,
    ) -> Self {
        let n = names.len();
        let mut routes: Vec<Route> = Vec::new();
        for l in &plan.landings {
            routes.push(Route {
                appliance: l.appliance,
                file: l.entry,
                offset: l.offset,
                length: l.length,
                from: From::Source(sources[l.source as usize].name.clone()),
            });
        }
        for c in &plan.copies {
            routes.push(Route {
                appliance: c.to,
                file: c.entry,
                offset: c.offset,
                length: c.length,
                from: From::Appliance(c.from),
            });
        }
        routes.sort_by_key(|r| (r.file, r.appliance, r.offset));
        // The lander of each file: the first landing by offset, else the first sender.
        let mut first: BTreeMap<u32, (u64, bool, u32)> = BTreeMap::new();
        let mut needing: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for r in &routes {
            needing.entry(r.file).or_default().insert(r.appliance);
            let (lands, who) = match r.from {
                From::Source(_) => (true, r.appliance),
                From::Appliance(a) => (false, a),
            };
            let key = (r.offset, !lands, who);
            first
                .entry(r.file)
                .and_modify(|k| *k = (*k).min(key))
                .or_insert(key);
        }
        let files = ids
            .iter()
            .enumerate()
            .map(|(e, id)| {
                let e = e as u32;
                let order = match first.get(&e) {
                    None => Vec::new(),
                    Some(&(_, _, lander)) => {
                        let need = &needing[&e];
                        let mut order = vec![lander];
                        order.extend(
                            (1..n as u32)
                                .map(|k| (lander + k) % n as u32)
                                .filter(|a| need.contains(a)),
                        );
                        order
                    }
                };
                FileOrder {
                    id: id.to_hex().to_string(),
                    order,
                }
            })
            .collect();
        let mut planned_external = vec![0u64; n];
        let mut planned_cost = vec![0f64; n];
        for l in &plan.landings {
            planned_external[l.appliance as usize] += l.length;
            planned_cost[l.appliance as usize] += sources[l.source as usize].cost(l.length);
        }
        Self {
            format: FORMAT.into(),
            start: fill_core::duration::format_rfc3339(start),
            appliances: names.to_vec(),
            external_bytes: plan.external.bytes,
            total_cost: plan.external.total_cost,
            planned_external,
            planned_cost,
            files,
            routes,
        }
    }

    /// Parses and checks a plan file against the site's appliances: every index in range,
    /// every id well formed, every order a list of distinct appliances.
    pub fn parse(text: &str, appliances: &[String]) -> Result<Self> {
        let doc: Self = serde_json::from_str(text).context("not a site plan")?;
        if doc.format != FORMAT {
            bail!("format {:?}, not {FORMAT:?}", doc.format);
        }
        if doc.appliances != appliances {
            bail!(
                "it plans appliances {:?}, the site file has {:?}",
                doc.appliances,
                appliances
            );
        }
        let n = appliances.len();
        if doc.planned_external.len() != n || doc.planned_cost.len() != n {
            bail!("planned_external and planned_cost need one value per appliance");
        }
        for f in &doc.files {
            ContentId::parse(&f.id).with_context(|| format!("file id {:?}", f.id))?;
            let distinct: BTreeSet<u32> = f.order.iter().copied().collect();
            if distinct.len() != f.order.len() || f.order.iter().any(|&a| a as usize >= n) {
                bail!(
                    "file {}: order {:?} is not a list of distinct appliances",
                    f.id,
                    f.order
                );
            }
        }
        for r in &doc.routes {
            if r.appliance as usize >= n || r.file as usize >= doc.files.len() {
                bail!(
                    "a route names appliance {} of file {}: out of range",
                    r.appliance,
                    r.file
                );
            }
            if let From::Appliance(a) = r.from
                && (a as usize >= n || a == r.appliance)
            {
                bail!(
                    "a route of appliance {} copies from appliance {a}",
                    r.appliance
                );
            }
        }
        Ok(doc)
    }

    /// What appliance `me` does with each file the plan gives it, by id.
    pub fn for_appliance(&self, me: u32) -> HashMap<ContentId, MyFile> {
        let mut out: HashMap<ContentId, MyFile> = HashMap::new();
        let mut copy_from: HashMap<u32, (u64, u32)> = HashMap::new();
        for r in self.routes.iter().filter(|r| r.appliance == me) {
            let Ok(id) = ContentId::parse(&self.files[r.file as usize].id) else {
                continue;
            };
            let mine = out.entry(id).or_default();
            match &r.from {
                From::Source(name) => {
                    mine.landings
                        .push((r.offset, r.offset + r.length, name.clone()))
                }
                &From::Appliance(a) => {
                    let e = copy_from.entry(r.file).or_insert((r.offset, a));
                    if r.offset < e.0 {
                        *e = (r.offset, a);
                    }
                }
            }
        }
        for (file, (_, from)) in copy_from {
            let f = &self.files[file as usize];
            let Ok(id) = ContentId::parse(&f.id) else {
                continue;
            };
            let mine = out.entry(id).or_default();
            // The one the plan names, then those ahead of this appliance in the order.
            mine.relay.push(from);
            mine.relay.extend(
                f.order
                    .iter()
                    .take_while(|&&a| a != me)
                    .filter(|&&a| a != from),
            );
        }
        for (id, mine) in &mut out {
            if let Some(f) = self.files.iter().find(|f| f.id == id.to_hex().as_str()) {
                mine.watch = f.order.iter().copied().filter(|&a| a != me).collect();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> SitePlanDoc {
        let id = |k: u8| blake3::hash(&[k]).to_hex().to_string();
        SitePlanDoc {
            format: FORMAT.into(),
            start: "2026-12-04T00:00:00Z".into(),
            appliances: vec!["a".into(), "b".into(), "c".into()],
            external_bytes: 10,
            total_cost: 1.0,
            planned_external: vec![10, 0, 0],
            planned_cost: vec![1.0, 0.0, 0.0],
            files: vec![FileOrder {
                id: id(1),
                order: vec![1, 2, 0],
            }],
            routes: vec![
                Route {
                    appliance: 1,
                    file: 0,
                    offset: 0,
                    length: 10,
                    from: From::Source("origin".into()),
                },
                Route {
                    appliance: 2,
                    file: 0,
                    offset: 0,
                    length: 10,
                    from: From::Appliance(1),
                },
                Route {
                    appliance: 0,
                    file: 0,
                    offset: 0,
                    length: 10,
                    from: From::Appliance(2),
                },
            ],
        }
    }

    #[test]
    fn each_appliance_follows_the_plan_then_those_ahead_of_it() {
        let d = doc();
        let names = d.appliances.clone();
        let d = SitePlanDoc::parse(&serde_json::to_string(&d).unwrap(), &names).unwrap();
        let id = ContentId::parse(&d.files[0].id).unwrap();
        let lander = &d.for_appliance(1)[&id];
        assert!(lander.relay.is_empty());
        assert_eq!(lander.landings, vec![(0, 10, "origin".to_string())]);
        assert_eq!(lander.watch, vec![2, 0]);
        assert_eq!(d.for_appliance(2)[&id].relay, vec![1]);
        // Plan: from c (2); then the lander b (1), ahead of a in the order.
        assert_eq!(d.for_appliance(0)[&id].relay, vec![2, 1]);
    }

    #[test]
    fn a_hostile_plan_file_is_refused_with_the_reason() {
        let names: Vec<String> = doc().appliances;
        type Spoil = Box<dyn Fn(&mut SitePlanDoc)>;
        let cases: Vec<(Spoil, &str)> = vec![
            (Box::new(|d| d.format = "x".into()), "format"),
            (
                Box::new(|d| d.appliances.pop().map(drop).unwrap_or(())),
                "plans appliances",
            ),
            (Box::new(|d| d.files[0].order = vec![1, 1]), "distinct"),
            (Box::new(|d| d.files[0].order = vec![7]), "distinct"),
            (Box::new(|d| d.files[0].id = "../etc".into()), "file id"),
            (Box::new(|d| d.routes[0].file = 9), "out of range"),
            (
                Box::new(|d| d.routes[1].from = From::Appliance(2)),
                "copies from",
            ),
            (
                Box::new(|d| d.planned_cost.clear()),
                "one value per appliance",
            ),
        ];
        for (spoil, why) in cases {
            let mut d = doc();
            spoil(&mut d);
            let e = SitePlanDoc::parse(&serde_json::to_string(&d).unwrap(), &names).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{e:#} lacks {why:?}");
        }
        assert!(SitePlanDoc::parse("{\"format\": 1", &names).is_err());
    }
}
