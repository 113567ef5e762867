//! Built-in models behind one streaming interface, and the registry of named variants.
//!
//! A model consumes one preprocessed frame per step (on its own timeline, `ModelSpec::fps`) and emits
//! class probabilities whenever its continual network produces an output.
//!
//! Layout: [`classifier`] is the streaming classifier every model shares; a model file (`x3d.rs`,
//! `i3d.rs`) is its config with named variants, a builder of the backbone and head layers, the clip
//! path and the checkpoint key map (an [`Architecture`]); [`registry`] lists the models and their
//! published checkpoints. A new model is its file and one registry entry.

pub mod classifier;
pub mod i3d;
pub mod registry;
pub mod resnet;
pub mod slow;
pub mod slowfast;
pub mod x3d;

use candle_core::Tensor;

pub use classifier::{Architecture, ContinualClassifier};

/// How a uint8 RGB frame becomes the network's float input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    /// `(x / 255 - mean[c]) / std[c]` (pyslowfast / PyTorchVideo models).
    MeanStd { mean: [f32; 3], std: [f32; 3] },
    /// `x / 127.5 - 1` (DeepMind I3D).
    SignedUnit,
}

pub use crate::engine::Fill;

/// What the preprocessing and the sinks need to know about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Registry name, e.g. `i3d`, `x3d-s`.
    pub name: String,
    /// Frame rate of the model's own timeline (frames per second of the sampled stream).
    pub fps: f64,
    /// Short side after the resize, in pixels.
    pub resize_short: usize,
    /// Side of the square centre crop fed to the network.
    pub crop: usize,
    pub normalize: Normalize,
    /// Number of classes of the classifier.
    pub num_classes: usize,
}

/// Temporal facts of a built continual network, in steps of the model timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamShape {
    /// Step index of the first output (the output is emitted on this step).
    pub delay: usize,
    /// Number of input frames one steady-state output depends on.
    pub receptive_field: usize,
    /// One output every `stride` steps.
    pub stride: usize,
    /// Steps later than its newest frame's step that an output comes out (1 under
    /// [`Schedule::Pipeline`]; the last ones then come from [`StreamModel::drain`]).
    pub lag: usize,
}

impl From<crate::engine::Temporal> for StreamShape {
    fn from(t: crate::engine::Temporal) -> Self {
        StreamShape { delay: t.delay(), receptive_field: t.receptive_field, stride: t.stride, lag: 0 }
    }
}

/// How a model shares a step between its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every operation split between the threads: an output comes on the step of its newest frame.
    Split,
    /// A two-stage pipeline of layers, one stage per thread (`engine::relay`): more frames per
    /// second on two cores, and the same outputs, each one step later.
    Pipeline,
}

impl Schedule {
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Split => "split",
            Schedule::Pipeline => "pipeline",
        }
    }
}

/// A continual network running on a stream, one frame per call.
pub trait StreamModel: Send {
    fn spec(&self) -> &ModelSpec;
    fn shape(&self) -> StreamShape;
    /// Feed one preprocessed frame, planar `(3, crop, crop)` f32 values. When the network emits an
    /// output, its class probabilities `(num_classes,)` are written to `probs` and this returns true.
    /// The hot loop of a stream: buffers are reused, nothing is allocated per step in steady state.
    fn step_planar(&mut self, frame: &[f32], probs: &mut Vec<f32>) -> anyhow::Result<bool>;
    /// Feed the same frame `n` times (the warm-up on the first frame); the probabilities of the last
    /// step go to `probs` if it emitted. Models skip the repeats where the network allows.
    fn prime(&mut self, frame: &[f32], n: usize, probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        let mut out = false;
        for _ in 0..n {
            out = self.step_planar(frame, probs)?;
        }
        Ok(out)
    }
    /// [`StreamModel::step_planar`] on a `(3, crop, crop)` tensor; the probabilities when emitted.
    fn step(&mut self, frame: &Tensor) -> anyhow::Result<Option<Tensor>> {
        let values = frame.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut probs = Vec::new();
        if !self.step_planar(&values, &mut probs)? {
            return Ok(None);
        }
        let n = probs.len();
        Ok(Some(Tensor::from_vec(probs, n, &candle_core::Device::Cpu)?))
    }
    /// Forget the stream: the next step starts a new one.
    fn reset(&mut self);
    /// Share the steps between threads as `schedule` says, from the next stream on: call it with no
    /// output in flight (before the first step, or after `reset` or `drain`). Models without a
    /// pipelined form keep [`Schedule::Split`].
    fn set_schedule(&mut self, _schedule: Schedule) -> anyhow::Result<()> {
        Ok(())
    }
    fn schedule(&self) -> Schedule {
        Schedule::Split
    }
    /// End of a stream under a schedule with a lag: emit the output still in flight (that of the
    /// last frame) into `probs`; false when there is none.
    fn drain(&mut self, _probs: &mut Vec<f32>) -> anyhow::Result<bool> {
        Ok(false)
    }
    /// The regular (clip) network over the same weights on `clip` `(T, 3, crop, crop)`:
    /// class probabilities `(num_classes,)`.
    fn forward_clip(&self, clip: &Tensor) -> anyhow::Result<Tensor>;
    /// Length of the regular network's clip (what a sliding-window baseline re-runs per frame).
    fn clip_frames(&self) -> usize;
    /// Shapes and costs of the continual network's layers (for `coinfer flops`).
    fn report(&self) -> crate::engine::LayerReport;
}

/// Longest head window (`--pool`) of every model, in head positions: minutes of video at any model's
/// rate, while the head's pending sums or logit window stay a few MB instead of an allocation the
/// machine cannot make (docs/models.md, "X3D").
pub const MAX_POOL: usize = 1024;

/// `pool` if `model`'s head can take it (1 to [`MAX_POOL`] positions), else a usage error.
pub fn check_pool(model: &str, pool: usize) -> anyhow::Result<usize> {
    if (1..=MAX_POOL).contains(&pool) {
        return Ok(pool);
    }
    Err(crate::error::classified(crate::error::ErrorKind::Usage, format!("--pool {pool} is out of range for {model}: 1 to {MAX_POOL}")))
}

/// Options a user chooses when building a model.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Checkpoint to load; `None` = the model's default (the bundled file, or the download cache).
    pub weights: Option<std::path::PathBuf>,
    pub fill: Fill,
    /// Temporal window of the head, in emitted positions; `None` = the model's default.
    pub pool: Option<usize>,
}

/// What `coinfer models` prints and the `meta` record reports, known without loading weights.
#[derive(Debug, Clone)]
pub struct ModelDescription {
    pub spec: ModelSpec,
    pub shape: StreamShape,
    /// Multiply-accumulates per input frame of the continual network, averaged over a period of steps.
    pub macs_per_step: f64,
    /// The weights file that `build` would load.
    pub weights: std::path::PathBuf,
    pub weights_present: bool,
    /// One line for humans.
    pub summary: String,
}

/// Names of the built-in models, default first.
pub fn names() -> Vec<&'static str> {
    registry::MODELS.iter().map(|m| m.name).collect()
}

/// The model `coinfer` runs when none is named.
pub const DEFAULT_MODEL: &str = registry::MODELS[0].name;

/// Describe a built-in model without loading its weights.
pub fn describe(name: &str, opts: &ModelOptions) -> anyhow::Result<ModelDescription> {
    let entry = registry::find(name)?;
    let weights = entry.weights_path(opts)?;
    // A checkpoint the user names may be fine-tuned: its head decides the classes
    // (docs/models.md, "Your own classes"). The published defaults are Kinetics-400.
    let outline = match &opts.weights {
        Some(path) if path.is_file() => {
            let mut store = crate::weights::load(path, &candle_core::Device::Cpu)?;
            let names = store.names().to_vec();
            let source = (entry.family.checkpoint)(&names, &mut store)?;
            (entry.family.outline)(entry.name, opts, &mut ShapesOf { inner: &*source })?
        }
        _ => (entry.family.outline)(entry.name, opts, &mut ZeroWeights)?,
    };
    Ok(ModelDescription {
        spec: outline.spec,
        shape: outline.shape,
        macs_per_step: outline.macs_per_step,
        weights_present: weights.is_file(),
        weights,
        summary: outline.summary,
    })
}

/// Build a built-in model with its weights (the default file, or `opts.weights`), ready to stream.
pub fn build(name: &str, opts: &ModelOptions) -> anyhow::Result<Box<dyn StreamModel>> {
    load_with(name, opts, registry::find(name)?.family.build)
}

/// Open the checkpoint `opts` selects for the built-in model `name` and build the model with
/// `build`, the tensors read through the model's key map; every tensor of the file must be used.
pub fn load_with<T>(
    name: &str,
    opts: &ModelOptions,
    build: impl FnOnce(&str, &ModelOptions, &mut dyn WeightSource) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let entry = registry::find(name)?;
    let path = entry.weights_path(opts)?;
    let name = entry.name;
    if !path.is_file() {
        let advice = match entry.weights {
            registry::DefaultWeights::Pulled => crate::weights::pull::pull_advice(name),
            registry::DefaultWeights::Bundled(_) => None,
        }
        .unwrap_or_else(|| bundled_advice(&path));
        return Err(crate::error::classified(
            crate::error::ErrorKind::NoInput,
            format!("no weights for {name} at {}: {advice} or pass --weights FILE", path.display()),
        ));
    }
    let mut store = crate::weights::load(&path, &candle_core::Device::Cpu)?;
    store.check_finite()?;
    store.ignore(|n| n.ends_with("num_batches_tracked"));
    let names = store.names().to_vec();
    let model = {
        let mut source = (entry.family.checkpoint)(&names, &mut store)?;
        build(name, opts, &mut *source)?
    };
    store
        .finish()
        .map_err(|e| crate::error::classified(crate::error::ErrorKind::Data, format!("{} does not fit {name}: {e:#}", path.display())))?;
    Ok(model)
}

/// What to do about a missing bundled weights file: point the environment at a folder holding it.
fn bundled_advice(path: &std::path::Path) -> String {
    let file = path.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    format!("set {} to the folder holding {file} (it ships in coinfer's weights/ folder)", i3d::WEIGHTS_DIR_ENV)
}

/// Build a built-in model with deterministic random weights (FLOP counts, benchmarks, tests).
pub fn build_random(name: &str, opts: &ModelOptions) -> anyhow::Result<Box<dyn StreamModel>> {
    let entry = registry::find(name)?;
    (entry.family.build)(entry.name, opts, &mut RandomWeights::new(0))
}

impl WeightSource for crate::weights::TensorStore {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        crate::weights::TensorStore::take(self, name, shape)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.get(name).map(|t| t.dims().to_vec())
    }
}

/// Where a model builder gets its tensors: a checkpoint (strict: names and shapes are checked) or
/// random values for tests, benchmarks and FLOP counts.
pub trait WeightSource {
    /// The tensor `name` with exactly `shape`, as f32 on the CPU.
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor>;

    /// The shape the tensor `name` has in the source, without taking it; `None` where the source
    /// has no such tensor or makes its tensors up (random and zero weights take any shape). A builder
    /// reads sizes that a checkpoint decides this way, such as its number of classes.
    fn shape(&self, _name: &str) -> Option<Vec<usize>> {
        None
    }
}

impl<W: WeightSource + ?Sized> WeightSource for &mut W {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        (**self).take(name, shape)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        (**self).shape(name)
    }
}

/// Deterministic random weights with plausible magnitudes: BatchNorm variances are positive, scales
/// near one, convolution weights scaled by fan-in so that activations stay finite through deep nets.
pub struct RandomWeights {
    state: u64,
}

impl RandomWeights {
    pub fn new(seed: u64) -> Self {
        RandomWeights { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }

    /// Uniform in [0, 1) (xorshift64*).
    fn next(&mut self) -> f32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 40) as f32 / (1u64 << 24) as f32
    }
}

impl WeightSource for RandomWeights {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let n: usize = shape.iter().product();
        let (lo, hi) = if name.ends_with("running_var") {
            (0.5, 1.5)
        } else if name.ends_with("running_mean") || name.ends_with("bias") {
            (-0.1, 0.1)
        } else if name.ends_with("bn.weight") || name.ends_with("_bn.weight") {
            (0.5, 1.5)
        } else {
            // Fan-in of a conv/linear weight: every dimension but the first.
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            let a = (3.0 / fan_in as f32).sqrt();
            (-a, a)
        };
        let data: Vec<f32> = (0..n).map(|_| lo + (hi - lo) * self.next()).collect();
        Ok(Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?)
    }
}

/// Zeros of every requested shape: enough to lay a network out and read its shape and costs
/// without a checkpoint.
pub struct ZeroWeights;

impl WeightSource for ZeroWeights {
    fn take(&mut self, _name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        Ok(Tensor::zeros(shape, candle_core::DType::F32, &candle_core::Device::Cpu)?)
    }
}

/// The number of classes of a checkpoint's head: the first dimension of its classifier weight
/// `tensor` (docs/models.md, "Your own classes"); `default` where the source makes its tensors up
/// (random or zero weights).
pub fn head_classes(ws: &dyn WeightSource, tensor: &str, default: usize) -> anyhow::Result<usize> {
    match ws.shape(tensor) {
        None => Ok(default),
        Some(s) if s.len() >= 2 && s[0] > 0 => Ok(s[0]),
        Some(s) => Err(crate::error::classified(
            crate::error::ErrorKind::Data,
            format!("{tensor} has shape {s:?}: a classifier weight is (classes, features, …)"),
        )),
    }
}

/// Zeros of every requested shape, and the shapes of a checkpoint's tensors: lays a network out as
/// a checkpoint decides it (its number of classes) without copying its values.
pub struct ShapesOf<'a> {
    pub inner: &'a dyn WeightSource,
}

impl WeightSource for ShapesOf<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        ZeroWeights.take(name, shape)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.inner.shape(name)
    }
}

/// Counts the learnable scalars taken through it (running statistics are not learnable).
pub struct CountingSource<'a> {
    pub inner: &'a mut dyn WeightSource,
    pub learnable: usize,
}

impl<'a> CountingSource<'a> {
    pub fn new(inner: &'a mut dyn WeightSource) -> Self {
        CountingSource { inner, learnable: 0 }
    }
}

impl WeightSource for CountingSource<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let t = self.inner.take(name, shape)?;
        if !name.ends_with("running_mean") && !name.ends_with("running_var") {
            self.learnable += shape.iter().product::<usize>();
        }
        Ok(t)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.inner.shape(name)
    }
}

/// Softmax of each row of `rows` (`classes` wide), averaged over the rows, into `out`.
pub fn softmax_mean(rows: &[f32], classes: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(classes, 0.0);
    let n = rows.len() / classes.max(1);
    for row in rows.chunks_exact(classes) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        let scale = 1.0 / (sum * n as f32);
        for (o, &v) in out.iter_mut().zip(row) {
            *o += (v - max).exp() * scale;
        }
    }
}
