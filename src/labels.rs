//! Class names: the embedded Kinetics-400 list, or a user file (`--labels`).
//!
//! Accepted files, told apart by extension (then by content):
//! - `.json`: an object `{"name": id, ...}` (PyTorchVideo / SlowFast style);
//! - `.csv`: lines `id,name`, an optional header line whose id is not a number;
//! - anything else: plain text, one name per line, ids in line order.
//!
//! One contract for the three (docs/models.md, "Label files"): UTF-8, a leading BOM ignored; names
//! trimmed of surrounding whitespace; blank lines ignored (never a name, never an id); an empty name
//! is an error; ids are 0-based and must be `0..N-1` for N names, each exactly once.

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
        let names = parse_text(KINETICS400).expect("the embedded list is well formed");
        Labels { source: "kinetics400".into(), names }
    }

    pub fn from_names(source: impl Into<String>, names: Vec<String>) -> Self {
        Labels { source: source.into(), names }
    }

    /// Read a label file (see the module docs for the formats and their one contract).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| classified(ErrorKind::NoInput, format!("cannot read labels file {}: {e}", path.display())))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let names = parse(&bytes, &ext).map_err(|e| classified(ErrorKind::Data, format!("labels file {}: {e}", path.display())))?;
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

/// The names of a label file's bytes; `ext` (lower case) picks the form, content decides otherwise.
fn parse(bytes: &[u8], ext: &str) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text ({e})"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let names = match ext {
        "json" => parse_json(text)?,
        "csv" => parse_csv(text)?,
        _ if text.trim_start().starts_with('{') => parse_json(text)?,
        _ => parse_text(text)?,
    };
    if names.is_empty() {
        return Err("no names".into());
    }
    Ok(names)
}

/// One name per non-blank line, ids in line order.
fn parse_text(text: &str) -> Result<Vec<String>, String> {
    dense(text.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate().map(|(i, l)| (i as u64, l.to_string())).collect())
}

fn parse_json(text: &str) -> Result<Vec<String>, String> {
    let JsonEntries(entries) = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut pairs = Vec::with_capacity(entries.len());
    for (name, id) in entries {
        let id = id.as_u64().ok_or_else(|| format!("the id of '{name}' is not a whole number >= 0"))?;
        pairs.push((id, named(&name, id)?));
    }
    dense(pairs)
}

/// The entries of a JSON object in file order, a repeated key kept (a map would keep only its last
/// value, and a class would vanish without a word).
struct JsonEntries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonEntries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = JsonEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object {\"name\": id}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonEntries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(JsonEntries(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// `id,name` lines; a name may be quoted (`"jump, high"`, `""` for a quote inside). The first
/// non-blank line is a header when its id is not a number.
fn parse_csv(text: &str) -> Result<Vec<String>, String> {
    let mut pairs = Vec::new();
    let mut first = true;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let is_first = std::mem::replace(&mut first, false);
        let (id, name) = line.split_once(',').ok_or_else(|| format!("line {}: expected 'id,name'", n + 1))?;
        let id = unquote(id.trim());
        let Ok(id) = id.parse::<u64>() else {
            if is_first {
                continue; // a header such as "id,name"
            }
            return Err(format!("line {}: the id '{id}' is not a whole number >= 0", n + 1));
        };
        pairs.push((id, named(&unquote(name.trim()), id)?));
    }
    dense(pairs)
}

/// A CSV field without its surrounding quotes, `""` read as one quote.
fn unquote(field: &str) -> String {
    match field.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => field.to_string(),
    }
}

/// A name trimmed of surrounding whitespace; an error when nothing is left.
fn named(name: &str, id: u64) -> Result<String, String> {
    match name.trim() {
        "" => Err(format!("id {id} has an empty name")),
        name => Ok(name.to_string()),
    }
}

/// Order (id, name) pairs by id, requiring ids `0..N-1` for N pairs, each exactly once, and no name
/// twice; the first duplicate or gap is reported, in the same words for every form.
fn dense(mut pairs: Vec<(u64, String)>) -> Result<Vec<String>, String> {
    let rule = |n: usize| format!("ids must be 0..{}, one per name", n.saturating_sub(1));
    let mut by_name: Vec<&(u64, String)> = pairs.iter().collect();
    by_name.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    if let Some(w) = by_name.windows(2).find(|w| w[0].1 == w[1].1) {
        return Err(format!("the name '{}' is used twice (ids {} and {}): one name per class", w[0].1, w[0].0, w[1].0));
    }
    pairs.sort_by_key(|p| p.0);
    if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("id {} is used twice ('{}' and '{}'): {}", w[0].0, w[0].1, w[1].1, rule(pairs.len())));
    }
    if let Some(missing) = pairs.iter().enumerate().find(|(i, p)| p.0 != *i as u64).map(|(i, _)| i) {
        return Err(format!("id {missing} is missing: {}", rule(pairs.len())));
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

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The same classes written in each form, parsed as `from_file` parses them.
    fn all_forms(txt: &str, json: &str, csv: &str) -> [(&'static str, Result<Vec<String>, String>); 3] {
        [("txt", parse(txt.as_bytes(), "txt")), ("json", parse(json.as_bytes(), "json")), ("csv", parse(csv.as_bytes(), "csv"))]
    }

    #[test]
    fn formats_agree() {
        let want = names(&["run", "jump, high", "swim"]);
        for (form, got) in all_forms(
            "run\n jump, high \nswim\n",
            r#"{"swim": 2, "run": 0, "jump, high": 1}"#,
            "id,name\n1,\"jump, high\"\n0,run\n2,swim\n",
        ) {
            assert_eq!(got.as_ref(), Ok(&want), "{form}");
        }
    }

    #[test]
    fn a_bom_is_accepted_in_every_form() {
        let want = names(&["run", "swim"]);
        for (form, got) in all_forms("\u{feff}run\nswim\n", "\u{feff}{\"run\": 0, \"swim\": 1}", "\u{feff}0,run\n1,swim\n") {
            assert_eq!(got.as_ref(), Ok(&want), "{form}");
        }
        // With a header after the BOM too.
        assert_eq!(parse("\u{feff}id,name\n0,run\n1,swim\n".as_bytes(), "csv"), Ok(want.clone()));
        // A JSON file without the .json extension is still told by its first character.
        assert_eq!(parse("\u{feff}{\"run\": 0, \"swim\": 1}".as_bytes(), "txt"), Ok(want));
    }

    #[test]
    fn blank_lines_and_surrounding_whitespace_are_ignored_in_every_form() {
        let want = names(&["run", "swim"]);
        for (form, got) in all_forms(
            "\n  \nrun  \r\n\n\t\n swim\t\n\n \n",
            "\n\n{ \"run \": 0,\n\n  \" swim\": 1 }\n\n",
            "\n id,name \n\n0, run \r\n  \n1 ,swim\t\n\n",
        ) {
            assert_eq!(got.as_ref(), Ok(&want), "{form}");
        }
    }

    #[test]
    fn an_empty_file_has_no_names_in_every_form() {
        for (form, got) in all_forms("\n \n", "{}", "id,name\n\n") {
            assert_eq!(got, Err("no names".to_string()), "{form}");
        }
    }

    #[test]
    fn empty_names_are_errors() {
        assert_eq!(parse(br#"{"run": 0, " ": 1}"#, "json"), Err("id 1 has an empty name".into()));
        assert_eq!(parse(b"0,run\n1,\"\"\n", "csv"), Err("id 1 has an empty name".into()));
        assert_eq!(parse(b"0,run\n1, \n", "csv"), Err("id 1 has an empty name".into()));
    }

    #[test]
    fn gaps_name_the_missing_id_and_the_real_range() {
        let json = parse(br#"{"a": 0, "b": 2, "c": 3}"#, "json");
        let csv = parse(b"0,a\n2,b\n3,c\n", "csv");
        assert_eq!(json, Err("id 1 is missing: ids must be 0..2, one per name".into()));
        assert_eq!(csv, json);
        // An id counted from 1 leaves 0 missing.
        let csv = parse(b"1,a\n2,b\n", "csv");
        assert_eq!(csv, Err("id 0 is missing: ids must be 0..1, one per name".into()));
        assert_eq!(parse(br#"{"a": 1, "b": 2}"#, "json"), csv);
    }

    #[test]
    fn duplicate_ids_and_names_are_reported_alike() {
        let json = parse(br#"{"a": 0, "b": 1, "c": 1}"#, "json");
        assert_eq!(json, Err("id 1 is used twice ('b' and 'c'): ids must be 0..2, one per name".into()));
        assert_eq!(parse(b"0,a\n1,b\n1,c\n", "csv"), json);
        // A repeated name (a repeated JSON key would otherwise drop a class silently).
        let want = Err("the name 'a' is used twice (ids 0 and 1): one name per class".to_string());
        for (form, got) in all_forms("a\na\n", r#"{"a": 0, "a": 1}"#, "0,a\n1,a\n") {
            assert_eq!(got, want, "{form}");
        }
    }

    #[test]
    fn malformed_entries_are_errors() {
        assert!(parse(b"0,a\nx,b\n", "csv").unwrap_err().contains("line 2: the id 'x'"));
        assert!(parse(b"0,a\nb\n", "csv").unwrap_err().contains("line 2: expected 'id,name'"));
        assert!(parse(br#"{"a": -1}"#, "json").unwrap_err().contains("not a whole number"));
        assert!(parse(br#"{"a": 0.5}"#, "json").unwrap_err().contains("not a whole number"));
        assert!(parse(b"[1,2]", "json").unwrap_err().contains("not valid JSON"));
        assert!(parse(b"run\n\xff\n", "txt").unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn quoted_csv_names_keep_their_commas_and_quotes() {
        assert_eq!(parse(b"0,\"jump, \"\"high\"\"\"\n", "csv"), Ok(names(&["jump, \"high\""])));
    }

    #[test]
    fn check_fits_wants_one_name_per_class() {
        let l = Labels::from_names("two.txt", vec!["a".into(), "b".into()]);
        assert!(l.check_fits("m", 2).is_ok());
        let err = l.check_fits("m", 3).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), ErrorKind::Usage);
        assert_eq!(err.to_string(), "the labels (two.txt) have 2 names but model m has 3 classes");
    }
}
