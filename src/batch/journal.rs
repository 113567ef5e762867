//! The batch output file as a journal: each record is appended whole and flushed to disk when its clip
//! finishes, so a killed run loses at most the clips in flight; on `--resume` a torn last line is cut
//! off and every recorded clip (identified by its key, size and modification time) is skipped.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::keys::ClipKeys;
use crate::error::{ErrorKind, classified};
use crate::paths;

/// Identity of a clip: its key (`ClipKeys::key`, the same for every spelling of its path), size in
/// bytes, modification time in nanoseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClipId {
    pub key: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
}

impl ClipId {
    pub fn of(path: &Path, keys: &ClipKeys) -> std::io::Result<ClipId> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i128);
        Ok(ClipId { key: keys.key(path), size: meta.len(), mtime_ns })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// CSV columns, in order (also the header line).
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
];

pub struct Journal {
    file: Option<File>,
    done: HashSet<ClipId>,
    format: Format,
}

impl Journal {
    /// Open `path` (or stdout when `None`). With `resume`, read the clips already recorded, each
    /// keyed by `keys` as the clips of this run are.
    pub fn open(path: Option<&Path>, format: Format, resume: bool, keys: &ClipKeys) -> Result<Journal> {
        let Some(path) = path else {
            // CSV on stdout starts with its header too, as a file does.
            let mut journal = Journal { file: None, done: HashSet::new(), format };
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
        check_format(&text, format, path)?;
        let done = match format {
            Format::Jsonl => Self::read_jsonl(&text, keys),
            Format::Csv => Self::read_csv(&text, keys),
        };
        let mut journal = Journal { file: Some(file), done, format };
        if format == Format::Csv && text.is_empty() {
            journal.write_raw(&csv_line(CSV_COLUMNS)?)?;
        }
        Ok(journal)
    }

    fn read_jsonl(text: &[u8], keys: &ClipKeys) -> HashSet<ClipId> {
        text.split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
            .filter_map(|v| {
                let path = paths::from_record(v.get("path")?.as_str()?, v.get("path_bytes").and_then(|b| b.as_str()))?;
                Some(ClipId {
                    key: keys.key(&path),
                    size: v.get("size")?.as_u64()?,
                    mtime_ns: v.get("mtime_ns")?.as_i64().map(i128::from)?,
                })
            })
            .collect()
    }

    /// Byte records: the path field holds the name's bytes as they are (README, "Batch labelling").
    fn read_csv(text: &[u8], keys: &ClipKeys) -> HashSet<ClipId> {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text);
        let mut done = HashSet::new();
        for row in reader.byte_records().flatten() {
            let number = |i| row.get(i).and_then(|f| std::str::from_utf8(f).ok());
            if let (Some(path), Some(size), Some(mtime)) = (row.get(1), number(2), number(3))
                && let (Ok(size), Ok(mtime_ns)) = (size.parse(), mtime.parse())
            {
                let path = PathBuf::from(paths::from_bytes(path.to_vec()));
                done.insert(ClipId { key: keys.key(&path), size, mtime_ns });
            }
        }
        done
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_done(&self, id: &ClipId) -> bool {
        self.done.contains(id)
    }

    pub fn recorded(&self) -> usize {
        self.done.len()
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
        self.done.insert(id);
        Ok(())
    }
}

/// Refuse to continue a file written in the other format: appending would mix two formats in one
/// file, and none of its clips would be recognised as done.
fn check_format(text: &[u8], format: Format, path: &Path) -> Result<()> {
    let Some(first) = text.split(|&b| b == b'\n').next().filter(|l| !l.is_empty()) else { return Ok(()) };
    let fits = match format {
        Format::Jsonl => serde_json::from_slice::<serde_json::Value>(first).is_ok_and(|v| v.is_object()),
        Format::Csv => csv_line(CSV_COLUMNS)?.strip_suffix(b"\n") == Some(first),
    };
    if fits {
        return Ok(());
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
