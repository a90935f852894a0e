"LQ-Nets beyond the notebook: residual models, GPU-agnostic state, export round trips, the one-pass CPU kernel against the torch path."
import io
import pytest
from hypothesis import given, settings, strategies as st
import torch

from compress_papers.core import set_seed
from compress_papers.models import get_model
from compress_papers.quant import QuantizedLayer
from compress_papers.lqnets import (LQConfig, LQQuantizer, _qem_pass_torch, export_lq, export_size, load_lq, lq_levels, lq_model,
                                    lq_quantize, midpoints, qem_pass, qem_step)


def test_resnet_quantizes_every_inner_conv_including_shortcuts():
    m = get_model("resnet8")
    q = lq_model(m, LQConfig(2, 2))
    names = [n for n, l in q.named_modules() if isinstance(l, QuantizedLayer)]
    assert "features.4.shortcut.0" in names and "features.0" not in names and "classifier.2" not in names
    assert q(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_export_round_trip_on_a_residual_model():
    set_seed(0)
    m = lq_model(get_model("resnet8"), LQConfig(3, 3))
    m.train(); m(torch.randn(16, 1, 28, 28)); m.eval()          # move the activation bases once
    ex = export_lq(m)
    buf = io.BytesIO(); torch.save(ex, buf); buf.seek(0)
    r = load_lq(torch.load(buf), lq_model(get_model("resnet8"), LQConfig(3, 3))).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad(): assert torch.allclose(r(x), m(x), atol=1e-5)
    s = export_size(ex)
    assert s["codes_bytes"] + s["bases_bytes"] <= 1.02 * s["theory_bytes"]


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_weight_quantizer_has_at_most_2_to_the_K_levels_per_channel(bits):
    w = torch.randn(6, 50, generator=torch.Generator().manual_seed(bits))
    q = LQQuantizer(bits, "weight", 6).init_from(w)(w)
    assert all(q[c].unique().numel() <= 2 ** bits for c in range(6))


def test_activation_quantizer_output_is_non_negative_and_bounded():
    aq = LQQuantizer(3, "activation").eval()
    x = torch.relu(torch.randn(1000)) * 5
    q = aq(x)
    assert q.min() >= 0 and q.max() <= aq.basis.sum() + 1e-6


def test_values_map_to_the_nearest_level():
    v = torch.tensor([0.5, 1.0])
    q, _ = lq_quantize(torch.tensor([0.0, 0.7, 3.0]), v, signed=False)
    assert q.tolist() == [0.0, 0.5, 1.5]


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 4), st.booleans(), st.integers(1, 4), st.integers(1, 40_000), st.booleans(), st.sampled_from([0.0, 1e-4]),
       st.integers(0, 2**31))
def test_one_pass_kernel_equals_the_torch_path(K, signed, C, N, ties, ridge, seed):
    "The numba pass (float32 on the CPU) against searchsorted/gather/bincount and the torch v-step (what runs on a GPU)."
    gen = torch.Generator().manual_seed(seed)
    v = (torch.rand(C, K, generator=gen) + 0.01) * 2.0 ** torch.arange(K)
    x = torch.randn(C, N, generator=gen) * v.sum(1, keepdim=True)
    if not signed: x = x.relu()
    if ties: x[:, :min(N, 2 ** K - 1)] = midpoints(lq_levels(v, signed)[0])[:, :N]
    v1, v2 = v.clone(), v.clone()
    q, counts, sums, mask = qem_pass(x, v1, signed, True, ridge, momentum=0.9)
    q0, counts0, sums0, mask0 = _qem_pass_torch(x, v2, signed, True, ridge, momentum=0.9)
    assert torch.equal(q, q0) and torch.equal(counts, counts0) and torch.equal(mask, mask0)
    assert torch.allclose(sums, sums0, rtol=0, atol=1e-9 * (1 + x.abs().sum().item()))
    assert torch.allclose(v1, v2, rtol=1e-5, atol=1e-6)


def test_training_step_updates_the_basis_like_the_reference_qem_step():
    "One training forward moves the basis by one QEM alternation and the 0.9 moving average."
    for kind, x in (("weight", torch.randn(8, 72)), ("activation", torch.randn(4, 8, 9, 9).relu())):
        qz = LQQuantizer(2, kind, channels=8).train()
        v0, flat = qz.basis.clone(), (x.reshape(8, -1) if kind == "weight" else x.reshape(1, -1))
        qz(x)
        assert torch.allclose(qz.basis, qem_step(flat, v0, kind == "weight", qz.ridge, momentum=0.9), rtol=1e-5, atol=1e-7)
