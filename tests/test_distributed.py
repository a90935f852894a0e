"""Training under `torchrun` on the CPU (gloo, 2 processes): the same weights as one process with the same global batch,
and a killed rank leaves no half-written checkpoint behind (the next run resumes from the last complete epoch)."""
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import sys, torch, torch.distributed as dist
    from torch import nn
    from compress_papers.core import dist_rank_world, set_seed
    from compress_papers.data import Loader, digits
    from compress_papers.train import TrainConfig, fit, train_or_load

    mode, out = sys.argv[1], sys.argv[2]
    if "RANK" in __import__("os").environ: dist.init_process_group("gloo")
    rank, world = dist_rank_world()
    set_seed(0, threads=1)
    dg = digits()
    if mode in ("fit", "bn"):   # fit: no BatchNorm (on the CPU its statistics are per rank); bn: with it
        bn = [nn.BatchNorm1d(32)] if mode == "bn" else []
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), *bn, nn.ReLU(), nn.Linear(32, 10))
        loader = Loader(dg.train, 41, shuffle=True, seed=0, augment="crop-flip", rank=rank, world=world)   # 41: every step uneven
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        hist = fit(model, loader, 2, opt, val=dg.val, progress=False)
        torch.save({"model": model.state_dict(), "history": hist, "steps": len(loader)}, f"{out}.{rank}")
    else:                  # a long run through the checkpoint cache, to be killed
        cfg = TrainConfig(model="vgg-small", data="digits", epochs=int(sys.argv[3]), lr=0.05, batch_size=32, width=0.25)
        train_or_load(cfg, dg, cache=out, progress=False)
    if world > 1: dist.destroy_process_group()
''')

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COMPRESS_PAPERS_THREADS": "1"}


def _torchrun(script, *args, **kw):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *map(str, args)]


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    p = tmp_path_factory.mktemp("ddp") / "ddp_script.py"; p.write_text(SCRIPT); return p


def test_two_processes_train_the_weights_one_process_does(script, tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(script), "fit", str(one)], check=True, env=ENV, timeout=300)   # writes one.pt.0
    r = subprocess.run(_torchrun(script, "fit", two), env=ENV, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = torch.load(f"{one}.0", weights_only=False), torch.load(f"{two}.0", weights_only=False)
    assert a["steps"] == b["steps"]                                 # the same global batches
    for k, v in a["model"].items():
        assert torch.allclose(v, b["model"][k], atol=1e-5, rtol=1e-4), (k, float((v - b["model"][k]).abs().max()))
    from compress_papers.data import digits
    n = len(digits().train)
    for ha, hb in zip(a["history"], b["history"]):        # the epoch's loss and accuracy are over the whole global batch
        assert abs(ha["train_loss"] - hb["train_loss"]) < 1e-4 and abs(ha["train_acc"] - hb["train_acc"]) <= 1 / n
        assert abs(ha["val_acc"] - hb["val_acc"]) <= 1 / 100


def test_with_batchnorm_every_rank_holds_the_same_model(script, tmp_path):
    "BatchNorm on the CPU normalises each rank's rows alone; after each epoch all ranks take rank 0's statistics."
    r = subprocess.run(_torchrun(script, "bn", tmp_path / "bn.pt"), env=ENV, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"bn.pt.{k}", weights_only=False) for k in (0, 1))
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert a["history"] == b["history"]


def ck_name(files) -> str:
    "The checkpoint's stem from the files of the cache."
    return next(f.name for f in files if f.name.endswith(".partial.pt"))[:-len(".partial.pt")]


def _rank_pid(parent: int, local_rank: str) -> int | None:
    "The worker process of `parent` (torchrun) whose LOCAL_RANK is `local_rank`."
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError: continue
        if int(stat[1]) == parent and f"LOCAL_RANK={local_rank}".encode() in env: return int(d.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker through /proc")
def test_a_killed_rank_leaves_no_half_written_checkpoint(script, tmp_path):
    cache, epochs = tmp_path / "cache", 40
    p = subprocess.Popen(_torchrun(script, "cache", cache, epochs), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not list((cache / "checkpoints").glob("*.partial.pt")) and time.time() < deadline and p.poll() is None: time.sleep(0.2)
        time.sleep(0.5)
        pid = _rank_pid(p.pid, "1")
        if pid is None and p.poll() is None: pytest.skip("cannot find torchrun's worker processes in /proc")
        assert p.poll() is None, "the run ended before a partial checkpoint was written"
        os.kill(pid, signal.SIGKILL)
        assert p.wait(timeout=120) != 0                       # torchrun notices and stops the other rank
    finally:
        if p.poll() is None: p.kill(); p.wait()
    files = sorted((cache / "checkpoints").iterdir())
    done = [f for f in files if f.name.endswith(".pt") and not f.name.endswith(".partial.pt")]
    assert not done, files                                    # no complete checkpoint was claimed
    ck = torch.load(next(f for f in files if f.name.endswith(".partial.pt")), weights_only=False)
    assert 1 <= ck["epoch"] < epochs                          # the partial one is whole: it loads and says how far it got
    stale = cache / "checkpoints" / f".{ck_name(files)}.pt.interrupted.tmp"         # what a kill in the middle of a write leaves
    stale.write_bytes(b"half"); os.utime(stale, (time.time() - 3600, time.time() - 3600))
    subprocess.run([sys.executable, str(script), "cache", str(cache), str(epochs)], check=True, env=ENV, timeout=300)   # one process resumes
    names = sorted(f.name for f in (cache / "checkpoints").iterdir())
    assert len(names) == 1 and not names[0].endswith((".partial.pt", ".tmp")), names          # the complete checkpoint, nothing else
    ck = torch.load(cache / "checkpoints" / names[0], weights_only=False)
    assert len(ck["history"]) == epochs and [h["epoch"] for h in ck["history"]] == list(range(1, epochs + 1))


def test_the_train_command_under_torchrun(tmp_path):
    "`torchrun ... compress-papers train` fills the cache with one complete checkpoint, written once (rank 0)."
    exe = Path(sys.executable).with_name("compress-papers")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(exe), "train", "vgg-small",
           "--size", "smoke", "--data", "digits", "--width", "0.25", "--cache", str(tmp_path)]
    r = subprocess.run(cmd, env=ENV, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("validation accuracy") == 1, r.stdout                  # rank 0 reports
    assert [p.suffix for p in (tmp_path / "checkpoints").iterdir()] == [".pt"]
    bad = subprocess.run([str(exe), "train", "alexnet9"], env=ENV, capture_output=True, text=True)
    assert bad.returncode == 2 and "model must be one of" in bad.stderr
