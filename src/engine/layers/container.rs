//! Composition: layers in sequence, and parallel branches aligned by delay and then reduced
//! (a residual block is `Parallel([shortcut, main], Sum)`; an Inception module is `Parallel(.., Concat)`).
//! Temporal shape of a composition is computed from its parts, never declared.

use candle_core::{Result, Tensor, bail};

use super::delay::Delay;
use crate::engine::kernels::Activation;
use crate::engine::stream::scratch::{self, Lender};
use crate::engine::stream::{Frame, FrameRef};
use crate::engine::threads::split::{L1_BLOCK, pass_work, split_rows};
use crate::engine::timing::Timings;
use crate::engine::{Chw, Fusion, Layer, LayerReport, PadMode, Primed, Temporal, prime_by_stepping};

pub struct Sequential {
    name: String,
    layers: Vec<Box<dyn Layer>>,
    /// Activation layers the layer before them applies in the step path (skipped there).
    fused: Vec<bool>,
    /// Per layer, the scratch slot it lends its step outputs from, if any: released once the next
    /// layer has consumed them (see [`scratch`]).
    lenders: Vec<Option<Lender>>,
    timings: Timings,
}

/// After a layer stepped on an output lent from a scratch slot by `lent` and returned `out`: the slot
/// is free for other layers again (an error if `out` lies in it).
fn release(lent: Option<Lender>, out: Option<FrameRef<'_>>) -> Result<()> {
    match lent {
        // SAFETY: the lent output was the input of the layer that just stepped, which holds on to
        // nothing of it past its step (a layer is `'static`), except what it returned, which
        // `release` checks.
        Some(lender) => unsafe { scratch::release(lender, out.map_or(&[], |o| o.data)) },
        None => Ok(()),
    }
}

impl Sequential {
    pub fn new(name: impl Into<String>, layers: Vec<Box<dyn Layer>>) -> Self {
        let mut seq =
            Sequential { name: name.into(), layers: Vec::new(), fused: Vec::new(), lenders: Vec::new(), timings: Timings::default() };
        for layer in layers {
            seq.push_boxed(layer);
        }
        seq
    }

    pub fn push(&mut self, layer: impl Layer + 'static) {
        self.push_boxed(Box::new(layer));
    }

    /// Append a layer; an activation is fused into the layer before it where that layer can apply it.
    fn push_boxed(&mut self, layer: Box<dyn Layer>) {
        let fused = match (layer.activation(), self.layers.len()) {
            (Some(act), n) if n > 0 && !self.fused[n - 1] => self.layers[n - 1].fuse_activation(act),
            _ => false,
        };
        self.lenders.push(layer.scratch_lender());
        self.layers.push(layer);
        self.fused.push(fused);
        self.timings.push();
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The layers, for a caller that steps them one by one (a relay): only when no activation was
    /// fused into the layer before it (which stepping it again would apply twice).
    pub fn units_mut(&mut self) -> Result<&mut [Box<dyn Layer>]> {
        if self.fused.contains(&true) {
            bail!("{}: fused activations; the layers do not step one by one", self.name);
        }
        Ok(&mut self.layers)
    }

    /// Step every layer in turn; with `residual`, the last one steps with it. A layer that can write
    /// its output straight into the next layer's input buffer (a 1×1 conv before a depthwise conv's
    /// padded frame window) does so, which saves a copy of the frame.
    fn step_frame_ending<'a>(
        &'a mut self,
        x: FrameRef<'a>,
        residual: Option<(FrameRef<'_>, Option<Activation>)>,
    ) -> Result<Option<FrameRef<'a>>> {
        let Sequential { layers, fused, lenders, timings, .. } = self;
        let last = layers.len().saturating_sub(1);
        let mut y = x;
        // The lender of `y`, if it lies in a scratch slot.
        let mut lent = None;
        let mut layers =
            layers.iter_mut().zip(fused.iter()).enumerate().filter(|(_, (_, fused))| !**fused).map(|(i, (l, _))| (i, l)).peekable();
        while let Some((i, layer)) = layers.next() {
            let start = timings.start();
            if let Some(shape) = layer.slot_output(y.shape)
                && let Some((j, next)) = layers.peek_mut()
                && (residual.is_none() || *j != last)
                && let Some(slot) = next.input_slot(shape)
            {
                layer.step_frame_into_slot(y, slot)?;
                timings.add(i, start);
                let (j, next) = layers.next().expect("peeked above");
                let start = timings.start();
                let out = next.step_frame_in_slot(shape)?;
                timings.add(j, start);
                release(lent, out)?;
                lent = lenders[j];
                match out {
                    Some(out) => {
                        y = out;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            let out = match residual {
                Some((r, act)) if i == last => layer.step_frame_residual(y, r, act)?,
                _ => layer.step_frame(y)?,
            };
            timings.add(i, start);
            release(lent, out)?;
            lent = lenders[i];
            match out {
                Some(next) => y = next,
                // Later layers are not stepped: they see nothing this step.
                None => return Ok(None),
            }
        }
        Ok(Some(y))
    }
}

impl Layer for Sequential {
    fn forward(&self, x: &Tensor, mode: PadMode) -> Result<Tensor> {
        let mut y = x.clone();
        for layer in &self.layers {
            y = layer.forward(&y, mode)?;
        }
        Ok(y)
    }

    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>> {
        self.step_frame_ending(x, None)
    }

    /// Each layer in order first takes what the layers before it flushed, then flushes itself.
    fn flush_frames(&mut self) -> Result<Vec<Frame>> {
        let mut pending: Vec<Frame> = Vec::new();
        for ((layer, _), &lender) in self.layers.iter_mut().zip(&self.fused).zip(&self.lenders).filter(|((_, fused), _)| !**fused) {
            let mut next = Vec::new();
            for x in &pending {
                if let Some(y) = layer.step_frame(x.as_ref())? {
                    next.push(y.to_frame());
                }
            }
            next.extend(layer.flush_frames()?);
            // Every output was copied.
            release(lender, None)?;
            pending = next;
        }
        Ok(pending)
    }

    /// With every layer preserving a constant input, each layer is primed once with copies of what
    /// the layer before emitted, as many as it emitted (docs/continual.md, "Warm-up in closed
    /// form"); otherwise step by step.
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        if !self.preserves_constant() {
            return prime_by_stepping(self, x, n);
        }
        let name = &self.name;
        let (mut y, mut count, mut last_step) = (x, n, true);
        let mut lent = None;
        for ((layer, _), &lender) in self.layers.iter_mut().zip(&self.fused).zip(&self.lenders).filter(|((_, fused), _)| !**fused) {
            if count == 0 {
                break;
            }
            let primed = layer.prime(y, count)?;
            release(lent, primed.output)?;
            lent = lender;
            // The sequence emits on the last step when every layer's last input was the last step's.
            last_step &= primed.last_step;
            count = primed.emitted;
            match primed.output {
                Some(next) => y = next,
                None if count == 0 => {}
                None => bail!("{name}: a layer primed without handing on its output"),
            }
        }
        if count == 0 {
            return Ok(Primed::NONE);
        }
        Ok(Primed { emitted: count, last_step, output: Some(y) })
    }

    fn preserves_constant(&self) -> bool {
        self.layers.iter().all(|l| l.preserves_constant())
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| l.reset());
    }

    fn temporal(&self) -> Temporal {
        self.layers.iter().fold(Temporal::POINTWISE, |acc, l| acc.then(l.temporal()))
    }

    fn report(&self, input: Chw) -> LayerReport {
        let mut shape = input;
        let children: Vec<LayerReport> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let r = LayerReport { step_time: self.timings.get(i), ..l.report(shape) };
                shape = r.output;
                r
            })
            .collect();
        LayerReport {
            name: self.name.clone(),
            kind: "sequential",
            input,
            output: shape,
            macs_per_output: 0,
            temporal: self.temporal(),
            children,
            ..Default::default()
        }
    }
}

impl Fusion for Sequential {
    /// The last layer adds the residual, unless an activation was fused into it.
    fn accepts_residual(&self) -> bool {
        matches!((self.layers.last(), self.fused.last()), (Some(last), Some(false)) if last.accepts_residual())
    }

    fn step_frame_residual<'a>(
        &'a mut self,
        x: FrameRef<'a>,
        residual: FrameRef<'_>,
        act: Option<Activation>,
    ) -> Result<Option<FrameRef<'a>>> {
        if !self.accepts_residual() {
            bail!("{}: no residual form", self.name);
        }
        self.step_frame_ending(x, Some((residual, act)))
    }

    fn fuse_activation(&mut self, act: Activation) -> bool {
        match (self.layers.last_mut(), self.fused.last()) {
            (Some(last), Some(false)) => last.fuse_activation(act),
            _ => false,
        }
    }
}

/// How parallel branch outputs are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    /// Along channels, in branch order.
    Concat,
}

pub struct Parallel {
    name: String,
    branches: Vec<Box<dyn Layer>>,
    reduce: Reduce,
    /// The step output.
    out: Frame,
    /// Applied to the output (fused from the layer after).
    act: Option<Activation>,
    timings: Timings,
}

/// Most branches a parallel layer may have (the step path keeps their outputs on the stack).
const MAX_BRANCHES: usize = 8;

impl Parallel {
    /// Branches must share the temporal stride; each branch with a smaller delay than the slowest
    /// gets a `Delay` on its output so that all branches emit the same output on the same step.
    pub fn new(name: impl Into<String>, branches: Vec<Box<dyn Layer>>, reduce: Reduce) -> Result<Self> {
        let name = name.into();
        let Some(first) = branches.first() else { bail!("{name}: no branches") };
        if branches.len() > MAX_BRANCHES {
            bail!("{name}: more than {MAX_BRANCHES} branches");
        }
        let stride = first.temporal().stride;
        if branches.iter().any(|b| b.temporal().stride != stride) {
            bail!("{name}: parallel branches must have the same temporal stride");
        }
        let delay = branches.iter().map(|b| b.temporal().delay()).max().unwrap_or(0);
        let branches = branches
            .into_iter()
            .enumerate()
            .map(|(i, b)| -> Result<Box<dyn Layer>> {
                let lag = delay - b.temporal().delay();
                if lag == 0 {
                    return Ok(b);
                }
                if lag % stride != 0 {
                    bail!("{name}: branch {i} lags by {lag} steps, not a multiple of the stride {stride}");
                }
                let aligned: Vec<Box<dyn Layer>> = vec![b, Box::new(Delay::new(lag / stride))];
                Ok(Box::new(Sequential::new(format!("{name}.{i}"), aligned)))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut timings = Timings::default();
        branches.iter().for_each(|_| timings.push());
        Ok(Parallel { name, branches, reduce, out: Frame::default(), act: None, timings })
    }

    fn combine(&self, ys: &[Tensor]) -> Result<Tensor> {
        match self.reduce {
            Reduce::Concat => Tensor::cat(ys, 1),
            Reduce::Sum => {
                let mut acc = ys[0].clone();
                for y in &ys[1..] {
                    acc = (acc + y)?;
                }
                Ok(acc)
            }
        }
    }
}

impl Layer for Parallel {
    fn forward(&self, x: &Tensor, mode: PadMode) -> Result<Tensor> {
        let ys = self.branches.iter().map(|b| b.forward(x, mode)).collect::<Result<Vec<_>>>()?;
        let ys = if mode == PadMode::Valid {
            // Without padding, a branch with a smaller receptive field has extra outputs at the start
            // (windows ending earlier); keep the ones the widest branch also has.
            let widest = self.temporal().receptive_field;
            let stride = self.temporal().stride;
            ys.into_iter()
                .zip(&self.branches)
                .map(|(y, b)| {
                    let skip = (widest - b.temporal().receptive_field) / stride;
                    let n = y.dim(0)?;
                    y.narrow(0, skip.min(n), n.saturating_sub(skip))
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            ys
        };
        let n = ys[0].dim(0)?;
        if ys.iter().any(|y| y.dim(0).ok() != Some(n)) {
            let lens: Vec<_> = ys.iter().map(|y| y.dim(0).unwrap_or(0)).collect();
            bail!("{}: branches produced different lengths {lens:?}", self.name);
        }
        self.combine(&ys)
    }

    fn step_frame<'a>(&'a mut self, x: FrameRef<'a>) -> Result<Option<FrameRef<'a>>> {
        let Parallel { name, branches, reduce, out, act, timings } = self;
        let n = branches.len();
        if *reduce == Reduce::Sum && n == 2 && branches[1].accepts_residual() {
            // A residual block: the second branch adds the first's output (and applies the
            // activation) in its own output pass; its output is the sum.
            let (first, second) = branches.split_at_mut(1);
            let start = timings.start();
            let y0 = first[0].step_frame(x)?;
            timings.add(0, start);
            let Some(y0) = y0 else {
                if second[0].step_frame(x)?.is_some() {
                    bail!("{name}: branches out of step (a delay-alignment bug)");
                }
                return Ok(None);
            };
            let start = timings.start();
            let y = second[0].step_frame_residual(x, y0, *act)?;
            timings.add(1, start);
            return match y {
                Some(y) => Ok(Some(y)),
                None => bail!("{name}: branches out of step (a delay-alignment bug)"),
            };
        }
        let mut ys: [Option<FrameRef<'a>>; MAX_BRANCHES] = [None; MAX_BRANCHES];
        for (i, (y, b)) in ys.iter_mut().zip(branches.iter_mut()).enumerate() {
            let start = timings.start();
            *y = b.step_frame(x)?;
            timings.add(i, start);
        }
        let ys = &ys[..n];
        let ready = ys.iter().filter(|o| o.is_some()).count();
        if ready == 0 {
            return Ok(None);
        }
        if ready != ys.len() {
            bail!("{name}: branches out of step (a delay-alignment bug)");
        }
        let ys = ys.iter().map(|y| y.expect("all ready"));
        combine_frames(name, *reduce, *act, ys, out)?;
        Ok(Some(out.as_ref()))
    }

    fn flush_frames(&mut self) -> Result<Vec<Frame>> {
        let outs = self.branches.iter_mut().map(|b| b.flush_frames()).collect::<Result<Vec<_>>>()?;
        let n = outs[0].len();
        if outs.iter().any(|o| o.len() != n) {
            bail!("{}: branches flushed different numbers of outputs", self.name);
        }
        (0..n)
            .map(|i| {
                let mut y = Frame::default();
                combine_frames(&self.name, self.reduce, self.act, outs.iter().map(|o| o[i].as_ref()), &mut y)?;
                Ok(y)
            })
            .collect()
    }

    /// Every branch sees the same copies; their outputs combine as on the last step, or (when each
    /// branch preserves a constant input) as on every step.
    fn prime<'a>(&'a mut self, x: FrameRef<'a>, n: usize) -> Result<Primed<'a>> {
        let Parallel { name, branches, reduce, out, act, .. } = self;
        let k = branches.len();
        let mut primed: [Primed<'a>; MAX_BRANCHES] = [Primed::NONE; MAX_BRANCHES];
        for (p, b) in primed.iter_mut().zip(branches.iter_mut()) {
            *p = b.prime(x, n)?;
        }
        let first = primed[0];
        if primed[..k].iter().any(|p| p.emitted != first.emitted || p.last_step != first.last_step) {
            bail!("{name}: branches out of step (a delay-alignment bug)");
        }
        if first.emitted == 0 || primed[..k].iter().any(|p| p.output.is_none()) {
            return Ok(Primed { output: None, ..first });
        }
        combine_frames(name, *reduce, *act, primed[..k].iter().map(|p| p.output.expect("all emitted")), out)?;
        Ok(Primed { output: Some(out.as_ref()), ..first })
    }

    fn preserves_constant(&self) -> bool {
        self.branches.iter().all(|b| b.preserves_constant())
    }

    fn reset(&mut self) {
        self.branches.iter_mut().for_each(|b| b.reset());
    }

    fn temporal(&self) -> Temporal {
        let ts: Vec<Temporal> = self.branches.iter().map(|b| b.temporal()).collect();
        Temporal {
            receptive_field: ts.iter().map(|t| t.receptive_field).max().unwrap_or(1),
            padding: ts.iter().map(|t| t.padding).max().unwrap_or(0),
            stride: ts[0].stride,
        }
    }

    fn report(&self, input: Chw) -> LayerReport {
        let children: Vec<LayerReport> =
            self.branches.iter().enumerate().map(|(i, b)| LayerReport { step_time: self.timings.get(i), ..b.report(input) }).collect();
        let mut output = children[0].output;
        if self.reduce == Reduce::Concat {
            output.c = children.iter().map(|c| c.output.c).sum();
        }
        LayerReport {
            name: self.name.clone(),
            kind: match self.reduce {
                Reduce::Sum => "parallel sum",
                Reduce::Concat => "parallel concat",
            },
            input,
            output,
            macs_per_output: 0,
            temporal: self.temporal(),
            children,
            ..Default::default()
        }
    }
}

impl Fusion for Parallel {
    fn fuse_activation(&mut self, act: Activation) -> bool {
        self.act = Some(act);
        true
    }
}

/// Branch outputs summed, or concatenated along channels (per pixel, in branch order), into `out`.
pub(super) fn combine_frames<'a>(
    name: &str,
    reduce: Reduce,
    act: Option<Activation>,
    ys: impl Iterator<Item = FrameRef<'a>> + Clone,
    out: &mut Frame,
) -> Result<()> {
    let first = ys.clone().next().expect("at least one branch");
    let (h, w) = (first.shape.h, first.shape.w);
    if ys.clone().any(|y| (y.shape.h, y.shape.w) != (h, w)) {
        bail!("{name}: branch outputs differ in size");
    }
    match reduce {
        Reduce::Sum => {
            if ys.clone().any(|y| y.shape != first.shape) {
                bail!("{name}: summed branches differ in shape");
            }
            out.reshape_for(first.shape);
            let mut rest = ys.clone().skip(1);
            if let (Some(second), None) = (rest.next(), rest.next()) {
                // A residual sum: one pass, the activation applied while the block is in L1, shared
                // by the step's threads.
                let (c, pixels) = (first.shape.c, h * w);
                split_rows(&mut out.data, c, pixels, pass_work(pixels * c, act), |out, rows| {
                    let (a, b) = (&first.data[rows.start * c..rows.end * c], &second.data[rows.start * c..rows.end * c]);
                    for ((o, a), b) in out.chunks_mut(L1_BLOCK).zip(a.chunks(L1_BLOCK)).zip(b.chunks(L1_BLOCK)) {
                        o.iter_mut().zip(a).zip(b).for_each(|((o, &a), &b)| *o = a + b);
                        if let Some(act) = act {
                            act.apply(o);
                        }
                    }
                });
                return Ok(());
            }
            out.data.copy_from_slice(first.data);
            for y in ys.skip(1) {
                out.data.iter_mut().zip(y.data).for_each(|(a, &b)| *a += b);
            }
        }
        Reduce::Concat => {
            let c: usize = ys.clone().map(|y| y.shape.c).sum();
            out.reshape_for(Chw::new(c, h, w));
            let mut offset = 0;
            for y in ys {
                let cy = y.shape.c;
                for (o, px) in out.data.chunks_exact_mut(c).zip(y.data.chunks_exact(cy)) {
                    o[offset..offset + cy].copy_from_slice(px);
                }
                offset += cy;
            }
        }
    }
    if let Some(act) = act {
        act.apply(&mut out.data);
    }
    Ok(())
}
