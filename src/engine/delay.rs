//! A pure delay: emits the frame it received `D` steps earlier (nothing during the first `D` steps).
//! Aligns parallel branches whose delays differ, e.g. a residual shortcut with its main branch.

use std::collections::VecDeque;

use candle_core::{Result, Tensor};

use super::{Chw, Layer, LayerReport, PadMode, Temporal};

#[derive(Debug, Clone)]
pub struct Delay {
    delay: usize,
    fifo: VecDeque<Tensor>,
}

impl Delay {
    pub fn new(delay: usize) -> Self {
        Delay { delay, fifo: VecDeque::with_capacity(delay + 1) }
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

    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        if self.delay == 0 {
            return Ok(Some(x.clone()));
        }
        self.fifo.push_back(x.clone());
        if self.fifo.len() > self.delay { Ok(self.fifo.pop_front()) } else { Ok(None) }
    }

    /// Releases the frames still held: the partners of the outputs a sibling branch flushes.
    fn flush(&mut self) -> Result<Vec<Tensor>> {
        Ok(self.fifo.drain(..).collect())
    }

    fn reset(&mut self) {
        self.fifo.clear();
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
