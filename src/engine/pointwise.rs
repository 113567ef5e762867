//! Temporally pointwise layers: each frame is mapped on its own, so the clip path and the step path
//! are the same function (a clip is a batch of frames).

use candle_core::{D, Result, Tensor, bail};

use super::kernels::swish_in_place;
use super::spatial::{SpatialConv, SpatialPool};

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
use super::{Chw, Layer, LayerReport, PadMode, Temporal};

#[derive(Debug, Clone)]
pub enum Pointwise {
    Relu,
    /// `x · sigmoid(x)`.
    Swish,
    Pool(SpatialPool),
}

impl Pointwise {
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Pointwise::Relu => x.relu(),
            Pointwise::Swish => swish(x),
            Pointwise::Pool(p) => p.apply(x),
        }
    }
}

impl Layer for Pointwise {
    fn forward(&self, x: &Tensor, _mode: PadMode) -> Result<Tensor> {
        self.apply(x)
    }
    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        self.apply(x).map(Some)
    }
    fn flush(&mut self) -> Result<Vec<Tensor>> {
        Ok(Vec::new())
    }
    fn reset(&mut self) {}
    fn temporal(&self) -> Temporal {
        Temporal::POINTWISE
    }
    fn report(&self, input: Chw) -> LayerReport {
        let (kind, output) = match self {
            Pointwise::Relu => ("relu", input),
            Pointwise::Swish => ("swish", input),
            Pointwise::Pool(p) => {
                let (h, w) = p.output_hw(input.h, input.w);
                ("spatial pool", Chw::new(input.c, h, w))
            }
        };
        LayerReport {
            name: kind.to_string(),
            kind,
            input,
            output,
            macs_per_output: 0,
            temporal: Temporal::POINTWISE,
            ..Default::default()
        }
    }
}

/// Where squeeze-excitation pools its statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeScope {
    /// Over the frame's own H×W (CoX3D; temporally pointwise, so it streams).
    Frame,
    /// Over the whole clip T×H×W (regular X3D; clip path only).
    Clip,
}

/// Squeeze-excitation: `x · sigmoid(fc2(relu(fc1(mean(x)))))`, the FCs being 1×1 convs with bias.
#[derive(Debug, Clone)]
pub struct SqueezeExcite {
    name: String,
    fc1: SpatialConv,
    b1: Tensor,
    fc2: SpatialConv,
    b2: Tensor,
    scope: SeScope,
}

impl SqueezeExcite {
    /// `w1`: `(hidden, C, 1, 1, 1)` or `(hidden, C)`; `w2`: `(C, hidden, …)`; biases `(hidden,)`, `(C,)`.
    pub fn new(
        name: impl Into<String>,
        w1: &Tensor,
        b1: &Tensor,
        w2: &Tensor,
        b2: &Tensor,
        scope: SeScope,
    ) -> Result<Self> {
        let as_1x1 = |w: &Tensor| -> Result<SpatialConv> {
            let (o, i) = (w.dim(0)?, w.dim(1)?);
            SpatialConv::new(w.reshape((o, i, 1, 1))?, 1, [0; 4], 1)
        };
        let (fc1, fc2) = (as_1x1(w1)?, as_1x1(w2)?);
        let b1 = b1.reshape((1, fc1.c_out(), 1, 1))?;
        let b2 = b2.reshape((1, fc2.c_out(), 1, 1))?;
        Ok(SqueezeExcite { name: name.into(), fc1, b1, fc2, b2, scope })
    }

    fn excite(&self, x: &Tensor, z: &Tensor) -> Result<Tensor> {
        let z = self.fc1.apply(z)?.broadcast_add(&self.b1)?.relu()?;
        let z = candle_nn::ops::sigmoid(&self.fc2.apply(&z)?.broadcast_add(&self.b2)?)?;
        x.broadcast_mul(&z)
    }

    fn frame_stats(x: &Tensor) -> Result<Tensor> {
        x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)
    }
}

impl Layer for SqueezeExcite {
    fn forward(&self, x: &Tensor, _mode: PadMode) -> Result<Tensor> {
        let z = Self::frame_stats(x)?;
        let z = match self.scope {
            SeScope::Frame => z,
            SeScope::Clip => z.mean_keepdim(0)?,
        };
        self.excite(x, &z)
    }
    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        if self.scope == SeScope::Clip {
            bail!("{}: clip-wise squeeze-excitation has no step form; use frame-wise SE", self.name);
        }
        self.excite(x, &Self::frame_stats(x)?).map(Some)
    }
    fn flush(&mut self) -> Result<Vec<Tensor>> {
        Ok(Vec::new())
    }
    fn reset(&mut self) {}
    fn temporal(&self) -> Temporal {
        Temporal::POINTWISE
    }
    fn report(&self, input: Chw) -> LayerReport {
        LayerReport {
            name: self.name.clone(),
            kind: "squeeze-excite",
            input,
            output: input,
            macs_per_output: self.fc1.macs(1, 1) + self.fc2.macs(1, 1),
            temporal: Temporal::POINTWISE,
            ..Default::default()
        }
    }
}
