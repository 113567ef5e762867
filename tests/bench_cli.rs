//! `coinfer bench` on a tiny run: well-formed JSON with every documented key, and an SVG chart.
//! (No timing assertions: the numbers depend on the machine.)

use std::process::Command;

#[test]
fn bench_json_and_chart_are_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("bench.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["bench", "--model", "x3d-xs", "--steps", "3", "--regular-runs", "1", "--threads", "1", "--json", "--chart"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one object per model: {text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["model"], "x3d-xs");
    assert_eq!(v["threads"], 1);
    assert_eq!(v["steps"], 3);
    for key in ["continual_ms_p50", "continual_ms_p95", "regular_ms_p50", "regular_ms_p95", "speedup", "flop_ratio",
                "continual_gflops_per_s"] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} missing or not a number in {v}"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    assert!(v["continual_ms_p95"].as_f64() >= v["continual_ms_p50"].as_f64());
    // The FLOP ratio is the counted one: X3D-XS clip of 4 frames over one step.
    let flop_ratio = v["flop_ratio"].as_f64().unwrap();
    assert!((flop_ratio - 0.6044 / 0.1527).abs() < 0.05, "{flop_ratio}");
    assert!(v["load"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["load"]["noisy"].is_boolean());
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("x3d-xs") && svg.contains("continual"), "{}", &svg[..200.min(svg.len())]);
}
