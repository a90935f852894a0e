"""A training process killed with SIGKILL resumes from its last epoch and ends with the same bits as an
uninterrupted run; no torn or temporary file is ever left in the cache."""
import os, signal, subprocess, sys, textwrap

import torch

SCRIPT = textwrap.dedent("""
    import sys, time
    import compress_papers.train as T
    from compress_papers.data import digits
    cfg = T.TrainConfig(model="vgg-small", data="digits", epochs=int(sys.argv[2]), batch_size=32, width=0.5)
    slow = sys.argv[3] == "slow"
    if slow:   # give the test time to kill us between epochs
        orig = T.atomic_torch_save
        def save(obj, path): orig(obj, path); print("saved", obj.get("epoch"), flush=True); time.sleep(0.5)
        T.atomic_torch_save = save
    m, h = T.train_or_load(cfg, digits(), cache=sys.argv[1], progress=False)
    import torch; torch.save(m.state_dict(), sys.argv[1] + "/final_weights.pt")
    print("done", len(h), flush=True)
""")


def run(cache, epochs, mode):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(cache), str(epochs), mode],
                            stdout=subprocess.PIPE, text=True)


def test_sigkill_then_resume_gives_identical_weights(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    ref.mkdir(); killed.mkdir()
    p = run(ref, 4, "fast"); p.communicate(timeout=300); assert p.returncode == 0

    p = run(killed, 4, "slow")
    for line in p.stdout:           # kill right after the second epoch's checkpoint
        if line.startswith("saved 2"):
            os.kill(p.pid, signal.SIGKILL); break
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    ck = list((killed / "checkpoints").iterdir())
    assert [f.name.endswith(".partial.pt") for f in ck] == [True]       # only the partial checkpoint
    assert 2 <= torch.load(ck[0], weights_only=False)["epoch"] < 4

    p = run(killed, 4, "fast"); out, _ = p.communicate(timeout=300); assert p.returncode == 0
    assert "done 4" in out
    a, b = torch.load(ref / "final_weights.pt"), torch.load(killed / "final_weights.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    names = sorted(f.name for f in (killed / "checkpoints").iterdir())
    assert len(names) == 1 and names[0].endswith(".pt") and ".partial" not in names[0] and not names[0].endswith(".tmp")
