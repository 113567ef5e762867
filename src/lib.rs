//! coinfer: streaming action recognition with Continual 3D CNNs.

pub mod error;
pub mod models;
pub mod weights;
