"SLQ, MLQ and INQ beyond the notebook: the key ingredients (freezing, re-training), k-means, export, bad input."
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from compress_papers.core import set_seed
from compress_papers.data import get_data
from compress_papers.models import get_model
from compress_papers.quant import quantizable_layers
from compress_papers.slq_mlq import (IncrementalConfig, SharedWeights, attach, export_bytes, export_codes, freeze_all, incremental_quantize,
                                     inertia, inq_levels, kmeans1d, kmeans_init, load_codes, nearest, quantize_step, shared_layers)


@pytest.fixture(scope="module")
def digits_model():
    "A small LeNet-5 trained for a few seconds on sklearn's digits, and its data."
    from compress_papers.train import finetune
    set_seed(0); ds = get_data("digits"); m = get_model("lenet5", 1, 10, 8, width=0.5)
    finetune(m, ds, 10, 0.1, 0)
    return m.eval(), ds


def _loss(m, ds): return F.cross_entropy(m.eval()(ds.val.x), ds.val.y).item()


@pytest.mark.parametrize("cfg", [IncrementalConfig("inq", 3), IncrementalConfig("slq", 3, "loss"), IncrementalConfig("slq", 2, "magnitude"),
                                 IncrementalConfig("mlq", 2, groups=3)], ids=lambda c: c.label)
def test_retraining_recovers_after_every_quantization_step(digits_model, cfg):
    "The key ingredient: between steps the float weights are re-trained, and that lowers the held-out loss each time."
    from compress_papers.train import finetune
    base, ds = digits_model; log = []
    out = incremental_quantize(base, cfg, lambda m, s: finetune(m, ds, 1, 0.02, s), (ds.val.x, ds.val.y),
                               on_step=lambda s, stage, m: log.append((s, stage, _loss(m, ds))))
    n = cfg.n_steps(len(shared_layers(out)))
    assert [(s, st) for s, st, _ in log] == [(s, st) for s in range(n) for st in ("quantized", "retrained")][:2 * n - 1]
    gains = [log[2 * s][2] - log[2 * s + 1][2] for s in range(n - 1)]   # held-out loss after quantizing minus after re-training
    assert sum(gains) > 0


def test_incremental_with_retraining_beats_it_without(digits_model):
    "Ternary INQ: with re-training between steps the final held-out loss is far lower than with none (the same steps)."
    from compress_papers.train import finetune
    base, ds = digits_model; cfg = IncrementalConfig("inq", 2)
    with_rt = incremental_quantize(base, cfg, lambda m, s: finetune(m, ds, 2, 0.02, s))
    without = incremental_quantize(base, cfg, None)
    assert _loss(with_rt, ds) < 0.8 * _loss(without, ds)


@pytest.mark.parametrize("cfg", [IncrementalConfig("inq", 3), IncrementalConfig("slq", 5, "magnitude"), IncrementalConfig("mlq", 2)], ids=lambda c: c.label)
def test_every_weight_ends_frozen_on_its_codebook_and_frozen_weights_never_move(cfg):
    "The other key ingredient, the freeze mask: frozen weights do not move under SGD with momentum and weight decay, and the schedule ends with all frozen."
    set_seed(0); base = get_model("lenet5"); x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    q = attach(base, cfg); n = cfg.n_steps(len(shared_layers(q)))
    opt = torch.optim.SGD(q.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    for s in range(n):
        quantize_step(q, cfg, s, (x, y))
        before = {k: l.quantized_weight().detach().clone() for k, l in shared_layers(q).items()}
        for _ in range(2): opt.zero_grad(); F.cross_entropy(q(x), y).backward(); opt.step()
        for k, l in shared_layers(q).items():
            fz = l.weight_q.frozen; w = l.quantized_weight().detach()
            assert torch.equal(w[fz], before[k][fz])
            if s < n - 1 and bool((~fz).any()): assert not torch.equal(w[~fz], before[k][~fz])
    for l in shared_layers(q).values():
        assert bool(l.weight_q.frozen.all())
        assert set(l.quantized_weight().unique().tolist()) <= set(l.weight_q.codebook.tolist())
        assert l.weight_q.codebook.numel() == cfg.k


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2000, 20000), bits=st.integers(2, 4), seed=st.integers(0, 2 ** 16))
def test_kmeans1d_matches_sklearn_lloyd_from_the_same_start(n, bits, seed):
    from sklearn.cluster import KMeans
    w = torch.randn(n, generator=torch.Generator().manual_seed(seed)).double() * 0.1
    if n < 2 ** (bits - 1) + 1: return
    c0 = kmeans_init(w, bits)
    c, codes = kmeans1d(w, c0, iters=500)
    km = KMeans(len(c0), init=c0.numpy()[:, None], n_init=1, max_iter=500, tol=0, algorithm="lloyd").fit(w.numpy()[:, None])
    if int(torch.bincount(codes, minlength=len(c0)).min()) == 0: return   # scikit-learn moves an empty cluster elsewhere; ours keeps it
    assert abs(inertia(w, c, codes) - km.inertia_) <= 1e-6 * km.inertia_ + 1e-12
    assert torch.equal(codes, (w[:, None] - c[None]).abs().argmin(1)) or inertia(w, c, codes) == inertia(w, c, (w[:, None] - c[None]).abs().argmin(1))


def test_export_round_trip_on_a_batchnorm_network_is_exact_and_as_small_as_the_bit_count():
    set_seed(0); rn = get_model("resnet8").eval(); x = torch.randn(8, 1, 28, 28)
    for cfg, shot in [(IncrementalConfig("slq", 3), "round"), (IncrementalConfig("inq", 5), "ste"), (IncrementalConfig("slq", 2), "twn")]:
        q = freeze_all(attach(rn, cfg, quantizable_layers(rn)[:-1], one_shot=shot)).eval()
        buf = io.BytesIO(); torch.save(export_codes(q), buf); buf.seek(0); blob = torch.load(buf, weights_only=True)
        assert torch.equal(load_codes(get_model("resnet8"), blob).eval()(x), q(x))
        B = export_bytes(blob); assert B["theory"] <= B["packed"] <= 1.02 * B["theory"]
        assert all(v["bits"] == {3: 2, 5: 3, 17: 5}[v["codebook"].numel()] for v in blob["layers"].values())


def test_bad_input_is_refused_with_what_is_allowed():
    with pytest.raises(ValueError, match="bits must be"): IncrementalConfig("slq", 1)
    with pytest.raises(ValueError, match="bits must be"): IncrementalConfig("slq", 9)
    with pytest.raises(ValueError, match=r"\(0, 1\]"): IncrementalConfig("slq", 3, shares=(0.0, 1.0))
    with pytest.raises(ValueError, match="partition share"): IncrementalConfig("slq", 3, shares=(0.5, 1.01))
    with pytest.raises(TypeError, match="partition share"): IncrementalConfig("slq", 3, shares=("half", 1.0))
    with pytest.raises(ValueError, match="cannot fill 5 centroids"): attach(torch.nn.Sequential(torch.nn.Linear(2, 2)), IncrementalConfig("slq", 3))
    with pytest.raises(ValueError, match="all zero"):
        lin = torch.nn.Linear(10, 10); torch.nn.init.zeros_(lin.weight); attach(torch.nn.Sequential(lin), IncrementalConfig("inq", 3))
    with pytest.raises(ValueError, match="finite"): kmeans_init(torch.tensor([0.1, float("inf"), 0.2, 0.3, 0.4]), 3)
    with pytest.raises(ValueError, match="sorted"): nearest(torch.randn(5), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="frozen"): export_codes(attach(get_model("lenet5"), IncrementalConfig("slq", 3)))


def test_cluster_losses_are_the_loss_change_from_snapping_each_cluster_alone():
    import copy
    from compress_papers.slq_mlq import cluster_losses
    set_seed(0); base = get_model("lenet5").eval(); x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    q = attach(base, IncrementalConfig("slq", 3)); dl = cluster_losses(q, shared_layers(q)["classifier.3"], x, y)
    ref = F.cross_entropy(q(x), y).item()
    for j in range(5):
        m = copy.deepcopy(q); lj = shared_layers(m)["classifier.3"]
        with torch.no_grad(): lj.layer.weight[lj.weight_q.codes == j] = lj.weight_q.codebook[j]
        assert abs((F.cross_entropy(m(x), y).item() - ref) - dl[j].item()) < 1e-6


def test_recluster_moves_only_centroids_without_frozen_weights():
    from compress_papers.slq_mlq import cluster_order, freeze_clusters, recluster
    set_seed(0); q = attach(get_model("lenet5"), IncrementalConfig("slq", 3, "magnitude")); l = shared_layers(q)["classifier.1"]
    freeze_clusters(l, cluster_order(l, "magnitude")[:1], 0.3)          # the zero cluster, in part
    with torch.no_grad(): l.layer.weight.add_(0.02 * torch.randn_like(l.layer.weight))   # as re-training would move the float weights
    before = l.weight_q.codebook.clone(); recluster(l)
    used = torch.zeros(5, dtype=torch.bool); used[l.weight_q.codes[l.weight_q.frozen]] = True
    assert torch.equal(l.weight_q.codebook[used], before[used]) and not torch.equal(l.weight_q.codebook[~used], before[~used])
    w = l.layer.weight.detach()[~l.weight_q.frozen]
    assert torch.equal(l.weight_q.codes[~l.weight_q.frozen], (w[:, None] - l.weight_q.codebook[None]).abs().argmin(1))


def test_the_loss_partition_freezes_the_lowest_loss_cluster_first_and_the_next_step_reclusters():
    from compress_papers.slq_mlq import cluster_losses
    set_seed(0); base = get_model("lenet5").eval(); x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    for part, pick in (("loss", torch.argmin), ("loss-high", torch.argmax)):
        cfg = IncrementalConfig("slq", 3, part); q = attach(base, cfg); l = shared_layers(q)["classifier.1"]
        first = int(pick(cluster_losses(q, l, x, y)))
        quantize_step(q, cfg, 0, (x, y))
        assert first in l.weight_q.codes[l.weight_q.frozen].tolist()
        with torch.no_grad(): l.layer.weight.add_(0.05 * torch.randn_like(l.layer.weight))   # re-training moves the float weights
        quantize_step(q, cfg, 1, (x, y))
        fl = ~l.weight_q.frozen; w = l.layer.weight.detach()[fl]
        assert torch.equal(l.weight_q.codes[fl], (w[:, None] - l.weight_q.codebook[None]).abs().argmin(1))   # codes of the float weights are current
