//! Hand-written CPU kernels for the operations candle runs slowly (stack-notes.md §5).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::spatial::Pad2d;

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
        let [t, b, l, r] = self.pad;
        ((h + t + b - self.kh) / self.stride + 1, (w + l + r - self.kw) / self.stride + 1)
    }

    /// One channel plane: `out (oh×ow) = Σ taps w · in (h×w)` with zero padding.
    /// Loops run tap by tap with the valid output rows/columns of each tap computed once (the
    /// per-row bounds work dominated at X3D's 5×5 and 10×10 maps); every output still sums its
    /// taps in (ky, kx) order.
    fn plane(&self, filter: &[f32], input: &[f32], h: usize, w: usize, out: &mut [f32], ow: usize) {
        let [pt, _, pl, _] = self.pad;
        let s = self.stride;
        let oh = out.len() / ow;
        out.fill(0.0);
        for ky in 0..self.kh {
            // Output rows whose input row oy·s + ky − pt lies inside the plane.
            if ky >= h + pt {
                continue;
            }
            let (y0, y1) = (pt.saturating_sub(ky).div_ceil(s), ((h + pt - ky - 1) / s).min(oh - 1));
            if y0 > y1 {
                continue;
            }
            for kx in 0..self.kw {
                let wt = filter[ky * self.kw + kx];
                // Output columns whose input column ox·s + kx − pl lies inside the row.
                if kx >= w + pl {
                    continue;
                }
                let (x0, x1) = (pl.saturating_sub(kx).div_ceil(s), ((w + pl - kx - 1) / s).min(ow - 1));
                if x0 > x1 {
                    continue;
                }
                let n = x1 - x0 + 1;
                for oy in y0..=y1 {
                    let iy = oy * s + ky - pt;
                    let in_row = &input[iy * w..(iy + 1) * w];
                    let row = &mut out[oy * ow..(oy + 1) * ow];
                    if s == 1 {
                        let off = x0 + kx - pl;
                        for (o, &v) in row[x0..=x1].iter_mut().zip(&in_row[off..off + n]) {
                            *o += wt * v;
                        }
                    } else {
                        for (ox, o) in row.iter_mut().enumerate().take(x1 + 1).skip(x0) {
                            *o += wt * in_row[ox * s + kx - pl];
                        }
                    }
                }
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
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(plane, dst)| {
            let ch = plane % c;
            let src = &input[plane * h * w..(plane + 1) * h * w];
            self.plane(&self.weight[ch * taps..(ch + 1) * taps], src, h, w, dst, ow);
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

/// im2col for a 2-D convolution with zero padding and square stride: input `(N, C, H, W)` f32 →
/// `(N, C·kh·kw, OH·OW)`, row `c·kh·kw + ky·kw + kx` holding the input under tap `(ky, kx)` of channel
/// `c` for every output pixel. A convolution is then one matrix product with the weight as
/// `(C_out, C·kh·kw)`; candle's own conv2d builds small tiles and runs far below gemm speed.
#[derive(Debug, Clone)]
pub struct Im2Col {
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: Pad2d,
}

impl Im2Col {
    pub fn output_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let [t, b, l, r] = self.pad;
        ((h + t + b - self.kh) / self.stride + 1, (w + l + r - self.kw) / self.stride + 1)
    }

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

    /// im2col followed by a matrix product equals candle's conv2d on the explicitly padded input.
    #[test]
    fn im2col_matmul_equals_conv2d() {
        let dev = Device::Cpu;
        for (k, s, pad, h, w) in [(7, 2, [2, 3, 2, 3], 12, 10), (3, 1, [1, 1, 1, 1], 5, 6), (3, 2, [0, 1, 1, 0], 7, 8), (2, 2, [0; 4], 6, 6), (1, 2, [0; 4], 5, 5)] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (4, 3, k, k), &dev).unwrap();
            let op = Im2Col { kh: k, kw: k, stride: s, pad };
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
