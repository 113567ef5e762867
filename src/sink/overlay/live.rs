//! The live preview's frames: a live input cannot be read a second time, so the model's own decoder
//! passes every frame it decodes to the overlay thread (docs/visual.md, "The live preview").
//!
//! [`TappedSource`] wraps the input's `FrameSource`: the model's side reads frames through it as
//! before, and each frame, as decoded (a new reference to the decoder's buffer, no copy), goes into
//! a small bounded queue to the overlay thread. The queue never blocks the decoder: when it is full
//! the overlay thread has fallen behind, and the frame is left out of the video and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use ffmpeg_next::format::Pixel;
use ffmpeg_next::{Rational, frame};

use super::video::Tapped;
use crate::source::{Frame, FrameSelector, FrameSource, SourceInfo};

/// Bytes of frames waiting for the overlay thread at most (as 8-bit 4:2:0), within
/// [`QUEUE_FRAMES`]: enough to ride out a burst of slow frames of the encoder (or a model step that
/// took every core), small enough that the preview stays within about a second of the input.
const QUEUE_BYTES: usize = 32 << 20;
pub const QUEUE_FRAMES: std::ops::RangeInclusive<usize> = 8..=32;

/// Frames the queue holds for frames of `width`×`height`: 32 at 640×360, 10 at 1080p, 8 at 4K.
pub fn queue_frames(width: u32, height: u32) -> usize {
    let frame_bytes = (width as usize * height as usize * 3 / 2).max(1);
    (QUEUE_BYTES / frame_bytes).clamp(*QUEUE_FRAMES.start(), *QUEUE_FRAMES.end())
}

/// A source that also passes every frame it returns to the overlay thread.
pub struct TappedSource {
    inner: Box<dyn FrameSource>,
    to_overlay: SyncSender<Tapped>,
    /// Frames left out of the video because the queue was full.
    dropped: Arc<AtomicU64>,
    /// False once the overlay thread is gone (it failed; its error is reported at the end).
    open: bool,
    frame_rate: Option<Rational>,
}

impl TappedSource {
    pub fn new(inner: Box<dyn FrameSource>, to_overlay: SyncSender<Tapped>, dropped: Arc<AtomicU64>) -> Self {
        let frame_rate = inner.info().fps.map(Rational::from);
        TappedSource { inner, to_overlay, dropped, open: true, frame_rate }
    }

    /// Pass the frame just returned on, without waiting.
    fn pass_on(&mut self, frame: &Frame) {
        if !self.open {
            return;
        }
        let tapped = match self.inner.decoded() {
            Some((decoded, time_base)) => {
                let mut picture = frame::Video::empty();
                // SAFETY: `decoded` is a valid frame the decoder filled; av_frame_ref makes `picture` a
                // new reference to the same buffers (refcounted, so they live as long as either does).
                let r = unsafe { ffmpeg_next::ffi::av_frame_ref(picture.as_mut_ptr(), decoded.as_ptr()) };
                if r < 0 {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let pts = decoded.timestamp().unwrap_or_else(|| ticks(frame.pts, time_base));
                Tapped { frame: picture, index: frame.index, pts, time_base, frame_rate: self.frame_rate }
            }
            // Sources that decode nothing (raw frames) always fill the RGB picture.
            None if frame.rgb.len() == frame.width as usize * frame.height as usize * 3 && frame.width > 0 => {
                let time_base = self.frame_rate.map_or(Rational(1, 1_000_000), |r| r.invert());
                Tapped {
                    frame: rgb_picture(frame),
                    index: frame.index,
                    pts: ticks(frame.pts, time_base),
                    time_base,
                    frame_rate: self.frame_rate,
                }
            }
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match self.to_overlay.try_send(tapped) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => self.open = false,
        }
    }
}

/// `seconds` in ticks of `time_base`.
fn ticks(seconds: f64, time_base: Rational) -> i64 {
    (seconds / f64::from(time_base)).round() as i64
}

/// A packed RGB frame as an FFmpeg picture (copied: the source reuses its buffer).
fn rgb_picture(frame: &Frame) -> frame::Video {
    let (w, h) = (frame.width, frame.height);
    let mut picture = frame::Video::new(Pixel::RGB24, w, h);
    let stride = picture.stride(0);
    let row = w as usize * 3;
    let data = picture.data_mut(0);
    for (y, src) in frame.rgb.chunks_exact(row).enumerate() {
        data[y * stride..y * stride + row].copy_from_slice(src);
    }
    picture
}

/// The model's selector, except that no frame may go undecoded: the overlay draws every one.
struct EveryFrame<'s>(&'s mut dyn FrameSelector);

impl FrameSelector for EveryFrame<'_> {
    fn feed(&mut self, pts: f64) -> bool {
        self.0.feed(pts)
    }
}

impl FrameSource for TappedSource {
    fn info(&self) -> &SourceInfo {
        self.inner.info()
    }

    fn next_frame(&mut self, frame: &mut Frame) -> anyhow::Result<bool> {
        Ok(self.next_frame_if(frame, &mut |_| true)?.is_some())
    }

    fn next_frame_if(&mut self, frame: &mut Frame, selector: &mut dyn FrameSelector) -> anyhow::Result<Option<bool>> {
        let got = self.inner.next_frame_if(frame, &mut EveryFrame(selector))?;
        if got.is_some() {
            self.pass_on(frame);
        }
        Ok(got)
    }

    fn frames_skipped(&self) -> u64 {
        self.inner.frames_skipped()
    }

    fn decoded(&self) -> Option<(&frame::Video, Rational)> {
        self.inner.decoded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw-style frames (no decoder picture): 4×2 RGB, frame `i` filled with `i`.
    struct RgbFrames {
        info: SourceInfo,
        next: u64,
    }

    impl FrameSource for RgbFrames {
        fn info(&self) -> &SourceInfo {
            &self.info
        }
        fn next_frame(&mut self, frame: &mut Frame) -> anyhow::Result<bool> {
            if self.next == 5 {
                return Ok(false);
            }
            *frame = Frame { index: self.next, pts: self.next as f64 / 25.0, width: 4, height: 2, rgb: vec![self.next as u8; 24] };
            self.next += 1;
            Ok(true)
        }
    }

    /// Every frame goes to the overlay in order with its time, whether the model's selector wants it or
    /// not; a full queue drops frames (counted) instead of blocking the model's decoder.
    #[test]
    fn the_queue_holds_about_a_second_of_small_frames_and_fewer_large_ones() {
        assert_eq!(queue_frames(640, 360), 32);
        assert_eq!(queue_frames(1920, 1080), 10);
        assert_eq!(queue_frames(3840, 2160), 8);
        assert_eq!(queue_frames(0, 0), 32);
    }

    #[test]
    fn every_frame_is_passed_on_and_a_full_queue_drops_instead_of_blocking() {
        let info = SourceInfo { width: 4, height: 2, fps: Some(25.0), ..SourceInfo::default() };
        let (tx, rx) = std::sync::mpsc::sync_channel(3);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut source = TappedSource::new(Box::new(RgbFrames { info, next: 0 }), tx, dropped.clone());
        let mut frame = Frame::default();
        let mut wanted = Vec::new();
        while let Some(w) = source.next_frame_if(&mut frame, &mut |pts: f64| pts < 0.05).unwrap() {
            wanted.push(w);
        }
        assert_eq!(wanted, [true, true, false, false, false], "the model's selector still decides what it gets");
        drop(source);
        let got: Vec<(u64, i64, u8)> = rx.iter().map(|t| (t.index, t.pts, t.frame.data(0)[0])).collect();
        assert_eq!(got, [(0, 0, 0), (1, 1, 1), (2, 2, 2)], "time base 1/25: one tick a frame");
        assert_eq!(dropped.load(Ordering::Relaxed), 2, "two frames found the queue full");
    }
}
