//! `coinfer batch`: label folders of clips with one record per clip, resumable and shardable.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::batch::inputs::{self, Shard};
use crate::batch::journal::Format;
use crate::batch::keys::ClipKeys;
use crate::batch::{self, BatchOptions, ClipLabeler, ClipResult};
use crate::cli::ScheduleArg;
use crate::error::{ErrorKind, classified};
use crate::labels::Labels;
use crate::models::{self, Fill, ModelOptions, StreamModel};
use crate::pipeline;
use crate::sink::timeline::{self, Timeline};
use crate::sink::{Sink, StepRecord, Summary};
use crate::smooth::SmoothMode;
use crate::source::{self, OpenOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Csv,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Per clip one record (`clip`, or `error` for a clip that failed); the run goes on past failures and \
exits 65 (bad data) or 1 at the end if any clip failed. The clip-level prediction is the mean of the \
probabilities of the steady-state outputs (`aggregation: steady-mean`); a clip shorter than the model's \
receptive field has none, and gets the mean of its transient outputs (`transient-mean`): with the \
replicate warm-up every clip of one frame or more gets an answer. Its segments cover it from its \
first frame.

Examples:
  coinfer batch videos/ --out labels.jsonl
  coinfer batch 'clips/**/*.mp4' @more.txt --out labels.csv --jobs 2
  coinfer batch videos/ --out labels.jsonl --resume      # after an interruption
  coinfer batch videos/ --shard 3/8 --out part-3.jsonl   # one of 8 machines
  coinfer batch videos/ --out labels.jsonl --timeline charts/  # chart per clip

Slurm (#SBATCH --array=0-7):
  coinfer batch data/ --resume --shard $SLURM_ARRAY_TASK_ID/8 \\
    --out part-$SLURM_ARRAY_TASK_ID.jsonl
GNU parallel over hosts:
  parallel -S h1,h2 coinfer batch /nfs/data --shard {}/8 \\
    --out /nfs/out/part-{}.jsonl --resume ::: $(seq 0 7)")]
pub struct BatchArgs {
    /// Files, directories (recursive, video extensions), globs, or @list.txt
    // OsStrings: a file name is any bytes (docs/records.md, "File names").
    #[arg(required = true)]
    pub inputs: Vec<OsString>,
    /// Output file (appended record by record; default stdout)
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Output format [default: csv for an --out ending in .csv, else jsonl]
    #[arg(long, value_enum, value_name = "FORMAT", alias = "format")]
    pub out_format: Option<FormatArg>,
    /// Clips labelled in parallel, each worker with its own model (default: half the cores, at least 1)
    #[arg(long, short, value_parser = |s: &str| super::values::threads::<usize>("--jobs", s))]
    pub jobs: Option<usize>,
    /// Take only shard I of N (0-based), chosen by a stable hash of the clip's key (its path relative to --root)
    // `-1/4` is a value (a bad one), not an option.
    #[arg(long, allow_hyphen_values = true)]
    pub shard: Option<Shard>,
    /// Key clips (--resume, --shard) on their paths relative to DIR [default: the deepest directory holding every input]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Skip clips already recorded in --out (same key, size and modification time)
    #[arg(long)]
    pub resume: bool,
    /// Stop at the first failed clip
    #[arg(long)]
    pub fail_fast: bool,
    /// Model to run (see `coinfer models`)
    #[arg(long, short, default_value = crate::models::DEFAULT_MODEL)]
    pub model: String,
    /// Checkpoint to load instead of the model's default
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Classes per clip record
    #[arg(long, short = 'k', default_value_t = 5, value_parser = super::values::at_least_one::<usize>)]
    pub top_k: usize,
    /// Head window: the positions the head averages, 1 to 1024 (CoX3D, CoI3D: emitted positions; CoSlow,
    /// CoSlowFast: slow positions) [default: the model's]
    #[arg(long, value_name = "N", value_parser = super::values::at_least_one::<usize>)]
    pub pool: Option<usize>,
    /// Labels file (txt, JSON {name: id} or CSV id,name); default Kinetics-400
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// No progress display and no closing count on stderr (errors are still printed)
    #[arg(long, short)]
    pub quiet: bool,
    /// How the network's threads share a step (auto: the pipeline on two threads)
    #[arg(long, value_enum, default_value_t = ScheduleArg::Auto)]
    pub schedule: ScheduleArg,
    /// Also draw each clip's label track into DIR, one chart per clip named after its path (see docs/visual.md)
    #[arg(long, value_name = "DIR")]
    pub timeline: Option<PathBuf>,
    /// Picture format of the --timeline charts
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ChartFormat::Svg, requires = "timeline")]
    pub timeline_format: ChartFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChartFormat {
    Svg,
    Png,
}

impl ChartFormat {
    fn kind(self) -> timeline::Kind {
        match self {
            ChartFormat::Svg => timeline::Kind::Svg,
            ChartFormat::Png => timeline::Kind::Png,
        }
    }
}

/// `--timeline DIR`: made if missing, and proved writable before any clip (66 if not).
fn prepare_chart_dir(dir: &Path) -> anyhow::Result<()> {
    let cannot = |e: std::io::Error| classified(ErrorKind::NoInput, format!("cannot write timelines into {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(cannot)?;
    let probe = dir.join(".coinfer-write-test");
    std::fs::write(&probe, b"").map_err(cannot)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

impl BatchArgs {
    /// The output format: as asked, else from `--out`'s extension (`.csv`), else JSON Lines.
    pub fn out_format(&self) -> FormatArg {
        let csv_file = self.out.as_ref().and_then(|p| p.extension()).is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        self.out_format.unwrap_or(if csv_file { FormatArg::Csv } else { FormatArg::Jsonl })
    }
}

/// Sums the probabilities of the outputs of one clip, steady-state and transient apart (running sums:
/// memory does not grow with the clip's length, and no step allocates).
struct Collect {
    steady: Vec<f64>,
    transient: Vec<f64>,
    n_steady: usize,
    n_transient: usize,
}

impl Collect {
    fn new(classes: usize) -> Self {
        Collect { steady: vec![0.0; classes], transient: vec![0.0; classes], n_steady: 0, n_transient: 0 }
    }
}

impl Sink for Collect {
    fn step(&mut self, rec: &StepRecord<'_>) -> std::io::Result<()> {
        let (sum, n) = if rec.ready { (&mut self.steady, &mut self.n_steady) } else { (&mut self.transient, &mut self.n_transient) };
        *n += 1;
        for t in rec.top {
            if let Some(s) = sum.get_mut(t.id) {
                *s += t.score as f64;
            }
        }
        Ok(())
    }
    /// `pipeline::run` returns the summary too; nothing to keep here.
    fn summary(&mut self, _summary: &Summary) -> std::io::Result<()> {
        Ok(())
    }
}

struct ModelLabeler {
    model: Box<dyn StreamModel>,
    labels: Arc<Labels>,
    top_k: usize,
    /// `--timeline DIR` and the charts' format.
    charts: Option<(PathBuf, timeline::Kind)>,
}

impl ClipLabeler for ModelLabeler {
    fn label(&mut self, path: &Path) -> anyhow::Result<ClipResult> {
        let src = source::open(path, &OpenOptions::default())?;
        let duration_s = src.info().duration;
        let spec = self.model.spec().clone();
        let classes = spec.num_classes;
        self.model.reset();
        // A signal stops the clip; it is then not recorded, so that --resume labels it again.
        let stop = crate::signals::install()?;
        let (packets, decoder) = pipeline::spawn_decoder(src, &spec, stop.clone())?;
        let opts = pipeline::Options {
            top_k: classes,
            threshold: 0.0,
            smooth: SmoothMode::None,
            hold: 0,
            emit_transient: true,
            warmup: self.model.shape().delay,
            live: None,
        };
        let mut collect = Collect::new(classes);
        // The chart follows the clip record's top-k; it is written before the record, so a clip
        // recorded (and skipped by --resume) has its chart.
        let mut chart = match &self.charts {
            Some((dir, kind)) => {
                let file = dir.join(timeline::clip_chart_name(path, *kind));
                let expected = duration_s.map_or(0, |d| (d * spec.fps) as usize + 2);
                let title = format!("{} on {}", spec.name, path.display());
                Some(Timeline::new(file, self.labels.names().to_vec(), title, duration_s, expected, self.top_k)?)
            }
            None => None,
        };
        let summary = match chart.as_mut() {
            Some(chart) => pipeline::run(packets, self.model.as_mut(), &self.labels, &opts, &mut [&mut collect, chart], &stop)?,
            None => pipeline::run(packets, self.model.as_mut(), &self.labels, &opts, &mut [&mut collect], &stop)?,
        };
        let _ = decoder.join();
        if summary.status == "interrupted" {
            return Err(classified(ErrorKind::Interrupted, format!("{}: interrupted", path.display())));
        }
        if summary.status != "ok" {
            return Err(classified(ErrorKind::Data, format!("{}: decoding stopped ({})", path.display(), summary.status)));
        }
        let (sum, n, aggregation) = if collect.n_steady > 0 {
            (&collect.steady, collect.n_steady, "steady-mean")
        } else {
            (&collect.transient, collect.n_transient, "transient-mean")
        };
        if n == 0 {
            return Err(classified(ErrorKind::Data, format!("{}: no frames decoded", path.display())));
        }
        if let Some(chart) = &chart {
            chart.write()?;
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        let mut order = vec![0; classes];
        pipeline::rank_classes(&mean, &mut order, f64::total_cmp);
        let top = order.iter().take(self.top_k).map(|&i| (i, self.labels.name(i).to_string(), mean[i] as f32)).collect();
        Ok(ClipResult {
            duration_s,
            frames: summary.frames,
            steps: summary.steps,
            outputs: summary.outputs,
            aggregation,
            top,
            segments: summary.segments.iter().map(|s| json!(s)).collect(),
            segments_dropped: summary.segments_dropped,
        })
    }
}

pub fn execute(args: &BatchArgs) -> anyhow::Result<()> {
    // Every finished clip is on disk the moment it ends, so a signal may stop the run at any point:
    // the clips in flight are dropped (not recorded) and `--resume` labels them again.
    crate::signals::install()?;
    crate::signals::streaming();
    let labels_file = args.labels.as_deref().map(Labels::from_file).transpose()?;
    let model_opts = ModelOptions { weights: args.weights.clone(), fill: Fill::Replicate, pool: args.pool };
    // Fail before any clip if the model or its weights are wrong.
    let desc = models::describe(&args.model, &model_opts)?;
    let (labels, note) = Labels::for_model(labels_file, &args.model, desc.spec.num_classes)?;
    let labels = Arc::new(labels);
    super::run::check_top_k(args.top_k as u64, &desc.spec)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    if args.resume && args.out.is_none() {
        return Err(classified(ErrorKind::Usage, "--resume needs --out (the file to continue)"));
    }
    if let Some(dir) = &args.timeline {
        prepare_chart_dir(dir)?;
    }
    let expanded = inputs::expand(&args.inputs)?;
    let keys = ClipKeys::new(args.root.as_deref().unwrap_or(&expanded.root))?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let opts = BatchOptions {
        out: args.out.clone(),
        format: match args.out_format() {
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::Csv => Format::Csv,
        },
        jobs: match args.jobs {
            Some(n) => super::check_threads("--jobs", n as u64)?,
            None => (cores / 2).max(1),
        },
        shard: args.shard,
        keys,
        resume: args.resume,
        fail_fast: args.fail_fast,
        progress: !args.quiet,
    };
    let make = || -> anyhow::Result<Box<dyn ClipLabeler>> {
        let mut model = models::build(&args.model, &model_opts)?;
        model.set_schedule(args.schedule.resolve(false))?;
        let charts = args.timeline.clone().map(|dir| (dir, args.timeline_format.kind()));
        Ok(Box::new(ModelLabeler { model, labels: labels.clone(), top_k: args.top_k, charts }))
    };
    let summary = batch::run(expanded.clips, &opts, &make)?;
    if !args.quiet {
        eprintln!(
            "coinfer: {} clips: {} labelled, {} failed, {} already recorded",
            summary.total, summary.labelled, summary.failed, summary.skipped
        );
    }
    if crate::signals::received() {
        // The clips in flight were dropped; `--resume` labels them.
        return Err(classified(ErrorKind::Interrupted, "interrupted (run again with --resume to continue)"));
    }
    match summary.first_failure {
        None => Ok(()),
        Some(kind) => {
            let kind = if kind == ErrorKind::Data || kind == ErrorKind::NoInput { ErrorKind::Data } else { ErrorKind::Runtime };
            Err(classified(kind, format!("{} of {} clips failed (see the error records)", summary.failed, summary.total)))
        }
    }
}
