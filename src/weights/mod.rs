//! Checkpoints: a safe pickle reader, the torch zip and legacy containers, safetensors, pickles of
//! numpy arrays, one strict tensor store over all of them, BatchNorm folding, the published layouts
//! (and the Caffe2 blob names),
//! and `weights pull` for the official files.
//!
//! A model loads like this (names and shapes as in (docs/models.md, "Checkpoint layouts"); every tensor must be used):
//!
//! ```no_run
//! # fn demo(path: &std::path::Path) -> anyhow::Result<()> {
//! use coinfer::weights;
//! let mut store = weights::load(path, &candle_core::Device::Cpu)?;
//! let (w, b) = store.take_conv_bn(
//!     "s1.pathway0_stem.conv", "s1.pathway0_stem.bn", &[24, 1, 5, 1, 1], 1e-5)?;
//! let proj = store.take("head.projection.weight", &[400, 2048])?;
//! store.ignore(|n| n.ends_with(".num_batches_tracked"));
//! store.finish()?; // errors on any tensor never taken
//! # Ok(()) }
//! ```

pub mod bn;
pub mod caffe2;
pub mod cli;
pub mod layout;
pub mod numpy;
pub mod pickle;
pub mod pull;
pub mod store;
pub mod torch;

pub use bn::{BatchNorm, fold_bn};
pub use pull::{Layout, cache_dir, official_url, pull};
pub use store::{Format, TensorStore, load, load_bytes};
