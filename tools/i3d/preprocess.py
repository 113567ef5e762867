#!/usr/bin/env python3
"""Reference preprocessing of docs/models.md, "Preprocessing" (exactly what the fixtures were made with).

1. decode with the ffmpeg CLI to rgb24 (`ffmpeg -i IN -f rawvideo -pix_fmt rgb24 -`: BT.709 limited range
   for the sports2d clip, as tagged);
2. 25 fps: clip frame n <- source frame round(n*30/25) = floor((12n + 5) / 10) (for a 30 fps source);
3. resize so the short side is 256 (long side floor(long*256/short)): separable bilinear, half-pixel centres
   src = (o + 0.5) * in / out - 0.5 clamped at 0, taps floor(src) and min(floor(src)+1, in-1), weights
   (1 - f, f), no antialiasing, float64, rows (H) first then columns (W), no rounding between the passes;
   then round half up floor(v + 0.5), clip to [0, 255], uint8;
4. centre crop 224x224 at ((H-224)//2, (W-224)//2) ((16, 115) for 256x455).

Run directly to print per-frame SHA-256 of the crops:  python tools/i3d/preprocess.py samples/sports2d-demo.mp4
"""

import hashlib
import json
import subprocess
import sys

import numpy as np

CROP = 224
SHORT = 256


def probe(path):
    """(width, height, fps as a fraction string) of the first video stream, via ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height,r_frame_rate",
         "-of", "json", path], check=True, capture_output=True).stdout
    s = json.loads(out)["streams"][0]
    return s["width"], s["height"], s["r_frame_rate"]


def decode_rgb24(path):
    """All decoded frames as uint8 (N, H, W, 3), exactly as the ffmpeg CLI converts them."""
    w, h, _ = probe(path)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-"], check=True, capture_output=True).stdout
    frame = w * h * 3
    if len(raw) % frame:
        raise ValueError(f"{len(raw)} bytes is not a whole number of {w}x{h} frames")
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def pick_25fps(n_src):
    """Source indices of the 25 fps clip frames for a 30 fps source: floor((12n + 5) / 10) < n_src."""
    idx = []
    n = 0
    while (12 * n + 5) // 10 < n_src:
        idx.append((12 * n + 5) // 10)
        n += 1
    return idx


def taps(n_in, n_out):
    """Half-pixel bilinear taps: (i0, i1, f) arrays for each output index."""
    o = np.arange(n_out, dtype=np.float64)
    src = (o + 0.5) * n_in / n_out - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.floor(src).astype(np.int64)
    f = src - i0
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, f


def resized_size(h, w):
    if h <= w:
        return SHORT, w * SHORT // h
    return h * SHORT // w, SHORT


def resize_u8(img, out_h, out_w):
    """(H, W, 3) uint8 -> (out_h, out_w, 3) uint8, bilinear as described in the module docstring."""
    x = img.astype(np.float64)
    r0, r1, fr = taps(img.shape[0], out_h)
    fr = fr[:, None, None]
    x = (1.0 - fr) * x[r0] + fr * x[r1]  # rows first
    c0, c1, fc = taps(img.shape[1], out_w)
    fc = fc[None, :, None]
    x = (1.0 - fc) * x[:, c0] + fc * x[:, c1]  # then columns
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def centre_crop(img):
    top, left = (img.shape[0] - CROP) // 2, (img.shape[1] - CROP) // 2
    return np.ascontiguousarray(img[top:top + CROP, left:left + CROP])


def preprocess(path, max_frames=None):
    """Preprocessed 224x224 uint8 RGB frames (N, 224, 224, 3) of the 25 fps clip."""
    w, h, rate = probe(path)
    if rate != "30/1":
        raise ValueError(f"this reference only implements 30 -> 25 fps; stream rate is {rate}")
    src = decode_rgb24(path)
    idx = pick_25fps(len(src))
    if max_frames is not None:
        idx = idx[:max_frames]
    out_h, out_w = resized_size(h, w)
    return np.stack([centre_crop(resize_u8(src[i], out_h, out_w)) for i in idx]), idx


def frame_sha256(frames):
    return [hashlib.sha256(f.tobytes()).hexdigest() for f in frames]


def normalise(frames_u8):
    """uint8 (..., 3) -> float32 in [-1, 1]: x / 127.5 - 1, computed in float32."""
    return frames_u8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


if __name__ == "__main__":
    frames, idx = preprocess(sys.argv[1])
    for n, (i, h) in enumerate(zip(idx, frame_sha256(frames))):
        print(n, i, h)
