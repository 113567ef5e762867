//! What each continual layer means, on clips and on a stream: convolution, pooling, temporally
//! pointwise maps, squeeze-excitation, delay, and the containers that compose them (in sequence, in parallel, as a graph).

pub mod container;
pub mod conv;
pub mod delay;
pub mod graph;
pub mod pointwise;
pub mod pool;
pub mod se;

pub use container::{Parallel, Reduce, Sequential};
pub use conv::TemporalConv;
pub use delay::Delay;
pub use graph::{Graph, GraphBuilder, Node};
pub use pointwise::{Pointwise, PointwiseOp};
pub use pool::{PoolKind, TemporalPool};
pub use se::{SeScope, SqueezeExcite};
