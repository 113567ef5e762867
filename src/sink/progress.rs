//! Progress on stderr, only for a terminal: a bar (frames, rate, ETA) when the input length is known,
//! a spinner otherwise; both show the current top-1 label and its score, `warming up` while the
//! outputs are transient, and for live inputs how far behind live the labels are (docs/visual.md,
//! "On a terminal").

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Sink, StepRecord, Summary};

/// The rate shown is over about this much recent wall time, not since the start: a file's first
/// frames come from a full queue at once, and the model's warm-up stalls the rest for a while.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// The message is rebuilt at most this often (indicatif redraws at about this rate anyway).
const REFRESH: Duration = Duration::from_millis(100);

pub struct Progress {
    bar: ProgressBar,
    len: Option<u64>,
    live: bool,
    rate: RateWindow,
    /// The latest output: its label, its score and whether it was ready.
    label: Option<(String, f32, bool)>,
    /// Seconds the latest output came after its frame would have been shown live.
    behind: Option<f64>,
    /// Wall time and presentation time of the first frame (live inputs).
    start: Option<(Instant, f64)>,
    last_refresh: Option<Instant>,
}

impl Progress {
    /// A progress display if stderr is a terminal and the user did not turn it off; `None` otherwise.
    /// `frames` is the input length when known (files), `None` for streams.
    pub fn new(enabled: bool, frames: Option<u64>) -> Option<Self> {
        if !enabled || !io::stderr().is_terminal() {
            return None;
        }
        Some(Self::with_target(frames, ProgressDrawTarget::stderr()))
    }

    fn with_target(frames: Option<u64>, target: ProgressDrawTarget) -> Self {
        let len = frames.filter(|&n| n > 0);
        let bar = match len {
            Some(n) => {
                let bar = ProgressBar::with_draw_target(Some(n), target);
                bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} frames {msg}").expect("valid template"));
                bar
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, target);
                bar.set_style(ProgressStyle::with_template("{spinner} {pos} frames {msg}").expect("valid template"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
        };
        Progress { bar, len, live: len.is_none(), rate: RateWindow::default(), label: None, behind: None, start: None, last_refresh: None }
    }

    /// The bar, for printing lines above it ([`super::human::Human`]).
    pub fn bar(&self) -> ProgressBar {
        self.bar.clone()
    }

    fn refresh(&mut self, now: Instant, force: bool) {
        if !force && self.last_refresh.is_some_and(|t| now.duration_since(t) < REFRESH) {
            return;
        }
        self.last_refresh = Some(now);
        let mut msg = String::with_capacity(64);
        use std::fmt::Write;
        let rate = self.rate.per_second();
        let _ = write!(msg, "{:.1} fps", rate.unwrap_or(0.0));
        if let (Some(len), Some(rate)) = (self.len, rate.filter(|r| *r > 0.0)) {
            let left = len.saturating_sub(self.bar.position()) as f64 / rate;
            let _ = write!(msg, " ETA {}", format_eta(left));
        }
        match &self.label {
            Some((label, score, ready)) => {
                let _ = write!(msg, " {label} {score:.2}");
                if !ready {
                    msg.push_str(" (warming up)");
                }
            }
            None => msg.push_str(" warming up"),
        }
        if let Some(behind) = self.behind {
            let _ = write!(msg, " · {behind:.1} s behind live");
        }
        self.bar.set_message(msg);
    }
}

fn format_eta(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 60 { format!("{}m{:02}s", s / 60, s % 60) } else { format!("{s}s") }
}

/// Frames per second over the last [`RATE_WINDOW`]: a ring of (time, frames) samples, one at most
/// every few tens of milliseconds, so it never allocates.
#[derive(Debug)]
struct RateWindow {
    samples: [Option<(Instant, u64)>; 64],
    next: usize,
}

impl Default for RateWindow {
    fn default() -> Self {
        RateWindow { samples: [None; 64], next: 0 }
    }
}

impl RateWindow {
    const SPACING: Duration = Duration::from_millis(RATE_WINDOW.as_millis() as u64 / 60);

    fn record(&mut self, now: Instant, frames: u64) {
        let prev = self.samples[(self.next + 63) % 64];
        if prev.is_some_and(|(t, _)| now.duration_since(t) < Self::SPACING) {
            return;
        }
        self.samples[self.next] = Some((now, frames));
        self.next = (self.next + 1) % 64;
    }

    /// Frames per second between the oldest sample in the window and the newest.
    fn per_second(&self) -> Option<f64> {
        let newest = self.samples[(self.next + 63) % 64]?;
        let oldest = self.samples.iter().flatten().filter(|(t, _)| newest.0.duration_since(*t) <= RATE_WINDOW).min_by_key(|(t, _)| *t)?;
        let dt = newest.0.duration_since(oldest.0).as_secs_f64();
        (dt > 0.0).then(|| (newest.1 - oldest.1) as f64 / dt)
    }
}

impl Sink for Progress {
    fn frame(&mut self, index: u64, pts: f64) {
        let now = Instant::now();
        self.bar.set_position(index + 1);
        self.rate.record(now, index + 1);
        if self.live && self.start.is_none() {
            self.start = Some((now, pts));
        }
        self.refresh(now, false);
    }

    fn step(&mut self, rec: &StepRecord<'_>) -> io::Result<()> {
        let now = Instant::now();
        let changed = match &self.label {
            Some((label, score, ready)) => {
                label != rec.current.label || (score * 100.0).round() != (rec.current.score * 100.0).round() || *ready != rec.ready
            }
            None => true,
        };
        if changed {
            self.label = Some((rec.current.label.to_string(), rec.current.score, rec.ready));
        }
        if let Some((t0, pts0)) = self.start {
            // Live, the frame was shown at t0 + (pts - pts0); its label is ready now.
            self.behind = Some((now.duration_since(t0).as_secs_f64() - (rec.pts - pts0)).max(0.0));
        }
        self.refresh(now, changed);
        Ok(())
    }

    fn summary(&mut self, _summary: &Summary) -> io::Result<()> {
        self.bar.finish_and_clear();
        Ok(())
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // Leave the terminal clean when the run ends early (error, broken pipe).
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;
    use crate::sink::ReportedLabel;

    /// A terminal that records what is drawn.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _n: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _n: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _n: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _n: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(s)?;
            self.write_str("\n")
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    fn record(label: &str, score: f32) -> StepRecord<'_> {
        StepRecord {
            kind: StepRecord::KIND,
            frame: 2,
            pts: 0.08,
            step: 2,
            ready: true,
            window: [0.0, 0.08],
            top: &[],
            current: ReportedLabel { id: Some(7), label, score },
            latency_ms: 1.0,
            lag_s: None,
            skipped: 0,
        }
    }

    #[test]
    fn bar_shows_frames_and_the_current_label() {
        let screen = Screen::default();
        let mut p = Progress::with_target(Some(10), ProgressDrawTarget::term_like(Box::new(screen.clone())));
        for i in 0..3 {
            p.frame(i, i as f64 / 25.0);
        }
        p.step(&record("high jump", 0.576)).unwrap();
        p.frame(3, 0.12);
        let drawn = screen.0.lock().unwrap().clone();
        assert!(drawn.contains("4/10 frames"), "{drawn:?}");
        assert!(drawn.contains("high jump 0.58"), "{drawn:?}");
    }

    #[test]
    fn spinner_for_streams() {
        let screen = Screen::default();
        let mut p = Progress::with_target(None, ProgressDrawTarget::term_like(Box::new(screen.clone())));
        p.frame(0, 0.0);
        p.step(&record("yoga", 0.25)).unwrap();
        p.frame(1, 0.04);
        let drawn = screen.0.lock().unwrap().clone();
        assert!(drawn.contains(" frames ") && drawn.contains(" fps yoga 0.25"), "{drawn:?}");
        assert!(drawn.contains("behind live"), "a live input says how far behind live the labels are: {drawn:?}");
        assert!(!drawn.contains("ETA"), "no length, no ETA: {drawn:?}");
    }

    #[test]
    fn warming_up_until_a_ready_output() {
        let screen = Screen::default();
        let mut p = Progress::with_target(Some(10), ProgressDrawTarget::term_like(Box::new(screen.clone())));
        p.frame(0, 0.0);
        p.bar.tick();
        assert!(screen.0.lock().unwrap().contains("warming up"), "before any output");
        let mut rec = record("yoga", 0.25);
        rec.ready = false;
        p.step(&rec).unwrap();
        assert!(screen.0.lock().unwrap().contains("yoga 0.25 (warming up)"));
        screen.0.lock().unwrap().clear();
        p.step(&record("yoga", 0.25)).unwrap();
        let drawn = screen.0.lock().unwrap().clone();
        assert!(drawn.contains("yoga 0.25") && !drawn.contains("warming"), "{drawn:?}");
    }

    #[test]
    fn the_rate_is_recent_not_cumulative() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        // A burst of 64 frames at once (a full queue), then 10 frames a second for 5 s.
        w.record(t0, 64);
        for i in 1..=50u64 {
            w.record(t0 + Duration::from_millis(100 * i), 64 + i);
        }
        let r = w.per_second().unwrap();
        assert!((r - 10.0).abs() < 0.5, "{r}");
        assert_eq!(format_eta(75.0), "1m15s");
        assert_eq!(format_eta(4.4), "4s");
    }

    #[test]
    fn nothing_unless_stderr_is_a_terminal_and_enabled() {
        assert!(Progress::new(false, Some(10)).is_none());
        assert!(Progress::new(false, None).is_none());
        // Under CI stderr is a pipe or a file: no progress at all.
        assert_eq!(Progress::new(true, Some(10)).is_some(), io::stderr().is_terminal());
    }
}
