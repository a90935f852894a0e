"DeepRebirth beyond the notebook: the key ingredient (re-learning the merged layers), the merges' shapes and exactness, the 10× rate, saving, bad input."
import copy

import pytest
import torch
from torch import nn

from compress_papers.core import set_seed
from compress_papers.data import get_data
from compress_papers.deeprebirth import (Merge, RebirthConfig, SlimInception, apply_merge, fold_bn, fold_conv_avgpool, fold_conv_bn,
                                         merge_plan, rebirth, reinit, streamline)
from compress_papers.measure import blob_bytes
from compress_papers.models import SequentialGoogLeNet, get_model
from compress_papers.train import evaluate, finetune

SHAPE = (1, 1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return get_data("digits")


@pytest.fixture(scope="module")
def tiny(digits):
    "A quarter-width inception-small trained on sklearn's 8×8 digits (a few seconds)."
    set_seed(0)
    m = get_model("inception-small", input_size=8, width=0.25)
    finetune(m, digits, 4, 0.05, validate=False)
    return m.eval()


def test_layerwise_finetuning_recovers_accuracy(tiny, digits):
    """Re-learning the merged layers step by step recovers the accuracy the merges destroy: skip the fine-tuning and this
    fails (not re-learned, the net is near 10%). That layer-wise beats merging at once is not tested: the notebook's
    numbers say it does not."""
    acc0 = evaluate(tiny, digits.test)["acc"]
    slim, log = rebirth(tiny, digits, SHAPE, RebirthConfig(epochs=2, lr=0.02))
    acc = evaluate(slim, digits.test)["acc"]
    assert len(log) == len(merge_plan(tiny)) == 4
    assert acc0 > 0.85 and acc > 0.7, (acc0, acc)
    none, _ = rebirth(tiny, digits, SHAPE, RebirthConfig(schedule="none"))
    assert evaluate(none, digits.test)["acc"] < 0.3


def test_new_layers_train_at_ten_times_the_rate(tiny, digits, monkeypatch):
    """The schedule, structurally: one phase per merge (the key ingredient), each with the new layers of the model being
    trained (and only those) at new_lr_mult × lr; at once, one phase with every merge's new layers."""
    import compress_papers.deeprebirth as dr
    seen = []
    def spy(model, data, epochs, lr, seed, device, batch_size, limit=None, validate=True, lr_mult=None, **kw):
        ids = {id(p) for p in model.parameters()}
        assert all(id(p) in ids for m in lr_mult for p in m.parameters())   # new layers of this very model
        seen.append((epochs, lr, sorted(set(lr_mult.values())), len(lr_mult)))
    monkeypatch.setattr(dr, "finetune", spy)
    rebirth(tiny, digits, SHAPE, RebirthConfig(epochs=3, lr=0.01))
    assert seen == [(3, 0.01, [10.0], 1), (3, 0.01, [10.0], 1), (3, 0.01, [10.0], 2), (3, 0.01, [10.0], 2)]
    seen.clear(); rebirth(tiny, digits, SHAPE, RebirthConfig(epochs=3, lr=0.01, schedule="at-once"))
    assert seen == [(12, 0.01, [10.0], 6)]                               # the same budget, once, every new layer at 10×


def test_merges_keep_shapes_and_the_rest(tiny):
    m, new = apply_merge(tiny, Merge("streamline", 0), SHAPE)
    assert torch.equal(m.features[2].weight, tiny.features[5].weight)       # the 1x1 conv after the chain is the trained one
    assert new == [m.features[0]] and m.features[0].stride == (2, 2)
    for mg in merge_plan(m): m, _ = apply_merge(m, mg, SHAPE)
    x = torch.randn(3, *SHAPE[1:])
    assert m.eval()(x).shape == tiny(x).shape
    assert sum(isinstance(l, SlimInception) for l in m.modules()) == 2
    assert not any(isinstance(l, (nn.LocalResponseNorm, nn.MaxPool2d)) for l in m.features[:4])


@pytest.mark.parametrize("k,s,p,pad", [(3, 1, 2, 1), (5, 1, 2, 2), (3, 2, 2, 0), (1, 1, 4, 0)])
def test_exact_folds(k, s, p, pad):
    set_seed(1)
    conv, bn, pool = nn.Conv2d(2, 3, k, s, pad), nn.BatchNorm2d(3), nn.AvgPool2d(p)
    with torch.no_grad(): bn.running_mean.uniform_(-1, 1); bn.running_var.uniform_(0.5, 2)
    conv.eval(); bn.eval(); x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fold_conv_bn(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fold_conv_avgpool(conv, pool)(x), pool(conv(x)), atol=1e-5, rtol=1e-5)


def test_fold_bn_and_memory(tiny):
    f = fold_bn(tiny); x = torch.randn(4, *SHAPE[1:])
    with torch.no_grad(): torch.testing.assert_close(f(x), tiny(x), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in f.modules())
    assert blob_bytes(f, SHAPE) < blob_bytes(tiny, SHAPE)


def test_slimmed_model_saves_and_loads(tiny):
    "A slimmed model's state_dict loads into the same merges applied to a fresh model: the merges are its recipe."
    slim = tiny
    for mg in merge_plan(tiny): slim, _ = apply_merge(slim, mg, SHAPE)
    fresh = get_model("inception-small", input_size=8, width=0.25)
    for mg in merge_plan(fresh): fresh, _ = apply_merge(fresh, mg, SHAPE)
    fresh.load_state_dict(slim.state_dict())
    x = torch.randn(2, *SHAPE[1:])
    with torch.no_grad(): assert torch.equal(fresh.eval()(x), slim.eval()(x))


def test_googlenet_merge_plan_and_shapes():
    import torchvision
    set_seed(0)
    g = SequentialGoogLeNet(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)).eval()
    shape = (1, 3, 64, 64); m = g
    plan = merge_plan(g)
    assert [p.kind for p in plan] == ["streamline"] * 2 + ["branch"] * 9
    for mg in plan: m, _ = apply_merge(m, mg, shape)
    x = torch.randn(shape)
    with torch.no_grad(): assert m.eval()(x).shape == g(x).shape == (1, 1000)
    m.train(); m(torch.randn(2, 3, 64, 64)).sum().backward()             # the slimmed net trains
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_reinit_changes_every_layer(tiny):
    r = reinit(tiny)
    pairs = [(a, b) for a, b in zip(r.parameters(), tiny.parameters()) if a.ndim > 1]
    assert len(pairs) == sum(p.ndim > 1 for p in tiny.parameters()) and all(not torch.equal(a, b) for a, b in pairs)


def test_bad_input(tiny, digits):
    with pytest.raises(ValueError, match="streamline merges conv"): streamline(tiny.features, 5, 7, SHAPE)
    with pytest.raises(ValueError, match="input_shape"): apply_merge(tiny, Merge("streamline", 0), (1, 3, 8, 8))
    with pytest.raises(ValueError, match="input_shape"): apply_merge(tiny, Merge("streamline", 0), (8, 8))
    with pytest.raises(ValueError, match="needs eval mode"): fold_bn(copy.deepcopy(tiny).train())
    with pytest.raises(ValueError, match="channels"): fold_conv_bn(nn.Conv2d(1, 4, 3).eval(), nn.BatchNorm2d(3).eval())
    with pytest.raises(ValueError, match="non-overlapping"): fold_conv_avgpool(nn.Conv2d(1, 4, 3), nn.AvgPool2d(3, 2))
    with pytest.raises(TypeError, match="data must be a Dataset"): rebirth(tiny, None, SHAPE)
    with pytest.raises(ValueError, match="lr must be a positive finite number"): RebirthConfig(lr=float("inf"))
    with pytest.raises(ValueError, match="limit must be"): RebirthConfig(limit=0)
    with pytest.raises(TypeError, match="slims an Inception module"): SlimInception(nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="merge must be a Merge"): apply_merge(tiny, "streamline 0", SHAPE)
    with pytest.raises(ValueError, match="stop must be"): streamline(tiny.features, 0, 99, SHAPE)
    with pytest.raises(ValueError, match="square pool"): fold_conv_avgpool(nn.Conv2d(1, 4, 3), nn.AvgPool2d((2, 3)))
    with pytest.raises(TypeError, match="streamline must be True or False"): RebirthConfig(streamline=1)
    with pytest.raises(ValueError, match="lr must be a positive finite number"): RebirthConfig(lr=True)


def test_stopping_after_the_stem_is_the_streamline_run(tiny, digits):
    "The notebook reads `streamline` off `both` after the stem's steps: the same computation as a streamline-only run."
    snap = {}
    n = len(merge_plan(tiny, branch=False))
    rebirth(tiny, digits, SHAPE, RebirthConfig(epochs=1, lr=0.02), on_step=lambda k, m: snap.update({k: copy.deepcopy(m)}))
    only, _ = rebirth(tiny, digits, SHAPE, RebirthConfig(epochs=1, lr=0.02, branch=False))
    assert sorted(snap) == [0, 1, 2, 3]
    a, b = snap[n - 1].state_dict(), only.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
