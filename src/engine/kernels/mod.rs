//! CPU kernels of the step path: single-threaded, pure functions over slices, one module per kind.
//! The vector forms are picked by the one instruction-set choice in [`isa`]; sharing an op across
//! the step's threads is `threads`' business, not theirs.

pub mod activation;
pub mod channels;
pub mod gemm;
pub mod isa;
pub mod lanes;
pub mod window;

pub use activation::Activation;
pub use window::{Pad2d, Window};
