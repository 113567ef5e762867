//! Throughput of continual I3D (ignored by default; a measurement, not a check):
//! `cargo test --release --test i3d_bench -- --ignored --nocapture`
//! Streams real frames (the 16 demo frames of the fixtures, looped) through the bundled model, warms up
//! past step 110 (every layer active, steady state), then times ≥ 64 steps: sustained input frames/s and
//! per-step latency by phase (t mod 8; the emitting step is t ≡ 6). Also times one regular 64-frame clip.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use coinfer::engine::PadMode;
use coinfer::models::ModelOptions;
use coinfer::models::i3d;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

fn frames() -> Tensor {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/i3d/frames_u8.safetensors");
    let t = &candle_core::safetensors::load(path, &Device::Cpu).unwrap()["frames_u8"];
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1::<u8>().unwrap().iter().map(|&b| b as f32 / 127.5 - 1.0).collect();
    Tensor::from_vec(v, (16, 224, 224, 3), &Device::Cpu).unwrap().permute((0, 3, 1, 2)).unwrap().contiguous().unwrap()
}

#[test]
#[ignore]
fn continual_throughput() {
    let s = Instant::now();
    coinfer::models::describe("i3d", &ModelOptions::default()).unwrap();
    eprintln!("describe (network over zero weights): {:.0} ms", s.elapsed().as_secs_f64() * 1e3);
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join(i3d::DEFAULT_WEIGHTS);
    let s = Instant::now();
    let mut m = i3d::load(&ModelOptions { weights: Some(weights), ..Default::default() }).unwrap();
    eprintln!("load + fold the bundled weights: {:.0} ms", s.elapsed().as_secs_f64() * 1e3);
    let clip = frames();
    let frame = |t: usize| clip.get(t % 16).unwrap();
    let measured: usize = std::env::var("I3D_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(128);
    let warm = 112;
    eprintln!("threads {} | loadavg before: {}", candle_core::utils::get_num_threads(), loadavg());
    let start = Instant::now();
    for t in 0..warm {
        m.step_logits(&frame(t)).unwrap();
    }
    eprintln!("warm-up {warm} steps: {:.2} s", start.elapsed().as_secs_f64());
    let mut per_phase = vec![Vec::new(); 8];
    let start = Instant::now();
    let mut emitted = 0;
    for t in warm..warm + measured {
        let s = Instant::now();
        if m.step_logits(&frame(t)).unwrap().is_some() {
            emitted += 1;
        }
        per_phase[t % 8].push(s.elapsed().as_secs_f64() * 1e3);
    }
    let total = start.elapsed().as_secs_f64();
    eprintln!("loadavg after: {}", loadavg());
    eprintln!("steady state: {measured} steps in {total:.2} s = {:.1} input frames/s ({emitted} emissions)", measured as f64 / total);
    for (phase, ms) in per_phase.iter_mut().enumerate() {
        ms.sort_by(f64::total_cmp);
        eprintln!(
            "  t ≡ {phase} (mod 8){}: median {:.1} ms, max {:.1} ms over {}",
            if phase == 6 { " emitting" } else { "" },
            ms[ms.len() / 2],
            ms[ms.len() - 1],
            ms.len()
        );
    }

    if std::env::var("I3D_BENCH_CLIP").is_ok_and(|v| v == "0") {
        return;
    }
    let clip64 = Tensor::cat(&[&clip, &clip, &clip, &clip], 0).unwrap();
    let s = Instant::now();
    m.forward_logits(&clip64, PadMode::Full).unwrap();
    eprintln!("regular 64-frame clip: {:.2} s | loadavg: {}", s.elapsed().as_secs_f64(), loadavg());
}
