//! The step path allocates nothing in steady state: every layer reuses its buffers. Counted with a
//! global allocator over all threads (the pool thread that takes half of a split op included), so the
//! checks run one after the other in a single test.
//!
//! Matrix products run on weights packed at load (AVX-512 CPUs) and allocate nothing either; on other
//! CPUs they go to the `gemm` crate, which allocates its packing buffers in each call (at most two),
//! and the whole-model check allows exactly those. The checks run again under every lower kernel
//! level the CPU has (`COINFER_ISA`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor};
use coinfer::engine::kernels::gemm::fallback_calls;
use coinfer::engine::{
    Fill, Frame, Layer, Parallel, Pointwise, PoolKind, Reduce, SeScope, Sequential, SpatialPool, SqueezeExcite, TemporalConv, TemporalPad,
    TemporalPool,
};
use coinfer::models::{self, ModelOptions, Schedule};

mod common;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; counting is one atomic add.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}

fn tensor(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32 / 500.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Depthwise temporal convs (frame window), strided pools with spatial pooling, frame-wise SE,
/// a residual sum with a delayed shortcut, a concat, fused and unfused activations.
fn network() -> Sequential {
    let c = 20;
    let dw = |name: &str, k: usize, p: usize, seed| {
        TemporalConv::new(
            name,
            &tensor(&[c, 1, k, 3, 3], seed),
            Some(&tensor(&[c], seed + 1)),
            1,
            TemporalPad::symmetric(p),
            1,
            [1; 4],
            c,
            Fill::Replicate,
        )
        .unwrap()
    };
    let se =
        SqueezeExcite::new("se", &tensor(&[8, c], 3), &tensor(&[8], 4), &tensor(&[c, 8], 5), &tensor(&[c], 6), SeScope::Frame).unwrap();
    let main = Sequential::new(
        "main",
        vec![
            Box::new(dw("a", 3, 1, 10)),
            Box::new(Pointwise::relu()),
            Box::new(se),
            Box::new(Pointwise::swish()),
            Box::new(dw("b", 5, 2, 20)),
        ],
    );
    let residual = Parallel::new("res", vec![Box::new(Sequential::new("id", vec![])), Box::new(main)], Reduce::Sum).unwrap();
    let pool = |kind, name: &str| {
        let spatial = SpatialPool::Max { k: 3, stride: 2, pad: [0, 1, 0, 1] };
        TemporalPool::new(name, kind, 2, 2, TemporalPad::Fixed { before: 0, after: 0 }, Some(spatial), Fill::Replicate).unwrap()
    };
    let branches =
        Parallel::new("cat", vec![Box::new(pool(PoolKind::Max, "max")), Box::new(pool(PoolKind::Avg, "avg"))], Reduce::Concat).unwrap();
    Sequential::new(
        "net",
        vec![Box::new(residual), Box::new(Pointwise::relu()), Box::new(branches), Box::new(Pointwise::pool(SpatialPool::GlobalMean))],
    )
}

fn engine_layers_allocate_nothing_per_step() {
    let mut net = network();
    let frames: Vec<Frame> = (0..4).map(|i| Frame::from_tensor(&tensor(&[1, 20, 9, 8], 100 + i)).unwrap()).collect();
    for t in 0..20 {
        net.step_frame(frames[t % 4].as_ref()).unwrap();
    }
    let before = allocations();
    let mut emitted = 0;
    for t in 0..40 {
        emitted += net.step_frame(frames[t % 4].as_ref()).unwrap().is_some() as usize;
    }
    assert_eq!(emitted, 20, "the strided pools emit every other step");
    assert_eq!(allocations() - before, 0, "allocations in 40 steady-state steps");
}

/// Steady-state steps of a whole model: no allocation, on the stepping thread or the step team's
/// helpers (the counter sees every thread), beyond the `gemm` crate's own on CPUs without AVX-512.
fn model_steps_allocate_nothing(name: &str, schedule: Schedule, steps: usize) {
    let model = models::build_random(name, &ModelOptions::default()).unwrap();
    stream_steps_allocate_nothing(name, model, schedule, steps);
}

/// A ResNet-3D variant at a small width and crop (the real depths and kernels), random weights.
fn tiny_resnet(name: &str) -> Box<dyn models::StreamModel> {
    use coinfer::models::slow::{CoSlow, SlowConfig};
    let cfg = SlowConfig { stem_width: 8, crop: 64, ..SlowConfig::variant(name).unwrap() };
    Box::new(CoSlow::new(cfg, None, coinfer::models::Fill::Zeros, &mut models::RandomWeights::new(3)).unwrap())
}

fn stream_steps_allocate_nothing(name: &str, mut model: Box<dyn models::StreamModel>, schedule: Schedule, steps: usize) {
    model.set_schedule(schedule).unwrap();
    let s = model.spec().crop;
    let frame: Vec<f32> = (0..3 * s * s).map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0).collect();
    let mut probs = Vec::new();
    let shape = model.shape();
    for _ in 0..shape.receptive_field + shape.stride {
        model.step_planar(&frame, &mut probs).unwrap();
    }
    let (allocs, calls) = (allocations(), fallback_calls());
    let mut emitted = 0;
    for _ in 0..steps {
        emitted += model.step_planar(&frame, &mut probs).unwrap() as usize;
    }
    let (allocs, calls) = (allocations() - allocs, fallback_calls() - calls);
    assert_eq!(emitted, steps / shape.stride, "{name}: outputs");
    let threads = coinfer::engine::configured_threads();
    assert!(
        allocs <= 2 * calls,
        "{name}, {schedule:?}, {threads} threads: {allocs} allocations in {steps} steady-state steps ({calls} products by the gemm crate)"
    );
}

#[test]
fn steady_state_steps_allocate_nothing() {
    engine_layers_allocate_nothing_per_step();
    // With two or more cores the models' big ops are shared with the step team's helpers.
    model_steps_allocate_nothing("x3d-xs", Schedule::Split, 5);
    // The two-stage pipeline hands frames over in two reused buffers.
    model_steps_allocate_nothing("x3d-xs", Schedule::Pipeline, 5);
    model_steps_allocate_nothing("i3d", Schedule::Split, 16);
    // CoSlow and CoI3D-R50 (its stride-2 pool after res2), both schedules.
    for name in ["slow-r50", "i3d-r50"] {
        stream_steps_allocate_nothing(name, tiny_resnet(name), Schedule::Split, 8);
        stream_steps_allocate_nothing(name, tiny_resnet(name), Schedule::Pipeline, 8);
    }
    // The same under every lower kernel level (`COINFER_ISA`), in child processes: after the
    // counting above, since the counter sees this process's every allocation.
    common::levels::rerun_on_lower_kernel_levels(&[], 1);
}
