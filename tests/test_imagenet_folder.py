"ImageNet from a local folder: clear errors when it is missing, and the whole path (data, cache, training, evaluation, runner) on a miniature folder."
import numpy as np
import pytest
import torch
from PIL import Image

from compress_papers.data import Loader, get_data
from compress_papers.reproduce import PAPERS, reproduce
from compress_papers.train import evaluate, finetune, pretrained


@pytest.fixture
def fake_imagenet(tmp_path):
    rng = np.random.default_rng(0)
    for sub, n in (("train", 8), ("val", 2)):
        for c in range(3):
            d = tmp_path / "inet" / sub / f"n{c:08d}"; d.mkdir(parents=True)
            for k in range(n):
                h, w = rng.integers(60, 120, 2)
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(d / f"im{k}.JPEG")
    return tmp_path / "inet"


def test_missing_folder_is_refused_by_the_command_line(cli, tmp_path):
    r = cli("reproduce", "--data", "imagenet")
    assert r.returncode == 2 and "needs --data-root" in r.stderr
    r = cli("reproduce", "--data", "imagenet", "--data-root", str(tmp_path))
    assert r.returncode == 2 and "ImageNet not found" in r.stderr and "train/<wnid>/*.JPEG" in r.stderr


def test_train_evaluate_finetune_on_a_folder(fake_imagenet, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESS_PAPERS_CACHE", str(tmp_path / "cache"))
    ds = get_data("imagenet", root=fake_imagenet)
    assert (len(ds.train), len(ds.val), len(ds.test), ds.num_classes, ds.input_size) == (21, 3, 6, 3, 224)
    model, hist = pretrained("resnet8", "smoke", "imagenet", data_root=fake_imagenet, progress=False)
    assert len(hist) == 1 and 0 <= evaluate(model, ds.test)["acc"] <= 1
    again, _ = pretrained("resnet8", "smoke", "imagenet", data_root=fake_imagenet, progress=False)   # from the cache
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    h = finetune(model, ds, epochs=1, limit=8, batch_size=4)                                         # random resized crops
    assert len(h) == 1 and np.isfinite(h[0]["train_loss"])
    xs = [x for x, _ in Loader(ds.train, 8, shuffle=True, seed=3, augment="rrc-flip", workers=2)]
    ys = [x for x, _ in Loader(ds.train, 8, shuffle=True, seed=3, augment="rrc-flip", workers=0)]
    assert all(torch.equal(a, b) for a, b in zip(xs, ys))


def test_runner_uses_the_per_dataset_configuration(fake_imagenet, tmp_path):
    lines = []
    recs = reproduce(["baselines"], "smoke", data="imagenet", data_root=fake_imagenet, out=tmp_path / "figs", log=lines.append)
    assert recs == [] and any("skipped (no configuration for data=imagenet): baselines" in l for l in lines)
    assert PAPERS["lqnets"].params("full", "imagenet")["model_name"] == "tv:resnet18"
    assert PAPERS["constraint-aware"].params("smoke", "imagenet")["model_name"] == "tv:alexnet"
