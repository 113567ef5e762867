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
    // One thread: the split schedule alone (a pipeline has no second thread to run on).
    assert_eq!((v["schedule"].as_str(), v["lag"].as_u64()), (Some("split"), Some(0)));
    assert!(v.get("compared").is_none(), "{v}");
    for key in
        ["continual_ms_p50", "continual_ms_p95", "regular_ms_p50", "regular_ms_p95", "speedup", "flop_ratio", "continual_gflops_per_s"]
    {
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

/// `--per-layer`: every stepped layer of CoX3D-XS once per step, slowest first, with shares that
/// fit in a step; and the text table.
#[test]
fn bench_per_layer_times_every_layer() {
    let out = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["bench", "--model", "x3d-xs", "--steps", "3", "--regular-runs", "1", "--threads", "1", "--json", "--per-layer"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let layers = v["per_layer"].as_array().expect("per_layer array");
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    // The stem, every block's depthwise conv and 1x1 convs, and the head.
    for name in
        ["s1.pathway0_stem.conv_xy", "s1.pathway0_stem.conv", "s2.pathway0_res0.branch2.b", "s5.pathway0_res6.branch2.c", "head.projection"]
    {
        assert!(names.contains(&name), "{name} not timed: {names:?}");
    }
    assert_eq!(names.iter().filter(|n| n.ends_with("branch2.b")).count(), 3 + 5 + 11 + 7, "one depthwise conv per block");
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "each layer once");
    let us: Vec<f64> = layers.iter().map(|l| l["us_per_step"].as_f64().unwrap()).collect();
    assert!(us.windows(2).all(|w| w[0] >= w[1]), "slowest first: {us:?}");
    for l in layers {
        // CoX3D has no temporal stride: every layer steps once per step.
        assert_eq!(l["calls_per_step"].as_f64(), Some(1.0), "{l}");
        assert_eq!(l["input"].as_array().unwrap().len(), 3);
    }
    let share: f64 = layers.iter().map(|l| l["share"].as_f64().unwrap()).sum();
    assert!(share > 0.3 && share <= 1.0 + 1e-9, "layers' shares add up to {share}");

    let out = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["bench", "--model", "x3d-xs", "--steps", "2", "--regular-runs", "1", "--threads", "1", "--per-layer"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("US/STEP") && text.contains("s1.pathway0_stem.conv_xy") && text.contains("by kind: "), "{text}");
}

/// With two threads, bench times the pipeline schedule and, interleaved with it, the split one; an
/// explicit schedule is timed alone.
#[test]
fn bench_compares_the_schedules_side_by_side() {
    let bench = |extra: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_coinfer"))
            .args(["bench", "--model", "x3d-xs", "--steps", "9", "--regular-runs", "1", "--threads", "2", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
    };
    let v = bench(&[]);
    assert_eq!((v["schedule"].as_str(), v["lag"].as_u64()), (Some("pipeline"), Some(1)), "{v}");
    let compared = v["compared"].as_array().expect("the split schedule timed alongside");
    assert_eq!(compared.len(), 1);
    assert_eq!(compared[0]["schedule"], "split");
    let (p50, other) = (v["continual_ms_p50"].as_f64().unwrap(), compared[0]["continual_ms_p50"].as_f64().unwrap());
    assert!((compared[0]["ratio"].as_f64().unwrap() - other / p50).abs() < 1e-9);

    let v = bench(&["--schedule", "split"]);
    assert_eq!((v["schedule"].as_str(), v["lag"].as_u64()), (Some("split"), Some(0)));
    assert!(v.get("compared").is_none(), "{v}");

    let text = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["bench", "--model", "x3d-xs", "--steps", "9", "--regular-runs", "1", "--threads", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("threads 2 pipeline (outputs 1 step later) | split p50 "), "{text}");
}
