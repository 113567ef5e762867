//! The streaming classifier every model shares, written once: a backbone of units and a head built
//! by the model file, run frame by frame.
//!
//! It owns the stream plumbing: the frame-size check, the planar → channels-last input frame, the
//! team session, the Split/Pipeline schedule and its relay, priming with the replicate warm-up,
//! draining, reset, the probabilities (softmax per head position, mean over positions, after an
//! optional window of recent logits), the layer report and its MAC count, and the description
//! `coinfer models` prints. A model file gives an [`Architecture`]: what is its own (the regular
//! clip path, the summary line, the checkpoint key map) and a builder filling [`Parts`].

use std::collections::VecDeque;

use anyhow::bail;
use candle_core::Tensor;

use crate::engine::{Chw, Frame, FrameRef, Layer, LayerReport, Relay, Sequential, Temporal, session};
use crate::models::{ModelOptions, ModelSpec, Schedule, StreamModel, StreamShape, WeightSource, softmax_mean};

/// What a model file provides beyond its layers.
pub trait Architecture: Send + Sized + 'static {
    /// Build the registry variant `name` over `weights`, taken by this model's canonical names.
    fn build(name: &str, opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<ContinualClassifier<Self>>;
    /// A checkpoint's tensors seen through this model's canonical names, whatever its published
    /// layout (told from `names`, the checkpoint's tensor names).
    fn checkpoint<'a>(names: &[String], store: &'a mut crate::weights::TensorStore) -> anyhow::Result<Box<dyn WeightSource + 'a>>;
    /// Class probabilities `(classes,)` of the regular network on `clip` `(T, 3, crop, crop)`, over
    /// the same weights as the stream.
    fn forward_clip(model: &ContinualClassifier<Self>, clip: &Tensor) -> anyhow::Result<Tensor>;
    /// Length of the regular network's clip (what a sliding-window baseline re-runs per frame).
    fn clip_frames(&self) -> usize;
    /// One line for `coinfer models`.
    fn summary(model: &ContinualClassifier<Self>) -> String;
}

/// What a model's builder lays out.
pub struct Parts<A> {
    pub spec: ModelSpec,
    pub arch: A,
    /// The units a pipelined step cuts between, in order (stem and blocks). A model with two
    /// pathways makes each unit one joint stage of both (its laterals inside).
    pub backbone: Sequential,
    /// Backbone features to logits `(classes, H, W)`.
    pub head: Sequential,
    /// Emitted logits averaged before the softmax (the newest `n`); `None`: each output alone.
    pub logit_window: Option<usize>,
    /// Whether the two-stage pipeline is offered ([`Schedule::Pipeline`]); else Split only.
    pub pipeline: bool,
}

/// A continual network classifying a stream, one frame per step, over the layers of a model file.
pub struct ContinualClassifier<A> {
    pub(super) spec: ModelSpec,
    pub(super) arch: A,
    pub(super) backbone: Sequential,
    pub(super) head: Sequential,
    pub(super) window: Option<LogitWindow>,
    /// The step input, channels-last.
    input: Frame,
    schedule: Schedule,
    /// The two-stage pipeline over the backbone's units and the head (kept across switches: it
    /// holds the measured balance); `None` where the model offers no pipeline.
    relay: Option<Relay>,
}

impl<A: Architecture> ContinualClassifier<A> {
    pub fn from_parts(parts: Parts<A>) -> anyhow::Result<Self> {
        let Parts { spec, arch, backbone, head, logit_window, pipeline } = parts;
        let relay = if pipeline {
            // The first cut balances multiply-accumulates; measured times take over.
            let b = backbone.report(Chw::new(3, spec.crop, spec.crop));
            let mut estimate: Vec<f64> = b.children.iter().map(crate::flops::macs_per_step).collect();
            estimate.push(crate::flops::macs_per_step(&head.report(b.output)));
            let mut relay = Relay::new(&estimate);
            relay.reserve(b.children.iter().map(|r| r.output.numel()).max().unwrap_or(0));
            Some(relay)
        } else {
            None
        };
        let window = match logit_window {
            Some(0) => bail!("the head window must be at least one position"),
            Some(n) => Some(LogitWindow::new(n)),
            None => None,
        };
        Ok(ContinualClassifier { spec, arch, backbone, head, window, input: Frame::default(), schedule: Schedule::Split, relay })
    }

    /// The model file's own part (its config and clip-path layers).
    pub fn arch(&self) -> &A {
        &self.arch
    }

    /// The backbone that streams (its units are what a pipelined step cuts between).
    pub fn backbone_layers(&self) -> &Sequential {
        &self.backbone
    }

    /// Backbone features to logits.
    pub fn head(&self) -> &dyn Layer {
        &self.head
    }

    /// Temporal shape of the whole continual network (backbone then head).
    pub fn temporal(&self) -> Temporal {
        self.backbone.temporal().then(self.head.temporal())
    }

    /// Temporal shape of the outputs: the network, then the logit window if any. The window averages
    /// the newest `n` positions that exist, so an output reads `n − 1` positions further back while
    /// the first output still comes on the first position: a window of `n` with `n − 1` positions of
    /// start padding, adding `(n − 1)·stride` to the receptive field and nothing to the delay
    /// (docs/continual.md, "Temporal shape").
    pub fn output_temporal(&self) -> Temporal {
        let net = self.temporal();
        match &self.window {
            Some(w) => net.then(Temporal { receptive_field: w.len, padding: w.len - 1, stride: 1 }),
            None => net,
        }
    }

    /// Shapes and multiply-accumulates of one step, layer by layer.
    pub fn report(&self) -> LayerReport {
        let input = Chw::new(3, self.spec.crop, self.spec.crop);
        let b = self.backbone.report(input);
        let h = self.head.report(b.output);
        LayerReport {
            name: self.spec.name.clone(),
            kind: "sequential",
            input,
            output: h.output,
            temporal: self.temporal(),
            children: vec![b, h],
            ..Default::default()
        }
    }

    /// Multiply-accumulates per input frame in steady state (see [`crate::flops::macs_per_step`]).
    pub fn macs_per_step(&self) -> f64 {
        crate::flops::macs_per_step(&self.report())
    }

    /// [`StreamModel::step_planar`] on a `(3, S, S)` tensor; the probabilities `(classes,)` when emitted.
    pub fn step(&mut self, frame: &Tensor) -> anyhow::Result<Option<Tensor>> {
        StreamModel::step(self, frame)
    }

    /// End of a finite stream (after the output in flight is drained): every layer processes its end
    /// padding; the logits `(classes, H, W)` of the outputs this completes, in order (each one joins
    /// the logit window). Call `reset` before streaming again.
    pub fn flush_logit_frames(&mut self) -> anyhow::Result<Vec<Frame>> {
        let mut logits = Vec::new();
        for feat in self.backbone.flush_frames()? {
            if let Some(y) = self.head.step_frame(feat.as_ref())? {
                logits.push(y.to_frame());
            }
        }
        logits.extend(self.head.flush_frames()?);
        if let Some(window) = &mut self.window {
            logits.iter().for_each(|l| window.push(&l.data));
        }
        Ok(logits)
    }

    fn step_in_session(&mut self, frame: &[f32], probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        let s = self.spec.crop;
        if frame.len() != 3 * s * s {
            bail!("{}: a frame must be (3, {s}, {s}), got {} values", self.spec.name, frame.len());
        }
        if let (Schedule::Pipeline, Some(relay)) = (self.schedule, &mut self.relay) {
            let (input, head, window) = (&mut self.input, &mut self.head, &mut self.window);
            let mut emit = |feat: FrameRef<'_>| classify(head, window, feat, probs);
            // The frame's conversion runs on the first stage's thread, beside the second stage.
            return match relay.step(self.backbone.units_mut()?, move || channels_last(input, frame, s), &mut emit) {
                Ok(out) => Ok(out),
                Err(e) => {
                    // A stage failed half-way: the stream state is inconsistent.
                    self.reset_stream();
                    Err(e.into())
                }
            };
        }
        let x = channels_last(&mut self.input, frame, s)?;
        let Some(feat) = self.backbone.step_frame(x)? else { return Ok(false) };
        Ok(classify(&mut self.head, &mut self.window, feat, probs)?)
    }

    fn prime_in_session(&mut self, frame: &[f32], n: usize, probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        let s = self.spec.crop;
        if n == 0 {
            return Ok(false);
        }
        // A warm-up starts a stream: nothing of an earlier one stays in flight.
        if let Some(relay) = &mut self.relay {
            relay.reset();
        }
        // Outputs differ during the warm-up (a zero-filled start): step them all.
        if !self.backbone.preserves_constant() || !self.head.preserves_constant() {
            let mut out = false;
            for _ in 0..n {
                out = self.step_planar(frame, probs)?;
            }
            return Ok(out);
        }
        if frame.len() != 3 * s * s {
            bail!("{}: a frame must be (3, {s}, {s}), got {} values", self.spec.name, frame.len());
        }
        // Each layer once, on copies (docs/continual.md, "Warm-up in closed form").
        let x = channels_last(&mut self.input, frame, s)?;
        let features = self.backbone.prime(x, n)?;
        let Some(feat) = features.output.filter(|_| features.emitted > 0) else { return Ok(false) };
        let head = self.head.prime(feat, features.emitted)?;
        let Some(logits) = head.output.filter(|_| head.emitted > 0) else { return Ok(false) };
        let last_step = features.last_step && head.last_step;
        match &mut self.window {
            None if last_step => softmax_mean(logits.data, logits.shape.c, probs),
            None => {}
            Some(window) => {
                // The window holds the newest of the equal logits emitted.
                for _ in 0..head.emitted.min(window.len) {
                    window.push(logits.data);
                }
                if last_step {
                    softmax_mean(window.mean(), logits.shape.c, probs);
                }
            }
        }
        Ok(last_step)
    }

    fn reset_stream(&mut self) {
        if let Some(relay) = &mut self.relay {
            relay.reset();
        }
        self.backbone.reset();
        self.head.reset();
        if let Some(window) = &mut self.window {
            window.clear();
        }
    }
}

/// The head on a backbone output; on an output, the class probabilities into `probs` (softmax per
/// head position, then mean; after the mean over the logit window, if any) and true.
fn classify(
    head: &mut Sequential,
    window: &mut Option<LogitWindow>,
    feat: FrameRef<'_>,
    probs: &mut Vec<f32>,
) -> candle_core::Result<bool> {
    let Some(logits) = head.step_frame(feat)? else { return Ok(false) };
    match window {
        None => softmax_mean(logits.data, logits.shape.c, probs),
        Some(window) => {
            window.push(logits.data);
            softmax_mean(window.mean(), logits.shape.c, probs);
        }
    }
    Ok(true)
}

/// A planar `(3, s, s)` frame as the network's channels-last input.
fn channels_last<'x>(input: &'x mut Frame, frame: &[f32], s: usize) -> candle_core::Result<FrameRef<'x>> {
    input.set_planar(frame, Chw::new(3, s, s))?;
    Ok(input.as_ref())
}

/// The logits of the newest emitted outputs, for a mean over them before the softmax.
pub(super) struct LogitWindow {
    /// Oldest first; rows are reused once the window is full.
    rows: VecDeque<Vec<f32>>,
    len: usize,
    mean: Vec<f32>,
}

impl LogitWindow {
    fn new(len: usize) -> Self {
        LogitWindow { rows: VecDeque::with_capacity(len), len, mean: Vec::new() }
    }

    pub(super) fn push(&mut self, logits: &[f32]) {
        let mut row = match self.rows.len() == self.len {
            true => self.rows.pop_front().expect("the window is full"),
            false => Vec::with_capacity(logits.len()),
        };
        row.clear();
        row.extend_from_slice(logits);
        self.rows.push_back(row);
    }

    /// Mean of the rows held (fewer than the window while the stream is younger); empty before the first.
    pub(super) fn mean(&mut self) -> &[f32] {
        let Some(first) = self.rows.front() else { return &[] };
        self.mean.clear();
        self.mean.resize(first.len(), 0.0);
        for row in &self.rows {
            self.mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v);
        }
        let inv = 1.0 / self.rows.len() as f32;
        self.mean.iter_mut().for_each(|m| *m *= inv);
        &self.mean
    }

    fn clear(&mut self) {
        self.rows.clear();
    }
}

impl<A: Architecture> StreamModel for ContinualClassifier<A> {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn shape(&self) -> StreamShape {
        StreamShape { lag: (self.schedule == Schedule::Pipeline) as usize, ..self.output_temporal().into() }
    }

    fn step_planar(&mut self, frame: &[f32], probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        session(|| self.step_in_session(frame, probs))
    }

    /// Each layer sees its copies once where the network allows (see `Layer::prime`).
    fn prime(&mut self, frame: &[f32], n: usize, probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        session(|| self.prime_in_session(frame, n, probs))
    }

    fn reset(&mut self) {
        self.reset_stream()
    }

    fn set_schedule(&mut self, schedule: Schedule) -> anyhow::Result<()> {
        let Some(relay) = &self.relay else { return Ok(()) };
        if relay.in_flight() {
            bail!("{}: the schedule changes only between streams (drain or reset first)", self.spec.name);
        }
        self.schedule = schedule;
        Ok(())
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }

    fn drain(&mut self, probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        let Some(relay) = &mut self.relay else { return Ok(false) };
        let (head, window) = (&mut self.head, &mut self.window);
        let mut emit = |feat: FrameRef<'_>| classify(head, window, feat, probs);
        let units = self.backbone.units_mut()?;
        Ok(session(|| relay.drain(units, &mut emit))?)
    }

    fn forward_clip(&self, clip: &Tensor) -> anyhow::Result<Tensor> {
        A::forward_clip(self, clip)
    }

    fn clip_frames(&self) -> usize {
        self.arch.clip_frames()
    }

    fn report(&self) -> LayerReport {
        ContinualClassifier::report(self)
    }
}

/// What `coinfer models` shows of a model, from the network laid out over zero weights.
pub struct Outline {
    pub spec: ModelSpec,
    pub shape: StreamShape,
    pub macs_per_step: f64,
    pub summary: String,
}

/// Builds a registry variant over weights taken by the model's canonical names.
pub type BuildFn = fn(&str, &ModelOptions, &mut dyn WeightSource) -> anyhow::Result<Box<dyn StreamModel>>;
/// A checkpoint store seen through the model's canonical names (its key map).
pub type CheckpointFn = for<'a> fn(&[String], &'a mut crate::weights::TensorStore) -> anyhow::Result<Box<dyn WeightSource + 'a>>;

/// A model file's entry points, for the registry.
pub struct Family {
    pub build: BuildFn,
    /// The network laid out over zeros (and the shapes `weights` tells, if any).
    pub outline: fn(&str, &ModelOptions, &mut dyn WeightSource) -> anyhow::Result<Outline>,
    pub checkpoint: CheckpointFn,
}

impl Family {
    /// The entry points of architecture `A`.
    pub const fn of<A: Architecture>() -> Family {
        Family { build: build_boxed::<A>, outline: outline::<A>, checkpoint: A::checkpoint }
    }
}

fn build_boxed<A: Architecture>(name: &str, opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<Box<dyn StreamModel>> {
    Ok(Box::new(A::build(name, opts, weights)?))
}

fn outline<A: Architecture>(name: &str, opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<Outline> {
    let model = A::build(name, opts, weights)?;
    Ok(Outline { spec: model.spec.clone(), shape: model.shape(), macs_per_step: model.macs_per_step(), summary: A::summary(&model) })
}
