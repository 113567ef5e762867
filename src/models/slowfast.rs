//! SlowFast-8×8-R50 and its continual form, CoSlowFast: two ResNet-3D pathways on two clocks,
//! built by the ResNet-3D builder ([`super::resnet`]) and composed as one engine graph
//! (docs/models.md, "SlowFast"; docs/continual.md, "Joins and clocks").
//!
//! ```text
//! input      fast frames (15 fps for 8×8)
//! fast       s1.pathway1_stem (kt 5) · s2..s5 pathway1 blocks (kt 3)          every frame
//! slow       every α-th frame · s1.pathway0_stem (kt 1) · s2..s5 pathway0 blocks (kt 1, 1, 3, 3)
//! laterals   sK_fuse (K = 1..4): conv 7×1×1 stride α on the fast features · bn · relu,
//!            concatenated onto the slow features of the same position (slow first) before s2..s5
//! head       slow s5 ⧺ fast s5 averaged over each group of α positions, joined by position;
//!            mean over the last T_s positions and the whole map · projection · softmax
//! ```
//!
//! Widths: slow stem 64, fast stem 64/β (8), laterals 2× the fast width; depths 3, 4, 6, 3.

use anyhow::{Context, bail};
use candle_core::{D, Tensor};

use super::resnet::{self, HubModules, ResnetWeights, StageSpec};
use crate::engine::{GraphBuilder, Layer, PadMode, PoolKind, Reduce, Sequential, TemporalPad, TemporalPool};
use crate::error::{ErrorKind, classified};
use crate::models::classifier::{Architecture, ContinualClassifier, Parts};
use crate::models::{CountingSource, Fill, ModelOptions, ModelSpec, Normalize, StreamModel, WeightSource};

/// Hyper-parameters of a SlowFast ResNet-3D (PyTorchVideo `create_slowfast` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowFastConfig {
    /// Registry name, `slowfast-r50`.
    pub name: String,
    /// Stem widths of the slow and the fast pathway (64 and 64 / β).
    pub slow_stem: usize,
    pub fast_stem: usize,
    /// Temporal kernels of the slow and fast stem convs.
    pub slow_stem_kt: usize,
    pub fast_stem_kt: usize,
    /// Blocks in s2..s5 (both pathways).
    pub depths: [usize; 4],
    /// Temporal kernels of conv_a per stage, repeated over its blocks.
    pub slow_kernels: [Vec<usize>; 4],
    pub fast_kernels: [Vec<usize>; 4],
    /// Frame-rate ratio α: the slow pathway takes every α-th fast frame; the laterals' stride.
    pub alpha: usize,
    /// Temporal kernel of the laterals (padding `kernel / 2`).
    pub fusion_kernel: usize,
    /// Lateral output width over the fast width.
    pub fusion_ratio: usize,
    /// Side of the square input.
    pub crop: usize,
    /// Fast frames of the regular clip (32 for 8×8: 8 slow frames).
    pub num_frames: usize,
    /// One fast frame every τ frames of a 30 fps video.
    pub sampling_rate: usize,
}

/// Longest head window in slow positions.
pub use crate::models::MAX_POOL;

impl SlowFastConfig {
    /// The built-in variant (`slowfast-r50`; a `co` prefix is accepted).
    pub fn variant(name: &str) -> anyhow::Result<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.strip_prefix("co").unwrap_or(&lower) != "slowfast-r50" {
            return Err(classified(ErrorKind::Usage, format!("unknown SlowFast variant '{name}' (known: slowfast-r50)")));
        }
        Ok(SlowFastConfig {
            name: "slowfast-r50".into(),
            slow_stem: 64,
            fast_stem: 8,
            slow_stem_kt: 1,
            fast_stem_kt: 5,
            depths: resnet::R50_DEPTHS,
            slow_kernels: [vec![1], vec![1], vec![3], vec![3]],
            fast_kernels: [vec![3], vec![3], vec![3], vec![3]],
            alpha: 4,
            fusion_kernel: 7,
            fusion_ratio: 2,
            crop: 256,
            num_frames: 32,
            sampling_rate: 2,
        })
    }

    /// The fast pathway's stages s2..s5.
    pub fn fast_stages(&self) -> [StageSpec; 4] {
        stages(resnet::stage_widths(self.fast_stem, [0; 4]), &self.fast_kernels, self.depths)
    }

    /// Lateral widths `(fast in, out)` after the stem, s2, s3 and s4.
    pub fn laterals(&self) -> [(usize, usize); 4] {
        let fast = self.fast_stages();
        let c_in = [self.fast_stem, fast[0].dout, fast[1].dout, fast[2].dout];
        c_in.map(|c| (c, self.fusion_ratio * c))
    }

    /// The slow pathway's stages s2..s5: each takes the lateral's channels after its own.
    pub fn slow_stages(&self) -> [StageSpec; 4] {
        stages(resnet::stage_widths(self.slow_stem, self.laterals().map(|l| l.1)), &self.slow_kernels, self.depths)
    }

    /// Width of the head's features: slow s5 and fast s5.
    pub fn features(&self) -> usize {
        self.slow_stages()[3].dout + self.fast_stages()[3].dout
    }

    /// Slow positions covering the regular clip.
    pub fn clip_positions(&self) -> usize {
        self.num_frames / self.alpha
    }

    /// Frames per second of the fast timeline (the stream's).
    pub fn fps(&self) -> f64 {
        30.0 / self.sampling_rate as f64
    }
}

fn stages(widths: [(usize, usize, usize); 4], kernels: &[Vec<usize>; 4], depths: [usize; 4]) -> [StageSpec; 4] {
    std::array::from_fn(|s| {
        let (din, inner, dout) = widths[s];
        StageSpec { din, inner, dout, kts: resnet::cycle_kernels(&kernels[s], depths[s]), stride: if s == 0 { 1 } else { 2 } }
    })
}

/// CoSlowFast: the shared streaming classifier around the SlowFast graph.
pub type CoSlowFast = ContinualClassifier<SlowFast>;

/// What is SlowFast's own in a [`CoSlowFast`].
pub struct SlowFast {
    config: SlowFastConfig,
    /// Head window in slow positions.
    pool: usize,
    /// Learnable scalars loaded.
    params: usize,
}

impl CoSlowFast {
    /// Build from `config` with head window `pool` in slow positions (None = the regular clip's) and
    /// the stream's start `fill`; the number of classes is the checkpoint head's.
    pub fn new(config: SlowFastConfig, pool: Option<usize>, fill: Fill, ws: &mut dyn WeightSource) -> anyhow::Result<Self> {
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
        let arch = SlowFast { config, pool, params };
        // One graph unit: the two-stage pipeline has nothing to cut between.
        ContinualClassifier::from_parts(Parts { spec, arch, backbone, head, logit_window: None, pipeline: false })
    }

    pub fn config(&self) -> &SlowFastConfig {
        &self.arch.config
    }

    /// Head window in slow positions.
    pub fn pool(&self) -> usize {
        self.arch.pool
    }

    /// Learnable scalars loaded (conv/linear weights and biases, BN scale and shift).
    pub fn num_params(&self) -> usize {
        self.arch.params
    }

    /// Logits of the regular network on a fast clip `(T, 3, S, S)` (slow = every α-th frame) with
    /// temporal padding `mode`: `(positions, classes)`, one row per head window that fits the clip.
    pub fn clip_logits(&self, clip: &Tensor, mode: PadMode) -> anyhow::Result<Tensor> {
        let (t, c, h, w) = clip.dims4().context("a clip must be (T, 3, H, W)")?;
        let (name, s) = (&self.config().name, self.config().crop);
        if c != 3 || h != s || w != s {
            bail!("{name} expects a clip of shape (T, 3, {s}, {s}), got {:?}", clip.dims());
        }
        let need = self.pool() * self.config().alpha;
        if t < need {
            bail!("{name}: a clip of {t} frames is shorter than the head window ({need} frames)");
        }
        let feats = self.backbone_layers().forward(clip, mode)?;
        let logits = self.head().forward(&feats, mode)?;
        let (p, k) = (logits.dim(0)?, logits.dim(1)?);
        Ok(logits.reshape((p, k))?)
    }

    /// The regular network on a clip (zero-padded convs, slow = every α-th frame): class
    /// probabilities `(classes,)`, softmax per head position, then the mean.
    pub fn forward_clip(&self, clip: &Tensor) -> anyhow::Result<Tensor> {
        let logits = self.clip_logits(clip, PadMode::Full)?;
        Ok(candle_nn::ops::softmax(&logits, D::Minus1)?.mean(0)?)
    }

    /// End of a finite stream: every layer processes its end padding; the probabilities of the
    /// outputs this completes, in order. Call `reset` before streaming again.
    pub fn flush(&mut self) -> anyhow::Result<Vec<Vec<f32>>> {
        let mut probs = Vec::new();
        for logits in self.flush_logit_frames()? {
            let mut p = Vec::new();
            crate::models::softmax_mean(&logits.data, logits.shape.c, &mut p);
            probs.push(p);
        }
        Ok(probs)
    }
}

/// The two pathways, laterals and head join as one graph (the backbone's single unit), and the head.
fn network(
    cfg: &SlowFastConfig,
    pool: usize,
    classes: usize,
    fill: Fill,
    ws: &mut dyn WeightSource,
) -> anyhow::Result<(Sequential, Sequential)> {
    let (alpha, fusion) = (cfg.alpha, cfg.fusion_kernel);
    let laterals = cfg.laterals();
    let mut g = GraphBuilder::new("slowfast");
    let x = g.input();
    let mut fast = g.layer(x, resnet::stem(ws, 1, cfg.fast_stem, cfg.fast_stem_kt, fill)?);
    // Slow position j is fast frame α·j (docs/models.md, "SlowFast": not the official clip sampling).
    let every = TemporalPool::new("slow.subsample", PoolKind::Max, 1, alpha, TemporalPad::symmetric(0), None, fill)?;
    let slow = g.layer(x, every);
    let mut slow = g.layer(slow, resnet::stem(ws, 0, cfg.slow_stem, cfg.slow_stem_kt, fill)?);
    let lateral = g.layer(fast, resnet::fuse(ws, 1, laterals[0], fusion, alpha, fill)?);
    slow = g.join("s1_fuse.join", &[slow, lateral], Reduce::Concat)?;
    for (s, (slow_spec, fast_spec)) in cfg.slow_stages().iter().zip(cfg.fast_stages().iter()).enumerate() {
        let stage = s + 2;
        let slow_blocks = boxed_blocks(resnet::stage(ws, stage, 0, slow_spec, fill)?);
        slow = g.layer(slow, Sequential::new(format!("s{stage}.pathway0"), slow_blocks));
        let fast_blocks = boxed_blocks(resnet::stage(ws, stage, 1, fast_spec, fill)?);
        fast = g.layer(fast, Sequential::new(format!("s{stage}.pathway1"), fast_blocks));
        if stage < 5 {
            let lateral = g.layer(fast, resnet::fuse(ws, stage, laterals[s + 1], fusion, alpha, fill)?);
            slow = g.join(&format!("s{stage}_fuse.join"), &[slow, lateral], Reduce::Concat)?;
        }
    }
    // The fast features of slow position j: the mean of fast positions αj … αj + α − 1, so that the
    // head's mean over T_s slow positions is the mean over the α·T_s fast ones.
    let groups = TemporalPool::new("head.fast_pool", PoolKind::Avg, alpha, alpha, TemporalPad::symmetric(0), None, fill)?;
    let fast = g.layer(fast, groups);
    let features = g.join("head.join", &[slow, fast], Reduce::Concat)?;
    let graph = g.build(features)?;
    let head = resnet::head(ws, cfg.features(), classes, pool)?;
    Ok((Sequential::new("backbone", vec![Box::new(graph)]), head))
}

fn boxed_blocks(blocks: Vec<Sequential>) -> Vec<Box<dyn Layer>> {
    blocks.into_iter().map(|b| Box::new(b) as Box<dyn Layer>).collect()
}

// ------------------------------------------------------------------------------------------------
// The Caffe2 layout of pyslowfast's `.pkl` model zoo (docs/models.md, "SlowFast").

/// A Caffe2 checkpoint (numpy blobs under `blobs/`) seen through the canonical pyslowfast names.
pub struct Caffe2Weights<'a> {
    /// Blocks per stage of the fast pathway: a lateral's blob is named after the stage's last block.
    depths: [usize; 4],
    inner: &'a mut dyn WeightSource,
}

impl<'a> Caffe2Weights<'a> {
    pub fn new(depths: [usize; 4], inner: &'a mut dyn WeightSource) -> Self {
        Caffe2Weights { depths, inner }
    }
}

/// Whether tensor names are those of a Caffe2 blob pickle.
pub fn is_caffe2(names: &[String]) -> bool {
    names.iter().any(|n| n == "blobs/conv1_w")
}

/// Blobs of the Caffe2 training state that the network does not use.
pub fn caffe2_solver_blob(name: &str) -> bool {
    let blob = name.strip_prefix("blobs/").unwrap_or(name);
    blob == "lr" || blob == "model_iter" || blob.ends_with("_momentum")
}

/// The Caffe2 blob name of a canonical (pyslowfast) name; `None` if it has none.
pub fn caffe2_name(name: &str, depths: [usize; 4]) -> Option<String> {
    let bn_field = |f: &str| match f {
        "weight" => Some("s"),
        "bias" => Some("b"),
        "running_mean" => Some("rm"),
        "running_var" => Some("riv"),
        _ => None,
    };
    // `conv.weight` → `{prefix}_w`, `bn.field` → `{prefix}_bn_{s,b,rm,riv}`.
    let leaf = |prefix: String, module: &str, field: &str, conv: &str, bn: &str| -> Option<String> {
        if module == conv && field == "weight" {
            Some(format!("{prefix}_w"))
        } else if module == bn {
            Some(format!("{prefix}_bn_{}", bn_field(field)?))
        } else {
            None
        }
    };
    if let Some(field) = name.strip_prefix("head.projection.") {
        return match field {
            "weight" => Some("pred_w".into()),
            "bias" => Some("pred_b".into()),
            _ => None,
        };
    }
    let (head, field) = name.rsplit_once('.')?;
    if let Some((stage, module)) = head.split_once("_fuse.") {
        let k: usize = stage.strip_prefix('s')?.parse().ok()?;
        let prefix = match k {
            1 => "t_pool1_subsample".to_string(),
            2..=4 => format!("t_res{k}_{}_branch2c_bn_subsample", depths[k - 2].checked_sub(1)?),
            _ => return None,
        };
        return leaf(prefix, module, field, "conv_f2s", "bn");
    }
    let (stage, rest) = head.split_once(".pathway")?;
    let k: usize = stage.strip_prefix('s')?.parse().ok()?;
    let (p, rest) = rest.split_at_checked(1)?;
    let t = match p {
        "0" => "",
        "1" => "t_",
        _ => return None,
    };
    if let Some(module) = rest.strip_prefix("_stem.") {
        return (k == 1).then(|| leaf(format!("{t}res_conv1"), module, field, "conv", "bn"))?.map(|n| {
            // The stem conv is `conv1_w`, its BN `res_conv1_bn_*`.
            if n.ends_with("res_conv1_w") { format!("{t}conv1_w") } else { n }
        });
    }
    let (i, module) = rest.strip_prefix("_res")?.split_once('.')?;
    let i: usize = i.parse().ok()?;
    if !(2..=5).contains(&k) {
        return None;
    }
    let prefix = format!("{t}res{k}_{i}");
    match module {
        "branch1" | "branch1_bn" => leaf(format!("{prefix}_branch1"), module, field, "branch1", "branch1_bn"),
        _ => {
            let m = module.strip_prefix("branch2.")?;
            let conv = m.get(..1)?;
            leaf(format!("{prefix}_branch2{conv}"), m, field, conv, &format!("{conv}_bn"))
        }
    }
}

impl WeightSource for Caffe2Weights<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let blob = caffe2_name(name, self.depths).with_context(|| format!("no Caffe2 blob name for {name}"))?;
        let source = format!("blobs/{blob}");
        // Caffe2 may store a blob with its trailing singleton dims dropped.
        match self.inner.shape(&source) {
            Some(stored) if stored != shape && shape.starts_with(&stored) && shape[stored.len()..].iter().all(|&d| d == 1) => {
                Ok(self.inner.take(&source, &stored)?.reshape(shape)?)
            }
            _ => self.inner.take(&source, shape),
        }
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.inner.shape(&format!("blobs/{}", caffe2_name(name, self.depths)?))
    }
}

impl Architecture for SlowFast {
    fn build(name: &str, opts: &ModelOptions, weights: &mut dyn WeightSource) -> anyhow::Result<CoSlowFast> {
        CoSlowFast::new(SlowFastConfig::variant(name)?, opts.pool, opts.fill, weights)
    }

    /// PyTorchVideo hub (`blocks.N.multipathway_…`), pyslowfast names, or pyslowfast's Caffe2 blobs.
    fn checkpoint<'a>(names: &[String], store: &'a mut crate::weights::TensorStore) -> anyhow::Result<Box<dyn WeightSource + 'a>> {
        if is_caffe2(names) {
            store.ignore(caffe2_solver_blob);
            return Ok(Box::new(Caffe2Weights::new(resnet::R50_DEPTHS, store)));
        }
        Ok(Box::new(ResnetWeights::new(names, HubModules::SlowFast, "SlowFast", store)?))
    }

    fn forward_clip(model: &CoSlowFast, clip: &Tensor) -> anyhow::Result<Tensor> {
        model.forward_clip(clip)
    }

    fn clip_frames(&self) -> usize {
        self.config.num_frames
    }

    fn summary(model: &CoSlowFast) -> String {
        let (cfg, shape) = (model.config(), model.shape());
        format!(
            "CoSlowFast: SlowFast-8x8-R50 ({:.2} M params, {} classes) frame by frame at {} fps, slow pathway on every {}th frame, \
             {}x{}, one output every {} frames from frame {}, steady after {}, head mean over {} slow positions \
             (the window's {} fast frames), {:.3} GMAC/frame",
            model.num_params() as f64 / 1e6,
            model.spec().num_classes,
            model.spec().fps,
            cfg.alpha,
            cfg.crop,
            cfg.crop,
            shape.stride,
            shape.delay + 1,
            shape.receptive_field,
            model.pool(),
            model.pool() * cfg.alpha,
            model.macs_per_step() / 1e9,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caffe2_names_follow_the_pyslowfast_conversion() {
        let d = resnet::R50_DEPTHS;
        let c2 = |n: &str| caffe2_name(n, d).unwrap();
        assert_eq!(c2("s1.pathway0_stem.conv.weight"), "conv1_w");
        assert_eq!(c2("s1.pathway1_stem.conv.weight"), "t_conv1_w");
        assert_eq!(c2("s1.pathway0_stem.bn.running_var"), "res_conv1_bn_riv");
        assert_eq!(c2("s1.pathway1_stem.bn.weight"), "t_res_conv1_bn_s");
        assert_eq!(c2("s2.pathway0_res0.branch1.weight"), "res2_0_branch1_w");
        assert_eq!(c2("s4.pathway1_res5.branch1_bn.bias"), "t_res4_5_branch1_bn_b");
        assert_eq!(c2("s3.pathway0_res2.branch2.a.weight"), "res3_2_branch2a_w");
        assert_eq!(c2("s5.pathway1_res1.branch2.c_bn.running_mean"), "t_res5_1_branch2c_bn_rm");
        assert_eq!(c2("s1_fuse.conv_f2s.weight"), "t_pool1_subsample_w");
        assert_eq!(c2("s1_fuse.bn.bias"), "t_pool1_subsample_bn_b");
        assert_eq!(c2("s2_fuse.conv_f2s.weight"), "t_res2_2_branch2c_bn_subsample_w");
        assert_eq!(c2("s4_fuse.bn.running_var"), "t_res4_5_branch2c_bn_subsample_bn_riv");
        assert_eq!(c2("head.projection.weight"), "pred_w");
        assert_eq!(c2("head.projection.bias"), "pred_b");
        assert_eq!(caffe2_name("s5_fuse.conv_f2s.weight", d), None);
        assert_eq!(caffe2_name("s2.pathway0_stem.conv.weight", d), None);
        assert!(caffe2_solver_blob("blobs/res2_0_branch1_w_momentum") && caffe2_solver_blob("blobs/lr"));
        assert!(!caffe2_solver_blob("blobs/res2_0_branch1_w"));
    }

    #[test]
    fn widths_are_slowfast_r50() {
        let cfg = SlowFastConfig::variant("coslowfast-r50").unwrap();
        assert_eq!(cfg.laterals(), [(8, 16), (32, 64), (64, 128), (128, 256)]);
        let slow: Vec<(usize, usize)> = cfg.slow_stages().iter().map(|s| (s.din, s.dout)).collect();
        assert_eq!(slow, vec![(80, 256), (320, 512), (640, 1024), (1280, 2048)]);
        let fast: Vec<(usize, usize)> = cfg.fast_stages().iter().map(|s| (s.din, s.dout)).collect();
        assert_eq!(fast, vec![(8, 32), (32, 64), (64, 128), (128, 256)]);
        assert_eq!(cfg.features(), 2304);
    }
}
