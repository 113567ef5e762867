//! Stream state of the step path: the frames layers hand each other, the emission schedule and
//! pending sums of window ops, and the per-thread scratch outputs.

pub mod emission;
pub mod frame;
pub mod priming;
pub mod scratch;

pub use emission::{Emission, Fill, PendingSums, StreamPosition, TemporalPad, tf_same_pads};
pub use frame::{Frame, FrameRef, InputSlot};
pub use priming::PrimeSchedule;
pub use scratch::{Lender, Scratch, ScratchOutput};
