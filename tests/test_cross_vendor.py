"""The pinned kernels compute the same bits on an AMD and an Intel processor: `cross_vendor_probe.py` runs natively and
under QEMU's user-mode emulation of an Intel CPU (`qemu-x86_64 -cpu Skylake-Client-v4`: the same binaries, but Intel's
CPUID, so MKL, oneDNN and ATen dispatch as on an Intel machine), and every tensor must be equal. Before the MKL pin was
`COMPATIBLE` (it was `AVX2`, which MKL honours on Intel only), 81 of 174 tensors of an earlier version of this probe differed on an AMD EPYC.
Skipped where the emulator is missing (`make test` installs Debian's qemu-user) or on a non-x86-64 machine; on an Intel
machine it compares Intel with Intel, and then says less."""
import os, shutil, subprocess, sys
from pathlib import Path
import pytest, torch
from compress_papers.core import pinned_kernel_env

PROBE, ROOT = Path(__file__).with_name("cross_vendor_probe.py"), Path(__file__).parents[1]

@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or not pinned_kernel_env(), reason="needs qemu-x86_64 and an x86-64 machine with AVX2")
def test_intel_and_amd_compute_the_same_bits(tmp_path):
    env = {**os.environ, **pinned_kernel_env(), "PYTHONPATH": str(ROOT), "PROBE_THREADS": "2", "PYTHONWARNINGS": "ignore"}
    here, emulated = tmp_path / "here.pt", tmp_path / "emulated.pt"
    subprocess.run([sys.executable, str(PROBE), str(here)], env=env, check=True, timeout=300)
    subprocess.run(["qemu-x86_64", "-cpu", "Skylake-Client-v4", sys.executable, str(PROBE), str(emulated)], env=env, check=True,
                   timeout=1500, stderr=subprocess.DEVNULL)
    a, b = torch.load(here), torch.load(emulated)
    assert a.keys() == b.keys() and len(a) > 100
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ between this processor and the emulated Intel one, first {differ[:5]}"
