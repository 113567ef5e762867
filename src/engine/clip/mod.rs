//! The clip path's ops on candle tensors `(T, C, H, W)`: the spatial convolution and pooling of
//! every frame (which also carry the step path's pooling of a channels-last frame), the custom ops
//! candle lacks, and the temporal padding and frame picks of a clip.

pub mod custom_ops;
pub mod spatial;
pub mod time;

pub use custom_ops::{DepthwiseConv2d, Im2Col};
pub use spatial::{SpatialConv, SpatialPool, zeros};
pub use time::{pad_time, strided_frames};
