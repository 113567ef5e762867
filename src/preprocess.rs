// PLACEHOLDER until branch source lands: the agreed interface only, so the pipeline compiles.
// Every entry point returns an error or feeds nothing; the lead takes the real file at merge.

use crate::models::ModelSpec;
use crate::source::Frame;

pub struct Resampler;

impl Resampler {
    pub fn new(model_fps: f64) -> Self {
        let _ = model_fps;
        Resampler
    }

    pub fn feed(&mut self, pts: f64) -> usize {
        let _ = pts;
        0
    }
}

pub struct Preprocessor;

impl Preprocessor {
    pub fn new(spec: &ModelSpec, width: u32, height: u32) -> anyhow::Result<Self> {
        let _ = (spec, width, height);
        anyhow::bail!("no preprocessing in this build (placeholder until branch source lands)")
    }

    pub fn crop_u8(&mut self, frame: &Frame) -> &[u8] {
        let _ = frame;
        &[]
    }

    pub fn tensor(&mut self, frame: &Frame) -> anyhow::Result<candle_core::Tensor> {
        let _ = frame;
        anyhow::bail!("no preprocessing in this build (placeholder until branch source lands)")
    }
}
