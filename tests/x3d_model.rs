//! Model-level facts of X3D / CoX3D with random weights (docs/continual.md, "Temporal shape" and
//! "Equivalence"; docs/models.md, "X3D"):
//! the delay / receptive-field table, the equivalence statements between the continual step path and
//! the regular clip path, steady-state independence, and the published sizes and costs.

use candle_core::{Device, Tensor};
use coinfer::engine::{PadMode, SeScope};
use coinfer::models::x3d::{self, CoX3d, X3dConfig, X3dWeights};
use coinfer::models::{Fill, ModelOptions, RandomWeights, StreamModel, WeightSource};
use coinfer::weights::Layout;

mod common;

/// A small X3D with every structural feature of the real ones: a projection shortcut with stride in
/// block 0 of every stage (s2's with din = dout), SE on even blocks only, Swish, the full head.
/// Widths: stem 8; stages 8/18, 16/36, 32/72, 64/144 (out/inner); 8 blocks: d_b = 10, R_b = 21.
fn tiny(pool_frames: usize) -> X3dConfig {
    X3dConfig {
        name: "x3d-tiny".into(),
        dim_c1: 4,
        width_factor: 2.0,
        blocks: [2, 2, 2, 2],
        bottleneck_factor: 2.25,
        dim_c5: 64,
        se_ratio: 0.0625,
        crop: 32,
        num_frames: pool_frames,
        sampling_rate: 6,
        num_classes: 10,
    }
}

fn model(cfg: X3dConfig, fill: Fill, seed: u64) -> CoX3d {
    CoX3d::new(cfg, None, fill, &mut RandomWeights::new(seed)).unwrap()
}

fn clip(seed: u64, t: usize, side: usize) -> Tensor {
    let mut rng = RandomWeights::new(seed);
    // Input-like values: the "fan-in" branch of RandomWeights gives uniform [-a, a).
    (rng.take("clip", &[t, 3, side, side]).unwrap() * 4.0).unwrap()
}

fn frame(x: &Tensor, t: usize) -> Tensor {
    x.get(t).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Step a whole clip; (step index, probabilities) of every emitted output.
fn run(m: &mut CoX3d, x: &Tensor) -> Vec<(usize, Tensor)> {
    (0..x.dim(0).unwrap()).filter_map(|t| m.step(&frame(x, t)).unwrap().map(|p| (t, p))).collect()
}

#[test]
fn delay_and_receptive_field_table() {
    // (variant, T_pool, delay d, receptive field R).
    let table = [
        ("x3d-xs", 4, 31, 60),
        ("x3d-s", 13, 40, 69),
        ("x3d-s", 64, 91, 120),
        ("x3d-m", 16, 43, 72),
        ("x3d-m", 64, 91, 120),
        ("x3d-l", 16, 72, 130),
        ("x3d-l", 64, 120, 178),
    ];
    for (variant, pool, d, r) in table {
        let opts = ModelOptions { pool: Some(pool), ..Default::default() };
        let m = x3d::build(variant, &opts, &mut RandomWeights::new(1)).unwrap();
        let shape = m.shape();
        assert_eq!((shape.delay, shape.receptive_field, shape.stride), (d, r, 1), "{variant}_{pool}");
        let desc = coinfer::models::describe(variant, &opts).unwrap();
        assert_eq!(desc.shape, shape, "{variant}_{pool} describe");
    }
    // The default head window is the training clip length.
    let d = coinfer::models::describe("x3d-s", &ModelOptions::default()).unwrap();
    assert_eq!((d.shape.delay, d.shape.receptive_field), (40, 69));
}

#[test]
fn first_output_is_emitted_on_step_delay() {
    let mut m = model(tiny(4), Fill::Zeros, 3);
    let d = m.shape().delay;
    assert_eq!(d, 10 + 4 - 1);
    let x = clip(5, d + 4, 32);
    let at: Vec<usize> = run(&mut m, &x).into_iter().map(|(t, _)| t).collect();
    assert_eq!(at, (d..d + 4).collect::<Vec<_>>());
}

/// Equivalence statement 2: with zero fill and frame-wise SE, stepping a clip and flushing gives exactly the
/// regular (zero-padded) network's per-position outputs.
#[test]
fn one_clip_flush_equals_regular_forward() {
    for (t, pool) in [(4, 4), (7, 4)] {
        let mut m = model(tiny(pool), Fill::Zeros, 11);
        let x = clip(12, t, 32);
        let mut outs: Vec<Tensor> = run(&mut m, &x).into_iter().map(|(_, p)| p).collect();
        assert!(outs.is_empty(), "the clip is shorter than the delay");
        outs.extend(m.flush().unwrap());
        let logits = m.clip_logits(&x, SeScope::Frame, PadMode::Full).unwrap();
        let expect = candle_nn::ops::softmax(&logits, 1).unwrap();
        assert_eq!(outs.len(), t - pool + 1);
        assert_eq!(expect.dim(0).unwrap(), outs.len());
        let got = Tensor::stack(&outs, 0).unwrap();
        assert!(max_diff(&got, &expect) < 1e-6, "T={t} pool={pool}: {}", max_diff(&got, &expect));
        // And the mean of them is what forward_clip reports.
        let mean = m.forward_clip(&x, SeScope::Frame).unwrap();
        assert!(max_diff(&got.mean(0).unwrap(), &mean) < 1e-6);
    }
}

/// Equivalence statement 3: every output of a zero-filled stream is the head applied to the T_pool backbone
/// positions ending d_b steps back, the backbone being run on the whole start-padded prefix.
#[test]
fn stream_outputs_equal_the_prefix_oracle() {
    let pool = 3;
    let mut m = model(tiny(pool), Fill::Zeros, 21);
    let d_b = m.backbone(SeScope::Frame).temporal().delay();
    assert_eq!(d_b, 10);
    let n = 26;
    let x = clip(22, n, 32);
    let outs = run(&mut m, &x);
    assert_eq!(outs.len(), n - (d_b + pool - 1));
    for (t, p) in &outs {
        let prefix = x.narrow(0, 0, t + 1).unwrap();
        let feats = m.backbone(SeScope::Frame).forward(&prefix, PadMode::StartOnly).unwrap();
        assert_eq!(feats.dim(0).unwrap(), t + 1 - d_b);
        let window = feats.narrow(0, t + 1 - d_b - pool, pool).unwrap();
        let logits = m.head().forward(&window, PadMode::Valid).unwrap();
        let expect = x3d::probabilities(&logits).unwrap();
        assert!(max_diff(p, &expect) < 1e-6, "step {t}: {}", max_diff(p, &expect));
    }
}

/// Equivalence statement 4: from step R−1 on, whatever the fill, each output is the padding-free network
/// on the last R frames.
#[test]
fn steady_state_equals_the_valid_network() {
    for fill in [Fill::Zeros, Fill::Replicate] {
        let pool = 4;
        let mut m = model(tiny(pool), fill, 31);
        let r = m.shape().receptive_field;
        assert_eq!(r, 21 + pool - 1);
        let n = r + 4;
        let x = clip(32, n, 32);
        let outs = run(&mut m, &x);
        let steady: Vec<_> = outs.iter().filter(|(t, _)| *t + 1 >= r).collect();
        assert_eq!(steady.len(), n + 1 - r);
        for (t, p) in steady {
            let last = x.narrow(0, t + 1 - r, r).unwrap();
            let logits = m.clip_logits(&last, SeScope::Frame, PadMode::Valid).unwrap();
            assert_eq!(logits.dim(0).unwrap(), 1, "R frames give one valid output");
            let expect = candle_nn::ops::softmax(&logits.squeeze(0).unwrap(), 0).unwrap();
            assert!(max_diff(p, &expect) < 1e-6, "{fill:?} step {t}: {}", max_diff(p, &expect));
        }
    }
}

/// Two streams that share only their last R frames give bit-identical outputs; sharing R−1 does not.
/// The oldest frame of the window reaches the output only through the outermost tap of every
/// temporal conv in turn, so with random weights its weight is tiny (about 1e-8 of the output with 8
/// blocks): the test uses 4 blocks and a large differing frame so that the difference stands far above
/// rounding, and large frames before the window to show that they are really forgotten.
#[test]
fn steady_state_forgets_everything_older_than_the_receptive_field() {
    for fill in [Fill::Zeros, Fill::Replicate] {
        let mut m = model(X3dConfig { blocks: [1, 1, 1, 1], ..tiny(3) }, fill, 41);
        let r = m.shape().receptive_field;
        assert_eq!(r, 2 * (2 + 4) + 3);
        let shared = clip(42, r, 32);
        let last = |m: &mut CoX3d, x: &Tensor| -> Vec<f32> {
            m.reset();
            let outs = run(m, x);
            let (t, p) = outs.last().unwrap();
            assert_eq!(*t, x.dim(0).unwrap() - 1);
            p.to_vec1().unwrap()
        };
        let loud = |seed: u64, n: usize| (clip(seed, n, 32) * 1e4).unwrap();
        let a = Tensor::cat(&[clip(43, 5, 32), shared.clone()], 0).unwrap();
        let b = Tensor::cat(&[loud(44, 9), shared.clone()], 0).unwrap();
        let (pa, pb) = (last(&mut m, &a), last(&mut m, &b));
        assert_eq!(pa, pb, "{fill:?}: sharing R frames");
        // Same as `a` except the oldest frame of the window.
        let c = Tensor::cat(&[clip(43, 5, 32), loud(45, 1), shared.narrow(0, 1, r - 1).unwrap()], 0).unwrap();
        let pc = last(&mut m, &c);
        let diff = pa.iter().zip(&pc).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff > 1e-5, "{fill:?}: sharing only R-1 frames changes the output by {diff}");
    }
}

/// Real-size X3D-XS: the one-clip flush equals the regular forward (statement 2), and the frame-wise
/// network differs from the published clip-wise SE (statement 5: never exact).
#[test]
fn x3d_xs_one_clip_flush_at_full_size() {
    let mut m = x3d::build("x3d-xs", &ModelOptions::default(), &mut RandomWeights::new(7)).unwrap();
    let x = clip(8, 4, 160);
    let mut outs: Vec<Tensor> = run(&mut m, &x).into_iter().map(|(_, p)| p).collect();
    outs.extend(m.flush().unwrap());
    assert_eq!(outs.len(), 1);
    let frame_wise = m.forward_clip(&x, SeScope::Frame).unwrap();
    assert_eq!(frame_wise.dims(), [400]);
    assert!(max_diff(&outs[0], &frame_wise) < 1e-6, "{}", max_diff(&outs[0], &frame_wise));
    let clip_wise = m.forward_clip(&x, SeScope::Clip).unwrap();
    assert!(max_diff(&frame_wise, &clip_wise) > 0.0);
    let total: f32 = clip_wise.sum_all().unwrap().to_scalar().unwrap();
    assert!((total - 1.0).abs() < 1e-5);
}

/// Records every tensor name a builder asks for, answering with random values.
struct Recorder {
    rng: RandomWeights,
    names: Vec<String>,
}

impl WeightSource for Recorder {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        self.names.push(name.to_string());
        self.rng.take(name, shape)
    }
}

/// Tensor counts and learnable scalars of the official variants in both layouts.
#[test]
fn checkpoint_sizes_match_the_published_models() {
    // (variant, entries without num_batches_tracked, learnable scalars)
    for (variant, entries, params) in [("x3d-s", 484, 3_794_322), ("x3d-m", 484, 3_794_322), ("x3d-l", 975, 6_153_432)] {
        let mut rec = Recorder { rng: RandomWeights::new(2), names: Vec::new() };
        let m = x3d::build(variant, &ModelOptions::default(), &mut rec).unwrap();
        assert_eq!(rec.names.len(), entries, "{variant}");
        assert_eq!(m.num_params(), params, "{variant}");
    }
    // PTV hub X3D-S: 563 entries with num_batches_tracked = 480 without; 48 fewer scalars.
    let mut rec = Recorder { rng: RandomWeights::new(2), names: Vec::new() };
    let names = ["blocks.0.conv.conv_t.weight", "blocks.1.res_blocks.0.branch1_conv.weight"];
    let mut ptv = X3dWeights::new(&names, &mut rec).unwrap();
    assert_eq!(ptv.layout(), Layout::Hub);
    let m = x3d::build("x3d-s", &ModelOptions::default(), &mut ptv).unwrap();
    assert_eq!(rec.names.len(), 480);
    assert_eq!(m.num_params(), 3_794_322); // the synthesised identity BN is counted as loaded
    assert!(rec.names.iter().all(|n| n.starts_with("blocks.")));
    for n in [
        "blocks.0.conv.conv_t.weight",
        "blocks.0.conv.conv_xy.weight",
        "blocks.1.res_blocks.0.branch1_conv.weight",
        "blocks.2.res_blocks.0.branch1_norm.running_var",
        "blocks.4.res_blocks.6.branch2.norm_b.1.block.2.bias",
        "blocks.4.res_blocks.5.branch2.norm_b.0.weight",
        "blocks.5.pool.pre_norm.bias",
        "blocks.5.pool.post_conv.weight",
        "blocks.5.proj.weight",
    ] {
        assert!(rec.names.iter().any(|r| r == n), "{n} not requested");
    }
    assert!(!rec.names.iter().any(|r| r.starts_with("blocks.1.res_blocks.0.branch1_norm")));
    assert!(x3d::detect_layout(&["foo.weight"]).is_err());

    // A hub checkpoint already renamed to pyslowfast names: the s2 shortcut BN is the identity too;
    // with its BN present, or only partly absent, every BN tensor is asked for.
    let bn = |f: &str| format!("s2.pathway0_res0.branch1_bn.{f}");
    let base = ["s1.pathway0_stem.conv_xy.weight".to_string(), "s2.pathway0_res0.branch1.weight".to_string()];
    for (extra, identity) in
        [(vec![], true), (vec![bn("weight"), bn("bias"), bn("running_mean"), bn("running_var")], false), (vec![bn("running_var")], false)]
    {
        let names: Vec<String> = base.iter().cloned().chain(extra).collect();
        let mut rec = Recorder { rng: RandomWeights::new(2), names: Vec::new() };
        let mut ws = X3dWeights::new(&names, &mut rec).unwrap();
        assert_eq!(ws.layout(), Layout::Pyslowfast);
        x3d::build("x3d-xs", &ModelOptions::default(), &mut ws).unwrap();
        assert_eq!(rec.names.len(), if identity { 480 } else { 484 });
        assert_eq!(rec.names.iter().any(|n| n.starts_with("s2.pathway0_res0.branch1_bn")), !identity);
    }
    assert_eq!(x3d::detect_layout(&["s1.pathway0_stem.conv_xy.weight"]).unwrap(), Layout::Pyslowfast);
}

/// docs/performance.md, "Counting operations": conv + linear multiply-accumulates of one CoX3D step (ptflops convention without
/// BN/ReLU/pool counts) — 0.1527 G for S, 0.2975 G for M, 1.1499 G for L.
#[test]
fn macs_per_step_match_the_published_counts() {
    for (variant, gmacs) in [("x3d-s", 0.1527), ("x3d-m", 0.2975), ("x3d-l", 1.1499)] {
        let d = coinfer::models::describe(variant, &ModelOptions::default()).unwrap();
        let got = d.macs_per_step / 1e9;
        assert!((got - gmacs).abs() < 0.00051, "{variant}: {got} G");
    }
}

#[test]
fn spec_and_bad_input() {
    let mut m = x3d::build("x3d-m", &ModelOptions::default(), &mut RandomWeights::new(1)).unwrap();
    let spec = m.spec().clone();
    assert_eq!((spec.crop, spec.resize_short, spec.num_classes), (224, 224, 400));
    assert!((spec.fps - 6.0).abs() < 1e-12);
    let wrong = Tensor::zeros((3, 160, 160), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(m.step(&wrong).is_err());
    let small = Tensor::zeros((16, 3, 160, 160), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(m.forward_clip(&small, SeScope::Clip).is_err());
    let short = Tensor::zeros((15, 3, 224, 224), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(m.forward_clip(&short, SeScope::Clip).is_err(), "shorter than the head window 16");
    assert!(x3d::build("x3d-q", &ModelOptions::default(), &mut RandomWeights::new(1)).is_err());
    let zero_pool = ModelOptions { pool: Some(0), ..Default::default() };
    assert!(x3d::build("x3d-s", &zero_pool, &mut RandomWeights::new(1)).is_err());
    assert_eq!(x3d::variants(), ["x3d-xs", "x3d-s", "x3d-m", "x3d-l"]);
}

/// Statements 3 and 4 on the real widths and depths (X3D-S: 26 blocks; X3D-L: 55 blocks) at a
/// 32×32 crop, so that a stream longer than the receptive field runs in seconds.
#[test]
fn real_depths_prefix_and_steady_state_at_small_crop() {
    for (variant, pool) in [("x3d-s", 3), ("x3d-l", 2)] {
        let cfg = X3dConfig { crop: 32, ..X3dConfig::variant(variant).unwrap() };
        let mut m = CoX3d::new(cfg, Some(pool), Fill::Zeros, &mut RandomWeights::new(51)).unwrap();
        let d_b = m.backbone(SeScope::Frame).temporal().delay();
        let r = m.shape().receptive_field;
        assert_eq!(r, 2 * d_b + pool, "{variant}");
        let x = clip(52, r, 32);
        let outs = run(&mut m, &x);
        assert_eq!(outs.first().unwrap().0, d_b + pool - 1);
        // Prefix oracle at the first emitted step.
        let (t, p) = &outs[0];
        let feats = m.backbone(SeScope::Frame).forward(&x.narrow(0, 0, t + 1).unwrap(), PadMode::StartOnly).unwrap();
        let logits = m.head().forward(&feats.narrow(0, t + 1 - d_b - pool, pool).unwrap(), PadMode::Valid).unwrap();
        let expect = x3d::probabilities(&logits).unwrap();
        assert!(max_diff(p, &expect) < 1e-6, "{variant} prefix: {}", max_diff(p, &expect));
        // Valid oracle at the first steady-state step R-1.
        let (t, p) = outs.last().unwrap();
        assert_eq!(*t, r - 1);
        let logits = m.clip_logits(&x, SeScope::Frame, PadMode::Valid).unwrap();
        let expect = candle_nn::ops::softmax(&logits.squeeze(0).unwrap(), 0).unwrap();
        assert!(max_diff(p, &expect) < 1e-6, "{variant} steady: {}", max_diff(p, &expect));
    }
}

/// Priming (the warm-up on a still first frame) leaves the network exactly where `n` steps of that
/// frame leave it: the outputs that follow are bit-identical, for both fills.
#[test]
fn priming_equals_stepping_the_same_frame() {
    use coinfer::models::{self, Fill, ModelOptions};
    for fill in [Fill::Replicate, Fill::Zeros] {
        let opts = ModelOptions { fill, ..ModelOptions::default() };
        let mut stepped = models::build_random("x3d-xs", &opts).unwrap();
        let mut primed = models::build_random("x3d-xs", &opts).unwrap();
        let s = stepped.spec().crop;
        let frame = |i: usize| -> Vec<f32> { (0..3 * s * s).map(|p| ((p * 31 + i * 7919) % 509) as f32 / 254.0 - 1.0).collect() };
        for n in [1, 7, stepped.shape().delay] {
            stepped.reset();
            primed.reset();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let mut last = false;
            for _ in 0..n {
                last = stepped.step_planar(&frame(0), &mut a).unwrap();
            }
            assert_eq!(primed.prime(&frame(0), n, &mut b).unwrap(), last, "{fill:?} n={n}: emitted");
            if last {
                assert_eq!(a, b, "{fill:?} n={n}: primed output");
            }
            for i in 1..12 {
                let ea = stepped.step_planar(&frame(i), &mut a).unwrap();
                let eb = primed.step_planar(&frame(i), &mut b).unwrap();
                assert_eq!(ea, eb, "{fill:?} n={n} step {i}: emission");
                assert_eq!(a, b, "{fill:?} n={n} step {i}: output");
            }
        }
    }
}

/// The pipeline schedule (two stages of the backbone on two threads, `engine::relay`) gives the
/// split schedule's outputs bit for bit, each one step later, the last one from `drain`: after a
/// warm-up, in steady state, and through a flush. The schedule changes only with nothing in flight.
#[test]
fn pipelined_steps_give_the_same_outputs_one_step_later() {
    use coinfer::models::{self, Schedule, StreamShape};
    let opts = ModelOptions::default();
    let mut split = models::build_random("x3d-xs", &opts).unwrap();
    let mut piped = models::build_random("x3d-xs", &opts).unwrap();
    piped.set_schedule(Schedule::Pipeline).unwrap();
    assert_eq!(piped.schedule(), Schedule::Pipeline);
    assert_eq!(piped.shape(), StreamShape { lag: 1, ..split.shape() });
    let s = split.spec().crop;
    let frame = |i: usize| -> Vec<f32> { (0..3 * s * s).map(|p| ((p * 31 + i * 7919) % 509) as f32 / 254.0 - 1.0).collect() };
    let warmup = split.shape().delay;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    assert_eq!(split.prime(&frame(0), warmup, &mut a).unwrap(), piped.prime(&frame(0), warmup, &mut b).unwrap());
    assert_eq!(a, b, "primed output");
    let mut expected: Option<Vec<f32>> = None;
    for i in 1..75 {
        let es = split.step_planar(&frame(i), &mut a).unwrap();
        let ep = piped.step_planar(&frame(i), &mut b).unwrap();
        assert_eq!(ep, expected.is_some(), "step {i}: the pipeline emits what the split schedule emitted a step earlier");
        if let Some(e) = expected.take() {
            assert_eq!(b, e, "step {i}");
        }
        expected = es.then(|| a.clone());
        if i == 40 {
            let err = piped.set_schedule(Schedule::Split).unwrap_err();
            assert!(err.to_string().contains("between streams"), "{err}");
        }
    }
    assert!(piped.drain(&mut b).unwrap(), "the last output is in flight");
    assert_eq!(Some(b.clone()), expected, "drained output");
    assert!(!piped.drain(&mut b).unwrap(), "nothing left after a drain");
    piped.set_schedule(Schedule::Split).unwrap();
    assert_eq!(piped.shape(), split.shape());

    // A flush drains the output in flight first (equivalence statement 2 under the pipeline schedule).
    let mut m = model(tiny(4), Fill::Zeros, 11);
    let mut p = model(tiny(4), Fill::Zeros, 11);
    p.set_schedule(Schedule::Pipeline).unwrap();
    let x = clip(12, 16, 32);
    let mut want: Vec<Tensor> = run(&mut m, &x).into_iter().map(|(_, t)| t).collect();
    want.extend(m.flush().unwrap());
    let mut got: Vec<Tensor> = run(&mut p, &x).into_iter().map(|(_, t)| t).collect();
    got.extend(p.flush().unwrap());
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(max_diff(g, w), 0.0);
    }
}

/// The key map from the pyslowfast names to the PyTorchVideo hub names (docs/models.md, "Checkpoint
/// layouts"): PTV's stem names are swapped (`conv_t` holds the spatial 1×3×3 conv, `conv_xy` the
/// temporal 5×1×1 one), and names without a counterpart map to nothing.
#[test]
fn hub_key_map() {
    let rows = [
        ("blocks.0.conv.conv_t.weight", "s1.pathway0_stem.conv_xy.weight"),
        ("blocks.0.conv.conv_xy.weight", "s1.pathway0_stem.conv.weight"),
        ("blocks.0.norm.running_var", "s1.pathway0_stem.bn.running_var"),
        ("blocks.1.res_blocks.0.branch1_conv.weight", "s2.pathway0_res0.branch1.weight"),
        ("blocks.2.res_blocks.0.branch1_norm.bias", "s3.pathway0_res0.branch1_bn.bias"),
        ("blocks.3.res_blocks.10.branch2.conv_a.weight", "s4.pathway0_res10.branch2.a.weight"),
        ("blocks.3.res_blocks.10.branch2.norm_a.weight", "s4.pathway0_res10.branch2.a_bn.weight"),
        ("blocks.4.res_blocks.6.branch2.conv_b.weight", "s5.pathway0_res6.branch2.b.weight"),
        ("blocks.4.res_blocks.6.branch2.norm_b.0.running_mean", "s5.pathway0_res6.branch2.b_bn.running_mean"),
        ("blocks.4.res_blocks.6.branch2.norm_b.1.block.0.weight", "s5.pathway0_res6.branch2.se.fc1.weight"),
        ("blocks.4.res_blocks.6.branch2.norm_b.1.block.2.bias", "s5.pathway0_res6.branch2.se.fc2.bias"),
        ("blocks.1.res_blocks.2.branch2.conv_c.weight", "s2.pathway0_res2.branch2.c.weight"),
        ("blocks.5.pool.pre_conv.weight", "head.conv_5.weight"),
        ("blocks.5.pool.pre_norm.bias", "head.conv_5_bn.bias"),
        ("blocks.5.pool.post_conv.weight", "head.lin_5.weight"),
        ("blocks.5.proj.weight", "head.projection.weight"),
        ("blocks.5.proj.bias", "head.projection.bias"),
    ];
    for (hub, pyslowfast) in rows {
        assert_eq!(x3d::hub_name(pyslowfast).as_deref(), Some(hub), "{pyslowfast}");
    }
    for n in [
        "head.fc.weight",
        "s2.pathway0_resx",
        "s1.pathway0_stem.relu.weight",
        "s2.pathway0_res0.branch2.d.weight",
        "blocks.0.conv.conv_t.weight",
    ] {
        assert_eq!(x3d::hub_name(n), None, "{n}");
    }
}

/// The CoX3D stream-versus-clip equivalences again under every kernel level below this process's.
#[test]
fn equivalences_hold_on_every_lower_kernel_level() {
    common::levels::rerun_on_lower_kernel_levels(
        &[
            "--exact",
            "one_clip_flush_equals_regular_forward",
            "stream_outputs_equal_the_prefix_oracle",
            "steady_state_equals_the_valid_network",
            "steady_state_forgets_everything_older_than_the_receptive_field",
            "real_depths_prefix_and_steady_state_at_small_crop",
            "priming_equals_stepping_the_same_frame",
            "pipelined_steps_give_the_same_outputs_one_step_later",
        ],
        7,
    );
}
