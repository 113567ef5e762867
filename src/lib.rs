//! coinfer: streaming action recognition with Continual 3D CNNs.
//!
//! Data flows one way: `source` (decode) → `preprocess` (resample, resize, crop, normalise) →
//! `models` (continual networks built from `engine` blocks) → `smooth` → `sink`.

pub mod batch;
pub mod bench;
pub mod cli;
pub mod engine;
pub mod error;
pub mod flops;
pub mod labels;
pub mod latency;
pub mod models;
pub mod paths;
pub mod pipeline;
pub mod preprocess;
pub mod signals;
pub mod sink;
pub mod smooth;
pub mod source;
pub mod weights;
