"The runner threads --data and --data-root through papermill into the notebooks (CIFAR-10 format, from a local folder)."
import json, pickle
import numpy as np


def test_smoke_run_on_a_local_cifar10_folder(cli, tmp_path):
    d = tmp_path / "data" / "cifar-10-batches-py"; d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / f, "wb") as fh:   # a miniature folder in the real format: 20 images per batch
            pickle.dump({"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), "labels": list(np.arange(20) % 10)}, fh)
    out = tmp_path / "figures"
    r = cli("reproduce", "--papers", "baselines", "--size", "smoke", "--data", "cifar10", "--data-root", str(tmp_path / "data"),
            "--out", str(out), "--cache", str(tmp_path / "cache"), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "baselines" / "results.json").read_text())
    assert doc["results"]["data"] == "cifar10"
    assert doc["results"]["models"]["resnet20"]["macs"] > 0
    assert (out / "REPORT.md").exists()
