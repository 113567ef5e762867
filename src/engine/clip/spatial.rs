//! Per-frame (2-D) operators applied to a batch of frames `(N, C, H, W)`: the spatial part of every
//! 3-D layer. Each picks the fastest correct path: 1×1 convs as matrix products, depthwise convs through
//! a hand-written kernel (candle's grouped conv is very slow), everything else through candle's conv2d
//! after explicit (possibly asymmetric) zero padding.

use candle_core::{D, DType, Device, Result, Tensor};

use super::custom_ops::{DepthwiseConv2d, Im2Col};
use crate::engine::Chw;
use crate::engine::kernels::{Pad2d, Window, channels, window};
use crate::engine::stream::{Frame, FrameRef};
use crate::engine::threads::ops;

/// One spatial convolution tap: weight `(C_out, C_in/groups, kh, kw)`, no bias.
#[derive(Debug, Clone)]
pub struct SpatialConv {
    weight: Tensor,
    /// `weight` as `(C_out, C_in)` for 1×1 convs.
    matrix: Option<Tensor>,
    depthwise: Option<DepthwiseConv2d>,
    /// Dense convs on the CPU: `weight` as `(C_out, C_in·kh·kw)` for im2col + one matrix product.
    gemm: Option<(Tensor, Im2Col)>,
    stride: usize,
    pad: Pad2d,
    groups: usize,
}

impl SpatialConv {
    pub fn new(weight: Tensor, stride: usize, pad: Pad2d, groups: usize) -> Result<Self> {
        let (c_out, c_in_g, kh, kw) = weight.dims4()?;
        let weight = weight.to_dtype(DType::F32)?.contiguous()?;
        let pointwise = kh == 1 && kw == 1 && groups == 1 && pad == [0; 4];
        let matrix = if pointwise { Some(weight.reshape((c_out, c_in_g))?) } else { None };
        let depthwise = if groups > 1 && c_in_g == 1 && groups == c_out && weight.device().is_cpu() {
            Some(DepthwiseConv2d::new(&weight, stride, pad)?)
        } else {
            None
        };
        // Dense convs, and strided 1×1 convs (im2col then subsamples: X3D's shortcut branch1).
        let gemm = if groups == 1 && (matrix.is_none() || stride != 1) && weight.device().is_cpu() {
            let op = Im2Col(Window { kh, kw, stride, pad });
            Some((weight.reshape((c_out, c_in_g * kh * kw))?, op))
        } else {
            None
        };
        Ok(SpatialConv { weight, matrix, depthwise, gemm, stride, pad, groups })
    }

    pub fn c_out(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }

    pub fn c_in(&self) -> usize {
        self.weight.dim(1).unwrap_or(0) * self.groups
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn pad(&self) -> Pad2d {
        self.pad
    }

    pub fn groups(&self) -> usize {
        self.groups
    }

    pub fn kernel(&self) -> (usize, usize) {
        let d = self.weight.dims();
        (d[2], d[3])
    }

    pub fn output_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let (kh, kw) = self.kernel();
        Window { kh, kw, stride: self.stride, pad: self.pad }.output_hw(h, w)
    }

    /// Multiply-accumulates for one output frame from an input of `h × w`.
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let (oh, ow) = self.output_hw(h, w);
        let (kh, kw) = self.kernel();
        (self.c_out() * (self.c_in() / self.groups) * kh * kw * oh * ow) as u64
    }

    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if let Some(m) = &self.matrix
            && self.stride == 1
        {
            let c_out = m.dim(0)?;
            let xs = x.reshape((n, c, h * w))?;
            let y = if n == 1 { m.matmul(&xs.squeeze(0)?)?.unsqueeze(0)? } else { m.broadcast_matmul(&xs)? };
            return y.reshape((n, c_out, h, w));
        }
        if let Some(dw) = &self.depthwise
            && x.device().is_cpu()
        {
            return x.contiguous()?.apply_op1_no_bwd(dw);
        }
        if let Some(col) = self.columns(x)? {
            return self.apply_columns(&col, self.output_hw(h, w));
        }
        let [t, b, l, r] = self.pad;
        let padded = if self.pad == [0; 4] { x.clone() } else { x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)? };
        padded.conv2d(&self.weight, 0, self.stride, 1, self.groups)
    }
}

impl SpatialConv {
    /// The im2col matrix `(N, C_in·kh·kw, OH·OW)` of `x` when this conv runs as a matrix product
    /// (dense, CPU); `None` otherwise. Convs with the same geometry (the temporal taps of one 3-D
    /// conv) share it: compute it once per frame, then [`Self::apply_columns`] per tap.
    pub fn columns(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match &self.gemm {
            Some((_, op)) if x.device().is_cpu() => x.contiguous()?.apply_op1_no_bwd(op).map(Some),
            _ => Ok(None),
        }
    }

    /// The conv output `(N, C_out, OH, OW)` from [`Self::columns`] of an input (output size `out_hw`).
    pub fn apply_columns(&self, col: &Tensor, out_hw: (usize, usize)) -> Result<Tensor> {
        let Some((m, _)) = &self.gemm else {
            candle_core::bail!("apply_columns on a conv without a matrix form");
        };
        let n = col.dim(0)?;
        let y = if n == 1 { m.matmul(&col.squeeze(0)?)?.unsqueeze(0)? } else { m.broadcast_matmul(col)? };
        y.reshape((n, m.dim(0)?, out_hw.0, out_hw.1))
    }
}

/// Spatial pooling of every frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpatialPool {
    /// Max over `k×k` windows with stride `s`; padding `[top, bottom, left, right]` never wins (it is −∞;
    /// we pad with zeros where every input is ≥ 0, which gives identical results (docs/models.md, "I3D"),
    /// and pad with the row/column minimum otherwise).
    Max { k: usize, stride: usize, pad: Pad2d },
    /// Mean over the whole frame, keeping `(N, C, 1, 1)`.
    GlobalMean,
    /// Mean over `k×k` windows, stride 1, no padding (X3D's head pool).
    Avg { k: usize },
}

impl SpatialPool {
    pub fn output_hw(&self, h: usize, w: usize) -> (usize, usize) {
        match *self {
            SpatialPool::Max { k, stride, pad } => Window { kh: k, kw: k, stride, pad }.output_hw(h, w),
            SpatialPool::GlobalMean => (1, 1),
            SpatialPool::Avg { k } => Window { kh: k, kw: k, stride: 1, pad: [0; 4] }.output_hw(h, w),
        }
    }

    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match *self {
            SpatialPool::Max { k, stride, pad } => {
                if pad == [0; 4] {
                    return x.max_pool2d_with_stride(k, stride);
                }
                // −∞ padding: shift every plane so its minimum is ≥ 0, zero-pad, pool, shift back.
                // Inputs already ≥ 0 (after ReLU, the usual case) need no shift: zero-pad and pool.
                let [t, b, l, r] = pad;
                if x.flatten_all()?.min(0)?.to_scalar::<f32>()? >= 0.0 {
                    return x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?.max_pool2d_with_stride(k, stride);
                }
                let low = x.min_keepdim(D::Minus1)?.min_keepdim(D::Minus2)?.clamp(f32::MIN, 0f32)?;
                x.broadcast_sub(&low)?
                    .pad_with_zeros(2, t, b)?
                    .pad_with_zeros(3, l, r)?
                    .max_pool2d_with_stride(k, stride)?
                    .broadcast_add(&low)
            }
            SpatialPool::GlobalMean => x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2),
            SpatialPool::Avg { k } => {
                let (_, _, h, w) = x.dims4()?;
                if k == h && k == w { x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2) } else { x.avg_pool2d_with_stride(k, 1) }
            }
        }
    }
}

impl SpatialPool {
    /// The pool of a channels-last frame `x` into `out` (resized; no allocation once big enough).
    pub fn apply_frame(&self, x: FrameRef<'_>, out: &mut Frame) {
        let Chw { c, h, w } = x.shape;
        let (oh, ow) = self.output_hw(h, w);
        out.reshape_for(Chw::new(c, oh, ow));
        match *self {
            SpatialPool::Max { k, stride, pad } => ops::max_pool(&Window { kh: k, kw: k, stride, pad }, x.data, h, w, c, &mut out.data),
            SpatialPool::GlobalMean => channels::global_mean(x.data, c, &mut out.data),
            SpatialPool::Avg { k } => window::avg_pool(x.data, h, w, c, k, &mut out.data),
        }
    }
}

/// A zero tensor shaped like one output frame, used where an output has received no term.
pub fn zeros(shape: (usize, usize, usize, usize), device: &Device) -> Result<Tensor> {
    Tensor::zeros(shape, DType::F32, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Padded max pooling never lets the padding win, for inputs of either sign.
    #[test]
    fn padded_max_pool_ignores_the_padding() {
        let dev = Device::Cpu;
        let (h, w, k, s, pad) = (5usize, 6usize, 3usize, 2usize, [0usize, 1, 1, 1]);
        let pool = SpatialPool::Max { k, stride: s, pad };
        for shift in [-10f64, 0.0, 10.0] {
            let x = (Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap() + shift).unwrap();
            let y = pool.apply(&x).unwrap();
            let (oh, ow) = pool.output_hw(h, w);
            assert_eq!(y.dims(), &[2, 3, oh, ow]);
            let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            for plane in 0..6 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut m = f32::NEG_INFINITY;
                        for a in 0..k {
                            for b in 0..k {
                                let (iy, ix) = ((oy * s + a) as i64 - pad[0] as i64, (ox * s + b) as i64 - pad[2] as i64);
                                if iy >= 0 && ix >= 0 && iy < h as i64 && ix < w as i64 {
                                    m = m.max(xv[plane * h * w + iy as usize * w + ix as usize]);
                                }
                            }
                        }
                        let got = yv[(plane * oh + oy) * ow + ox];
                        assert!((got - m).abs() < 1e-5, "shift {shift}: {got} vs {m}");
                    }
                }
            }
        }
    }
}
