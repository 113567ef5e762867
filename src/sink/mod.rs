//! Where results go: JSON Lines on stdout (readable lines on a terminal), a progress line on a
//! terminal's stderr, and on request a labelled video and a timeline picture (docs/visual.md).
//!
//! The record types here are the documented JSON schema (README, "Output records"); every record
//! carries a `type` field (`meta`, `step`, `summary`).

pub mod draw;
pub mod human;
pub mod jsonl;
pub mod outputs;
pub mod overlay;
pub mod progress;
pub mod timeline;

use std::io;

use serde::Serialize;

pub use human::Human;
pub use jsonl::JsonLines;
pub use outputs::{Outputs, VisualArgs};
pub use progress::Progress;

/// A consumer of pipeline results. Data flows one way: sinks never reach back into the model.
pub trait Sink {
    fn meta(&mut self, _meta: &Meta) -> io::Result<()> {
        Ok(())
    }
    /// Called once per decoded source frame, before the frame's outputs.
    fn frame(&mut self, _index: u64, _pts: f64) {}
    fn step(&mut self, rec: &StepRecord<'_>) -> io::Result<()>;
    fn summary(&mut self, summary: &Summary) -> io::Result<()>;
}

/// The first record: what runs, on what.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub model: String,
    /// The weights file and its SHA-256 (hex).
    pub weights: String,
    pub weights_sha256: String,
    /// `kinetics400` (embedded list) or the labels file path.
    pub labels: String,
    pub num_classes: usize,
    /// Frame rate of the model's timeline.
    pub model_fps: f64,
    pub input: InputSize,
    /// Step of the first output, in model steps.
    pub delay: usize,
    /// Input frames (model steps) one steady-state output depends on.
    pub receptive_field: usize,
    /// One output every `stride` steps.
    pub stride: usize,
    /// How the network's threads share a step: `split` or `pipeline`.
    pub schedule: &'static str,
    /// Steps after its frame's step that an output comes (1 under `pipeline`).
    pub lag: usize,
    /// `zeros` or `replicate`.
    pub fill: &'static str,
    /// Copies of the first frame fed before the stream (replicate fill: the model's delay), so that
    /// the first output comes with the first frame. Not counted in `step`.
    pub warmup_steps: usize,
    /// Head pooling window asked for; null = the model's default.
    pub pool: Option<usize>,
    pub smooth: String,
    pub hold: usize,
    pub top_k: usize,
    pub threshold: f32,
    pub emit_transient: bool,
    /// `--max-lag` in seconds; null without it (and files never skip frames).
    pub max_lag_s: Option<f64>,
    pub version: &'static str,
    pub source: SourceMeta,
}

impl Meta {
    pub const KIND: &'static str = "meta";
}

/// The network input: short side after resize, then a square centre crop.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InputSize {
    pub resize_short: usize,
    pub crop: usize,
}

/// The input as named on the command line, and what the decoder knows about it (flattened in JSON).
#[derive(Debug, Clone, Serialize)]
pub struct SourceMeta {
    pub input: String,
    /// The input's name as hex bytes when it is not UTF-8 (`input` is then not exact); absent
    /// otherwise (docs/records.md, "File names").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_bytes: Option<String>,
    #[serde(flatten)]
    pub info: crate::source::SourceInfo,
}

/// One class and its (smoothed) probability.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TopEntry<'a> {
    pub id: usize,
    pub label: &'a str,
    pub score: f32,
}

/// The label a step reports (`current`): a class, or "none" (`id` null) when the best score is under
/// `--threshold` (README, "Output records").
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReportedLabel<'a> {
    pub id: Option<usize>,
    pub label: &'a str,
    /// The class's smoothed score; for "none", the best class's score, the one under the threshold.
    pub score: f32,
}

/// The label of a step whose best score is under the threshold.
pub const NO_ACTION: &str = "none";

/// One model output.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Source frame index (0-based, decode order of the video stream).
    pub frame: u64,
    /// Presentation time of that frame, seconds.
    pub pts: f64,
    /// Model step index; 0 is the first frame fed to the model.
    pub step: u64,
    /// False while the output still depends on the start fill.
    pub ready: bool,
    /// The time span the output covers, seconds rounded to the millisecond: from the presentation
    /// time of the oldest frame in its receptive field (the first frame while the field still reaches
    /// into the start fill) to that of its own frame.
    pub window: [f64; 2],
    /// Top-k classes after smoothing, best first, scores >= threshold.
    pub top: &'a [TopEntry<'a>],
    /// The reported label after hysteresis (`--hold`) with its smoothed score.
    pub current: ReportedLabel<'a>,
    /// Wall time of the model step that produced this output, milliseconds.
    pub latency_ms: f64,
    /// Live sources only: seconds from the frame's arrival on the live timeline to this record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_s: Option<f64>,
    /// Frames skipped (`--max-lag`) since the previous record; absent when none were.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StepRecord<'_> {
    pub const KIND: &'static str = "step";
}

/// A run of outputs with the same reported label, over the time its outputs' windows account for
/// (README, "Output records").
#[derive(Debug, Clone, Serialize)]
pub struct SegmentRecord {
    pub start: f64,
    pub end: f64,
    /// Null for "none" (under `--threshold`).
    pub id: Option<usize>,
    pub label: String,
    pub outputs: usize,
    pub mean_score: f64,
}

/// The last record.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `ok`, `interrupted` or `error`.
    pub status: &'static str,
    /// Source frames decoded.
    pub frames: u64,
    /// Model steps run.
    pub steps: u64,
    /// Outputs the network emitted (transient ones included).
    pub outputs: u64,
    /// `step` records written.
    pub records: u64,
    pub wall_s: f64,
    pub steps_per_s: f64,
    /// Median and 95th percentile of the model step latency, milliseconds (null without steps).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Frames skipped to stay within `--max-lag` of a live source (0 for files: they never skip).
    pub skipped: u64,
    /// The largest `lag_s` of the run; null for files.
    pub max_lag_s: Option<f64>,
    /// The oldest segments left out of `segments` to keep it bounded (docs/records.md, "Segments");
    /// absent when none were.
    #[serde(skip_serializing_if = "is_zero")]
    pub segments_dropped: u64,
    pub segments: Vec<SegmentRecord>,
}

impl Summary {
    pub const KIND: &'static str = "summary";
}
