//! The step path's frame: one channels-last `(H, W, C)` f32 buffer and its shape.
//!
//! Channels-last keeps every per-pixel operation (depthwise taps, pooling, bias, squeeze-excitation
//! scaling) a contiguous run over channels, which vectorises whatever the frame size, and makes a
//! 1×1 convolution a plain `(H·W, C_in) × (C_in, C_out)` matrix product.

use candle_core::{DType, Device, Result, Tensor, bail};

use crate::engine::Chw;

#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// `shape.h · shape.w · shape.c` values, channel fastest.
    pub data: Vec<f32>,
    pub shape: Chw,
}

impl Frame {
    /// Set the shape, growing the buffer only if its capacity is short (contents unspecified).
    pub fn reshape_for(&mut self, shape: Chw) {
        self.shape = shape;
        self.data.resize(shape.numel(), 0.0);
    }

    /// Copy another frame into this one, reusing this buffer.
    pub fn copy_from(&mut self, other: FrameRef<'_>) {
        self.shape = other.shape;
        self.data.clear();
        self.data.extend_from_slice(other.data);
    }

    /// Fill from planar `(C, H, W)` values.
    pub fn set_planar(&mut self, planar: &[f32], shape: Chw) -> Result<()> {
        if planar.len() != shape.numel() {
            bail!("a {}x{}x{} frame needs {} values, got {}", shape.c, shape.h, shape.w, shape.numel(), planar.len());
        }
        self.reshape_for(shape);
        let hw = shape.h * shape.w;
        for (c, plane) in planar.chunks_exact(hw).enumerate() {
            for (p, &v) in plane.iter().enumerate() {
                self.data[p * shape.c + c] = v;
            }
        }
        Ok(())
    }

    /// From a `(1, C, H, W)` or `(C, H, W)` tensor.
    pub fn from_tensor(x: &Tensor) -> Result<Self> {
        let (c, h, w) = match x.dims() {
            &[1, c, h, w] | &[c, h, w] => (c, h, w),
            d => bail!("a step frame must be (1, C, H, W), got {d:?}"),
        };
        let planar = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut f = Frame::default();
        f.set_planar(&planar, Chw::new(c, h, w))?;
        Ok(f)
    }

    /// As a `(1, C, H, W)` tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        self.as_ref().to_tensor()
    }

    pub fn as_ref(&self) -> FrameRef<'_> {
        FrameRef { data: &self.data, shape: self.shape }
    }
}

/// Where a layer lets the layer before it write its next input: pixel `(y, x)` of a frame of
/// `shape` goes to `data[offset + y · row_stride + x · c ..][..c]` (e.g. inside a border of padding);
/// or, with `plane` > 0, in 16-channel blocks: channel `ch` to `data[offset + (ch / 16) · plane +
/// y · row_stride + x · 16 + ch % 16]`.
#[derive(Debug)]
pub struct InputSlot<'a> {
    pub data: &'a mut [f32],
    pub offset: usize,
    pub row_stride: usize,
    pub plane: usize,
    pub shape: Chw,
}

/// A borrowed channels-last frame: what one layer lends the next.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub data: &'a [f32],
    pub shape: Chw,
}

impl FrameRef<'_> {
    pub fn to_frame(&self) -> Frame {
        Frame { data: self.data.to_vec(), shape: self.shape }
    }

    /// As planar `(C, H, W)` values.
    pub fn to_planar(&self) -> Vec<f32> {
        let Chw { c, h, w } = self.shape;
        let mut out = vec![0.0; c * h * w];
        for (p, px) in self.data.chunks_exact(c.max(1)).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                out[ch * h * w + p] = v;
            }
        }
        out
    }

    /// As a `(1, C, H, W)` tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        let Chw { c, h, w } = self.shape;
        Tensor::from_vec(self.to_planar(), (1, c, h, w), &Device::Cpu)
    }
}
