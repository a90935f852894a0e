"""The package on models of one's own (#20): torchvision's ResNet-18, MobileNet-v2 and GoogLeNet (random weights, small
inputs) through DCP, L1 pruning and LQ; saving and rebuilding; and every silent failure a user met, now an error, a
warning, or working."""
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compress_papers.constraint_aware import Knob, Space, bayes_opt
from compress_papers.data import Dataset, digits
from compress_papers.dcp import DCPConfig, dcp_prune
from compress_papers.lqnets import LQConfig, calibrate, export_lq, load_lq, lq_model
from compress_papers.measure import model_stats
from compress_papers.prune import load_slim, remove_channels, removable_inputs, save_slim, slim
from compress_papers.quant import QuantizedLayer
from compress_papers.train import evaluate, fit

MODELS = {"resnet18": lambda: torchvision.models.resnet18(num_classes=10),
          "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.25),
          "googlenet": lambda: torchvision.models.googlenet(num_classes=10, aux_logits=False, init_weights=True)}
DCP_LAYERS = {"resnet18": ["layer1.0.conv2", "layer3.1.conv2"], "mobilenet_v2": ["features.3.conv.2", "features.10.conv.2"],
              "googlenet": ["inception3a.branch2.1.conv", "inception4b.branch3.1.conv"]}
SIZE = 32
CFG = DCPConfig(rate=0.5, heads=1, n_samples=32, refit_steps=1, stage_steps=2, head_steps=2)


def fresh(name):
    torch.manual_seed(0)
    return MODELS[name]().eval()


@pytest.fixture(scope="module")
def rgb():
    "sklearn's digits as 3 × 32 × 32 images, through Dataset.from_tensors."
    dg = digits()
    up = lambda s: F.interpolate(s.x, size=SIZE).repeat(1, 3, 1, 1)
    return Dataset.from_tensors(torch.cat([up(dg.train), up(dg.val), up(dg.test)]), torch.cat([dg.train.y, dg.val.y, dg.test.y]))


def n_params(m): return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", list(MODELS))
def test_dcp_prunes_removes_saves_and_reloads(name, rgb, tmp_path):
    m = fresh(name)
    res = dcp_prune(m, rgb, CFG, layers=DCP_LAYERS[name], progress=False)
    pairs = removable_inputs(m, (3, SIZE, SIZE))
    assert {n: len(k) for n, k in res.keep.items()} == {n: CFG.keep(m.get_submodule(pairs[n]).weight.shape[0]) for n in DCP_LAYERS[name]}
    x = rgb.test.x[:8]
    with torch.no_grad():
        assert torch.allclose(res.model.eval()(x), res.masked(x), atol=1e-4)          # removal = the masked model
    assert n_params(res.model) < n_params(m)
    f = save_slim(tmp_path / f"{name}.pt", res.model, res.keep, (3, SIZE, SIZE))
    back = load_slim(f, MODELS[name]()).eval()                                         # one call, from a fresh model
    with torch.no_grad(): assert torch.equal(back(x), res.model(x))


@pytest.mark.parametrize("name", list(MODELS))
def test_l1_channel_removal_runs_and_shrinks(name):
    m = fresh(name)
    prods = list(removable_inputs(m, (3, SIZE, SIZE)).values())[:4]
    r = remove_channels(m, {p: 0.5 for p in prods}, (3, SIZE, SIZE)).eval()
    assert r(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 10)
    assert n_params(r) < n_params(m)
    for p in prods: assert r.get_submodule(p).out_channels == m.get_submodule(p).out_channels - round(0.5 * m.get_submodule(p).out_channels)


@pytest.mark.parametrize("name", list(MODELS))
def test_lq_quantize_calibrate_export_reload_identical(name, rgb):
    m = fresh(name)
    q = lq_model(m, LQConfig(4, 4), calib=rgb.train.x[:32])          # the default: all but the first and last layers to run
    names = [n for n, l in q.named_modules() if isinstance(l, QuantizedLayer)]
    convs = [n for n, l in m.named_modules() if isinstance(l, (nn.Conv2d, nn.Linear))]
    assert len(names) == len(convs) - 2 and convs[0] not in names and "fc" not in names and "classifier.1" not in names
    calibrate(q, rgb.train, steps=2, batch_size=32)
    if name == "mobilenet_v2":      # expand convolutions read the linear bottleneck (signed codes), project ones a ReLU6 (unsigned)
        assert q.get_submodule("features.3.conv.0.0").act_q.signed and not q.get_submodule("features.3.conv.2").act_q.signed
    buf = io.BytesIO(); torch.save(export_lq(q), buf); buf.seek(0)
    back = load_lq(torch.load(buf, weights_only=True), MODELS[name]()).eval()        # rebuilt from the export alone
    x = rgb.test.x[:8]
    with torch.no_grad(): assert torch.equal(back(x), q.eval()(x))


def test_calibration_makes_8_bits_lossless(rgb):
    "Right after lq_model (no calib) a trained model is far off; after calibrate, 8/8 bits match full precision."
    dg = digits(); torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32),
                      nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    fit(m, DataLoader(TensorDataset(dg.train.x, dg.train.y), batch_size=64, shuffle=True), 4, opt, progress=False)   # a torch DataLoader
    fp = evaluate(m, dg.test)["acc"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = lq_model(m, LQConfig(8, 8))
    before = evaluate(q, dg.test)["acc"]
    calibrate(q, dg.train)
    after = evaluate(q, dg.test)["acc"]
    assert q[4].act_q.signed                                 # after the BatchNorm
    assert abs(after - fp) <= 0.02 and after > before


def test_torchvision_style_vgg_and_depthwise_chains_prune(rgb):
    "avgpool and flatten in forward (once a shape error inside dcp_prune); a depthwise conv (once a crash at the first forward)."
    class TVStyle(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1, groups=16),
                                          nn.ReLU(), nn.Conv2d(16, 32, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
            self.avgpool = nn.AdaptiveAvgPool2d(2)
            self.classifier = nn.Sequential(nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10))
        def forward(self, x): return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
    torch.manual_seed(0); m = TVStyle().eval()
    res = dcp_prune(m, rgb, CFG, progress=False)
    assert set(res.keep) == {"features.5", "features.8"}
    x = rgb.test.x[:4]
    with torch.no_grad(): assert torch.allclose(res.model.eval()(x), res.masked(x), atol=1e-5)
    assert res.model.features[3].groups == res.model.features[3].out_channels == len(res.keep["features.5"])


def test_torchvision_style_vgg_prunes(rgb):
    "features, then avgpool and flatten in forward, then classifier: the forward check sends it to the graph view."
    class VGGish(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                                          nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
            self.avgpool = nn.AdaptiveAvgPool2d(2)
            self.classifier = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        def forward(self, x): return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
    torch.manual_seed(0); m = VGGish().eval()
    res = dcp_prune(m, rgb, CFG, progress=False)
    assert set(res.keep) == {"features.3", "features.6"}
    x = rgb.test.x[:4]
    with torch.no_grad(): assert torch.allclose(res.model.eval()(x), res.masked(x), atol=1e-5)
    assert res.model.classifier[0].in_features == 64                      # the last conv's outputs were not pruned


def test_first_and_last_layers_by_execution_order():
    class HeadFirst(nn.Module):
        def __init__(self):
            super().__init__(); self.head = nn.Linear(8, 3); self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 1))
        def forward(self, x): return self.head(self.body(x).mean((2, 3)))
    q = lq_model(HeadFirst(), LQConfig(2, 2), calib=torch.rand(8, 3, 8, 8))
    assert [n for n, l in q.named_modules() if isinstance(l, QuantizedLayer)] == ["body.2", "body.4"]


def test_unsupported_models_are_refused_or_warned():
    with pytest.raises(ValueError, match="Conv1d layers, which are not supported"):
        lq_model(nn.Sequential(nn.Conv1d(1, 4, 3), nn.Conv1d(4, 4, 3), nn.Conv1d(4, 2, 3)), LQConfig())
    with pytest.raises(TypeError, match="pass the eager nn.Module"):
        lq_model(torch.jit.script(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))), LQConfig())
    with pytest.raises(TypeError, match="build it first"):
        lq_model("resnet18", LQConfig())
    with pytest.raises(TypeError, match=r"layers=\('pw',\)"):
        LQConfig(layers="pw")
    tf = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 16), nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), nn.Linear(16, 4))
    with pytest.warns(UserWarning, match="inside attention or Transformer layers stay at full precision"):
        q = lq_model(tf, LQConfig(4, 4), calib=torch.randn(4, 5, 8))
    with torch.no_grad(): assert q.eval()(torch.randn(2, 5, 8)).shape == (2, 5, 4)     # eval: the layer's fast path runs
    assert [n for n, l in q.named_modules() if isinstance(l, QuantizedLayer)] == ["1"]


def test_bad_inputs_say_what_to_do(rgb):
    m = fresh("resnet18")
    with pytest.raises(TypeError, match=r"Dataset.from_arrays\(x, y\)"):
        dcp_prune(m, (rgb.train.x, rgb.train.y))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU; use 'cpu'"):
            dcp_prune(m, rgb, CFG, device="cuda")
    with pytest.raises(ValueError, match=r"pass input_shape=\(1, 3, H, W\)"):
        model_stats(m)
    assert model_stats(m, (1, 3, SIZE, SIZE))["params"] == n_params(m)
    with pytest.raises(ValueError, match="looks channels-last"):
        Dataset.from_arrays(np.random.rand(40, 8, 8, 3), np.arange(40) % 4)
    with pytest.raises(ValueError, match="pass example="):
        slim(m, {"layer1.0.conv2": [0]})
    with pytest.raises(TypeError, match="a torch DataLoader or a sized iterable"):
        evaluate(m, 3)


def test_search_bounds_layouts_and_knobs():
    f = lambda th: (float(th[0] + th[1]), float(th[0] ** 2 + th[1] ** 2))
    with pytest.raises(ValueError, match="ambiguous"):
        bayes_opt(f, [[0, 1], [2, 3]], 1.0, n_init=2, n_iter=0, progress=False)
    a = bayes_opt(f, [[0, 0], [1, 1]], 1.0, n_init=3, n_iter=0, progress=False)       # BoTorch's layout: the only valid reading
    assert (a.X >= 0).all() and (a.X <= 1).all() and a.X.std(0).min() > 0
    seen = []
    s = bayes_opt(lambda p: (seen.append(p) or float(p["bits"]), float(p["bits"])), Space([Knob("bits", 1, 8, "int")]), 6,
                  n_init=4, n_iter=6, progress=False)                                 # the best feasible is the target itself
    assert all(isinstance(p["bits"], int) for p in seen) and s.best_feasible()["params"]["bits"] == 6
