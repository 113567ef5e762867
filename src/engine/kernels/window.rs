//! Spatial window ops on channels-last `(H, W, C)` frames, one output row range at a time: im2col,
//! depthwise convolution (channels-last and 16-channel blocked frames) and max and average pooling.
//! Depthwise convolution and max pooling run over 16-channel blocks kept in registers across all
//! spatial taps; the AVX-512/AVX2 forms are chosen by [`isa`]. Splitting the rows across the step's
//! threads is the caller's business (`threads::ops`).

use std::ops::Range;

use super::isa;
use super::lanes::{B, blocked_len, lane_mask};

/// Spatial zero padding `[top, bottom, left, right]`.
pub type Pad2d = [usize; 4];

/// Geometry of a spatial window op on channels-last frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: Pad2d,
}

impl Window {
    pub fn output_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let [t, b, l, r] = self.pad;
        ((h + t + b - self.kh) / self.stride + 1, (w + l + r - self.kw) / self.stride + 1)
    }

    /// The taps of output pixel `(oy, ox)` whose input lies inside an `h × w` frame of `c` channels.
    #[inline(always)]
    fn taps_at(&self, oy: usize, ox: usize, h: usize, w: usize, c: usize) -> Taps {
        let [t, _, l, _] = self.pad;
        let inside = |o: usize, k: usize, pad: usize, size: usize| {
            let k0 = pad.saturating_sub(o * self.stride).min(k);
            k0..(size + pad).saturating_sub(o * self.stride).min(k).max(k0)
        };
        let (ky, kx) = (inside(oy, self.kh, t, h), inside(ox, self.kw, l, w));
        let (iy0, ix0) = (oy * self.stride + ky.start - t, ox * self.stride + kx.start - l);
        Taps { ky, kx, iy0, ix0, w, c, kw: self.kw }
    }

    /// Input row (or column) of output `o` and tap `k`, if it lies inside the frame.
    #[inline(always)]
    fn source(o: usize, k: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
        (o * stride + k).checked_sub(pad).filter(|&i| i < size)
    }

    /// Rows `rows` of the im2col matrix `(OH·OW, kh·kw·C)` of a frame `x (h, w, c)` into `out` (whole
    /// output rows, `OW·kh·kw·C` values each): row `p` holds output pixel `p`'s window, tap-major,
    /// zeros where it hangs over the edge. Every value of `out` is written.
    pub fn im2col_rows(&self, x: &[f32], h: usize, w: usize, c: usize, out: &mut [f32], rows: Range<usize>) {
        let (_, ow) = self.output_hw(h, w);
        let k = self.kh * self.kw * c;
        let [t, _, l, _] = self.pad;
        for (oy, out) in rows.zip(out.chunks_exact_mut(ow * k)) {
            for ky in 0..self.kh {
                let iy = Self::source(oy, ky, self.stride, t, h);
                let run = self.kw * c;
                for (ox, row) in out.chunks_exact_mut(k).enumerate() {
                    // A kernel row inside the frame is one run of kw·c values in the input too.
                    if let Some(iy) = iy
                        && let Some(ix) = (ox * self.stride).checked_sub(l).filter(|ix| ix + self.kw <= w)
                    {
                        copy_run(&mut row[ky * run..][..run], &x[(iy * w + ix) * c..][..run]);
                        continue;
                    }
                    for kx in 0..self.kw {
                        let dst = &mut row[(ky * self.kw + kx) * c..][..c];
                        match (iy, Self::source(ox, kx, self.stride, l, w)) {
                            // RGB input (every model's first conv): a fixed-size copy, not a memcpy call.
                            (Some(iy), Some(ix)) if c == 3 => dst.copy_from_slice(&x[(iy * w + ix) * 3..][..3]),
                            (Some(iy), Some(ix)) => dst.copy_from_slice(&x[(iy * w + ix) * c..][..c]),
                            _ => dst.fill(0.0),
                        }
                    }
                }
            }
        }
    }

    /// Output rows `rows` of the sum of depthwise convolutions of several frames `(h, w, c)`, each with
    /// its own `(kh, kw, C)` weight (the temporal taps of a 3-D depthwise conv), into `out` (those
    /// rows, `OW·C` values each): added to `out`, or with `start` (per channel, e.g. the bias) written
    /// over it.
    #[allow(clippy::too_many_arguments)]
    pub fn depthwise_rows(
        &self,
        terms: &[(&[f32], &[f32])],
        start: Option<&[f32]>,
        h: usize,
        w: usize,
        c: usize,
        out: &mut [f32],
        rows: Range<usize>,
    ) {
        for (x, wt) in terms {
            assert!(x.len() >= h * w * c && wt.len() >= self.kh * self.kw * c, "depthwise: buffers too small");
        }
        assert!(start.is_none_or(|s| s.len() >= c), "depthwise: start too short");
        self.check_rows(h, w, c, out, &rows);
        self.rows(Op::Fma(terms), start, h, w, c, out, rows)
    }

    /// Whether [`Self::depthwise_blocked_rows`] runs this window: AVX-512, no padding, and 3 columns at
    /// stride 1 or 2. (A 1×1 window reuses no neighbouring input, and blocks pad the channels to 16:
    /// CoX3D's 24-channel temporal stem would keep a third more memory for nothing.)
    pub fn has_blocked_kernel(&self) -> bool {
        isa::avx512() && self.pad == [0; 4] && matches!((self.stride, self.kw), (1, 3) | (2, 3))
    }

    /// [`Self::depthwise_rows`] over frames kept in 16-channel blocks ([`blocked_len`]): channel `ch`
    /// of pixel `(y, x)` at `(ch / 16)·h·w·16 + (y·w + x)·16 + ch % 16`. The output is channels-last
    /// as usual. One channel block at a time goes down the rows, so a block's input rows (contiguous
    /// here) are read from memory once and reused from L1 by the rows below; channels-last frames
    /// would have to be read one 64-byte piece per pixel for that. Needs [`Self::has_blocked_kernel`].
    #[allow(clippy::too_many_arguments)]
    pub fn depthwise_blocked_rows(
        &self,
        terms: &[(&[f32], &[f32])],
        start: Option<&[f32]>,
        h: usize,
        w: usize,
        c: usize,
        out: &mut [f32],
        rows: Range<usize>,
    ) {
        assert!(self.has_blocked_kernel(), "depthwise: no blocked kernel for {self:?}");
        for (x, wt) in terms {
            assert!(x.len() >= blocked_len(h, w, c) && wt.len() >= self.kh * self.kw * c, "depthwise: buffers too small");
        }
        assert!(start.is_none_or(|s| s.len() >= c), "depthwise: start too short");
        self.check_rows(h, w, c, out, &rows);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F is present (`has_blocked_kernel`); the sizes were checked above.
        unsafe {
            match (self.stride, self.kw) {
                (1, 3) => self.depthwise_blocked_rows_avx512::<1, 3>(terms, start, h, w, c, out, rows),
                _ => self.depthwise_blocked_rows_avx512::<2, 3>(terms, start, h, w, c, out, rows),
            }
        }
    }

    /// The output rows `rows` of [`Self::depthwise_blocked_rows`] into `out`.
    ///
    /// # Safety
    /// AVX-512F; no padding; every term holds [`blocked_len`] values, its weight `kh·kw·c`; `out`
    /// holds the rows.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn depthwise_blocked_rows_avx512<const S: usize, const KW: usize>(
        &self,
        terms: &[(&[f32], &[f32])],
        start: Option<&[f32]>,
        h: usize,
        w: usize,
        c: usize,
        out: &mut [f32],
        rows: Range<usize>,
    ) {
        let (_, ow) = self.output_hw(h, w);
        let run_len = if S == 1 { RUN } else { RUN / 2 };
        let out = out.as_mut_ptr();
        for cb in (0..c).step_by(B) {
            let mask = lane_mask(c - cb);
            for oy in rows.clone() {
                let row = out.wrapping_add((oy - rows.start) * ow * c);
                let run = DepthwiseRun { terms, start, mask, ky: 0..self.kh, iy0: oy * S, w, c, cb, px: B, x_off: cb * h * w };
                let mut ox = 0;
                while ox < ow {
                    let n = (ow - ox).min(run_len);
                    // SAFETY: without padding every tap of outputs ox.. lies inside the frame; `row`
                    // holds ow pixels of c values.
                    unsafe { run.outputs_in_runs::<S, KW>(n, ox * S, row.add(ox * c + cb)) };
                    ox += n;
                }
            }
        }
    }

    /// Output rows `rows` of the max over each window of `x (h, w, c)` into `out` (those rows, `OW·C`
    /// values each); the padding never wins (−∞).
    pub fn max_pool_rows(&self, x: &[f32], h: usize, w: usize, c: usize, out: &mut [f32], rows: Range<usize>) {
        assert!(x.len() >= h * w * c, "max pool: input too small");
        self.check_rows(h, w, c, out, &rows);
        let (_, ow) = self.output_hw(h, w);
        out[..rows.len() * ow * c].fill(f32::NEG_INFINITY);
        self.rows(Op::Max(x), None, h, w, c, out, rows)
    }

    /// The output rows lie inside the output, and `out` holds them.
    fn check_rows(&self, h: usize, w: usize, c: usize, out: &[f32], rows: &Range<usize>) {
        let (oh, ow) = self.output_hw(h, w);
        assert!(rows.end <= oh && out.len() >= rows.len() * ow * c, "window op: output too small");
    }

    /// The output rows `rows` of `op` into `out`, with the fastest kernel the CPU has.
    #[allow(clippy::too_many_arguments)]
    fn rows(&self, op: Op, start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32], rows: Range<usize>) {
        #[cfg(target_arch = "x86_64")]
        {
            if isa::avx512() {
                let (_, ow) = self.output_hw(h, w);
                // SAFETY (all four): the CPU has AVX-512F (`isa`); the callers checked the sizes.
                return unsafe {
                    match (op, self.stride, self.kw) {
                        (Op::Fma(terms), 1, 3) => self.depthwise_rows_avx512::<1, 3>(terms, start, h, w, c, out, rows),
                        (Op::Fma(terms), 2, 3) => self.depthwise_rows_avx512::<2, 3>(terms, start, h, w, c, out, rows),
                        (Op::Fma(terms), 1, 1) => self.depthwise_rows_avx512::<1, 1>(terms, start, h, w, c, out, rows),
                        _ => self.run_avx512(op, start, h, w, c, out, rows, 0..ow),
                    }
                };
            }
            if isa::avx2() {
                // SAFETY: the CPU has AVX2 and FMA (`isa`).
                return unsafe { self.run_avx2(op, start, h, w, c, out, rows) };
            }
        }
        self.run(op, start, h, w, c, out, rows)
    }

    /// Depthwise sums on AVX-512 (stride `S`, `KW` columns) for the output rows `rows`. The interior
    /// columns, whose taps all lie inside the frame horizontally, go in runs of up to 8 outputs per
    /// 16-channel block: the row's `KW` weights stay in registers and each input pixel is loaded once per run,
    /// not once per tap (the per-pixel form is bound by its two loads per FMA). The border columns
    /// go through [`Self::run_avx512`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn depthwise_rows_avx512<const S: usize, const KW: usize>(
        &self,
        terms: &[(&[f32], &[f32])],
        start: Option<&[f32]>,
        h: usize,
        w: usize,
        c: usize,
        out: &mut [f32],
        rows: Range<usize>,
    ) {
        let (_, ow) = self.output_hw(h, w);
        let l = self.pad[2];
        // Interior columns: ox·S ≥ l and ox·S − l + KW ≤ w.
        let lo = l.div_ceil(S).min(ow);
        let hi = if w + l >= KW { ((w + l - KW) / S + 1).min(ow) } else { 0 }.max(lo);
        // SAFETY: as for `run_avx512`, on the border columns.
        unsafe {
            if lo > 0 {
                self.run_avx512(Op::Fma(terms), start, h, w, c, out, rows.clone(), 0..lo);
            }
            if hi < ow {
                self.run_avx512(Op::Fma(terms), start, h, w, c, out, rows.clone(), hi..ow);
            }
        }
        if hi == lo {
            return;
        }
        // Loop order: output rows, runs along the row, and the run's channel blocks innermost, so
        // that the input is read in address order (a frame window's older frames come from L3, and
        // the hardware prefetchers follow a stream; going down the rows one channel block at a time,
        // which keeps more in L1, measured slower in the model).
        let run_len = if S == 1 { RUN } else { RUN / 2 };
        for oy in rows.clone() {
            let row = out[(oy - rows.start) * ow * c..][..ow * c].as_mut_ptr();
            let Taps { ky, iy0, .. } = self.taps_at(oy, lo, h, w, c);
            let mut ox = lo;
            while ox < hi {
                let n = (hi - ox).min(run_len);
                for cb in (0..c).step_by(B) {
                    let mask = lane_mask(c - cb);
                    let run = DepthwiseRun { terms, start, mask, ky: ky.clone(), iy0, w, c, cb, px: c, x_off: cb };
                    // SAFETY: columns lo..hi are interior (every tap's input column lies in 0..w),
                    // the rows in `ky` are inside the frame (`taps_at`), and `row` holds ow pixels.
                    unsafe { run.outputs_in_runs::<S, KW>(n, ox * S - l, row.add(ox * c + cb)) };
                }
                ox += n;
            }
        }
    }

    /// The AVX-512 form of [`Self::run`] for the output columns `cols`, written with intrinsics: per
    /// output pixel, 64 channels at a time in four registers (independent chains hide the FMA
    /// latency), masked loads and stores for the last partial block.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_avx512(
        &self,
        op: Op,
        start: Option<&[f32]>,
        h: usize,
        w: usize,
        c: usize,
        out: &mut [f32],
        rows: Range<usize>,
        cols: Range<usize>,
    ) {
        // SAFETY (all loads and stores): masked lanes lie inside a pixel's `c` channels, and every
        // pixel and tap offset lies inside the buffers the callers checked. The blocks past `c` are
        // wholly masked off: their addresses are formed with `wrapping_add` (they may lie past the
        // allocation) and never read or written.
        unsafe {
            use std::arch::x86_64::*;
            let (_, ow) = self.output_hw(h, w);
            let mask = |from: usize| lane_mask(c.saturating_sub(from));
            for oy in rows.clone() {
                for ox in cols.clone() {
                    let Taps { ky, kx, iy0, ix0, .. } = self.taps_at(oy, ox, h, w, c);
                    let (ky0, ky1, kx0, kx1) = (ky.start, ky.end, kx.start, kx.end);
                    let o = out[((oy - rows.start) * ow + ox) * c..][..c].as_mut_ptr();
                    for cb in (0..c).step_by(4 * B) {
                        let m = [mask(cb), mask(cb + B), mask(cb + 2 * B), mask(cb + 3 * B)];
                        let mut acc = [_mm512_setzero_ps(); 4];
                        // Start from `start` (the same for every pixel) or from the output itself.
                        let from = match start {
                            Some(s) => s.as_ptr(),
                            None => o as *const f32,
                        };
                        for b in 0..4 {
                            acc[b] = _mm512_maskz_loadu_ps(m[b], from.wrapping_add(cb + b * B));
                        }
                        match op {
                            Op::Fma(terms) => {
                                for &(x, wt) in terms {
                                    for ky in ky0..ky1 {
                                        for kx in kx0..kx1 {
                                            let xp = x.as_ptr().add(((iy0 + ky - ky0) * w + ix0 + kx - kx0) * c + cb);
                                            let wp = wt.as_ptr().add((ky * self.kw + kx) * c + cb);
                                            for b in 0..4 {
                                                let xv = _mm512_maskz_loadu_ps(m[b], xp.wrapping_add(b * B));
                                                let wv = _mm512_maskz_loadu_ps(m[b], wp.wrapping_add(b * B));
                                                acc[b] = _mm512_fmadd_ps(xv, wv, acc[b]);
                                            }
                                        }
                                    }
                                }
                            }
                            Op::Max(x) => {
                                for ky in ky0..ky1 {
                                    for kx in kx0..kx1 {
                                        let xp = x.as_ptr().add(((iy0 + ky - ky0) * w + ix0 + kx - kx0) * c + cb);
                                        for b in 0..4 {
                                            acc[b] = _mm512_mask_max_ps(
                                                acc[b],
                                                m[b],
                                                acc[b],
                                                _mm512_maskz_loadu_ps(m[b], xp.wrapping_add(b * B)),
                                            );
                                        }
                                    }
                                }
                            }
                        }
                        for b in 0..4 {
                            _mm512_mask_storeu_ps(o.wrapping_add(cb + b * B), m[b], acc[b]);
                        }
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_avx2(&self, op: Op, start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32], rows: Range<usize>) {
        self.run(op, start, h, w, c, out, rows)
    }

    /// Per output pixel, per block of 16 channels: load the block, apply every tap that lies inside
    /// the frame, store. Everything here is inlined into the `target_feature` callers (a closure
    /// would not be), so the lanes become vector instructions.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run(&self, op: Op, start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32], rows: Range<usize>) {
        let (_, ow) = self.output_hw(h, w);
        for oy in rows.clone() {
            for ox in 0..ow {
                let taps = self.taps_at(oy, ox, h, w, c);
                let o = &mut out[((oy - rows.start) * ow + ox) * c..][..c];
                if let Some(s) = start {
                    o.copy_from_slice(&s[..c]);
                }
                if c >= B {
                    // When c is not a multiple of 16 the last block is the 16 channels ending at c,
                    // overlapping the block before it. It starts from the values saved before any
                    // block ran, so the lanes it shares are recomputed identically, and it stores all
                    // 16 lanes (no partial store).
                    let full = c / B;
                    let tail = (!c.is_multiple_of(B)).then(|| <[f32; B]>::try_from(&o[c - B..]).expect("16 lanes"));
                    // Blocks in groups of 4: independent accumulation chains hide the FMA latency.
                    let mut cb = 0;
                    while cb + 4 <= full {
                        blocks::<4>(op, &taps, [cb, cb + 1, cb + 2, cb + 3].map(|b| b * B), o);
                        cb += 4;
                    }
                    match full - cb {
                        0 => {}
                        1 => blocks::<1>(op, &taps, [cb * B], o),
                        2 => blocks::<2>(op, &taps, [cb * B, (cb + 1) * B], o),
                        _ => blocks::<3>(op, &taps, [cb * B, (cb + 1) * B, (cb + 2) * B], o),
                    }
                    if let Some(init) = tail {
                        o[c - B..].copy_from_slice(&init);
                        blocks::<1>(op, &taps, [c - B], o);
                    }
                } else {
                    narrow(op, &taps, o);
                }
            }
        }
    }
}

/// `dst = src` for a short run; an RGB 3×3 window row (X3D's stem, 9 values) as a fixed-size copy
/// rather than a memcpy call.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    match (<&mut [f32; 9]>::try_from(&mut *dst), <&[f32; 9]>::try_from(src)) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => dst.copy_from_slice(src),
    }
}

/// Outputs per run of the interior depthwise kernel.
const RUN: usize = 8;

/// One 16-channel block of a row's interior outputs of a depthwise sum (see
/// [`Window::depthwise_rows_avx512`]).
#[cfg(target_arch = "x86_64")]
struct DepthwiseRun<'a> {
    terms: &'a [(&'a [f32], &'a [f32])],
    start: Option<&'a [f32]>,
    mask: u16,
    /// Kernel rows inside the frame, and the input row of the first.
    ky: Range<usize>,
    iy0: usize,
    w: usize,
    c: usize,
    cb: usize,
    /// Values from one input pixel to the next (`c` channels-last, 16 in blocks), and the offset of
    /// this channel block's first pixel.
    px: usize,
    x_off: usize,
}

#[cfg(target_arch = "x86_64")]
impl DepthwiseRun<'_> {
    /// `n` outputs (at most [`RUN`]) as runs of 8, 4, 2 and 1; arguments as for [`Self::outputs`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn outputs_in_runs<const S: usize, const KW: usize>(&self, n: usize, ix: usize, o: *mut f32) {
        // SAFETY: as for `outputs`, which every call covers a part of.
        unsafe {
            if n == RUN {
                return self.outputs::<RUN, S, KW>(ix, o);
            }
            let mut r = 0;
            for len in [4, 2, 1] {
                while n - r >= len {
                    let (ix, o) = (ix + r * S, o.add(r * self.c));
                    match len {
                        4 => self.outputs::<4, S, KW>(ix, o),
                        2 => self.outputs::<2, S, KW>(ix, o),
                        _ => self.outputs::<1, S, KW>(ix, o),
                    }
                    r += len;
                }
            }
        }
    }

    /// `R` outputs side by side from input column `ix` (the first output's first tap) into `o` (the
    /// first output's block, outputs `c` apart). Input column `ix + j` feeds output `r` through tap
    /// `j − r·S`: each is loaded once and used by every output it reaches. Kernel rows alternate
    /// between two sets of accumulators, so that 2·R chains hide the FMA latency.
    ///
    /// # Safety
    /// AVX-512F; columns `ix .. ix + (R−1)·S + KW` and rows `iy0 ..` for `ky` lie inside every term's
    /// frame; `o` holds `R` pixels of `c` values.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn outputs<const R: usize, const S: usize, const KW: usize>(&self, ix: usize, o: *mut f32) {
        use std::arch::x86_64::*;
        let (m, c) = (self.mask, self.c);
        // SAFETY: the caller vouches for every offset; masked lanes stay inside a pixel's channels.
        unsafe {
            let mut even = [_mm512_setzero_ps(); R];
            let mut odd = [_mm512_setzero_ps(); R];
            match self.start {
                Some(s) => even = [_mm512_maskz_loadu_ps(m, s.as_ptr().add(self.cb)); R],
                None => {
                    for (r, a) in even.iter_mut().enumerate() {
                        *a = _mm512_maskz_loadu_ps(m, o.add(r * c));
                    }
                }
            }
            let mut flip = false;
            for &(x, wt) in self.terms {
                for (dy, ky) in self.ky.clone().enumerate() {
                    let xr = x.as_ptr().add(self.x_off + ((self.iy0 + dy) * self.w + ix) * self.px);
                    let wr = wt.as_ptr().add(ky * KW * c + self.cb);
                    if flip {
                        Self::kernel_row::<R, S, KW>(&mut odd, xr, wr, m, self.px, c);
                    } else {
                        Self::kernel_row::<R, S, KW>(&mut even, xr, wr, m, self.px, c);
                    }
                    flip = !flip;
                }
            }
            for r in 0..R {
                _mm512_mask_storeu_ps(o.add(r * c), m, _mm512_add_ps(even[r], odd[r]));
            }
        }
    }

    /// One kernel row: input pixels `xr + j·px` times the row's `KW` weights at `wr` (`c` apart), into `acc`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn kernel_row<const R: usize, const S: usize, const KW: usize>(
        acc: &mut [std::arch::x86_64::__m512; R],
        xr: *const f32,
        wr: *const f32,
        m: u16,
        px: usize,
        c: usize,
    ) {
        use std::arch::x86_64::*;
        // SAFETY: as for `outputs`.
        unsafe {
            let mut wv = [_mm512_setzero_ps(); KW];
            for (kx, v) in wv.iter_mut().enumerate() {
                *v = _mm512_maskz_loadu_ps(m, wr.add(kx * c));
            }
            for j in 0..(R - 1) * S + KW {
                let xv = _mm512_maskz_loadu_ps(m, xr.add(j * px));
                for (r, a) in acc.iter_mut().enumerate() {
                    if j >= r * S && j - r * S < KW {
                        *a = _mm512_fmadd_ps(xv, wv[j - r * S], *a);
                    }
                }
            }
        }
    }
}

/// The taps of one output pixel that lie inside the frame, the input pixel of the first, and the
/// frame geometry.
struct Taps {
    ky: Range<usize>,
    kx: Range<usize>,
    iy0: usize,
    ix0: usize,
    w: usize,
    c: usize,
    kw: usize,
}

impl Taps {
    /// Number of taps inside the frame.
    #[inline(always)]
    fn len(&self) -> usize {
        self.ky.len() * self.kx.len()
    }

    /// Tap `i`'s offsets: `(input pixel · c, weight tap · c)`. (Indexing rather than a closure: a
    /// closure would not be compiled with the caller's target features.)
    #[inline(always)]
    fn offsets(&self, i: usize) -> (usize, usize) {
        let (dy, dx) = (i / self.kx.len(), i % self.kx.len());
        let (ky, kx) = (self.ky.start + dy, self.kx.start + dx);
        (((self.iy0 + dy) * self.w + self.ix0 + dx) * self.c, (ky * self.kw + kx) * self.c)
    }
}

/// `N` whole 16-channel blocks of one output pixel, starting at channels `starts`, accumulated side by
/// side.
#[inline(always)]
fn blocks<const N: usize>(op: Op, taps: &Taps, starts: [usize; N], o: &mut [f32]) {
    let mut acc = [[0f32; B]; N];
    for n in 0..N {
        acc[n].copy_from_slice(&o[starts[n]..starts[n] + B]);
    }
    match op {
        Op::Fma(terms) => {
            for &(x, wt) in terms {
                for (dy, ky) in taps.ky.clone().enumerate() {
                    for (dx, kx) in taps.kx.clone().enumerate() {
                        let xo = ((taps.iy0 + dy) * taps.w + taps.ix0 + dx) * taps.c;
                        let wo = (ky * taps.kw + kx) * taps.c;
                        for n in 0..N {
                            fma16(&mut acc[n], lanes(x, xo + starts[n]), lanes(wt, wo + starts[n]));
                        }
                    }
                }
            }
        }
        Op::Max(x) => {
            for dy in 0..taps.ky.len() {
                for dx in 0..taps.kx.len() {
                    let xo = ((taps.iy0 + dy) * taps.w + taps.ix0 + dx) * taps.c;
                    for n in 0..N {
                        max16(&mut acc[n], lanes(x, xo + starts[n]));
                    }
                }
            }
        }
    }
    for n in 0..N {
        o[starts[n]..starts[n] + B].copy_from_slice(&acc[n]);
    }
}

#[inline(always)]
fn lanes(v: &[f32], at: usize) -> &[f32; B] {
    v[at..at + B].try_into().expect("16 lanes")
}

#[inline(always)]
fn fma16(acc: &mut [f32; B], x: &[f32; B], w: &[f32; B]) {
    for i in 0..B {
        acc[i] = x[i].mul_add(w[i], acc[i]);
    }
}

#[inline(always)]
fn max16(acc: &mut [f32; B], x: &[f32; B]) {
    for i in 0..B {
        acc[i] = acc[i].max(x[i]);
    }
}

/// Fewer than 16 channels: plain loops.
#[inline(always)]
fn narrow(op: Op, taps: &Taps, o: &mut [f32]) {
    let c = taps.c;
    match op {
        Op::Fma(terms) => {
            for &(x, wt) in terms {
                for tap in 0..taps.len() {
                    let (xo, wo) = taps.offsets(tap);
                    for i in 0..c {
                        o[i] = x[xo + i].mul_add(wt[wo + i], o[i]);
                    }
                }
            }
        }
        Op::Max(x) => {
            for tap in 0..taps.len() {
                let (xo, _) = taps.offsets(tap);
                for i in 0..c {
                    o[i] = o[i].max(x[xo + i]);
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Op<'a> {
    /// Depthwise multiply-accumulate: frames, each with a `(kh, kw, C)` weight.
    Fma(&'a [(&'a [f32], &'a [f32])]),
    Max(&'a [f32]),
}

/// Mean over `k×k` windows, stride 1, no padding, into `out (h−k+1, w−k+1, c)`.
pub fn avg_pool(x: &[f32], h: usize, w: usize, c: usize, k: usize, out: &mut [f32]) {
    let (oh, ow) = (h - k + 1, w - k + 1);
    let inv = 1.0 / (k * k) as f32;
    for oy in 0..oh {
        for ox in 0..ow {
            let o = &mut out[(oy * ow + ox) * c..][..c];
            o.fill(0.0);
            for ky in 0..k {
                for kx in 0..k {
                    let xs = &x[((oy + ky) * w + ox + kx) * c..][..c];
                    o.iter_mut().zip(xs).for_each(|(a, &v)| *a += v);
                }
            }
            o.iter_mut().for_each(|a| *a *= inv);
        }
    }
}
