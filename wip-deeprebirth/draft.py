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

# --- cell: streamline
from compress_papers.models import Inception

NON_TENSOR = (nn.BatchNorm2d, nn.ReLU, nn.LocalResponseNorm, nn.MaxPool2d, nn.AvgPool2d)

def _pair(v): return v if isinstance(v, tuple) else (v, v)

def streamline(features: nn.Sequential, start: int, stop: int, input_shape, grow_kernel: bool = False) -> tuple[nn.Sequential, int]:
    """Streamline slimming (our reading of the paper, from secondary descriptions): the chain `features[start:stop]`,
    conv → non-tensor layers (BN, ReLU, LRN, one max or average pool, in any order after the conv), becomes one newly
    initialised conv with the pool's stride multiplied into its own, followed by ReLU. The kernel is kept (`grow_kernel`
    False) or grown to k + s(p − 1) to keep the receptive field; the padding is the one that keeps the chain's output size.
    `input_shape` is the model's input (to size the chain). Returns a new Sequential and the index of the new conv."""
    if not isinstance(features, nn.Sequential): raise TypeError("streamline works on an nn.Sequential of layers")
    chain = list(features)[start:stop]
    pools = [m for m in chain[1:] if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    if not chain or not isinstance(chain[0], nn.Conv2d) or not all(isinstance(m, NON_TENSOR) for m in chain[1:]) or len(pools) != 1:
        raise ValueError("streamline merges conv → (BatchNorm2d, ReLU, LocalResponseNorm, one MaxPool2d/AvgPool2d) chains; "
                         f"got {[type(m).__name__ for m in chain]}")
    conv, pool = chain[0], pools[0]
    with torch.no_grad():
        x = features[:start].eval()(torch.zeros(input_shape)) if start else torch.zeros(input_shape)
        want = features[start:stop].eval()(x).shape[-2:]
    (k, _), (s, _), p, ps = conv.kernel_size, conv.stride, _pair(pool.kernel_size)[0], _pair(pool.stride)[0]
    K = k + s * (p - 1) if grow_kernel else k
    for pad in range(K + 1):                                   # the padding that gives the chain's output size
        new = nn.Conv2d(conv.in_channels, conv.out_channels, K, s * ps, pad)
        with torch.no_grad():
            if new(x).shape[-2:] == want: break
    else: raise ValueError(f"no padding of a {K}×{K} conv with stride {s * ps} gives the chain's output size {tuple(want)}")
    layers = list(features)[:start] + [new, nn.ReLU(inplace=True)] + list(features)[stop:]
    return nn.Sequential(*layers), start

# --- cell: branch
def _conv_bn_relu(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

class SlimInception(nn.Module):
    """Branch slimming (our reading): an Inception module without its 1×1 and pooling branches; the 3×3 branch widened
    to c1 + c3 outputs and the 5×5 branch to c5 + cp, so the concatenation keeps its width and channel layout (the 3×3
    branch takes the 1×1 branch's place, the 5×5 the pooling branch's). The reduce (1×1) layers are the pretrained ones;
    the widened convs are new."""
    def __init__(self, inc: Inception):
        super().__init__()
        if not isinstance(inc, Inception): raise TypeError(f"SlimInception slims an Inception module; got {type(inc).__name__}")
        c1, c3 = inc.b1[0].out_channels, inc.b3[1][0].out_channels
        c5, cp = inc.b5[1][0].out_channels, inc.bp[1][0].out_channels
        self.b3 = nn.Sequential(copy.deepcopy(inc.b3[0]), _conv_bn_relu(inc.b3[1][0].in_channels, c1 + c3, 3))
        self.b5 = nn.Sequential(copy.deepcopy(inc.b5[0]), _conv_bn_relu(inc.b5[1][0].in_channels, c5 + cp, 5))
        self.out_channels = inc.out_channels
    def forward(self, x): return torch.cat([self.b3(x), self.b5(x)], 1)
    def new_layers(self) -> list[nn.Module]: return [self.b3[1], self.b5[1]]

def branch_slim(model: nn.Module) -> nn.Module:
    "A copy of `model` with every `Inception` module replaced by a `SlimInception`."
    out = copy.deepcopy(model)
    for n, m in list(out.named_modules()):
        if isinstance(m, Inception):
            parent, _, leaf = n.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, leaf, SlimInception(m))
    return out
