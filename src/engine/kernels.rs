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
