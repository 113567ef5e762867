//! CoI3D with random weights: TF 'SAME' pads (docs/continual.md, "Padding and fill"), the emission
//! schedule ("Emission") and the exact equivalences S1–S3 ("Equivalence") between the continual stream
//! and the clip network, plus the cost walk (docs/performance.md, "Counting operations"). Statements that do not depend on the frame size run on small frames.

use candle_core::{Device, Tensor};
use coinfer::engine::PadMode;
use coinfer::engine::tf_same_pads;
use coinfer::models::i3d::{CoI3d, I3dConfig};
use coinfer::models::{Fill, RandomWeights, StreamModel};
use rand::{Rng, SeedableRng, rngs::StdRng};

mod common;

fn model(size: usize, seed: u64) -> CoI3d {
    CoI3d::new(&mut RandomWeights::new(seed), &I3dConfig { size, pool: 3, fill: Fill::Zeros }).unwrap()
}

fn random_clip(rng: &mut StdRng, t: usize, size: usize) -> Tensor {
    let n = t * 3 * size * size;
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, (t, 3, size, size), &Device::Cpu).unwrap()
}

/// Feed every frame; (step, logits) of each emission.
fn stream(m: &mut CoI3d, clip: &Tensor) -> Vec<(usize, Tensor)> {
    let mut out = Vec::new();
    for t in 0..clip.dim(0).unwrap() {
        if let Some(y) = m.step_logits(&clip.get(t).unwrap()).unwrap() {
            out.push((t, y));
        }
    }
    out
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// Relative to the logits' scale (random weights give logits of order 0.1–10).
fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    let scale: f32 = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
    let d = max_diff(a, b);
    assert!(d <= 1e-4 * scale.max(1.0), "{what}: max |diff| {d} (scale {scale})");
}

/// Temporal pads of the three strided layers for the spec's clip lengths, from the lengths each
/// layer sees (T, ⌈T/2⌉, ⌈T/4⌉), and the spatial pads at 224.
#[test]
fn tf_same_pads_match_the_spec_table() {
    // T, Conv3d_1a (k7 s2), MaxPool3d_4a (k3 s2), MaxPool3d_5a (k2 s2), logit positions.
    let table = [
        (16, (2, 3), (0, 1), (0, 0), 1),
        (21, (3, 3), (1, 1), (0, 0), 2),
        (32, (2, 3), (0, 1), (0, 0), 3),
        (34, (2, 3), (1, 1), (0, 1), 4),
        (63, (3, 3), (0, 1), (0, 0), 7),
        (64, (2, 3), (0, 1), (0, 0), 7),
        (79, (3, 3), (0, 1), (0, 0), 9),
    ];
    for (t, c1a, p4a, p5a, positions) in table {
        let t: usize = t;
        let t1 = t.div_ceil(2);
        let t2 = t1.div_ceil(2);
        assert_eq!(tf_same_pads(t, 7, 2), c1a, "Conv3d_1a at T={t}");
        assert_eq!(tf_same_pads(t1, 3, 1), (1, 1), "k=3 stride-1 layers at T={t}");
        assert_eq!(tf_same_pads(t1, 3, 2), p4a, "MaxPool3d_4a at T={t}");
        assert_eq!(tf_same_pads(t2, 2, 2), p5a, "MaxPool3d_5a at T={t}");
        assert_eq!(t2.div_ceil(2) - 1, positions, "positions at T={t}");
    }
    assert_eq!(tf_same_pads(224, 7, 2), (2, 3));
    for n in [112, 56, 28] {
        assert_eq!(tf_same_pads(n, 3, 2), (0, 1), "stride-2 max pool on {n}");
    }
    assert_eq!(tf_same_pads(14, 2, 2), (0, 0));
    assert_eq!(tf_same_pads(56, 3, 1), (1, 1));
}

/// The regular network uses those pads: the number of positions and every endpoint's length follow
/// TF's ⌈n/s⌉ rule for all the table's lengths (odd ones included).
#[test]
fn regular_forward_lengths_follow_tf_same() {
    let m = model(32, 1);
    let mut rng = StdRng::seed_from_u64(2);
    for t in [9, 16, 21, 34, 63] {
        let clip = random_clip(&mut rng, t, 32);
        let eps = m.forward_endpoints(&clip, PadMode::Full).unwrap();
        let (t1, t2, t3) = (t.div_ceil(2), t.div_ceil(4), t.div_ceil(8));
        // Conv3d_1a … Mixed_3c at stride 2, MaxPool3d_4a … Mixed_4f at 4, MaxPool3d_5a … Mixed_5c at 8,
        // then the VALID head pool (one position fewer).
        let expect = [[t1; 7].as_slice(), &[t2; 6], &[t3; 3], &[t3 - 1]].concat();
        assert_eq!(eps.len(), expect.len());
        for ((name, y), n) in eps.iter().zip(expect) {
            assert_eq!(y.dim(0).unwrap(), n, "{name} at T={t}");
        }
        assert_eq!(m.forward_logits(&clip, PadMode::Full).unwrap().dims(), &[t3 - 1, 400]);
    }
    let short = random_clip(&mut rng, 8, 32);
    let err = m.forward_logits(&short, PadMode::Full).unwrap_err();
    assert_eq!(coinfer::error::kind_of(&err), coinfer::error::ErrorKind::Data, "{err:#}");
}

/// Stride 8, delay 62, receptive field 107, composed start padding 44; outputs exactly on steps
/// 62 + 8l (S5), and the stream model's probabilities come on the same steps. The head window of
/// `pool` positions widens the output's receptive field by 8·(pool − 1) and leaves its delay
/// (docs/models.md, "I3D").
#[test]
fn emission_schedule() {
    let mut m = model(32, 3);
    let t = m.temporal();
    assert_eq!((t.stride, t.delay(), t.receptive_field, t.padding), (8, 62, 107, 44));
    let s = m.shape();
    assert_eq!((s.stride, s.delay, s.receptive_field), (8, 62, 123));
    for (pool, r) in [(1, 107), (2, 115), (7, 155)] {
        let s = model_pool(32, 3, pool).shape();
        assert_eq!((s.stride, s.delay, s.receptive_field), (8, 62, r), "pool {pool}");
    }
    let mut rng = StdRng::seed_from_u64(4);
    let clip = random_clip(&mut rng, 136, 32);
    let at: Vec<usize> = stream(&mut m, &clip).into_iter().map(|(t, _)| t).collect();
    assert_eq!(at, (0..).map(|l| 62 + 8 * l).take_while(|&t| t < 136).collect::<Vec<_>>());

    m.reset();
    let mut probs_at = Vec::new();
    for t in 0..80 {
        if let Some(p) = m.step(&clip.get(t).unwrap()).unwrap() {
            let sum: f32 = p.sum_all().unwrap().to_scalar().unwrap();
            assert!((sum - 1.0).abs() < 1e-5, "softmax sums to {sum}");
            probs_at.push(t);
        }
    }
    assert_eq!(probs_at, vec![62, 70, 78]);
}

/// S1: a fresh stream of T ≡ 0 (mod 4) frames plus flush gives exactly the regular TF-SAME forward's
/// positions (T = 64: one position before the flush, six from it; T = 36 exercises MaxPool3d_5a's
/// end pad (0, 1)).
#[test]
fn one_clip_flush_equals_regular_forward() {
    let mut m = model(64, 5);
    let mut rng = StdRng::seed_from_u64(6);
    for (t, before_flush) in [(64, 1), (36, 0)] {
        let clip = random_clip(&mut rng, t, 64);
        let full = m.forward_logits(&clip, PadMode::Full).unwrap();
        m.reset();
        let streamed = stream(&mut m, &clip);
        assert_eq!(streamed.len(), before_flush, "positions before the flush at T={t}");
        let mut rows: Vec<Tensor> = streamed.into_iter().map(|(_, y)| y).collect();
        rows.extend(m.flush_logits().unwrap());
        assert_eq!(rows.len(), t.div_ceil(8) - 1, "positions at T={t}");
        assert_close(&Tensor::stack(&rows, 0).unwrap(), &full, &format!("flush T={t}"));
    }
}

/// S2: every emission of a stream equals the same row of the start-padded network on the prefix, and of
/// the regular network on a clip of 8l + 64 frames.
#[test]
fn stream_prefix_equals_start_padded_forward() {
    let mut m = model(64, 7);
    let mut rng = StdRng::seed_from_u64(8);
    let clip = random_clip(&mut rng, 80, 64);
    let out = stream(&mut m, &clip);
    assert_eq!(out.len(), 3);
    let start = m.forward_logits(&clip, PadMode::StartOnly).unwrap();
    assert_eq!(start.dim(0).unwrap(), 3);
    for (l, (_, y)) in out.iter().enumerate() {
        assert_close(y, &start.get(l).unwrap(), &format!("StartOnly row {l}"));
    }
    let (_, y1) = &out[1];
    let regular = m.forward_logits(&clip.narrow(0, 0, 72).unwrap(), PadMode::Full).unwrap();
    assert_close(y1, &regular.get(1).unwrap(), "regular T=72 row 1");
}

/// S3 and steady-state independence: from step 110 on, an emission equals the padding-free network on
/// exactly the last 107 frames; two streams that share those 107 frames agree at that step, and two that
/// share only 106 do not.
#[test]
fn steady_state_depends_on_the_last_107_frames_only() {
    let size = 64;
    let mut m = model(size, 9);
    let mut rng = StdRng::seed_from_u64(10);
    let clip = random_clip(&mut rng, 119, size);
    let out = stream(&mut m, &clip);
    for (t, y) in out.iter().filter(|(t, _)| *t >= 110) {
        let valid = m.forward_logits(&clip.narrow(0, t - 106, 107).unwrap(), PadMode::Valid).unwrap();
        assert_eq!(valid.dim(0).unwrap(), 1);
        assert_close(y, &valid.get(0).unwrap(), &format!("Valid at step {t}"));
    }
    let at_110 = &out.iter().find(|(t, _)| *t == 110).expect("emits at 110").1;

    // Replace the frames before the window (0..=3), then also its first frame (4). The first frame
    // reaches the output only through edge taps, so the replacement is large to make its effect clear;
    // with the same later frames the computation is identical, so "same" means bit-identical.
    for (changed, same) in [(4, true), (5, false)] {
        let other = (random_clip(&mut rng, changed, size) * 10.0).unwrap();
        let mixed = Tensor::cat(&[other, clip.narrow(0, changed, 111 - changed).unwrap()], 0).unwrap();
        m.reset();
        let y = stream(&mut m, &mixed).into_iter().find(|(t, _)| *t == 110).unwrap().1;
        let d = max_diff(&y, at_110);
        if same {
            assert_eq!(d, 0.0, "sharing the last 107 frames");
        } else {
            assert!(d > 1e-6, "sharing only 106 frames should change the output (max |diff| {d})");
        }
    }
}

/// The head: softmax of the mean of the last `pool` positions' logits, over what exists at first.
#[test]
fn head_averages_logits_before_the_softmax() {
    let mut rng = StdRng::seed_from_u64(12);
    let clip = random_clip(&mut rng, 95, 32);
    let mut m = CoI3d::new(&mut RandomWeights::new(13), &I3dConfig { size: 32, pool: 2, fill: Fill::Zeros }).unwrap();
    let mut logits = Vec::new();
    let mut probs = Vec::new();
    for t in 0..95 {
        let frame = clip.get(t).unwrap();
        if let Some(p) = m.step(&frame).unwrap() {
            probs.push(p);
            logits.push(m.pooled_logits().unwrap().unwrap());
        }
    }
    // Per-position logits from a second model on the same weights.
    let mut per = model_pool(32, 13, 1);
    let rows: Vec<Tensor> = stream(&mut per, &clip).into_iter().map(|(_, y)| y).collect();
    assert_eq!(rows.len(), 5);
    for (l, p) in probs.iter().enumerate() {
        let lo = l.saturating_sub(1);
        let mean = Tensor::stack(&rows[lo..=l], 0).unwrap().mean(0).unwrap();
        assert_close(&logits[l], &mean, &format!("pooled logits {l}"));
        let mean: Vec<f32> = mean.to_vec1().unwrap();
        let mx = mean.iter().cloned().fold(f32::MIN, f32::max);
        let z: f32 = mean.iter().map(|v| (v - mx).exp()).sum();
        let expect: Vec<f32> = mean.iter().map(|v| (v - mx).exp() / z).collect();
        let expect = Tensor::new(expect, &Device::Cpu).unwrap();
        assert!(max_diff(p, &expect) < 1e-6, "softmax of the mean at {l}");
    }
}

fn model_pool(size: usize, seed: u64, pool: usize) -> CoI3d {
    CoI3d::new(&mut RandomWeights::new(seed), &I3dConfig { size, pool, fill: Fill::Zeros }).unwrap()
}

/// The cost walk over the layer report at 224²: 1.7368 G MAC per frame in steady state, the
/// published per-step costs and the 111.153 G of a 64-frame clip (7 logit positions, not 8).
#[test]
fn costs_match_the_spec() {
    let desc = coinfer::models::describe("i3d", &Default::default()).unwrap();
    let m = model(224, 14);
    let report = m.report();
    let per_frame = coinfer::flops::macs_per_step(&report);
    assert!((per_frame / 1e9 - 1.7368).abs() < 5e-5, "per frame {per_frame}");
    assert_eq!(desc.macs_per_step, per_frame);
    let g = |t| coinfer::flops::macs_at_step(&report, t) as f64 / 1e9;
    // Steady state: odd, ≡ 0 (mod 4), ≡ 2 (mod 8), ≡ 6 (mod 8, emitting).
    for (t, expect) in [(201, 0.354), (200, 2.484), (202, 3.639), (206, 3.872)] {
        assert!((g(t) - expect).abs() < 5e-4, "step {t}: {} G, spec {expect}", g(t));
    }
    let period: f64 = (200..208).map(g).sum();
    assert!((period / 8.0 - per_frame / 1e9).abs() < 1e-9);
    let classifier = 1024.0 * 400.0;
    let clip = 64.0 * per_frame - classifier;
    assert!((clip / 1e9 - 111.153).abs() < 5e-4, "64-frame clip {clip}");
    assert_eq!((desc.shape.delay, desc.shape.stride, desc.shape.receptive_field), (62, 8, 123));
}

/// The replicate fill changes only the transient (steps 62 … 102); from step 110 on the
/// outputs equal the zero-fill stream's.
#[test]
fn fills_differ_only_in_the_transient() {
    let mut rng = StdRng::seed_from_u64(15);
    let clip = random_clip(&mut rng, 119, 32);
    let mut zeros = model(32, 16);
    let mut replicate = CoI3d::new(&mut RandomWeights::new(16), &I3dConfig { size: 32, pool: 3, fill: Fill::Replicate }).unwrap();
    let a = stream(&mut zeros, &clip);
    let b = stream(&mut replicate, &clip);
    assert_eq!(a.iter().map(|(t, _)| *t).collect::<Vec<_>>(), b.iter().map(|(t, _)| *t).collect::<Vec<_>>());
    for ((t, ya), (_, yb)) in a.iter().zip(&b) {
        let d = max_diff(ya, yb);
        if *t >= 110 {
            assert!(d <= 1e-5, "step {t}: steady state depends on the fill ({d})");
        } else if *t == 62 {
            assert!(d > 1e-6, "step {t}: the first output should depend on the fill");
        }
    }
}

/// The CoI3D stream-versus-clip equivalences again under every kernel level below this process's.
#[test]
fn equivalences_hold_on_every_lower_kernel_level() {
    common::levels::rerun_on_lower_kernel_levels(
        &[
            "--exact",
            "one_clip_flush_equals_regular_forward",
            "stream_prefix_equals_start_padded_forward",
            "steady_state_depends_on_the_last_107_frames_only",
            "fills_differ_only_in_the_transient",
        ],
        4,
    );
}
