//! `coinfer weights …` subcommands (wired into the main CLI by the lead).

use super::pull::{Layout, cache_dir, official, pull, pullable, recorded_sha256};
use crate::error::{ErrorKind, classified};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct WeightsArgs {
    #[command(subcommand)]
    pub command: WeightsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum WeightsCommand {
    /// Download a model's official checkpoint into the cache (resumable; prints its SHA-256).
    Pull {
        /// Model name, e.g. x3d-s (see `coinfer models`).
        model: String,
        /// Which published checkpoint layout to fetch (default: the model's first listed one).
        #[arg(long, value_enum)]
        layout: Option<Layout>,
        /// Directory to download into [default: $XDG_CACHE_HOME/coinfer or ~/.cache/coinfer].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Expected SHA-256 (64 hex digits); a mismatching download is deleted.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
}

pub fn run(args: &WeightsArgs) -> anyhow::Result<()> {
    match &args.command {
        WeightsCommand::Pull { model, layout, dir, sha256 } => {
            let (_, entry) = official(model, *layout).ok_or_else(|| {
                let known: Vec<String> = pullable().iter().map(|(name, c)| format!("{name} ({:?})", c.layout).to_lowercase()).collect();
                classified(
                    ErrorKind::Usage,
                    format!(
                        "no official checkpoint for {model}{}; known: {}",
                        layout.map(|l| format!(" in the {l:?} layout").to_lowercase()).unwrap_or_default(),
                        known.join(", ")
                    ),
                )
            })?;
            let dir = match dir {
                Some(d) => d.clone(),
                None => cache_dir()?,
            };
            let pinned = sha256.as_deref().or(entry.sha256);
            let path = pull(entry.url, &dir, pinned, true)?;
            let hash = recorded_sha256(&path).unwrap_or_default();
            eprintln!("sha256 {hash}{}", if pinned.is_some() { " (verified)" } else { " (not pinned; pass --sha256 to verify)" });
            // Not println!, which panics when the reader has gone (`… | true`).
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", path.display())?;
            Ok(out.flush()?)
        }
    }
}
