//! `coinfer bench`: continual step against the regular network on a sliding window, measured side by
//! side in one run on this machine.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::{Device, Tensor};
use clap::Args;

use crate::bench::{self, BenchResult};
use crate::models::{self, ModelOptions};
use crate::preprocess::Preprocessor;
use crate::source::{self, Frame, OpenOptions};

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  coinfer bench --model x3d-s --steps 50\n  \
    coinfer bench --threads 1 --json\n  coinfer bench --input samples/sports2d-demo.mp4 --chart bench.svg")]
pub struct BenchArgs {
    /// Model to measure (default: every built-in model)
    #[arg(long, short)]
    pub model: Option<String>,
    /// Continual steps to time (after warming up to steady state)
    #[arg(long, default_value_t = 60)]
    pub steps: usize,
    /// Regular sliding-window clips to time
    #[arg(long, default_value_t = 5)]
    pub regular_runs: usize,
    /// Threads for the network (sets RAYON_NUM_THREADS and CANDLE_NUM_THREADS)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Feed frames of this video (preprocessed) instead of random frames
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Use this checkpoint (default: the model's weights if present, else random weights:
    /// the time per step does not depend on the values)
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// One JSON object per model
    #[arg(long)]
    pub json: bool,
    /// Draw the comparison as an SVG chart
    #[arg(long)]
    pub chart: Option<PathBuf>,
}


/// Preprocessed frames of a video, looped as needed.
fn video_frames(path: &PathBuf, name: &str, limit: usize) -> anyhow::Result<Vec<Tensor>> {
    let spec = models::describe(name, &ModelOptions::default())?.spec;
    let mut src = source::open(&path.to_string_lossy(), &OpenOptions::default())?;
    let info = src.info();
    let mut pre = Preprocessor::new(&spec, info.width, info.height)?;
    let mut frame = Frame::default();
    let mut frames = Vec::new();
    while frames.len() < limit && src.next_frame(&mut frame)? {
        frames.push(pre.tensor(&frame)?);
    }
    anyhow::ensure!(!frames.is_empty(), "{}: no frames", path.display());
    Ok(frames)
}

pub fn execute(args: &BenchArgs) -> anyhow::Result<()> {
    let names: Vec<String> = match &args.model {
        Some(m) => vec![m.clone()],
        None => models::names().into_iter().map(String::from).collect(),
    };
    let threads = candle_core::utils::get_num_threads();
    let mut results: Vec<BenchResult> = Vec::new();
    let mut out = std::io::stdout().lock();
    for name in &names {
        let opts = ModelOptions { weights: args.weights.clone(), ..ModelOptions::default() };
        let present = models::describe(name, &opts)?.weights_present;
        let mut model = if present { models::build(name, &opts)? } else { models::build_random(name, &opts)? };
        let crop = model.spec().crop;
        let video = match &args.input {
            Some(p) => Some(video_frames(p, name, 256).with_context(|| format!("reading {}", p.display()))?),
            None => None,
        };
        let frames = |i: usize| -> anyhow::Result<Tensor> {
            match &video {
                Some(v) => Ok(v[i % v.len()].clone()),
                None => bench::random_frame(crop, i, &Device::Cpu),
            }
        };
        let r = bench::run(model.as_mut(), args.steps, args.regular_runs, threads, frames)?;
        if args.json {
            serde_json::to_writer(&mut out, &r)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{:<8} threads {} | continual step p50 {:.2} ms p95 {:.2} ms mean {:.2} ms = {:.1} frames/s (emitting step {:.2} ms) | regular \
                 sliding window p50 {:.1} ms p95 {:.1} ms | speed-up {:.1}x (FLOP ratio {:.1}x) | {:.1} GFLOP/s | \
                 other load {:.2} cores{}{}",
                r.model,
                r.threads,
                r.continual_ms_p50,
                r.continual_ms_p95,
                r.continual_ms_mean,
                r.continual_frames_per_s,
                r.continual_emitting_ms_p50,
                r.regular_ms_p50,
                r.regular_ms_p95,
                r.speedup,
                r.flop_ratio,
                r.continual_gflops_per_s,
                r.load.other_cores,
                if r.load.noisy { " (NOISY: other work was running)" } else { "" },
                if present { "" } else { " [random weights]" },
            )?;
        }
        out.flush()?;
        results.push(r);
    }
    if let Some(path) = &args.chart {
        bench::chart(&results, path)?;
    }
    Ok(())
}
