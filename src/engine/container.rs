//! Composition: layers in sequence, and parallel branches aligned by delay and then reduced
//! (a residual block is `Parallel([shortcut, main], Sum)`; an Inception module is `Parallel(.., Concat)`).
//! Temporal shape of a composition is computed from its parts, never declared.

use candle_core::{Result, Tensor, bail};

use super::delay::Delay;
use super::{Chw, Layer, LayerReport, PadMode, Temporal};

pub struct Sequential {
    name: String,
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    pub fn new(name: impl Into<String>, layers: Vec<Box<dyn Layer>>) -> Self {
        Sequential { name: name.into(), layers }
    }

    pub fn push(&mut self, layer: impl Layer + 'static) {
        self.layers.push(Box::new(layer));
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
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

    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        let mut y = x.clone();
        for layer in &mut self.layers {
            match layer.step(&y)? {
                Some(next) => y = next,
                // Later layers are not stepped: they see nothing this step.
                None => return Ok(None),
            }
        }
        Ok(Some(y))
    }

    /// Each layer in order first takes what the layers before it flushed, then flushes itself.
    fn flush(&mut self) -> Result<Vec<Tensor>> {
        let mut pending: Vec<Tensor> = Vec::new();
        for layer in &mut self.layers {
            let mut next = Vec::new();
            for x in &pending {
                if let Some(y) = layer.step(x)? {
                    next.push(y);
                }
            }
            next.extend(layer.flush()?);
            pending = next;
        }
        Ok(pending)
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
            .map(|l| {
                let r = l.report(shape);
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
}

impl Parallel {
    /// Branches must share the temporal stride; each branch with a smaller delay than the slowest
    /// gets a `Delay` on its output so that all branches emit the same output on the same step.
    pub fn new(name: impl Into<String>, branches: Vec<Box<dyn Layer>>, reduce: Reduce) -> Result<Self> {
        let name = name.into();
        let Some(first) = branches.first() else { bail!("{name}: no branches") };
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
        Ok(Parallel { name, branches, reduce })
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

    fn step(&mut self, x: &Tensor) -> Result<Option<Tensor>> {
        let outs = self.branches.iter_mut().map(|b| b.step(x)).collect::<Result<Vec<_>>>()?;
        let ready = outs.iter().filter(|o| o.is_some()).count();
        if ready == 0 {
            return Ok(None);
        }
        if ready != outs.len() {
            bail!("{}: branches out of step (a delay-alignment bug)", self.name);
        }
        let ys: Vec<Tensor> = outs.into_iter().flatten().collect();
        self.combine(&ys).map(Some)
    }

    fn flush(&mut self) -> Result<Vec<Tensor>> {
        let outs = self.branches.iter_mut().map(|b| b.flush()).collect::<Result<Vec<_>>>()?;
        let n = outs[0].len();
        if outs.iter().any(|o| o.len() != n) {
            bail!("{}: branches flushed different numbers of outputs", self.name);
        }
        (0..n)
            .map(|i| {
                let ys: Vec<Tensor> = outs.iter().map(|o| o[i].clone()).collect();
                self.combine(&ys)
            })
            .collect()
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
        let children: Vec<LayerReport> = self.branches.iter().map(|b| b.report(input)).collect();
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
