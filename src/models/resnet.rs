//! The ResNet-3D builder shared by Slow, I3D-R50 and SlowFast (docs/models.md, "ResNet-3D").
//!
//! Every piece is built from a [`WeightSource`] by its pyslowfast name (the canonical names of the
//! family) with each BatchNorm folded into the conv before it, and returned as engine layers:
//!
//! ```text
//! stem      s1.pathway{p}_stem   conv kt×7×7 /2 (pad kt/2, 3) · bn · relu · max pool 1×3×3 /2 (pad 1)
//! block     sK.pathway{p}_res{i} relu( shortcut + branch2 ),
//!                                branch2 = a kt×1×1 (pad kt/2) · a_bn · relu · b 1×3×3 /σ (pad 1)
//!                                          · b_bn · relu · c 1×1×1 · c_bn
//!                                shortcut = branch1 1×1×1 /σ · branch1_bn when the shape changes
//! fuse      sK_fuse              conv_f2s kt×1×1, temporal stride α (pad kt/2) · bn · relu
//! head      head                 mean over the last T positions and the whole map · projection
//! ```
//!
//! The key maps at the end of the file give each canonical name its name in the published layouts
//! (PyTorchVideo hub `blocks.N…`, and Caffe2 blobs through [`crate::weights::caffe2`]);
//! [`ResnetWeights`] reads a checkpoint in any of them.

use anyhow::Context;
use candle_core::Tensor;

use crate::engine::{
    Delay, Layer, Parallel, Pointwise, PoolKind, Reduce, Sequential, SpatialPool, TemporalConv, TemporalPad, TemporalPool,
};
use crate::error::{ErrorKind, classified};
use crate::models::{Fill, WeightSource};
use crate::weights::{BatchNorm, Layout, caffe2};

/// BatchNorm epsilon of every ResNet-3D BN (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// Stage depths of ResNet-50: blocks in s2..s5.
pub const R50_DEPTHS: [usize; 4] = [3, 4, 6, 3];

/// One bottleneck block: widths, the temporal kernel of its `a` conv and the spatial stride of `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub din: usize,
    pub inner: usize,
    pub dout: usize,
    /// Temporal kernel of `branch2.a` (padding `kt / 2`).
    pub kt: usize,
    /// Spatial stride of `branch2.b` and of the shortcut conv.
    pub stride: usize,
}

/// One stage (s2..s5): widths, the temporal kernel of each block, and the stride of block 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// Input width of block 0 (with a fast pathway's lateral, the concatenated width).
    pub din: usize,
    pub inner: usize,
    pub dout: usize,
    /// Temporal kernel of `branch2.a` in each block: the stage has `kts.len()` blocks.
    pub kts: Vec<usize>,
    /// Spatial stride of block 0 (the others have 1).
    pub stride: usize,
}

impl StageSpec {
    /// The blocks in order: block 0 takes `din` at `stride`, the others `dout` at 1.
    pub fn blocks(&self) -> impl Iterator<Item = BlockSpec> + '_ {
        self.kts.iter().enumerate().map(|(i, &kt)| BlockSpec {
            din: if i == 0 { self.din } else { self.dout },
            inner: self.inner,
            dout: self.dout,
            kt,
            stride: if i == 0 { self.stride } else { 1 },
        })
    }
}

/// `(din, inner, dout)` of s2..s5 for a stem of width `stem`: inner = stem · 2^s, out = 4 · inner
/// (the ResNet-50 bottleneck; `lateral[s]` channels join block 0's input of stage `s`).
pub fn stage_widths(stem: usize, lateral: [usize; 4]) -> [(usize, usize, usize); 4] {
    std::array::from_fn(|s| {
        let inner = stem << s;
        let din = if s == 0 { stem } else { 2 * inner } + lateral[s];
        (din, inner, 4 * inner)
    })
}

/// Per-block temporal kernels of a stage of `depth` blocks, cycling through `pattern` (PyTorchVideo
/// repeats a stage's kernel list over its blocks).
pub fn cycle_kernels(pattern: &[usize], depth: usize) -> Vec<usize> {
    pattern.iter().copied().cycle().take(depth).collect()
}

/// Name of block `i` of stage `stage` (2..5) in pathway `pathway` (0 slow, 1 fast).
pub fn block_name(stage: usize, pathway: usize, i: usize) -> String {
    format!("s{stage}.pathway{pathway}_res{i}")
}

// ------------------------------------------------------------------------------------------------
// Tensors, BN folded.

fn take_bn(ws: &mut dyn WeightSource, prefix: &str, c: usize) -> anyhow::Result<BatchNorm> {
    Ok(BatchNorm {
        gamma: Some(ws.take(&format!("{prefix}.weight"), &[c])?),
        beta: ws.take(&format!("{prefix}.bias"), &[c])?,
        mean: ws.take(&format!("{prefix}.running_mean"), &[c])?,
        var: ws.take(&format!("{prefix}.running_var"), &[c])?,
        eps: BN_EPS,
    })
}

/// `{conv}.weight` of `shape` followed by the BN `{bn}`, folded: `(weight, bias)`.
fn conv_bn(ws: &mut dyn WeightSource, conv: &str, bn: &str, shape: [usize; 5]) -> anyhow::Result<(Tensor, Tensor)> {
    let w = ws.take(&format!("{conv}.weight"), &shape)?;
    let bn = take_bn(ws, bn, shape[0])?;
    bn.fold_into(&w, None)
}

/// A conv with its BN folded, temporal kernel `kt` (stride `t_stride`, padding `kt / 2`), spatial
/// kernel `ks` (stride `s_stride`, padding `ks / 2`).
#[allow(clippy::too_many_arguments)]
fn folded_conv(
    ws: &mut dyn WeightSource,
    name: &str,
    bn: &str,
    (c_in, c_out): (usize, usize),
    (kt, ks): (usize, usize),
    (t_stride, s_stride): (usize, usize),
    fill: Fill,
) -> anyhow::Result<TemporalConv> {
    let (w, b) = conv_bn(ws, name, bn, [c_out, c_in, kt, ks, ks])?;
    let conv = if kt == 1 && ks == 1 && t_stride == 1 && s_stride == 1 {
        TemporalConv::pointwise(name, &w, Some(&b))?
    } else {
        TemporalConv::new(name, &w, Some(&b), t_stride, TemporalPad::symmetric(kt / 2), s_stride, [ks / 2; 4], 1, fill)?
    };
    Ok(conv.with_folded_bn())
}

fn boxed(l: impl Layer + 'static) -> Box<dyn Layer> {
    Box::new(l)
}

// ------------------------------------------------------------------------------------------------
// Pieces.

/// `s1.pathway{pathway}_stem`: conv `kt×7×7` stride (1, 2, 2) pad (kt/2, 3, 3) · BN · ReLU, then the
/// spatial max pool 3×3 stride 2 pad 1 (its padding never wins: the input is ≥ 0 after the ReLU).
pub fn stem(ws: &mut dyn WeightSource, pathway: usize, c_out: usize, kt: usize, fill: Fill) -> anyhow::Result<Sequential> {
    let name = format!("s1.pathway{pathway}_stem");
    let conv = folded_conv(ws, &format!("{name}.conv"), &format!("{name}.bn"), (3, c_out), (kt, 7), (1, 2), fill)?;
    let pool = Pointwise::pool(SpatialPool::Max { k: 3, stride: 2, pad: [1; 4] });
    Ok(Sequential::new(name, vec![boxed(conv), boxed(Pointwise::relu()), boxed(pool)]))
}

/// The bottleneck block `name` (`sK.pathway{p}_res{i}`): `relu(shortcut(x) + branch2(x))`. The
/// parallel container delays an identity shortcut to meet branch2's delay (`kt / 2` steps).
pub fn bottleneck(ws: &mut dyn WeightSource, name: &str, b: &BlockSpec, fill: Fill) -> anyhow::Result<Sequential> {
    let br = format!("{name}.branch2");
    let a = folded_conv(ws, &format!("{br}.a"), &format!("{br}.a_bn"), (b.din, b.inner), (b.kt, 1), (1, 1), fill)?;
    let conv_b = folded_conv(ws, &format!("{br}.b"), &format!("{br}.b_bn"), (b.inner, b.inner), (1, 3), (1, b.stride), fill)?;
    let c = folded_conv(ws, &format!("{br}.c"), &format!("{br}.c_bn"), (b.inner, b.dout), (1, 1), (1, 1), fill)?;
    let branch2 = Sequential::new(br, vec![boxed(a), boxed(Pointwise::relu()), boxed(conv_b), boxed(Pointwise::relu()), boxed(c)]);
    let shortcut = if b.din != b.dout || b.stride != 1 {
        boxed(folded_conv(ws, &format!("{name}.branch1"), &format!("{name}.branch1_bn"), (b.din, b.dout), (1, 1), (1, b.stride), fill)?)
    } else {
        boxed(Delay::new(0))
    };
    let sum = Parallel::new(format!("{name}.sum"), vec![shortcut, boxed(branch2)], Reduce::Sum)?;
    Ok(Sequential::new(name, vec![boxed(sum), boxed(Pointwise::relu())]))
}

/// The blocks of stage `stage` (2..5) of pathway `pathway`, in order (each one a unit a pipelined
/// step can cut between).
pub fn stage(ws: &mut dyn WeightSource, stage: usize, pathway: usize, spec: &StageSpec, fill: Fill) -> anyhow::Result<Vec<Sequential>> {
    spec.blocks().enumerate().map(|(i, b)| bottleneck(ws, &block_name(stage, pathway, i), &b, fill)).collect()
}

/// The lateral `s{stage}_fuse` (stage 1 after the stems, 2..4 after those stages): `conv_f2s`
/// `kt×1×1` from `c_in` fast channels to `c_out`, temporal stride `alpha`, padding `kt / 2`, BN, ReLU.
pub fn fuse(
    ws: &mut dyn WeightSource,
    stage: usize,
    (c_in, c_out): (usize, usize),
    kt: usize,
    alpha: usize,
    fill: Fill,
) -> anyhow::Result<Sequential> {
    let name = format!("s{stage}_fuse");
    let conv = folded_conv(ws, &format!("{name}.conv_f2s"), &format!("{name}.bn"), (c_in, c_out), (kt, 1), (alpha, 1), fill)?;
    Ok(Sequential::new(name, vec![boxed(conv), boxed(Pointwise::relu())]))
}

/// A temporal max pool of kernel = stride `k` without padding (I3D-R50's pool after res2).
pub fn temporal_max_pool(name: &str, k: usize, fill: Fill) -> anyhow::Result<TemporalPool> {
    Ok(TemporalPool::new(name, PoolKind::Max, k, k, TemporalPad::symmetric(0), None, fill)?)
}

/// The head's pool: mean over the last `positions` temporal positions and the whole spatial map, one
/// output per position (stride 1).
pub fn head_pool(name: &str, positions: usize) -> anyhow::Result<TemporalPool> {
    Ok(TemporalPool::new(name, PoolKind::Avg, positions, 1, TemporalPad::symmetric(0), Some(SpatialPool::GlobalMean), Fill::Zeros)?)
}

/// Number of classes of the checkpoint's `head.projection` (see [`crate::models::head_classes`]);
/// Kinetics-400's where the source makes its tensors up.
pub fn num_classes(ws: &dyn WeightSource) -> anyhow::Result<usize> {
    crate::models::head_classes(ws, "head.projection.weight", crate::labels::KINETICS400_CLASSES)
}

/// `head.projection`: `features → classes` with bias, on the pooled features.
pub fn projection(ws: &mut dyn WeightSource, features: usize, classes: usize) -> anyhow::Result<TemporalConv> {
    let w = ws.take("head.projection.weight", &[classes, features])?;
    let b = ws.take("head.projection.bias", &[classes])?;
    Ok(TemporalConv::pointwise("head.projection", &w, Some(&b))?)
}

/// The single-pathway head: [`head_pool`] over `positions`, then [`projection`].
pub fn head(ws: &mut dyn WeightSource, features: usize, classes: usize, positions: usize) -> anyhow::Result<Sequential> {
    Ok(Sequential::new("head", vec![boxed(head_pool("head.pool", positions)?), boxed(projection(ws, features, classes)?)]))
}

// ------------------------------------------------------------------------------------------------
// Checkpoint layouts.

/// How a ResNet-3D network's modules are numbered in the PyTorchVideo hub layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubModules {
    /// `create_resnet`: `blocks.0` stem, `blocks.1..4` s2..s5, then the head; with `res2_pool` the
    /// pool after res2 is `blocks.2`, shifting s3..s5 and the head by one.
    Resnet { res2_pool: bool },
    /// `create_slowfast`: `blocks.K-1.multipathway_blocks.{p}` and `.multipathway_fusion`, head `blocks.6`.
    SlowFast,
}

/// The PyTorchVideo hub name of a canonical (pyslowfast) ResNet-3D tensor name; `None` if it has
/// no counterpart.
pub fn hub_name(name: &str, modules: HubModules) -> Option<String> {
    let multi = modules == HubModules::SlowFast;
    // PTV's module index of stage K (1 = stem .. 5) and of the head.
    let index = |k: usize| match modules {
        HubModules::Resnet { res2_pool: true } if k >= 3 => k,
        _ => k - 1,
    };
    let head = match modules {
        HubModules::Resnet { res2_pool: false } => 5,
        _ => 6,
    };
    if let Some(field) = name.strip_prefix("head.projection.") {
        return Some(format!("blocks.{head}.proj.{field}"));
    }
    let (stage, rest) = name.strip_prefix('s')?.split_once(['.', '_'])?;
    let k: usize = stage.parse().ok().filter(|k| (1..=5).contains(k))?;
    if let Some(rest) = name.strip_prefix(&format!("s{k}_fuse.")) {
        let (module, field) = rest.split_once('.')?;
        let ptv = match module {
            "conv_f2s" => "conv_fast_to_slow",
            "bn" => "norm",
            _ => return None,
        };
        return multi.then(|| format!("blocks.{}.multipathway_fusion.{ptv}.{field}", k - 1));
    }
    let rest = rest.strip_prefix("pathway")?;
    let (p, rest) = rest.split_at(1);
    let p: usize = p.parse().ok()?;
    if !multi && p != 0 {
        return None;
    }
    let block = if multi { format!("blocks.{}.multipathway_blocks.{p}", k - 1) } else { format!("blocks.{}", index(k)) };
    if let Some(rest) = rest.strip_prefix("_stem.") {
        let (module, field) = rest.split_once('.')?;
        let ptv = match module {
            "conv" => "conv",
            "bn" => "norm",
            _ => return None,
        };
        return (k == 1).then(|| format!("{block}.{ptv}.{field}"));
    }
    let (i, rest) = rest.strip_prefix("_res")?.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let (module, field) = rest.rsplit_once('.')?;
    let ptv = match module {
        "branch1" => "branch1_conv",
        "branch1_bn" => "branch1_norm",
        "branch2.a" => "branch2.conv_a",
        "branch2.a_bn" => "branch2.norm_a",
        "branch2.b" => "branch2.conv_b",
        "branch2.b_bn" => "branch2.norm_b",
        "branch2.c" => "branch2.conv_c",
        "branch2.c_bn" => "branch2.norm_c",
        _ => return None,
    };
    (k >= 2).then(|| format!("{block}.res_blocks.{i}.{ptv}.{field}"))
}

/// Tell a ResNet-3D checkpoint's layout from its tensor names (docs/models.md, "ResNet-3D").
pub fn detect_layout<S: AsRef<str>>(names: &[S], model: &str) -> anyhow::Result<Layout> {
    let has = |prefix: &str| names.iter().any(|k| k.as_ref().starts_with(prefix));
    if has("s1.pathway0_stem.") {
        Ok(Layout::Pyslowfast)
    } else if has("blocks.0.") {
        Ok(Layout::Hub)
    } else {
        let first: Vec<&str> = names.iter().take(5).map(|k| k.as_ref()).collect();
        Err(classified(
            ErrorKind::Data,
            format!(
                "not a {model} checkpoint: no s1.pathway0_stem.* (pyslowfast) nor blocks.0.* (PyTorchVideo) tensor (first names: {})",
                first.join(", ")
            ),
        ))
    }
}

/// A checkpoint seen through the canonical (pyslowfast) names whatever its layout: pyslowfast
/// names as they are, PyTorchVideo hub names through [`hub_name`], Caffe2 blobs through
/// [`caffe2::blob_name`] (their solver blobs ignored; a blob stored with trailing unit dimensions
/// dropped is taken at its own shape and reshaped).
pub struct ResnetWeights<'a> {
    layout: Layout,
    modules: HubModules,
    /// Stage depths for the Caffe2 lateral names; `None` unless the checkpoint is Caffe2 blobs.
    caffe2_depths: Option<[usize; 4]>,
    inner: &'a mut dyn WeightSource,
}

impl<'a> ResnetWeights<'a> {
    /// `names`: the tensor names of the checkpoint behind `inner`, from which the layout is detected.
    pub fn new<S: AsRef<str>>(names: &[S], modules: HubModules, model: &str, inner: &'a mut dyn WeightSource) -> anyhow::Result<Self> {
        Ok(ResnetWeights { layout: detect_layout(names, model)?, modules, caffe2_depths: None, inner })
    }

    /// A checkpoint store in any of the three layouts (Caffe2 told by its `conv1_w` blob); `depths`:
    /// blocks of s2..s5.
    pub fn from_store(
        store: &'a mut crate::weights::TensorStore,
        modules: HubModules,
        depths: [usize; 4],
        model: &str,
    ) -> anyhow::Result<Self> {
        let names = store.names().to_vec();
        if caffe2::is_caffe2(&names) {
            caffe2::prepare(store)?;
            return Ok(ResnetWeights { layout: Layout::Pyslowfast, modules, caffe2_depths: Some(depths), inner: store });
        }
        Self::new(&names, modules, model, store)
    }

    /// A known layout.
    pub fn with_layout(layout: Layout, modules: HubModules, inner: &'a mut dyn WeightSource) -> Self {
        ResnetWeights { layout, modules, caffe2_depths: None, inner }
    }

    /// The zoo layout: Caffe2 blobs are pyslowfast's (see [`ResnetWeights::is_caffe2`]).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn is_caffe2(&self) -> bool {
        self.caffe2_depths.is_some()
    }

    fn source_name(&self, name: &str) -> anyhow::Result<String> {
        if let Some(depths) = self.caffe2_depths {
            return caffe2::blob_name(name, depths).with_context(|| format!("no Caffe2 blob name for {name}"));
        }
        match self.layout {
            Layout::Pyslowfast => Ok(name.to_string()),
            Layout::Hub => hub_name(name, self.modules).with_context(|| format!("no PyTorchVideo name for {name}")),
        }
    }
}

impl WeightSource for ResnetWeights<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let source = self.source_name(name)?;
        if self.is_caffe2() {
            // Caffe2 may store a weight without its trailing unit dimensions.
            if let Some(stored) = self.inner.shape(&source) {
                let trailing_units =
                    shape.len() > stored.len() && shape[..stored.len()] == stored[..] && shape[stored.len()..].iter().all(|&d| d == 1);
                if trailing_units {
                    return Ok(self.inner.take(&source, &stored)?.reshape(shape)?);
                }
            }
        }
        self.inner.take(&source, shape)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.inner.shape(&self.source_name(name).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_follow_the_module_numbering() {
        let slow = HubModules::Resnet { res2_pool: false };
        let i3d = HubModules::Resnet { res2_pool: true };
        assert_eq!(hub_name("s1.pathway0_stem.conv.weight", slow).unwrap(), "blocks.0.conv.weight");
        assert_eq!(hub_name("s1.pathway0_stem.bn.running_var", i3d).unwrap(), "blocks.0.norm.running_var");
        assert_eq!(hub_name("s2.pathway0_res0.branch1_bn.bias", i3d).unwrap(), "blocks.1.res_blocks.0.branch1_norm.bias");
        assert_eq!(hub_name("s3.pathway0_res1.branch2.a.weight", slow).unwrap(), "blocks.2.res_blocks.1.branch2.conv_a.weight");
        assert_eq!(hub_name("s3.pathway0_res1.branch2.a.weight", i3d).unwrap(), "blocks.3.res_blocks.1.branch2.conv_a.weight");
        assert_eq!(hub_name("s5.pathway0_res2.branch2.c_bn.weight", i3d).unwrap(), "blocks.5.res_blocks.2.branch2.norm_c.weight");
        assert_eq!(hub_name("head.projection.weight", slow).unwrap(), "blocks.5.proj.weight");
        assert_eq!(hub_name("head.projection.bias", i3d).unwrap(), "blocks.6.proj.bias");
        let sf = HubModules::SlowFast;
        assert_eq!(hub_name("s1.pathway1_stem.conv.weight", sf).unwrap(), "blocks.0.multipathway_blocks.1.conv.weight");
        assert_eq!(
            hub_name("s4.pathway0_res5.branch2.b_bn.running_mean", sf).unwrap(),
            "blocks.3.multipathway_blocks.0.res_blocks.5.branch2.norm_b.running_mean"
        );
        assert_eq!(hub_name("s1_fuse.conv_f2s.weight", sf).unwrap(), "blocks.0.multipathway_fusion.conv_fast_to_slow.weight");
        assert_eq!(hub_name("s4_fuse.bn.weight", sf).unwrap(), "blocks.3.multipathway_fusion.norm.weight");
        assert_eq!(hub_name("head.projection.weight", sf).unwrap(), "blocks.6.proj.weight");
        // Names of other pathways or modules have no counterpart.
        assert_eq!(hub_name("s1.pathway1_stem.conv.weight", slow), None);
        assert_eq!(hub_name("s1_fuse.conv_f2s.weight", slow), None);
        assert_eq!(hub_name("s2.pathway0_res0.branch2.se.fc1.weight", slow), None);
        assert_eq!(hub_name("s0.pathway0_res0.branch1.weight", slow), None);
    }

    /// A clip through the stream (stepped, then flushed) against the regular forward.
    fn stream_matches_clip(layer: &mut dyn Layer, clip: &Tensor) {
        use crate::engine::{PadMode, forward_steps};
        let regular = layer.forward(clip, PadMode::Full).unwrap();
        let streamed = forward_steps(layer, clip, true).unwrap().unwrap();
        assert_eq!(regular.dims(), streamed.dims());
        let diff = (regular - streamed).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "stream and clip differ by {diff}");
    }

    #[test]
    fn a_bottleneck_block_streams_as_its_clip() {
        let mut ws = crate::models::RandomWeights::new(3);
        let spec = BlockSpec { din: 8, inner: 4, dout: 16, kt: 3, stride: 2 };
        let mut block = bottleneck(&mut ws, "s4.pathway0_res0", &spec, Fill::Zeros).unwrap();
        let t = block.temporal();
        assert_eq!((t.delay(), t.receptive_field, t.stride), (1, 3, 1));
        let clip = crate::models::RandomWeights::new(9).take("x", &[7, 8, 9, 9]).unwrap();
        stream_matches_clip(&mut block, &clip);
        assert_eq!(block.forward(&clip, crate::engine::PadMode::Full).unwrap().dims(), &[7, 16, 5, 5]);
        // An identity shortcut (same shape) is delayed to meet branch2.
        let spec = BlockSpec { din: 16, inner: 4, dout: 16, kt: 3, stride: 1 };
        let mut block = bottleneck(&mut ws, "s4.pathway0_res1", &spec, Fill::Zeros).unwrap();
        let clip = crate::models::RandomWeights::new(5).take("x", &[6, 16, 5, 5]).unwrap();
        stream_matches_clip(&mut block, &clip);
    }

    #[test]
    fn the_stem_and_fuse_stream_as_their_clips() {
        let mut ws = crate::models::RandomWeights::new(4);
        let mut s = stem(&mut ws, 1, 4, 5, Fill::Zeros).unwrap();
        assert_eq!(s.temporal().delay(), 2);
        let clip = crate::models::RandomWeights::new(2).take("x", &[9, 3, 16, 16]).unwrap();
        stream_matches_clip(&mut s, &clip);
        assert_eq!(s.forward(&clip, crate::engine::PadMode::Full).unwrap().dims(), &[9, 4, 4, 4]);
        let mut f = fuse(&mut ws, 1, (4, 8), 7, 4, Fill::Zeros).unwrap();
        let feats = crate::models::RandomWeights::new(6).take("x", &[16, 4, 4, 4]).unwrap();
        stream_matches_clip(&mut f, &feats);
        assert_eq!(f.forward(&feats, crate::engine::PadMode::Full).unwrap().dims(), &[4, 8, 4, 4]);
    }

    /// The SlowFast fixture's three checkpoints (tools/resnet) hold the same tensors under the
    /// canonical names, every tensor used.
    #[test]
    fn the_three_slowfast_layouts_read_as_one() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet/slowfast");
        let dev = candle_core::Device::Cpu;
        let load = |f: &str| {
            let mut s = crate::weights::load(&dir.join(f), &dev).unwrap();
            s.ignore(|n| n.ends_with("num_batches_tracked"));
            s
        };
        let mut canonical = load("slowfast_pyslowfast.pyth");
        let (mut hub, mut c2) = (load("slowfast_hub.pyth"), load("slowfast_caffe2.pkl"));
        {
            let mut hub = ResnetWeights::from_store(&mut hub, HubModules::SlowFast, R50_DEPTHS, "SlowFast").unwrap();
            let mut c2 = ResnetWeights::from_store(&mut c2, HubModules::SlowFast, R50_DEPTHS, "SlowFast").unwrap();
            assert_eq!((hub.layout(), hub.is_caffe2(), c2.is_caffe2()), (Layout::Hub, false, true));
            for name in canonical.names().to_vec().into_iter().filter(|n| !n.ends_with("num_batches_tracked")) {
                let dims: Vec<usize> = canonical.get(&name).unwrap().dims().into();
                let want = canonical.take(&name, &dims).unwrap();
                for (layout, source) in [("hub", &mut hub as &mut dyn WeightSource), ("caffe2", &mut c2)] {
                    assert_eq!(source.shape(&name).as_deref(), Some(want.dims()), "{layout} {name}");
                    let got = source.take(&name, want.dims()).unwrap();
                    let same =
                        (&got - &want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap() == 0.0;
                    assert!(same, "{layout} {name}");
                }
            }
        }
        for store in [canonical, hub, c2] {
            store.finish().unwrap();
        }
    }

    #[test]
    fn stage_widths_are_the_resnet50_bottlenecks() {
        assert_eq!(stage_widths(64, [0; 4]), [(64, 64, 256), (256, 128, 512), (512, 256, 1024), (1024, 512, 2048)]);
        // SlowFast's slow pathway: laterals of 2·C_fast join each stage's input.
        assert_eq!(stage_widths(64, [16, 64, 128, 256]), [(80, 64, 256), (320, 128, 512), (640, 256, 1024), (1280, 512, 2048)]);
        assert_eq!(cycle_kernels(&[3, 1], 6), vec![3, 1, 3, 1, 3, 1]);
        assert_eq!(cycle_kernels(&[1, 3], 3), vec![1, 3, 1]);
    }
}
