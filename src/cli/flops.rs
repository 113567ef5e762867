//! `coinfer flops`: regular versus continual cost, counted by walking the layers the engine runs.

use std::io::Write;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::flops::{self, Convention, Totals};
use crate::models::{self, ModelOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConventionArg {
    /// True multiply-accumulates, every layer once
    Macs,
    /// The ptflops counting behind the published numbers (MACs + BN, ReLU, pooling, biases)
    Paper,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  coinfer flops\n  coinfer flops --model x3d-s --convention paper\n  \
    coinfer flops --model i3d --per-layer\n  coinfer flops --json | jq .ratio")]
pub struct FlopsArgs {
    /// Model to count (default: every built-in model)
    #[arg(long, short)]
    pub model: Option<String>,
    /// Print a table of every layer (output shape, regular per clip, continual per step)
    #[arg(long)]
    pub per_layer: bool,
    /// How operations are counted
    #[arg(long, value_enum, default_value = "macs")]
    pub convention: ConventionArg,
    /// Head window: the positions the head averages, 1 to 1024 (CoX3D, CoI3D: emitted positions; CoSlow,
    /// CoSlowFast: slow positions) [default: the model's]
    #[arg(long, value_parser = super::values::at_least_one::<usize>)]
    pub pool: Option<usize>,
    /// One JSON object per model
    #[arg(long)]
    pub json: bool,
}

/// The stable JSON shape of `coinfer flops --json`.
#[derive(Debug, Serialize)]
pub struct FlopsRecord {
    pub model: String,
    pub convention: &'static str,
    pub clip_frames: usize,
    pub regular_clip_gflops: f64,
    pub regular_per_frame_gflops: f64,
    pub continual_per_step_gflops: f64,
    pub continual_peak_step_gflops: f64,
    pub ratio: f64,
    /// Paper convention: the per-step count without the published tooling's double counting.
    pub continual_per_step_single_count_gflops: Option<f64>,
}

/// Count one built-in model.
pub fn count(name: &str, convention: Convention, pool: Option<usize>) -> anyhow::Result<(FlopsRecord, Totals)> {
    let opts = ModelOptions { pool, ..ModelOptions::default() };
    let model = models::build_random(name, &opts)?;
    let totals = flops::count(&model.report(), model.clip_frames(), convention);
    let g = 1e-9;
    // The published CoX3D, CoSlow and CoI3D-R50 per-step figures carry their tooling's artefacts:
    // report them as published, with the single count beside. No continual figures were published
    // for the other models.
    let canonical = models::registry::find(name).map(|m| m.name).unwrap_or(name);
    let published_model = canonical.starts_with("x3d") || ["slow-r50", "i3d-r50"].contains(&canonical);
    let (per_step, single) = match totals.continual_per_step_published {
        Some(published) if published_model => (published, Some(totals.continual_per_step * g)),
        _ => (totals.continual_per_step, None),
    };
    let record = FlopsRecord {
        model: name.to_string(),
        convention: match convention {
            Convention::Macs => "macs",
            Convention::Paper => "paper",
        },
        clip_frames: totals.clip_frames,
        regular_clip_gflops: totals.regular_clip * g,
        regular_per_frame_gflops: totals.regular_per_frame * g,
        continual_per_step_gflops: per_step * g,
        continual_peak_step_gflops: totals.continual_peak_step * g,
        ratio: totals.regular_per_frame / per_step,
        continual_per_step_single_count_gflops: single,
    };
    Ok((record, totals))
}

pub fn execute(args: &FlopsArgs) -> anyhow::Result<()> {
    let convention = match args.convention {
        ConventionArg::Macs => Convention::Macs,
        ConventionArg::Paper => Convention::Paper,
    };
    let names: Vec<String> = match &args.model {
        Some(m) => vec![m.clone()],
        None => models::names().into_iter().map(String::from).collect(),
    };
    let mut out = std::io::stdout().lock();
    if !args.json && !args.per_layer {
        writeln!(
            out,
            "{:<10} {:>6} {:>6} {:>14} {:>15} {:>14} {:>13} {:>7}",
            "MODEL", "CONV", "CLIP", "REGULAR/CLIP", "REGULAR/FRAME", "CONTINUAL/STEP", "PEAK STEP", "RATIO"
        )?;
    }
    for name in &names {
        let (rec, totals) = count(name, convention, args.pool)?;
        if args.json {
            serde_json::to_writer(&mut out, &rec)?;
            writeln!(out)?;
            continue;
        }
        if args.per_layer {
            writeln!(out, "{name} ({}), regular clip of {} frames; GFLOPs", rec.convention, rec.clip_frames)?;
            writeln!(out, "{:<58} {:<10} {:>16} {:>12} {:>14}", "LAYER", "KIND", "OUTPUT CxTxHxW", "REGULAR", "CONTINUAL")?;
            for l in &totals.layers {
                if l.regular_clip == 0.0 && l.continual_per_step == 0.0 {
                    continue;
                }
                let shape = format!("{}x{}x{}x{}", l.output.c, l.clip_frames_out, l.output.h, l.output.w);
                writeln!(
                    out,
                    "{:<58} {:<10} {:>16} {:>12.6} {:>14.6}",
                    l.name,
                    l.kind,
                    shape,
                    l.regular_clip * 1e-9,
                    l.continual_per_step * 1e-9
                )?;
            }
        }
        let star = if rec.continual_per_step_single_count_gflops.is_some() { "*" } else { "" };
        writeln!(
            out,
            "{:<10} {:>6} {:>6} {:>13.3}G {:>14.3}G {:>13.4}G{star} {:>12.4}G {:>6.1}x",
            rec.model,
            rec.convention,
            rec.clip_frames,
            rec.regular_clip_gflops,
            rec.regular_per_frame_gflops,
            rec.continual_per_step_gflops,
            rec.continual_peak_step_gflops,
            rec.ratio
        )?;
        if let Some(single) = rec.continual_per_step_single_count_gflops {
            writeln!(
                out,
                "           * as published: BN and ReLU counted twice per step and the channel-dim linear head \
                 counted as in+1 by the paper's tooling; single count {single:.4}G"
            )?;
        }
    }
    Ok(out.flush()?)
}
