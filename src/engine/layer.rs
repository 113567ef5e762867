//! The [`Layer`] trait: what a continual layer means, on clips and on a stream of frames; and
//! [`Fusion`], the step-path shortcuts a container may take with it, kept apart so that a new layer
//! implements the meaning only (docs/engine.md, "Writing a layer").

use candle_core::{Result, Tensor};

use crate::engine::kernels::Activation;
use crate::engine::stream::{Frame, FrameRef, InputSlot, Lender, TemporalPad};
use crate::engine::timing;
use crate::engine::{Chw, PadMode, Temporal};

/// A continual layer. A new layer implements `forward`, `step_frame`, `flush_frames`, `reset`,
/// `temporal` and `report` (and an empty `impl Fusion`); the rest have defaults.
pub trait Layer: Send + Fusion {
    /// Regular computation on a clip `(T, C, H, W)`; does not touch the stream state.
    fn forward(&self, x: &Tensor, mode: PadMode) -> Result<Tensor>;
    /// Feed one channels-last frame; `Some` (borrowed from this layer's buffers until its next step)
    /// when the layer emits an output.
    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>>;
    /// End of a finite stream: process this layer's end padding and emit what it completes.
    /// Leaves the stream state spent; call `reset` before streaming again.
    fn flush_frames(&mut self) -> Result<Vec<Frame>>;
    /// Feed the same frame `n ≥ 1` times (a warm-up on a still frame), leaving the layer exactly
    /// where `n` steps would; what they emitted (see [`Primed`]). The default steps; layers override
    /// it with a closed form that costs about one step (docs/continual.md, "Warm-up in closed form").
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        prime_by_stepping(self, x, n)
    }
    /// Whether copies of one frame fed from now on make every output of this layer the same frame,
    /// bit for bit: always for stateless layers; at the start of a stream for windows whose start
    /// padding is a copy of the first frame, or absent, or never wins a max. Lets a container prime
    /// its layers one after the other with copies of what the layer before emitted.
    fn preserves_constant(&self) -> bool {
        false
    }
    /// [`Layer::step_frame`] on a `(1, C, H, W)` tensor; `Some` when the layer emits an output.
    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        let x = Frame::from_tensor(x)?;
        self.step_frame(x.as_ref())?.map(|y| y.to_tensor()).transpose()
    }
    /// [`Layer::flush_frames`] as `(1, C, H, W)` tensors.
    fn flush(&mut self) -> Result<Vec<Tensor>> {
        self.flush_frames()?.iter().map(Frame::to_tensor).collect()
    }
    /// Forget the stream.
    fn reset(&mut self);
    fn temporal(&self) -> Temporal;
    /// Shapes and costs for an input frame of shape `input`.
    fn report(&self, input: Chw) -> LayerReport;
}

/// Step-path shortcuts between neighbouring layers, which a container ([`crate::engine::Sequential`])
/// takes where both sides offer them; all optional, and none changes what the layer computes.
/// The defaults offer none.
pub trait Fusion {
    /// The elementwise activation this layer is, if it is one (a candidate for fusion).
    fn activation(&self) -> Option<Activation> {
        None
    }
    /// Apply `act` to this layer's step and flush outputs from now on, so that the activation layer
    /// after it can be skipped in the step path (one pass less over the frame); false if this layer
    /// cannot. The clip path is unaffected.
    fn fuse_activation(&mut self, _act: Activation) -> bool {
        false
    }
    /// For an input of `shape`, a place in this layer's own buffers that the layer before may write
    /// that input into (and then step this layer with [`Layer::step_frame_in_slot`]), saving a copy.
    fn input_slot(&mut self, _shape: Chw) -> Option<InputSlot<'_>> {
        None
    }
    /// Step on the input of `shape` written into the slot [`Layer::input_slot`] lent.
    fn step_frame_in_slot<'a>(&'a mut self, _shape: Chw) -> Result<Option<FrameRef<'a>>> {
        candle_core::bail!("this layer lends no input slot")
    }
    /// The output shape for an input of `shape`, when this layer can write its step output into
    /// another layer's input slot ([`Layer::step_frame_into_slot`]; it then emits on every step).
    fn slot_output(&self, _input: Chw) -> Option<Chw> {
        None
    }
    /// Step, writing the output into `slot` instead of this layer's own buffer.
    fn step_frame_into_slot(&mut self, _x: FrameRef<'_>, _slot: InputSlot<'_>) -> Result<()> {
        candle_core::bail!("this layer cannot write into another's slot")
    }
    /// Whether [`Layer::step_frame_residual`] can add a residual in the layer's own output pass.
    fn accepts_residual(&self) -> bool {
        false
    }
    /// [`Layer::step_frame`] whose output is `act(output + residual)` (`residual` shaped like the
    /// output), for a residual sum that ends in this layer: one pass over the output instead of two.
    /// Only for layers that [`Layer::accepts_residual`].
    fn step_frame_residual<'a>(
        &'a mut self,
        _x: FrameRef<'a>,
        _residual: FrameRef<'_>,
        _act: Option<Activation>,
    ) -> Result<Option<FrameRef<'a>>> {
        candle_core::bail!("this layer has no residual form")
    }
    /// The scratch slot this layer may lend its step outputs from (see
    /// [`crate::engine::stream::scratch`]): the container that steps the next layer on such an
    /// output releases the slot after it.
    fn scratch_lender(&self) -> Option<Lender> {
        None
    }
}

/// What a layer computes, for cost counting and `--per-layer` tables; containers list their parts.
#[derive(Debug, Clone, Default)]
pub struct LayerReport {
    pub name: String,
    pub kind: &'static str,
    pub input: Chw,
    pub output: Chw,
    /// Multiply-accumulates per emitted output frame (all temporal taps included).
    pub macs_per_output: u64,
    pub temporal: Temporal,
    /// Temporal padding of a window op (conv or pool); `None` for layers that keep the frame count.
    pub pad: Option<TemporalPad>,
    /// A BatchNorm was folded into this conv (counted separately in the paper's FLOP convention).
    pub bn: bool,
    /// The conv adds a bias of its own (not a folded BN).
    pub bias: bool,
    pub children: Vec<LayerReport>,
    /// Time spent in this layer's steps while [`timing`] was on (set by the container).
    pub step_time: Option<timing::StepTime>,
}

/// What [`Layer::prime`] reports of its `n` steps on one frame.
#[derive(Clone, Copy)]
pub struct Primed<'a> {
    /// Outputs the steps emitted.
    pub emitted: usize,
    /// Whether the last step emitted one (a strided layer may emit on earlier steps only).
    pub last_step: bool,
    /// The last output emitted, borrowed from the layer until its next step: always there when the
    /// last step emitted, and otherwise when the layer [preserves a constant
    /// input](Layer::preserves_constant) (then it is every output's value, which a container hands on).
    pub output: Option<FrameRef<'a>>,
}

impl<'a> Primed<'a> {
    /// Nothing emitted.
    pub const NONE: Primed<'static> = Primed { emitted: 0, last_step: false, output: None };

    /// A layer that emits on every step: `n` outputs, the last `y`.
    pub fn every_step(n: usize, y: Option<FrameRef<'a>>) -> Self {
        Primed { emitted: if y.is_some() { n } else { 0 }, last_step: y.is_some(), output: y }
    }
}

/// [`Layer::prime`] the plain way: step `x` `n` times; the output is the last step's, if it emitted.
pub fn prime_by_stepping<'a, L: Layer + ?Sized>(layer: &'a mut L, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
    if n == 0 {
        return Ok(Primed::NONE);
    }
    let mut emitted = 0;
    for _ in 1..n {
        emitted += layer.step_frame(x)?.is_some() as usize;
    }
    let last = layer.step_frame(x)?;
    Ok(Primed { emitted: emitted + last.is_some() as usize, last_step: last.is_some(), output: last })
}

/// Run a whole clip through the step path (the library's `forward_steps`), optionally flushing at the
/// end; the emitted outputs stacked on dim 0, or `None` if nothing was emitted.
pub fn forward_steps(layer: &mut dyn Layer, clip: &Tensor, flush: bool) -> Result<Option<Tensor>> {
    let mut outs = Vec::new();
    for t in 0..clip.dim(0)? {
        if let Some(y) = layer.step(&clip.narrow(0, t, 1)?)? {
            outs.push(y);
        }
    }
    if flush {
        outs.extend(layer.flush()?);
    }
    if outs.is_empty() { Ok(None) } else { Tensor::cat(&outs, 0).map(Some) }
}
