//! `--overlay`, `--timeline` and `--jsonl` as a person would check them: decode the written video back
//! with the ffmpeg CLI (streams, frames, timestamps, sizes, audio packets), compare its pixels with the
//! input's outside the panel (lossless FFV1), read the drawn label back with OCR, and open the timeline.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use coinfer::sink::overlay::panel;
use serde_json::Value;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sports2d-demo.mp4");

/// The bundled sample made small (480×270), with a half-second gap in its timestamps after frame 60
/// (variable frame rate) and its audio, in Matroska.
fn small_vfr_clip(dir: &Path) -> PathBuf {
    let out = dir.join("small.mkv");
    common::ffmpeg(&[
        "-i",
        SAMPLE,
        "-vf",
        "scale=480:270,setpts=PTS+if(gte(N\\,60)\\,0.5/TB\\,0)",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "copy",
        out.to_str().unwrap(),
    ]);
    out
}

fn coinfer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coinfer")).args(args).stdin(Stdio::null()).output().expect("the binary runs")
}

fn probe(path: &Path, stream: &str, entries: &str) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries", entries, "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {path:?}: {}", String::from_utf8_lossy(&out.stderr));
    // A frame with side data gets an empty field and an empty line of its own: not entries.
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.trim_end_matches(',')).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Every frame of the video stream as raw yuv420p bytes.
fn raw_frames(path: &Path, w: usize, h: usize) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let n = w * h * 3 / 2;
    assert_eq!(out.stdout.len() % n, 0);
    out.stdout.chunks(n).map(<[u8]>::to_vec).collect()
}

fn records(jsonl: &str) -> Vec<Value> {
    jsonl.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect()
}

/// The label of the record in force at `frame`: the last step record at or before it.
fn label_at(steps: &[&Value], frame: u64) -> Option<String> {
    steps.iter().rev().find(|r| r["frame"].as_u64().unwrap() <= frame).map(|r| r["current"]["label"].as_str().unwrap().to_string())
}

#[test]
fn labelled_video_keeps_the_input_and_draws_only_the_panel() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_vfr_clip(dir.path());
    let video = dir.path().join("labelled.mkv");
    let timeline = dir.path().join("timeline.svg");
    let jsonl = dir.path().join("records.jsonl");
    let out = coinfer(&[
        input.to_str().unwrap(),
        "--overlay",
        video.to_str().unwrap(),
        "--overlay-codec",
        "ffv1",
        "--timeline",
        timeline.to_str().unwrap(),
        "--jsonl",
        jsonl.to_str().unwrap(),
        "-v",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("overlay: ffv1 in matroska"), "-v names the encoder: {stderr}");
    assert!(
        !dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("coinfer-part")),
        "no temporary left"
    );

    // The records on stdout (a pipe here) are JSON Lines, and --jsonl has the same ones.
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), stdout);
    let recs = records(&stdout);
    let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    assert!(steps.len() >= 3, "{stdout}");

    // Streams, frame count, timestamps (the gap included) and size as the input's; audio packets copied.
    assert_eq!(probe(&video, "v", "stream=width,height"), probe(&input, "v", "stream=width,height"));
    assert_eq!(probe(&video, "v", "stream=codec_name"), vec!["ffv1"]);
    let (pts_in, pts_out) = (probe(&input, "v", "frame=pts_time"), probe(&video, "v", "frame=pts_time"));
    assert_eq!(pts_in.len(), 230);
    assert_eq!(pts_out, pts_in, "every frame at its own timestamp");
    assert_eq!(probe(&video, "a", "packet=pts_time,size"), probe(&input, "a", "packet=pts_time,size"), "audio copied as is");

    // Pixels: outside the panel unchanged (lossless), inside it drawn.
    let (w, h) = (480usize, 270usize);
    let layout = panel::layout(w, h, 5);
    let margin = ((layout.px * 0.5) as usize) & !1;
    let (frames_in, frames_out) = (raw_frames(&input, w, h), raw_frames(&video, w, h));
    assert_eq!(frames_in.len(), frames_out.len());
    let in_panel = |x: usize, y: usize| x >= margin && x < margin + layout.width && y >= margin && y < margin + layout.height;
    for (i, (a, b)) in frames_in.iter().zip(&frames_out).enumerate() {
        let (mut inside_changed, mut outside_changed) = (0usize, 0usize);
        for y in 0..h {
            for x in 0..w {
                let changed = a[y * w + x] != b[y * w + x];
                if in_panel(x, y) {
                    inside_changed += changed as usize;
                } else {
                    outside_changed += changed as usize;
                }
            }
        }
        // Chroma samples outside the panel, too (4:2:0: the panel starts on an even pixel).
        let (cw, ch) = (w / 2, h / 2);
        for plane in 0..2 {
            let off = w * h + plane * cw * ch;
            for y in 0..ch {
                for x in 0..cw {
                    if !in_panel(2 * x, 2 * y) {
                        outside_changed += (a[off + y * cw + x] != b[off + y * cw + x]) as usize;
                    }
                }
            }
        }
        assert_eq!(outside_changed, 0, "frame {i}: pixels outside the panel changed");
        assert!(inside_changed > layout.width * layout.height / 2, "frame {i}: the panel is drawn ({inside_changed})");
    }

    // The timeline names the classes that were in the top-k.
    let svg = std::fs::read_to_string(&timeline).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG parses");
    let texts: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
    let best = steps
        .iter()
        .flat_map(|r| r["top"].as_array().unwrap())
        .max_by(|a, b| a["score"].as_f64().unwrap().total_cmp(&b["score"].as_f64().unwrap()))
        .unwrap();
    let best_label = best["label"].as_str().unwrap();
    assert!(texts.iter().any(|t| t.starts_with(best_label)), "{best_label} in the legend: {texts:?}");

    ocr_checks(&video, &steps, layout, margin);
}

/// Read the panel's title back with tesseract before the first output, right after each label
/// switch, and on the last frame.
fn ocr_checks(video: &Path, steps: &[&Value], layout: panel::Layout, margin: usize) {
    if Command::new("tesseract").arg("--version").output().is_err() {
        eprintln!("SKIPPED the OCR checks: tesseract is not installed (apt-get install tesseract-ocr, as scripts/install-deps.sh does)");
        return;
    }
    let first = steps[0]["frame"].as_u64().unwrap();
    let mut frames = vec![];
    if first > 0 {
        frames.push(first - 1);
    }
    for pair in steps.windows(2) {
        if pair[0]["current"]["label"] != pair[1]["current"]["label"] {
            frames.push(pair[1]["frame"].as_u64().unwrap());
        }
    }
    frames.push(229);
    let dir = tempfile::tempdir().unwrap();
    let normal = |s: &str| s.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect::<String>();
    for f in frames {
        let png = dir.path().join(format!("panel{f}.png"));
        // The title line only (descenders included), enlarged: what tesseract reads best.
        let title_h = (layout.px * 2.4) as usize;
        let crop = format!("select=eq(n\\,{f}),crop={}:{}:{margin}:{margin},scale=iw*4:ih*4:flags=bicubic", layout.width, title_h);
        common::ffmpeg(&["-i", video.to_str().unwrap(), "-vf", &crop, "-frames:v", "1", png.to_str().unwrap()]);
        let out = Command::new("tesseract").arg(&png).args(["-", "--psm", "7"]).output().unwrap();
        let read = String::from_utf8_lossy(&out.stdout).to_string();
        let expected = label_at(steps, f).unwrap_or_else(|| "no output yet".into());
        // A label too long for the title is cut with an ellipsis: then what is read must begin it.
        let matches = match read.split_once('…').or_else(|| read.split_once("...")) {
            Some((shown, _)) => normal(shown).len() >= 6 && normal(&expected).starts_with(&normal(shown)),
            None => normal(&read).contains(&normal(&expected)),
        };
        assert!(matches, "frame {f}: drew '{expected}', OCR read '{read}'");
    }
}

#[test]
fn overlay_on_stdout_is_a_stream_ffmpeg_decodes_as_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    common::lavfi("testsrc2=size=160x120:rate=25:duration=2", &["-c:v", "libx264", "-pix_fmt", "yuv420p"], &input);
    let jsonl = dir.path().join("r.jsonl");
    let mut producer = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args([input.to_str().unwrap(), "--overlay", "-", "--jsonl", jsonl.to_str().unwrap(), "--emit-transient"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let consumer = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "frame=pts_time", "-select_streams", "v", "-of", "csv=p=0", "-i", "pipe:0"])
        .stdin(producer.stdout.take().unwrap())
        .output()
        .unwrap();
    let mut err = String::new();
    producer.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(producer.wait().unwrap().success(), "{err}");
    assert!(consumer.status.success());
    let decoded = String::from_utf8_lossy(&consumer.stdout).lines().filter(|l| !l.trim_end_matches(',').is_empty()).count();
    assert_eq!(decoded, 50, "every frame decoded from the pipe");
    let recs = records(&std::fs::read_to_string(&jsonl).unwrap());
    assert_eq!(recs.first().unwrap()["type"], "meta");
    assert_eq!(recs.last().unwrap()["type"], "summary");
}

/// Exactly one line on stderr and the given exit code, before any model work.
fn assert_fails(args: &[&str], code: i32, mentions: &str) {
    let out = coinfer(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    assert!(err.contains(mentions), "{args:?}: '{mentions}' not in {err}");
}

#[test]
fn bad_outputs_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("out.mp4");
    let ok = ok.to_str().unwrap();
    assert_fails(&[SAMPLE, "--overlay", "/no/such/folder/out.mp4"], 66, "cannot write the overlay");
    assert_fails(&[SAMPLE, "--timeline", "/no/such/folder/t.svg"], 66, "cannot write the timeline");
    assert_fails(&[SAMPLE, "--jsonl", "/no/such/folder/r.jsonl"], 66, "cannot write the records");
    assert_fails(&[SAMPLE, "--overlay", "-", "--json"], 2, "--jsonl FILE");
    assert_fails(&[SAMPLE, "--overlay", "-", "--jsonl", "-"], 2, "--jsonl FILE");
    assert_fails(&[SAMPLE, "--overlay", &format!("{ok}.nosuchext")], 2, "cannot tell the container");
    assert_fails(&[SAMPLE, "--overlay", ok, "--overlay-codec", "no-such-encoder"], 2, "no such encoder");
    assert_fails(&[SAMPLE, "--overlay", ok, "--overlay-codec", "aac"], 2, "not a video encoder");
    assert_fails(&[SAMPLE, "--timeline", "t.jpg"], 2, ".svg or .png");
    assert_fails(&[SAMPLE, "--input-format", "mov", "--overlay", ok], 2, "without --input-format");
    assert_fails(&[SAMPLE, "--overlay", SAMPLE], 2, "overwrite the input");
    assert_fails(&[SAMPLE, "--overlay-crf", "20"], 2, "--overlay");
    // Nothing was left behind by the refusals.
    assert_eq!(dir.path().read_dir().unwrap().count(), 0);
}
