//! The batch output file as a journal: each record is appended whole and flushed to disk when its clip
//! finishes, so a killed run loses at most the clips in flight; on `--resume` a torn last line is cut
//! off and every recorded clip (identified by its key, size and modification time) is skipped.
//! Records carry the key and the root it was taken against, so a journal is resumed from any working
//! directory and with any `--root` on the same machine (docs/records.md, "Clip keys").

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::keys::ClipKeys;
use crate::error::{ErrorKind, classified};
use crate::paths;

/// Identity of a clip: its key (`ClipKeys::key`, the same for every spelling of its path), its path
/// made absolute and normalised, size in bytes, modification time in nanoseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClipId {
    pub key: PathBuf,
    pub absolute: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
}

impl ClipId {
    pub fn of(path: &Path, keys: &ClipKeys) -> std::io::Result<ClipId> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i128);
        Ok(ClipId { size: meta.len(), mtime_ns, ..ClipId::named(path, keys) })
    }

    /// The identity of a clip whose file cannot be read (size and time 0, as its error record).
    pub fn named(path: &Path, keys: &ClipKeys) -> ClipId {
        ClipId { key: keys.key(path), absolute: keys.absolute(path), size: 0, mtime_ns: 0 }
    }
}

/// A name a recorded clip is known by (a key, or an absolute path), with its size and time.
type Recorded = (PathBuf, u64, i128);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// CSV columns, in order (also the header line). Columns added later go at the end: readers by
/// position keep working, and a journal begun with fewer (`LEGACY_CSV_COLUMNS`) goes on with those.
pub const CSV_COLUMNS: &[&str] = &[
    "status",
    "path",
    "size",
    "mtime_ns",
    "duration_s",
    "frames",
    "steps",
    "outputs",
    "aggregation",
    "top1_id",
    "top1_label",
    "top1_score",
    "top_k",
    "segments",
    "wall_s",
    "error_kind",
    "error_message",
    "segments_dropped",
    "key",
    "root",
];

/// How many of `CSV_COLUMNS` a batch CSV had before records carried their key: such a journal is
/// continued with rows of that many columns, so that it stays one table.
pub const LEGACY_CSV_COLUMNS: usize = 17;

/// The position of a CSV column by name.
pub fn csv_column(name: &str) -> usize {
    CSV_COLUMNS.iter().position(|c| *c == name).expect("a batch CSV column")
}

pub struct Journal {
    file: Option<File>,
    /// Every recorded clip, by its recorded key and, where the record has its root, by its absolute
    /// path too: so a later run with another `--root` still finds it.
    done: HashSet<Recorded>,
    /// Records appended (and found on `--resume`).
    records: usize,
    format: Format,
    /// The CSV columns this journal's rows have (its header's).
    csv_columns: usize,
}

impl Journal {
    /// Open `path` (or stdout when `None`). With `resume`, read the clips already recorded: by the
    /// key the record carries, or for a record written before records had one, by its path keyed
    /// with `keys` as the clips of this run are.
    pub fn open(path: Option<&Path>, format: Format, resume: bool, keys: &ClipKeys) -> Result<Journal> {
        let Some(path) = path else {
            // CSV on stdout starts with its header too, as a file does.
            let mut journal = Journal { file: None, done: HashSet::new(), records: 0, format, csv_columns: CSV_COLUMNS.len() };
            if format == Format::Csv {
                journal.write_raw(&csv_line(CSV_COLUMNS)?)?;
            }
            return Ok(journal);
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open output {}", path.display()))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        if !resume && !text.is_empty() {
            return Err(classified(
                ErrorKind::Usage,
                format!("{} already has records: pass --resume to continue it, or choose another --out", path.display()),
            ));
        }
        // A torn last record (killed mid-write) is cut off; its clip runs again.
        let keep = match format {
            Format::Jsonl => text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1),
            Format::Csv => csv_complete_len(&text),
        };
        if keep < text.len() {
            file.set_len(keep as u64)?;
            file.seek(SeekFrom::End(0))?;
            text.truncate(keep);
        }
        let csv_columns = check_format(&text, format, path)?;
        let (done, records) = match format {
            Format::Jsonl => Self::read_jsonl(&text, keys),
            Format::Csv => Self::read_csv(&text, keys),
        };
        let mut journal = Journal { file: Some(file), done, records, format, csv_columns };
        if format == Format::Csv && text.is_empty() {
            journal.write_raw(&csv_line(CSV_COLUMNS)?)?;
        }
        Ok(journal)
    }

    fn read_jsonl(text: &[u8], keys: &ClipKeys) -> (HashSet<Recorded>, usize) {
        let mut done = HashSet::new();
        let mut records = 0;
        let mut names = RecordedNames { keys, root_here: HashMap::new() };
        for v in text.split(|&b| b == b'\n').filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok()) {
            let name = |field: &str| paths::from_record(v.get(field)?.as_str()?, v.get(format!("{field}_bytes")).and_then(|b| b.as_str()));
            let (Some(size), Some(mtime_ns)) = (v.get("size").and_then(|s| s.as_u64()), v.get("mtime_ns").and_then(|t| t.as_i64())) else {
                continue;
            };
            let recorded = match name("key") {
                Some(key) => names.of(key, name("root")),
                None => match name("path") {
                    Some(path) => vec![keys.key(&path)],
                    None => continue,
                },
            };
            records += 1;
            done.extend(recorded.into_iter().map(|n| (n, size, i128::from(mtime_ns))));
        }
        (done, records)
    }

    /// Byte records: the path, key and root fields hold the names' bytes as they are (docs/records.md,
    /// "File names").
    fn read_csv(text: &[u8], keys: &ClipKeys) -> (HashSet<Recorded>, usize) {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text);
        let mut done = HashSet::new();
        let mut records = 0;
        let name = |f: &[u8]| PathBuf::from(paths::from_bytes(f.to_vec()));
        let mut names = RecordedNames { keys, root_here: HashMap::new() };
        for row in reader.byte_records().flatten() {
            let number = |i| row.get(i).and_then(|f| std::str::from_utf8(f).ok());
            let (Some(size), Some(mtime)) = (number(csv_column("size")), number(csv_column("mtime_ns"))) else { continue };
            let (Ok(size), Ok(mtime_ns)) = (size.parse(), mtime.parse()) else { continue };
            let recorded = match (row.get(csv_column("key")).filter(|k| !k.is_empty()), row.get(csv_column("path"))) {
                (Some(key), _) => names.of(name(key), row.get(csv_column("root")).filter(|r| !r.is_empty()).map(name)),
                (None, Some(path)) => vec![keys.key(&name(path))],
                (None, None) => continue,
            };
            records += 1;
            done.extend(recorded.into_iter().map(|n| (n, size, mtime_ns)));
        }
        (done, records)
    }

    /// The CSV columns of this journal's rows: `CSV_COLUMNS.len()`, or `LEGACY_CSV_COLUMNS` for a
    /// journal begun before the key was recorded.
    pub fn csv_columns(&self) -> usize {
        self.csv_columns
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the clip is recorded: by its key, or by its absolute path (a record with a root).
    pub fn is_done(&self, id: &ClipId) -> bool {
        [&id.key, &id.absolute].into_iter().any(|name| self.done.contains(&(name.clone(), id.size, id.mtime_ns)))
    }

    /// Records in the journal.
    pub fn recorded(&self) -> usize {
        self.records
    }

    fn write_raw(&mut self, line: &[u8]) -> Result<()> {
        match &mut self.file {
            Some(f) => {
                f.write_all(line)?;
                f.sync_data()?;
            }
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(line)?;
                out.flush()?;
            }
        }
        Ok(())
    }

    /// Append one whole record (a complete line ending in `\n`) and make it durable.
    pub fn append(&mut self, id: ClipId, line: &[u8]) -> Result<()> {
        debug_assert!(line.ends_with(b"\n"));
        self.write_raw(line)?;
        self.records += 1;
        self.done.insert((id.key, id.size, id.mtime_ns));
        self.done.insert((id.absolute, id.size, id.mtime_ns));
        Ok(())
    }
}

/// The names recorded clips are known by, from the key and root their records carry.
struct RecordedNames<'a> {
    keys: &'a ClipKeys,
    /// Whether each recorded root is a directory here (asked once per root).
    root_here: HashMap<PathBuf, bool>,
}

impl RecordedNames<'_> {
    /// A record with a root is known by its absolute path (root joined with key): on this machine
    /// that is the file, whatever this run's root. It is known by its key too when the key means
    /// the same here: the root is this run's, or it is no directory here (the data mounted
    /// elsewhere, keyed from the same level: docs/records.md, "Clip keys"). A key that is absolute
    /// (the clip was outside the root) is its own absolute path.
    fn of(&mut self, key: PathBuf, root: Option<PathBuf>) -> Vec<PathBuf> {
        let Some(root) = root.filter(|_| key.is_relative()) else { return vec![key] };
        let absolute = root.join(&key);
        let keys_agree = root == self.keys.root() || !*self.root_here.entry(root).or_insert_with_key(|r| r.is_dir());
        if keys_agree { vec![absolute, key] } else { vec![absolute] }
    }
}

/// Refuse to continue a file written in the other format: appending would mix two formats in one
/// file, and none of its clips would be recognised as done. Gives the CSV columns of its rows.
fn check_format(text: &[u8], format: Format, path: &Path) -> Result<usize> {
    let Some(first) = text.split(|&b| b == b'\n').next().filter(|l| !l.is_empty()) else { return Ok(CSV_COLUMNS.len()) };
    let columns = match format {
        Format::Jsonl => serde_json::from_slice::<serde_json::Value>(first).is_ok_and(|v| v.is_object()).then_some(CSV_COLUMNS.len()),
        Format::Csv => [CSV_COLUMNS.len(), LEGACY_CSV_COLUMNS]
            .into_iter()
            .find(|&n| csv_line(&CSV_COLUMNS[..n]).ok().as_deref().and_then(|h| h.strip_suffix(b"\n")) == Some(first)),
    };
    if let Some(columns) = columns {
        return Ok(columns);
    }
    let name = match format {
        Format::Jsonl => "JSON lines",
        Format::Csv => "batch CSV (header line)",
    };
    Err(classified(
        ErrorKind::Usage,
        format!("{} does not start like {name}: resume it with the --out-format it was written in", path.display()),
    ))
}

/// One CSV line (RFC 4180 quoting), newline included. Fields are bytes: a path field carries the
/// name's bytes as they are, UTF-8 or not.
pub fn csv_line<F: AsRef<[u8]>>(fields: impl IntoIterator<Item = F>) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    w.write_record(fields)?;
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// The length of the complete CSV records at the start of `text`: up to the last `\n` that is not
/// inside a quoted field. A record torn inside a quoted field that holds newlines ends there, not
/// at its last newline. (RFC 4180 as `csv_line` writes it: a quote inside a quoted field is
/// doubled, so every quote toggles the state, and a doubled one toggles it back.)
pub fn csv_complete_len(text: &[u8]) -> usize {
    let mut quoted = false;
    let mut end = 0;
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => end = i + 1,
            _ => {}
        }
    }
    end
}
