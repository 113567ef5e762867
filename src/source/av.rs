//! Inputs FFmpeg demuxes and decodes: files, stdin (`pipe:0`), devices and URLs.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::raw::c_int;
use std::ptr;

use ffmpeg_next::ffi::*;
use ffmpeg_next::format::context::Input;
use ffmpeg_next::{Error as AvError, Packet, codec, frame};

use super::convert::{Picture, RgbConverter, pixel_format};
use super::orient::Orientation;
use super::{Frame, FrameSelector, FrameSource, OpenOptions, SourceInfo};
use crate::error::{ErrorKind, classified, kind_of};

pub(crate) struct AvSource {
    info: SourceInfo,
    input: Input,
    stream_index: usize,
    time_base: f64,
    decoder: codec::decoder::Video,
    decoded: frame::Video,
    conv: RgbConverter,
    /// Frame duration used when a frame carries no timestamp.
    fallback_step: f64,
    last_pts: Option<f64>,
    next_index: u64,
    eof_sent: bool,
    finished: bool,
    /// Packets the decoder rejected as invalid data (skipped, as the ffmpeg CLI does).
    bad_packets: u64,
    last_error: Option<String>,
    /// End time of the video stream as its header declares it (for truncation checks).
    declared_end: Option<f64>,
    /// A demuxer error after some frames: the stream ends there and `finish` reports it.
    read_error: Option<String>,
    /// Advice appended to data errors (e.g. an ordinary mp4 piped to stdin).
    hint: Option<&'static str>,
    /// Skipping frames is allowed (progressive video, until a frame comes without a timestamp).
    may_skip: bool,
    /// Timestamps of the latest packets read (stream time base), to find a packet's predecessor.
    recent: BTreeSet<i64>,
    /// Timestamps of packets sent while the decoder was told to drop non-reference frames, and not
    /// yet output: those that never come out were skipped.
    skippable: BTreeSet<i64>,
    /// `decoded` holds a frame not yet returned (skipped frames before it go first).
    held: bool,
    /// Frames skipped so far.
    skipped: u64,
    /// How the stream asks to be shown (its display matrix), applied to every converted frame.
    orientation: Orientation,
    /// A converted frame as stored, before `orientation` turns it (used only when it is not the identity).
    stored: Vec<u8>,
    /// For demuxers that cut a byte stream into fixed-size frames (y4m, raw): the byte position where
    /// the last whole packet ended, to tell a torn last frame from a clean end.
    framed_end: Option<i64>,
}

/// Demuxers whose packets are fixed-size slices of the byte stream (see `AvSource::framed_end`).
const FRAMED_DEMUXERS: &[&str] = &["yuv4mpegpipe", "rawvideo"];

/// Packet timestamps kept to find predecessors: far more than any decoder's reordering depth.
const RECENT_PACKETS: usize = 64;

const PIPE_MP4_HINT: &str = "an ordinary mp4 cannot be streamed through a pipe (its index is at the end): \
pipe y4m, mpegts or fragmented mp4 (-movflags frag_keyframe+empty_moov), or give the file's path";

fn av_err(e: c_int) -> String {
    AvError::from(e).to_string()
}

/// Classifies a failure to open: a missing file or unreachable URL/device is `NoInput`,
/// content FFmpeg cannot make sense of is `Data`.
fn open_error(input: &str, e: c_int) -> anyhow::Error {
    let kind = match AvError::from(e) {
        AvError::Other { errno } if errno == libc_errno::ENOENT => ErrorKind::NoInput,
        AvError::Other { errno } if errno == libc_errno::EACCES => ErrorKind::NoInput,
        AvError::Other { errno } if errno == libc_errno::EIO || errno == libc_errno::ECONNREFUSED => ErrorKind::NoInput,
        AvError::ProtocolNotFound | AvError::HttpNotFound | AvError::HttpForbidden => ErrorKind::NoInput,
        _ => ErrorKind::Data,
    };
    let what = if kind == ErrorKind::NoInput { "cannot open" } else { "not a readable video" };
    classified(kind, format!("{input}: {what}: {}", av_err(e)))
}

/// `<stdio.h>` whence for `avio_seek`.
mod libc_seek {
    pub const SEEK_CUR: std::os::raw::c_int = 1;
}

mod libc_errno {
    pub use ffmpeg_next::util::error::{EACCES, ECONNREFUSED, EIO, ENOENT};
}

impl AvSource {
    pub fn open(input: &std::ffi::OsStr, opts: &OpenOptions) -> anyhow::Result<Self> {
        let from_stdin = input == "-";
        let url = input.to_str().is_some_and(super::is_url);
        let bytes = crate::paths::as_bytes(input);
        // Messages name the input as records do (docs/records.md, "File names").
        let shown = crate::paths::text(std::path::Path::new(input));
        let mut is_stream = from_stdin || url;
        if !from_stdin && !url {
            if opts.format.is_none() {
                let meta = super::check_local_path(input)?;
                is_stream = !meta.is_file();
            } else {
                // A forced demuxer may take a name that is no path (lavfi graphs, x11grab displays).
                is_stream = !std::fs::metadata(input).is_ok_and(|m| m.is_file());
            }
        }
        let mut format_name = opts.format.clone();
        if format_name.is_none() && bytes.starts_with(b"/dev/video") {
            // Character devices cannot be probed; V4L2 is what /dev/videoN is on Linux.
            format_name = Some("v4l2".into());
        }
        // A relative local path such as `data:x.mp4` would read as a protocol name: anchor it. The
        // name goes to FFmpeg as its bytes, UTF-8 or not.
        let local = !from_stdin && !url && !bytes.starts_with(b"/") && std::path::Path::new(input).exists();
        let anchored = if local { [&b"./"[..], bytes].concat() } else { bytes.to_vec() };
        let url_c = CString::new(if from_stdin { b"pipe:0".to_vec() } else { anchored })
            .map_err(|_| classified(ErrorKind::Usage, "input name contains a NUL byte"))?;

        let mut ps: *mut AVFormatContext;
        // SAFETY: libavformat calls on pointers checked for null, NUL-terminated strings that outlive the
        // calls, and a context that `Input` owns as soon as it is open (`Input` closes it on drop).
        unsafe {
            let mut fmt: *const AVInputFormat = ptr::null();
            if let Some(name) = &format_name {
                let name_c = CString::new(name.as_str()).map_err(|_| classified(ErrorKind::Usage, "format name contains a NUL byte"))?;
                fmt = av_find_input_format(name_c.as_ptr());
                if fmt.is_null() {
                    return Err(classified(ErrorKind::Usage, format!("unknown input format '{name}'")));
                }
            }
            let mut dict: *mut AVDictionary = ptr::null_mut();
            if let Some(fps) = opts.fps.filter(|_| format_name.as_deref() == Some("rawvideo")) {
                let v = CString::new(format!("{fps}")).unwrap();
                av_dict_set(&mut dict, c"framerate".as_ptr(), v.as_ptr(), 0);
            }
            // Our context, so that blocking reads (stdin, network, devices) stop on `request_interrupt`.
            ps = avformat_alloc_context();
            if ps.is_null() {
                av_dict_free(&mut dict);
                return Err(classified(ErrorKind::Runtime, "out of memory"));
            }
            (*ps).interrupt_callback = AVIOInterruptCB { callback: Some(interrupt_cb), opaque: ptr::null_mut() };
            // On failure avformat_open_input frees the context itself.
            let r = avformat_open_input(&mut ps, url_c.as_ptr(), fmt, &mut dict);
            av_dict_free(&mut dict);
            if r < 0 {
                if super::interrupted() {
                    return Err(classified(ErrorKind::Interrupted, "interrupted while opening the input"));
                }
                return Err(open_error(&shown, r));
            }
            // From here on `input_ctx` owns `ps` and closes it on every return path.
            let mut input_ctx = Input::wrap(ps);
            let r = avformat_find_stream_info(input_ctx.as_mut_ptr(), ptr::null_mut());
            if r < 0 {
                return Err(classified(ErrorKind::Data, format!("{shown}: cannot read stream information: {}", av_err(r))));
            }
            Self::from_input(&shown, input_ctx, opts, is_stream)
        }
    }

    fn from_input(name: &str, mut input: Input, opts: &OpenOptions, is_stream: bool) -> anyhow::Result<Self> {
        // SAFETY: `input` owns an open format context whose stream information has been read; the context
        // lives on the C heap as long as `input` does, wherever `input` moves.
        let ctx = unsafe { input.as_mut_ptr() };
        // SAFETY: `ctx` is a live, opened context (above).
        let stream_index = unsafe { pick_video_stream(ctx) }
            .ok_or_else(|| classified(ErrorKind::Data, format!("{name}: no video stream (not a video file?)")))?;
        // SAFETY: `ctx` is live and holds `nb_streams` valid stream pointers.
        unsafe {
            // Only the chosen stream is demuxed into packets we read.
            for i in 0..(*ctx).nb_streams as usize {
                if i != stream_index {
                    (**(*ctx).streams.add(i)).discard = AVDiscard::AVDISCARD_ALL;
                }
            }
        }
        // Skipping frames assumes one output frame per packet: not so for interlaced video, where a
        // field can come in a packet of its own.
        // SAFETY: `stream_index < nb_streams` of the live `ctx`, and every stream has its parameters;
        // the field order is read as the integer it is in C (a demuxer could store a value the bindings
        // lack), `repr(u32)` in the bindings.
        let progressive = unsafe {
            let par = (**(*ctx).streams.add(stream_index)).codecpar;
            let order = (&raw const (*par).field_order).cast::<u32>().read();
            order == AVFieldOrder::AV_FIELD_PROGRESSIVE as u32 || order == AVFieldOrder::AV_FIELD_UNKNOWN as u32
        };
        // SAFETY: `stream_index < nb_streams` of the live `ctx`.
        let orientation = unsafe { display_orientation(name, *(*ctx).streams.add(stream_index)) };
        let stream = input.stream(stream_index).expect("stream index from the context");
        let tb = stream.time_base();
        let time_base = if tb.denominator() != 0 { f64::from(tb) } else { 0.0 };
        let rate_of = |r: ffmpeg_next::Rational| {
            (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r)).filter(|f| f.is_finite() && *f < 10_000.0)
        };
        let fps = rate_of(stream.avg_frame_rate()).or_else(|| rate_of(stream.rate())).or(opts.fps);
        let frames = (stream.frames() > 0).then(|| stream.frames() as u64);
        // Where the video stream itself says it ends (not the container, whose audio may run longer).
        let declared_end = (stream.duration() > 0 && time_base > 0.0).then(|| {
            let start = if stream.start_time() != AV_NOPTS_VALUE { stream.start_time() } else { 0 };
            (start + stream.duration()) as f64 * time_base
        });
        let duration = if stream.duration() > 0 && time_base > 0.0 {
            Some(stream.duration() as f64 * time_base)
        } else if input.duration() > 0 {
            Some(input.duration() as f64 / AV_TIME_BASE as f64)
        } else {
            None
        };

        let mut cctx = codec::Context::from_parameters(stream.parameters())
            .map_err(|e| classified(ErrorKind::Data, format!("{name}: bad codec parameters: {e}")))?;
        let codec_id = cctx.id();
        // SAFETY: `cctx` owns a live codec context that is not opened yet, when these fields may be set.
        unsafe {
            let c = cctx.as_mut_ptr();
            (*c).pkt_timebase = tb.into();
            // Auto thread count; frame threading only for files, where its extra latency does not matter.
            (*c).thread_count = 0;
            (*c).thread_type = if is_stream { FF_THREAD_SLICE as c_int } else { (FF_THREAD_FRAME | FF_THREAD_SLICE) as c_int };
        }
        let decoder = cctx
            .decoder()
            .video()
            .map_err(|e| classified(ErrorKind::Data, format!("{name}: cannot decode video codec {codec_id:?}: {e}")))?;
        let codec_name = decoder.codec().map(|c| c.name().to_string()).unwrap_or_else(|| format!("{codec_id:?}").to_lowercase());
        let container = input.format().name().to_string();
        let container_name = container.clone();
        let hint = (name == "-" && container.starts_with("mov,mp4")).then_some(PIPE_MP4_HINT);
        // What a player shows: the size after the display matrix's turn.
        let (width, height) = orientation.displayed_size(decoder.width(), decoder.height());
        let info = SourceInfo { width, height, fps, frames, duration, codec: codec_name, container, is_stream };
        Ok(AvSource {
            info,
            input,
            stream_index,
            time_base,
            decoder,
            decoded: frame::Video::empty(),
            conv: RgbConverter::new(),
            fallback_step: 1.0 / fps.unwrap_or(30.0),
            declared_end,
            last_pts: None,
            next_index: 0,
            eof_sent: false,
            finished: false,
            bad_packets: 0,
            last_error: None,
            read_error: None,
            hint,
            may_skip: progressive,
            recent: BTreeSet::new(),
            skippable: BTreeSet::new(),
            held: false,
            skipped: 0,
            orientation,
            stored: Vec::new(),
            framed_end: FRAMED_DEMUXERS.contains(&container_name.as_str()).then_some(0),
        })
    }

    /// Fill `out` from the decoded picture; its pixels are converted only when the selector needs them.
    fn emit(&mut self, out: &mut Frame, selector: &mut dyn FrameSelector) -> anyhow::Result<bool> {
        let pts = match self.decoded.timestamp() {
            Some(t) if self.time_base > 0.0 => t as f64 * self.time_base,
            // No timestamp: continue from the previous frame at the nominal rate.
            _ => self.last_pts.map_or(0.0, |p| p + self.fallback_step),
        };
        self.last_pts = Some(pts);
        // Fields are read through the raw pointer, never through a reference to the whole frame: its C
        // enum fields may hold values these bindings lack.
        // SAFETY: `decoded` owns a live AVFrame (from `frame::Video::empty`, filled by the decoder).
        let f = unsafe { self.decoded.as_ptr() };
        // SAFETY: as above.
        let (width, height) = unsafe { ((*f).width, (*f).height) };
        out.index = self.next_index;
        out.pts = pts;
        (out.width, out.height) = self.orientation.displayed_size(width as u32, height as u32);
        self.next_index += 1;
        if !selector.feed(pts) {
            return Ok(false);
        }
        // SAFETY: as above; the colour tags are `repr(u32)` enums in the bindings, read as the integers
        // they are in C.
        let (raw_format, data, linesize, color_space, color_range) = unsafe {
            (
                (*f).format,
                (*f).data,
                (*f).linesize,
                (&raw const (*f).colorspace).cast::<u32>().read() as c_int,
                (&raw const (*f).color_range).cast::<u32>().read() as c_int,
            )
        };
        let format = pixel_format(raw_format).ok_or_else(|| {
            classified(
                ErrorKind::Data,
                format!("the decoder output pixel format #{raw_format}, unknown to the FFmpeg headers of this build"),
            )
        })?;
        let pic = Picture {
            data: [data[0], data[1], data[2], data[3]].map(|p| p as *const u8),
            linesize: [linesize[0], linesize[1], linesize[2], linesize[3]],
            format,
            width,
            height,
            color_space,
            color_range,
        };
        if self.orientation.is_identity() {
            // SAFETY: the planes are those the decoder wrote into `decoded` for this format and size; they
            // stay untouched until the next `receive_frame`, after this call.
            unsafe { self.conv.convert(&pic, &mut out.rgb)? };
            return Ok(true);
        }
        // SAFETY: as above.
        unsafe { self.conv.convert(&pic, &mut self.stored)? };
        self.orientation.apply(&self.stored, width as usize, height as usize, &mut out.rgb);
        (out.width, out.height) = self.orientation.displayed_size(width as u32, height as u32);
        Ok(true)
    }

    /// A frame the decoder skipped, at `ts`: its index and time, no pixels (the size stays the last
    /// frame's).
    fn emit_skipped(&mut self, ts: i64, out: &mut Frame, selector: &mut dyn FrameSelector) -> bool {
        let pts = ts as f64 * self.time_base;
        self.last_pts = Some(self.last_pts.map_or(pts, |p| p.max(pts)));
        out.index = self.next_index;
        out.pts = pts;
        self.next_index += 1;
        self.skipped += 1;
        // The selector said it would not need this frame; if it does after all (timestamps that
        // broke the rules), the steps it claims go to the next frame decoded, as after a gap.
        selector.feed(pts);
        false
    }

    /// Before `packet` goes to the decoder: let it drop the frame when it is a non-reference one
    /// that the selector certainly does not need. That needs the timestamp of the packet and of an
    /// earlier one (its predecessor in presentation order is that one or a later one).
    fn choose_discard(&mut self, packet: &Packet, selector: &dyn FrameSelector) {
        let tb = self.time_base;
        let skip = match packet.pts() {
            Some(ts) if self.may_skip && tb > 0.0 => {
                let before = self.recent.range(..ts).next_back().copied();
                let skip =
                    !self.recent.contains(&ts) && before.is_some_and(|before| !selector.may_need(ts as f64 * tb, before as f64 * tb));
                self.recent.insert(ts);
                if self.recent.len() > RECENT_PACKETS {
                    self.recent.pop_first();
                }
                if skip {
                    self.skippable.insert(ts);
                }
                skip
            }
            _ => false,
        };
        self.decoder.skip_frame(if skip { ffmpeg_next::Discard::NonReference } else { ffmpeg_next::Discard::Default });
    }

    /// The next frame to return once a decoded frame is held: a skipped frame that comes before it
    /// in presentation order, or the held frame itself.
    fn emit_next(&mut self, out: &mut Frame, selector: &mut dyn FrameSelector) -> anyhow::Result<bool> {
        let ts = self.decoded.timestamp();
        if ts.is_none() {
            // No timestamps to order frames by: stop skipping (those pending go first).
            self.may_skip = false;
        }
        if let Some(&first) = self.skippable.first()
            && ts.is_none_or(|t| first < t)
        {
            self.skippable.pop_first();
            return Ok(self.emit_skipped(first, out, selector));
        }
        if let Some(t) = ts {
            // Decoded after all (a reference frame, or a decoder that ignores the request).
            self.skippable.remove(&t);
        }
        self.held = false;
        self.emit(out, selector)
    }

    /// At the end of a y4m or raw stream: bytes read past the last whole frame are a torn frame, which
    /// the demuxer drops silently; report it like coinfer's own raw reader does (exit 65, naming the
    /// frame), so that every framed input follows one rule (docs/architecture.md, "Torn frames").
    fn check_torn_tail(&mut self) {
        let Some(end) = self.framed_end else { return };
        // SAFETY: `input` owns a live, opened format context; `pb` is its I/O context (null only for
        // demuxers without one, checked), read, not changed.
        let read = unsafe {
            let ctx = self.input.as_ptr();
            if (*ctx).pb.is_null() {
                return;
            }
            // `avio_tell` (an inline C function): the position the demuxer has read up to.
            avio_seek((*ctx).pb, 0, libc_seek::SEEK_CUR)
        };
        if read > end && !super::interrupted() && self.read_error.is_none() {
            self.read_error = Some(format!(
                "frame {} is torn: the input ends {} bytes into it (a frame header included, for y4m)",
                self.next_index,
                read - end
            ));
        }
    }

    /// The end of the input: first the frames skipped at the very end, in order; then `None`, or the
    /// error that explains a premature end.
    fn end(&mut self, out: &mut Frame, selector: &mut dyn FrameSelector) -> anyhow::Result<Option<bool>> {
        if let Some(ts) = self.skippable.pop_first() {
            return Ok(Some(self.emit_skipped(ts, out, selector)));
        }
        self.finish().map(|more| more.then_some(false))
    }

    fn finish(&mut self) -> anyhow::Result<bool> {
        self.finished = true;
        if self.next_index == 0 {
            let why = match &self.last_error {
                Some(e) => format!(": {e}"),
                None => String::new(),
            };
            return Err(classified(ErrorKind::Data, format!("no video frame could be decoded{why}")));
        }
        if self.read_error.is_none() && !self.info.is_stream && !super::interrupted() {
            // Most demuxers report a cut file as a plain end of file: compare with what the header
            // declares, with room for edit lists and rounding.
            let n = self.next_index;
            if let Some(declared) = self.info.frames
                && n + (declared / 50).max(2) < declared
            {
                self.read_error = Some(format!("the header declares {declared} frames"));
            } else if let (Some(end), Some(last)) = (self.declared_end, self.last_pts)
                && last + (0.1 * end).max(1.0) < end
            {
                self.read_error = Some(format!("the last frame is at {last:.3} s, the header says {end:.3} s"));
            }
        }
        if let Some(e) = self.read_error.take() {
            return Err(classified(
                ErrorKind::Data,
                format!("the input is truncated or damaged: {e}; {} frames were decoded", self.next_index),
            ));
        }
        Ok(false)
    }
}

/// The orientation a stream's display matrix asks for (identity without one). A matrix that is not a
/// turn by a multiple of 90° (with or without a mirror) is ignored, with a warning: players disagree
/// on such matrices and the ffmpeg command line resamples the image for them.
///
/// # Safety
/// `stream` is a live stream of an opened format context.
unsafe fn display_orientation(name: &str, stream: *const AVStream) -> Orientation {
    let mut size: usize = 0;
    // SAFETY: `stream` is live (the caller's contract); the side data, if any, belongs to it.
    let data = unsafe { av_stream_get_side_data(stream, AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX, &mut size) };
    if data.is_null() || size < 9 * 4 {
        return Orientation::IDENTITY;
    }
    let mut matrix = [0i32; 9];
    // SAFETY: `data` holds at least `size ≥ 36` bytes (checked above); read unaligned, as i32s.
    for (i, m) in matrix.iter_mut().enumerate() {
        *m = unsafe { data.cast::<i32>().add(i).read_unaligned() };
    }
    Orientation::from_display_matrix(&matrix).unwrap_or_else(|| {
        eprintln!("warning: {name}: the display matrix is not a turn by a multiple of 90 degrees; frames are used as stored");
        Orientation::IDENTITY
    })
}

/// libavformat's interrupt callback: non-zero makes blocking I/O return AVERROR_EXIT.
unsafe extern "C" fn interrupt_cb(_opaque: *mut std::os::raw::c_void) -> c_int {
    super::interrupted() as c_int
}

/// The best video stream that is a real video (not cover art), as FFmpeg ranks them.
///
/// # Safety
/// `ctx` must be a live format context whose streams have been read.
unsafe fn pick_video_stream(ctx: *mut AVFormatContext) -> Option<usize> {
    // SAFETY: `ctx` is live (this function's contract); streams are only indexed below `nb_streams` (the
    // index `av_find_best_stream` returns is one of them). The codec type is set by libavformat itself to
    // one of its known values.
    unsafe {
        let n = (*ctx).nb_streams as usize;
        let is_video = |i: usize| {
            let st = *(*ctx).streams.add(i);
            (*(*st).codecpar).codec_type == AVMediaType::AVMEDIA_TYPE_VIDEO && (*st).disposition & AV_DISPOSITION_ATTACHED_PIC as c_int == 0
        };
        let best = av_find_best_stream(ctx, AVMediaType::AVMEDIA_TYPE_VIDEO, -1, -1, ptr::null_mut(), 0);
        if best >= 0 && is_video(best as usize) {
            return Some(best as usize);
        }
        (0..n).find(|&i| is_video(i))
    }
}

impl FrameSource for AvSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self, frame: &mut Frame) -> anyhow::Result<bool> {
        Ok(self.next_frame_if(frame, &mut |_| true)?.is_some())
    }

    fn frames_skipped(&self) -> u64 {
        self.skipped
    }

    fn decoded(&self) -> Option<(&frame::Video, ffmpeg_next::Rational)> {
        // While a frame is held, the one returned last was a skipped one, without pixels.
        let stream = self.input.stream(self.stream_index)?;
        (!self.held && self.next_index > 0).then(|| (&self.decoded, stream.time_base()))
    }

    fn next_frame_if(&mut self, frame: &mut Frame, selector: &mut dyn FrameSelector) -> anyhow::Result<Option<bool>> {
        if self.finished {
            return Ok(None);
        }
        self.decode_next(frame, selector).map_err(|e| match self.hint {
            Some(hint) if kind_of(&e) == ErrorKind::Data => classified(ErrorKind::Data, format!("{e}; {hint}")),
            _ => e,
        })
    }
}

impl AvSource {
    fn decode_next(&mut self, frame: &mut Frame, selector: &mut dyn FrameSelector) -> anyhow::Result<Option<bool>> {
        loop {
            if self.held {
                return self.emit_next(frame, selector).map(Some);
            }
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {
                    self.held = true;
                    continue;
                }
                Err(AvError::Eof) => return self.end(frame, selector),
                Err(AvError::Other { errno }) if errno == ffmpeg_next::util::error::EAGAIN => {}
                Err(e) => {
                    // A broken frame: skip it like the CLI does, remember why.
                    self.bad_packets += 1;
                    self.last_error = Some(e.to_string());
                    if self.eof_sent && self.bad_packets < 1000 {
                        continue;
                    }
                }
            }
            if self.eof_sent {
                return self.end(frame, selector);
            }
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() != self.stream_index {
                        continue;
                    }
                    if let Some(end) = &mut self.framed_end
                        && packet.position() >= 0
                    {
                        *end = packet.position() as i64 + packet.size() as i64;
                    }
                    self.choose_discard(&packet, selector);
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        self.bad_packets += 1;
                        self.last_error = Some(e.to_string());
                    }
                }
                Err(AvError::Eof) => {
                    self.check_torn_tail();
                    let _ = self.decoder.send_eof();
                    self.eof_sent = true;
                }
                Err(AvError::Other { errno }) if errno == ffmpeg_next::util::error::EAGAIN => {
                    // Live devices: no packet ready yet.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(_) if super::interrupted() => {
                    // The user asked to stop: end the stream now, without draining the decoder.
                    self.finished = true;
                    return Ok(None);
                }
                Err(e) => {
                    if self.next_index == 0 {
                        return Err(classified(ErrorKind::Data, format!("reading the input failed: {e}")));
                    }
                    // A damaged tail (truncated file, dropped connection): deliver what the decoder
                    // holds, then report the damage at the end (`finish`).
                    self.read_error = Some(format!("{e} (after packet of frame {})", self.next_index));
                    let _ = self.decoder.send_eof();
                    self.eof_sent = true;
                }
            }
        }
    }
}
