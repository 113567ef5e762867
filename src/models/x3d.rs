//! X3D-XS/S/M/L (Feichtenhofer 2020) and its continual form CoX3D (Hedegaard & Iosifidis 2022).
//!
//! One definition, two paths: the network is built once from engine layers, named like the
//! pyslowfast checkpoint (docs/models.md, "X3D"), with every BatchNorm folded into the conv before it
//! (docs/continual.md, "BatchNorm folding"). `forward_clip` is the regular X3D (clip-wise
//! squeeze-excitation), `step` the continual CoX3D (frame-wise squeeze-excitation; docs/continual.md,
//! "Squeeze-excitation"), over the same weights. The stream plumbing is the shared
//! [`ContinualClassifier`]; this file is the config, the builder and the checkpoint key map.
//!
//! ```text
//! stem   s1.pathway0_stem   conv_xy 1×3×3 /2 (3→w0) · conv 5×1×1 depthwise · bn · relu
//! s2..s5 sK.pathway0_res{i} relu( shortcut + branch2 ),
//!                             branch2 = a 1×1×1 · a_bn · relu · b 3×3×3 depthwise (/2 in block 0) · b_bn
//!                                       · se (even i) · swish · c 1×1×1 · c_bn
//!                             shortcut = branch1 1×1×1 /2 · branch1_bn in block 0, identity otherwise
//! head   conv_5 1×1×1 · conv_5_bn · relu · avg pool (T_pool, k, k) · lin_5 1×1×1 · relu · projection
//!        · softmax per position, mean over positions
//! ```
//!
//! | variant | T × τ | crop | blocks s2..s5 | widths (out / inner) |
//! |---|---|---|---|---|
//! | XS | 4 × 12 | 160 | 3, 5, 11, 7 | 24/54, 48/108, 96/216, 192/432 |
//! | S | 13 × 6 | 160 | 3, 5, 11, 7 | same |
//! | M | 16 × 5 | 224 | 3, 5, 11, 7 | same |
//! | L | 16 × 5 | 312 | 5, 10, 25, 15 | same |

use anyhow::{Context, bail};
use candle_core::{D, Tensor};

use crate::engine::{
    Delay, Layer, PadMode, Parallel, Pointwise, PoolKind, Reduce, Scratch, SeScope, Sequential, SpatialPool, SqueezeExcite, TemporalConv,
    TemporalPad, TemporalPool,
};
use crate::error::{ErrorKind, classified};
use crate::models::classifier::{Architecture, ContinualClassifier, Parts};
use crate::models::{CountingSource, Fill, ModelOptions, ModelSpec, Normalize, StreamModel, WeightSource};
use crate::weights::{BatchNorm, Layout};

/// BatchNorm epsilon of every X3D BN.
const BN_EPS: f64 = 1e-5;
/// Spatial stride of the stem and of block 0 of every stage.
const SPATIAL_STRIDE: usize = 2;
/// Temporal kernel of the stem's depthwise conv (padding 2) and of every `b` conv (padding 1).
const STEM_KT: usize = 5;
const BLOCK_KT: usize = 3;

/// Architecture hyper-parameters (the pyslowfast `X3D.*` config keys, plus the data sizes).
#[derive(Debug, Clone, PartialEq)]
pub struct X3dConfig {
    /// Registry name, e.g. `x3d-s`.
    pub name: String,
    /// `X3D.DIM_C1`: base width of res2.
    pub dim_c1: usize,
    /// `X3D.WIDTH_FACTOR`.
    pub width_factor: f64,
    /// Blocks per stage s2..s5: `ceil(DEPTH_FACTOR · [1, 2, 5, 3])`, hard-coded for the official
    /// variants because 2.2 × 5 must give 11 (a float `ceil` would give 12).
    pub blocks: [usize; 4],
    /// `X3D.BOTTLENECK_FACTOR`: inner width = `int(factor · out)`.
    pub bottleneck_factor: f64,
    /// `X3D.DIM_C5`: width of `lin_5`.
    pub dim_c5: usize,
    /// Squeeze-excitation ratio (0 = no SE).
    pub se_ratio: f64,
    /// `DATA.TRAIN_CROP_SIZE`: side of the square input.
    pub crop: usize,
    /// `DATA.NUM_FRAMES`: clip length T the model was trained on (the default head window).
    pub num_frames: usize,
    /// `DATA.SAMPLING_RATE` τ: one network frame every τ frames of a 30 fps video.
    pub sampling_rate: usize,
    pub num_classes: usize,
}

impl X3dConfig {
    /// One of the four official Kinetics-400 variants ([`VARIANTS`]).
    pub fn variant(name: &str) -> anyhow::Result<Self> {
        let canonical = name.to_ascii_lowercase();
        let short = canonical.strip_prefix("co").unwrap_or(&canonical);
        let Some(&(name, t, tau, crop, blocks)) = VARIANTS.iter().find(|v| v.0 == short) else {
            return Err(classified(ErrorKind::Usage, format!("unknown X3D variant '{name}' (known: {})", variants().join(", "))));
        };
        Ok(X3dConfig {
            name: name.to_string(),
            dim_c1: 12,
            width_factor: 2.0,
            blocks,
            bottleneck_factor: 2.25,
            dim_c5: 2048,
            se_ratio: 0.0625,
            crop,
            num_frames: t,
            sampling_rate: tau,
            num_classes: 400,
        })
    }

    /// Stem output width.
    pub fn stem_width(&self) -> usize {
        round_width(self.dim_c1 as f64, self.width_factor, 8, 8)
    }

    /// `(din, dout, inner, se_hidden)` of each stage s2..s5.
    pub fn stage_dims(&self) -> [(usize, usize, usize, usize); 4] {
        let mut base = self.dim_c1;
        let mut din = self.stem_width();
        std::array::from_fn(|s| {
            if s > 0 {
                base = round_width(base as f64, 2.0, 8, 8);
            }
            let dout = round_width(base as f64, self.width_factor, 8, 8);
            let inner = (self.bottleneck_factor * dout as f64) as usize;
            let hidden = round_width(inner as f64, self.se_ratio, 8, 8);
            let dims = (din, dout, inner, hidden);
            din = dout;
            dims
        })
    }

    /// Side of the head's spatial pool window: the s5 map at the train crop, `ceil(crop / 32)`.
    pub fn head_pool_side(&self) -> usize {
        self.crop.div_ceil(32)
    }

    /// Frames per second of the network's own timeline: one frame every τ frames at 30 fps.
    pub fn fps(&self) -> f64 {
        30.0 / self.sampling_rate as f64
    }
}

/// pyslowfast `round_width`: `w·m` rounded to a multiple of `divisor`, at least `min_width`, and
/// never more than 10 % below `w·m`.
pub fn round_width(w: f64, m: f64, min_width: usize, divisor: usize) -> usize {
    let x = w * m;
    let d = divisor as f64;
    let mut out = (min_width as f64).max(((x + d / 2.0) / d).floor() * d) as usize;
    if (out as f64) < 0.9 * x {
        out += divisor;
    }
    out
}

/// The official variants, in size order (docs/models.md, "X3D"): name, clip length T, sampling
/// rate τ, crop, blocks of s2..s5. Every other hyper-parameter is shared (see [`X3dConfig::variant`]).
pub const VARIANTS: [(&str, usize, usize, usize, [usize; 4]); 4] = [
    ("x3d-xs", 4, 12, 160, [3, 5, 11, 7]),
    ("x3d-s", 13, 6, 160, [3, 5, 11, 7]),
    ("x3d-m", 16, 5, 224, [3, 5, 11, 7]),
    ("x3d-l", 16, 5, 312, [5, 10, 25, 15]),
];

/// The built-in variants, in size order.
pub fn variants() -> Vec<&'static str> {
    VARIANTS.iter().map(|v| v.0).collect()
}

// ------------------------------------------------------------------------------------------------
// Loading: take each tensor by its pyslowfast name and fold every BatchNorm into its conv.

/// A conv weight with its folded BN bias.
struct Folded {
    w: Tensor,
    b: Tensor,
}

fn take_bn(ws: &mut dyn WeightSource, prefix: &str, c: usize) -> anyhow::Result<BatchNorm> {
    Ok(BatchNorm {
        gamma: Some(ws.take(&format!("{prefix}.weight"), &[c])?),
        beta: ws.take(&format!("{prefix}.bias"), &[c])?,
        mean: ws.take(&format!("{prefix}.running_mean"), &[c])?,
        var: ws.take(&format!("{prefix}.running_var"), &[c])?,
        eps: BN_EPS,
    })
}

/// `conv.weight` of `shape` followed by the BN `bn`, folded.
fn conv_bn(ws: &mut dyn WeightSource, conv: &str, bn: &str, shape: [usize; 5]) -> anyhow::Result<Folded> {
    let w = ws.take(&format!("{conv}.weight"), &shape)?;
    let bn = take_bn(ws, bn, shape[0])?;
    let (w, b) = bn.fold_into(&w, None)?;
    Ok(Folded { w, b })
}

struct SeParams {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

struct BlockParams {
    name: String,
    stride: usize,
    inner: usize,
    a: Folded,
    b: Folded,
    se: Option<SeParams>,
    c: Folded,
    /// Projection shortcut (block 0 of each stage).
    branch1: Option<Folded>,
}

struct X3dParams {
    conv_xy: Tensor,
    stem: Folded,
    stages: Vec<Vec<BlockParams>>,
    conv_5: Folded,
    lin_5: Tensor,
    proj_w: Tensor,
    proj_b: Tensor,
}

fn load(cfg: &X3dConfig, ws: &mut dyn WeightSource) -> anyhow::Result<X3dParams> {
    let w0 = cfg.stem_width();
    let stem = "s1.pathway0_stem";
    let conv_xy = ws.take(&format!("{stem}.conv_xy.weight"), &[w0, 3, 1, 3, 3])?;
    let stem_conv = conv_bn(ws, &format!("{stem}.conv"), &format!("{stem}.bn"), [w0, 1, STEM_KT, 1, 1])?;

    let mut stages = Vec::new();
    let mut last_inner = 0;
    for (s, &(din, dout, inner, hidden)) in cfg.stage_dims().iter().enumerate() {
        let mut blocks = Vec::new();
        for i in 0..cfg.blocks[s] {
            let name = format!("s{}.pathway0_res{i}", s + 2);
            let (din_i, stride) = if i == 0 { (din, SPATIAL_STRIDE) } else { (dout, 1) };
            let br = format!("{name}.branch2");
            let a = conv_bn(ws, &format!("{br}.a"), &format!("{br}.a_bn"), [inner, din_i, 1, 1, 1])?;
            let b = conv_bn(ws, &format!("{br}.b"), &format!("{br}.b_bn"), [inner, 1, BLOCK_KT, 3, 3])?;
            let se = if cfg.se_ratio > 0.0 && i % 2 == 0 {
                Some(SeParams {
                    w1: ws.take(&format!("{br}.se.fc1.weight"), &[hidden, inner, 1, 1, 1])?,
                    b1: ws.take(&format!("{br}.se.fc1.bias"), &[hidden])?,
                    w2: ws.take(&format!("{br}.se.fc2.weight"), &[inner, hidden, 1, 1, 1])?,
                    b2: ws.take(&format!("{br}.se.fc2.bias"), &[inner])?,
                })
            } else {
                None
            };
            let c = conv_bn(ws, &format!("{br}.c"), &format!("{br}.c_bn"), [dout, inner, 1, 1, 1])?;
            let branch1 = if din_i != dout || stride != 1 {
                Some(conv_bn(ws, &format!("{name}.branch1"), &format!("{name}.branch1_bn"), [dout, din_i, 1, 1, 1])?)
            } else {
                None
            };
            blocks.push(BlockParams { name, stride, inner, a, b, se, c, branch1 });
        }
        stages.push(blocks);
        last_inner = inner;
    }
    let dout5 = cfg.stage_dims()[3].1;
    let conv_5 = conv_bn(ws, "head.conv_5", "head.conv_5_bn", [last_inner, dout5, 1, 1, 1])?;
    let lin_5 = ws.take("head.lin_5.weight", &[cfg.dim_c5, last_inner, 1, 1, 1])?;
    let proj_w = ws.take("head.projection.weight", &[cfg.num_classes, cfg.dim_c5])?;
    let proj_b = ws.take("head.projection.bias", &[cfg.num_classes])?;
    Ok(X3dParams { conv_xy, stem: stem_conv, stages, conv_5, lin_5, proj_w, proj_b })
}

// ------------------------------------------------------------------------------------------------
// The network, as engine layers.

fn boxed(l: impl Layer + 'static) -> Box<dyn Layer> {
    Box::new(l)
}

/// A 1×1×1 conv with its BatchNorm folded in.
fn pointwise(name: &str, f: &Folded) -> candle_core::Result<TemporalConv> {
    Ok(TemporalConv::pointwise(name, &f.w, Some(&f.b))?.with_folded_bn())
}

/// `s1.pathway0_stem`: spatial conv (no BN after it), then the temporal depthwise conv with the BN.
fn stem(cfg: &X3dConfig, p: &X3dParams, fill: Fill) -> candle_core::Result<Sequential> {
    let w0 = cfg.stem_width();
    let conv_xy = TemporalConv::new(
        "s1.pathway0_stem.conv_xy",
        &p.conv_xy,
        None,
        1,
        TemporalPad::symmetric(0),
        SPATIAL_STRIDE,
        [1; 4],
        1,
        Fill::Zeros,
    )?;
    let conv = TemporalConv::new(
        "s1.pathway0_stem.conv",
        &p.stem.w,
        Some(&p.stem.b),
        1,
        TemporalPad::symmetric(STEM_KT / 2),
        1,
        [0; 4],
        w0,
        fill,
    )?
    .with_folded_bn();
    Ok(Sequential::new("s1.pathway0_stem", vec![boxed(conv_xy), boxed(conv), boxed(Pointwise::relu())]))
}

/// `sK.pathway0_res{i}`: `relu(shortcut(x) + branch2(x))`; the parallel container delays the
/// shortcut to match branch2's delay (1 frame).
fn res_block(b: &BlockParams, se_scope: SeScope, fill: Fill) -> candle_core::Result<Sequential> {
    let n = &b.name;
    let mut branch2 = Sequential::new(format!("{n}.branch2"), Vec::new());
    branch2.push(pointwise(&format!("{n}.branch2.a"), &b.a)?);
    branch2.push(Pointwise::relu());
    branch2.push(
        TemporalConv::new(
            format!("{n}.branch2.b"),
            &b.b.w,
            Some(&b.b.b),
            1,
            TemporalPad::symmetric(BLOCK_KT / 2),
            b.stride,
            [1; 4],
            b.inner,
            fill,
        )?
        .with_folded_bn()
        // Consumed at once by SE or conv_c, as SE's output is by conv_c: shared, hot buffers.
        .with_scratch_output(Scratch::Depthwise),
    );
    if let Some(se) = &b.se {
        let se = SqueezeExcite::new(format!("{n}.branch2.se"), &se.w1, &se.b1, &se.w2, &se.b2, se_scope)?;
        branch2.push(se.with_scratch_output(Scratch::Excite));
    }
    branch2.push(Pointwise::swish());
    branch2.push(pointwise(&format!("{n}.branch2.c"), &b.c)?);

    let shortcut: Box<dyn Layer> = match &b.branch1 {
        Some(f) => boxed(
            TemporalConv::new(format!("{n}.branch1"), &f.w, Some(&f.b), 1, TemporalPad::symmetric(0), b.stride, [0; 4], 1, Fill::Zeros)?
                .with_folded_bn(),
        ),
        // Identity; the parallel container turns it into Delay(branch2 delay).
        None => boxed(Delay::new(0)),
    };
    let sum = Parallel::new(format!("{n}.sum"), vec![shortcut, boxed(branch2)], Reduce::Sum)?;
    Ok(Sequential::new(n.clone(), vec![boxed(sum), boxed(Pointwise::relu())]))
}

/// Stem and the blocks of the four stages (s2..s5), as one chain: the units a pipelined step cuts
/// between (each block is named by its stage).
fn backbone(p: &X3dParams, se_scope: SeScope, fill: Fill, cfg: &X3dConfig) -> candle_core::Result<Sequential> {
    let mut layers = vec![boxed(stem(cfg, p, fill)?)];
    for block in p.stages.iter().flatten() {
        layers.push(boxed(res_block(block, se_scope, fill)?));
    }
    Ok(Sequential::new("backbone", layers))
}

/// `head` up to the logits: one output per `pool` backbone positions (stride 1).
fn head(cfg: &X3dConfig, p: &X3dParams, pool: usize) -> candle_core::Result<Sequential> {
    let k = cfg.head_pool_side();
    let avg_pool =
        TemporalPool::new("head.avg_pool", PoolKind::Avg, pool, 1, TemporalPad::symmetric(0), Some(SpatialPool::Avg { k }), Fill::Zeros)?;
    Ok(Sequential::new(
        "head",
        vec![
            boxed(pointwise("head.conv_5", &p.conv_5)?),
            boxed(Pointwise::relu()),
            boxed(avg_pool),
            boxed(TemporalConv::pointwise("head.lin_5", &p.lin_5, None)?),
            boxed(Pointwise::relu()),
            boxed(TemporalConv::pointwise("head.projection", &p.proj_w, Some(&p.proj_b))?),
        ],
    ))
}

/// Class probabilities of head outputs `(N, classes, H, W)`: softmax at every position `(n, h, w)`,
/// then the mean over positions (pyslowfast's fully convolutional test head).
pub fn probabilities(logits: &Tensor) -> candle_core::Result<Tensor> {
    per_position_probabilities(logits)?.mean(0)
}

/// Softmax over classes at every position: `(positions, classes)`, positions in `(n, h, w)` order.
pub fn per_position_probabilities(logits: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::softmax(&positions(logits)?, D::Minus1)
}

/// `(N, classes, H, W)` → `(N·H·W, classes)`.
fn positions(logits: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = logits.dims4()?;
    logits.permute((0, 2, 3, 1))?.reshape((n * h * w, c))
}

// ------------------------------------------------------------------------------------------------
// The model.

/// X3D / CoX3D over one set of folded weights: the shared streaming classifier around the X3D layers.
pub type CoX3d = ContinualClassifier<X3d>;

/// What is X3D's own in a [`CoX3d`]: the config and the clip-wise SE backbone of the regular network.
pub struct X3d {
    config: X3dConfig,
    /// Head window T_pool in backbone positions.
    pool: usize,
    /// Clip-wise SE: the regular X3D backbone (clip path only).
    clip_backbone: Sequential,
    /// Learnable scalars loaded.
    params: usize,
}

/// Longest head window, in backbone positions (one per step): 2.8 to 6.8 minutes at the variants'
/// 2.5 to 6 fps, far past the paper's 64.
pub use crate::models::MAX_POOL;

impl CoX3d {
    /// Build from `config` with head window `pool` (None = the training clip length) and start fill.
    pub fn new(config: X3dConfig, pool: Option<usize>, fill: Fill, ws: &mut dyn WeightSource) -> anyhow::Result<Self> {
        let mut config = config;
        config.num_classes = crate::models::head_classes(ws, "head.projection.weight", config.num_classes)?;
        let pool = pool.unwrap_or(config.num_frames);
        crate::models::check_pool(&config.name, pool)?;
        let mut counting = CountingSource::new(ws);
        let params = load(&config, &mut counting).with_context(|| format!("loading {} weights", config.name))?;
        let learnable = counting.learnable;
        let clip_backbone = backbone(&params, SeScope::Clip, fill, &config)?;
        // Frame-wise SE: the streaming network (its clip path is `F_fw`; docs/continual.md, "Squeeze-excitation").
        let stream_backbone = backbone(&params, SeScope::Frame, fill, &config)?;
        let head = head(&config, &params, pool)?;
        let spec = ModelSpec {
            name: config.name.clone(),
            fps: config.fps(),
            resize_short: config.crop,
            crop: config.crop,
            normalize: Normalize::MeanStd { mean: [0.45; 3], std: [0.225; 3] },
            num_classes: config.num_classes,
        };
        let arch = X3d { config, pool, clip_backbone, params: learnable };
        ContinualClassifier::from_parts(Parts { spec, arch, backbone: stream_backbone, head, logit_window: None, pipeline: true })
    }

    pub fn config(&self) -> &X3dConfig {
        &self.arch.config
    }

    /// Head window T_pool in backbone positions.
    pub fn pool(&self) -> usize {
        self.arch.pool
    }

    /// Learnable scalars loaded (conv/linear weights and biases, BN scale and shift).
    pub fn num_params(&self) -> usize {
        self.arch.params
    }

    /// Stem..s5 with frame-wise SE (`B_fw`), or clip-wise SE (`B`, clip path only).
    pub fn backbone(&self, se: SeScope) -> &dyn Layer {
        match se {
            SeScope::Frame => self.backbone_layers(),
            SeScope::Clip => &self.arch.clip_backbone,
        }
    }

    /// Logits of the regular network on a clip `(T, 3, S, S)` with temporal padding `mode`:
    /// `(positions, classes)`, one row per (time, height, width) position of the head output.
    pub fn clip_logits(&self, clip: &Tensor, se: SeScope, mode: PadMode) -> anyhow::Result<Tensor> {
        let (t, c, h, w) = clip.dims4().context("a clip must be (T, 3, H, W)")?;
        if c != 3 {
            bail!("a clip must have 3 channels, got {c}");
        }
        // The head pools a fixed window sized for the train crop; larger frames give more positions.
        let (name, s) = (&self.config().name, self.config().crop);
        if h < s || w < s {
            bail!("{name}: clip frames of {h}x{w} are smaller than the {s}x{s} crop the head is sized for");
        }
        if t < self.pool() {
            bail!("a clip of {t} frames is shorter than the head window {}", self.pool());
        }
        let feats = self.backbone(se).forward(clip, mode)?;
        Ok(positions(&self.head().forward(&feats, mode)?)?)
    }

    /// The regular X3D on a clip `(T, 3, S, S)` (zero-padded convs): class probabilities
    /// `(classes,)`, softmax per head position then mean. `SeScope::Clip` is the published X3D.
    pub fn forward_clip(&self, clip: &Tensor, se: SeScope) -> anyhow::Result<Tensor> {
        let logits = self.clip_logits(clip, se, PadMode::Full)?;
        Ok(candle_nn::ops::softmax(&logits, D::Minus1)?.mean(0)?)
    }

    /// End of a finite stream: the output still in flight (under `Schedule::Pipeline`), then every
    /// layer processes its end padding; the probabilities of the outputs this completes, in order.
    /// Call `reset` before streaming again.
    pub fn flush(&mut self) -> anyhow::Result<Vec<Tensor>> {
        let mut in_flight = Vec::new();
        let drained = self.drain(&mut in_flight)?.then(|| Tensor::new(in_flight.as_slice(), &candle_core::Device::Cpu));
        let mut probs: Vec<Tensor> = drained.transpose()?.into_iter().collect();
        for logits in self.flush_logit_frames()? {
            probs.push(probabilities(&logits.to_tensor()?)?);
        }
        Ok(probs)
    }
}

impl Architecture for X3d {
    fn build(name: &str, opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<CoX3d> {
        build(name, opts, weights)
    }

    fn checkpoint<'a>(names: &[String], store: &'a mut crate::weights::TensorStore) -> anyhow::Result<Box<dyn WeightSource + 'a>> {
        Ok(Box::new(X3dWeights::new(names, store)?))
    }

    /// The published regular X3D: squeeze-excitation pooled over the whole clip.
    fn forward_clip(model: &CoX3d, clip: &Tensor) -> anyhow::Result<Tensor> {
        model.forward_clip(clip, SeScope::Clip)
    }

    fn clip_frames(&self) -> usize {
        self.config.num_frames
    }

    fn summary(model: &CoX3d) -> String {
        let (cfg, shape) = (model.config(), model.shape());
        let n_blocks: usize = cfg.blocks.iter().sum();
        let variant = cfg.name.trim_start_matches("x3d-").to_uppercase();
        format!(
            "CoX3D-{variant}_{}: X3D-{variant} ({n_blocks} blocks, {:.2} M params) frame by frame at {} fps, {}x{}, \
             first output after {} frames, steady after {}, {:.3} GMAC/frame",
            model.pool(),
            model.num_params() as f64 / 1e6,
            model.spec().fps,
            cfg.crop,
            cfg.crop,
            shape.delay + 1,
            shape.receptive_field,
            model.macs_per_step() / 1e9,
        )
    }
}

/// Build a named variant (`x3d-xs` … `x3d-l`) with `opts.pool` and `opts.fill`.
/// `weights` is taken by pyslowfast names; wrap a PyTorchVideo hub store in [`X3dWeights`].
pub fn build(variant: &str, opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<CoX3d> {
    CoX3d::new(X3dConfig::variant(variant)?, opts.pool, opts.fill, weights)
}

// ------------------------------------------------------------------------------------------------
// Checkpoint layouts.

/// Tell an X3D checkpoint's layout from its tensor names: the pyslowfast names are this file's own;
/// the PyTorchVideo hub ones are `blocks.N…` with swapped stem names and no BN on the s2 block-0
/// shortcut (docs/models.md, "Checkpoint layouts").
pub fn detect_layout<S: AsRef<str>>(names: &[S]) -> anyhow::Result<Layout> {
    let has = |n: &str| names.iter().any(|k| k.as_ref() == n);
    if has("s1.pathway0_stem.conv_xy.weight") {
        Ok(Layout::Pyslowfast)
    } else if has("blocks.0.conv.conv_t.weight") {
        Ok(Layout::Hub)
    } else {
        let first: Vec<&str> = names.iter().take(5).map(|k| k.as_ref()).collect();
        Err(classified(
            ErrorKind::Data,
            format!(
                "not an X3D checkpoint: neither s1.pathway0_stem.conv_xy.weight (pyslowfast) nor \
                 blocks.0.conv.conv_t.weight (PyTorchVideo) is present (first names: {})",
                first.join(", ")
            ),
        ))
    }
}

/// The key map: the PyTorchVideo hub name of a pyslowfast X3D tensor name; `None` if it has no
/// counterpart.
pub fn hub_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("s1.pathway0_stem.") {
        // PTV stores the spatial conv under conv_t and the temporal one under conv_xy (sic).
        return Some(match rest {
            "conv_xy.weight" => "blocks.0.conv.conv_t.weight".to_string(),
            "conv.weight" => "blocks.0.conv.conv_xy.weight".to_string(),
            _ => format!("blocks.0.norm.{}", rest.strip_prefix("bn.")?),
        });
    }
    if let Some(rest) = name.strip_prefix("head.") {
        let (layer, field) = rest.split_once('.')?;
        let ptv = match layer {
            "conv_5" => "blocks.5.pool.pre_conv",
            "conv_5_bn" => "blocks.5.pool.pre_norm",
            "lin_5" => "blocks.5.pool.post_conv",
            "projection" => "blocks.5.proj",
            _ => return None,
        };
        return Some(format!("{ptv}.{field}"));
    }
    // sK.pathway0_res{i}.<module>.<field>
    let (stage, rest) = name.strip_prefix('s')?.split_once(".pathway0_res")?;
    let stage: usize = stage.parse().ok()?;
    let (block, rest) = rest.split_once('.')?;
    let (module, field) = rest.rsplit_once('.')?;
    let ptv = match module {
        "branch1" => "branch1_conv",
        "branch1_bn" => "branch1_norm",
        "branch2.a" => "branch2.conv_a",
        "branch2.a_bn" => "branch2.norm_a",
        "branch2.b" => "branch2.conv_b",
        "branch2.b_bn" => "branch2.norm_b.0",
        "branch2.se.fc1" => "branch2.norm_b.1.block.0",
        "branch2.se.fc2" => "branch2.norm_b.1.block.2",
        "branch2.c" => "branch2.conv_c",
        "branch2.c_bn" => "branch2.norm_c",
        _ => return None,
    };
    Some(format!("blocks.{}.res_blocks.{block}.{ptv}.{field}", stage.checked_sub(1)?))
}

/// A weight source seen through the pyslowfast names whatever its layout.
///
/// PyTorchVideo builds the shortcut BN only when din ≠ dout, which in X3D is false exactly for s2's
/// block 0 (24→24, stride 2): that shortcut is the bare conv, which this adaptor supplies as an
/// identity BN (γ = √(1+ε), β = μ = 0, σ² = 1; the fold's scale is 1 up to rounding). It does so for
/// a hub checkpoint, and for a hub checkpoint already renamed to pyslowfast names (the BN's four
/// tensors all absent while the conv is present); any other missing tensor is an error.
pub struct X3dWeights<'a> {
    layout: Layout,
    identity_s2_shortcut_bn: bool,
    inner: &'a mut dyn WeightSource,
}

impl<'a> X3dWeights<'a> {
    /// `names`: the tensor names of the checkpoint behind `inner`, from which the layout is detected.
    pub fn new<S: AsRef<str>>(names: &[S], inner: &'a mut dyn WeightSource) -> anyhow::Result<Self> {
        let layout = detect_layout(names)?;
        let has = |n: &str| names.iter().any(|k| k.as_ref() == n);
        let bn = "s2.pathway0_res0.branch1_bn";
        let fields = ["weight", "bias", "running_mean", "running_var"];
        let ptv = |n: String| hub_name(&n).unwrap_or(n);
        let (conv, bns): (String, Vec<String>) = match layout {
            Layout::Pyslowfast => ("s2.pathway0_res0.branch1.weight".into(), fields.iter().map(|f| format!("{bn}.{f}")).collect()),
            Layout::Hub => (ptv("s2.pathway0_res0.branch1.weight".into()), fields.iter().map(|f| ptv(format!("{bn}.{f}"))).collect()),
        };
        let identity_s2_shortcut_bn = has(&conv) && bns.iter().all(|n| !has(n));
        Ok(X3dWeights { layout, identity_s2_shortcut_bn, inner })
    }

    /// A known layout; for the hub layout the s2 shortcut BN is the identity.
    pub fn with_layout(layout: Layout, inner: &'a mut dyn WeightSource) -> Self {
        X3dWeights { layout, identity_s2_shortcut_bn: layout == Layout::Hub, inner }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }
}

impl WeightSource for X3dWeights<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let s2_bn = name.strip_prefix("s2.pathway0_res0.branch1_bn.");
        if let (true, Some(field)) = (self.identity_s2_shortcut_bn, s2_bn) {
            let dev = &candle_core::Device::Cpu;
            return Ok(match field {
                "weight" => Tensor::full((1.0 + BN_EPS).sqrt() as f32, shape, dev)?,
                "running_var" => Tensor::ones(shape, candle_core::DType::F32, dev)?,
                _ => Tensor::zeros(shape, candle_core::DType::F32, dev)?,
            });
        }
        match self.layout {
            Layout::Pyslowfast => self.inner.take(name, shape),
            Layout::Hub => {
                let ptv = hub_name(name).with_context(|| format!("no PyTorchVideo name for {name}"))?;
                self.inner.take(&ptv, shape)
            }
        }
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        match self.layout {
            Layout::Pyslowfast => self.inner.shape(name),
            Layout::Hub => self.inner.shape(&hub_name(name)?),
        }
    }
}
