//! Continual 3-D pooling: a spatial pool applied to every frame, then a temporal window reduced by
//! max or mean. Max is separable, so pooling each frame first and then over time equals the 3-D pool.

use candle_core::{Result, Tensor, bail};

use super::conv::{pad_time, strided_frames};
use super::schedule::{Accumulators, StreamPosition, TemporalPad};
use super::spatial::SpatialPool;
use super::{Chw, Fill, Layer, LayerReport, PadMode, Temporal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// Temporal padding is −∞ (never wins).
    Max,
    /// Temporal padding counts as zeros (PyTorch `count_include_pad`); the divisor is always `k`.
    Avg,
}

#[derive(Debug, Clone)]
pub struct TemporalPool {
    name: String,
    kind: PoolKind,
    k: usize,
    stride: usize,
    pad: TemporalPad,
    spatial: Option<SpatialPool>,
    fill: Fill,
    acc: Accumulators,
    position: StreamPosition,
}

impl TemporalPool {
    pub fn new(
        name: impl Into<String>,
        kind: PoolKind,
        k: usize,
        stride: usize,
        pad: TemporalPad,
        spatial: Option<SpatialPool>,
        fill: Fill,
    ) -> Result<Self> {
        if k == 0 || stride == 0 {
            bail!("pool kernel and stride must be positive");
        }
        let acc = Accumulators::new(k, stride, pad.stream_before());
        Ok(TemporalPool { name: name.into(), kind, k, stride, pad, spatial, fill, acc, position: StreamPosition::default() })
    }

    fn spatial(&self, x: &Tensor) -> Result<Tensor> {
        match &self.spatial {
            Some(p) => p.apply(x),
            None => Ok(x.clone()),
        }
    }

    fn combine(kind: PoolKind) -> impl Fn(&Tensor, &Tensor) -> Result<Tensor> {
        move |a, b| match kind {
            PoolKind::Max => a.maximum(b),
            PoolKind::Avg => a + b,
        }
    }

    fn finish(&self, acc: Option<Tensor>) -> Result<Tensor> {
        let Some(acc) = acc else { bail!("{}: output without any input", self.name) };
        match self.kind {
            PoolKind::Max => Ok(acc),
            PoolKind::Avg => acc / self.k as f64,
        }
    }

    fn absorb(&mut self, t: i64, x: Option<&Tensor>) -> Result<Option<Tensor>> {
        let done = self.acc.absorb(t, |_| Ok(x.cloned()), Self::combine(self.kind))?;
        done.map(|(_, acc)| self.finish(acc)).transpose()
    }
}

impl Layer for TemporalPool {
    fn forward(&self, x: &Tensor, mode: PadMode) -> Result<Tensor> {
        let (k, s) = (self.k, self.stride);
        let n = x.dim(0)?;
        let (before, after) = self.pad.clip_pads(n, k, s, mode);
        let pooled = self.spatial(x)?;
        // For a max, copies of the edge frame never change a window that already holds that frame,
        // so edge replication realises −∞ padding.
        let fill = if self.kind == PoolKind::Max { Fill::Replicate } else { self.fill };
        let padded = pad_time(&pooled, before, after, fill)?;
        let len = n + before + after;
        if len < k {
            bail!("{}: clip of {n} frames is shorter than the temporal window {k}", self.name);
        }
        let count = (len - k) / s + 1;
        let combine = Self::combine(self.kind);
        let mut y = strided_frames(&padded, 0, s, count)?;
        for i in 1..k {
            y = combine(&y, &strided_frames(&padded, i, s, count)?)?;
        }
        self.finish(Some(y))
    }

    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        let x = self.spatial(x)?;
        // With a replicate fill the first frame also stands for the virtual past (it cannot emit).
        let mut y = None;
        for t in self.position.next_indices(self.fill, self.pad.stream_before()) {
            y = self.absorb(t, Some(&x))?;
        }
        self.position.advance(&x, self.fill);
        Ok(y)
    }

    fn flush(&mut self) -> Result<Vec<Tensor>> {
        let after = self.pad.flush_after(self.position.seen(), self.k, self.stride);
        let (indices, frame) = self.position.end_padding(after, self.fill);
        let mut outs = Vec::new();
        for t in indices {
            if let Some(y) = self.absorb(t, frame.as_ref())? {
                outs.push(y);
            }
        }
        Ok(outs)
    }

    fn reset(&mut self) {
        self.acc.clear();
        self.position.reset();
    }

    fn temporal(&self) -> Temporal {
        Temporal { receptive_field: self.k, padding: self.pad.stream_before(), stride: self.stride }
    }

    fn report(&self, input: Chw) -> LayerReport {
        let (h, w) = self.spatial.map_or((input.h, input.w), |p| p.output_hw(input.h, input.w));
        LayerReport {
            name: self.name.clone(),
            kind: match self.kind {
                PoolKind::Max => "max pool",
                PoolKind::Avg => "avg pool",
            },
            input,
            output: Chw::new(input.c, h, w),
            macs_per_output: 0,
            temporal: self.temporal(),
            pad: Some(self.pad),
            children: Vec::new(),
            ..Default::default()
        }
    }
}
