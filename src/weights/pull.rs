//! `weights pull`: fetch an official checkpoint into a cache directory.
//!
//! Downloads go to `<file>.part` and are resumed with a Range request; the finished file is renamed
//! into place atomically. No checksums are published for these files, so the SHA-256 is always
//! computed and recorded next to the file (`<file>.sha256`, sha256sum format); when a hash is pinned
//! a mismatch deletes the download and fails.

use crate::error::{ErrorKind, classified};
use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use super::layout::Layout;

/// One published checkpoint of a model (listed in `models::registry`).
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    pub layout: Layout,
    pub url: &'static str,
    /// SHA-256 pinned by coinfer, where known (none are published upstream).
    pub sha256: Option<&'static str>,
}

/// A model's published checkpoint in `layout` (`None`: its default one), by model name or alias
/// (case-insensitive): the registry name and the checkpoint.
pub fn official(model: &str, layout: Option<Layout>) -> Option<(&'static str, &'static Checkpoint)> {
    let m = crate::models::registry::lookup(model)?;
    let c = m.checkpoints.iter().find(|c| layout.is_none_or(|l| l == c.layout))?;
    Some((m.name, c))
}

/// The advice for a model whose default weights are not in the cache: the `weights pull` command
/// that fetches them, with the name `pull` itself looks up (so the advice always works); `None` when
/// the model has no published checkpoint to pull.
pub fn pull_advice(model: &str) -> Option<String> {
    official(model, None).map(|(name, _)| format!("run `coinfer weights pull {name}`"))
}

/// Every published checkpoint with its model's registry name, layout by layout.
pub fn pullable() -> Vec<(&'static str, &'static Checkpoint)> {
    use clap::ValueEnum;
    let mut all = Vec::new();
    for layout in Layout::value_variants() {
        for m in crate::models::registry::MODELS {
            all.extend(m.checkpoints.iter().filter(|c| c.layout == *layout).map(|c| (m.name, c)));
        }
    }
    all
}

/// The model-zoo address of a model's checkpoint in the given layout.
pub fn official_url(model: &str, layout: Layout) -> Option<&'static str> {
    official(model, Some(layout)).map(|(_, c)| c.url)
}

/// `$XDG_CACHE_HOME/coinfer`, else `~/.cache/coinfer`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(Path::new(&x).join("coinfer"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| classified(ErrorKind::Usage, "cannot find a cache directory: neither XDG_CACHE_HOME nor HOME is set (use --dir)"))?;
    Ok(Path::new(&home).join(".cache").join("coinfer"))
}

/// The SHA-256 recorded next to a downloaded file, if any.
pub fn recorded_sha256(file: &Path) -> Option<String> {
    let s = fs::read_to_string(sidecar(file)).ok()?;
    let h = s.split_whitespace().next()?;
    is_hex256(h).then(|| h.to_ascii_lowercase())
}

fn is_hex256(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sidecar(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn part_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// The file name a URL downloads to: its last path segment, which must be a plain name.
pub(crate) fn file_name(url: &str) -> Result<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == "." || name == ".." || name.contains('\\') || !path.contains("://") {
        bail!("cannot tell a file name from the address {url}");
    }
    Ok(name.to_string())
}

fn sha256_file(path: &Path) -> Result<(Sha256, u64)> {
    let mut h = Sha256::new();
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok((h, n));
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

fn hex(d: Sha256) -> String {
    d.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Download `url` into `dest_dir` (created if needed) and return the file's path.
///
/// An existing complete file is reused (re-verified when a hash is pinned; replaced if it does not
/// match). A `.part` left by an interrupted download is resumed. `progress` shows a bar when stderr
/// is a terminal.
pub fn pull(url: &str, dest_dir: &Path, expected_sha256: Option<&str>, progress: bool) -> Result<PathBuf> {
    let expected = match expected_sha256 {
        Some(h) if is_hex256(h) => Some(h.to_ascii_lowercase()),
        Some(h) => {
            return Err(classified(ErrorKind::Usage, format!("--sha256 must be 64 hex digits, got {h:?}")));
        }
        None => None,
    };
    let name = file_name(url).map_err(|e| classified(ErrorKind::Usage, e.to_string()))?;
    fs::create_dir_all(dest_dir).with_context(|| format!("cannot create {}", dest_dir.display()))?;
    let dest = dest_dir.join(&name);
    let part = part_path(&dest);

    if dest.is_file() {
        let (h, _) = sha256_file(&dest)?;
        let got = hex(h);
        match &expected {
            Some(want) if *want != got => {
                // A stale or corrupt cache entry: fetch it again.
                fs::remove_file(&dest)?;
            }
            _ => {
                fs::write(sidecar(&dest), format!("{got}  {name}\n"))?;
                return Ok(dest);
            }
        }
    }

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();

    let mut have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut resp = request(&agent, url, have)?;
    let mut status = resp.status().as_u16();
    if status == 416 && have > 0 {
        // The server cannot continue this .part (it may be complete or from another file): start over.
        have = 0;
        resp = request(&agent, url, 0)?;
        status = resp.status().as_u16();
    }
    let resuming = match status {
        206 if have > 0 => {
            let range = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
            let start = range.strip_prefix("bytes ").and_then(|r| r.split('-').next()).and_then(|s| s.trim().parse::<u64>().ok());
            if start != Some(have) {
                bail!("server answered the resume request from byte {have} with the range {range:?}");
            }
            true
        }
        200 => false,
        404 | 410 => {
            return Err(classified(ErrorKind::NoInput, format!("{url}: not found (HTTP {status})")));
        }
        _ => bail!("{url}: HTTP {status}"),
    };
    let length: Option<u64> = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());

    // The hash continues over what the .part already holds.
    let (mut hasher, mut done) = if resuming { sha256_file(&part)? } else { (Sha256::new(), 0) };
    let mut out = if resuming {
        OpenOptions::new().append(true).open(&part)?
    } else {
        File::create(&part).with_context(|| format!("cannot create {}", part.display()))?
    };
    let bar = (progress && std::io::stderr().is_terminal()).then(|| {
        let b = match length {
            Some(n) => indicatif::ProgressBar::new(done + n),
            None => indicatif::ProgressBar::no_length(),
        };
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(name.clone());
        b.set_position(done);
        b
    });
    let start = done;
    let mut body = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(anyhow!(e).context(format!(
                    "download of {url} stopped after {done} bytes; run the same command again to resume from {}",
                    part.display()
                )));
            }
        };
        out.write_all(&buf[..k])?;
        hasher.update(&buf[..k]);
        done += k as u64;
        if let Some(b) = &bar {
            b.set_position(done);
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(n) = length
        && done - start != n
    {
        bail!("download of {url} ended after {} of {n} bytes; run again to resume", done - start);
    }
    out.sync_all()?;
    drop(out);
    let got = hex(hasher);
    if let Some(want) = &expected
        && *want != got
    {
        let _ = fs::remove_file(&part);
        return Err(classified(ErrorKind::Data, format!("{url}: SHA-256 mismatch: expected {want}, got {got}; the download was deleted")));
    }
    fs::rename(&part, &dest).with_context(|| format!("cannot move {} into place", part.display()))?;
    fs::write(sidecar(&dest), format!("{got}  {name}\n"))?;
    Ok(dest)
}

fn request(agent: &ureq::Agent, url: &str, from: u64) -> Result<ureq::http::Response<ureq::Body>> {
    let mut req = agent.get(url);
    if from > 0 {
        req = req.header("Range", format!("bytes={from}-"));
    }
    req.call().map_err(|e| classified(ErrorKind::Runtime, format!("cannot download {url}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry() {
        assert_eq!(official_url("x3d-s", Layout::Pyslowfast), Some("https://dl.fbaipublicfiles.com/pyslowfast/x3d_models/x3d_s.pyth"));
        assert_eq!(official_url("X3D-L", Layout::Hub), Some("https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_L.pyth"));
        assert_eq!(official("cox3d-m", None).unwrap().1.layout, Layout::Pyslowfast);
        assert_eq!(official("cox3d-m", None).unwrap().0, "x3d-m");
        // No model runs these (yet): nothing to pull.
        assert!(official("slow", None).is_none());
        assert!(official("i3d", None).is_none());
        assert!(official("resnet", None).is_none());
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name("https://a.b/x/x3d_s.pyth").unwrap(), "x3d_s.pyth");
        assert_eq!(file_name("http://a.b/x/y.pkl?x=1").unwrap(), "y.pkl");
        assert!(file_name("https://a.b/x/").is_err());
        assert!(file_name("https://a.b/..").is_err());
        assert!(file_name("nothing").is_err());
    }
}
