//! `coinfer batch`: label many clips, in parallel, resumably, optionally as one shard of N.
//!
//! Each worker owns its own model and labels whole clips; the calling thread is the only writer of
//! the output journal, so every finished clip is appended as one whole, durable record.

pub mod inputs;
pub mod journal;
pub mod keys;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};

use crate::error::{ErrorKind, kind_of};
use crate::paths;
use inputs::Shard;
use journal::{CSV_COLUMNS, ClipId, Format, Journal, csv_column, csv_line};
use keys::ClipKeys;

/// What labelling one clip produced.
#[derive(Debug, Clone)]
pub struct ClipResult {
    pub duration_s: Option<f64>,
    pub frames: u64,
    pub steps: u64,
    pub outputs: u64,
    /// How the clip-level prediction was formed (documented in the README).
    pub aggregation: &'static str,
    /// `(class id, label, score)`, best first.
    pub top: Vec<(usize, String, f32)>,
    /// Action segments of the smoothed track, as JSON objects `{start, end, label, id, mean_score}`.
    pub segments: Vec<Value>,
    /// The oldest segments left out of `segments` to keep it bounded, as in `run`'s summary
    /// (docs/records.md, "Segments").
    pub segments_dropped: u64,
}

/// Labels whole clips; each worker thread owns one.
pub trait ClipLabeler: Send {
    fn label(&mut self, path: &Path) -> Result<ClipResult>;
}

pub struct BatchOptions {
    pub out: Option<PathBuf>,
    pub format: Format,
    pub jobs: usize,
    pub shard: Option<Shard>,
    /// What `--resume` and `--shard` key the clips on.
    pub keys: ClipKeys,
    pub resume: bool,
    pub fail_fast: bool,
    pub progress: bool,
}

/// Counts at the end of a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchSummary {
    pub total: usize,
    pub skipped: usize,
    pub labelled: usize,
    pub failed: usize,
    /// The exit-code class of the first failure.
    pub first_failure: Option<ErrorKind>,
}

/// A JSON record with the clip's names: `path`, `key` and `root` as text, and for a name that is not
/// UTF-8 also `path_bytes` (`key_bytes`, `root_bytes`), its exact bytes in hex (docs/records.md,
/// "File names").
fn json_line(mut v: Value, path: &Path, id: &ClipId, keys: &ClipKeys) -> Vec<u8> {
    for (field, name) in [("path", path), ("key", &id.key), ("root", keys.root())] {
        v[field] = paths::text(name).into();
        if let Some(hex) = paths::bytes_hex(name.as_os_str()) {
            v[format!("{field}_bytes")] = hex.into();
        }
    }
    format!("{v}\n").into_bytes()
}

/// A CSV record from its fields in `CSV_COLUMNS` order, of which `path`, `key` and `root` are filled
/// in here with the names' bytes as they are. Only the journal's first `columns` are written (a
/// journal begun with fewer columns keeps them).
fn csv_record(path: &Path, id: &ClipId, keys: &ClipKeys, mut fields: Vec<Vec<u8>>, columns: usize) -> Result<Vec<u8>> {
    for (column, name) in [("path", path), ("key", &id.key), ("root", keys.root())] {
        fields[csv_column(column)] = paths::as_bytes(name.as_os_str()).to_vec();
    }
    fields.truncate(columns);
    csv_line(fields)
}

/// How a record is written: the format, the keys, and for CSV the journal's columns.
struct RecordFormat<'a> {
    format: Format,
    keys: &'a ClipKeys,
    csv_columns: usize,
}

impl RecordFormat<'_> {
    fn ok(&self, path: &Path, id: &ClipId, r: &ClipResult, wall_s: f64) -> Result<Vec<u8>> {
        let top = |(i, l, s): &(usize, String, f32)| json!({"id": i, "label": l, "score": s});
        match self.format {
            Format::Jsonl => {
                let mut v = json!({
                    "type": "clip", "size": id.size, "mtime_ns": id.mtime_ns as i64,
                    "duration_s": r.duration_s, "frames": r.frames, "steps": r.steps, "outputs": r.outputs,
                    "aggregation": r.aggregation, "top": r.top.iter().map(top).collect::<Vec<_>>(),
                    "segments": r.segments, "wall_s": wall_s,
                });
                // Absent when none were dropped, as in `run`'s summary.
                if r.segments_dropped > 0 {
                    v["segments_dropped"] = r.segments_dropped.into();
                }
                Ok(json_line(v, path, id, self.keys))
            }
            Format::Csv => {
                let first = r.top.first();
                let topk = r.top.iter().map(|(_, l, s)| format!("{l}:{s:.4}")).collect::<Vec<_>>().join(";");
                let mut fields = vec![String::new(); CSV_COLUMNS.len()];
                for (column, value) in [
                    ("status", "ok".to_string()),
                    ("size", id.size.to_string()),
                    ("mtime_ns", id.mtime_ns.to_string()),
                    ("duration_s", r.duration_s.map(|d| format!("{d:.3}")).unwrap_or_default()),
                    ("frames", r.frames.to_string()),
                    ("steps", r.steps.to_string()),
                    ("outputs", r.outputs.to_string()),
                    ("aggregation", r.aggregation.to_string()),
                    ("top1_id", first.map(|t| t.0.to_string()).unwrap_or_default()),
                    ("top1_label", first.map(|t| t.1.clone()).unwrap_or_default()),
                    ("top1_score", first.map(|t| format!("{:.6}", t.2)).unwrap_or_default()),
                    ("top_k", topk),
                    ("segments", Value::from(r.segments.clone()).to_string()),
                    ("wall_s", format!("{wall_s:.3}")),
                    ("segments_dropped", r.segments_dropped.to_string()),
                ] {
                    fields[csv_column(column)] = value;
                }
                csv_record(path, id, self.keys, fields.into_iter().map(String::into_bytes).collect(), self.csv_columns)
            }
        }
    }

    fn error(&self, path: &Path, id: &ClipId, err: &anyhow::Error) -> Result<Vec<u8>> {
        let kind = kind_of(err).as_str();
        let message = format!("{err:#}");
        match self.format {
            Format::Jsonl => {
                let v = json!({"type": "error", "size": id.size, "mtime_ns": id.mtime_ns as i64, "kind": kind, "message": message});
                Ok(json_line(v, path, id, self.keys))
            }
            Format::Csv => {
                let mut fields = vec![String::new(); CSV_COLUMNS.len()];
                for (column, value) in [
                    ("status", "error".to_string()),
                    ("size", id.size.to_string()),
                    ("mtime_ns", id.mtime_ns.to_string()),
                    ("error_kind", kind.to_string()),
                    ("error_message", message),
                ] {
                    fields[csv_column(column)] = value;
                }
                csv_record(path, id, self.keys, fields.into_iter().map(String::into_bytes).collect(), self.csv_columns)
            }
        }
    }
}

// One message per clip, moved once: the size of the larger variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Done {
    Labelled(PathBuf, ClipId, Result<ClipResult>, f64),
    /// A worker could not build its labeler (model or weights): the run fails as a whole.
    NoLabeler(anyhow::Error),
}

/// Run the batch: `make_labeler` builds one labeler per worker.
pub fn run(
    clips: Vec<PathBuf>,
    opts: &BatchOptions,
    make_labeler: &(dyn Fn() -> Result<Box<dyn ClipLabeler>> + Sync),
) -> Result<BatchSummary> {
    let keys = &opts.keys;
    let mut journal = Journal::open(opts.out.as_deref(), opts.format, opts.resume, keys)?;
    let records = RecordFormat { format: opts.format, keys, csv_columns: journal.csv_columns() };
    let mut summary = BatchSummary::default();
    let mut todo = Vec::new();
    for path in clips {
        if opts.shard.is_some_and(|s| !s.contains(&keys.key(&path))) {
            continue;
        }
        summary.total += 1;
        match ClipId::of(&path, keys) {
            Ok(id) if journal.is_done(&id) => summary.skipped += 1,
            Ok(id) => todo.push((path, id)),
            Err(e) => {
                let id = ClipId::named(&path, keys);
                if journal.is_done(&id) {
                    // Its error record (size and time 0) is already there: one record per clip.
                    summary.skipped += 1;
                    continue;
                }
                let err = crate::error::classified(ErrorKind::NoInput, format!("{}: {e}", path.display()));
                let line = records.error(&path, &id, &err)?;
                journal.append(id, &line)?;
                summary.failed += 1;
                summary.first_failure.get_or_insert(ErrorKind::NoInput);
            }
        }
    }
    let bar = progress_bar(opts.progress, todo.len());
    let queue = Mutex::new(todo.into_iter());
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Done>();
    let jobs = opts.jobs.max(1);
    let mut no_labeler: Option<anyhow::Error> = None;
    std::thread::scope(|scope| -> Result<()> {
        for i in 0..jobs {
            let tx = tx.clone();
            let (queue, stop) = (&queue, &stop);
            // A worker that cannot be started fails the run with an error line, not a panic.
            let spawned = std::thread::Builder::new().name(format!("coinfer-batch-{i}")).spawn_scoped(scope, move || {
                let mut labeler = match make_labeler() {
                    Ok(l) => Some(l),
                    Err(e) => {
                        // Not the fault of any clip: recording it against one would make --resume
                        // skip that clip for good. Stop everyone and fail the run.
                        stop.store(true, Ordering::SeqCst);
                        let _ = tx.send(Done::NoLabeler(e));
                        None
                    }
                };
                while let Some(labeler) = labeler.as_mut() {
                    if stop.load(Ordering::SeqCst) || crate::signals::received() {
                        break;
                    }
                    let Some((path, id)) = queue.lock().unwrap().next() else { break };
                    let t = Instant::now();
                    let result = labeler.label(&path);
                    if opts.fail_fast && result.is_err() {
                        // Here, not when the writer sees it: by then this worker has taken the next clip.
                        stop.store(true, Ordering::SeqCst);
                    }
                    if tx.send(Done::Labelled(path, id, result, t.elapsed().as_secs_f64())).is_err() {
                        break;
                    }
                }
            });
            if let Err(e) = spawned {
                stop.store(true, Ordering::SeqCst);
                return Err(anyhow::Error::new(e).context(format!("cannot start batch worker {} of {jobs}", i + 1)));
            }
        }
        drop(tx);
        for done in rx {
            let (id, line, failed) = match done {
                Done::Labelled(path, id, Ok(r), wall) => {
                    let line = records.ok(&path, &id, &r, wall)?;
                    (id, line, None)
                }
                // Stopped by a signal: not a result, so nothing is recorded and --resume labels it.
                Done::Labelled(_, _, Err(e), _) if kind_of(&e) == ErrorKind::Interrupted => continue,
                Done::Labelled(path, id, Err(e), _) => {
                    let line = records.error(&path, &id, &e)?;
                    (id, line, Some(e))
                }
                Done::NoLabeler(e) => {
                    no_labeler.get_or_insert(e);
                    continue;
                }
            };
            journal.append(id, &line)?;
            match failed {
                Some(e) => {
                    summary.failed += 1;
                    summary.first_failure.get_or_insert(kind_of(&e));
                    if let Some(bar) = &bar {
                        bar.println(format!("coinfer: {e:#}"));
                    }
                    if opts.fail_fast {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                None => summary.labelled += 1,
            }
            if let Some(bar) = &bar {
                bar.set_message(format!("{} failed", summary.failed));
                bar.inc(1);
            }
        }
        Ok(())
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(e) = no_labeler {
        return Err(e);
    }
    Ok(summary)
}

fn progress_bar(enabled: bool, len: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} clips  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}
