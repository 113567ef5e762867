//! Which outputs of a temporally strided window op an input frame feeds and on which step each is
//! complete (docs/continual.md, "Emission"), the partial results of the outputs still being collected
//! (docs/continual.md, "Pending sums"), and the temporal padding and fill of a stream
//! (docs/continual.md, "Padding and fill"). Shared by continual convolution and pooling.

use crate::engine::PadMode;

/// How each layer initialises its temporal state at the start of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fill {
    /// As if the stream were preceded by zero padding (the regular network's padding).
    #[default]
    Zeros,
    /// As if each layer's first input had always been there.
    Replicate,
}

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

/// The emission schedule of a window op with kernel `k`, stride `s`, start padding `p_b`: output `j`
/// covers inputs `j·s − p_b … j·s − p_b + k − 1`; input `t` contributes to it through tap
/// `t − (j·s − p_b)`, and the last tap completes it.
#[derive(Debug, Clone, Copy)]
pub struct Emission {
    k: i64,
    s: i64,
    p_b: i64,
}

impl Emission {
    pub fn new(k: usize, s: usize, p_b: usize) -> Self {
        Emission { k: k as i64, s: s as i64, p_b: p_b as i64 }
    }

    /// Outputs `(j, tap)` that input `t` feeds, oldest output first. Only `j >= 0` (outputs lying
    /// wholly in the virtual past are never emitted, so their taps are skipped).
    pub fn targets(&self, t: i64) -> impl Iterator<Item = (i64, usize)> + use<> {
        let (k, s, p_b) = (self.k, self.s, self.p_b);
        let hi = (t + p_b).div_euclid(s);
        let lo = (t + p_b - k + 1 + s - 1).div_euclid(s).max(0);
        (lo..=hi).map(move |j| (j, (t + p_b - j * s) as usize))
    }

    /// Whether `tap` is the last one, which completes its output.
    pub fn completes(&self, tap: usize) -> bool {
        tap as i64 == self.k - 1
    }
}

/// The partial results of the outputs a window op is still collecting, one reusable buffer each.
#[derive(Debug, Clone, Default)]
pub struct PendingSums {
    slots: Vec<Slot>,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    /// The output this slot collects; `None` when free.
    j: Option<i64>,
    /// Some term has been added (pooling: the buffer holds data).
    started: bool,
    data: Vec<f32>,
}

impl PendingSums {
    /// The slot collecting output `j`, opened (with `init` run on its buffer of `len` values) if new.
    pub fn open(&mut self, j: i64, len: usize, init: impl FnOnce(&mut [f32])) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.j == Some(j)) {
            return i;
        }
        let i = match self.slots.iter().position(|s| s.j.is_none()) {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        slot.j = Some(j);
        slot.started = false;
        slot.data.resize(len, 0.0);
        init(&mut slot.data);
        i
    }

    /// Slot `i`'s buffer and whether a term was added before; marks it started.
    pub fn term(&mut self, i: usize) -> (&mut [f32], bool) {
        let slot = &mut self.slots[i];
        let started = std::mem::replace(&mut slot.started, true);
        (&mut slot.data, started)
    }

    pub fn started(&self, i: usize) -> bool {
        self.slots[i].started
    }

    /// Free slot `i` and lend out its result (valid until the slot is opened again).
    pub fn release(&mut self, i: usize) -> &mut [f32] {
        let slot = &mut self.slots[i];
        slot.j = None;
        &mut slot.data
    }

    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| s.j = None);
    }
}

/// A window op's place in its input stream: the inputs seen so far, and (replicate fill) the last one,
/// which stands for the end padding of a flush.
#[derive(Debug, Clone, Default)]
pub struct StreamPosition {
    seen: usize,
    /// The last input (replicate fill only).
    last: Vec<f32>,
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

    /// Record that `x` was fed (with a replicate fill, keep a copy in a reused buffer).
    pub fn advance(&mut self, x: &[f32], fill: Fill) {
        self.seen += 1;
        if fill == Fill::Replicate {
            self.last.clear();
            self.last.extend_from_slice(x);
        }
    }

    /// Record that `n` inputs were fed, the last one `x` (a warm-up on copies of one frame).
    pub fn advance_by(&mut self, x: &[f32], n: usize, fill: Fill) {
        self.seen += n - 1;
        self.advance(x, fill);
    }

    /// The `after` end-padding indices of a flush and the frame they stand for (`None`: zeros or −∞,
    /// which contribute nothing).
    pub fn end_padding(&mut self, after: usize, fill: Fill) -> (std::ops::Range<i64>, Option<Vec<f32>>) {
        let range = self.seen as i64..(self.seen + after) as i64;
        let frame = (fill == Fill::Replicate && self.seen > 0).then(|| std::mem::take(&mut self.last));
        self.seen += after;
        (range, frame)
    }

    pub fn reset(&mut self) {
        self.seen = 0;
    }
}
