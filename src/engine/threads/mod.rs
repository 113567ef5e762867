//! The threads of the step path: the step team that shares one step's ops, how an op is cut into
//! chunks for it, the shared forms of the kernels, and the two-stage pipeline relay.

pub mod ops;
pub mod relay;
pub mod split;
pub mod team;

pub use relay::Relay;
