//! One readable line per output, for a terminal on stdout (docs/visual.md, "On a terminal"): the
//! frame's time, the label, its score as a number and a small bar, and whether the network is still
//! warming up. With a progress bar on the terminal, lines go through [`AboveBar`].

use std::fmt::Write as _;
use std::io::{self, Write};

use indicatif::ProgressBar;

use super::{Meta, Sink, StepRecord, Summary};

pub struct Human<W: Write> {
    out: W,
    /// Reused for every line.
    line: String,
}

/// Width of the score bar, in character cells.
const BAR_CELLS: usize = 10;

impl<W: Write> Human<W> {
    pub fn new(out: W) -> Self {
        Human { out, line: String::with_capacity(128) }
    }

    fn emit(&mut self) -> io::Result<()> {
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        self.out.flush()
    }
}

/// A terminal's stdout while a progress bar is drawn on the same terminal: every write clears the
/// bar, goes out, and lets the bar be drawn again below it, so records never sit under stale copies of
/// the progress line. Bytes pass unchanged.
pub struct AboveBar<W: Write> {
    out: W,
    bar: Option<ProgressBar>,
}

impl<W: Write> AboveBar<W> {
    pub fn new(out: W, bar: Option<ProgressBar>) -> Self {
        AboveBar { out, bar }
    }
}

impl<W: Write> Write for AboveBar<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.out.write_all(buf).map(|()| buf.len())),
            None => self.out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `score` as a bar of [`BAR_CELLS`] cells in eighths (Unicode block elements).
pub fn score_bar(score: f32, out: &mut String) {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (score.clamp(0.0, 1.0) * (BAR_CELLS * 8) as f32).round() as usize;
    for cell in 0..BAR_CELLS {
        let filled = eighths.saturating_sub(cell * 8).min(8);
        out.push(if filled == 8 { '█' } else { PARTS[filled] });
    }
}

impl<W: Write> Sink for Human<W> {
    fn meta(&mut self, meta: &Meta) -> io::Result<()> {
        self.line.clear();
        let info = &meta.source.info;
        let _ = write!(self.line, "{} on {}: {}x{}", meta.model, meta.source.input, info.width, info.height);
        if let Some(fps) = info.fps {
            let _ = write!(self.line, " at {fps:.3} fps");
        }
        let ready_s = meta.receptive_field as f64 / meta.model_fps;
        let _ = write!(self.line, "; outputs are ready once {ready_s:.1} s of video has been seen");
        self.emit()
    }

    fn step(&mut self, rec: &StepRecord<'_>) -> io::Result<()> {
        self.line.clear();
        let _ = write!(self.line, "{:>8.2}s  {:<28} {:.2} ", rec.pts, rec.current.label, rec.current.score);
        score_bar(rec.current.score, &mut self.line);
        if !rec.ready {
            self.line.push_str("  warming up");
        }
        self.emit()
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.line.clear();
        let _ = write!(
            self.line,
            "{}: {} frames, {} steps in {:.1} s ({:.1} steps/s)",
            summary.status, summary.frames, summary.steps, summary.wall_s, summary.steps_per_s
        );
        for seg in &summary.segments {
            let _ = write!(self.line, "\n  {:>7.2}s – {:>7.2}s  {} ({:.2})", seg.start, seg.end, seg.label, seg.mean_score);
        }
        self.emit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{ReportedLabel, SegmentRecord};

    #[test]
    fn one_line_per_output_with_a_score_bar() {
        let mut h = Human::new(Vec::new());
        let current = ReportedLabel { id: Some(1), label: "high jump", score: 0.5 };
        let mut rec = StepRecord {
            kind: StepRecord::KIND,
            frame: 3,
            pts: 1.25,
            step: 3,
            ready: false,
            window: [0.0, 1.25],
            top: &[],
            current,
            latency_ms: 1.0,
            lag_s: None,
            skipped: 0,
        };
        h.step(&rec).unwrap();
        rec.ready = true;
        h.step(&rec).unwrap();
        let summary = Summary {
            kind: Summary::KIND,
            status: "ok",
            frames: 10,
            steps: 8,
            outputs: 2,
            records: 2,
            wall_s: 0.5,
            steps_per_s: 16.0,
            p50_ms: None,
            p95_ms: None,
            skipped: 0,
            max_lag_s: None,
            segments_dropped: 0,
            segments: vec![SegmentRecord { start: 1.25, end: 1.5, id: Some(1), label: "high jump".into(), outputs: 2, mean_score: 0.5 }],
        };
        h.summary(&summary).unwrap();
        let text = String::from_utf8(h.out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("1.25s  high jump") && lines[0].contains("0.50 █████ ") && lines[0].ends_with("warming up"), "{text}");
        assert!(!lines[1].contains("warming"), "{text}");
        assert!(lines[2].starts_with("ok: 10 frames") && lines[3].contains("high jump (0.50)"), "{text}");
        assert!(!text.contains('{'), "no JSON on a terminal");
    }

    #[test]
    fn above_the_bar_the_bytes_pass_unchanged() {
        let bar = ProgressBar::hidden();
        let mut w = AboveBar::new(Vec::new(), Some(bar));
        w.write_all(b"{\"type\":\"step\"}\n").unwrap();
        w.flush().unwrap();
        let mut plain = AboveBar::new(Vec::new(), None);
        plain.write_all(b"x\n").unwrap();
        assert_eq!(w.out, b"{\"type\":\"step\"}\n");
        assert_eq!(plain.out, b"x\n");
    }

    #[test]
    fn bars_in_eighths() {
        let mut s = String::new();
        score_bar(0.0, &mut s);
        assert_eq!(s, " ".repeat(10));
        s.clear();
        score_bar(1.0, &mut s);
        assert_eq!(s, "█".repeat(10));
        s.clear();
        score_bar(0.25, &mut s);
        assert_eq!(s, "██▌       ");
    }
}
