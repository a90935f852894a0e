"The command line: bad input exits with status 2 and a message naming what is allowed."
import pytest, torch


def test_list_shows_notebooks_and_planned_papers(cli_process):
    r = cli_process("list")                               # the installed console script, in a process of its own
    assert r.returncode == 0
    assert "baselines" in r.stdout and "10_baselines.ipynb" in r.stdout
    assert "dcp" in r.stdout  # planned papers are listed too


@pytest.mark.parametrize("args, message", [
    (["reproduce", "--papers", "alexnet"], "paper must be one of 'baselines'"),
    (["reproduce", "--data", "svhn"], "invalid choice: 'svhn'"),
    (["reproduce", "--data", "cifar10"], "needs --data-root"),
    (["reproduce", "--data", "cifar10", "--data-root", "/nonexistent/cifar"], "CIFAR-10 not found"),
    (["reproduce", "--data-root", "/nonexistent/folder"], "does not exist"),
    (["reproduce", "--device", "tpu"], "device must be one of 'cpu', 'cuda', 'mps', 'auto'"),
    (["reproduce", "--size", "huge"], "invalid choice: 'huge'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2(cli, args, message, tmp_path):
    r = cli(*args, "--out", str(tmp_path)) if args[0] == "reproduce" else cli(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_unavailable_device_exits_2(cli):
    r = cli("reproduce", "--device", "cuda")
    assert r.returncode == 2 and "not available" in r.stderr


def test_report_rebuilds_from_saved_results(cli, tmp_path):
    from compress_papers.results import Claim, save_results
    save_results("baselines", {"x": 1}, [Claim("c", "a claim", 1.0, "Table 1", True, ours=1.0).judge({"ok": True})], root=tmp_path)
    r = cli("report", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "**reproduced**" in (tmp_path / "REPORT.md").read_text()


def test_probe_prints_the_machine_speed(cli_process):
    r = cli_process("probe")                              # the number the run-time table shows beside every run time
    assert r.returncode == 0, r.stderr
    ms = float(r.stdout.split()[0])
    assert ms > 0 and "ms per LeNet-5 training step" in r.stdout


def test_probe_that_cannot_run_exits_1_saying_why(cli, monkeypatch):
    import sys
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")   # the probe's fresh process cannot start
    r = cli("probe")
    assert r.returncode == 1 and "the speed probe could not run" in r.stderr and "/nonexistent/python" in r.stderr
