//! Your own classes (docs/models.md, "Your own classes"): a fine-tuned checkpoint of each family,
//! written here from random tensors with a 5-class head, runs through the binary; the number of
//! classes comes from the head, `--labels` names them (its count must match), and without it the
//! classes get numbered names and a one-line note.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use candle_core::Tensor;
use coinfer::models::{ModelOptions, RandomWeights, WeightSource};
use serde_json::Value;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sports2d-demo.mp4");
const CLASSES: usize = 5;

/// Random tensors for every name the builder takes; the classifier weight `head` answers a
/// `CLASSES`-wide shape, as a fine-tuned checkpoint would, so the builder lays out that head.
struct FineTuned {
    random: RandomWeights,
    head: &'static str,
    taken: Vec<(String, Tensor)>,
}

impl WeightSource for FineTuned {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let t = self.random.take(name, shape)?;
        self.taken.push((name.to_string(), t.clone()));
        Ok(t)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        (name == self.head).then(|| vec![CLASSES, 1])
    }
}

/// A `CLASSES`-class checkpoint of registry model `model` (canonical names), as `--weights` takes it.
fn write_checkpoint(dir: &Path, model: &str, head: &'static str) -> PathBuf {
    let mut ws = FineTuned { random: RandomWeights::new(11), head, taken: Vec::new() };
    let built = coinfer::models::registry::find(model).unwrap();
    let net = (built.family.build)(model, &ModelOptions::default(), &mut ws).unwrap();
    assert_eq!(net.spec().num_classes, CLASSES);
    let tensors: HashMap<String, Tensor> = ws.taken.into_iter().collect();
    let path = dir.join(format!("{model}-{CLASSES}-classes.safetensors"));
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

fn coinfer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coinfer")).args(args).stdin(Stdio::null()).output().expect("the binary runs")
}

/// The JSON records of a successful run.
fn records(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Meta names the labels and the count; every step record names classes of `names` by id.
fn check_named(recs: &[Value], source: &str, names: &[&str]) {
    let meta = &recs[0];
    assert_eq!(meta["type"], "meta");
    assert_eq!(meta["num_classes"].as_u64(), Some(CLASSES as u64));
    assert_eq!(meta["labels"].as_str(), Some(source));
    let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
    assert!(!steps.is_empty(), "no step records");
    for step in steps {
        let top = step["top"].as_array().unwrap();
        assert_eq!(top.len(), CLASSES, "-k {CLASSES} lists every class");
        for t in top {
            let id = t["id"].as_u64().unwrap() as usize;
            assert_eq!(t["label"].as_str(), Some(names[id]), "{t}");
        }
    }
}

fn check_family(model: &str, head: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_checkpoint(dir.path(), model, head);
    let w = weights.to_str().unwrap();
    let base = ["--model", model, "--weights", w, "--emit-transient", "-k", "5", "-q", SAMPLE];

    // No labels: numbered names and one note on stderr.
    let out = coinfer(&base);
    let numbered: Vec<String> = (0..CLASSES).map(|i| format!("class {i}")).collect();
    let numbered: Vec<&str> = numbered.iter().map(String::as_str).collect();
    check_named(&records(&out), "numbered", &numbered);
    let err = String::from_utf8_lossy(&out.stderr);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("note:")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(notes[0].contains(&format!("{CLASSES} classes")), "{err}");

    // A labels file naming the five classes.
    let names = ["standing", "walking", "falling", "lying", "sitting"];
    let labels = dir.path().join("five.txt");
    std::fs::write(&labels, names.join("\n")).unwrap();
    let mut args = vec!["--labels", labels.to_str().unwrap()];
    args.extend(base);
    let out = coinfer(&args);
    check_named(&records(&out), labels.to_str().unwrap(), &names);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("note:"));

    // Three names for five classes: one usage error before any frame.
    let three = dir.path().join("three.txt");
    std::fs::write(&three, "a\nb\nc\n").unwrap();
    let out = coinfer(&["--model", model, "--weights", w, "--labels", three.to_str().unwrap(), SAMPLE]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("have 3 names but model") && err.contains("has 5 classes"), "{err}");

    // -k past the head's classes is refused.
    let out = coinfer(&["--model", model, "--weights", w, "-k", "6", SAMPLE]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 to 5 classes"));
}

#[test]
fn x3d_with_five_classes() {
    check_family("x3d-xs", "head.projection.weight");
}

#[test]
fn i3d_with_five_classes() {
    check_family("i3d", "Logits.Conv3d_0c_1x1.conv.weight");
}

#[test]
fn slow_with_five_classes() {
    check_family("slow-r50", "head.projection.weight");
}

#[test]
fn slowfast_with_five_classes() {
    check_family("slowfast-r50", "head.projection.weight");
}

#[test]
fn batch_follows_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let weights = write_checkpoint(dir.path(), "x3d-xs", "head.projection.weight");
    let out = coinfer(&["batch", "--model", "x3d-xs", "--weights", weights.to_str().unwrap(), "-k", "5", "-q", SAMPLE]);
    let recs = records(&out);
    let clip = recs.iter().find(|r| r["top"].is_array()).expect("a clip record");
    let top = clip["top"].as_array().unwrap();
    assert_eq!(top.len(), CLASSES);
    for t in top {
        assert_eq!(t["label"].as_str().unwrap(), format!("class {}", t["id"]));
    }
}
