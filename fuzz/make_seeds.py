#!/usr/bin/env python3
"""Seed inputs for the fuzz targets, written to fuzz/corpus/TARGET/ (docs/testing.md, "Fuzzing").

Standard library only, plus the ffmpeg CLI for the y4m seeds. Each seed is laid out as its target reads
its input (a leading selector byte where the target has one). Run from the repository root:

    python3 fuzz/make_seeds.py
"""

import json
import os
import shutil
import struct
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def raw():
    # Selector byte (an index into LAYOUTS in fuzz_targets/raw.rs), then the stream: two whole frames,
    # and one whole frame and a byte.
    frame_bytes = [3, 18, 16, 6, 27, 12, 27, 8]
    for pick, size in enumerate(frame_bytes):
        write("raw", f"layout{pick}_two", bytes([pick]) + bytes(i % 256 for i in range(2 * size)))
        write("raw", f"layout{pick}_torn", bytes([pick]) + bytes(i % 256 for i in range(size + 1)))


def y4m():
    if shutil.which("ffmpeg") is None:
        print("ffmpeg not found: no y4m seeds")
        return
    for pix_fmt, size in [("yuv420p", "8x8"), ("yuv444p", "4x6"), ("gray", "5x3"), ("yuv422p", "6x2"), ("yuv420p10le", "4x4")]:
        clip = subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=5", "-frames:v", "3",
             "-pix_fmt", pix_fmt, "-strict", "-1", "-f", "yuv4mpegpipe", "-"],
            check=True, capture_output=True).stdout
        write("y4m", f"{pix_fmt}_{size}.y4m", clip)
        write("y4m", f"{pix_fmt}_{size}_torn.y4m", clip[: len(clip) - 5])


def safetensors():
    # Two bytes (the header's length, little-endian), the JSON header, the data.
    def file(tensors):
        header, data = {}, b""
        for name, dtype, shape, payload in tensors:
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
            data += payload
        header["__metadata__"] = {"format": "pt"}
        text = json.dumps(header).encode()
        return struct.pack("<H", len(text)) + text + data

    write("safetensors", "f32", file([("a.weight", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))]))
    write("safetensors", "mixed", file([
        ("x", "F16", [3], b"\x00\x3c" * 3), ("y", "BF16", [1, 2], b"\x80\x3f" * 2),
        ("z", "I64", [1], struct.pack("<q", 7)), ("u", "U8", [4], b"abcd"), ("e", "F32", [0], b"")]))
    write("safetensors", "nan", file([("n", "F32", [1], struct.pack("<f", float("nan")))]))
    write("safetensors", "f64", file([("d", "F64", [2, 1], struct.pack("<2d", 1.5, -2))]))


def labels():
    # Mode byte: even = a file (then a byte choosing txt, json or csv), odd = a list of names.
    write("labels", "txt", b"\x00\x00run\njump, high\n\nswim\n")
    write("labels", "json", b'\x00\x01{"run": 0, "jump, high": 1, "swim": 2}')
    write("labels", "csv", b'\x00\x02id,name\n0,run\n1,"jump, ""high"""\n2,swim\n')
    write("labels", "bom_json", b'\x00\x01\xef\xbb\xbf{"a": 1, "b": 0}')
    write("labels", "names", b'\x01run\n  jump, "high"  \n\nswim\r\n')
    write("labels", "names_twice", b"\x01a\nb\na\n")
    with open(os.path.join(ROOT, "src", "labels", "kinetics400.txt"), "rb") as f:
        write("labels", "kinetics400_head", b"\x00\x00" + f.read()[:2000])


def cli():
    # Mode 0: an argument vector, NUL between arguments; mode i: a value for OPTIONS[i - 1] in
    # fuzz_targets/cli.rs.
    argvs = [
        ["clip.mp4"], ["-k", "3", "--smooth", "ema:0.3", "--hold", "3", "clip.mp4"],
        ["run", "--raw", "640x360", "--fps", "30", "-"], ["batch", "d", "--jobs", "2", "--shard", "0/4", "--out", "x.csv"],
        ["bench", "--steps", "10", "--model", "x3d-s"], ["flops", "--pool", "4"], ["models", "--json"],
        ["weights", "pull", "i3d"], ["run", "--pool", "16", "--threads", "2", "--max-lag", "1", "--threshold", "0.5", "-"],
        ["--help"], ["labels"], ["run", "--overlay", "o.mp4", "--overlay-crf", "23", "x"],
    ]
    for i, argv in enumerate(argvs):
        write("cli", f"argv{i}", b"\x00" + b"\x00".join(a.encode() for a in argv))
    values = ["30", "1", "0.5", "mean:8", "640x360", "16", "2", "5", "3", "23", "0/4", "2", "4", "100", "5", "2", "8"]
    for i, value in enumerate(values):
        write("cli", f"option{i + 1}", bytes([i + 1]) + value.encode())


def checkpoint():
    fixtures = os.path.join(ROOT, "tests", "fixtures", "weights")
    for folder in [fixtures, os.path.join(fixtures, "numpy"), os.path.join(fixtures, "torch")]:
        for name in sorted(os.listdir(folder)):
            if name.endswith((".pth", ".pyth", ".pkl", ".safetensors")):
                with open(os.path.join(folder, name), "rb") as f:
                    write("checkpoint", name, f.read())


if __name__ == "__main__":
    for make in [raw, y4m, safetensors, labels, cli, checkpoint]:
        make()
    print(f"seeds written under {CORPUS}")
