//! Checkpoints: a safe pickle reader, the torch zip and legacy containers, safetensors, one strict
//! tensor store over all of them, BatchNorm folding, and `weights pull` for the official files.

pub mod bn;
pub mod cli;
pub mod layout;
pub mod numpy;
pub mod pickle;
pub mod pull;
pub mod store;
pub mod torch;

pub use bn::fold_bn;
pub use pull::{Layout, cache_dir, official_url, pull};
pub use store::{Format, TensorStore, load, load_bytes};
