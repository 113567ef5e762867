//! BatchNorm folded into the preceding convolution at load time.

use anyhow::{Result, bail};
use candle_core::{DType, Tensor};

/// Fold an inference BatchNorm into the convolution before it.
///
/// With `s = gamma / sqrt(var + eps)` (gamma = 1 when the BN has no scale, as in DeepMind's I3D):
/// `w' = w * s` per output channel (dim 0) and `b' = (bias - mean) * s + beta` (bias = 0 when the conv
/// has none). Computed in f64, returned in the weight's dtype.
pub fn fold_bn(
    conv_weight: &Tensor,
    bias: Option<&Tensor>,
    gamma: Option<&Tensor>,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let c = conv_weight.dim(0)?;
    for (what, t) in [("beta", Some(beta)), ("running_mean", Some(mean)), ("running_var", Some(var)), ("gamma", gamma), ("bias", bias)] {
        if let Some(t) = t
            && t.dims() != [c]
        {
            bail!("fold_bn: {what} has shape {:?}, expected [{c}] (the conv's output channels)", t.dims());
        }
    }
    let f = |t: &Tensor| t.to_dtype(DType::F64);
    let mut scale = (f(var)? + eps)?.sqrt()?.recip()?;
    if let Some(g) = gamma {
        scale = (scale * f(g)?)?;
    }
    let mut bshape = vec![1usize; conv_weight.rank()];
    bshape[0] = c;
    let w = f(conv_weight)?.broadcast_mul(&scale.reshape(bshape)?)?;
    let shifted = match bias {
        Some(b) => (f(b)? - f(mean)?)?,
        None => f(mean)?.neg()?,
    };
    let b = ((shifted * &scale)? + f(beta)?)?;
    let dt = conv_weight.dtype();
    Ok((w.to_dtype(dt)?, b.to_dtype(dt)?))
}

/// Inference-mode BatchNorm parameters; `gamma = None` means no scale (Sonnet's BN in I3D).
pub struct BatchNorm {
    pub gamma: Option<Tensor>,
    pub beta: Tensor,
    pub mean: Tensor,
    pub var: Tensor,
    pub eps: f64,
}

impl BatchNorm {
    /// Fold into a conv of weight `(C_out, …)` with an optional bias: `(W', b')`.
    pub fn fold_into(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        fold_bn(weight, bias, self.gamma.as_ref(), &self.beta, &self.mean, &self.var, self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn hand_computed_example() -> Result<()> {
        let d = Device::Cpu;
        // Two output channels, one input channel, kernel 2: w = [[1, 2], [3, 4]].
        let w = Tensor::new(&[[[1f32, 2.]], [[3., 4.]]], &d)?;
        let gamma = Tensor::new(&[2f32, 0.5], &d)?;
        let beta = Tensor::new(&[1f32, -1.], &d)?;
        let mean = Tensor::new(&[0.5f32, 2.], &d)?;
        let var = Tensor::new(&[3f32, 15.], &d)?;
        // eps = 1: s = [2/sqrt(4), 0.5/sqrt(16)] = [1, 0.125].
        let (fw, fb) = fold_bn(&w, None, Some(&gamma), &beta, &mean, &var, 1.0)?;
        assert_eq!(fw.to_vec3::<f32>()?, vec![vec![vec![1., 2.]], vec![vec![0.375, 0.5]]]);
        // b' = (0 - mean) * s + beta = [-0.5 + 1, -0.25 - 1].
        assert_eq!(fb.to_vec1::<f32>()?, vec![0.5, -1.25]);
        // With a conv bias [1.5, 10] and no gamma (I3D style): s = [1/2, 1/4].
        let bias = Tensor::new(&[1.5f32, 10.], &d)?;
        let (fw, fb) = fold_bn(&w, Some(&bias), None, &beta, &mean, &var, 1.0)?;
        assert_eq!(fw.to_vec3::<f32>()?, vec![vec![vec![0.5, 1.]], vec![vec![0.75, 1.]]]);
        // b' = [(1.5 - 0.5) / 2 + 1, (10 - 2) / 4 - 1] = [1.5, 1].
        assert_eq!(fb.to_vec1::<f32>()?, vec![1.5, 1.]);
        Ok(())
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let d = Device::Cpu;
        let w = Tensor::zeros((2, 1, 1), DType::F32, &d).unwrap();
        let v3 = Tensor::ones(3, DType::F32, &d).unwrap();
        let v2 = Tensor::ones(2, DType::F32, &d).unwrap();
        let e = fold_bn(&w, None, None, &v2, &v3, &v2, 1e-5).unwrap_err().to_string();
        assert!(e.contains("running_mean"), "{e}");
    }
}
