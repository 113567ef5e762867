//! Which clips a batch run covers: files, directories (recursive, by video extension), glob patterns
//! and `@list.txt` files (one input per line, `#` comments), expanded in a stable order.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::{ErrorKind, classified};

/// File extensions taken from directories (explicitly named files are taken whatever their name).
pub const VIDEO_EXTENSIONS: &[&str] =
    &["mp4", "m4v", "mkv", "webm", "avi", "mov", "mpg", "mpeg", "ts", "mts", "m2ts", "flv", "wmv", "ogv", "3gp", "y4m", "gif"];

fn is_video(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read directory {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_video(&path) {
            out.insert(path);
        }
    }
    Ok(())
}

fn expand_one(input: &str, out: &mut BTreeSet<PathBuf>) -> Result<()> {
    if let Some(list) = input.strip_prefix('@') {
        let text =
            std::fs::read_to_string(list).map_err(|e| classified(ErrorKind::NoInput, format!("cannot read input list {list}: {e}")))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            expand_one(line, out)?;
        }
        return Ok(());
    }
    let path = Path::new(input);
    if path.is_dir() {
        return walk(path, out);
    }
    if path.exists() {
        out.insert(path.to_path_buf());
        return Ok(());
    }
    if input.contains(['*', '?', '[']) {
        let matches = glob::glob(input).map_err(|e| classified(ErrorKind::Usage, format!("bad glob {input}: {e}")))?;
        let mut matched = false;
        for m in matches.flatten() {
            matched = true;
            if m.is_dir() {
                walk(&m, out)?;
            } else {
                out.insert(m);
            }
        }
        if !matched {
            return Err(classified(ErrorKind::NoInput, format!("no file matches {input}")));
        }
        return Ok(());
    }
    Err(classified(ErrorKind::NoInput, format!("no such file or directory: {input}")))
}

/// All clips named by `inputs`, sorted and without duplicates.
pub fn expand(inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = BTreeSet::new();
    for input in inputs {
        expand_one(input, &mut out)?;
    }
    Ok(out.into_iter().collect())
}

/// Stable 64-bit FNV-1a hash (the same on every machine and every Rust version).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// A shard `index` of `count` (`--shard I/N`, 0-based I).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 0/4")?;
        let index: u64 = i.trim().parse().map_err(|_| format!("bad shard index '{i}'"))?;
        let count: u64 = n.trim().parse().map_err(|_| format!("bad shard count '{n}'"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// A clip belongs to the shard chosen by the hash of its path as given on the command line
    /// (so every host of a cluster, seeing the same paths, agrees without coordination).
    pub fn contains(&self, path: &Path) -> bool {
        stable_hash(path.as_os_str().as_encoded_bytes()) % self.count == self.index
    }
}
