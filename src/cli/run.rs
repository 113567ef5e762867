//! `coinfer run INPUT`: stream a video through a model and write JSON Lines.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use sha2::{Digest, Sha256};

use crate::cli::ScheduleArg;
use crate::error::{ErrorKind, classified};
use crate::labels::Labels;
use crate::models::{self, Fill, ModelOptions};
use crate::pipeline;
use crate::sink::{InputSize, Meta, Outputs, SourceMeta, VisualArgs};
use crate::smooth::SmoothMode;
use crate::source::{self, OpenOptions, RawVideo};

const RUN_EXAMPLES: &str = "\
Examples:
  coinfer run samples/sports2d-demo.mp4
  coinfer run -k 3 --threshold 0.05 clip.mkv
  coinfer run --smooth mean:8 --hold 4 --no-transient clip.mp4
  ffmpeg -f v4l2 -i /dev/video0 -f yuv4mpegpipe - | coinfer run -
  ffmpeg -i clip.mp4 -f rawvideo -pix_fmt bgr24 - |
    coinfer run --raw 640x360 --pix-fmt bgr24 --fps 30 -
  coinfer run --input-format v4l2 /dev/video0
  ffmpeg -re -i rtsp://cam/stream -f yuv4mpegpipe - | coinfer run --max-lag 1 -

Every input is answered from its first frame: --fill replicate warms the network up with copies
of the first frame, so the first output comes with the first frame instead of after the model's
delay (2.5 s for I3D). These early outputs are marked \"ready\":false until the receptive field
holds only real frames (select(.ready) or --no-transient keeps the exact ones). No extra smoothing
by default: the network's head already averages over its temporal window, and more smoothing only
adds lag. Live sources report lag_s; --max-lag skips frames to stay live.";

#[derive(Debug, Clone, Args)]
#[command(after_help = RUN_EXAMPLES)]
pub struct RunArgs {
    /// Video file, device (/dev/video0), URL (rtsp://…), or `-` for stdin (y4m, mpegts, fragmented mp4, or --raw)
    // An OsString: a file name is any bytes (docs/records.md, "File names").
    pub input: OsString,

    /// Model to run (see `coinfer models`)
    #[arg(short, long, default_value = models::DEFAULT_MODEL)]
    pub model: String,

    /// Checkpoint to load instead of the model's default
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,

    /// Class names: text (one per line), JSON {name: id} or CSV id,name [default: embedded Kinetics-400]
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,

    /// Classes listed per output
    #[arg(short = 'k', long, default_value_t = 5, value_parser = super::values::at_least_one::<u64>)]
    pub top_k: u64,

    /// List only classes whose (smoothed) score is at least P; under it the label is "none"
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    pub threshold: f32,

    /// Smoothing of the scores over outputs: none, ema:ALPHA (0<ALPHA<=1) or mean:N
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub smooth: SmoothMode,

    /// A new label must lead for K outputs before the reported label switches (0: at once)
    #[arg(long, value_name = "K", default_value_t = 0, value_parser = super::values::at_least_zero::<usize>)]
    pub hold: usize,

    /// How each layer's temporal state starts: zeros (the clip network's padding) or replicate (as if the first frame had always been there)
    #[arg(long, value_enum, default_value_t = FillArg::Replicate)]
    pub fill: FillArg,

    /// Also report outputs emitted before the receptive field is full ("ready":false) [default]
    #[arg(long, conflicts_with = "no_transient")]
    pub emit_transient: bool,

    /// Report only outputs whose receptive field is full
    #[arg(long)]
    pub no_transient: bool,

    /// Head window: the positions the head averages, 1 to 1024 (CoX3D, CoI3D: emitted positions; CoSlow,
    /// CoSlowFast: slow positions) [default: the model's]
    #[arg(long, value_name = "N", value_parser = super::values::at_least_one::<u64>)]
    pub pool: Option<u64>,

    /// Read raw frames of this size from the input (e.g. `--raw 640x360 --fps 30 -`)
    // `-3x4` is a value (a bad one), not an option.
    #[arg(long, value_name = "WxH", value_parser = parse_size, allow_hyphen_values = true)]
    pub raw: Option<(u32, u32)>,

    /// Pixel format of raw frames (rgb24, bgr24, gray, yuv420p, … as FFmpeg names them)
    #[arg(long, value_name = "FMT", default_value = "rgb24", requires = "raw")]
    pub pix_fmt: String,

    /// Frame rate of the input when it carries none (required with --raw)
    #[arg(long, value_name = "FPS", value_parser = parse_fps)]
    pub fps: Option<f64>,

    /// Force the input format (FFmpeg's name: v4l2, mpegts, yuv4mpegpipe, …)
    #[arg(long, value_name = "FMT", alias = "format")]
    pub input_format: Option<String>,

    /// Live sources: skip frames that arrive more than SECONDS behind live, so labels stay current (files never skip)
    #[arg(long, value_name = "SECONDS", value_parser = parse_max_lag)]
    pub max_lag: Option<f64>,

    /// No progress display and no notes on stderr (errors are still printed)
    #[arg(short, long)]
    pub quiet: bool,

    /// No progress display on stderr
    #[arg(long)]
    pub no_progress: bool,

    /// Describe the model and the input on stderr
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Threads for the network step, 1 to 4 × the cores [default: the cores available]
    #[arg(long, value_name = "N", value_parser = |s: &str| super::values::threads::<u64>("--threads", s))]
    pub threads: Option<u64>,

    /// How the network's threads share a step
    #[arg(long, value_enum, default_value_t = ScheduleArg::Auto)]
    pub schedule: ScheduleArg,

    #[command(flatten)]
    pub visual: VisualArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FillArg {
    Zeros,
    Replicate,
}

impl FillArg {
    fn fill(self) -> Fill {
        match self {
            FillArg::Zeros => Fill::Zeros,
            FillArg::Replicate => Fill::Replicate,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            FillArg::Zeros => "zeros",
            FillArg::Replicate => "replicate",
        }
    }
}

/// `-k` lists at most every class of the model (README, "Options").
pub fn check_top_k(k: u64, spec: &models::ModelSpec) -> anyhow::Result<()> {
    if k == 0 || k > spec.num_classes as u64 {
        return Err(classified(ErrorKind::Usage, format!("-k {k} is out of range for {}: 1 to {} classes", spec.name, spec.num_classes)));
    }
    Ok(())
}

fn parse_probability(s: &str) -> Result<f32, String> {
    let p: f32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&p) { Ok(p) } else { Err(format!("{p} is not between 0 and 1")) }
}

fn parse_max_lag(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if f.is_finite() && f > 0.0 { Ok(f) } else { Err(format!("{f} is not a lag in seconds (> 0)")) }
}

fn parse_fps(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if f.is_finite() && f > 0.0 && f <= 10_000.0 { Ok(f) } else { Err(format!("{f} is not a frame rate (0 < FPS <= 10000)")) }
}

/// `WxH` with both sides in 1..=16384 (a bound that keeps a frame's buffer sane).
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("'{s}' is not WxH, e.g. 640x360"))?;
    let side = |v: &str| -> Result<u32, String> {
        let n: i128 = v.trim().parse().map_err(|_| format!("'{s}' is not WxH, e.g. 640x360"))?;
        u32::try_from(n).ok().filter(|n| (1..=16384).contains(n)).ok_or_else(|| format!("{n} is not a frame side (1..=16384)"))
    };
    Ok((side(w)?, side(h)?))
}

impl RunArgs {
    /// Whether to report transient outputs: unless `--no-transient`, for files as for streams, so
    /// that every input is answered from its first frame.
    pub fn emit_transient(&self) -> bool {
        !self.no_transient
    }
}

/// A file that is not there is a "no such input" (66) before any model is loaded; devices, URLs,
/// stdin and forced formats (lavfi, v4l2 names) are left to the decoder. A missing file named like a
/// subcommand (`coinfer model`) is most likely a typo of it, and the error says so.
fn check_input(input: &OsStr, forced_format: bool) -> anyhow::Result<()> {
    if input == "-" || forced_format || input.to_str().is_some_and(|s| s.contains("://")) {
        return Ok(());
    }
    if !Path::new(input).exists() {
        let hint = match input.to_str().and_then(crate::cli::similar_subcommand) {
            Some(name) => format!(" (did you mean the subcommand `coinfer {name}`?)"),
            None => String::new(),
        };
        return Err(classified(ErrorKind::NoInput, format!("no such file: {}{hint}", Path::new(input).display())));
    }
    Ok(())
}

pub fn execute(args: &RunArgs) -> anyhow::Result<()> {
    let stop = crate::signals::install()?;
    let labels_file = args.labels.as_deref().map(Labels::from_file).transpose()?;
    if args.raw.is_some() && args.fps.is_none() {
        return Err(classified(ErrorKind::Usage, "--raw needs --fps: a raw stream carries no frame rate"));
    }
    check_input(&args.input, args.input_format.is_some())?;
    // Records and the visual outputs name the input by its text; the decoders open it by its bytes.
    let input_text = crate::paths::text(Path::new(&args.input)).into_owned();
    let mut visual = args.visual.prepare(&args.input, args.input_format.is_some())?;

    let model_opts = ModelOptions { weights: args.weights.clone(), fill: args.fill.fill(), pool: args.pool.map(|p| p as usize) };
    let desc = models::describe(&args.model, &model_opts)?;
    let (labels, note) = Labels::for_model(labels_file, &args.model, desc.spec.num_classes)?;
    check_top_k(args.top_k, &desc.spec)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }

    let open_opts = OpenOptions {
        raw: args.raw.map(|(width, height)| RawVideo { width, height, pix_fmt: args.pix_fmt.clone() }),
        fps: args.fps,
        format: args.input_format.clone(),
    };
    let src = source::open(&args.input, &open_opts)?;
    let info = src.info().clone();
    let src = visual.tap(src, labels.names(), &desc.spec.name, args.top_k)?;
    // Decoding starts now and runs ahead while the model is built and its weights hashed.
    let max_lag = args.max_lag.filter(|_| info.is_stream);
    let (packets, decoder) = pipeline::spawn_live_decoder(src, &desc.spec, stop.clone(), max_lag)?;
    let mut model = models::build(&args.model, &model_opts)?;
    anyhow::ensure!(model.spec() == &desc.spec, "{}: the built model differs from its description", args.model);
    let weights_sha256 = sha256_file(&desc.weights)?;
    let emit_transient = args.emit_transient();
    model.set_schedule(args.schedule.resolve(info.is_stream))?;
    let shape = model.shape();
    let spec = model.spec().clone();
    // Replicate fill: feed the first frame `delay` times first, so the network behaves as if that
    // frame had always been there and its first output comes with the first real frame.
    let warmup = if args.fill == FillArg::Replicate { shape.delay } else { 0 };

    let meta = Meta {
        kind: Meta::KIND,
        model: spec.name.clone(),
        weights: desc.weights.display().to_string(),
        weights_sha256,
        labels: labels.source.clone(),
        num_classes: spec.num_classes,
        model_fps: spec.fps,
        input: InputSize { resize_short: spec.resize_short, crop: spec.crop },
        delay: shape.delay,
        receptive_field: shape.receptive_field,
        stride: shape.stride,
        schedule: model.schedule().as_str(),
        lag: shape.lag,
        fill: args.fill.as_str(),
        warmup_steps: warmup,
        pool: model_opts.pool,
        smooth: args.smooth.to_string(),
        hold: args.hold,
        top_k: args.top_k as usize,
        threshold: args.threshold,
        emit_transient,
        max_lag_s: args.max_lag,
        version: env!("CARGO_PKG_VERSION"),
        source: SourceMeta { input: input_text, input_bytes: crate::paths::bytes_hex(&args.input), info: info.clone() },
    };
    if args.verbose > 0 && !args.quiet {
        eprintln!(
            "coinfer: {} at {} fps, {}x{} crop, first output at step {}, ready after {} steps, {} schedule{}; \
             input {}x{} {} in {} at {} fps",
            spec.name,
            spec.fps,
            spec.crop,
            spec.crop,
            shape.delay,
            shape.receptive_field,
            model.schedule().as_str(),
            if shape.lag > 0 { format!(" (outputs {} step later)", shape.lag) } else { String::new() },
            info.width,
            info.height,
            info.codec,
            info.container,
            info.fps.map_or("unknown".to_string(), |f| format!("{f:.3}")),
        );
    }

    if args.max_lag.is_some() && !info.is_stream && !args.quiet {
        eprintln!("coinfer: note: --max-lag applies to live sources; a file never skips frames");
    }
    let mut outputs =
        Outputs::open(&args.visual, visual, &meta, &labels, !args.quiet && !args.no_progress, args.verbose > 0 && !args.quiet)?;
    // The meta record is out: a signal now ends the run with its summary.
    crate::signals::streaming();
    let opts = pipeline::Options {
        top_k: args.top_k as usize,
        threshold: args.threshold,
        smooth: args.smooth,
        hold: args.hold,
        emit_transient,
        warmup,
        live: info.is_stream.then_some(pipeline::Live {
            max_lag_s: args.max_lag,
            warn: if args.quiet { pipeline::warn_nowhere } else { pipeline::warn_on_stderr },
        }),
    };
    let summary = pipeline::run(packets, model.as_mut(), &labels, &opts, &mut outputs.sinks(), &stop)?;
    outputs.finish()?;
    if summary.status == "interrupted" {
        // The decoder may be blocked on a live input; the process exits without waiting for it.
        return Err(classified(ErrorKind::Interrupted, "interrupted"));
    }
    let _ = decoder.join();
    Ok(())
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| classified(ErrorKind::NoInput, format!("cannot open weights {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("640x360"), Ok((640, 360)));
        assert_eq!(parse_size("2X3"), Ok((2, 3)));
        for bad in ["640", "0x10", "10x0", "x", "640x-1", "99999x10", "axb"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sha256_of_a_known_string() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        // FIPS 180-2 test vector for "abc".
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
