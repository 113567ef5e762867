#!/usr/bin/env python3
"""Write small hand-made checkpoint fixtures for coinfer's weights tests (standard library only).

Run by hand:  python3 tools/weights/make_fixtures.py tests/fixtures/weights
Outputs are committed. No torch needed: the torch globals the files reference are stand-ins registered
under the names torch uses, so `pickle` writes exactly the GLOBAL / persistent-id records torch.save writes
(protocol 2; zip container as torch >= 1.6 lays it out; legacy container as torch < 1.6 / the
`_use_new_zipfile_serialization=False` path writes it: magic, protocol, sys_info, object, storage keys, then
per storage a little-endian u64 element count and the raw elements).

expected.json lists, per fixture, every tensor the state dict holds: dtype, shape and the exact element bits
(hex, little-endian element value as an unsigned integer), computed here from the logical values, not read
back from the files.
"""

import collections
import io
import json
import pickle
import struct
import sys
import types
import zipfile

# --- stand-ins for the torch / numpy globals -------------------------------------------------------

def _module(name):
    m = sys.modules.get(name) or types.ModuleType(name)
    sys.modules[name] = m
    return m


torch = _module("torch")
torch_utils = _module("torch._utils")


def _named(obj, module, name):
    obj.__module__ = module
    obj.__qualname__ = name
    obj.__name__ = name
    setattr(sys.modules[module], name, obj)
    return obj


def _rebuild_tensor_v2(*a):
    raise RuntimeError("stand-in")


def _rebuild_parameter(*a):
    raise RuntimeError("stand-in")


_named(_rebuild_tensor_v2, "torch._utils", "_rebuild_tensor_v2")
_named(_rebuild_parameter, "torch._utils", "_rebuild_parameter")

# dtype name -> (storage class name, element size, struct code or None for raw 16-bit patterns)
DTYPES = {
    "f32": ("FloatStorage", 4, "<f"),
    "f16": ("HalfStorage", 2, "<e"),
    "bf16": ("BFloat16Storage", 2, None),
    "f64": ("DoubleStorage", 8, "<d"),
    "i64": ("LongStorage", 8, "<q"),
    "i32": ("IntStorage", 4, "<i"),
    "u8": ("ByteStorage", 1, "<B"),
    "bool": ("BoolStorage", 1, "<?"),
}
STORAGE_CLASSES = {}
for dt, (cls, _, _) in DTYPES.items():
    STORAGE_CLASSES[dt] = _named(type(cls, (), {}), "torch", cls)


def bf16_bits(x):
    """bfloat16 by truncation of the f32 bits (values below are chosen exactly representable)."""
    return struct.unpack("<I", struct.pack("<f", x))[0] >> 16


def elem_bytes(dt, v):
    if dt == "bf16":
        return struct.pack("<H", bf16_bits(v))
    return struct.pack(DTYPES[dt][2], v)


def elem_hex(dt, v):
    b = elem_bytes(dt, v)
    return b[::-1].hex()  # the little-endian element as one big-endian hex number


class Storage:
    def __init__(self, key, dt, values):
        self.key, self.dt, self.values = key, dt, values

    def raw(self):
        return b"".join(elem_bytes(self.dt, v) for v in self.values)


class Tensor:
    """A strided view of a Storage; pickles the way torch.Tensor.__reduce_ex__ does."""

    def __init__(self, storage, offset, shape, stride, parameter=False):
        self.storage, self.offset, self.shape, self.stride, self.parameter = storage, offset, shape, stride, parameter

    def __reduce_ex__(self, proto):
        args = (self.storage, self.offset, tuple(self.shape), tuple(self.stride), False, collections.OrderedDict())
        if self.parameter:
            inner = Tensor(self.storage, self.offset, self.shape, self.stride)
            return (_rebuild_parameter, (inner, True, collections.OrderedDict()))
        return (_rebuild_tensor_v2, args)

    def logical(self):
        """Element values in row-major order, applying offset and strides."""
        out = []

        def walk(dim, at):
            if dim == len(self.shape):
                out.append(self.storage.values[at])
                return
            for i in range(self.shape[dim]):
                walk(dim + 1, at + i * self.stride[dim])

        walk(0, self.offset)
        return out


def contiguous(storage, shape, offset=0):
    stride, acc = [], 1
    for d in reversed(shape):
        stride.insert(0, acc)
        acc *= d
    return Tensor(storage, offset, shape, stride)


# numpy stand-ins: a float64 scalar pickles as scalar(dtype('f8'), raw bytes) with dtype BUILD state.
np_multiarray = _module("numpy.core.multiarray")
_module("numpy.core")
numpy = _module("numpy")


def _scalar(*a):
    raise RuntimeError("stand-in")


_named(_scalar, "numpy.core.multiarray", "scalar")
NpDtype = _named(type("dtype", (), {}), "numpy", "dtype")


class DtypeF8:
    def __reduce__(self):
        return (NpDtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 0))


class ScalarF8:
    def __init__(self, v):
        self.v = v

    def __reduce__(self):
        return (_scalar, (DtypeF8(), struct.pack("<d", self.v)))


# --- values ------------------------------------------------------------------------------------------

def lcg_floats(n, seed):
    """Deterministic floats exactly representable in f32 and bf16-truncation friendly."""
    out, x = [], seed
    for _ in range(n):
        x = (1103515245 * x + 12345) % (1 << 31)
        out.append(((x >> 8) % 2001 - 1000) / 64.0)  # multiples of 1/64 in [-15.6, 15.6]
    return out


def state_tensors():
    """Storages and an ordered state dict covering dtypes, views, strides and offsets."""
    s = {}
    st = lambda key, dt, vals: s.setdefault(key, Storage(key, dt, vals))
    conv = st("0", "f32", lcg_floats(4 * 3 * 3 * 3, 1) )
    # Special f32 values: -0.0, the smallest subnormal, the largest finite, 1/3 (inexact decimal).
    conv.values[:4] = [-0.0, struct.unpack("<f", b"\x01\x00\x00\x00")[0], struct.unpack("<f", b"\xff\xff\x7f\x7f")[0], struct.unpack("<f", struct.pack("<f", 1 / 3))[0]]
    sd = collections.OrderedDict()
    sd["s1.conv.weight"] = contiguous(conv, [4, 3, 1, 3, 3])
    bn = st("1", "f32", lcg_floats(10, 2))
    # Four BN vectors sharing one storage at element offsets 0, 2, 4, 6 (views of one buffer).
    for i, n in enumerate(["weight", "bias", "running_mean", "running_var"]):
        sd[f"s1.bn.{n}"] = contiguous(bn, [2], offset=2 * i)
    sd["s1.bn.num_batches_tracked"] = Tensor(st("2", "i64", [123456789012]), 0, [], [])
    # A transposed (Fortran-order) matrix: storage 2x3 row-major, tensor 3x2 with stride (1, 3).
    sd["head.proj.weight"] = Tensor(st("3", "f32", lcg_floats(6, 3)), 0, [3, 2], [1, 3])
    # A non-contiguous slice of a (2, 3, 4) storage: [:, 1:3, 1:3], offset 5 elements.
    sd["s2.slice"] = Tensor(st("4", "f32", lcg_floats(24, 4)), 5, [2, 2, 2], [12, 4, 1])
    sd["s2.half"] = contiguous(st("5", "f16", [0.5, -2.0, 65504.0, 6.103515625e-05, 1 / 1024]), [5])
    sd["s2.bf16"] = contiguous(st("6", "bf16", [1.0, -3.5, 0.15625, 256.0, -0.0, 1e30]), [2, 3])
    sd["s2.f64"] = contiguous(st("7", "f64", [0.1, -1e-300, 3.141592653589793]), [3])
    sd["s2.u8"] = contiguous(st("8", "u8", [0, 1, 128, 255]), [2, 2])
    sd["s2.bool"] = contiguous(st("9", "bool", [True, False, True]), [3])
    sd["s2.i32"] = contiguous(st("10", "i32", [-7, 2147483647]), [2])
    sd["s2.param"] = Tensor(st("11", "f32", [1.25, -2.5]), 0, [2], [1], parameter=True)
    sd["s2.empty"] = Tensor(st("12", "f32", []), 0, [0, 3], [3, 1])
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("s1.bn", {"version": 2})])
    return sd, s


def expected(sd, prefix=""):
    out = {}
    for name, t in sd.items():
        out[prefix + name] = {
            "dtype": t.storage.dt,
            "shape": t.shape,
            "bits": [elem_hex(t.storage.dt, v) for v in t.logical()],
        }
    return out


def wrapped(sd, s):
    """What pyslowfast's save_checkpoint writes: epoch, model_state, optimizer_state, cfg."""
    momentum = Tensor(Storage("13", "f32", [9.0, 9.0]), 0, [2], [1])
    s["13"] = momentum.storage
    return {
        "epoch": 196,
        "model_state": sd,
        "optimizer_state": {"state": {0: {"momentum_buffer": momentum}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "cfg": "TRAIN:\n  ENABLE: False\n",
        "best": ScalarF8(0.6875),
    }


# --- containers ----------------------------------------------------------------------------------------

class ZipPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", STORAGE_CLASSES[obj.dt], obj.key, "cpu", len(obj.values))
        return None


class LegacyPickler(pickle.Pickler):
    def __init__(self, f, views):
        super().__init__(f, protocol=2)
        self.views = views  # storage key -> (root storage, offset in elements)
        self.keys = []

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            if obj.key in self.views:
                root, off = self.views[obj.key]
                if root.key not in self.keys:
                    self.keys.append(root.key)
                return ("storage", STORAGE_CLASSES[obj.dt], root.key, "cpu", len(root.values), (obj.key, off, len(obj.values)))
            if obj.key not in self.keys:
                self.keys.append(obj.key)
            return ("storage", STORAGE_CLASSES[obj.dt], obj.key, "cpu", len(obj.values), None)
        return None


def zput(z, name, data):
    """Add an entry with a fixed timestamp so reruns give identical files."""
    info = zipfile.ZipInfo(name, date_time=(2020, 7, 1, 0, 0, 0))
    info.compress_type = z.compression
    z.writestr(info, data)


def write_zip(path, obj, storages, top="archive", byteorder=True):
    buf = io.BytesIO()
    ZipPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        zput(z, f"{top}/data.pkl", buf.getvalue())
        if byteorder:
            zput(z, f"{top}/byteorder", "little")
        for key in sorted(storages, key=int):
            zput(z, f"{top}/data/{key}", storages[key].raw())
        zput(z, f"{top}/version", "3\n")


def legacy_bytes(obj, storages, views=None):
    f = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
    p = LegacyPickler(f, views or {})
    p.dump(obj)
    pickle.dump(p.keys, f, protocol=2)
    roots = {**storages, **{v[0].key: v[0] for v in (views or {}).values()}}
    for key in p.keys:
        f.write(struct.pack("<Q", len(roots[key].values)))
        f.write(roots[key].raw())
    return f.getvalue()


def safetensors_bytes(tensors):
    """tensors: name -> (dtype tag, shape, raw bytes)."""
    header, data = {}, b""
    for name, (tag, shape, raw) in tensors.items():
        header[name] = {"dtype": tag, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main(out):
    exp = {}

    sd, s = state_tensors()
    write_zip(f"{out}/wrapped_zip.pyth", wrapped(sd, s), s, top="x3d_s")
    exp["wrapped_zip.pyth"] = expected(sd)

    sd, s = state_tensors()
    with open(f"{out}/wrapped_legacy.pyth", "wb") as f:
        f.write(legacy_bytes(wrapped(sd, s), s))
    exp["wrapped_legacy.pyth"] = expected(sd)

    # Legacy view storages (what torch < 1.6 wrote for tensors on a slice of a storage).
    root = Storage("20", "f32", lcg_floats(12, 5))
    view = Storage("21", "f32", root.values[4:10])
    lsd = collections.OrderedDict()
    lsd["a.weight"] = Tensor(view, 1, [2, 2], [1, 2])  # elements 5, 7 / 6, 8 of the root, transposed
    lsd["a.bias"] = contiguous(root, [3], offset=9)
    with open(f"{out}/legacy_views.pth", "wb") as f:
        f.write(legacy_bytes({"state_dict": lsd}, {"20": root}, views={"21": (root, 4)}))
    exp["legacy_views.pth"] = expected(lsd)

    # A plain (unwrapped) DataParallel state dict in the zip container, no byteorder record.
    psd = collections.OrderedDict()
    st = Storage("0", "f32", lcg_floats(6, 7))
    psd["module.fc.weight"] = contiguous(st, [2, 3])
    psd["module.fc.bias"] = contiguous(Storage("1", "f32", [0.25, -0.75]), [2])
    write_zip(f"{out}/plain_module_zip.pth", psd, {"0": st, "1": psd["module.fc.bias"].storage}, byteorder=False)
    exp["plain_module_zip.pth"] = expected(psd)
    exp["plain_module_zip.pth"] = {k[len("module."):]: v for k, v in exp["plain_module_zip.pth"].items()}

    # safetensors with pyslowfast-style names.
    w = lcg_floats(6, 9)
    hv = [1.5, -0.25, 2048.0]
    with open(f"{out}/small.safetensors", "wb") as f:
        f.write(safetensors_bytes({
            "s1.conv.weight": ("F32", [2, 3], b"".join(struct.pack("<f", v) for v in w)),
            "head.b": ("F16", [3], b"".join(struct.pack("<e", v) for v in hv)),
        }))
    exp["small.safetensors"] = {
        "s1.conv.weight": {"dtype": "f32", "shape": [2, 3], "bits": [elem_hex("f32", v) for v in w]},
        "head.b": {"dtype": "f16", "shape": [3], "bits": [elem_hex("f16", v) for v in hv]},
    }

    # --- hostile / malformed files ---
    evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03."
    with zipfile.ZipFile(f"{out}/evil_global_zip.pth", "w", zipfile.ZIP_STORED) as z:
        zput(z, "archive/data.pkl", evil)
    legacy = legacy_bytes({"state_dict": {}}, {})
    head = legacy[: legacy.index(b".") + 1]  # magic pickle
    rest = legacy[len(head):]
    # Same legacy header, but the object pickle calls builtins.eval.
    f = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump({"little_endian": True}, f, protocol=2)
    f.write(b"\x80\x02c__builtin__\neval\nX\x02\x00\x00\x001+\x85R.")
    pickle.dump([], f, protocol=2)
    with open(f"{out}/evil_global_legacy.pth", "wb") as g:
        g.write(f.getvalue())
    good = open(f"{out}/wrapped_legacy.pyth", "rb").read()
    with open(f"{out}/truncated_legacy.pyth", "wb") as g:
        g.write(good[: len(good) - 100])  # cut inside the last storage's data
    with open(f"{out}/truncated_legacy_pickle.pyth", "wb") as g:
        g.write(good[:300])  # cut inside the object pickle
    goodzip = open(f"{out}/wrapped_zip.pyth", "rb").read()
    with open(f"{out}/truncated_zip.pyth", "wb") as g:
        g.write(goodzip[: len(goodzip) // 2])
    with open(f"{out}/wrong_magic.pth", "wb") as g:
        g.write(b"\x80\x02\x8a\x0a" + bytes(10) + rest)
    # Legacy file whose storage count claims 2^61 elements.
    sd2 = collections.OrderedDict(w=contiguous(Storage("0", "f32", [1.0, 2.0]), [2]))
    b = bytearray(legacy_bytes(sd2, {"0": sd2["w"].storage}))
    b[-16:-8] = struct.pack("<Q", 1 << 61)
    with open(f"{out}/huge_count_legacy.pth", "wb") as g:
        g.write(bytes(b))
    # A tensor whose view reaches past its storage (size 3x3 over 4 elements).
    bad = collections.OrderedDict(w=Tensor(Storage("0", "f32", [1.0, 2.0, 3.0, 4.0]), 0, [3, 3], [3, 1]))
    write_zip(f"{out}/out_of_range_zip.pth", bad, {"0": bad["w"].storage})
    # A storage referenced by the pickle but absent from the archive.
    miss = collections.OrderedDict(w=contiguous(Storage("0", "f32", [1.0]), [1]))
    write_zip(f"{out}/missing_storage_zip.pth", miss, {})
    # A zip bomb: one deflated storage entry inflating to 20 MB from about 20 kB.
    bomb = collections.OrderedDict(w=contiguous(Storage("0", "f32", []), [5 * 1024 * 1024]))
    buf = io.BytesIO()
    ZipPickler(buf, protocol=2).dump(bomb)
    with zipfile.ZipFile(f"{out}/zip_bomb.pth", "w", zipfile.ZIP_DEFLATED) as z:
        zput(z, "archive/data.pkl", buf.getvalue())
        zput(z, "archive/data/0", bytes(20 * 1024 * 1024))
    # A checkpoint with no tensors at all (must not load as an empty model).
    write_zip(f"{out}/no_tensors_zip.pth", {"epoch": 3, "cfg": "x"}, {})

    with open(f"{out}/expected.json", "w") as g:
        json.dump(exp, g, indent=1, sort_keys=True)
        g.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/weights")
