//! Matrix products of the step path against fixed weights: `out (m, n) (+)= a (m, k) · B (k, n)`.
//!
//! The weight `B` is packed once, at load, into panels of columns (each panel `k` rows of its width,
//! zero past `n`): 32 columns on AVX-512 CPUs, where a kernel of 8 rows × 32 columns (16 accumulators in
//! registers) runs, 16 on AVX2 CPUs, where a kernel of 6 rows × 16 columns (12 accumulators) runs. Both
//! read the activations as they are, so a product needs no packing and no allocation per call, and both
//! sum each output's products in the same order (so they give the same bits). Without AVX2 the `gemm`
//! crate runs on the row-major weight.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::activation::Activation;
use super::channels::add_rows;
use super::isa;
// Columns per block of [`Rows::in_blocks`]: the channel blocks of a blocked frame.
use super::lanes::{B, B as BLOCK, lane_mask};

/// What a product does with its output rows.
#[derive(Debug, Clone, Copy)]
pub enum Store<'a> {
    Overwrite,
    /// `+=`.
    Accumulate,
    /// Overwrite with the finished value: `act(a·B + bias + residual)` (no bias when empty; the
    /// residual, if any, laid out like the output), applied to the registers before the store rather
    /// than in further passes over the output.
    Finish {
        bias: &'a [f32],
        residual: Option<&'a [f32]>,
        act: Option<Activation>,
    },
}

impl Store<'_> {
    fn accumulates(&self) -> bool {
        matches!(self, Store::Accumulate)
    }

    /// A bias, if any, has one value per column of the `n`; a residual covers the `m × n` output.
    fn check(&self, m: usize, n: usize) {
        if let Store::Finish { bias, residual, .. } = self {
            assert!(bias.is_empty() || bias.len() == n, "matmul: bias of {} for {n} columns", bias.len());
            assert!(residual.is_none_or(|r| r.len() >= m * n), "matmul: residual smaller than the output");
        }
    }

    /// The same store for the output values `range` (a block of whole rows) only.
    pub fn narrowed(self, range: std::ops::Range<usize>) -> Self {
        match self {
            Store::Finish { bias, residual, act } => Store::Finish { bias, residual: residual.map(|r| &r[range]), act },
            other => other,
        }
    }

    /// The finishing pass over `out (rows, n)` for the paths without the fused store.
    fn finish_rows(&self, out: &mut [f32]) {
        if let Store::Finish { bias, residual, act } = *self {
            add_rows(out, bias);
            if let Some(r) = residual {
                out.iter_mut().zip(r).for_each(|(o, &r)| *o += r);
            }
            if let Some(act) = act {
                act.apply(out);
            }
        }
    }
}

/// Where the output rows of a product lie: one after the other (`n` values each), or in segments of
/// `seg` rows whose starts are `stride` values apart (a frame written inside a border of padding:
/// a segment is an image row). With `plane` > 0 the columns are cut in blocks of 16, each in its
/// own plane `plane` values after the one before, and a row holds 16 values of each (a frame in
/// 16-channel blocks, see [`super::lanes::blocked_len`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    seg: usize,
    stride: usize,
    plane: usize,
}

impl Rows {
    pub const DENSE: Rows = Rows { seg: usize::MAX, stride: 0, plane: 0 };

    pub fn segments(seg: usize, stride: usize) -> Rows {
        assert!(seg > 0, "segments of at least one row");
        Rows { seg, stride, plane: 0 }
    }

    /// The same rows in planes of 16-column blocks `plane` values apart.
    pub fn in_blocks(self, plane: usize) -> Rows {
        Rows { plane, ..self }
    }

    /// Values from one row to the next inside a segment.
    fn row_len(self, n: usize) -> usize {
        if self.plane > 0 { BLOCK } else { n }
    }

    /// Offset of column `col` (a multiple of 16) from its row's start.
    fn column(self, col: usize) -> usize {
        if self.plane > 0 { col / BLOCK * self.plane } else { col }
    }

    /// Offset of row `row` (rows of `n` values).
    pub fn offset(self, row: usize, n: usize) -> usize {
        (row / self.seg) * self.stride + (row % self.seg) * self.row_len(n)
    }

    /// Offsets of rows `first .. first + R` (one division, not one per row).
    fn offsets<const R: usize>(self, first: usize, n: usize) -> [usize; R] {
        if self == Rows::DENSE {
            return std::array::from_fn(|r| (first + r) * n);
        }
        let (mut seg, mut row) = (first / self.seg, first % self.seg);
        let len = self.row_len(n);
        std::array::from_fn(|_| {
            let at = seg * self.stride + row * len;
            row += 1;
            if row == self.seg {
                (seg, row) = (seg + 1, 0);
            }
            at
        })
    }

    /// Values from the first row's start to the end of row `m − 1`.
    pub fn span(self, m: usize, n: usize) -> usize {
        match (m, n) {
            (0, _) | (_, 0) => 0,
            _ if self.plane > 0 => self.column((n - 1) / BLOCK * BLOCK) + self.offset(m - 1, n) + BLOCK,
            _ => self.offset(m - 1, n) + n,
        }
    }
}

/// Columns per panel on AVX-512 (two 16-lane registers).
const NR: usize = 32;
/// Rows per kernel call on AVX-512.
const MR: usize = 8;
/// Columns per panel on AVX2 (two 8-lane registers).
const NR_AVX2: usize = 16;
/// Rows per kernel call on AVX2: 12 accumulators, 2 weight registers and a broadcast fit the 16
/// registers.
const MR_AVX2: usize = 6;
/// Depth of a block of the AVX2 product: a tile's weight rows (16 KiB) stay in L1 across the row
/// blocks of a panel and a block's activation rows (6 KiB) in L1 across the panel's columns.
const KC_AVX2: usize = 256;
/// Weight rows the kernel prefetches ahead.
const PREFETCH_ROWS: usize = 16;
/// Bytes of packed weight kept hot while the row blocks pass over it.
const L2_BUDGET: usize = 512 * 1024;

/// Products handed to the `gemm` crate so far (it allocates its packing buffers on each call; the
/// step-allocation test accounts for them with this).
static FALLBACK_CALLS: AtomicUsize = AtomicUsize::new(0);

pub fn fallback_calls() -> usize {
    FALLBACK_CALLS.load(Ordering::Relaxed)
}

/// A `(k, n)` weight matrix ready for [`Weight::matmul`].
#[derive(Debug, Clone)]
pub struct Weight {
    k: usize,
    n: usize,
    /// Packed panels (AVX-512, AVX2), or the row-major matrix (fallback).
    data: Vec<f32>,
    /// Columns per packed panel; 0: not packed.
    nr: usize,
}

impl Weight {
    /// From a row-major `(k, n)` matrix.
    pub fn new(k: usize, n: usize, row_major: &[f32]) -> Self {
        assert_eq!(row_major.len(), k * n, "weight matrix size");
        let nr = panel_width();
        if nr == 0 {
            return Weight { k, n, data: row_major.to_vec(), nr };
        }
        let panels = n.div_ceil(nr);
        let mut data = vec![0f32; panels * k * nr];
        for p in 0..panels {
            let cols = (n - p * nr).min(nr);
            for r in 0..k {
                data[(p * k + r) * nr..][..cols].copy_from_slice(&row_major[r * n + p * nr..][..cols]);
            }
        }
        Weight { k, n, data, nr }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Column panels (the unit a product can be split by columns in, [`Self::matmul_into`]); 0 when
    /// the weight is not packed (no AVX2), which splits by rows only.
    pub fn panels(&self) -> usize {
        if self.nr > 0 { self.n.div_ceil(self.nr) } else { 0 }
    }

    /// Rows per kernel call: the unit a product is best split by rows in.
    pub fn tile_rows(&self) -> usize {
        if self.nr == NR_AVX2 { MR_AVX2 } else { MR }
    }

    /// `out (m, n) = a (m, k) · self`, stored as `store` says; `a` and `out` row-major.
    pub fn matmul(&self, m: usize, a: &[f32], out: &mut [f32], store: Store) {
        let (k, n) = (self.k, self.n);
        assert!(a.len() >= m * k && out.len() >= m * n, "matmul: buffers too small");
        store.check(m, n);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !store.accumulates() {
                out[..m * n].fill(0.0);
                store.finish_rows(&mut out[..m * n]);
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.nr > 0 {
            // SAFETY: sizes were checked above; `out` holds the m dense rows.
            return unsafe { self.matmul_packed(a, 0..m, out.as_mut_ptr(), Rows::DENSE, store, 0..self.panels()) };
        }
        FALLBACK_CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the strides describe dense row-major matrices inside the checked slices.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                store.accumulates(),
                a.as_ptr(),
                1,
                k as isize,
                self.data.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
        store.finish_rows(&mut out[..m * n]);
    }

    /// The rows `rows` and the columns of `panels` only of `out (m, n) = a (m, k) · self`, the output
    /// rows laid out as `layout` says (packed weights), so that threads can share a product, and a
    /// product can write into another buffer's interior.
    ///
    /// # Safety
    /// `out` points to `layout.span(m, n)` writable values that nothing else accesses in these rows
    /// and columns meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matmul_into(
        &self,
        m: usize,
        a: &[f32],
        rows: std::ops::Range<usize>,
        out: *mut f32,
        layout: Rows,
        store: Store,
        panels: std::ops::Range<usize>,
    ) {
        assert!(
            self.nr > 0 && self.k > 0 && panels.end <= self.panels() && rows.end <= m && a.len() >= m * self.k,
            "matmul_into: bad call"
        );
        store.check(m, self.n);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller vouches for `out`; the rest was checked above.
        unsafe {
            self.matmul_packed(a, rows, out, layout, store, panels)
        }
    }

    /// The packed product on the kernel the weight was packed for.
    ///
    /// # Safety
    /// As [`Self::matmul_avx512`].
    #[cfg(target_arch = "x86_64")]
    unsafe fn matmul_packed(
        &self,
        a: &[f32],
        rows: std::ops::Range<usize>,
        out: *mut f32,
        layout: Rows,
        store: Store,
        panels: std::ops::Range<usize>,
    ) {
        // SAFETY: weights are packed 32 wide only on CPUs with AVX-512F and 16 wide only with AVX2
        // and FMA (`panel_width`); the caller vouches for the buffers.
        unsafe {
            if self.nr == NR {
                self.matmul_avx512(a, rows, out, layout, store, panels)
            } else {
                self.matmul_avx2(a, rows, out, layout, store, panels)
            }
        }
    }

    /// # Safety
    /// AVX-512F is present; `out` holds the rows `rows` in `layout` (of `n` values), `a` those rows
    /// of `k`, and `panels` are in range.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn matmul_avx512(
        &self,
        a: &[f32],
        rows: std::ops::Range<usize>,
        out: *mut f32,
        layout: Rows,
        store: Store,
        panels: std::ops::Range<usize>,
    ) {
        let (k, n) = (self.k, self.n);
        let mask = lane_mask;
        // Panels in groups that stay in L2 while every row block passes over them; otherwise a wide
        // matrix would be streamed from L3 once per 8 rows.
        let group = (L2_BUDGET / (k * NR * 4)).clamp(1, panels.len().max(1));
        for p0 in panels.clone().step_by(group) {
            for i0 in rows.clone().step_by(MR) {
                let count = (rows.end - i0).min(MR);
                // The next row block of the activations, while this one runs (it may come from L2 or L3).
                let next = (i0 + MR) * k..((i0 + 2 * MR).min(rows.end) * k);
                for at in next.step_by(16) {
                    // SAFETY: a prefetch of an address inside `a`; it never faults.
                    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(a.as_ptr().add(at) as *const i8) };
                }
                let offsets = layout.offsets::<MR>(i0, n);
                for p in p0..(p0 + group).min(panels.end) {
                    let cols = (n - p * NR).min(NR);
                    let masks = (mask(cols), mask(cols.saturating_sub(16)));
                    // SAFETY: rows i0.. of `a` and `out`, columns of panel p below n (masked), and the
                    // panel's k·32 values all lie inside the buffers the caller vouched for.
                    unsafe {
                        let a = a.as_ptr().add(i0 * k);
                        let b = self.data.as_ptr().add(p * k * NR);
                        let c: [*mut f32; MR] = std::array::from_fn(|r| out.wrapping_add(offsets[r] + layout.column(p * NR)));
                        let half = layout.column(BLOCK);
                        let store = match store {
                            Store::Finish { bias, residual, act } => Tile::Finish {
                                bias: if bias.is_empty() { std::ptr::null() } else { bias.as_ptr().add(p * NR) },
                                residual: residual.map_or(std::ptr::null(), |r| r.as_ptr().add(i0 * n + p * NR)),
                                act,
                            },
                            Store::Accumulate => Tile::Accumulate,
                            Store::Overwrite => Tile::Overwrite,
                        };
                        match count {
                            8 => kernel::<8>(k, a, b, &c, half, n, masks, store),
                            7 => kernel::<7>(k, a, b, &c, half, n, masks, store),
                            6 => kernel::<6>(k, a, b, &c, half, n, masks, store),
                            5 => kernel::<5>(k, a, b, &c, half, n, masks, store),
                            4 => kernel::<4>(k, a, b, &c, half, n, masks, store),
                            3 => kernel::<3>(k, a, b, &c, half, n, masks, store),
                            2 => kernel::<2>(k, a, b, &c, half, n, masks, store),
                            _ => kernel::<1>(k, a, b, &c, half, n, masks, store),
                        }
                    }
                }
            }
        }
    }
}

/// `R` rows of `a` (stride `k`) times one 32-column panel `b` into the rows at `c`, two masked
/// registers per row, the second `half` values after the first; a residual, if any, has rows `ldc`
/// apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: &[*mut f32; MR],
    half: usize,
    ldc: usize,
    (m0, m1): (u16, u16),
    store: Tile,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees R rows of k values at `a`, k·32 values at `b`, R rows of the
    // masked columns at `c`, and the panel's (masked) 32 bias values.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        if let Tile::Accumulate = store {
            for (r, row) in acc.iter_mut().enumerate() {
                row[0] = _mm512_maskz_loadu_ps(m0, c[r]);
                row[1] = _mm512_maskz_loadu_ps(m1, c[r].wrapping_add(half));
            }
        }
        for p in 0..k {
            // The weight streams from L3 on a step's first pass (a model's weights do not stay in
            // L2 from one step to the next): fetch a few rows ahead. Past the panel's end this reads
            // the next panel, or nothing (a prefetch never faults).
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((p + PREFETCH_ROWS) * NR) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((p + PREFETCH_ROWS) * NR + 16) as *const i8);
            let b0 = _mm512_loadu_ps(b.add(p * NR));
            let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r * k + p));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
        }
        if let Tile::Finish { bias, residual, act } = store {
            // The same operations, in the same order, as the separate passes (bias, residual, then
            // activation).
            // The second half of a panel may lie past the bias or residual (wholly masked off then):
            // its address is formed with `wrapping_add` and never read.
            let bv = if bias.is_null() {
                None
            } else {
                Some([_mm512_maskz_loadu_ps(m0, bias), _mm512_maskz_loadu_ps(m1, bias.wrapping_add(16))])
            };
            let masks = [m0, m1];
            for (r, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    if let Some(bv) = bv {
                        *v = _mm512_add_ps(*v, bv[j]);
                    }
                    if !residual.is_null() {
                        *v = _mm512_add_ps(*v, _mm512_maskz_loadu_ps(masks[j], residual.wrapping_add(r * ldc + 16 * j)));
                    }
                    *v = super::activation::activation_lanes(act, *v);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(c[r], m0, row[0]);
            _mm512_mask_storeu_ps(c[r].wrapping_add(half), m1, row[1]);
        }
    }
}

/// [`Store`] for one tile: its panel's bias and its residual rows (null: none; the residual with the
/// output's stride), and the activation.
#[derive(Clone, Copy)]
enum Tile {
    Overwrite,
    Accumulate,
    Finish { bias: *const f32, residual: *const f32, act: Option<Activation> },
}

/// Whether weights are packed for a kernel of this CPU (products then take row layouts).
pub fn packs_weights() -> bool {
    panel_width() > 0
}

/// Columns per packed panel for this CPU's kernel; 0: no packed kernel (the `gemm` crate runs).
fn panel_width() -> usize {
    if cfg!(not(target_arch = "x86_64")) {
        0
    } else if isa::avx512() {
        NR
    } else if isa::avx2() {
        NR_AVX2
    } else {
        0
    }
}

impl Weight {
    /// The AVX2 product, in blocks of [`KC_AVX2`] weight rows: each block adds its products to the
    /// tiles (the first block of a product that does not accumulate starts from zero), and the last
    /// one finishes them as `store` says. Every output sums its products in order of `k`, whatever the
    /// blocks (a partial sum goes through memory unrounded), so the bits are those of the AVX-512 kernel.
    ///
    /// # Safety
    /// AVX2 and FMA are present; `out` holds the rows `rows` in `layout` (of `n` values), `a` those rows
    /// of `k`, and `panels` are in range.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn matmul_avx2(
        &self,
        a: &[f32],
        rows: std::ops::Range<usize>,
        out: *mut f32,
        layout: Rows,
        store: Store,
        panels: std::ops::Range<usize>,
    ) {
        let (k, n) = (self.k, self.n);
        let kc_max = KC_AVX2.min(k);
        // Panels in groups whose block of weight rows stays in L2 while every row block passes over it.
        let group = (L2_BUDGET / (kc_max * NR_AVX2 * 4)).clamp(1, panels.len().max(1));
        for k0 in (0..k).step_by(KC_AVX2) {
            let kc = (k - k0).min(KC_AVX2);
            let load = store.accumulates() || k0 > 0;
            let last = k0 + kc == k;
            for p0 in panels.clone().step_by(group) {
                for i0 in rows.clone().step_by(MR_AVX2) {
                    let count = (rows.end - i0).min(MR_AVX2);
                    let offsets = layout.offsets::<MR_AVX2>(i0, n);
                    for p in p0..(p0 + group).min(panels.end) {
                        let cols = (n - p * NR_AVX2).min(NR_AVX2);
                        // SAFETY: rows i0.. of `a` and `out`, the panel's columns below n, the block's
                        // kc·16 weight values and the panel's bias lie inside the buffers the caller
                        // vouched for.
                        unsafe {
                            let a = a.as_ptr().add(i0 * k + k0);
                            let b = self.data.as_ptr().add((p * k + k0) * NR_AVX2);
                            let c: [*mut f32; MR_AVX2] = std::array::from_fn(|r| out.wrapping_add(offsets[r] + layout.column(p * NR_AVX2)));
                            let tile = match store {
                                Store::Finish { bias, residual, act } if last => Tile::Finish {
                                    bias: if bias.is_empty() { std::ptr::null() } else { bias.as_ptr().add(p * NR_AVX2) },
                                    residual: residual.map_or(std::ptr::null(), |r| r.as_ptr().add(i0 * n + p * NR_AVX2)),
                                    act,
                                },
                                _ if load => Tile::Accumulate,
                                _ => Tile::Overwrite,
                            };
                            let shape = TileShape { kc, lda: k, cols, ldc: n, load };
                            match count {
                                6 => kernel_avx2::<6>(shape, a, b, &c, tile),
                                5 => kernel_avx2::<5>(shape, a, b, &c, tile),
                                4 => kernel_avx2::<4>(shape, a, b, &c, tile),
                                3 => kernel_avx2::<3>(shape, a, b, &c, tile),
                                2 => kernel_avx2::<2>(shape, a, b, &c, tile),
                                _ => kernel_avx2::<1>(shape, a, b, &c, tile),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Sizes of one AVX2 tile: `kc` weight rows, activation rows `lda` apart, `cols` (≤ 16) output columns,
/// residual rows `ldc` apart; `load`: start from the values in the output rather than zero.
#[derive(Clone, Copy)]
struct TileShape {
    kc: usize,
    lda: usize,
    cols: usize,
    ldc: usize,
    load: bool,
}

/// The 16 values at `p` as two registers; of a partial panel (`cols` < 16) only the first `cols`,
/// the rest zero. (A masked move is slow on some AVX2 CPUs; partial panels are rare.)
///
/// # Safety
/// AVX2; `cols` values at `p` are readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load16(p: *const f32, cols: usize) -> [std::arch::x86_64::__m256; 2] {
    use std::arch::x86_64::*;
    // SAFETY: as the caller vouches; a partial panel is copied first.
    unsafe {
        if cols == NR_AVX2 {
            return [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))];
        }
        let mut buf = [0f32; NR_AVX2];
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), cols);
        [_mm256_loadu_ps(buf.as_ptr()), _mm256_loadu_ps(buf.as_ptr().add(8))]
    }
}

/// The first `cols` of the two registers `v` to `p`.
///
/// # Safety
/// AVX2; `cols` values at `p` are writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store16(p: *mut f32, cols: usize, v: [std::arch::x86_64::__m256; 2]) {
    use std::arch::x86_64::*;
    // SAFETY: as the caller vouches; a partial panel goes through a copy.
    unsafe {
        if cols == NR_AVX2 {
            _mm256_storeu_ps(p, v[0]);
            _mm256_storeu_ps(p.add(8), v[1]);
            return;
        }
        let mut buf = [0f32; NR_AVX2];
        _mm256_storeu_ps(buf.as_mut_ptr(), v[0]);
        _mm256_storeu_ps(buf.as_mut_ptr().add(8), v[1]);
        std::ptr::copy_nonoverlapping(buf.as_ptr(), p, cols);
    }
}

/// `R` rows of `a` times `kc` rows of one 16-column panel `b` (rows 16 apart) into the rows at `c`,
/// starting from zero or from the values there (`shape.load`), finished as the tile says. The same operations in the same order as [`kernel`].
///
/// # Safety
/// AVX2 and FMA; `R` rows of `kc` values `lda` apart at `a`, `kc·16` values at `b`, `R` rows of
/// `cols` values at `c`, `cols` bias values and `R` residual rows of `cols` values, if any.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn kernel_avx2<const R: usize>(shape: TileShape, a: *const f32, b: *const f32, c: &[*mut f32; MR_AVX2], tile: Tile) {
    use std::arch::x86_64::*;
    let TileShape { kc, lda, cols, ldc, load } = shape;
    // SAFETY: the caller guarantees every address read or written below.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        if load {
            for (r, row) in acc.iter_mut().enumerate() {
                *row = load16(c[r], cols);
            }
        }
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(p * NR_AVX2));
            let b1 = _mm256_loadu_ps(b.add(p * NR_AVX2 + 8));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(r * lda + p));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
        }
        let mut swish = false;
        if let Tile::Finish { bias, residual, act } = tile {
            // The same operations, in the same order, as the separate passes (bias, residual, then
            // activation).
            let bv = (!bias.is_null()).then(|| load16(bias, cols));
            for (r, row) in acc.iter_mut().enumerate() {
                if let Some(bv) = bv {
                    row[0] = _mm256_add_ps(row[0], bv[0]);
                    row[1] = _mm256_add_ps(row[1], bv[1]);
                }
                if !residual.is_null() {
                    let rv = load16(residual.add(r * ldc), cols);
                    row[0] = _mm256_add_ps(row[0], rv[0]);
                    row[1] = _mm256_add_ps(row[1], rv[1]);
                }
                if let Some(Activation::Relu) = act {
                    row[0] = _mm256_max_ps(row[0], _mm256_setzero_ps());
                    row[1] = _mm256_max_ps(row[1], _mm256_setzero_ps());
                }
            }
            swish = matches!(act, Some(Activation::Swish));
        }
        for (r, row) in acc.iter().enumerate() {
            store16(c[r], cols, *row);
            if swish {
                // The separate pass's own kernel on the stored row, while it is in L1: the same bits.
                Activation::Swish.apply(std::slice::from_raw_parts_mut(c[r], cols));
            }
        }
    }
}

/// `out (rows) = m (rows, cols) · v (cols) + bias`, given `mt`, the matrix transposed `(cols, rows)`:
/// a block of outputs accumulates across the columns in registers (the row-major dot product is one
/// serial chain of adds per output, which the compiler may not reorder). Each output still sums its
/// products in column order, then adds its bias.
pub fn matvec_bias(mt: &[f32], v: &[f32], bias: &[f32], out: &mut [f32]) {
    const BLOCK: usize = 64;
    let rows = out.len();
    assert!(mt.len() >= v.len() * rows && bias.len() >= rows, "matvec: buffers too small");
    #[cfg(target_arch = "x86_64")]
    if isa::avx512() {
        // SAFETY: the CPU has AVX-512F (`isa`); sizes checked above.
        return unsafe { matvec_bias_avx512(mt, v, bias, out) };
    }
    for r0 in (0..rows).step_by(BLOCK) {
        let n = (rows - r0).min(BLOCK);
        let mut acc = [0f32; BLOCK];
        for (j, &x) in v.iter().enumerate() {
            let col = &mt[j * rows + r0..][..n];
            acc[..n].iter_mut().zip(col).for_each(|(a, &m)| *a += m * x);
        }
        for ((o, a), b) in out[r0..r0 + n].iter_mut().zip(&acc).zip(&bias[r0..]) {
            *o = a + b;
        }
    }
}

/// [`matvec_bias`] 64 outputs at a time in four registers; the same products and sums in the same
/// order (a multiply, then an add), so the same bits.
///
/// # Safety
/// AVX-512F; `mt` holds `v.len()` columns of `out.len()` values, `bias` at least `out.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn matvec_bias_avx512(mt: &[f32], v: &[f32], bias: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let rows = out.len();
    for r0 in (0..rows).step_by(4 * B) {
        let m: [u16; 4] = std::array::from_fn(|b| lane_mask(rows.saturating_sub(r0 + b * B)));
        let mut acc = [_mm512_setzero_ps(); 4];
        // SAFETY (loads and stores): the masks keep every lane inside its column (or `out`, `bias`).
        unsafe {
            for (j, &x) in v.iter().enumerate() {
                let col = mt.as_ptr().wrapping_add(j * rows + r0);
                let xv = _mm512_set1_ps(x);
                for b in 0..4 {
                    acc[b] = _mm512_add_ps(acc[b], _mm512_mul_ps(_mm512_maskz_loadu_ps(m[b], col.wrapping_add(b * B)), xv));
                }
            }
            for b in 0..4 {
                let at = r0 + b * B;
                let y = _mm512_add_ps(acc[b], _mm512_maskz_loadu_ps(m[b], bias.as_ptr().wrapping_add(at)));
                _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(at), m[b], y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row count around the 8-row kernel and column count around the 32-column panels, both
    /// modes, against a direct f64 product.
    #[test]
    fn matmul_matches_direct_product() {
        let mut seed = 1u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        // k past one AVX2 block of weight rows (256), and two blocks and a bit, with partial panels.
        for &(m, k, n) in
            &[(1, 1, 1), (7, 5, 3), (8, 27, 24), (9, 54, 33), (17, 64, 64), (100, 96, 216), (25, 13, 65), (13, 300, 40), (7, 577, 9)]
        {
            let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let init: Vec<f32> = (0..m * n).map(|_| next()).collect();
            let w = Weight::new(k, n, &b);
            for accumulate in [false, true] {
                let mut out = init.clone();
                w.matmul(m, &a, &mut out, if accumulate { Store::Accumulate } else { Store::Overwrite });
                for i in 0..m {
                    for j in 0..n {
                        let mut want: f64 = if accumulate { init[i * n + j] as f64 } else { 0.0 };
                        for p in 0..k {
                            want += a[i * k + p] as f64 * b[p * n + j] as f64;
                        }
                        let got = out[i * n + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{m}x{k}x{n} acc={accumulate} at ({i},{j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn matvec_from_the_transposed_matrix() {
        // More rows than one block of outputs, and a partial last block.
        for (rows, cols) in [(3, 5), (64, 2), (150, 27)] {
            let mut seed = 7;
            let m: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
            let v: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
            let bias: Vec<f32> = (0..rows).map(|_| lcg(&mut seed)).collect();
            let mt: Vec<f32> = (0..cols * rows).map(|i| m[(i % rows) * cols + i / rows]).collect();
            let mut out = vec![f32::NAN; rows];
            matvec_bias(&mt, &v, &bias, &mut out);
            for r in 0..rows {
                let want = m[r * cols..][..cols].iter().zip(&v).map(|(a, b)| a * b).sum::<f32>() + bias[r];
                assert_eq!(out[r], want, "{rows}x{cols} row {r}");
            }
        }
    }
}
