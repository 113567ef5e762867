//! The layer graph (`engine::Graph`): values on several clocks joined by output position
//! (docs/continual.md, "Joins and clocks"). Random graphs of the existing layers and a
//! SlowFast-shaped toy: stepping equals the start-padded clip path position by position, stepping
//! and flushing equals the full clip path, outputs come exactly on the derived steps, joins wait
//! for the later side, and steady-state steps allocate nothing. The whole file runs again under
//! each lower kernel level the CPU has (`COINFER_ISA`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use candle_core::{Device, Tensor};
use coinfer::engine::{
    Fill, Frame, Graph, GraphBuilder, Layer, Node, PadMode, Pointwise, PoolKind, Reduce, Scratch, Sequential, Temporal, TemporalConv,
    TemporalPad, TemporalPool,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

mod common;

/// Counts the allocations of the current thread only, so that tests running beside each other do
/// not disturb the count (the small layers here never hand work to the step team's helpers).
struct ThreadCounting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: during thread teardown the counter may be gone; such allocations are not ours.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards to the system allocator; counting touches a const-initialised thread-local
// without a destructor, which never allocates.
unsafe impl GlobalAlloc for ThreadCounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: ThreadCounting = ThreadCounting;

fn allocations() -> usize {
    ALLOCATIONS.with(|c| c.get())
}

fn random(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A temporal conv `c_in → c_out` with kernel `k`, start and end padding `p`, stride `s`, a 3×3
/// spatial kernel that keeps the frame size (so any two values can be joined).
fn conv(rng: &mut StdRng, name: &str, (c_in, c_out): (usize, usize), (k, p, s): (usize, usize, usize), fill: Fill) -> TemporalConv {
    let w = random(rng, &[c_out, c_in, k, 3, 3]);
    let b = random(rng, &[c_out]);
    TemporalConv::new(name, &w, Some(&b), s, TemporalPad::symmetric(p), 1, [1; 4], 1, fill).unwrap()
}

/// Every `s`-th frame: a max pool over one frame (exact copies).
fn subsample(s: usize, fill: Fill) -> TemporalPool {
    TemporalPool::new("subsample", PoolKind::Max, 1, s, TemporalPad::symmetric(0), None, fill).unwrap()
}

/// Step every frame of `clip`; the steps that emitted and the outputs.
fn steps(layer: &mut dyn Layer, clip: &Tensor) -> (Vec<usize>, Vec<Tensor>) {
    let (mut at, mut outs) = (Vec::new(), Vec::new());
    for t in 0..clip.dim(0).unwrap() {
        if let Some(y) = layer.step(&clip.narrow(0, t, 1).unwrap()).unwrap() {
            at.push(t);
            outs.push(y);
        }
    }
    (at, outs)
}

fn assert_close(got: &[Tensor], want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.len(), want.dim(0).unwrap(), "{what}: positions");
    if got.is_empty() {
        return;
    }
    let got = Tensor::cat(got, 0).unwrap();
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let max_abs = |t: &Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    // Relative to the values' size: deep random stacks reach magnitudes in the hundreds.
    let (diff, scale) = (max_abs(&(got - want).unwrap()), max_abs(want).max(1.0));
    assert!(diff <= tol * scale, "{what}: max |diff| {diff} > {tol} · {scale}");
}

/// The steps `k·s + delay` of a clip of `n` frames.
fn derived_steps(t: Temporal, n: usize) -> Vec<usize> {
    (0..).map(|k| k * t.stride + t.delay()).take_while(|&step| step < n).collect()
}

/// Stepping equals the start-padded clip path and comes on the derived steps; with zero fill,
/// stepping then flushing equals the full clip path; `reset` starts over.
fn check_equivalence(graph: &mut Graph, clip: &Tensor, fill: Fill, what: &str) {
    let n = clip.dim(0).unwrap();
    let (at, outs) = steps(graph, clip);
    assert_eq!(at, derived_steps(graph.temporal(), n), "{what}: emission steps");
    assert!(!at.is_empty(), "{what}: the clip is long enough for an output");
    assert_close(&outs, &graph.forward(clip, PadMode::StartOnly).unwrap(), 1e-4, &format!("{what}: prefix"));
    // The valid path: the emitted positions whose window lies wholly inside the clip.
    let t = graph.temporal();
    let first = t.padding.div_ceil(t.stride);
    assert_close(&outs[first..], &graph.forward(clip, PadMode::Valid).unwrap(), 1e-4, &format!("{what}: valid"));
    if fill == Fill::Zeros {
        let mut all = outs;
        all.extend(graph.flush().unwrap());
        assert_close(&all, &graph.forward(clip, PadMode::Full).unwrap(), 1e-4, &format!("{what}: flush"));
    }
    graph.reset();
    let (at2, outs2) = steps(graph, clip);
    assert_eq!(at2, at, "{what}: emission steps after reset");
    assert_close(&outs2, &graph.forward(clip, PadMode::StartOnly).unwrap(), 1e-4, &format!("{what}: after reset"));
    graph.reset();
}

/// A random graph of convs, pools and ReLUs on several clocks, joined by position (concat, or sum
/// where the channels agree); the leaves are brought to one clock by strided pools and joined.
fn random_graph(rng: &mut StdRng, c_in: usize, fill: Fill) -> Graph {
    let mut g = GraphBuilder::new("random");
    // (node, stride from the graph input, channels, read by a later node)
    let mut values: Vec<(Node, usize, usize, bool)> = vec![(g.input(), 1, c_in, false)];
    for i in 0..rng.random_range(4..9) {
        let a = rng.random_range(0..values.len());
        let (from, stride, c, _) = values[a];
        let (node, stride, c, reads) = match rng.random_range(0..5) {
            0 | 1 => {
                let k = rng.random_range(1..6);
                let s = if stride < 4 { rng.random_range(1..3) } else { 1 };
                let (c_out, p) = (rng.random_range(1..4), rng.random_range(0..k));
                (g.layer(from, conv(rng, &format!("conv{i}"), (c, c_out), (k, p, s), fill)), stride * s, c_out, vec![a])
            }
            2 => {
                let k = rng.random_range(1..4);
                let s = if stride < 4 { rng.random_range(1..3) } else { 1 };
                let kind = if rng.random_bool(0.5) { PoolKind::Max } else { PoolKind::Avg };
                let pad = TemporalPad::symmetric(rng.random_range(0..k));
                let pool = TemporalPool::new(format!("pool{i}"), kind, k, s, pad, None, fill).unwrap();
                (g.layer(from, pool), stride * s, c, vec![a])
            }
            3 => (g.layer(from, Pointwise::relu()), stride, c, vec![a]),
            _ => {
                let same: Vec<usize> = (0..values.len()).filter(|&b| b != a && values[b].1 == stride).collect();
                if same.is_empty() {
                    continue;
                }
                let b = same[rng.random_range(0..same.len())];
                let (reduce, c_out) =
                    if values[b].2 == c && rng.random_bool(0.5) { (Reduce::Sum, c) } else { (Reduce::Concat, c + values[b].2) };
                (g.join(&format!("join{i}"), &[from, values[b].0], reduce).unwrap(), stride, c_out, vec![a, b])
            }
        };
        reads.into_iter().for_each(|r| values[r].3 = true);
        values.push((node, stride, c, false));
    }
    let leaves: Vec<(Node, usize, usize)> = values.iter().filter(|v| !v.3).map(|&(n, s, c, _)| (n, s, c)).collect();
    let clock = leaves.iter().map(|l| l.1).max().unwrap();
    let aligned: Vec<Node> = leaves
        .iter()
        .enumerate()
        .map(|(i, &(n, s, _))| {
            if s == clock {
                return n;
            }
            // Strides here are powers of two, so every leaf's stride divides the slowest one.
            let r = clock / s;
            let pool = TemporalPool::new(format!("align{i}"), PoolKind::Avg, r, r, TemporalPad::symmetric(0), None, fill).unwrap();
            g.layer(n, pool)
        })
        .collect();
    let out = if aligned.len() == 1 { aligned[0] } else { g.join("out", &aligned, Reduce::Concat).unwrap() };
    g.build(out).unwrap()
}

#[test]
fn random_graphs_step_as_their_clip_path() {
    let mut rng = StdRng::seed_from_u64(16);
    for case in 0..24 {
        for fill in [Fill::Zeros, Fill::Replicate] {
            let mut graph = random_graph(&mut rng, 2, fill);
            let t = graph.temporal();
            let n = t.receptive_field + 3 * t.stride + rng.random_range(0..t.stride.max(2));
            let clip = random(&mut rng, &[n, 2, 3, 4]);
            check_equivalence(&mut graph, &clip, fill, &format!("case {case} {fill:?} {t:?}"));
        }
    }
}

/// The subsample a slow pathway uses: frames 0, s, 2s, … bit for bit, on steps 0, s, 2s, ….
#[test]
fn subsample_takes_every_sth_frame() {
    let mut rng = StdRng::seed_from_u64(4);
    let clip = random(&mut rng, &[11, 3, 2, 2]);
    for fill in [Fill::Zeros, Fill::Replicate] {
        let mut sub = subsample(4, fill);
        assert_eq!(sub.temporal(), Temporal { receptive_field: 1, padding: 0, stride: 4 });
        let (at, outs) = steps(&mut sub, &clip);
        assert_eq!(at, vec![0, 4, 8]);
        let picked =
            Tensor::cat(&[clip.narrow(0, 0, 1).unwrap(), clip.narrow(0, 4, 1).unwrap(), clip.narrow(0, 8, 1).unwrap()], 0).unwrap();
        assert_close(&outs, &picked, 0.0, "subsample steps");
        for mode in [PadMode::Full, PadMode::StartOnly, PadMode::Valid] {
            assert_close(&outs, &sub.forward(&clip, mode).unwrap(), 0.0, &format!("subsample {mode:?}"));
        }
        assert!(sub.flush().unwrap().is_empty());
    }
}

/// A SlowFast-shaped toy: a fast conv (k 5, p 2) on every frame, a slow pathway on every 4th frame,
/// laterals (k 7, p 3, stride 4) from two fast layers concatenated onto the slow features by
/// position, a slow conv (k 3, p 1 in slow positions) after the first join, and a head join of the
/// slow features with fast features averaged over each group of 4 (k 4, stride 4). `upto` ends the
/// graph early: 1 at the first join, 2 at the second, 3 the whole. Convs dense or depthwise.
fn slowfast_toy(rng: &mut StdRng, fill: Fill, upto: usize, depthwise: bool) -> Graph {
    let mut g = GraphBuilder::new("toy");
    let x = g.input();
    // Depthwise (a frame window, no matrix product) keeps the channels; dense changes them.
    let make = |rng: &mut StdRng, name: &str, c_in: usize, c_out: usize, k: usize, p: usize, s: usize| {
        if !depthwise {
            return (conv(rng, name, (c_in, c_out), (k, p, s), fill), c_out);
        }
        let (w, b) = (random(rng, &[c_in, 1, k, 3, 3]), random(rng, &[c_in]));
        (TemporalConv::new(name, &w, Some(&b), s, TemporalPad::symmetric(p), 1, [1; 4], c_in, fill).unwrap(), c_in)
    };
    let (fast1, c_fast) = make(rng, "fast1", 3, 2, 5, 2, 1);
    let fast1 = g.layer(x, fast1);
    let fast1 = g.layer(fast1, Pointwise::relu());
    let slow0 = g.layer(x, subsample(4, fill));
    let (slow1, c_slow) = make(rng, "slow1", 3, 4, 1, 0, 1);
    let slow1 = g.layer(slow0, slow1);
    let (lat1, c_lat) = make(rng, "lat1", c_fast, 3, 7, 3, 4);
    let lat1 = g.layer(fast1, lat1);
    // The slow side (position j at step 4j) waits for the lateral (4j + 5).
    let join1 = g.join("join1", &[slow1, lat1], Reduce::Concat).unwrap();
    if upto == 1 {
        return g.build(join1).unwrap();
    }
    let (slow2, c_slow) = make(rng, "slow2", c_slow + c_lat, 4, 3, 1, 1);
    let slow2 = g.layer(join1, slow2);
    let (fast2, c_fast) = make(rng, "fast2", c_fast, 2, 3, 1, 1);
    let fast2 = g.layer(fast1, fast2);
    let (lat2, c_lat) = make(rng, "lat2", c_fast, 3, 7, 3, 4);
    let lat2 = g.layer(fast2, lat2);
    // Now the lateral (4j + 6) waits for the slow side (4j + 9).
    let join2 = g.join("join2", &[slow2, lat2], Reduce::Concat).unwrap();
    if upto == 2 {
        return g.build(join2).unwrap();
    }
    let (slow3, _) = make(rng, "slow3", c_slow + c_lat, 3, 3, 1, 1);
    let slow3 = g.layer(join2, slow3);
    let pooled = g.layer(fast2, TemporalPool::new("fast_pool", PoolKind::Avg, 4, 4, TemporalPad::symmetric(0), None, fill).unwrap());
    let head = g.join("head", &[slow3, pooled], Reduce::Concat).unwrap();
    g.build(head).unwrap()
}

#[test]
fn slowfast_toy_emits_on_the_derived_steps() {
    let mut rng = StdRng::seed_from_u64(8);
    // Derived by hand from the layers (docs/continual.md, "Joins and clocks"): fast1 delays 2, its
    // lateral covers fast frames 4j − 5 … 4j + 5 (delay 5); slow2 adds 1 slow position = 4 steps to
    // join1's 5; fast2 delays 3, its lateral 6; the head's slow side 9 + 4, its fast side 6.
    let expected = [(1, 11, 5, 5), (2, 19, 9, 9), (3, 27, 13, 13)];
    for fill in [Fill::Zeros, Fill::Replicate] {
        for &(upto, rf, padding, delay) in &expected {
            let mut graph = slowfast_toy(&mut rng, fill, upto, false);
            let t = graph.temporal();
            assert_eq!((t.receptive_field, t.padding, t.stride, t.delay()), (rf, padding, 4, delay), "join {upto}");
            let clip = random(&mut rng, &[38, 3, 4, 3]);
            let (at, _) = steps(&mut graph, &clip);
            assert_eq!(at, (0..).map(|k| 4 * k + delay).take_while(|&s| s < 38).collect::<Vec<_>>(), "join {upto} {fill:?}");
            graph.reset();
            check_equivalence(&mut graph, &clip, fill, &format!("toy up to join {upto} {fill:?}"));
        }
    }
    let graph = slowfast_toy(&mut rng, Fill::Zeros, 3, false);
    let temporals = graph.node_temporals();
    // fast1, its ReLU, the subsample, slow1, lat1, join1, slow2, fast2, lat2, join2, slow3, pool, head.
    let delays: Vec<usize> = temporals[1..].iter().map(|t| t.delay()).collect();
    assert_eq!(delays, vec![2, 2, 0, 0, 5, 5, 9, 3, 6, 9, 13, 6, 13]);
    let report = graph.report(coinfer::engine::Chw::new(3, 4, 3));
    assert_eq!(report.kind, "graph");
    assert_eq!(report.children.len(), 13);
    assert_eq!(report.output, coinfer::engine::Chw::new(3 + 2, 4, 3));
    // One `graph node` per node: its input's shape from the graph input, and the node's own report.
    assert!(report.children.iter().all(|c| c.kind == "graph node" && c.children.len() == 1));
    assert_eq!(report.children.iter().filter(|c| c.children[0].kind == "join concat").count(), 3);
    let lat1 = &report.children[4];
    assert_eq!((lat1.name.as_str(), lat1.temporal), ("lat1", temporals[2]));
}

/// A lateral that comes later than its slow partner and one that comes earlier: the join's output
/// for each position is the concat of the same positions of both sides, whichever waited.
#[test]
fn joins_wait_for_the_later_side() {
    let mut rng = StdRng::seed_from_u64(21);
    let clip = random(&mut rng, &[30, 2, 3, 3]);
    for delay in [0, 7] {
        let mut g = GraphBuilder::new("wait");
        let x = g.input();
        // One side: every 2nd frame, after a causal average over `delay + 1` frames (delay `delay`).
        let slow = if delay == 0 {
            g.layer(x, subsample(2, Fill::Zeros))
        } else {
            let lag = TemporalPool::new("lag", PoolKind::Avg, delay + 1, 1, TemporalPad::symmetric(0), None, Fill::Zeros).unwrap();
            let lagged = g.layer(x, lag);
            g.layer(lagged, subsample(2, Fill::Zeros))
        };
        // The other: a k = 5 conv with stride 2 centred on frame 2j (delay 2).
        let other = g.layer(x, conv(&mut rng, "other", (2, 1), (5, 2, 2), Fill::Zeros));
        let join = g.join("join", &[slow, other], Reduce::Concat).unwrap();
        let mut graph = g.build(join).unwrap();
        assert_eq!(graph.temporal().delay(), delay.max(2));
        check_equivalence(&mut graph, &clip, Fill::Zeros, &format!("lag {delay}"));
    }
}

#[test]
fn graph_misuse_is_an_error() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut g = GraphBuilder::new("bad");
    let x = g.input();
    let fast = g.layer(x, conv(&mut rng, "fast", (2, 2), (3, 1, 1), Fill::Zeros));
    let slow = g.layer(x, subsample(4, Fill::Zeros));
    let err = g.join("mixed", &[fast, slow], Reduce::Concat).unwrap_err().to_string();
    assert!(err.contains("different strides"), "{err}");
    let err = g.join("empty", &[], Reduce::Sum).unwrap_err().to_string();
    assert!(err.contains("joins nothing"), "{err}");
    // A node that feeds nothing would be computed for nothing.
    let err = g.build(fast).err().unwrap().to_string();
    assert!(err.contains("does not feed the output"), "{err}");

    // A layer lending scratch outputs belongs inside a Sequential, which releases them in time.
    let mut g = GraphBuilder::new("scratch");
    let x = g.input();
    let w = random(&mut rng, &[2, 1, 3, 3, 3]);
    let dw = TemporalConv::new("dw", &w, None, 1, TemporalPad::symmetric(1), 1, [1; 4], 2, Fill::Zeros)
        .unwrap()
        .with_scratch_output(Scratch::Depthwise);
    let y = g.layer(x, dw);
    let err = g.build(y).err().unwrap().to_string();
    assert!(err.contains("scratch"), "{err}");
    let w = random(&mut rng, &[2, 1, 3, 3, 3]);
    let dw = TemporalConv::new("dw", &w, None, 1, TemporalPad::symmetric(1), 1, [1; 4], 2, Fill::Zeros)
        .unwrap()
        .with_scratch_output(Scratch::Depthwise);
    let mut g = GraphBuilder::new("wrapped");
    let x = g.input();
    let y = g.layer(x, Sequential::new("seq", vec![Box::new(dw), Box::new(Pointwise::relu())]));
    assert!(g.build(y).is_ok());
}

/// Steady-state steps of the toy allocate nothing: joins reuse their waiting frames and output. The
/// toy's convs are depthwise here: dense ones go to the `gemm` crate on CPUs without AVX-512, which
/// allocates its own packing buffers (tests/step_alloc.rs accounts for those).
#[test]
fn steady_state_steps_allocate_nothing() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut graph = slowfast_toy(&mut rng, Fill::Replicate, 3, true);
    let frames: Vec<Frame> = (0..4).map(|_| Frame::from_tensor(&random(&mut rng, &[1, 3, 5, 4])).unwrap()).collect();
    for t in 0..40 {
        graph.step_frame(frames[t % 4].as_ref()).unwrap();
    }
    let before = allocations();
    let mut emitted = 0;
    for t in 0..64 {
        emitted += graph.step_frame(frames[t % 4].as_ref()).unwrap().is_some() as usize;
    }
    assert_eq!(allocations() - before, 0, "allocations in 64 steady-state steps");
    assert_eq!(emitted, 16, "one output per 4 steps");
}

#[test]
fn every_test_passes_on_every_lower_kernel_level() {
    common::levels::rerun_on_lower_kernel_levels(&["--skip", "every_test_passes_on_every_lower_kernel_level", "--test-threads", "2"], 6);
}
