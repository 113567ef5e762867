//! `--overlay FILE`: the input video with a panel of the current labels drawn on every frame
//! (docs/visual.md). The model side only sends each record's ids and scores down a channel; a thread
//! of its own decodes the input again, draws and encodes, so the network's timeline is untouched.

pub mod blend;
pub mod panel;
pub mod video;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::{Sink, StepRecord, Summary};
use crate::error::{ErrorKind, classified};
pub use video::{Event, Target};

/// Records in flight to the overlay thread before the model waits for it: records come every few
/// steps, so this is seconds of video.
const CHANNEL_RECORDS: usize = 256;

/// Settle where the video goes and with what, before any work: a bad name or encoder is a usage
/// error (2), a place that cannot be written is "no such output" (66), and an input that cannot be
/// read a second time (stdin, a device, a stream) is refused.
pub fn prepare(name: &str, codec: Option<&str>, crf: Option<u32>, input: &str, input_is_stream: bool) -> anyhow::Result<Target> {
    if input_is_stream || input == "-" {
        return Err(classified(
            ErrorKind::Usage,
            "--overlay needs a file input: the video is decoded a second time to draw on it (see docs/visual.md)",
        ));
    }
    crate::source::init_ffmpeg();
    let muxer = video::muxer_for(name)?;
    let encoder = video::encoder_for(&muxer, codec)?;
    let (open_as, rename_to) = if name == "-" {
        ("pipe:1".to_string(), None)
    } else if name.contains("://") {
        (name.to_string(), None)
    } else {
        let path = PathBuf::from(name);
        if same_file(&path, Path::new(input)) {
            return Err(classified(ErrorKind::Usage, format!("--overlay {name} would overwrite the input")));
        }
        let temp = video::temporary_beside(&path);
        // Proves the folder is writable now, not after the whole run.
        std::fs::File::create(&temp).map_err(|e| classified(ErrorKind::NoInput, format!("cannot write the overlay to {name}: {e}")))?;
        (temp.to_string_lossy().into_owned(), Some(path))
    };
    Ok(Target { name: name.to_string(), open_as, rename_to, muxer, encoder, crf })
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
    handle: Option<JoinHandle<anyhow::Result<u64>>>,
    temp: Option<String>,
}

impl Overlay {
    /// Start the overlay thread on `input`.
    pub fn start(target: Target, input: String, names: Vec<String>, model: String, top_k: usize) -> anyhow::Result<Self> {
        let (tx, rx) = sync_channel(CHANNEL_RECORDS);
        let temp = target.rename_to.is_some().then(|| target.open_as.clone());
        let handle = std::thread::Builder::new()
            .name("overlay".into())
            .spawn(move || video::write(&input, &target, &names, &model, top_k, rx))
            .map_err(|e| anyhow::anyhow!("cannot start the overlay thread: {e}"))?;
        Ok(Overlay { tx: Some(tx), handle: Some(handle), temp })
    }

    /// Wait for the video to be complete; returns the frames written.
    pub fn finish(&mut self) -> anyhow::Result<u64> {
        self.tx = None;
        let Some(handle) = self.handle.take() else { return Ok(0) };
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
