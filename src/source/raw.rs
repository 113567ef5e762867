//! Raw frames (no container) from stdin or a file, read by us rather than libavformat so that a
//! short last frame is an error that names the frame, and never a silently padded picture.

use std::io::Read;
use std::os::raw::c_int;
use std::ptr;
use std::str::FromStr;

use ffmpeg_next::ffi::*;
use ffmpeg_next::format::Pixel;

use super::convert::{Picture, RgbConverter};
use super::{Frame, FrameSource, RawVideo, SourceInfo};
use crate::error::{ErrorKind, classified};

/// Largest side we accept (FFmpeg's own limit for most codecs is 16384 too).
const MAX_SIDE: u32 = 16384;
/// Largest raw frame we accept, in bytes: guards against absurd `--raw` sizes before allocating.
const MAX_FRAME_BYTES: usize = 1 << 30;

pub(crate) struct RawSource {
    info: SourceInfo,
    reader: Box<dyn Read + Send>,
    format: AVPixelFormat,
    frame_bytes: usize,
    fps: f64,
    /// Holds one frame in its own pixel format (unused for rgb24, which is read in place).
    buf: Vec<u8>,
    conv: RgbConverter,
    next_index: u64,
    done: bool,
}

impl RawSource {
    pub fn open(input: &std::ffi::OsStr, raw: &RawVideo, fps: Option<f64>) -> anyhow::Result<Self> {
        let fps = match fps {
            Some(f) if f.is_finite() && f > 0.0 => f,
            Some(f) => {
                return Err(classified(ErrorKind::Usage, format!("--fps must be a positive number, got {f}")));
            }
            None => {
                return Err(classified(ErrorKind::Usage, "raw input needs a frame rate (--fps)"));
            }
        };
        let (w, h) = (raw.width, raw.height);
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
            return Err(classified(ErrorKind::Usage, format!("raw frame size {w}x{h} is out of range (each side 1..={MAX_SIDE})")));
        }
        let format = parse_pixel_format(&raw.pix_fmt)?;
        // SAFETY: a pure computation on a pixel format that has a descriptor (checked by the parse).
        let frame_bytes = unsafe { av_image_get_buffer_size(format, w as c_int, h as c_int, 1) };
        if frame_bytes <= 0 || frame_bytes as usize > MAX_FRAME_BYTES {
            return Err(classified(ErrorKind::Usage, format!("raw frame size {w}x{h} {} is out of range", raw.pix_fmt)));
        }
        let frame_bytes = frame_bytes as usize;

        let (reader, is_stream, frames): (Box<dyn Read + Send>, bool, Option<u64>) = if input == "-" {
            (Box::new(std::io::stdin()), true, None)
        } else {
            let meta = super::check_local_path(input)?;
            let file = std::fs::File::open(input)
                .map_err(|e| classified(ErrorKind::NoInput, format!("{}: cannot open: {e}", std::path::Path::new(input).display())))?;
            let frames = meta.is_file().then(|| meta.len() / frame_bytes as u64);
            (Box::new(std::io::BufReader::with_capacity(1 << 20, file)), !meta.is_file(), frames)
        };
        let info = SourceInfo {
            width: w,
            height: h,
            fps: Some(fps),
            frames,
            duration: frames.map(|n| n as f64 / fps),
            codec: "rawvideo".into(),
            container: "rawvideo".into(),
            is_stream,
        };
        Ok(RawSource { info, reader, format, frame_bytes, fps, buf: Vec::new(), conv: RgbConverter::new(), next_index: 0, done: false })
    }
}

/// An FFmpeg pixel format name the scaler can read; anything else is a usage error.
fn parse_pixel_format(name: &str) -> anyhow::Result<AVPixelFormat> {
    let bad = || classified(ErrorKind::Usage, format!("unknown or unsupported raw pixel format '{name}'"));
    let pix = Pixel::from_str(name).map_err(|_| bad())?;
    let fmt: AVPixelFormat = pix.into();
    if fmt == AVPixelFormat::AV_PIX_FMT_NONE {
        return Err(bad());
    }
    // SAFETY: `av_pix_fmt_desc_get` takes any format and returns null or a static descriptor.
    let desc = unsafe { av_pix_fmt_desc_get(fmt) };
    // Hardware and bitstream formats have no bytes we could read.
    if desc.is_null()
        // SAFETY: `desc` is a non-null static descriptor (checked just before).
        || unsafe { (*desc).flags }
            & (AV_PIX_FMT_FLAG_HWACCEL as u64 | AV_PIX_FMT_FLAG_BITSTREAM as u64)
            != 0
        // SAFETY: a lookup that takes any format.
        || unsafe { sws_isSupportedInput(fmt) } == 0
    {
        return Err(bad());
    }
    Ok(fmt)
}

/// Reads until `buf` is full or the input ends; returns the number of bytes read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && !super::interrupted() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl FrameSource for RawSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self, frame: &mut Frame) -> anyhow::Result<bool> {
        if self.done {
            return Ok(false);
        }
        let index = self.next_index;
        let (w, h) = (self.info.width, self.info.height);
        let direct = self.format == AVPixelFormat::AV_PIX_FMT_RGB24;
        let target = if direct {
            frame.rgb.resize(self.frame_bytes, 0);
            &mut frame.rgb[..]
        } else {
            self.buf.resize(self.frame_bytes, 0);
            &mut self.buf[..]
        };
        if super::interrupted() {
            self.done = true;
            return Ok(false);
        }
        let got = match read_full(&mut *self.reader, target) {
            Ok(n) => n,
            Err(_) if super::interrupted() => 0,
            Err(e) => {
                return Err(classified(ErrorKind::Data, format!("raw input: reading frame {index} failed: {e}")));
            }
        };
        if got == 0 || (got < self.frame_bytes && super::interrupted()) {
            self.done = true;
            return Ok(false);
        }
        if got < self.frame_bytes {
            self.done = true;
            return Err(classified(
                ErrorKind::Data,
                format!(
                    "raw input: frame {index} is truncated: {got} of {} bytes ({w}x{h} {}); is --raw/--pix-fmt right?",
                    self.frame_bytes,
                    super::convert::pixel_format_name(self.format)
                ),
            ));
        }
        if !direct {
            let mut data = [ptr::null_mut::<u8>(); 4];
            let mut linesize = [0 as c_int; 4];
            // SAFETY: `buf` holds `frame_bytes` = av_image_get_buffer_size(format, w, h, 1) bytes, exactly
            // what the plane layout with alignment 1 that this fills in covers.
            unsafe {
                av_image_fill_arrays(data.as_mut_ptr(), linesize.as_mut_ptr(), self.buf.as_ptr(), self.format, w as c_int, h as c_int, 1);
            }
            let pic = Picture {
                data: data.map(|p| p as *const u8),
                linesize,
                format: self.format,
                width: w as c_int,
                height: h as c_int,
                color_space: AVColorSpace::AVCOL_SPC_UNSPECIFIED as c_int,
                color_range: AVColorRange::AVCOL_RANGE_UNSPECIFIED as c_int,
            };
            // SAFETY: the planes lie in `buf`, filled in just above for this format and size, which is
            // not touched again before the call returns.
            unsafe { self.conv.convert(&pic, &mut frame.rgb)? };
        }
        frame.index = index;
        frame.pts = index as f64 / self.fps;
        frame.width = w;
        frame.height = h;
        self.next_index += 1;
        Ok(true)
    }
}
