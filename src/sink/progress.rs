//! Progress on stderr, only for a terminal: a bar (frames, fps, ETA) when the input length is known,
//! a spinner otherwise; both show the current smoothed top-1 label and its score.

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::{Sink, StepRecord, Summary};

pub struct Progress {
    bar: ProgressBar,
    /// Last label shown and its score in hundredths, so the message is rebuilt only on change.
    shown: Option<(Option<usize>, u32)>,
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
        let bar = match frames {
            Some(n) if n > 0 => {
                let bar = ProgressBar::with_draw_target(Some(n), target);
                bar.set_style(style("{bar:30} {pos}/{len} frames {fps} ETA {eta} {msg}"));
                bar
            }
            _ => {
                let bar = ProgressBar::with_draw_target(None, target);
                bar.set_style(style("{spinner} {pos} frames {fps} {msg}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
        };
        Progress { bar, shown: None }
    }
}

/// A template with `{fps}`: decoded frames per second, one decimal.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("valid template").with_key("fps", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{:.1} fps", state.per_sec());
    })
}

impl Sink for Progress {
    fn frame(&mut self, index: u64, _pts: f64) {
        self.bar.set_position(index + 1);
    }

    fn step(&mut self, rec: &StepRecord<'_>) -> io::Result<()> {
        let key = (rec.current.id, (rec.current.score * 100.0).round() as u32);
        if self.shown != Some(key) {
            self.shown = Some(key);
            self.bar.set_message(format!("{} {:.2}", rec.current.label, rec.current.score));
        }
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
        assert!(!drawn.contains("ETA"), "no length, no ETA: {drawn:?}");
    }

    #[test]
    fn nothing_unless_stderr_is_a_terminal_and_enabled() {
        assert!(Progress::new(false, Some(10)).is_none());
        assert!(Progress::new(false, None).is_none());
        // Under CI stderr is a pipe or a file: no progress at all.
        assert_eq!(Progress::new(true, Some(10)).is_some(), io::stderr().is_terminal());
    }
}
