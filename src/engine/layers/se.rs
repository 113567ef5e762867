//! Squeeze-excitation: a per-channel gate computed from the frame (or clip) mean.

use candle_core::{D, Result, Tensor, bail};

use crate::engine::clip::SpatialConv;
use crate::engine::kernels::Activation;
use crate::engine::kernels::channels::{global_mean, scale_channels};
use crate::engine::kernels::gemm::matvec_bias;
use crate::engine::stream::{Frame, FrameRef, Lender, Scratch, ScratchOutput};
use crate::engine::threads::split::{pass_work, split_rows};
use crate::engine::{Chw, Fusion, Layer, LayerReport, PadMode, Primed, Temporal};

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
    step: SeStep,
}

/// The step form's weights, transposed for [`matvec_bias`] (`fc1ᵀ (C, hidden)`, `fc2ᵀ (hidden, C)`),
/// and buffers.
#[derive(Debug, Clone, Default)]
struct SeStep {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    mean: Vec<f32>,
    hidden: Vec<f32>,
    gate: Vec<f32>,
    out: Frame,
    /// Applied to the output (fused from the layer after).
    act: Option<Activation>,
    /// Step outputs go to this thread's shared buffer instead of `out` (see [`ScratchOutput`]).
    scratch: Option<ScratchOutput>,
}

impl SqueezeExcite {
    /// `w1`: `(hidden, C, 1, 1, 1)` or `(hidden, C)`; `w2`: `(C, hidden, …)`; biases `(hidden,)`, `(C,)`.
    pub fn new(name: impl Into<String>, w1: &Tensor, b1: &Tensor, w2: &Tensor, b2: &Tensor, scope: SeScope) -> Result<Self> {
        let as_1x1 = |w: &Tensor| -> Result<SpatialConv> {
            let (o, i) = (w.dim(0)?, w.dim(1)?);
            SpatialConv::new(w.reshape((o, i, 1, 1))?, 1, [0; 4], 1)
        };
        let (fc1, fc2) = (as_1x1(w1)?, as_1x1(w2)?);
        let b1 = b1.reshape((1, fc1.c_out(), 1, 1))?;
        let b2 = b2.reshape((1, fc2.c_out(), 1, 1))?;
        let values = |t: &Tensor| t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>();
        let transposed = |c: &SpatialConv| values(&c.weight().flatten_from(1)?.t()?.contiguous()?);
        let step = SeStep {
            w1: transposed(&fc1)?,
            b1: values(&b1)?,
            w2: transposed(&fc2)?,
            b2: values(&b2)?,
            mean: vec![0.0; fc1.c_in()],
            hidden: vec![0.0; fc1.c_out()],
            gate: vec![0.0; fc2.c_out()],
            out: Frame::default(),
            act: None,
            scratch: None,
        };
        Ok(SqueezeExcite { name: name.into(), fc1, b1, fc2, b2, scope, step })
    }

    /// Step outputs go to this thread's `slot` buffer instead of the layer's own: only where the next
    /// layer of a `Sequential` consumes the output at once (see [`ScratchOutput`]; any other use
    /// makes a step fail).
    pub fn with_scratch_output(mut self, slot: Scratch) -> Self {
        self.step.scratch = Some(ScratchOutput::new(slot));
        self
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
    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>> {
        if self.scope == SeScope::Clip {
            bail!("{}: clip-wise squeeze-excitation has no step form; use frame-wise SE", self.name);
        }
        let st = &mut self.step;
        if x.shape.c != st.mean.len() {
            bail!("{}: expected {} channels, got {}", self.name, st.mean.len(), x.shape.c);
        }
        global_mean(x.data, x.shape.c, &mut st.mean);
        matvec_bias(&st.w1, &st.mean, &st.b1, &mut st.hidden);
        st.hidden.iter_mut().for_each(|v| *v = v.max(0.0));
        matvec_bias(&st.w2, &st.hidden, &st.b2, &mut st.gate);
        st.gate.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
        let (c, pixels, gate, act) = (x.shape.c, x.shape.h * x.shape.w, &st.gate, st.act);
        let out: &mut [f32] = match &st.scratch {
            // SAFETY: the output is returned tied to this step's borrow of the layer.
            Some(scratch) => unsafe { scratch.lend(x.data.len())? },
            None => {
                st.out.reshape_for(x.shape);
                &mut st.out.data
            }
        };
        // Gate and activation in one pass, shared by the step's threads.
        split_rows(out, c, pixels, pass_work(pixels * c, act), |out, rows| {
            scale_channels(&x.data[rows.start * c..rows.end * c], gate, act, out);
        });
        Ok(Some(FrameRef { data: out, shape: x.shape }))
    }
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        if n == 0 {
            return Ok(Primed::NONE);
        }
        Ok(Primed::every_step(n, self.step_frame(x)?))
    }
    fn preserves_constant(&self) -> bool {
        self.scope == SeScope::Frame
    }
    fn flush_frames(&mut self) -> Result<Vec<Frame>> {
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

impl Fusion for SqueezeExcite {
    fn scratch_lender(&self) -> Option<Lender> {
        self.step.scratch.as_ref().map(ScratchOutput::lender)
    }

    fn fuse_activation(&mut self, act: Activation) -> bool {
        self.step.act = Some(act);
        true
    }
}
