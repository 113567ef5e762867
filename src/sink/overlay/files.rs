//! Opening the overlay's input and output by name as bytes: on Unix a file name need not be UTF-8
//! (docs/records.md, "File names"), and the `ffmpeg-next` openers take text only.

use std::ffi::{CString, OsStr};
use std::path::Path;
use std::ptr;

use ffmpeg_next::ffi::{
    AVIO_FLAG_WRITE, avformat_alloc_output_context2, avformat_find_stream_info, avformat_free_context, avformat_open_input, avio_open,
};
use ffmpeg_next::format::context::{Input, Output};

use crate::error::{ErrorKind, classified};
use crate::paths;

/// The name as libavformat takes it: its bytes, NUL-terminated.
fn c_name(name: &OsStr) -> anyhow::Result<CString> {
    CString::new(paths::as_bytes(name)).map_err(|_| classified(ErrorKind::Usage, "--overlay: a file name contains a NUL byte"))
}

/// Open a local file for decoding, its stream information read. A relative name is anchored with
/// `./`, so that `data:x.mp4` is not read as a protocol.
pub fn open_input(name: &OsStr) -> anyhow::Result<Input> {
    let bytes = paths::as_bytes(name);
    let anchored = if bytes.starts_with(b"/") { bytes.to_vec() } else { [&b"./"[..], bytes].concat() };
    let c = c_name(&paths::from_bytes(anchored))?;
    let mut ps = ptr::null_mut();
    // SAFETY: `c` is NUL-terminated and outlives the call; on failure avformat_open_input frees the
    // context it allocated and leaves `ps` null.
    let r = unsafe { avformat_open_input(&mut ps, c.as_ptr(), ptr::null(), ptr::null_mut()) };
    if r < 0 {
        return Err(ffmpeg_next::Error::from(r).into());
    }
    // SAFETY: `ps` is an open input context, owned from here by `input`, which closes it on drop.
    let mut input = unsafe { Input::wrap(ps) };
    // SAFETY: the context is open (above) and lives as long as `input`.
    let r = unsafe { avformat_find_stream_info(input.as_mut_ptr(), ptr::null_mut()) };
    if r < 0 {
        return Err(ffmpeg_next::Error::from(r).into());
    }
    Ok(input)
}

/// Open `name` (a file, `pipe:1` or a URL) for writing with the muxer `muxer`.
pub fn open_output(name: &OsStr, muxer: &str) -> anyhow::Result<Output> {
    let c = c_name(name)?;
    let muxer_c = CString::new(muxer).map_err(|_| classified(ErrorKind::Usage, "--overlay: a muxer name contains a NUL byte"))?;
    let mut ps = ptr::null_mut();
    // SAFETY: both strings are NUL-terminated and outlive the call; on failure no context is left.
    let r = unsafe { avformat_alloc_output_context2(&mut ps, ptr::null_mut(), muxer_c.as_ptr(), c.as_ptr()) };
    if r < 0 || ps.is_null() {
        return Err(ffmpeg_next::Error::from(r).into());
    }
    // SAFETY: `ps` is the context allocated above, not yet owned by anything: its `pb` is ours to
    // open, and on failure the context is freed here (it has no I/O to close).
    let r = unsafe { avio_open(&mut (*ps).pb, c.as_ptr(), AVIO_FLAG_WRITE) };
    if r < 0 {
        // SAFETY: as above; `ps` is not used after this.
        unsafe { avformat_free_context(ps) };
        return Err(ffmpeg_next::Error::from(r).into());
    }
    // SAFETY: `ps` has an open `pb`; `Output` owns both from here and closes them on drop.
    Ok(unsafe { Output::wrap(ps) })
}

/// A path as messages show it.
pub fn shown(name: &OsStr) -> std::path::Display<'_> {
    Path::new(name).display()
}
