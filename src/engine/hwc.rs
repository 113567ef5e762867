//! Channels-last `(H, W, C)` kernels of the step path, writing into caller-owned buffers.
//!
//! Dense and 1×1 convolutions are matrix products accumulated straight into their destination
//! (`super::gemm`); depthwise convolution and pooling run over 16-channel
//! blocks kept in registers across all spatial taps. The AVX-512/AVX2 variants are chosen at run time.

use super::spatial::Pad2d;

/// Work (multiply-adds, or values visited) from which an op is split in two halves over the rayon
/// pool. Only on a pool thread (the models run their step inside the pool), where a join is a push
/// to the local deque and a wake-up of the other worker rather than a cross-thread injection.
const PARALLEL_WORK: usize = 8_000_000;

/// Run `f` on the `rows` rows of `out` (`row_len` values each), as two halves side by side when
/// `work` is big enough and a second pool thread exists; `f` gets its rows and their range.
pub fn split_rows(out: &mut [f32], row_len: usize, rows: usize, work: usize, f: impl Fn(&mut [f32], std::ops::Range<usize>) + Sync) {
    let out = &mut out[..rows * row_len];
    if rows >= 2 && work >= PARALLEL_WORK && rayon::current_thread_index().is_some() && rayon::current_num_threads() > 1 {
        let mid = rows / 2;
        let (a, b) = out.split_at_mut(mid * row_len);
        rayon::join(|| f(a, 0..mid), || f(b, mid..rows));
    } else {
        f(out, 0..rows)
    }
}

/// Run `f` inside the rayon pool (on a worker thread) when the pool has more than one thread, so
/// that the ops it runs can split their work cheaply ([`split_rows`]).
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() > 1 && rayon::current_thread_index().is_none() {
        rayon::scope(|_| f())
    } else {
        f()
    }
}

/// `out (m, n) = lhs (m, k) · w`, or `+=` when `accumulate`; row-major. Large products are split by
/// rows over two threads.
pub fn matmul(m: usize, lhs: &[f32], w: &super::gemm::Weight, out: &mut [f32], accumulate: bool) {
    let (k, n) = (w.k(), w.n());
    assert!(lhs.len() >= m * k && out.len() >= m * n, "matmul: buffers too small");
    split_rows(out, n, m, m * k * n, |out, rows| {
        w.matmul(rows.len(), &lhs[rows.start * k..rows.end * k], out, accumulate);
    });
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
        cols.clear();
        cols.resize(oh * ow * k, 0.0);
        let [t, _, l, _] = self.pad;
        for oy in 0..oh {
            for ky in 0..self.kh {
                let Some(iy) = Self::source(oy, ky, self.stride, t, h) else { continue };
                for ox in 0..ow {
                    let row = &mut cols[(oy * ow + ox) * k..][..k];
                    for kx in 0..self.kw {
                        let Some(ix) = Self::source(ox, kx, self.stride, l, w) else { continue };
                        let (dst, src) = ((ky * self.kw + kx) * c, (iy * w + ix) * c);
                        if c == 3 {
                            // RGB input (every model's first conv): a fixed-size copy, not a memcpy call.
                            row[dst..dst + 3].copy_from_slice(&x[src..src + 3]);
                        } else {
                            row[dst..dst + c].copy_from_slice(&x[src..src + c]);
                        }
                    }
                }
            }
        }
    }

    /// Depthwise convolution accumulated into `out (OH, OW, C)`: `weight` is `(kh, kw, C)`.
    pub fn depthwise_acc(&self, x: &[f32], h: usize, w: usize, c: usize, weight: &[f32], out: &mut [f32]) {
        self.depthwise_sum(&[(x, weight)], None, h, w, c, out)
    }

    /// The sum of depthwise convolutions of several frames, each with its own `(kh, kw, C)` weight
    /// (the temporal taps of a 3-D depthwise conv), in one pass over `out (OH, OW, C)`: added to
    /// `out`, or with `start` (per channel, e.g. the bias) written over it.
    pub fn depthwise_sum(&self, terms: &[(&[f32], &[f32])], start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32]) {
        for (x, wt) in terms {
            assert!(x.len() >= h * w * c && wt.len() >= self.kh * self.kw * c, "depthwise: buffers too small");
        }
        assert!(start.is_none_or(|s| s.len() >= c), "depthwise: start too short");
        self.dispatch(Op::Fma(terms), start, h, w, c, out)
    }

    /// Max over each window into `out (OH, OW, C)`; the padding never wins (−∞).
    pub fn max_pool(&self, x: &[f32], h: usize, w: usize, c: usize, out: &mut [f32]) {
        assert!(x.len() >= h * w * c, "max pool: input too small");
        let (oh, ow) = self.output_hw(h, w);
        out[..oh * ow * c].fill(f32::NEG_INFINITY);
        self.dispatch(Op::Max(x), None, h, w, c, out)
    }

    fn dispatch(&self, op: Op, start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32]) {
        let (oh, ow) = self.output_hw(h, w);
        assert!(out.len() >= oh * ow * c, "window op: output too small");
        let terms = match op {
            Op::Fma(t) => t.len(),
            Op::Max(_) => 1,
        };
        let work = oh * ow * c * self.kh * self.kw * terms;
        split_rows(out, ow * c, oh, work, |out, rows| {
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { self.run_avx512(op, start, h, w, c, out, rows) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { self.run_avx2(op, start, h, w, c, out, rows) };
                }
            }
            self.run(op, start, h, w, c, out, rows)
        })
    }

    /// The AVX-512 form of [`Self::run`], written with intrinsics: per output pixel, 64 channels at a
    /// time in four registers (independent chains hide the FMA latency), masked loads and stores for
    /// the last partial block.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(&self, op: Op, start: Option<&[f32]>, h: usize, w: usize, c: usize, out: &mut [f32], rows: std::ops::Range<usize>) {
        // SAFETY (all loads and stores): masked lanes lie inside a pixel's `c` channels, and every
        // pixel and tap offset lies inside the buffers the callers checked.
        unsafe {
            use std::arch::x86_64::*;
            let (_, ow) = self.output_hw(h, w);
            let mask = |from: usize| -> __mmask16 {
                match c.saturating_sub(from) {
                    0 => 0,
                    n if n >= B => 0xFFFF,
                    n => ((1u32 << n) - 1) as __mmask16,
                }
            };
            for oy in rows.clone() {
                for ox in 0..ow {
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

/// Lanes per channel block.
const B: usize = 16;

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
    out[..c].fill(0.0);
    let pixels = x.len() / c.max(1);
    for px in x.chunks_exact(c) {
        for (o, &v) in out.iter_mut().zip(px) {
            *o += v;
        }
    }
    let inv = 1.0 / pixels.max(1) as f32;
    out[..c].iter_mut().for_each(|o| *o *= inv);
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

/// `out (rows) = m (rows, cols) · v (cols) + bias`.
pub fn matvec_bias(m: &[f32], v: &[f32], bias: &[f32], out: &mut [f32]) {
    let cols = v.len();
    for ((o, row), &b) in out.iter_mut().zip(m.chunks_exact(cols)).zip(bias) {
        *o = row.iter().zip(v).map(|(a, b)| a * b).sum::<f32>() + b;
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
    /// around the 16-lane blocks (tail overlap) and padded/strided windows.
    #[test]
    fn window_ops_match_direct_loops() {
        let mut seed = 7;
        for c in [1, 3, 15, 16, 17, 24, 54, 64] {
            for win in [
                Window { kh: 3, kw: 3, stride: 1, pad: [1, 1, 1, 1] },
                Window { kh: 3, kw: 3, stride: 2, pad: [0, 1, 0, 1] },
                Window { kh: 1, kw: 1, stride: 1, pad: [0; 4] },
                Window { kh: 2, kw: 3, stride: 2, pad: [1, 0, 2, 1] },
            ] {
                let (h, w) = (7, 6);
                let x: Vec<f32> = (0..h * w * c).map(|_| lcg(&mut seed)).collect();
                let wt: Vec<f32> = (0..win.kh * win.kw * c).map(|_| lcg(&mut seed)).collect();
                let (oh, ow) = win.output_hw(h, w);
                let init: Vec<f32> = (0..oh * ow * c).map(|_| lcg(&mut seed)).collect();
                let mut got = init.clone();
                win.depthwise_acc(&x, h, w, c, &wt, &mut got);
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
                            assert!((got[i] as f64 - want).abs() < 1e-5, "c {c} {win:?}: {} vs {want}", got[i]);
                            assert_eq!(pooled[i], max, "c {c} {win:?}");
                        }
                    }
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
        matmul(m, &a, &crate::engine::gemm::Weight::new(k, n, &b), &mut out, true);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
                assert!((out[i * n + j] - want).abs() < 1e-4);
            }
        }
    }
}
