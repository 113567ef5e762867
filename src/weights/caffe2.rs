//! The Caffe2 blob names of the pyslowfast model zoo's `.pkl` checkpoints (SlowFast-8×8-R50), as a
//! map from the canonical pyslowfast tensor names (docs/models.md, "ResNet-3D", checkpoint layouts).
//!
//! A `.pkl` holds `{"blobs": {name: array}}`: `t_` marks the fast pathway, BN tensors end in
//! `_bn_{s,b,rm,riv}` (scale, shift, running mean, running variance), the laterals are named after
//! the layer they follow, and solver state (`lr`, `model_iter`, `*_momentum`) rides along.

/// BN field of a canonical name → Caffe2 suffix.
fn bn_suffix(field: &str) -> Option<&'static str> {
    Some(match field {
        "weight" => "s",
        "bias" => "b",
        "running_mean" => "rm",
        "running_var" => "riv",
        _ => return None,
    })
}

/// The Caffe2 blob name of a canonical ResNet-3D tensor name; `depths` are the blocks of s2..s5
/// (the laterals after s2..s4 are named after their stage's last block). `None` if it has no blob.
pub fn blob_name(name: &str, depths: [usize; 4]) -> Option<String> {
    match name {
        "head.projection.weight" => return Some("pred_w".into()),
        "head.projection.bias" => return Some("pred_b".into()),
        _ => {}
    }
    // `<module>.<field>`, the field being `weight` of a conv or a BN field.
    let (module, field) = name.rsplit_once('.')?;
    let (conv_or_bn, bn) = match module.strip_suffix("bn") {
        // `…bn` or `…_bn` modules hold BN tensors.
        Some(_) => ("", Some(bn_suffix(field)?)),
        None if field == "weight" => ("w", None),
        None => return None,
    };
    let tail = |base: String| match bn {
        Some(s) => format!("{base}_bn_{s}"),
        None => format!("{base}_{conv_or_bn}"),
    };
    if let Some(stage) = module.strip_suffix("_fuse.conv_f2s").or_else(|| module.strip_suffix("_fuse.bn")) {
        let k: usize = stage.strip_prefix('s')?.parse().ok()?;
        let base = match k {
            1 => "t_pool1_subsample".to_string(),
            2..=4 => format!("t_res{k}_{}_branch2c_bn_subsample", depths[k - 2].checked_sub(1)?),
            _ => return None,
        };
        return Some(tail(base));
    }
    let (stage, rest) = module.strip_prefix('s')?.split_once(".pathway")?;
    let k: usize = stage.parse().ok()?;
    let (p, rest) = rest.split_at_checked(1)?;
    let prefix = match p {
        "0" => "",
        "1" => "t_",
        _ => return None,
    };
    if k == 1 {
        return match rest {
            "_stem.conv" => Some(format!("{prefix}conv1_w")),
            "_stem.bn" => Some(format!("{prefix}res_conv1_bn_{}", bn?)),
            _ => None,
        };
    }
    if !(2..=5).contains(&k) {
        return None;
    }
    let (i, layer) = rest.strip_prefix("_res")?.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let layer = match layer {
        "branch1" | "branch1_bn" => "branch1".to_string(),
        _ => {
            let x = layer.strip_prefix("branch2.")?;
            let x = x.strip_suffix("_bn").unwrap_or(x);
            if !["a", "b", "c"].contains(&x) {
                return None;
            }
            format!("branch2{x}")
        }
    };
    Some(tail(format!("{prefix}res{k}_{i}_{layer}")))
}

/// Whether a checkpoint's tensor names are Caffe2 blobs (as loaded: under `blobs/`, or bare).
pub fn is_caffe2<S: AsRef<str>>(names: &[S]) -> bool {
    names.iter().any(|n| n.as_ref() == "blobs/conv1_w" || n.as_ref() == "conv1_w")
}

/// Ready a Caffe2 checkpoint store for [`blob_name`]: the blobs lose the `blobs/` prefix the store
/// gives the entries of the pickle's `blobs` dict, and the solver blobs are ignored.
pub fn prepare(store: &mut crate::weights::TensorStore) -> anyhow::Result<()> {
    store.rename(|n| n.strip_prefix("blobs/").map(str::to_string))?;
    store.ignore(is_solver_blob);
    Ok(())
}

/// Solver state a Caffe2 checkpoint carries beside the weights, which a loader ignores.
pub fn is_solver_blob(name: &str) -> bool {
    name == "lr" || name == "model_iter" || name.ends_with("_momentum")
}

#[cfg(test)]
mod tests {
    use super::*;

    const R50: [usize; 4] = [3, 4, 6, 3];

    #[test]
    fn canonical_names_to_blobs() {
        let cases = [
            ("s1.pathway0_stem.conv.weight", "conv1_w"),
            ("s1.pathway1_stem.conv.weight", "t_conv1_w"),
            ("s1.pathway0_stem.bn.weight", "res_conv1_bn_s"),
            ("s1.pathway1_stem.bn.running_var", "t_res_conv1_bn_riv"),
            ("s2.pathway0_res0.branch1.weight", "res2_0_branch1_w"),
            ("s2.pathway0_res0.branch1_bn.running_mean", "res2_0_branch1_bn_rm"),
            ("s4.pathway1_res5.branch2.a.weight", "t_res4_5_branch2a_w"),
            ("s5.pathway0_res2.branch2.c_bn.bias", "res5_2_branch2c_bn_b"),
            ("s1_fuse.conv_f2s.weight", "t_pool1_subsample_w"),
            ("s1_fuse.bn.weight", "t_pool1_subsample_bn_s"),
            ("s2_fuse.conv_f2s.weight", "t_res2_2_branch2c_bn_subsample_w"),
            ("s3_fuse.bn.running_var", "t_res3_3_branch2c_bn_subsample_bn_riv"),
            ("s4_fuse.conv_f2s.weight", "t_res4_5_branch2c_bn_subsample_w"),
            ("head.projection.weight", "pred_w"),
            ("head.projection.bias", "pred_b"),
        ];
        for (canonical, blob) in cases {
            assert_eq!(blob_name(canonical, R50).as_deref(), Some(blob), "{canonical}");
        }
        for none in [
            "s5_fuse.conv_f2s.weight",
            "s2.pathway2_res0.branch1.weight",
            "s2.pathway0_res0.branch2.d.weight",
            "s1.pathway0_stem.conv.bias",
        ] {
            assert_eq!(blob_name(none, R50), None, "{none}");
        }
        assert!(is_solver_blob("pred_w_momentum") && is_solver_blob("lr") && is_solver_blob("model_iter") && !is_solver_blob("pred_w"));
    }

    /// The fixture's Caffe2 pickle holds every pyslowfast tensor of the same SlowFast under its blob
    /// name, the same values (tools/resnet writes both from one network).
    #[test]
    fn the_slowfast_fixture_blobs_are_the_pyslowfast_tensors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet/slowfast");
        let dev = candle_core::Device::Cpu;
        let psf = crate::weights::load(&dir.join("slowfast_pyslowfast.pyth"), &dev).unwrap();
        let mut c2 = crate::weights::load(&dir.join("slowfast_caffe2.pkl"), &dev).unwrap();
        assert!(is_caffe2(c2.names()));
        prepare(&mut c2).unwrap();
        let mut mapped = 0;
        for name in psf.names().iter().filter(|n| !n.ends_with("num_batches_tracked")) {
            let want = psf.get(name).unwrap();
            let blob = blob_name(name, R50).unwrap_or_else(|| panic!("no blob for {name}"));
            let got = c2.take(&blob, want.dims()).unwrap();
            let diff =
                (want.to_dtype(candle_core::DType::F32).unwrap() - got).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name} ↔ {blob}");
            mapped += 1;
        }
        assert!(mapped > 500);
        c2.finish().unwrap();
    }
}
