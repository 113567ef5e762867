//! Label files (`--labels`), read through the public `Labels::from_file` as coinfer reads them.
//!
//! Mode 0 (first byte even): the rest is a file's bytes, with the extension `.txt`, `.json` or
//! `.csv` (chosen by the second byte): every outcome is a clean error or names that keep the one
//! contract (docs/models.md, "Label files"): at least one name, none empty, none with surrounding
//! whitespace, none twice.
//! Mode 1 (first byte odd): the rest, split into lines, is a list of names; it is written as a text,
//! a JSON and a CSV file, and the three must give the same answer: the same names in the same order,
//! or the same error message (docs/testing.md, "Fuzzing").
#![no_main]

use std::path::{Path, PathBuf};

use coinfer::error::{ErrorKind, kind_of};
use coinfer::labels::Labels;
use libfuzzer_sys::fuzz_target;

fn temp(ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("coinfer-fuzz-labels-{}.{ext}", std::process::id()))
}

/// The names, or the error message without the file's path (which differs between the forms).
fn read(path: &Path) -> Result<Vec<String>, String> {
    match Labels::from_file(path) {
        Ok(l) => Ok(l.names().to_vec()),
        Err(e) => {
            assert_eq!(kind_of(&e), ErrorKind::Data, "{e:#}");
            let msg = format!("{e:#}");
            assert!(!msg.contains('\n'), "one line: {msg}");
            let prefix = format!("labels file {}: ", path.display());
            Err(msg.strip_prefix(&prefix).unwrap_or_else(|| panic!("the message names the file: {msg}")).to_string())
        }
    }
}

fn check_contract(names: &[String]) {
    assert!(!names.is_empty());
    let mut seen = std::collections::HashSet::new();
    for n in names {
        assert!(!n.is_empty() && n.trim() == n, "a name is trimmed and not empty: {n:?}");
        assert!(seen.insert(n), "no name twice: {n:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let Some((&pick, bytes)) = rest.split_first() else { return };
        let path = temp(["txt", "json", "csv"][pick as usize % 3]);
        std::fs::write(&path, bytes).expect("the fuzz temp file can be written");
        if let Ok(names) = read(&path) {
            check_contract(&names);
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else { return };
    // Names as a text file would hold them: blank lines are not names (in every form).
    let names: Vec<&str> = text.lines().map(str::trim).filter(|n| !n.is_empty()).collect();
    // A text file whose first line starts with `{` is read as JSON, and a leading byte-order mark is
    // not part of a name: both as documented.
    if names.first().is_some_and(|n| n.starts_with(['{', '\u{feff}'])) {
        return;
    }
    let mut txt = String::new();
    let mut json = String::from("{");
    let mut csv = String::from("id,name\n");
    for (id, name) in names.iter().enumerate() {
        txt.push_str(name);
        txt.push('\n');
        if id > 0 {
            json.push(',');
        }
        json.push_str(&format!("{}: {id}", serde_json::to_string(name).unwrap()));
        csv.push_str(&format!("{id},\"{}\"\n", name.replace('"', "\"\"")));
    }
    json.push('}');
    let mut answers = Vec::new();
    for (ext, body) in [("txt", txt), ("json", json), ("csv", csv)] {
        let path = temp(ext);
        std::fs::write(&path, body).expect("the fuzz temp file can be written");
        answers.push((ext, read(&path)));
    }
    for (ext, answer) in &answers[1..] {
        assert_eq!(answer, &answers[0].1, "{ext} and txt disagree on {names:?}");
    }
    if let Ok(got) = &answers[0].1 {
        check_contract(got);
        assert_eq!(got, &names, "the names come back as written");
    }
});
