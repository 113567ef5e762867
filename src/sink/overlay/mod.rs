//! `--overlay FILE`: the input video with a panel of the current labels drawn on every frame
//! (docs/visual.md). The model side only sends each record's ids and scores down a channel; a thread
//! of its own draws and encodes, so the network's timeline is untouched. For a file that thread
//! decodes the input again; a live input is read once, and the model's decoder passes every frame
//! on (`live`).

pub mod blend;
pub mod files;
pub mod live;
pub mod panel;
pub mod video;

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::{Sink, StepRecord, Summary};
use crate::error::{ErrorKind, classified};
pub use live::TappedSource;
pub use video::{Event, Target, Written};

/// Records in flight to the overlay thread before the model waits for it: records come every few
/// steps, so this is seconds of video.
const CHANNEL_RECORDS: usize = 256;

/// Settle where the video goes and with what, before any work: a bad name or encoder is a usage
/// error (2), a place that cannot be written is "no such output" (66). A live input (stdin, a device,
/// a stream) is drawn from the model's own decoder (`live`), a file is decoded a second time. Names
/// are bytes: neither the input's nor the video's need be UTF-8 (docs/records.md, "File names").
pub fn prepare(name: &OsStr, codec: Option<&str>, crf: Option<u32>, input: &OsStr, input_is_stream: bool) -> anyhow::Result<Target> {
    crate::source::init_ffmpeg();
    // Messages, the container's guess from the extension and the stdout/URL tests go by the text.
    let text = crate::paths::text(Path::new(name)).into_owned();
    let muxer = video::muxer_for(&text)?;
    let encoder = video::encoder_for(&muxer, codec)?;
    let (open_as, rename_to) = if name == "-" {
        (OsString::from("pipe:1"), None)
    } else if name.to_str().is_some_and(|n| n.contains("://")) {
        (name.to_os_string(), None)
    } else {
        let path = PathBuf::from(name);
        if same_file(&path, Path::new(input)) {
            return Err(classified(ErrorKind::Usage, format!("--overlay {text} would overwrite the input")));
        }
        let temp = video::temporary_beside(&path);
        // Proves the folder is writable now, not after the whole run.
        std::fs::File::create(&temp).map_err(|e| classified(ErrorKind::NoInput, format!("cannot write the overlay to {text}: {e}")))?;
        (temp.into_os_string(), Some(path))
    };
    let live = input_is_stream || input == "-";
    Ok(Target { name: text, open_as, rename_to, muxer, encoder, crf, live, input: input.to_os_string() })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The sink that feeds the overlay thread.
pub struct Overlay {
    tx: Option<SyncSender<Event>>,
    handle: Option<JoinHandle<anyhow::Result<Written>>>,
    temp: Option<OsString>,
    /// Live input: frames the overlay thread could not take in time (left out of the video).
    dropped: Option<Arc<AtomicU64>>,
}

impl Overlay {
    /// Start the overlay thread on the target's input, decoded a second time.
    pub fn start(target: Target, names: Vec<String>, model: String, top_k: usize) -> anyhow::Result<Self> {
        let (tx, rx) = sync_channel(CHANNEL_RECORDS);
        let temp = target.rename_to.is_some().then(|| target.open_as.clone());
        let handle = std::thread::Builder::new()
            .name("overlay".into())
            .spawn(move || video::write(&target, &names, &model, top_k, rx))
            .map_err(|e| anyhow::anyhow!("cannot start the overlay thread: {e}"))?;
        Ok(Overlay { tx: Some(tx), handle: Some(handle), temp, dropped: None })
    }

    /// Start the overlay thread of a live input, and wrap the input so that every frame the model's
    /// decoder reads is passed on to it (docs/visual.md, "The live preview").
    pub fn start_live(
        target: Target,
        source: Box<dyn crate::source::FrameSource>,
        names: Vec<String>,
        model: String,
        top_k: usize,
    ) -> anyhow::Result<(Self, Box<dyn crate::source::FrameSource>)> {
        let (tx, rx) = sync_channel(CHANNEL_RECORDS);
        let (frames_tx, frames_rx) = sync_channel(live::queue_frames(source.info().width, source.info().height));
        let dropped = Arc::new(AtomicU64::new(0));
        let temp = target.rename_to.is_some().then(|| target.open_as.clone());
        let handle = std::thread::Builder::new()
            .name("overlay".into())
            .spawn(move || video::write_live(&target, &names, &model, top_k, frames_rx, rx))
            .map_err(|e| anyhow::anyhow!("cannot start the overlay thread: {e}"))?;
        let source = Box::new(TappedSource::new(source, frames_tx, dropped.clone()));
        Ok((Overlay { tx: Some(tx), handle: Some(handle), temp, dropped: Some(dropped) }, source))
    }

    /// Frames of a live input left out of the video because the overlay thread was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.as_ref().map_or(0, |d| d.load(Ordering::Relaxed))
    }

    /// Wait for the video to be complete; returns what was written.
    pub fn finish(&mut self) -> anyhow::Result<Written> {
        self.tx = None;
        let Some(handle) = self.handle.take() else { return Ok(Written::default()) };
        let result = handle.join().map_err(|_| anyhow::anyhow!("the overlay thread panicked"))?;
        if result.is_err()
            && let Some(temp) = &self.temp
        {
            let _ = std::fs::remove_file(temp);
        }
        result
    }
}

impl Sink for Overlay {
    fn step(&mut self, rec: &StepRecord<'_>) -> io::Result<()> {
        // A failed overlay thread reports its error at `finish`; the records still go on.
        if let Some(tx) = &self.tx {
            let _ = tx.send(Event::Record(panel::Shown::of(rec)));
        }
        Ok(())
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Event::End { frames: summary.frames });
        }
        Ok(())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // A run that ended early still closes the video it has (a playable file up to there).
        if self.handle.is_some() {
            let _ = self.finish();
        }
    }
}
