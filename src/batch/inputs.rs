//! Which clips a batch run covers: files, directories (recursive, by video extension), glob patterns
//! and `@list.txt` files (one input per line, `#` comments), expanded in a stable order.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

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
    // Glob patterns are text: an argument that is not UTF-8 is taken literally (above), never as a
    // pattern. The names it matches need not be UTF-8 (`glob_paths`).
    if let Some(pattern) = input.to_str().filter(|s| s.contains(['*', '?', '['])) {
        let matches = glob_paths(pattern)?;
        let mut matched = false;
        for m in matches {
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

/// The paths that match a glob pattern, component by component: `*`, `?` and `[…]` within a name,
/// `**` for any depth of folders (itself included), as the `glob` crate reads them. Unlike the
/// crate's own walk, a name that is not UTF-8 is matched as its text (U+FFFD for the bytes that are
/// not UTF-8), so a glob finds every name a directory walk finds (docs/records.md, "File names").
/// Folders that cannot be read match nothing.
fn glob_paths(pattern: &str) -> Result<Vec<PathBuf>> {
    let bad = |e: glob::PatternError| classified(ErrorKind::Usage, format!("bad glob {pattern}: {e}"));
    let mut found = vec![PathBuf::new()];
    for component in Path::new(pattern).components() {
        let Component::Normal(part) = component else {
            // `/`, `.` and `..` are taken as they are.
            found.iter_mut().for_each(|p| p.push(component));
            continue;
        };
        let part = part.to_str().unwrap_or_default();
        found = if part == "**" {
            let mut all = Vec::new();
            for dir in found.into_iter().filter(|d| d.as_os_str().is_empty() || d.is_dir()) {
                folders_under(&dir, &mut all);
            }
            all
        } else if part.contains(['*', '?', '[']) {
            let names = glob::Pattern::new(part).map_err(bad)?;
            let mut matched = Vec::new();
            for dir in &found {
                let listed = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
                let Ok(entries) = std::fs::read_dir(listed) else { continue };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    if names.matches(&name.to_string_lossy()) {
                        matched.push(dir.join(name));
                    }
                }
            }
            matched
        } else {
            found.into_iter().map(|p| p.join(part)).collect()
        };
    }
    found.retain(|p| !p.as_os_str().is_empty() && p.exists());
    Ok(found)
}

/// `dir` and every folder under it, as `**` matches them (`dir` empty: the working directory).
fn folders_under(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    let listed = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Ok(entries) = std::fs::read_dir(listed) else { return };
    for entry in entries.flatten() {
        // Links to folders are not followed: a link to a folder above would never end.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            folders_under(&dir.join(entry.file_name()), out);
        }
    }
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
