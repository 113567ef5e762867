//! Progress on stderr, only for a terminal: a bar (frames, fps, ETA) when the input length is known,
//! a spinner otherwise; both show the current smoothed top-1 label and its score.

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Sink, StepRecord, Summary};

pub struct Progress {
    bar: ProgressBar,
    /// Last label shown and its score in hundredths, so the message is rebuilt only on change.
    shown: Option<(usize, u32)>,
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
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} frames {per_sec} ETA {eta} {msg}")
                        .expect("valid template"),
                );
                bar
            }
            _ => {
                let bar = ProgressBar::with_draw_target(None, target);
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {pos} frames {per_sec} {msg}").expect("valid template"),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
        };
        Progress { bar, shown: None }
    }
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
