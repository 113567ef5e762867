//! Helpers shared by the tests: the ffmpeg CLI makes the clips and is the reference decode; `levels`
//! re-runs a test binary under every lower kernel level.

#![allow(dead_code)]

pub mod levels;

use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

pub fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn ffmpeg(args: &[&str]) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .status()
        .expect("the ffmpeg CLI must be installed to run these tests");
    assert!(st.success(), "ffmpeg {args:?} failed");
}

/// Render a lavfi `source` with output `args` to `out`.
pub fn lavfi(source: &str, args: &[&str], out: &Path) {
    let out = out.to_str().expect("a UTF-8 path");
    ffmpeg(&[&["-f", "lavfi", "-i", source], args, &[out]].concat());
}

/// Per-frame SHA-256 of the ffmpeg CLI's rgb24 output; `input_args` go before the input path.
pub fn cli_rgb_hashes(input_args: &[&str], path: &Path, w: usize, h: usize) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(input_args)
        .arg("-i")
        .arg(path)
        .args(["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    let n = w * h * 3;
    assert_eq!(out.stdout.len() % n, 0, "CLI output is not a whole number of {w}x{h} frames");
    out.stdout.chunks(n).map(sha).collect()
}
