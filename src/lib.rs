//! coinfer: streaming action recognition with Continual 3D CNNs.

pub mod error;
pub mod models;
pub mod engine;
pub mod flops;
pub mod bench;
pub mod batch;
pub mod cli;
pub mod labels;
pub mod pipeline;
pub mod preprocess;
pub mod sink;
pub mod smooth;
pub mod source;
