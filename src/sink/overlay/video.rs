//! The labelled video: the input decoded a second time, every frame at its own timestamp and size,
//! the panel of the record in force blended on, encoded and muxed with the audio copied as is
//! (docs/visual.md, "The labelled video").

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Instant;

use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::{Dictionary, Packet, Rational, codec, encoder, format, frame, media, picture};

use super::blend::{PlanarYuv, YuvPanel};
use super::panel::{self, Layout, Shown};
use crate::error::{ErrorKind, classified};

/// What the model side tells the overlay thread, in the order it happens.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// A step record, as the panel shows it.
    Record(Shown),
    /// The run is over after this many source frames (fewer than the input's when interrupted).
    End { frames: u64 },
}

/// Where the video goes and how it is encoded, settled before any work starts.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name given on the command line (`-` for stdout).
    pub name: String,
    /// What libavformat opens: a temporary file beside the final one, `pipe:1`, or the URL.
    pub open_as: OsString,
    /// Renamed to `name` once complete (files only).
    pub rename_to: Option<PathBuf>,
    /// Muxer short name (`mp4`, `matroska`, …).
    pub muxer: String,
    /// Encoder name (`libx264`, `ffv1`, …).
    pub encoder: String,
    pub crf: Option<u32>,
    /// The input is live: frames come from the model's decoder (docs/visual.md, "The live preview").
    pub live: bool,
    /// The input, as its bytes: a file is decoded from it a second time.
    pub input: OsString,
}

impl Target {
    /// A live input watched as it is written (stdout or a URL): no encoder look-ahead, every packet
    /// sent on at once. A file keeps the ordinary settings.
    fn low_latency(&self) -> bool {
        self.live && self.rename_to.is_none()
    }
}

/// The muxer for an output name: from the extension, Matroska for stdout, MPEG-TS for a URL without one.
pub fn muxer_for(name: &str) -> anyhow::Result<String> {
    if name == "-" {
        return Ok("matroska".into());
    }
    let c_name = CString::new(name).map_err(|_| classified(ErrorKind::Usage, "--overlay name contains a NUL byte"))?;
    // SAFETY: av_guess_format only reads the NUL-terminated name; the returned pointer is to a static
    // muxer description (or null) whose `name` is a static NUL-terminated string.
    let guessed = unsafe {
        let fmt = ffmpeg_next::ffi::av_guess_format(std::ptr::null(), c_name.as_ptr(), std::ptr::null());
        (!fmt.is_null()).then(|| std::ffi::CStr::from_ptr((*fmt).name).to_string_lossy().into_owned())
    };
    match guessed {
        Some(m) => Ok(m),
        None if name.contains("://") => Ok("mpegts".into()),
        None => Err(classified(
            ErrorKind::Usage,
            format!("--overlay {name}: cannot tell the container from the name (use .mp4, .mkv, .webm, .mov or -)"),
        )),
    }
}

/// The encoder: the one asked for, else H.264 (libx264) where the build has it and the container
/// takes it, else the container's own default video codec.
pub fn encoder_for(muxer: &str, asked: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = asked {
        let codec = encoder::find_by_name(name)
            .ok_or_else(|| classified(ErrorKind::Usage, format!("--overlay-codec {name}: this FFmpeg build has no such encoder")))?;
        if codec.medium() != media::Type::Video {
            return Err(classified(ErrorKind::Usage, format!("--overlay-codec {name} is not a video encoder")));
        }
        return Ok(name.to_string());
    }
    let c_muxer = CString::new(muxer).expect("muxer names have no NUL");
    // SAFETY: a static muxer description found by name (checked for null) is only read.
    let (takes_h264, default_id) = unsafe {
        let fmt = ffmpeg_next::ffi::av_guess_format(c_muxer.as_ptr(), std::ptr::null(), std::ptr::null());
        if fmt.is_null() {
            return Err(classified(ErrorKind::Usage, format!("this FFmpeg build cannot write {muxer}")));
        }
        let h264 = ffmpeg_next::ffi::avformat_query_codec(fmt, ffmpeg_next::ffi::AVCodecID::AV_CODEC_ID_H264, 0) == 1;
        (h264, (*fmt).video_codec)
    };
    if takes_h264 && let Some(x264) = encoder::find_by_name("libx264") {
        return Ok(x264.name().to_string());
    }
    encoder::find(codec::Id::from(default_id))
        .map(|c| c.name().to_string())
        .ok_or_else(|| classified(ErrorKind::Usage, format!("this FFmpeg build has no video encoder for {muxer}")))
}

/// Planar 8-bit YUV formats the panel is drawn in directly.
fn drawable(format: Pixel, full_range_tag: bool, bt709: bool) -> Option<PlanarYuv> {
    let (shift, jpeg) = match format {
        Pixel::YUV420P => ((1, 1), false),
        Pixel::YUVJ420P => ((1, 1), true),
        Pixel::YUV422P => ((1, 0), false),
        Pixel::YUVJ422P => ((1, 0), true),
        Pixel::YUV444P => ((0, 0), false),
        Pixel::YUVJ444P => ((0, 0), true),
        _ => return None,
    };
    Some(PlanarYuv { chroma_shift: shift, full_range: jpeg || full_range_tag, bt709 })
}

/// What the encoder is set up from: the first frame's look and the stream's clock.
struct Look {
    width: u32,
    height: u32,
    format: Pixel,
    aspect: Rational,
    range: ffmpeg_next::util::color::Range,
    space: ffmpeg_next::util::color::Space,
    time_base: Rational,
    frame_rate: Option<Rational>,
}

/// The output file or stream with its video encoder: frames in, packets muxed.
struct VideoOut {
    octx: format::context::Output,
    encoder: encoder::Video,
    index: usize,
    time_base: Rational,
    packet: Packet,
}

impl VideoOut {
    /// Open the output and add the video stream; returns it with the format the panel is drawn in.
    /// The header is written by [`VideoOut::start`], after any audio stream is added.
    fn open(target: &Target, look: &Look) -> anyhow::Result<(Self, Pixel, PlanarYuv)> {
        let mut octx = super::files::open_output(&target.open_as, &target.muxer)
            .map_err(|e| classified(ErrorKind::NoInput, format!("cannot write the overlay to {}: {e}", target.name)))?;
        let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
        let codec = encoder::find_by_name(&target.encoder).ok_or_else(|| anyhow::anyhow!("no encoder {}", target.encoder))?;
        let accepted: Vec<Pixel> = codec.video().ok().and_then(|v| v.formats()).map(|f| f.collect()).unwrap_or_default();
        let full_range = look.range == ffmpeg_next::util::color::Range::JPEG;
        let bt709 = look.space == ffmpeg_next::util::color::Space::BT709;
        let accepts = |f: Pixel| accepted.is_empty() || accepted.contains(&f);
        // Draw in the decoded format when the encoder takes it; otherwise convert once, to 4:2:0.
        let (draw_format, planar) = match drawable(look.format, full_range, bt709) {
            Some(p) if accepts(look.format) => (look.format, p),
            _ if accepts(Pixel::YUV420P) => (Pixel::YUV420P, PlanarYuv { chroma_shift: (1, 1), full_range: false, bt709 }),
            _ => anyhow::bail!("overlay: {} takes none of the pixel formats the panel is drawn in", target.encoder),
        };
        let index = octx.add_stream(codec)?.index();
        let mut enc_ctx = codec::context::Context::new_with_codec(codec).encoder().video()?;
        enc_ctx.set_width(look.width);
        enc_ctx.set_height(look.height);
        enc_ctx.set_aspect_ratio(look.aspect);
        enc_ctx.set_format(draw_format);
        enc_ctx.set_time_base(look.time_base);
        if let Some(rate) = look.frame_rate.filter(|r| r.numerator() > 0 && r.denominator() > 0) {
            enc_ctx.set_frame_rate(Some(rate));
        }
        enc_ctx.set_color_range(look.range);
        enc_ctx.set_colorspace(look.space);
        if global_header {
            enc_ctx.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut options = Dictionary::new();
        match target.encoder.as_str() {
            "libx264" => {
                options.set("preset", "veryfast");
                options.set("crf", &target.crf.unwrap_or(23).to_string());
                if target.low_latency() {
                    // No look-ahead and no B-frames: a frame leaves the encoder as soon as it is in.
                    options.set("tune", "zerolatency");
                }
            }
            "libvpx-vp9" | "libvpx" => {
                options.set("deadline", "realtime");
                options.set("cpu-used", "8");
                options.set("crf", &target.crf.unwrap_or(32).to_string());
                options.set("b", "0");
                if target.low_latency() {
                    options.set("lag-in-frames", "0");
                }
            }
            _ => {
                if let Some(crf) = target.crf {
                    options.set("crf", &crf.to_string());
                }
            }
        }
        let encoder = enc_ctx.open_with(options).map_err(|e| anyhow::anyhow!("overlay: cannot open {}: {e}", target.encoder))?;
        octx.stream_mut(index).expect("added above").set_parameters(&encoder);
        Ok((VideoOut { octx, encoder, index, time_base: look.time_base, packet: Packet::empty() }, draw_format, planar))
    }

    /// Write the header; a live output also sends every packet on as soon as it is muxed.
    fn start(&mut self, target: &Target) -> anyhow::Result<()> {
        let mut options = Dictionary::new();
        if target.low_latency() {
            options.set("flush_packets", "1");
            // Matroska: a cluster per keyframe at the latest, not per 5 s, so a player gets it now.
            options.set("cluster_time_limit", "0");
            options.set("live", "1");
        }
        self.octx.write_header_with(options).map_err(|e| anyhow::anyhow!("overlay: cannot start {}: {e}", target.name))?;
        Ok(())
    }

    fn out_time_base(&self, stream: usize) -> Rational {
        self.octx.stream(stream).expect("an output stream").time_base()
    }

    /// Encode `frame` (`None`: the end) and mux the packets that come out.
    fn encode(&mut self, frame: Option<&frame::Video>) -> anyhow::Result<()> {
        match frame {
            Some(f) => self.encoder.send_frame(f)?,
            None => self.encoder.send_eof()?,
        }
        let out_tb = self.out_time_base(self.index);
        while self.encoder.receive_packet(&mut self.packet).is_ok() {
            self.packet.set_stream(self.index);
            self.packet.rescale_ts(self.time_base, out_tb);
            self.packet.write_interleaved(&mut self.octx)?;
        }
        Ok(())
    }

    /// Flush the encoder, write the trailer and move a file to its final name.
    fn close(mut self, target: &Target) -> anyhow::Result<()> {
        self.encode(None)?;
        self.octx.write_trailer()?;
        drop(self.octx);
        if let Some(final_path) = &target.rename_to {
            std::fs::rename(&target.open_as, final_path).map_err(|e| {
                anyhow::anyhow!("overlay: cannot rename {} to {}: {e}", super::files::shown(&target.open_as), final_path.display())
            })?;
        }
        Ok(())
    }
}

/// What the overlay thread wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub frames: u64,
    /// Seconds spent drawing and encoding (waits for frames and records left out): the thread's
    /// own cost, `frames / busy_s` the rate it could sustain.
    pub busy_s: f64,
}

/// Decode the target's input again, draw and encode into `target`, taking records from `events`.
pub fn write(target: &Target, names: &[String], model: &str, top_k: usize, events: Receiver<Event>) -> anyhow::Result<Written> {
    let input = super::files::shown(&target.input);
    let mut ictx = super::files::open_input(&target.input).map_err(|e| anyhow::anyhow!("overlay: cannot open {input}: {e}"))?;
    let video_in = ictx.streams().best(media::Type::Video).ok_or_else(|| anyhow::anyhow!("overlay: {input} has no video stream"))?;
    let video_index = video_in.index();
    let in_time_base = video_in.time_base();
    let frame_rate = video_in.avg_frame_rate();
    let mut dec_ctx = codec::context::Context::from_parameters(video_in.parameters())?;
    dec_ctx.set_threading(codec::threading::Config::kind(codec::threading::Type::Frame));
    let mut decoder = dec_ctx.decoder().video()?;
    let look = Look {
        width: decoder.width(),
        height: decoder.height(),
        format: decoder.format(),
        aspect: decoder.aspect_ratio(),
        range: decoder.color_range(),
        space: decoder.color_space(),
        time_base: in_time_base,
        frame_rate: Some(frame_rate),
    };
    let (mut out, draw_format, planar) = VideoOut::open(target, &look)?;

    // Audio streams are copied packet for packet.
    let mut audio_map: Vec<Option<usize>> = vec![None; ictx.nb_streams() as usize];
    for ist in ictx.streams() {
        if ist.parameters().medium() != media::Type::Audio {
            continue;
        }
        let mut ost = out.octx.add_stream(encoder::find(codec::Id::None))?;
        ost.set_parameters(ist.parameters());
        // SAFETY: the output stream's codec parameters were just allocated and filled by libavformat;
        // a tag of 0 lets the muxer choose the one its container uses for this codec.
        unsafe {
            (*ost.parameters().as_mut_ptr()).codec_tag = 0;
        }
        audio_map[ist.index()] = Some(ost.index());
    }
    let audio_time_bases: Vec<Rational> = ictx.streams().map(|s| s.time_base()).collect();
    out.start(target)?;

    let mut drawer = Drawer::new(names, model, top_k, planar, draw_format, &look);
    let mut records = Records::new(events);
    let mut written = Written::default();
    let mut decoded = frame::Video::empty();
    let mut done = false;

    for (stream, mut packet) in ictx.packets() {
        let si = stream.index();
        if si == video_index {
            decoder.send_packet(&packet)?;
        } else {
            if let Some(Some(o)) = audio_map.get(si) {
                packet.rescale_ts(audio_time_bases[si], out.out_time_base(*o));
                packet.set_position(-1);
                packet.set_stream(*o);
                packet.write_interleaved(&mut out.octx)?;
            }
            continue;
        }
        if !draw_ready(&mut decoder, &mut decoded, &mut records, &mut drawer, &mut out, &mut written)? {
            done = true;
            break;
        }
    }
    if !done {
        decoder.send_eof()?;
        draw_ready(&mut decoder, &mut decoded, &mut records, &mut drawer, &mut out, &mut written)?;
    }
    out.close(target)?;
    Ok(written)
}

/// Draw and encode the frames `decoder` has ready, each with the record in force at it (the frame's
/// index is the count written so far); false once the records end before a frame (the run stopped).
fn draw_ready(
    decoder: &mut ffmpeg_next::decoder::Video,
    decoded: &mut frame::Video,
    records: &mut Records,
    drawer: &mut Drawer<'_>,
    out: &mut VideoOut,
    written: &mut Written,
) -> anyhow::Result<bool> {
    while decoder.receive_frame(decoded).is_ok() {
        if !records.resolve(written.frames) {
            return Ok(false);
        }
        let t0 = Instant::now();
        let pts = decoded.timestamp();
        let frame = drawer.draw(decoded, records.shown, pts)?;
        out.encode(Some(frame))?;
        written.busy_s += t0.elapsed().as_secs_f64();
        written.frames += 1;
    }
    Ok(true)
}

/// A source frame passed on by the model's decoder (live inputs): the picture as decoded, its index
/// among the source frames and its timestamp.
pub struct Tapped {
    pub frame: frame::Video,
    pub index: u64,
    /// The frame's timestamp in `time_base` (from its presentation time when the decoder gave none).
    pub pts: i64,
    pub time_base: Rational,
    /// The input's nominal rate, if it declares one.
    pub frame_rate: Option<Rational>,
}

/// The live preview: draw every frame the model's decoder passes on with the newest record at hand,
/// encode it and send it on at once (docs/visual.md, "The live preview"). Ends when the decoder stops
/// passing frames, or once the run has ended and the frames already passed are drawn.
pub fn write_live(
    target: &Target,
    names: &[String],
    model: &str,
    top_k: usize,
    frames: Receiver<Tapped>,
    events: Receiver<Event>,
) -> anyhow::Result<Written> {
    let mut records = Records::new(events);
    // Nothing to write until the first frame tells the size, format and clock.
    let first = loop {
        match frames.recv_timeout(POLL) {
            Ok(t) => break t,
            Err(RecvTimeoutError::Disconnected) => return Ok(Written::default()),
            Err(RecvTimeoutError::Timeout) if records.ended() => return Ok(Written::default()),
            Err(RecvTimeoutError::Timeout) => {}
        }
    };
    let look = Look {
        width: first.frame.width(),
        height: first.frame.height(),
        format: first.frame.format(),
        aspect: first.frame.aspect_ratio(),
        range: first.frame.color_range(),
        space: first.frame.color_space(),
        time_base: first.time_base,
        frame_rate: first.frame_rate,
    };
    let (mut out, draw_format, planar) = VideoOut::open(target, &look)?;
    out.start(target)?;
    let mut drawer = Drawer::new(names, model, top_k, planar, draw_format, &look);
    let mut written = Written::default();
    let mut last_pts: Option<i64> = None;
    let mut next = Some(first);
    loop {
        let mut tapped = match next.take() {
            Some(t) => t,
            None if records.ended() => match frames.try_recv() {
                // The run is over: draw what the decoder had passed on, then close.
                Ok(t) => t,
                Err(_) => break,
            },
            None => match frames.recv_timeout(POLL) {
                Ok(t) => t,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        let t0 = Instant::now();
        // Timestamps must rise for the muxer; a repeated one (a broken source) moves on by one tick.
        let pts = last_pts.map_or(tapped.pts, |last| tapped.pts.max(last + 1));
        last_pts = Some(pts);
        let shown = records.newest(tapped.index);
        let frame = drawer.draw(&mut tapped.frame, shown, Some(pts))?;
        out.encode(Some(frame))?;
        written.busy_s += t0.elapsed().as_secs_f64();
        written.frames += 1;
    }
    out.close(target)?;
    Ok(written)
}

/// How long the live writer waits for a frame before it looks whether the run has ended.
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The records as they come from the model side, and the one in force.
struct Records {
    events: Receiver<Event>,
    /// Records received for frames after the one being drawn.
    queue: VecDeque<Shown>,
    /// The record in force at the frame being drawn.
    shown: Option<Shown>,
    /// Frames the run covered, once it has ended.
    end: Option<u64>,
}

impl Records {
    fn new(events: Receiver<Event>) -> Self {
        Records { events, queue: VecDeque::new(), shown: None, end: None }
    }

    fn take(&mut self, event: Event) {
        match event {
            Event::Record(s) => self.queue.push_back(s),
            Event::End { frames } => self.end = Some(frames),
        }
    }

    /// Take in every record up to frame `index`; false when the run ended before that frame. A record
    /// names its frame and records come in frame order, so once one names a later frame (or the run
    /// ends) the record in force at `index` is known (docs/visual.md, "Which record a frame shows").
    fn resolve(&mut self, index: u64) -> bool {
        loop {
            while let Some(next) = self.queue.front() {
                if next.frame > index {
                    return true;
                }
                self.shown = self.queue.pop_front();
            }
            if let Some(frames) = self.end {
                return index < frames;
            }
            match self.events.recv() {
                Ok(e) => self.take(e),
                // The model side is gone without an end (an error): stop here, keeping what was written.
                Err(_) => self.end = Some(index),
            }
        }
    }

    /// The newest record at hand for frame `index`, without waiting: a live frame is drawn now
    /// (docs/visual.md, "The live preview"). Records of later frames (the drawing fell behind) wait
    /// for their frame.
    fn newest(&mut self, index: u64) -> Option<Shown> {
        while let Ok(e) = self.events.try_recv() {
            self.take(e);
        }
        while self.queue.front().is_some_and(|next| next.frame <= index) {
            self.shown = self.queue.pop_front();
        }
        self.shown
    }

    /// Whether the model side has finished (its summary, or gone).
    fn ended(&mut self) -> bool {
        loop {
            match self.events.try_recv() {
                Ok(e) => self.take(e),
                Err(TryRecvError::Empty) => return self.end.is_some(),
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }
}

/// Lays the panel of a record on frames.
struct Drawer<'a> {
    names: &'a [String],
    model: &'a str,
    top_k: usize,
    planar: PlanarYuv,
    draw_format: Pixel,
    /// The encoder's frame size: a live frame of another size is scaled to it.
    size: (u32, u32),
    scaler: Option<scaling::Context>,
    converted: frame::Video,
    layout: Layout,
    /// The panel as drawn for `shown_drawn`, in the frame's format.
    panel: Option<YuvPanel>,
    /// The record `panel` was drawn for.
    shown_drawn: Option<Shown>,
}

impl<'a> Drawer<'a> {
    fn new(names: &'a [String], model: &'a str, top_k: usize, planar: PlanarYuv, draw_format: Pixel, look: &Look) -> Self {
        Drawer {
            names,
            model,
            top_k,
            planar,
            draw_format,
            size: (look.width, look.height),
            scaler: None,
            converted: frame::Video::empty(),
            layout: panel::layout(look.width as usize, look.height as usize, top_k),
            panel: None,
            shown_drawn: None,
        }
    }

    /// The frame with the panel on it: drawn in place when the decoder's format is drawable (after
    /// making the frame writable: the decoder may still reference its buffer), else converted once.
    fn draw<'f>(&'f mut self, decoded: &'f mut frame::Video, shown: Option<Shown>, pts: Option<i64>) -> anyhow::Result<&'f frame::Video> {
        let (ow, oh) = self.size;
        let frame: &mut frame::Video = if decoded.format() == self.draw_format && decoded.width() == ow && decoded.height() == oh {
            // SAFETY: `decoded` holds a valid frame from the decoder; av_frame_make_writable copies its
            // data into fresh buffers when they are shared, leaving the frame valid either way.
            let r = unsafe { ffmpeg_next::ffi::av_frame_make_writable(decoded.as_mut_ptr()) };
            anyhow::ensure!(r >= 0, "overlay: cannot get a writable frame ({})", ffmpeg_next::Error::from(r));
            decoded
        } else {
            let (w, h) = (decoded.width(), decoded.height());
            let stale =
                self.scaler.as_ref().is_none_or(|s| s.input().width != w || s.input().height != h || s.input().format != decoded.format());
            if stale {
                self.scaler = Some(scaling::Context::get(decoded.format(), w, h, self.draw_format, ow, oh, scaling::Flags::BILINEAR)?);
            }
            self.scaler.as_mut().expect("built above").run(decoded, &mut self.converted)?;
            &mut self.converted
        };
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let layout = panel::layout(w, h, self.top_k);
        if layout != self.layout {
            self.layout = layout;
            self.panel = None;
        }
        if self.panel.is_none() || !same(self.shown_drawn.as_ref(), shown.as_ref()) {
            let canvas = panel::render(&self.layout, shown.as_ref(), self.names, self.model);
            self.panel = Some(YuvPanel::new(&canvas, self.planar));
            self.shown_drawn = shown;
        }
        let panel = self.panel.as_ref().expect("drawn above");
        // An even margin keeps the panel on chroma sample boundaries.
        let margin = ((self.layout.px * 0.5) as usize) & !1;
        let (x, y) = if panel.width + 2 * margin <= w && panel.height + 2 * margin <= h { (margin, margin) } else { (0, 0) };
        let strides = [frame.stride(0), frame.stride(1), frame.stride(2)];
        // SAFETY: the three planes of a writable planar frame are distinct buffers of at least
        // stride × plane height bytes each; the slices below do not outlive this block's borrow of
        // `frame` and never overlap.
        let planes = unsafe {
            let f = frame.as_mut_ptr();
            let ch = h.div_ceil(1 << self.planar.chroma_shift.1);
            [
                (std::slice::from_raw_parts_mut((*f).data[0], strides[0] * h), strides[0]),
                (std::slice::from_raw_parts_mut((*f).data[1], strides[1] * ch), strides[1]),
                (std::slice::from_raw_parts_mut((*f).data[2], strides[2] * ch), strides[2]),
            ]
        };
        panel.blend(planes, x, y, self.planar);
        frame.set_pts(pts);
        frame.set_kind(picture::Type::None);
        Ok(frame)
    }
}

fn same(a: Option<&Shown>, b: Option<&Shown>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.looks_like(b),
        _ => false,
    }
}

/// A temporary name beside `path` (same folder, so the final rename is atomic), keeping nothing of
/// the extension: the muxer is named explicitly.
pub fn temporary_beside(path: &Path) -> PathBuf {
    // Built from the name's bytes, not its text, so that the temporary is beside the final file
    // whatever its name. A relative one is anchored with `./` (`data:x.mkv` is no protocol).
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".coinfer-part");
    let temp = path.with_file_name(name);
    if temp.is_relative() { Path::new(".").join(temp) } else { temp }
}
