//! Built-in models behind one streaming interface, and the registry of named variants.
//!
//! A model consumes one preprocessed frame per step (on its own timeline, `ModelSpec::fps`) and emits
//! class probabilities whenever its continual network produces an output.

pub mod i3d;

use candle_core::Tensor;

/// How a uint8 RGB frame becomes the network's float input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    /// `(x / 255 - mean[c]) / std[c]` (pyslowfast / PyTorchVideo models).
    MeanStd { mean: [f32; 3], std: [f32; 3] },
    /// `x / 127.5 - 1` (DeepMind I3D).
    SignedUnit,
}

/// How each layer initialises its temporal state at the start of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fill {
    /// As if the stream were preceded by zero padding (the regular network's padding).
    #[default]
    Zeros,
    /// As if each layer's first input had always been there.
    Replicate,
}

/// What the preprocessing and the sinks need to know about a model.
#[derive(Debug, Clone)]
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
}

/// A continual network running on a stream, one frame per call.
pub trait StreamModel: Send {
    fn spec(&self) -> &ModelSpec;
    fn shape(&self) -> StreamShape;
    /// Feed one preprocessed frame, shape `(3, crop, crop)`, f32.
    /// Returns the class probabilities `(num_classes,)` when the network emits an output.
    fn step(&mut self, frame: &Tensor) -> anyhow::Result<Option<Tensor>>;
    /// Forget the stream: the next step starts a new one.
    fn reset(&mut self);
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
    Vec::new()
}

/// The model `coinfer` runs when none is named.
pub const DEFAULT_MODEL: &str = "i3d";

/// Describe a built-in model without loading its weights.
pub fn describe(name: &str, opts: &ModelOptions) -> anyhow::Result<ModelDescription> {
    let _ = opts;
    Err(unknown_model(name))
}

/// Build a built-in model with its weights, ready to stream.
pub fn build(name: &str, opts: &ModelOptions) -> anyhow::Result<Box<dyn StreamModel>> {
    let _ = opts;
    Err(unknown_model(name))
}

fn unknown_model(name: &str) -> anyhow::Error {
    crate::error::classified(
        crate::error::ErrorKind::Usage,
        format!("unknown model '{name}' (known: {})", names().join(", ")),
    )
}

/// Where a model builder gets its tensors: a checkpoint (strict: names and shapes are checked) or
/// random values for tests, benchmarks and FLOP counts.
pub trait WeightSource {
    /// The tensor `name` with exactly `shape`, as f32 on the CPU.
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor>;
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
