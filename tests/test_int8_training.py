"8-bit training beyond the notebook: the key ingredients (bifurcation, stochastic rounding), Range BN, reproducibility, deployment, bad input."
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from compress_papers.core import set_seed
from compress_papers.data import get_data
from compress_papers.int8_training import (Int8Config, Int8Layer, RangeBN, affine_quantize, cosine, cosine_bound, float_model,
                                           int8_inference, int8_model, range_stats)
from compress_papers.models import get_model


def _grads(layer, cfg, x, gy, seed=0):
    "(g_x, g_W) of an Int8Layer over a copy of `layer` under `cfg`, for the upstream gradient `gy`."
    q = Int8Layer(copy.deepcopy(layer), cfg, seed); xx = x.clone().requires_grad_()
    q(xx).backward(gy)
    return xx.grad, q.layer.weight.grad


def _rel(a, b): return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def conv_case():
    set_seed(0)
    layer, x = nn.Conv2d(4, 6, 3, padding=1), torch.randn(16, 4, 8, 8)
    gy = torch.randn(16, 6, 8, 8) * torch.rand(16, 6, 8, 8) ** 4          # peaked and heavy-tailed, like a real g_l
    xf = x.clone().requires_grad_(); layer(xf).backward(gy)
    return layer, x, gy, xf.grad, layer.weight.grad.clone()


def test_bifurcation_keeps_the_weight_gradient_at_16_bits(conv_case):
    "The key ingredient: g_W from the 16-bit copy is 16-bit close to float; from the 8-bit g_l it is not."
    layer, x, gy, _, gw_f = conv_case
    _, gw16 = _grads(layer, Int8Config(bits=None), x, gy)
    _, gw8 = _grads(layer, Int8Config(bits=None, bifurcate=False), x, gy)
    assert _rel(gw16, gw_f) < 1e-3
    assert _rel(gw8, gw_f) > 10 * _rel(gw16, gw_f)


def test_layer_gradient_is_quantized_on_the_sequential_path(conv_case):
    "g_{l-1} comes from the 8-bit g_l whatever the copy for g_W: it differs from float, but only by 8-bit error."
    layer, x, gy, gx_f, _ = conv_case
    gx, _ = _grads(layer, Int8Config(bits=None, wgrad_bits=None), x, gy)
    assert 1e-4 < _rel(gx, gx_f) < 0.05


def test_stochastic_rounding_is_unbiased_and_nearest_is_not(conv_case):
    "The key ingredient: the stochastic g_{l-1}, averaged over draws, converges to float's; round to nearest keeps its bias."
    layer, x, gy, gx_f, _ = conv_case
    q = Int8Layer(copy.deepcopy(layer), Int8Config(bits=None, grad_bits=2), 0)
    mean = torch.zeros_like(gx_f)
    for _ in range(300):
        xx = x.clone().requires_grad_(); q(xx).backward(gy); mean += xx.grad / 300
    gx_rn, _ = _grads(layer, Int8Config(bits=None, grad_bits=2, grad_rounding="nearest"), x, gy)
    assert _rel(mean, gx_f) < 0.25 * _rel(gx_rn, gx_f)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 16), st.floats(-100, 100), st.floats(1e-3, 100), st.integers(0, 2**31 - 1))
def test_affine_quantize_on_any_range(bits, lo, width, seed):
    "Every value lands on one of the 2^M levels of [lo, lo + width], within half a step (nearest) or one step (stochastic)."
    x = torch.rand(200, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * width + lo
    step = (x.max() - x.min()).item() / (2 ** bits - 1)
    q = affine_quantize(x, bits)
    assert (q - x).abs().max().item() <= step / 2 * (1 + 1e-6) + 1e-12
    s = affine_quantize(x, bits, stochastic=True, generator=np.random.default_rng(seed))
    assert (s - x).abs().max().item() <= step * (1 + 1e-6) + 1e-12
    if 2 ** bits < 200: assert len(torch.unique(torch.round((q - x.min()) / step))) <= 2 ** bits   # fewer levels than values


def test_stochastic_rounding_is_reproducible_from_the_seed():
    "Two models built from the same config and seed train to identical weights; another seed changes them."
    ds = get_data("digits")
    def run(seed):
        set_seed(0); m = int8_model(get_model("resnet8", 1, 10, 8, width=0.25), Int8Config(seed=seed))
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        for i in range(3):
            F.cross_entropy(m(ds.train.x[64 * i: 64 * (i + 1)]), ds.train.y[64 * i: 64 * (i + 1)]).backward(); opt.step(); opt.zero_grad()
        return torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_range_bn_scale_on_gaussian_data():
    "C(n)·range ≈ 1.7σ with the paper's constant at n = 4096 per chunk, ≈ 0.95σ with the code's; the scale is shift-invariant."
    set_seed(1); x = torch.randn(1024, 3, 8, 8) * torch.tensor([0.5, 2.0, 7.0]).view(1, 3, 1, 1)
    sd = x.transpose(0, 1).reshape(3, -1).std(1)
    paper, code = range_stats(x, 16)[1] / sd, range_stats(x, 16, "code")[1] / sd
    assert ((paper > 1.6) & (paper < 2.0)).all() and ((code > 0.85) & (code < 1.05)).all()
    torch.testing.assert_close(range_stats(x + 3.0, 16)[1], range_stats(x, 16)[1], rtol=1e-4, atol=1e-4)


def test_range_bn_matches_batchnorm_after_training():
    "Trained a few steps, Range BN's evaluation output equals its BatchNorm export, and the model state round-trips."
    set_seed(0); m = int8_model(get_model("resnet8", 1, 10, 8, width=0.25), Int8Config(bits=None, grad_bits=None))
    ds = get_data("digits"); opt = torch.optim.SGD(m.parameters(), lr=0.05)
    for i in range(4):
        F.cross_entropy(m(ds.train.x[64 * i: 64 * (i + 1)]), ds.train.y[64 * i: 64 * (i + 1)]).backward(); opt.step(); opt.zero_grad()
    m.eval(); x = ds.test.x[:32]
    torch.testing.assert_close(float_model(m)(x), m(x), rtol=1e-4, atol=1e-4)
    m2 = int8_model(get_model("resnet8", 1, 10, 8, width=0.25), Int8Config(bits=None, grad_bits=None)); m2.load_state_dict(m.state_dict())
    torch.testing.assert_close(m2.eval()(x), m(x))


def test_int8_inference_keeps_the_predictions():
    "A briefly trained 8-bit model on int8 kernels agrees with its float version on most test images."
    set_seed(0); ds = get_data("digits")
    m = int8_model(get_model("resnet8", 1, 10, 8, width=0.5), Int8Config())
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(3):
        for i in range(0, len(ds.train.x) - 63, 64):
            F.cross_entropy(m(ds.train.x[i:i + 64]), ds.train.y[i:i + 64]).backward(); opt.step(); opt.zero_grad()
    qm = int8_inference(m, ds.train.x[:256]); fm = float_model(m)
    with torch.no_grad(): pf, pq = fm(ds.test.x).argmax(1), qm(ds.test.x).argmax(1)
    assert (pf == ds.test.y).float().mean() > 0.5
    assert (pf == pq).float().mean() > 0.95


def test_cosine_bound_holds_for_gaussian_tensors():
    set_seed(0)
    for n in (500, 50_000):
        w = torch.randn(n)
        assert all(cosine(w, affine_quantize(w, m)) >= cosine_bound(m, n) for m in range(2, 9))


def test_bad_input():
    x = torch.randn(32, 2, 4, 4)
    with pytest.raises(ValueError, match="bits must be an integer in 2..16"): affine_quantize(x, 1)
    with pytest.raises(ValueError, match="at least 2 values per channel"): range_stats(torch.randn(1, 2, 1, 1), 1)
    with pytest.raises(ValueError, match="constant channel"): range_stats(torch.ones(32, 2, 4, 4), 16)
    with pytest.raises(ValueError, match="x must be finite"): affine_quantize(torch.tensor([0.0, float("nan")]), 8)
    set_seed(0)
    with pytest.raises(ValueError, match="needs a seeded torch.Generator"): affine_quantize(x, 8, stochastic=True)
    with pytest.raises(TypeError, match="cfg must be an Int8Config"): int8_model(nn.Linear(2, 2), None)
    with pytest.raises(ValueError, match="expects"): RangeBN(3)(x)
    with pytest.raises(ValueError, match="batch_size must be"): int8_inference(get_model("resnet8", 1, 10, 8), torch.randn(4, 1, 8, 8), batch_size=0)
    with pytest.raises(ValueError, match="calib must be finite"): int8_inference(get_model("resnet8", 1, 10, 8), torch.full((4, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="x must be finite"): affine_quantize(torch.tensor([0.0, float("nan")]), 8, 0.0, 1.0)
    with pytest.raises(ValueError, match="cosine needs finite"): cosine(torch.tensor([1.0, float("nan")]), torch.ones(2))


def test_torchvision_resnet18_trains_and_deploys():
    "The ImageNet configuration's model: torchvision's ResNet-18 takes the 8-bit scheme, one step, and converts to int8 kernels."
    set_seed(0)
    m = int8_model(get_model("tv:resnet18", 3, 10), Int8Config())
    x, y = torch.randn(32, 3, 64, 64), torch.randint(0, 10, (32,))
    F.cross_entropy(m(x), y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    qm = int8_inference(m, x)
    with torch.no_grad(): assert cosine(qm(x[:4]), float_model(m)(x[:4])) > 0.9


def test_dtypes_padding_and_attention():
    "Double precision trains; a reflect-padded convolution is refused (its backward would treat the padding as zeros); an attention block's out_proj is left alone."
    set_seed(0); m = int8_model(get_model("resnet8", 1, 10, 8, width=0.25).double(), Int8Config(seed=1))
    F.cross_entropy(m(torch.randn(32, 1, 8, 8, dtype=torch.float64)), torch.randint(0, 10, (32,))).backward()
    assert all(p.grad.dtype == torch.float64 and torch.isfinite(p.grad).all() for p in m.parameters())
    with pytest.raises(ValueError, match="zero padding given as integers"): Int8Layer(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), Int8Config())
    with pytest.raises(ValueError, match="zero padding given as integers"): Int8Layer(nn.Conv2d(2, 2, 3, padding="same"), Int8Config())
    t = int8_model(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), Int8Config(range_bn=False))
    assert isinstance(t.linear1, Int8Layer) and type(t.self_attn.out_proj) is not Int8Layer
    t(torch.randn(4, 5, 16)).sum().backward()


def test_quantized_state_dict_round_trip_and_evaluation_before_training():
    "A converted model evaluates at once (each batch's own range), and its trained state (running ranges included) reloads."
    set_seed(0); x = torch.randn(32, 1, 8, 8)
    m = int8_model(get_model("resnet8", 1, 10, 8, width=0.25), Int8Config()).eval()
    assert torch.isfinite(m(x)).all()
    m.train(); m(x); m(x * 2); m.eval()
    m2 = int8_model(get_model("resnet8", 1, 10, 8, width=0.25), Int8Config()); m2.load_state_dict(m.state_dict())
    torch.testing.assert_close(m2.eval()(x), m(x))


def test_int8_inference_restores_the_engine():
    engine = torch.backends.quantized.engine
    int8_inference(get_model("resnet8", 1, 10, 8, width=0.25), torch.randn(16, 1, 8, 8), backend="qnnpack")
    assert torch.backends.quantized.engine == engine
