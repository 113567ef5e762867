//! X3D-XS/S/M/L (Feichtenhofer 2020) and its continual form CoX3D (Hedegaard & Iosifidis 2022).
//!
//! One definition, two paths: the network is built once from engine layers, named like the
//! pyslowfast checkpoint (models-x3d-slowfast.md §1.4), with every BatchNorm folded into the conv
//! before it (§2.6). `forward_clip` is the regular X3D (clip-wise squeeze-excitation), `step` the
//! continual CoX3D (frame-wise squeeze-excitation, §2.4), over the same weights.
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

use crate::weights::BatchNorm;
use crate::engine::{
    Chw, Delay, Frame, FrameRef, Layer, LayerReport, PadMode, Parallel, Pointwise, PoolKind, Reduce, SeScope, Sequential, SpatialPool,
    SqueezeExcite, Temporal, TemporalConv, TemporalPad, TemporalPool, Relay, Scratch,
};
use crate::error::{ErrorKind, classified};
use crate::models::{
    Fill, ModelDescription, ModelOptions, ModelSpec, Normalize, Schedule, StreamModel, StreamShape, WeightSource,
    softmax_mean,
};

/// BatchNorm epsilon of every X3D BN (§0).
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
    /// variants because 2.2 × 5 must give 11 (§7.13).
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
    /// The four official Kinetics-400 variants (§1.1).
    pub fn variant(name: &str) -> anyhow::Result<Self> {
        let canonical = name.to_ascii_lowercase();
        let short = canonical.strip_prefix("co").unwrap_or(&canonical);
        let (t, tau, crop, blocks) = match short {
            "x3d-xs" => (4, 12, 160, [3, 5, 11, 7]),
            "x3d-s" => (13, 6, 160, [3, 5, 11, 7]),
            "x3d-m" => (16, 5, 224, [3, 5, 11, 7]),
            "x3d-l" => (16, 5, 312, [5, 10, 25, 15]),
            _ => {
                return Err(classified(
                    ErrorKind::Usage,
                    format!("unknown X3D variant '{name}' (known: {})", variants().join(", ")),
                ));
            }
        };
        Ok(X3dConfig {
            name: short.to_string(),
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

    /// `(din, dout, inner, se_hidden)` of each stage s2..s5 (§1.2).
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

/// The built-in variants, in size order.
pub fn variants() -> Vec<&'static str> {
    vec!["x3d-xs", "x3d-s", "x3d-m", "x3d-l"]
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
    branch2.push(TemporalConv::new(
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
    .with_scratch_output(Scratch::Depthwise));
    if let Some(se) = &b.se {
        let se = SqueezeExcite::new(format!("{n}.branch2.se"), &se.w1, &se.b1, &se.w2, &se.b2, se_scope)?;
        branch2.push(se.with_scratch_output(Scratch::Excite));
    }
    branch2.push(Pointwise::swish());
    branch2.push(pointwise(&format!("{n}.branch2.c"), &b.c)?);

    let shortcut: Box<dyn Layer> = match &b.branch1 {
        Some(f) => boxed(TemporalConv::new(
            format!("{n}.branch1"),
            &f.w,
            Some(&f.b),
            1,
            TemporalPad::symmetric(0),
            b.stride,
            [0; 4],
            1,
            Fill::Zeros,
        )?
        .with_folded_bn()),
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
    let avg_pool = TemporalPool::new(
        "head.avg_pool",
        PoolKind::Avg,
        pool,
        1,
        TemporalPad::symmetric(0),
        Some(SpatialPool::Avg { k }),
        Fill::Zeros,
    )?;
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

/// X3D / CoX3D over one set of folded weights.
pub struct CoX3d {
    config: X3dConfig,
    spec: ModelSpec,
    pool: usize,
    /// Frame-wise SE: the streaming network (its clip path is `F_fw` of §2.8).
    backbone: Sequential,
    /// Clip-wise SE: the regular X3D backbone (clip path only).
    clip_backbone: Sequential,
    head: Sequential,
    params: usize,
    /// The step input, channels-last.
    input: Frame,
    schedule: Schedule,
    /// The two-stage pipeline over the backbone's units and the head, used under
    /// [`Schedule::Pipeline`] (kept across switches: it holds the measured balance).
    relay: Relay,
}

impl CoX3d {
    /// Build from `config` with head window `pool` (None = the training clip length) and start fill.
    pub fn new(config: X3dConfig, pool: Option<usize>, fill: Fill, ws: &mut dyn WeightSource) -> anyhow::Result<Self> {
        let pool = pool.unwrap_or(config.num_frames);
        if pool == 0 {
            return Err(classified(ErrorKind::Usage, "--pool must be at least 1"));
        }
        let mut counting = CountingSource { inner: ws, learnable: 0 };
        let params = load(&config, &mut counting).with_context(|| format!("loading {} weights", config.name))?;
        let learnable = counting.learnable;
        let clip_backbone = backbone(&params, SeScope::Clip, fill, &config)?;
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
        // The first cut balances multiply-accumulates; measured times take over.
        let b = stream_backbone.report(Chw::new(3, config.crop, config.crop));
        let mut estimate: Vec<f64> = b.children.iter().map(|r| macs_of(r) as f64).collect();
        estimate.push(macs_of(&head.report(b.output)) as f64);
        let mut relay = Relay::new(&estimate);
        relay.reserve(b.children.iter().map(|r| r.output.numel()).max().unwrap_or(0));
        Ok(CoX3d {
            config,
            spec,
            pool,
            backbone: stream_backbone,
            clip_backbone,
            head,
            params: learnable,
            input: Frame::default(),
            schedule: Schedule::Split,
            relay,
        })
    }

    pub fn config(&self) -> &X3dConfig {
        &self.config
    }

    /// Head window T_pool in backbone positions.
    pub fn pool(&self) -> usize {
        self.pool
    }

    /// Learnable scalars loaded (conv/linear weights and biases, BN scale and shift).
    pub fn num_params(&self) -> usize {
        self.params
    }

    /// Stem..s5 with frame-wise SE (`B_fw`), or clip-wise SE (`B`, clip path only).
    pub fn backbone(&self, se: SeScope) -> &dyn Layer {
        match se {
            SeScope::Frame => &self.backbone,
            SeScope::Clip => &self.clip_backbone,
        }
    }

    /// conv_5 .. projection (`H_T`), producing logits `(N, classes, H, W)`.
    pub fn head(&self) -> &dyn Layer {
        &self.head
    }

    /// Temporal shape of the whole continual network (backbone then head).
    pub fn temporal(&self) -> Temporal {
        self.backbone.temporal().then(self.head.temporal())
    }

    /// Logits of the regular network on a clip `(T, 3, S, S)` with temporal padding `mode`:
    /// `(positions, classes)`, one row per (time, height, width) position of the head output.
    pub fn clip_logits(&self, clip: &Tensor, se: SeScope, mode: PadMode) -> anyhow::Result<Tensor> {
        let (t, c, h, w) = clip.dims4().context("a clip must be (T, 3, H, W)")?;
        if c != 3 {
            bail!("a clip must have 3 channels, got {c}");
        }
        // The head pools a fixed window sized for the train crop; larger frames give more positions.
        let s = self.config.crop;
        if h < s || w < s {
            bail!(
                "{}: clip frames of {h}x{w} are smaller than the {s}x{s} crop the head is sized for",
                self.config.name
            );
        }
        if t < self.pool {
            bail!("a clip of {t} frames is shorter than the head window {}", self.pool);
        }
        let feats = self.backbone(se).forward(clip, mode)?;
        Ok(positions(&self.head.forward(&feats, mode)?)?)
    }

    /// The regular X3D on a clip `(T, 3, S, S)` (zero-padded convs): class probabilities
    /// `(classes,)`, softmax per head position then mean. `SeScope::Clip` is the published X3D.
    pub fn forward_clip(&self, clip: &Tensor, se: SeScope) -> anyhow::Result<Tensor> {
        let logits = self.clip_logits(clip, se, PadMode::Full)?;
        Ok(candle_nn::ops::softmax(&logits, D::Minus1)?.mean(0)?)
    }

    /// One frame of the stream, planar `(3, S, S)` values; on an output, the class probabilities
    /// (softmax per head position, then mean) go to `probs` and this returns true.
    pub fn step_planar(&mut self, frame: &[f32], probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        crate::engine::session(|| self.step_in_session(frame, probs))
    }

    fn step_in_session(&mut self, frame: &[f32], probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        let s = self.config.crop;
        if frame.len() != 3 * s * s {
            bail!("{}: a frame must be (3, {s}, {s}), got {} values", self.config.name, frame.len());
        }
        if self.schedule == Schedule::Pipeline {
            let (input, head) = (&mut self.input, &mut self.head);
            let mut emit = |feat: FrameRef<'_>| Self::classify(head, feat, probs);
            // The frame's conversion runs on the first stage's thread, beside the second stage.
            return match self.relay.step(self.backbone.units_mut()?, move || channels_last(input, frame, s), &mut emit) {
                Ok(out) => Ok(out),
                Err(e) => {
                    // A stage failed half-way: the stream state is inconsistent.
                    self.reset();
                    Err(e.into())
                }
            };
        }
        let x = channels_last(&mut self.input, frame, s)?;
        let Some(feat) = self.backbone.step_frame(x)? else { return Ok(false) };
        Ok(Self::classify(&mut self.head, feat, probs)?)
    }

    /// The head on a backbone output; the class probabilities into `probs` when it emits.
    fn classify(head: &mut Sequential, feat: FrameRef<'_>, probs: &mut Vec<f32>) -> candle_core::Result<bool> {
        let Some(logits) = head.step_frame(feat)? else { return Ok(false) };
        softmax_mean(logits.data, logits.shape.c, probs);
        Ok(true)
    }

    /// Under [`Schedule::Pipeline`], the output of the last frame, still in flight (see
    /// [`StreamModel::drain`]).
    pub fn drain(&mut self, probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        let (relay, head) = (&mut self.relay, &mut self.head);
        let mut emit = |feat: FrameRef<'_>| Self::classify(head, feat, probs);
        let layers = self.backbone.units_mut()?;
        Ok(crate::engine::session(|| relay.drain(layers, &mut emit))?)
    }

    /// Switch between splitting every operation across the threads and the two-stage pipeline (with
    /// no output in flight).
    pub fn set_schedule(&mut self, schedule: Schedule) -> anyhow::Result<()> {
        if self.relay.in_flight() {
            bail!("{}: the schedule changes only between streams (drain or reset first)", self.config.name);
        }
        self.schedule = schedule;
        Ok(())
    }

    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// [`CoX3d::step_planar`] on a `(3, S, S)` tensor; the probabilities `(classes,)` when emitted.
    pub fn step(&mut self, frame: &Tensor) -> anyhow::Result<Option<Tensor>> {
        StreamModel::step(self, frame)
    }

    fn prime_in_session(&mut self, frame: &[f32], n: usize, probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        let s = self.config.crop;
        if n == 0 {
            return Ok(false);
        }
        // A warm-up starts a stream: nothing of an earlier one stays in flight.
        self.relay.reset();
        if !self.backbone.preserves_constant() {
            // The backbone's outputs differ during the warm-up (zero fill): step them all.
            let mut out = false;
            for _ in 0..n {
                out = CoX3d::step_planar(self, frame, probs)?;
            }
            return Ok(out);
        }
        if frame.len() != 3 * s * s {
            bail!("{}: a frame must be (3, {s}, {s}), got {} values", self.config.name, frame.len());
        }
        self.input.set_planar(frame, Chw::new(3, s, s))?;
        let (count, feat) = self.backbone.prime(self.input.as_ref(), n)?;
        let Some(feat) = feat.filter(|_| count > 0) else { return Ok(false) };
        let (_, logits) = self.head.prime(feat, count)?;
        match logits {
            Some(logits) => {
                softmax_mean(logits.data, logits.shape.c, probs);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// End of a finite stream: every layer processes its end padding; the probabilities of the
    /// outputs this completes, in order. Call `reset` before streaming again.
    pub fn flush(&mut self) -> anyhow::Result<Vec<Tensor>> {
        let mut in_flight = Vec::new();
        let drained = self.drain(&mut in_flight)?.then(|| Tensor::new(in_flight.as_slice(), &candle_core::Device::Cpu));
        let mut logits = Vec::new();
        for feat in self.backbone.flush()? {
            logits.extend(self.head.step(&feat)?);
        }
        logits.extend(self.head.flush()?);
        let mut probs: Vec<Tensor> = drained.transpose()?.into_iter().collect();
        for l in &logits {
            probs.push(probabilities(l)?);
        }
        Ok(probs)
    }

    pub fn reset(&mut self) {
        self.relay.reset();
        self.backbone.reset();
        self.head.reset();
    }

    /// Shapes and multiply-accumulates of one step, layer by layer.
    pub fn report(&self) -> LayerReport {
        let input = Chw::new(3, self.config.crop, self.config.crop);
        let b = self.backbone.report(input);
        let h = self.head.report(b.output);
        LayerReport {
            name: self.config.name.clone(),
            kind: "sequential",
            input,
            output: h.output,
            temporal: self.temporal(),
            children: vec![b, h],
            ..Default::default()
        }
    }

    /// Multiply-accumulates of one continual step (every layer emits once per step: no stride).
    pub fn macs_per_step(&self) -> u64 {
        macs_of(&self.report())
    }
}

/// A planar `(3, s, s)` frame as the network's channels-last input.
fn channels_last<'x>(input: &'x mut Frame, frame: &[f32], s: usize) -> candle_core::Result<FrameRef<'x>> {
    input.set_planar(frame, Chw::new(3, s, s))?;
    Ok(input.as_ref())
}

/// Multiply-accumulates of one step of a layer and its parts (every X3D layer emits once per step).
fn macs_of(r: &LayerReport) -> u64 {
    r.macs_per_output + r.children.iter().map(macs_of).sum::<u64>()
}

impl StreamModel for CoX3d {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn shape(&self) -> StreamShape {
        StreamShape { lag: (self.schedule == Schedule::Pipeline) as usize, ..self.temporal().into() }
    }

    fn step_planar(&mut self, frame: &[f32], probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        CoX3d::step_planar(self, frame, probs)
    }

    fn set_schedule(&mut self, schedule: Schedule) -> anyhow::Result<()> {
        CoX3d::set_schedule(self, schedule)
    }

    fn schedule(&self) -> Schedule {
        CoX3d::schedule(self)
    }

    fn drain(&mut self, probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        CoX3d::drain(self, probs)
    }

    /// Each layer sees its copies once (see `Layer::prime`).
    fn prime(&mut self, frame: &[f32], n: usize, probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        crate::engine::session(|| self.prime_in_session(frame, n, probs))
    }

    fn reset(&mut self) {
        CoX3d::reset(self)
    }

    /// The published regular X3D: squeeze-excitation pooled over the whole clip.
    fn forward_clip(&self, clip: &Tensor) -> anyhow::Result<Tensor> {
        CoX3d::forward_clip(self, clip, SeScope::Clip)
    }

    fn clip_frames(&self) -> usize {
        self.config.num_frames
    }

    fn report(&self) -> LayerReport {
        CoX3d::report(self)
    }
}

/// Counts learnable scalars as they are loaded (running statistics are not learnable).
struct CountingSource<'a> {
    inner: &'a mut dyn WeightSource,
    learnable: usize,
}

impl WeightSource for CountingSource<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let t = self.inner.take(name, shape)?;
        if !name.ends_with("running_mean") && !name.ends_with("running_var") {
            self.learnable += shape.iter().product::<usize>();
        }
        Ok(t)
    }
}

/// Zeros of every requested shape: enough to build the network and read its shape and costs.
struct ShapeOnly;

impl WeightSource for ShapeOnly {
    fn take(&mut self, _name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        Ok(Tensor::zeros(shape, candle_core::DType::F32, &candle_core::Device::Cpu)?)
    }
}

/// Build a named variant (`x3d-xs` … `x3d-l`) with `opts.pool` and `opts.fill`.
/// `weights` is taken by pyslowfast names; wrap a PyTorchVideo hub store in [`X3dWeights`].
pub fn build(variant: &str, opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<CoX3d> {
    CoX3d::new(X3dConfig::variant(variant)?, opts.pool, opts.fill, weights)
}

/// The checkpoint file `build` reads by default: the official pyslowfast file in coinfer's
/// download cache (`weights pull`), unless `opts.weights` names one.
pub fn default_weights(variant: &str, opts: &ModelOptions) -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = &opts.weights {
        return Ok(p.clone());
    }
    let cfg = X3dConfig::variant(variant)?;
    let file = format!("{}.pyth", cfg.name.replace('-', "_"));
    Ok(crate::weights::cache_dir()?.join(file))
}

/// What `coinfer models` shows for a variant, computed from the built network (zero weights).
pub fn describe(variant: &str, opts: &ModelOptions) -> anyhow::Result<ModelDescription> {
    let model = build(variant, opts, &mut ShapeOnly)?;
    let shape = model.shape();
    let weights = default_weights(variant, opts)?;
    let macs = model.macs_per_step();
    let cfg = model.config();
    let n_blocks: usize = cfg.blocks.iter().sum();
    let summary = format!(
        "CoX3D-{}_{}: X3D-{} ({n_blocks} blocks, {:.2} M params) frame by frame at {} fps, {}x{}, \
         first output after {} frames, steady after {}, {:.3} GMAC/frame",
        cfg.name.trim_start_matches("x3d-").to_uppercase(),
        model.pool(),
        cfg.name.trim_start_matches("x3d-").to_uppercase(),
        model.num_params() as f64 / 1e6,
        model.spec().fps,
        cfg.crop,
        cfg.crop,
        shape.delay + 1,
        shape.receptive_field,
        macs as f64 / 1e9,
    );
    Ok(ModelDescription {
        spec: model.spec().clone(),
        shape,
        macs_per_step: macs as f64,
        weights_present: weights.is_file(),
        weights,
        summary,
    })
}

// ------------------------------------------------------------------------------------------------
// Checkpoint layouts.

/// Which published key layout an X3D checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X3dLayout {
    /// facebookresearch/SlowFast (`x3d_s.pyth`): the canonical names of this file.
    PySlowFast,
    /// PyTorchVideo hub (`X3D_S.pyth`): `blocks.N…` names, swapped stem names, no BN on the s2
    /// block-0 shortcut (§1.6).
    PyTorchVideo,
}

impl X3dLayout {
    /// Tell the layout from a checkpoint's tensor names.
    pub fn detect<S: AsRef<str>>(names: &[S]) -> anyhow::Result<Self> {
        let has = |n: &str| names.iter().any(|k| k.as_ref() == n);
        if has("s1.pathway0_stem.conv_xy.weight") {
            Ok(X3dLayout::PySlowFast)
        } else if has("blocks.0.conv.conv_t.weight") {
            Ok(X3dLayout::PyTorchVideo)
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
}

/// The PyTorchVideo name of a pyslowfast X3D tensor name (§1.6); `None` if it has no counterpart.
pub fn ptv_name(name: &str) -> Option<String> {
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
    layout: X3dLayout,
    identity_s2_shortcut_bn: bool,
    inner: &'a mut dyn WeightSource,
}

impl<'a> X3dWeights<'a> {
    /// `names`: the tensor names of the checkpoint behind `inner`, from which the layout is detected.
    pub fn new<S: AsRef<str>>(names: &[S], inner: &'a mut dyn WeightSource) -> anyhow::Result<Self> {
        let layout = X3dLayout::detect(names)?;
        let has = |n: &str| names.iter().any(|k| k.as_ref() == n);
        let bn = "s2.pathway0_res0.branch1_bn";
        let fields = ["weight", "bias", "running_mean", "running_var"];
        let ptv = |n: String| ptv_name(&n).unwrap_or(n);
        let (conv, bns): (String, Vec<String>) = match layout {
            X3dLayout::PySlowFast => {
                ("s2.pathway0_res0.branch1.weight".into(), fields.iter().map(|f| format!("{bn}.{f}")).collect())
            }
            X3dLayout::PyTorchVideo => (
                ptv("s2.pathway0_res0.branch1.weight".into()),
                fields.iter().map(|f| ptv(format!("{bn}.{f}"))).collect(),
            ),
        };
        let identity_s2_shortcut_bn = has(&conv) && bns.iter().all(|n| !has(n));
        Ok(X3dWeights { layout, identity_s2_shortcut_bn, inner })
    }

    /// A known layout; for the hub layout the s2 shortcut BN is the identity.
    pub fn with_layout(layout: X3dLayout, inner: &'a mut dyn WeightSource) -> Self {
        X3dWeights { layout, identity_s2_shortcut_bn: layout == X3dLayout::PyTorchVideo, inner }
    }

    pub fn layout(&self) -> X3dLayout {
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
            X3dLayout::PySlowFast => self.inner.take(name, shape),
            X3dLayout::PyTorchVideo => {
                let ptv = ptv_name(name).with_context(|| format!("no PyTorchVideo name for {name}"))?;
                self.inner.take(&ptv, shape)
            }
        }
    }
}
