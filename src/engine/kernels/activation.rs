//! Elementwise activations: what they mean, the vectorised swish, and the 16-lane forms the fused
//! stores apply to a register before storing it.

use super::isa;
use super::lanes::lane_mask;

/// An elementwise activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// `x · sigmoid(x)`.
    Swish,
}

impl Activation {
    pub fn apply(self, xs: &mut [f32]) {
        match self {
            Activation::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Swish => swish_in_place(xs),
        }
    }

    /// Cost per value in the units the step's threads split work by (multiply-adds): swish's `exp`
    /// and division cost about as much as 8 of them.
    pub fn work_per_value(act: Option<Self>) -> usize {
        match act {
            Some(Activation::Swish) => 8,
            Some(Activation::Relu) => 1,
            None => 0,
        }
    }
}

/// Swish `x · sigmoid(x) = x / (1 + e^−x)` over a slice, in place, with a polynomial `e^x` (Cephes
/// `expf`: range reduction by ln 2, degree-6 polynomial, 2^n from the exponent bits; ≈ 2 ulp) written
/// so that the loop vectorises: no branches, no libm calls. candle's silu runs a scalar libm `exp` per
/// element (or its barrier pool, which collapses when the other core is busy). On AVX-512 the lanes of
/// [`swish_avx512_lanes`] (the GEMM's fused store uses the same, so both give the same bits).
pub fn swish_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa::avx512() {
            // SAFETY: the CPU supports AVX-512F (`isa`).
            unsafe { swish_avx512(xs) };
            return;
        }
        if isa::avx2() {
            // SAFETY: the CPU supports AVX2 (`isa`).
            unsafe { swish_avx2(xs) };
            return;
        }
    }
    swish_loop(xs);
}

/// 16 lanes at a time, the last block masked.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn swish_avx512(xs: &mut [f32]) {
    use std::arch::x86_64::*;
    for block in xs.chunks_mut(16) {
        let m = lane_mask(block.len());
        // SAFETY: the mask covers only the block's values.
        unsafe {
            let x = _mm512_maskz_loadu_ps(m, block.as_ptr());
            _mm512_mask_storeu_ps(block.as_mut_ptr(), m, swish_avx512_lanes(x));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn swish_avx2(xs: &mut [f32]) {
    swish_loop(xs);
}

#[inline(always)]
fn swish_loop(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = swish(*x);
    }
}

/// [`swish`] on 16 lanes, with fused multiply-adds, and the division as a 14-bit reciprocal refined by
/// one Newton step (a 512-bit division costs more than the rest together); within 4 ulp of the
/// scalar form.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn swish_avx512_lanes(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let f = _mm512_set1_ps;
    const MAGIC: f32 = 12_582_912.0;
    // clamp: max(lo, t) and min(hi, ·) return t when it is NaN, like f32::clamp.
    let neg_x = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN)));
    let t = _mm512_min_ps(f(88.0), _mm512_max_ps(f(-87.0), neg_x));
    let shifted = _mm512_fmadd_ps(t, f(std::f32::consts::LOG2_E), f(MAGIC));
    let n_bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(MAGIC.to_bits() as i32));
    let n = _mm512_sub_ps(shifted, f(MAGIC));
    let r = _mm512_fnmadd_ps(n, f(-2.121_944_4e-4), _mm512_fnmadd_ps(n, f(0.693_359_4), t));
    let r2 = _mm512_mul_ps(r, r);
    let mut p = f(1.987_569_1e-4);
    for coef in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm512_fmadd_ps(p, r, f(coef));
    }
    let e_r = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), f(1.0));
    let pow2n = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n_bits, _mm512_set1_epi32(127))));
    let d = _mm512_fmadd_ps(e_r, pow2n, f(1.0));
    let y = _mm512_rcp14_ps(d);
    let y = _mm512_mul_ps(y, _mm512_fnmadd_ps(d, y, f(2.0)));
    _mm512_mul_ps(x, y)
}

/// `act` (none, ReLU or swish) on 16 lanes: what the fused stores apply to a register before storing
/// it.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn activation_lanes(act: Option<Activation>, v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    match act {
        None => v,
        Some(Activation::Relu) => _mm512_max_ps(v, _mm512_setzero_ps()),
        // SAFETY: AVX-512F, as this function's caller vouches.
        Some(Activation::Swish) => unsafe { swish_avx512_lanes(v) },
    }
}

/// One element of [`swish_in_place`].
#[inline(always)]
pub fn swish(x: f32) -> f32 {
    // e^t for t = −x, clamped where e^t over/underflows (swish is then x or 0 to within f32).
    let t = (-x).clamp(-87.0, 88.0);
    // n = round(t / ln 2) via the 1.5·2^23 trick: the sum's low mantissa bits hold n.
    const MAGIC: f32 = 12_582_912.0;
    let shifted = t * std::f32::consts::LOG2_E + MAGIC;
    let n_bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
    let n = shifted - MAGIC;
    // r = t − n·ln 2 in two parts (Cephes C1, C2), |r| ≤ ln2 / 2. The last coefficient, Cephes' 5.0000001e-1, is 0.5 in f32.
    let r = t - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let e_r = p * r2 + r + 1.0;
    // 2^n from the exponent bits (n in −126..=127 after the clamp).
    let pow2n = f32::from_bits(n_bits.wrapping_add(127).wrapping_shl(23));
    x / (1.0 + e_r * pow2n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused GEMM store's swish lanes give the same bits as `swish_in_place`, and both stay
    /// within 4 ulp of the scalar form.
    #[test]
    fn swish_lanes_equal_swish_in_place_bit_for_bit() {
        #[cfg(target_arch = "x86_64")]
        if isa::avx512() {
            let mut xs: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.05).collect();
            xs.extend([0.0, -0.0, 1e-30, -1e-30, 87.5, -87.5, 88.5, -88.5, 1e30, -1e30, 3.0, -3.0]);
            let mut in_place = xs.clone();
            swish_in_place(&mut in_place);
            for (chunk, want) in xs.chunks_exact(16).zip(in_place.chunks_exact(16)) {
                let mut got = [0f32; 16];
                // SAFETY: AVX-512F checked above; 16 values in and out.
                unsafe {
                    use std::arch::x86_64::*;
                    _mm512_storeu_ps(got.as_mut_ptr(), swish_avx512_lanes(_mm512_loadu_ps(chunk.as_ptr())));
                }
                for ((&x, g), w) in chunk.iter().zip(got).zip(want) {
                    assert_eq!(g.to_bits(), w.to_bits(), "swish({x}): {g} vs {w}");
                    let s = swish(x);
                    assert!((g - s).abs() <= 4.0 * f32::EPSILON * s.abs() + 1e-37, "swish({x}): {g} vs scalar {s}");
                }
            }
        }
    }

    /// The vectorised swish, and the scalar one, match `x · sigmoid(x)` computed in f64 to 1e-6
    /// relative (or 1e-30 absolute near zero), over the whole range including saturation; a slice
    /// whose length is not a multiple of 16 included.
    #[test]
    fn swish_matches_f64_reference() {
        let mut xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 1e-3).collect();
        xs.extend([-1e4f32, -150.0, -90.0, -88.5, -87.5, 87.5, 88.5, 90.0, 150.0, 1e4, 0.0, -0.0, 1e-20, -1e-20]);
        let mut ys = xs.clone();
        swish_in_place(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let e = x as f64 / (1.0 + (-(x as f64)).exp());
            for (form, y) in [("vector", y), ("scalar", swish(x))] {
                let err = (y as f64 - e).abs();
                assert!(err <= 1e-6 * e.abs() + 1e-30, "{form} swish({x}) = {y}, expected {e}");
            }
        }
    }
}
