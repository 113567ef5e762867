//! Decoding through `coinfer::source`: a matrix of clips made at test time with the ffmpeg CLI, compared
//! frame by frame (SHA-256 of the RGB bytes) with `ffmpeg -i CLIP -f rawvideo -pix_fmt rgb24 -`, plus raw and
//! y4m files, timestamps of a variable-frame-rate clip against ffprobe, and bad inputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use coinfer::error::{ErrorKind, kind_of};
use coinfer::preprocess::Resampler;
use coinfer::source::{Frame, FrameSelector, OpenOptions, RawVideo, open};
mod common;
use common::{cli_rgb_hashes, ffmpeg, lavfi, sha};

#[derive(Debug)]
struct Decoded {
    hashes: Vec<String>,
    pts: Vec<f64>,
    size: (u32, u32),
}

fn decode_all(input: &str, opts: &OpenOptions) -> anyhow::Result<Decoded> {
    let mut src = open(input, opts)?;
    let mut f = Frame::default();
    let mut d = Decoded { hashes: vec![], pts: vec![], size: (0, 0) };
    while src.next_frame(&mut f)? {
        assert_eq!(f.index as usize, d.hashes.len());
        assert_eq!(f.rgb.len(), f.width as usize * f.height as usize * 3);
        d.size = (f.width, f.height);
        d.hashes.push(sha(&f.rgb));
        d.pts.push(f.pts);
    }
    // The end is sticky.
    assert!(!src.next_frame(&mut f)?);
    Ok(d)
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn p(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn decode_matrix_matches_the_ffmpeg_cli_bytes() {
    let dir = tmp();
    // (file, extra generation args before the output, width, height, frames, codec)
    // testsrc2 only makes even sizes: scale to odd ones.
    let src = |size: &str| {
        let (w, h) = size.split_once('x').unwrap();
        let (w, h): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
        format!("testsrc2=size={}x{}:rate=25:duration=0.4,scale={w}:{h}", w & !1, h & !1)
    };
    type Case<'a> = (&'a str, Vec<String>, u32, u32, usize, &'a str);
    let cases: Vec<Case> = vec![
        (
            "h264_bt709.mp4",
            vec![
                "-f",
                "lavfi",
                "-i",
                &src("320x240"),
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-colorspace",
                "bt709",
                "-color_primaries",
                "bt709",
                "-color_trc",
                "bt709",
                "-color_range",
                "tv",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            320,
            240,
            10,
            "h264",
        ),
        (
            "h264_untagged.mp4",
            vec!["-f", "lavfi", "-i", &src("320x240"), "-c:v", "libx264", "-pix_fmt", "yuv420p"].into_iter().map(String::from).collect(),
            320,
            240,
            10,
            "h264",
        ),
        (
            "h264_444_odd.mkv",
            vec!["-f", "lavfi", "-i", &src("321x241"), "-c:v", "libx264", "-pix_fmt", "yuv444p"].into_iter().map(String::from).collect(),
            321,
            241,
            10,
            "h264",
        ),
        (
            "vp9_odd.webm",
            vec![
                "-f",
                "lavfi",
                "-i",
                &src("99x67"),
                "-c:v",
                "libvpx-vp9",
                "-pix_fmt",
                "yuv420p",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            99,
            67,
            10,
            "vp9",
        ),
        (
            "vp9_444.mkv",
            vec![
                "-f",
                "lavfi",
                "-i",
                &src("128x96"),
                "-c:v",
                "libvpx-vp9",
                "-pix_fmt",
                "yuv444p",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            128,
            96,
            10,
            "vp9",
        ),
        (
            "mpeg4.avi",
            vec!["-f", "lavfi", "-i", &src("176x144"), "-c:v", "mpeg4", "-q:v", "3"].into_iter().map(String::from).collect(),
            176,
            144,
            10,
            "mpeg4",
        ),
        (
            "mjpeg.mov",
            vec!["-f", "lavfi", "-i", &src("160x120"), "-c:v", "mjpeg", "-pix_fmt", "yuvj422p", "-q:v", "3"]
                .into_iter()
                .map(String::from)
                .collect(),
            160,
            120,
            10,
            "mjpeg",
        ),
        (
            "png_rgb24.mkv",
            vec!["-f", "lavfi", "-i", &src("65x33"), "-c:v", "png", "-pix_fmt", "rgb24"].into_iter().map(String::from).collect(),
            65,
            33,
            10,
            "png",
        ),
        (
            "audio_first.mp4",
            vec![
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=0.4",
                "-f",
                "lavfi",
                "-i",
                &src("128x72"),
                "-map",
                "0:a",
                "-map",
                "1:v",
                "-c:a",
                "aac",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            128,
            72,
            10,
            "h264",
        ),
    ];
    for (name, args, w, h, frames, codec) in &cases {
        let path = p(&dir, name);
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.push(path.to_str().unwrap());
        ffmpeg(&a);
        let input = path.to_str().unwrap();
        let src = open(input, &OpenOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let info = src.info().clone();
        drop(src);
        assert_eq!((info.width, info.height), (*w, *h), "{name}");
        assert_eq!(info.codec, *codec, "{name}");
        assert!(!info.is_stream, "{name}");
        assert!((info.fps.unwrap() - 25.0).abs() < 1e-6, "{name}: fps {:?}", info.fps);
        let got = decode_all(input, &OpenOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(got.size, (*w, *h), "{name}");
        assert_eq!(got.hashes.len(), *frames, "{name}: frame count");
        let want = cli_rgb_hashes(&[], &path, *w as usize, *h as usize);
        assert_eq!(got.hashes, want, "{name}: RGB bytes differ from the ffmpeg CLI's");
        for (i, t) in got.pts.iter().enumerate() {
            assert!((t - i as f64 / 25.0).abs() < 1e-3, "{name}: frame {i} pts {t}");
        }
    }
}

#[test]
fn sample_clip_rgb_matches_the_ffmpeg_cli() {
    // VP9 yuv420p tagged BT.709 limited range: the reference decode (docs/models.md, "Preprocessing").
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/sports2d-demo.mp4");
    let mut src = open(sample.to_str().unwrap(), &OpenOptions::default()).unwrap();
    let info = src.info().clone();
    assert_eq!((info.width, info.height), (1768, 994));
    assert_eq!(info.codec, "vp9");
    assert_eq!(info.frames, Some(230));
    assert_eq!(info.fps, Some(30.0));
    let n = 24;
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(&sample)
        .args(["-frames:v", &n.to_string(), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    let size = 1768 * 994 * 3;
    assert_eq!(out.stdout.len(), n * size);
    let mut f = Frame::default();
    for (i, want) in out.stdout.chunks(size).enumerate() {
        assert!(src.next_frame(&mut f).unwrap());
        assert_eq!(f.index, i as u64);
        assert!((f.pts - i as f64 / 30.0).abs() < 1e-9);
        assert!(f.rgb == want, "frame {i}: RGB bytes differ from the ffmpeg CLI's");
    }
}

/// `best_effort_timestamp_time` of every video frame, as ffprobe reports them.
fn ffprobe_pts(path: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    // One line per frame; side data may add a trailing comma or blank lines.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(',').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn vfr_clip_timestamps_and_frame_selection() {
    let dir = tmp();
    let path = p(&dir, "vfr.mkv");
    // 30 fps with jitter (±8 ms), then a 0.4 s gap after frame 40, then 15 fps from frame 60.
    let timing = "settb=1/1000,setpts='(if(lt(N,60),N/30+0.008*sin(N*1.7),2/30*N-2)+if(gte(N,41),0.4,0))/TB'";
    let encode = ["-fps_mode", "passthrough", "-enc_time_base", "1/1000", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "2"];
    lavfi("testsrc2=size=64x48:rate=30:duration=3", &[&["-vf", timing][..], &encode].concat(), &path);
    let want = ffprobe_pts(&path);
    assert_eq!(want.len(), 90);
    let got = decode_all(path.to_str().unwrap(), &OpenOptions::default()).unwrap();
    assert_eq!(got.pts.len(), want.len());
    for (i, (a, b)) in got.pts.iter().zip(&want).enumerate() {
        assert!((a - b).abs() < 1e-6, "frame {i}: pts {a} vs ffprobe {b}");
    }
    // The clip really is variable: intervals from 25 to 67 ms plus the gap.
    let iv: Vec<f64> = want.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(iv.iter().any(|&d| d < 0.028) && iv.iter().any(|&d| d > 0.06) && iv.iter().any(|&d| d > 0.4));

    for model_fps in [25.0, 5.0, 50.0] {
        // Selection made by the Resampler on our pts...
        let mut r = Resampler::new(model_fps);
        let mut chosen = Vec::new();
        for (i, &t) in got.pts.iter().enumerate() {
            for _ in 0..r.feed(t) {
                chosen.push(i);
            }
        }
        // ...against the documented rule evaluated per step on ffprobe's pts: step n (time t0 + n/fps) is fed
        // by the first frame i with t_n < p_i + h_i, h_i = min(p_i - p_{i-1}, p_{i-1} - p_{i-2}) / 2.
        let end = |i: usize| -> f64 {
            match i {
                0 => want[0],
                1 => want[1] + (want[1] - want[0]) / 2.0,
                _ => want[i] + (want[i] - want[i - 1]).min(want[i - 1] - want[i - 2]) / 2.0,
            }
        };
        let mut expect = vec![0usize];
        for n in 1.. {
            let t = want[0] + n as f64 / model_fps;
            match (0..want.len()).find(|&i| t < end(i) - 1e-9) {
                Some(i) => expect.push(i),
                None => break,
            }
        }
        assert_eq!(chosen, expect, "model fps {model_fps}");
        // Where the intervals around a chosen frame are steady, it is the frame nearest in time.
        for (n, &i) in chosen.iter().enumerate() {
            let t = want[0] + n as f64 / model_fps;
            let steady = i >= 2 && i + 1 < want.len() && {
                let (a, b) = (want[i] - want[i - 1], want[i + 1] - want[i]);
                (a - b).abs() < 0.002 && (want[i - 1] - want[i - 2] - a).abs() < 0.002
            };
            if steady {
                let best = (0..want.len()).min_by(|&a, &b| (want[a] - t).abs().partial_cmp(&(want[b] - t).abs()).unwrap()).unwrap();
                assert!((want[best] - t).abs() + 0.002 >= (want[i] - t).abs(), "step {n}: frame {i} vs nearest {best}");
            }
        }
    }
}

/// The model's timeline as a selector, skipping allowed or not; records what it was fed.
struct Timeline {
    resampler: Resampler,
    allow_skip: bool,
    fed: Vec<(f64, usize)>,
}

impl FrameSelector for Timeline {
    fn feed(&mut self, pts: f64) -> bool {
        let steps = self.resampler.feed(pts);
        self.fed.push((pts, steps));
        steps > 0
    }
    fn may_need(&self, pts: f64, before: f64) -> bool {
        !self.allow_skip || self.resampler.may_feed(pts, before)
    }
}

/// A frame as the timeline saw it: index, pts, steps fed, RGB hash when converted.
type Selected = (u64, f64, usize, Option<String>);

/// Every frame of `path` through the timeline of a `model_fps` model, and the frames skipped.
fn select(path: &Path, model_fps: f64, allow_skip: bool) -> (Vec<Selected>, u64) {
    let mut src = open(path.to_str().unwrap(), &OpenOptions::default()).unwrap();
    let mut sel = Timeline { resampler: Resampler::new(model_fps), allow_skip, fed: Vec::new() };
    let mut frame = Frame { index: 0, pts: 0.0, width: 0, height: 0, rgb: Vec::new() };
    let mut out = Vec::new();
    while let Some(converted) = src.next_frame_if(&mut frame, &mut sel).unwrap() {
        let &(pts, steps) = sel.fed.last().unwrap();
        assert_eq!(pts, frame.pts);
        assert_eq!(sel.fed.len() as u64, frame.index + 1, "one feed per frame, in order");
        // Without pixels only when no step needs them (a skipped frame too).
        assert_eq!(converted, steps > 0, "frame {}", frame.index);
        out.push((frame.index, frame.pts, steps, converted.then(|| sha(&frame.rgb))));
    }
    (out, src.frames_skipped())
}

#[test]
fn decoder_skips_only_frames_the_timeline_does_not_need() {
    let dir = tmp();
    let cfr = p(&dir, "bframes.mp4");
    lavfi("testsrc2=size=96x64:rate=30:duration=4", &["-c:v", "libx264", "-bf", "3", "-b_strategy", "0", "-pix_fmt", "yuv420p"], &cfr);
    let mpeg4 = p(&dir, "bframes.avi");
    lavfi("testsrc2=size=96x64:rate=25:duration=4", &["-c:v", "mpeg4", "-bf", "2", "-q:v", "5"], &mpeg4);
    // Jittered 30 fps, a gap, then 15 fps (as in the VFR test), with B-frames.
    let vfr = p(&dir, "vfr-bframes.mkv");
    let timing = "settb=1/1000,setpts='(if(lt(N,60),N/30+0.008*sin(N*1.7),2/30*N-2)+if(gte(N,41),0.4,0))/TB'";
    lavfi(
        "testsrc2=size=64x48:rate=30:duration=3",
        &[
            "-vf",
            timing,
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "1/1000",
            "-c:v",
            "libx264",
            "-bf",
            "3",
            "-b_strategy",
            "0",
            "-pix_fmt",
            "yuv420p",
        ],
        &vfr,
    );
    for path in [&cfr, &mpeg4, &vfr] {
        let name = path.file_name().unwrap().to_string_lossy();
        let mut skipped_at_low_rates = 0;
        for model_fps in [30.0 / 12.0, 5.0, 12.0, 25.0, 30.0] {
            let (all, none_skipped) = select(path, model_fps, false);
            assert_eq!(none_skipped, 0);
            let (with_skips, skipped) = select(path, model_fps, true);
            assert_eq!(with_skips, all, "{name} at {model_fps} fps: same frames, steps and pixels");
            if model_fps <= 5.0 {
                skipped_at_low_rates += skipped;
            }
        }
        assert!(skipped_at_low_rates > 0, "{name}: nothing was skipped");
    }
    // Interlaced video (a field may come in a packet of its own): nothing is skipped.
    let interlaced = p(&dir, "interlaced.ts");
    lavfi(
        "testsrc2=size=96x64:rate=25:duration=2",
        &["-c:v", "libx264", "-bf", "3", "-flags", "+ildct+ilme", "-top", "1", "-pix_fmt", "yuv420p"],
        &interlaced,
    );
    let (all, _) = select(&interlaced, 2.5, false);
    assert_eq!(select(&interlaced, 2.5, true), (all, 0), "interlaced: no frame skipped");
}

fn raw_opts(w: u32, h: u32, pix: &str, fps: Option<f64>) -> OpenOptions {
    OpenOptions { raw: Some(RawVideo { width: w, height: h, pix_fmt: pix.into() }), fps, format: None }
}

#[test]
fn raw_and_y4m_files() {
    let dir = tmp();
    let (w, h) = (97usize, 55usize);
    let lavfi_src = format!("testsrc2=size=96x54:rate=25:duration=0.32,scale={w}:{h}");
    // rgb24: bytes pass through unchanged.
    let rgb = p(&dir, "f.rgb");
    lavfi(&lavfi_src, &["-f", "rawvideo", "-pix_fmt", "rgb24"], &rgb);
    let bytes = std::fs::read(&rgb).unwrap();
    let frames: Vec<String> = bytes.chunks(w * h * 3).map(sha).collect();
    assert_eq!(frames.len(), 8);
    let mut src = open(rgb.to_str().unwrap(), &raw_opts(w as u32, h as u32, "rgb24", Some(12.5))).unwrap();
    assert_eq!(src.info().frames, Some(8));
    assert_eq!(src.info().codec, "rawvideo");
    let mut f = Frame::default();
    let mut n = 0;
    while src.next_frame(&mut f).unwrap() {
        assert_eq!(sha(&f.rgb), frames[n]);
        assert_eq!(f.pts, n as f64 / 12.5);
        n += 1;
    }
    assert_eq!(n, 8);

    // yuv420p, gray, bgr24: converted as the CLI converts untagged raw input.
    for pix in ["yuv420p", "gray", "bgr24", "nv12"] {
        let raw = p(&dir, &format!("f.{pix}"));
        ffmpeg(&["-f", "lavfi", "-i", &lavfi_src, "-f", "rawvideo", "-pix_fmt", pix, raw.to_str().unwrap()]);
        let got = decode_all(raw.to_str().unwrap(), &raw_opts(w as u32, h as u32, pix, Some(25.0))).unwrap();
        let size = format!("{w}x{h}");
        let want = cli_rgb_hashes(&["-f", "rawvideo", "-pix_fmt", pix, "-s", &size, "-r", "25"], &raw, w, h);
        assert_eq!(want.len(), 8);
        assert_eq!(got.hashes, want, "raw {pix}");
    }

    // y4m by path is probed by libavformat.
    let y4m = p(&dir, "f.y4m");
    lavfi(&lavfi_src, &["-pix_fmt", "yuv444p", "-f", "yuv4mpegpipe"], &y4m);
    let got = decode_all(y4m.to_str().unwrap(), &OpenOptions::default()).unwrap();
    assert_eq!(got.hashes, cli_rgb_hashes(&[], &y4m, w, h));

    // A torn last y4m frame follows the raw rule: the whole frames, then an error naming the torn one.
    let whole = std::fs::read(&y4m).unwrap();
    let frame_bytes = "FRAME\n".len() + w * h * 3;
    for cut in [100, 3, frame_bytes - 1] {
        let torn = p(&dir, "torn.y4m");
        std::fs::write(&torn, &whole[..whole.len() - cut]).unwrap();
        let mut src = open(torn.to_str().unwrap(), &OpenOptions::default()).unwrap();
        for i in 0..7 {
            assert!(src.next_frame(&mut f).unwrap(), "cut {cut}: frame {i}");
        }
        let e = src.next_frame(&mut f).unwrap_err();
        assert_eq!(kind_of(&e), ErrorKind::Data, "cut {cut}: {e}");
        assert!(e.to_string().contains("frame 7 is torn"), "cut {cut}: {e}");
    }
    // Cut exactly between frames: a clean end.
    let clean = p(&dir, "clean.y4m");
    std::fs::write(&clean, &whole[..whole.len() - frame_bytes]).unwrap();
    assert_eq!(decode_all(clean.to_str().unwrap(), &OpenOptions::default()).unwrap().hashes.len(), 7);

    // A short last frame is an error naming it.
    let mut short = bytes.clone();
    short.truncate(5 * w * h * 3 + 100);
    let trunc = p(&dir, "short.rgb");
    std::fs::write(&trunc, &short).unwrap();
    let mut src = open(trunc.to_str().unwrap(), &raw_opts(w as u32, h as u32, "rgb24", Some(25.0))).unwrap();
    for _ in 0..5 {
        assert!(src.next_frame(&mut f).unwrap());
    }
    let e = src.next_frame(&mut f).unwrap_err();
    assert_eq!(kind_of(&e), ErrorKind::Data);
    assert!(e.to_string().contains("frame 5"), "{e}");
    assert!(e.to_string().contains("100 of"), "{e}");
    assert!(!src.next_frame(&mut f).unwrap());

    // A size that does not match the data: every frame is whole until the tail.
    let e = decode_all(rgb.to_str().unwrap(), &raw_opts(100, 100, "rgb24", Some(25.0))).unwrap_err();
    assert_eq!(kind_of(&e), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains("frame 4"), "{e}");

    // Bad flags.
    let rgbs = rgb.to_str().unwrap();
    for (opts, what) in [
        (raw_opts(0, 10, "rgb24", Some(25.0)), "zero width"),
        (raw_opts(10, 0, "rgb24", Some(25.0)), "zero height"),
        (raw_opts(100_000, 100_000, "rgb24", Some(25.0)), "absurd size"),
        (raw_opts(16384, 16384, "rgba64le", Some(25.0)), "absurd bytes"),
        (raw_opts(10, 10, "rgb25", Some(25.0)), "unknown pixel format"),
        (raw_opts(10, 10, "vaapi", Some(25.0)), "hardware pixel format"),
        (raw_opts(10, 10, "rgb24", None), "no fps"),
        (raw_opts(10, 10, "rgb24", Some(0.0)), "zero fps"),
        (raw_opts(10, 10, "rgb24", Some(f64::NAN)), "NaN fps"),
    ] {
        let e = open(rgbs, &opts).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(kind_of(&e), ErrorKind::Usage, "{what}: {e}");
    }
    let e = open(p(&dir, "missing.rgb").to_str().unwrap(), &raw_opts(10, 10, "rgb24", Some(25.0))).err().unwrap();
    assert_eq!(kind_of(&e), ErrorKind::NoInput);
}

#[test]
fn bad_inputs_are_classified_errors() {
    let dir = tmp();
    let open_err = |path: &Path| -> anyhow::Error {
        match decode_all(path.to_str().unwrap(), &OpenOptions::default()) {
            Ok(d) => panic!("{}: decoded {} frames", path.display(), d.hashes.len()),
            Err(e) => e,
        }
    };

    let e = open_err(&p(&dir, "missing.mp4"));
    assert_eq!(kind_of(&e), ErrorKind::NoInput, "{e}");
    assert!(e.to_string().contains("no such file"), "{e}");
    let e = open_err(dir.path());
    assert_eq!(kind_of(&e), ErrorKind::NoInput, "{e}");

    let empty = p(&dir, "empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(kind_of(&open_err(&empty)), ErrorKind::Data);

    let text = p(&dir, "notes.mp4");
    std::fs::write(&text, "this is not a video\n".repeat(100)).unwrap();
    assert_eq!(kind_of(&open_err(&text)), ErrorKind::Data);

    let noise = p(&dir, "noise.mkv");
    let mut x: u32 = 12345;
    let bytes: Vec<u8> = (0..200_000)
        .map(|_| {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&noise, &bytes).unwrap();
    assert_eq!(kind_of(&open_err(&noise)), ErrorKind::Data);

    let wav = p(&dir, "tone.wav");
    lavfi("sine=duration=0.5", &[], &wav);
    let e = open_err(&wav);
    assert_eq!(kind_of(&e), ErrorKind::Data);
    assert!(e.to_string().contains("no video stream"), "{e}");

    // mp4 with its moov at the end, cut in half: no moov.
    let mp4 = p(&dir, "clip.mp4");
    lavfi("testsrc2=size=320x240:rate=25:duration=2", &["-c:v", "libx264", "-pix_fmt", "yuv420p"], &mp4);
    let full = std::fs::read(&mp4).unwrap();
    let cut = p(&dir, "moovless.mp4");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    assert_eq!(kind_of(&open_err(&cut)), ErrorKind::Data);
    // Only the header of a file.
    let head = p(&dir, "head.mp4");
    std::fs::write(&head, &full[..64]).unwrap();
    assert_eq!(kind_of(&open_err(&head)), ErrorKind::Data);

    // A faststart mp4 (index first), to cut and to damage.
    let fast = p(&dir, "fast.mp4");
    ffmpeg(&["-i", mp4.to_str().unwrap(), "-c", "copy", "-movflags", "+faststart", fast.to_str().unwrap()]);
    let full = std::fs::read(&fast).unwrap();
    let half = p(&dir, "half.mp4");
    std::fs::write(&half, &full[..full.len() / 2]).unwrap();
    // Faststart mp4 cut in half: the frames present are delivered, then the truncation is a Data error.
    let mut src = open(half.to_str().unwrap(), &OpenOptions::default()).unwrap();
    let mut f = Frame::default();
    let mut n = 0;
    let e = loop {
        match src.next_frame(&mut f) {
            Ok(true) => n += 1,
            Ok(false) => panic!("truncation not reported after {n} frames"),
            Err(e) => break e,
        }
    };
    assert!(n > 5 && n < 50, "{n} frames");
    assert_eq!(kind_of(&e), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(!src.next_frame(&mut f).unwrap());

    // Garbage in the middle of the coded data: no panic, whatever FFmpeg can still decode.
    let mut damaged = std::fs::read(&fast).unwrap();
    let mid = damaged.len() / 2;
    for b in &mut damaged[mid..mid + 4000] {
        *b ^= 0x5a;
    }
    let bad = p(&dir, "damaged.mp4");
    std::fs::write(&bad, &damaged).unwrap();
    match decode_all(bad.to_str().unwrap(), &OpenOptions::default()) {
        Ok(d) => assert!(d.hashes.len() >= 40, "{} frames", d.hashes.len()),
        Err(e) => assert_eq!(kind_of(&e), ErrorKind::Data, "{e}"),
    }

    // A forced demuxer takes names that are not paths.
    let opts = OpenOptions { format: Some("lavfi".into()), ..Default::default() };
    let d = decode_all("testsrc2=size=64x48:rate=25:duration=0.2", &opts).unwrap();
    assert_eq!((d.hashes.len(), d.size), (5, (64, 48)));

    // Bad options and unreachable URLs.
    let opts = OpenOptions { format: Some("no-such-format".into()), ..Default::default() };
    assert_eq!(kind_of(&open(mp4.to_str().unwrap(), &opts).err().unwrap()), ErrorKind::Usage);
    let e = open("http://127.0.0.1:9/clip.mp4", &OpenOptions::default()).err().unwrap();
    assert_eq!(kind_of(&e), ErrorKind::NoInput, "{e}");
    let e = open("/dev/video-none", &OpenOptions::default()).err().unwrap();
    assert_eq!(kind_of(&e), ErrorKind::NoInput, "{e}");
}
