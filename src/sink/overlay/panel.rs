//! The panel drawn on each frame: the current label and its score, the top classes as bars, a
//! warming-up marker and the model name (docs/visual.md, "The panel").

use crate::sink::draw::{Anchor, Canvas, Rgba, fit_text};
use crate::sink::{NO_ACTION, StepRecord};

/// Bars shown at most, whatever `--top-k` is: more would not be legible on a small frame.
pub const MAX_BARS: usize = 5;

/// What the panel shows: a copy of a step record without its strings (class ids into the labels),
/// so passing it to the overlay thread allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    pub frame: u64,
    pub ready: bool,
    /// The reported label's class (`None`: "none", under the threshold) and score.
    pub current: (Option<usize>, f32),
    pub top: [(usize, f32); MAX_BARS],
    pub bars: usize,
}

impl Shown {
    pub fn of(rec: &StepRecord<'_>) -> Self {
        let mut top = [(0, 0.0); MAX_BARS];
        let bars = rec.top.len().min(MAX_BARS);
        for (slot, e) in top.iter_mut().zip(rec.top) {
            *slot = (e.id, e.score);
        }
        Shown { frame: rec.frame, ready: rec.ready, current: (rec.current.id, rec.current.score), top, bars }
    }

    /// Same picture: the same classes and the scores as drawn (two decimals).
    pub fn looks_like(&self, other: &Shown) -> bool {
        let cents = |s: f32| (s * 100.0).round() as i32;
        self.ready == other.ready
            && self.current.0 == other.current.0
            && cents(self.current.1) == cents(other.current.1)
            && self.bars == other.bars
            && self.top[..self.bars].iter().zip(&other.top[..other.bars]).all(|(a, b)| a.0 == b.0 && cents(a.1) == cents(b.1))
    }
}

/// Size of the panel and of its text for a frame, from the frame alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub width: usize,
    pub height: usize,
    /// Text size of a bar's label, pixels; everything else is in proportion.
    pub px: f32,
    pub bars: usize,
}

/// Panel width and height in units of `px`.
const WIDTH_EM: f32 = 15.0;
fn height_em(bars: usize) -> f32 {
    // Margins, the title line, one line per bar, the footer.
    0.6 + 1.8 + 1.35 * bars as f32 + 1.3 + 0.4
}

/// The panel for a `frame_w`×`frame_h` frame: text about 1/28 of the short side (at least 9 px,
/// legible on 320×240), shrunk until the panel covers at most a quarter of the frame.
pub fn layout(frame_w: usize, frame_h: usize, bars: usize) -> Layout {
    let bars = bars.min(MAX_BARS);
    let short = frame_w.min(frame_h) as f32;
    let mut px = (short / 28.0).max(9.0).round();
    let quarter = frame_w as f32 * frame_h as f32 / 4.0;
    while px > 4.0 && (px * WIDTH_EM * px * height_em(bars) > quarter || px * WIDTH_EM > frame_w as f32) {
        px -= 1.0;
    }
    let width = ((px * WIDTH_EM) as usize).min(frame_w);
    let height = ((px * height_em(bars)) as usize).min(frame_h);
    Layout { width, height, px, bars }
}

const BACKGROUND: Rgba = Rgba(16, 16, 24, 200);
const BAR_TRACK: Rgba = Rgba(255, 255, 255, 40);
const BAR_FILL: Rgba = Rgba(64, 140, 230, 255);
const BAR_FILL_CURRENT: Rgba = Rgba(240, 150, 40, 255);
const WARMING: Rgba = Rgba(250, 200, 60, 255);
const DIM: Rgba = Rgba(200, 200, 200, 255);

/// Draw the panel for the record in force (`None`: no output yet).
pub fn render(layout: &Layout, shown: Option<&Shown>, names: &[String], model: &str) -> Canvas {
    let Layout { width, height, px, .. } = *layout;
    let mut c = Canvas::new(width, height);
    c.fill_rect(0.0, 0.0, width as f32, height as f32, BACKGROUND);
    let margin = 0.6 * px;
    let inner = width as f32 - 2.0 * margin;
    let name = |id: usize| names.get(id).map_or("?", String::as_str);

    let title_px = 1.4 * px;
    let title_base = margin + 1.35 * px;
    match shown {
        None => {
            c.text(margin, title_base, title_px, &fit_text("no output yet", title_px, inner), DIM, Anchor::Start);
        }
        Some(s) => {
            let score = format!("{:.2}", s.current.1);
            let score_w = c.text(width as f32 - margin, title_base, title_px, &score, Rgba::WHITE, Anchor::End);
            let label = fit_text(s.current.0.map_or(NO_ACTION, name), title_px, inner - score_w - 0.5 * px);
            c.text(margin, title_base, title_px, &label, Rgba::WHITE, Anchor::Start);
            let mut y = margin + 1.8 * px;
            for &(id, score) in &s.top[..s.bars.min(layout.bars)] {
                let bar_h = 1.15 * px;
                c.fill_rect(margin, y, inner, bar_h, BAR_TRACK);
                let fill = if Some(id) == s.current.0 { BAR_FILL_CURRENT } else { BAR_FILL };
                c.fill_rect(margin, y, inner * score.clamp(0.0, 1.0), bar_h, fill);
                let text = fit_text(&format!("{} {:.2}", name(id), score), px * 0.9, inner - 0.4 * px);
                c.text(margin + 0.2 * px, y + 0.88 * px, px * 0.9, &text, Rgba::WHITE, Anchor::Start);
                y += 1.35 * px;
            }
        }
    }
    let footer_base = height as f32 - margin - 0.25 * px;
    let footer_px = 0.85 * px;
    let warming = shown.is_some_and(|s| !s.ready);
    let mut x = margin;
    if warming {
        x += c.text(x, footer_base, footer_px, "warming up", WARMING, Anchor::Start) + 0.6 * px;
    }
    let model_text = fit_text(model, footer_px, (width as f32 - margin - x).max(0.0));
    c.text(width as f32 - margin, footer_base, footer_px, &model_text, DIM, Anchor::End);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{ReportedLabel, TopEntry};

    #[test]
    fn the_panel_scales_with_the_frame_and_covers_at_most_a_quarter() {
        for (w, h) in [(320, 240), (640, 360), (1768, 994), (1920, 1080), (3840, 2160), (160, 120), (1080, 1920)] {
            for bars in [0, 1, 5] {
                let l = layout(w, h, bars);
                assert!(l.width * l.height * 4 <= w * h, "{w}x{h}: {l:?}");
                assert!(l.width <= w && l.height <= h);
            }
        }
        assert!(layout(320, 240, 5).px >= 8.0, "legible on 320x240");
        let (small, big) = (layout(640, 360, 5), layout(3840, 2160, 5));
        assert!(big.px >= 5.0 * small.px, "scales: {small:?} {big:?}");
    }

    #[test]
    fn shown_copies_the_record_without_strings() {
        let top = [TopEntry { id: 3, label: "a", score: 0.5 }, TopEntry { id: 9, label: "b", score: 0.25 }];
        let rec = StepRecord {
            kind: StepRecord::KIND,
            frame: 12,
            pts: 0.4,
            step: 10,
            ready: false,
            window: [0.0, 0.4],
            top: &top,
            current: ReportedLabel { id: Some(3), label: "a", score: 0.5 },
            latency_ms: 1.0,
            lag_s: None,
            skipped: 0,
        };
        let s = Shown::of(&rec);
        assert_eq!((s.frame, s.ready, s.current, s.bars), (12, false, (Some(3), 0.5), 2));
        assert_eq!(&s.top[..2], &[(3, 0.5), (9, 0.25)]);
        let mut t = s;
        t.top[1].1 = 0.251;
        assert!(s.looks_like(&t));
        t.top[1].1 = 0.3;
        assert!(!s.looks_like(&t));
    }

    #[test]
    fn panel_pixels_are_opaque_enough_to_read() {
        let names: Vec<String> = ["yoga", "high jump"].iter().map(|s| s.to_string()).collect();
        let l = layout(640, 360, 2);
        let s = Shown { frame: 0, ready: true, current: (Some(1), 0.7), top: [(1, 0.7), (0, 0.2), (0, 0.0), (0, 0.0), (0, 0.0)], bars: 2 };
        let c = render(&l, Some(&s), &names, "i3d");
        assert_eq!((c.width, c.height), (l.width, l.height));
        assert!(c.pixels.iter().all(|p| p[3] >= 0.75), "the background covers the whole panel");
    }
}
