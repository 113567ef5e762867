//! The binary as a user runs it: exit codes, one-line errors, broken pipes, stderr without a TTY.
//!
//! Tests marked `needs models/source branches` run the real decoder and the default model; they are
//! enabled once those branches are merged.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sports2d-demo.mp4");

fn coinfer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coinfer")).args(args).stdin(Stdio::null()).output().expect("the binary runs")
}

/// Exactly one line on stderr, `coinfer: error: …`, nothing on stdout, and the given exit code.
fn assert_fails(args: &[&str], code: i32, mentions: &str) {
    let out = coinfer(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    assert!(err.starts_with("coinfer: error: "), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    assert!(err.contains(mentions), "{args:?}: '{mentions}' not in {err}");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "no terminal control bytes: {err:?}");
}

/// A clap usage error: exit 2, a message on stderr, nothing on stdout.
fn assert_usage(args: &[&str]) {
    let out = coinfer(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(!out.stderr.is_empty());
}

#[test]
fn missing_input_is_66() {
    assert_fails(&["/no/such/clip.mp4"], 66, "no such file");
    // A typo of a subcommand is pointed to it.
    assert_fails(&["model"], 66, "did you mean the subcommand `coinfer models`?");
    assert_fails(&["run", "--model", "no-such-model", "/no/such/clip.mp4"], 66, "no such file");
}

#[test]
fn unknown_model_is_2() {
    assert_fails(&["--model", "no-such-model", SAMPLE], 2, "unknown model 'no-such-model'");
}

#[test]
fn bad_flags_are_2() {
    assert_usage(&["--no-such-flag", SAMPLE]);
    assert_usage(&["--smooth", "ema:2", SAMPLE]);
    assert_usage(&["--smooth", "median:3", SAMPLE]);
    assert_usage(&["-k", "0", SAMPLE]);
    assert_usage(&["--threshold", "1.5", SAMPLE]);
    assert_usage(&["--fill", "mirror", SAMPLE]);
    assert_usage(&["--raw", "0x10", "--fps", "25", "-"]);
    assert_usage(&["--raw", "640", "--fps", "25", "-"]);
    assert_usage(&["--fps", "0", "-"]);
    assert_usage(&["--pix-fmt", "bgr24", "-"]); // --pix-fmt needs --raw
    assert_usage(&["--emit-transient", "--no-transient", SAMPLE]);
    assert_usage(&["run"]); // no input
    assert_usage(&[]); // no command: help on stderr
}

/// `--threads` and `--jobs` take 1 to 4 × the cores available; beyond, a usage error that states the
/// cap instead of an abort or a panic when the threads cannot be spawned.
#[test]
fn thread_counts_are_capped_at_four_per_core() {
    let cap = 4 * std::thread::available_parallelism().unwrap().get();
    let (range, over) = (format!("out of range: 1 to {cap}"), (cap + 1).to_string());
    assert_fails(&["--threads", "100000", SAMPLE], 2, &range);
    assert_fails(&["--threads", &over, SAMPLE], 2, &range);
    assert_fails(&["bench", "--threads", "0", "--model", "x3d-xs"], 2, &range);
    assert_fails(&["bench", "--threads", "2000", "--model", "x3d-xs"], 2, &range);
    assert_fails(&["batch", "--jobs", "0", SAMPLE], 2, &format!("--jobs 0 is {range}"));
    assert_fails(&["batch", "--jobs", &over, SAMPLE], 2, &range);
    // The cap itself is accepted: the run gets as far as the missing input.
    assert_fails(&["--threads", &cap.to_string(), "/no/such/clip.mp4"], 66, "no such file");
}

/// Numeric options beyond what the model can honour are usage errors, not allocation aborts
/// (README, "Options").
#[test]
fn windows_beyond_their_range_are_2() {
    for n in ["1000000000", "1025"] {
        let arg = format!("mean:{n}");
        assert_usage(&["--smooth", &arg, SAMPLE]);
        let err = String::from_utf8_lossy(&coinfer(&["--smooth", &arg, SAMPLE]).stderr).into_owned();
        assert!(err.contains("N out of range") && err.contains("mean:N with 1<=N<=1024"), "{err}");
    }
    assert_fails(&["--pool", "4294967296", SAMPLE], 2, "--pool 4294967296 is out of range for i3d: 1 to 1024");
    assert_fails(&["--pool", "1025", "--model", "x3d-s", SAMPLE], 2, "--pool 1025 is out of range for x3d-s: 1 to 1024");
    assert_fails(&["-k", "1000000000", SAMPLE], 2, "-k 1000000000 is out of range for i3d: 1 to 400 classes");
    assert_fails(&["batch", "-k", "401", SAMPLE], 2, "-k 401 is out of range for i3d");
    // The bounds themselves are accepted.
    assert_fails(&["--smooth", "mean:1024", "-k", "400", "/no/such/clip.mp4"], 66, "no such file");
    for model in ["i3d", "x3d-s"] {
        let out = coinfer(&["flops", "--model", model, "--pool", "1024"]);
        assert_eq!(out.status.code(), Some(0), "{model}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Weights with a NaN are bad data (65), one line naming the tensor, before any step could turn them
/// into `null` scores.
#[test]
fn non_finite_weights_are_65() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.safetensors");
    let cpu = candle_core::Device::Cpu;
    let tensors = [
        ("Conv3d_1a_7x7.bn.bias".to_string(), candle_core::Tensor::new(&[0.5f32, f32::NAN], &cpu).unwrap()),
        ("Logits.Conv3d_0c_1x1.conv.bias".to_string(), candle_core::Tensor::new(&[0.5f32, 1.0], &cpu).unwrap()),
    ];
    candle_core::safetensors::save(&tensors.into_iter().collect(), &path).unwrap();
    let weights = path.to_str().unwrap();
    assert_fails(&["--weights", weights, SAMPLE], 65, "tensor Conv3d_1a_7x7.bn.bias holds NaN at flat index 1");
    assert_fails(&["batch", "--weights", weights, SAMPLE], 65, "tensor Conv3d_1a_7x7.bn.bias holds NaN");
}

/// `bench` times at least one step and one regular clip: a mean over none printed `NaN ms`.
#[test]
fn bench_needs_at_least_one_step() {
    for args in [["--steps", "0"], ["--regular-runs", "0"], ["--steps", "1000001"], ["--regular-runs", "10001"]] {
        let args = [&["bench", "--model", "x3d-xs"], args.as_slice()].concat();
        assert_usage(&args);
        let err = String::from_utf8_lossy(&coinfer(&args).stderr).into_owned();
        assert!(err.contains("is not in 1.."), "{args:?}: {err}");
    }
}

#[test]
fn raw_without_fps_is_a_usage_error() {
    assert_fails(&["--raw", "64x48", "-"], 2, "--fps");
}

#[test]
fn help_and_version_succeed() {
    let out = coinfer(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Examples:") && help.contains("yuv4mpegpipe - | coinfer -"), "{help}");
    let out = coinfer(&["run", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--smooth") && help.contains("--emit-transient") && help.contains("--raw"));
    // FFmpeg's input format and batch's output format have names of their own; no help shows how
    // --threads is passed on inside.
    assert!(help.contains("--input-format") && !help.contains("--format") && help.contains("--max-lag"), "{help}");
    assert!(!help.contains("RAYON_NUM_THREADS"), "{help}");
    let out = coinfer(&["batch", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--out-format") && !help.contains("--format"), "{help}");
    let out = coinfer(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), concat!("coinfer ", env!("CARGO_PKG_VERSION")));
}

#[test]
fn labels_prints_the_embedded_list() {
    let out = coinfer(&["labels"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 400);
    assert_eq!((lines[0], lines[399]), ("abseiling", "zumba"));
    // The shared Kinetics-400 list is the reference.
    let shared = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/labels/kinetics400.txt")).unwrap();
    assert_eq!(text, shared);

    let out = coinfer(&["labels", "--json"]);
    let map: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(map.as_object().unwrap().len(), 400);
    assert_eq!(map["zumba"], 399);
    assert_eq!(map["abseiling"], 0);
}

#[test]
fn labels_files_in_three_formats() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("l.csv");
    std::fs::write(&csv, "id,name\n2,swim\n0,run\n1,\"jump, high\"\n").unwrap();
    let out = coinfer(&["labels", "--labels", csv.to_str().unwrap()]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "run\njump, high\nswim\n");

    let json = dir.path().join("l.json");
    std::fs::write(&json, r#"{"b": 1, "a": 0}"#).unwrap();
    let out = coinfer(&["labels", "--labels", json.to_str().unwrap()]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a\nb\n");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"b": 1, "a": 0, "c": 1}"#).unwrap();
    assert_fails(&["labels", "--labels", bad.to_str().unwrap()], 65, "used twice");
    assert_fails(&["labels", "--labels", "/no/such/labels.txt"], 66, "cannot read labels file");
    // Labels are read before the input is opened.
    assert_fails(&["--labels", bad.to_str().unwrap(), SAMPLE], 65, "used twice");
}

#[test]
fn models_table_says_model_fps() {
    let out = coinfer(&["models"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text.lines().next().unwrap();
    // "FPS" alone reads as throughput; the column is the frame rate of the model's timeline.
    assert!(header.contains("MODEL FPS"), "{header}");
    assert!(text.contains("not a speed"), "{text}");
}

#[test]
fn models_json_is_an_array() {
    let out = coinfer(&["models", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().expect("an array");
    for r in rows {
        for key in ["name", "model_fps", "crop", "delay", "receptive_field", "stride", "macs_per_step", "weights_present"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
    assert_eq!(rows.iter().filter(|r| r["default"] == true).count(), usize::from(!rows.is_empty()));
}

/// Read one line, then close our end of the pipe while the child still has lots to write.
fn first_line_then_close(args: &[&str]) -> (String, std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        reader.read_line(&mut first).unwrap();
    } // dropped: the read end is closed
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (first, child.wait().unwrap(), err)
}

#[test]
fn broken_pipe_ends_quietly_with_0() {
    // Far more than a pipe buffer (64 KiB), so the child is still writing when the reader leaves.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.txt");
    let names: String = (0..200_000).map(|i| format!("class number {i}\n")).collect();
    std::fs::write(&big, names).unwrap();
    let (first, status, err) = first_line_then_close(&["labels", "--labels", big.to_str().unwrap()]);
    assert_eq!(first, "class number 0\n");
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
}

/// `coinfer … | true`: the reader is gone before the first byte. Every printing subcommand ends
/// quietly with 0, as `run` does (serde_json wraps the write error of `--json` in its own type).
#[test]
fn closed_stdout_ends_quietly_with_0() {
    let commands: [&[&str]; 8] = [
        &["models"],
        &["models", "--json"],
        &["labels"],
        &["labels", "--json"],
        &["flops", "--model", "x3d-xs"],
        &["flops", "--model", "x3d-xs", "--json"],
        &["bench", "--model", "x3d-xs", "--steps", "1", "--regular-runs", "1"],
        &["bench", "--model", "x3d-xs", "--steps", "1", "--regular-runs", "1", "--json"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_coinfer")).args(args).stdin(Stdio::null()).stdout(writer).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe") && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn run_broken_pipe_ends_quietly_with_0() {
    let (first, status, err) = first_line_then_close(&[SAMPLE]);
    let meta: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(meta["type"], "meta");
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
}

#[test]
fn run_on_a_file_writes_meta_steps_summary_and_no_progress_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let out = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .arg(SAMPLE)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    // stderr is a file, not a terminal: no bar, no spinner, nothing at all.
    assert_eq!(std::fs::read(&err_path).unwrap(), b"");
    let text = String::from_utf8(out.stdout).unwrap();
    let recs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs[0]["type"], "meta");
    assert_eq!(recs[0]["emit_transient"], true, "files are answered from their first frame");
    let last = recs.last().unwrap();
    assert_eq!((last["type"].as_str(), last["status"].as_str()), (Some("summary"), Some("ok")));
    let steps: Vec<&serde_json::Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    assert_eq!(last["records"], steps.len() as u64);
    // The first record is the first frame's (the warm-up's output), not yet ready; its window is that frame.
    assert_eq!((steps[0]["frame"].as_u64(), steps[0]["ready"].as_bool()), (Some(0), Some(false)));
    assert_eq!(steps[0]["window"], serde_json::json!([0.0, 0.0]));
    assert!(steps.iter().all(|r| r.get("lag_s").is_none()), "files have no live lag");
    assert_eq!((last["skipped"].as_u64(), last["max_lag_s"].is_null()), (Some(0), true));
    // The segments cover the clip from its start.
    assert_eq!(last["segments"][0]["start"], 0.0);

    // --no-transient keeps what `select(.ready)` keeps: the same records, bit for bit but for timings.
    let out = Command::new(env!("CARGO_BIN_EXE_coinfer")).args(["--no-transient", SAMPLE]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let strip = |r: &serde_json::Value| {
        let mut r = r.clone();
        r.as_object_mut().unwrap().remove("latency_ms");
        r
    };
    let exact: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["type"] == "step")
        .map(|r| strip(&r))
        .collect();
    let ready: Vec<serde_json::Value> = steps.iter().filter(|r| r["ready"] == true).map(|r| strip(r)).collect();
    assert!(!exact.is_empty());
    assert_eq!(exact, ready);
}

/// A clip far shorter than the receptive field (10 frames, 0.4 s, against I3D's 4.9 s) still gets
/// step records and segments.
#[test]
fn a_short_file_is_answered_from_its_first_frame() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("short.y4m");
    let mut bytes = y4m_header().to_vec();
    for _ in 0..10 {
        bytes.extend(y4m_frame());
    }
    std::fs::write(&clip, bytes).unwrap();
    let out = coinfer(&[clip.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let recs: Vec<serde_json::Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs[0]["source"]["is_stream"], false);
    let steps: Vec<&serde_json::Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    assert!(!steps.is_empty(), "no answer for a short clip");
    assert_eq!((steps[0]["frame"].as_u64(), steps[0]["ready"].as_bool()), (Some(0), Some(false)));
    let segments = recs.last().unwrap()["segments"].as_array().unwrap().clone();
    assert!(!segments.is_empty());
    assert_eq!(segments[0]["start"], 0.0);
}

/// A 64x48 4:2:0 y4m header and mid-grey frames.
fn y4m_header() -> &'static [u8] {
    b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n"
}

fn y4m_frame() -> Vec<u8> {
    let mut f = b"FRAME\n".to_vec();
    f.resize(6 + 64 * 48 * 3 / 2, 128);
    f
}

#[test]
fn sigint_writes_the_summary_and_exits_130() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["-", "--emit-transient"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(y4m_header()).unwrap();
    let frame = y4m_frame();
    // Feed frames until the first step record arrives, keeping stdin open like a live camera.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("\"type\":\"step\"")) {
        assert!(Instant::now() < deadline, "no step record in time: {lines:?}");
        stdin.write_all(&frame).unwrap();
        while let Ok(l) = rx.try_recv() {
            lines.push(l);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(l);
    }
    drop(stdin);
    assert_eq!(code, Some(130));
    // A live source: every step record says how far behind live it is.
    let step: serde_json::Value = serde_json::from_str(lines.iter().find(|l| l.contains("\"type\":\"step\"")).unwrap()).unwrap();
    assert!(step["lag_s"].as_f64().is_some_and(|l| l >= 0.0), "{step}");
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!((last["type"].as_str(), last["status"].as_str()), (Some("summary"), Some("interrupted")));
}
