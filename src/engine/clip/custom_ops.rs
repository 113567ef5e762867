//! candle custom ops of the clip path, for the convolutions candle runs slowly: depthwise 2-D
//! convolution and im2col, on `(N, C, H, W)` f32 tensors, planes shared by rayon.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::engine::kernels::isa;
use crate::engine::kernels::{Pad2d, Window};

/// Depthwise 2-D convolution (one filter per channel), zero padding, square stride.
/// Input and output `(N, C, H, W)` f32.
#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    /// `(C, kh, kw)` filters.
    weight: Vec<f32>,
    channels: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: Pad2d,
}

impl DepthwiseConv2d {
    pub fn new(weight: &Tensor, stride: usize, pad: Pad2d) -> Result<Self> {
        let (c, one, kh, kw) = weight.dims4()?;
        if one != 1 {
            bail!("depthwise weight must be (C, 1, kh, kw), got {:?}", weight.dims());
        }
        let weight = weight.flatten_all()?.to_vec1::<f32>()?;
        Ok(DepthwiseConv2d { weight, channels: c, kh, kw, stride, pad })
    }

    fn output_hw(&self, h: usize, w: usize) -> (usize, usize) {
        Window { kh: self.kh, kw: self.kw, stride: self.stride, pad: self.pad }.output_hw(h, w)
    }

    /// One channel plane: `out (oh×ow) = Σ taps w · in (h×w)` with zero padding.
    #[allow(clippy::too_many_arguments)]
    fn plane(&self, filter: &[f32], input: &[f32], h: usize, w: usize, out: &mut [f32], ow: usize, scratch: &mut Vec<f32>) {
        out.fill(0.0);
        self.plane_add(filter, input, h, w, out, ow, scratch);
    }

    /// `out (oh×ow) += Σ taps w · in (h×w)`: the taps' sum is formed first, then added to `out`.
    #[allow(clippy::too_many_arguments)]
    fn plane_add(&self, filter: &[f32], input: &[f32], h: usize, w: usize, out: &mut [f32], ow: usize, scratch: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        {
            if isa::avx2() {
                // SAFETY: the CPU supports AVX2 (`isa`).
                unsafe { self.plane_add_avx2(filter, input, h, w, out, ow, scratch) };
                return;
            }
        }
        self.plane_add_any(filter, input, h, w, out, ow, scratch);
    }

    /// [`Self::plane_add`] compiled for AVX2 (8 lanes instead of SSE2's 4; no FMA, so the same
    /// roundings: Rust never contracts `a + w·v`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn plane_add_avx2(&self, filter: &[f32], input: &[f32], h: usize, w: usize, out: &mut [f32], ow: usize, scratch: &mut Vec<f32>) {
        self.plane_add_any(filter, input, h, w, out, ow, scratch);
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn plane_add_any(&self, filter: &[f32], input: &[f32], h: usize, w: usize, out: &mut [f32], ow: usize, scratch: &mut Vec<f32>) {
        if self.stride == 1 {
            self.plane_add_padded(filter, input, h, w, out, ow, scratch);
        } else {
            self.plane_add_phases(filter, input, h, w, out, ow, scratch);
        }
    }

    /// Stride `s > 1`: the zero-padded plane split by column phase (`phase q` holds padded columns
    /// `q, q + s, q + 2s, …`), so that tap `(ky, kx)` of output row `y` reads one contiguous run of
    /// phase `kx mod s`, row `s·y + ky`, from column `kx div s`: a vectorised axpy per row and tap
    /// instead of a strided gather. Taps are summed in (ky, kx) order, then added to `out`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn plane_add_phases(&self, filter: &[f32], input: &[f32], h: usize, w: usize, out: &mut [f32], ow: usize, scratch: &mut Vec<f32>) {
        let [pt, pb, pl, pr] = self.pad;
        let s = self.stride;
        let (hp, wp) = (h + pt + pb, w + pl + pr);
        let wq = wp.div_ceil(s);
        let oh = out.len() / ow;
        let phase_len = hp * wq;
        scratch.clear();
        scratch.resize(s * phase_len + oh * ow, 0.0);
        let (phases, acc) = scratch.split_at_mut(s * phase_len);
        for q in 0..s {
            // First input column landing in phase q, and its column there.
            let x0 = (q + s - pl % s) % s;
            if x0 >= w {
                continue;
            }
            let c0 = (x0 + pl) / s;
            for y in 0..h {
                let dst = &mut phases[q * phase_len + (y + pt) * wq + c0..];
                for (d, &v) in dst.iter_mut().zip(input[y * w + x0..(y + 1) * w].iter().step_by(s)) {
                    *d = v;
                }
            }
        }
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                let wt = filter[ky * self.kw + kx];
                let phase = &phases[(kx % s) * phase_len..][..phase_len];
                for y in 0..oh {
                    let src = &phase[(s * y + ky) * wq + kx / s..][..ow];
                    for (a, &v) in acc[y * ow..][..ow].iter_mut().zip(src) {
                        *a += wt * v;
                    }
                }
            }
        }
        for (o, &a) in out.iter_mut().zip(acc.iter()) {
            *o += a;
        }
    }

    /// Stride 1: copy the plane into a zero-padded `(h+pt+pb) × wp` buffer, then every tap is one long
    /// axpy over the flat padded grid (outputs on a `wp`-wide grid whose last `wp − ow` columns are
    /// discarded). X3D's maps are small (5×5, 10×10), where per-row loops cost more than the
    /// arithmetic; here each tap is a single vectorised loop. Every output sums its taps in (ky, kx)
    /// order, as [`Self::plane_add_phases`] does.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn plane_add_padded(&self, filter: &[f32], input: &[f32], h: usize, w: usize, out: &mut [f32], ow: usize, scratch: &mut Vec<f32>) {
        let [pt, pb, pl, pr] = self.pad;
        let (hp, wp) = (h + pt + pb, w + pl + pr);
        let oh = out.len() / ow;
        // Flat span covering every valid output: rows 0..oh on the wp-wide grid, last row up to ow.
        let span = (oh - 1) * wp + ow;
        scratch.clear();
        scratch.resize(hp * wp + span, 0.0);
        let (padded, acc) = scratch.split_at_mut(hp * wp);
        for y in 0..h {
            padded[(y + pt) * wp + pl..][..w].copy_from_slice(&input[y * w..][..w]);
        }
        if self.kh == 3 && self.kw == 3 {
            // X3D's b convs: all 9 taps in one pass, summed in the same (ky, kx) order from 0.
            let f: &[f32; 9] = filter.try_into().expect("3×3 filter");
            let acc = &mut acc[..span];
            let tap = |ky: usize, kx: usize| &padded[ky * wp + kx..][..span];
            let (s0, s1, s2, s3, s4, s5, s6, s7, s8) =
                (tap(0, 0), tap(0, 1), tap(0, 2), tap(1, 0), tap(1, 1), tap(1, 2), tap(2, 0), tap(2, 1), tap(2, 2));
            for i in 0..span {
                let mut t = 0.0 + f[0] * s0[i];
                t += f[1] * s1[i];
                t += f[2] * s2[i];
                t += f[3] * s3[i];
                t += f[4] * s4[i];
                t += f[5] * s5[i];
                t += f[6] * s6[i];
                t += f[7] * s7[i];
                t += f[8] * s8[i];
                acc[i] = t;
            }
        } else {
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let wt = filter[ky * self.kw + kx];
                    let src = &padded[ky * wp + kx..][..span];
                    for (a, &v) in acc.iter_mut().zip(src) {
                        *a += wt * v;
                    }
                }
            }
        }
        for y in 0..oh {
            for (o, &a) in out[y * ow..][..ow].iter_mut().zip(&acc[y * wp..][..ow]) {
                *o += a;
            }
        }
    }
}

impl CustomOp1 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        if c != self.channels {
            bail!("depthwise conv expects {} channels, got {c}", self.channels);
        }
        let input = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(data), Some((start, end))) => &data[start..end],
            _ => bail!("depthwise conv needs a contiguous f32 input"),
        };
        let (oh, ow) = self.output_hw(h, w);
        let mut out = vec![0f32; n * c * oh * ow];
        let taps = self.kh * self.kw;
        out.par_chunks_mut(oh * ow).enumerate().for_each_init(Vec::new, |scratch, (plane, dst)| {
            let ch = plane % c;
            let src = &input[plane * h * w..(plane + 1) * h * w];
            self.plane(&self.weight[ch * taps..(ch + 1) * taps], src, h, w, dst, ow, scratch);
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

/// im2col for a 2-D convolution with zero padding and square stride: input `(N, C, H, W)` f32 →
/// `(N, C·kh·kw, OH·OW)`, row `c·kh·kw + ky·kw + kx` holding the input under tap `(ky, kx)` of channel
/// `c` for every output pixel. A convolution is then one matrix product with the weight as
/// `(C_out, C·kh·kw)`; candle's own conv2d builds small tiles and runs far below gemm speed.
/// The window geometry is the step path's [`Window`] (whose kernels build channels-last im2col rows).
#[derive(Debug, Clone)]
pub struct Im2Col(pub Window);

impl std::ops::Deref for Im2Col {
    type Target = Window;
    fn deref(&self) -> &Window {
        &self.0
    }
}

impl Im2Col {
    /// The `kh·kw` rows of one input channel plane.
    fn plane(&self, src: &[f32], h: usize, w: usize, dst: &mut [f32], oh: usize, ow: usize) {
        let [pt, _, pl, _] = self.pad;
        let s = self.stride;
        let m = oh * ow;
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                let row = &mut dst[(ky * self.kw + kx) * m..][..m];
                // Output columns whose input column ox·s + kx − pl lies inside the row (others stay 0).
                if kx >= w + pl {
                    continue;
                }
                let first = pl.saturating_sub(kx).div_ceil(s);
                let last = ((w + pl - kx - 1) / s).min(ow - 1);
                if first > last {
                    continue;
                }
                for oy in 0..oh {
                    let iy = (oy * s + ky) as isize - pt as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let in_row = &src[iy as usize * w..][..w];
                    let out_row = &mut row[oy * ow..][..ow];
                    if s == 1 {
                        let off = first + kx - pl;
                        out_row[first..=last].copy_from_slice(&in_row[off..off + (last - first + 1)]);
                    } else {
                        for (ox, o) in out_row.iter_mut().enumerate().take(last + 1).skip(first) {
                            *o = in_row[ox * s + kx - pl];
                        }
                    }
                }
            }
        }
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let input = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(data), Some((start, end))) => &data[start..end],
            _ => bail!("im2col needs a contiguous f32 input"),
        };
        let (oh, ow) = self.output_hw(h, w);
        let rows = self.kh * self.kw;
        let mut out = vec![0f32; n * c * rows * oh * ow];
        out.par_chunks_mut(rows * oh * ow).enumerate().for_each(|(plane, dst)| {
            self.plane(&input[plane * h * w..(plane + 1) * h * w], h, w, dst, oh, ow);
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c * rows, oh * ow))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The depthwise kernel (both paths: stride 1 on the flat padded grid, stride 2/3 by column phase)
    /// equals candle's grouped conv2d on the explicitly padded input.
    #[test]
    fn depthwise_equals_grouped_conv2d() {
        let dev = Device::Cpu;
        let cases = [
            (3, 1, [1, 1, 1, 1], 5, 5),
            (3, 1, [1, 1, 1, 1], 10, 7),
            (3, 2, [1, 1, 1, 1], 10, 10),
            (3, 2, [1, 1, 1, 1], 9, 11),
            (3, 2, [0, 1, 0, 1], 8, 8),
            (5, 3, [2, 2, 2, 2], 11, 9),
            (1, 1, [0; 4], 4, 6),
        ];
        for (k, s, pad, h, w) in cases {
            let c = 6;
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
            let op = DepthwiseConv2d::new(&wt, s, pad).unwrap();
            let y = x.apply_op1_no_bwd(&op).unwrap();
            let [t, b, l, r] = pad;
            let padded = x.pad_with_zeros(2, t, b).unwrap().pad_with_zeros(3, l, r).unwrap();
            let reference = padded.conv2d(&wt, 0, s, 1, c).unwrap();
            assert_eq!(y.dims(), reference.dims());
            let d: f32 = (&y - &reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
            assert!(d < 1e-5, "k={k} s={s} pad={pad:?} {h}x{w}: {d}");
        }
    }

    /// The fused GEMM store's swish lanes give the same bits as `swish_in_place`, and both stay

    #[test]
    fn im2col_matmul_equals_conv2d() {
        let dev = Device::Cpu;
        for (k, s, pad, h, w) in [
            (7, 2, [2, 3, 2, 3], 12, 10),
            (3, 1, [1, 1, 1, 1], 5, 6),
            (3, 2, [0, 1, 1, 0], 7, 8),
            (2, 2, [0; 4], 6, 6),
            (1, 2, [0; 4], 5, 5),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (4, 3, k, k), &dev).unwrap();
            let op = Im2Col(Window { kh: k, kw: k, stride: s, pad });
            let (oh, ow) = op.output_hw(h, w);
            let col = x.apply_op1_no_bwd(&op).unwrap();
            let y = wt.reshape((4, 3 * k * k)).unwrap().broadcast_matmul(&col).unwrap().reshape((2, 4, oh, ow)).unwrap();
            let [t, b, l, r] = pad;
            let reference = x.pad_with_zeros(2, t, b).unwrap().pad_with_zeros(3, l, r).unwrap().conv2d(&wt, 0, s, 1, 1).unwrap();
            let d: f32 = (y - reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
            assert!(d < 1e-4, "k={k} s={s} pad={pad:?}: {d}");
        }
    }
}
