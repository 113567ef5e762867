//! Any pixel format → packed RGB24 at the same size, with swscale configured as the ffmpeg CLI's
//! auto-inserted scale filter configures it (FFmpeg 5.1 `vf_scale`): bicubic flags, the input matrix
//! from the frame's colour-space tag (BT.601 when the tag is missing or outside 1..=7), the input range
//! from the frame's range tag. That makes our bytes those of `ffmpeg -i X -f rawvideo -pix_fmt rgb24 -`.

use std::os::raw::c_int;
use std::ptr;

use ffmpeg_next::ffi::*;

use crate::error::{ErrorKind, classified};

/// A picture in FFmpeg's plane layout, borrowed from a decoded frame or a raw buffer (whoever passes
/// one to `RgbConverter::convert` vouches that its planes are readable).
pub(crate) struct Picture {
    pub data: [*const u8; 4],
    pub linesize: [c_int; 4],
    pub format: AVPixelFormat,
    pub width: c_int,
    pub height: c_int,
    /// The frame's `AVColorSpace` tag as a plain integer: a decoder may set one these bindings lack.
    pub color_space: c_int,
    /// The frame's `AVColorRange` tag as a plain integer, for the same reason.
    pub color_range: c_int,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    format: AVPixelFormat,
    width: c_int,
    height: c_int,
    color_space: c_int,
    color_range: c_int,
}

/// The pixel format named by a C int (`AVFrame::format`), or `None` for a value outside the enum these
/// bindings were generated with (a libavutil newer than its headers, or a corrupt frame).
pub(crate) fn pixel_format(raw: c_int) -> Option<AVPixelFormat> {
    let known = AVPixelFormat::AV_PIX_FMT_NONE as c_int..AVPixelFormat::AV_PIX_FMT_NB as c_int;
    // SAFETY: pixfmt.h gives no explicit value to any enumerator after AV_PIX_FMT_NONE = -1 (its aliases
    // are separate constants in the bindings), so the values NONE..NB are contiguous and each is a variant
    // of the `repr(i32)` enum bindgen generated from it; `raw` was checked to lie in that range.
    known.contains(&raw).then(|| unsafe { std::mem::transmute::<c_int, AVPixelFormat>(raw) })
}

/// Owns a swscale context and an aligned RGB24 frame, both reused while the input geometry stays.
pub(crate) struct RgbConverter {
    key: Option<Key>,
    sws: *mut SwsContext,
    out: *mut AVFrame,
}

// SAFETY: the context and frame are owned by this struct alone (nothing else aliases them) and
// libswscale/libavutil tie no state to the creating thread, so they may move to another thread.
unsafe impl Send for RgbConverter {}

impl RgbConverter {
    pub fn new() -> Self {
        RgbConverter { key: None, sws: ptr::null_mut(), out: ptr::null_mut() }
    }

    /// Converts `pic` into `rgb` (resized to width*height*3, rows packed).
    ///
    /// # Safety
    /// `pic.data` and `pic.linesize` must lay out readable planes of a `pic.width` x `pic.height` picture
    /// in `pic.format`, as a decoder or `av_image_fill_arrays` does, alive for the whole call.
    pub unsafe fn convert(&mut self, pic: &Picture, rgb: &mut Vec<u8>) -> anyhow::Result<()> {
        if pic.format == AVPixelFormat::AV_PIX_FMT_NONE {
            return Err(classified(ErrorKind::Data, "the video stream has no known pixel format (is the input complete?)"));
        }
        if pic.width <= 0 || pic.height <= 0 {
            return Err(classified(ErrorKind::Data, format!("invalid frame size {}x{}", pic.width, pic.height)));
        }
        let (w, h) = (pic.width as usize, pic.height as usize);
        let row = w * 3;
        rgb.resize(row * h, 0);
        if pic.format == AVPixelFormat::AV_PIX_FMT_RGB24 {
            // SAFETY: an RGB24 picture's one plane has `h` rows of `row` bytes, `linesize[0]` apart
            // (this function's contract).
            unsafe { copy_rows(pic.data[0], pic.linesize[0] as isize, row, h, rgb) };
            return Ok(());
        }
        let key =
            Key { format: pic.format, width: pic.width, height: pic.height, color_space: pic.color_space, color_range: pic.color_range };
        if self.key != Some(key) {
            self.setup(key)?;
        }
        // SAFETY: `setup` succeeded for this key, so `sws` reads this format and size and `out` is an
        // allocated RGB24 frame of the same size; the input planes are readable (this function's contract).
        unsafe {
            let out = &*self.out;
            let n = sws_scale(self.sws, pic.data.as_ptr(), pic.linesize.as_ptr(), 0, pic.height, out.data.as_ptr(), out.linesize.as_ptr());
            if n != pic.height {
                return Err(classified(ErrorKind::Data, format!("colour conversion failed ({n} of {} rows)", pic.height)));
            }
            // `out` is an RGB24 frame of `h` rows of at least `row` bytes, `linesize[0]` apart.
            copy_rows(out.data[0], out.linesize[0] as isize, row, h, rgb);
        }
        Ok(())
    }

    fn setup(&mut self, key: Key) -> anyhow::Result<()> {
        self.release();
        // SAFETY: plain libswscale/libavutil calls on the context and frame this struct owns; each pointer
        // is checked for null before use, and `release` frees what a failed setup left behind.
        unsafe {
            // swscale asserts (aborting the process) on formats it cannot read: check first.
            if sws_isSupportedInput(key.format) == 0 {
                return Err(classified(
                    ErrorKind::Data,
                    format!("pixel format {} cannot be converted to RGB", pixel_format_name(key.format)),
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
                    format!("cannot convert {} {}x{} to RGB", pixel_format_name(key.format), key.width, key.height),
                ));
            }
            // As vf_scale does: read the defaults, replace the input matrix and range, write back.
            let mut inv_table: *mut c_int = ptr::null_mut();
            let mut table: *mut c_int = ptr::null_mut();
            let (mut src_full, mut dst_full, mut brightness, mut contrast, mut saturation) = (0, 0, 0, 0, 0);
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
            let cs = if (1..=7).contains(&key.color_space) { key.color_space } else { AVColorSpace::AVCOL_SPC_BT470BG as c_int };
            let coeffs = sws_getCoefficients(cs);
            if key.color_range == AVColorRange::AVCOL_RANGE_JPEG as c_int {
                src_full = 1;
            } else if key.color_range == AVColorRange::AVCOL_RANGE_MPEG as c_int {
                src_full = 0;
            }
            sws_setColorspaceDetails(self.sws, coeffs, src_full, coeffs, dst_full, brightness, contrast, saturation);

            self.out = av_frame_alloc();
            if self.out.is_null() {
                return Err(classified(ErrorKind::Runtime, "out of memory"));
            }
            (*self.out).format = AVPixelFormat::AV_PIX_FMT_RGB24 as c_int;
            (*self.out).width = key.width;
            (*self.out).height = key.height;
            if av_frame_get_buffer(self.out, 0) < 0 {
                return Err(classified(ErrorKind::Runtime, format!("cannot allocate a {}x{} frame", key.width, key.height)));
            }
        }
        self.key = Some(key);
        Ok(())
    }

    fn release(&mut self) {
        // SAFETY: both pointers are null or owned by this struct, and are nulled once freed.
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

/// Packs `h` rows of `row` bytes, `stride` bytes apart from `src` on (negative: bottom-up), into `dst`.
///
/// # Safety
/// For each `y < h`, the `row` bytes from `src + y * stride` must be readable and lie in one allocation.
unsafe fn copy_rows(src: *const u8, stride: isize, row: usize, h: usize, dst: &mut [u8]) {
    for y in 0..h {
        // SAFETY: row `y` is readable (this function's contract).
        let line = unsafe { std::slice::from_raw_parts(src.offset(stride * y as isize), row) };
        dst[y * row..(y + 1) * row].copy_from_slice(line);
    }
}

pub(crate) fn pixel_format_name(fmt: AVPixelFormat) -> String {
    // SAFETY: `av_get_pix_fmt_name` takes any format and returns null or a static NUL-terminated string.
    unsafe {
        let p = av_get_pix_fmt_name(fmt);
        if p.is_null() { format!("#{}", fmt as c_int) } else { std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_format_takes_only_values_of_the_enum() {
        assert_eq!(pixel_format(AVPixelFormat::AV_PIX_FMT_NONE as c_int), Some(AVPixelFormat::AV_PIX_FMT_NONE));
        assert_eq!(pixel_format(AVPixelFormat::AV_PIX_FMT_YUV420P as c_int), Some(AVPixelFormat::AV_PIX_FMT_YUV420P));
        for unknown in [AVPixelFormat::AV_PIX_FMT_NB as c_int, AVPixelFormat::AV_PIX_FMT_NB as c_int + 7, -2, c_int::MIN, c_int::MAX] {
            assert_eq!(pixel_format(unknown), None, "{unknown}");
        }
    }

    /// The bindings and the libavutil we run on agree on every number in the range: each names a
    /// format whose name leads back to the same number.
    #[test]
    fn every_pixel_format_in_range_round_trips_through_its_name() {
        for raw in 0..AVPixelFormat::AV_PIX_FMT_NB as c_int {
            let fmt = pixel_format(raw).unwrap();
            assert_eq!(fmt as c_int, raw);
            let name = pixel_format_name(fmt);
            let name_c = std::ffi::CString::new(name.clone()).unwrap();
            // SAFETY: a lookup by a NUL-terminated name that outlives the call.
            let back = unsafe { av_get_pix_fmt(name_c.as_ptr()) };
            assert_eq!(back as c_int, raw, "{name}");
        }
    }
}
