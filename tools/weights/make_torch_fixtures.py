#!/usr/bin/env python3
"""Write small checkpoints with real torch.save, in both containers, for coinfer's weights tests.

Run by hand with a torch install (not needed at test time):
    /path/to/venv-with-torch/bin/python tools/weights/make_torch_fixtures.py tests/fixtures/weights/torch
Outputs (committed): zip.pyth (torch >= 1.6 default), legacy.pyth (_use_new_zipfile_serialization=False),
expected.json (per tensor: dtype, shape, element bits as hex, read from torch itself).
"""

import collections
import json
import sys

import torch

BITS = {
    torch.float32: (torch.int32, 8, "f32"),
    torch.float16: (torch.int16, 4, "f16"),
    torch.bfloat16: (torch.int16, 4, "bf16"),
    torch.float64: (torch.int64, 16, "f64"),
    torch.int64: (torch.int64, 16, "i64"),
    torch.int32: (torch.int32, 8, "i32"),
    torch.uint8: (torch.uint8, 2, "u8"),
    torch.bool: (torch.uint8, 2, "bool"),
}


def bits(t):
    as_int, width, tag = BITS[t.dtype]
    c = t.contiguous()
    c = c.to(torch.uint8) if t.dtype == torch.bool else c.view(as_int)
    mask = (1 << (width * 4)) - 1
    return tag, [format(int(v) & mask, f"0{width}x") for v in c.flatten().tolist()]


def main(out):
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv3d(3, 4, (1, 3, 3), bias=False)
    bn = torch.nn.BatchNorm3d(4)
    lin = torch.nn.Linear(6, 5)
    with torch.no_grad():
        for p in [conv.weight, bn.weight, bn.bias, lin.weight, lin.bias]:
            p.copy_(torch.randn(p.shape, generator=g))
        bn.running_mean.copy_(torch.randn(4, generator=g))
        bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
        bn.num_batches_tracked.fill_(1234)
    model = torch.nn.Sequential(collections.OrderedDict(conv=conv, bn=bn, lin=lin))
    sd = model.state_dict()
    base = torch.randn(5, 8, generator=g)
    sd["extra.transposed"] = base.t()  # stride (1, 8)
    sd["extra.offset_view"] = base[1:3, 2:6]  # offset 10 elements, non-contiguous rows
    sd["extra.shared_a"] = base[4]  # shares base's storage at offset 32
    sd["extra.half"] = torch.randn(3, 2, generator=g).half()
    sd["extra.bf16"] = torch.randn(2, 3, generator=g).bfloat16().t()
    sd["extra.f64"] = torch.randn(4, generator=g, dtype=torch.float64)
    sd["extra.u8"] = torch.arange(250, 256, dtype=torch.uint8).reshape(2, 3)
    sd["extra.bool"] = torch.tensor([True, False, True])
    sd["extra.i32"] = torch.tensor([-5, 2**31 - 1], dtype=torch.int32)
    sd["extra.expanded"] = torch.tensor([1.5, -2.5]).expand(3, 2)  # stride (0, 1)
    ckpt = {"epoch": 7, "model_state": sd, "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.1}]}, "cfg": "x: 1\n"}
    torch.save(ckpt, f"{out}/zip.pyth")
    torch.save(ckpt, f"{out}/legacy.pyth", _use_new_zipfile_serialization=False)
    exp = {}
    for k, v in sd.items():
        tag, b = bits(v)
        exp[k] = {"dtype": tag, "shape": list(v.shape), "bits": b}
    with open(f"{out}/expected.json", "w") as f:
        json.dump({"torch": torch.__version__, "tensors": exp}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/weights/torch")
