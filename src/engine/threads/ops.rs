//! The step path's kernels shared by the step's threads: each op cuts its output into row ranges
//! (or column panels) by [`split`](super::split) and runs the single-threaded kernel on each; an
//! activation is applied by the thread that computed the rows, while they are in its cache.

use crate::engine::kernels::gemm::{Rows, Store, Weight};
use crate::engine::kernels::{Activation, Window};

use super::split::{Shared, chunk_start, chunks_for, pass_work, split_rows, split_rows_by};
use super::team;

/// `out (m, n) = lhs (m, k) · w`, stored as `store` says; row-major. In a session, large products
/// are shared: by column panels when there are more columns than rows (each thread then reads only
/// its part of the weight), else by whole tiles of the kernel's rows.
pub fn matmul(m: usize, lhs: &[f32], w: &Weight, out: &mut [f32], store: Store) {
    matmul_into(m, lhs, w, out, Rows::DENSE, store)
}

/// [`matmul`] with the output rows laid out as `layout` says in `out` (only packed weights, i.e.
/// AVX2 and AVX-512 CPUs, take other layouts than [`Rows::DENSE`]).
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
        // Whole tiles of the kernel per chunk.
        let tile = w.tile_rows();
        let blocks = m.div_ceil(tile);
        let chunks = chunks.clamp(1, blocks);
        let rows = |i: usize| (chunk_start(blocks, chunks, i) * tile).min(m)..(chunk_start(blocks, chunks, i + 1) * tile).min(m);
        if chunks == 1 {
            // SAFETY: as above, one chunk.
            return unsafe { w.matmul_into(m, lhs, 0..m, base.at(0), layout, store, 0..panels) };
        }
        // SAFETY: as above, disjoint row blocks.
        team::for_each_chunk(chunks, &|i| unsafe { w.matmul_into(m, lhs, rows(i), base.at(0), layout, store, 0..panels) });
    }
}

/// The im2col matrix `(OH·OW, kh·kw·C)` of a frame `x (h, w, c)` into `cols` (resized; reused as it
/// is, since every value is written).
pub fn im2col(win: &Window, x: &[f32], h: usize, w: usize, c: usize, cols: &mut Vec<f32>) {
    let (oh, ow) = win.output_hw(h, w);
    let k = win.kh * win.kw * c;
    cols.resize(oh * ow * k, 0.0);
    split_rows(cols, ow * k, oh, pass_work(oh * ow * k, None), |out, rows| win.im2col_rows(x, h, w, c, out, rows));
}

/// Depthwise convolution accumulated into `out (OH, OW, C)`: `weight` is `(kh, kw, C)`.
pub fn depthwise_acc(win: &Window, x: &[f32], h: usize, w: usize, c: usize, weight: &[f32], out: &mut [f32]) {
    depthwise_sum(win, &[(x, weight)], None, None, h, w, c, out)
}

/// The sum of depthwise convolutions of several frames ([`Window::depthwise_rows`]) over the whole
/// output `out (OH, OW, C)`, then `act`.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_sum(
    win: &Window,
    terms: &[(&[f32], &[f32])],
    start: Option<&[f32]>,
    act: Option<Activation>,
    h: usize,
    w: usize,
    c: usize,
    out: &mut [f32],
) {
    split_depthwise(win, Window::depthwise_rows, terms, start, act, (h, w, c), out)
}

/// [`depthwise_sum`] over frames kept in 16-channel blocks ([`Window::depthwise_blocked_rows`]).
#[allow(clippy::too_many_arguments)]
pub fn depthwise_sum_blocked(
    win: &Window,
    terms: &[(&[f32], &[f32])],
    start: Option<&[f32]>,
    act: Option<Activation>,
    h: usize,
    w: usize,
    c: usize,
    out: &mut [f32],
) {
    split_depthwise(win, Window::depthwise_blocked_rows, terms, start, act, (h, w, c), out)
}

/// The output rows of a depthwise sum, split across the team: `rows_of` computes a band of rows.
type DepthwiseRows = fn(&Window, &[(&[f32], &[f32])], Option<&[f32]>, usize, usize, usize, &mut [f32], std::ops::Range<usize>);

fn split_depthwise(
    win: &Window,
    rows_of: DepthwiseRows,
    terms: &[(&[f32], &[f32])],
    start: Option<&[f32]>,
    act: Option<Activation>,
    (h, w, c): (usize, usize, usize),
    out: &mut [f32],
) {
    let (oh, ow) = win.output_hw(h, w);
    assert!(out.len() >= oh * ow * c, "depthwise: output too small");
    let work = oh * ow * c * (win.kh * win.kw * terms.len() + Activation::work_per_value(act));
    split_rows(out, ow * c, oh, work, |out, rows| {
        rows_of(win, terms, start, h, w, c, out, rows);
        if let Some(act) = act {
            act.apply(out);
        }
    })
}

/// Max over each window of `x (h, w, c)` into `out (OH, OW, C)`; the padding never wins (−∞).
pub fn max_pool(win: &Window, x: &[f32], h: usize, w: usize, c: usize, out: &mut [f32]) {
    let (oh, ow) = win.output_hw(h, w);
    assert!(out.len() >= oh * ow * c, "window op: output too small");
    split_rows(out, ow * c, oh, oh * ow * c * win.kh * win.kw, |out, rows| win.max_pool_rows(x, h, w, c, out, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::channels::add_rows;
    use crate::engine::kernels::lanes::{B, blocked_len, to_blocked};

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
                depthwise_acc(&win, &x, h, w, c, &wt, &mut got);
                let doubled: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
                let mut summed = vec![f32::NAN; oh * ow * c];
                depthwise_sum(&win, &[(&x, &wt), (&doubled, &wt)], Some(&init[..c]), None, h, w, c, &mut summed);
                let mut pooled = vec![0.0; oh * ow * c];
                max_pool(&win, &x, h, w, c, &mut pooled);
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

    /// The finished store with bias, residual and ReLU, split by rows or by column panels across a
    /// session's threads, equals the unfused passes bit for bit.
    #[test]
    fn matmul_finishes_with_a_residual() {
        for (m, k, n) in [(64, 64, 48), (9, 40, 200), (3, 5, 7), (20, 600, 24)] {
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
                return; // no packed kernel (no AVX2): row layouts are not offered
            }
            let pw = w + 2 * pad;
            let mut framed = vec![7.0f32; (h + 2 * pad) * pw * n];
            let (offset, stride) = ((pad * pw + pad) * n, pw * n);
            for shared in [false, true] {
                framed.fill(7.0);
                let mut run = || matmul_into(m, &a, &weight, &mut framed[offset..], Rows::segments(w, stride), store);
                if shared {
                    team::session(run)
                } else {
                    run()
                }
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
                return; // no packed kernel (no AVX2): row layouts are not offered
            }
            let (ph, pw) = (h + 2 * pad, w + 2 * pad);
            let plane = ph * pw * B;
            let mut framed = vec![7.0f32; blocked_len(ph, pw, n)];
            let (offset, stride) = ((pad * pw + pad) * B, pw * B);
            for shared in [false, true] {
                framed.fill(7.0);
                let layout = Rows::segments(w, stride).in_blocks(plane);
                let mut run = || matmul_into(m, &a, &weight, &mut framed[offset..], layout, store);
                if shared {
                    team::session(run)
                } else {
                    run()
                }
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
                        depthwise_sum(&win, &plain, Some(&start), act, h, w, c, &mut want);
                        let in_blocks: Vec<(&[f32], &[f32])> = (0..terms).map(|i| (&blocked[i][..], &weights[i][..])).collect();
                        for shared in [false, true] {
                            let mut got = vec![f32::NAN; oh * ow * c];
                            let mut run = || depthwise_sum_blocked(&win, &in_blocks, Some(&start), act, h, w, c, &mut got);
                            if shared {
                                team::session(run)
                            } else {
                                run()
                            }
                            assert_eq!(got, want, "c {c} {win:?} {h}x{w} terms {terms} {act:?}");
                        }
                    }
                }
            }
        }
    }

    /// im2col equals the window gathered value by value, zeros outside the frame, for RGB 3×3 stems
    /// (the fixed-size row copy), other widths and channel counts, strides and paddings.
    #[test]
    fn im2col_gathers_every_window() {
        for (kh, kw, stride, pad, c, h, w) in [
            (3, 3, 2, [1, 1, 1, 1], 3, 9, 8),
            (3, 3, 1, [1, 1, 1, 1], 5, 4, 6),
            (7, 7, 2, [3, 3, 3, 3], 3, 11, 12),
            (1, 1, 2, [0; 4], 4, 5, 5),
            (3, 2, 1, [0, 1, 1, 0], 2, 3, 4),
        ] {
            let win = Window { kh, kw, stride, pad };
            let mut seed = 5;
            let x: Vec<f32> = (0..h * w * c).map(|_| lcg(&mut seed)).collect();
            let mut cols = vec![f32::NAN; 3];
            im2col(&win, &x, h, w, c, &mut cols);
            let (oh, ow) = win.output_hw(h, w);
            let k = kh * kw * c;
            assert_eq!(cols.len(), oh * ow * k);
            for oy in 0..oh {
                for ox in 0..ow {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            for ch in 0..c {
                                let (iy, ix) =
                                    ((oy * stride + ky) as isize - pad[0] as isize, (ox * stride + kx) as isize - pad[2] as isize);
                                let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                                let want = if inside { x[((iy as usize) * w + ix as usize) * c + ch] } else { 0.0 };
                                assert_eq!(
                                    cols[(oy * ow + ox) * k + (ky * kw + kx) * c + ch],
                                    want,
                                    "{kh}x{kw}/{stride} c {c}: ({oy},{ox}) tap ({ky},{kx}) ch {ch}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
