//! Laws of the delay simulation (docs/simulation.md), on the real delta and planner.

use fill_core::sim::{self, Outcome, SimConfig, SourceConfig};
use fill_core::source::SourceKind;

/// The default model, smaller: 2,000 titles (10,000 files), churn scaled to keep the
/// default's proportions.
fn small(seed: u64) -> SimConfig {
    let mut c = SimConfig {
        seed,
        ..SimConfig::default()
    };
    c.catalog.titles = 2_000;
    c.catalog.new_titles_per_day = 4.0;
    c.appliance.capacity = "12TB".into();
    c.appliance.ingress = "120Mbps".into();
    c
}

fn sweep(c: SimConfig, delays: &[u32]) -> Vec<Outcome> {
    let m = c.validate().unwrap();
    sim::sweep(&m, delays, &|_| {}).unwrap()
}

#[test]
fn zero_churn_means_no_delta_at_any_delay() {
    let mut c = small(7);
    c.catalog.new_titles_per_day = 0.0;
    c.catalog.reencode_per_day = 0.0;
    c.catalog.retire_per_day = 0.0;
    for o in sweep(c, &[0, 1, 7, 30, 60]) {
        assert_eq!(
            (o.bytes_fetched, o.cost, o.days_to_complete, o.days_to_live),
            (0, 0.0, 0, 0),
            "{o:?}"
        );
        assert_eq!(o.offload_at_install, 1.0);
    }
}

#[test]
fn bytes_and_cost_never_decrease_with_the_delay() {
    let delays: Vec<u32> = (0..=45).collect();
    for seed in [1, 2, 3] {
        let c = small(seed);
        let m = c.clone().validate().unwrap();
        let u = m.universe(45);
        assert!(
            m.peak_target_bytes(&u, 0, 45) <= m.capacity,
            "the law needs the target to fit"
        );
        let rows = sweep(c, &delays);
        assert!(rows.last().unwrap().bytes_fetched > 0);
        for w in rows.windows(2) {
            assert!(
                w[1].bytes_fetched >= w[0].bytes_fetched,
                "seed {seed}: bytes fell from {:?} to {:?}",
                w[0],
                w[1]
            );
            assert!(
                w[1].cost >= w[0].cost * (1.0 - 1e-9),
                "seed {seed}: cost fell from {:?} to {:?}",
                w[0],
                w[1]
            );
            assert!(w[1].days_to_complete >= w[0].days_to_complete);
        }
    }
}

#[test]
fn with_every_file_on_a_free_peer_the_origin_sends_nothing() {
    let mut c = small(5);
    c.source = vec![
        SourceConfig {
            name: "peers".into(),
            kind: SourceKind::Peer,
            cost_per_gib: 0.0,
            bandwidth: "10Gbps".into(),
            holds: 1.0,
        },
        SourceConfig {
            name: "origin".into(),
            kind: SourceKind::Origin,
            cost_per_gib: 0.02,
            bandwidth: "10Gbps".into(),
            holds: 1.0,
        },
    ];
    let rows = sweep(c, &[0, 3, 20, 40]);
    assert!(rows[3].bytes_fetched > 0);
    for o in rows {
        assert_eq!((o.bytes_origin, o.cost), (0, 0.0), "{o:?}");
        assert_eq!(o.bytes_peer, o.bytes_fetched);
    }
}

#[test]
fn the_same_seed_gives_the_same_results() {
    let a = sweep(small(11), &[0, 5, 17]);
    let b = sweep(small(11), &[0, 5, 17]);
    assert_eq!(a, b);
    // However far the history runs: day 5 is day 5.
    let longer = sweep(small(11), &[0, 5, 17, 40]);
    assert_eq!(&longer[..3], &a[..]);
    let other = sweep(small(12), &[0, 5, 17]);
    assert_ne!(a, other, "the seed must matter");
}

#[test]
fn fleets_share_cases_and_site_plans_never_cost_more() {
    let mut c = small(3);
    c.fleet.appliances = 30;
    c.fleet.per_site = 4;
    c.fleet.ship_spread_days = 2;
    c.fleet.delay_max = 20;
    let m = c.validate().unwrap();
    let members = sim::draw_fleet(&m, None);
    assert_eq!(members.len(), 30);
    // Sites of 4, the last of 2; a site's appliances share ship day and delay.
    assert_eq!(members.last().unwrap().site_size, 2);
    for w in members.windows(2).filter(|w| w[0].site == w[1].site) {
        assert_eq!(
            (w[0].ship_day, w[0].delay_days),
            (w[1].ship_day, w[1].delay_days)
        );
    }
    let rows = sim::fleet(&m, &members, true, &|_| {}).unwrap();
    let u = m.universe(30);
    for r in &rows {
        // The shared case equals the appliance's own run.
        let held = sim::Day::new(&m, &u, r.member.ship_day).unwrap();
        let target = sim::Day::new(&m, &u, r.member.ship_day + r.member.delay_days as i32).unwrap();
        assert_eq!(sim::install(&m, &u, &held, &target).unwrap(), r.alone);
        let site = r.site.as_ref().unwrap();
        assert!(
            site.cost <= r.alone.cost * (1.0 + 1e-9),
            "{site:?} vs {:?}",
            r.alone
        );
        assert_eq!(site.offload_at_install, r.alone.offload_at_install);
        if r.member.site_size > 1 && r.alone.bytes_fetched > 0 {
            assert!(site.bytes_in_site > 0, "{site:?}");
            assert!(site.cost < r.alone.cost, "{site:?}");
        }
    }
    // Real delays: only those are drawn.
    let real = [2u32, 9];
    for a in sim::draw_fleet(&m, Some(&real)) {
        assert!(real.contains(&a.delay_days));
    }
}

#[test]
fn the_default_model_reproduces_the_public_burn_in_figure() {
    // Public: "burn-in fill usually takes about two days" for an install within a few days
    // of shipping. The default model: installed 3 to 7 days after shipping, the last byte
    // arrives on the second day.
    let m = SimConfig::default().validate().unwrap();
    let rows = sim::sweep(&m, &[3, 5, 7], &|_| {}).unwrap();
    for o in &rows {
        assert_eq!(o.days_to_complete, 2, "{o:?}");
    }
    let u = m.universe(7);
    assert_eq!(sim::Day::new(&m, &u, 0).unwrap().files(), 100_000);
}

#[test]
fn bad_configs_name_the_field() {
    let err = |f: &dyn Fn(&mut SimConfig)| {
        let mut c = SimConfig::default();
        f(&mut c);
        c.validate().unwrap_err().to_string()
    };
    assert_eq!(
        err(&|c| c.catalog.titles = 0),
        "catalog.titles: must be between 1 and 2000000"
    );
    assert_eq!(
        err(&|c| c.appliance.ingress = "fast".into()),
        "appliance.ingress: bad bandwidth \"fast\": expected bits per second with a unit, like 160Mbps or 1.2Gbps"
    );
    assert_eq!(
        err(&|c| c.catalog.reencode_per_day = 2.0),
        "catalog.reencode_per_day: 2 is not between 0 and 1"
    );
    assert_eq!(
        err(&|c| c.fill.install_time = "10am".into()),
        "fill.install_time: \"10am\" is not HH:MM"
    );
    assert_eq!(
        err(&|c| c.source.retain(|s| s.holds < 1.0)),
        "source.holds: some source must hold every title (holds = 1), as an origin does"
    );
    assert_eq!(
        err(&|c| c.catalog.rendition_plays.pop().map(|_| ()).unwrap_or(())),
        "catalog.rendition_bytes: 1 to 32 shares, as many as catalog.rendition_plays"
    );
}

/// The churn per day is the week's delta of a day-0 appliance over what it holds: zero
/// without churn, more with more new titles, and what the week's sweep fetched.
#[test]
fn churn_per_day_follows_the_model() {
    let mut still = small(3);
    still.catalog.new_titles_per_day = 0.0;
    still.catalog.reencode_per_day = 0.0;
    still.catalog.retire_per_day = 0.0;
    assert_eq!(
        sim::churn_per_day(&still.validate().unwrap(), 7).unwrap(),
        0.0
    );
    let base = small(3);
    let m = base.clone().validate().unwrap();
    let churn = sim::churn_per_day(&m, 7).unwrap();
    assert!(churn > 0.0 && churn < 0.2, "{churn}");
    let week = sweep(base.clone(), &[7])[0].bytes_fetched as f64;
    let u = m.universe(0);
    let held = sim::Day::new(&m, &u, 0).unwrap();
    let holds = held.catalog().unwrap().total_size().min(m.capacity) as f64;
    assert!(
        (churn * 7.0 * holds - week).abs() / week < 1e-9,
        "{churn} vs {week}"
    );
    let mut busier = base;
    busier.catalog.new_titles_per_day *= 4.0;
    assert!(sim::churn_per_day(&busier.validate().unwrap(), 7).unwrap() > churn);
}
