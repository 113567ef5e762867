//! A small RGBA canvas with antialiased text, rectangles and lines: what the overlay panel and the
//! timeline picture are drawn on (docs/visual.md, "Text and drawing").
//!
//! Pixels are premultiplied RGBA in 0..=1, composited with the "over" operator, so a panel drawn
//! here can be laid on a video frame with its own transparency.

use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera licence, assets/fonts/LICENSE-DejaVu.txt), built into the binary so
/// drawing never depends on the fonts of the machine.
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The one font, parsed on first use.
pub fn font() -> &'static fontdue::Font {
    static FONT: OnceLock<fontdue::Font> = OnceLock::new();
    FONT.get_or_init(|| fontdue::Font::from_bytes(FONT_BYTES, fontdue::FontSettings::default()).expect("the bundled font parses"))
}

/// A straight (not premultiplied) colour with alpha, 0..=255.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgba(pub u8, pub u8, pub u8, pub u8);

impl Rgba {
    pub const WHITE: Rgba = Rgba(255, 255, 255, 255);
    pub const BLACK: Rgba = Rgba(0, 0, 0, 255);

    pub fn with_alpha(self, a: u8) -> Rgba {
        Rgba(self.0, self.1, self.2, a)
    }

    /// `#rrggbb`, for SVG.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Where a text's x coordinate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// Width in pixels of `text` set at `px`, kerning included.
pub fn text_width(text: &str, px: f32) -> f32 {
    let font = font();
    let mut width = 0.0;
    let mut prev: Option<char> = None;
    for c in text.chars() {
        if let Some(p) = prev {
            width += font.horizontal_kern(p, c, px).unwrap_or(0.0);
        }
        width += font.metrics(c, px).advance_width;
        prev = Some(c);
    }
    width
}

/// `text`, shortened with an ellipsis until it fits in `max_width` pixels at `px`.
pub fn fit_text(text: &str, px: f32, max_width: f32) -> String {
    if text_width(text, px) <= max_width {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let candidate: String = chars.iter().collect::<String>().trim_end().to_string() + "…";
        if text_width(&candidate, px) <= max_width {
            return candidate;
        }
    }
    String::new()
}

/// Premultiplied RGBA pixels, row after row.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[f32; 4]>,
}

impl Canvas {
    /// A fully transparent canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Canvas { width, height, pixels: vec![[0.0; 4]; width * height] }
    }

    /// Lay `colour` over pixel (x, y) with extra coverage `cover` (0..=1).
    fn blend(&mut self, x: usize, y: usize, colour: Rgba, cover: f32) {
        let a = colour.3 as f32 / 255.0 * cover.clamp(0.0, 1.0);
        if a <= 0.0 {
            return;
        }
        let p = &mut self.pixels[y * self.width + x];
        let keep = 1.0 - a;
        p[0] = colour.0 as f32 / 255.0 * a + p[0] * keep;
        p[1] = colour.1 as f32 / 255.0 * a + p[1] * keep;
        p[2] = colour.2 as f32 / 255.0 * a + p[2] * keep;
        p[3] = a + p[3] * keep;
    }

    /// Fill a rectangle; fractional edges are antialiased.
    pub fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32, colour: Rgba) {
        let (x0, y0) = (x.max(0.0), y.max(0.0));
        let (x1, y1) = ((x + w).min(self.width as f32), (y + h).min(self.height as f32));
        if x1 <= x0 || y1 <= y0 {
            return;
        }
        for py in y0.floor() as usize..y1.ceil() as usize {
            let cy = overlap(py as f32, y0, y1);
            for px in x0.floor() as usize..x1.ceil() as usize {
                self.blend(px, py, colour, cy * overlap(px as f32, x0, x1));
            }
        }
    }

    /// A polyline `width` pixels wide, antialiased by distance to its segments. Each pixel takes the
    /// best coverage of any segment, so joints are not drawn twice.
    pub fn stroke(&mut self, points: &[(f32, f32)], width: f32, colour: Rgba) {
        if points.len() < 2 || self.width == 0 || self.height == 0 {
            return;
        }
        let half = width / 2.0;
        let pad = half + 1.0;
        let clamp_x = |v: f32| v.clamp(0.0, self.width as f32 - 1.0) as usize;
        let clamp_y = |v: f32| v.clamp(0.0, self.height as f32 - 1.0) as usize;
        let (x0, x1) = points.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
        let (y0, y1) = points.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let (bx, by) = (clamp_x(x0 - pad), clamp_y(y0 - pad));
        let (bw, bh) = (clamp_x(x1 + pad) + 1 - bx, clamp_y(y1 + pad) + 1 - by);
        let mut cover = vec![0f32; bw * bh];
        for seg in points.windows(2) {
            let ((ax, ay), (qx, qy)) = (seg[0], seg[1]);
            let xs = clamp_x(ax.min(qx) - pad)..clamp_x(ax.max(qx) + pad) + 1;
            for py in clamp_y(ay.min(qy) - pad)..clamp_y(ay.max(qy) + pad) + 1 {
                for px in xs.clone() {
                    let d = distance_to_segment((px as f32 + 0.5, py as f32 + 0.5), (ax, ay), (qx, qy));
                    let c = &mut cover[(py - by) * bw + px - bx];
                    *c = c.max((half + 0.5 - d).clamp(0.0, 1.0));
                }
            }
        }
        for y in 0..bh {
            for x in 0..bw {
                let c = cover[y * bw + x];
                if c > 0.0 {
                    self.blend(bx + x, by + y, colour, c);
                }
            }
        }
    }

    /// Draw `text` at `px` with its baseline at `baseline`; returns its width.
    pub fn text(&mut self, x: f32, baseline: f32, px: f32, text: &str, colour: Rgba, anchor: Anchor) -> f32 {
        let font = font();
        let width = text_width(text, px);
        let mut pen = match anchor {
            Anchor::Start => x,
            Anchor::Middle => x - width / 2.0,
            Anchor::End => x - width,
        };
        let mut prev: Option<char> = None;
        for c in text.chars() {
            if let Some(p) = prev {
                pen += font.horizontal_kern(p, c, px).unwrap_or(0.0);
            }
            let (m, coverage) = font.rasterize(c, px);
            let left = pen.round() as i64 + m.xmin as i64;
            let top = baseline.round() as i64 - m.height as i64 - m.ymin as i64;
            for gy in 0..m.height {
                let y = top + gy as i64;
                if y < 0 || y >= self.height as i64 {
                    continue;
                }
                for gx in 0..m.width {
                    let x = left + gx as i64;
                    if x < 0 || x >= self.width as i64 {
                        continue;
                    }
                    let cover = coverage[gy * m.width + gx];
                    if cover > 0 {
                        self.blend(x as usize, y as usize, colour, cover as f32 / 255.0);
                    }
                }
            }
            pen += m.advance_width;
            prev = Some(c);
        }
        width
    }

    /// Straight RGBA bytes over an opaque `background` (for PNG files).
    pub fn to_rgb_over(&self, background: Rgba) -> Vec<u8> {
        let bg = [background.0 as f32 / 255.0, background.1 as f32 / 255.0, background.2 as f32 / 255.0];
        let mut out = Vec::with_capacity(self.pixels.len() * 3);
        for p in &self.pixels {
            for c in 0..3 {
                out.push(((p[c] + bg[c] * (1.0 - p[3])) * 255.0).round().clamp(0.0, 255.0) as u8);
            }
        }
        out
    }
}

/// How much of pixel `[p, p+1)` lies inside `[lo, hi)`.
fn overlap(p: f32, lo: f32, hi: f32) -> f32 {
    ((p + 1.0).min(hi) - p.max(lo)).clamp(0.0, 1.0)
}

fn distance_to_segment(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
    ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_inside_its_box_and_nowhere_else() {
        let mut c = Canvas::new(200, 40);
        let w = c.text(10.0, 30.0, 20.0, "jumping", Rgba::WHITE, Anchor::Start);
        assert!(w > 40.0 && w < 120.0, "{w}");
        let inked: Vec<(usize, usize)> =
            (0..c.height).flat_map(|y| (0..c.width).map(move |x| (x, y))).filter(|&(x, y)| c.pixels[y * 200 + x][3] > 0.0).collect();
        assert!(inked.len() > 100);
        // "j" and "p"/"g" descend below the baseline, but nothing is drawn left of the pen or far past it.
        assert!(inked.iter().all(|&(x, y)| x >= 9 && (x as f32) < 10.0 + w + 2.0 && y < 40));
    }

    #[test]
    fn long_text_is_elided_to_fit() {
        let s = fit_text("playing ice hockey in the park", 20.0, 100.0);
        assert!(s.ends_with('…') && text_width(&s, 20.0) <= 100.0, "{s}");
        assert_eq!(fit_text("yoga", 20.0, 100.0), "yoga");
    }

    #[test]
    fn rectangles_cover_exactly_their_area() {
        let mut c = Canvas::new(10, 10);
        c.fill_rect(2.0, 3.0, 4.0, 2.0, Rgba(255, 0, 0, 255));
        let covered = c.pixels.iter().filter(|p| p[3] > 0.0).count();
        assert_eq!(covered, 8);
        assert_eq!(c.pixels[3 * 10 + 2], [1.0, 0.0, 0.0, 1.0]);
        let rgb = c.to_rgb_over(Rgba::WHITE);
        assert_eq!(&rgb[0..3], &[255, 255, 255]);
        assert_eq!(&rgb[(3 * 10 + 2) * 3..][..3], &[255, 0, 0]);
    }

    #[test]
    fn strokes_follow_the_line() {
        let mut c = Canvas::new(20, 20);
        c.stroke(&[(0.0, 10.0), (20.0, 10.0)], 2.0, Rgba::BLACK);
        assert!(c.pixels[10 * 20 + 5][3] > 0.9 && c.pixels[9 * 20 + 5][3] > 0.9);
        assert_eq!(c.pixels[2 * 20 + 5][3], 0.0);
        // On an opaque background too, and a joint is not darker than the line.
        let mut c = Canvas::new(20, 20);
        c.fill_rect(0.0, 0.0, 20.0, 20.0, Rgba::WHITE);
        c.stroke(&[(0.0, 10.0), (10.0, 10.0), (20.0, 10.0)], 2.0, Rgba(0, 0, 0, 128));
        let grey = |x: usize| c.pixels[10 * 20 + x][0];
        assert!(grey(5) < 0.6, "drawn over white: {}", grey(5));
        assert!((grey(10) - grey(5)).abs() < 1e-6, "joint {} vs line {}", grey(10), grey(5));
        assert_eq!(c.pixels[2 * 20 + 5][0], 1.0);
    }
}
