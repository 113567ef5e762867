//! Key maps between published checkpoint layouts (spec models-x3d-slowfast §1.6).
//!
//! Models mirror the pyslowfast names; a PyTorchVideo hub checkpoint is renamed on load with
//! `store.rename(x3d_hub_to_pyslowfast)`. Names the map does not know stay as they are, so the store
//! reports them as unexpected instead of dropping them.

/// PyTorchVideo hub X3D name → pyslowfast name. Note PTV's swapped stem names: `conv_t` holds the
/// spatial 1×3×3 conv (pyslowfast `conv_xy`) and `conv_xy` the temporal 5×1×1 one (pyslowfast `conv`).
pub fn x3d_hub_to_pyslowfast(name: &str) -> Option<String> {
    let rest = name.strip_prefix("blocks.")?;
    let (block, rest) = rest.split_once('.')?;
    match block {
        "0" => {
            let (part, param) = split_param(rest)?;
            let new = match part {
                "conv.conv_t" => "conv_xy",
                "conv.conv_xy" => "conv",
                "norm" => "bn",
                _ => return None,
            };
            Some(format!("s1.pathway0_stem.{new}.{param}"))
        }
        "1" | "2" | "3" | "4" => {
            let stage = block.parse::<usize>().ok()? + 1;
            let rest = rest.strip_prefix("res_blocks.")?;
            let (idx, rest) = rest.split_once('.')?;
            idx.parse::<usize>().ok()?;
            let (part, param) = split_param(rest)?;
            let new = match part {
                "branch1_conv" => "branch1",
                "branch1_norm" => "branch1_bn",
                "branch2.conv_a" => "branch2.a",
                "branch2.norm_a" => "branch2.a_bn",
                "branch2.conv_b" => "branch2.b",
                "branch2.norm_b.0" => "branch2.b_bn",
                "branch2.norm_b.1.block.0" => "branch2.se.fc1",
                "branch2.norm_b.1.block.2" => "branch2.se.fc2",
                "branch2.conv_c" => "branch2.c",
                "branch2.norm_c" => "branch2.c_bn",
                _ => return None,
            };
            Some(format!("s{stage}.pathway0_res{idx}.{new}.{param}"))
        }
        "5" => {
            let (part, param) = split_param(rest)?;
            let new = match part {
                "pool.pre_conv" => "conv_5",
                "pool.pre_norm" => "conv_5_bn",
                "pool.post_conv" => "lin_5",
                "proj" => "projection",
                _ => return None,
            };
            Some(format!("head.{new}.{param}"))
        }
        _ => None,
    }
}

/// Split `module.path.param` at the last dot, accepting only parameter and buffer names.
fn split_param(s: &str) -> Option<(&str, &str)> {
    let (part, param) = s.rsplit_once('.')?;
    matches!(
        param,
        "weight" | "bias" | "running_mean" | "running_var" | "num_batches_tracked"
    )
    .then_some((part, param))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_table() {
        let rows = [
            (
                "blocks.0.conv.conv_t.weight",
                "s1.pathway0_stem.conv_xy.weight",
            ),
            (
                "blocks.0.conv.conv_xy.weight",
                "s1.pathway0_stem.conv.weight",
            ),
            (
                "blocks.0.norm.running_var",
                "s1.pathway0_stem.bn.running_var",
            ),
            (
                "blocks.1.res_blocks.0.branch1_conv.weight",
                "s2.pathway0_res0.branch1.weight",
            ),
            (
                "blocks.2.res_blocks.0.branch1_norm.bias",
                "s3.pathway0_res0.branch1_bn.bias",
            ),
            (
                "blocks.3.res_blocks.10.branch2.conv_a.weight",
                "s4.pathway0_res10.branch2.a.weight",
            ),
            (
                "blocks.3.res_blocks.10.branch2.norm_a.weight",
                "s4.pathway0_res10.branch2.a_bn.weight",
            ),
            (
                "blocks.4.res_blocks.6.branch2.conv_b.weight",
                "s5.pathway0_res6.branch2.b.weight",
            ),
            (
                "blocks.4.res_blocks.6.branch2.norm_b.0.running_mean",
                "s5.pathway0_res6.branch2.b_bn.running_mean",
            ),
            (
                "blocks.4.res_blocks.6.branch2.norm_b.1.block.0.weight",
                "s5.pathway0_res6.branch2.se.fc1.weight",
            ),
            (
                "blocks.4.res_blocks.6.branch2.norm_b.1.block.2.bias",
                "s5.pathway0_res6.branch2.se.fc2.bias",
            ),
            (
                "blocks.1.res_blocks.2.branch2.conv_c.weight",
                "s2.pathway0_res2.branch2.c.weight",
            ),
            (
                "blocks.1.res_blocks.2.branch2.norm_c.num_batches_tracked",
                "s2.pathway0_res2.branch2.c_bn.num_batches_tracked",
            ),
            ("blocks.5.pool.pre_conv.weight", "head.conv_5.weight"),
            ("blocks.5.pool.pre_norm.bias", "head.conv_5_bn.bias"),
            ("blocks.5.pool.post_conv.weight", "head.lin_5.weight"),
            ("blocks.5.proj.weight", "head.projection.weight"),
            ("blocks.5.proj.bias", "head.projection.bias"),
        ];
        for (ptv, sf) in rows {
            assert_eq!(x3d_hub_to_pyslowfast(ptv).as_deref(), Some(sf), "{ptv}");
        }
    }

    #[test]
    fn unknown_names_are_left_alone() {
        for n in [
            "blocks.6.proj.weight",
            "blocks.1.res_blocks.x.branch1_conv.weight",
            "blocks.0.conv.weight",
            "s1.pathway0_stem.bn.weight",
            "blocks.5.proj.scale",
        ] {
            assert_eq!(x3d_hub_to_pyslowfast(n), None, "{n}");
        }
    }
}
