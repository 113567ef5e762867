//! `--overlay` with file names that are not UTF-8 (docs/records.md, "File names"): the input is
//! decoded a second time by its bytes and the video is written under the exact name asked for.
//! CoX3D-XS with random weights the test writes itself keeps the run short.

#![cfg(unix)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use candle_core::Tensor;
use coinfer::models::{ModelOptions, RandomWeights, WeightSource};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sports2d-demo.mp4");

struct Keep {
    random: RandomWeights,
    taken: Vec<(String, Tensor)>,
}

impl WeightSource for Keep {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let t = self.random.take(name, shape)?;
        self.taken.push((name.to_string(), t.clone()));
        Ok(t)
    }
}

fn random_x3d_xs(dir: &Path) -> PathBuf {
    let mut keep = Keep { random: RandomWeights::new(5), taken: Vec::new() };
    coinfer::models::x3d::build("x3d-xs", &ModelOptions::default(), &mut keep).unwrap();
    let tensors: HashMap<String, Tensor> = keep.taken.into_iter().collect();
    let path = dir.join("x3d_xs_random.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

/// Frames of the first video stream, counted by ffprobe.
fn frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {path:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().trim_end_matches(',').parse().unwrap()
}

#[test]
fn overlay_takes_and_writes_names_that_are_not_utf8() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = random_x3d_xs(tmp.path());
    // A folder, an input and an output whose names are Latin-1, not UTF-8.
    let dir = tmp.path().join(OsString::from_vec(b"vid\xe9os".to_vec()));
    std::fs::create_dir(&dir).unwrap();
    let input = dir.join(OsString::from_vec(b"caf\xe9 \xff.mp4".to_vec()));
    // The first second of the bundled sample: short, and as real as the sample.
    let cut = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i", SAMPLE, "-t", "1", "-an", "-c:v", "libx264", "-preset", "ultrafast"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(cut.status.success(), "{}", String::from_utf8_lossy(&cut.stderr));
    let video = dir.join(OsString::from_vec(b"labell\xe9.mkv".to_vec()));
    let out = Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["run", "--model", "x3d-xs", "--weights"])
        .arg(&weights)
        .arg(&input)
        .arg("--overlay")
        .arg(&video)
        .args(["--json", "-q"])
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(video.is_file(), "the video is written under the exact name: {stderr}");
    assert_eq!(frames(&video), frames(&input), "every frame of the input is drawn");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "no temporary left beside them: {left:?}");
}
