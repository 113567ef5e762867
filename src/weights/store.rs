//! One uniform view of a checkpoint's tensors, whatever the file format, with strict bookkeeping:
//! every tensor a model expects must be there with its shape, and every tensor in the file must be used.

use super::numpy;
use super::pickle::{Dtype, Obj, Pickle, Value};
use super::torch::{self, RawTensor};
use crate::error::{ErrorKind, classified};
use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Keys under which training scripts wrap the state dict, tried in this order.
const WRAPPERS: [&str; 3] = ["model_state", "state_dict", "model"];
/// How many names an error message lists.
const SHOW: usize = 5;

/// Container formats recognised by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    TorchZip,
    TorchLegacy,
    /// A plain pickle of (nested) dicts of numpy arrays; names join the dict keys with `/`.
    NumpyPickle,
}

/// Tell the format from the first bytes of a file.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Some(Format::TorchZip);
    }
    // A legacy file opens with the pickled magic number (LONG1 of 10 bytes); a wrong number is
    // still reported as a legacy file with a bad magic, not as an unknown format.
    if torch::is_legacy(bytes) || bytes.starts_with(b"\x80\x02\x8a\x0a") {
        return Some(Format::TorchLegacy);
    }
    if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
        return Some(Format::NumpyPickle);
    }
    if bytes.len() >= 9 {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        if n >= 2 && n <= (bytes.len() - 8) as u64 && bytes[8] == b'{' {
            return Some(Format::Safetensors);
        }
    }
    None
}

/// The tensors of one checkpoint, by name, with a record of which ones the model has taken.
pub struct TensorStore {
    source: String,
    format: Format,
    order: Vec<String>,
    tensors: HashMap<String, Tensor>,
    taken: HashSet<String>,
}

/// Load a checkpoint (safetensors, torch zip or torch legacy, detected by content) onto `device`.
///
/// A wrapped checkpoint (`model_state`, `state_dict` or `model` key) is unwrapped, and a `module.`
/// prefix carried by every name (DataParallel) is removed.
pub fn load(path: &Path, device: &Device) -> Result<TensorStore> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NoInput } else { ErrorKind::Runtime };
        classified(kind, format!("cannot read weights file {shown}: {e}"))
    })?;
    load_bytes(bytes, &shown, device).map_err(|e| classified(ErrorKind::Data, format!("weights file {shown}: {e:#}")))
}

/// [`load`] from bytes already in memory; `source` names them in messages.
pub fn load_bytes(bytes: Vec<u8>, source: &str, device: &Device) -> Result<TensorStore> {
    let format = detect(&bytes).ok_or_else(|| {
        anyhow!("unrecognised format (expected a PyTorch checkpoint, zip or legacy, safetensors, or a pickle of numpy arrays)")
    })?;
    let named: Vec<(String, Tensor)> = match format {
        Format::Safetensors => {
            let map = candle_core::safetensors::load_buffer(&bytes, device).context("reading safetensors")?;
            let mut v: Vec<_> = map.into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        Format::TorchZip => from_checkpoint(&torch::read_zip(&bytes)?, device)?,
        Format::TorchLegacy => from_checkpoint(&torch::read_legacy(bytes)?, device)?,
        Format::NumpyPickle => {
            let arrays = numpy::read_numpy_pickle(&bytes)?;
            if arrays.is_empty() {
                bail!("the pickle holds no numpy arrays");
            }
            arrays.into_iter().map(|(n, raw)| to_candle(raw, device).map(|t| (n, t))).collect::<Result<_>>()?
        }
    };
    TensorStore::new(named, source, format)
}

fn from_checkpoint(ck: &torch::Checkpoint, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let p = &ck.pickle;
    let state = state_dict(p)?;
    let mut out = Vec::new();
    for (k, v) in p.dict(state).unwrap() {
        let (Value::Str(name), Some(t)) = (k, p.tensor(v)) else {
            continue;
        };
        let raw = ck.materialize(t).with_context(|| format!("tensor {name}"))?;
        out.push((name.to_string(), to_candle(raw, device).with_context(|| format!("tensor {name}"))?));
    }
    Ok(out)
}

/// The dict holding the tensors: a wrapper's value when there is one, else the top-level dict.
fn state_dict(p: &Pickle) -> Result<&Value> {
    let root = &p.root;
    let Some(top) = p.dict(root) else {
        bail!("the checkpoint holds a {}, expected a dict of tensors", kind(p, root));
    };
    for w in WRAPPERS {
        if let Some(v) = p.dict_get(root, w)
            && p.dict(v).is_some()
        {
            return Ok(v);
        }
    }
    if top.iter().any(|(_, v)| p.tensor(v).is_some()) {
        return Ok(root);
    }
    let keys: Vec<String> = top.iter().map(|(k, _)| format!("{k:?}")).collect();
    bail!("no tensors found: the top-level dict has no {} entry and no tensors (keys: {})", WRAPPERS.join("/"), torch::first_few(&keys))
}

fn kind(p: &Pickle, v: &Value) -> &'static str {
    match p.obj(v) {
        Some(Obj::Tuple(_)) => "tuple",
        Some(Obj::List(_)) => "list",
        Some(Obj::Tensor(_)) => "single tensor",
        Some(_) => "non-dict object",
        None => "plain value",
    }
}

/// Make a candle tensor of the raw bytes; integer types candle lacks are widened to i64, bool to u8.
pub fn to_candle(raw: RawTensor, device: &Device) -> Result<Tensor> {
    let shape = raw.shape.as_slice();
    let direct = |dt: DType| Tensor::from_raw_buffer(&raw.data, dt, shape, device);
    let widened = |vals: Vec<i64>| Tensor::from_vec(vals, shape, device);
    let t = match raw.dtype {
        Dtype::F32 => direct(DType::F32)?,
        Dtype::F16 => direct(DType::F16)?,
        Dtype::BF16 => direct(DType::BF16)?,
        Dtype::F64 => direct(DType::F64)?,
        Dtype::I64 => direct(DType::I64)?,
        Dtype::U8 | Dtype::Bool => direct(DType::U8)?,
        Dtype::I32 => widened(raw.data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect())?,
        Dtype::I16 => widened(raw.data.chunks_exact(2).map(|c| i16::from_le_bytes(c.try_into().unwrap()) as i64).collect())?,
        Dtype::I8 => widened(raw.data.iter().map(|&b| b as i8 as i64).collect())?,
    };
    Ok(t)
}

impl TensorStore {
    /// Build a store from named tensors; strips a `module.` prefix carried by every name.
    pub fn new(named: Vec<(String, Tensor)>, source: &str, format: Format) -> Result<Self> {
        if named.is_empty() {
            bail!("the checkpoint contains no tensors");
        }
        let strip = named.iter().all(|(n, _)| n.starts_with("module."));
        let mut order = Vec::with_capacity(named.len());
        let mut tensors = HashMap::with_capacity(named.len());
        for (n, t) in named {
            let n = if strip { n["module.".len()..].to_string() } else { n };
            if tensors.insert(n.clone(), t).is_some() {
                bail!("tensor {n} appears twice");
            }
            order.push(n);
        }
        Ok(TensorStore { source: source.to_string(), format, order, tensors, taken: HashSet::new() })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Tensor names in file order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor as stored (its own dtype); does not count as taken.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Every floating-point tensor must be finite as f32: a NaN or an infinity would only show later
    /// as `null` scores. A data error naming the first bad tensor in file order, and where.
    pub fn check_finite(&self) -> Result<()> {
        for name in &self.order {
            let t = &self.tensors[name];
            if !t.dtype().is_float() {
                continue;
            }
            let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(classified(
                    ErrorKind::Data,
                    format!("{}: tensor {name} holds {v} at flat index {i} (weights must be finite)", self.source),
                ));
            }
        }
        Ok(())
    }

    /// Take a tensor for the model: it must exist with exactly `expected` shape; returned as f32.
    pub fn take(&mut self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let Some(t) = self.tensors.get(name) else {
            let unused = self.untaken();
            let hint = if unused.is_empty() {
                String::new()
            } else {
                format!("; {} tensors not yet used, e.g. {}", unused.len(), with_shapes(self, &unused))
            };
            return Err(classified(ErrorKind::Data, format!("{}: missing tensor {name} (expected shape {expected:?}){hint}", self.source)));
        };
        if t.dims() != expected {
            return Err(classified(
                ErrorKind::Data,
                format!("{}: tensor {name} has shape {:?}, expected {expected:?}", self.source, t.dims()),
            ));
        }
        let t = t.to_dtype(DType::F32)?;
        self.taken.insert(name.to_string());
        Ok(t)
    }

    /// Like [`take`](Self::take) for a tensor some layouts omit: `None` when absent.
    pub fn take_optional(&mut self, name: &str, expected: &[usize]) -> Result<Option<Tensor>> {
        if self.contains(name) { self.take(name, expected).map(Some) } else { Ok(None) }
    }

    /// Mark tensors the model deliberately does not use (e.g. `num_batches_tracked`) as taken.
    pub fn ignore(&mut self, pred: impl Fn(&str) -> bool) {
        for n in &self.order {
            if pred(n) {
                self.taken.insert(n.clone());
            }
        }
    }

    /// Rename tensors (a published layout's key map); `f` returns the new name or `None` to keep it.
    pub fn rename(&mut self, f: impl Fn(&str) -> Option<String>) -> Result<()> {
        let mut tensors = HashMap::with_capacity(self.tensors.len());
        let mut order = Vec::with_capacity(self.order.len());
        let mut taken = HashSet::new();
        for n in &self.order {
            let new = f(n).unwrap_or_else(|| n.clone());
            let t = self.tensors[n].clone();
            if tensors.insert(new.clone(), t).is_some() {
                bail!("{}: renaming gives two tensors named {new}", self.source);
            }
            if self.taken.contains(n) {
                taken.insert(new.clone());
            }
            order.push(new);
        }
        self.tensors = tensors;
        self.order = order;
        self.taken = taken;
        Ok(())
    }

    /// Check a whole expected set at once and report every problem: missing tensors (with their
    /// expected shapes), shape mismatches, and tensors the model would not use.
    pub fn verify(&self, expected: &[(&str, &[usize])]) -> Result<()> {
        let mut missing = Vec::new();
        let mut wrong = Vec::new();
        let mut known = HashSet::new();
        for (name, shape) in expected {
            known.insert(*name);
            match self.tensors.get(*name) {
                None => missing.push(format!("{name} {shape:?}")),
                Some(t) if t.dims() != *shape => wrong.push(format!("{name}: expected {shape:?}, found {:?}", t.dims())),
                Some(_) => {}
            }
        }
        let unexpected: Vec<String> = self.order.iter().filter(|n| !known.contains(n.as_str())).cloned().collect();
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("{} missing tensors: {}", missing.len(), list(&missing)));
        }
        if !wrong.is_empty() {
            parts.push(format!("{} shape mismatches: {}", wrong.len(), list(&wrong)));
        }
        if !unexpected.is_empty() {
            parts.push(format!("{} unexpected tensors: {}", unexpected.len(), with_shapes(self, &unexpected)));
        }
        if parts.is_empty() {
            Ok(())
        } else {
            Err(classified(ErrorKind::Data, format!("{} does not fit the model: {}", self.source, parts.join("; "))))
        }
    }

    /// Take a convolution and the BatchNorm after it, folded into one weight and bias (f32).
    ///
    /// Reads `{conv}.weight` (shape `weight_shape`), optional `{conv}.bias`, `{bn}.weight` (optional:
    /// I3D's BN has no scale), `{bn}.bias`, `{bn}.running_mean`, `{bn}.running_var`, and marks
    /// `{bn}.num_batches_tracked` as used.
    pub fn take_conv_bn(&mut self, conv: &str, bn: &str, weight_shape: &[usize], eps: f64) -> Result<(Tensor, Tensor)> {
        let c = *weight_shape.first().ok_or_else(|| anyhow!("take_conv_bn: empty weight shape"))?;
        let w = self.take(&format!("{conv}.weight"), weight_shape)?;
        let b = self.take_optional(&format!("{conv}.bias"), &[c])?;
        let gamma = self.take_optional(&format!("{bn}.weight"), &[c])?;
        let beta = self.take(&format!("{bn}.bias"), &[c])?;
        let mean = self.take(&format!("{bn}.running_mean"), &[c])?;
        let var = self.take(&format!("{bn}.running_var"), &[c])?;
        let nbt = format!("{bn}.num_batches_tracked");
        self.ignore(|n| n == nbt);
        super::bn::fold_bn(&w, b.as_ref(), gamma.as_ref(), &beta, &mean, &var, eps)
    }

    /// Succeed only if every tensor was taken or ignored.
    pub fn finish(self) -> Result<()> {
        let left = self.untaken();
        if left.is_empty() {
            return Ok(());
        }
        Err(classified(
            ErrorKind::Data,
            format!("{}: {} unexpected tensors the model does not use: {}", self.source, left.len(), with_shapes(&self, &left)),
        ))
    }

    fn untaken(&self) -> Vec<String> {
        self.order.iter().filter(|n| !self.taken.contains(*n)).cloned().collect()
    }
}

fn list(items: &[String]) -> String {
    let mut s = items.iter().take(SHOW).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOW {
        s.push_str(", …");
    }
    s
}

fn with_shapes(store: &TensorStore, names: &[String]) -> String {
    let items: Vec<String> = names.iter().take(SHOW).map(|n| format!("{n} {:?}", store.tensors[n].dims())).collect();
    let mut s = items.join(", ");
    if names.len() > SHOW {
        s.push_str(", …");
    }
    s
}
