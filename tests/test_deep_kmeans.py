"Deep k-Means beyond the notebook: the key ingredient (the k-means regulariser), sharing, the stored size, the energy metrics, bad input."
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

from compress_papers.core import set_seed
from compress_papers.deep_kmeans import (DKMConfig, DKMRegularizer, RowShared, ScalarShared, conv_layers, distortion, from_rows,
                                         index_bits, k_for_ratio, kmeans_columns, model_energy, row_matrix, scalar_share,
                                         share_weights, shared_bits, spectral_F)
from compress_papers.models import get_model


def _descend(model, Ks, cfg, steps=30, lr=0.5):
    "Gradient descent on the regulariser's penalty alone; F refreshed every 10 steps."
    reg = DKMRegularizer(model, Ks, cfg)
    opt = torch.optim.SGD([model.get_submodule(n).weight for n in Ks], lr=lr)
    for t in range(steps):
        opt.zero_grad(); (reg.penalty() + 0 * sum(model.get_submodule(n).weight.sum() for n in Ks)).backward(); opt.step()
        if (t + 1) % 10 == 0: reg.refresh()
    return model


@pytest.fixture(scope="module")
def lenet():
    set_seed(0)
    return get_model("lenet5")


def test_hard_regulariser_gathers_the_rows(lenet):
    "The key ingredient, hard variant: the penalty alone pulls the rows to K centres; with λ = 0 nothing moves."
    K = {"features.3": 6}
    W0 = row_matrix(lenet.features[3].weight.detach())
    d0 = distortion(W0, *kmeans_columns(W0, 6))
    m = _descend(copy.deepcopy(lenet), K, DKMConfig(lam=0.5, variant="hard"))
    W = row_matrix(m.features[3].weight.detach())
    assert distortion(W, *kmeans_columns(W, 6)) < 0.1 * d0


def test_spectral_regulariser_shrinks_the_residual_below_rank(lenet):
    "The key ingredient, the paper's relaxed term: with K below rank(W) it removes what lies outside the top-K span."
    K = {"features.3": 2}
    res = lambda m: (lambda W: (W - W @ spectral_F(W, 2).double() @ spectral_F(W, 2).double().t()).norm().item())(
        row_matrix(m.features[3].weight.detach()).double())
    r0 = res(lenet)
    assert res(_descend(copy.deepcopy(lenet), K, DKMConfig(lam=0.5))) < 0.2 * r0


def test_spectral_regulariser_is_zero_at_refresh_when_K_reaches_the_rank(lenet):
    "The degeneracy: K >= s gives a zero term and a zero gradient right after each refresh."
    reg = DKMRegularizer(lenet, {"features.3": 5}, DKMConfig(lam=1.0))
    v = reg.value(); W = lenet.features[3].weight
    g, = torch.autograd.grad(v, W)
    assert abs(v.item()) < 1e-5 * W.detach().pow(2).sum().item() and g.abs().max().item() < 1e-4


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 6), c=st.integers(1, 4), k=st.sampled_from([1, 3, 5]))
def test_row_matrix_round_trip(m, c, k):
    w = torch.randn(m, c, k, k)
    W = row_matrix(w)
    assert W.shape == (k, m * c * k) and torch.equal(from_rows(W, w.shape), w)


def test_share_weights_saves_loads_and_counts(lenet):
    x = torch.randn(3, 1, 28, 28)
    sm = share_weights(lenet, {"features.3": 16})
    layer = sm.features[3]
    assert isinstance(layer, RowShared) and "K=16" in repr(layer)
    assert row_matrix(layer.weight()).unique(dim=1).shape[1] <= 16
    assert layer.packed_bytes() == 16 * 5 * 4 + math.ceil(480 * 4 / 8)
    assert abs(layer.packed_bytes() - shared_bits(5, 16, layer.assign) / 8) <= 1
    fresh = share_weights(get_model("lenet5"), {"features.3": 16})
    fresh.load_state_dict(sm.state_dict())
    with torch.no_grad(): assert torch.equal(fresh(x), sm(x))


def test_ratio_and_index_coding():
    assert [k_for_ratio(3, 1536, cr) for cr in (4, 8, 16, 32)][-1] == 4         # rows of 3: K = 4 at CR 32
    for cr in (2, 4, 8, 16, 32):
        K = k_for_ratio(5, 480, cr)
        assert 480 * 5 * 32 / (K * 5 * 32 + 480 * max(1, math.ceil(math.log2(K)))) >= cr
    a = torch.tensor([0] * 90 + [1] * 10)
    assert index_bits(a, 2, "entropy") < index_bits(a, 2) == 100


def test_scalar_share_has_2_to_the_bits_values_and_trains(lenet):
    m = scalar_share(lenet, {"features.3": 2})
    layer = m.features[3]
    assert isinstance(layer, ScalarShared) and layer.codebook.numel() == 4
    F.cross_entropy(m(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    assert layer.codebook.grad is not None and layer.codebook.grad.abs().sum() > 0


def test_energy_sharing_keeps_activations_pruning_cuts(lenet):
    e0 = model_energy(lenet)
    e1 = model_energy(share_weights(lenet, {"features.3": 6}))
    assert e1["activations"] == e0["activations"] and e1["compute"] == e0["compute"] and e1["weights"] < e0["weights"]
    assert 0 < e1["total"] < e0["total"]


def test_conv_layers_skip_the_first(lenet):
    assert conv_layers(lenet) == ["features.3"] and conv_layers(lenet, skip_first=False) == ["features.0", "features.3"]


@pytest.mark.parametrize("call, msg", [
    (lambda W, m: kmeans_columns(W, 0), "K must be"),
    (lambda W, m: kmeans_columns(W, W.shape[1] + 1), "K must be"),
    (lambda W, m: kmeans_columns(W * float("nan"), 2), "must be finite"),
    (lambda W, m: DKMConfig(lam=-1.0), "lam must be a finite number >= 0"),
    (lambda W, m: DKMConfig(lam=float("inf")), "lam must be a finite number >= 0"),
    (lambda W, m: DKMConfig(refresh=0), "refresh must be"),
    (lambda W, m: DKMConfig(variant="relaxed"), "variant must be one of"),
    (lambda W, m: DKMRegularizer(m, {"classifier.1": 4}, DKMConfig()), "compresses conv layers"),
    (lambda W, m: DKMRegularizer(m, {"features.3": 0}, DKMConfig()), "K of features.3 must be"),
    (lambda W, m: DKMRegularizer(m, {"features.3": 4}, "spectral"), "cfg must be a DKMConfig"),
    (lambda W, m: share_weights(m, {"classifier.1": 4}), "compresses conv layers"),
    (lambda W, m: row_matrix(torch.zeros(3, 3)), "row_matrix needs a conv weight"),
    (lambda W, m: k_for_ratio(5, 480, 0.5), "cr must be a number >= 1"),
    (lambda W, m: scalar_share(m, {"features.3": 0}), "bits must be"),
])
def test_bad_input(lenet, call, msg):
    W = row_matrix(lenet.features[3].weight.detach())
    with pytest.raises((ValueError, TypeError), match=msg): call(W, lenet)
