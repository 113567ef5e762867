//! The single-pathway ResNet-3D networks and their continual forms: Slow-8×8-R50 (CoSlow) and
//! I3D-8×8-R50 (the CoI3D of the continual paper), both PyTorchVideo `create_resnet` networks built
//! by the ResNet-3D builder ([`super::resnet`]; docs/models.md, "Slow" and "I3D-R50").
//!
//! ```text
//! stem    s1.pathway0_stem   conv kt×7×7 /2 · bn · relu · max pool 1×3×3 /2
//! s2..s5  sK.pathway0_res{i} bottleneck blocks, conv_a kernel kt per block, /2 in block 0 of s3..s5
//! pool    (I3D-R50)          temporal max pool 2, stride 2, after s2
//! head    head               mean over the last T positions and the whole map · projection · softmax
//! ```
//!
//! | variant | T × τ | crop | stem kt | conv_a kt s2 / s3 / s4 / s5 (cycled over blocks) | pool after s2 | head T |
//! |---|---|---|---|---|---|---|
//! | slow-r50 | 8 × 8 | 256 | 1 | 1 / 1 / 3 / 3 | — | 8 |
//! | i3d-r50 | 8 × 8 | 256 | 5 | 3 / 3,1 / 3,1 / 1,3 | 2 | 4 |
//!
//! Widths are ResNet-50's (stem 64, stage out 256 … 2048, inner out/4); depths 3, 4, 6, 3.

use anyhow::{Context, bail};
use candle_core::{D, Tensor};

use super::resnet::{self, HubModules, ResnetWeights, StageSpec};
use crate::engine::{Layer, PadMode, Sequential};
use crate::error::{ErrorKind, classified};
use crate::models::classifier::{Architecture, ContinualClassifier, Parts};
use crate::models::{CountingSource, Fill, ModelOptions, ModelSpec, Normalize, StreamModel, WeightSource};

/// Hyper-parameters of a single-pathway ResNet-3D (PyTorchVideo `create_resnet` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowConfig {
    /// Registry name, e.g. `slow-r50`.
    pub name: String,
    /// Width of the stem (64); the stages follow [`resnet::stage_widths`].
    pub stem_width: usize,
    /// Temporal kernel of the stem conv.
    pub stem_kt: usize,
    /// Blocks in s2..s5.
    pub depths: [usize; 4],
    /// Temporal kernels of conv_a in each stage, repeated over its blocks.
    pub kernels: [Vec<usize>; 4],
    /// Temporal max pool (kernel = stride, no padding) after s2; `None` = none.
    pub res2_pool: Option<usize>,
    /// Side of the square input.
    pub crop: usize,
    /// Clip length T of the regular network (its input frames).
    pub num_frames: usize,
    /// One network frame every τ frames of a 30 fps video.
    pub sampling_rate: usize,
}

/// Name, stem kt, conv_a kernels of s2..s5, pool after s2.
type Variant = (&'static str, usize, [&'static [usize]; 4], Option<usize>);

/// The built-in variants: name, stem kt, conv_a kernels per stage, pool after s2 (docs/models.md,
/// "Slow" and "I3D-R50"). Both take 8 frames at τ = 8 on a 256×256 crop.
const VARIANTS: [Variant; 2] =
    [("slow-r50", 1, [&[1], &[1], &[3], &[3]], None), ("i3d-r50", 5, [&[3], &[3, 1], &[3, 1], &[1, 3]], Some(2))];

/// Longest head window in head positions.
pub use crate::models::MAX_POOL;

impl SlowConfig {
    /// One of the built-in variants (`slow-r50`, `i3d-r50`; a `co` prefix is accepted).
    pub fn variant(name: &str) -> anyhow::Result<Self> {
        let lower = name.to_ascii_lowercase();
        let short = lower.strip_prefix("co").unwrap_or(&lower);
        let Some(&(name, stem_kt, kernels, res2_pool)) = VARIANTS.iter().find(|v| v.0 == short) else {
            let known: Vec<&str> = VARIANTS.iter().map(|v| v.0).collect();
            return Err(classified(ErrorKind::Usage, format!("unknown ResNet-3D variant '{name}' (known: {})", known.join(", "))));
        };
        Ok(SlowConfig {
            name: name.to_string(),
            stem_width: 64,
            stem_kt,
            depths: resnet::R50_DEPTHS,
            kernels: kernels.map(|k| k.to_vec()),
            res2_pool,
            crop: 256,
            num_frames: 8,
            sampling_rate: 8,
        })
    }

    /// The stages s2..s5: widths, per-block kernels, spatial stride 1 then 2.
    pub fn stages(&self) -> [StageSpec; 4] {
        let widths = resnet::stage_widths(self.stem_width, [0; 4]);
        std::array::from_fn(|s| {
            let (din, inner, dout) = widths[s];
            StageSpec { din, inner, dout, kts: resnet::cycle_kernels(&self.kernels[s], self.depths[s]), stride: if s == 0 { 1 } else { 2 } }
        })
    }

    /// Width of the s5 features the head projects.
    pub fn features(&self) -> usize {
        self.stages()[3].dout
    }

    /// Head positions covering the regular clip: T frames, divided by the pool after s2.
    pub fn clip_positions(&self) -> usize {
        self.num_frames / self.res2_pool.unwrap_or(1)
    }

    /// Frames per second of the network's own timeline.
    pub fn fps(&self) -> f64 {
        30.0 / self.sampling_rate as f64
    }

    /// How PyTorchVideo numbers this network's modules.
    pub fn hub_modules(&self) -> HubModules {
        HubModules::Resnet { res2_pool: self.res2_pool.is_some() }
    }
}

/// CoSlow / CoI3D-R50: the shared streaming classifier around the single-pathway ResNet layers.
pub type CoSlow = ContinualClassifier<Slow>;

/// What is the single-pathway ResNet's own in a [`CoSlow`].
pub struct Slow {
    config: SlowConfig,
    /// Head window in head positions.
    pool: usize,
    /// Learnable scalars loaded.
    params: usize,
}

impl CoSlow {
    /// Build from `config` with head window `pool` (None = the positions of the regular clip) and the
    /// stream's start `fill`; the number of classes is the checkpoint head's.
    pub fn new(config: SlowConfig, pool: Option<usize>, fill: Fill, ws: &mut dyn WeightSource) -> anyhow::Result<Self> {
        let pool = pool.unwrap_or(config.clip_positions());
        crate::models::check_pool(&config.name, pool)?;
        let classes = resnet::num_classes(ws)?;
        let mut counting = CountingSource::new(ws);
        let (backbone, head) =
            network(&config, pool, classes, fill, &mut counting).with_context(|| format!("loading {} weights", config.name))?;
        let params = counting.learnable;
        let spec = ModelSpec {
            name: config.name.clone(),
            fps: config.fps(),
            resize_short: config.crop,
            crop: config.crop,
            normalize: Normalize::MeanStd { mean: [0.45; 3], std: [0.225; 3] },
            num_classes: classes,
        };
        let arch = Slow { config, pool, params };
        ContinualClassifier::from_parts(Parts { spec, arch, backbone, head, logit_window: None, pipeline: true })
    }

    pub fn config(&self) -> &SlowConfig {
        &self.arch.config
    }

    /// Head window in head positions.
    pub fn pool(&self) -> usize {
        self.arch.pool
    }

    /// Learnable scalars loaded (conv/linear weights and biases, BN scale and shift).
    pub fn num_params(&self) -> usize {
        self.arch.params
    }

    /// Logits of the regular network on a clip `(T, 3, S, S)` with temporal padding `mode`:
    /// `(positions, classes)`, one row per head window that fits the clip.
    pub fn clip_logits(&self, clip: &Tensor, mode: PadMode) -> anyhow::Result<Tensor> {
        let (t, c, h, w) = clip.dims4().context("a clip must be (T, 3, H, W)")?;
        let (name, s) = (&self.config().name, self.config().crop);
        if c != 3 || h != s || w != s {
            bail!("{name} expects a clip of shape (T, 3, {s}, {s}), got {:?}", clip.dims());
        }
        let need = self.pool() * self.config().res2_pool.unwrap_or(1);
        if t < need {
            bail!("{name}: a clip of {t} frames is shorter than the head window ({need} frames)");
        }
        let feats = self.backbone_layers().forward(clip, mode)?;
        let logits = self.head().forward(&feats, mode)?;
        let (p, k) = (logits.dim(0)?, logits.dim(1)?);
        Ok(logits.reshape((p, k))?)
    }

    /// The regular network on a clip (zero-padded convs): class probabilities `(classes,)`, softmax
    /// per head position, then the mean.
    pub fn forward_clip(&self, clip: &Tensor) -> anyhow::Result<Tensor> {
        let logits = self.clip_logits(clip, PadMode::Full)?;
        Ok(candle_nn::ops::softmax(&logits, D::Minus1)?.mean(0)?)
    }

    /// End of a finite stream: the output in flight (under `Schedule::Pipeline`), then every layer
    /// processes its end padding; the probabilities of the outputs this completes, in order. Call
    /// `reset` before streaming again.
    pub fn flush(&mut self) -> anyhow::Result<Vec<Vec<f32>>> {
        let mut probs = Vec::new();
        let mut in_flight = Vec::new();
        if self.drain(&mut in_flight)? {
            probs.push(in_flight);
        }
        for logits in self.flush_logit_frames()? {
            let mut p = Vec::new();
            crate::models::softmax_mean(&logits.data, logits.shape.c, &mut p);
            probs.push(p);
        }
        Ok(probs)
    }
}

/// The backbone (stem, blocks, the pool after s2 as its own unit) and the head.
fn network(
    cfg: &SlowConfig,
    pool: usize,
    classes: usize,
    fill: Fill,
    ws: &mut dyn WeightSource,
) -> anyhow::Result<(Sequential, Sequential)> {
    let mut units: Vec<Box<dyn Layer>> = vec![Box::new(resnet::stem(ws, 0, cfg.stem_width, cfg.stem_kt, fill)?)];
    for (s, spec) in cfg.stages().iter().enumerate() {
        for block in resnet::stage(ws, s + 2, 0, spec, fill)? {
            units.push(Box::new(block));
        }
        if let (0, Some(k)) = (s, cfg.res2_pool) {
            units.push(Box::new(resnet::temporal_max_pool("s2.pathway0_pool", k, fill)?));
        }
    }
    let head = resnet::head(ws, cfg.features(), classes, pool)?;
    Ok((Sequential::new("backbone", units), head))
}

impl Architecture for Slow {
    fn build(name: &str, opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<CoSlow> {
        CoSlow::new(SlowConfig::variant(name)?, opts.pool, opts.fill, weights)
    }

    /// PyTorchVideo hub (`blocks.N…`) or pyslowfast names; a hub file without `blocks.2.res_blocks`
    /// has the pool after s2 in that place (I3D-R50).
    fn checkpoint<'a>(names: &[String], store: &'a mut crate::weights::TensorStore) -> anyhow::Result<Box<dyn WeightSource + 'a>> {
        let res2_pool = !names.iter().any(|n| n.starts_with("blocks.2.res_blocks."));
        Ok(Box::new(ResnetWeights::from_store(store, HubModules::Resnet { res2_pool }, resnet::R50_DEPTHS, "ResNet-3D")?))
    }

    fn forward_clip(model: &CoSlow, clip: &Tensor) -> anyhow::Result<Tensor> {
        model.forward_clip(clip)
    }

    fn clip_frames(&self) -> usize {
        self.config.num_frames
    }

    fn summary(model: &CoSlow) -> String {
        let (cfg, shape) = (model.config(), model.shape());
        let what = match cfg.res2_pool {
            None => "CoSlow: Slow-8x8-R50",
            Some(_) => "CoI3D: I3D-8x8-R50",
        };
        format!(
            "{what} ({:.2} M params, {} classes) frame by frame at {} fps, {}x{}, one output every {} frames from frame {}, \
             steady after {}, head mean over {} positions, {:.3} GMAC/frame",
            model.num_params() as f64 / 1e6,
            model.spec().num_classes,
            model.spec().fps,
            cfg.crop,
            cfg.crop,
            shape.stride,
            shape.delay + 1,
            shape.receptive_field,
            model.pool(),
            model.macs_per_step() / 1e9,
        )
    }
}
