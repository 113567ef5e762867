//! The warm-up in closed form (docs/continual.md, "Warm-up in closed form"): `prime(x, n)` leaves a
//! layer, a layer stack or a whole model exactly where `n` steps of `x` leave it (the outputs that
//! follow are bit-identical, the emission steps too, and the reported outputs match), and it costs
//! about one step per layer whatever `n`, the strides and the head window.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Result, Tensor};
use coinfer::engine::{
    Chw, Delay, Fill, Frame, FrameRef, Fusion, GraphBuilder, Layer, LayerReport, PadMode, Parallel, Pointwise, PoolKind, Primed, Reduce,
    Sequential, Temporal, TemporalConv, TemporalPad, TemporalPool,
};
use coinfer::models::{Fill as ModelFill, RandomWeights, StreamModel};
use rand::{Rng, SeedableRng, rngs::StdRng};

const C: usize = 4;
const H: usize = 5;
const W: usize = 4;

fn bits(y: Option<FrameRef<'_>>) -> Option<Vec<u32>> {
    y.map(|y| y.data.iter().map(|v| v.to_bits()).collect())
}

fn random_tensor(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), shape, &Device::Cpu).unwrap()
}

fn random_frame(rng: &mut StdRng) -> Frame {
    Frame::from_tensor(&random_tensor(rng, &[1, C, H, W])).unwrap()
}

/// A window op with kernel `k`, stride `s` and start padding `p_b` (drawn), C channels in and out,
/// the frame size kept.
fn random_window_layer(rng: &mut StdRng, i: usize, fill: Fill) -> Box<dyn Layer> {
    let k = rng.random_range(1..=4usize);
    let s = [1, 2, 4][rng.random_range(0..3)];
    let p_b = rng.random_range(0..k);
    let pad = TemporalPad::Fixed { before: p_b, after: k - 1 - p_b };
    match rng.random_range(0..5) {
        // Dense: pending sums.
        0 => {
            let (w, b) = (random_tensor(rng, &[C, C, k, 3, 3]), random_tensor(rng, &[C]));
            Box::new(TemporalConv::new(format!("dense{i}"), &w, Some(&b), s, pad, 1, [1; 4], 1, fill).unwrap())
        }
        // Depthwise: a frame window (k ≤ 8) ...
        1 => {
            let (w, b) = (random_tensor(rng, &[C, 1, k.max(2), 3, 3]), random_tensor(rng, &[C]));
            let pad = TemporalPad::Fixed { before: p_b, after: k.max(2) - 1 - p_b };
            Box::new(TemporalConv::new(format!("dw{i}"), &w, Some(&b), s, pad, 1, [1; 4], C, fill).unwrap())
        }
        // ... or pending sums (k > 8).
        2 => {
            let (w, b) = (random_tensor(rng, &[C, 1, 9, 3, 3]), random_tensor(rng, &[C]));
            let p_b = rng.random_range(0..9);
            Box::new(
                TemporalConv::new(
                    format!("dw9-{i}"),
                    &w,
                    Some(&b),
                    s,
                    TemporalPad::Fixed { before: p_b, after: 8 - p_b },
                    1,
                    [1; 4],
                    C,
                    fill,
                )
                .unwrap(),
            )
        }
        3 => Box::new(TemporalPool::new(format!("max{i}"), PoolKind::Max, k, s, pad, None, fill).unwrap()),
        _ => Box::new(TemporalPool::new(format!("avg{i}"), PoolKind::Avg, k, s, pad, None, fill).unwrap()),
    }
}

/// A random stack: window ops, activations, a residual block and a delay.
fn random_stack(seed: u64, fill: Fill) -> Sequential {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    for i in 0..rng.random_range(2..5) {
        layers.push(random_window_layer(&mut rng, i, fill));
        match rng.random_range(0..4) {
            0 => layers.push(Box::new(Pointwise::relu())),
            1 => {
                // A residual block: an identity beside a stride-1 branch (delay-aligned by Parallel).
                let (w, b) = (random_tensor(&mut rng, &[C, C, 3, 3, 3]), random_tensor(&mut rng, &[C]));
                let conv = TemporalConv::new("res.conv", &w, Some(&b), 1, TemporalPad::symmetric(1), 1, [1; 4], 1, fill).unwrap();
                let branches: Vec<Box<dyn Layer>> = vec![Box::new(Sequential::new("id", vec![])), Box::new(conv)];
                layers.push(Box::new(Parallel::new("res", branches, Reduce::Sum).unwrap()));
            }
            2 => layers.push(Box::new(Delay::new(rng.random_range(0..3)))),
            _ => {}
        }
    }
    Sequential::new(format!("stack{seed}"), layers)
}

/// Two clocks joined: a branch strided by 4 beside a stride-1 branch pooled by 4 (a lateral), and
/// their concatenation on the slow clock, then a strided conv on it.
fn random_graph(seed: u64, fill: Fill) -> coinfer::engine::Graph {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = GraphBuilder::new("two clocks");
    let x = g.input();
    let (w, b) = (random_tensor(&mut rng, &[C, C, 1, 3, 3]), random_tensor(&mut rng, &[C]));
    let slow = g.layer(x, TemporalConv::new("slow", &w, Some(&b), 4, TemporalPad::symmetric(0), 1, [1; 4], 1, fill).unwrap());
    let (w, b) = (random_tensor(&mut rng, &[C, C, 3, 3, 3]), random_tensor(&mut rng, &[C]));
    let fast = g.layer(x, TemporalConv::new("fast", &w, Some(&b), 1, TemporalPad::symmetric(1), 1, [1; 4], 1, fill).unwrap());
    let (w, b) = (random_tensor(&mut rng, &[C, C, 5, 1, 1]), random_tensor(&mut rng, &[C]));
    let lateral = g.layer(fast, TemporalConv::new("lateral", &w, Some(&b), 4, TemporalPad::symmetric(2), 1, [0; 4], 1, fill).unwrap());
    let joined = g.join("fuse", &[slow, lateral], Reduce::Concat).unwrap();
    let (w, b) = (random_tensor(&mut rng, &[C, 2 * C, 3, 1, 1]), random_tensor(&mut rng, &[C]));
    let out = g.layer(joined, TemporalConv::new("after", &w, Some(&b), 2, TemporalPad::symmetric(1), 1, [0; 4], 1, fill).unwrap());
    g.build(out).unwrap()
}

/// `prime(x, n)` on `primed` against `n` steps of `x` on `stepped` (after the same `prefix`): what
/// the warm-up reports, then the outputs of `stream` and of the flush, bit for bit.
fn check_prime(what: &str, stepped: &mut dyn Layer, primed: &mut dyn Layer, prefix: &[Frame], x: &Frame, n: usize, stream: &[Frame]) {
    for f in prefix {
        assert_eq!(bits(stepped.step_frame(f.as_ref()).unwrap()), bits(primed.step_frame(f.as_ref()).unwrap()), "{what}: prefix");
    }
    let (mut emitted, mut last, mut last_emitted) = (0, None, None);
    for _ in 0..n {
        last = bits(stepped.step_frame(x.as_ref()).unwrap());
        if last.is_some() {
            emitted += 1;
            last_emitted = last.clone();
        }
    }
    let constant = primed.preserves_constant() && prefix.is_empty();
    let p = primed.prime(x.as_ref(), n).unwrap();
    assert_eq!(p.emitted, emitted, "{what}: outputs while priming");
    assert_eq!(p.last_step, last.is_some(), "{what}: whether the last step emitted");
    if p.last_step {
        assert_eq!(bits(p.output), last, "{what}: the last step's output");
    } else if constant && emitted > 0 {
        assert_eq!(bits(p.output), last_emitted, "{what}: the constant output handed on");
    }
    for (t, f) in stream.iter().enumerate() {
        let a = bits(stepped.step_frame(f.as_ref()).unwrap());
        let b = bits(primed.step_frame(f.as_ref()).unwrap());
        assert_eq!(a, b, "{what}: step {t} after the warm-up");
    }
    let a: Vec<_> = stepped.flush_frames().unwrap().iter().map(|f| bits(Some(f.as_ref()))).collect();
    let b: Vec<_> = primed.flush_frames().unwrap().iter().map(|f| bits(Some(f.as_ref()))).collect();
    assert_eq!(a, b, "{what}: flush");
}

#[test]
fn random_layer_stacks_prime_like_stepping() {
    let mut rng = StdRng::seed_from_u64(7);
    let stream: Vec<Frame> = (0..24).map(|_| random_frame(&mut rng)).collect();
    for seed in 0..40 {
        for fill in [Fill::Replicate, Fill::Zeros] {
            let delay = random_stack(seed, fill).temporal().delay();
            for n in [1, 2, 3, delay.saturating_sub(1).max(1), delay.max(1), delay + 1, delay + 5, 2 * delay + 9] {
                // Fresh, and after a few frames of another stream.
                for prefix in [0, 3] {
                    let what = format!("stack {seed} {fill:?} n={n} prefix={prefix}");
                    let (mut a, mut b) = (random_stack(seed, fill), random_stack(seed, fill));
                    check_prime(&what, &mut a, &mut b, &stream[..prefix], &stream[5], n, &stream[6..]);
                }
            }
        }
    }
}

#[test]
fn graphs_on_two_clocks_prime_like_stepping() {
    let mut rng = StdRng::seed_from_u64(8);
    let stream: Vec<Frame> = (0..40).map(|_| random_frame(&mut rng)).collect();
    for seed in 0..6 {
        for fill in [Fill::Replicate, Fill::Zeros] {
            let delay = random_graph(seed, fill).temporal().delay();
            for n in [1, 3, 4, 5, delay.saturating_sub(1).max(1), delay, delay + 1, delay + 4, delay + 7, 3 * delay + 2] {
                for prefix in [0, 2] {
                    let what = format!("graph {seed} {fill:?} n={n} prefix={prefix}");
                    let (mut a, mut b) = (random_graph(seed, fill), random_graph(seed, fill));
                    check_prime(&what, &mut a, &mut b, &stream[..prefix], &stream[3], n, &stream[4..]);
                }
            }
        }
    }
}

/// A layer that counts the steps it is given; primed, it hands the warm-up to the layer it wraps.
struct Counted {
    inner: Box<dyn Layer>,
    steps: Arc<AtomicUsize>,
}

impl Layer for Counted {
    fn forward(&self, x: &Tensor, mode: PadMode) -> Result<Tensor> {
        self.inner.forward(x, mode)
    }
    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>> {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.inner.step_frame(x)
    }
    fn flush_frames(&mut self) -> Result<Vec<Frame>> {
        self.inner.flush_frames()
    }
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        self.inner.prime(x, n)
    }
    fn preserves_constant(&self) -> bool {
        self.inner.preserves_constant()
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn temporal(&self) -> Temporal {
        self.inner.temporal()
    }
    fn report(&self, input: Chw) -> LayerReport {
        self.inner.report(input)
    }
}

impl Fusion for Counted {}

/// Ten million copies through strided convs, pools (one of them 1000 frames wide), a residual block
/// and a two-clock graph: no container steps a layer (the counters stay at zero), and the whole
/// warm-up ends, which stepping would not in hours. The state is then that of the steps: checked on
/// the smaller `n` against stepping.
#[test]
fn the_warm_up_costs_one_step_per_layer_whatever_n() {
    let mut rng = StdRng::seed_from_u64(9);
    let steps = Arc::new(AtomicUsize::new(0));
    let build = |rng: &mut StdRng| -> Sequential {
        let counted = |layer: Box<dyn Layer>| -> Box<dyn Layer> { Box::new(Counted { inner: layer, steps: steps.clone() }) };
        let fill = Fill::Replicate;
        let (w, b) = (random_tensor(rng, &[C, C, 3, 3, 3]), random_tensor(rng, &[C]));
        let dense = TemporalConv::new("dense", &w, Some(&b), 2, TemporalPad::symmetric(1), 1, [1; 4], 1, fill).unwrap();
        let (w, b) = (random_tensor(rng, &[C, 1, 3, 3, 3]), random_tensor(rng, &[C]));
        let dw = TemporalConv::new("dw", &w, Some(&b), 1, TemporalPad::symmetric(1), 1, [1; 4], C, fill).unwrap();
        let residual = Parallel::new("res", vec![Box::new(Sequential::new("id", vec![])), counted(Box::new(dw))], Reduce::Sum).unwrap();
        let max = TemporalPool::new("max", PoolKind::Max, 3, 4, TemporalPad::symmetric(1), None, fill).unwrap();
        let wide = TemporalPool::new("wide", PoolKind::Avg, 1000, 1, TemporalPad::symmetric(0), None, Fill::Zeros).unwrap();
        Sequential::new(
            "counted",
            vec![
                counted(Box::new(dense)),
                counted(Box::new(Pointwise::relu())),
                counted(Box::new(residual)),
                counted(Box::new(max)),
                counted(Box::new(random_graph(3, fill))),
                counted(Box::new(wide)),
            ],
        )
    };
    let x = random_frame(&mut rng);
    let stream: Vec<Frame> = (0..40).map(|_| random_frame(&mut rng)).collect();
    let mut huge = build(&mut StdRng::seed_from_u64(1));
    let p = huge.prime(x.as_ref(), 10_000_000).unwrap();
    assert_eq!(steps.load(Ordering::Relaxed), 0, "steps during the warm-up");
    assert!(p.emitted > 0 && p.output.is_some());
    for f in &stream {
        huge.step_frame(f.as_ref()).unwrap();
    }
    let n = huge.temporal().delay() + 37;
    let (mut a, mut b) = (build(&mut StdRng::seed_from_u64(1)), build(&mut StdRng::seed_from_u64(1)));
    check_prime("counted", &mut a, &mut b, &[], &x, n, &stream);
}

/// A planar frame for a model of crop `s`.
fn planar(s: usize, i: usize) -> Vec<f32> {
    (0..3 * s * s).map(|p| ((p * 31 + i * 7919) % 509) as f32 / 254.0 - 1.0).collect()
}

/// `prime(frame 0, n)` against `n` steps for warm-ups below, at and above the delay, then a stream
/// of other frames: emissions and probabilities bit for bit.
fn check_model(what: &str, build: &dyn Fn() -> Box<dyn StreamModel>) {
    let (mut stepped, mut primed) = (build(), build());
    let shape = stepped.shape();
    let s = stepped.spec().crop;
    let (d, stride) = (shape.delay, shape.stride);
    let frame = planar(s, 0);
    for n in [1, d.saturating_sub(1).max(1), d, d + 1, d + stride + 2] {
        stepped.reset();
        primed.reset();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut last = false;
        for _ in 0..n {
            last = stepped.step_planar(&frame, &mut a).unwrap();
        }
        assert_eq!(primed.prime(&frame, n, &mut b).unwrap(), last, "{what} n={n}: emitted on the last step");
        if last {
            assert_eq!(bits_of(&a), bits_of(&b), "{what} n={n}: primed output");
        }
        for i in 1..2 * stride + 6 {
            let ea = stepped.step_planar(&planar(s, i), &mut a).unwrap();
            let eb = primed.step_planar(&planar(s, i), &mut b).unwrap();
            assert_eq!(ea, eb, "{what} n={n} step {i}: emission");
            if ea {
                assert_eq!(bits_of(&a), bits_of(&b), "{what} n={n} step {i}: output");
            }
        }
    }
}

fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn every_model_family_primes_like_stepping() {
    use coinfer::models::i3d::{CoI3d, I3dConfig};
    use coinfer::models::slow::{CoSlow, SlowConfig};
    use coinfer::models::slowfast::{CoSlowFast, SlowFastConfig};
    use coinfer::models::x3d::{CoX3d, X3dConfig};
    let fill = ModelFill::Replicate;
    for pool in [1, 2, 1024] {
        let x3d = X3dConfig { crop: 64, ..X3dConfig::variant("x3d-xs").unwrap() };
        check_model(&format!("x3d-xs pool {pool}"), &|| {
            Box::new(CoX3d::new(x3d.clone(), Some(pool), fill, &mut RandomWeights::new(1)).unwrap())
        });
        check_model(&format!("i3d pool {pool}"), &|| {
            Box::new(CoI3d::new(&mut RandomWeights::new(2), &I3dConfig { size: 32, pool, fill }).unwrap())
        });
    }
    for pool in [1, 2, 9] {
        for name in ["slow-r50", "i3d-r50"] {
            let cfg = SlowConfig { stem_width: 4, crop: 32, ..SlowConfig::variant(name).unwrap() };
            check_model(&format!("{name} pool {pool}"), &|| {
                Box::new(CoSlow::new(cfg.clone(), Some(pool), fill, &mut RandomWeights::new(3)).unwrap())
            });
        }
        let sf = SlowFastConfig { slow_stem: 16, fast_stem: 2, crop: 32, ..SlowFastConfig::variant("slowfast-r50").unwrap() };
        check_model(&format!("slowfast-r50 pool {pool}"), &|| {
            Box::new(CoSlowFast::new(sf.clone(), Some(pool), fill, &mut RandomWeights::new(4)).unwrap())
        });
    }
}
