//! BatchNorm folded into the preceding convolution at load time (exact up to float rounding):
//! `W' = W · γ/√(σ² + ε)` per output channel, `b' = β + (b − μ) · γ/√(σ² + ε)`.

use candle_core::{Result, Tensor};

/// Inference-mode BatchNorm parameters; `gamma = None` means no scale (Sonnet's BN in I3D).
pub struct BatchNorm {
    pub gamma: Option<Tensor>,
    pub beta: Tensor,
    pub mean: Tensor,
    pub var: Tensor,
    pub eps: f64,
}

/// Fold `bn` into a conv of weight `(C_out, …)` and optional bias `(C_out,)`; returns `(W', b')`.
pub fn fold_bn(weight: &Tensor, bias: Option<&Tensor>, bn: &BatchNorm) -> Result<(Tensor, Tensor)> {
    let inv_std = (&bn.var + bn.eps)?.sqrt()?.recip()?;
    let scale = match &bn.gamma {
        Some(g) => (g * &inv_std)?,
        None => inv_std,
    };
    let c_out = weight.dim(0)?;
    let mut per_channel = vec![1usize; weight.rank()];
    per_channel[0] = c_out;
    let w = weight.broadcast_mul(&scale.reshape(per_channel)?)?;
    let centred = match bias {
        Some(b) => (b - &bn.mean)?,
        None => bn.mean.neg()?,
    };
    let b = ((centred * scale)? + &bn.beta)?;
    Ok((w, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn folding_matches_hand_computed_values() {
        let dev = Device::Cpu;
        let w = Tensor::new(&[[2f32, -1.0], [0.5, 4.0]], &dev).unwrap();
        let bn = BatchNorm {
            gamma: Some(Tensor::new(&[3f32, 1.0], &dev).unwrap()),
            beta: Tensor::new(&[0.5f32, -1.0], &dev).unwrap(),
            mean: Tensor::new(&[1f32, 2.0], &dev).unwrap(),
            var: Tensor::new(&[3.99f32, 0.24], &dev).unwrap(),
            eps: 0.01,
        };
        // channel 0: scale 3/2 = 1.5, bias 0.5 - 1·1.5 = -1; channel 1: scale 1/0.5 = 2, bias -1 - 2·2 = -5.
        let (fw, fb) = fold_bn(&w, None, &bn).unwrap();
        let fw: Vec<Vec<f32>> = fw.to_vec2().unwrap();
        let fb: Vec<f32> = fb.to_vec1().unwrap();
        let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
        assert!(close(fw[0][0], 3.0) && close(fw[0][1], -1.5) && close(fw[1][0], 1.0) && close(fw[1][1], 8.0));
        assert!(close(fb[0], -1.0) && close(fb[1], -5.0), "{fb:?}");
        let no_gamma = BatchNorm { gamma: None, ..bn };
        let (_, fb) = fold_bn(&w, Some(&Tensor::new(&[1f32, 0.0], &dev).unwrap()), &no_gamma).unwrap();
        let fb: Vec<f32> = fb.to_vec1().unwrap();
        // channel 0: (1 - 1)/2 + 0.5 = 0.5; channel 1: (0 - 2)/0.5 - 1 = -5.
        assert!(close(fb[0], 0.5) && close(fb[1], -5.0), "{fb:?}");
    }
}
