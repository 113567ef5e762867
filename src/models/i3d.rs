//! DeepMind I3D (Inception-v1, RGB, Kinetics-400) in regular and continual form (CoI3D),
//! built from the continual engine (docs/models.md, "I3D").
//!
//! One set of layers serves both forms: `forward_logits` runs a clip with TensorFlow 'SAME' padding
//! (the reference model, `PadMode::Full`) or the clip oracles `StartOnly`, `Valid` (docs/continual.md,
//! "Equivalence");
//! `step_logits` feeds one frame and returns the logits of a temporal position every 8 frames, from
//! step 62 on. The streaming model averages the logits of the last `pool` positions before the softmax.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};

use super::classifier::{Architecture, ContinualClassifier, Parts};
use super::{Fill, ModelOptions, ModelSpec, Normalize, StreamModel, WeightSource};
use crate::engine::{
    Frame, Layer, Pad2d, PadMode, Parallel, Pointwise, PoolKind, Reduce, Sequential, SpatialPool, TemporalConv, TemporalPad, TemporalPool,
    tf_same_pads,
};
use crate::error::{ErrorKind, classified};
use crate::weights::BatchNorm;

/// Registry name.
pub const NAME: &str = "i3d";
/// The bundled checkpoint, relative to the crate root (or to `COINFER_WEIGHTS_DIR`'s parent layout,
/// see [`default_weights`]).
pub const DEFAULT_WEIGHTS: &str = "weights/i3d-kinetics400-rgb.safetensors";
/// Directory that overrides where the bundled weights are looked for.
pub const WEIGHTS_DIR_ENV: &str = "COINFER_WEIGHTS_DIR";
/// Side of the square input the checkpoint was trained on; the head's 7×7 pool needs it (docs/models.md, "I3D").
pub const CROP: usize = 224;
/// Classes of the published checkpoint; a fine-tuned one brings its own count (docs/models.md, "Your own classes").
pub const NUM_CLASSES: usize = 400;
/// Default head window in emitted positions. Positions come every 8 frames, so 3 positions turn over
/// completely within 24 frames (0.96 s at 25 fps): a live label follows a change of action within about
/// a second, while still smoothing over three positions (as many as a regular 32-frame clip averages).
/// `--pool 7` gives the span of a regular 64-frame clip.
pub const DEFAULT_POOL: usize = 3;
/// Longest head window, in positions: 1024 positions span 8283 frames (5.5 minutes at 25 fps); the
/// window's logits stay 1.6 MB (docs/models.md, "I3D").
pub use crate::models::MAX_POOL;
/// BatchNorm epsilon of Sonnet v1.
const BN_EPS: f64 = 1e-3;
/// Shortest clip with one logit position (docs/models.md, "I3D").
pub const MIN_CLIP: usize = 9;

/// Endpoint names of the regular network in order (TF names); each is one stage of [`CoI3d`]'s network.
pub const ENDPOINTS: [&str; 17] = [
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
];

/// Inception module channels `(c0, c1a, c1b, c2a, c2b, c3)` (docs/models.md, "I3D").
const MIXED: [(&str, [usize; 6]); 9] = [
    ("Mixed_3b", [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", [128, 128, 192, 32, 96, 64]),
    ("Mixed_4b", [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", [256, 160, 320, 32, 128, 128]),
    ("Mixed_5b", [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", [384, 192, 384, 48, 128, 128]),
];

/// Where the bundled weights are: `$COINFER_WEIGHTS_DIR/<file>` if that variable is set; else the first
/// existing of `<exe dir>/weights/<file>` (an unpacked release), `<exe dir>/../share/coinfer/weights/<file>`
/// (an installed prefix) and the crate's own `weights/<file>` (a path fixed at compile time: what
/// `cargo run` and `cargo install --path .` find); the compile-time path if none exists.
pub fn default_weights() -> PathBuf {
    let file = Path::new(DEFAULT_WEIGHTS).file_name().expect("a file name");
    if let Some(dir) = std::env::var_os(WEIGHTS_DIR_ENV) {
        return Path::new(&dir).join(file);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_WEIGHTS);
    let mut candidates = Vec::new();
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        candidates.push(exe_dir.join(DEFAULT_WEIGHTS));
        candidates.push(exe_dir.join("../share/coinfer").join(DEFAULT_WEIGHTS));
    }
    candidates.push(built.clone());
    candidates.into_iter().find(|p| p.is_file()).unwrap_or(built)
}

/// What the preprocessing needs (docs/models.md, "Preprocessing").
pub fn spec() -> ModelSpec {
    ModelSpec {
        name: NAME.to_string(),
        fps: 25.0,
        resize_short: 256,
        crop: CROP,
        normalize: Normalize::SignedUnit,
        num_classes: NUM_CLASSES,
    }
}

fn pool_window(opts: &ModelOptions) -> anyhow::Result<usize> {
    match opts.pool {
        None => Ok(DEFAULT_POOL),
        Some(n) if (1..=MAX_POOL).contains(&n) => Ok(n),
        Some(n) => Err(classified(ErrorKind::Usage, format!("--pool {n} is out of range for {NAME}: 1 to {MAX_POOL} positions"))),
    }
}

/// Build the continual model over `weights` (the names of the bundled checkpoint; docs/models.md, "I3D").
pub fn build(opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<CoI3d> {
    let pool = pool_window(opts)?;
    CoI3d::new(weights, &I3dConfig { size: CROP, pool, fill: opts.fill })
}

/// Open the checkpoint `opts` selects (the bundled one by default) and build the model from it;
/// every tensor of the file must be used.
pub fn load(opts: &ModelOptions) -> anyhow::Result<CoI3d> {
    super::load_with(NAME, opts, <I3d as Architecture>::build)
}

/// Network geometry and head options.
#[derive(Debug, Clone, Copy)]
pub struct I3dConfig {
    /// Side of the square input frames. 224 for the checkpoint; other sizes (multiples of 32 work
    /// best) give the same network with TF 'SAME' pads for that size and a head pool over the whole
    /// final map, which makes the shape-independent statements testable on small frames.
    pub size: usize,
    /// Head window in emitted positions (≥ 1).
    pub pool: usize,
    pub fill: Fill,
}

impl Default for I3dConfig {
    fn default() -> Self {
        I3dConfig { size: CROP, pool: DEFAULT_POOL, fill: Fill::Zeros }
    }
}

/// I3D: the regular clip network and its continual stream over the same folded weights, in the
/// shared streaming classifier (backbone: the stages up to `Mixed_5c`; head: `Logits`).
pub type CoI3d = ContinualClassifier<I3d>;

/// What is I3D's own in a [`CoI3d`].
pub struct I3d {
    config: I3dConfig,
}

impl CoI3d {
    pub fn new(weights: &mut dyn WeightSource, config: &I3dConfig) -> anyhow::Result<Self> {
        if !(1..=MAX_POOL).contains(&config.pool) {
            bail!("the head window must be 1 to {MAX_POOL} positions, got {}", config.pool);
        }
        if config.size < 32 {
            bail!("I3D needs frames of at least 32×32, got {}", config.size);
        }
        let classes = crate::models::head_classes(weights, "Logits.Conv3d_0c_1x1.conv.weight", NUM_CLASSES)?;
        let (backbone, head) = Builder { weights, fill: config.fill, classes }.network(config.size)?;
        let mut spec = spec();
        spec.crop = config.size;
        spec.num_classes = classes;
        let arch = I3d { config: *config };
        // Positions come every 8 frames: the head window averages the logits of the last `pool`.
        ContinualClassifier::from_parts(Parts { spec, arch, backbone, head, logit_window: Some(config.pool), pipeline: false })
    }

    pub fn config(&self) -> &I3dConfig {
        &self.arch.config
    }

    fn check_clip(&self, clip: &Tensor) -> anyhow::Result<usize> {
        let s = self.config().size;
        match clip.dims() {
            &[t, 3, h, w] if h == s && w == s => Ok(t),
            d => Err(classified(ErrorKind::Data, format!("I3D expects a clip of shape (T, 3, {s}, {s}), got {d:?}"))),
        }
    }

    /// Outputs of every stage (the TF endpoints of [`ENDPOINTS`], each `(T_e, C, H, W)`; `Logits` is the
    /// per-position classifier output `(P, classes, 1, 1)`).
    pub fn forward_endpoints(&self, clip: &Tensor, mode: PadMode) -> anyhow::Result<Vec<(&'static str, Tensor)>> {
        let t = self.check_clip(clip)?;
        if t < MIN_CLIP && mode != PadMode::Valid {
            return Err(classified(ErrorKind::Data, format!("I3D needs a clip of at least {MIN_CLIP} frames, got {t}")));
        }
        let mut x = clip.to_dtype(DType::F32)?.contiguous()?;
        let mut out = Vec::with_capacity(ENDPOINTS.len());
        let stages = self.backbone_layers().layers().iter().map(|l| l.as_ref()).chain([self.head()]);
        for (name, layer) in ENDPOINTS.iter().zip(stages) {
            x = layer.forward(&x, mode).with_context(|| format!("I3D {name} on a clip of {t} frames"))?;
            out.push((*name, x.clone()));
        }
        Ok(out)
    }

    /// Per-position logits `(P, classes)` of a clip `(T, 3, size, size)`; `PadMode::Full` is the regular
    /// (reference) model, P = ⌈⌈⌈T/2⌉/2⌉/2⌉ − 1.
    pub fn forward_logits(&self, clip: &Tensor, mode: PadMode) -> anyhow::Result<Tensor> {
        let (_, logits) = self.forward_endpoints(clip, mode)?.pop().expect("17 stages");
        let p = logits.dim(0)?;
        Ok(logits.reshape((p, self.spec.num_classes))?)
    }

    /// The regular model's output: logits averaged over positions `(classes,)` (softmax comes after).
    pub fn forward_mean(&self, clip: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.forward_logits(clip, PadMode::Full)?.mean(0)?)
    }

    fn as_frame(&self, frame: &Tensor) -> anyhow::Result<Tensor> {
        let s = self.config().size;
        let f = match frame.dims() {
            &[3, h, w] if h == s && w == s => frame.unsqueeze(0)?,
            &[1, 3, h, w] if h == s && w == s => frame.clone(),
            d => bail!("I3D expects a frame of shape (3, {s}, {s}), got {d:?}"),
        };
        Ok(f.to_dtype(DType::F32)?.contiguous()?)
    }

    /// Feed one frame `(3, size, size)` (or `(1, 3, size, size)`); the logits `(classes,)` of the temporal
    /// position this step completes, on steps 62 + 8l (they join the head window).
    pub fn step_logits(&mut self, frame: &Tensor) -> anyhow::Result<Option<Tensor>> {
        let x = Frame::from_tensor(&self.as_frame(frame)?)?;
        let Some(feat) = self.backbone.step_frame(x.as_ref())? else { return Ok(None) };
        let Some(y) = self.head.step_frame(feat)? else { return Ok(None) };
        let logits = y.data.to_vec();
        if let Some(window) = &mut self.window {
            window.push(&logits);
        }
        Ok(Some(Tensor::from_vec(logits, self.spec.num_classes, &Device::Cpu)?))
    }

    /// End a finite stream: each layer processes its TF end padding for the frames it saw
    /// (docs/continual.md, "Padding and fill"); the logits of the positions that completes. Call
    /// `reset` before streaming again.
    pub fn flush_logits(&mut self) -> anyhow::Result<Vec<Tensor>> {
        let outs = self.flush_logit_frames()?;
        let classes = self.spec.num_classes;
        outs.into_iter().map(|y| Ok(Tensor::from_vec(y.data, classes, &Device::Cpu)?)).collect()
    }

    /// Mean of the logits of the last `pool` positions (fewer while the stream is younger), `(classes,)`.
    pub fn pooled_logits(&mut self) -> anyhow::Result<Option<Tensor>> {
        let mean = self.window.as_mut().map(|w| w.mean().to_vec()).unwrap_or_default();
        if mean.is_empty() {
            return Ok(None);
        }
        Ok(Some(Tensor::from_vec(mean, self.spec.num_classes, &Device::Cpu)?))
    }
}

impl Architecture for I3d {
    fn build(_name: &str, opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<CoI3d> {
        build(opts, weights)
    }

    /// One published layout: the canonical names are the checkpoint's.
    fn checkpoint<'a>(_names: &[String], store: &'a mut crate::weights::TensorStore) -> anyhow::Result<Box<dyn WeightSource + 'a>> {
        Ok(Box::new(store))
    }

    /// The regular I3D: softmax of the logits averaged over the clip's positions.
    fn forward_clip(model: &CoI3d, clip: &Tensor) -> anyhow::Result<Tensor> {
        Ok(candle_nn::ops::softmax(&model.forward_mean(clip)?, 0)?)
    }

    /// The 64-frame clip the regular network was evaluated on.
    fn clip_frames(&self) -> usize {
        64
    }

    fn summary(model: &CoI3d) -> String {
        let shape = model.shape();
        format!(
            "DeepMind I3D (Inception-v1, RGB, Kinetics-400, 12.7 M parameters), continual: one prediction every \
             {} frames from frame {}, receptive field {} frames, head mean over {} positions, {:.2} GMAC/frame",
            shape.stride,
            shape.delay + 1,
            shape.receptive_field,
            model.config().pool,
            model.macs_per_step() / 1e9,
        )
    }
}

/// Lays out the network (docs/models.md, "I3D") with TF 'SAME' pads, folding each BatchNorm into its conv.
struct Builder<'a> {
    weights: &'a mut dyn WeightSource,
    fill: Fill,
    /// Classes of the checkpoint's head.
    classes: usize,
}

/// Square spatial TF 'SAME' pads `[top, bottom, left, right]` for a side of `n`.
fn same_2d(n: usize, k: usize, s: usize) -> Pad2d {
    let (b, a) = tf_same_pads(n, k, s);
    [b, a, b, a]
}

impl Builder<'_> {
    /// Unit3D: conv (no bias, TF SAME) → BatchNorm (eps 1e-3, no scale, folded) → ReLU.
    /// `k = (k_t, k_s)`, `s = (s_t, s_s)`; `n` is the input side (for the spatial pads).
    fn unit(
        &mut self,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: (usize, usize),
        s: (usize, usize),
        n: usize,
    ) -> anyhow::Result<Sequential> {
        let (kt, ks) = k;
        let w = self.weights.take(&format!("{name}.conv.weight"), &[c_out, c_in, kt, ks, ks])?;
        let bn = BatchNorm {
            gamma: None,
            beta: self.weights.take(&format!("{name}.bn.bias"), &[c_out])?,
            mean: self.weights.take(&format!("{name}.bn.running_mean"), &[c_out])?,
            var: self.weights.take(&format!("{name}.bn.running_var"), &[c_out])?,
            eps: BN_EPS,
        };
        let (w, b) = bn.fold_into(&w, None)?;
        let conv = if kt == 1 && ks == 1 && s == (1, 1) {
            TemporalConv::pointwise(name, &w, Some(&b))?
        } else {
            // Temporal start pad: what TF uses for even input lengths (the stream's fixed phase; docs/continual.md, "Padding and fill").
            let stream_before = tf_same_pads(2 * s.0, kt, s.0).0;
            let pad = TemporalPad::TfSame { stream_before };
            TemporalConv::new(name, &w, Some(&b), s.0, pad, s.1, same_2d(n, ks, s.1), 1, self.fill)?
        };
        let conv = conv.with_folded_bn();
        Ok(Sequential::new(name, vec![Box::new(conv), Box::new(Pointwise::relu())]))
    }

    /// TF max pool 'SAME' (padding never wins) with kernel `(k_t, k_s)`, stride `(s_t, s_s)`.
    fn max_pool(&self, name: &str, k: (usize, usize), s: (usize, usize), n: usize) -> anyhow::Result<Box<dyn Layer>> {
        let spatial = SpatialPool::Max { k: k.1, stride: s.1, pad: same_2d(n, k.1, s.1) };
        if k.0 == 1 && s.0 == 1 {
            return Ok(Box::new(Pointwise::pool(spatial)));
        }
        let stream_before = tf_same_pads(2 * s.0, k.0, s.0).0;
        let pad = TemporalPad::TfSame { stream_before };
        Ok(Box::new(TemporalPool::new(name, PoolKind::Max, k.0, s.0, pad, Some(spatial), self.fill)?))
    }

    /// Inception module; the Parallel container delays Branch_0 by one step to meet the k = 3
    /// branches (docs/continual.md, "Temporal shape").
    fn mixed(&mut self, name: &str, c_in: usize, c: [usize; 6], n: usize) -> anyhow::Result<(Box<dyn Layer>, usize)> {
        let [c0, c1a, c1b, c2a, c2b, c3] = c;
        let b0 = self.unit(&format!("{name}.Branch_0.Conv3d_0a_1x1"), c_in, c0, (1, 1), (1, 1), n)?;
        let b1 = Sequential::new(
            format!("{name}.Branch_1"),
            vec![
                Box::new(self.unit(&format!("{name}.Branch_1.Conv3d_0a_1x1"), c_in, c1a, (1, 1), (1, 1), n)?),
                Box::new(self.unit(&format!("{name}.Branch_1.Conv3d_0b_3x3"), c1a, c1b, (3, 3), (1, 1), n)?),
            ],
        );
        let b2 = Sequential::new(
            format!("{name}.Branch_2"),
            vec![
                Box::new(self.unit(&format!("{name}.Branch_2.Conv3d_0a_1x1"), c_in, c2a, (1, 1), (1, 1), n)?),
                Box::new(self.unit(&format!("{name}.Branch_2.Conv3d_0b_3x3"), c2a, c2b, (3, 3), (1, 1), n)?),
            ],
        );
        let b3 = Sequential::new(
            format!("{name}.Branch_3"),
            vec![
                self.max_pool(&format!("{name}.Branch_3.MaxPool3d_0a_3x3"), (3, 3), (1, 1), n)?,
                Box::new(self.unit(&format!("{name}.Branch_3.Conv3d_0b_1x1"), c_in, c3, (1, 1), (1, 1), n)?),
            ],
        );
        let branches: Vec<Box<dyn Layer>> = vec![Box::new(b0), Box::new(b1), Box::new(b2), Box::new(b3)];
        Ok((Box::new(Parallel::new(name, branches, Reduce::Concat)?), c0 + c1b + c2b + c3))
    }

    /// The stages up to `Mixed_5c`, and the `Logits` head.
    fn network(mut self, size: usize) -> anyhow::Result<(Sequential, Sequential)> {
        let mut stages: Vec<Box<dyn Layer>> = Vec::with_capacity(ENDPOINTS.len());
        let mut n = size;
        stages.push(Box::new(self.unit("Conv3d_1a_7x7", 3, 64, (7, 7), (2, 2), n)?));
        n = n.div_ceil(2);
        stages.push(self.max_pool("MaxPool3d_2a_3x3", (1, 3), (1, 2), n)?);
        n = n.div_ceil(2);
        stages.push(Box::new(self.unit("Conv3d_2b_1x1", 64, 64, (1, 1), (1, 1), n)?));
        stages.push(Box::new(self.unit("Conv3d_2c_3x3", 64, 192, (3, 3), (1, 1), n)?));
        stages.push(self.max_pool("MaxPool3d_3a_3x3", (1, 3), (1, 2), n)?);
        n = n.div_ceil(2);
        let mut c = 192;
        for (i, (name, chans)) in MIXED.iter().enumerate() {
            match *name {
                "Mixed_4b" => {
                    stages.push(self.max_pool("MaxPool3d_4a_3x3", (3, 3), (2, 2), n)?);
                    n = n.div_ceil(2);
                }
                "Mixed_5b" => {
                    stages.push(self.max_pool("MaxPool3d_5a_2x2", (2, 2), (2, 2), n)?);
                    n = n.div_ceil(2);
                }
                _ => {}
            }
            let (module, c_out) = self.mixed(name, c, *chans, n)?;
            stages.push(module);
            c = c_out;
            debug_assert_eq!(ENDPOINTS[stages.len() - 1], MIXED[i].0);
        }
        // Head: VALID avg pool (2, 7, 7) over the final 7×7 map, then the 1×1×1 classifier with bias,
        // no BN, no ReLU (dropout is the identity at inference).
        let avg = TemporalPool::new(
            "Logits.AvgPool3d",
            PoolKind::Avg,
            2,
            1,
            TemporalPad::Fixed { before: 0, after: 0 },
            Some(SpatialPool::Avg { k: n }),
            self.fill,
        )?;
        let w = self.weights.take("Logits.Conv3d_0c_1x1.conv.weight", &[self.classes, c, 1, 1, 1])?;
        let b = self.weights.take("Logits.Conv3d_0c_1x1.conv.bias", &[self.classes])?;
        let classifier = TemporalConv::pointwise("Logits.Conv3d_0c_1x1", &w, Some(&b))?;
        let head = Sequential::new("Logits", vec![Box::new(avg), Box::new(classifier)]);
        Ok((Sequential::new("InceptionI3d", stages), head))
    }
}
