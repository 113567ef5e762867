//! Which clips a batch run covers: files, directories (recursive, by video extension), glob patterns
//! and `@list.txt` files (one input per line, `#` comments), expanded in a stable order.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::keys::{common_dir, normalise};
use crate::error::{ErrorKind, classified};
use crate::paths;

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

/// The directory an input argument speaks for (made absolute against `cwd`): a directory itself, a
/// file's parent, a glob's leading directories without wildcards.
fn base_dir(cwd: &Path, input: &Path) -> PathBuf {
    let dir = if input.is_dir() {
        input.to_path_buf()
    } else if !input.exists() && input.to_str().is_some_and(|s| s.contains(['*', '?', '['])) {
        input.components().take_while(|c| !c.as_os_str().to_str().is_some_and(|s| s.contains(['*', '?', '[']))).collect()
    } else {
        input.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    normalise(cwd, &dir)
}

fn expand_one(input: &OsStr, cwd: &Path, out: &mut BTreeSet<PathBuf>, bases: &mut Vec<PathBuf>) -> Result<()> {
    if let Some(list) = paths::as_bytes(input).strip_prefix(b"@") {
        // A list is bytes, one name a line: names need not be UTF-8.
        let list = PathBuf::from(paths::from_bytes(list.to_vec()));
        let text =
            std::fs::read(&list).map_err(|e| classified(ErrorKind::NoInput, format!("cannot read input list {}: {e}", list.display())))?;
        for line in text.split(|&b| b == b'\n').map(<[u8]>::trim_ascii).filter(|l| !l.is_empty() && !l.starts_with(b"#")) {
            expand_one(&paths::from_bytes(line.to_vec()), cwd, out, bases)?;
        }
        return Ok(());
    }
    let path = Path::new(input);
    bases.push(base_dir(cwd, path));
    if path.is_dir() {
        return walk(path, out);
    }
    if path.exists() {
        out.insert(path.to_path_buf());
        return Ok(());
    }
    // Glob patterns are text: a name that is not UTF-8 is taken literally (above), never as a pattern.
    if let Some(pattern) = input.to_str().filter(|s| s.contains(['*', '?', '['])) {
        let matches = glob::glob(pattern).map_err(|e| classified(ErrorKind::Usage, format!("bad glob {pattern}: {e}")))?;
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
            return Err(classified(ErrorKind::NoInput, format!("no file matches {pattern}")));
        }
        return Ok(());
    }
    Err(classified(ErrorKind::NoInput, format!("no such file or directory: {}", path.display())))
}

/// The clips that the input arguments name, and the directory that holds them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// Sorted, without duplicates, spelled as found (relative inputs give relative paths).
    pub clips: Vec<PathBuf>,
    /// The default root of the clip keys: the deepest directory holding every input argument (a
    /// directory, a file's parent, a glob's leading directories; an @list's entries each count),
    /// absolute and normalised (README, "Batch labelling").
    pub root: PathBuf,
}

/// All clips named by `inputs`, sorted and without duplicates, and their common directory.
pub fn expand(inputs: &[impl AsRef<OsStr>]) -> Result<Expanded> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let cwd = normalise(Path::new("/"), &cwd);
    let mut out = BTreeSet::new();
    let mut bases = Vec::new();
    for input in inputs {
        expand_one(input.as_ref(), &cwd, &mut out, &mut bases)?;
    }
    let root = common_dir(bases.iter().map(PathBuf::as_path)).unwrap_or(cwd);
    Ok(Expanded { clips: out.into_iter().collect(), root })
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
        const RANGE: &str = "need I/N with 0 <= I < N, e.g. 0/4";
        let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 0/4")?;
        // Signed, so that a negative I or N is told the range, not "invalid digit".
        let number = |v: &str| v.trim().parse::<i128>().map_err(|_| format!("'{v}' is not a whole number: {RANGE}"));
        let (index, count) = (number(i)?, number(n)?);
        if count <= 0 || index < 0 || index >= count || u64::try_from(count).is_err() {
            return Err(format!("shard {index}/{count}: {RANGE}"));
        }
        let (index, count) = (index as u64, count as u64);
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// A clip belongs to the shard chosen by the hash of its key, the path relative to the root
    /// (`keys::ClipKeys::key`): every host of a cluster agrees without coordination, wherever it
    /// mounts the data.
    pub fn contains(&self, key: &Path) -> bool {
        stable_hash(paths::as_bytes(key.as_os_str())) % self.count == self.index
    }
}
