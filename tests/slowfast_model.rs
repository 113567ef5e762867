//! CoSlowFast against the PyTorchVideo reference (tests/fixtures/resnet/slowfast, written by
//! tools/resnet/make_fixtures.py: a tiny-width `create_slowfast` with the real R50 depths, random
//! weights and BatchNorm statistics, in the hub, pyslowfast and Caffe2 layouts), and the continual
//! statements of docs/continual.md ("Equivalence", "Joins and clocks") on it and on the full-size
//! network.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};
use coinfer::engine::{Layer, PadMode};
use coinfer::models::classifier::Architecture;
use coinfer::models::slowfast::{CoSlowFast, SlowFast, SlowFastConfig};
use coinfer::models::{Fill, StreamModel, ZeroWeights};

/// Counts allocations on every thread (the step team's helpers included).
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

/// Every test holds it: the allocation count sees the whole process, so tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet/slowfast").join(name)
}

fn json() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap()
}

fn list(v: &serde_json::Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// The fixture's network, checked against the widths the reference reports.
fn config() -> SlowFastConfig {
    let j = json();
    let n = |k: &str| j[k].as_u64().unwrap() as usize;
    let kernels = |k: &str| -> [Vec<usize>; 4] {
        let stages: Vec<Vec<usize>> = j[k].as_array().unwrap().iter().map(list).collect();
        std::array::from_fn(|s| stages[s].clone())
    };
    let depths = list(&j["depths"]);
    let cfg = SlowFastConfig {
        name: "slowfast-tiny".into(),
        slow_stem: n("stem_dim"),
        fast_stem: n("fast_stem_dim"),
        slow_stem_kt: n("stem_kt"),
        fast_stem_kt: n("fast_stem_kt"),
        depths: [depths[0], depths[1], depths[2], depths[3]],
        slow_kernels: kernels("stage_kt"),
        fast_kernels: kernels("fast_stage_kt"),
        alpha: n("alpha"),
        fusion_kernel: n("fusion_kernel"),
        fusion_ratio: n("fusion_ratio"),
        crop: n("crop"),
        num_frames: n("clip_frames"),
        sampling_rate: 2,
    };
    assert_eq!(cfg.slow_stages().map(|s| s.din).to_vec(), list(&j["stage_in"]));
    assert_eq!(cfg.slow_stages().map(|s| s.inner).to_vec(), list(&j["stage_inner"]));
    assert_eq!(cfg.slow_stages().map(|s| s.dout).to_vec(), list(&j["stage_out"]));
    assert_eq!(cfg.fast_stages().map(|s| s.din).to_vec(), list(&j["fast_stage_in"]));
    assert_eq!(cfg.fast_stages().map(|s| s.dout).to_vec(), list(&j["fast_stage_out"]));
    assert_eq!(cfg.laterals().map(|l| l.1).to_vec(), list(&j["lateral_out"]));
    assert_eq!(cfg.features(), n("head_in"));
    cfg
}

fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("expected.safetensors"), &Device::Cpu).unwrap()
}

/// The stream `(L, 3, S, S)`: the clip looped to `stream_frames`, normalised with mean 0.45, std 0.225.
fn stream(exp: &HashMap<String, Tensor>) -> Tensor {
    looped(exp, json()["stream_frames"].as_u64().unwrap() as usize)
}

/// The clip looped to `len` frames, normalised.
fn looped(exp: &HashMap<String, Tensor>, len: usize) -> Tensor {
    let u8s = &exp["clip_u8"];
    let n = u8s.dim(0).unwrap();
    let idx: Vec<u32> = (0..len).map(|t| (t % n) as u32).collect();
    let looped = u8s.index_select(&Tensor::new(idx, &Device::Cpu).unwrap(), 0).unwrap();
    let x = looped.to_dtype(DType::F32).unwrap().permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
    ((x / 255.0).unwrap() - 0.45).unwrap().affine(1.0 / 0.225, 0.0).unwrap()
}

/// Load a fixture checkpoint through coinfer's reader and the model's own key map (layout told from
/// the names); every tensor must be used.
fn build(ckpt: &str, pool: Option<usize>, fill: Fill) -> CoSlowFast {
    let mut store = coinfer::weights::load(&fixture(ckpt), &Device::Cpu).unwrap();
    store.ignore(|n| n.ends_with("num_batches_tracked"));
    let names = store.names().to_vec();
    let model = {
        let mut ws = SlowFast::checkpoint(&names, &mut store).unwrap();
        CoSlowFast::new(config(), pool, fill, &mut *ws).unwrap()
    };
    store.finish().unwrap();
    model
}

fn planar(frame: &Tensor) -> Vec<f32> {
    frame.flatten_all().unwrap().to_vec1().unwrap()
}

/// Step every frame of `clip`: the steps that emitted and their probabilities.
fn run(model: &mut CoSlowFast, clip: &Tensor) -> (Vec<usize>, Vec<Vec<f32>>) {
    let (mut at, mut outs, mut probs) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..clip.dim(0).unwrap() {
        if model.step_planar(&planar(&clip.get(t).unwrap()), &mut probs).unwrap() {
            at.push(t);
            outs.push(probs.clone());
        }
    }
    (at, outs)
}

fn top5(p: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    idx.truncate(5);
    idx
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn clip_path_equals_the_reference_clip_network() {
    let _serial = serial();
    let exp = expected();
    let model = build("slowfast_hub.pyth", None, Fill::Zeros);
    assert_eq!(model.num_params() as u64, json()["learnable_scalars"].as_u64().unwrap());
    let frames = model.config().num_frames;
    let clip = stream(&exp).narrow(0, 0, frames).unwrap();
    let logits = model.clip_logits(&clip, PadMode::Full).unwrap();
    assert_eq!(logits.dims(), &[1, 7]);
    let want: Vec<f32> = exp["clip_logits"].to_vec1().unwrap();
    let got: Vec<f32> = logits.get(0).unwrap().to_vec1().unwrap();
    let diff = max_diff(&got, &want);
    assert!(diff <= 1e-5, "clip logits differ by {diff}");
    // The official slow sampling [0, 4, 8, 13, …] is a different input: a stream cannot reproduce it.
    let linspace: Vec<f32> = exp["clip_logits_linspace"].to_vec1().unwrap();
    assert!(max_diff(&got, &linspace) > 1e-3, "the uniform and the official slow sampling should differ");
}

/// Every stream output equals the reference sliding head (probabilities within 1e-4, the same
/// top-5), for the default window and `--pool 16`; outputs come on steps `4J + 48` for window J.
#[test]
fn stream_equals_the_reference_sliding_head() {
    let _serial = serial();
    let exp = expected();
    let clip = stream(&exp);
    for (pool, probs, ends) in [(None, "stream_probs", "stream_ends"), (Some(16), "stream_probs_pool16", "stream_ends_pool16")] {
        let mut model = build("slowfast_hub.pyth", pool, Fill::Zeros);
        let t_s = model.pool();
        let (at, mut outs) = run(&mut model, &clip);
        let ends: Vec<i64> = exp[ends].to_vec1().unwrap();
        // Window J (slow positions J − T_s + 1 … J) on fast step 4J + 48 (docs/models.md, "SlowFast").
        let expect_at: Vec<usize> = ends.iter().map(|&j| 4 * j as usize + 48).filter(|&t| t < clip.dim(0).unwrap()).collect();
        assert_eq!(at, expect_at, "pool {t_s}: emission steps");
        assert_eq!(at[0], 48 + 4 * (t_s - 1));
        // The windows reaching past the last frame are completed by the flush.
        outs.extend(model.flush().unwrap());
        let want: Vec<Vec<f32>> = exp[probs].to_vec2().unwrap();
        assert_eq!(outs.len(), want.len(), "pool {t_s}: outputs");
        for (i, (got, want)) in outs.iter().zip(&want).enumerate() {
            let diff = max_diff(got, want);
            assert!(diff <= 1e-4, "pool {t_s}, window {}: probabilities differ by {diff}", ends[i]);
            assert_eq!(top5(got), top5(want), "pool {t_s}, window {}: top-5", ends[i]);
        }
    }
}

/// The hub, pyslowfast and Caffe2 files load to the same network: identical outputs.
#[test]
fn the_three_checkpoint_layouts_are_one_network() {
    let _serial = serial();
    let exp = expected();
    let clip = stream(&exp).narrow(0, 0, 96).unwrap();
    let mut outputs = Vec::new();
    for file in ["slowfast_hub.pyth", "slowfast_pyslowfast.pyth", "slowfast_caffe2.pkl"] {
        let mut model = build(file, None, Fill::Replicate);
        let logits: Vec<f32> =
            model.clip_logits(&clip.narrow(0, 0, 32).unwrap(), PadMode::Full).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let (_, probs) = run(&mut model, &clip);
        outputs.push((file, logits, probs));
    }
    for (file, logits, probs) in &outputs[1..] {
        assert_eq!(logits, &outputs[0].1, "{file}: clip logits");
        assert_eq!(probs, &outputs[0].2, "{file}: stream");
    }
}

/// A fresh zero-filled stream fed one regular clip and flushed gives the clip network's output.
#[test]
fn one_clip_flushed_equals_the_clip_network() {
    let _serial = serial();
    let exp = expected();
    let mut model = build("slowfast_pyslowfast.pyth", None, Fill::Zeros);
    let clip = stream(&exp).narrow(0, 0, 32).unwrap();
    let (at, mut outs) = run(&mut model, &clip);
    assert!(at.is_empty(), "a 32-frame clip completes no window while streaming (first at step 76)");
    outs.extend(model.flush().unwrap());
    assert_eq!(outs.len(), 1);
    let want: Vec<f32> = model.forward_clip(&clip).unwrap().to_vec1().unwrap();
    let diff = max_diff(&outs[0], &want);
    assert!(diff <= 1e-5, "flushed stream and clip network differ by {diff}");
}

/// In steady state an output depends on its last R = 125 frames only: two streams that share them
/// (at the same phase) give bit-identical outputs, sharing R − 1 does not.
#[test]
fn steady_state_depends_on_the_receptive_field_only() {
    let _serial = serial();
    let exp = expected();
    let clip = looped(&exp, 220);
    let mut model = build("slowfast_hub.pyth", None, Fill::Zeros);
    let r = model.shape().receptive_field;
    assert_eq!(r, 125);
    // A stream whose last step emits: 76 + 4·i.
    let n = 76 + 4 * 30 + 1;
    let a = clip.narrow(0, 0, n).unwrap();
    // A large change: in this tiny network the oldest frame's effect on the output is near the
    // rounding of f32 (docs/performance.md, "The ResNet-3D step on AVX2").
    let other = clip.narrow(0, 3, n).unwrap().affine(-50.0, 10.0).unwrap();
    let mixed =
        |shared: usize| Tensor::cat(&[other.narrow(0, 0, n - shared).unwrap(), a.narrow(0, n - shared, shared).unwrap()], 0).unwrap();
    let last = |model: &mut CoSlowFast, x: &Tensor| {
        model.reset();
        let (at, outs) = run(model, x);
        assert_eq!(at.last(), Some(&(n - 1)));
        outs.last().unwrap().clone()
    };
    let reference = last(&mut model, &a);
    assert_eq!(last(&mut model, &mixed(r)), reference, "sharing the last {r} frames");
    assert_ne!(last(&mut model, &mixed(r - 1)), reference, "sharing only the last {} frames", r - 1);
}

/// The full-size SlowFast-8×8-R50 over zero weights (cheap to build): the derived shape is the worked
/// schedule of docs/continual.md ("Joins and clocks").
#[test]
fn full_size_shape_is_the_worked_schedule() {
    let _serial = serial();
    let cfg = SlowFastConfig::variant("slowfast-r50").unwrap();
    let model = CoSlowFast::new(cfg, None, Fill::Zeros, &mut ZeroWeights).unwrap();
    let backbone = model.backbone_layers().temporal();
    assert_eq!((backbone.receptive_field, backbone.padding, backbone.stride, backbone.delay()), (97, 48, 4, 48));
    let shape = model.shape();
    assert_eq!((shape.delay, shape.receptive_field, shape.stride), (48 + 4 * 7, 125, 4));
    // PyTorchVideo's SlowFast-8×8-R50 has 34.57 M parameters.
    assert_eq!((model.num_params() as f64 / 1e4).round() / 100.0, 34.57);
}

/// The regular clip's cost in the ptflops convention, by part, at 256²: slow 57.7 G, fast 7.07 G,
/// laterals 1.45 G, 66.25 G in all (docs/models.md, "SlowFast"); the continual cost per fast frame is
/// that over 32 frames, and the busiest step is a slow one.
#[test]
fn flops_are_the_published_slowfast_counts() {
    let _serial = serial();
    use coinfer::flops::{Convention, count};
    let cfg = SlowFastConfig::variant("slowfast-r50").unwrap();
    let model = CoSlowFast::new(cfg, None, Fill::Zeros, &mut ZeroWeights).unwrap();
    let totals = count(&model.report(), 32, Convention::Paper);
    let part = |f: &dyn Fn(&str) -> bool| totals.layers.iter().filter(|l| f(&l.name)).map(|l| l.regular_clip).sum::<f64>() / 1e9;
    let slow = part(&|n| n.contains("pathway0") || n.contains("subsample"));
    let fast = part(&|n| n.contains("pathway1"));
    let laterals = part(&|n| n.contains("_fuse/"));
    let close = |got: f64, want: f64, tol: f64, what: &str| assert!((got - want).abs() <= tol, "{what}: {got:.3} G, expected {want} G");
    close(slow, 57.7, 0.05, "slow pathway");
    close(fast, 7.07, 0.005, "fast pathway");
    close(laterals, 1.45, 0.005, "laterals");
    close(totals.regular_clip / 1e9, 66.25, 0.02, "clip");
    // Every layer computes each of its outputs once: a clip's work spread over its 32 fast frames.
    close(totals.continual_per_step * 32.0 / 1e9, totals.regular_clip / 1e9, 0.05, "continual per fast frame × 32");
    assert!(totals.continual_peak_step > 3.0 * totals.continual_per_step, "the slow steps are bursts");
}

/// Steady-state steps allocate nothing: the graph's joins and the classifier reuse their buffers.
/// Matrix products on CPUs without AVX-512 go to the `gemm` crate, which allocates its packing
/// buffers (at most two per call), as tests/step_alloc.rs allows.
#[test]
fn steady_state_steps_allocate_nothing() {
    let _serial = serial();
    let exp = expected();
    let clip = looped(&exp, 200);
    let mut model = build("slowfast_hub.pyth", None, Fill::Replicate);
    let frames: Vec<Vec<f32>> = (0..clip.dim(0).unwrap()).map(|t| planar(&clip.get(t).unwrap())).collect();
    let mut probs = Vec::new();
    for f in &frames[..160] {
        model.step_planar(f, &mut probs).unwrap();
    }
    let (allocs, calls) = (ALLOCATIONS.load(Ordering::Relaxed), coinfer::engine::kernels::gemm::fallback_calls());
    let mut emitted = 0;
    for f in &frames[160..] {
        emitted += model.step_planar(f, &mut probs).unwrap() as usize;
    }
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs;
    let calls = coinfer::engine::kernels::gemm::fallback_calls() - calls;
    assert_eq!(emitted, 10, "one output every 4 steps");
    assert!(allocs <= 2 * calls, "{allocs} allocations in 40 steady-state steps ({calls} products by the gemm crate)");
}
