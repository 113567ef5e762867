//! What each continual layer means, on clips and on a stream: convolution, pooling, temporally
//! pointwise maps, squeeze-excitation, delay, and the containers that compose them.

pub mod container;
pub mod conv;
pub mod delay;
pub mod pointwise;
pub mod pool;
pub mod se;

pub use container::{Parallel, Reduce, Sequential};
pub use conv::TemporalConv;
pub use delay::Delay;
pub use pointwise::{Pointwise, PointwiseOp};
pub use pool::{PoolKind, TemporalPool};
pub use se::{SeScope, SqueezeExcite};
