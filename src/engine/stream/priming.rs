//! The emission schedule of a warm-up: what `n` copies of one frame do to a window op (kernel `k`,
//! stride `s`, start padding `p_b`), worked out instead of stepped (docs/continual.md, "Warm-up in
//! closed form"). Shared by continual convolution and pooling.

use crate::engine::stream::{Fill, PendingSums};

/// `n` inputs fed to a window op after `seen` earlier ones. Output `j` covers inputs
/// `j·s − p_b … j·s − p_b + k − 1` and is emitted on the step of its last one (docs/continual.md,
/// "Emission").
#[derive(Debug, Clone, Copy)]
pub struct PrimeSchedule {
    k: i64,
    s: i64,
    p_b: i64,
    seen: i64,
    /// Inputs seen once the `n` are fed.
    end: i64,
    /// The first input index the warm-up feeds: the first frame also stands for the `p_b` frames of
    /// virtual past when a replicate-filled stream starts.
    first: i64,
}

impl PrimeSchedule {
    pub fn new((k, s, p_b): (usize, usize, usize), fill: Fill, seen: usize, n: usize) -> Self {
        let (k, s, p_b, seen) = (k as i64, s as i64, p_b as i64, seen as i64);
        let first = if seen == 0 && fill == Fill::Replicate { -p_b } else { seen };
        PrimeSchedule { k, s, p_b, seen, end: seen + n as i64, first }
    }

    fn start(&self, j: i64) -> i64 {
        j * self.s - self.p_b
    }

    fn completion(&self, j: i64) -> i64 {
        self.start(j) + self.k - 1
    }

    /// Outputs complete once input `t` is in (`t = −1`: none yet).
    fn due(&self, t: i64) -> i64 {
        let js = t + self.p_b - (self.k - 1);
        if js < 0 { 0 } else { js / self.s + 1 }
    }

    /// Whether the state the warm-up leaves depends on the fed frame alone: every output still
    /// pending afterwards, and the last one emitted, took all its inputs from the warm-up. True for
    /// a fresh layer, and once the warm-up outlasts every output that was pending before it.
    pub fn closed_form(&self) -> bool {
        self.seen == 0 || self.end - self.seen >= self.k + self.s - 1
    }

    /// Outputs emitted during the warm-up.
    pub fn emitted(&self) -> usize {
        (self.due(self.end - 1) - self.due(self.seen - 1)) as usize
    }

    /// Whether its last step emits.
    pub fn last_step(&self) -> bool {
        let js = self.end - 1 + self.p_b - (self.k - 1);
        js >= 0 && js % self.s == 0
    }

    /// How many inputs output `j` has absorbed by the end of the warm-up.
    fn absorbed(&self, j: i64) -> usize {
        (self.completion(j).min(self.end - 1) - self.start(j).max(self.first) + 1) as usize
    }

    /// Whether every output the warm-up leaves behind (see [`Self::outputs`]) absorbed its inputs
    /// from its first tap on: no zero padding was skipped at a zero-filled start.
    pub fn from_first_tap(&self) -> bool {
        self.outputs().next().is_none_or(|(j, _, _)| self.start(j) >= self.first)
    }

    /// The outputs a step path would hold once the warm-up is in, with the inputs each absorbed:
    /// the last one emitted (if any; flagged true), then those still pending. Oldest first.
    pub fn outputs(&self) -> impl Iterator<Item = (i64, usize, bool)> + '_ {
        let done = self.due(self.end - 1);
        let last = (self.emitted() > 0).then(|| (done - 1, self.absorbed(done - 1), true));
        let pending = (done..).take_while(|&j| self.start(j).max(self.first) < self.end).map(|j| (j, self.absorbed(j), false));
        last.into_iter().chain(pending)
    }

    /// Most outputs a step path holds at once in steady state (pending ones and the one a step
    /// opens), so that a warm-up can leave room for them all.
    pub fn slots(&self) -> usize {
        ((self.k - 1 + self.s - 1) / self.s + 1) as usize
    }
}

/// Lay out in `pending` the outputs a warm-up leaves behind (see [`PrimeSchedule::outputs`]), each
/// holding the partial result of the inputs it absorbed: all copies of one frame, so one chain of
/// partial results serves them all, `step(m, buf)` turning that of `m` inputs into that of `m + 1`
/// (the step path's own operation, so the results are bit for bit the step path's). The slot of the
/// last output emitted, if any, not yet released.
pub fn fill_pending(
    schedule: &PrimeSchedule,
    pending: &mut PendingSums,
    len: usize,
    mut step: impl FnMut(usize, &mut [f32]),
) -> Option<usize> {
    let mut outputs: Vec<(i64, usize, bool)> = schedule.outputs().collect();
    outputs.sort_by_key(|&(_, absorbed, _)| absorbed);
    let mut chain = vec![0f32; len];
    let (mut absorbed, mut last) = (0, None);
    for &(j, inputs, is_last) in &outputs {
        while absorbed < inputs {
            step(absorbed, &mut chain);
            absorbed += 1;
        }
        let i = pending.open(j, len, |_| {});
        pending.term(i).0.copy_from_slice(&chain);
        if is_last {
            last = Some(i);
        }
    }
    // Room for every output the steps ahead hold at once, so that they allocate nothing; opened
    // under indices no output has, then freed.
    let spare: Vec<usize> = (0..schedule.slots().saturating_sub(outputs.len())).map(|m| pending.open(-1 - m as i64, len, |_| {})).collect();
    for i in spare {
        pending.release(i);
    }
    last
}
