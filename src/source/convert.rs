//! Any pixel format → packed RGB24 at the same size, with swscale configured as the ffmpeg CLI's
//! auto-inserted scale filter configures it (FFmpeg 5.1 `vf_scale`): bicubic flags, the input matrix
//! from the frame's colour-space tag (BT.601 when the tag is missing or outside 1..=7), the input range
//! from the frame's range tag. That makes our bytes those of `ffmpeg -i X -f rawvideo -pix_fmt rgb24 -`.

use std::os::raw::c_int;
use std::ptr;

use ffmpeg_next::ffi::*;

use crate::error::{ErrorKind, classified};

/// A picture in FFmpeg's plane layout, borrowed from a decoded frame or a raw buffer.
pub(crate) struct Picture {
    pub data: [*const u8; 4],
    pub linesize: [c_int; 4],
    pub format: AVPixelFormat,
    pub width: c_int,
    pub height: c_int,
    pub color_space: AVColorSpace,
    pub color_range: AVColorRange,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    format: AVPixelFormat,
    width: c_int,
    height: c_int,
    color_space: AVColorSpace,
    color_range: AVColorRange,
}

/// Owns a swscale context and an aligned RGB24 frame, both reused while the input geometry stays.
pub(crate) struct RgbConverter {
    key: Option<Key>,
    sws: *mut SwsContext,
    out: *mut AVFrame,
}

// The raw pointers are owned exclusively by this struct; nothing else aliases them.
unsafe impl Send for RgbConverter {}

impl RgbConverter {
    pub fn new() -> Self {
        RgbConverter {
            key: None,
            sws: ptr::null_mut(),
            out: ptr::null_mut(),
        }
    }

    /// Converts `pic` into `rgb` (resized to width*height*3, rows packed).
    pub fn convert(&mut self, pic: &Picture, rgb: &mut Vec<u8>) -> anyhow::Result<()> {
        if pic.format == AVPixelFormat::AV_PIX_FMT_NONE {
            return Err(classified(
                ErrorKind::Data,
                "the video stream has no known pixel format (is the input complete?)",
            ));
        }
        if pic.width <= 0 || pic.height <= 0 {
            return Err(classified(
                ErrorKind::Data,
                format!("invalid frame size {}x{}", pic.width, pic.height),
            ));
        }
        let (w, h) = (pic.width as usize, pic.height as usize);
        let row = w * 3;
        rgb.resize(row * h, 0);
        if pic.format == AVPixelFormat::AV_PIX_FMT_RGB24 {
            copy_rows(pic.data[0], pic.linesize[0] as isize, row, h, rgb);
            return Ok(());
        }
        let key = Key {
            format: pic.format,
            width: pic.width,
            height: pic.height,
            color_space: pic.color_space,
            color_range: pic.color_range,
        };
        if self.key != Some(key) {
            self.setup(key)?;
        }
        unsafe {
            let out = &*self.out;
            let n = sws_scale(
                self.sws,
                pic.data.as_ptr(),
                pic.linesize.as_ptr(),
                0,
                pic.height,
                out.data.as_ptr(),
                out.linesize.as_ptr(),
            );
            if n != pic.height {
                return Err(classified(
                    ErrorKind::Data,
                    format!("colour conversion failed ({n} of {} rows)", pic.height),
                ));
            }
            copy_rows(out.data[0], out.linesize[0] as isize, row, h, rgb);
        }
        Ok(())
    }

    fn setup(&mut self, key: Key) -> anyhow::Result<()> {
        self.release();
        unsafe {
            // swscale asserts (aborting the process) on formats it cannot read: check first.
            if sws_isSupportedInput(key.format) == 0 {
                return Err(classified(
                    ErrorKind::Data,
                    format!(
                        "pixel format {} cannot be converted to RGB",
                        pixel_format_name(key.format)
                    ),
                ));
            }
            self.sws = sws_getContext(
                key.width,
                key.height,
                key.format,
                key.width,
                key.height,
                AVPixelFormat::AV_PIX_FMT_RGB24,
                SWS_BICUBIC as c_int,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            );
            if self.sws.is_null() {
                return Err(classified(
                    ErrorKind::Data,
                    format!(
                        "cannot convert {} {}x{} to RGB",
                        pixel_format_name(key.format),
                        key.width,
                        key.height
                    ),
                ));
            }
            // As vf_scale does: read the defaults, replace the input matrix and range, write back.
            let mut inv_table: *mut c_int = ptr::null_mut();
            let mut table: *mut c_int = ptr::null_mut();
            let (mut src_full, mut dst_full, mut brightness, mut contrast, mut saturation) =
                (0, 0, 0, 0, 0);
            sws_getColorspaceDetails(
                self.sws,
                &mut inv_table,
                &mut src_full,
                &mut table,
                &mut dst_full,
                &mut brightness,
                &mut contrast,
                &mut saturation,
            );
            let cs = key.color_space as c_int;
            let cs = if (1..=7).contains(&cs) {
                cs
            } else {
                AVColorSpace::AVCOL_SPC_BT470BG as c_int
            };
            let coeffs = sws_getCoefficients(cs);
            match key.color_range {
                AVColorRange::AVCOL_RANGE_JPEG => src_full = 1,
                AVColorRange::AVCOL_RANGE_MPEG => src_full = 0,
                _ => {}
            }
            sws_setColorspaceDetails(
                self.sws, coeffs, src_full, coeffs, dst_full, brightness, contrast, saturation,
            );

            self.out = av_frame_alloc();
            if self.out.is_null() {
                return Err(classified(ErrorKind::Runtime, "out of memory"));
            }
            (*self.out).format = AVPixelFormat::AV_PIX_FMT_RGB24 as c_int;
            (*self.out).width = key.width;
            (*self.out).height = key.height;
            if av_frame_get_buffer(self.out, 0) < 0 {
                return Err(classified(
                    ErrorKind::Runtime,
                    format!("cannot allocate a {}x{} frame", key.width, key.height),
                ));
            }
        }
        self.key = Some(key);
        Ok(())
    }

    fn release(&mut self) {
        unsafe {
            if !self.sws.is_null() {
                sws_freeContext(self.sws);
                self.sws = ptr::null_mut();
            }
            if !self.out.is_null() {
                av_frame_free(&mut self.out);
            }
        }
        self.key = None;
    }
}

impl Drop for RgbConverter {
    fn drop(&mut self) {
        self.release();
    }
}

fn copy_rows(src: *const u8, stride: isize, row: usize, h: usize, dst: &mut [u8]) {
    for y in 0..h {
        // Safety: the caller's picture has `h` rows of at least `row` bytes, `stride` apart.
        let line = unsafe { std::slice::from_raw_parts(src.offset(stride * y as isize), row) };
        dst[y * row..(y + 1) * row].copy_from_slice(line);
    }
}

pub(crate) fn pixel_format_name(fmt: AVPixelFormat) -> String {
    unsafe {
        let p = av_get_pix_fmt_name(fmt);
        if p.is_null() {
            format!("#{}", fmt as c_int)
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}
