//! `open("-")`: real stdin, a pipe from a child process put on this process's fd 0 (one test function, so
//! nothing else in this binary reads stdin meanwhile). y4m (probed), mpegts and fragmented mp4 through
//! libavformat; raw frames through our reader, including a truncated last frame.

use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};

use coinfer::error::{ErrorKind, kind_of};
use coinfer::source::{Frame, OpenOptions, RawVideo, open};
mod common;
use common::{cli_rgb_hashes, lavfi, sha};

unsafe extern "C" {
    fn dup2(oldfd: i32, newfd: i32) -> i32;
}

/// Runs `cmd` with its stdout on our stdin (fd 0).
fn pipe_to_stdin(cmd: &str, args: &[&str]) -> Child {
    let mut child = Command::new(cmd).args(args).stdout(Stdio::piped()).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    // SAFETY: dup2 on two open descriptors (the pipe's read end, and fd 0); nothing in this binary reads fd 0
    // while it is replaced (one test function).
    assert_eq!(unsafe { dup2(out.as_raw_fd(), 0) }, 0);
    drop(out); // fd 0 keeps the pipe open
    child
}

fn decode_stdin(opts: &OpenOptions) -> anyhow::Result<(Vec<String>, bool)> {
    let mut src = open("-", opts)?;
    let is_stream = src.info().is_stream;
    let mut f = Frame::default();
    let mut hashes = Vec::new();
    while src.next_frame(&mut f)? {
        hashes.push(sha(&f.rgb));
    }
    Ok((hashes, is_stream))
}

#[test]
fn stdin_y4m_mpegts_fragmented_mp4_and_raw() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (97usize, 55usize);
    let lavfi_src = format!("testsrc2=size=96x54:rate=25:duration=0.4,scale={w}:{h}");
    let path = |n: &str| dir.path().join(n);

    let y4m = path("a.y4m");
    lavfi(&lavfi_src, &["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe"], &y4m);
    let ts = path("a.ts");
    lavfi("testsrc2=size=96x54:rate=25:duration=0.4", &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mpegts"], &ts);
    let frag = path("a.mp4");
    let h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"];
    lavfi("testsrc2=size=96x54:rate=25:duration=0.4", &[&h264[..], &["-movflags", "frag_keyframe+empty_moov"]].concat(), &frag);
    let raw = path("a.rgb");
    lavfi(&lavfi_src, &["-f", "rawvideo", "-pix_fmt", "rgb24"], &raw);

    for (file, (fw, fh)) in [(&y4m, (w, h)), (&ts, (96, 54)), (&frag, (96, 54))] {
        let mut child = pipe_to_stdin("cat", &[file.to_str().unwrap()]);
        let (got, is_stream) = decode_stdin(&OpenOptions::default()).unwrap_or_else(|e| panic!("{file:?}: {e:#}"));
        child.wait().unwrap();
        assert!(is_stream);
        assert_eq!(got.len(), 10, "{file:?}");
        assert_eq!(got, cli_rgb_hashes(&[], file, fw, fh), "{file:?}");
    }

    // mpegts with the format forced.
    let mut child = pipe_to_stdin("cat", &[ts.to_str().unwrap()]);
    let opts = OpenOptions { format: Some("mpegts".into()), ..Default::default() };
    let (got, _) = decode_stdin(&opts).unwrap();
    child.wait().unwrap();
    assert_eq!(got.len(), 10);

    // Raw rgb24: the bytes themselves.
    let bytes = std::fs::read(&raw).unwrap();
    let want: Vec<String> = bytes.chunks(w * h * 3).map(sha).collect();
    let raw_opts = OpenOptions { raw: Some(RawVideo::rgb24(w as u32, h as u32)), fps: Some(25.0), format: None };
    let mut child = pipe_to_stdin("cat", &[raw.to_str().unwrap()]);
    let (got, is_stream) = decode_stdin(&raw_opts).unwrap();
    child.wait().unwrap();
    assert!(is_stream);
    assert_eq!(got, want);

    // Truncated raw: 3 whole frames and 1000 bytes of the 4th.
    let n = (3 * w * h * 3 + 1000).to_string();
    let mut child = pipe_to_stdin("head", &["-c", &n, raw.to_str().unwrap()]);
    let mut src = open("-", &raw_opts).unwrap();
    let mut f = Frame::default();
    for w in &want[..3] {
        assert!(src.next_frame(&mut f).unwrap());
        assert_eq!(&sha(&f.rgb), w);
    }
    let e = src.next_frame(&mut f).unwrap_err();
    child.wait().unwrap();
    assert_eq!(kind_of(&e), ErrorKind::Data);
    assert!(e.to_string().contains("frame 3") && e.to_string().contains("1000 of 16005"), "{e}");

    // An ordinary mp4 (moov at the end) larger than the probe buffer cannot be read from a pipe: FFmpeg
    // reports no pixel format, which would abort the process inside swscale if it reached the scaler.
    let big = path("big.mp4");
    lavfi("testsrc2=size=320x240:rate=30:duration=60", &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], &big);
    let mut child = pipe_to_stdin("cat", &[big.to_str().unwrap()]);
    let e = decode_stdin(&OpenOptions::default()).unwrap_err();
    let _ = child.kill();
    child.wait().unwrap();
    assert_eq!(kind_of(&e), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains("fragmented mp4"), "{e}");

    // Nothing at all on stdin.
    let mut child = pipe_to_stdin("true", &[]);
    child.wait().unwrap();
    let e = decode_stdin(&OpenOptions::default()).unwrap_err();
    assert_eq!(kind_of(&e), ErrorKind::Data, "{e}");
    let mut child = pipe_to_stdin("true", &[]);
    child.wait().unwrap();
    let (got, _) = decode_stdin(&raw_opts).unwrap();
    assert!(got.is_empty());

    // Interrupt (last: the flag is global): an endless live y4m stream ends cleanly soon after the request.
    let mut child = pipe_to_stdin(
        "ffmpeg",
        &[
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=96x54:rate=25",
            "-f",
            "yuv4mpegpipe",
            "-",
        ],
    );
    let mut src = open("-", &OpenOptions::default()).unwrap();
    for _ in 0..3 {
        assert!(src.next_frame(&mut f).unwrap());
    }
    coinfer::source::request_interrupt();
    let t0 = std::time::Instant::now();
    let mut more = 0;
    while src.next_frame(&mut f).unwrap() {
        more += 1;
        assert!(more < 50, "still decoding after the interrupt");
    }
    assert!(t0.elapsed().as_secs_f64() < 2.0);
    assert!(!src.next_frame(&mut f).unwrap());
    let _ = child.kill();
    child.wait().unwrap();
}
