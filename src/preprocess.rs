//! From decoded frames to network inputs: which frames feed the model's timeline (`Resampler`), and
//! how one RGB frame becomes a `(3, crop, crop)` tensor (`Preprocessor`).
//!
//! The spatial pipeline is the reference one of the models (docs/models.md, "Preprocessing"):
//! 1. short-side resize: the short side becomes `resize_short`, the long side
//!    `floor((long / short) * resize_short)` (computed in f64 as the Python references do); no resize when the
//!    short side already has that length;
//! 2. separable bilinear interpolation with half-pixel centres and no antialiasing (torch `interpolate`,
//!    `align_corners=False`): output pixel `o` samples `src = (o + 0.5) * (in / out) - 0.5`, clamped at 0, between
//!    taps `floor(src)` and `min(floor(src) + 1, in - 1)` with weights `1 - l` and `l` (`l = src - floor(src)`),
//!    `v = (1 - l) * a + l * b`; rows (H) first, then columns (W); all in f64;
//! 3. centre crop `crop × crop` at offsets `((H' - crop) / 2, (W' - crop) / 2)` rounded down;
//! 4. uint8 crop: `floor(v + 0.5)` clipped to [0, 255];
//! 5. normalisation: `SignedUnit` (I3D) uses the uint8 crop, `x = f32(u8) / 127.5 - 1`, as DeepMind's pipeline
//!    feeds uint8 frames; `MeanStd` (X3D, pyslowfast) resizes float frames, so it uses the unrounded value:
//!    `x = (f32(v / 255) - mean[c]) / std[c]`, in f32.
//!
//! `tools/preprocess/reference.py` implements the same steps in numpy; the fixtures it writes are what the
//! tests compare against, bit for bit.

use candle_core::{Device, Tensor};

use crate::error::{ErrorKind, classified};
use crate::models::{ModelSpec, Normalize};
use crate::source::Frame;

/// Chooses, by presentation timestamp, which decoded frames feed the model's timeline.
///
/// The timeline starts at the first frame's pts `p0`; model step `n` is at `t_n = p0 + n / model_fps`.
/// Each decoded frame `i` stands for the time window that ends half a frame interval after its pts,
/// `end_i = p_i + h_i` with `h_i = min(p_i - p_{i-1}, p_{i-1} - p_{i-2}) / 2` (the smaller of the last two
/// intervals; one interval for the second frame, 0 for the first). A step is fed by the first frame whose
/// window ends after the step's time (`t_n < end_i`; a tie goes to the later frame). Consequences:
/// * constant rate: this is "nearest frame in time", decided without waiting for the next frame. On a
///   30 fps source at 25 fps model step `n` takes source frame `round(n·30/25) = floor((12n+5)/10)`
///   (docs/models.md, "Preprocessing"); at 30/6 = 5 fps it takes frame `6n`;
/// * variable rate: nearest in time as long as the next interval equals the last one;
/// * gaps (dropped frames, a stalled stream): steps that fall in the gap are fed by the first frame after it
///   (it is repeated; `feed` returns more than 1), and the smaller-interval rule keeps a long gap from
///   claiming steps beyond the frame's own half interval;
/// * duplicates and timestamps that go backwards feed nothing (`feed` returns 0) and do not move the timeline;
/// * a jump of more than `MAX_JUMP` (10 s) either way is a discontinuity (a timestamp reset or wrap,
///   concatenated streams, a camera that stalled): the frame is placed one interval after the previous one
///   and the timeline continues from there, instead of a burst of repeats or a long wait;
/// * higher model rate than source rate: a frame feeds every step in its window (repeats); the very first
///   frame feeds only step 0.
#[derive(Debug, Clone)]
pub struct Resampler {
    step: f64,
    origin: Option<f64>,
    next_step: u64,
    last_pts: f64,
    last_interval: Option<f64>,
    /// Added to incoming pts; changed at each discontinuity.
    offset: f64,
}

/// A pts jump larger than this (seconds) is a discontinuity, not a gap.
pub const MAX_JUMP: f64 = 10.0;

/// Timestamps closer than this (seconds) count as equal: avoids float noise deciding ties.
const PTS_EPS: f64 = 1e-9;

impl Resampler {
    pub fn new(model_fps: f64) -> Self {
        assert!(model_fps.is_finite() && model_fps > 0.0, "model fps must be positive");
        Resampler { step: 1.0 / model_fps, origin: None, next_step: 0, last_pts: 0.0, last_interval: None, offset: 0.0 }
    }

    /// Index of the next model step to be fed (= steps fed so far).
    pub fn steps(&self) -> u64 {
        self.next_step
    }

    /// Feed the pts (seconds) of the next decoded frame; returns how many model steps this frame feeds.
    pub fn feed(&mut self, pts: f64) -> usize {
        if !pts.is_finite() {
            return 0;
        }
        let Some(origin) = self.origin else {
            self.origin = Some(pts);
            self.last_pts = pts;
            self.next_step = 1;
            return 1;
        };
        let mut pts = pts + self.offset;
        if (pts - self.last_pts).abs() > MAX_JUMP {
            let continued = self.last_pts + self.last_interval.unwrap_or(self.step);
            self.offset += continued - pts;
            pts = continued;
        }
        if pts <= self.last_pts + PTS_EPS {
            return 0;
        }
        let interval = pts - self.last_pts;
        let half = self.last_interval.map_or(interval, |last| last.min(interval)) / 2.0;
        self.last_interval = Some(interval);
        self.last_pts = pts;
        let end = pts + half;
        let mut count = 0;
        while origin + self.next_step as f64 * self.step < end - PTS_EPS {
            self.next_step += 1;
            count += 1;
        }
        count
    }

    /// Whether a frame at `pts`, whose predecessor in presentation order is at `before` or later, may
    /// feed a step when it comes to be fed: `false` only when it certainly feeds none. Such a frame
    /// can claim only steps at `t ∈ [before, pts + (pts − before) / 2)`: the frames before it have
    /// claimed every step earlier than their own pts, and its window ends at most half its interval
    /// after its pts. Steps already fed are out of reach too. Near a discontinuity, where the time
    /// offset may still change, the answer is `true`.
    pub fn may_feed(&self, pts: f64, before: f64) -> bool {
        // Room for rounding in the timestamps' conversion to seconds.
        const MARGIN: f64 = 1e-6;
        let Some(origin) = self.origin else { return true };
        let (pts, before) = (pts + self.offset, before + self.offset);
        let near = |t: f64| (t - self.last_pts).abs() < MAX_JUMP / 4.0;
        if !(pts.is_finite() && before.is_finite() && before < pts && near(pts) && near(before)) {
            return true;
        }
        let (lo, hi) = (before - MARGIN, pts + (pts - before) / 2.0 + MARGIN);
        // The first step at or after `lo` that is still to be fed.
        let first = ((lo - origin) / self.step).ceil().max(self.next_step as f64);
        origin + first * self.step < hi
    }
}

/// One bilinear tap pair along an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: f64,
    w1: f64,
}

/// Taps of output positions `first..first + count` for a resize from `input` to `output` samples.
fn taps(input: usize, output: usize, first: usize, count: usize) -> Vec<Tap> {
    let scale = input as f64 / output as f64;
    (first..first + count)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            let l = src - i0 as f64;
            Tap { i0, i1, w0: 1.0 - l, w1: l }
        })
        .collect()
}

/// Size after the short-side resize (height, width).
pub fn resized_size(width: usize, height: usize, short: usize) -> (usize, usize) {
    let (s, l) = (width.min(height), width.max(height));
    let long = if s == short { l } else { ((l as f64 / s as f64) * short as f64).floor() as usize };
    if height <= width { (short, long) } else { (long, short) }
}

/// Short-side bilinear resize, centre crop and normalisation of RGB24 frames; buffers are allocated
/// once per input size.
pub struct Preprocessor {
    crop: usize,
    resize_short: usize,
    normalize: Normalize,
    width: usize,
    height: usize,
    rows: Vec<Tap>,
    cols: Vec<Tap>,
    /// First source column any crop column reads, and how many columns are read.
    col_first: usize,
    col_span: usize,
    /// Row pass output: crop rows × col_span × 3.
    tmp: Vec<f64>,
    /// Unrounded crop values (crop × crop × 3, HWC).
    values: Vec<f64>,
    crop_u8: Vec<u8>,
    chw: Vec<f32>,
}

impl Preprocessor {
    pub fn new(spec: &ModelSpec, width: u32, height: u32) -> anyhow::Result<Self> {
        if spec.crop == 0 || spec.resize_short < spec.crop {
            return Err(classified(
                ErrorKind::Runtime,
                format!("model {}: crop {} larger than the resized short side {}", spec.name, spec.crop, spec.resize_short),
            ));
        }
        let mut p = Preprocessor {
            crop: spec.crop,
            resize_short: spec.resize_short,
            normalize: spec.normalize,
            width: 0,
            height: 0,
            rows: Vec::new(),
            cols: Vec::new(),
            col_first: 0,
            col_span: 0,
            tmp: Vec::new(),
            values: vec![0.0; spec.crop * spec.crop * 3],
            crop_u8: vec![0; spec.crop * spec.crop * 3],
            chw: vec![0.0; spec.crop * spec.crop * 3],
        };
        p.set_geometry(width as usize, height as usize)?;
        Ok(p)
    }

    /// Side of the square output.
    pub fn crop(&self) -> usize {
        self.crop
    }

    fn set_geometry(&mut self, width: usize, height: usize) -> anyhow::Result<()> {
        if width == 0 || height == 0 {
            return Err(classified(ErrorKind::Data, format!("frame size {width}x{height} cannot be preprocessed")));
        }
        let (rh, rw) = resized_size(width, height, self.resize_short);
        let (top, left) = ((rh - self.crop) / 2, (rw - self.crop) / 2);
        self.rows = taps(height, rh, top, self.crop);
        self.cols = taps(width, rw, left, self.crop);
        self.col_first = self.cols.iter().map(|t| t.i0).min().unwrap_or(0);
        let last = self.cols.iter().map(|t| t.i1).max().unwrap_or(0);
        self.col_span = last + 1 - self.col_first;
        self.tmp = vec![0.0; self.crop * self.col_span * 3];
        self.width = width;
        self.height = height;
        Ok(())
    }

    /// Resizes and crops `frame` into `values` and `crop_u8`.
    fn run(&mut self, frame: &Frame) -> anyhow::Result<()> {
        let (w, h) = (frame.width as usize, frame.height as usize);
        if frame.rgb.len() != w * h * 3 {
            return Err(classified(ErrorKind::Runtime, format!("frame {}: {} bytes for {w}x{h} RGB", frame.index, frame.rgb.len())));
        }
        if w != self.width || h != self.height {
            self.set_geometry(w, h)?;
        }
        let stride = w * 3;
        let span3 = self.col_span * 3;
        let c0 = self.col_first * 3;
        // Rows first: interpolate the two source rows of every crop row, over the needed columns only.
        for (r, t) in self.rows.iter().enumerate() {
            let a = &frame.rgb[t.i0 * stride + c0..t.i0 * stride + c0 + span3];
            let b = &frame.rgb[t.i1 * stride + c0..t.i1 * stride + c0 + span3];
            let out = &mut self.tmp[r * span3..(r + 1) * span3];
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = t.w0 * a as f64 + t.w1 * b as f64;
            }
        }
        // Then columns.
        let c = self.crop;
        for r in 0..c {
            let row = &self.tmp[r * span3..(r + 1) * span3];
            for (x, t) in self.cols.iter().enumerate() {
                let j0 = (t.i0 - self.col_first) * 3;
                let j1 = (t.i1 - self.col_first) * 3;
                let o = (r * c + x) * 3;
                for ch in 0..3 {
                    let v = t.w0 * row[j0 + ch] + t.w1 * row[j1 + ch];
                    self.values[o + ch] = v;
                    // floor(v + 0.5) clipped to [0, 255]: the saturating cast truncates towards zero, which is floor
                    // for v + 0.5 >= 0 and gives 0 below (and avoids a libm floor call per value).
                    self.crop_u8[o + ch] = (v + 0.5) as u8;
                }
            }
        }
        Ok(())
    }

    /// The uint8 RGB crop (crop*crop*3, HWC) of a frame — hashed by tests against the reference.
    /// Empty if the frame is malformed (its byte count does not match its size).
    pub fn crop_u8(&mut self, frame: &Frame) -> &[u8] {
        match self.run(frame) {
            Ok(()) => &self.crop_u8,
            Err(_) => &[],
        }
    }

    /// The network input values (3, crop, crop) in CHW order, normalised per the model's spec.
    pub fn normalized(&mut self, frame: &Frame) -> anyhow::Result<&[f32]> {
        self.run(frame)?;
        let plane = self.crop * self.crop;
        match self.normalize {
            Normalize::SignedUnit => {
                for (i, px) in self.crop_u8.chunks_exact(3).enumerate() {
                    for (ch, &v) in px.iter().enumerate() {
                        self.chw[ch * plane + i] = v as f32 / 127.5 - 1.0;
                    }
                }
            }
            Normalize::MeanStd { mean, std } => {
                for (i, px) in self.values.chunks_exact(3).enumerate() {
                    for (ch, &v) in px.iter().enumerate() {
                        self.chw[ch * plane + i] = ((v / 255.0) as f32 - mean[ch]) / std[ch];
                    }
                }
            }
        }
        Ok(&self.chw)
    }

    /// The network input (3, crop, crop) f32 on the CPU device, normalised per spec.normalize.
    pub fn tensor(&mut self, frame: &Frame) -> anyhow::Result<Tensor> {
        let c = self.crop;
        let data = self.normalized(frame)?;
        Ok(Tensor::from_slice(data, (3, c, c), &Device::Cpu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(short: usize, crop: usize, normalize: Normalize) -> ModelSpec {
        ModelSpec { name: "t".into(), fps: 25.0, resize_short: short, crop, normalize, num_classes: 1 }
    }

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32, u32) -> u8) -> Frame {
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    rgb.push(f(x, y, c));
                }
            }
        }
        Frame { index: 0, pts: 0.0, width: w, height: h, rgb }
    }

    #[test]
    fn resized_size_follows_the_short_side_rule() {
        assert_eq!(resized_size(1768, 994, 256), (256, 455));
        assert_eq!(resized_size(1768, 994, 160), (160, 284));
        assert_eq!(resized_size(994, 1768, 256), (455, 256));
        assert_eq!(resized_size(320, 240, 240), (240, 320));
        assert_eq!(resized_size(300, 300, 160), (160, 160));
    }

    #[test]
    fn taps_match_hand_computed_values() {
        // 4 -> 2: src = (o + .5) * 2 - .5 = 0.5, 2.5
        let t = taps(4, 2, 0, 2);
        assert_eq!(t[0], Tap { i0: 0, i1: 1, w0: 0.5, w1: 0.5 });
        assert_eq!(t[1], Tap { i0: 2, i1: 3, w0: 0.5, w1: 0.5 });
        // 2 -> 4: src = (o + .5) / 2 - .5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (upper tap clamped)
        let t = taps(2, 4, 0, 4);
        assert_eq!(t[0], Tap { i0: 0, i1: 1, w0: 1.0, w1: 0.0 });
        assert_eq!(t[1], Tap { i0: 0, i1: 1, w0: 0.75, w1: 0.25 });
        assert_eq!(t[2], Tap { i0: 0, i1: 1, w0: 0.25, w1: 0.75 });
        assert_eq!(t[3], Tap { i0: 1, i1: 1, w0: 0.75, w1: 0.25 });
    }

    #[test]
    fn downscale_by_two_averages_pixel_pairs() {
        // 4x4 -> short side 2, crop 2: each output is the mean of a 2x2 block (half-pixel centres).
        let f = frame(4, 4, |x, y, c| (10 * x + 40 * y + c) as u8);
        let mut p = Preprocessor::new(&spec(2, 2, Normalize::SignedUnit), 4, 4).unwrap();
        let out = p.crop_u8(&f).to_vec();
        // Block (0,0): x 0..1, y 0..1 -> 10*0.5 + 40*0.5 = 25 (+c)
        assert_eq!(&out[0..3], &[25, 26, 27]);
        // Block (0,1) (row 0, col 1): x 2..3 -> 25 + 20 = 45
        assert_eq!(&out[3..6], &[45, 46, 47]);
        // Row 1: +80
        assert_eq!(&out[6..9], &[105, 106, 107]);
        assert_eq!(&out[9..12], &[125, 126, 127]);
    }

    #[test]
    fn upscale_rounds_half_up_and_crops_the_centre() {
        // 2x1 (w x h) -> short side 2: 4x2; crop 2 takes columns 1..3, i.e. src 0.25 and 0.75.
        let f = frame(2, 1, |x, _, _| if x == 0 { 0 } else { 2 });
        let mut p = Preprocessor::new(&spec(2, 2, Normalize::SignedUnit), 2, 1).unwrap();
        let out = p.crop_u8(&f).to_vec();
        // 0.75*0 + 0.25*2 = 0.5 -> 1 (half up); 0.25*0 + 0.75*2 = 1.5 -> 2
        assert_eq!(out, vec![1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]);
    }

    #[test]
    fn short_side_equal_to_target_is_an_identity_crop() {
        let f = frame(7, 5, |x, y, c| (x * 31 + y * 7 + c * 3) as u8);
        let mut p = Preprocessor::new(&spec(5, 3, Normalize::SignedUnit), 7, 5).unwrap();
        let out = p.crop_u8(&f).to_vec();
        // offsets: top (5-3)/2 = 1, left (7-3)/2 = 2
        let mut want = Vec::new();
        for y in 1..4 {
            for x in 2..5 {
                for c in 0..3 {
                    want.push((x * 31 + y * 7 + c * 3) as u8);
                }
            }
        }
        assert_eq!(out, want);
    }

    #[test]
    fn normalisations() {
        let f = frame(2, 2, |_, _, c| [0u8, 255, 51][c as usize]);
        let mut p = Preprocessor::new(&spec(2, 2, Normalize::SignedUnit), 2, 2).unwrap();
        let t = p.tensor(&f).unwrap();
        assert_eq!(t.dims(), &[3, 2, 2]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v[0], -1.0);
        assert_eq!(v[4], 1.0);
        assert_eq!(v[8], 51.0 / 127.5 - 1.0);
        let ms = Normalize::MeanStd { mean: [0.45; 3], std: [0.225; 3] };
        let mut p = Preprocessor::new(&spec(2, 2, ms), 2, 2).unwrap();
        let v = p.normalized(&f).unwrap().to_vec();
        assert_eq!(v[0], (0.0f32 - 0.45) / 0.225);
        assert_eq!(v[4], (1.0f32 - 0.45) / 0.225);
        assert_eq!(v[8], (0.2f32 - 0.45) / 0.225);
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut p = Preprocessor::new(&spec(4, 4, Normalize::SignedUnit), 8, 8).unwrap();
        let f = Frame { index: 3, pts: 0.0, width: 8, height: 8, rgb: vec![0; 10] };
        assert!(p.crop_u8(&f).is_empty());
        assert!(p.tensor(&f).is_err());
        let f = Frame { index: 4, pts: 0.0, width: 0, height: 8, rgb: vec![] };
        assert!(p.tensor(&f).is_err());
        assert!(Preprocessor::new(&spec(4, 5, Normalize::SignedUnit), 8, 8).is_err());
        assert!(Preprocessor::new(&spec(4, 4, Normalize::SignedUnit), 0, 8).is_err());
    }

    #[test]
    fn resampler_30_to_25_is_round_n_times_1_2() {
        let mut r = Resampler::new(25.0);
        let mut fed = Vec::new();
        for k in 0..300u64 {
            for _ in 0..r.feed(k as f64 / 30.0) {
                fed.push(k);
            }
        }
        let want: Vec<u64> = (0..fed.len() as u64).map(|n| (12 * n + 5) / 10).collect();
        assert_eq!(&fed[..16], &[0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18]);
        assert_eq!(fed, want);
        assert_eq!(fed.len(), 250);
    }

    #[test]
    fn resampler_30_to_5_takes_every_sixth() {
        let mut r = Resampler::new(5.0);
        let fed: Vec<u64> = (0..60u64).filter(|&k| r.feed(1.5 + k as f64 / 30.0) > 0).collect();
        assert_eq!(fed, (0..10).map(|n| 6 * n).collect::<Vec<_>>());
    }

    #[test]
    fn may_feed_is_false_only_for_frames_that_feed_nothing() {
        // Jittered 30 fps with a gap, a duplicate and a step back; "known" predecessors up to 4
        // frames back, asked with the resampler up to 6 frames behind (a decoder's lead).
        let mut pts: Vec<f64> = (0..300).map(|i| i as f64 / 30.0 + 0.007 * ((i * 7 % 11) as f64 / 11.0)).collect();
        pts.iter_mut().skip(150).for_each(|p| *p += 0.5);
        pts[200] = pts[199];
        pts[240] = pts[238];
        for fps in [2.5, 5.0, 7.0, 25.0, 30.0, 60.0] {
            let mut refused = 0;
            for lead in 1..=6 {
                let mut r = Resampler::new(fps);
                for i in 0..pts.len() {
                    // The state `lead` frames before frame i: frames i-lead..i not yet fed.
                    if i >= lead {
                        let mut ahead = r.clone();
                        for &p in &pts[i - lead + 1..i] {
                            ahead.feed(p);
                        }
                        for back in 1..=4.min(i) {
                            let before = pts[i - back];
                            if before < pts[i] && !r.may_feed(pts[i], before) {
                                refused += 1;
                                assert_eq!(ahead.clone().feed(pts[i]), 0, "fps {fps} frame {i} lead {lead} back {back}");
                            }
                        }
                    }
                    if i + 1 >= lead {
                        r.feed(pts[i + 1 - lead]);
                    }
                }
            }
            assert!(fps > 30.0 || refused > 0, "fps {fps}: no refusals to check");
        }
    }

    #[test]
    fn resampler_gaps_duplicates_and_upsampling() {
        let mut r = Resampler::new(10.0);
        assert_eq!(r.feed(0.0), 1); // step 0 at 0.0
        assert_eq!(r.feed(0.1), 1); // step 1 at 0.1 (window ends 0.15)
        assert_eq!(r.feed(0.1), 0); // duplicate
        assert_eq!(r.feed(0.05), 0); // backwards
        // gap: next frame at 0.5; steps 0.2, 0.3, 0.4, 0.5 fall before 0.5 + min(0.4, 0.1)/2 = 0.55
        assert_eq!(r.feed(0.5), 4);
        assert_eq!(r.feed(0.6), 1);
        // upsampling: 10 fps model on a 5 fps stretch: window ends 0.8 + min(0.1, 0.2)/2 = 0.85 -> steps 0.7
        // (a tie between 0.6 and 0.8: the later frame) and 0.8; then 1.0 + 0.2/2 = 1.1 -> steps 0.9, 1.0
        assert_eq!(r.feed(0.8), 2);
        assert_eq!(r.feed(1.0), 2);
        assert_eq!(r.steps(), 11);
        // Discontinuities: a jump to 100 s continues at 1.0 + 0.2 = 1.2 (window end 1.3: steps 1.1, 1.2),
        // and the stream goes on from there; so does a reset to 0.
        assert_eq!(r.feed(100.0), 2);
        assert_eq!(r.feed(100.2), 2);
        assert_eq!(r.feed(0.0), 2);
        assert_eq!(r.feed(0.2), 2);
        assert_eq!(r.steps(), 19);
        assert_eq!(r.feed(f64::NAN), 0);
        // A gap below the limit is a gap: 9 s of steps repeat the frame after it.
        assert_eq!(r.feed(9.2), 90);
    }
}
