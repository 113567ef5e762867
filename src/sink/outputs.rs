//! Where a run's results go, as the user asked: the options (`--overlay`, `--timeline`, `--jsonl`,
//! `--json`) and the set of sinks they make (docs/visual.md).

use std::ffi::{OsStr, OsString};
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use clap::Args;

use super::human::AboveBar;
use super::overlay::{self, Overlay, Target};
use super::timeline::{self, Timeline};
use super::{Human, JsonLines, Meta, Progress, Sink};
use crate::error::{ErrorKind, classified};
use crate::labels::Labels;
use crate::source::FrameSource;

#[derive(Debug, Clone, Default, Args)]
pub struct VisualArgs {
    /// Also write the video with the labels drawn on it: FILE.mp4, .mkv, .webm, .mov, or `-` for Matroska on stdout
    // Bytes: a file name need not be UTF-8 (docs/records.md, "File names").
    #[arg(long, value_name = "FILE")]
    pub overlay: Option<OsString>,

    /// Video encoder for --overlay (an FFmpeg encoder name) [default: libx264 where the container takes H.264, else the container's own]
    #[arg(long, value_name = "NAME", requires = "overlay")]
    pub overlay_codec: Option<String>,

    /// Quality of --overlay for encoders with a constant rate factor (lower is better; x264's default 23)
    #[arg(long, value_name = "N", requires = "overlay", value_parser = |s: &str| crate::cli::values::whole::<u32>(s, 0, Some(63)))]
    pub overlay_crf: Option<u32>,

    /// Also draw the label track over the clip's time: FILE.svg or FILE.png
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,

    /// Also write the JSON Lines records to FILE (`-`: stdout, as --json)
    #[arg(long, value_name = "FILE")]
    pub jsonl: Option<String>,

    /// JSON Lines on stdout even when it is a terminal (default: readable lines on a terminal)
    #[arg(long)]
    pub json: bool,
}

/// The checks made before any work, and what they settled.
pub struct Prepared {
    overlay: Option<Target>,
    /// The overlay of a live input, started by [`Prepared::tap`].
    live_overlay: Option<(Overlay, Target)>,
    jsonl_file: Option<std::fs::File>,
}

impl Prepared {
    /// With `--overlay` on a live input: start the overlay thread now and return the input wrapped so
    /// that the model's decoder passes it every frame (docs/visual.md, "The live preview"). Any other
    /// input is returned as it is. Call before the decoder starts.
    pub fn tap(&mut self, source: Box<dyn FrameSource>, names: &[String], model: &str, top_k: u64) -> anyhow::Result<Box<dyn FrameSource>> {
        let Some(target) = self.overlay.take_if(|t| t.live) else { return Ok(source) };
        let top_k = (top_k as usize).min(overlay::panel::MAX_BARS);
        let (sink, source) = Overlay::start_live(target.clone(), source, names.to_vec(), model.to_string(), top_k)?;
        self.live_overlay = Some((sink, target));
        Ok(source)
    }
}

impl Drop for Prepared {
    /// A run that fails before its outputs open leaves no empty temporary video behind.
    fn drop(&mut self) {
        if let Some(target) = self.overlay.take().filter(|t| t.rename_to.is_some()) {
            let _ = std::fs::remove_file(&target.open_as);
        }
        // A live overlay that never reached the outputs closes (or removes) its video itself.
        drop(self.live_overlay.take());
    }
}

impl VisualArgs {
    /// Refuse conflicting or unwritable outputs before the model is loaded: both the video and the
    /// records on stdout is a usage error (2), a place that cannot be written is 66.
    pub fn prepare(&self, input: &OsStr, forced_format: bool) -> anyhow::Result<Prepared> {
        let video_on_stdout = self.overlay.as_deref().is_some_and(|o| o == "-");
        if video_on_stdout && (self.json || self.jsonl.as_deref() == Some("-")) {
            return Err(classified(ErrorKind::Usage, "--overlay - writes the video to stdout: give the records a file with --jsonl FILE"));
        }
        if let Some(path) = &self.timeline {
            timeline::check_writable(path)?;
        }
        let jsonl_file = match self.jsonl.as_deref() {
            None | Some("-") => None,
            Some(path) => Some(
                std::fs::File::create(path)
                    .map_err(|e| classified(ErrorKind::NoInput, format!("cannot write the records to {path}: {e}")))?,
            ),
        };
        let overlay = match &self.overlay {
            Some(name) => {
                let stream = input == "-" || input.to_str().is_some_and(|i| i.contains("://")) || !Path::new(input).is_file();
                if forced_format && !stream {
                    return Err(classified(
                        ErrorKind::Usage,
                        "--overlay decodes a file a second time, by its content: give it without --input-format",
                    ));
                }
                Some(overlay::prepare(name, self.overlay_codec.as_deref(), self.overlay_crf, input, stream)?)
            }
            None => None,
        };
        Ok(Prepared { overlay, live_overlay: None, jsonl_file })
    }
}

/// The sinks of one run.
pub struct Outputs {
    stdout: Option<Box<dyn Sink>>,
    jsonl_file: Option<JsonLines<std::fs::File>>,
    progress: Option<Progress>,
    overlay: Option<(Overlay, String)>,
    timeline: Option<Timeline>,
    verbose: bool,
}

impl Outputs {
    /// Open every output and write the `meta` record where records go.
    pub fn open(
        args: &VisualArgs,
        mut prepared: Prepared,
        meta: &Meta,
        labels: &Labels,
        progress: bool,
        verbose: bool,
    ) -> anyhow::Result<Self> {
        let info = &meta.source.info;
        let progress = Progress::new(progress, if info.is_stream { None } else { info.frames });
        let video_on_stdout = args.overlay.as_deref().is_some_and(|o| o == "-");
        let json_on_stdout = args.json || args.jsonl.as_deref() == Some("-") || !io::stdout().is_terminal();
        // A progress bar on the terminal that stdout also writes to: records go out above it.
        let bar = progress.as_ref().filter(|_| io::stdout().is_terminal()).map(Progress::bar);
        let stdout: Option<Box<dyn Sink>> = match (video_on_stdout, json_on_stdout, bar) {
            (true, _, _) => None,
            (false, true, None) => Some(Box::new(JsonLines::new(io::stdout().lock()))),
            (false, true, Some(bar)) => Some(Box::new(JsonLines::new(AboveBar::new(io::stdout().lock(), Some(bar))))),
            (false, false, bar) => Some(Box::new(Human::new(AboveBar::new(io::stdout().lock(), bar)))),
        };
        let overlay = match (prepared.overlay.take(), prepared.live_overlay.take()) {
            (_, Some((sink, target))) => {
                if verbose {
                    eprintln!(
                        "coinfer: overlay: {} in {} to {} (live: the frames the model's decoder reads)",
                        target.encoder, target.muxer, target.name
                    );
                }
                Some((sink, target.name))
            }
            (Some(target), None) => {
                if verbose {
                    eprintln!("coinfer: overlay: {} in {} to {}", target.encoder, target.muxer, target.name);
                }
                let name = target.name.clone();
                let top_k = meta.top_k.min(overlay::panel::MAX_BARS);
                let sink = Overlay::start(target, labels.names().to_vec(), meta.model.clone(), top_k)?;
                Some((sink, name))
            }
            (None, None) => None,
        };
        let timeline = match &args.timeline {
            Some(path) => {
                // Outputs come at most once per model step: size the record buffers for the whole clip.
                let expected = info.duration.map_or(0, |d| (d * meta.model_fps) as usize / meta.stride.max(1) + 2);
                let title = format!("{} on {}", meta.model, meta.source.input);
                Some(Timeline::new(path.clone(), labels.names().to_vec(), title, info.duration, expected, meta.top_k)?)
            }
            None => None,
        };
        let mut outputs =
            Outputs { stdout, jsonl_file: prepared.jsonl_file.take().map(JsonLines::new), progress, overlay, timeline, verbose };
        for sink in outputs.sinks() {
            sink.meta(meta)?;
        }
        Ok(outputs)
    }

    /// Every sink, records first.
    pub fn sinks(&mut self) -> Vec<&mut dyn Sink> {
        let mut sinks: Vec<&mut dyn Sink> = Vec::with_capacity(5);
        if let Some(s) = self.stdout.as_mut() {
            sinks.push(s.as_mut());
        }
        if let Some(s) = self.jsonl_file.as_mut() {
            sinks.push(s);
        }
        if let Some(s) = self.progress.as_mut() {
            sinks.push(s);
        }
        if let Some((s, _)) = self.overlay.as_mut() {
            sinks.push(s);
        }
        if let Some(s) = self.timeline.as_mut() {
            sinks.push(s);
        }
        sinks
    }

    /// After the run: complete the video and draw the timeline.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        if let Some((overlay, name)) = self.overlay.as_mut() {
            let written = overlay.finish()?;
            let dropped = overlay.dropped();
            if dropped > 0 {
                eprintln!(
                    "coinfer: warning: overlay: {dropped} frames left out of {name}: drawing and encoding could not keep up with the input"
                );
            }
            if self.verbose {
                let rate = if written.busy_s > 0.0 { written.frames as f64 / written.busy_s } else { 0.0 };
                eprintln!(
                    "coinfer: overlay: {} frames written to {name} ({:.1} s drawing and encoding, {rate:.0} frames/s)",
                    written.frames, written.busy_s
                );
            }
        }
        if let Some(t) = &self.timeline {
            t.write()?;
        }
        Ok(())
    }
}
