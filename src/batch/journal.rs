//! The batch output file as a journal: each record is appended whole and flushed to disk when its clip
//! finishes, so a killed run loses at most the clips in flight; on `--resume` a torn last line is cut
//! off and every recorded clip (identified by path, size and modification time) is skipped.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::error::{ErrorKind, classified};

/// Identity of a clip: path as given, size in bytes, modification time in nanoseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClipId {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i128,
}

impl ClipId {
    pub fn of(path: &Path) -> std::io::Result<ClipId> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i128);
        Ok(ClipId { path: path.to_string_lossy().into_owned(), size: meta.len(), mtime_ns })
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
    /// Open `path` (or stdout when `None`). With `resume`, read the clips already recorded.
    pub fn open(path: Option<&Path>, format: Format, resume: bool) -> Result<Journal> {
        let Some(path) = path else {
            // CSV on stdout starts with its header too, as a file does.
            let mut journal = Journal { file: None, done: HashSet::new(), format };
            if format == Format::Csv {
                journal.write_raw(&(csv_line(CSV_COLUMNS.iter().map(|c| c.to_string()))?))?;
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
        // A torn last line (killed mid-write) is cut off; its clip runs again.
        let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if keep < text.len() {
            file.set_len(keep as u64)?;
            file.seek(SeekFrom::End(0))?;
            text.truncate(keep);
        }
        check_format(&text, format, path)?;
        let done = match format {
            Format::Jsonl => Self::read_jsonl(&text),
            Format::Csv => Self::read_csv(&text)?,
        };
        let mut journal = Journal { file: Some(file), done, format };
        if format == Format::Csv && text.is_empty() {
            journal.write_raw(&(csv_line(CSV_COLUMNS.iter().map(|c| c.to_string()))?))?;
        }
        Ok(journal)
    }

    fn read_jsonl(text: &[u8]) -> HashSet<ClipId> {
        text.split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
            .filter_map(|v| {
                Some(ClipId {
                    path: v.get("path")?.as_str()?.to_string(),
                    size: v.get("size")?.as_u64()?,
                    mtime_ns: v.get("mtime_ns")?.as_i64().map(i128::from)?,
                })
            })
            .collect()
    }

    fn read_csv(text: &[u8]) -> Result<HashSet<ClipId>> {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text);
        let mut done = HashSet::new();
        for row in reader.records().flatten() {
            if let (Some(path), Some(size), Some(mtime)) = (row.get(1), row.get(2), row.get(3))
                && let (Ok(size), Ok(mtime_ns)) = (size.parse(), mtime.parse())
            {
                done.insert(ClipId { path: path.to_string(), size, mtime_ns });
            }
        }
        Ok(done)
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

    fn write_raw(&mut self, line: &str) -> Result<()> {
        match &mut self.file {
            Some(f) => {
                f.write_all(line.as_bytes())?;
                f.sync_data()?;
            }
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes())?;
                out.flush()?;
            }
        }
        Ok(())
    }

    /// Append one whole record (a complete line ending in `\n`) and make it durable.
    pub fn append(&mut self, id: ClipId, line: &str) -> Result<()> {
        debug_assert!(line.ends_with('\n'));
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
        Format::Csv => csv_line(CSV_COLUMNS.iter().map(|c| c.to_string()))?.as_bytes().strip_suffix(b"\n") == Some(first),
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

/// One CSV line (RFC 4180 quoting), newline included.
pub fn csv_line(fields: impl IntoIterator<Item = String>) -> Result<String> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    w.write_record(fields.into_iter().collect::<Vec<_>>())?;
    Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?)
}
