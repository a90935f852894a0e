"The composition (notebook 21): compress() on a model that is not a zoo chain, save/load, the command line and its bad input."
import json, sys, types
import pytest, torch
from torch import nn
import torch.nn.functional as F
from compress_papers.core import set_seed
from compress_papers.data import get_data
from compress_papers.models import model_for
from compress_papers.train import finetune
from compress_papers.compose import (ComposeConfig, Composer, Compressed, compress, load_compressed, check_budget, METHODS)
from compress_papers.quant import QuantizedLayer

TINY = ComposeConfig(evaluations=2, rounds=1, n_init=1, select_images=32, head_steps=2, bn_images=32, finetune_images=64,
                     final_epochs=0, val_images=64, latency_rounds=3, candidates=32, project_steps=1)


class Branchy(nn.Module):
    "Not a zoo chain: its forward adds a residual branch and pools by hand, so DCP goes through hooks and slim through the graph."
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1); self.bn0 = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 12, 3, padding=1); self.bna = nn.BatchNorm2d(12)
        self.b = nn.Conv2d(12, 8, 3, padding=1); self.bnb = nn.BatchNorm2d(8)
        self.c = nn.Conv2d(8, 16, 3, padding=1); self.head = nn.Linear(16, 10)
    def forward(self, x):
        h = F.relu(self.bn0(self.stem(x)))
        h = F.relu(h + self.bnb(self.b(F.relu(self.bna(self.a(h))))))
        return self.head(F.relu(self.c(h)).mean((2, 3)))


@pytest.fixture(scope="module")
def digits(): return get_data("digits")


@pytest.fixture(scope="module")
def branchy(digits):
    set_seed(0, threads=1); m = Branchy(); finetune(m, digits, 3, 0.1, 0, validate=False); return m.eval()


def test_compress_any_model_and_reload(branchy, digits, tmp_path):
    cp = Composer(branchy, digits, TINY, progress=False)
    assert list(cp.orders) == ["b"]                                   # the one conv whose input channels can go alone
    budget = {"bytes": 0.3 * cp.L0["bytes"]}
    r = cp.search(budget)
    assert r.feasible and r.costs["bytes"] <= budget["bytes"]
    assert any(isinstance(m, QuantizedLayer) for m in r.model.modules())
    json.dumps(r.report())
    f = r.save(tmp_path / "m.pt")
    back = load_compressed(f, Branchy())
    x = digits.test.load(16).x
    with torch.no_grad(): assert torch.equal(back(x), r.model(x))


def test_dcp_only_prunes_and_reloads(branchy, digits, tmp_path):
    cp = Composer(branchy, digits, TINY, progress=False)
    r = cp.search({"latency_ms": 10 * cp.L0["latency_ms"]}, ("dcp",))  # a budget every point meets: the search still runs
    assert r.feasible and r.bits == {} and set(r.keep) == {"b"}
    back = load_compressed(r.save(tmp_path / "d.pt"), Branchy())
    x = digits.test.load(8).x
    with torch.no_grad(): assert torch.allclose(back(x), r.model(x), atol=1e-6)


@pytest.mark.parametrize("budget, message", [
    ({"bytes": -1}, "finite number > 0"), ({"bytes": float("nan")}, "finite number > 0"), ({"bytes": float("inf")}, "finite number > 0"),
    ({"flops": 10}, "budget key must be one of"), ({}, "budget must be a dict"), ("1kB", "budget must be a dict"),
    ({"bytes": 10}, "cannot be met with methods dcp+lq"),
])
def test_bad_budget(branchy, digits, budget, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("+", r"\+").replace("(", r"\(")):
        compress(branchy, digits, budget, cfg=TINY, progress=False)


@pytest.mark.parametrize("kw, message", [
    (dict(methods=("dcp", "prune")), "method must be one of"), (dict(methods="lq"), "non-empty tuple"),
    (dict(cfg={"evaluations": 2}), "cfg must be a ComposeConfig"),
])
def test_bad_arguments(branchy, digits, kw, message):
    with pytest.raises((ValueError, TypeError), match=message):
        compress(branchy, digits, {"bytes": 1e9}, progress=False, **kw)


def test_bad_model_and_data(branchy, digits):
    with pytest.raises(TypeError, match="model must be an nn.Module"): compress("resnet20", digits, {"bytes": 1e9})
    with pytest.raises(TypeError, match="data must be a Dataset"): compress(branchy, digits.train, {"bytes": 1e9})
    with pytest.raises(ValueError, match="latency_ms reaches"):
        Composer(branchy, digits, TINY, progress=False).search({"latency_ms": 1e-3}, ("lq",))
    with pytest.raises(ValueError, match="not a file written by Compressed.save"): load_compressed({"x": 1}, Branchy())
    with pytest.raises(ValueError, match="nothing to save"):
        Compressed(None, {}, {}, {}, {"bytes": 1.0}, False, None, "search", METHODS, (1, 8, 8)).save("never.pt")


@pytest.mark.parametrize("kw, message", [
    (dict(bits=(2, 9)), "bits must be a"), (dict(keep_min=1.5), "keep_min must be a fraction"), (dict(rounds=0), "rounds must be"),
    (dict(evaluations=1, rounds=2), "must be >= rounds"), (dict(final_lr=0.0), "final_lr must be > 0"), (dict(margin=-0.1), "margin must be"),
])
def test_bad_config(kw, message):
    with pytest.raises(ValueError, match=message): ComposeConfig(**kw)


# --- the command line ---
@pytest.fixture
def factory_module(monkeypatch, branchy):
    mod = types.ModuleType("cp_test_models")
    mod.branchy = lambda: branchy
    mod.not_a_model = lambda: "resnet"
    monkeypatch.setitem(sys.modules, "cp_test_models", mod)
    return mod


@pytest.mark.parametrize("args, message", [
    ([], "give a budget"),
    (["--bytes", "-3"], "finite number > 0"),
    (["--bytes", "2", "--fraction"], "fraction in (0, 1]"),
    (["--bytes", "0.5", "--fraction", "--methods", "prune"], "method must be one of"),
    (["--bytes", "100"], "cannot be met"),
])
def test_cli_bad_input_exits_2(cli, factory_module, tmp_path, args, message):
    r = cli("compress", "cp_test_models:branchy", "--data", "digits", "--out", str(tmp_path / "out"), *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert not (tmp_path / "out").exists()                         # nothing written


@pytest.mark.parametrize("model, message", [
    ("cp_test_models:not_a_model", "must return an nn.Module"), ("cp_test_models:missing", "cannot import"),
    ("no_such_package.mod:f", "cannot import"), ("cp_test_models:", "package.module:factory"), ("alexnet", "model must be one of"),
])
def test_cli_bad_model_exits_2(cli, factory_module, tmp_path, model, message):
    r = cli("compress", model, "--data", "digits", "--bytes", "0.5", "--fraction", "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr


def test_cli_writes_model_report_and_figure(cli, factory_module, tmp_path, digits):
    out = tmp_path / "out"
    r = cli("compress", "cp_test_models:branchy", "--data", "digits", "--bytes", "0.35", "--fraction", "--evaluations", "2",
            "--rounds", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "met:" in r.stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["feasible"] and rep["costs"]["bytes"] <= rep["budget"]["bytes"] and 0 <= rep["test_acc"] <= 1
    assert (out / "search.png").stat().st_size > 0
    m = load_compressed(out / "model.pt", Branchy())
    assert any(isinstance(q, QuantizedLayer) for q in m.modules())
