"Value-aware quantization beyond the notebook: BatchNorm networks, exactness of the threshold search, packing, state_dict."
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from compress_papers.core import set_seed
from compress_papers.measure import packed_bytes, saved_tensor_bytes
from compress_papers.models import get_model
from compress_papers.quant import QuantizedLayer, relative_error
from compress_papers.value_aware import (BackpropQuant, Grid, QuantizedBackprop, VQConfig, _top, anneal, large_split, n_large,
                                         vaq_model, vq_encode, vquant)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), ratio=st.floats(0, 0.2), bits=st.integers(2, 8), seed=st.integers(0, 2 ** 16))
def test_vquant_keeps_ceil_rN_exactly_and_rounds_the_rest_within_half_a_step(n, ratio, bits, seed):
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 3
    e = vq_encode(x, bits, ratio)
    k = n_large(n, ratio)
    assert e.index.numel() == k
    q = e.decode()
    big = torch.zeros(n, dtype=torch.bool); big[e.index.long()] = True
    assert torch.equal(q[big], x[big])
    if k < n:
        T = x.abs()[~big].max()
        assert torch.all((q[~big] - x[~big]).abs() <= T / Grid(bits, True).m / 2 + 1e-5)


def test_sampled_threshold_search_falls_back_when_the_sample_misses():
    a = torch.cat([torch.zeros(200_000), torch.linspace(1, 2, 3000)])   # every large value after the strided sample's reach
    a = a[torch.randperm(a.numel(), generator=torch.Generator().manual_seed(0))]
    vals, idx = _top(a, 2000)
    ref = torch.topk(a, 2000).values
    assert torch.equal(vals.sort().values, ref.sort().values) and torch.equal(a[idx].sort().values, ref.sort().values)
    b = torch.sort(torch.rand(300_000, generator=torch.Generator().manual_seed(1))).values   # sorted: a biased sample
    assert torch.equal(_top(b, 3000)[0].sort().values, torch.topk(b, 3000).values.sort().values)


def test_sign_extra_grid_at_8_bits_needs_and_gets_9_bit_codes():
    x = torch.randn(1001, generator=torch.Generator().manual_seed(2))
    e = vq_encode(x, 8, 0.01, grid="sign-extra", pack=True)
    assert e.grid.code_bits == 9 and e.codes.numel() == packed_bytes(1001, 9)
    assert torch.equal(e.decode(), vq_encode(x, 8, 0.01, grid="sign-extra").decode())


def test_large_value_path_is_what_beats_clipping_on_heavy_tails():
    torch.manual_seed(0); x = torch.distributions.StudentT(2.5).sample((50_000,))
    for b in (2, 3, 4):
        assert relative_error(vquant(x, b, 0.01), x) < 0.8 * relative_error(vquant(x, b, 0.01, "clip"), x)


def _grads(model, x, y, wrap=None):
    model.zero_grad(); m = model if wrap is None else QuantizedBackprop(model, wrap)
    F.cross_entropy(m(x), y).backward()
    return [p.grad.clone() for p in model.parameters()], m


def test_full_precision_wrapper_is_exact_on_a_batchnorm_resnet_and_counts_like_saved_tensor_bytes():
    set_seed(0); net = get_model("resnet8").train(); x = torch.randn(8, 1, 28, 28); y = torch.arange(8)
    torch.manual_seed(0); g0, _ = _grads(net, x, y)
    torch.manual_seed(0); g1, m = _grads(net, x, y, BackpropQuant(None))
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    ref = saved_tensor_bytes(net, x)
    assert {k: m.saved[k] for k in ref} == ref


def test_quantized_backprop_on_resnet_codes_batchnorm_inputs_and_keeps_a_small_gradient_error():
    set_seed(0); net = get_model("resnet8").train(); x = torch.randn(16, 1, 28, 28); y = torch.arange(16) % 10
    g0, fp = _grads(net, x, y, BackpropQuant(None))
    g8, m8 = _grads(net, x, y, BackpropQuant(8, 0.01))
    g2, m2 = _grads(net, x, y, BackpropQuant(2, 0.0))
    err = lambda g: math.sqrt(sum((a - b).pow(2).sum() for a, b in zip(g, g0)) / sum(b.pow(2).sum() for b in g0))
    assert err(g8) < 0.02 < err(g2)
    assert m8.saved["coded_tensors"] >= 15 and m2.saved["activations"] < fp.saved["activations"] / 10


def test_vaq_model_state_dict_round_trip_on_a_residual_model():
    set_seed(0); base = get_model("resnet8")
    q = vaq_model(base, VQConfig(4, 4, 0.01, 0.01, keep_first_last=False))
    assert sum(isinstance(m, QuantizedLayer) for m in q.modules()) == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in base.modules())
    q.train(); q(torch.randn(8, 1, 28, 28)); q.eval()
    r = vaq_model(get_model("resnet8"), VQConfig(4, 4, 0.01, 0.01, keep_first_last=False)); r.load_state_dict(q.state_dict()); r.eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad(): assert torch.equal(r(x), q(x))


@pytest.mark.parametrize("epochs", [3, 4, 7])
def test_anneal_visits_every_phase_in_order(epochs):
    sched = [(2, 0.0), (3, 0.02), None]
    labels = [anneal(sched, e, epochs).label for e in range(epochs)]
    assert labels[0] == "linear 2" and labels[-1] == "fp" and "rv-quant 3 2%" in labels
    assert labels == sorted(labels, key=["linear 2", "rv-quant 3 2%", "fp"].index)


def test_large_split_threshold_is_the_quantile_of_the_magnitudes():
    x = torch.arange(1, 101, dtype=torch.float32) * torch.tensor([-1.0, 1.0]).repeat(50)
    T, L = large_split(x, 0.05)
    assert float(T) == 95.0 and sorted(x.abs()[L].tolist()) == [96.0, 97.0, 98.0, 99.0, 100.0]
