//! Continual 3-D pooling: a spatial pool applied to every frame, then a temporal window reduced by
//! max or mean. Max is separable, so pooling each frame first and then over time equals the 3-D pool.

use candle_core::{Result, Tensor, bail};

use crate::engine::clip::{SpatialPool, pad_time, strided_frames};
use crate::engine::stream::priming::fill_pending;
use crate::engine::stream::{Emission, Fill, Frame, FrameRef, PendingSums, PrimeSchedule, StreamPosition, TemporalPad};
use crate::engine::{Chw, Fusion, Layer, LayerReport, PadMode, Primed, Temporal, prime_by_stepping};

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
    emission: Emission,
    pending: PendingSums,
    position: StreamPosition,
    /// Shape of the (spatially pooled) frames the temporal window combines.
    frame_shape: Chw,
    /// The spatially pooled frame of this step.
    pooled: Frame,
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
        let emission = Emission::new(k, stride, pad.stream_before());
        Ok(TemporalPool {
            name: name.into(),
            kind,
            k,
            stride,
            pad,
            spatial,
            fill,
            emission,
            pending: PendingSums::default(),
            position: StreamPosition::default(),
            frame_shape: Chw::default(),
            pooled: Frame::default(),
        })
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

    /// Feed input `t` (`None`: padding, which never changes a max and adds zero to a sum); the slot
    /// of the output it completes.
    fn absorb(&mut self, t: i64, x: Option<&[f32]>) -> Option<usize> {
        let mut done = None;
        let len = self.frame_shape.numel();
        for (j, tap) in self.emission.targets(t) {
            let i = self.pending.open(j, len, |_| {});
            if let Some(x) = x {
                let (acc, started) = self.pending.term(i);
                match (started, self.kind) {
                    (false, _) => acc.copy_from_slice(x),
                    (true, PoolKind::Max) => acc.iter_mut().zip(x).for_each(|(a, &v)| *a = a.max(v)),
                    (true, PoolKind::Avg) => acc.iter_mut().zip(x).for_each(|(a, &v)| *a += v),
                }
            }
            if self.emission.completes(tap) {
                done = Some(i);
            }
        }
        done
    }

    /// Free the completed output in slot `i` and lend it out.
    fn finish_frame(&mut self, i: usize) -> Result<FrameRef<'_>> {
        if !self.pending.started(i) {
            if self.kind == PoolKind::Max {
                bail!("{}: output without any input", self.name);
            }
            let (acc, _) = self.pending.term(i);
            acc.fill(0.0);
        }
        let (kind, k, shape) = (self.kind, self.k, self.frame_shape);
        let out = self.pending.release(i);
        if kind == PoolKind::Avg {
            let inv = 1.0 / k as f32;
            out.iter_mut().for_each(|v| *v *= inv);
        }
        Ok(FrameRef { data: out, shape })
    }
}

/// The frame a window combines: `x` pooled spatially into `pooled` where the layer pools in space
/// too, else `x` itself.
fn window_input<'a>(spatial: Option<&SpatialPool>, x: FrameRef<'a>, pooled: &'a mut Frame) -> FrameRef<'a> {
    match spatial {
        Some(p) => {
            p.apply_frame(x, pooled);
            pooled.as_ref()
        }
        None => x,
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

    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>> {
        let mut pooled = std::mem::take(&mut self.pooled);
        let src = window_input(self.spatial.as_ref(), x, &mut pooled);
        self.frame_shape = src.shape;
        // With a replicate fill the first frame also stands for the virtual past (it cannot emit).
        let mut done = None;
        for t in self.position.next_indices(self.fill, self.pad.stream_before()) {
            done = self.absorb(t, Some(src.data)).or(done);
        }
        self.position.advance(src.data, self.fill);
        self.pooled = pooled;
        done.map(|i| self.finish_frame(i)).transpose()
    }

    fn preserves_constant(&self) -> bool {
        // At the start of a stream, windows over copies of one frame; the start padding is a copy
        // too, or absent, or never wins (max).
        self.position.seen() == 0 && (self.kind == PoolKind::Max || self.fill == Fill::Replicate || self.pad.stream_before() == 0)
    }

    /// In closed form (docs/continual.md, "Warm-up in closed form"): the pending windows are laid
    /// out from one chain of partial results, whatever the kernel; the spatial pool runs once.
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        if n == 0 {
            return Ok(Primed::NONE);
        }
        let schedule = PrimeSchedule::new((self.k, self.stride, self.pad.stream_before()), self.fill, self.position.seen(), n);
        if !schedule.closed_form() {
            return prime_by_stepping(self, x, n);
        }
        let mut pooled = std::mem::take(&mut self.pooled);
        let src = window_input(self.spatial.as_ref(), x, &mut pooled);
        self.frame_shape = src.shape;
        if self.position.seen() > 0 {
            // Every output pending before completed during the warm-up.
            self.pending.clear();
        }
        // The step path's combination, term by term: a copy, then max or sum.
        let kind = self.kind;
        let last = fill_pending(&schedule, &mut self.pending, src.shape.numel(), |m, acc| match (m, kind) {
            (0, _) => acc.copy_from_slice(src.data),
            (_, PoolKind::Max) => acc.iter_mut().zip(src.data).for_each(|(a, &v)| *a = a.max(v)),
            (_, PoolKind::Avg) => acc.iter_mut().zip(src.data).for_each(|(a, &v)| *a += v),
        });
        self.position.advance_by(src.data, n, self.fill);
        self.pooled = pooled;
        let (emitted, last_step) = (schedule.emitted(), schedule.last_step());
        Ok(Primed { emitted, last_step, output: last.map(|i| self.finish_frame(i)).transpose()? })
    }

    fn flush_frames(&mut self) -> Result<Vec<Frame>> {
        if self.position.seen() == 0 {
            return Ok(Vec::new());
        }
        let after = self.pad.flush_after(self.position.seen(), self.k, self.stride);
        let (indices, frame) = self.position.end_padding(after, self.fill);
        let mut outs = Vec::new();
        for t in indices {
            if let Some(i) = self.absorb(t, frame.as_deref()) {
                outs.push(self.finish_frame(i)?.to_frame());
            }
        }
        Ok(outs)
    }

    fn reset(&mut self) {
        self.pending.clear();
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

impl Fusion for TemporalPool {}
