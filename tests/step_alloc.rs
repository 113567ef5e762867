//! The step path allocates nothing in steady state: every layer reuses its buffers. Counted with a
//! global allocator that counts calls on this test's thread.
//!
//! The one exception is the `gemm` crate, which allocates its packing buffers inside each matrix
//! product (at most two per call); a whole model is therefore checked against the number of matrix
//! products it ran, and a network of every other layer kind against zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use candle_core::{Device, Tensor};
use coinfer::engine::hwc::matmul_calls;
use coinfer::engine::{
    Fill, Frame, Layer, Parallel, Pointwise, PoolKind, Reduce, SeScope, Sequential, SpatialPool, SqueezeExcite,
    TemporalConv, TemporalPad, TemporalPool,
};
use coinfer::models::{self, ModelOptions};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a thread-local Cell (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(|n| n.get())
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
        TemporalConv::new(name, &tensor(&[c, 1, k, 3, 3], seed), Some(&tensor(&[c], seed + 1)), 1, TemporalPad::symmetric(p), 1, [1; 4], c, Fill::Replicate).unwrap()
    };
    let se = SqueezeExcite::new("se", &tensor(&[8, c], 3), &tensor(&[8], 4), &tensor(&[c, 8], 5), &tensor(&[c], 6), SeScope::Frame).unwrap();
    let main = Sequential::new("main", vec![Box::new(dw("a", 3, 1, 10)), Box::new(Pointwise::relu()), Box::new(se), Box::new(Pointwise::swish()), Box::new(dw("b", 5, 2, 20))]);
    let residual = Parallel::new("res", vec![Box::new(Sequential::new("id", vec![])), Box::new(main)], Reduce::Sum).unwrap();
    let pool = |kind, name: &str| {
        let spatial = SpatialPool::Max { k: 3, stride: 2, pad: [0, 1, 0, 1] };
        TemporalPool::new(name, kind, 2, 2, TemporalPad::Fixed { before: 0, after: 0 }, Some(spatial), Fill::Replicate).unwrap()
    };
    let branches = Parallel::new("cat", vec![Box::new(pool(PoolKind::Max, "max")), Box::new(pool(PoolKind::Avg, "avg"))], Reduce::Concat).unwrap();
    Sequential::new("net", vec![Box::new(residual), Box::new(Pointwise::relu()), Box::new(branches), Box::new(Pointwise::pool(SpatialPool::GlobalMean))])
}

#[test]
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

#[test]
fn model_steps_allocate_only_inside_matrix_products() {
    let mut model = models::build_random("x3d-xs", &ModelOptions::default()).unwrap();
    let s = model.spec().crop;
    let frame: Vec<f32> = (0..3 * s * s).map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0).collect();
    let mut probs = Vec::new();
    let warm = model.shape().receptive_field + 2;
    for _ in 0..warm {
        model.step_planar(&frame, &mut probs).unwrap();
    }
    let (allocs, calls) = (allocations(), matmul_calls());
    let steps = 5;
    for _ in 0..steps {
        assert!(model.step_planar(&frame, &mut probs).unwrap(), "steady state emits every step");
    }
    let (allocs, calls) = (allocations() - allocs, matmul_calls() - calls);
    assert!(calls > 0);
    assert!(allocs <= 2 * calls, "{allocs} allocations in {steps} steps with {calls} matrix products");
}
