//! Smoothing between the network and the sinks: temporal averaging of the class probabilities,
//! hysteresis on the reported label, and the segments of the resulting label track.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use crate::error::{ErrorKind, classified};

/// Longest `mean:N` window, in outputs: 5.5 minutes of CoI3D's 3.125 outputs per second, 2.8 minutes
/// at CoX3D-M's 6; a longer mean no longer follows an action, and the window's buffer stays small
/// (1.6 MB for 400 classes) instead of aborting on an allocation the machine cannot make.
pub const MAX_MEAN: usize = 1024;

/// How successive outputs are averaged (`--smooth`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SmoothMode {
    /// Report each output as the network gives it.
    None,
    /// Exponential moving average: `s = alpha * p + (1 - alpha) * s`, started at the first output.
    Ema(f32),
    /// Mean of the last N outputs (fewer at the start).
    Mean(usize),
}

impl FromStr for SmoothMode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let bad = |why: &str| {
            classified(
                ErrorKind::Usage,
                format!("bad smoothing '{s}': {why} (expected none, ema:ALPHA with 0<ALPHA<=1, or mean:N with 1<=N<={MAX_MEAN})"),
            )
        };
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        match (kind, arg) {
            ("none", None) => Ok(SmoothMode::None),
            ("ema", Some(a)) => {
                let alpha: f32 = a.parse().map_err(|_| bad("ALPHA is not a number"))?;
                if !(alpha > 0.0 && alpha <= 1.0) {
                    return Err(bad("ALPHA out of range"));
                }
                Ok(SmoothMode::Ema(alpha))
            }
            ("mean", Some(a)) => {
                let n: usize = a.parse().map_err(|_| bad("N is not a whole number"))?;
                if !(1..=MAX_MEAN).contains(&n) {
                    return Err(bad("N out of range"));
                }
                Ok(SmoothMode::Mean(n))
            }
            _ => Err(bad("unknown form")),
        }
    }
}

impl fmt::Display for SmoothMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmoothMode::None => f.write_str("none"),
            SmoothMode::Ema(a) => write!(f, "ema:{a}"),
            SmoothMode::Mean(n) => write!(f, "mean:{n}"),
        }
    }
}

/// Averages probability vectors of a fixed length; all buffers are allocated once.
#[derive(Debug, Clone)]
pub struct Smoother {
    mode: SmoothMode,
    classes: usize,
    /// Current smoothed output.
    out: Vec<f32>,
    /// Ring of the last N outputs (mean mode only), `N * classes` values.
    ring: Vec<f32>,
    /// Number of outputs seen (saturating use in mean mode).
    seen: usize,
}

impl Smoother {
    pub fn new(mode: SmoothMode, classes: usize) -> Self {
        let ring = match mode {
            SmoothMode::Mean(n) => vec![0.0; n * classes],
            _ => Vec::new(),
        };
        Smoother { mode, classes, out: vec![0.0; classes], ring, seen: 0 }
    }

    pub fn mode(&self) -> SmoothMode {
        self.mode
    }

    /// Feed one output of the network; returns the smoothed probabilities.
    pub fn push(&mut self, probs: &[f32]) -> &[f32] {
        assert_eq!(probs.len(), self.classes, "probability vector of the wrong length");
        match self.mode {
            SmoothMode::None => self.out.copy_from_slice(probs),
            SmoothMode::Ema(alpha) => {
                if self.seen == 0 {
                    self.out.copy_from_slice(probs);
                } else {
                    for (s, &p) in self.out.iter_mut().zip(probs) {
                        *s = alpha * p + (1.0 - alpha) * *s;
                    }
                }
            }
            SmoothMode::Mean(n) => {
                let slot = self.seen % n;
                self.ring[slot * self.classes..(slot + 1) * self.classes].copy_from_slice(probs);
                let filled = (self.seen + 1).min(n);
                // Summing the ring afresh (not a running sum) keeps the result exact over long streams.
                self.out.fill(0.0);
                for row in self.ring.chunks_exact(self.classes).take(filled) {
                    for (s, &p) in self.out.iter_mut().zip(row) {
                        *s += p;
                    }
                }
                let inv = 1.0 / filled as f32;
                self.out.iter_mut().for_each(|s| *s *= inv);
            }
        }
        self.seen += 1;
        &self.out
    }

    pub fn reset(&mut self) {
        self.seen = 0;
        self.out.fill(0.0);
    }
}

/// Hysteresis on the top-1 label (`--hold K`): a new label must lead for K consecutive outputs
/// before the reported label switches to it. K of 0 or 1 switches at once.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    hold: usize,
    current: Option<usize>,
    challenger: Option<usize>,
    lead: usize,
}

impl Hysteresis {
    pub fn new(hold: usize) -> Self {
        Hysteresis { hold: hold.max(1), current: None, challenger: None, lead: 0 }
    }

    /// Feed the id that leads this output; returns the reported id.
    pub fn update(&mut self, leader: usize) -> usize {
        match self.current {
            None => self.current = Some(leader),
            Some(cur) if cur == leader => {
                self.challenger = None;
                self.lead = 0;
            }
            Some(_) => {
                if self.challenger == Some(leader) {
                    self.lead += 1;
                } else {
                    self.challenger = Some(leader);
                    self.lead = 1;
                }
                if self.lead >= self.hold {
                    self.current = Some(leader);
                    self.challenger = None;
                    self.lead = 0;
                }
            }
        }
        self.current.expect("set above")
    }

    pub fn current(&self) -> Option<usize> {
        self.current
    }
}

/// A run of consecutive outputs with the same reported label, over the part of the timeline its
/// outputs account for (docs/records.md, "Segments"): consecutive segments meet, none overlap.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segment {
    /// Where the evidence for the label begins (s): the end of the previous output's window, whose
    /// newer frames turned the label; for the first segment, the start of its first output's window.
    pub start: f64,
    /// The end of the window of its last output (s).
    pub end: f64,
    pub id: usize,
    /// Number of outputs in the segment.
    pub outputs: usize,
    /// Mean smoothed score of the label over the segment.
    pub mean_score: f64,
}

/// Most segments a run keeps for its summary, the open one included; older ones are dropped and
/// counted, so a days-long stream keeps its latest segments in bounded memory (docs/records.md,
/// "Segments"). Ten thousand are about 400 kB here and 1 MB of summary.
pub const MAX_SEGMENTS: usize = 10_000;

/// Collects segments from the reported label track, the latest [`MAX_SEGMENTS`] of them.
#[derive(Debug, Clone)]
pub struct Segments {
    done: VecDeque<Segment>,
    open: Option<Segment>,
    limit: usize,
    dropped: u64,
}

impl Default for Segments {
    fn default() -> Self {
        Self::new()
    }
}

impl Segments {
    pub fn new() -> Self {
        Self::with_limit(MAX_SEGMENTS)
    }

    /// Keep at most `limit` (at least 1) segments, the open one included.
    pub fn with_limit(limit: usize) -> Self {
        Segments { done: VecDeque::new(), open: None, limit: limit.max(1), dropped: 0 }
    }

    /// Add one output: reported id, the `[start, end]` window its output covers (s), and its smoothed
    /// score.
    pub fn push(&mut self, id: usize, window: [f64; 2], score: f32) {
        let [start, end] = window;
        if let Some(seg) = &mut self.open {
            if seg.id == id {
                seg.end = end;
                // mean_score holds the running sum until `finish`.
                seg.mean_score += score as f64;
                seg.outputs += 1;
                return;
            }
            let seg = self.open.take().expect("checked");
            let previous_end = seg.end;
            self.done.push_back(close(seg));
            // Room for the new open one.
            if self.done.len() + 1 > self.limit {
                self.done.pop_front();
                self.dropped += 1;
            }
            self.open = Some(Segment { start: previous_end, end, id, outputs: 1, mean_score: score as f64 });
            return;
        }
        self.open = Some(Segment { start, end, id, outputs: 1, mean_score: score as f64 });
    }

    /// The segments kept so far, the open one included, oldest first.
    pub fn snapshot(&self) -> Vec<Segment> {
        let mut v: Vec<Segment> = self.done.iter().cloned().collect();
        if let Some(seg) = &self.open {
            v.push(close(seg.clone()));
        }
        v
    }

    /// Segments held now (closed and open): never more than the limit.
    pub fn len(&self) -> usize {
        self.done.len() + usize::from(self.open.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest segments dropped to stay within the limit.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

fn close(mut seg: Segment) -> Segment {
    seg.mean_score /= seg.outputs as f64;
    seg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!("none".parse::<SmoothMode>().unwrap(), SmoothMode::None);
        assert_eq!("ema:0.25".parse::<SmoothMode>().unwrap(), SmoothMode::Ema(0.25));
        assert_eq!("mean:4".parse::<SmoothMode>().unwrap(), SmoothMode::Mean(4));
        for bad in ["", "ema", "ema:0", "ema:1.5", "ema:x", "mean:0", "mean:-1", "median:3", "none:1"] {
            let e = bad.parse::<SmoothMode>().unwrap_err();
            assert_eq!(crate::error::kind_of(&e), ErrorKind::Usage, "{bad}");
        }
    }
}
