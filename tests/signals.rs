//! Ctrl-C, SIGTERM and SIGHUP end a run with its summary and 128 + the signal (130, 143, 129); while the
//! input is still opening (a FIFO with no writer) the first signal ends the run at once (src/signals.rs).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

fn coinfer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coinfer"))
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: `kill` on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Wait at most `limit` for `child` to exit; its status code (a hang fails the test).
fn wait_code(child: &mut Child, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or_else(|| panic!("killed by a signal: {st:?}"));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A y4m stream on `coinfer -`'s stdin, written by a thread that never closes it: a live camera.
fn live_run(y4m: &[u8]) -> (Child, std::thread::JoinHandle<()>) {
    let mut child = coinfer().args(["-", "--json"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let y4m = y4m.to_vec();
    let writer = std::thread::spawn(move || {
        // Header and frames, then hold the pipe open as a camera would.
        let _ = stdin.write_all(&y4m);
        let _ = stdin.flush();
        std::thread::sleep(Duration::from_secs(60));
        drop(stdin);
    });
    (child, writer)
}

#[test]
fn sigterm_and_sighup_end_a_live_run_with_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("live.y4m");
    common::lavfi("testsrc2=size=96x64:rate=25:duration=2", &["-f", "yuv4mpegpipe"], &clip);
    let y4m = std::fs::read(&clip).unwrap();
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGHUP, 129), (libc::SIGINT, 130)] {
        let (mut child, _writer) = live_run(&y4m);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Wait for the first step record: the run is streaming.
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "signal {sig}: stdout ended before a step record");
            if line.contains("\"type\":\"step\"") {
                break;
            }
        }
        signal(&child, sig);
        let rest: Vec<String> = out.lines().map(Result::unwrap).collect();
        assert_eq!(wait_code(&mut child, Duration::from_secs(30)), code, "signal {sig}");
        let summary = rest.last().unwrap_or_else(|| panic!("signal {sig}: no summary"));
        let summary: serde_json::Value = serde_json::from_str(summary).unwrap();
        assert_eq!(summary["type"], "summary", "signal {sig}: {summary}");
        assert_eq!(summary["status"], "interrupted", "signal {sig}: {summary}");
    }
}

#[test]
fn a_signal_while_the_input_opens_ends_the_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("camera");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        // Opening a FIFO blocks until a writer comes, which never does.
        let mut child = coinfer().arg(&fifo).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        signal(&child, sig);
        assert_eq!(wait_code(&mut child, Duration::from_secs(10)), code, "signal {sig}");
        let out = child.wait_with_output().unwrap();
        assert!(out.stdout.is_empty(), "nothing on stdout before the input opened");
        assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    }
}

/// Records of a batch output file: (path, type).
fn records(out: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    // Only whole lines: the batch may be writing the next one.
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    whole
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("torn record {l:?}: {e}"));
            (v["path"].as_str().unwrap().to_string(), v["type"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn sigterm_stops_a_batch_that_resume_then_finishes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    std::fs::create_dir(&clips).unwrap();
    for i in 0..4 {
        common::lavfi(
            "testsrc2=size=96x64:rate=25:duration=3",
            &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
            &clips.join(format!("c{i}.mp4")),
        );
    }
    let out = dir.path().join("labels.jsonl");
    let batch = |resume: bool| {
        let mut cmd = coinfer();
        cmd.arg("batch").arg(&clips).arg("--out").arg(&out).args(["--jobs", "1", "-q"]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    };
    let mut child = batch(false).spawn().unwrap();
    // Stop it once the first clip is recorded (and before the last).
    let start = Instant::now();
    while records(&out).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(240), "no clip recorded");
        assert!(child.try_wait().unwrap().is_none(), "batch ended before it could be stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_code(&mut child, Duration::from_secs(60)), 143);
    let first = records(&out);
    assert!(!first.is_empty() && first.len() < 4, "stopped part-way: {first:?}");
    assert!(first.iter().all(|(_, t)| t == "clip"), "an interrupted clip is not recorded as a failure: {first:?}");

    let st = batch(true).status().unwrap();
    assert_eq!(st.code(), Some(0));
    let all = records(&out);
    let mut paths: Vec<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!((all.len(), paths.len()), (4, 4), "every clip once: {all:?}");
}
