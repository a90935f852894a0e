# --- cell: imports
from __future__ import annotations
import copy, math

import torch
from torch import nn
import torch.nn.functional as F

from compress_papers.core import check_choice, check_int

# --- cell: profile
LAYER_TYPES = {nn.Conv2d: "conv", nn.Linear: "linear", nn.MaxPool2d: "pool", nn.AvgPool2d: "pool", nn.AdaptiveAvgPool2d: "pool",
               nn.BatchNorm2d: "batchnorm", nn.ReLU: "relu", nn.LocalResponseNorm: "lrn"}
TENSOR_TYPES = ("conv", "linear")                      # layers with tensor-like weights; the rest are the paper's non-tensor layers

@torch.no_grad()
def time_by_type(model: nn.Module, input_shape=(1, 1, 28, 28), repeats: int = 20, warmup: int = 3) -> dict:
    """CPU time per layer type (ms per forward pass) over `repeats` passes of `model` on zeros of `input_shape` (after
    `warmup`), from torch.profiler: each leaf layer of a type in `LAYER_TYPES` is a labelled range, concatenation is
    aten::cat's own time, and 'other' is the rest of the forward pass (flatten, Python, dispatch)."""
    check_int("repeats", repeats, 1); check_int("warmup", warmup, 0)
    from torch.profiler import ProfilerActivity, profile, record_function
    model = model.eval(); x = torch.zeros(input_shape, device=next(model.parameters()).device)
    for _ in range(warmup): model(x)
    open_, hooks = {}, []
    def pre(m, inp):
        r = record_function(f"layer::{LAYER_TYPES[type(m)]}"); r.__enter__(); open_[id(m)] = r
    def post(m, inp, out): open_.pop(id(m)).__exit__(None, None, None)
    for m in model.modules():
        if type(m) in LAYER_TYPES: hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                with record_function("forward"): model(x)
    finally:
        for h in hooks: h.remove()
    ev = {e.key: e for e in prof.key_averages()}
    out = {k.removeprefix("layer::"): e.cpu_time_total / 1000 / repeats for k, e in ev.items() if k.startswith("layer::")}
    out["concat"] = ev["aten::cat"].self_cpu_time_total / 1000 / repeats if "aten::cat" in ev else 0.0
    out["other"] = max(0.0, ev["forward"].cpu_time_total / 1000 / repeats - sum(out.values()))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))

def non_tensor_share(times: dict) -> float:
    "The share of the forward pass's CPU time outside the tensor layers (conv, linear), 'other' included."
    total = sum(times.values())
    return sum(v for k, v in times.items() if k not in TENSOR_TYPES) / total if total else float("nan")

# --- cell: folds
def _check_eval(*mods):
    for m in mods:
        if m.training: raise ValueError(f"an exact fold needs eval mode (running statistics); {type(m).__name__} is in training mode: call .eval() first")

@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv → BN (eval) as one conv: W' = W·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β (exact)."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d): raise TypeError("fold_conv_bn folds an nn.Conv2d followed by an nn.BatchNorm2d")
    if bn.num_features != conv.out_channels: raise ValueError(f"the BatchNorm has {bn.num_features} channels, the conv {conv.out_channels} outputs")
    _check_eval(conv, bn)
    return torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)

@torch.no_grad()
def fold_conv_avgpool(conv: nn.Conv2d, pool: nn.AvgPool2d) -> nn.Conv2d:
    """conv (kernel k, stride s, no dilation or groups) → average pooling (kernel p, stride p, no padding) as one conv of
    kernel k + s(p − 1) and stride s·p: the conv's weights averaged over the pool's window (exact)."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(pool, nn.AvgPool2d): raise TypeError("fold_conv_avgpool folds an nn.Conv2d followed by an nn.AvgPool2d")
    p = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    ps = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
    if ps != p or pool.padding not in (0, (0, 0)) or pool.ceil_mode:
        raise ValueError(f"fold_conv_avgpool needs a non-overlapping pool (stride = kernel, no padding, floor mode); got kernel {p}, stride {ps}, padding {pool.padding}")
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.stride[0] != conv.stride[1] or conv.kernel_size[0] != conv.kernel_size[1]:
        raise ValueError("fold_conv_avgpool needs a square conv with one group and no dilation")
    k, s = conv.kernel_size[0], conv.stride[0]
    K = k + s * (p - 1)
    W = conv.weight.new_zeros(conv.out_channels, conv.in_channels, K, K)
    for i in range(p):
        for j in range(p): W[:, :, s * i:s * i + k, s * j:s * j + k] += conv.weight / p ** 2
    out = nn.Conv2d(conv.in_channels, conv.out_channels, K, s * p, conv.padding, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    out.weight.copy_(W)
    if conv.bias is not None: out.bias.copy_(conv.bias)
    return out.to(conv.weight.device)

# --- cell: profile-by-op (the first draft, kept to compare with time_by_type on an idle machine)
OP_TYPES = {"conv": "conv", "addmm": "linear", "mm": "linear", "linear": "linear", "max_pool": "pool", "avg_pool": "pool",
            "adaptive_avg_pool": "pool", "batch_norm": "batchnorm", "relu": "relu", "local_response_norm": "lrn", "cat": "concat"}

def op_type(name: str) -> str:
    "The layer type an aten op belongs to (LRN decomposes into avg_pool3d, pow, div: it lands in 'pool' and 'other')."
    n = name.lower().removeprefix("aten::")
    for k, v in OP_TYPES.items():
        if k in n: return v
    return "other"

@torch.no_grad()
def time_by_op(model: nn.Module, input_shape=(1, 1, 28, 28), repeats: int = 20, warmup: int = 3) -> dict:
    "CPU self time of the aten ops per layer type (ms per forward pass)."
    from torch.profiler import ProfilerActivity, profile
    model = model.eval(); x = torch.zeros(input_shape, device=next(model.parameters()).device)
    for _ in range(warmup): model(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats): model(x)
    out = {}
    for e in prof.key_averages():
        if e.key.startswith("aten::"): out[op_type(e.key)] = out.get(op_type(e.key), 0.0) + e.self_cpu_time_total / 1000 / repeats
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
