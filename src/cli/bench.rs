//! `coinfer bench`: continual step against the regular network on a sliding window, measured side by
//! side in one run on this machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{Device, Tensor};
use clap::Args;

use crate::bench::{self, BenchResult, LayerTime};
use crate::cli::ScheduleArg;
use crate::models::{self, ModelOptions, Schedule};
use crate::preprocess::Preprocessor;
use crate::source::{self, Frame, OpenOptions};

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  coinfer bench --model x3d-s --steps 50\n  \
    coinfer bench --threads 1 --json\n  coinfer bench --model x3d-s --steps 200 --per-layer\n  \
    coinfer bench --input samples/sports2d-demo.mp4 --chart bench.svg")]
pub struct BenchArgs {
    /// Model to measure (default: every built-in model)
    #[arg(long, short)]
    pub model: Option<String>,
    /// Continual steps to time (after warming up to steady state), 1 to 1000000
    // At least one: a mean over no steps is NaN. At most a million: their times are kept (8 MB).
    #[arg(long, default_value_t = 60, value_parser = |s: &str| super::values::whole::<usize>(s, 1, Some(1_000_000)))]
    pub steps: usize,
    /// Regular sliding-window clips to time, 1 to 10000
    #[arg(long, default_value_t = 5, value_parser = |s: &str| super::values::whole::<usize>(s, 1, Some(10_000)))]
    pub regular_runs: usize,
    /// Threads for the network step, 1 to 4 × the cores [default: the cores available]
    #[arg(long, value_parser = |s: &str| super::values::threads::<usize>("--threads", s))]
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
    /// Also time every layer of the continual step (in a second pass of --steps steps) and print
    /// the slowest, or all of them under "per_layer" with --json
    #[arg(long)]
    pub per_layer: bool,
    /// Draw the comparison as an SVG chart
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// How the threads share a step; auto times the schedule `run` picks for a file and, with two
    /// or more threads, the other one too, interleaved with it in the same run
    #[arg(long, value_enum, default_value_t = ScheduleArg::Auto)]
    pub schedule: ScheduleArg,
}

/// Preprocessed frames of a video, looped as needed.
fn video_frames(path: &Path, name: &str, limit: usize) -> anyhow::Result<Vec<Tensor>> {
    let spec = models::describe(name, &ModelOptions::default())?.spec;
    let mut src = source::open(path, &OpenOptions::default())?;
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
        let main = args.schedule.resolve(false);
        let schedules = match main {
            _ if args.schedule != ScheduleArg::Auto || threads < 2 => vec![main],
            Schedule::Pipeline => vec![main, Schedule::Split],
            Schedule::Split => vec![main, Schedule::Pipeline],
        };
        let r = bench::run(model.as_mut(), args.steps, args.regular_runs, threads, args.per_layer, &schedules, frames)?;
        if args.json {
            serde_json::to_writer(&mut out, &r)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{:<8} {} | continual step p50 {:.2} ms p95 {:.2} ms mean {:.2} ms = {:.1} frames/s (emitting step {:.2} ms) | regular \
                 sliding window p50 {:.1} ms p95 {:.1} ms | speed-up {:.1}x (FLOP ratio {:.1}x) | {:.1} GFLOP/s | \
                 other load {:.2} cores{}{}",
                r.model,
                schedule_note(&r),
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
            if let Some(layers) = &r.per_layer {
                write_per_layer(&mut out, layers)?;
            }
        }
        out.flush()?;
        results.push(r);
    }
    if let Some(path) = &args.chart {
        bench::chart(&results, path)?;
    }
    Ok(())
}

/// Threads, schedule, and the schedules timed alongside.
fn schedule_note(r: &BenchResult) -> String {
    let mut note = format!("threads {} {}", r.threads, r.schedule);
    if r.lag > 0 {
        note += &format!(" (outputs {} step later)", r.lag);
    }
    for c in &r.compared {
        note += &format!(" | {} p50 {:.2} ms = {:.2}x", c.schedule, c.continual_ms_p50, c.ratio);
    }
    note
}

/// Layers shown in the text table (all of them are in the JSON).
const TABLE_ROWS: usize = 30;

/// The slowest layers of a step, then the time per kind of layer.
fn write_per_layer(out: &mut impl Write, layers: &[LayerTime]) -> std::io::Result<()> {
    let shape = |s: [usize; 3]| format!("{}x{}x{}", s[0], s[1], s[2]);
    writeln!(out, "  {:>9} {:>6} {:>6}  {:<18} {:<27} LAYER", "US/STEP", "SHARE", "CALLS", "KIND", "INPUT -> OUTPUT")?;
    for l in layers.iter().take(TABLE_ROWS) {
        let shapes = format!("{} -> {}", shape(l.input), shape(l.output));
        writeln!(
            out,
            "  {:>9.1} {:>5.1}% {:>6.2}  {:<18} {:<27} {}",
            l.us_per_step,
            100.0 * l.share,
            l.calls_per_step,
            l.kind,
            shapes,
            l.name
        )?;
    }
    if layers.len() > TABLE_ROWS {
        let rest = &layers[TABLE_ROWS..];
        let us: f64 = rest.iter().map(|l| l.us_per_step).sum();
        let share: f64 = rest.iter().map(|l| l.share).sum();
        writeln!(out, "  {us:>9.1} {:>5.1}%         ({} more layers)", 100.0 * share, rest.len())?;
    }
    let mut kinds: Vec<(&str, f64, f64)> = Vec::new();
    for l in layers {
        match kinds.iter_mut().find(|k| k.0 == l.kind) {
            Some(k) => (k.1, k.2) = (k.1 + l.us_per_step, k.2 + l.share),
            None => kinds.push((l.kind, l.us_per_step, l.share)),
        }
    }
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    let by_kind: Vec<String> = kinds.iter().map(|(kind, us, share)| format!("{kind} {us:.0} us ({:.0}%)", 100.0 * share)).collect();
    writeln!(out, "  by kind: {}", by_kind.join(", "))
}
