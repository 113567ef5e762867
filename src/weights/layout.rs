//! The published key layouts of checkpoints. A model file maps its canonical names to each layout
//! it loads (docs/models.md, "Checkpoint layouts"); the registry lists which layouts it publishes.

/// Which published key layout a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// facebookresearch/SlowFast model zoo (`x3d_s.pyth`, Caffe2 `.pkl`).
    Pyslowfast,
    /// PyTorchVideo hub model zoo (`X3D_S.pyth`, `SLOW_8x8_R50.pyth`, …).
    Hub,
}
