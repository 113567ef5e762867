//! The live preview as a person would use it: a y4m pipe into `coinfer - --overlay - --jsonl FILE`,
//! its video decoded by FFmpeg while it is being written; and `--overlay FILE` from a pipe, with
//! `--max-lag` skipping frames for the model. Every source frame must come out, at its own time and
//! size, and the label drawn must be the one the records give at that point (read back with OCR).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coinfer::sink::overlay::panel;
use serde_json::Value;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sports2d-demo.mp4");
const FRAMES: usize = 60;
const W: usize = 480;
const H: usize = 270;

/// The first `FRAMES` frames of the bundled sample at 480×270, as a y4m stream: its header and frames.
fn y4m(dir: &Path) -> (PathBuf, Vec<u8>, Vec<Vec<u8>>) {
    let path = dir.join("in.y4m");
    common::ffmpeg(&[
        "-i",
        SAMPLE,
        "-vf",
        &format!("scale={W}:{H}"),
        "-frames:v",
        &FRAMES.to_string(),
        "-pix_fmt",
        "yuv420p",
        "-f",
        "yuv4mpegpipe",
        path.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&path).unwrap();
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let frame_len = "FRAME\n".len() + W * H * 3 / 2;
    let frames: Vec<Vec<u8>> = bytes[header_end..].chunks(frame_len).map(<[u8]>::to_vec).collect();
    assert_eq!(frames.len(), FRAMES);
    assert!(frames.iter().all(|f| f.starts_with(b"FRAME\n") && f.len() == frame_len));
    (path, bytes[..header_end].to_vec(), frames)
}

fn probe(path: &Path, entries: &str) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", entries, "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {path:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.trim_end_matches(',')).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Frame times of two videos agree to the millisecond (Matroska keeps milliseconds).
fn assert_same_times(input: &Path, output: &Path) {
    let times = |p: &Path| probe(p, "frame=pts_time").iter().map(|t| t.parse::<f64>().unwrap()).collect::<Vec<f64>>();
    let (a, b) = (times(input), times(output));
    assert_eq!(a.len(), b.len(), "frame count");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() < 6e-4, "frame {i}: input at {x}, output at {y}");
    }
    assert_eq!(probe(output, "stream=width,height"), vec![format!("{W},{H}")]);
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect()
}

/// A frame whose label is certain whatever the timing: the record in force there and every record of
/// the `span` frames before it give the same label (a live frame shows the newest record at hand,
/// which may be a few frames old). Returns the frame and the label.
fn settled_frame(steps: &[&Value], span: u64) -> Option<(u64, String)> {
    let frame_of = |r: &Value| r["frame"].as_u64().unwrap();
    let label_of = |r: &Value| r["current"]["label"].as_str().unwrap().to_string();
    let last = steps.last()?;
    let f = (frame_of(last) + span).min(FRAMES as u64 - 1);
    let label = label_of(last);
    // The records that may be the newest at hand when frame f was drawn.
    let window: Vec<&&Value> = steps.iter().filter(|r| frame_of(r) + span >= f).collect();
    let before = steps.iter().rev().find(|r| frame_of(r) + span < f);
    let all_same = window.iter().all(|r| label_of(r) == label) && before.is_none_or(|r| label_of(r) == label);
    all_same.then_some((f, label))
}

/// The panel's title on `frame` of `video`, read by tesseract; `None` without tesseract.
fn ocr_title(video: &Path, frame: u64) -> Option<String> {
    if Command::new("tesseract").arg("--version").output().is_err() {
        eprintln!("SKIPPED the OCR checks: tesseract is not installed (apt-get install tesseract-ocr, as scripts/install-deps.sh does)");
        return None;
    }
    let layout = panel::layout(W, H, 5);
    let margin = ((layout.px * 0.5) as usize) & !1;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("title.png");
    let title_h = (layout.px * 2.4) as usize;
    let crop = format!("select=eq(n\\,{frame}),crop={}:{title_h}:{margin}:{margin},scale=iw*4:ih*4:flags=bicubic", layout.width);
    common::ffmpeg(&["-i", video.to_str().unwrap(), "-vf", &crop, "-frames:v", "1", png.to_str().unwrap()]);
    let out = Command::new("tesseract").arg(&png).args(["-", "--psm", "7"]).output().unwrap();
    Some(String::from_utf8_lossy(&out.stdout).to_string())
}

fn assert_reads(video: &Path, frame: u64, expected: &str) {
    assert_reads_one_of(video, frame, &[expected.to_string()]);
}

/// The title on `frame` reads as one of `labels`.
fn assert_reads_one_of(video: &Path, frame: u64, labels: &[String]) {
    let Some(read) = ocr_title(video, frame) else { return };
    let normal = |s: &str| s.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect::<String>();
    // A label too long for the title is cut with an ellipsis: then what is read must begin it.
    let matches = |expected: &str| match read.split_once('…').or_else(|| read.split_once("...")) {
        Some((shown, _)) => normal(shown).len() >= 6 && normal(expected).starts_with(&normal(shown)),
        None => normal(&read).contains(&normal(expected)),
    };
    assert!(labels.iter().any(|l| matches(l)), "frame {frame}: drew one of {labels:?}, OCR read '{read}'");
}

#[test]
fn live_preview_on_stdout_is_decoded_while_written_with_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (input, header, frames) = y4m(dir.path());
    let jsonl = dir.path().join("events.jsonl");
    let copy = dir.path().join("preview.mkv");
    let mut coinfer = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        // One thread for the network: the test's other run, the viewer and the overlay thread need the rest.
        .args(["-", "--overlay", "-", "--jsonl", jsonl.to_str().unwrap(), "-v", "--threads", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The viewer: FFmpeg decodes the pipe as it comes (one line per decoded frame, flushed at once)
    // and keeps a copy of the stream for the checks below.
    let mut viewer = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-probesize", "32768", "-analyzeduration", "0", "-i", "pipe:0"])
        .args(["-map", "0:v", "-c", "copy", "-y"])
        .arg(&copy)
        .args(["-map", "0:v", "-f", "framecrc", "-flush_packets", "1", "pipe:1"])
        .stdin(coinfer.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let viewer_out = viewer.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(viewer_out).lines() {
            let line = line.unwrap();
            if !line.starts_with('#') {
                let _ = seen_tx.send(line);
            }
        }
    });

    let mut stdin = coinfer.stdin.take().unwrap();
    stdin.write_all(&header).unwrap();
    for f in &frames[..FRAMES / 2] {
        stdin.write_all(f).unwrap();
    }
    stdin.flush().unwrap();
    // The input is still open, so coinfer is still running: frames decoded now were streamed.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut early = 0;
    while early < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(_) => early += 1,
            Err(_) => panic!("the viewer decoded {early} frames in 240 s while coinfer was running"),
        }
    }
    assert!(coinfer.try_wait().unwrap().is_none(), "coinfer still runs while its input is open");
    for f in &frames[FRAMES / 2..] {
        stdin.write_all(f).unwrap();
    }
    drop(stdin);

    let status = coinfer.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut coinfer.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("overlay: libx264 in matroska to -"), "-v names the encoder: {err}");
    assert!(viewer.wait().unwrap().success());
    reader.join().unwrap();
    let decoded = early + seen.try_iter().count();
    assert_eq!(decoded, FRAMES, "every source frame decoded by the viewer");
    assert_same_times(&input, &copy);

    let recs = records(&jsonl);
    assert_eq!(recs.first().unwrap()["type"], "meta");
    assert_eq!(recs.last().unwrap()["type"], "summary");
    let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    assert!(!steps.is_empty());
    // The model was still loading when the first frame was drawn.
    assert_reads(&copy, 0, "no output yet");
    match settled_frame(&steps, 12) {
        Some((f, label)) => assert_reads(&copy, f, &label),
        None => eprintln!("the label changed at the end: no frame whose label is certain"),
    }
}

#[test]
fn overlay_file_from_a_pipe_has_every_frame_even_those_skipped_for_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (input, header, frames) = y4m(dir.path());
    let jsonl = dir.path().join("events.jsonl");
    let video = dir.path().join("labelled.mkv");
    let mut coinfer = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["-", "--overlay", video.to_str().unwrap(), "--overlay-codec", "ffv1", "--jsonl", jsonl.to_str().unwrap()])
        .args(["--max-lag", "0.2", "-q", "--threads", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Frames at 30 a second, the clip's rate: faster than the model steps on one thread, so it skips
    // some under --max-lag, slow enough for the overlay thread to draw and encode each one.
    let mut stdin = coinfer.stdin.take().unwrap();
    stdin.write_all(&header).unwrap();
    for f in &frames {
        stdin.write_all(f).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(33));
    }
    drop(stdin);
    let out = coinfer.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("left out"), "no frame dropped from the video: {err}");
    assert!(!dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("coinfer-part")));
    assert_same_times(&input, &video);
    assert_eq!(probe(&video, "stream=codec_name"), vec!["ffv1"]);

    let recs = records(&jsonl);
    let summary = recs.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["frames"].as_u64(), Some(FRAMES as u64));
    // One thread of I3D does not step at 25 a second: some frames reached the video without the model.
    assert!(summary["skipped"].as_u64().unwrap() > 0, "no frame skipped under --max-lag: {summary}");
    // A model this far behind live labels frames long after they were drawn: the last frame shows
    // a record of an earlier frame, or none yet, never a label no record gave.
    let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    let last = FRAMES as u64 - 1;
    let mut drawable: Vec<String> = steps.iter().map(|r| r["current"]["label"].as_str().unwrap().to_string()).collect();
    drawable.push("no output yet".into());
    assert_reads_one_of(&video, last, &drawable);
}
