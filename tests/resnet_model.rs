//! CoSlow and CoI3D-R50 (docs/models.md, "Slow" and "I3D-R50") against the PyTorchVideo reference
//! fixtures of tools/resnet (tiny widths, the real R50 depths): the clip path equals the clip
//! network, every stream output equals the zero-padded reference with a sliding head, both
//! checkpoint layouts load to identical outputs, a one-clip flush equals the clip network, the
//! steady state forgets everything older than the receptive field, and the delays and receptive
//! fields are the derived ones, pinned.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use coinfer::engine::Layer;
use coinfer::models::classifier::Architecture;
use coinfer::models::slow::{CoSlow, Slow, SlowConfig};
use coinfer::models::{Fill, ModelOptions, RandomWeights, Schedule, StreamModel, WeightSource, ZeroWeights};
use serde_json::Value;

fn dir(arch: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resnet")).join(arch)
}

fn config_json(arch: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir(arch).join("config.json")).unwrap()).unwrap()
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// The network the fixture describes, as a [`SlowConfig`].
fn fixture_config(arch: &str) -> SlowConfig {
    let c = config_json(arch);
    let name = match c["arch"].as_str().unwrap() {
        "slow" => "slow-r50",
        "i3d_r50" => "i3d-r50",
        other => panic!("unknown arch {other}"),
    };
    let kernels: Vec<Vec<usize>> =
        c["stage_kt"].as_array().unwrap().iter().map(|s| s.as_array().unwrap().iter().map(usize_of).collect()).collect();
    let res2_pool = match &c["res2_pool"] {
        Value::Null => None,
        p => {
            let k = usize_of(&p["kernel"][0]);
            assert_eq!(usize_of(&p["stride"][0]), k, "the pool after res2 has stride = kernel");
            assert_eq!(usize_of(&p["padding"][0]), 0, "and no padding");
            Some(k)
        }
    };
    let cfg = SlowConfig {
        stem_width: usize_of(&c["stem_dim"]),
        stem_kt: usize_of(&c["stem_kt"]),
        depths: std::array::from_fn(|s| usize_of(&c["depths"][s])),
        kernels: std::array::from_fn(|s| kernels[s].clone()),
        res2_pool,
        crop: usize_of(&c["crop"]),
        num_frames: usize_of(&c["clip_frames"]),
        ..SlowConfig::variant(name).unwrap()
    };
    // The widths follow from the stem as in ResNet-50.
    for (s, st) in cfg.stages().iter().enumerate() {
        assert_eq!(
            (st.din, st.inner, st.dout),
            (usize_of(&c["stage_in"][s]), usize_of(&c["stage_inner"][s]), usize_of(&c["stage_out"][s]))
        );
    }
    cfg
}

fn expected(arch: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(dir(arch).join("expected.safetensors"), &Device::Cpu).unwrap()
}

/// The fixture's network from its checkpoint in `layout` (`hub` / `pyslowfast`), every tensor used.
fn load(arch: &str, layout: &str, pool: Option<usize>) -> CoSlow {
    let path = dir(arch).join(format!("{arch}_{layout}.pyth"));
    let mut store = coinfer::weights::load(&path, &Device::Cpu).unwrap();
    store.ignore(|n| n.ends_with("num_batches_tracked"));
    let names = store.names().to_vec();
    let model = {
        let mut source = Slow::checkpoint(&names, &mut store).unwrap();
        CoSlow::new(fixture_config(arch), pool, Fill::Zeros, &mut *source).unwrap()
    };
    store.finish().unwrap();
    model
}

/// Frame `t` of the fixture's looped stream, normalised, planar `(3, S, S)`.
fn stream_frame(clip_u8: &Tensor, t: usize) -> Tensor {
    let n = clip_u8.dim(0).unwrap();
    let f = clip_u8.get(t % n).unwrap().to_dtype(DType::F32).unwrap().permute((2, 0, 1)).unwrap();
    (((f / 255.0).unwrap() - 0.45).unwrap() / 0.225).unwrap()
}

fn stream_clip(clip_u8: &Tensor, frames: usize) -> Tensor {
    Tensor::stack(&(0..frames).map(|t| stream_frame(clip_u8, t)).collect::<Vec<_>>(), 0).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// Class ids by decreasing probability.
fn ranking(p: &[f32]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..p.len()).collect();
    ids.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    ids
}

/// Step a stream of `frames` planar frames, then flush: `(step, probabilities)` per output (flushed
/// outputs get the steps after the last frame).
fn run_and_flush(m: &mut CoSlow, frames: &[Tensor]) -> Vec<(usize, Vec<f32>)> {
    let mut out = Vec::new();
    for (t, f) in frames.iter().enumerate() {
        if let Some(p) = m.step(f).unwrap() {
            out.push((t, p.to_vec1().unwrap()));
        }
    }
    for (i, p) in m.flush().unwrap().into_iter().enumerate() {
        out.push((frames.len() + i, p));
    }
    out
}

fn clip_path_equals_the_reference(arch: &str) {
    let e = expected(arch);
    let c = config_json(arch);
    let clip = stream_clip(&e["clip_u8"], usize_of(&c["clip_frames"]));
    let want = &e["clip_logits"];
    let hub = load(arch, "hub", None);
    let psf = load(arch, "pyslowfast", None);
    let logits = hub.clip_logits(&clip, coinfer::engine::PadMode::Full).unwrap();
    assert_eq!(logits.dims(), &[1, usize_of(&c["num_classes"])]);
    let diff = max_diff(&logits.squeeze(0).unwrap(), want);
    assert!(diff < 1e-5, "{arch}: clip logits differ from PyTorchVideo by {diff}");
    // Both layouts: the same network, bit for bit.
    let other = psf.clip_logits(&clip, coinfer::engine::PadMode::Full).unwrap();
    assert_eq!(max_diff(&logits, &other), 0.0, "{arch}: hub and pyslowfast layouts differ");
    assert_eq!(hub.spec().num_classes, usize_of(&c["num_classes"]), "classes from the head");
}

fn stream_equals_the_reference(arch: &str) {
    let e = expected(arch);
    let c = config_json(arch);
    let frames: Vec<Tensor> = (0..usize_of(&c["stream_frames"])).map(|t| stream_frame(&e["clip_u8"], t)).collect();
    for (key, pool) in c["pools"].as_object().unwrap() {
        let positions = usize_of(&pool["positions"]);
        let probs = e[pool["probs"].as_str().unwrap()].to_dtype(DType::F32).unwrap();
        let ends: Vec<i64> = e[pool["ends"].as_str().unwrap()].to_vec1().unwrap();
        // Window J comes out on step a·J + b (the newest frame it reads).
        let (a, b) = {
            let last = &c["window_inputs"][key]["last_input_frame"];
            (last[0].as_i64().unwrap(), last[1].as_i64().unwrap())
        };
        for layout in ["hub", "pyslowfast"] {
            let mut m = load(arch, layout, Some(positions));
            let outs = run_and_flush(&mut m, &frames);
            assert_eq!(outs.len(), ends.len(), "{arch} {key} {layout}: one output per window");
            let mut worst = 0f32;
            for (i, ((step, p), &j)) in outs.iter().zip(&ends).enumerate() {
                if ((a * j + b) as usize) < frames.len() {
                    assert_eq!(*step as i64, a * j + b, "{arch} {key}: window {j} is emitted on its newest frame's step");
                }
                let want: Vec<f32> = probs.get(i).unwrap().to_vec1().unwrap();
                let d = p.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                worst = worst.max(d);
                assert_eq!(ranking(p)[..5], ranking(&want)[..5], "{arch} {key} {layout}: top-5 of window {j}");
            }
            assert!(worst < 1e-4, "{arch} {key} {layout}: probabilities differ by {worst}");
        }
    }
}

fn one_clip_flush_equals_the_clip_network(arch: &str) {
    let e = expected(arch);
    let c = config_json(arch);
    let n = usize_of(&c["clip_frames"]);
    let mut m = load(arch, "hub", None);
    let frames: Vec<Tensor> = (0..n).map(|t| stream_frame(&e["clip_u8"], t)).collect();
    let outs = run_and_flush(&mut m, &frames);
    assert_eq!(outs.len(), 1, "{arch}: one window fits the clip");
    let want = m.forward_clip(&Tensor::stack(&frames, 0).unwrap()).unwrap();
    let got = Tensor::new(outs[0].1.as_slice(), &Device::Cpu).unwrap();
    let diff = max_diff(&got, &want);
    assert!(diff < 1e-6, "{arch}: flushed stream and clip network differ by {diff}");
}

/// Two streams sharing their last R frames give the same output on the last step; sharing R − 1
/// does not.
fn steady_state_forgets_older_than_r(arch: &str) {
    let e = expected(arch);
    let mut m = load(arch, "hub", None);
    let r = m.shape().receptive_field;
    let (stride, delay) = (m.shape().stride, m.shape().delay);
    // End the stream on a step that emits (steps delay + k·stride).
    let mut total = delay + r + 2 * stride;
    while !(total - 1 - delay).is_multiple_of(stride) {
        total += 1;
    }
    let base: Vec<Tensor> = (0..total).map(|t| stream_frame(&e["clip_u8"], t + 3)).collect();
    let loud = |t: usize| (stream_frame(&e["clip_u8"], t + 17) * -3.0).unwrap();
    let last = |m: &mut CoSlow, frames: &[Tensor]| -> Vec<f32> {
        m.reset();
        let mut last = None;
        for (t, f) in frames.iter().enumerate() {
            if let Some(p) = m.step(f).unwrap() {
                last = Some((t, p.to_vec1::<f32>().unwrap()));
            }
        }
        let (t, p) = last.unwrap();
        assert_eq!(t, frames.len() - 1, "the last step emits");
        p
    };
    let pa = last(&mut m, &base);
    let mut older: Vec<Tensor> = (0..total - r).map(loud).collect();
    older.extend_from_slice(&base[total - r..]);
    assert_eq!(pa, last(&mut m, &older), "{arch}: sharing the last R = {r} frames");
    let mut one_less = base.clone();
    one_less[total - r] = loud(0);
    let pc = last(&mut m, &one_less);
    let diff = pa.iter().zip(&pc).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff > 1e-7, "{arch}: sharing only R - 1 frames changes the output ({diff})");
}

#[test]
fn slow_clip_path_equals_pytorchvideo() {
    clip_path_equals_the_reference("slow");
}

#[test]
fn slow_stream_equals_the_zero_padded_reference() {
    stream_equals_the_reference("slow");
}

#[test]
fn slow_one_clip_flush_equals_the_clip_network() {
    one_clip_flush_equals_the_clip_network("slow");
}

#[test]
fn slow_steady_state_forgets_older_than_the_receptive_field() {
    steady_state_forgets_older_than_r("slow");
}

/// Delays and receptive fields derived from the layers (docs/models.md, "Slow" and "I3D-R50"), at
/// full size: CoSlow's backbone (zero fill) has delay 9 and R_b 19 in slow frames, the model with
/// its 8-position head delay 16 and R 26; CoI3D-R50's backbone delay 18 and R_b 36, the model delay
/// 24 and R 42, one output every 2 frames.
#[test]
fn delays_and_receptive_fields_are_derived_and_pinned() {
    for (name, backbone, model) in [("slow-r50", (9, 19, 1), (16, 26, 1)), ("i3d-r50", (18, 36, 2), (24, 42, 2))] {
        let m = CoSlow::new(SlowConfig::variant(name).unwrap(), None, Fill::Zeros, &mut ZeroWeights).unwrap();
        let b = m.backbone_layers().temporal();
        assert_eq!((b.delay(), b.receptive_field, b.stride), backbone, "{name} backbone");
        let s = m.shape();
        assert_eq!((s.delay, s.receptive_field, s.stride), model, "{name}");
        let d = coinfer::models::describe(name, &ModelOptions::default()).unwrap();
        assert_eq!(d.shape, s);
        assert_eq!(d.spec.num_classes, 400);
        assert_eq!((d.spec.crop, d.spec.fps), (256, 3.75));
    }
    // --pool widens the head window: 8 more positions, 8 more frames of delay (slow) or 16 (I3D).
    let opts = ModelOptions { pool: Some(16), ..ModelOptions::default() };
    assert_eq!(coinfer::models::describe("slow-r50", &opts).unwrap().shape.delay, 24);
    let opts = ModelOptions { pool: Some(12), ..ModelOptions::default() };
    assert_eq!(coinfer::models::describe("i3d-r50", &opts).unwrap().shape.delay, 40);
}

/// The full-size networks have the published sizes: Slow-8×8-R50 32.45 M learnable scalars (320
/// state-dict entries with the running statistics, `num_batches_tracked` aside).
#[test]
fn full_size_parameters() {
    let m = CoSlow::new(SlowConfig::variant("slow-r50").unwrap(), None, Fill::Zeros, &mut ZeroWeights).unwrap();
    assert_eq!(m.num_params(), 32_454_096);
    assert_eq!(m.spec().num_classes, 400);
}

/// Under the pipeline schedule every output comes one step later, the same bits; the last one
/// from the drain.
#[test]
fn pipelined_steps_give_the_same_outputs_one_step_later() {
    for arch in ["slow", "i3d_r50"] {
        if !dir(arch).is_dir() {
            continue;
        }
        let e = expected(arch);
        let mut split = load(arch, "hub", None);
        let mut piped = load(arch, "hub", None);
        piped.set_schedule(Schedule::Pipeline).unwrap();
        assert_eq!(piped.shape().lag, 1);
        let s = split.spec().crop;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut expected: Option<Vec<f32>> = None;
        for t in 0..40 {
            let f: Vec<f32> = stream_frame(&e["clip_u8"], t).flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(f.len(), 3 * s * s);
            let es = split.step_planar(&f, &mut a).unwrap();
            let ep = piped.step_planar(&f, &mut b).unwrap();
            assert_eq!(ep, expected.is_some(), "{arch} step {t}");
            if let Some(x) = expected.take() {
                assert_eq!(b, x, "{arch} step {t}");
            }
            expected = es.then(|| a.clone());
        }
        assert_eq!(piped.drain(&mut b).unwrap(), expected.is_some());
        if let Some(x) = expected {
            assert_eq!(b, x, "{arch}: drained output");
        }
    }
}

/// A random full-width network streams at a small crop as its clip network (no fixture needed):
/// every layer of both variants, zero fill and replicate fill alike.
#[test]
fn random_weights_stream_as_the_clip_network() {
    for name in ["slow-r50", "i3d-r50"] {
        let cfg = SlowConfig { stem_width: 4, crop: 32, ..SlowConfig::variant(name).unwrap() };
        let mut m = CoSlow::new(cfg, None, Fill::Zeros, &mut RandomWeights::new(5)).unwrap();
        let clip = random_clip(6, 8, 32);
        let frames: Vec<Tensor> = (0..8).map(|t| clip.get(t).unwrap()).collect();
        let outs = run_and_flush(&mut m, &frames);
        assert_eq!(outs.len(), 1, "{name}");
        let want = m.forward_clip(&clip).unwrap();
        let diff = max_diff(&Tensor::new(outs[0].1.as_slice(), &Device::Cpu).unwrap(), &want);
        assert!(diff < 1e-6, "{name}: {diff}");
    }
}

/// A random clip `(t, 3, s, s)` of values in about [-1, 2].
fn random_clip(seed: u64, t: usize, s: usize) -> Tensor {
    // Named like a BN variance: uniform in [0.5, 1.5).
    let x = RandomWeights::new(seed).take("clip.running_var", &[t, 3, s, s]).unwrap();
    ((x * 3.0).unwrap() - 2.5).unwrap()
}

#[test]
fn i3d_r50_clip_path_equals_pytorchvideo() {
    clip_path_equals_the_reference("i3d_r50");
}

#[test]
fn i3d_r50_stream_equals_the_zero_padded_reference() {
    stream_equals_the_reference("i3d_r50");
}

#[test]
fn i3d_r50_one_clip_flush_equals_the_clip_network() {
    one_clip_flush_equals_the_clip_network("i3d_r50");
}

#[test]
fn i3d_r50_steady_state_forgets_older_than_the_receptive_field() {
    steady_state_forgets_older_than_r("i3d_r50");
}

/// The fixture's delays and receptive fields (those continual-inference's CoI3D composition reports
/// for the same layers) are what the layers give.
#[test]
fn i3d_r50_shape_matches_the_reference_library() {
    let c = config_json("i3d_r50");
    for (_, w) in c["window_inputs"].as_object().unwrap() {
        let m = load("i3d_r50", "hub", Some(usize_of(&w["positions"])));
        let lib = &w["continual_inference"];
        assert_eq!(m.shape().delay, usize_of(&lib["delay"]));
        assert_eq!(m.shape().receptive_field, usize_of(&lib["receptive_field"]));
        assert_eq!(m.shape().receptive_field, usize_of(&w["receptive_field"]));
    }
}

/// `coinfer flops` reproduces the published counts (docs/performance.md, "Counting operations"):
/// CoSlow 6.90 G per step in the paper's counting (its tooling's artefacts included; 6.858 G
/// single count), Slow-8×8-R50 54.52 GMAC per clip (PyTorchVideo's zoo figure); CoI3D-R50 stated.
#[test]
fn flops_reproduce_the_published_counts() {
    use coinfer::cli::flops::count;
    use coinfer::flops::Convention;
    let (paper, _) = count("slow-r50", Convention::Paper, None).unwrap();
    assert_eq!(format!("{:.2}", paper.continual_per_step_gflops), "6.90");
    assert_eq!(format!("{:.3}", paper.continual_per_step_single_count_gflops.unwrap()), "6.858");
    assert_eq!(format!("{:.2}", paper.regular_clip_gflops), "54.86");
    let (macs, _) = count("coslow-r50", Convention::Macs, None).unwrap();
    assert_eq!(format!("{:.2}", macs.regular_clip_gflops), "54.52");
    assert_eq!(format!("{:.4}", macs.continual_per_step_gflops), "6.8155");
    // CoI3D-R50: an emitting step runs s3..s5 and the head, every other frame.
    let (i3d, _) = count("i3d-r50", Convention::Macs, None).unwrap();
    assert_eq!(
        format!("{:.3} {:.4} {:.4}", i3d.regular_clip_gflops, i3d.continual_per_step_gflops, i3d.continual_peak_step_gflops),
        "37.104 4.6383 7.3314"
    );
}
