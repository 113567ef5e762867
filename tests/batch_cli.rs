//! `coinfer batch` as a user runs it: the real binary over folders of real (tiny) clips made with the
//! ffmpeg CLI at test time, corrupt files next to them, a run killed with SIGKILL and resumed, shards
//! merged, CSV with awkward names read back by a CSV parser.
//!
//! The default model (I3D) is too slow for many clips on a CI machine, so every run uses CoX3D-XS with
//! random weights that the test writes itself as a pyslowfast-named safetensors checkpoint: predictions
//! are meaningless, but everything the batch layer does with them (records, aggregation, resume,
//! sharding, quoting) is exercised through the same code paths as with real weights.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use coinfer::models::{ModelOptions, RandomWeights, WeightSource};
use serde_json::Value;

const MODEL: &str = "x3d-xs";
/// X3D-XS samples the video at 30/12 frames per second.
const MODEL_FPS: f64 = 2.5;
/// CoX3D-XS: steps until the receptive field is full (the model card in `coinfer models`).
const RECEPTIVE_FIELD: u64 = 60;

/// Records every tensor the builder takes, so that they can be saved as a checkpoint.
struct Recording {
    random: RandomWeights,
    taken: Vec<(String, Tensor)>,
}

impl WeightSource for Recording {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let t = self.random.take(name, shape)?;
        self.taken.push((name.to_string(), t.clone()));
        Ok(t)
    }
}

/// A complete random-weights X3D-XS checkpoint (pyslowfast names), as `--weights` takes it.
fn write_weights(dir: &Path) -> PathBuf {
    let mut rec = Recording { random: RandomWeights::new(7), taken: Vec::new() };
    coinfer::models::x3d::build(MODEL, &ModelOptions::default(), &mut rec).unwrap();
    let tensors: HashMap<String, Tensor> = rec.taken.into_iter().collect();
    let path = dir.join("x3d_xs_random.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

/// How a clip is encoded: container by extension, codec options here.
fn codec_for(path: &Path) -> &'static [&'static str] {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "mp4" => &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
        "mkv" | "mov" => &["-c:v", "mpeg4"],
        "webm" => &["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k"],
        "avi" => &["-c:v", "mjpeg"],
        "mpg" => &["-c:v", "mpeg2video"],
        other => panic!("no codec chosen for .{other}"),
    }
}

/// A synthetic clip of `secs` seconds at `rate` frames per second, 160x120.
fn make_clip(path: &Path, secs: u32, rate: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=160x120:rate={rate}"))
        .args(["-t", &secs.to_string()])
        .args(codec_for(path))
        .arg(path)
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}

/// Files no decoder can read, one per way of being broken.
fn make_corrupt(dir: &Path, good_mp4: &Path) -> Vec<PathBuf> {
    let bytes = std::fs::read(good_mp4).unwrap();
    let truncated = dir.join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let random = dir.join("random.mp4");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..20_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(&random, noise).unwrap();
    let text = dir.join("notes.mkv");
    std::fs::write(&text, "these are notes, not a video\n".repeat(50)).unwrap();
    let empty = dir.join("b-empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    vec![truncated, random, text, empty]
}

fn batch(weights: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coinfer"));
    cmd.arg("batch").args(["--model", MODEL, "--weights"]).arg(weights).stdin(Stdio::null());
    // One thread per model: tests and --jobs workers already run side by side, and on a small
    // machine more threads per model only make every step slower.
    cmd.env("RAYON_NUM_THREADS", "1").env("CANDLE_NUM_THREADS", "1");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every line of a JSONL file, parsed; the file must end with a newline (no torn line).
fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "last line is torn: {text:?}");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))).collect()
}

fn path_of(rec: &Value) -> String {
    rec["path"].as_str().expect("record has a path").to_string()
}

fn kinetics_labels() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/labels/kinetics400.txt")).unwrap();
    text.lines().map(str::to_string).collect()
}

fn mtime_ns(path: &Path) -> i64 {
    let t = std::fs::metadata(path).unwrap().modified().unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// A `clip` record as documented: identity of the file, duration and frames of what was decoded, a
/// top-5 that is a ranked part of a probability distribution, the aggregation that fits the length.
fn check_clip_record(rec: &Value, file: &Path, secs: f64, rate: f64, labels: &[String]) {
    let name = file.display();
    assert_eq!(rec["type"], "clip", "{name}: {rec}");
    assert_eq!(rec["size"].as_u64(), Some(std::fs::metadata(file).unwrap().len()), "{name}");
    assert_eq!(rec["mtime_ns"].as_i64(), Some(mtime_ns(file)), "{name}");
    let duration = rec["duration_s"].as_f64().unwrap_or_else(|| panic!("{name}: no duration: {rec}"));
    assert!((duration - secs).abs() < 0.15, "{name}: duration {duration} for a {secs} s clip");
    let frames = rec["frames"].as_u64().unwrap();
    assert!((frames as f64 - secs * rate).abs() <= 1.0, "{name}: {frames} frames decoded from {secs} s at {rate} fps");
    // The model samples the video at its own rate; with the replicate warm-up every step has an output.
    let steps = rec["steps"].as_u64().unwrap();
    assert!((steps as f64 - secs * MODEL_FPS).abs() <= 1.0, "{name}: {steps} steps for {secs} s at {MODEL_FPS} fps");
    assert_eq!(rec["outputs"].as_u64(), Some(steps), "{name}");
    let top = rec["top"].as_array().unwrap();
    assert_eq!(top.len(), 5, "{name}: {rec}");
    let scores: Vec<f64> = top.iter().map(|t| t["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{name}: top not sorted: {scores:?}");
    assert!(scores.iter().all(|&s| s > 0.0), "{name}: {scores:?}");
    assert!(scores.iter().sum::<f64>() <= 1.0 + 1e-5, "{name}: top-5 sums over 1: {scores:?}");
    let ids: BTreeSet<u64> = top.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 5, "{name}: repeated classes");
    for t in top {
        assert_eq!(t["label"].as_str().unwrap(), labels[t["id"].as_u64().unwrap() as usize], "{name}");
    }
    let expected = if steps >= RECEPTIVE_FIELD { "steady-mean" } else { "transient-mean" };
    assert_eq!(rec["aggregation"], expected, "{name}: {steps} steps");
    let segments = rec["segments"].as_array().unwrap();
    assert!(!segments.is_empty(), "{name}: every clip has outputs, so at least one segment");
    for s in segments {
        let (start, end) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
        assert!(0.0 <= start && start <= end && end <= secs + 0.5, "{name}: segment {s}");
        assert!(labels.contains(&s["label"].as_str().unwrap().to_string()), "{name}: {s}");
        assert!(s["mean_score"].as_f64().unwrap() > 0.0, "{name}: {s}");
    }
    assert!(rec["wall_s"].as_f64().unwrap() > 0.0, "{name}");
}

#[test]
fn mixed_folder_gives_one_record_per_clip_and_exit_65() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = write_weights(tmp.path());
    let dir = tmp.path().join("clips");
    // (file, seconds, frames per second of the source)
    let good: Vec<(PathBuf, u32, u32)> = vec![
        (dir.join("a.mp4"), 2, 30),
        (dir.join("c.mkv"), 1, 25),
        (dir.join("long.mp4"), 25, 5), // 62 steps at 2.5 fps: past the receptive field
        (dir.join("sub/d.webm"), 1, 30),
        (dir.join("sub/deeper/e.avi"), 1, 30),
        (dir.join("sub/f.mov"), 1, 30),
        (dir.join("sub/g.mpg"), 1, 25),
    ];
    for (p, secs, rate) in &good {
        make_clip(p, *secs, *rate);
    }
    let bad = make_corrupt(&dir, &good[0].0);
    std::fs::write(dir.join("readme.txt"), "not a clip\n").unwrap();
    std::fs::write(dir.join("sub/list.json"), "{}\n").unwrap();
    let labels = kinetics_labels();

    let out_file = tmp.path().join("labels.jsonl");
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&out_file).args(["--jobs", "2", "--quiet"]));
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "records go to --out only");
    let records = read_jsonl(&out_file);
    let by_path: BTreeMap<String, &Value> = records.iter().map(|r| (path_of(r), r)).collect();
    assert_eq!(by_path.len(), records.len(), "one record per clip");
    let expected: BTreeSet<String> = good.iter().map(|g| &g.0).chain(&bad).map(|p| p.display().to_string()).collect();
    assert_eq!(by_path.keys().cloned().collect::<BTreeSet<_>>(), expected, "non-video files are skipped");
    for (p, secs, rate) in &good {
        check_clip_record(by_path[&p.display().to_string()], p, *secs as f64, *rate as f64, &labels);
    }
    for p in &bad {
        let rec = by_path[&p.display().to_string()];
        assert_eq!(rec["type"], "error", "{rec}");
        assert_eq!(rec["kind"], "data", "{rec}");
        let message = rec["message"].as_str().unwrap();
        assert!(message.contains(p.file_name().unwrap().to_str().unwrap()), "names the file: {rec}");
    }
    assert!(stderr(&out).contains("4 of 11 clips failed"), "{}", stderr(&out));

    // --fail-fast with one worker stops at the first bad clip in path order (b-empty.mp4, after a.mp4).
    let ff_file = tmp.path().join("ff.jsonl");
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&ff_file).args(["--jobs", "1", "--fail-fast", "-q"]));
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let records = read_jsonl(&ff_file);
    let kinds: Vec<&str> = records.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["clip", "error"], "{records:?}");
    assert_eq!(path_of(&records[1]), dir.join("b-empty.mp4").display().to_string());
}

/// Sorted lines of a JSONL file as (path, line).
fn lines_by_path(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut v: Vec<(String, String)> = text.lines().map(|l| (path_of(&serde_json::from_str(l).unwrap()), l.to_string())).collect();
    v.sort();
    v
}

#[test]
fn resume_after_kill_9_records_every_clip_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = write_weights(tmp.path());
    let dir = tmp.path().join("clips");
    let base = [dir.join("base0.mp4"), dir.join("base1.mkv")];
    make_clip(&base[0], 1, 30);
    make_clip(&base[1], 1, 25);
    let mut clips = base.to_vec();
    for i in 0..10 {
        let p = dir.join(format!("copy{i:02}.{}", if i % 2 == 0 { "mp4" } else { "mkv" }));
        std::fs::copy(&base[i % 2], &p).unwrap();
        clips.push(p);
    }
    let all: BTreeSet<String> = clips.iter().map(|p| p.display().to_string()).collect();
    let out_file = tmp.path().join("labels.jsonl");

    let mut child = batch(&weights)
        .arg(&dir)
        .arg("--out")
        .arg(&out_file)
        .args(["--jobs", "1", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let lines = std::fs::read(&out_file).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
        if lines >= 2 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before two records were written");
        assert!(t0.elapsed() < Duration::from_secs(60), "no two records within a minute");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = std::fs::read_to_string(&out_file).unwrap();
    let complete = before.matches('\n').count();
    assert!(complete < clips.len(), "the kill came too late to interrupt anything ({complete} records)");
    // Simulate a kill in the middle of a write: a torn record of a clip not yet recorded.
    let unrecorded = all.iter().find(|p| !before.contains(&format!("\"path\":\"{p}\""))).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out_file)
        .unwrap()
        .write_all(format!("{{\"type\":\"clip\",\"path\":\"{unrecorded}\",\"size\":12").as_bytes())
        .unwrap();

    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&out_file).args(["--jobs", "2", "--resume", "-q"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = std::fs::read_to_string(&out_file).unwrap();
    let kept: String = before.split_inclusive('\n').filter(|l| l.ends_with('\n')).collect();
    assert!(after.starts_with(&kept), "records written before the kill are kept as they were");
    let records = read_jsonl(&out_file);
    assert_eq!(records.len(), clips.len(), "one record per clip:\n{after}");
    let paths: BTreeSet<String> = records.iter().map(path_of).collect();
    assert_eq!(paths, all, "none lost, none duplicated");
    assert!(records.iter().all(|r| r["type"] == "clip"), "{after}");

    // Resuming a finished run labels nothing and leaves the file as it is.
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&out_file).args(["--resume"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("12 clips: 0 labelled, 0 failed, 12 already recorded"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), after);
    // A clip that changed since (same path, new content) is labelled again.
    std::fs::copy(&base[1], &clips[2]).unwrap();
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&out_file).args(["--resume"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("12 clips: 1 labelled, 0 failed, 11 already recorded"), "{}", stderr(&out));
    assert_eq!(lines_by_path(&out_file).len(), clips.len() + 1);
}

#[test]
fn shards_partition_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = write_weights(tmp.path());
    // Relative paths, as every host of a cluster sees them: the shard of a clip does not depend on
    // where the temporary directory is.
    // Three real clips and nine broken files: the shard of a clip depends on its path only, and
    // error records are records like any other, so cheap broken files fill the shards.
    let dir = tmp.path().join("data");
    make_clip(&dir.join("x.mp4"), 1, 30);
    make_clip(&dir.join("y.webm"), 1, 30);
    std::fs::create_dir_all(dir.join("part")).unwrap();
    std::fs::copy(dir.join("x.mp4"), dir.join("part/0.mp4")).unwrap();
    for i in 1..10 {
        std::fs::write(dir.join(format!("part/{i}.{}", if i % 2 == 0 { "mp4" } else { "mkv" })), format!("broken {i}\n")).unwrap();
    }
    let shard_run = |shard: Option<usize>| {
        let name = shard.map_or("all.jsonl".to_string(), |i| format!("part-{i}.jsonl"));
        let mut cmd = batch(&weights);
        cmd.current_dir(tmp.path()).args(["data", "--out", &name, "--jobs", "1", "-q"]);
        if let Some(i) = shard {
            cmd.args(["--shard", &format!("{i}/3")]);
        }
        (cmd.stderr(Stdio::null()).spawn().unwrap(), tmp.path().join(name))
    };
    // The three shards run side by side, as on three hosts.
    let shards: Vec<_> = (0..3).map(|i| shard_run(Some(i))).collect();
    let mut parts = Vec::new();
    for (mut child, file) in shards {
        let status = child.wait().unwrap();
        let part = read_jsonl(&file);
        let failed = part.iter().any(|r| r["type"] == "error");
        assert_eq!(status.code(), Some(if failed { 65 } else { 0 }), "{part:?}");
        parts.push(part);
    }
    let (mut child, file) = shard_run(None);
    assert_eq!(child.wait().unwrap().code(), Some(65));
    let whole = read_jsonl(&file);
    assert_eq!(whole.len(), 12);
    assert_eq!(whole.iter().filter(|r| r["type"] == "clip").count(), 3);
    let whole: BTreeMap<String, &Value> = whole.iter().map(|r| (path_of(r), r)).collect();
    let mut union = BTreeSet::new();
    for (i, part) in parts.iter().enumerate() {
        assert!(!part.is_empty(), "shard {i}/3 is empty (12 clips, fixed names)");
        for rec in part {
            let p = path_of(rec);
            assert!(p.starts_with("data/"), "paths as given: {p}");
            assert!(union.insert(p.clone()), "{p} is in two shards");
            let w = whole[&p];
            assert_eq!(rec["type"], w["type"], "{p}");
            if rec["type"] == "error" {
                continue;
            }
            assert_eq!(rec["top"][0]["id"], w["top"][0]["id"], "{p}: same top-1 in the shard and the whole run");
            let (a, b) = (rec["top"][0]["score"].as_f64().unwrap(), w["top"][0]["score"].as_f64().unwrap());
            assert!((a - b).abs() < 1e-5, "{p}: {a} vs {b}");
        }
    }
    assert_eq!(union, whole.keys().cloned().collect::<BTreeSet<_>>(), "the shards together are the whole run");
}

#[test]
fn csv_with_awkward_names_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = write_weights(tmp.path());
    let dir = tmp.path().join("clips, \"awkward\" ones");
    let good = [dir.join("with space, comma.mp4"), dir.join("quote\"d it's.webm"), dir.join("ünïcödé 動画.avi")];
    for p in &good {
        make_clip(p, 1, 30);
    }
    let bad = dir.join("bad, \"really\".mp4");
    std::fs::write(&bad, "not a video, \"at all\"\n").unwrap();
    let bad2 = dir.join("(1);x\u{e9}.mkv");
    std::fs::write(&bad2, "").unwrap();
    let out_file = tmp.path().join("labels.csv");
    // No --out-format: CSV because --out ends in .csv.
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&out_file).args(["-q"]));
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));

    let mut reader = csv::Reader::from_path(&out_file).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), good.len() + 2);
    let labels = kinetics_labels();
    let mut seen = BTreeSet::new();
    for row in &rows {
        let path = row[col("path")].to_string();
        assert!(seen.insert(path.clone()), "{path} twice");
        let file = PathBuf::from(&path);
        assert!(file.is_file(), "the path reads back as the file's name: {path:?}");
        assert_eq!(row[col("size")].parse::<u64>().unwrap(), std::fs::metadata(&file).unwrap().len());
        assert_eq!(row[col("mtime_ns")].parse::<i64>().unwrap(), mtime_ns(&file));
        if file == bad || file == bad2 {
            assert_eq!(&row[col("status")], "error");
            assert_eq!(&row[col("error_kind")], "data");
            assert!(row[col("error_message")].contains(file.file_name().unwrap().to_str().unwrap()), "{row:?}");
            continue;
        }
        assert_eq!(&row[col("status")], "ok", "{row:?}");
        assert!(row[col("error_message")].is_empty());
        let duration: f64 = row[col("duration_s")].parse().unwrap();
        assert!((duration - 1.0).abs() < 0.15, "{path}: {duration}");
        let top1: usize = row[col("top1_id")].parse().unwrap();
        assert_eq!(row[col("top1_label")], labels[top1]);
        let topk: Vec<&str> = row[col("top_k")].split(';').collect();
        assert_eq!(topk.len(), 5, "{row:?}");
        assert!(topk[0].starts_with(&format!("{}:", labels[top1])), "{row:?}");
        let segments: Value = serde_json::from_str(&row[col("segments")]).unwrap();
        assert!(!segments.as_array().unwrap().is_empty());
    }
    let expected: BTreeSet<String> = good.iter().chain([&bad, &bad2]).map(|p| p.display().to_string()).collect();
    assert_eq!(seen, expected);

    // Resuming the CSV journal finds every awkward name again: nothing is labelled twice.
    let before = std::fs::read(&out_file).unwrap();
    // (`--format`, the older name of `--out-format`, still reads.)
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&out_file).args(["--format", "csv", "--resume"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(&out_file).unwrap(), before);

    // CSV on stdout starts with the same header as a file.
    let out = run(batch(&weights).arg(&good[0]).args(["--out-format", "csv", "-q"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let first_line = std::fs::read_to_string(&out_file).unwrap().lines().next().unwrap().to_string();
    assert_eq!(text.lines().next(), Some(first_line.as_str()), "{text}");
    assert_eq!(text.lines().count(), 2, "header and one row: {text}");
}

#[test]
fn usage_and_missing_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("absent.safetensors");
    let clip = tmp.path().join("a.mp4");
    make_clip(&clip, 1, 30);
    // --resume needs the file it continues.
    let out = run(batch(&weights).arg(&clip).arg("--resume"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--resume needs --out"), "{}", stderr(&out));
    // A missing input is 66, before anything runs.
    let out_file = tmp.path().join("out.jsonl");
    let out = run(batch(&weights).arg(&clip).arg(tmp.path().join("missing.mp4")).arg("--out").arg(&out_file));
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.mp4"), "{}", stderr(&out));
    let out = run(batch(&weights).arg(tmp.path().join("nothing-*.mp4")));
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    // Missing weights fail the run as a whole (66), not the clip that happened to come first:
    // no record claims the clip was tried, so a later --resume still labels it.
    let out = run(batch(&weights).arg(&clip).arg("--out").arg(&out_file));
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(stderr(&out).contains("no weights for x3d-xs"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap_or_default(), "");
    // An output that already has records is not mixed into without --resume.
    std::fs::write(&out_file, "{\"type\":\"clip\",\"path\":\"x\"}\n").unwrap();
    let weights = write_weights(tmp.path());
    let out = run(batch(&weights).arg(&clip).arg("--out").arg(&out_file));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "{\"type\":\"clip\",\"path\":\"x\"}\n");
    // A relative name that FFmpeg could read as a protocol (`data:`) is a file like any other,
    // and the record keeps the name as given.
    std::fs::copy(&clip, tmp.path().join("data:x.mp4")).unwrap();
    let out = run(batch(&weights).current_dir(tmp.path()).args(["data:x.mp4", "-q"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((rec["type"].as_str(), rec["path"].as_str()), (Some("clip"), Some("data:x.mp4")), "{rec}");
}

#[test]
fn help_documents_aggregation_and_the_cluster_recipe() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_coinfer")).args(["batch", "--help"]));
    assert!(out.status.success());
    // Unwrap clap's line wrapping before looking for phrases.
    let help = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    for phrase in [
        "steady-mean",
        "transient-mean",
        "--resume",
        "--shard $SLURM_ARRAY_TASK_ID/8",
        "#SBATCH --array=0-7",
        "parallel -S",
        "--shard {}/8",
    ] {
        assert!(help.contains(phrase), "'{phrase}' not in batch --help:\n{help}");
    }
}

/// `n` files that no decoder reads: each gets an `error` record, which `--resume` counts as done
/// like any other, so they exercise keys and shards without labelling anything.
fn make_broken(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("part")).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("part/{i}.{}", if i % 2 == 0 { "mp4" } else { "mkv" })), format!("broken {i}\n")).unwrap();
    }
}

#[test]
fn resume_and_shards_key_on_the_normalised_path() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = write_weights(tmp.path());
    make_broken(&tmp.path().join("data"), 9);
    let journal = tmp.path().join("journal.jsonl");
    let out = run(batch(&weights).current_dir(tmp.path()).args(["data", "--out", "journal.jsonl", "--jobs", "1", "-q"]));
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let before = std::fs::read(&journal).unwrap();
    assert_eq!(read_jsonl(&journal).len(), 9);
    // Every other spelling of the directory finds every clip recorded, the absolute one too.
    let abs = tmp.path().join("data");
    for spelling in ["./data", "data/", "data//part/..", abs.to_str().unwrap(), &format!("{}/", abs.display())] {
        let out = run(batch(&weights).current_dir(tmp.path()).args([spelling, "--out", "journal.jsonl", "--resume"]));
        assert_eq!(out.status.code(), Some(0), "{spelling}: {}", stderr(&out));
        assert!(stderr(&out).contains("9 clips: 0 labelled, 0 failed, 9 already recorded"), "{spelling}: {}", stderr(&out));
        assert_eq!(std::fs::read(&journal).unwrap(), before, "{spelling}: nothing appended");
    }
    // Two machines mount the data at different places and spell it differently: same shards.
    let elsewhere = tmp.path().join("mnt/nfs/data");
    make_broken(&elsewhere, 9);
    let shard = |cwd: &Path, args: &[&str], i: usize| -> BTreeSet<String> {
        let out = run(batch(&weights).current_dir(cwd).args(args).args(["--shard", &format!("{i}/3"), "--jobs", "1", "-q"]));
        let text = String::from_utf8(out.stdout).unwrap();
        // The path relative to the data directory, whatever the spelling.
        text.lines()
            .map(|l| {
                let p = path_of(&serde_json::from_str(l).unwrap());
                p[p.find("part/").unwrap()..].to_string()
            })
            .collect()
    };
    let mut union = BTreeSet::new();
    for i in 0..3 {
        let here = shard(tmp.path(), &["./data/"], i);
        assert_eq!(here, shard(tmp.path(), &[elsewhere.to_str().unwrap()], i), "shard {i}/3");
        // Inputs that name a subfolder there: --root says where keys start.
        assert_eq!(here, shard(&elsewhere, &["part", "--root", "."], i), "shard {i}/3 with --root");
        assert!(here.iter().all(|p| union.insert(p.clone())), "shard {i}/3 overlaps");
    }
    assert_eq!(union.len(), 9);
}

#[test]
fn csv_resume_cuts_a_record_torn_inside_a_quoted_name() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = write_weights(tmp.path());
    let dir = tmp.path().join("clips");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.mp4"), "broken\n").unwrap();
    // A name with a comma and newlines: its CSV field is quoted and spans lines.
    let odd = dir.join("x, \"y\"\nz\nw.mp4");
    std::fs::write(&odd, "broken too\n").unwrap();
    let csv_file = tmp.path().join("labels.csv");
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&csv_file).args(["--jobs", "1", "-q"]));
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let full = std::fs::read(&csv_file).unwrap();
    // Killed while writing the last record (`x…`, after `a.mp4` with one worker): torn just after
    // the first newline inside its quoted name.
    let last = full.windows(7).rposition(|w| w == b"error,\"").unwrap();
    let cut = last + full[last..].iter().position(|&b| b == b'\n').unwrap() + 2;
    std::fs::write(&csv_file, &full[..cut]).unwrap();
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&csv_file).args(["--resume", "-q"]));
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 of 2 clips failed"), "the torn clip runs again: {}", stderr(&out));
    // Two whole records, one per clip, the name exact.
    let mut reader = csv::Reader::from_path(&csv_file).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let paths: BTreeSet<&str> = rows.iter().map(|r| &r[1]).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(paths, [dir.join("a.mp4"), odd].iter().map(|p| p.to_str().unwrap()).collect());
    assert!(rows.iter().all(|r| r.len() == 20 && &r[0] == "error"), "{rows:?}");
}

#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_are_run_labelled_recorded_and_resumed() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let tmp = tempfile::tempdir().unwrap();
    let weights = write_weights(tmp.path());
    let dir = tmp.path().join("clips");
    let plain = dir.join("plain.mp4");
    make_clip(&plain, 1, 30);
    let name = std::ffi::OsString::from_vec(b"caf\xe9 \xff\xfe.mp4".to_vec());
    let clip = dir.join(&name);
    std::fs::rename(&plain, &clip).unwrap();
    let hex_of = |p: &Path| p.as_os_str().as_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let from_hex = |h: &str| -> PathBuf {
        let bytes: Vec<u8> = (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect();
        PathBuf::from(std::ffi::OsString::from_vec(bytes))
    };

    // `run` opens it, and its meta record carries the name: text, and the bytes in hex.
    let out = run(Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["run", "--model", MODEL, "--weights"])
        .arg(&weights)
        .args(["--json", "-q"])
        .arg(&clip)
        .env("RAYON_NUM_THREADS", "1")
        .env("CANDLE_NUM_THREADS", "1"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let source = &records[0]["source"];
    assert_eq!(source["input"], clip.to_string_lossy().as_ref(), "{source}");
    assert_eq!(from_hex(source["input_bytes"].as_str().unwrap()), clip, "{source}");
    let summary = records.last().unwrap();
    assert_eq!((summary["type"].as_str(), summary["status"].as_str()), (Some("summary"), Some("ok")), "{summary}");
    assert!(summary["frames"].as_u64().unwrap() > 0);
    // A UTF-8 name has no input_bytes: records of ordinary names are as they were.
    let ok_name = dir.join("ok.mp4");
    std::fs::copy(&clip, &ok_name).unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["run", "--model", MODEL, "--weights"])
        .arg(&weights)
        .args(["--json", "-q"])
        .arg(&ok_name));
    let meta: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().next().unwrap()).unwrap();
    assert!(meta["source"].get("input_bytes").is_none(), "{meta}");
    std::fs::remove_file(&ok_name).unwrap();

    // `batch` finds it in a directory and labels it; JSON records give path_bytes, CSV the bytes.
    let jsonl = tmp.path().join("labels.jsonl");
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&jsonl).args(["-q"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recs = read_jsonl(&jsonl);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["type"], "clip", "{}", recs[0]);
    assert_eq!(recs[0]["path_bytes"].as_str(), Some(hex_of(&clip).as_str()));
    assert_eq!(from_hex(recs[0]["path_bytes"].as_str().unwrap()), clip);
    let csv_file = tmp.path().join("labels.csv");
    let out = run(batch(&weights).arg(&dir).arg("--out").arg(&csv_file).args(["-q"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut reader = csv::Reader::from_path(&csv_file).unwrap();
    let rows: Vec<csv::ByteRecord> = reader.byte_records().map(|r| r.unwrap()).collect();
    assert_eq!((&rows[0][0], &rows[0][1]), (&b"ok"[..], clip.as_os_str().as_bytes()));
    // --resume knows it is done, in both formats, and through an @list of its bytes too.
    let list = tmp.path().join("list.txt");
    std::fs::write(&list, [clip.as_os_str().as_bytes(), b"\n"].concat()).unwrap();
    let at_list = std::ffi::OsString::from_vec([b"@", list.as_os_str().as_bytes()].concat());
    for (input, out_file) in [(dir.as_os_str(), &jsonl), (dir.as_os_str(), &csv_file), (at_list.as_os_str(), &jsonl)] {
        let out = run(batch(&weights).arg(input).arg("--out").arg(out_file).arg("--resume"));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stderr(&out).contains("1 clips: 0 labelled, 0 failed, 1 already recorded"), "{input:?}: {}", stderr(&out));
    }
}

/// Resumed from another working directory, with another spelling of the data or another root, a
/// journal's clips are found by the key and root its records carry: nothing is labelled twice.
#[test]
fn resume_from_another_working_directory_or_root_labels_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = write_weights(tmp.path());
    let work = tmp.path().join("x/a");
    std::fs::create_dir_all(&work).unwrap();
    let data = tmp.path().join("x/data");
    make_broken(&data, 5);
    let first = |format: &str| {
        let name = format!("o.{format}");
        let out = run(batch(&weights).current_dir(&work).args(["../data", "--out", &name, "--jobs", "1", "-q"]));
        assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
        work.join(name)
    };
    let journal = first("jsonl");
    let records = read_jsonl(&journal);
    assert_eq!(records.len(), 5);
    for rec in &records {
        // The path as found, the key relative to the root, the root absolute.
        let path = path_of(rec);
        assert!(path.starts_with("../data/part/"), "{rec}");
        assert_eq!(rec["key"].as_str(), Some(&path["../data/".len()..]), "{rec}");
        assert_eq!(rec["root"].as_str(), data.to_str(), "{rec}");
    }
    let csv_journal = first("csv");
    let before = [std::fs::read(&journal).unwrap(), std::fs::read(&csv_journal).unwrap()];
    // Elsewhere: `../data` there names no such directory, so the recorded relative paths cannot
    // be read against this working directory; the recorded keys still name the clips.
    let elsewhere = tmp.path().join("y");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let abs = data.to_str().unwrap();
    let sub = data.join("part");
    for (cwd, args) in [
        (&elsewhere, vec![abs]),
        (&elsewhere, vec!["../x/data/"]),
        // Another root: a subfolder as the input (its own default root), or --root given.
        (&elsewhere, vec![sub.to_str().unwrap()]),
        (&elsewhere, vec![abs, "--root", "/"]),
        (&work, vec!["../data/part/..", "--root", "."]),
    ] {
        for (journal, before) in [&journal, &csv_journal].into_iter().zip(&before) {
            let out = run(batch(&weights).current_dir(cwd).args(&args).arg("--out").arg(journal).arg("--resume"));
            assert_eq!(out.status.code(), Some(0), "{args:?} from {cwd:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("5 clips: 0 labelled, 0 failed, 5 already recorded"),
                "{args:?} from {cwd:?} into {journal:?}: {}",
                stderr(&out)
            );
            assert_eq!(&std::fs::read(journal).unwrap(), before, "{args:?}: nothing appended");
        }
    }
    // Another machine mounts the data elsewhere (here: the data moved, so the recorded root is no
    // directory any more), and resumes by the keys, keyed from the same level.
    let mounted = tmp.path().join("mnt/data");
    std::fs::create_dir_all(mounted.parent().unwrap()).unwrap();
    std::fs::rename(&data, &mounted).unwrap();
    for journal in [&journal, &csv_journal] {
        let out = run(batch(&weights).current_dir(&elsewhere).arg(&mounted).arg("--out").arg(journal).arg("--resume"));
        assert!(stderr(&out).contains("5 clips: 0 labelled, 0 failed, 5 already recorded"), "{journal:?}: {}", stderr(&out));
    }
}
