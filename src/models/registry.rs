//! The built-in models: one table for `coinfer models`, `describe`, `build`, `build_random` and
//! `weights pull` (which can only offer checkpoints of a model listed here).

use std::path::PathBuf;

use super::classifier::Family;
use super::{ModelOptions, i3d, slow, slowfast, x3d};
use crate::error::{ErrorKind, classified};
use crate::weights::Layout::{Hub, Pyslowfast};
use crate::weights::pull::Checkpoint;

/// One built-in model.
pub struct Model {
    /// Registry name (what `--model` and the records say).
    pub name: &'static str,
    /// Other names that select it.
    pub aliases: &'static [&'static str],
    pub family: &'static Family,
    /// The weights `build` reads when none are named.
    pub weights: DefaultWeights,
    /// Published checkpoints `weights pull` fetches, the default layout first.
    pub checkpoints: &'static [Checkpoint],
}

/// Where a model's weights are by default.
pub enum DefaultWeights {
    /// A file shipped with coinfer, found by this function.
    Bundled(fn() -> PathBuf),
    /// The model's first checkpoint in coinfer's download cache (`weights pull`).
    Pulled,
}

const X3D: &Family = &Family::of::<x3d::X3d>();
const I3D: &Family = &Family::of::<i3d::I3d>();
const SLOW: &Family = &Family::of::<slow::Slow>();
const SLOWFAST: &Family = &Family::of::<slowfast::SlowFast>();

const fn published(layout: crate::weights::Layout, url: &'static str) -> Checkpoint {
    Checkpoint { layout, url, sha256: None }
}

/// The built-in models, default first. The checkpoint addresses are the model zoos of
/// facebookresearch/SlowFast and PyTorchVideo.
pub const MODELS: &[Model] = &[
    Model { name: "i3d", aliases: &["coi3d"], family: I3D, weights: DefaultWeights::Bundled(i3d::default_weights), checkpoints: &[] },
    Model {
        name: "x3d-xs",
        aliases: &["cox3d-xs"],
        family: X3D,
        weights: DefaultWeights::Pulled,
        checkpoints: &[
            published(Pyslowfast, "https://dl.fbaipublicfiles.com/pyslowfast/x3d_models/x3d_xs.pyth"),
            published(Hub, "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_XS.pyth"),
        ],
    },
    Model {
        name: "x3d-s",
        aliases: &["cox3d-s"],
        family: X3D,
        weights: DefaultWeights::Pulled,
        checkpoints: &[
            published(Pyslowfast, "https://dl.fbaipublicfiles.com/pyslowfast/x3d_models/x3d_s.pyth"),
            published(Hub, "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_S.pyth"),
        ],
    },
    Model {
        name: "x3d-m",
        aliases: &["cox3d-m"],
        family: X3D,
        weights: DefaultWeights::Pulled,
        checkpoints: &[
            published(Pyslowfast, "https://dl.fbaipublicfiles.com/pyslowfast/x3d_models/x3d_m.pyth"),
            published(Hub, "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_M.pyth"),
        ],
    },
    Model {
        name: "x3d-l",
        aliases: &["cox3d-l"],
        family: X3D,
        weights: DefaultWeights::Pulled,
        checkpoints: &[
            published(Pyslowfast, "https://dl.fbaipublicfiles.com/pyslowfast/x3d_models/x3d_l.pyth"),
            published(Hub, "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_L.pyth"),
        ],
    },
    Model {
        name: "slow-r50",
        aliases: &["coslow-r50", "coslow"],
        family: SLOW,
        weights: DefaultWeights::Pulled,
        checkpoints: &[published(Hub, "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOW_8x8_R50.pyth")],
    },
    Model {
        name: "i3d-r50",
        aliases: &["coi3d-r50"],
        family: SLOW,
        weights: DefaultWeights::Pulled,
        checkpoints: &[published(Hub, "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/I3D_8x8_R50.pyth")],
    },
    Model {
        name: "slowfast-r50",
        aliases: &["coslowfast-r50", "coslowfast"],
        family: SLOWFAST,
        weights: DefaultWeights::Pulled,
        checkpoints: &[
            published(Hub, "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth"),
            published(Pyslowfast, "https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/kinetics400/SLOWFAST_8x8_R50.pkl"),
        ],
    },
];

/// The model a name or alias selects (case-insensitive).
pub fn lookup(name: &str) -> Option<&'static Model> {
    let name = name.to_ascii_lowercase();
    MODELS.iter().find(|m| m.name == name || m.aliases.contains(&name.as_str()))
}

/// [`lookup`], or a usage error that lists the known names.
pub fn find(name: &str) -> anyhow::Result<&'static Model> {
    lookup(name).ok_or_else(|| {
        let known: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        classified(ErrorKind::Usage, format!("unknown model '{name}' (known: {})", known.join(", ")))
    })
}

impl Model {
    /// The weights file `build` reads with `opts`.
    pub fn weights_path(&self, opts: &ModelOptions) -> anyhow::Result<PathBuf> {
        if let Some(p) = &opts.weights {
            return Ok(p.clone());
        }
        match &self.weights {
            DefaultWeights::Bundled(find) => Ok(find()),
            DefaultWeights::Pulled => {
                let first = self.checkpoints.first().ok_or_else(|| anyhow::anyhow!("{}: no published checkpoint", self.name))?;
                Ok(crate::weights::cache_dir()?.join(crate::weights::pull::file_name(first.url)?))
            }
        }
    }
}
