//! `coinfer models`: the built-in models, as a table or JSON.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use crate::models::{self, ModelOptions};

#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

/// One model as `coinfer models --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub name: String,
    pub default: bool,
    /// Frames the model takes per second of video (its timeline's rate, not a speed), as `model_fps`
    /// in the meta record.
    pub model_fps: f64,
    pub resize_short: usize,
    pub crop: usize,
    pub num_classes: usize,
    pub delay: usize,
    pub receptive_field: usize,
    pub stride: usize,
    /// Multiply-accumulates per input frame (papers' "FLOPs" are these).
    pub macs_per_step: f64,
    pub weights: String,
    pub weights_present: bool,
    pub summary: String,
}

pub fn rows() -> anyhow::Result<Vec<ModelRow>> {
    models::names()
        .into_iter()
        .map(|name| {
            let d = models::describe(name, &ModelOptions::default())?;
            Ok(ModelRow {
                name: name.to_string(),
                default: name == models::DEFAULT_MODEL,
                model_fps: d.spec.fps,
                resize_short: d.spec.resize_short,
                crop: d.spec.crop,
                num_classes: d.spec.num_classes,
                delay: d.shape.delay,
                receptive_field: d.shape.receptive_field,
                stride: d.shape.stride,
                macs_per_step: d.macs_per_step,
                weights: d.weights.display().to_string(),
                weights_present: d.weights_present,
                summary: d.summary,
            })
        })
        .collect()
}

pub fn execute(args: &ModelsArgs) -> anyhow::Result<()> {
    let rows = rows()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(out.flush()?);
    }
    writeln!(
        out,
        "{:<12} {:>9} {:>9} {:>6} {:>6} {:>7} {:>11}  {:<8} DESCRIPTION",
        "MODEL", "MODEL FPS", "INPUT", "DELAY", "RF", "STRIDE", "GMACS/STEP", "WEIGHTS"
    )?;
    for r in &rows {
        let name = if r.default { format!("{}*", r.name) } else { r.name.clone() };
        writeln!(
            out,
            "{:<12} {:>9.2} {:>9} {:>6} {:>6} {:>7} {:>11.3}  {:<8} {}",
            name,
            r.model_fps,
            format!("{}x{}", r.crop, r.crop),
            r.delay,
            r.receptive_field,
            r.stride,
            r.macs_per_step / 1e9,
            if r.weights_present { "present" } else { "missing" },
            r.summary
        )?;
    }
    writeln!(out, "* default. MODEL FPS: the frame rate of the model's timeline (frames it takes per second")?;
    writeln!(out, "of video, not a speed). DELAY and RF (receptive field) are in steps of that timeline.")?;
    Ok(out.flush()?)
}
