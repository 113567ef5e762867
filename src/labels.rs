//! Class names: the embedded Kinetics-400 list, or a user file (`--labels`).
//!
//! Accepted files, told apart by extension (then by content):
//! - `.json`: an object `{"name": id, ...}` (PyTorchVideo / SlowFast style);
//! - `.csv`: lines `id,name`, an optional header line whose id is not a number;
//! - anything else: plain text, one name per line, ids in line order.
//!
//! Ids are 0-based and must cover `0..n` exactly once.

use std::path::Path;

use crate::error::{ErrorKind, classified};

const KINETICS400: &str = include_str!("labels/kinetics400.txt");
/// Classes of a Kinetics-400 head: checkpoints with another count get numbered names by default.
pub const KINETICS400_CLASSES: usize = 400;

/// An ordered list of class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// Where the names came from: `kinetics400` or the file path.
    pub source: String,
    names: Vec<String>,
}

impl Labels {
    /// The embedded Kinetics-400 list (400 names).
    pub fn kinetics400() -> Self {
        let names = parse_text(KINETICS400);
        Labels { source: "kinetics400".into(), names }
    }

    pub fn from_names(source: impl Into<String>, names: Vec<String>) -> Self {
        Labels { source: source.into(), names }
    }

    /// Read a label file (see the module docs for the formats).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::InvalidData { ErrorKind::Data } else { ErrorKind::NoInput };
            classified(kind, format!("cannot read labels file {}: {e}", path.display()))
        })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let names = match ext.as_str() {
            "json" => parse_json(&text),
            "csv" => parse_csv(&text),
            _ if text.trim_start().starts_with('{') => parse_json(&text),
            _ => Ok(parse_text(&text)),
        }
        .map_err(|e| classified(ErrorKind::Data, format!("labels file {}: {e}", path.display())))?;
        if names.is_empty() {
            return Err(classified(ErrorKind::Data, format!("labels file {} has no names", path.display())));
        }
        Ok(Labels { source: path.display().to_string(), names })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of class `id` (callers check `len` against the model's classes first).
    pub fn name(&self, id: usize) -> &str {
        &self.names[id]
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Names for the `num_classes` classes of `model`'s head (docs/models.md, "Your own classes"):
    /// the file's when one is given (a usage error unless it names every class), the embedded
    /// Kinetics-400 list for a 400-class head, else numbered names (`class 0`, …) with a one-line
    /// note for stderr.
    pub fn for_model(file: Option<Labels>, model: &str, num_classes: usize) -> anyhow::Result<(Self, Option<String>)> {
        if let Some(labels) = file {
            labels.check_fits(model, num_classes)?;
            return Ok((labels, None));
        }
        if num_classes == KINETICS400_CLASSES {
            return Ok((Labels::kinetics400(), None));
        }
        let names = (0..num_classes).map(|i| format!("class {i}")).collect();
        let note = format!(
            "coinfer: note: the {model} checkpoint has {num_classes} classes, not Kinetics-400's {KINETICS400_CLASSES}: \
             they are named 'class 0' to 'class {}' (name them with --labels FILE)",
            num_classes.saturating_sub(1)
        );
        Ok((Labels { source: "numbered".into(), names }, Some(note)))
    }

    /// A usage error unless there is exactly one name per class of `model` (checked before any frame,
    /// since names are looked up by class id).
    pub fn check_fits(&self, model: &str, num_classes: usize) -> anyhow::Result<()> {
        if self.len() == num_classes {
            return Ok(());
        }
        Err(classified(
            ErrorKind::Usage,
            format!("the labels ({}) have {} names but model {model} has {num_classes} classes", self.source, self.len()),
        ))
    }
}

/// One name per line; surrounding blanks and a trailing empty line are dropped.
fn parse_text(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    names
}

fn parse_json(text: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let map = value.as_object().ok_or("expected a JSON object {\"name\": id}")?;
    let mut pairs = Vec::with_capacity(map.len());
    for (name, id) in map {
        let id = id.as_u64().ok_or_else(|| format!("id of '{name}' is not a non-negative integer"))?;
        pairs.push((id, name.clone()));
    }
    dense(pairs)
}

fn parse_csv(text: &str) -> Result<Vec<String>, String> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (id, name) = line.split_once(',').ok_or_else(|| format!("line {}: expected 'id,name'", n + 1))?;
        let id = id.trim().trim_matches('"');
        let name = name.trim().trim_matches('"').to_string();
        match id.parse::<u64>() {
            Ok(id) => pairs.push((id, name)),
            Err(_) if n == 0 => continue, // header such as "id,name"
            Err(_) => return Err(format!("line {}: id '{id}' is not a non-negative integer", n + 1)),
        }
    }
    dense(pairs)
}

/// Order (id, name) pairs by id, requiring ids 0..n each exactly once.
fn dense(mut pairs: Vec<(u64, String)>) -> Result<Vec<String>, String> {
    pairs.sort_by_key(|p| p.0);
    for (i, (id, name)) in pairs.iter().enumerate() {
        if *id != i as u64 {
            return Err(if *id < i as u64 {
                format!("id {id} used twice ('{name}')")
            } else {
                format!("id {i} is missing (ids must be 0..{})", pairs.len())
            });
        }
    }
    Ok(pairs.into_iter().map(|p| p.1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinetics400_is_complete() {
        let l = Labels::kinetics400();
        assert_eq!(l.len(), 400);
        assert_eq!(l.name(0), "abseiling");
        assert_eq!(l.name(399), "zumba");
    }

    #[test]
    fn formats_agree() {
        let want = vec!["run".to_string(), "jump, high".to_string(), "swim".to_string()];
        assert_eq!(parse_text("run\n jump, high \nswim\n\n"), want);
        assert_eq!(parse_json(r#"{"swim": 2, "run": 0, "jump, high": 1}"#).unwrap(), want);
        assert_eq!(parse_csv("id,name\n1,\"jump, high\"\n0,run\n2,swim\n").unwrap(), want);
    }

    #[test]
    fn check_fits_wants_one_name_per_class() {
        let l = Labels::from_names("two.txt", vec!["a".into(), "b".into()]);
        assert!(l.check_fits("m", 2).is_ok());
        let err = l.check_fits("m", 3).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), ErrorKind::Usage);
        assert_eq!(err.to_string(), "the labels (two.txt) have 2 names but model m has 3 classes");
    }

    #[test]
    fn rejects_gaps_and_duplicates() {
        assert!(parse_json(r#"{"a": 0, "b": 2}"#).unwrap_err().contains("missing"));
        assert!(parse_csv("0,a\n0,b\n").unwrap_err().contains("twice"));
        assert!(parse_csv("0,a\nx,b\n").is_err());
        assert!(parse_json(r#"{"a": -1}"#).is_err());
        assert!(parse_json("[1,2]").is_err());
    }
}
