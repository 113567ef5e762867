//! `coinfer flops` against the published numbers (docs/performance.md, "Counting operations"),
//! counted by walking the built networks.

use coinfer::cli::flops::count;
use coinfer::flops::Convention;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn x3d_paper_convention_reproduces_the_published_numbers() {
    // (model, clip GFLOPs as printed, continual per step as printed, single count, clip to 4 decimals)
    let table = [
        ("x3d-xs", 0.64, None, 0.1603, 0.6356),
        ("x3d-s", 2.06, Some(0.17), 0.1603, 2.0614),
        ("x3d-m", 4.97, Some(0.33), 0.3124, 4.9700),
        ("x3d-l", 19.17, Some(1.25), 1.1998, 19.1661),
    ];
    for (model, clip, step, single, clip4) in table {
        let (rec, totals) = count(model, Convention::Paper, None).unwrap();
        assert!(close(rec.regular_clip_gflops, clip, 0.005), "{model} clip {}", rec.regular_clip_gflops);
        assert!(close(rec.regular_clip_gflops, clip4, 0.00005), "{model} clip {}", rec.regular_clip_gflops);
        if let Some(step) = step {
            assert!(close(rec.continual_per_step_gflops, step, 0.005), "{model} step {}", rec.continual_per_step_gflops);
        }
        let s = rec.continual_per_step_single_count_gflops.unwrap();
        assert!(close(s, single, 0.00005), "{model} single count {s}");
        // Per-layer rows add up to the totals.
        let rows: f64 = totals.layers.iter().map(|l| l.regular_clip).sum();
        assert!(close(rows, totals.regular_clip, 1.0), "{model} rows {rows} vs {}", totals.regular_clip);
        let rows: f64 = totals.layers.iter().map(|l| l.continual_per_step).sum();
        assert!(close(rows, totals.continual_per_step, 1.0));
    }
    // T_pool changes neither the per-step cost nor (for the extended head) the backbone clip.
    let (s64, _) = count("x3d-s", Convention::Paper, Some(64)).unwrap();
    assert!(close(s64.continual_per_step_single_count_gflops.unwrap(), 0.1603, 0.00005));
}

#[test]
fn x3d_true_macs() {
    // conv+linear MACs only (the published tables' last columns): clip and continual step.
    for (model, clip, step) in [("x3d-xs", 0.605, 0.1527), ("x3d-s", 1.963, 0.1527), ("x3d-m", 4.732, 0.2975), ("x3d-l", 18.368, 1.1499)] {
        let (rec, _) = count(model, Convention::Macs, None).unwrap();
        assert!(close(rec.regular_clip_gflops, clip, 0.0005), "{model} {}", rec.regular_clip_gflops);
        assert!(close(rec.continual_per_step_gflops, step, 0.00005), "{model} {}", rec.continual_per_step_gflops);
        // No temporal stride in X3D: every step does the same work.
        assert!(close(rec.continual_peak_step_gflops, rec.continual_per_step_gflops, 1e-9));
        assert!(close(rec.ratio, rec.regular_per_frame_gflops / rec.continual_per_step_gflops, 1e-9));
    }
}

#[test]
fn json_shape_is_stable() {
    let (rec, _) = count("x3d-s", Convention::Macs, None).unwrap();
    let v = serde_json::to_value(&rec).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "model",
        "convention",
        "clip_frames",
        "regular_clip_gflops",
        "regular_per_frame_gflops",
        "continual_per_step_gflops",
        "continual_peak_step_gflops",
        "ratio",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    assert_eq!(v["clip_frames"], 13);
}

#[test]
fn i3d_counts_match_the_spec() {
    // MACs per 64-frame clip, per frame, and the emitting step.
    let (rec, totals) = count("i3d", Convention::Macs, None).unwrap();
    assert_eq!(rec.clip_frames, 64);
    assert!(close(rec.regular_clip_gflops, 111.153, 0.0005), "{}", rec.regular_clip_gflops);
    assert!(close(rec.continual_per_step_gflops, 1.7368, 0.00005), "{}", rec.continual_per_step_gflops);
    assert!(close(rec.continual_peak_step_gflops, 3.872, 0.0005), "{}", rec.continual_peak_step_gflops);
    assert!(close(rec.ratio, 64.0, 0.05));
    let rows: f64 = totals.layers.iter().map(|l| l.regular_clip).sum();
    assert!(close(rows, totals.regular_clip, 1.0));
    // ptflops-style totals: 111.50 G per clip, 1.7422 G per frame.
    let (paper, _) = count("i3d", Convention::Paper, None).unwrap();
    assert!(close(paper.regular_clip_gflops, 111.50, 0.005), "{}", paper.regular_clip_gflops);
    assert!(close(paper.continual_per_step_gflops, 1.7422, 0.00005), "{}", paper.continual_per_step_gflops);
    assert!(paper.continual_per_step_single_count_gflops.is_none());
}
