//! Which outputs of a temporally strided window op an input frame feeds, and the partial results
//! ("accumulators") of the outputs still being collected. Shared by continual convolution and pooling.

use std::collections::VecDeque;

use candle_core::{Result, Tensor};

use super::{Fill, PadMode};

/// Temporal padding of a window op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalPad {
    /// Fixed frames of padding before and after (PyTorch-style layers).
    Fixed { before: usize, after: usize },
    /// TensorFlow 'SAME': a clip picks its pads from its length; a stream fixes the start pad to
    /// `stream_before` (it has no length) and a flush computes the end pad from the frames it saw.
    TfSame { stream_before: usize },
}

/// TF 'SAME' pads for `n` inputs, kernel `k`, stride `s`: the odd frame goes at the end.
pub fn tf_same_pads(n: usize, k: usize, s: usize) -> (usize, usize) {
    let out = n.div_ceil(s);
    let total = ((out.max(1) - 1) * s + k).saturating_sub(n);
    (total / 2, total - total / 2)
}

impl TemporalPad {
    pub fn symmetric(p: usize) -> Self {
        TemporalPad::Fixed { before: p, after: p }
    }

    /// Start padding of the stream (the continual layer's `p_b`).
    pub fn stream_before(&self) -> usize {
        match *self {
            TemporalPad::Fixed { before, .. } => before,
            TemporalPad::TfSame { stream_before } => stream_before,
        }
    }

    /// Pads `(before, after)` a clip forward of `n` frames uses.
    pub fn clip_pads(&self, n: usize, k: usize, s: usize, mode: PadMode) -> (usize, usize) {
        match mode {
            PadMode::Valid => (0, 0),
            PadMode::StartOnly => (self.stream_before(), 0),
            PadMode::Full => match *self {
                TemporalPad::Fixed { before, after } => (before, after),
                TemporalPad::TfSame { .. } => tf_same_pads(n, k, s),
            },
        }
    }

    /// End padding a flush processes after a stream of `n` inputs.
    pub fn flush_after(&self, n: usize, k: usize, s: usize) -> usize {
        match *self {
            TemporalPad::Fixed { after, .. } => after,
            TemporalPad::TfSame { stream_before } => {
                let out = n.div_ceil(s);
                ((out.max(1) - 1) * s + k).saturating_sub(n).saturating_sub(stream_before)
            }
        }
    }
}

/// Partial results of pending outputs of a window op with kernel `k`, stride `s`, start padding `p_b`.
/// Output `j` covers inputs `j·s − p_b … j·s − p_b + k − 1`; input `t` contributes to it through tap
/// `t − (j·s − p_b)`.
#[derive(Debug, Clone)]
pub struct Accumulators {
    k: i64,
    s: i64,
    p_b: i64,
    pending: VecDeque<(i64, Tensor)>,
}

impl Accumulators {
    pub fn new(k: usize, s: usize, p_b: usize) -> Self {
        Accumulators { k: k as i64, s: s as i64, p_b: p_b as i64, pending: VecDeque::new() }
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Outputs `(j, tap)` that input `t` feeds, oldest output first. Only `j >= 0` (outputs lying
    /// wholly in the virtual past are never emitted, so their taps are skipped).
    pub fn targets(&self, t: i64) -> impl Iterator<Item = (i64, usize)> + use<> {
        let (k, s, p_b) = (self.k, self.s, self.p_b);
        let hi = (t + p_b).div_euclid(s);
        let lo = (t + p_b - k + 1 + s - 1).div_euclid(s).max(0);
        (lo..=hi).map(move |j| (j, (t + p_b - j * s) as usize))
    }

    /// Add input `t`'s contributions; `contribution(tap)` gives the term for one tap (`None` = the
    /// frame is padding that contributes nothing). Returns the output completed by `t`, if any.
    pub fn absorb(
        &mut self,
        t: i64,
        mut contribution: impl FnMut(usize) -> Result<Option<Tensor>>,
        combine: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Option<(i64, Option<Tensor>)>> {
        let mut completed = None;
        for (j, tap) in self.targets(t) {
            let term = contribution(tap)?;
            let slot = self.pending.iter().position(|(pj, _)| *pj == j);
            let acc = match (slot, term) {
                (Some(i), Some(term)) => {
                    let sum = combine(&self.pending[i].1, &term)?;
                    self.pending[i].1 = sum;
                    Some(i)
                }
                (Some(i), None) => Some(i),
                (None, Some(term)) => {
                    self.pending.push_back((j, term));
                    Some(self.pending.len() - 1)
                }
                (None, None) => None,
            };
            if tap as i64 == self.k - 1 {
                let value = acc.map(|i| self.pending.remove(i).expect("index found above").1);
                completed = Some((j, value));
            }
        }
        Ok(completed)
    }
}

/// A window op's place in its input stream: the inputs seen so far, and (replicate fill) the last one,
/// which stands for the end padding of a flush.
#[derive(Debug, Clone, Default)]
pub struct StreamPosition {
    seen: usize,
    last: Option<Tensor>,
}

impl StreamPosition {
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Input indices the next frame stands for: its own, and with a replicate fill the first frame
    /// also stands for the `p_b` frames of virtual past before it.
    pub fn next_indices(&self, fill: Fill, p_b: usize) -> std::ops::Range<i64> {
        let now = self.seen as i64;
        let from = if self.seen == 0 && fill == Fill::Replicate { -(p_b as i64) } else { now };
        from..now + 1
    }

    /// Record that `x` was fed.
    pub fn advance(&mut self, x: &Tensor, fill: Fill) {
        self.seen += 1;
        if fill == Fill::Replicate {
            self.last = Some(x.clone());
        }
    }

    /// The `after` end-padding indices of a flush and the frame they stand for (`None`: zeros or −∞,
    /// which contribute nothing).
    pub fn end_padding(&mut self, after: usize, fill: Fill) -> (std::ops::Range<i64>, Option<Tensor>) {
        let range = self.seen as i64..(self.seen + after) as i64;
        self.seen += after;
        let frame = self.last.take().filter(|_| fill == Fill::Replicate);
        (range, frame)
    }

    pub fn reset(&mut self) {
        *self = StreamPosition::default();
    }
}
