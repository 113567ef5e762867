//! `--timeline FILE.svg|FILE.png`: a chart of the label track over the clip's time (docs/visual.md,
//! "The timeline"). The sink keeps each record's top classes (ids and scores only); the chart is laid
//! out once at the end as a list of shapes, written either as SVG text or rasterised to PNG.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::draw::{Anchor, Canvas, Rgba, fit_text};
use super::{SegmentRecord, Sink, StepRecord, Summary};
use crate::error::{ErrorKind, classified};

/// Classes drawn as lines at most (those with the highest peak score), so the chart stays readable.
pub const MAX_LINES: usize = 6;

/// The picture's file type, from the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Svg,
    Png,
}

impl Kind {
    pub fn of(path: &Path) -> anyhow::Result<Kind> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("svg") => Ok(Kind::Svg),
            Some("png") => Ok(Kind::Png),
            _ => Err(classified(ErrorKind::Usage, format!("--timeline {}: the name must end in .svg or .png", path.display()))),
        }
    }
}

/// Check before any work that the picture can be written where asked (66 if not).
pub fn check_writable(path: &Path) -> anyhow::Result<Kind> {
    let kind = Kind::of(path)?;
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| classified(ErrorKind::NoInput, format!("cannot write the timeline to {}: {e}", path.display())))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(kind)
}

/// The chart of one clip of `batch --timeline DIR`: the clip's file name, a dash, the first 8 hex
/// digits of the SHA-256 of its path as the batch records name it (so clips of the same name in
/// different folders get charts of their own, and a resumed run the same names), and the extension
/// (docs/visual.md, "Timelines of a batch").
pub fn clip_chart_name(clip: &Path, kind: Kind) -> String {
    use sha2::{Digest, Sha256};
    let name = clip.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "clip".into());
    let digest = Sha256::digest(clip.to_string_lossy().as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let ext = match kind {
        Kind::Svg => "svg",
        Kind::Png => "png",
    };
    format!("{name}-{hash}.{ext}")
}

/// One output on the track: its time and its top classes (a range of `Timeline::entries`).
#[derive(Debug, Clone, Copy)]
struct Point {
    pts: f64,
    ready: bool,
    first: usize,
    len: usize,
}

/// The sink that records the track and draws it at the end.
pub struct Timeline {
    path: PathBuf,
    kind: Kind,
    names: Vec<String>,
    title: String,
    /// Length of the clip, seconds, if known before the end.
    duration: Option<f64>,
    points: Vec<Point>,
    entries: Vec<(usize, f32)>,
    /// Classes kept of each record's ranked `top` (batch records list every class).
    top_k: usize,
    segments: Vec<SegmentRecord>,
}

impl Timeline {
    /// `expected_outputs` sizes the buffers up front so that recording does not reallocate on a clip
    /// of known length.
    pub fn new(
        path: PathBuf,
        names: Vec<String>,
        title: String,
        duration: Option<f64>,
        expected_outputs: usize,
        top_k: usize,
    ) -> anyhow::Result<Self> {
        let kind = Kind::of(&path)?;
        Ok(Timeline {
            path,
            kind,
            names,
            title,
            duration,
            points: Vec::with_capacity(expected_outputs),
            entries: Vec::with_capacity(expected_outputs * top_k),
            top_k,
            segments: Vec::new(),
        })
    }

    /// Lay out the chart and write it.
    pub fn write(&self) -> anyhow::Result<()> {
        let scene = self.layout();
        let bytes = match self.kind {
            Kind::Svg => to_svg(&scene).into_bytes(),
            Kind::Png => to_png(&scene)?,
        };
        // Whole or not at all: a run killed while writing leaves no half picture under the name.
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = self.path.with_file_name(format!(".{name}.coinfer-part"));
        let failed = |e: io::Error| classified(ErrorKind::NoInput, format!("cannot write the timeline to {}: {e}", self.path.display()));
        std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, &self.path)).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            failed(e)
        })
    }

    /// The classes drawn, best peak first, with their peak score.
    fn ranked_classes(&self) -> Vec<(usize, f32)> {
        let mut peaks: Vec<(usize, f32)> = Vec::new();
        for &(id, score) in &self.entries {
            match peaks.iter_mut().find(|(c, _)| *c == id) {
                Some(p) => p.1 = p.1.max(score),
                None => peaks.push((id, score)),
            }
        }
        peaks.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        peaks.truncate(MAX_LINES);
        peaks
    }

    fn layout(&self) -> Scene {
        let (width, height) = (1200.0f32, 500.0f32);
        let (left, right, top, bottom) = (64.0f32, 250.0f32, 48.0f32, 110.0f32);
        let (plot_w, plot_h) = (width - left - right, height - top - bottom);
        let last = self.points.last().map_or(0.0, |p| p.pts);
        let seg_end = self.segments.iter().map(|s| s.end).fold(0.0, f64::max);
        let t_max = self.duration.unwrap_or(0.0).max(last).max(seg_end).max(1e-3);
        let x_of = |t: f64| left + (t / t_max) as f32 * plot_w;
        let y_of = |s: f32| top + (1.0 - s.clamp(0.0, 1.0)) * plot_h;
        let mut shapes = vec![Shape::Rect { x: 0.0, y: 0.0, w: width, h: height, fill: Rgba::WHITE }];
        shapes.push(Shape::Text { x: left, y: 30.0, px: 18.0, text: self.title.clone(), fill: Rgba::BLACK, anchor: Anchor::Start });

        // The warm-up: outputs marked not ready, or the time before the first ready output.
        let first_ready = self.points.iter().find(|p| p.ready).map_or(t_max, |p| p.pts);
        if first_ready > 0.0 {
            let x1 = x_of(first_ready);
            shapes.push(Shape::Rect { x: left, y: top, w: x1 - left, h: plot_h, fill: Rgba(0, 0, 0, 20) });
            shapes.push(Shape::Text {
                x: left + 6.0,
                y: top + 16.0,
                px: 12.0,
                text: fit_text("warming up", 12.0, (x1 - left - 8.0).max(0.0)),
                fill: Rgba(90, 90, 90, 255),
                anchor: Anchor::Start,
            });
        }
        // Axes and grid.
        for i in 0..=4 {
            let s = i as f32 / 4.0;
            let y = y_of(s);
            shapes.push(Shape::Line {
                points: vec![(left, y), (left + plot_w, y)],
                width: 1.0,
                stroke: Rgba(0, 0, 0, if i == 0 { 160 } else { 40 }),
            });
            shapes.push(Shape::Text {
                x: left - 8.0,
                y: y + 4.0,
                px: 12.0,
                text: format!("{s:.2}"),
                fill: Rgba::BLACK,
                anchor: Anchor::End,
            });
        }
        let tick = nice_step(t_max / 8.0);
        let mut t = 0.0;
        while t <= t_max + 1e-9 {
            let x = x_of(t);
            shapes.push(Shape::Line { points: vec![(x, top + plot_h), (x, top + plot_h + 5.0)], width: 1.0, stroke: Rgba(0, 0, 0, 160) });
            shapes.push(Shape::Text {
                x,
                y: top + plot_h + 19.0,
                px: 12.0,
                text: format_seconds(t, tick),
                fill: Rgba::BLACK,
                anchor: Anchor::Middle,
            });
            t += tick;
        }
        shapes.push(Shape::Text {
            x: left + plot_w,
            y: top + plot_h + 36.0,
            px: 12.0,
            text: "time (s)".into(),
            fill: Rgba::BLACK,
            anchor: Anchor::End,
        });
        shapes.push(Shape::Text { x: 14.0, y: top - 10.0, px: 12.0, text: "score".into(), fill: Rgba::BLACK, anchor: Anchor::Start });

        // One line per class, broken where the class is not among the top-k; the transient part faded.
        let classes = self.ranked_classes();
        for (rank, &(class, _)) in classes.iter().enumerate() {
            let colour = PALETTE[rank % PALETTE.len()];
            let mut run: Vec<(f32, f32)> = Vec::new();
            let mut run_ready = true;
            for p in &self.points {
                let score = self.entries[p.first..p.first + p.len].iter().find(|e| e.0 == class).map(|e| e.1);
                let breaks = score.is_none() || (p.ready != run_ready && !run.is_empty());
                if breaks && !run.is_empty() {
                    let joint = *run.last().expect("not empty");
                    push_run(&mut shapes, std::mem::take(&mut run), colour, run_ready);
                    // Ready after transient: continue from the last point so the line has no gap.
                    if score.is_some() {
                        run.push(joint);
                    }
                }
                if let Some(s) = score {
                    run_ready = p.ready;
                    run.push((x_of(p.pts), y_of(s)));
                }
            }
            push_run(&mut shapes, run, colour, run_ready);
        }

        // Segments of the reported label as coloured bands under the axis.
        let band_y = top + plot_h + 46.0;
        shapes.push(Shape::Text {
            x: left - 8.0,
            y: band_y + 13.0,
            px: 11.0,
            text: "label".into(),
            fill: Rgba::BLACK,
            anchor: Anchor::End,
        });
        for seg in &self.segments {
            let colour = classes.iter().position(|c| Some(c.0) == seg.id).map_or(Rgba(150, 150, 150, 255), |r| PALETTE[r % PALETTE.len()]);
            let (x0, x1) = (x_of(seg.start), x_of(seg.end).max(x_of(seg.start) + 2.0));
            shapes.push(Shape::Rect { x: x0, y: band_y, w: x1 - x0, h: 18.0, fill: colour.with_alpha(200) });
            let label = fit_text(&seg.label, 11.0, x1 - x0 - 4.0);
            if !label.is_empty() {
                shapes.push(Shape::Text { x: x0 + 2.0, y: band_y + 13.0, px: 11.0, text: label, fill: Rgba::WHITE, anchor: Anchor::Start });
            }
        }

        // Legend.
        let lx = left + plot_w + 24.0;
        for (rank, &(class, peak)) in classes.iter().enumerate() {
            let y = top + 10.0 + rank as f32 * 24.0;
            let colour = PALETTE[rank % PALETTE.len()];
            shapes.push(Shape::Line { points: vec![(lx, y), (lx + 22.0, y)], width: 3.0, stroke: colour });
            let name = self.names.get(class).map_or("?", String::as_str);
            let text = fit_text(&format!("{name} ({peak:.2})"), 13.0, right - 56.0);
            shapes.push(Shape::Text { x: lx + 30.0, y: y + 4.5, px: 13.0, text, fill: Rgba::BLACK, anchor: Anchor::Start });
        }
        if classes.is_empty() {
            shapes.push(Shape::Text {
                x: lx,
                y: top + 14.0,
                px: 13.0,
                text: "no outputs".into(),
                fill: Rgba::BLACK,
                anchor: Anchor::Start,
            });
        }
        Scene { width, height, shapes }
    }
}

fn push_run(shapes: &mut Vec<Shape>, run: Vec<(f32, f32)>, colour: Rgba, ready: bool) {
    if run.is_empty() {
        return;
    }
    let stroke = if ready { colour } else { colour.with_alpha(110) };
    // A lone point still shows, as a short tick.
    let points = if run.len() == 1 { vec![(run[0].0 - 1.5, run[0].1), (run[0].0 + 1.5, run[0].1)] } else { run };
    shapes.push(Shape::Line { points, width: if ready { 2.5 } else { 1.5 }, stroke });
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.max(1e-3).log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10.0 * p)
}

fn format_seconds(t: f64, step: f64) -> String {
    if step >= 1.0 { format!("{t:.0}") } else { format!("{t:.1}") }
}

/// Tableau-like colours, distinguishable and legible on white.
const PALETTE: [Rgba; 8] = [
    Rgba(31, 119, 180, 255),
    Rgba(255, 127, 14, 255),
    Rgba(44, 160, 44, 255),
    Rgba(214, 39, 40, 255),
    Rgba(148, 103, 189, 255),
    Rgba(140, 86, 75, 255),
    Rgba(227, 119, 194, 255),
    Rgba(127, 127, 127, 255),
];

impl Sink for Timeline {
    fn step(&mut self, rec: &StepRecord<'_>) -> io::Result<()> {
        let first = self.entries.len();
        let top = &rec.top[..rec.top.len().min(self.top_k)];
        self.entries.extend(top.iter().map(|e| (e.id, e.score)));
        self.points.push(Point { pts: rec.pts, ready: rec.ready, first, len: top.len() });
        Ok(())
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.segments = summary.segments.clone();
        Ok(())
    }
}

/// What the chart is made of, in pixels of a `width`×`height` picture.
#[derive(Debug, Clone)]
pub struct Scene {
    pub width: f32,
    pub height: f32,
    pub shapes: Vec<Shape>,
}

#[derive(Debug, Clone)]
pub enum Shape {
    Rect { x: f32, y: f32, w: f32, h: f32, fill: Rgba },
    Line { points: Vec<(f32, f32)>, width: f32, stroke: Rgba },
    Text { x: f32, y: f32, px: f32, text: String, fill: Rgba, anchor: Anchor },
}

fn opacity(c: Rgba) -> String {
    format!("{:.3}", c.3 as f32 / 255.0)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn to_svg(scene: &Scene) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Verdana, sans-serif">"#,
        w = scene.width,
        h = scene.height
    );
    for shape in &scene.shapes {
        match shape {
            Shape::Rect { x, y, w, h, fill } => {
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}" fill-opacity="{}"/>"#,
                    fill.hex(),
                    opacity(*fill)
                );
            }
            Shape::Line { points, width, stroke } => {
                let pts: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{}" stroke-opacity="{}" stroke-width="{width}" stroke-linejoin="round"/>"#,
                    pts.join(" "),
                    stroke.hex(),
                    opacity(*stroke)
                );
            }
            Shape::Text { x, y, px, text, fill, anchor } => {
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let _ = writeln!(
                    s,
                    r#"<text x="{x:.1}" y="{y:.1}" font-size="{px}" fill="{}" text-anchor="{anchor}">{}</text>"#,
                    fill.hex(),
                    escape(text)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

pub fn to_png(scene: &Scene) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (scene.width as usize, scene.height as usize);
    let mut canvas = Canvas::new(w, h);
    for shape in &scene.shapes {
        match shape {
            Shape::Rect { x, y, w, h, fill } => canvas.fill_rect(*x, *y, *w, *h, *fill),
            Shape::Line { points, width, stroke } => canvas.stroke(points, *width, *stroke),
            Shape::Text { x, y, px, text, fill, anchor } => {
                canvas.text(*x, *y, *px, text, *fill, *anchor);
            }
        }
    }
    let rgb = canvas.to_rgb_over(Rgba::WHITE);
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w as u32, h as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&rgb)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{ReportedLabel, TopEntry};

    fn names() -> Vec<String> {
        (0..10).map(|i| format!("class {i}")).collect()
    }

    fn feed(t: &mut Timeline) {
        for i in 0..40u64 {
            let a = (i as f32 / 40.0).min(1.0);
            let top = [
                TopEntry { id: if i < 20 { 1 } else { 2 }, label: "", score: 0.5 + a / 3.0 },
                TopEntry { id: 3, label: "", score: 0.2 },
                TopEntry { id: if i % 2 == 0 { 4 } else { 5 }, label: "", score: 0.1 },
            ];
            let rec = StepRecord {
                kind: StepRecord::KIND,
                frame: i,
                pts: i as f64 * 0.2,
                step: i,
                ready: i >= 5,
                window: [0.0, i as f64 * 0.2],
                top: &top,
                current: ReportedLabel { id: Some(top[0].id), label: "", score: top[0].score },
                latency_ms: 1.0,
                lag_s: None,
                skipped: 0,
            };
            t.step(&rec).unwrap();
        }
        let seg =
            |start, end, id: usize| SegmentRecord { start, end, id: Some(id), label: format!("class {id}"), outputs: 1, mean_score: 0.5 };
        let summary = Summary {
            kind: Summary::KIND,
            status: "ok",
            frames: 40,
            steps: 40,
            outputs: 40,
            records: 40,
            wall_s: 1.0,
            steps_per_s: 40.0,
            p50_ms: None,
            p95_ms: None,
            skipped: 0,
            max_lag_s: None,
            segments_dropped: 0,
            segments: vec![seg(1.0, 3.8, 1), seg(4.0, 7.8, 2)],
        };
        t.summary(&summary).unwrap();
    }

    #[test]
    fn svg_parses_and_names_the_classes_by_peak() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.svg");
        let mut t = Timeline::new(path.clone(), names(), "test & <title>".into(), Some(8.0), 40, 3).unwrap();
        feed(&mut t);
        t.write().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
        let texts: Vec<String> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(String::from).collect();
        // Classes 1..5 were in the top-k; the legend ranks them by peak score.
        let legend: Vec<&String> = texts.iter().filter(|t| t.starts_with("class ") && t.ends_with(')')).collect();
        assert!(legend[0].starts_with("class 2 ("), "{legend:?}");
        assert!(legend[1].starts_with("class 1 ("), "{legend:?}");
        for c in ["class 3", "class 4", "class 5"] {
            assert!(legend.iter().any(|t| t.starts_with(c)), "{c} in {legend:?}");
        }
        assert!(texts.iter().any(|t| t == "warming up"), "the transient part is marked: {texts:?}");
        assert!(texts.iter().any(|t| t == "test & <title>"), "escaped and read back");
        let bands = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
        assert!(bands >= 4, "background, warm-up and two segment bands");
    }

    #[test]
    fn png_decodes_to_the_chart_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        let mut t = Timeline::new(path.clone(), names(), "png".into(), None, 0, 3).unwrap();
        feed(&mut t);
        t.write().unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (1200, 500));
        // Not a blank picture: some pixels are far from white (lines, text, bands).
        assert!(buf.chunks(3).filter(|p| p.iter().all(|&c| c < 128)).count() > 500);
    }

    #[test]
    fn the_extension_decides_the_kind() {
        assert_eq!(Kind::of(Path::new("a.SVG")).unwrap(), Kind::Svg);
        assert_eq!(Kind::of(Path::new("a.png")).unwrap(), Kind::Png);
        assert!(Kind::of(Path::new("a.jpg")).is_err());
        assert_eq!(nice_step(0.9), 1.0);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(0.03), 0.05);
    }
}
