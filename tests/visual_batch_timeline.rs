//! `coinfer batch --timeline DIR`: one chart per clip, named after the clip's path (two clips of the
//! same name in different folders get one each), written whole, and not redone by `--resume`.
//!
//! CoX3D-XS with random weights the test writes itself keeps the run short: the predictions mean
//! nothing, but the charts must name the classes the clip records name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use candle_core::Tensor;
use coinfer::models::{ModelOptions, RandomWeights, WeightSource};
use serde_json::Value;

/// Keeps every tensor the builder takes, to save them as a checkpoint.
struct Keep {
    random: RandomWeights,
    taken: Vec<(String, Tensor)>,
}

impl WeightSource for Keep {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let t = self.random.take(name, shape)?;
        self.taken.push((name.to_string(), t.clone()));
        Ok(t)
    }
}

fn random_x3d_xs(dir: &Path) -> PathBuf {
    let mut keep = Keep { random: RandomWeights::new(11), taken: Vec::new() };
    coinfer::models::x3d::build("x3d-xs", &ModelOptions::default(), &mut keep).unwrap();
    let tensors: HashMap<String, Tensor> = keep.taken.into_iter().collect();
    let path = dir.join("x3d_xs_random.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

fn clip(path: &Path, source: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", source, "-t", "3", "-c:v", "libx264", "-preset", "ultrafast"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn batch(weights: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coinfer"))
        .args(["batch", "--model", "x3d-xs", "--weights"])
        .arg(weights)
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn charts(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn batch_writes_one_parsable_chart_per_clip_and_resume_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let weights = random_x3d_xs(dir.path());
    // The same file name in two folders, different pictures.
    let (a, b) = (dir.path().join("a/clip.mp4"), dir.path().join("b/clip.mp4"));
    clip(&a, "testsrc2=size=160x120:rate=25");
    clip(&b, "mandelbrot=size=160x120:rate=25");
    let out_file = dir.path().join("labels.jsonl");
    let chart_dir = dir.path().join("charts");
    let (a_s, b_s, out_s, charts_s) = (a.to_str().unwrap(), b.to_str().unwrap(), out_file.to_str().unwrap(), chart_dir.to_str().unwrap());

    let out = batch(&weights, &[a_s, b_s, "--out", out_s, "--timeline", charts_s, "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = charts(&chart_dir);
    let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "one chart per clip, no temporary left: {names:?}");
    assert!(names.iter().all(|n| n.starts_with("clip.mp4-") && n.ends_with(".svg")), "{names:?}");

    let records: Vec<Value> = std::fs::read_to_string(&out_file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    for rec in &records {
        let clip_path = Path::new(rec["path"].as_str().unwrap());
        let chart = chart_dir.join(coinfer::sink::timeline::clip_chart_name(clip_path, coinfer::sink::timeline::Kind::Svg));
        let svg = std::fs::read_to_string(&chart).unwrap_or_else(|e| panic!("{}: {e}", chart.display()));
        let doc = roxmltree::Document::parse(&svg).expect("the SVG parses");
        let texts: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
        assert!(texts.iter().any(|t| t.contains(rec["path"].as_str().unwrap())), "the title names the clip: {texts:?}");
        let best = rec["top"][0]["label"].as_str().unwrap();
        assert!(texts.iter().any(|t| t.starts_with(best)), "{best} in the legend of {}: {texts:?}", chart.display());
    }

    // A resumed run labels nothing again and leaves the charts as they are.
    let before: Vec<_> = files.iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = batch(&weights, &[a_s, b_s, "--out", out_s, "--timeline", charts_s, "--resume", "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after: Vec<_> = files.iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
    assert_eq!(before, after, "finished clips' charts are not redrawn");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap().lines().count(), 2);

    // PNG on request; a folder that cannot be made is refused before any clip (66).
    let png_dir = dir.path().join("png");
    let out = batch(&weights, &[a_s, "--timeline", png_dir.to_str().unwrap(), "--timeline-format", "png", "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pngs = charts(&png_dir);
    assert_eq!(pngs.len(), 1);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&pngs[0]).unwrap()));
    let info = decoder.read_info().expect("the PNG decodes").info().clone();
    assert!(info.width > 100 && info.height > 100);
    let blocked = dir.path().join("labels.jsonl/charts");
    let out = batch(&weights, &[a_s, "--timeline", blocked.to_str().unwrap(), "-q"]);
    assert_eq!(out.status.code(), Some(66), "{}", String::from_utf8_lossy(&out.stderr));
}
