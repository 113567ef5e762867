//! Which clip a path names, whatever its spelling: `--resume` and `--shard` key a clip on its path
//! made absolute, normalised lexically and taken relative to a root (README, "Batch labelling":
//! "Clip keys"). So `dir`, `./dir`, `dir/` and `/abs/dir` give the same keys, and two machines that
//! mount the data at different places agree on the shards.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

/// The working directory and the root that keys are taken relative to.
#[derive(Debug, Clone)]
pub struct ClipKeys {
    cwd: PathBuf,
    root: PathBuf,
}

impl ClipKeys {
    /// Keys relative to `root` (itself relative to the working directory, or absolute).
    pub fn new(root: &Path) -> Result<ClipKeys> {
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        Ok(ClipKeys::with_cwd(&cwd, root))
    }

    /// As `new`, with the working directory given (for resolving relative paths).
    pub fn with_cwd(cwd: &Path, root: &Path) -> ClipKeys {
        let cwd = normalise(Path::new("/"), cwd);
        let root = normalise(&cwd, root);
        ClipKeys { cwd, root }
    }

    /// The root, absolute and normalised.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` made absolute against the working directory and normalised.
    pub fn absolute(&self, path: &Path) -> PathBuf {
        normalise(&self.cwd, path)
    }

    /// The key of `path`: relative to the root when the path is under it, else absolute (both
    /// normalised). Symbolic links are not followed: a key is about the name, not the file.
    pub fn key(&self, path: &Path) -> PathBuf {
        let abs = self.absolute(path);
        match abs.strip_prefix(&self.root) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
            _ => abs,
        }
    }
}

/// `path` made absolute against `base` (itself absolute) and normalised lexically: `.` and empty
/// components dropped, `..` taking off the component before it (none above `/`). No file system
/// access, so paths that no longer exist (a journal's) normalise as well as those that do.
pub fn normalise(base: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in base.join(path).components() {
        match c {
            Component::Prefix(p) => out.push(p.as_os_str()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

/// The deepest directory holding every one of `dirs` (absolute, normalised); `/` when they share
/// nothing, `None` for no directories.
pub fn common_dir<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Option<PathBuf> {
    let mut common: Option<PathBuf> = None;
    for dir in dirs {
        common = Some(match common {
            None => dir.to_path_buf(),
            Some(c) => c.components().zip(dir.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
        });
    }
    common.map(|c| if c.as_os_str().is_empty() { PathBuf::from("/") } else { c })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_normalise_alike() {
        let cwd = Path::new("/data");
        for p in ["clips/a.mp4", "./clips/a.mp4", "clips//a.mp4", "clips/./a.mp4", "x/../clips/a.mp4", "/data/clips/a.mp4"] {
            assert_eq!(normalise(cwd, Path::new(p)), Path::new("/data/clips/a.mp4"), "{p}");
        }
        assert_eq!(normalise(cwd, Path::new("../../..")), Path::new("/"));
    }

    #[test]
    fn keys_are_relative_to_the_root() {
        let keys = ClipKeys::with_cwd(Path::new("/home/u"), Path::new("data/"));
        assert_eq!(keys.root(), Path::new("/home/u/data"));
        assert_eq!(keys.key(Path::new("data/sub/a.mp4")), Path::new("sub/a.mp4"));
        assert_eq!(keys.key(Path::new("/home/u/data/sub/a.mp4")), Path::new("sub/a.mp4"));
        // Outside the root: the absolute path; `data2` is not under `data`.
        assert_eq!(keys.key(Path::new("data2/a.mp4")), Path::new("/home/u/data2/a.mp4"));
        // Another mount of the same data: the same keys.
        let elsewhere = ClipKeys::with_cwd(Path::new("/"), Path::new("/mnt/nfs/data"));
        assert_eq!(elsewhere.key(Path::new("/mnt/nfs/data/sub/a.mp4")), Path::new("sub/a.mp4"));
    }

    #[test]
    fn common_dirs() {
        let p = |s: &'static str| Path::new(s);
        assert_eq!(common_dir([p("/a/b/c"), p("/a/b/d/e"), p("/a/b")]), Some(PathBuf::from("/a/b")));
        assert_eq!(common_dir([p("/a/bc"), p("/a/b")]), Some(PathBuf::from("/a")));
        assert_eq!(common_dir([p("/x"), p("/y")]), Some(PathBuf::from("/")));
        assert_eq!(common_dir([]), None);
    }
}
