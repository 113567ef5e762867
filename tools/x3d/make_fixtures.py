#!/usr/bin/env python3
"""Build the X3D / CoX3D reference fixtures for coinfer's tests (run by hand, never by tests).

A tiny X3D of the official architecture family (docs/models.md, "X3D") with random weights and
randomised BatchNorm statistics is built three ways and checked against each other before anything is
written:
  * `RefX3D`: plain torch modules named exactly like pyslowfast's state dict (docs/models.md, "X3D");
  * PyTorchVideo's `create_x3d` (hub layout: docs/models.md, "Checkpoint layouts"), loaded with the same weights through the name mapping;
  * CoX3D composed from continual-inference modules (docs/continual.md), loaded from the same pyslowfast state dict.
It then writes the checkpoint containers a reader must handle and the expected outputs.

Usage:  /work/venv-torch/bin/python tools/x3d/make_fixtures.py   (from the repository root)
"""

import io
import json
import math
import os
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

import continual as co

torch.set_grad_enabled(False)
torch.use_deterministic_algorithms(True)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, "tests", "fixtures", "x3d")
SAMPLE = os.path.join(REPO, "samples", "sports2d-demo.mp4")

# ---------------------------------------------------------------------------------------------------
# Configuration (pyslowfast X3D config keys; tiny on purpose)
CFG = OrderedDict(
    DIM_C1=4,  # X3D.DIM_C1 (official 12)
    WIDTH_FACTOR=2.0,  # X3D.WIDTH_FACTOR
    DEPTH_FACTOR=0.3,  # X3D.DEPTH_FACTOR (official 2.2 / 5.0); ceil(0.3*[1,2,5,3]) = [1,1,2,1]
    BOTTLENECK_FACTOR=2.25,  # X3D.BOTTLENECK_FACTOR
    DIM_C5=64,  # X3D.DIM_C5 (official 2048)
    SE_RATIO=0.0625,
    SCALE_RES2=False,
    BN_LIN5=False,
    CROP=48,  # DATA.TRAIN_CROP_SIZE; 48 -> 24,12,6,3,2: an odd map (3) halves to 2 like L's 39 -> 20
    NUM_FRAMES=4,  # DATA.NUM_FRAMES = head temporal pool
    NUM_CLASSES=10,
    BN_EPS=1e-5,
)
T_STREAM = 32  # frames in the uint8 clip / continual stream
T_LONG = 13  # the "longer clip" for the regular model (13 = X3D-S's clip length)
SEED = 4  # picked among seeds 1-8 for the widest 5th-6th class gap (top-5 checks stay meaningful)
MEAN, STD = 0.45, 0.225


def round_width(width, multiplier, min_width=8, divisor=8):
    """pyslowfast/PTV X3D width rounding (docs/models.md, "X3D")."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def derive(cfg):
    stem = round_width(cfg["DIM_C1"], cfg["WIDTH_FACTOR"])
    base = [cfg["DIM_C1"]]
    for _ in range(3):
        base.append(round_width(base[-1], 2.0, divisor=8))
    outs = [round_width(b, cfg["WIDTH_FACTOR"]) for b in base]
    inners = [int(cfg["BOTTLENECK_FACTOR"] * o) for o in outs]
    blocks = [int(math.ceil(cfg["DEPTH_FACTOR"] * r)) for r in [1, 2, 5, 3]]
    se_hidden = [round_width(i, cfg["SE_RATIO"]) for i in inners]
    dins = [stem] + outs[:3]
    head_k = int(math.ceil(cfg["CROP"] / 32))
    return dict(
        stem_width=stem,
        stage_base_dims=base,
        stage_dims_in=dins,
        stage_dims_out=outs,
        stage_dims_inner=inners,
        stage_blocks=blocks,
        stage_se_hidden=se_hidden,
        head_pool_kernel=[cfg["NUM_FRAMES"], head_k, head_k],
        conv5_dim=inners[-1],
    )


D = derive(CFG)


# ---------------------------------------------------------------------------------------------------
# Regular X3D from plain torch modules, module tree = pyslowfast names (docs/models.md, "X3D")
def bn(c):
    return nn.BatchNorm3d(c, eps=CFG["BN_EPS"], momentum=0.1)


class SE(nn.Module):
    def __init__(self, c, hid):
        super().__init__()
        self.fc1 = nn.Conv3d(c, hid, 1, bias=True)
        self.fc2 = nn.Conv3d(hid, c, 1, bias=True)

    def forward(self, x, frame_wise):
        z = x.mean((3, 4) if frame_wise else (2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(z))))


class Branch2(nn.Module):
    def __init__(self, din, dout, inner, hid, stride, use_se):
        super().__init__()
        self.a = nn.Conv3d(din, inner, 1, bias=False)
        self.a_bn = bn(inner)
        self.b = nn.Conv3d(inner, inner, 3, stride=(1, stride, stride), padding=1, groups=inner, bias=False)
        self.b_bn = bn(inner)
        if use_se:
            self.se = SE(inner, hid)
        self.c = nn.Conv3d(inner, dout, 1, bias=False)
        self.c_bn = bn(dout)

    def forward(self, x, frame_wise):
        x = F.relu(self.a_bn(self.a(x)))
        x = self.b_bn(self.b(x))
        if hasattr(self, "se"):
            x = self.se(x, frame_wise)
        x = x * torch.sigmoid(x)  # Swish after SE
        return self.c_bn(self.c(x))


class ResBlock(nn.Module):
    def __init__(self, din, dout, inner, hid, stride, use_se, shortcut_bn=True):
        super().__init__()
        if din != dout or stride != 1:
            self.branch1 = nn.Conv3d(din, dout, 1, stride=(1, stride, stride), bias=False)
            if shortcut_bn:
                self.branch1_bn = bn(dout)
        self.branch2 = Branch2(din, dout, inner, hid, stride, use_se)

    def forward(self, x, frame_wise):
        sc = x
        if hasattr(self, "branch1"):
            sc = self.branch1(x)
            if hasattr(self, "branch1_bn"):
                sc = self.branch1_bn(sc)
        return F.relu(sc + self.branch2(x, frame_wise))


class Stem(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.conv_xy = nn.Conv3d(3, w, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv = nn.Conv3d(w, w, (5, 1, 1), padding=(2, 0, 0), groups=w, bias=False)
        self.bn = bn(w)

    def forward(self, x):
        return F.relu(self.bn(self.conv(self.conv_xy(x))))


class Head(nn.Module):
    def __init__(self, din, inner, c5, ncls, pool):
        super().__init__()
        self.conv_5 = nn.Conv3d(din, inner, 1, bias=False)
        self.conv_5_bn = bn(inner)
        self.avg_pool = nn.AvgPool3d(pool, stride=1)
        self.lin_5 = nn.Conv3d(inner, c5, 1, bias=False)
        self.projection = nn.Linear(c5, ncls, bias=True)

    def forward(self, x):
        """Returns logits per remaining position, (B, T', H', W', classes)."""
        x = F.relu(self.conv_5_bn(self.conv_5(x)))
        x = F.relu(self.lin_5(self.avg_pool(x)))
        return self.projection(x.permute(0, 2, 3, 4, 1))


class RefX3D(nn.Module):
    """pyslowfast X3D; `frame_wise_se` selects SE pooling over (H,W) per frame instead of (T,H,W)."""

    def __init__(self, pool_t=CFG["NUM_FRAMES"], s2_shortcut_bn=True):
        super().__init__()
        self.s1 = nn.Module()
        self.s1.pathway0_stem = Stem(D["stem_width"])
        for s in range(4):
            stage = nn.Module()
            for i in range(D["stage_blocks"][s]):
                din = D["stage_dims_in"][s] if i == 0 else D["stage_dims_out"][s]
                blk = ResBlock(
                    din, D["stage_dims_out"][s], D["stage_dims_inner"][s], D["stage_se_hidden"][s],
                    2 if i == 0 else 1, use_se=(i % 2 == 0), shortcut_bn=(s2_shortcut_bn or s > 0),
                )
                stage.add_module(f"pathway0_res{i}", blk)
            self.add_module(f"s{s + 2}", stage)
        k = D["head_pool_kernel"][1]
        self.head = Head(D["stage_dims_out"][3], D["conv5_dim"], CFG["DIM_C5"], CFG["NUM_CLASSES"], (pool_t, k, k))

    def backbone(self, x, frame_wise_se=False, taps=None):
        x = self.s1.pathway0_stem(x)
        if taps is not None:
            taps["s1"] = x
        for s in range(2, 6):
            for blk in getattr(self, f"s{s}").children():
                x = blk(x, frame_wise_se)
            if taps is not None:
                taps[f"s{s}"] = x
        return x

    def forward(self, x, frame_wise_se=False, taps=None):
        """Returns (logits per position (B,T',H',W',K), probabilities (B,K) = mean of per-position softmax)."""
        logits = self.head(self.backbone(x, frame_wise_se, taps))
        return logits, logits.softmax(-1).mean((1, 2, 3))


def randomise(model, gen):
    """Random weights and BN statistics, scaled so activations stay O(1) through the tiny net."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv3d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
        elif isinstance(m, nn.BatchNorm3d):
            c = m.num_features
            m.weight.copy_(torch.rand(c, generator=gen) * 1.0 + 0.5)
            m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            m.num_batches_tracked.fill_(int(torch.randint(1000, 100000, (1,), generator=gen)))
        elif isinstance(m, nn.Linear):
            # modest logits (std ~1-2) so the top-5 order is not decided by float noise in tiny probabilities
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (0.5 / math.sqrt(m.in_features)))
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


# ---------------------------------------------------------------------------------------------------
# PyTorchVideo hub layout (docs/models.md, "Checkpoint layouts")
def ptv_name(k):
    """pyslowfast key -> PyTorchVideo create_x3d key (None for the s2 shortcut BN that PTV lacks)."""
    p = k.split(".")
    if p[0] == "s1":
        rest = ".".join(p[2:])
        rest = rest.replace("conv_xy.", "@T.").replace("conv.", "@XY.")
        rest = rest.replace("@T.", "conv.conv_t.").replace("@XY.", "conv.conv_xy.").replace("bn.", "norm.")
        return "blocks.0." + rest
    if p[0] == "head":
        m = {"conv_5": "pool.pre_conv", "conv_5_bn": "pool.pre_norm", "lin_5": "pool.post_conv", "projection": "proj"}
        return "blocks.5." + m[p[1]] + "." + ".".join(p[2:])
    stage = int(p[0][1:])
    blk = int(p[1][len("pathway0_res"):])
    pre = f"blocks.{stage - 1}.res_blocks.{blk}."
    if p[2] == "branch1":
        return pre + "branch1_conv." + ".".join(p[3:])
    if p[2] == "branch1_bn":
        if stage == 2 and D["stage_dims_in"][0] == D["stage_dims_out"][0]:
            return None
        return pre + "branch1_norm." + ".".join(p[3:])
    sub = {"a": "conv_a", "a_bn": "norm_a", "b": "conv_b", "b_bn": "norm_b.0", "c": "conv_c", "c_bn": "norm_c"}
    if p[3] == "se":
        fc = {"fc1": "norm_b.1.block.0", "fc2": "norm_b.1.block.2"}[p[4]]
        return pre + "branch2." + fc + "." + ".".join(p[5:])
    return pre + "branch2." + sub[p[3]] + "." + ".".join(p[4:])


def build_ptv(head_activation=None):
    from pytorchvideo.models.x3d import create_x3d

    return create_x3d(
        input_clip_length=CFG["NUM_FRAMES"], input_crop_size=CFG["CROP"], model_num_class=CFG["NUM_CLASSES"],
        dropout_rate=0.5, width_factor=CFG["WIDTH_FACTOR"], depth_factor=CFG["DEPTH_FACTOR"],
        stem_dim_in=CFG["DIM_C1"], bottleneck_factor=CFG["BOTTLENECK_FACTOR"], se_ratio=CFG["SE_RATIO"],
        head_dim_out=CFG["DIM_C5"], head_activation=head_activation,
    ).eval()


# ---------------------------------------------------------------------------------------------------
# CoX3D from continual-inference modules (docs/continual.md), weights copied from RefX3D
def co_conv(m, fill):
    return co.Conv3d.build_from(m, temporal_fill=fill)


def co_se(se, pool_mode):
    """SE as broadcast -> (identity, squeeze chain) -> mul. pool_mode 'co3d': AdaptiveAvgPool3d with temporal
    window 1 (clip-wise in forward(), frame-wise in steps, as published CoX3D); 'frame': per-frame spatial mean
    in every mode (so forward() is the frame-wise-SE network)."""
    if pool_mode == "co3d":
        pool = co.AdaptiveAvgPool3d((1, 1, 1), kernel_size=1)
    else:
        pool = co.Lambda(lambda x: x.mean((-2, -1), keepdim=True))
    squeeze = co.Sequential(OrderedDict(
        avg_pool=pool, fc1=co_conv(se.fc1, "zeros"), relu=nn.ReLU(), fc2=co_conv(se.fc2, "zeros"), sig=nn.Sigmoid(),
    ))
    return co.BroadcastReduce(co.Delay(0), squeeze, reduce="mul")


def co_block(blk, fill, se_mode):
    b2 = blk.branch2
    parts = OrderedDict(a=co_conv(b2.a, fill), a_bn=b2.a_bn, a_relu=nn.ReLU(), b=co_conv(b2.b, fill), b_bn=b2.b_bn)
    if hasattr(b2, "se"):
        parts["se"] = co_se(b2.se, se_mode)
    parts["b_relu"] = co.Lambda(lambda x: x * torch.sigmoid(x))
    parts["c"] = co_conv(b2.c, fill)
    parts["c_bn"] = b2.c_bn
    main = co.Sequential(OrderedDict(branch2=co.Sequential(parts)))
    if hasattr(blk, "branch1"):
        sc = OrderedDict(branch1=co_conv(blk.branch1, fill))
        if hasattr(blk, "branch1_bn"):
            sc["branch1_bn"] = blk.branch1_bn
        short = co.Sequential(sc)
    else:
        short = co.Delay(0)
    # auto_delay pads the shortcut with Delay(branch2.delay) (docs/continual.md, "Temporal shape")
    return co.Sequential(co.BroadcastReduce(short, main, reduce="sum", auto_delay=True), nn.ReLU())


def build_co(ref, fill, pool_t, se_mode="co3d"):
    st = ref.s1.pathway0_stem
    s1 = co.Sequential(OrderedDict(pathway0_stem=co.Sequential(OrderedDict(
        conv_xy=co_conv(st.conv_xy, fill), conv=co_conv(st.conv, fill), bn=st.bn, relu=nn.ReLU(),
    ))))
    top = OrderedDict(s1=s1)
    for s in range(2, 6):
        top[f"s{s}"] = co.Sequential(OrderedDict(
            (n, co_block(b, fill, se_mode)) for n, b in getattr(ref, f"s{s}").named_children()
        ))
    h = ref.head
    k = D["head_pool_kernel"][1]
    top["head"] = co.Sequential(OrderedDict(
        conv_5=co_conv(h.conv_5, fill), conv_5_bn=h.conv_5_bn, relu=nn.ReLU(),
        avg_pool=co.AvgPool3d((pool_t, k, k), stride=1, temporal_fill=fill),
        lin_5=co_conv(h.lin_5, fill), relu2=nn.ReLU(),
        projection=co.Linear(h.projection.in_features, h.projection.out_features, bias=True, channel_dim=1),
        softmax=nn.Softmax(dim=1),
    ))
    model = co.Sequential(top).eval()
    # The BN modules are shared with `ref`; the projection is a fresh co.Linear: load it like a checkpoint.
    sd = co.utils.state_dict(model, flatten=True)
    co.utils.load_state_dict(model, ref.state_dict(), strict=True, flatten=True)
    return model, list(sd.keys())


# ---------------------------------------------------------------------------------------------------
def read_clip():
    """T_STREAM RGB frames, every 6th source frame (5 fps of the 30 fps sample), short side -> CROP, centre crop."""
    c = CFG["CROP"]
    vf = f"select=not(mod(n\\,6)),scale=-2:{c}:flags=bilinear,crop={c}:{c},format=rgb24"
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", SAMPLE, "-vf", vf, "-fps_mode", "passthrough", "-frames:v", str(T_STREAM),
         "-f", "rawvideo", "-"], check=True, capture_output=True,
    ).stdout
    arr = np.frombuffer(raw, np.uint8)
    assert arr.size == T_STREAM * c * c * 3, arr.size
    return arr.reshape(T_STREAM, c, c, 3).copy()


def to_input(clip_u8):
    """(T,H,W,3) uint8 -> (1,3,T,H,W) float32, (x/255 - 0.45)/0.225."""
    x = torch.from_numpy(clip_u8).float() / 255.0
    x = (x - MEAN) / STD
    return x.permute(3, 0, 1, 2).unsqueeze(0).contiguous()


def maxdiff(a, b):
    return float((a - b).abs().max())


def check(name, a, b, tol):
    d = maxdiff(a, b)
    print(f"  {name}: max |diff| = {d:.3e} (tol {tol:g})")
    assert d <= tol, name


def stream(model, x):
    """forward_step over every frame; returns (steps, probs) of the emitted outputs."""
    model.clean_state()
    steps, outs = [], []
    for t in range(x.shape[2]):
        y = model.forward_step(x[:, :, t])
        if y is not None:
            steps.append(t)
            outs.append(y.reshape(y.shape[0], -1))
    return steps, torch.cat(outs, 0)


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(SEED)
    T = CFG["NUM_FRAMES"]

    print("derived:", json.dumps(D))
    ref = RefX3D().eval()
    randomise(ref, gen)
    sd = ref.state_dict()
    n_learn = sum(p.numel() for p in ref.parameters())
    print(f"pyslowfast state dict: {len(sd)} entries, "
          f"{sum(1 for k in sd if not k.endswith('num_batches_tracked'))} without num_batches_tracked, "
          f"{n_learn} learnable scalars")

    clip = read_clip()
    x_all = to_input(clip)
    x4 = x_all[:, :, :T]
    xl = x_all[:, :, :T_LONG]

    # ---- regular model (clip-wise SE), pyslowfast weights
    taps = {}
    logits4, probs4 = ref(x4, taps=taps)
    logits_l, probs_l = ref(xl)
    logits4_fw, probs4_fw = ref(x4, frame_wise_se=True)

    # ---- PyTorchVideo: same weights through the hub name mapping, s2 shortcut BN absent
    print("PyTorchVideo create_x3d cross-check")
    ptv = build_ptv(head_activation=None)
    ptv_keys = list(ptv.state_dict().keys())
    ptv_sd = OrderedDict()
    for k, v in sd.items():
        n = ptv_name(k)
        if n is not None:
            ptv_sd[n] = v
    missing = sorted(set(ptv_keys) - set(ptv_sd))
    unexpected = sorted(set(ptv_sd) - set(ptv_keys))
    assert not missing and not unexpected, (missing, unexpected)
    for k, v in ptv.state_dict().items():
        assert v.shape == ptv_sd[k].shape, (k, v.shape, ptv_sd[k].shape)
    ptv.load_state_dict(ptv_sd, strict=True)
    ptv_logits4 = ptv(x4)
    ptv_logits_l = ptv(xl)
    ref_nobn = RefX3D(s2_shortcut_bn=False).eval()
    ref_nobn.load_state_dict({k: v for k, v in sd.items() if ptv_name(k) is not None}, strict=True)
    check("PTV logits == RefX3D without s2 shortcut BN (T=4)", ptv_logits4, ref_nobn(x4)[0].mean((1, 2, 3)), 1e-5)
    check("PTV logits == RefX3D without s2 shortcut BN (T=13, mean of logits)", ptv_logits_l,
          ref_nobn(xl)[0].mean((1, 2, 3)), 1e-5)
    ptv_soft = build_ptv(head_activation=nn.Softmax)
    ptv_soft.load_state_dict(ptv_sd)
    check("PTV softmax head == RefX3D-noBN probs (T=13)", ptv_soft(xl), ref_nobn(xl)[1], 1e-6)
    # With an identity s2 shortcut BN the pyslowfast module equals PTV (architectures agree elsewhere).
    ref_id = RefX3D().eval()
    ref_id.load_state_dict(sd)
    b = ref_id.s2.pathway0_res0.branch1_bn
    b.weight.fill_(1.0), b.bias.zero_(), b.running_mean.zero_(), b.running_var.fill_(1.0 - CFG["BN_EPS"])
    check("RefX3D(identity s2 shortcut BN) == PTV (T=4)", ref_id(x4)[0].mean((1, 2, 3)), ptv_logits4, 1e-5)

    # ---- CoX3D from continual-inference
    print("CoX3D (continual-inference) checks")
    meta_co = {}
    co_out = {}
    for fill in ["zeros", "replicate"]:
        for pool_t in [T, 2 * T]:
            net, co_keys = build_co(ref, fill, pool_t)
            assert co_keys == list(sd.keys()), "flattened CoX3D names differ from pyslowfast names"
            if pool_t == T:
                # Equivalence statement 1 (docs/continual.md, "Equivalence"): forward(clip) is the regular computation (clip-wise SE in forward mode)
                check(f"co.forward == regular probs, fill={fill}, T=4",
                      net.forward(x4).flatten(2).mean(-1), probs4, 1e-6)
                check(f"co.forward == regular probs, fill={fill}, T=13",
                      net.forward(xl).flatten(2).mean(-1), probs_l, 1e-6)
            steps, probs = stream(net, x_all)
            meta_co[f"{fill}_pool{pool_t}"] = dict(
                delay=int(net.delay), receptive_field=int(net.receptive_field),
                padding=[int(p) for p in net.padding], stride=[int(s) for s in net.stride],
                first_step=steps[0], n_emitted=len(steps),
            )
            co_out[(fill, pool_t)] = (steps, probs)
            print(f"  fill={fill} pool={pool_t}: delay={net.delay} R={net.receptive_field} "
                  f"padding={net.padding} emitted steps {steps[0]}..{steps[-1]}")
            assert steps == list(range(int(net.delay), T_STREAM))

    # Equivalence statement 3 (zeros fill, frame-wise SE) checked with the plain torch network on every prefix.
    d_b = 2 + sum(D["stage_blocks"])
    for pool_t in [T, 2 * T]:
        steps, probs = co_out[("zeros", pool_t)]
        worst = 0.0
        for i, t in enumerate(steps):
            feats = ref.backbone(x_all[:, :, : t + 1], frame_wise_se=True)
            sl = feats[:, :, t - d_b - pool_t + 1: t - d_b + 1]
            h = ref.head
            z = F.relu(h.conv_5_bn(h.conv_5(sl)))
            z = F.avg_pool3d(z, (pool_t, *D["head_pool_kernel"][1:]), stride=1)
            z = h.projection(F.relu(h.lin_5(z)).permute(0, 2, 3, 4, 1)).softmax(-1).reshape(1, -1)
            worst = max(worst, maxdiff(z, probs[i]))
        print(f"  statement 3 (prefix oracle), pool={pool_t}: max |diff| = {worst:.3e}")
        assert worst < 1e-5
    # Equivalence statement 4: steady state does not depend on the fill
    for pool_t in [T, 2 * T]:
        R = meta_co[f"zeros_pool{pool_t}"]["receptive_field"]
        sz, pz = co_out[("zeros", pool_t)]
        sr, pr = co_out[("replicate", pool_t)]
        a = pz[[i for i, t in enumerate(sz) if t >= R - 1]]
        b = pr[[i for i, t in enumerate(sr) if t >= R - 1]]
        check(f"steady state zeros == replicate, pool={pool_t} (steps >= {R - 1})", a, b, 1e-6)
        before = maxdiff(pz[[i for i, t in enumerate(sz) if t == R - 2]], pr[[i for i, t in enumerate(sr) if t == R - 2]])
        print(f"    step R-2 differs by {before:.3e} (transient)")
        assert before > 0.0

    # Equivalence statement 2: one-clip flush, with a network whose SE is frame-wise in forward and step modes
    net_fw, _ = build_co(ref, "zeros", T, se_mode="frame")
    check("frame-wise co.forward == RefX3D frame-wise SE (T=4)", net_fw.forward(x4).flatten(2).mean(-1), probs4_fw, 1e-6)
    net_fw.clean_state()
    flush = net_fw.forward_steps(x4, pad_end=True)
    flush = flush.reshape(1, CFG["NUM_CLASSES"])
    check("forward_steps(clip, pad_end=True) == regular frame-wise-SE forward (T=4)", flush, probs4_fw, 1e-6)

    # ---------------------------------------------------------------------------------------------
    write_checkpoints(sd, ptv_sd)
    tensors = OrderedDict()
    tensors["clip_u8"] = torch.from_numpy(clip)
    tensors["reg_logits_t4"] = logits4.reshape(1, CFG["NUM_CLASSES"]).contiguous()
    tensors["reg_probs_t4"] = probs4.contiguous()
    for s in ["s1", "s2", "s3", "s4", "s5"]:
        tensors[f"reg_{s}_t4"] = taps[s].contiguous()
    tensors["reg_logits_t13"] = logits_l.reshape(1, -1, CFG["NUM_CLASSES"]).contiguous()  # (B, T', K); H'=W'=1
    tensors["reg_probs_t13"] = probs_l.contiguous()
    tensors["regfw_logits_t4"] = logits4_fw.reshape(1, CFG["NUM_CLASSES"]).contiguous()
    tensors["regfw_probs_t4"] = probs4_fw.contiguous()
    tensors["cofw_flush_probs_t4"] = flush.contiguous()
    tensors["ptv_logits_t4"] = ptv_logits4.contiguous()
    tensors["ptv_logits_t13"] = ptv_logits_l.contiguous()
    for (fill, pool_t), (steps, probs) in co_out.items():
        tensors[f"co_{fill}_pool{pool_t}_steps"] = torch.tensor(steps, dtype=torch.int64)
        tensors[f"co_{fill}_pool{pool_t}_probs"] = probs.contiguous()
    save_file(dict(tensors), os.path.join(OUT, "expected.safetensors"))
    # smallest gap between the 5th and 6th class over every probability row: a top-5 comparison is only
    # meaningful if this is far above the 1e-4 tolerance
    rows = torch.cat([v.reshape(-1, CFG["NUM_CLASSES"]) for k, v in tensors.items()
                      if k.endswith("_probs") or "_probs_" in k])
    srt = rows.sort(-1, descending=True).values
    top5_margin = float((srt[:, 4] - srt[:, 5]).min())
    print(f"smallest 5th-6th probability gap over all fixtures: {top5_margin:.3e}")
    lg = torch.cat([tensors[k].reshape(-1, CFG["NUM_CLASSES"]) for k in tensors if "logits" in k])
    lg = lg.sort(-1, descending=True).values
    top5_logit_margin = float((lg[:, 4] - lg[:, 5]).min())
    print(f"smallest 5th-6th logit gap over all fixtures: {top5_logit_margin:.3e}")

    config = OrderedDict(
        description="tiny X3D reference for coinfer tests; see tools/x3d/README.md",
        seed=SEED,
        cfg=CFG,
        derived=dict(
            D, stage_se_blocks=[[i for i in range(n) if i % 2 == 0] for n in D["stage_blocks"]],
            stage_spatial_stride=[2, 2, 2, 2], feature_sizes=[CFG["CROP"] // 2] + [
                int(math.ceil(CFG["CROP"] / 2 ** (s + 2))) for s in range(4)],
            n_blocks=sum(D["stage_blocks"]), backbone_delay=d_b, backbone_receptive_field=1 + 2 * d_b,
            state_dict_entries=len(sd), state_dict_entries_without_nbt=sum(
                1 for k in sd if not k.endswith("num_batches_tracked")),
            learnable_scalars=n_learn, ptv_state_dict_entries=len(ptv_sd),
            ptv_learnable_scalars=n_learn - 2 * D["stage_dims_out"][0],
        ),
        min_top5_probability_gap=top5_margin,
        min_top5_logit_gap=top5_logit_margin,
        normalisation=dict(formula="(x/255 - mean)/std per channel, RGB", mean=[MEAN] * 3, std=[STD] * 3),
        clip=dict(
            tensor="clip_u8", layout="T,H,W,C (RGB)", frames=T_STREAM, source="samples/sports2d-demo.mp4",
            ffmpeg_vf=f"select=not(mod(n\\,6)),scale=-2:{CFG['CROP']}:flags=bilinear,crop={CFG['CROP']}:{CFG['CROP']}",
            note="every 6th source frame (30 fps -> 5 fps); the fixture bytes, not ffmpeg, are the reference",
            long_clip_frames=T_LONG,
        ),
        continual=OrderedDict(
            (k, dict(v, fill=k.split("_")[0], pool=int(k.split("pool")[1]))) for k, v in meta_co.items()
        ),
        continual_notes=(
            "SE is frame-wise in step mode (published CoX3D). Per-step outputs are softmax probabilities, "
            "emitted at steps delay..T_STREAM-1. Flush fixture: a network whose SE pools per frame in both "
            "forward and step modes, zeros fill, pool NUM_FRAMES, fresh state, forward_steps(clip[:4], pad_end=True)."
        ),
        library=dict(torch=torch.__version__, continual_inference=co.__version__,
                     pytorchvideo=__import__("pytorchvideo").__version__),
    )
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {OUT}: {total} bytes in {len(os.listdir(OUT))} files")


def write_checkpoints(sd, ptv_sd):
    cfg_text = "# pyslowfast-style config (tiny X3D fixture)\n" + "\n".join(f"X3D.{k}: {v}" for k, v in CFG.items())
    # a small but real-looking SGD state: momentum buffers for two params, param_groups with ids
    opt = {
        "state": {0: {"momentum_buffer": torch.full((3,), 0.5)}, 1: {"momentum_buffer": torch.arange(4.0)}},
        "param_groups": [{"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-5, "dampening": 0.0, "nesterov": True,
                          "params": list(range(len(sd)))}],
    }
    ckpt = {"epoch": 1, "model_state": sd, "optimizer_state": opt, "cfg": cfg_text}
    torch.save(ckpt, os.path.join(OUT, "x3d_tiny_pyslowfast.pyth"))
    torch.save(ckpt, os.path.join(OUT, "x3d_tiny_pyslowfast_legacy.pyth"), _use_new_zipfile_serialization=False)
    # PTV hub: {"model_state": ...} read by hub/x3d.py as checkpoint["model_state"]
    torch.save({"model_state": ptv_sd}, os.path.join(OUT, "x3d_tiny_ptv.pyth"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(OUT, "x3d_tiny_pyslowfast.safetensors"))
    # corner cases: fp16 floats (int64 kept), and a transposed (non-contiguous) tensor in both containers
    half = OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd.items())
    torch.save({"epoch": 1, "model_state": half}, os.path.join(OUT, "x3d_tiny_pyslowfast_fp16.pyth"))
    # A few tensors only (kept small): same values as `sd`, odd storage layouts.
    odd = OrderedDict()
    odd["s1.pathway0_stem.conv.weight"] = sd["s1.pathway0_stem.conv.weight"]
    odd["s1.pathway0_stem.bn.num_batches_tracked"] = sd["s1.pathway0_stem.bn.num_batches_tracked"]
    w = sd["head.projection.weight"]
    odd["head.projection.weight"] = w.t().contiguous().t()  # same values, column-major strides
    assert not odd["head.projection.weight"].is_contiguous()
    w5 = sd["head.lin_5.weight"]
    odd["head.lin_5.weight"] = w5.permute(4, 3, 2, 1, 0).contiguous().permute(4, 3, 2, 1, 0)
    # a view with a non-zero storage offset: torch saves the whole 17-element storage
    big = torch.cat([torch.zeros(7), sd["head.projection.bias"]])
    odd["head.projection.bias"] = big[7:]
    torch.save({"epoch": 1, "model_state": odd}, os.path.join(OUT, "x3d_tiny_pyslowfast_strided.pyth"))
    torch.save({"epoch": 1, "model_state": odd}, os.path.join(OUT, "x3d_tiny_pyslowfast_strided_legacy.pyth"),
               _use_new_zipfile_serialization=False)
    for n in ["x3d_tiny_pyslowfast.pyth", "x3d_tiny_ptv.pyth", "x3d_tiny_pyslowfast_fp16.pyth",
              "x3d_tiny_pyslowfast_strided.pyth"]:
        assert zipfile.is_zipfile(os.path.join(OUT, n)), n
    for n in ["x3d_tiny_pyslowfast_legacy.pyth", "x3d_tiny_pyslowfast_strided_legacy.pyth"]:
        assert not zipfile.is_zipfile(os.path.join(OUT, n)), n
    # round trip: every container reads back bit-exactly
    for n in ["x3d_tiny_pyslowfast.pyth", "x3d_tiny_pyslowfast_legacy.pyth", "x3d_tiny_pyslowfast_strided.pyth",
              "x3d_tiny_pyslowfast_strided_legacy.pyth"]:
        back = torch.load(os.path.join(OUT, n), weights_only=True)["model_state"]
        assert all(torch.equal(back[k], sd[k]) for k in back), n
        assert len(back) == (len(sd) if "strided" not in n else 5), n


if __name__ == "__main__":
    sys.exit(main())
