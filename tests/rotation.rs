//! Rotated video (a display matrix, as phones write for portrait clips) is classified as a player
//! shows it: decoded frames equal the ffmpeg CLI's turned frames, and `coinfer` gives the same records
//! for a clip tagged with a turn as for a copy whose pixels were turned (docs/architecture.md,
//! "Orientation").

use std::path::Path;
use std::process::Command;

use coinfer::source::{Frame, OpenOptions, open};
mod common;
use common::{ffmpeg, sha};

/// A 2 s, 25 fps, 96×64 H.264 clip with a moving pattern (so that a turned copy classifies differently).
fn make_clip(out: &Path) {
    let out = out.to_str().unwrap();
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", out]);
}

/// `clip` with its stream tagged `rotate=DEG` (the pixels untouched).
fn tag(clip: &Path, deg: u32, out: &Path) {
    let rotate = format!("rotate={deg}");
    ffmpeg(&["-i", clip.to_str().unwrap(), "-c", "copy", "-metadata:s:v:0", &rotate, out.to_str().unwrap()]);
}

/// The ffmpeg CLI's RGB24 frames of `clip` converted as stored, then turned by `filter`.
fn cli_turned(clip: &Path, filter: &str) -> Vec<u8> {
    let vf = format!("format=rgb24,{filter}");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-noautorotate", "-i"])
        .arg(clip)
        .args(["-vf", &vf, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg -vf {vf} failed");
    out.stdout
}

#[test]
fn decoded_frames_are_turned_as_the_display_matrix_says() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip);
    // What the ffmpeg CLI's autorotation does for each tag (FFmpeg writes `rotate=90` as a matrix
    // that turns counter-clockwise; players and the CLI agree on the matrix).
    for (deg, filter, size) in [(90, "transpose=cclock", (64, 96)), (180, "hflip,vflip", (96, 64)), (270, "transpose=clock", (64, 96))] {
        let tagged = dir.path().join(format!("rot{deg}.mp4"));
        tag(&clip, deg, &tagged);
        let want = cli_turned(&clip, filter);
        let mut src = open(tagged.to_str().unwrap(), &OpenOptions::default()).unwrap();
        assert_eq!((src.info().width, src.info().height), size, "rotate={deg}: displayed size");
        let n = size.0 as usize * size.1 as usize * 3;
        let mut f = Frame::default();
        let mut frames = 0;
        for (i, want) in want.chunks(n).enumerate() {
            assert!(src.next_frame(&mut f).unwrap(), "rotate={deg}: frame {i} missing");
            assert_eq!((f.width, f.height), size);
            assert!(sha(&f.rgb) == sha(want), "rotate={deg}: frame {i} differs from the CLI's turned frame");
            frames += 1;
        }
        assert_eq!(frames, 50);
        assert!(!src.next_frame(&mut f).unwrap());
    }
}

/// The step records of `coinfer ARGS` (JSON Lines), without the fields that name the input.
fn steps(args: &[&str]) -> (Vec<serde_json::Value>, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_coinfer")).args(args).args(["--emit-transient"]).output().unwrap();
    assert!(out.status.success(), "coinfer {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let records: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let meta = records.iter().find(|r| r["type"] == "meta").expect("a meta record").clone();
    let steps = records
        .into_iter()
        .filter(|r| r["type"] == "step")
        .map(|mut r| {
            let o = r.as_object_mut().unwrap();
            o.retain(|k, _| !matches!(k.as_str(), "frame" | "pts" | "time" | "latency_ms" | "elapsed_s" | "lag_s"));
            r
        })
        .collect();
    (steps, meta)
}

#[test]
fn a_tagged_clip_classifies_like_its_turned_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip);
    let tagged = dir.path().join("rot90.mp4");
    tag(&clip, 90, &tagged);
    let raw = dir.path().join("turned.rgb");
    std::fs::write(&raw, cli_turned(&clip, "transpose=cclock")).unwrap();

    let (from_tag, meta) = steps(&[tagged.to_str().unwrap()]);
    let (from_pixels, _) = steps(&["--raw", "64x96", "--fps", "25", raw.to_str().unwrap()]);
    let (unturned, _) = steps(&[clip.to_str().unwrap()]);
    assert_eq!(meta["source"]["width"], 64, "meta reports the displayed size: {meta}");
    assert_eq!(meta["source"]["height"], 96);
    assert!(!from_tag.is_empty());
    assert_eq!(from_tag, from_pixels, "a tagged clip must classify exactly like its turned copy");
    assert_ne!(from_tag, unturned, "the turn must matter for this clip");
}
