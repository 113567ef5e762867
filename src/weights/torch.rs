//! PyTorch checkpoint containers: the zip archive (torch >= 1.6) and the legacy sequential-pickle file.
//!
//! Both end as a [`Checkpoint`]: the unpickled object plus the raw bytes of every storage by key, from
//! which tensors are materialised bit-exactly (storage offsets in elements, arbitrary strides).

use super::pickle::{self, Dtype, PersId, Pickle, TensorRef};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;

/// `torch.serialization.MAGIC_NUMBER` (0x1950a86a20f9469cfc6c) as pickled little-endian bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;

/// True when `head` starts like a legacy torch file (`\x80\x02` then LONG1 of the magic number).
pub fn is_legacy(head: &[u8]) -> bool {
    head.len() >= 14 && head[0] == 0x80 && head[1] == 2 && head[2] == 0x8a && head[3] == 10 && head[4..14] == LEGACY_MAGIC
}

/// A tensor copied out of its storage: C-contiguous, little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// An unpickled checkpoint and its storages.
pub struct Checkpoint {
    pub pickle: Pickle,
    buf: Vec<u8>,
    storages: HashMap<String, Range<usize>>,
    big_endian: bool,
}

/// Read a zip-container checkpoint from its bytes.
pub fn read_zip(bytes: &[u8]) -> Result<Checkpoint> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).context("not a readable zip archive")?;
    // The archive's top folder is named after the file torch.save wrote; find it by its data.pkl.
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .ok_or_else(|| anyhow!("zip checkpoint has no data.pkl (entries: {})", first_few(&names)))?
        .clone();
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    // torch stores entries uncompressed; a re-compressed archive is fine, but what all entries
    // inflate to is capped so a zip bomb cannot exhaust memory.
    let mut budget = (bytes.len() as u64).saturating_mul(32).saturating_add(1 << 20);
    let mut entry = |zip: &mut zip::ZipArchive<_>, name: &str| -> Result<Vec<u8>> {
        let f = zip.by_name(name).with_context(|| format!("zip checkpoint: cannot open entry {name}"))?;
        let declared = f.size();
        if declared > budget {
            bail!("zip checkpoint: entry {name} claims {declared} bytes, too many for an archive of {}", bytes.len());
        }
        budget -= declared;
        let mut out = Vec::with_capacity(declared.min(bytes.len() as u64) as usize);
        f.take(declared).read_to_end(&mut out).with_context(|| format!("zip checkpoint: cannot read entry {name}"))?;
        if out.len() as u64 != declared {
            bail!("zip checkpoint: entry {name} is truncated");
        }
        Ok(out)
    };
    let pkl_bytes = entry(&mut zip, &pkl)?;
    let (pickle, _) = pickle::unpickle(&pkl_bytes, PersId::Zip).context("reading data.pkl of the zip checkpoint")?;
    let big_endian = match zip.index_for_name(&format!("{prefix}byteorder")) {
        Some(_) => {
            let b = entry(&mut zip, &format!("{prefix}byteorder"))?;
            match &b[..] {
                b"little" => false,
                b"big" => true,
                _ => bail!("zip checkpoint: unknown byteorder {:?}", String::from_utf8_lossy(&b)),
            }
        }
        None => false,
    };
    let mut buf = Vec::new();
    let mut storages = HashMap::new();
    let keys: Vec<String> = pickle.storages().map(|s| s.key.clone()).collect();
    for key in keys {
        if storages.contains_key(&key) {
            continue;
        }
        let name = format!("{prefix}data/{key}");
        if zip.index_for_name(&name).is_none() {
            bail!("zip checkpoint: storage {key} is referenced but the archive has no {name}");
        }
        let data = entry(&mut zip, &name)?;
        let start = buf.len();
        buf.extend_from_slice(&data);
        storages.insert(key, start..buf.len());
    }
    Ok(Checkpoint { pickle, buf, storages, big_endian })
}

/// Read a legacy (pre-1.6, non-zip) checkpoint: magic, protocol, sys_info, object, storage keys,
/// then for each key a little-endian u64 element count and the raw elements.
pub fn read_legacy(bytes: Vec<u8>) -> Result<Checkpoint> {
    let mut pos = 0;
    let mut next = |persid, what: &str| -> Result<Pickle> {
        let (p, used) = pickle::unpickle(&bytes[pos..], persid).with_context(|| format!("reading the {what} of the legacy checkpoint"))?;
        pos += used;
        Ok(p)
    };
    let magic = next(PersId::None, "magic number")?;
    if !matches!(&magic.root, pickle::Value::BigInt(b) if b[..] == LEGACY_MAGIC) {
        bail!("not a torch legacy checkpoint: wrong magic number");
    }
    let proto = next(PersId::None, "protocol version")?;
    if proto.root != pickle::Value::Int(LEGACY_PROTOCOL) {
        bail!("legacy checkpoint: unsupported protocol version {:?} (expected {LEGACY_PROTOCOL})", proto.root);
    }
    let sys = next(PersId::None, "system info")?;
    let little = sys.dict_get(&sys.root, "little_endian");
    let big_endian = matches!(little, Some(pickle::Value::Bool(false)));
    let pickle = next(PersId::Legacy, "object")?;
    let keys_p = next(PersId::None, "storage key list")?;
    let keys: Vec<String> = match keys_p.obj(&keys_p.root) {
        Some(pickle::Obj::List(l)) => l
            .iter()
            .map(|k| match k {
                pickle::Value::Str(s) => Ok(s.to_string()),
                _ => Err(anyhow!("legacy checkpoint: storage key is not a string")),
            })
            .collect::<Result<_>>()?,
        _ => bail!("legacy checkpoint: storage key list is not a list"),
    };
    let mut dtypes: HashMap<&str, Dtype> = HashMap::new();
    for s in pickle.storages() {
        dtypes.insert(&s.key, s.dtype);
    }
    let mut storages = HashMap::new();
    for key in &keys {
        let dtype = *dtypes.get(key.as_str()).ok_or_else(|| anyhow!("legacy checkpoint: storage {key} is never referenced"))?;
        let count = bytes.get(pos..pos + 8).ok_or_else(|| anyhow!("legacy checkpoint truncated before storage {key}"))?;
        let count = u64::from_le_bytes(count.try_into().unwrap());
        pos += 8;
        let len = count
            .checked_mul(dtype.size() as u64)
            .filter(|&n| n <= (bytes.len() - pos) as u64)
            .ok_or_else(|| anyhow!("legacy checkpoint truncated in storage {key} ({count} elements announced)"))?
            as usize;
        storages.insert(key.clone(), pos..pos + len);
        pos += len;
    }
    for s in pickle.storages() {
        if !storages.contains_key(&s.key) {
            bail!("legacy checkpoint: storage {} is referenced but has no data", s.key);
        }
    }
    Ok(Checkpoint { pickle, buf: bytes, storages, big_endian })
}

impl Checkpoint {
    /// Copy a tensor out of its storage into C-contiguous order.
    pub fn materialize(&self, t: &TensorRef) -> Result<RawTensor> {
        let st = &t.storage;
        let range = self.storages.get(&st.key).ok_or_else(|| anyhow!("storage {} has no data", st.key))?;
        let es = st.dtype.size();
        let mut data = &self.buf[range.clone()];
        if let Some((_, voff, vsize)) = &st.view {
            // Legacy view: a window into the root storage, in elements.
            let start = voff.checked_mul(es as u64).filter(|&s| s <= data.len() as u64);
            let end = voff.checked_add(*vsize).and_then(|e| e.checked_mul(es as u64)).filter(|&e| e <= data.len() as u64);
            match (start, end) {
                (Some(s), Some(e)) => data = &data[s as usize..e as usize],
                _ => bail!("storage view of {} lies outside the storage", st.key),
            }
        }
        let avail = (data.len() / es) as u64;
        let shape: Vec<usize> = t.shape.iter().map(|&d| usize::try_from(d)).collect::<Result<_, _>>()?;
        let numel = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| anyhow!("tensor size overflows"))?;
        let mut out = Vec::new();
        if numel > 0 {
            // The highest element the view touches must lie inside the storage.
            let mut last = t.offset;
            for (&d, &s) in t.shape.iter().zip(&t.stride) {
                last = (d - 1).checked_mul(s).and_then(|x| x.checked_add(last)).ok_or_else(|| anyhow!("tensor strides overflow"))?;
            }
            if last >= avail {
                bail!(
                    "tensor (size {:?}, stride {:?}, offset {}) reaches element {last} of storage {} which has {avail}",
                    t.shape,
                    t.stride,
                    t.offset,
                    st.key
                );
            }
            // Stride-0 views could expand a tiny storage enormously; real checkpoints do not need that.
            if numel > avail && numel > 1 << 26 {
                bail!("tensor of {numel} elements expands a storage of {avail}; refusing");
            }
            out.reserve_exact(numel as usize * es);
            gather(data, es, t.offset as usize, &shape, &t.stride.iter().map(|&s| s as usize).collect::<Vec<_>>(), &mut out);
            if self.big_endian && es > 1 {
                out.chunks_exact_mut(es).for_each(|c| c.reverse());
            }
        }
        Ok(RawTensor { dtype: st.dtype, shape, data: out })
    }
}

/// Append the elements of a strided view to `out` in row-major order.
fn gather(data: &[u8], es: usize, offset: usize, shape: &[usize], stride: &[usize], out: &mut Vec<u8>) {
    let contiguous = {
        let mut expect = 1;
        let mut ok = true;
        for (&d, &s) in shape.iter().zip(stride).rev() {
            if d != 1 && s != expect {
                ok = false;
            }
            expect *= d;
        }
        ok
    };
    if contiguous {
        let n: usize = shape.iter().product();
        out.extend_from_slice(&data[offset * es..(offset + n) * es]);
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    let n: usize = shape.iter().product();
    let mut at = offset;
    for _ in 0..n {
        out.extend_from_slice(&data[at * es..at * es + es]);
        // Odometer increment over the multi-index.
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            at += stride[k];
            if idx[k] < shape[k] {
                break;
            }
            at -= stride[k] * shape[k];
            idx[k] = 0;
        }
    }
}

pub(crate) fn first_few(names: &[String]) -> String {
    let mut s: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    if names.len() > 5 {
        s.push("…");
    }
    s.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_transposed_and_offset() {
        // Storage 0..12 (u8); view of size (3, 2), stride (1, 3), offset 2 => [[2,5],[3,6],[4,7]].
        let data: Vec<u8> = (0..12).collect();
        let mut out = Vec::new();
        gather(&data, 1, 2, &[3, 2], &[1, 3], &mut out);
        assert_eq!(out, vec![2, 5, 3, 6, 4, 7]);
        out.clear();
        gather(&data, 2, 1, &[2, 2], &[2, 1], &mut out);
        assert_eq!(out, vec![2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
