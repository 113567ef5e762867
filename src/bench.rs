//! `coinfer bench`: the time per new frame of the continual network against the regular network
//! re-run on a sliding window, measured side by side in one run, with the machine's load alongside
//! (these machines are shared: a busy neighbour shows up in the numbers).

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::engine::{Chw, LayerReport, timing};
use crate::flops::{self, Convention};
use crate::models::{Schedule, StreamModel};

/// One model's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub threads: usize,
    /// How the threads shared the steps timed in `continual_*`.
    pub schedule: &'static str,
    /// Steps an output comes after its frame's step under that schedule.
    pub lag: usize,
    pub steps: usize,
    pub continual_ms_p50: f64,
    pub continual_ms_p95: f64,
    /// The busiest step of a stride period (e.g. CoI3D's emitting step), median.
    pub continual_emitting_ms_p50: f64,
    /// Mean step time: what sustained input frames per second depend on for strided models.
    pub continual_ms_mean: f64,
    pub continual_frames_per_s: f64,
    pub regular_ms_p50: f64,
    pub regular_ms_p95: f64,
    pub speedup: f64,
    pub flop_ratio: f64,
    pub continual_gflops_per_s: f64,
    pub load: Load,
    /// With `--per-layer`: every layer's share of a step, slowest first (timed in a second pass, so
    /// that the timers do not touch the numbers above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_layer: Option<Vec<LayerTime>>,
    /// Other schedules, timed in the same run in blocks of steps interleaved with the main one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<ScheduleTime>,
}

/// A schedule's continual step, timed interleaved with the main one.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleTime {
    pub schedule: &'static str,
    pub continual_ms_p50: f64,
    pub continual_ms_p95: f64,
    pub continual_ms_mean: f64,
    /// This schedule's median step over the main schedule's.
    pub ratio: f64,
}

/// One layer's time in the continual step (a leaf of the model's layer tree).
#[derive(Debug, Clone, Serialize)]
pub struct LayerTime {
    pub name: String,
    pub kind: &'static str,
    /// `[C, H, W]` of one input and one output frame.
    pub input: [usize; 3],
    pub output: [usize; 3],
    pub us_per_step: f64,
    /// Steps of this layer per model step (below 1 for layers behind a temporal stride).
    pub calls_per_step: f64,
    /// Of the mean step time of the timed pass (the rest is the containers' own work and the timers).
    pub share: f64,
}

/// The leaves of `report` that were timed, as [`LayerTime`]s of `steps` steps of mean `step_us`. A
/// leaf whose name is not a path (a delay, say) is named under its container.
fn layer_times(report: &LayerReport, parent: &str, steps: usize, step_us: f64, out: &mut Vec<LayerTime>) {
    if !report.children.is_empty() {
        return report.children.iter().for_each(|c| layer_times(c, &report.name, steps, step_us, out));
    }
    if let Some(t) = report.step_time {
        let us_per_step = t.total.as_secs_f64() * 1e6 / steps as f64;
        let chw = |x: Chw| [x.c, x.h, x.w];
        // (Names with a dot are paths already.)
        let under = parent.is_empty() || report.name == parent || report.name.contains('.');
        let name = if under { report.name.clone() } else { format!("{parent}.{}", report.name) };
        out.push(LayerTime {
            name,
            kind: report.kind,
            input: chw(report.input),
            output: chw(report.output),
            us_per_step,
            calls_per_step: t.calls as f64 / steps as f64,
            share: us_per_step / step_us,
        });
    }
}

/// Other work on the machine during the run, in cores: total busy CPU minus this process's own.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Load {
    pub other_cores: f64,
    pub cores: usize,
    pub loadavg_1m: f64,
    /// True when other work took more than a fifth of a core: the numbers are not clean.
    pub noisy: bool,
}

/// Busy and total jiffies of all CPUs, and this process's own CPU time in jiffies.
fn cpu_counters() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<f64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let idle = cpu.get(3)? + cpu.get(4).unwrap_or(&0.0);
    let total: f64 = cpu.iter().take(8).sum();
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = own.rsplit(')').next()?.split_whitespace().collect();
    let own_cpu = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((total - idle, total, own_cpu))
}

struct LoadMeter {
    start: Option<(f64, f64, f64)>,
}

impl LoadMeter {
    fn start() -> Self {
        LoadMeter { start: cpu_counters() }
    }

    fn finish(&self) -> Load {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let loadavg_1m =
            std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
        let other_cores = match (self.start, cpu_counters()) {
            (Some((b0, t0, o0)), Some((b1, t1, o1))) if t1 > t0 => {
                // Jiffies of all CPUs per wall jiffy = cores; convert busy jiffies to cores.
                let per_core = (t1 - t0) / cores as f64;
                ((b1 - b0) - (o1 - o0)).max(0.0) / per_core
            }
            _ => f64::NAN,
        };
        // Unmeasured (NaN) counts as noisy.
        Load { other_cores, cores, loadavg_1m, noisy: other_cores.is_nan() || other_cores > 0.2 }
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Steps per block when schedules are interleaved: short enough that the machine's load changes
/// little within a round, long enough that switching (one untimed step) is rare.
const BLOCK: usize = 8;
/// Warm-up steps a pipelined schedule gets at least, for its stage balance to settle.
const PIPELINE_WARMUP: usize = 64;

/// Switch `model` to `schedule` between two steps (the output in flight is drained and dropped).
fn switch(model: &mut dyn StreamModel, schedule: Schedule, probs: &mut Vec<f32>) -> Result<()> {
    if model.schedule() != schedule {
        model.drain(probs)?;
        model.set_schedule(schedule)?;
    }
    Ok(())
}

/// The schedules of `wanted` that `model` has, without repeats, in order.
fn effective_schedules(model: &mut dyn StreamModel, wanted: &[Schedule]) -> Result<Vec<Schedule>> {
    let mut out: Vec<Schedule> = Vec::new();
    for &s in wanted {
        model.set_schedule(s)?;
        let got = model.schedule();
        if !out.contains(&got) {
            out.push(got);
        }
    }
    if out.is_empty() {
        out.push(model.schedule());
    }
    Ok(out)
}

/// Measure `model`: warm up into steady state, time `steps` continual steps, then time the regular
/// network on `regular_runs` sliding-window clips. `frames` supplies preprocessed input frames.
/// With several `schedules` (the first is the main one), each is timed for `steps` steps, in
/// interleaved blocks, so that their ratio is measured under the same load.
pub fn run(
    model: &mut dyn StreamModel,
    steps: usize,
    regular_runs: usize,
    threads: usize,
    per_layer: bool,
    schedules: &[Schedule],
    mut frames: impl FnMut(usize) -> Result<Tensor>,
) -> Result<BenchResult> {
    let name = model.spec().name.clone();
    let shape = model.shape();
    let report = model.report();
    let totals = flops::count(&report, model.clip_frames(), Convention::Macs);
    let meter = LoadMeter::start();

    // Steady state: every layer has seen a full receptive field (and a relay has balanced).
    model.reset();
    let schedules = effective_schedules(model, schedules)?;
    let planar = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?) };
    let mut probs = Vec::new();
    let mut fed = 0;
    for &s in schedules.iter().rev() {
        switch(model, s, &mut probs)?;
        let warm = shape.receptive_field + shape.stride;
        let warm = if s == Schedule::Pipeline { warm.max(PIPELINE_WARMUP) } else { warm };
        for _ in 0..warm {
            model.step_planar(&planar(&frames(fed)?)?, &mut probs)?;
            fed += 1;
        }
    }
    let period = shape.stride.max(1);
    let mut times: Vec<Vec<f64>> = schedules.iter().map(|_| Vec::with_capacity(steps)).collect();
    let mut emitting = Vec::new();
    let block = if schedules.len() > 1 { BLOCK } else { steps.max(1) };
    let mut round = 0;
    while times.iter().any(|t| t.len() < steps) {
        let k = round % schedules.len();
        round += 1;
        if times[k].len() >= steps {
            continue;
        }
        if schedules.len() > 1 {
            switch(model, schedules[k], &mut probs)?;
            // The first step after a switch is not a steady one (a pipeline has nothing in flight).
            model.step_planar(&planar(&frames(fed)?)?, &mut probs)?;
            fed += 1;
        }
        for _ in 0..block.min(steps - times[k].len()) {
            let frame = planar(&frames(fed)?)?;
            fed += 1;
            let t = Instant::now();
            let out = model.step_planar(&frame, &mut probs)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            times[k].push(ms);
            if k == 0 && out && period > 1 {
                emitting.push(ms);
            }
        }
    }
    switch(model, schedules[0], &mut probs)?;
    let lag = model.shape().lag;
    let per_layer = if per_layer {
        // A second pass with the layers' timers on; the model's fresh timers count only this pass.
        timing::set_enabled(true);
        let t = Instant::now();
        let stepped = (0..steps).try_for_each(|i| -> Result<()> {
            model.step_planar(&planar(&frames(fed + i)?)?, &mut probs)?;
            Ok(())
        });
        let step_us = t.elapsed().as_secs_f64() * 1e6 / steps.max(1) as f64;
        timing::set_enabled(false);
        stepped?;
        let mut layers = Vec::new();
        layer_times(&model.report(), "", steps.max(1), step_us, &mut layers);
        // Unnamed layers of one container (two spatial pools, say) apart by their order.
        let mut seen = std::collections::HashMap::new();
        for l in &mut layers {
            let n = seen.entry(l.name.clone()).and_modify(|n| *n += 1).or_insert(1);
            if *n > 1 {
                l.name = format!("{} #{n}", l.name);
            }
        }
        layers.sort_by(|a, b| b.us_per_step.total_cmp(&a.us_per_step));
        Some(layers)
    } else {
        None
    };
    // Regular: one T-frame clip per new frame.
    let t_clip = model.clip_frames();
    let clip_frames: Vec<Tensor> = (0..t_clip).map(&mut frames).collect::<Result<_>>()?;
    let clip = Tensor::stack(&clip_frames, 0)?;
    model.forward_clip(&clip)?; // warm-up
    let mut regular = Vec::with_capacity(regular_runs);
    for _ in 0..regular_runs {
        let t = Instant::now();
        model.forward_clip(&clip)?;
        regular.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let load = meter.finish();

    let mean_of = |t: &[f64]| t.iter().sum::<f64>() / t.len().max(1) as f64;
    let mut timed = times.into_iter().map(sorted);
    let times = timed.next().expect("one schedule at least");
    let mean = mean_of(&times);
    let c50 = percentile(&times, 0.5);
    let compared: Vec<ScheduleTime> = schedules[1..]
        .iter()
        .zip(timed)
        .map(|(s, t)| ScheduleTime {
            schedule: s.as_str(),
            continual_ms_p50: percentile(&t, 0.5),
            continual_ms_p95: percentile(&t, 0.95),
            continual_ms_mean: mean_of(&t),
            ratio: percentile(&t, 0.5) / c50,
        })
        .collect();
    let regular = sorted(regular);
    let emitting = sorted(if emitting.is_empty() { times.clone() } else { emitting });
    let r50 = percentile(&regular, 0.5);
    Ok(BenchResult {
        model: name,
        threads,
        schedule: schedules[0].as_str(),
        lag,
        steps,
        continual_ms_p50: c50,
        continual_ms_p95: percentile(&times, 0.95),
        continual_emitting_ms_p50: percentile(&emitting, 0.5),
        continual_ms_mean: mean,
        continual_frames_per_s: 1e3 / mean,
        regular_ms_p50: r50,
        regular_ms_p95: percentile(&regular, 0.95),
        speedup: r50 / c50,
        flop_ratio: totals.ratio(),
        // MACs are 2 FLOPs.
        continual_gflops_per_s: 2.0 * totals.continual_per_step / (c50 * 1e-3) / 1e9,
        load,
        per_layer,
        compared,
    })
}

/// Random frames in the normalised input range, deterministic per index.
pub fn random_frame(crop: usize, index: usize, device: &Device) -> Result<Tensor> {
    let n = 3 * crop * crop;
    let mut state = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Ok(Tensor::from_vec(data, (3, crop, crop), device)?)
}

/// Draw the comparison as an SVG bar chart: per model, continual step vs regular sliding window (ms).
pub fn chart(results: &[BenchResult], path: &std::path::Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (800, 120 + 90 * results.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_ms = results.iter().map(|r| r.regular_ms_p50.max(r.continual_ms_p50)).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("time per new frame (ms, log scale): regular sliding window vs continual", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(140)
        .build_cartesian_2d((0.01f64..max_ms * 2.0).log_scale(), 0f64..results.len() as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(results.len())
        .y_label_formatter(&|y| {
            let i = (*y - 0.5).round() as usize;
            results.get(i).map(|r| r.model.clone()).unwrap_or_default()
        })
        .x_desc("milliseconds per new frame")
        .draw()?;
    let (red, blue) = (RGBColor(200, 80, 60), RGBColor(60, 120, 200));
    let bar = |y0: f64, y1: f64, ms: f64, colour: RGBColor| Rectangle::new([(0.01, y0), (ms, y1)], colour.filled());
    chart
        .draw_series(results.iter().enumerate().map(|(i, r)| bar(i as f64 + 0.52, i as f64 + 0.9, r.regular_ms_p50, red)))?
        .label("regular, sliding window")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], red.filled()));
    chart
        .draw_series(results.iter().enumerate().map(|(i, r)| bar(i as f64 + 0.1, i as f64 + 0.48, r.continual_ms_p50, blue)))?
        .label("continual step")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], blue.filled()));
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
