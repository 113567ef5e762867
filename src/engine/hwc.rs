//! Channels-last `(H, W, C)` kernels of the step path, writing into caller-owned buffers.
//!
//! Dense and 1×1 convolutions are matrix products accumulated straight into their destination
//! (`super::gemm`); depthwise convolution and pooling run over 16-channel
//! blocks kept in registers across all spatial taps. The AVX-512/AVX2 variants are chosen at run time.

use super::spatial::Pad2d;

use super::gemm::{Rows, Store, Weight};
use super::team;
use super::Activation;

/// Work (multiply-adds, or values visited) per chunk when an op is shared by the step's threads
/// ([`team`]): a hand-off costs well under a microsecond, a chunk of this size one or two. (Measured
/// on CoX3D-S with 2 threads: 20 k–100 k per chunk and 1–4 chunks per thread all within noise;
/// 300 k and more lose.)
const CHUNK_WORK: usize = 50_000;

/// Work of one value of a pass that only streams memory (a copy, a sum, a gate): it costs about as
/// long as this many multiply-adds, as the data come from L2 or L3.
const PASS_WORK: usize = 4;

/// Work of a pass over `values` that streams memory and applies `act` to each.
pub fn pass_work(values: usize, act: Option<Activation>) -> usize {
    values * (PASS_WORK + Activation::work_per_value(act))
}

/// Start of chunk `i` (`i = chunks`: the end) when `units` are cut into `chunks`. The leader claims
/// chunks from the front and helpers from the back, so the chunks claimed last, whose end the other
/// thread waits for, are those in the middle: from 4 chunks on they are cut smaller there (weights
/// 2 1 1 2, 3 2 1 1 2 3, …). Measured on CoX3D-S in one process, steps alternating: the same or up to
/// 7 % faster than even chunks, the more so the busier the host.
fn chunk_start(units: usize, chunks: usize, i: usize) -> usize {
    if chunks < 4 {
        return units * i / chunks;
    }
    let weight = |j: usize| chunks / 2 - j.min(chunks - 1 - j);
    let total: usize = (0..chunks).map(weight).sum();
    units * (0..i).map(weight).sum::<usize>() / total
}

/// Chunks to cut `work` into: one per `CHUNK_WORK`, at most two per thread of the running session.
fn chunks_for(work: usize) -> usize {
    let threads = team::width();
    if threads < 2 { 1 } else { (work / CHUNK_WORK).min(2 * threads) }
}

/// Values an elementwise pass handles at a time when it makes two passes (e.g. a product, then
/// an activation), so that the second reads from L1.
pub const L1_BLOCK: usize = 2048;

/// A pointer that the chunks of one op share; each writes a part the others do not touch.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: used only for disjoint parts of one buffer that outlives the op (see the call sites).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// (A method, so that closures capture the whole `Shared` rather than its raw pointer field.)
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Run `f` on the `rows` rows of `out` (`row_len` values each), in parts on the session's threads
/// when `work` is big enough (each part a run of whole rows); `f` gets its rows and their range.
pub fn split_rows(out: &mut [f32], row_len: usize, rows: usize, work: usize, f: impl Fn(&mut [f32], std::ops::Range<usize>) + Sync) {
    split_rows_by(out, row_len, rows, 1, chunks_for(work), f)
}

/// [`split_rows`] into `chunks` parts whose row counts are multiples of `unit` (but the last).
fn split_rows_by(out: &mut [f32], row_len: usize, rows: usize, unit: usize, chunks: usize, f: impl Fn(&mut [f32], std::ops::Range<usize>) + Sync) {
    let out = &mut out[..rows * row_len];
    let units = rows.div_ceil(unit);
    let chunks = chunks.min(units);
    if chunks <= 1 {
        return f(out, 0..rows);
    }
    let base = Shared(out.as_mut_ptr());
    team::for_each_chunk(chunks, &|i| {
        let range = (chunk_start(units, chunks, i) * unit).min(rows)..(chunk_start(units, chunks, i + 1) * unit).min(rows);
        // SAFETY: the chunks' row ranges are disjoint and inside `out`, which outlives the call.
        let part = unsafe { std::slice::from_raw_parts_mut(base.at(range.start * row_len), range.len() * row_len) };
        f(part, range)
    });
}

/// `out (m, n) = lhs (m, k) · w`, stored as `store` says; row-major. In a session, large products
/// are shared: by column panels when there are more columns than rows (each thread then reads only
/// its part of the weight), else by blocks of 8 rows.
pub fn matmul(m: usize, lhs: &[f32], w: &Weight, out: &mut [f32], store: Store) {
    matmul_into(m, lhs, w, out, Rows::DENSE, store)
}

/// [`matmul`] with the output rows laid out as `layout` says in `out` (only packed weights, i.e.
/// AVX-512 CPUs, take other layouts than [`Rows::DENSE`]).
pub fn matmul_into(m: usize, lhs: &[f32], w: &Weight, out: &mut [f32], layout: Rows, store: Store) {
    let (k, n) = (w.k(), w.n());
    assert!(lhs.len() >= m * k && out.len() >= layout.span(m, n), "matmul: buffers too small");
    let chunks = chunks_for(m * k * n);
    let panels = w.panels();
    if panels == 0 || k == 0 || m == 0 {
        assert_eq!(layout, Rows::DENSE, "matmul: row layouts need packed weights");
        return split_rows_by(out, n, m, 8, chunks, |out, rows| {
            w.matmul(rows.len(), &lhs[rows.start * k..rows.end * k], out, store.narrowed(rows.start * n..rows.end * n));
        });
    }
    let base = Shared(out.as_mut_ptr());
    // SAFETY (both): each chunk writes its own columns or rows of `out`, which holds the layout's
    // span and outlives the call.
    if chunks > 1 && n > m && panels >= 2 {
        let chunks = chunks.min(panels);
        team::for_each_chunk(chunks, &|i| unsafe {
            w.matmul_into(m, lhs, 0..m, base.at(0), layout, store, chunk_start(panels, chunks, i)..chunk_start(panels, chunks, i + 1))
        });
    } else {
        let blocks = m.div_ceil(8);
        let chunks = chunks.clamp(1, blocks);
        let rows = |i: usize| (chunk_start(blocks, chunks, i) * 8).min(m)..(chunk_start(blocks, chunks, i + 1) * 8).min(m);
        if chunks == 1 {
            return unsafe { w.matmul_into(m, lhs, 0..m, base.at(0), layout, store, 0..panels) };
        }
        team::for_each_chunk(chunks, &|i| unsafe { w.matmul_into(m, lhs, rows(i), base.at(0), layout, store, 0..panels) });
    }
}

/// `row` added to every row of `out` (rows of `row.len()`).
pub fn add_rows(out: &mut [f32], row: &[f32]) {
    if row.is_empty() {
        return;
    }
    for chunk in out.chunks_exact_mut(row.len()) {
        chunk.iter_mut().zip(row).for_each(|(o, &b)| *o += b);
    }
}

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

    /// The im2col matrix `(OH·OW, kh·kw·C)` of a frame `(h, w, c)`: row `p` holds output pixel `p`'s
    /// window, tap-major, zeros where it hangs over the edge.
    pub fn im2col(&self, x: &[f32], h: usize, w: usize, c: usize, cols: &mut Vec<f32>) {
        let (oh, ow) = self.output_hw(h, w);
        let k = self.kh * self.kw * c;
        // Every value is written below (zeros where the window hangs over the edge), so a buffer of
        // the right size is reused as it is.
        cols.resize(oh * ow * k, 0.0);
        let [t, _, l, _] = self.pad;
        split_rows(cols, ow * k, oh, pass_work(oh * ow * k, None), |out, rows| {
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
        });
    }

    /// Depthwise convolution accumulated into `out (OH, OW, C)`: `weight` is `(kh, kw, C)`.
    pub fn depthwise_acc(&self, x: &[f32], h: usize, w: usize, c: usize, weight: &[f32], out: &mut [f32]) {
        self.depthwise_sum(&[(x, weight)], None, None, h, w, c, out)
    }

    /// The sum of depthwise convolutions of several frames, each with its own `(kh, kw, C)` weight
    /// (the temporal taps of a 3-D depthwise conv), in one pass over `out (OH, OW, C)`: added to
    /// `out`, or with `start` (per channel, e.g. the bias) written over it; then `act`, applied by the
    /// thread that computed the rows while they are in its cache.
    #[allow(clippy::too_many_arguments)]
    pub fn depthwise_sum(&self, terms: &[(&[f32], &[f32])], start: Option<&[f32]>, act: Option<Activation>, h: usize, w: usize, c: usize, out: &mut [f32]) {
        for (x, wt) in terms {
            assert!(x.len() >= h * w * c && wt.len() >= self.kh * self.kw * c, "depthwise: buffers too small");
        }
        assert!(start.is_none_or(|s| s.len() >= c), "depthwise: start too short");
        self.dispatch(Op::Fma(terms), start, act, h, w, c, out)
    }

    /// Whether [`Self::depthwise_sum_blocked`] runs this window: AVX-512, no padding, and 3 columns at
    /// stride 1 or 2. (A 1×1 window reuses no neighbouring input, and blocks pad the channels to 16:
    /// CoX3D's 24-channel temporal stem would keep a third more memory for nothing.)
    pub fn has_blocked_kernel(&self) -> bool {
        super::gemm::packs_weights() && self.pad == [0; 4] && matches!((self.stride, self.kw), (1, 3) | (2, 3))
    }

    /// [`Self::depthwise_sum`] over frames kept in 16-channel blocks ([`blocked_len`]): channel `ch`
    /// of pixel `(y, x)` at `(ch / 16)·h·w·16 + (y·w + x)·16 + ch % 16`. The output is channels-last
    /// as usual. One channel block at a time goes down the rows, so a block's input rows (contiguous
    /// here) are read from memory once and reused from L1 by the rows below; channels-last frames
    /// would have to be read one 64-byte piece per pixel for that. Needs [`Self::has_blocked_kernel`].
    #[allow(clippy::too_many_arguments)]
    pub fn depthwise_sum_blocked(&self, terms: &[(&[f32], &[f32])], start: Option<&[f32]>, act: Option<Activation>, h: usize, w: usize, c: usize, out: &mut [f32]) {
        assert!(self.has_blocked_kernel(), "depthwise: no blocked kernel for {self:?}");
        for (x, wt) in terms {
            assert!(x.len() >= blocked_len(h, w, c) && wt.len() >= self.kh * self.kw * c, "depthwise: buffers too small");
        }
        assert!(start.is_none_or(|s| s.len() >= c), "depthwise: start too short");
        let (oh, ow) = self.output_hw(h, w);
        assert!(out.len() >= oh * ow * c, "depthwise: output too small");
        let work = oh * ow * c * (self.kh * self.kw * terms.len() + Activation::work_per_value(act));
        split_rows(out, ow * c, oh, work, |out, rows| {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F is present (`has_blocked_kernel`); the sizes were checked above.
            unsafe {
                match (self.stride, self.kw) {
                    (1, 3) => self.depthwise_blocked_rows::<1, 3>(terms, start, h, w, c, out, rows),
                    _ => self.depthwise_blocked_rows::<2, 3>(terms, start, h, w, c, out, rows),
                }
            }
            if let Some(act) = act {
                act.apply(out);
            }
        })
    }

    /// The output rows `rows` of [`Self::depthwise_sum_blocked`] into `out`.
    ///
    /// # Safety
    /// AVX-512F; no padding; every term holds [`blocked_len`] values, its weight `kh·kw·c`; `out`
    /// holds the rows.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn depthwise_blocked_rows<const S: usize, const KW: usize>(
        &self,
        terms: &[(&[f32], &[f32])],
        start: Option<&[f32]>,
        h: usize,
        w: usize,
        c: usize,
        out: &mut [f32],
        rows: std::ops::Range<usize>,
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

    /// Max over each window into `out (OH, OW, C)`; the padding never wins (−∞).
    pub fn max_pool(&self, x: &[f32], h: usize, w: usize, c: usize, out: &mut [f32]) {
        assert!(x.len() >= h * w * c, "max pool: input too small");
        let (oh, ow) = self.output_hw(h, w);
        out[..oh * ow * c].fill(f32::NEG_INFINITY);
        self.dispatch(Op::Max(x), None, None, h, w, c, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(&self, op: Op, start: Option<&[f32]>, act: Option<Activation>, h: usize, w: usize, c: usize, out: &mut [f32]) {
        let (oh, ow) = self.output_hw(h, w);
        assert!(out.len() >= oh * ow * c, "window op: output too small");
        let terms = match op {
            Op::Fma(t) => t.len(),
            Op::Max(_) => 1,
        };
        let work = oh * ow * c * (self.kh * self.kw * terms + Activation::work_per_value(act));
        split_rows(out, ow * c, oh, work, |out, rows| {
            self.rows(op, start, h, w, c, out, rows);
            if let Some(act) = act {
                act.apply(out);
            }
        })
    }

    /// The output rows `rows` of `op` into `out`, with the fastest kernel the CPU has.
    #[allow(clippy::too_many_arguments)]
    fn rows(&self, op: Op, start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32], rows: std::ops::Range<usize>) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                let (_, ow) = self.output_hw(h, w);
                // SAFETY (all four): the CPU has AVX-512F.
                return unsafe {
                    match (op, self.stride, self.kw) {
                        (Op::Fma(terms), 1, 3) => self.depthwise_rows_avx512::<1, 3>(terms, start, h, w, c, out, rows),
                        (Op::Fma(terms), 2, 3) => self.depthwise_rows_avx512::<2, 3>(terms, start, h, w, c, out, rows),
                        (Op::Fma(terms), 1, 1) => self.depthwise_rows_avx512::<1, 1>(terms, start, h, w, c, out, rows),
                        _ => self.run_avx512(op, start, h, w, c, out, rows, 0..ow),
                    }
                };
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA.
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
        rows: std::ops::Range<usize>,
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
    unsafe fn run_avx512(&self, op: Op, start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32], rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        // SAFETY (all loads and stores): masked lanes lie inside a pixel's `c` channels, and every
        // pixel and tap offset lies inside the buffers the callers checked.
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
                            acc[b] = _mm512_maskz_loadu_ps(m[b], from.add(cb + b * B));
                        }
                        match op {
                            Op::Fma(terms) => {
                                for &(x, wt) in terms {
                                    for ky in ky0..ky1 {
                                        for kx in kx0..kx1 {
                                            let xp = x.as_ptr().add(((iy0 + ky - ky0) * w + ix0 + kx - kx0) * c + cb);
                                            let wp = wt.as_ptr().add((ky * self.kw + kx) * c + cb);
                                            for b in 0..4 {
                                                let xv = _mm512_maskz_loadu_ps(m[b], xp.add(b * B));
                                                let wv = _mm512_maskz_loadu_ps(m[b], wp.add(b * B));
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
                                            acc[b] = _mm512_mask_max_ps(acc[b], m[b], acc[b], _mm512_maskz_loadu_ps(m[b], xp.add(b * B)));
                                        }
                                    }
                                }
                            }
                        }
                        for b in 0..4 {
                            _mm512_mask_storeu_ps(o.add(cb + b * B), m[b], acc[b]);
                        }
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_avx2(&self, op: Op, start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32], rows: std::ops::Range<usize>) {
        self.run(op, start, h, w, c, out, rows)
    }

    /// Per output pixel, per block of 16 channels: load the block, apply every tap that lies inside
    /// the frame, store. Everything here is inlined into the `target_feature` callers (a closure
    /// would not be), so the lanes become vector instructions.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run(&self, op: Op, start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32], rows: std::ops::Range<usize>) {
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
                    let tail = (c % B > 0).then(|| <[f32; B]>::try_from(&o[c - B..]).expect("16 lanes"));
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

/// Lanes per channel block.
pub const B: usize = 16;

/// Values of an `h × w` frame of `c` channels in 16-channel blocks (the last block padded to 16).
pub fn blocked_len(h: usize, w: usize, c: usize) -> usize {
    c.div_ceil(B) * h * w * B
}

/// The channels-last frame `x (h, w, c)` into `dst`, laid out in 16-channel blocks whose planes are
/// `plane` values apart, pixel `(y, x)` of each at `y·row_stride + x·16` (a frame inside a border).
pub fn to_blocked(x: &[f32], (h, w): (usize, usize), c: usize, dst: &mut [f32], plane: usize, row_stride: usize) {
    for (p, px) in x[..h * w * c].chunks_exact(c).enumerate() {
        let at = (p / w) * row_stride + (p % w) * B;
        for (cb, vals) in px.chunks(B).enumerate() {
            dst[cb * plane + at..][..vals.len()].copy_from_slice(vals);
        }
    }
}

/// The AVX-512 mask of the first `lanes` of a 16-lane register (all 16 for more).
pub(super) fn lane_mask(lanes: usize) -> u16 {
    if lanes >= B { 0xFFFF } else { ((1u32 << lanes) - 1) as u16 }
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
    ky: std::ops::Range<usize>,
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
    ky: std::ops::Range<usize>,
    kx: std::ops::Range<usize>,
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

/// Mean over all pixels of a frame `(h·w, c)` into `out (c)`.
pub fn global_mean(x: &[f32], c: usize, out: &mut [f32]) {
    channel_sums(x, c, out);
    let inv = 1.0 / (x.len() / c.max(1)).max(1) as f32;
    out[..c].iter_mut().for_each(|o| *o *= inv);
}

/// Per channel, the sum over the pixels of `x (pixels, c)` into `out[..c]`. On AVX-512, 64 channels
/// at a time in registers, even and odd pixels in two sets of accumulators (the baseline build's
/// loop adds through memory, one channel at a time).
pub fn channel_sums(x: &[f32], c: usize, out: &mut [f32]) {
    assert!(out.len() >= c, "channel sums: output too short");
    #[cfg(target_arch = "x86_64")]
    if super::gemm::packs_weights() && c > 0 {
        // SAFETY: the CPU has AVX-512F; `out` holds c values.
        return unsafe { channel_sums_avx512(&x[..x.len() / c * c], c, out) };
    }
    out[..c].fill(0.0);
    for px in x.chunks_exact(c.max(1)) {
        out.iter_mut().zip(px).for_each(|(o, &v)| *o += v);
    }
}

/// # Safety
/// AVX-512F; `x` is whole pixels of `c > 0` values; `out` holds `c`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn channel_sums_avx512(x: &[f32], c: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let pixels = x.len() / c;
    for cb in (0..c).step_by(4 * B) {
        let m: [u16; 4] = std::array::from_fn(|b| lane_mask(c.saturating_sub(cb + b * B)));
        let base = x.as_ptr().wrapping_add(cb);
        let mut even = [_mm512_setzero_ps(); 4];
        let mut odd = [_mm512_setzero_ps(); 4];
        // SAFETY (loads and stores): the masks keep every lane inside its pixel's (or out's) channels.
        unsafe {
            let mut p = 0;
            while p + 1 < pixels {
                for b in 0..4 {
                    even[b] = _mm512_add_ps(even[b], _mm512_maskz_loadu_ps(m[b], base.wrapping_add(p * c + b * B)));
                    odd[b] = _mm512_add_ps(odd[b], _mm512_maskz_loadu_ps(m[b], base.wrapping_add((p + 1) * c + b * B)));
                }
                p += 2;
            }
            if p < pixels {
                for b in 0..4 {
                    even[b] = _mm512_add_ps(even[b], _mm512_maskz_loadu_ps(m[b], base.wrapping_add(p * c + b * B)));
                }
            }
            for b in 0..4 {
                _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(cb + b * B), m[b], _mm512_add_ps(even[b], odd[b]));
            }
        }
    }
}

/// `out = act(x · gate)` for the pixels of `x (pixels, c)`, `gate` per channel (squeeze-excitation's
/// output), in one pass.
pub fn scale_channels(x: &[f32], gate: &[f32], act: Option<Activation>, out: &mut [f32]) {
    let c = gate.len();
    assert!(out.len() >= x.len() && x.len().is_multiple_of(c.max(1)), "scale: buffers do not match");
    #[cfg(target_arch = "x86_64")]
    if super::gemm::packs_weights() && c > 0 {
        // SAFETY: the CPU has AVX-512F; sizes checked above.
        return unsafe { scale_channels_avx512(x, gate, act, out) };
    }
    for (o, px) in out.chunks_exact_mut(c.max(1)).zip(x.chunks_exact(c.max(1))) {
        o.iter_mut().zip(px).zip(gate).for_each(|((o, &v), &g)| *o = v * g);
        if let Some(act) = act {
            act.apply(o);
        }
    }
}

/// # Safety
/// AVX-512F; `x` is whole pixels of `gate.len() > 0` values; `out` as long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scale_channels_avx512(x: &[f32], gate: &[f32], act: Option<Activation>, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let c = gate.len();
    for p in 0..x.len() / c {
        for cb in (0..c).step_by(B) {
            let m = lane_mask(c - cb);
            // SAFETY: the mask keeps the lanes inside the pixel's channels.
            unsafe {
                let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x.as_ptr().add(p * c + cb)), _mm512_maskz_loadu_ps(m, gate.as_ptr().add(cb)));
                let v = super::kernels::activation_lanes(act, v);
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(p * c + cb), m, v);
            }
        }
    }
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

/// `out (rows) = m (rows, cols) · v (cols) + bias`, given `mt`, the matrix transposed `(cols, rows)`:
/// a block of outputs accumulates across the columns in registers (the row-major dot product is one
/// serial chain of adds per output, which the compiler may not reorder). Each output still sums its
/// products in column order, then adds its bias.
pub fn matvec_bias(mt: &[f32], v: &[f32], bias: &[f32], out: &mut [f32]) {
    const BLOCK: usize = 64;
    let rows = out.len();
    assert!(mt.len() >= v.len() * rows && bias.len() >= rows, "matvec: buffers too small");
    #[cfg(target_arch = "x86_64")]
    if super::gemm::packs_weights() {
        // SAFETY: the CPU has AVX-512F; sizes checked above.
        return unsafe { matvec_bias_avx512(mt, v, bias, out) };
    }
    for r0 in (0..rows).step_by(BLOCK) {
        let n = (rows - r0).min(BLOCK);
        let mut acc = [0f32; BLOCK];
        for (j, &x) in v.iter().enumerate() {
            let col = &mt[j * rows + r0..][..n];
            acc[..n].iter_mut().zip(col).for_each(|(a, &m)| *a += m * x);
        }
        for ((o, a), b) in out[r0..r0 + n].iter_mut().zip(&acc).zip(&bias[r0..]) {
            *o = a + b;
        }
    }
}

/// [`matvec_bias`] 64 outputs at a time in four registers; the same products and sums in the same
/// order (a multiply, then an add), so the same bits.
///
/// # Safety
/// AVX-512F; `mt` holds `v.len()` columns of `out.len()` values, `bias` at least `out.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn matvec_bias_avx512(mt: &[f32], v: &[f32], bias: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let rows = out.len();
    for r0 in (0..rows).step_by(4 * B) {
        let m: [u16; 4] = std::array::from_fn(|b| lane_mask(rows.saturating_sub(r0 + b * B)));
        let mut acc = [_mm512_setzero_ps(); 4];
        // SAFETY (loads and stores): the masks keep every lane inside its column (or `out`, `bias`).
        unsafe {
            for (j, &x) in v.iter().enumerate() {
                let col = mt.as_ptr().wrapping_add(j * rows + r0);
                let xv = _mm512_set1_ps(x);
                for b in 0..4 {
                    acc[b] = _mm512_add_ps(acc[b], _mm512_mul_ps(_mm512_maskz_loadu_ps(m[b], col.wrapping_add(b * B)), xv));
                }
            }
            for b in 0..4 {
                let at = r0 + b * B;
                let y = _mm512_add_ps(acc[b], _mm512_maskz_loadu_ps(m[b], bias.as_ptr().wrapping_add(at)));
                _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(at), m[b], y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Direct depthwise convolution and max pooling on channels-last frames, for every channel count
    /// around the 16-lane blocks (tail overlap), padded/strided windows, and widths whose interior
    /// takes runs of 8, 4, 2 and 1 outputs.
    #[test]
    fn window_ops_match_direct_loops() {
        let mut seed = 7;
        for c in [1, 3, 15, 16, 17, 24, 54, 64] {
            for (win, (h, w)) in [
                Window { kh: 3, kw: 3, stride: 1, pad: [1, 1, 1, 1] },
                Window { kh: 3, kw: 3, stride: 2, pad: [0, 1, 0, 1] },
                Window { kh: 1, kw: 1, stride: 1, pad: [0; 4] },
                Window { kh: 2, kw: 3, stride: 2, pad: [1, 0, 2, 1] },
                Window { kh: 3, kw: 3, stride: 1, pad: [0; 4] },
                Window { kh: 3, kw: 3, stride: 2, pad: [1, 1, 1, 1] },
            ]
            .into_iter()
            .flat_map(|win| [(win, (7, 6)), (win, (4, 31))])
            {
                let x: Vec<f32> = (0..h * w * c).map(|_| lcg(&mut seed)).collect();
                let wt: Vec<f32> = (0..win.kh * win.kw * c).map(|_| lcg(&mut seed)).collect();
                let (oh, ow) = win.output_hw(h, w);
                let init: Vec<f32> = (0..oh * ow * c).map(|_| lcg(&mut seed)).collect();
                let mut got = init.clone();
                win.depthwise_acc(&x, h, w, c, &wt, &mut got);
                let doubled: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
                let mut summed = vec![f32::NAN; oh * ow * c];
                win.depthwise_sum(&[(&x, &wt), (&doubled, &wt)], Some(&init[..c]), None, h, w, c, &mut summed);
                let mut pooled = vec![0.0; oh * ow * c];
                win.max_pool(&x, h, w, c, &mut pooled);
                for oy in 0..oh {
                    for ox in 0..ow {
                        for ch in 0..c {
                            let (mut want, mut max) = (init[(oy * ow + ox) * c + ch] as f64, f32::NEG_INFINITY);
                            for ky in 0..win.kh {
                                for kx in 0..win.kw {
                                    let iy = (oy * win.stride + ky) as i64 - win.pad[0] as i64;
                                    let ix = (ox * win.stride + kx) as i64 - win.pad[2] as i64;
                                    if iy >= 0 && ix >= 0 && iy < h as i64 && ix < w as i64 {
                                        let v = x[(iy as usize * w + ix as usize) * c + ch];
                                        want += v as f64 * wt[(ky * win.kw + kx) * c + ch] as f64;
                                        max = max.max(v);
                                    }
                                }
                            }
                            let i = (oy * ow + ox) * c + ch;
                            assert!((got[i] as f64 - want).abs() < 1e-5, "c {c} {win:?} {w}: {} vs {want}", got[i]);
                            assert_eq!(pooled[i], max, "c {c} {win:?}");
                            // Two terms (the input, and the input doubled) from a start value: 3× the sum.
                            let sum = init[ch] as f64 + 3.0 * (want - init[i] as f64);
                            assert!((summed[i] as f64 - sum).abs() < 1e-4, "sum: c {c} {win:?} {w}: {} vs {sum}", summed[i]);
                        }
                    }
                }
            }
        }
    }

    /// Chunk bounds cover the units in order, and the middle chunks are no larger than the outer.
    #[test]
    fn chunks_are_smaller_in_the_middle() {
        for chunks in 1..=9 {
            for units in [1, 3, 7, 13, 100, 1600] {
                let starts: Vec<usize> = (0..=chunks).map(|i| chunk_start(units, chunks, i)).collect();
                assert_eq!((starts[0], starts[chunks]), (0, units), "{units} in {chunks}");
                assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{units} in {chunks}: {starts:?}");
                if chunks >= 4 && units >= 100 {
                    let size = |i: usize| starts[i + 1] - starts[i];
                    assert!(size(chunks / 2) < size(0) && size(chunks / 2 - 1) < size(chunks - 1), "{units} in {chunks}: {starts:?}");
                }
            }
        }
    }

    #[test]
    fn matmul_accumulates() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.25).collect();
        let mut out = vec![1.0; m * n];
        matmul(m, &a, &Weight::new(k, n, &b), &mut out, Store::Accumulate);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
                assert!((out[i * n + j] - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn matvec_from_the_transposed_matrix() {
        // More rows than one block of outputs, and a partial last block.
        for (rows, cols) in [(3, 5), (64, 2), (150, 27)] {
            let mut seed = 7;
            let m: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
            let v: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
            let bias: Vec<f32> = (0..rows).map(|_| lcg(&mut seed)).collect();
            let mt: Vec<f32> = (0..cols * rows).map(|i| m[(i % rows) * cols + i / rows]).collect();
            let mut out = vec![f32::NAN; rows];
            matvec_bias(&mt, &v, &bias, &mut out);
            for r in 0..rows {
                let want = m[r * cols..][..cols].iter().zip(&v).map(|(a, b)| a * b).sum::<f32>() + bias[r];
                assert_eq!(out[r], want, "{rows}x{cols} row {r}");
            }
        }
    }

    /// The finished store with bias, residual and ReLU, split by rows or by column panels across a
    /// session's threads, equals the unfused passes bit for bit.
    #[test]
    fn matmul_finishes_with_a_residual() {
        for (m, k, n) in [(64, 64, 48), (9, 40, 200), (3, 5, 7)] {
            let mut seed = 3;
            let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
            let bias: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let residual: Vec<f32> = (0..m * n).map(|_| lcg(&mut seed)).collect();
            let w = Weight::new(k, n, &b);
            let mut want = vec![0.0; m * n];
            matmul(m, &a, &w, &mut want, Store::Overwrite);
            add_rows(&mut want, &bias);
            want.iter_mut().zip(&residual).for_each(|(o, &r)| *o = (*o + r).max(0.0));
            let mut got = vec![f32::NAN; m * n];
            let store = Store::Finish { bias: &bias, residual: Some(&residual), act: Some(Activation::Relu) };
            team::session(|| matmul(m, &a, &w, &mut got, store));
            assert_eq!(got, want, "{m}x{k}x{n}");
        }
    }

    /// A product written inside a padded frame (rows in segments of `w` pixels) puts every row where
    /// the dense product has it and leaves the padding alone, on one thread or shared.
    #[test]
    fn matmul_into_a_padded_frame() {
        for (h, w, k, n, pad) in [(10, 10, 96, 216, 1), (7, 5, 24, 54, 2), (1, 3, 8, 40, 1)] {
            let m = h * w;
            let mut seed = 11;
            let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
            let bias: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let weight = Weight::new(k, n, &b);
            let store = Store::Finish { bias: &bias, residual: None, act: Some(Activation::Swish) };
            let mut dense = vec![0.0; m * n];
            matmul(m, &a, &weight, &mut dense, store);
            if weight.panels() == 0 {
                return; // no AVX-512: row layouts are not offered
            }
            let pw = w + 2 * pad;
            let mut framed = vec![7.0f32; (h + 2 * pad) * pw * n];
            let (offset, stride) = ((pad * pw + pad) * n, pw * n);
            for shared in [false, true] {
                framed.fill(7.0);
                let mut run = || matmul_into(m, &a, &weight, &mut framed[offset..], Rows::segments(w, stride), store);
                if shared { team::session(run) } else { run() }
                for y in 0..h + 2 * pad {
                    for x in 0..pw {
                        let got = &framed[(y * pw + x) * n..][..n];
                        let inside = (pad..pad + h).contains(&y) && (pad..pad + w).contains(&x);
                        if inside {
                            assert_eq!(got, &dense[((y - pad) * w + x - pad) * n..][..n], "{h}x{w}: pixel ({y}, {x})");
                        } else {
                            assert!(got.iter().all(|&v| v == 7.0), "{h}x{w}: padding at ({y}, {x}) written");
                        }
                    }
                }
            }
        }
    }

    /// A product written into a padded frame in 16-channel blocks (the frame windows' layout) puts
    /// every value where the dense product has it, in its block's plane, and leaves the padding
    /// (and the lanes past the last channel) alone, on one thread or shared.
    #[test]
    fn matmul_into_a_blocked_frame() {
        for (h, w, k, n, pad) in [(10, 10, 96, 216, 1), (7, 5, 24, 54, 2), (1, 3, 8, 40, 1), (3, 4, 5, 16, 1), (2, 9, 7, 8, 0)] {
            let m = h * w;
            let mut seed = 13;
            let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
            let bias: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let weight = Weight::new(k, n, &b);
            let store = Store::Finish { bias: &bias, residual: None, act: Some(Activation::Relu) };
            let mut dense = vec![0.0; m * n];
            matmul(m, &a, &weight, &mut dense, store);
            if weight.panels() == 0 {
                return; // no AVX-512: row layouts are not offered
            }
            let (ph, pw) = (h + 2 * pad, w + 2 * pad);
            let plane = ph * pw * B;
            let mut framed = vec![7.0f32; blocked_len(ph, pw, n)];
            let (offset, stride) = ((pad * pw + pad) * B, pw * B);
            for shared in [false, true] {
                framed.fill(7.0);
                let layout = Rows::segments(w, stride).in_blocks(plane);
                let mut run = || matmul_into(m, &a, &weight, &mut framed[offset..], layout, store);
                if shared { team::session(run) } else { run() }
                for (i, &got) in framed.iter().enumerate() {
                    let (ch, px) = ((i / plane) * B + i % B, (i % plane) / B);
                    let (y, x) = (px / pw, px % pw);
                    let inside = (pad..pad + h).contains(&y) && (pad..pad + w).contains(&x) && ch < n;
                    if inside {
                        assert_eq!(got, dense[((y - pad) * w + x - pad) * n + ch], "{h}x{w}x{n}: channel {ch} of ({y}, {x})");
                    } else {
                        assert_eq!(got, 7.0, "{h}x{w}x{n}: padding at channel {ch} of ({y}, {x}) written");
                    }
                }
            }
        }
    }

    /// The depthwise sum over frames in 16-channel blocks gives the channels-last kernel's outputs bit
    /// for bit (same taps, same order), for channel counts around the blocks, both kernels it has,
    /// widths with runs of 8, 4, 2 and 1, one or three terms, with and without an activation, on one
    /// thread or shared.
    #[test]
    fn blocked_depthwise_matches_channels_last() {
        let mut seed = 17;
        for c in [1, 5, 16, 24, 54, 70] {
            for (win, (h, w)) in [
                Window { kh: 3, kw: 3, stride: 1, pad: [0; 4] },
                Window { kh: 3, kw: 3, stride: 2, pad: [0; 4] },
                Window { kh: 2, kw: 3, stride: 1, pad: [0; 4] },
            ]
            .into_iter()
            .flat_map(|win| [(win, (5, 17)), (win, (9, 6))])
            {
                if !win.has_blocked_kernel() {
                    return; // no AVX-512
                }
                let frames: Vec<Vec<f32>> = (0..3).map(|_| (0..h * w * c).map(|_| lcg(&mut seed)).collect()).collect();
                let blocked: Vec<Vec<f32>> = frames
                    .iter()
                    .map(|x| {
                        let mut b = vec![f32::NAN; blocked_len(h, w, c)];
                        to_blocked(x, (h, w), c, &mut b, h * w * B, w * B);
                        b
                    })
                    .collect();
                let weights: Vec<Vec<f32>> = (0..3).map(|_| (0..win.kh * win.kw * c).map(|_| lcg(&mut seed)).collect()).collect();
                let start: Vec<f32> = (0..c).map(|_| lcg(&mut seed)).collect();
                let (oh, ow) = win.output_hw(h, w);
                for terms in [1, 3] {
                    for act in [None, Some(Activation::Swish)] {
                        let plain: Vec<(&[f32], &[f32])> = (0..terms).map(|i| (&frames[i][..], &weights[i][..])).collect();
                        let mut want = vec![0.0; oh * ow * c];
                        win.depthwise_sum(&plain, Some(&start), act, h, w, c, &mut want);
                        let in_blocks: Vec<(&[f32], &[f32])> = (0..terms).map(|i| (&blocked[i][..], &weights[i][..])).collect();
                        for shared in [false, true] {
                            let mut got = vec![f32::NAN; oh * ow * c];
                            let mut run = || win.depthwise_sum_blocked(&in_blocks, Some(&start), act, h, w, c, &mut got);
                            if shared { team::session(run) } else { run() }
                            assert_eq!(got, want, "c {c} {win:?} {h}x{w} terms {terms} {act:?}");
                        }
                    }
                }
            }
        }
    }

    /// Channel sums and the gate pass against plain loops, around the 16- and 64-channel blocks and
    /// for odd pixel counts.
    #[test]
    fn channel_sums_and_gates() {
        let mut seed = 19;
        for (c, pixels) in [(1, 1), (5, 3), (16, 4), (54, 25), (70, 7), (216, 100)] {
            let x: Vec<f32> = (0..c * pixels).map(|_| lcg(&mut seed)).collect();
            let gate: Vec<f32> = (0..c).map(|_| lcg(&mut seed)).collect();
            let mut sums = vec![f32::NAN; c];
            channel_sums(&x, c, &mut sums);
            for ch in 0..c {
                let want: f64 = (0..pixels).map(|p| x[p * c + ch] as f64).sum();
                assert!((sums[ch] as f64 - want).abs() < 1e-5 * pixels as f64, "{c}x{pixels}: channel {ch}");
            }
            for act in [None, Some(Activation::Relu), Some(Activation::Swish)] {
                let mut got = vec![f32::NAN; x.len()];
                scale_channels(&x, &gate, act, &mut got);
                let mut want: Vec<f32> = x.iter().enumerate().map(|(i, v)| v * gate[i % c]).collect();
                if let Some(act) = act {
                    act.apply(&mut want);
                }
                assert_eq!(got, want, "{c}x{pixels} {act:?}");
            }
        }
    }

    /// im2col equals the window gathered value by value, zeros outside the frame, for RGB 3×3 stems
    /// (the fixed-size row copy), other widths and channel counts, strides and paddings.
    #[test]
    fn im2col_gathers_every_window() {
        for (kh, kw, stride, pad, c, h, w) in [(3, 3, 2, [1, 1, 1, 1], 3, 9, 8), (3, 3, 1, [1, 1, 1, 1], 5, 4, 6), (7, 7, 2, [3, 3, 3, 3], 3, 11, 12), (1, 1, 2, [0; 4], 4, 5, 5), (3, 2, 1, [0, 1, 1, 0], 2, 3, 4)] {
            let win = Window { kh, kw, stride, pad };
            let mut seed = 5;
            let x: Vec<f32> = (0..h * w * c).map(|_| lcg(&mut seed)).collect();
            let mut cols = vec![f32::NAN; 3];
            win.im2col(&x, h, w, c, &mut cols);
            let (oh, ow) = win.output_hw(h, w);
            let k = kh * kw * c;
            assert_eq!(cols.len(), oh * ow * k);
            for oy in 0..oh {
                for ox in 0..ow {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            for ch in 0..c {
                                let (iy, ix) = ((oy * stride + ky) as isize - pad[0] as isize, (ox * stride + kx) as isize - pad[2] as isize);
                                let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                                let want = if inside { x[((iy as usize) * w + ix as usize) * c + ch] } else { 0.0 };
                                assert_eq!(cols[(oy * ow + ox) * k + (ky * kw + kx) * c + ch], want, "{kh}x{kw}/{stride} c {c}: ({oy},{ox}) tap ({ky},{kx}) ch {ch}");
                            }
                        }
                    }
                }
            }
        }
    }
}
