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
//! Temporal bookkeeping follows the continual-inference library (docs/continual.md, "Emission"): a
//! layer with kernel `k`, start padding `p_b` and stride `s` emits output `j` on the step that delivers
//! its last input, `t = j·s + d` with delay `d = k − 1 − p_b`, and nothing on other steps.
//!
//! The folders, and what each may use (docs/engine.md has the graph and how it is checked):
//! - this file and [`layer`]: the shared vocabulary and the [`Layer`] trait;
//! - [`kernels`]: single-threaded CPU kernels over slices, with the one instruction-set choice;
//! - [`threads`]: the step team, splitting ops across it, the pipeline relay (uses `kernels`);
//! - [`clip`]: candle-tensor ops of the clip path (uses `kernels`, `threads`, `stream` frames);
//! - [`stream`]: frames, emission schedule and pending sums, scratch outputs;
//! - [`layers`]: what each layer means, clip and step (uses all of the above).

pub mod clip;
pub mod kernels;
pub mod layer;
pub mod layers;
pub mod stream;
pub mod threads;
pub mod timing;

pub use clip::{SpatialConv, SpatialPool};
pub use kernels::{Activation, Pad2d};
pub use layer::{Fusion, Layer, LayerReport, Primed, forward_steps, prime_by_stepping};
pub use layers::{
    Delay, Graph, GraphBuilder, Node, Parallel, Pointwise, PointwiseOp, PoolKind, Reduce, SeScope, Sequential, SqueezeExcite, TemporalConv,
    TemporalPool,
};
pub use stream::{Fill, Frame, FrameRef, InputSlot, Scratch, TemporalPad, tf_same_pads};
pub use threads::Relay;
pub use threads::team::{configured_threads, session};

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
