//! FLOP and MAC counting by walking the layers the engine runs (no table of numbers): one walk over
//! a layer tree ([`leaves`]) serves the FLOP table, a model's MACs per step and the MACs of one step.
//!
//! Two conventions (docs/performance.md, "Counting operations"):
//! - `Macs`: true multiply-accumulates, every layer counted once (convolutions and linear layers).
//! - `Paper`: the ptflops rules behind the published CoX3D/X3D numbers: conv/linear MACs plus biases,
//!   2 per element for BatchNorm, 1 per element for ReLU, 1 per input element for pooling. Its
//!   continual per-step figure also reproduces the tooling's artefacts (every BN and ReLU counted
//!   twice in step mode, the channel-dim `co.Linear` head counted as `in·1 + 1`), flagged as such.

use crate::engine::{Chw, LayerReport, PadMode, Temporal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    Macs,
    Paper,
}

/// One leaf layer's share.
#[derive(Debug, Clone)]
pub struct LayerCost {
    pub name: String,
    pub kind: &'static str,
    pub output: Chw,
    /// Output frames of this layer for one regular clip.
    pub clip_frames_out: usize,
    /// Operations of this layer in one regular clip.
    pub regular_clip: f64,
    /// Operations of this layer per input step of the continual network, averaged over a stride period.
    pub continual_per_step: f64,
}

#[derive(Debug, Clone)]
pub struct Totals {
    pub convention: Convention,
    pub clip_frames: usize,
    pub regular_clip: f64,
    /// A regular network run on a sliding window pays the whole clip again for every new frame.
    pub regular_per_frame: f64,
    /// Continual cost per input step, averaged over one period of the network's temporal stride.
    pub continual_per_step: f64,
    /// The busiest step of that period (all strided levels firing together).
    pub continual_peak_step: f64,
    /// Paper convention only: the per-step figure with the published tooling's artefacts.
    pub continual_per_step_published: Option<f64>,
    pub layers: Vec<LayerCost>,
}

impl Totals {
    pub fn ratio(&self) -> f64 {
        self.regular_per_frame / self.continual_per_step
    }
}

/// A layer that computes (a leaf of a layer tree), where it sits in the network.
pub struct Leaf<'a> {
    pub report: &'a LayerReport,
    /// Names from the root down, `/`-separated.
    pub path: String,
    /// Composite temporal shape from the network input to this layer's input: its inputs arrive on
    /// steps `upstream.delay() + i·upstream.stride` (docs/continual.md, "Temporal shape").
    pub upstream: Temporal,
    /// Frames into and out of this layer in a regular clip of the length given to [`leaves`].
    pub frames_in: usize,
    pub frames_out: usize,
}

/// The leaves of `report` in execution order; a sequential container composes its children, a
/// parallel one feeds each the same input.
pub fn leaves(report: &LayerReport, clip_frames: usize) -> Vec<Leaf<'_>> {
    let mut out = Vec::new();
    collect(report, "", Temporal::POINTWISE, clip_frames, &mut out);
    out
}

fn collect<'a>(r: &'a LayerReport, prefix: &str, upstream: Temporal, frames: usize, out: &mut Vec<Leaf<'a>>) -> usize {
    let path = if prefix.is_empty() { r.name.clone() } else { format!("{prefix}/{}", r.name) };
    match r.kind {
        "sequential" => {
            let (mut up, mut n) = (upstream, frames);
            for c in &r.children {
                n = collect(c, &path, up, n, out);
                up = up.then(c.temporal);
            }
            n
        }
        "graph" => {
            // Each child is a `graph node`: its `temporal` is the shape from the graph input to the
            // node's input, its one child the node's own report. In a regular clip the node's input
            // has one frame per stride (same-padded layers); the output node comes last
            // (docs/engine.md, "Layer graphs").
            let mut n_out = frames;
            for node in &r.children {
                let from = node.temporal;
                for c in &node.children {
                    n_out = collect(c, &path, upstream.then(from), frames.div_ceil(from.stride), out);
                }
            }
            n_out
        }
        "parallel sum" | "parallel concat" => {
            let mut n_out = frames;
            for (i, c) in r.children.iter().enumerate() {
                let n = collect(c, &path, upstream, frames, out);
                if i == 0 {
                    n_out = n;
                }
            }
            n_out
        }
        _ => {
            let frames_out = match r.pad {
                Some(pad) => {
                    let (k, s) = (r.temporal.receptive_field, r.temporal.stride);
                    let (b, a) = pad.clip_pads(frames, k, s, PadMode::Full);
                    (frames + b + a).saturating_sub(k) / s + 1
                }
                None => frames,
            };
            out.push(Leaf { report: r, path, upstream, frames_in: frames, frames_out });
            frames_out
        }
    }
}

/// Multiply-accumulates per input frame in steady state, averaged over a stride period: each layer
/// computes each output once (continual convs skip taps into the virtual past and compute every
/// other tap exactly once; docs/continual.md, "Pending sums").
pub fn macs_per_step(report: &LayerReport) -> f64 {
    leaves(report, 0).iter().map(|l| l.report.macs_per_output as f64 / (l.upstream.stride * l.report.temporal.stride) as f64).sum()
}

/// Multiply-accumulates the continual network performs on step `t` of a fresh stream (taps of
/// outputs that will be emitted, i.e. output index ≥ 0; flushes not included).
pub fn macs_at_step(report: &LayerReport, t: usize) -> u64 {
    let mut total = 0u64;
    for leaf in leaves(report, 0) {
        let (r, stride, delay) = (leaf.report, leaf.upstream.stride, leaf.upstream.delay());
        if r.macs_per_output == 0 || t < delay || !(t - delay).is_multiple_of(stride) {
            continue;
        }
        let i = ((t - delay) / stride) as i64;
        let (k, s, p) = (r.temporal.receptive_field as i64, r.temporal.stride as i64, r.temporal.padding as i64);
        // Outputs j with j·s − p ≤ i ≤ j·s − p + k − 1, j ≥ 0.
        let hi = (i + p).div_euclid(s);
        let lo = (i + p - k + 1 + s - 1).div_euclid(s).max(0);
        let taps = (hi - lo + 1).max(0) as u64;
        total += taps * r.macs_per_output / k as u64;
    }
    total
}

/// Operations of one leaf: `(per emitted output, per arriving input frame)`.
fn leaf_ops(r: &LayerReport, conv: Convention, artefacts: bool) -> (f64, f64) {
    let out = r.output.numel() as f64;
    let paper = conv == Convention::Paper;
    let twice = if artefacts { 2.0 } else { 1.0 };
    match r.kind {
        "conv" | "conv 1-tap" => {
            let mut per_out = r.macs_per_output as f64;
            if paper {
                if r.bias {
                    per_out += r.output.c as f64 * (r.output.h * r.output.w) as f64;
                }
                if r.bn {
                    per_out += 2.0 * out * twice;
                }
                if artefacts && r.name.ends_with("projection") {
                    // ptflops reads the last output dim (1) of the channel-dim linear as out_features.
                    per_out = r.input.c as f64 + 1.0;
                }
            }
            (per_out, 0.0)
        }
        "relu" if paper => (out * twice, 0.0),
        "max pool" | "avg pool" | "spatial pool" if paper => (0.0, r.input.numel() as f64),
        "squeeze-excite" => {
            let fc = r.macs_per_output as f64;
            if !paper {
                return (fc, 0.0);
            }
            let hidden = fc / (2.0 * r.input.c as f64);
            // Spatial mean, both FC biases, the hidden ReLU.
            (fc + r.input.numel() as f64 + hidden + r.input.c as f64 + hidden, 0.0)
        }
        _ => (0.0, 0.0),
    }
}

/// Count a network described by `report` for a regular clip of `clip_frames` frames.
pub fn count(report: &LayerReport, clip_frames: usize, conv: Convention) -> Totals {
    let leaves = leaves(report, clip_frames);
    let net = report.temporal;
    let period = net.stride.max(1);
    let mut layers = Vec::new();
    let (mut regular, mut continual, mut published) = (0.0, 0.0, 0.0);
    let mut per_step = vec![0.0; period];
    for leaf in &leaves {
        let r = leaf.report;
        let (per_out, per_in) = leaf_ops(r, conv, false);
        // Regular clip: a clip-wise SE runs its FCs once per clip.
        let outputs = if r.kind == "squeeze-excite" { 1.0 } else { leaf.frames_out as f64 };
        let mut clip_ops = per_out * outputs + per_in * leaf.frames_in as f64;
        if r.kind == "squeeze-excite" && conv == Convention::Paper {
            // ...but its statistics pool reads every frame of the clip.
            clip_ops += r.input.numel() as f64 * (leaf.frames_in as f64 - 1.0);
        }
        let c_in = leaf.upstream.stride as f64;
        let s = r.temporal.stride as f64;
        let step_ops = per_out / (c_in * s) + per_in / c_in;
        if conv == Convention::Paper {
            let (po, pi) = leaf_ops(r, conv, true);
            published += po / (c_in * s) + pi / c_in;
        }
        regular += clip_ops;
        continual += step_ops;
        schedule(leaf, per_out, per_in, &mut per_step);
        layers.push(LayerCost {
            name: leaf.path.clone(),
            kind: r.kind,
            output: r.output,
            clip_frames_out: leaf.frames_out,
            regular_clip: clip_ops,
            continual_per_step: step_ops,
        });
    }
    Totals {
        convention: conv,
        clip_frames,
        regular_clip: regular,
        regular_per_frame: regular,
        continual_per_step: continual,
        continual_peak_step: per_step.iter().copied().fold(0.0, f64::max),
        continual_per_step_published: (conv == Convention::Paper).then_some(published),
        layers,
    }
}

/// Add a leaf's work to the steps of one steady-state stride period where it happens.
/// Inputs reach the leaf on steps `t ≡ d_up (mod c)`; a window op computes, for input `i`, one tap per
/// pending output it feeds (taps of outputs in the virtual past or discarded by the stride are skipped).
fn schedule(leaf: &Leaf, per_out: f64, per_in: f64, per_step: &mut [f64]) {
    let r = leaf.report;
    let period = per_step.len();
    let c = leaf.upstream.stride;
    let d_up = leaf.upstream.delay();
    let (k, s, p_b) = (r.temporal.receptive_field, r.temporal.stride, r.temporal.padding);
    let is_window = matches!(r.kind, "conv" | "conv 1-tap");
    // Start far enough in that every layer is in steady state.
    let t0 = (leaf.upstream.receptive_field + k * c + period) * period;
    for (phase, slot) in per_step.iter_mut().enumerate() {
        let t = t0 + phase;
        if t < d_up || !(t - d_up).is_multiple_of(c) {
            continue;
        }
        let i = ((t - d_up) / c) as i64;
        *slot += per_in;
        if is_window {
            let taps = (0..)
                .map(|j: i64| j)
                .take_while(|&j| j * s as i64 - p_b as i64 <= i)
                .filter(|&j| i < j * s as i64 - p_b as i64 + k as i64)
                .count();
            *slot += per_out / k as f64 * taps as f64;
        } else {
            let d = k - 1 - p_b;
            if i >= d as i64 && (i - d as i64) % s as i64 == 0 {
                *slot += per_out;
            }
        }
    }
}
