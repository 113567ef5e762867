//! Per-channel passes over channels-last frames `(pixels, C)`: a bias row added to every pixel,
//! channel sums and means, and the squeeze-excitation gate.

use super::activation::Activation;
use super::isa;
use super::lanes::{B, lane_mask};

/// `row` added to every row of `out` (rows of `row.len()`).
pub fn add_rows(out: &mut [f32], row: &[f32]) {
    if row.is_empty() {
        return;
    }
    for chunk in out.chunks_exact_mut(row.len()) {
        chunk.iter_mut().zip(row).for_each(|(o, &b)| *o += b);
    }
}

/// Mean over all pixels of a frame `(h·w, c)` into `out (c)`.
pub fn global_mean(x: &[f32], c: usize, out: &mut [f32]) {
    channel_sums(x, c, out);
    let inv = 1.0 / (x.len() / c.max(1)).max(1) as f32;
    out[..c].iter_mut().for_each(|o| *o *= inv);
}

/// Per channel, the sum over the pixels of `x (pixels, c)` into `out[..c]`. On AVX-512, 64 channels
/// at a time in registers, even and odd pixels in two sets of accumulators (the baseline build's
/// loop adds through memory, one channel at a time).
pub fn channel_sums(x: &[f32], c: usize, out: &mut [f32]) {
    assert!(out.len() >= c, "channel sums: output too short");
    #[cfg(target_arch = "x86_64")]
    if isa::avx512() && c > 0 {
        // SAFETY: the CPU has AVX-512F (`isa`); `out` holds c values.
        return unsafe { channel_sums_avx512(&x[..x.len() / c * c], c, out) };
    }
    out[..c].fill(0.0);
    for px in x.chunks_exact(c.max(1)) {
        out.iter_mut().zip(px).for_each(|(o, &v)| *o += v);
    }
}

/// # Safety
/// AVX-512F; `x` is whole pixels of `c > 0` values; `out` holds `c`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn channel_sums_avx512(x: &[f32], c: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let pixels = x.len() / c;
    for cb in (0..c).step_by(4 * B) {
        let m: [u16; 4] = std::array::from_fn(|b| lane_mask(c.saturating_sub(cb + b * B)));
        let base = x.as_ptr().wrapping_add(cb);
        let mut even = [_mm512_setzero_ps(); 4];
        let mut odd = [_mm512_setzero_ps(); 4];
        // SAFETY (loads and stores): the masks keep every lane inside its pixel's (or out's) channels.
        unsafe {
            let mut p = 0;
            while p + 1 < pixels {
                for b in 0..4 {
                    even[b] = _mm512_add_ps(even[b], _mm512_maskz_loadu_ps(m[b], base.wrapping_add(p * c + b * B)));
                    odd[b] = _mm512_add_ps(odd[b], _mm512_maskz_loadu_ps(m[b], base.wrapping_add((p + 1) * c + b * B)));
                }
                p += 2;
            }
            if p < pixels {
                for b in 0..4 {
                    even[b] = _mm512_add_ps(even[b], _mm512_maskz_loadu_ps(m[b], base.wrapping_add(p * c + b * B)));
                }
            }
            for b in 0..4 {
                _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(cb + b * B), m[b], _mm512_add_ps(even[b], odd[b]));
            }
        }
    }
}

/// `out = act(x · gate)` for the pixels of `x (pixels, c)`, `gate` per channel (squeeze-excitation's
/// output), in one pass.
pub fn scale_channels(x: &[f32], gate: &[f32], act: Option<Activation>, out: &mut [f32]) {
    let c = gate.len();
    assert!(out.len() >= x.len() && x.len().is_multiple_of(c.max(1)), "scale: buffers do not match");
    #[cfg(target_arch = "x86_64")]
    if isa::avx512() && c > 0 {
        // SAFETY: the CPU has AVX-512F (`isa`); sizes checked above.
        return unsafe { scale_channels_avx512(x, gate, act, out) };
    }
    for (o, px) in out.chunks_exact_mut(c.max(1)).zip(x.chunks_exact(c.max(1))) {
        o.iter_mut().zip(px).zip(gate).for_each(|((o, &v), &g)| *o = v * g);
        if let Some(act) = act {
            act.apply(o);
        }
    }
}

/// # Safety
/// AVX-512F; `x` is whole pixels of `gate.len() > 0` values; `out` as long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scale_channels_avx512(x: &[f32], gate: &[f32], act: Option<Activation>, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let c = gate.len();
    for p in 0..x.len() / c {
        for cb in (0..c).step_by(B) {
            let m = lane_mask(c - cb);
            // SAFETY: the mask keeps the lanes inside the pixel's channels.
            unsafe {
                let v =
                    _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x.as_ptr().add(p * c + cb)), _mm512_maskz_loadu_ps(m, gate.as_ptr().add(cb)));
                let v = super::activation::activation_lanes(act, v);
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(p * c + cb), m, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Channel sums and the gate pass against plain loops, around the 16- and 64-channel blocks and
    /// for odd pixel counts.
    #[test]
    fn channel_sums_and_gates() {
        let mut seed = 19;
        for (c, pixels) in [(1, 1), (5, 3), (16, 4), (54, 25), (70, 7), (216, 100)] {
            let x: Vec<f32> = (0..c * pixels).map(|_| lcg(&mut seed)).collect();
            let gate: Vec<f32> = (0..c).map(|_| lcg(&mut seed)).collect();
            let mut sums = vec![f32::NAN; c];
            channel_sums(&x, c, &mut sums);
            for ch in 0..c {
                let want: f64 = (0..pixels).map(|p| x[p * c + ch] as f64).sum();
                assert!((sums[ch] as f64 - want).abs() < 1e-5 * pixels as f64, "{c}x{pixels}: channel {ch}");
            }
            for act in [None, Some(Activation::Relu), Some(Activation::Swish)] {
                let mut got = vec![f32::NAN; x.len()];
                scale_channels(&x, &gate, act, &mut got);
                let mut want: Vec<f32> = x.iter().enumerate().map(|(i, v)| v * gate[i % c]).collect();
                if let Some(act) = act {
                    act.apply(&mut want);
                }
                assert_eq!(got, want, "{c}x{pixels} {act:?}");
            }
        }
    }
}
