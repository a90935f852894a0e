"DCP beyond the notebook's tests: determinism, a saved slim model reloads into a model built from its kept channels, bad input."
import io
import pytest
import torch

from compress_papers.data import digits
from compress_papers.dcp import DCPConfig, dcp_prune
from compress_papers.models import get_model
from compress_papers.prune import slim

CFG = DCPConfig(rate=0.5, heads=1, n_samples=48, refit_steps=1, stage_steps=2, head_check=1)


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
    inc = get_model("inception-small", input_size=8, width=0.25).eval()       # Inception modules: the graph view, not a refusal
    res = dcp_prune(inc, dg, CFG, layers=["features.11.b3.1.0"], progress=False)
    assert len(res.keep["features.11.b3.1.0"]) < inc.get_submodule("features.11.b3.1.0").in_channels
    with torch.no_grad(): assert torch.allclose(res.model.eval()(dg.test.x[:8]), res.masked(dg.test.x[:8]), atol=1e-5)


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


# --- the key ingredients: the discrimination-aware loss in the selection, and Algorithm 1's stage fine-tuning ---

class _Toy(torch.nn.Module):
    "Three 1x1 conv-BN-ReLU units on 8 channels; the label lives in two small channels, six large ones are noise."
    def __init__(self):
        super().__init__()
        nn = torch.nn
        convs = [nn.Conv2d(8, 8, 1, bias=False) for _ in range(3)]
        self.features = nn.Sequential(*[m for c in convs for m in (c, nn.BatchNorm2d(8), nn.ReLU())])
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
        with torch.no_grad():
            for c in convs: c.weight.copy_(torch.eye(8)[:, :, None, None])
            convs[1].weight[:6] *= 3.0; convs[1].weight[6:] *= 0.05              # noise loud, signal quiet in L_M
            self.classifier[2].weight.zero_(); self.classifier[2].bias.zero_()
            self.classifier[2].weight[1, 6], self.classifier[2].weight[1, 7] = 4.0, -4.0
            self.classifier[2].weight[0, 6], self.classifier[2].weight[0, 7] = -4.0, 4.0

    def forward(self, x): return self.classifier(self.features(x))


def _toy_data(n, g):
    from compress_papers.data import Split
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 8, 2, 2, generator=g)
    x[:, 6] += 2.0 * (2 * y[:, None, None] - 1); x[:, 7] -= 2.0 * (2 * y[:, None, None] - 1)
    return Split(x, y)


@pytest.fixture(scope="module")
def toy():
    from compress_papers.data import Dataset
    from compress_papers.train import reestimate_bn
    g = torch.Generator().manual_seed(0)
    ds = Dataset("toy", _toy_data(1024, g), _toy_data(256, g), _toy_data(256, g), 2)
    m = reestimate_bn(_Toy(), ds.train).eval()
    with torch.no_grad(): assert (m(ds.test.x).argmax(1) == ds.test.y).float().mean() > 0.95   # the toy network works
    return m, ds


KEY = dict(rate=0.75, heads=1, n_samples=256, refit_steps=5, lr=0.01, stage_steps=60, head_check=10)


def test_discrimination_loss_selects_the_informative_channels(toy):
    "DCP keeps the quiet channels that carry the label; reconstruction alone keeps loud noise. Fails without L_S in Eq. 6."
    from compress_papers.train import reestimate_bn
    m, ds = toy
    acc = {}
    for name, kw in (("dcp", {}), ("recon", {"lam": 0.0, "refit": "lstsq"})):
        res = dcp_prune(m, ds, DCPConfig(**KEY, **kw), layers=["features.3"])
        net = reestimate_bn(res.model, ds.train)
        with torch.no_grad(): acc[name] = float((net(ds.test.x).argmax(1) == ds.test.y).float().mean())
        if name == "dcp": assert set(res.keep["features.3"]) & {6, 7}, res.keep
        else: assert not set(res.keep["features.3"]) & {6, 7}, res.keep          # the toy really separates the two
    assert acc["dcp"] > 0.9 and acc["recon"] < 0.7, acc


def test_heads_are_trained_before_selection(dg):
    "Algorithm 1 fine-tunes each stage with its head before selecting (no warm-up here): every head is far above chance. Fails without stage fine-tuning."
    m = get_model("vgg-small", input_size=8, width=0.5).eval()
    from compress_papers.train import reestimate_bn
    from compress_papers.train import finetune
    finetune(m, dg, epochs=3, lr=0.05, augment=None); m.eval()
    res = dcp_prune(m, dg, DCPConfig(rate=0.5, heads=2, n_samples=64, refit_steps=1, stage_steps=80, head_steps=0, head_check=10))
    heads = [s for s in res.stages if s["head"]]
    assert len(heads) == 2 and all(s["steps"] > 0 for s in heads)
    assert all(s["test_acc"] > 0.5 for s in heads), [s["test_acc"] for s in heads]      # chance is 0.1
