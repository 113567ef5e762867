//! X3D / CoX3D against the PyTorch reference (tests/fixtures/x3d, written by tools/x3d/make_fixtures.py:
//! pyslowfast-named reference modules, PyTorchVideo `create_x3d`, and CoX3D composed from the
//! continual-inference library). Issue 3's tolerances: probabilities within 1e-4, logits within 2e-3,
//! top-5 identical, for the pyslowfast and the PyTorchVideo hub layouts.
//!
//! Checkpoints are read here with candle's own safetensors and torch-zip readers behind a small strict
//! `WeightSource`; the legacy-pickle and fp16 files are for the checkpoint reader's tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use coinfer::engine::{PadMode, SeScope};
use coinfer::models::Fill;
use coinfer::models::x3d::{CoX3d, X3dConfig, X3dWeights};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/x3d").join(name)
}

/// Tensors of one checkpoint; every one but `num_batches_tracked` must be taken, with its exact shape.
/// The fixture's architecture from its config.json (pyslowfast config keys).
fn config() -> X3dConfig {
    let text = std::fs::read_to_string(fixture("config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg = &json["cfg"];
    let f = |k: &str| cfg[k].as_f64().unwrap();
    let depth = f("DEPTH_FACTOR");
    let blocks = [1.0, 2.0, 5.0, 3.0].map(|b: f64| (depth * b).ceil() as usize);
    let config = X3dConfig {
        name: "x3d-tiny".into(),
        dim_c1: f("DIM_C1") as usize,
        width_factor: f("WIDTH_FACTOR"),
        blocks,
        bottleneck_factor: f("BOTTLENECK_FACTOR"),
        dim_c5: f("DIM_C5") as usize,
        se_ratio: f("SE_RATIO"),
        crop: f("CROP") as usize,
        num_frames: f("NUM_FRAMES") as usize,
        sampling_rate: 6,
        num_classes: f("NUM_CLASSES") as usize,
    };
    // Our width/depth rounding must give the reference's derived sizes.
    let derived = &json["derived"];
    let list = |k: &str| -> Vec<usize> { derived[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect() };
    let dims = config.stage_dims();
    assert_eq!(config.stem_width(), derived["stem_width"].as_u64().unwrap() as usize);
    assert_eq!(dims.map(|d| d.0).to_vec(), list("stage_dims_in"));
    assert_eq!(dims.map(|d| d.1).to_vec(), list("stage_dims_out"));
    assert_eq!(dims.map(|d| d.2).to_vec(), list("stage_dims_inner"));
    assert_eq!(dims.map(|d| d.3).to_vec(), list("stage_se_hidden"));
    assert_eq!(config.blocks.to_vec(), list("stage_blocks"));
    assert_eq!(config.head_pool_side(), list("head_pool_kernel")[1]);
    config
}

fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("expected.safetensors"), &Device::Cpu).unwrap()
}

/// The stream `(T, 3, 48, 48)`: uint8 RGB `(T, H, W, C)` normalised with mean 0.45, std 0.225.
fn stream(exp: &HashMap<String, Tensor>) -> Tensor {
    let u8s = &exp["clip_u8"];
    let x = u8s.to_dtype(DType::F32).unwrap().permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
    ((x / 255.0).unwrap() - 0.45).unwrap().affine(1.0 / 0.225, 0.0).unwrap()
}

/// Load through coinfer's own checkpoint reader (container and layout detected from the file) and
/// require every tensor to be used.
fn build(ckpt: &str, pool: Option<usize>, fill: Fill) -> CoX3d {
    let mut store = coinfer::weights::load(&fixture(ckpt), &Device::Cpu).unwrap();
    store.ignore(|n| n.ends_with("num_batches_tracked"));
    let names = store.names().to_vec();
    let mut ws = X3dWeights::new(&names, &mut store).unwrap();
    let m = CoX3d::new(config(), pool, fill, &mut ws).unwrap();
    store.finish().unwrap();
    m
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    let t = if t.rank() == 1 { t.unsqueeze(0).unwrap() } else { t.clone() };
    t.to_vec2().unwrap()
}

fn top5(v: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(5);
    idx
}

/// Element-wise within `tol` and the same top-5 classes in the same order, row by row.
fn assert_matches(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    let (g, w) = (rows(got), rows(want));
    assert_eq!(g.len(), w.len(), "{what}: rows");
    for (i, (gr, wr)) in g.iter().zip(&w).enumerate() {
        assert_eq!(gr.len(), wr.len(), "{what}: classes");
        let worst = gr.iter().zip(wr).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= tol, "{what} row {i}: max |diff| {worst} > {tol}");
        assert_eq!(top5(gr), top5(wr), "{what} row {i}: top-5");
    }
}

const PROB_TOL: f32 = 1e-4;
const LOGIT_TOL: f32 = 2e-3;

/// The regular X3D (clip-wise SE) on 4 and 13 frames, from every f32 pyslowfast container.
#[test]
fn regular_x3d_matches_pyslowfast_reference() {
    let exp = expected();
    let x = stream(&exp);
    for ckpt in ["x3d_tiny_pyslowfast.safetensors", "x3d_tiny_pyslowfast.pyth", "x3d_tiny_pyslowfast_legacy.pyth"] {
        let m = build(ckpt, None, Fill::Zeros);
        let t4 = x.narrow(0, 0, 4).unwrap();
        let logits = m.clip_logits(&t4, SeScope::Clip, PadMode::Full).unwrap();
        assert_matches(&logits, &exp["reg_logits_t4"], LOGIT_TOL, &format!("{ckpt} logits T=4"));
        let probs = m.forward_clip(&t4, SeScope::Clip).unwrap();
        assert_matches(&probs, &exp["reg_probs_t4"], PROB_TOL, &format!("{ckpt} probs T=4"));

        let t13 = x.narrow(0, 0, 13).unwrap();
        let logits = m.clip_logits(&t13, SeScope::Clip, PadMode::Full).unwrap();
        assert_matches(&logits, &exp["reg_logits_t13"].squeeze(0).unwrap(), LOGIT_TOL, &format!("{ckpt} logits T=13"));
        let probs = m.forward_clip(&t13, SeScope::Clip).unwrap();
        assert_matches(&probs, &exp["reg_probs_t13"], PROB_TOL, &format!("{ckpt} probs T=13"));

        // The same network with SE pooled per frame (what CoX3D approximates).
        let logits = m.clip_logits(&t4, SeScope::Frame, PadMode::Full).unwrap();
        assert_matches(&logits, &exp["regfw_logits_t4"], LOGIT_TOL, &format!("{ckpt} frame-wise SE logits"));
        let probs = m.forward_clip(&t4, SeScope::Frame).unwrap();
        assert_matches(&probs, &exp["regfw_probs_t4"], PROB_TOL, &format!("{ckpt} frame-wise SE probs"));
    }
}

/// PyTorchVideo hub layout (renamed keys, swapped stem names, no s2 shortcut BN): the hub head's
/// logits, averaged over positions.
#[test]
fn regular_x3d_matches_pytorchvideo_reference() {
    let exp = expected();
    let x = stream(&exp);
    let m = build("x3d_tiny_ptv.pyth", None, Fill::Zeros);
    let logits = m.clip_logits(&x.narrow(0, 0, 4).unwrap(), SeScope::Clip, PadMode::Full).unwrap();
    assert_matches(&logits, &exp["ptv_logits_t4"], LOGIT_TOL, "PTV logits T=4");
    let logits = m.clip_logits(&x.narrow(0, 0, 13).unwrap(), SeScope::Clip, PadMode::Full).unwrap();
    assert_matches(&logits.mean(0).unwrap(), &exp["ptv_logits_t13"], LOGIT_TOL, "PTV logits T=13");
    // The hub weights are not the pyslowfast ones with other names: the missing BN matters.
    let ps = build("x3d_tiny_pyslowfast.safetensors", None, Fill::Zeros);
    let ps_logits = ps.clip_logits(&x.narrow(0, 0, 4).unwrap(), SeScope::Clip, PadMode::Full).unwrap();
    let d = (ps_logits - &exp["ptv_logits_t4"]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d > LOGIT_TOL, "the fixture should tell the layouts apart ({d})");
}

/// CoX3D streaming 32 frames, both fills, head window 4 (= T) and 8: emission steps and every
/// emitted probability vector.
#[test]
fn cox3d_stream_matches_continual_inference_reference() {
    let exp = expected();
    let x = stream(&exp);
    for fill in [Fill::Zeros, Fill::Replicate] {
        for pool in [4, 8] {
            let key = format!("co_{}_pool{pool}", if fill == Fill::Zeros { "zeros" } else { "replicate" });
            let mut m = build("x3d_tiny_pyslowfast.safetensors", Some(pool), fill);
            let mut steps = Vec::new();
            let mut probs = Vec::new();
            for t in 0..x.dim(0).unwrap() {
                if let Some(p) = m.step(&x.get(t).unwrap()).unwrap() {
                    steps.push(t as i64);
                    probs.push(p);
                }
            }
            let want_steps: Vec<i64> = exp[&format!("{key}_steps")].to_vec1().unwrap();
            assert_eq!(steps, want_steps, "{key}: emission steps");
            let got = Tensor::stack(&probs, 0).unwrap();
            assert_matches(&got, &exp[&format!("{key}_probs")], PROB_TOL, &key);
        }
    }
}

/// The one-clip flush of a fresh zero-filled stream (continual-inference `forward_steps(pad_end=True)`
/// with SE per frame).
#[test]
fn cox3d_one_clip_flush_matches_reference() {
    let exp = expected();
    let x = stream(&exp);
    let mut m = build("x3d_tiny_pyslowfast.pyth", None, Fill::Zeros);
    let mut outs = Vec::new();
    for t in 0..4 {
        outs.extend(m.step(&x.get(t).unwrap()).unwrap());
    }
    outs.extend(m.flush().unwrap());
    assert_eq!(outs.len(), 1);
    assert_matches(&outs[0], &exp["cofw_flush_probs_t4"], PROB_TOL, "flush");
}
