"LQ-Nets beyond the notebook: residual models, GPU-agnostic state, export round trips."
import io
import pytest
import torch

from compress_papers.core import set_seed
from compress_papers.models import get_model
from compress_papers.quant import QuantizedLayer
from compress_papers.lqnets import LQConfig, LQQuantizer, export_lq, export_size, load_lq, lq_model, lq_quantize


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
