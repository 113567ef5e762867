//! Preprocessing equals the numpy reference bit for bit: the sample clip is decoded by our source, frames are
//! chosen by the Resampler, resized/cropped/normalised by the Preprocessor, and every step's uint8 crop and
//! float32 input are hashed and compared with tests/fixtures/preprocess/*.json (written by
//! tools/preprocess/reference.py from the ffmpeg CLI's decode).

use std::path::Path;
use std::time::Instant;

use coinfer::models::{ModelSpec, Normalize};
use coinfer::preprocess::{Preprocessor, Resampler};
use coinfer::source::{Frame, OpenOptions, open};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn spec_of(fixture: &Value) -> ModelSpec {
    let normalize = match fixture["normalize"].as_str().unwrap() {
        "signed_unit" => Normalize::SignedUnit,
        "mean_std" => Normalize::MeanStd { mean: [0.45; 3], std: [0.225; 3] },
        other => panic!("unknown normalisation {other}"),
    };
    ModelSpec {
        name: fixture["model"].as_str().unwrap().into(),
        fps: fixture["model_fps"].as_f64().unwrap(),
        resize_short: fixture["resize_short"].as_u64().unwrap() as usize,
        crop: fixture["crop"].as_u64().unwrap() as usize,
        normalize,
        num_classes: 400,
    }
}

struct Run {
    fixture: Value,
    spec: ModelSpec,
    resampler: Resampler,
    pre: Preprocessor,
    step: usize,
}

#[test]
fn sample_clip_preprocessing_matches_the_reference() {
    let sample = root().join("samples/sports2d-demo.mp4");
    let mut src = open(sample.to_str().unwrap(), &OpenOptions::default()).unwrap();
    let (w, h) = (src.info().width, src.info().height);
    let clip_sha = sha(&std::fs::read(&sample).unwrap());

    let mut runs: Vec<Run> = ["i3d", "x3d-s"]
        .iter()
        .map(|m| {
            let path = root().join(format!("tests/fixtures/preprocess/{m}.json"));
            let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            assert_eq!(fixture["clip_sha256"].as_str().unwrap(), clip_sha, "fixture made from another clip");
            let spec = spec_of(&fixture);
            Run { resampler: Resampler::new(spec.fps), pre: Preprocessor::new(&spec, w, h).unwrap(), spec, fixture, step: 0 }
        })
        .collect();
    assert_eq!(runs[0].spec.fps, 25.0);
    assert_eq!((runs[0].spec.resize_short, runs[0].spec.crop), (256, 224));
    assert_eq!(runs[1].spec.fps, 5.0);
    assert_eq!((runs[1].spec.resize_short, runs[1].spec.crop), (160, 160));

    let mut frame = Frame::default();
    let mut frames = 0u64;
    while src.next_frame(&mut frame).unwrap() {
        frames += 1;
        for run in &mut runs {
            for _ in 0..run.resampler.feed(frame.pts) {
                let want = &run.fixture["steps"][run.step];
                let name = &run.spec.name;
                assert_eq!(want["step"].as_u64().unwrap() as usize, run.step);
                assert_eq!(want["frame"].as_u64().unwrap(), frame.index, "{name}: step {} frame", run.step);
                let crop = run.pre.crop_u8(&frame);
                assert_eq!(sha(crop), want["crop_sha256"].as_str().unwrap(), "{name}: step {} uint8 crop", run.step);
                let input = run.pre.normalized(&frame).unwrap().to_vec();
                assert_eq!(sha(&f32_bytes(&input)), want["input_sha256"].as_str().unwrap(), "{name}: step {} input", run.step);
                // A few values, readable when a hash fails.
                let c = run.spec.crop;
                for s in run.fixture["samples"].as_array().unwrap() {
                    if s["step"].as_u64().unwrap() as usize == run.step {
                        let (ch, y, x) =
                            (s["c"].as_u64().unwrap() as usize, s["y"].as_u64().unwrap() as usize, s["x"].as_u64().unwrap() as usize);
                        assert_eq!(input[(ch * c + y) * c + x], s["value"].as_f64().unwrap() as f32);
                    }
                }
                // The tensor carries the same values.
                let t = run.pre.tensor(&frame).unwrap();
                assert_eq!(t.dims(), &[3, c, c]);
                assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), input);
                run.step += 1;
            }
        }
    }
    assert_eq!(frames, runs[0].fixture["source_frames"].as_u64().unwrap());
    for run in &runs {
        assert_eq!(run.step, run.fixture["steps"].as_array().unwrap().len(), "{}: steps", run.spec.name);
    }
}

/// Speed of decode + preprocess per frame on the sample (a measurement, not a check):
/// `cargo test --release --test preprocess_reference -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_decode_and_preprocess() {
    let sample = root().join("samples/sports2d-demo.mp4");
    let spec =
        ModelSpec { name: "i3d".into(), fps: 25.0, resize_short: 256, crop: 224, normalize: Normalize::SignedUnit, num_classes: 400 };
    for round in 0..3 {
        let mut src = open(sample.to_str().unwrap(), &OpenOptions::default()).unwrap();
        let mut pre = Preprocessor::new(&spec, src.info().width, src.info().height).unwrap();
        let mut frame = Frame::default();
        let (mut n, mut t_dec, mut t_pre) = (0u32, 0f64, 0f64);
        loop {
            let t0 = Instant::now();
            if !src.next_frame(&mut frame).unwrap() {
                break;
            }
            let t1 = Instant::now();
            let t = pre.tensor(&frame).unwrap();
            std::hint::black_box(t);
            t_dec += (t1 - t0).as_secs_f64();
            t_pre += t1.elapsed().as_secs_f64();
            n += 1;
        }
        println!(
            "round {round}: {n} frames 1768x994: decode+RGB {:.2} ms/frame, preprocess (resize+crop+normalise+tensor) {:.2} ms/frame",
            1e3 * t_dec / n as f64,
            1e3 * t_pre / n as f64
        );
        // The preprocessing alone, repeated on the last frame (no decoder competing for the cache).
        let t0 = Instant::now();
        for _ in 0..100 {
            std::hint::black_box(pre.crop_u8(&frame));
        }
        let t1 = Instant::now();
        for _ in 0..100 {
            std::hint::black_box(pre.tensor(&frame).unwrap());
        }
        println!(
            "         crop_u8 alone {:.2} ms, tensor alone {:.2} ms",
            (t1 - t0).as_secs_f64() * 10.0,
            t1.elapsed().as_secs_f64() * 10.0
        );
    }
}
