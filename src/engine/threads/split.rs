//! How an op of the step is cut into chunks for the step's threads ([`team`]): the work per chunk,
//! the chunk bounds, and [`split_rows`], which runs a closure on disjoint row ranges of an output.

use super::team;
use crate::engine::kernels::Activation;

/// Work (multiply-adds, or values visited) per chunk when an op is shared by the step's threads
/// ([`team`]): a hand-off costs well under a microsecond, a chunk of this size one or two. (Measured
/// on CoX3D-S with 2 threads: 20 k–100 k per chunk and 1–4 chunks per thread all within noise;
/// 300 k and more lose.)
const CHUNK_WORK: usize = 50_000;

/// Work of one value of a pass that only streams memory (a copy, a sum, a gate): it costs about as
/// long as this many multiply-adds, as the data come from L2 or L3.
const PASS_WORK: usize = 4;

/// Work of a pass over `values` that streams memory and applies `act` to each.
pub fn pass_work(values: usize, act: Option<Activation>) -> usize {
    values * (PASS_WORK + Activation::work_per_value(act))
}

/// Start of chunk `i` (`i = chunks`: the end) when `units` are cut into `chunks`. The leader claims
/// chunks from the front and helpers from the back, so the chunks claimed last, whose end the other
/// thread waits for, are those in the middle: from 4 chunks on they are cut smaller there (weights
/// 2 1 1 2, 3 2 1 1 2 3, …). Measured on CoX3D-S in one process, steps alternating: the same or up to
/// 7 % faster than even chunks, the more so the busier the host.
pub(super) fn chunk_start(units: usize, chunks: usize, i: usize) -> usize {
    if chunks < 4 {
        return units * i / chunks;
    }
    let weight = |j: usize| chunks / 2 - j.min(chunks - 1 - j);
    let total: usize = (0..chunks).map(weight).sum();
    units * (0..i).map(weight).sum::<usize>() / total
}

/// Chunks to cut `work` into: one per `CHUNK_WORK`, at most two per thread of the running session.
pub(super) fn chunks_for(work: usize) -> usize {
    let threads = team::width();
    if threads < 2 { 1 } else { (work / CHUNK_WORK).min(2 * threads) }
}

/// Values an elementwise pass handles at a time when it makes two passes (e.g. a product, then
/// an activation), so that the second reads from L1.
pub const L1_BLOCK: usize = 2048;

/// A pointer that the chunks of one op share; each writes a part the others do not touch.
#[derive(Clone, Copy)]
pub(super) struct Shared(pub(super) *mut f32);
// SAFETY: used only for disjoint parts of one buffer that outlives the op (see the call sites).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// (A method, so that closures capture the whole `Shared` rather than its raw pointer field.)
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Run `f` on the `rows` rows of `out` (`row_len` values each), in parts on the session's threads
/// when `work` is big enough (each part a run of whole rows); `f` gets its rows and their range.
pub fn split_rows(out: &mut [f32], row_len: usize, rows: usize, work: usize, f: impl Fn(&mut [f32], std::ops::Range<usize>) + Sync) {
    split_rows_by(out, row_len, rows, 1, chunks_for(work), f)
}

/// [`split_rows`] into `chunks` parts whose row counts are multiples of `unit` (but the last).
pub(super) fn split_rows_by(
    out: &mut [f32],
    row_len: usize,
    rows: usize,
    unit: usize,
    chunks: usize,
    f: impl Fn(&mut [f32], std::ops::Range<usize>) + Sync,
) {
    let out = &mut out[..rows * row_len];
    let units = rows.div_ceil(unit);
    let chunks = chunks.min(units);
    if chunks <= 1 {
        return f(out, 0..rows);
    }
    let base = Shared(out.as_mut_ptr());
    team::for_each_chunk(chunks, &|i| {
        let range = (chunk_start(units, chunks, i) * unit).min(rows)..(chunk_start(units, chunks, i + 1) * unit).min(rows);
        // SAFETY: the chunks' row ranges are disjoint and inside `out`, which outlives the call.
        let part = unsafe { std::slice::from_raw_parts_mut(base.at(range.start * row_len), range.len() * row_len) };
        f(part, range)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunk bounds cover the units in order, and the middle chunks are no larger than the outer.
    #[test]
    fn chunks_are_smaller_in_the_middle() {
        for chunks in 1..=9 {
            for units in [1, 3, 7, 13, 100, 1600] {
                let starts: Vec<usize> = (0..=chunks).map(|i| chunk_start(units, chunks, i)).collect();
                assert_eq!((starts[0], starts[chunks]), (0, units), "{units} in {chunks}");
                assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{units} in {chunks}: {starts:?}");
                if chunks >= 4 && units >= 100 {
                    let size = |i: usize| starts[i + 1] - starts[i];
                    assert!(size(chunks / 2) < size(0) && size(chunks / 2 - 1) < size(chunks - 1), "{units} in {chunks}: {starts:?}");
                }
            }
        }
    }
}
