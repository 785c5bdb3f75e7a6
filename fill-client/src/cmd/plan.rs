//! `fill plan`: a plan for one appliance (`--site`: crate::site).

use anyhow::{Context, Result, bail};
use fill_core::size::format_size;

use crate::Outcome;
use crate::cli::{PlanArgs, Strategy};
use crate::common::{
    compute_delta, delta_from_inventory, open_catalog, open_store, print_json, runtime,
};

pub(crate) fn core_strategy(s: Strategy) -> fill_core::plan::Strategy {
    match s {
        Strategy::Optimal => fill_core::plan::Strategy::Optimal,
        Strategy::Escalation => fill_core::plan::Strategy::Escalation,
    }
}

pub(crate) fn plan_cmd(args: &PlanArgs) -> Result<Outcome> {
    let deadline = args.deadline.0;
    let ingress_bps = args.ingress.map(|r| r.0);
    let start = match &args.start {
        Some(t) => t.0,
        None => crate::planning::now()?,
    };
    if let Some(site) = &args.site {
        let planned = crate::site::plan_site(
            site,
            crate::site::Horizon { start, deadline },
            crate::site::HeldFrom::Files,
        )?;
        if let Some(out) = &args.out {
            let doc = crate::site_plan::SitePlanDoc::new(
                planned.names(),
                planned.ids(),
                planned.sources(),
                planned.plan(),
                start,
            );
            let bytes = serde_json::to_vec_pretty(&doc)?;
            std::fs::write(out, bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        if args.json {
            print_json(&crate::site::to_json(&planned))?;
        } else {
            out!("{}", crate::site::table(&planned, args.explain))?;
        }
        return Ok(Outcome::Ok);
    }
    // clap requires these without --site.
    let (Some(target_path), Some(sources_path), Some(capacity)) =
        (&args.target, &args.sources, &args.capacity)
    else {
        bail!("--target, --store, --sources and --capacity are required without --site");
    };
    let capacity = capacity.0;
    let target_file = open_catalog(target_path)?;
    let target = target_file.validate()?;
    let specs = crate::sources::load(sources_path)?;
    let rt = runtime(false)?;
    let (_, holdings) = crate::sources::reach(&specs, &rt)?;
    let sources: Vec<fill_core::source::Source> = specs.iter().map(|s| s.source.clone()).collect();
    let sd = match (&args.store, &args.inventory) {
        (Some(store), _) => compute_delta(&target, &open_store(store)?, capacity)?,
        (None, Some(inv)) => delta_from_inventory(&target, &open_catalog(inv)?, capacity)?,
        (None, None) => bail!("give --store or --inventory"),
    };
    let input = crate::planning::PlanInput {
        target: &target,
        delta: &sd.delta,
        sources: &sources,
        holdings: &holdings,
        start,
        deadline,
        ingress_bps,
    };
    let planned = crate::planning::make(&input, core_strategy(args.strategy))?;
    let escalation = match args.strategy {
        Strategy::Optimal if args.explain || args.json => {
            Some(crate::planning::make(&input, fill_core::plan::Strategy::Escalation)?.plan)
        }
        _ => None,
    };
    if args.json {
        print_json(&crate::planning::to_json(
            &input,
            &planned,
            escalation.as_ref().map(|e| e.total_cost),
        ))?;
    } else if args.explain {
        out!(
            "{}",
            crate::planning::explain(&input, &planned, escalation.as_ref())
        )?;
    } else {
        out!("{}", plan_table(&input, &planned))?;
    }
    Ok(Outcome::Ok)
}

/// The short human form of a plan: per source, then the total and the finish.
pub(crate) fn plan_table(
    input: &crate::planning::PlanInput<'_>,
    p: &crate::planning::Planned,
) -> String {
    use fill_core::duration::format_rfc3339;
    let plan = &p.plan;
    let mut s = format!(
        "{:<14} {:<7} {:>12} {:>10} {:>12}\n",
        "source", "kind", "bytes", "cost", "available"
    );
    for (u, src) in plan.per_source.iter().zip(input.sources) {
        s += &format!(
            "{:<14} {:<7} {:>12} {:>10.4} {:>12}\n",
            src.name,
            src.kind.name(),
            format_size(u.bytes),
            u.cost,
            format_size(u.available)
        );
    }
    s += &format!(
        "plan: {} for {:.4}, {} slots, finish {}{}\n",
        format_size(plan.bytes),
        plan.total_cost,
        plan.slots.len(),
        format_rfc3339(plan.finish),
        match &plan.shortfall {
            None => " (meets the deadline)".to_owned(),
            Some(short) => format!(
                " (misses the deadline: {} short by then; see --explain)",
                format_size(short.bytes)
            ),
        }
    );
    s
}
