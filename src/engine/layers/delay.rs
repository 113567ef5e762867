//! A pure delay: emits the frame it received `D` steps earlier (nothing during the first `D` steps).
//! Aligns parallel branches whose delays differ, e.g. a residual shortcut with its main branch.

use candle_core::{Result, Tensor};

use crate::engine::stream::{Frame, FrameRef};
use crate::engine::{Chw, Fusion, Layer, LayerReport, PadMode, Primed, Temporal};

#[derive(Debug, Clone)]
pub struct Delay {
    delay: usize,
    /// `delay + 1` frames, reused as a ring: the newest is written over the one just emitted.
    ring: Vec<Frame>,
    /// Frames fed since the last reset (or flush).
    fed: usize,
}

impl Delay {
    pub fn new(delay: usize) -> Self {
        Delay { delay, ring: vec![Frame::default(); delay + 1], fed: 0 }
    }

    fn held(&self) -> usize {
        self.fed.min(self.delay)
    }
}

impl Layer for Delay {
    /// The clip path is the identity; without end padding the last `D` frames have no partner yet.
    fn forward(&self, x: &Tensor, mode: PadMode) -> Result<Tensor> {
        match mode {
            PadMode::Full => Ok(x.clone()),
            PadMode::StartOnly | PadMode::Valid => {
                let n = x.dim(0)?;
                x.narrow(0, 0, n.saturating_sub(self.delay))
            }
        }
    }

    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>> {
        if self.delay == 0 {
            return Ok(Some(x));
        }
        let n = self.ring.len();
        self.ring[self.fed % n].copy_from(x);
        self.fed += 1;
        if self.fed > self.delay { Ok(Some(self.ring[self.fed % n].as_ref())) } else { Ok(None) }
    }

    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        if self.delay == 0 || n == 0 {
            return Ok(Primed::every_step(n, (n > 0).then_some(x)));
        }
        // The last `delay + 1` inputs are all `x`; the outputs so far are every input but the last `delay`.
        for i in 0..n.min(self.ring.len()) {
            let slot = (self.fed + n - 1 - i) % self.ring.len();
            self.ring[slot].copy_from(x);
        }
        let before = self.fed.saturating_sub(self.delay);
        self.fed += n;
        let emitted = self.fed.saturating_sub(self.delay) - before;
        // Once a delay emits, it emits on every step.
        let last = (emitted > 0).then(|| self.ring[(self.fed - 1 - self.delay) % self.ring.len()].as_ref());
        Ok(Primed { emitted, last_step: last.is_some(), output: last })
    }

    fn preserves_constant(&self) -> bool {
        // Once frames of an earlier stream have left it.
        self.fed == 0 || self.delay == 0
    }

    /// Releases the frames still held: the partners of the outputs a sibling branch flushes.
    fn flush_frames(&mut self) -> Result<Vec<Frame>> {
        let n = self.ring.len();
        let outs = (0..self.held()).map(|i| self.ring[(self.fed - self.held() + i) % n].clone()).collect();
        self.fed = 0;
        Ok(outs)
    }

    fn reset(&mut self) {
        self.fed = 0;
    }

    fn temporal(&self) -> Temporal {
        Temporal { receptive_field: self.delay + 1, padding: 0, stride: 1 }
    }

    fn report(&self, input: Chw) -> LayerReport {
        LayerReport {
            name: format!("delay({})", self.delay),
            kind: "delay",
            input,
            output: input,
            macs_per_output: 0,
            temporal: self.temporal(),
            ..Default::default()
        }
    }
}

impl Fusion for Delay {}
