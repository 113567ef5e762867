//! Temporally pointwise layers: each frame is mapped on its own, so the clip path and the step path
//! are the same function (a clip is a batch of frames).

use candle_core::{Result, Tensor};

use crate::engine::clip::SpatialPool;
use crate::engine::kernels::Activation;
use crate::engine::kernels::activation::swish_in_place;
use crate::engine::stream::{Frame, FrameRef};
use crate::engine::{Chw, Fusion, Layer, LayerReport, PadMode, Primed, Temporal};

/// Swish through the vectorised kernel on CPU f32 tensors (a fresh output tensor), candle's silu
/// elsewhere.
fn swish(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return x.silu();
    }
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    swish_in_place(&mut v);
    Tensor::from_vec(v, x.shape(), x.device())
}

/// What a temporally pointwise layer does to each frame.
#[derive(Debug, Clone)]
pub enum PointwiseOp {
    Relu,
    /// `x · sigmoid(x)`.
    Swish,
    Pool(SpatialPool),
}

/// A temporally pointwise layer, with the buffer its step output lives in.
#[derive(Debug, Clone)]
pub struct Pointwise {
    op: PointwiseOp,
    out: Frame,
}

impl Pointwise {
    pub fn relu() -> Self {
        Self::new(PointwiseOp::Relu)
    }

    pub fn swish() -> Self {
        Self::new(PointwiseOp::Swish)
    }

    pub fn pool(p: SpatialPool) -> Self {
        Self::new(PointwiseOp::Pool(p))
    }

    pub fn new(op: PointwiseOp) -> Self {
        Pointwise { op, out: Frame::default() }
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match &self.op {
            PointwiseOp::Relu => x.relu(),
            PointwiseOp::Swish => swish(x),
            PointwiseOp::Pool(p) => p.apply(x),
        }
    }
}

impl Layer for Pointwise {
    fn forward(&self, x: &Tensor, _mode: PadMode) -> Result<Tensor> {
        self.apply(x)
    }
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        if n == 0 {
            return Ok(Primed::NONE);
        }
        Ok(Primed::every_step(n, self.step_frame(x)?))
    }
    fn preserves_constant(&self) -> bool {
        true
    }
    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>> {
        match &self.op {
            PointwiseOp::Relu => {
                self.out.reshape_for(x.shape);
                self.out.data.iter_mut().zip(x.data).for_each(|(o, &v)| *o = v.max(0.0));
            }
            PointwiseOp::Swish => {
                self.out.copy_from(x);
                swish_in_place(&mut self.out.data);
            }
            PointwiseOp::Pool(p) => p.apply_frame(x, &mut self.out),
        }
        Ok(Some(self.out.as_ref()))
    }
    fn flush_frames(&mut self) -> Result<Vec<Frame>> {
        Ok(Vec::new())
    }
    fn reset(&mut self) {}
    fn temporal(&self) -> Temporal {
        Temporal::POINTWISE
    }
    fn report(&self, input: Chw) -> LayerReport {
        let (kind, output) = match &self.op {
            PointwiseOp::Relu => ("relu", input),
            PointwiseOp::Swish => ("swish", input),
            PointwiseOp::Pool(p) => {
                let (h, w) = p.output_hw(input.h, input.w);
                ("spatial pool", Chw::new(input.c, h, w))
            }
        };
        LayerReport { name: kind.to_string(), kind, input, output, macs_per_output: 0, temporal: Temporal::POINTWISE, ..Default::default() }
    }
}

impl Fusion for Pointwise {
    fn activation(&self) -> Option<Activation> {
        match self.op {
            PointwiseOp::Relu => Some(Activation::Relu),
            PointwiseOp::Swish => Some(Activation::Swish),
            PointwiseOp::Pool(_) => None,
        }
    }
}
