//! The streaming loop: decoded frames → continual model → smoother → sinks.
//!
//! Decoding, resampling and preprocessing run on their own thread ([`spawn_decoder`]) and feed the
//! model thread through a small bounded channel, so decoding overlaps with the network. The model loop
//! ([`run`]) only sees an iterator of [`Packet`]s, which keeps it testable without a decoder.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::labels::Labels;
use crate::latency::LatencyHistogram;
use crate::models::{ModelSpec, StreamModel};
use crate::sink::{NO_ACTION, ReportedLabel, SegmentRecord, Sink, StepRecord, Summary, TopEntry};
use crate::smooth::{Hysteresis, Segments, SmoothMode, Smoother};

/// One decoded source frame and what it feeds to the model.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Source frame index.
    pub frame: u64,
    /// Presentation time, seconds.
    pub pts: f64,
    /// Model steps this frame feeds on the model's timeline: 0 (dropped), 1, or more (repeated when
    /// the source is slower than the model).
    pub steps: usize,
    /// The preprocessed frame, planar `(3, crop, crop)` values; `None` when `steps` is 0.
    pub input: Option<Vec<f32>>,
    /// A live frame the decoder skipped, unconverted, because it arrived more than `--max-lag`
    /// behind live (its steps are dropped, not passed on).
    pub skipped: bool,
    /// Frames the decoder read just before this one but did not send, because the channel was full
    /// while it kept up with a live source under `--max-lag`; `skipped_before` of them were skipped
    /// (the others fed no step anyway).
    pub unsent_before: u64,
    pub skipped_before: u64,
}

/// What the user chose for reporting.
#[derive(Debug, Clone)]
pub struct Options {
    pub top_k: usize,
    /// Only classes with a smoothed score >= threshold are listed in `top`; an output whose best
    /// score is under it reports "none" as `current`.
    pub threshold: f32,
    pub smooth: SmoothMode,
    pub hold: usize,
    /// Also report outputs emitted before the receptive field is full (`ready: false`).
    pub emit_transient: bool,
    /// Copies of the first frame fed before it (outputs discarded), so the first real frame already
    /// yields an output: with the `replicate` fill and `warmup = delay` the network starts as if the
    /// first frame had always been there. 0 = no warm-up.
    pub warmup: usize,
    /// For a live source: measure the lag behind live and keep it bounded; `None` for files.
    pub live: Option<Live>,
}

/// How a live source's lag is reported and bounded (docs/records.md, "Staying live").
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// Skip frames whose arrival already lags more than this many seconds (`--max-lag`).
    pub max_lag_s: Option<f64>,
    /// Called once, the first time the lag passes [`Live::warn_after_s`], with a one-line warning.
    pub warn: fn(&str),
}

impl Live {
    /// The lag past which the user is warned: the bound asked for, else [`LAG_WARNING_S`].
    pub fn warn_after_s(&self) -> f64 {
        self.max_lag_s.unwrap_or(LAG_WARNING_S)
    }
}

/// Without `--max-lag`, the lag (s) at which a live run warns that its labels fall behind.
pub const LAG_WARNING_S: f64 = 2.0;

/// Rounds seconds to the millisecond, as every record time but `pts` is written.
fn millis(s: f64) -> f64 {
    (s * 1e3).round() / 1e3
}

/// Where one model step's input came from: what its output's record names.
#[derive(Debug, Clone, Copy)]
struct StepOrigin {
    frame: u64,
    pts: f64,
    step: u64,
}

/// The live timeline: when each frame should have arrived had the source never been held up, from the
/// earliest arrival seen relative to presentation times (a late first frame moves it back).
struct LiveClock {
    start: Instant,
    /// Min over frames of (arrival − pts), seconds since `start`.
    origin: f64,
    max_lag: f64,
    warned: bool,
}

impl LiveClock {
    fn new(start: Instant) -> Self {
        LiveClock { start, origin: f64::INFINITY, max_lag: 0.0, warned: false }
    }

    /// A frame with time `pts` arrives now: its lag behind live, seconds (0 for the fastest seen).
    fn arrive(&mut self, pts: f64) -> f64 {
        let offset = self.start.elapsed().as_secs_f64() - pts;
        self.origin = self.origin.min(offset);
        offset - self.origin
    }

    /// How far behind live the frame at `pts` is now (0 before any frame arrived).
    fn lag_now(&self, pts: f64) -> f64 {
        match self.origin.is_finite() {
            true => (self.start.elapsed().as_secs_f64() - pts - self.origin).max(0.0),
            false => 0.0,
        }
    }

    /// The lag of an output of the frame at `pts`, written now.
    fn lag_of(&mut self, pts: f64) -> f64 {
        let lag = (self.start.elapsed().as_secs_f64() - pts - self.origin).max(0.0);
        self.max_lag = self.max_lag.max(lag);
        lag
    }
}

/// The durations of the last steps, seconds: the longest tells how long a step taken now may take.
/// A model's steps differ in cost by their phase (a layer of stride 8 runs on one step in 8, a
/// SlowFast slow step on one in 4), so the window spans two output periods, and the longest step in
/// it is the estimate (docs/records.md, "Staying live").
struct RecentSteps {
    seconds: Vec<f64>,
    next: usize,
}

impl RecentSteps {
    fn new(len: usize) -> Self {
        RecentSteps { seconds: vec![0.0; len.max(1)], next: 0 }
    }

    fn push(&mut self, seconds: f64) {
        self.seconds[self.next] = seconds;
        self.next = (self.next + 1) % self.seconds.len();
    }

    fn longest(&self) -> f64 {
        self.seconds.iter().copied().fold(0.0, f64::max)
    }
}

/// Whether a frame `lag` seconds behind live may be stepped under `--max-lag max`, when the record it
/// leads to comes `cost` seconds later (the steps, and the frames between an output's own frame and
/// the step that emits it): when that record is within the bound. Where `cost` alone passes the
/// bound no frame could ever be stepped: frames still fresh (within a quarter of the bound) are
/// stepped anyway, and their `lag_s` shows the excess.
fn within_bound(lag: f64, cost: f64, max: f64) -> bool {
    lag + cost <= max || (cost > max && lag <= max * FRESH_SHARE)
}

/// See [`within_bound`].
const FRESH_SHARE: f64 = 0.25;

/// How much longer than the longest recent step the next step is assumed to take: on a busy host a
/// step's time varies by more than its phase explains (docs/records.md, "Staying live").
const STEP_MARGIN: f64 = 1.5;

/// The presentation times of the last steps, to tell the span an output covers (its window).
struct StepTimes {
    /// The times of steps `last + 1 − len ..= last`; at most `receptive_field + lag` of them.
    recent: VecDeque<f64>,
    capacity: usize,
    first: Option<f64>,
}

impl StepTimes {
    fn new(receptive_field: usize, lag: usize) -> Self {
        let capacity = receptive_field + lag;
        StepTimes { recent: VecDeque::with_capacity(capacity), capacity, first: None }
    }

    fn push(&mut self, pts: f64) {
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(pts);
        self.first.get_or_insert(pts);
    }

    /// The window of the output of step `step`, `last` being the last step run: from the time of the
    /// oldest step in its receptive field (the first frame's while the field reaches into the start
    /// fill) to its own frame's, in ms.
    fn window(&self, step: u64, last: u64, receptive_field: usize, pts: f64) -> [f64; 2] {
        let oldest_kept = last + 1 - self.recent.len() as u64;
        let start = match (step + 1).checked_sub(receptive_field as u64) {
            Some(oldest) if oldest >= oldest_kept => self.recent[(oldest - oldest_kept) as usize],
            _ => self.first.unwrap_or(pts),
        };
        [millis(start), millis(pts)]
    }
}

/// Turns model outputs into `step` records: smoothing, ranking, threshold, hysteresis, segments.
struct Reporter<'l> {
    labels: &'l Labels,
    opts: &'l Options,
    classes: usize,
    receptive_field: usize,
    smoother: Smoother,
    hysteresis: Hysteresis,
    segments: Segments,
    order: Vec<usize>,
    top: Vec<TopEntry<'l>>,
    outputs: u64,
    records: u64,
    /// Frames skipped since the last record (`--max-lag`).
    skipped: u64,
}

impl<'l> Reporter<'l> {
    /// One output of the model, whose newest frame is `origin`'s, produced in `latency` ms, covering
    /// `window`. An error is a model's (outer) or a sink's (inner; it ends the run without a summary).
    fn output(
        &mut self,
        probs: &[f32],
        origin: StepOrigin,
        window: [f64; 2],
        latency: f64,
        live: Option<&mut LiveClock>,
        sinks: &mut [&mut dyn Sink],
    ) -> anyhow::Result<anyhow::Result<()>> {
        self.outputs += 1;
        let ready = origin.step + 1 >= self.receptive_field as u64;
        if !ready && !self.opts.emit_transient {
            return Ok(Ok(()));
        }
        if probs.len() != self.classes {
            anyhow::bail!("model output at step {}: {} class scores, expected {}", origin.step, probs.len(), self.classes);
        }
        let smoothed = self.smoother.push(probs);
        rank_classes(smoothed, &mut self.order, f32::total_cmp);
        let labels = self.labels;
        self.top.clear();
        self.top.extend(self.order.iter().take(self.opts.top_k).filter(|&&id| smoothed[id] >= self.opts.threshold).map(|&id| TopEntry {
            id,
            label: labels.name(id),
            score: smoothed[id],
        }));
        // "none" is one more label for the hysteresis and the segments, with the id `classes`.
        let best = self.order[0];
        let leader = if smoothed[best] >= self.opts.threshold { best } else { self.classes };
        let current = self.hysteresis.update(leader);
        let reported = match current < self.classes {
            true => ReportedLabel { id: Some(current), label: labels.name(current), score: smoothed[current] },
            false => ReportedLabel { id: None, label: NO_ACTION, score: smoothed[best] },
        };
        self.segments.push(current, window, reported.score);
        let rec = StepRecord {
            kind: StepRecord::KIND,
            frame: origin.frame,
            pts: origin.pts,
            step: origin.step,
            ready,
            window,
            top: &self.top,
            current: reported,
            latency_ms: (latency * 1e3).round() / 1e3,
            lag_s: live.map(|clock| millis(clock.lag_of(origin.pts))),
            skipped: self.skipped,
        };
        for sink in sinks.iter_mut() {
            if let Err(e) = sink.step(&rec) {
                return Ok(Err(anyhow::Error::from(e).context("writing a step record")));
            }
        }
        self.skipped = 0;
        self.records += 1;
        Ok(Ok(()))
    }
}

/// Run the model over the packets, writing one `step` record per reported output and a `summary`
/// at the end (also after an interruption or a decode/model error, then with its status).
///
/// A model with a lag (a pipelined schedule) emits each output some steps after its frame: the
/// record still names that frame, and the last outputs are drained at the end of the stream.
///
/// For a live source (`opts.live`), records carry their lag behind live, and frames that arrive more
/// than `max_lag_s` late are skipped: not fed to the model, counted, and marked in the next record.
///
/// Returns the summary; when `stop` was raised the summary's status is `interrupted`. An error from a
/// sink (e.g. a closed stdout) ends the run at once without a summary.
pub fn run(
    packets: impl Iterator<Item = anyhow::Result<Packet>>,
    model: &mut dyn StreamModel,
    labels: &Labels,
    opts: &Options,
    sinks: &mut [&mut dyn Sink],
    stop: &AtomicBool,
) -> anyhow::Result<Summary> {
    let classes = model.spec().num_classes;
    labels.check_fits(&model.spec().name, classes)?;
    let shape = model.shape();
    let start = Instant::now();
    let mut reporter = Reporter {
        labels,
        opts,
        classes,
        receptive_field: shape.receptive_field,
        smoother: Smoother::new(opts.smooth, classes),
        hysteresis: Hysteresis::new(opts.hold),
        segments: Segments::new(),
        order: (0..classes).collect(),
        top: Vec::with_capacity(opts.top_k),
        outputs: 0,
        records: 0,
        skipped: 0,
    };
    let mut probs = vec![0f32; classes];
    // Bounded on a days-long stream (docs/records.md, "Latency quantiles").
    let mut latencies = LatencyHistogram::new();
    // The origins of the last `lag + 1` steps: an output comes `lag` steps after its frame's.
    let mut recent: VecDeque<StepOrigin> = VecDeque::with_capacity(shape.lag + 1);
    let mut times = StepTimes::new(shape.receptive_field, shape.lag);
    let mut clock = opts.live.map(|_| LiveClock::new(start));
    let mut step_cost = RecentSteps::new(2 * shape.stride.max(1) + shape.lag);
    let model_fps = model.spec().fps;
    let (mut frames, mut steps, mut skipped) = (0u64, 0u64, 0u64);

    let mut failure: Option<anyhow::Error> = None;
    let mut warmed = opts.warmup == 0;
    'packets: for packet in packets {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let packet = match packet {
            Ok(p) => p,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        frames += 1 + packet.unsent_before;
        skipped += packet.skipped_before;
        reporter.skipped += packet.skipped_before;
        for sink in sinks.iter_mut() {
            sink.frame(packet.frame, packet.pts);
        }
        if packet.skipped {
            skipped += 1;
            reporter.skipped += 1;
            continue;
        }
        let Some(input) = packet.input.as_ref() else { continue };
        if let (Some(live), Some(clock)) = (opts.live.as_ref(), clock.as_mut()) {
            let lag = clock.arrive(packet.pts);
            if !clock.warned && lag > live.warn_after_s() {
                clock.warned = true;
                (live.warn)(&lag_warning(lag, live.max_lag_s));
            }
        }
        // The first frame is always primed on: the warm-up needs it.
        if !warmed {
            warmed = true;
            if let Err(e) = model.prime(input, opts.warmup, &mut probs) {
                failure = Some(e.context(format!("model warm-up ({} steps) failed", opts.warmup)));
                break 'packets;
            }
        }
        if let (Some(live), Some(max), Some(clock)) = (opts.live.as_ref(), opts.live.and_then(|l| l.max_lag_s), clock.as_mut()) {
            // This frame's own record comes after its steps, and under a pipelined schedule (`lag`
            // steps later) after the next frames' steps too, which may have to wait for those frames.
            let lag_steps = shape.lag as f64;
            let cost = STEP_MARGIN * step_cost.longest() * (packet.steps as f64 + lag_steps) + lag_steps / model_fps;
            let lag = clock.lag_now(packet.pts);
            if !within_bound(lag, cost, max) {
                // The first skip tells the user, as passing the bound would (it may never pass it now).
                if !clock.warned {
                    clock.warned = true;
                    (live.warn)(&lag_warning(lag, live.max_lag_s));
                }
                skipped += 1;
                reporter.skipped += 1;
                continue;
            }
        }
        for _ in 0..packet.steps {
            let step = steps;
            let t0 = Instant::now();
            let out = match model.step_planar(input, &mut probs).with_context(|| format!("model step {step} failed")) {
                Ok(out) => out,
                Err(e) => {
                    failure = Some(e);
                    break 'packets;
                }
            };
            let elapsed = t0.elapsed().as_secs_f64();
            step_cost.push(elapsed);
            let latency = elapsed * 1e3;
            latencies.record(latency);
            steps += 1;
            if recent.len() > shape.lag {
                recent.pop_front();
            }
            recent.push_back(StepOrigin { frame: packet.frame, pts: packet.pts, step });
            times.push(packet.pts);
            if !out {
                continue;
            }
            // With fewer than `lag` steps before it, an output has no frame of its own: the model
            // emitted out of turn.
            let origin = match recent.len() > shape.lag {
                true => recent[0],
                false => {
                    failure = Some(anyhow::anyhow!("model output at step {step} comes before its frame's step"));
                    break 'packets;
                }
            };
            let window = times.window(origin.step, step, shape.receptive_field, origin.pts);
            match reporter.output(&probs, origin, window, latency, clock.as_mut(), sinks) {
                Ok(written) => written?,
                Err(e) => {
                    failure = Some(e);
                    break 'packets;
                }
            }
        }
    }
    // The output still in flight belongs to the last step (an interrupted run still reports it).
    if failure.is_none() && shape.lag > 0 {
        let t0 = Instant::now();
        match (model.drain(&mut probs), recent.back().copied()) {
            (Ok(true), None) => failure = Some(anyhow::anyhow!("the model drained an output before any step")),
            (Ok(true), Some(origin)) => {
                let window = times.window(origin.step, origin.step, shape.receptive_field, origin.pts);
                match reporter.output(&probs, origin, window, t0.elapsed().as_secs_f64() * 1e3, clock.as_mut(), sinks) {
                    Ok(written) => written?,
                    Err(e) => failure = Some(e),
                }
            }
            (Ok(false), _) => {}
            (Err(e), _) => failure = Some(e.context("draining the model's last output failed")),
        }
    }

    let wall_s = start.elapsed().as_secs_f64();
    let status = if failure.is_some() {
        "error"
    } else if stop.load(Ordering::Relaxed) {
        "interrupted"
    } else {
        "ok"
    };
    let summary = Summary {
        kind: Summary::KIND,
        status,
        frames,
        steps,
        outputs: reporter.outputs,
        records: reporter.records,
        wall_s,
        steps_per_s: if wall_s > 0.0 { steps as f64 / wall_s } else { 0.0 },
        p50_ms: latencies.quantile(0.50).map(|ms| (ms * 1e3).round() / 1e3),
        p95_ms: latencies.quantile(0.95).map(|ms| (ms * 1e3).round() / 1e3),
        skipped,
        max_lag_s: clock.map(|c| millis(c.max_lag)),
        segments_dropped: reporter.segments.dropped(),
        segments: reporter
            .segments
            .snapshot()
            .into_iter()
            .map(|s| {
                let id = (s.id < classes).then_some(s.id);
                SegmentRecord {
                    start: s.start,
                    end: s.end,
                    id,
                    label: id.map_or(NO_ACTION, |id| labels.name(id)).to_string(),
                    outputs: s.outputs,
                    mean_score: s.mean_score,
                }
            })
            .collect(),
    };
    for sink in sinks.iter_mut() {
        sink.summary(&summary).context("writing the summary record")?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// The one-time warning of a live run whose labels fall behind.
fn lag_warning(lag: f64, max_lag_s: Option<f64>) -> String {
    match max_lag_s {
        Some(max) => format!("the host does not keep up (labels {lag:.1} s behind live): skipping frames to stay within --max-lag {max}"),
        None => format!("labels are {lag:.1} s behind live and the host is not keeping up; --max-lag SECONDS skips frames to stay live"),
    }
}

/// Writes a warning as one line on stderr.
pub fn warn_on_stderr(text: &str) {
    eprintln!("coinfer: warning: {text}");
}

/// Drops a warning (`--quiet`).
pub fn warn_nowhere(_text: &str) {}

/// Fills `order` with the class ids by descending score, ties by ascending id: a total order (NaN too,
/// through `total_cmp`, e.g. `f32::total_cmp`), so every caller ranks the same scores the same way.
pub fn rank_classes<S>(scores: &[S], order: &mut [usize], total_cmp: impl Fn(&S, &S) -> std::cmp::Ordering) {
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    order.sort_unstable_by(|&a, &b| total_cmp(&scores[b], &scores[a]).then(a.cmp(&b)));
}

/// Packets from the decoder thread; ends when the decoder ends or when `stop` is raised, checking
/// `stop` even while the source blocks (a live pipe that sends nothing).
pub struct Packets {
    rx: Receiver<anyhow::Result<Packet>>,
    stop: Arc<AtomicBool>,
    /// Items sent and not yet received, which the decoder reads to avoid blocking on a full channel.
    in_flight: Arc<AtomicUsize>,
}

impl Iterator for Packets {
    type Item = anyhow::Result<Packet>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(item) => {
                    self.in_flight.fetch_sub(1, Ordering::Relaxed);
                    return Some(item);
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

/// Frames in flight between the decoder and a live source's model: enough to hide decode jitter,
/// small enough to keep latency and memory low.
pub const CHANNEL_FRAMES: usize = 4;

/// Frames in flight for a file, where latency does not matter: the decoder runs ahead while the model
/// warms up or works through a burst of steps, instead of stalling (at most this many preprocessed
/// frames wait, e.g. 64 × 0.6 MB for I3D).
pub const CHANNEL_FRAMES_FILE: usize = 64;

/// Start decoding, resampling onto the model's timeline and preprocessing on a thread of its own.
/// The thread ends at the end of the input, on the first error (sent as the last item), or when the
/// receiver is dropped.
pub fn spawn_decoder(
    source: Box<dyn crate::source::FrameSource>,
    spec: &ModelSpec,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Packets, JoinHandle<()>)> {
    spawn_live_decoder(source, spec, stop, None)
}

/// [`spawn_decoder`] for a live source with `--max-lag`: a frame read more than `max_lag_s` behind
/// live, or while the channel is full, is neither converted nor preprocessed, only counted as
/// skipped; the decoder never blocks, so the source is read at its own pace and does not fall behind
/// (docs/records.md, "Staying live"). The channel then holds about `max_lag_s` of model steps.
pub fn spawn_live_decoder(
    mut source: Box<dyn crate::source::FrameSource>,
    spec: &ModelSpec,
    stop: Arc<AtomicBool>,
    max_lag_s: Option<f64>,
) -> anyhow::Result<(Packets, JoinHandle<()>)> {
    let capacity = match (source.info().is_stream, max_lag_s) {
        (false, _) => CHANNEL_FRAMES_FILE,
        (true, None) => CHANNEL_FRAMES,
        // Room for the frames of max_lag_s, bounded like a file's channel.
        (true, Some(max)) => (CHANNEL_FRAMES + (max * spec.fps).ceil() as usize).min(CHANNEL_FRAMES_FILE),
    };
    let (tx, rx) = sync_channel(capacity);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let live =
        max_lag_s.map(|max_lag_s| LiveDecode { clock: LiveClock::new(Instant::now()), max_lag_s, in_flight: in_flight.clone(), capacity });
    let spec = spec.clone();
    let sent = in_flight.clone();
    let handle = std::thread::Builder::new()
        .name("decode".into())
        .spawn(move || {
            if let Err(e) = decode_loop(source.as_mut(), &spec, &tx, live) {
                sent.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(Err(e));
            }
        })
        .context("cannot start the decoder thread")?;
    Ok((Packets { rx, stop, in_flight }, handle))
}

fn decode_loop(
    source: &mut dyn crate::source::FrameSource,
    spec: &ModelSpec,
    tx: &SyncSender<anyhow::Result<Packet>>,
    live: Option<LiveDecode>,
) -> anyhow::Result<()> {
    use crate::preprocess::{Preprocessor, Resampler};
    use crate::source::Frame;

    let mut timeline = Timeline { resampler: Resampler::new(spec.fps), steps: 0, owed: 0, live, skipped: false };
    // Frames read but not sent while the channel was full (live, --max-lag), and how many were skipped.
    let (mut unsent, mut unsent_skipped) = (0u64, 0u64);
    let mut frame = Frame { index: 0, pts: 0.0, width: 0, height: 0, rgb: Vec::new() };
    // Built on the first frame and again if the frame size changes mid-stream.
    let mut pre: Option<(u32, u32, Preprocessor)> = None;
    while let Some(converted) = source.next_frame_if(&mut frame, &mut timeline)? {
        let claimed = std::mem::take(&mut timeline.steps);
        // Steps of a frame without pixels (one the decoder skipped) go to the next frame decoded.
        let steps = if converted { claimed } else { 0 };
        timeline.owed = claimed - steps;
        let input = if steps > 0 {
            let stale = !matches!(&pre, Some((w, h, _)) if *w == frame.width && *h == frame.height);
            if stale {
                pre = Some((frame.width, frame.height, Preprocessor::new(spec, frame.width, frame.height)?));
            }
            let (_, _, p) = pre.as_mut().expect("built above");
            Some(p.normalized(&frame)?.to_vec())
        } else {
            None
        };
        if steps == 0 && timeline.live.as_ref().is_some_and(LiveDecode::full) {
            // Nothing for the model, and sending would block the reading of a live source.
            unsent += 1;
            unsent_skipped += u64::from(timeline.skipped);
            continue;
        }
        let packet = Packet {
            frame: frame.index,
            pts: frame.pts,
            steps,
            input,
            skipped: timeline.skipped,
            unsent_before: std::mem::take(&mut unsent),
            skipped_before: std::mem::take(&mut unsent_skipped),
        };
        if let Some(live) = &timeline.live {
            live.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        if tx.send(Ok(packet)).is_err() {
            break; // the model side has finished (sink closed, interrupted)
        }
    }
    if unsent > 0 {
        // The last frames read were left unsent: the last one stands for them all.
        let last = Packet {
            frame: frame.index,
            pts: frame.pts,
            steps: 0,
            input: None,
            skipped: timeline.skipped,
            unsent_before: unsent - 1,
            skipped_before: unsent_skipped - u64::from(timeline.skipped),
        };
        let _ = tx.send(Ok(last));
    }
    Ok(())
}

/// What the decoder of a live source under `--max-lag` needs to stay live.
struct LiveDecode {
    clock: LiveClock,
    max_lag_s: f64,
    /// Packets sent and not yet received, against the channel's capacity.
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl LiveDecode {
    /// Whether a send would block: the model has `max_lag_s` of frames waiting already.
    fn full(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= self.capacity
    }
}

/// The model's timeline as the decoder's frame selector: a frame is needed when it feeds a step.
struct Timeline {
    resampler: crate::preprocess::Resampler,
    /// Steps the last frame fed feeds (those owed included).
    steps: usize,
    /// Steps claimed by frames that came without pixels.
    owed: usize,
    /// A live source under `--max-lag`.
    live: Option<LiveDecode>,
    /// Whether the last frame fed was skipped for being too late (its steps dropped).
    skipped: bool,
}

impl crate::source::FrameSelector for Timeline {
    fn feed(&mut self, pts: f64) -> bool {
        self.steps = self.owed + self.resampler.feed(pts);
        self.skipped = false;
        if let Some(live) = self.live.as_mut() {
            // The first frame read is on time by definition (lag 0) and finds the channel empty, so
            // the model always gets one.
            let late = live.clock.arrive(pts) > live.max_lag_s;
            if (late || live.full()) && self.steps > 0 {
                self.skipped = true;
                self.steps = 0;
                self.owed = 0;
            }
        }
        self.steps > 0
    }

    fn may_need(&self, pts: f64, before: f64) -> bool {
        self.resampler.may_feed(pts, before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames at 25 fps, 8×8 grey; frame 3 comes without pixels whatever the selector says (as a
    /// skipped frame would).
    struct SkippingSource {
        info: crate::source::SourceInfo,
        next: u64,
    }

    impl crate::source::FrameSource for SkippingSource {
        fn info(&self) -> &crate::source::SourceInfo {
            &self.info
        }
        fn next_frame(&mut self, _: &mut crate::source::Frame) -> anyhow::Result<bool> {
            unreachable!("the decoder thread asks for frames with a selector")
        }
        fn next_frame_if(
            &mut self,
            frame: &mut crate::source::Frame,
            selector: &mut dyn crate::source::FrameSelector,
        ) -> anyhow::Result<Option<bool>> {
            if self.next == 6 {
                return Ok(None);
            }
            *frame =
                crate::source::Frame { index: self.next, pts: self.next as f64 / 25.0, width: 8, height: 8, rgb: vec![128; 8 * 8 * 3] };
            self.next += 1;
            let wanted = selector.feed(frame.pts);
            Ok(Some(wanted && frame.index != 3))
        }
    }

    #[test]
    fn steps_of_a_frame_without_pixels_go_to_the_next_frame() {
        let source = SkippingSource { info: crate::source::SourceInfo::default(), next: 0 };
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        decode_loop(&mut { source }, &crate::models::i3d::spec(), &tx, None).unwrap();
        drop(tx);
        let got: Vec<(u64, usize, bool)> = rx.iter().map(|p| p.unwrap()).map(|p| (p.frame, p.steps, p.input.is_some())).collect();
        assert_eq!(got, vec![(0, 1, true), (1, 1, true), (2, 1, true), (3, 0, false), (4, 2, true), (5, 1, true)]);
    }

    /// Frames at 25 fps that take 60 ms each to read: a live source the decoder falls behind on.
    struct SlowSource {
        info: crate::source::SourceInfo,
        next: u64,
        converted: Vec<u64>,
    }

    impl crate::source::FrameSource for SlowSource {
        fn info(&self) -> &crate::source::SourceInfo {
            &self.info
        }
        fn next_frame(&mut self, _: &mut crate::source::Frame) -> anyhow::Result<bool> {
            unreachable!("the decoder thread asks for frames with a selector")
        }
        fn next_frame_if(
            &mut self,
            frame: &mut crate::source::Frame,
            selector: &mut dyn crate::source::FrameSelector,
        ) -> anyhow::Result<Option<bool>> {
            if self.next == 12 {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(60));
            *frame =
                crate::source::Frame { index: self.next, pts: self.next as f64 / 25.0, width: 8, height: 8, rgb: vec![128; 8 * 8 * 3] };
            self.next += 1;
            let wanted = selector.feed(frame.pts);
            if wanted {
                self.converted.push(frame.index);
            }
            Ok(Some(wanted))
        }
    }

    /// With `--max-lag`, a decoder that reads frames later and later skips them before converting
    /// them: they go out marked skipped, without pixels or steps. Counts, not durations: a busier host
    /// only reads later. Without a bound every frame is converted.
    #[test]
    fn a_decoder_behind_live_skips_frames_before_converting_them() {
        for max_lag in [Some(0.1), None] {
            let mut source = SlowSource { info: crate::source::SourceInfo::default(), next: 0, converted: Vec::new() };
            let (tx, rx) = std::sync::mpsc::sync_channel(16);
            // A channel with room for every frame: only lateness makes the decoder skip here.
            let live = max_lag.map(|max_lag_s| LiveDecode {
                clock: LiveClock::new(Instant::now()),
                max_lag_s,
                in_flight: Arc::new(AtomicUsize::new(0)),
                capacity: 16,
            });
            decode_loop(&mut source, &crate::models::i3d::spec(), &tx, live).unwrap();
            drop(tx);
            let packets: Vec<Packet> = rx.iter().map(|p| p.unwrap()).collect();
            assert_eq!(packets.len(), 12);
            assert!(!packets[0].skipped, "the first frame is always fed");
            for p in &packets {
                assert_eq!(p.skipped, p.input.is_none(), "frame {}", p.frame);
                assert_eq!(p.steps > 0, !p.skipped, "frame {}", p.frame);
            }
            let skipped = packets.iter().filter(|p| p.skipped).count();
            assert_eq!(source.converted.len(), 12 - skipped, "skipped frames are not converted");
            match max_lag {
                // 20 ms later per frame: past 0.1 s from frame 6 on at the latest, whatever the load.
                Some(_) => assert!(skipped >= 6, "{skipped} skipped"),
                None => assert_eq!(skipped, 0),
            }
        }
    }

    /// When the model has a full channel of frames waiting, the decoder of a live source does not block
    /// (the source would fall behind): it skips the frames it reads, leaves them unsent, and the next
    /// packet (at the end, a packet for the last frame) carries their count.
    #[test]
    fn a_full_channel_leaves_live_frames_unsent_and_counted() {
        let mut source = SlowSource { info: crate::source::SourceInfo::default(), next: 0, converted: Vec::new() };
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        // Nobody receives: after 2 packets the channel counts as full for good.
        let live =
            LiveDecode { clock: LiveClock::new(Instant::now()), max_lag_s: 60.0, in_flight: Arc::new(AtomicUsize::new(0)), capacity: 2 };
        decode_loop(&mut source, &crate::models::i3d::spec(), &tx, Some(live)).unwrap();
        drop(tx);
        let packets: Vec<Packet> = rx.iter().map(|p| p.unwrap()).collect();
        let got: Vec<(u64, bool, u64, u64)> = packets.iter().map(|p| (p.frame, p.skipped, p.unsent_before, p.skipped_before)).collect();
        assert_eq!(got, [(0, false, 0, 0), (1, false, 0, 0), (11, true, 9, 9)]);
        assert_eq!(source.converted, [0, 1], "no frame converted while the channel is full");
    }

    #[test]
    fn ranks_by_score_then_id() {
        let mut order = vec![0; 4];
        rank_classes(&[0.1f32, 0.4, 0.1, 0.4], &mut order, f32::total_cmp);
        assert_eq!(order, vec![1, 3, 0, 2]);
        // NaN is ordered too (a positive NaN above every number), never a panic or an arbitrary order.
        let mut order = vec![0; 3];
        rank_classes(&[1.0f64, f64::NAN, 2.0], &mut order, f64::total_cmp);
        assert_eq!(order, vec![1, 2, 0]);
    }
}
