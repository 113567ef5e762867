//! Video input: files, stdin, devices and URLs, decoded to packed RGB24 frames at source size.
//!
//! Everything FFmpeg can demux and decode goes through libavformat/libavcodec (`av`); raw frames
//! (`--raw WxH`) are read by our own reader (`raw`) so that a short last frame is reported exactly.
//! Colour conversion to RGB24 is swscale's, configured like the ffmpeg CLI (`convert`), so the bytes
//! equal `ffmpeg -i INPUT -f rawvideo -pix_fmt rgb24 -` for the same input.
//!
//! Errors (classified for the exit code, one message each, never a panic or a swscale abort):
//! * `NoInput`: missing file, a directory, permission denied, unreachable URL or device;
//! * `Usage`: unknown `--format`, bad raw geometry (zero, a side over 16384, a frame over 1 GiB), unknown or
//!   hardware pixel format, missing or non-positive `--fps` for raw input;
//! * `Data`: empty, corrupt, non-video files, no video stream, no decodable frame, an mp4 without its index
//!   (moov) or an ordinary mp4 piped to stdin, a raw stream whose last frame is short (the message names the
//!   frame), and truncated files: after the frames that are there, `next_frame` fails if the demuxer
//!   reported an error or the file holds clearly fewer frames (or less time) than its header declares.
//!   Containers that declare neither (Matroska/WebM) end quietly where the data ends, as the ffmpeg CLI does.
//!   Packets the decoder rejects are skipped, as the ffmpeg CLI does.
//!
//! `request_interrupt` stops blocking reads (stdin, network, devices); `next_frame` then reports the end.

mod av;
mod convert;
mod orient;
mod raw;

pub use orient::Orientation;

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{ErrorKind, classified};

/// How to open an input; all fields optional.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Raw frames of a fixed size and pixel format (no container); needs `fps`.
    pub raw: Option<RawVideo>,
    /// Frame rate of raw input; for other inputs only a fallback when the input carries no timestamps.
    pub fps: Option<f64>,
    /// Force a libavformat demuxer (`mpegts`, `v4l2`, `yuv4mpegpipe`, …) instead of probing.
    pub format: Option<String>,
}

/// Geometry and layout of raw frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawVideo {
    pub width: u32,
    pub height: u32,
    /// An FFmpeg pixel format name: `rgb24` (the usual), `bgr24`, `gray`, `yuv420p`, `nv12`, …
    pub pix_fmt: String,
}

impl RawVideo {
    pub fn rgb24(width: u32, height: u32) -> Self {
        RawVideo { width, height, pix_fmt: "rgb24".into() }
    }
}

/// What is known about an input once it is open.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SourceInfo {
    pub width: u32,
    pub height: u32,
    /// Nominal frame rate (the stream's average rate), if the input declares one.
    pub fps: Option<f64>,
    /// Number of frames, if the container declares it.
    pub frames: Option<u64>,
    /// Duration in seconds, if known.
    pub duration: Option<f64>,
    /// Decoder name (`h264`, `vp9`, `rawvideo`, …).
    pub codec: String,
    /// Demuxer name (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, `rawvideo`, …).
    pub container: String,
    /// True for stdin, devices and URLs: no known end, no progress bar with an ETA.
    pub is_stream: bool,
}

/// One decoded frame, RGB24 packed rows (width*3 bytes, no padding).
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// 0-based index among the frames of the input (in presentation order, skipped ones included).
    pub index: u64,
    /// Presentation time in seconds, as the container stamps it (not shifted to start at 0).
    pub pts: f64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

pub trait FrameSource: Send {
    fn info(&self) -> &SourceInfo;
    /// Decode the next frame into `frame` (its buffer is reused); Ok(false) at the end of the input.
    fn next_frame(&mut self, frame: &mut Frame) -> anyhow::Result<bool>;
    /// Decode the next frame but convert its pixels only when `selector.feed(pts)` says they are
    /// needed: frames the model's timeline drops cost no colour conversion, and a source whose decoder
    /// can skip frames that no other frame references skips those the selector certainly does not need
    /// ([`FrameSelector::may_need`]). Such a frame is still returned, in order, without pixels.
    /// `Some(true)`: `frame` is complete; `Some(false)`: only its index, pts and size are set; `None`
    /// at the end of the input.
    fn next_frame_if(&mut self, frame: &mut Frame, selector: &mut dyn FrameSelector) -> anyhow::Result<Option<bool>> {
        if !self.next_frame(frame)? {
            return Ok(None);
        }
        Ok(Some(selector.feed(frame.pts)))
    }
    /// Frames the decoder skipped so far (returned without pixels, never decoded).
    fn frames_skipped(&self) -> u64 {
        0
    }
    /// The frame last returned as the decoder output it (its own pixel format and size, timestamps
    /// in the given time base), unless it came without pixels: what `--overlay` draws on for a live
    /// input (docs/visual.md, "The live preview"). `None` for sources that decode nothing (raw frames).
    fn decoded(&self) -> Option<(&ffmpeg_next::frame::Video, ffmpeg_next::Rational)> {
        None
    }
}

/// Decides which frames a consumer needs, fed the frames' timestamps in presentation order.
pub trait FrameSelector {
    /// The next frame (in presentation order) is at `pts` seconds: whether its pixels are needed.
    /// Called for every frame of the input, those the decoder skipped included.
    fn feed(&mut self, pts: f64) -> bool;
    /// Whether a frame at `pts`, whose closest earlier frame is at `before` or later, may be needed
    /// when it comes to be fed: `false` only when it certainly will not be (its decoding can then be
    /// skipped).
    fn may_need(&self, _pts: f64, _before: f64) -> bool {
        true
    }
}

/// A closure is a selector that never allows skipping.
impl<F: FnMut(f64) -> bool> FrameSelector for F {
    fn feed(&mut self, pts: f64) -> bool {
        self(pts)
    }
}

static VERBOSE_FFMPEG: AtomicBool = AtomicBool::new(false);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ask every open source to stop: blocking reads return and `next_frame` reports the end of the input
/// (Ok(false)), so the caller can still write its summary. Only an atomic store, so it is safe to call
/// from a signal handler.
pub fn request_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether `request_interrupt` was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
static INIT: Once = Once::new();

/// Let FFmpeg print its own warnings and errors on stderr (by default it is silenced, so that a bad
/// input gives our one error line, not FFmpeg's chatter). Call before `open`.
pub fn set_ffmpeg_verbose(verbose: bool) {
    VERBOSE_FFMPEG.store(verbose, Ordering::Relaxed);
    if INIT.is_completed() {
        set_log_level();
    }
}

fn set_log_level() {
    use ffmpeg_next::util::log::{Level, set_level};
    set_level(if VERBOSE_FFMPEG.load(Ordering::Relaxed) { Level::Warning } else { Level::Quiet });
}

/// Registers formats and devices once, and sets FFmpeg's log level.
pub(crate) fn init_ffmpeg() {
    INIT.call_once(|| {
        // With ffmpeg >= 4 this only registers devices; it cannot fail in a way we could act on.
        let _ = ffmpeg_next::init();
        set_log_level();
    });
}

/// `input`: a path, `-` for stdin, a device path (/dev/video0) or a URL (rtsp://, http://…).
///
/// With `opts.raw`, `input` is `-` or a file of concatenated raw frames. Errors are classified:
/// a missing file is `NoInput`, undecodable content `Data`, bad options `Usage`.
/// A local name is any bytes but NUL (not necessarily UTF-8), and is opened as it is.
pub fn open(input: impl AsRef<std::ffi::OsStr>, opts: &OpenOptions) -> anyhow::Result<Box<dyn FrameSource>> {
    let input = input.as_ref();
    init_ffmpeg();
    if input.is_empty() {
        return Err(classified(ErrorKind::Usage, "empty input name"));
    }
    if crate::paths::as_bytes(input).contains(&0) {
        return Err(classified(ErrorKind::Usage, "input name contains a NUL byte"));
    }
    if let Some(raw) = &opts.raw {
        if opts.format.as_deref().is_some_and(|f| f != "rawvideo") {
            return Err(classified(ErrorKind::Usage, "--raw cannot be combined with --format"));
        }
        return Ok(Box::new(raw::RawSource::open(input, raw, opts.fps)?));
    }
    if let Some(fps) = opts.fps
        && !(fps.is_finite() && fps > 0.0)
    {
        return Err(classified(ErrorKind::Usage, format!("--fps must be a positive number, got {fps}")));
    }
    Ok(Box::new(av::AvSource::open(input, opts)?))
}

/// True when `input` names a URL rather than a local path.
fn is_url(input: &str) -> bool {
    match input.find("://") {
        Some(i) => i > 0 && input[..i].chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'),
        None => false,
    }
}

/// Checks a local path before handing it to a reader, so that "no such file" is `NoInput`.
fn check_local_path(input: &std::ffi::OsStr) -> anyhow::Result<std::fs::Metadata> {
    let input_path = std::path::Path::new(input);
    let input = input_path.display();
    match std::fs::metadata(input_path) {
        Ok(m) if m.is_dir() => Err(classified(ErrorKind::NoInput, format!("{input}: is a directory, not a video"))),
        Ok(m) => Ok(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(classified(ErrorKind::NoInput, format!("{input}: no such file"))),
        Err(e) => Err(classified(ErrorKind::NoInput, format!("{input}: cannot open: {e}"))),
    }
}
