//! The model loop and its records, driven by a small deterministic continual model defined here:
//! it keeps the per-channel means of its last `rf` input frames (zeros before the stream starts,
//! like zero padding) and emits softmax(mean of those means) from step `delay` on, every `stride`
//! steps. Frames are constant per channel, so every expected score below is computed by hand from
//! the window contents, independently of the pipeline's code.

use std::cell::Cell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use coinfer::labels::Labels;
use coinfer::models::{ModelSpec, Normalize, StreamModel, StreamShape};
use coinfer::pipeline::{self, Live, Options, Packet};
use coinfer::sink::{InputSize, JsonLines, Meta, Sink, SourceMeta, StepRecord, Summary};
use coinfer::smooth::SmoothMode;
use coinfer::source::SourceInfo;
use serde_json::Value;

const CLASSES: usize = 3;

struct WindowModel {
    spec: ModelSpec,
    shape: StreamShape,
    window: Vec<[f32; CLASSES]>,
    steps: usize,
    /// With lag 1 (like a pipelined schedule): the output of the step before, if it had one.
    held: Option<Vec<f32>>,
    /// Time each step takes on purpose (a model too slow for its source).
    pause: Duration,
}

impl WindowModel {
    fn new(delay: usize, rf: usize, stride: usize) -> Self {
        let spec = ModelSpec {
            name: "window".into(),
            fps: 10.0,
            resize_short: 2,
            crop: 2,
            normalize: Normalize::SignedUnit,
            num_classes: CLASSES,
        };
        WindowModel {
            spec,
            shape: StreamShape { delay, receptive_field: rf, stride, lag: 0 },
            window: vec![[0.0; CLASSES]; rf],
            steps: 0,
            held: None,
            pause: Duration::ZERO,
        }
    }

    /// The same model, taking `pause` per step.
    fn slow(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// The same model, emitting every output one step late.
    fn lagged(mut self) -> Self {
        self.shape.lag = 1;
        self
    }

    /// This step's output, or `None` when the window does not emit on it.
    fn window_output(&mut self, frame: &[f32]) -> Option<Vec<f32>> {
        let plane = frame.len() / CLASSES;
        let means: Vec<f32> = frame.chunks_exact(plane).map(|p| p.iter().sum::<f32>() / plane as f32).collect();
        let slot = self.steps % self.shape.receptive_field;
        self.window[slot].copy_from_slice(&means);
        let s = self.steps;
        self.steps += 1;
        if s < self.shape.delay || !(s - self.shape.delay).is_multiple_of(self.shape.stride) {
            return None;
        }
        let n = self.window.len() as f32;
        let m: Vec<f32> = (0..CLASSES).map(|c| self.window.iter().map(|w| w[c]).sum::<f32>() / n).collect();
        let mut probs = Vec::new();
        coinfer::models::softmax_mean(&m, CLASSES, &mut probs);
        Some(probs)
    }
}

impl StreamModel for WindowModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn shape(&self) -> StreamShape {
        self.shape
    }
    fn step_planar(&mut self, frame: &[f32], probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        std::thread::sleep(self.pause);
        let mut out = self.window_output(frame);
        if self.shape.lag > 0 {
            out = std::mem::replace(&mut self.held, out);
        }
        Ok(out.map(|p| *probs = p).is_some())
    }
    fn drain(&mut self, probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        Ok(self.held.take().map(|p| *probs = p).is_some())
    }
    fn reset(&mut self) {
        self.window.iter_mut().for_each(|w| *w = [0.0; CLASSES]);
        self.steps = 0;
        self.held = None;
    }
    fn forward_clip(&self, clip: &Tensor) -> anyhow::Result<Tensor> {
        let means = clip.flatten_from(2)?.mean(2)?.mean(0)?;
        Ok(candle_nn::ops::softmax(&means, 0)?)
    }
    fn clip_frames(&self) -> usize {
        self.shape.receptive_field
    }
    fn report(&self) -> coinfer::engine::LayerReport {
        coinfer::engine::LayerReport::default()
    }
}

/// A 3x2x2 frame (planar) whose channel `c` is 1 and the others 0.
fn frame_of(c: usize) -> Vec<f32> {
    let mut v = vec![0f32; 12];
    v[c * 4..c * 4 + 4].fill(1.0);
    v
}

/// Frames 0..10 show class 0, frames 10..20 class 1, one model step each, pts = index / 10.
fn two_scenes() -> Vec<anyhow::Result<Packet>> {
    (0..20u64)
        .map(|i| {
            Ok(Packet {
                frame: i,
                pts: i as f64 / 10.0,
                steps: 1,
                input: Some(frame_of(if i < 10 { 0 } else { 1 })),
                skipped: false,
                unsent_before: 0,
                skipped_before: 0,
            })
        })
        .collect()
}

fn labels() -> Labels {
    Labels::from_names("test", vec!["zero".into(), "one".into(), "two".into()])
}

fn opts() -> Options {
    Options { top_k: 5, threshold: 0.0, smooth: SmoothMode::None, hold: 0, emit_transient: false, warmup: 0, live: None }
}

/// softmax of three values, the reference for the model's scores.
fn softmax3(m: [f64; 3]) -> [f64; 3] {
    let e: Vec<f64> = m.iter().map(|x| x.exp()).collect();
    let s: f64 = e.iter().sum();
    [e[0] / s, e[1] / s, e[2] / s]
}

/// Run and return the JSON values written, one per line.
fn run_jsonl(
    packets: impl IntoIterator<Item = anyhow::Result<Packet>>,
    model: &mut WindowModel,
    opts: &Options,
    stop: &AtomicBool,
) -> (anyhow::Result<Summary>, Vec<Value>) {
    let mut sink = JsonLines::new(Vec::new());
    let res = pipeline::run(packets.into_iter(), model, &labels(), opts, &mut [&mut sink], stop);
    let bytes = sink.into_inner();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "every record ends with a newline");
    let values = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect();
    (res, values)
}

// ---- the documented schema (README "Output records"), checked key by key ----

#[derive(Clone, Copy)]
enum Ty {
    Str,
    UInt,
    Num,
    Bool,
    OptUInt,
    OptNum,
}

fn check_type(v: &Value, ty: Ty, what: &str) {
    let ok = match ty {
        Ty::Str => v.is_string(),
        Ty::UInt => v.is_u64(),
        Ty::Num => v.is_number(),
        Ty::Bool => v.is_boolean(),
        Ty::OptUInt => v.is_null() || v.is_u64(),
        Ty::OptNum => v.is_null() || v.is_number(),
    };
    assert!(ok, "{what} has the wrong type: {v}");
}

fn check_object(v: &Value, fields: &[(&str, Ty)], nested: &[&str], what: &str) {
    let obj = v.as_object().unwrap_or_else(|| panic!("{what} is not an object: {v}"));
    let mut want: Vec<&str> = fields.iter().map(|f| f.0).chain(nested.iter().copied()).collect();
    let mut got: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "keys of {what}");
    for (name, ty) in fields {
        check_type(&obj[*name], *ty, &format!("{what}.{name}"));
    }
}

const TOP: &[(&str, Ty)] = &[("id", Ty::UInt), ("label", Ty::Str), ("score", Ty::Num)];

fn check_record(v: &Value) {
    match v["type"].as_str().expect("every record has a string type") {
        "meta" => {
            check_object(
                v,
                &[
                    ("type", Ty::Str),
                    ("model", Ty::Str),
                    ("weights", Ty::Str),
                    ("weights_sha256", Ty::Str),
                    ("labels", Ty::Str),
                    ("num_classes", Ty::UInt),
                    ("model_fps", Ty::Num),
                    ("delay", Ty::UInt),
                    ("receptive_field", Ty::UInt),
                    ("stride", Ty::UInt),
                    ("schedule", Ty::Str),
                    ("lag", Ty::UInt),
                    ("fill", Ty::Str),
                    ("warmup_steps", Ty::UInt),
                    ("pool", Ty::OptUInt),
                    ("smooth", Ty::Str),
                    ("hold", Ty::UInt),
                    ("top_k", Ty::UInt),
                    ("threshold", Ty::Num),
                    ("emit_transient", Ty::Bool),
                    ("max_lag_s", Ty::OptNum),
                    ("version", Ty::Str),
                ],
                &["input", "source"],
                "meta",
            );
            check_object(&v["input"], &[("resize_short", Ty::UInt), ("crop", Ty::UInt)], &[], "meta.input");
            check_object(
                &v["source"],
                &[
                    ("input", Ty::Str),
                    ("width", Ty::UInt),
                    ("height", Ty::UInt),
                    ("fps", Ty::OptNum),
                    ("frames", Ty::OptUInt),
                    ("duration", Ty::OptNum),
                    ("codec", Ty::Str),
                    ("container", Ty::Str),
                    ("is_stream", Ty::Bool),
                ],
                &[],
                "meta.source",
            );
            let sha = v["weights_sha256"].as_str().unwrap();
            assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "sha256 hex: {sha}");
            assert!(matches!(v["fill"].as_str(), Some("zeros" | "replicate")));
        }
        "step" => {
            let mut fields = vec![
                ("type", Ty::Str),
                ("frame", Ty::UInt),
                ("pts", Ty::Num),
                ("step", Ty::UInt),
                ("ready", Ty::Bool),
                ("latency_ms", Ty::Num),
            ];
            // Live sources only; `skipped` only where frames were skipped.
            if v.get("lag_s").is_some() {
                fields.push(("lag_s", Ty::Num));
            }
            if v.get("skipped").is_some() {
                fields.push(("skipped", Ty::UInt));
                assert!(v["skipped"].as_u64() > Some(0), "skipped is left out when 0: {v}");
            }
            check_object(v, &fields, &["top", "current", "window"], "step");
            for t in v["top"].as_array().expect("top is an array") {
                check_object(t, TOP, &[], "step.top[]");
            }
            check_object(&v["current"], &[("id", Ty::OptUInt), ("label", Ty::Str), ("score", Ty::Num)], &[], "step.current");
            assert_eq!(v["current"]["id"].is_null(), v["current"]["label"] == "none", "none and only none has no id: {v}");
            let window = v["window"].as_array().expect("window is an array");
            assert!(window.len() == 2 && window.iter().all(Value::is_number), "window is [start, end]: {v}");
            let (start, end) = (window[0].as_f64().unwrap(), window[1].as_f64().unwrap());
            assert!(start <= end && close(end, (v["pts"].as_f64().unwrap() * 1e3).round() / 1e3), "window ends at its frame: {v}");
        }
        "summary" => {
            check_object(
                v,
                &[
                    ("type", Ty::Str),
                    ("status", Ty::Str),
                    ("frames", Ty::UInt),
                    ("steps", Ty::UInt),
                    ("outputs", Ty::UInt),
                    ("records", Ty::UInt),
                    ("wall_s", Ty::Num),
                    ("steps_per_s", Ty::Num),
                    ("p50_ms", Ty::OptNum),
                    ("p95_ms", Ty::OptNum),
                    ("skipped", Ty::UInt),
                    ("max_lag_s", Ty::OptNum),
                ],
                &["segments"],
                "summary",
            );
            assert!(matches!(v["status"].as_str(), Some("ok" | "interrupted" | "error")));
            for s in v["segments"].as_array().expect("segments is an array") {
                check_object(
                    s,
                    &[
                        ("start", Ty::Num),
                        ("end", Ty::Num),
                        ("id", Ty::OptUInt),
                        ("label", Ty::Str),
                        ("outputs", Ty::UInt),
                        ("mean_score", Ty::Num),
                    ],
                    &[],
                    "summary.segments[]",
                );
            }
        }
        other => panic!("unknown record type {other}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn meta_record_follows_the_schema() {
    let meta = Meta {
        kind: Meta::KIND,
        model: "window".into(),
        weights: "weights/w.safetensors".into(),
        weights_sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
        labels: "kinetics400".into(),
        num_classes: 400,
        model_fps: 25.0,
        input: InputSize { resize_short: 256, crop: 224 },
        delay: 3,
        receptive_field: 99,
        stride: 1,
        schedule: "pipeline",
        lag: 1,
        fill: "replicate",
        warmup_steps: 3,
        pool: None,
        smooth: "ema:0.5".into(),
        hold: 2,
        top_k: 5,
        threshold: 0.0,
        emit_transient: true,
        max_lag_s: Some(1.5),
        version: env!("CARGO_PKG_VERSION"),
        source: SourceMeta {
            input: "-".into(),
            input_bytes: None,
            info: SourceInfo {
                width: 640,
                height: 360,
                fps: Some(30.0),
                frames: None,
                duration: None,
                codec: "rawvideo".into(),
                container: "yuv4mpegpipe".into(),
                is_stream: true,
            },
        },
    };
    let mut sink = JsonLines::new(Vec::new());
    sink.meta(&meta).unwrap();
    let text = String::from_utf8(sink.into_inner()).unwrap();
    assert_eq!(text.matches('\n').count(), 1, "one compact line");
    assert!(text.starts_with("{\"type\":\"meta\""), "type comes first: {text}");
    check_record(&serde_json::from_str(text.trim_end()).unwrap());
}

#[test]
fn records_follow_the_schema_and_the_window_arithmetic() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let (res, recs) = run_jsonl(two_scenes(), &mut model, &opts(), &stop);
    let summary = res.unwrap();
    recs.iter().for_each(check_record);

    // Outputs at steps 2..=19; steps 2 is transient (window not yet full: rf 4 needs step 3).
    let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    assert_eq!(steps.len(), 17);
    assert_eq!(recs.last().unwrap()["type"], "summary");
    for (i, r) in steps.iter().enumerate() {
        let s = i as u64 + 3;
        assert_eq!(r["step"], s);
        assert_eq!(r["frame"], s);
        assert!(close(r["pts"].as_f64().unwrap(), s as f64 / 10.0));
        assert_eq!(r["ready"], true);
        // The window spans the receptive field's 4 frames, s-3 ..= s.
        assert!(close(r["window"][0].as_f64().unwrap(), (s - 3) as f64 / 10.0) && close(r["window"][1].as_f64().unwrap(), s as f64 / 10.0));
        assert!(r.get("lag_s").is_none() && r.get("skipped").is_none(), "files: no lag, nothing skipped");
        assert_eq!(r["top"].as_array().unwrap().len(), 3, "top-5 of 3 classes lists all 3");
        // Window = frames s-3..=s; class-0 frames are those < 10.
        let zeros = (s - 3..=s).filter(|&f| f < 10).count() as f64;
        let want = softmax3([zeros / 4.0, (4.0 - zeros) / 4.0, 0.0]);
        // Ties go to the lower id (step 11: two frames of each).
        let top1 = if zeros >= 2.0 { 0 } else { 1 };
        assert_eq!(r["top"][0]["id"], top1, "step {s}");
        assert_eq!(r["top"][0]["label"], ["zero", "one"][top1]);
        assert!(close(r["top"][0]["score"].as_f64().unwrap(), want[top1]), "step {s}: {}", r["top"][0]);
        assert_eq!(r["top"][2]["id"], 2);
        assert!(close(r["top"][2]["score"].as_f64().unwrap(), want[2]));
        assert_eq!(r["current"]["id"], top1);
    }

    assert_eq!((summary.frames, summary.steps, summary.outputs, summary.records), (20, 20, 18, 17));
    assert_eq!(summary.status, "ok");
    assert_eq!((summary.skipped, summary.max_lag_s), (0, None));
    let segs = &summary.segments;
    assert_eq!(segs.len(), 2);
    assert_eq!((segs[0].id, segs[0].outputs), (Some(0), 9));
    // Segments by the windows: the first from its first output's window start (frame 0); the label
    // turns at step 12, so the second starts where step 11's window ended.
    assert!(close(segs[0].start, 0.0) && close(segs[0].end, 1.1), "{segs:?}");
    assert_eq!((segs[1].id, segs[1].outputs, segs[1].label.as_str()), (Some(1), 8, "one"));
    assert!(close(segs[1].start, 1.1) && close(segs[1].end, 1.9), "{segs:?}");
    // Segment 0: seven full class-0 windows (steps 3..=9), then 3 of 4 and 2 of 4.
    let full = softmax3([1.0, 0.0, 0.0])[0];
    let want0 = (7.0 * full + softmax3([0.75, 0.25, 0.0])[0] + softmax3([0.5, 0.5, 0.0])[0]) / 9.0;
    assert!(close(segs[0].mean_score, want0), "{} vs {want0}", segs[0].mean_score);
    assert!(summary.p50_ms.is_some() && summary.p95_ms >= summary.p50_ms);
}

#[test]
fn transient_outputs_are_marked_not_ready() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let o = Options { emit_transient: true, ..opts() };
    let (res, recs) = run_jsonl(two_scenes(), &mut model, &o, &stop);
    assert_eq!(res.unwrap().records, 18);
    let first = recs.iter().find(|r| r["type"] == "step").unwrap();
    assert_eq!((first["step"].as_u64(), first["ready"].as_bool()), (Some(2), Some(false)));
    // Window at step 2: one zero-filled slot and frames 0, 1, 2.
    let want = softmax3([0.75, 0.0, 0.0])[0];
    assert!(close(first["top"][0]["score"].as_f64().unwrap(), want));
}

#[test]
fn warmup_brings_the_first_output_to_the_first_frame() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let o = Options { emit_transient: true, warmup: 2, ..opts() };
    let (res, recs) = run_jsonl(two_scenes(), &mut model, &o, &stop);
    let s = res.unwrap();
    // 20 real steps, each with an output; the 2 warm-up steps are not counted.
    assert_eq!((s.frames, s.steps, s.outputs, s.records), (20, 20, 20, 20));
    assert_eq!(model.steps, 22);
    let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    assert_eq!((steps[0]["step"].as_u64(), steps[0]["frame"].as_u64()), (Some(0), Some(0)));
    // Real step 0: the model has seen frame 0 three times (two warm-up copies), one slot still zero.
    assert!(close(steps[0]["top"][0]["score"].as_f64().unwrap(), softmax3([0.75, 0.0, 0.0])[0]));
    // Real step 1: four copies of class 0.
    assert!(close(steps[1]["top"][0]["score"].as_f64().unwrap(), softmax3([1.0, 0.0, 0.0])[0]));
    // Readiness counts real frames only: the window of rf 4 holds 4 real frames from step 3 on.
    let ready: Vec<bool> = steps.iter().map(|r| r["ready"].as_bool().unwrap()).collect();
    assert_eq!(&ready[..5], &[false, false, false, true, true]);
    // Past the warm-up the window is the last 4 real frames: at step 12 frames 9..=12, one of class 0.
    assert_eq!(steps[11]["top"][0]["id"], 0, "step 11: a 2-2 tie goes to the lower id");
    assert_eq!(steps[12]["top"][0]["id"], 1);
}

/// Frame 1 is dropped by the resampler; frame 2 feeds two steps; frame 3 one.
fn dropped_and_repeated() -> Vec<anyhow::Result<Packet>> {
    vec![
        Ok(Packet { frame: 0, pts: 0.0, steps: 1, input: Some(frame_of(2)), skipped: false, unsent_before: 0, skipped_before: 0 }),
        Ok(Packet { frame: 1, pts: 0.04, steps: 0, input: None, skipped: false, unsent_before: 0, skipped_before: 0 }),
        Ok(Packet { frame: 2, pts: 0.08, steps: 2, input: Some(frame_of(1)), skipped: false, unsent_before: 0, skipped_before: 0 }),
        Ok(Packet { frame: 3, pts: 0.12, steps: 1, input: Some(frame_of(0)), skipped: false, unsent_before: 0, skipped_before: 0 }),
    ]
}

#[test]
fn stride_dropped_and_repeated_frames() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(1, 2, 2);
    let o = Options { emit_transient: true, top_k: 1, ..opts() };
    let (res, recs) = run_jsonl(dropped_and_repeated(), &mut model, &o, &stop);
    let s = res.unwrap();
    assert_eq!((s.frames, s.steps, s.outputs), (4, 4, 2));
    let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    // Outputs at steps 1 and 3 (delay 1, stride 2): step 1 is frame 2's first step, step 3 is frame 3.
    assert_eq!((steps[0]["step"].as_u64(), steps[0]["frame"].as_u64()), (Some(1), Some(2)));
    assert_eq!((steps[1]["step"].as_u64(), steps[1]["frame"].as_u64()), (Some(3), Some(3)));
    assert_eq!(steps[0]["ready"], true, "rf 2 is full at step 1");
    // Step 1 window: frames 0 (class 2) and 2 (class 1): a tie, lower id wins.
    assert_eq!(steps[0]["top"].as_array().unwrap().len(), 1);
    assert_eq!(steps[0]["top"][0]["id"], 1);
    // Step 3 window: frame 2 (second step, class 1) and frame 3 (class 0): tie again.
    assert_eq!(steps[1]["top"][0]["id"], 0);
}

/// A model that emits every output one step late (a pipelined schedule) gets the same records:
/// each names its own frame, time, step and readiness, and the last comes from the drain at the end.
#[test]
fn lagged_outputs_keep_their_frames_and_the_last_is_drained() {
    let strip = |recs: Vec<Value>| -> Vec<Value> {
        recs.into_iter()
            .map(|mut r| {
                let o = r.as_object_mut().unwrap();
                for volatile in ["latency_ms", "wall_s", "steps_per_s", "p50_ms", "p95_ms"] {
                    o.remove(volatile);
                }
                r
            })
            .collect()
    };
    // (packets, (delay, receptive field, stride), options)
    type Case = (fn() -> Vec<anyhow::Result<Packet>>, (usize, usize, usize), Options);
    let cases: [Case; 3] = [
        (two_scenes, (2, 4, 1), opts()),
        (two_scenes, (0, 3, 1), Options { emit_transient: true, smooth: SmoothMode::Ema(0.5), hold: 2, ..opts() }),
        (dropped_and_repeated, (1, 2, 2), Options { emit_transient: true, ..opts() }),
    ];
    for (packets, (delay, rf, stride), o) in cases {
        let stop = AtomicBool::new(false);
        let (plain, plain_recs) = run_jsonl(packets(), &mut WindowModel::new(delay, rf, stride), &o, &stop);
        let (lagged, lagged_recs) = run_jsonl(packets(), &mut WindowModel::new(delay, rf, stride).lagged(), &o, &stop);
        let (plain, lagged) = (plain.unwrap(), lagged.unwrap());
        assert_eq!((lagged.outputs, lagged.records, lagged.steps), (plain.outputs, plain.records, plain.steps));
        assert!(plain.records > 0);
        assert_eq!(strip(lagged_recs), strip(plain_recs), "delay {delay} rf {rf} stride {stride}");
    }
    // Interrupted: the output in flight still comes out, named after the last step run.
    let stop = AtomicBool::new(false);
    let stop_ref = &stop;
    let packets = two_scenes().into_iter().enumerate().map(move |(i, p)| {
        if i == 8 {
            stop_ref.store(true, Ordering::SeqCst);
        }
        p
    });
    let mut sink = JsonLines::new(Vec::new());
    let mut model = WindowModel::new(2, 4, 1).lagged();
    let s = pipeline::run(packets, &mut model, &labels(), &opts(), &mut [&mut sink], &stop).unwrap();
    assert_eq!((s.status, s.steps, s.records), ("interrupted", 8, 5));
    let text = String::from_utf8(sink.into_inner()).unwrap();
    let recs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last_step = recs.iter().rev().find(|r| r["type"] == "step").unwrap();
    assert_eq!((last_step["step"].as_u64(), last_step["frame"].as_u64()), (Some(7), Some(7)));
}

#[test]
fn threshold_filters_but_current_stays() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let o = Options { threshold: 0.3, ..opts() };
    let (_, recs) = run_jsonl(two_scenes(), &mut model, &o, &stop);
    let r = recs.iter().find(|r| r["type"] == "step").unwrap();
    // Full class-0 window: scores e/(e+2) = 0.576 and 1/(e+2) = 0.212 twice; only the first passes.
    assert_eq!(r["top"].as_array().unwrap().len(), 1);
    let r = recs.iter().find(|r| r["step"] == 11).unwrap();
    // Step 11: 0.5/0.5/0 gives two scores of e^.5/(2e^.5+1) = 0.38 over the threshold.
    assert_eq!(r["top"].as_array().unwrap().len(), 2);
}

#[test]
fn ema_and_hold_shape_the_track() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let o = Options { smooth: SmoothMode::Ema(0.5), hold: 3, ..opts() };
    let (res, recs) = run_jsonl(two_scenes(), &mut model, &o, &stop);
    let s = res.unwrap();
    // Raw scores per step (class 0, class 1) from the window counts, then EMA by hand.
    let mut ema: Option<[f64; 3]> = None;
    let mut first_lead1 = None;
    for st in 3..20u64 {
        let zeros = (st - 3..=st).filter(|&f| f < 10).count() as f64;
        let p = softmax3([zeros / 4.0, (4.0 - zeros) / 4.0, 0.0]);
        let e = match ema {
            None => p,
            Some(prev) => [0.5 * p[0] + 0.5 * prev[0], 0.5 * p[1] + 0.5 * prev[1], 0.5 * p[2] + 0.5 * prev[2]],
        };
        ema = Some(e);
        let r = recs.iter().find(|r| r["step"] == st).unwrap();
        assert!(close(r["top"][0]["score"].as_f64().unwrap(), e[0].max(e[1])), "step {st}");
        if e[1] > e[0] && first_lead1.is_none() {
            first_lead1 = Some(st);
        }
    }
    // Class 1 first leads the smoothed scores at step 12 and keeps leading; with --hold 3 the
    // reported label switches on its third leading output, step 14.
    assert_eq!(first_lead1, Some(12));
    for st in 3..20u64 {
        let r = recs.iter().find(|r| r["step"] == st).unwrap();
        assert_eq!(r["current"]["id"], if st >= 14 { 1 } else { 0 }, "step {st}");
    }
    assert_eq!(s.segments.len(), 2);
    // The switch at step 14: the new segment starts where step 13's window ended.
    assert!(close(s.segments[1].start, 1.3));
}

#[test]
fn interruption_writes_a_summary() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let stop_ref = &stop;
    // The "user" presses Ctrl-C while frame 5 is being decoded.
    let packets = two_scenes().into_iter().enumerate().map(move |(i, p)| {
        if i == 5 {
            stop_ref.store(true, Ordering::SeqCst);
        }
        p
    });
    let mut sink = JsonLines::new(Vec::new());
    let s = pipeline::run(packets, &mut model, &labels(), &opts(), &mut [&mut sink], &stop).unwrap();
    assert_eq!(s.status, "interrupted");
    assert_eq!(s.frames, 5);
    let text = String::from_utf8(sink.into_inner()).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!((last["type"].as_str(), last["status"].as_str()), (Some("summary"), Some("interrupted")));
}

#[test]
fn a_decode_error_still_closes_with_a_summary() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let mut packets = two_scenes();
    packets.truncate(6);
    packets.push(Err(anyhow::anyhow!("frame 6 is short")));
    let (res, recs) = run_jsonl(packets, &mut model, &opts(), &stop);
    assert!(res.unwrap_err().to_string().contains("frame 6 is short"));
    let last = recs.last().unwrap();
    assert_eq!((last["status"].as_str(), last["frames"].as_u64()), (Some("error"), Some(6)));
}

/// A writer whose reader has gone away, like stdout under `| head -1` after the first line.
struct ClosedAfter(usize);

impl Write for ClosedAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        self.0 -= 1;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_closed_stdout_stops_the_run_as_a_broken_pipe() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let mut sink = JsonLines::new(ClosedAfter(1));
    let err = pipeline::run(two_scenes().into_iter(), &mut model, &labels(), &opts(), &mut [&mut sink], &stop).unwrap_err();
    assert!(coinfer::cli::is_broken_pipe(&err), "{err:#}");
    // It stopped at the failed write rather than running the rest of the stream.
    assert_eq!(model.steps, 5);
}

#[test]
fn labels_must_match_the_classes() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let mut sink = JsonLines::new(Vec::new());
    let two = Labels::from_names("two", vec!["a".into(), "b".into()]);
    let err = pipeline::run(two_scenes().into_iter(), &mut model, &two, &opts(), &mut [&mut sink], &stop).unwrap_err();
    assert_eq!(coinfer::error::kind_of(&err), coinfer::error::ErrorKind::Usage);
}

/// A sink that records what the progress display would be told, to check the order of calls.
#[derive(Default)]
struct Calls(Vec<String>);

impl Sink for Calls {
    fn frame(&mut self, index: u64, _pts: f64) {
        self.0.push(format!("f{index}"));
    }
    fn step(&mut self, rec: &StepRecord<'_>) -> io::Result<()> {
        self.0.push(format!("s{}", rec.step));
        Ok(())
    }
    fn summary(&mut self, _s: &Summary) -> io::Result<()> {
        self.0.push("end".into());
        Ok(())
    }
}

#[test]
fn every_sink_sees_frames_then_their_outputs() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let mut calls = Calls::default();
    let mut packets = two_scenes();
    packets.truncate(5);
    pipeline::run(packets.into_iter(), &mut model, &labels(), &opts(), &mut [&mut calls], &stop).unwrap();
    assert_eq!(calls.0, ["f0", "f1", "f2", "f3", "s3", "f4", "s4", "end"]);
}

/// Under `--threshold` the reported label is "none" (id null), for `current` and the segments: no
/// class is claimed when none is likely enough. The `top` list is filtered as before.
#[test]
fn under_the_threshold_the_label_is_none() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let o = Options { threshold: 0.5, ..opts() };
    let (res, recs) = run_jsonl(two_scenes(), &mut model, &o, &stop);
    let s = res.unwrap();
    recs.iter().for_each(check_record);
    // Best scores: full windows e/(e+2) = 0.576; 3 of 4 frames alike (steps 10, 12) 0.481; 2-2 (step 11) 0.38.
    let mixed = [softmax3([0.75, 0.25, 0.0])[0], softmax3([0.5, 0.5, 0.0])[0], softmax3([0.75, 0.25, 0.0])[0]];
    for st in 3..20u64 {
        let r = recs.iter().find(|r| r["step"] == st).unwrap();
        if (10..=12).contains(&st) {
            assert_eq!((r["current"]["id"].is_null(), r["current"]["label"].as_str()), (true, Some("none")), "step {st}: {r}");
            assert!(close(r["current"]["score"].as_f64().unwrap(), mixed[st as usize - 10]), "the best score, under the threshold: {r}");
            assert!(r["top"].as_array().unwrap().is_empty());
        } else {
            assert_eq!(r["current"]["id"], if st < 10 { 0 } else { 1 }, "step {st}");
        }
    }
    let segs = &s.segments;
    let got: Vec<(Option<usize>, &str, usize)> = segs.iter().map(|g| (g.id, g.label.as_str(), g.outputs)).collect();
    assert_eq!(got, [(Some(0), "zero", 7), (None, "none", 3), (Some(1), "one", 7)]);
    assert!(close(segs[1].start, 0.9) && close(segs[1].end, 1.2), "{segs:?}");
    assert!(close(segs[1].mean_score, mixed.iter().sum::<f64>() / 3.0));
}

/// A clip shorter than the receptive field is answered from its first frame: with the warm-up, its
/// one frame gives a (transient) output whose window starts and ends at that frame, and a segment.
#[test]
fn a_one_frame_clip_gets_an_answer() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(2, 4, 1);
    let o = Options { emit_transient: true, warmup: 2, ..opts() };
    let one =
        vec![Ok(Packet { frame: 0, pts: 0.0, steps: 1, input: Some(frame_of(2)), skipped: false, unsent_before: 0, skipped_before: 0 })];
    let (res, recs) = run_jsonl(one, &mut model, &o, &stop);
    let s = res.unwrap();
    recs.iter().for_each(check_record);
    assert_eq!((s.frames, s.steps, s.records), (1, 1, 1));
    let r = &recs[0];
    assert_eq!((r["ready"].as_bool(), r["current"]["id"].as_u64()), (Some(false), Some(2)));
    assert_eq!(r["window"], serde_json::json!([0.0, 0.0]));
    assert_eq!(s.segments.len(), 1);
    assert_eq!((s.segments[0].id, s.segments[0].start, s.segments[0].end), (Some(2), 0.0, 0.0));
}

/// Transient windows start at the first frame (the fill before it stands in for it); past the
/// receptive field they start at the oldest frame it holds. Times are rounded to the millisecond.
#[test]
fn windows_start_at_the_first_frame_until_the_field_is_full() {
    let stop = AtomicBool::new(false);
    let mut model = WindowModel::new(1, 4, 1);
    let o = Options { emit_transient: true, ..opts() };
    // 30 fps: pts in thirds of a second/10, which the records round.
    let packets: Vec<anyhow::Result<Packet>> = (0..8u64)
        .map(|i| {
            Ok(Packet {
                frame: i,
                pts: 0.5 + i as f64 / 30.0,
                steps: 1,
                input: Some(frame_of(0)),
                skipped: false,
                unsent_before: 0,
                skipped_before: 0,
            })
        })
        .collect();
    let (res, recs) = run_jsonl(packets, &mut model, &o, &stop);
    res.unwrap();
    let windows: Vec<(u64, Value)> =
        recs.iter().filter(|r| r["type"] == "step").map(|r| (r["step"].as_u64().unwrap(), r["window"].clone())).collect();
    let ms = |i: u64| ((0.5 + i as f64 / 30.0) * 1e3).round() / 1e3;
    for (step, w) in windows {
        let oldest = (step + 1).saturating_sub(4);
        assert_eq!(w, serde_json::json!([ms(oldest), ms(step)]), "step {step}");
    }
}

thread_local! {
    static WARNINGS: Cell<usize> = const { Cell::new(0) };
}

fn count_warning(_text: &str) {
    WARNINGS.with(|w| w.set(w.get() + 1));
}

/// A live source that produces frame `i` at `i / fps` seconds after its start, as a camera does: a
/// reader that comes late finds the frames it missed queued, a reader that comes early waits.
fn live_source(n: u64, fps: f64) -> impl Iterator<Item = anyhow::Result<Packet>> {
    let start = Instant::now();
    (0..n).map(move |i| {
        let due = start + Duration::from_secs_f64(i as f64 / fps);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        Ok(Packet {
            frame: i,
            pts: i as f64 / fps,
            steps: 1,
            input: Some(frame_of((i % 3) as usize)),
            skipped: false,
            unsent_before: 0,
            skipped_before: 0,
        })
    })
}

/// A model twice as slow as its live source falls behind. Without a bound every frame is still
/// stepped and the records say how far behind they are (`lag_s`); with `max_lag_s` the frames that
/// arrive too late are skipped, counted in the summary and marked in the next record, and the user is
/// warned once. The assertions are on counts and markers, not on durations: load can only make the
/// model slower, which makes it fall behind more.
#[test]
fn a_slow_model_on_a_live_source_skips_frames_to_stay_live() {
    let (frames, fps, pause) = (60u64, 100.0, Duration::from_millis(20));
    // Unbounded: every frame stepped, lag reported on every record, and it grows.
    let stop = AtomicBool::new(false);
    let o = Options { emit_transient: true, live: Some(Live { max_lag_s: None, warn: count_warning }), ..opts() };
    let mut model = WindowModel::new(0, 4, 1).slow(pause);
    let (res, recs) = run_jsonl(live_source(frames, fps), &mut model, &o, &stop);
    let s = res.unwrap();
    recs.iter().for_each(check_record);
    assert_eq!((s.frames, s.steps, s.skipped), (frames, frames, 0));
    let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    assert!(steps.iter().all(|r| r["lag_s"].is_number() && r.get("skipped").is_none()));
    assert!(s.max_lag_s.is_some());

    // Bounded: frames skipped, the count in the summary equal to the markers plus those after the last record.
    WARNINGS.with(|w| w.set(0));
    let o = Options { emit_transient: true, live: Some(Live { max_lag_s: Some(0.05), warn: count_warning }), ..opts() };
    let mut model = WindowModel::new(0, 4, 1).slow(pause);
    let (res, recs) = run_jsonl(live_source(frames, fps), &mut model, &o, &stop);
    let s = res.unwrap();
    recs.iter().for_each(check_record);
    assert_eq!(s.frames, frames);
    assert!(s.skipped > 0, "a model twice as slow as the source must skip: {s:?}");
    assert_eq!(s.steps + s.skipped, frames, "each frame is either stepped or skipped");
    assert_eq!(model.steps as u64, s.steps);
    let marked: u64 = recs.iter().filter_map(|r| r["skipped"].as_u64().filter(|_| r["type"] == "step")).sum();
    assert!(marked > 0 && marked <= s.skipped, "{marked} marked of {}", s.skipped);
    assert_eq!(WARNINGS.with(Cell::get), 1, "warned once");

    // Frames the decoder skipped (too late to convert) are counted and marked the same way.
    let o = Options { emit_transient: true, live: Some(Live { max_lag_s: Some(10.0), warn: count_warning }), ..opts() };
    let packets = (0..6u64).map(|i| {
        let skipped = (2..4).contains(&i);
        // Before frame 4, three more frames were read but not sent (a full channel), two of them skipped.
        let (unsent_before, skipped_before) = if i == 4 { (3, 2) } else { (0, 0) };
        Ok(Packet {
            frame: i,
            pts: i as f64 / 10.0,
            steps: usize::from(!skipped),
            input: (!skipped).then(|| frame_of(0)),
            skipped,
            unsent_before,
            skipped_before,
        })
    });
    let (res, recs) = run_jsonl(packets.collect::<Vec<_>>(), &mut WindowModel::new(0, 2, 1), &o, &stop);
    let s = res.unwrap();
    assert_eq!((s.frames, s.steps, s.skipped), (9, 4, 4));
    let marks: Vec<u64> = recs.iter().filter(|r| r["type"] == "step").map(|r| r["skipped"].as_u64().unwrap_or(0)).collect();
    assert_eq!(marks, [0, 0, 4, 0], "the record after the gap says 4 frames were skipped");
    // A file (no live timeline) never skips, however slow the model.
    let mut model = WindowModel::new(0, 4, 1).slow(pause);
    let o = Options { emit_transient: true, ..opts() };
    let (res, _) = run_jsonl(live_source(frames, fps).collect::<Vec<_>>(), &mut model, &o, &stop);
    let s = res.unwrap();
    assert_eq!((s.steps, s.skipped, s.max_lag_s), (frames, 0, None));
}

/// Under `max_lag_s`, a frame is stepped only when its own record can still come within the bound:
/// every record's `lag_s` is at most the bound, not the bound plus a step (a frame that arrived just
/// in time, then stepped), for a model twice as slow as its source, pipelined (`lag` 1) or not.
/// Sleeps stand for the steps, so load can only lengthen them a little; the margin covers that.
#[test]
fn records_of_a_slow_live_model_stay_within_max_lag() {
    let (frames, fps, pause, max) = (100u64, 50.0, Duration::from_millis(40), 0.2);
    for lagged in [false, true] {
        let stop = AtomicBool::new(false);
        let o = Options { emit_transient: true, live: Some(Live { max_lag_s: Some(max), warn: count_warning }), ..opts() };
        let model = WindowModel::new(0, 4, 1).slow(pause);
        let mut model = if lagged { model.lagged() } else { model };
        let (res, recs) = run_jsonl(live_source(frames, fps), &mut model, &o, &stop);
        let s = res.unwrap();
        assert!(s.skipped > 0, "a model twice as slow as the source must skip: {s:?}");
        let lags: Vec<f64> = recs.iter().filter(|r| r["type"] == "step").map(|r| r["lag_s"].as_f64().unwrap()).collect();
        assert!(lags.len() >= 10, "{} records", lags.len());
        let over: Vec<&f64> = lags.iter().filter(|&&lag| lag > max + 0.015).collect();
        assert!(over.is_empty(), "lagged {lagged}: records beyond --max-lag {max}: {over:?} of {lags:?}");
    }
}
