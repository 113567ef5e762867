//! Continual building blocks.
//!
//! Every layer has a regular (clip) path, [`Layer::forward`], and a continual (step) path,
//! [`Layer::step_frame`], over the same weights. Clips are frame-major `(T, C, H, W)` candle tensors, so
//! a temporal tap is a slice along dim 0 and every frame of a clip goes through a spatial op as one
//! batch. The step path is the hot loop of a stream, so it runs on plain buffers instead: each layer
//! reads a borrowed channels-last frame ([`FrameRef`]) and lends out its output from a buffer it owns
//! and reuses (no allocation per step in steady state); matrix products accumulate straight into the
//! pending sums.
//!
//! Temporal bookkeeping follows the continual-inference library (models-x3d-slowfast.md §6): a layer
//! with kernel `k`, start padding `p_b` and stride `s` emits output `j` on the step that delivers its last
//! input, `t = j·s + d` with delay `d = k − 1 − p_b`, and nothing on other steps.

pub mod container;
pub mod conv;
pub mod delay;
pub mod frame;
pub mod gemm;
pub mod hwc;
pub mod kernels;
pub mod pointwise;
pub mod pool;
pub mod relay;
pub mod schedule;
pub mod scratch;
pub mod spatial;
pub mod team;
pub mod timing;

use candle_core::{Result, Tensor};

pub use crate::models::Fill;
pub use container::{Parallel, Reduce, Sequential};
pub use conv::TemporalConv;
pub use delay::Delay;
pub use frame::{Frame, FrameRef, InputSlot};

pub use pointwise::{Pointwise, SqueezeExcite, SeScope};
pub use pool::{PoolKind, TemporalPool};
pub use schedule::TemporalPad;
pub use spatial::{SpatialConv, SpatialPool};

/// Which temporal padding a clip forward uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// The regular network: padding at both ends (TF 'SAME' layers pick it from the clip length).
    Full,
    /// Only the start padding the stream uses, none at the end (the prefix oracle, `F_start`).
    StartOnly,
    /// No temporal padding anywhere (the steady-state oracle, `F_valid`).
    Valid,
}

/// Temporal shape of a layer or of a composition, in the layer's input steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Temporal {
    /// Input frames one output depends on.
    pub receptive_field: usize,
    /// Start padding (frames of virtual past before the first input).
    pub padding: usize,
    /// One output per `stride` inputs.
    pub stride: usize,
}

impl Temporal {
    /// A temporally pointwise layer.
    pub const POINTWISE: Temporal = Temporal { receptive_field: 1, padding: 0, stride: 1 };

    /// Steps between an input and the first output that has seen it as its newest frame.
    pub fn delay(&self) -> usize {
        self.receptive_field - 1 - self.padding
    }

    /// `self` followed by `next` (library formulas: strides multiply, the later layer's
    /// receptive field and padding are scaled by the earlier stride).
    pub fn then(self, next: Temporal) -> Temporal {
        Temporal {
            receptive_field: self.receptive_field + (next.receptive_field - 1) * self.stride,
            padding: self.padding + next.padding * self.stride,
            stride: self.stride * next.stride,
        }
    }
}

/// Channel, height, width of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chw {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Chw {
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Chw { c, h, w }
    }
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
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

/// An elementwise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// `x · sigmoid(x)`.
    Swish,
}

impl Activation {
    pub fn apply(self, xs: &mut [f32]) {
        match self {
            Activation::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Swish => kernels::swish_in_place(xs),
        }
    }

    /// Cost per value in the units of [`hwc::split_rows`]'s work (multiply-adds): swish's `exp`
    /// and division cost about as much as 8 of them.
    pub fn work_per_value(act: Option<Self>) -> usize {
        match act {
            Some(Activation::Swish) => 8,
            Some(Activation::Relu) => 1,
            None => 0,
        }
    }
}

/// A continual layer.
pub trait Layer: Send {
    /// Regular computation on a clip `(T, C, H, W)`; does not touch the stream state.
    fn forward(&self, x: &Tensor, mode: PadMode) -> Result<Tensor>;
    /// Feed one channels-last frame; `Some` (borrowed from this layer's buffers until its next step)
    /// when the layer emits an output.
    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>>;
    /// End of a finite stream: process this layer's end padding and emit what it completes.
    /// Leaves the stream state spent; call `reset` before streaming again.
    fn flush_frames(&mut self) -> Result<Vec<Frame>>;
    /// Feed the same frame `n ≥ 1` times (a warm-up on a still frame): the number of outputs emitted
    /// and the last one. Layers for which a constant input makes a constant output override it to
    /// skip the repeats (see [`Layer::preserves_constant`]); the result is what `n` steps give.
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<(usize, Option<FrameRef<'a>>)> {
        prime_by_stepping(self, x, n)
    }
    /// Whether a stream of one repeated frame makes every output of this layer the same frame (true
    /// for stateless layers, and for windows over a replicate-filled start or a max). Lets a
    /// container prime its layers one after the other with copies.
    fn preserves_constant(&self) -> bool {
        false
    }
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
    fn step_frame_residual<'a>(&'a mut self, _x: FrameRef<'a>, _residual: FrameRef<'_>, _act: Option<Activation>) -> Result<Option<FrameRef<'a>>> {
        candle_core::bail!("this layer has no residual form")
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

/// [`Layer::prime`] the plain way: step `x` `n` times; the outputs emitted and the last step's output.
pub fn prime_by_stepping<'a, L: Layer + ?Sized>(layer: &'a mut L, x: FrameRef<'a>, n: usize) -> Result<(usize, Option<FrameRef<'a>>)> {
    let mut emitted = 0;
    for _ in 1..n {
        emitted += layer.step_frame(x)?.is_some() as usize;
    }
    let last = layer.step_frame(x)?;
    Ok((emitted + last.is_some() as usize, last))
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
