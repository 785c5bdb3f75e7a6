//! `fill-control demo`, as a new user runs it: every appliance live, the emails sent.

use std::process::Command;

#[test]
fn the_demo_drives_a_fleet_from_survey_to_live() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fill-control"))
        .args(["demo", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("all 3 appliances live"), "{text}");
    // What the price said each burn-in needs is what the origin served for the three.
    assert!(
        text.contains("burn-in fills took 24 MiB from the origin (the price said 8 MiB each)"),
        "{text}"
    );
    for serial in ["demo-oca-1", "demo-oca-2", "demo-oca-3"] {
        for line in [
            format!(
                "{serial} → burn_in (control-plane: reported in with its BGP session established)"
            ),
            format!("{serial} → live (control-plane: every turn-up check passed)"),
            format!("ship@isp.demo    Shipped: appliance {serial} at DEMO-1"),
            format!("eng@isp.demo     Live: appliance {serial} at DEMO-1"),
        ] {
            assert!(text.contains(&line), "no {line:?} in\n{text}");
        }
    }
    for invited in ["noc@isp.demo", "ship@isp.demo"] {
        assert!(
            text.contains(&format!("{invited:<16} Your account for site DEMO-1")),
            "{text}"
        );
    }
}
