#!/usr/bin/env python3
"""Reference preprocessing for coinfer's tests (run by hand; needs numpy and the ffmpeg CLI).

Decodes a clip with the ffmpeg CLI (`ffmpeg -i CLIP -f rawvideo -pix_fmt rgb24 -`, as docs/models.md, "Preprocessing"
step 1), picks the frames of each model's timeline, and applies the design's preprocessing in numpy:

* frame selection, for a constant-rate source of rate R: model step n takes source frame round(n * R / fps)
  (nearest in time; exact rational arithmetic, ties would go up but none occur for 30 -> 25 or 30 -> 5);
* short-side resize: short side -> S, long side floor((long / short) * S) (float, as pyslowfast), no resize
  when the short side already is S;
* separable bilinear, half-pixel centres, no antialiasing, float64, rows (H) first then columns (W):
  src = (o + 0.5) * (in / out) - 0.5 clamped at 0, taps floor(src) and min(floor(src) + 1, in - 1),
  v = (1 - l) * a + l * b;
* centre crop at ((H' - C) // 2, (W' - C) // 2);
* uint8 crop: floor(v + 0.5) clipped to [0, 255];
* normalisation, float32, CHW: I3D x = f32(u8) / 127.5 - 1; X3D x = (f32(v / 255) - 0.45) / 0.225 on the
  unrounded resized values (pyslowfast resizes float frames).

Writes tests/fixtures/preprocess/<model>.json with, per model step: the source frame index, SHA-256 of the
uint8 crop (HWC bytes) and SHA-256 of the float32 network input (CHW, little-endian), plus a few values.

Usage: python3 tools/preprocess/reference.py [samples/sports2d-demo.mp4] [tests/fixtures/preprocess]
"""

import hashlib
import json
import math
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np

MODELS = [
    # name, model fps, short side, crop, normalisation
    ("i3d", Fraction(25), 256, 224, "signed_unit"),
    ("x3d-s", Fraction(30, 6), 160, 160, "mean_std"),
]
MEAN = np.float32(0.45)
STD = np.float32(0.225)


def probe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height,avg_frame_rate", "-of", "json", path],
        check=True, capture_output=True, text=True).stdout
    s = json.loads(out)["streams"][0]
    num, den = s["avg_frame_rate"].split("/")
    return int(s["width"]), int(s["height"]), Fraction(int(num), int(den))


def frames(path, w, h):
    size = w * h * 3
    p = subprocess.Popen(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         stdout=subprocess.PIPE)
    while True:
        buf = p.stdout.read(size)
        if len(buf) < size:
            assert len(buf) == 0, "short frame from ffmpeg"
            break
        yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    assert p.wait() == 0


def resized_size(w, h, short):
    s, l = min(w, h), max(w, h)
    long_ = l if s == short else int(math.floor((l / s) * short))
    return (short, long_) if h <= w else (long_, short)


def taps(n_in, n_out):
    scale = n_in / n_out
    o = np.arange(n_out, dtype=np.float64)
    src = np.maximum((o + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l = src - i0
    return i0, i1, 1.0 - l, l


def resize(img, out_h, out_w):
    x = img.astype(np.float64)
    i0, i1, w0, w1 = taps(img.shape[0], out_h)
    rows = w0[:, None, None] * x[i0] + w1[:, None, None] * x[i1]
    j0, j1, v0, v1 = taps(img.shape[1], out_w)
    return v0[None, :, None] * rows[:, j0] + v1[None, :, None] * rows[:, j1]


def main():
    clip = sys.argv[1] if len(sys.argv) > 1 else "samples/sports2d-demo.mp4"
    outdir = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/preprocess"
    w, h, rate = probe(clip)
    with open(clip, "rb") as f:
        clip_sha = hashlib.sha256(f.read()).hexdigest()

    plans = []
    for name, fps, short, crop, norm in MODELS:
        rh, rw = resized_size(w, h, short)
        top, left = (rh - crop) // 2, (rw - crop) // 2
        plans.append(dict(name=name, fps=fps, short=short, crop=crop, norm=norm, rh=rh, rw=rw, top=top,
                          left=left, steps=[], samples=[]))

    n_frames = 0
    for k, img in enumerate(frames(clip, w, h)):
        n_frames += 1
        for p in plans:
            # steps n whose nearest source frame is k: round(n * rate / fps) == k
            n = len(p["steps"])
            while math.floor(Fraction(n) * rate / p["fps"] + Fraction(1, 2)) == k:
                v = resize(img, p["rh"], p["rw"])
                c = p["crop"]
                v = v[p["top"]:p["top"] + c, p["left"]:p["left"] + c]
                u8 = np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)
                if p["norm"] == "signed_unit":
                    x = u8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
                else:
                    x = ((v / 255.0).astype(np.float32) - MEAN) / STD
                chw = np.ascontiguousarray(x.transpose(2, 0, 1)).astype("<f4")
                p["steps"].append(dict(step=n, frame=k,
                                       crop_sha256=hashlib.sha256(u8.tobytes()).hexdigest(),
                                       input_sha256=hashlib.sha256(chw.tobytes()).hexdigest()))
                if n % 16 == 0:
                    for (ch, y, xx) in [(0, 0, 0), (1, c // 2, c // 3), (2, c - 1, c - 1)]:
                        p["samples"].append(dict(step=n, c=ch, y=y, x=xx, value=float(chw[ch, y, xx]),
                                                 u8=int(u8[y, xx, ch])))
                n += 1

    os.makedirs(outdir, exist_ok=True)
    for p in plans:
        doc = dict(
            generator="tools/preprocess/reference.py",
            clip=os.path.basename(clip), clip_sha256=clip_sha, width=w, height=h,
            source_fps=str(rate), source_frames=n_frames,
            model=p["name"], model_fps=float(p["fps"]), resize_short=p["short"], crop=p["crop"],
            normalize=p["norm"], resized=[p["rh"], p["rw"]], offset=[p["top"], p["left"]],
            steps=p["steps"], samples=p["samples"])
        path = os.path.join(outdir, p["name"] + ".json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"{path}: {len(p['steps'])} steps, resized {p['rh']}x{p['rw']}, offset {p['top']},{p['left']}")


if __name__ == "__main__":
    main()
