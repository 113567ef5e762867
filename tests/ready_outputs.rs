//! The `ready` rule of a `step` record, `step + 1 ≥ receptive_field` (docs/continual.md, "Equivalence",
//! statement 3): an output marked ready depends only on the frames of its window
//! `[step + 1 − R, step]`. For every model family, with its default head window and another one, two
//! streams that differ only at frame `k` must give bit-identical ready outputs wherever that window
//! excludes `k`, and an output whose window includes `k` must differ (so the test can fail); on the
//! small networks, the newest such output, so that `R` cannot be too large either. Random weights;
//! small frames where the model allows (tests/i3d_model.rs, tests/x3d_model.rs), so that it runs in
//! seconds.

use coinfer::models::i3d::{CoI3d, I3dConfig};
use coinfer::models::x3d::{CoX3d, X3dConfig};
use coinfer::models::{Fill, ModelOptions, RandomWeights, StreamModel, WeightSource};

/// A small X3D with the real ones' structure (as in tests/x3d_model.rs), one block per stage: the
/// oldest frame of a window reaches the output only through the outermost tap of every temporal conv,
/// so with few blocks its effect stands above rounding. d_b = 6, R_b = 13.
fn tiny_x3d() -> X3dConfig {
    X3dConfig {
        name: "x3d-tiny".into(),
        dim_c1: 4,
        width_factor: 2.0,
        blocks: [1, 1, 1, 1],
        bottleneck_factor: 2.25,
        dim_c5: 64,
        se_ratio: 0.0625,
        crop: 32,
        num_frames: 4,
        sampling_rate: 6,
        num_classes: 10,
    }
}

/// A model under test; `pool` `None` is the model's default head window.
struct Case {
    what: String,
    model: Box<dyn StreamModel>,
    /// Whether a frame's effect through the window's outermost taps stands above rounding (few layers).
    edge_visible: bool,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for pool in [None, Some(2)] {
        let config = I3dConfig { size: 32, pool: pool.unwrap_or(coinfer::models::i3d::DEFAULT_POOL), fill: Fill::Replicate };
        let model = Box::new(CoI3d::new(&mut RandomWeights::new(1), &config).unwrap());
        out.push(Case { what: format!("i3d pool {pool:?}"), model, edge_visible: true });
    }
    for pool in [None, Some(6)] {
        let model = Box::new(CoX3d::new(tiny_x3d(), pool, Fill::Replicate, &mut RandomWeights::new(2)).unwrap());
        out.push(Case { what: format!("x3d-tiny pool {pool:?}"), model, edge_visible: true });
    }
    // One registry model at its real size, built as `coinfer` builds it (26 blocks: edges vanish).
    let opts = ModelOptions { fill: Fill::Replicate, ..Default::default() };
    let model = coinfer::models::build_random("x3d-xs", &opts).unwrap();
    out.push(Case { what: "x3d-xs".into(), model, edge_visible: false });
    out
}

fn frames(seed: u64, n: usize, side: usize) -> Vec<Vec<f32>> {
    let mut rng = RandomWeights::new(seed);
    let v: Vec<f32> = rng.take("clip", &[n, 3, side, side]).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    // Input-like magnitudes (the fan-in range of RandomWeights is small).
    v.chunks_exact(3 * side * side).map(|f| f.iter().map(|x| x * 4.0).collect()).collect()
}

/// What `coinfer run` does with the replicate fill (docs/continual.md, "Warm-up and flush"): the
/// first frame `delay` times, outputs discarded, then one step per frame; (step, probabilities).
fn outputs(m: &mut dyn StreamModel, frames: &[Vec<f32>]) -> Vec<(usize, Vec<f32>)> {
    m.reset();
    let mut probs = Vec::new();
    m.prime(&frames[0], m.shape().delay, &mut probs).unwrap();
    let mut out = Vec::new();
    for (t, f) in frames.iter().enumerate() {
        if m.step_planar(f, &mut probs).unwrap() {
            out.push((t, probs.clone()));
        }
    }
    out
}

fn bits(p: &[f32]) -> Vec<u32> {
    p.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn ready_outputs_depend_only_on_their_window() {
    for Case { what, model: mut m, edge_visible } in cases() {
        let shape = m.shape();
        let r = shape.receptive_field;
        let side = m.spec().crop;
        for k in [0, 5] {
            // Enough frames for ready outputs whose window lies wholly after k.
            let n = k + r + 2 * shape.stride;
            let a = frames(3, n, side);
            let mut b = a.clone();
            // A large change, so that a frame that reaches an output only through edge taps shows.
            b[k] = frames(4 + k as u64, 1, side).remove(0).iter().map(|x| x * 1e4).collect();
            let (ya, yb) = (outputs(&mut *m, &a), outputs(&mut *m, &b));
            assert_eq!(ya.iter().map(|o| o.0).collect::<Vec<_>>(), yb.iter().map(|o| o.0).collect::<Vec<_>>(), "{what}");
            let (mut checked, mut some_with_k_differs) = (0, false);
            let mut newest_with_k = None;
            for ((t, pa), (_, pb)) in ya.iter().zip(&yb) {
                let ready = t + 1 >= r;
                let excludes_k = *t < k || t + 1 > k + r;
                if ready && excludes_k {
                    assert_eq!(bits(pa), bits(pb), "{what}: frame {k} changed the ready output of step {t} (R = {r})");
                    checked += 1;
                }
                if !excludes_k {
                    newest_with_k = Some((t, pa != pb));
                    some_with_k_differs |= pa != pb;
                }
            }
            assert!(checked > 0, "{what}, k = {k}: no ready output excludes frame {k}");
            assert!(some_with_k_differs, "{what}: frame {k} changes no output");
            let (t, differs) = newest_with_k.expect("an output reads frame k");
            assert!(differs || !edge_visible, "{what}: frame {k} should change the output of step {t}, whose window holds it (R = {r})");
        }
    }
}
