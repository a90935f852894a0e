"Same configuration, same machine, same threads: the same bits, and the same results file."
import torch

from compress_papers.data import digits
from compress_papers.results import Claim, save_results
from compress_papers.train import TrainConfig, evaluate, train_or_load


def test_two_trainings_from_scratch_are_bit_identical(tmp_path):
    cfg = TrainConfig(model="lenet5", data="digits", epochs=2, batch_size=32)
    ds = digits()
    m1, h1 = train_or_load(cfg, ds, cache=tmp_path / "a", progress=False)
    m2, h2 = train_or_load(cfg, ds, cache=tmp_path / "b", progress=False)
    assert h1 == h2
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    r1 = save_results("det", {"acc": evaluate(m1, ds.test)["acc"], "history": h1}, [Claim("c", "x", None)], root=tmp_path / "r1")
    r2 = save_results("det", {"acc": evaluate(m2, ds.test)["acc"], "history": h2}, [Claim("c", "x", None)], root=tmp_path / "r2")
    assert r1.read_bytes() == r2.read_bytes()


def test_different_seeds_differ(tmp_path):
    ds = digits()
    m1, _ = train_or_load(TrainConfig(model="lenet5", data="digits", epochs=1, seed=0), ds, cache=tmp_path, progress=False)
    m2, _ = train_or_load(TrainConfig(model="lenet5", data="digits", epochs=1, seed=1), ds, cache=tmp_path, progress=False)
    assert not torch.equal(next(iter(m1.state_dict().values())), next(iter(m2.state_dict().values())))
