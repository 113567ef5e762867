//! Temporal clip ops on `(T, C, H, W)` tensors: padding along time, and strided frame picks.

use candle_core::{Result, Tensor};

use crate::engine::stream::Fill;

/// Pad a clip `(T, C, H, W)` along time with `before`/`after` frames: zeros, or copies of the edge frames.
pub fn pad_time(x: &Tensor, before: usize, after: usize, fill: Fill) -> Result<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    match fill {
        Fill::Zeros => x.pad_with_zeros(0, before, after),
        Fill::Replicate => x.pad_with_same(0, before, after),
    }
}

/// Frames `offset, offset + stride, …` (`count` of them) of a clip.
pub fn strided_frames(x: &Tensor, offset: usize, stride: usize, count: usize) -> Result<Tensor> {
    if stride == 1 {
        return x.narrow(0, offset, count);
    }
    let idx: Vec<u32> = (0..count).map(|j| (offset + j * stride) as u32).collect();
    x.index_select(&Tensor::new(idx, x.device())?, 0)
}
