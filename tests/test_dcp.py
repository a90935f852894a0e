"DCP beyond the notebook's tests: determinism, a saved slim model reloads into a model built from its kept channels, bad input."
import io
import pytest
import torch

from compress_papers.data import digits
from compress_papers.dcp import DCPConfig, dcp_prune
from compress_papers.models import get_model
from compress_papers.prune import slim

CFG = DCPConfig(rate=0.5, heads=1, n_samples=48, refit_steps=1, stage_steps=2)


@pytest.fixture(scope="module")
def dg(): return digits()


def test_same_seed_same_channels_and_weights(dg):
    m = get_model("resnet8", input_size=8, width=0.25).eval()
    a, b = dcp_prune(m, dg, CFG, seed=1), dcp_prune(m, dg, CFG, seed=1)
    assert a.keep == b.keep
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    c = dcp_prune(m, dg, DCPConfig(rate=0.5, heads=1, n_samples=48, refit_steps=1, stage_steps=2, selection="random"), seed=2)
    assert set(c.keep) == set(a.keep) and all(len(c.keep[n]) == len(a.keep[n]) for n in a.keep)   # same layers, same counts


def test_saved_slim_model_reloads(dg):
    m = get_model("vgg-small", input_size=8, width=0.25).eval()
    res = dcp_prune(m, dg, CFG)
    buf = io.BytesIO(); torch.save({"state_dict": res.model.state_dict(), "keep": res.keep}, buf); buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    twin = slim(get_model("vgg-small", input_size=8, width=0.25), ck["keep"]).eval()
    twin.load_state_dict(ck["state_dict"])
    x = dg.test.x[:8]
    with torch.no_grad(): assert torch.allclose(twin(x), res.model(x), atol=1e-6)
    assert sum(p.numel() for p in twin.parameters()) < sum(p.numel() for p in m.parameters())


def test_inplace_prunes_the_given_model(dg):
    m = get_model("vgg-small", input_size=8, width=0.25).eval()
    res = dcp_prune(m, dg, CFG, inplace=True)
    assert res.masked is m
    w = m.features[4].weight * m.features[4].weight_mask
    assert int((w.abs().sum((0, 2, 3)) > 0).sum()) == len(res.keep["features.4"])


@pytest.mark.parametrize("kw, msg", [({"rate": 1.0}, "would remove every channel"), ({"rate": -0.5}, "rate must be in [0, 1)"),
                                      ({"eps": -1.0}, "eps must be > 0"), ({"lam": -1.0}, "must be a number >= 0"),
                                      ({"heads": -1}, "heads must be an integer"), ({"n_samples": 0}, "n_samples must be")])
def test_bad_config(kw, msg):
    with pytest.raises((ValueError, TypeError), match=msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        DCPConfig(**kw)


def test_bad_layer_and_structure(dg):
    m = get_model("resnet8", input_size=8, width=0.25)
    with pytest.raises(ValueError, match="not prunable by DCP; allowed: features.3.conv2"):
        dcp_prune(m, dg, CFG, layers=["features.3.conv1"])
    with pytest.raises(TypeError, match="BasicBlocks"):
        dcp_prune(get_model("inception-small", input_size=8), dg, CFG)


def test_vgg16_of_the_cifar10_configuration_prunes():
    "The full-scale configuration's VGG-16 (13 conv layers, P = 2) goes through DCP (tiny width and random data, for time)."
    from compress_papers.data import Dataset, Split
    from compress_papers.reproduce import PAPERS
    assert PAPERS["dcp"].params("full", "cifar10")["model_name"] == "vgg16"
    g = torch.Generator().manual_seed(0)
    mk = lambda n: Split(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
    ds = Dataset("cifar10", mk(64), mk(16), mk(16), 10)
    m = get_model("vgg16", 3, 10, 32, width=1 / 16).eval()
    res = dcp_prune(m, ds, DCPConfig(rate=0.5, heads=2, n_samples=32, refit_steps=1, stage_steps=1))
    assert len(res.keep) == 12
    with torch.no_grad(): assert torch.allclose(res.model(ds.test.x), res.masked(ds.test.x), atol=1e-5)
