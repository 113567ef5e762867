//! 16-lane vocabulary shared by the kernels: the channel block, the AVX-512 lane mask, and frames
//! kept in 16-channel blocks.

/// Lanes per channel block.
pub const B: usize = 16;

/// Values of an `h × w` frame of `c` channels in 16-channel blocks (the last block padded to 16).
pub fn blocked_len(h: usize, w: usize, c: usize) -> usize {
    c.div_ceil(B) * h * w * B
}

/// The channels-last frame `x (h, w, c)` into `dst`, laid out in 16-channel blocks whose planes are
/// `plane` values apart, pixel `(y, x)` of each at `y·row_stride + x·16` (a frame inside a border).
pub fn to_blocked(x: &[f32], (h, w): (usize, usize), c: usize, dst: &mut [f32], plane: usize, row_stride: usize) {
    for (p, px) in x[..h * w * c].chunks_exact(c).enumerate() {
        let at = (p / w) * row_stride + (p % w) * B;
        for (cb, vals) in px.chunks(B).enumerate() {
            dst[cb * plane + at..][..vals.len()].copy_from_slice(vals);
        }
    }
}

/// The AVX-512 mask of the first `lanes` of a 16-lane register (all 16 for more).
pub fn lane_mask(lanes: usize) -> u16 {
    if lanes >= B { 0xFFFF } else { ((1u32 << lanes) - 1) as u16 }
}
