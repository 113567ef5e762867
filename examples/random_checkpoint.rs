//! Write a checkpoint of deterministic random weights for a built-in model, with the names and shapes
//! its loader expects (safetensors). For benchmarks and tests where the values do not matter:
//!
//!     cargo run --release --example random_checkpoint -- x3d-xs /tmp/x3d-xs-random.safetensors

use std::collections::HashMap;

use candle_core::Tensor;
use coinfer::models::{ModelOptions, RandomWeights, WeightSource, registry};

/// Hands out random tensors and remembers them under their names.
struct Recording {
    random: RandomWeights,
    taken: HashMap<String, Tensor>,
}

impl WeightSource for Recording {
    fn take(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<Tensor> {
        let t = self.random.take(name, shape)?;
        self.taken.insert(name.to_string(), t.clone());
        Ok(t)
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, out] = args.as_slice() else {
        anyhow::bail!("usage: random_checkpoint MODEL OUT.safetensors");
    };
    let mut rec = Recording { random: RandomWeights::new(1), taken: HashMap::new() };
    let entry = registry::find(model)?;
    (entry.family.build)(entry.name, &ModelOptions::default(), &mut rec)?;
    candle_core::safetensors::save(&rec.taken, out)?;
    eprintln!("{} tensors written to {out}", rec.taken.len());
    Ok(())
}
